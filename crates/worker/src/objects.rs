//! The objects a job may touch, and nothing else. The worker holds the store only inside
//! [`StoreAccess`], which hands out nothing but a [`JobObjects`] made from a job's own ids: its
//! photo (read, delete), its output (is it there, write it once) and its account's tombstone
//! (is it there); for a job of a session, the session's objects under
//! `sessions/<account>/<session>/` named from the job's account and session ids: a
//! `personalize` job's photos (read, delete) and its output, the session's adapter of the job's
//! model (write it, or delete it when the session ended meanwhile); another job of the session
//! reads that adapter; either checks the session's `ended` marker. No method takes a key, so no code path of a job can write an embedding, a
//! face crop or a copy of the photo anywhere else, or read another account's objects: the
//! policy's "nothing else is kept" holds by construction, not by review. (The fields are private
//! to this module, so `job.rs` and `failure.rs` cannot reach the store around it.)

use std::sync::Arc;

use clipfleet_proto::{GenerateJob, JobKind};
use clipfleet_store::{
    ByteStream, ObjectKey, ObjectStore, StoreError, StoreErrorKind, read_to_end,
};

/// Largest adapter file read (a `tone` adapter is a few KB).
const MAX_ADAPTER_BYTES: u64 = 1 << 20;

/// The worker's only way to the store.
#[derive(Clone)]
pub(crate) struct StoreAccess(Arc<dyn ObjectStore>);

impl StoreAccess {
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Self {
        StoreAccess(store)
    }

    /// The objects of `job`, named from its account and id (and kind, for the output's name),
    /// and from its session's id. Fails only for a model name that is no key segment.
    pub(crate) fn for_job(&self, job: &GenerateJob) -> Result<JobObjects, StoreError> {
        let (account, id) = (&job.account_id, job.job_id);
        let session = job
            .session
            .as_ref()
            .map(|session| {
                Ok::<_, StoreError>(SessionObjects {
                    adapter: ObjectKey::session_adapter(account, session.id, &job.model.name)?,
                    ended: ObjectKey::session_ended(account, session.id),
                })
            })
            .transpose()?;
        let (inputs, output) = match (job.kind, &job.session, &session) {
            (JobKind::Personalize, Some(refs), Some(objects)) => (
                refs.photos
                    .iter()
                    .map(|photo| ObjectKey::session_photo(account, refs.id, photo.id))
                    .collect(),
                objects.adapter.clone(),
            ),
            (JobKind::Image, _, _) => (
                vec![ObjectKey::input(account, id)],
                ObjectKey::output_image(account, id),
            ),
            _ => (
                vec![ObjectKey::input(account, id)],
                ObjectKey::output(account, id),
            ),
        };
        Ok(JobObjects {
            store: self.0.clone(),
            training: job.kind == JobKind::Personalize,
            inputs,
            output,
            tombstone: ObjectKey::tombstone(account),
            session,
        })
    }
}

/// One job's objects.
pub(crate) struct JobObjects {
    store: Arc<dyn ObjectStore>,
    /// A `personalize` job: its output is the session's adapter.
    training: bool,
    /// Its photo; a `personalize` job's: the session's photos it trains on.
    inputs: Vec<ObjectKey>,
    /// Its video or image; a `personalize` job's: the session's adapter.
    output: ObjectKey,
    tombstone: ObjectKey,
    session: Option<SessionObjects>,
}

/// A session job's objects of its session.
struct SessionObjects {
    /// The session's adapter of the job's model.
    adapter: ObjectKey,
    /// The marker that ends the session.
    ended: ObjectKey,
}

async fn exists(store: &dyn ObjectStore, key: &ObjectKey) -> Result<bool, StoreError> {
    match store.head(key).await {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == StoreErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

impl JobObjects {
    /// The output's key (`outputs/<account>/<job>.mp4`, `.jpg` for an image job).
    pub(crate) fn output(&self) -> &ObjectKey {
        &self.output
    }

    /// Whether the account was erased while the job waited (its tombstone exists).
    pub(crate) async fn account_erased(&self) -> Result<bool, StoreError> {
        exists(&*self.store, &self.tombstone).await
    }

    /// Whether the job's session has ended (its marker exists); `false` for a job of no
    /// session.
    pub(crate) async fn session_ended(&self) -> Result<bool, StoreError> {
        match &self.session {
            Some(session) => exists(&*self.store, &session.ended).await,
            None => Ok(false),
        }
    }

    /// The session's adapter of the job's model, unsealed; `None` when there is none (no
    /// session, not trained, or deleted with the session).
    pub(crate) async fn adapter(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(session) = &self.session else {
            return Ok(None);
        };
        match self.store.get(&session.adapter).await {
            Ok(body) => Ok(Some(read_to_end(body, MAX_ADAPTER_BYTES).await?.to_vec())),
            Err(err) if err.kind() == StoreErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The stored output's size, when an earlier delivery already stored it.
    pub(crate) async fn stored_output(&self) -> Option<u64> {
        self.store
            .head(&self.output)
            .await
            .ok()
            .map(|meta| meta.size)
    }

    /// The `index`th photo (a job has one; a `personalize` job one per session photo), sealed
    /// at rest, unsealed as it streams.
    pub(crate) async fn photo(&self, index: usize) -> Result<ByteStream, StoreError> {
        let key = self.inputs.get(index).ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::InvalidInput,
                format!("the job has no photo {index}"),
            )
        })?;
        self.store.get(key).await
    }

    /// Stores the output.
    pub(crate) async fn put_output(&self, body: ByteStream) -> Result<(), StoreError> {
        self.store.put(&self.output, body).await.map(|_| ())
    }

    /// Deletes the output again: a `personalize` job whose session ended while it wrote the
    /// adapter (idempotent).
    pub(crate) async fn delete_output(&self) -> Result<(), StoreError> {
        self.store.delete(&self.output).await
    }

    /// What a failed job leaves deleted: its photo(s), and a training's adapter (one written as
    /// its session ended). Idempotent.
    pub(crate) async fn delete_after_failure(&self) -> Result<(), StoreError> {
        if self.training {
            self.delete_output().await?;
        }
        self.delete_photo().await
    }

    /// Deletes the photo, or a `personalize` job's photos (idempotent).
    pub(crate) async fn delete_photo(&self) -> Result<(), StoreError> {
        match self.inputs.as_slice() {
            [one] => self.store.delete(one).await,
            many => {
                let report = self.store.delete_many(many).await;
                match report.failed.into_iter().next() {
                    None => Ok(()),
                    Some(failure) => Err(StoreError::new(failure.kind, failure.message)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clipfleet_proto::{AccountId, Motion, PoolName, Timestamp};
    use clipfleet_store::InMemoryObjectStore;

    #[test]
    fn a_job_s_handle_names_only_its_own_objects() {
        let access = StoreAccess::new(Arc::new(InMemoryObjectStore::new()));
        let account = AccountId::new("acct-a").expect("account");
        let pool = PoolName::new("default").expect("pool");
        let manifest = clipfleet_infer::Manifest::embedded("models".into()).expect("manifest");
        for (model, ext) in [("motion", ".mp4"), ("portrait", ".jpg")] {
            let spec = manifest.find(model, "1").expect("model");
            let job = crate::job_for_photo(
                &account,
                &pool,
                spec,
                b"photo",
                Motion::ZoomIn,
                Timestamp::from_unix_ms(1),
            );
            let objects = access.for_job(&job).expect("objects");
            let id = job.job_id.to_string();
            assert_eq!(objects.inputs[0].as_str(), format!("inputs/acct-a/{id}"));
            assert!(objects.session.is_none());
            assert_eq!(
                objects.output().as_str(),
                format!("outputs/acct-a/{id}{ext}")
            );
            assert_eq!(objects.tombstone.as_str(), "tombstones/acct-a");
        }
    }
}
