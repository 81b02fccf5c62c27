//! `file:///dir`: one file per object under a root directory. Writes go to a temporary file in
//! `<root>/.clipfleet-tmp/` (same filesystem), are synced, then renamed into place, so a reader
//! never sees a partial object. Keys are validated (`key.rs`), so a key is always a safe
//! relative path; since key segments never start with `.`, the temporary directory is never
//! mistaken for an object.
//!
//! A key cannot also be a "directory" of other keys here (`a/b` and `a/b/c`): such a put fails
//! with `InvalidInput`. The keys of this system never collide that way.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio_util::io::ReaderStream;

use crate::api::page_size;
use crate::api::{ByteStream, DeleteFailure, DeleteReport, ListPage, ObjectMeta, ObjectStore};
use crate::error::StoreError;
use crate::key::{ObjectKey, check_prefix};

/// Where writes in progress live, inside the root so the final rename stays on one filesystem.
const TMP_DIR: &str = ".clipfleet-tmp";
/// Read chunk size: small enough to bound memory, large enough to keep syscalls cheap.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// An object store in a local directory.
#[derive(Debug, Clone)]
pub struct LocalFileObjectStore {
    /// Absolute root; every object path is `root` joined with the key's segments.
    root: PathBuf,
}

impl LocalFileObjectStore {
    /// Opens (creating if needed) a store rooted at the absolute directory `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        if !root.is_absolute() {
            return Err(StoreError::invalid(format!(
                "store directory {} is not absolute",
                root.display()
            )));
        }
        let tmp = root.join(TMP_DIR);
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|err| StoreError::from_io(format!("create {}", tmp.display()), err))?;
        Ok(LocalFileObjectStore { root })
    }

    /// The directory objects live under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(key.segments());
        path
    }

    /// Removes directories left empty by a delete, up to (not including) the root, so that no
    /// trace of an erased account (its id as a directory name) outlives its objects.
    async fn prune_empty_parents(&self, path: &Path) {
        let mut dir = path.parent();
        while let Some(current) = dir {
            if current == self.root || !current.starts_with(&self.root) {
                break;
            }
            // Fails (not empty, already gone, raced by a put) and stops there: nothing to undo.
            if tokio::fs::remove_dir(current).await.is_err() {
                break;
            }
            dir = current.parent();
        }
    }

    /// Writes `body` to the temporary file `tmp`, syncs it and renames it to `dest`. The body is
    /// gathered [`WRITE_BATCH_BYTES`] at a time and each batch written in one trip to the
    /// blocking pool, the last one with the sync and the rename: a photo-sized object costs one
    /// trip instead of one per chunk, sync, directory and rename (~17 for a sealed 232 KB photo,
    /// each a hand-off to another thread: the blocking pool's threads took a fifth of ingest's CPU
    /// on a tmpfs store, issue 20).
    async fn write_and_install(
        &self,
        tmp: PathBuf,
        dest: PathBuf,
        mut body: ByteStream,
    ) -> Result<(), StoreError> {
        let root = self.root.clone();
        let mut file: Option<std::fs::File> = None;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batched = 0;
        loop {
            let next = body.next().await;
            let last = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk?;
                batched += chunk.len();
                batch.push(chunk);
            }
            if !last && batched < WRITE_BATCH_BYTES {
                continue;
            }
            let chunks = std::mem::take(&mut batch);
            batched = 0;
            let (tmp, dest, root) = (tmp.clone(), dest.clone(), root.clone());
            let open = file.take();
            let written = tokio::task::spawn_blocking(move || {
                let file = write_batch(open, &tmp, &chunks)?;
                if last {
                    file.sync_all()
                        .map_err(|err| StoreError::from_io("write object", err))?;
                    install(&root, &tmp, &dest)?;
                }
                Ok::<_, StoreError>(file)
            })
            .await
            .map_err(|err| StoreError::internal(format!("write task: {err}")))??;
            file = Some(written);
            if last {
                return Ok(());
            }
        }
    }
}

/// Bytes of a body gathered before they are written in one trip to the blocking pool: bounds
/// what a put holds beyond its body's own chunks.
const WRITE_BATCH_BYTES: usize = 1024 * 1024;

/// Appends `chunks` to the temporary file, creating it (owner-only) on the first batch.
fn write_batch(
    file: Option<std::fs::File>,
    tmp: &Path,
    chunks: &[Bytes],
) -> Result<std::fs::File, StoreError> {
    let io = |err| StoreError::from_io("write object", err);
    let mut file = match file {
        Some(file) => file,
        None => std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(io)?,
    };
    for chunk in chunks {
        file.write_all(chunk).map_err(io)?;
    }
    Ok(file)
}

/// Renames the finished temporary file into place, creating parent directories; retries when a
/// concurrent delete pruned a parent between the two steps. Then syncs the directory.
fn install(root: &Path, tmp: &Path, dest: &Path) -> Result<(), StoreError> {
    let parent = dest.parent().unwrap_or(root);
    let mut attempts = 0;
    loop {
        attempts += 1;
        std::fs::create_dir_all(parent)
            .map_err(|err| StoreError::from_io("create object directory", err))?;
        match std::fs::rename(tmp, dest) {
            Ok(()) => break,
            Err(err) if err.kind() == ErrorKind::NotFound && attempts < 3 => continue,
            Err(err) => return Err(StoreError::from_io("move object into place", err)),
        }
    }
    // Make the rename durable; a failure here leaves a complete object, so only log it.
    if let Ok(dir) = std::fs::File::open(parent)
        && let Err(err) = dir.sync_all()
    {
        tracing::warn!(error = %err, "sync of object directory failed");
    }
    Ok(())
}

/// Deletes a temporary file unless disarmed: covers errors and a put future dropped midway.
struct TempFileGuard(Option<PathBuf>);

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Blocking, but one unlink of a file in a directory we own: microseconds.
            let _ = std::fs::remove_file(path);
        }
    }
}

#[async_trait]
impl ObjectStore for LocalFileObjectStore {
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<(), StoreError> {
        let tmp = self
            .root
            .join(TMP_DIR)
            .join(format!("{}.part", ulid::Ulid::new()));
        let mut guard = TempFileGuard(Some(tmp.clone()));
        self.write_and_install(tmp, self.path_of(key), body).await?;
        guard.0 = None;
        Ok(())
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StoreError> {
        let path = self.path_of(key);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(err) if is_missing(&err) => return Err(StoreError::not_found(key.redacted())),
            Err(err) => return Err(StoreError::from_io(format!("open {}", key.redacted()), err)),
        };
        let is_file = file
            .metadata()
            .await
            .map_err(|err| StoreError::from_io(format!("stat {}", key.redacted()), err))?
            .is_file();
        if !is_file {
            return Err(StoreError::not_found(key.redacted()));
        }
        let key = key.clone();
        Ok(Box::pin(
            ReaderStream::with_capacity(file, READ_CHUNK_BYTES).map(move |chunk| {
                chunk.map_err(|err| StoreError::from_io(format!("read {}", key.redacted()), err))
            }),
        ))
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        match tokio::fs::metadata(self.path_of(key)).await {
            Ok(meta) if meta.is_file() => Ok(ObjectMeta {
                key: key.clone(),
                size: meta.len(),
                last_modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            }),
            Ok(_) => Err(StoreError::not_found(key.redacted())),
            Err(err) if is_missing(&err) => Err(StoreError::not_found(key.redacted())),
            Err(err) => Err(StoreError::from_io(format!("stat {}", key.redacted()), err)),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let path = self.path_of(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                self.prune_empty_parents(&path).await;
                Ok(())
            }
            // Missing, or a "directory" of other keys: no object under this key either way.
            Err(err) if is_missing(&err) || err.kind() == ErrorKind::IsADirectory => Ok(()),
            Err(err) => Err(StoreError::from_io(
                format!("delete {}", key.redacted()),
                err,
            )),
        }
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> DeleteReport {
        let mut report = DeleteReport::default();
        for key in keys {
            if let Err(err) = self.delete(key).await {
                report.failed.push(DeleteFailure {
                    key: key.clone(),
                    kind: err.kind(),
                    message: err.to_string(),
                });
            }
        }
        report
    }

    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        check_prefix(prefix)?;
        let (root, prefix) = (self.root.clone(), prefix.to_owned());
        let after = continuation.map(str::to_owned);
        let limit = page_size(max_keys);
        tokio::task::spawn_blocking(move || list_blocking(&root, &prefix, after.as_deref(), limit))
            .await
            .map_err(|err| StoreError::internal("listing task failed").with_source(err))?
    }

    async fn check_connectivity(&self) -> Result<(), StoreError> {
        let meta = tokio::fs::metadata(self.root.join(TMP_DIR))
            .await
            .map_err(|err| StoreError::from_io("store directory is not readable", err))?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(StoreError::internal(
                "store directory has no temporary directory",
            ))
        }
    }
}

fn is_missing(err: &std::io::Error) -> bool {
    matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

/// Walks the directories that can hold keys starting with `prefix`, sorts, and cuts one page.
/// Each page walks again: fine for the local backend's sizes (one machine, short-lived media).
fn list_blocking(
    root: &Path,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<ListPage, StoreError> {
    let base = prefix.rfind('/').map_or("", |slash| &prefix[..slash]);
    let mut found = Vec::new();
    let mut dirs = vec![base.to_owned()];
    while let Some(dir_key) = dirs.pop() {
        let dir = if dir_key.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&dir_key)
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if is_missing(&err) => continue,
            Err(err) => return Err(StoreError::from_io("list directory", err)),
        };
        for entry in entries {
            let entry = entry.map_err(|err| StoreError::from_io("list directory", err))?;
            // Names this store never writes (strays, the temp dir) are not objects.
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let key = if dir_key.is_empty() {
                name
            } else {
                format!("{dir_key}/{name}")
            };
            let file_type = entry
                .file_type()
                .map_err(|err| StoreError::from_io("list directory", err))?;
            if file_type.is_dir() {
                let as_dir = format!("{key}/");
                if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                    dirs.push(key);
                }
            } else if file_type.is_file()
                && key.starts_with(prefix)
                && after.is_none_or(|after| key.as_str() > after)
            {
                let Ok(key) = ObjectKey::new(key) else {
                    continue;
                };
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(err) if is_missing(&err) => continue, // deleted while we walked
                    Err(err) => return Err(StoreError::from_io("stat object", err)),
                };
                found.push(ObjectMeta {
                    key,
                    size: meta.len(),
                    last_modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    let more = found.len() > limit;
    found.truncate(limit);
    let continuation = more
        .then(|| found.last().map(|meta| meta.key.as_str().to_owned()))
        .flatten();
    Ok(ListPage {
        objects: found,
        continuation,
    })
}
