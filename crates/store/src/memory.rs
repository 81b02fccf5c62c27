//! `memory://`: objects in a map in this process. A real backend (the embedded fleet stores its
//! objects here), held to the same conformance suite as the others.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use crate::api::{ByteStream, DeleteReport, ListPage, ObjectMeta, ObjectStore, page_size};
use crate::error::StoreError;
use crate::key::{ObjectKey, check_prefix};

/// An object store in memory, shared by clones of the `Arc` that holds it.
#[derive(Debug, Default)]
pub struct InMemoryObjectStore {
    /// Keyed by the key's text so `list_page` can range over a prefix in order.
    objects: RwLock<BTreeMap<String, StoredObject>>,
}

#[derive(Debug, Clone)]
struct StoredObject {
    /// The chunks as they arrived: no copy on put, cheap clones on get.
    chunks: Vec<Bytes>,
    size: u64,
    last_modified: SystemTime,
}

impl InMemoryObjectStore {
    /// An empty store.
    pub fn new() -> Self {
        InMemoryObjectStore::default()
    }

    fn meta(key: &str, object: &StoredObject) -> Result<ObjectMeta, StoreError> {
        Ok(ObjectMeta {
            key: ObjectKey::new(key)?,
            size: object.size,
            last_modified: object.last_modified,
        })
    }
}

#[async_trait]
impl ObjectStore for InMemoryObjectStore {
    async fn put(&self, key: &ObjectKey, mut body: ByteStream) -> Result<(), StoreError> {
        let mut chunks = Vec::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            if !chunk.is_empty() {
                chunks.push(chunk);
            }
        }
        let object = StoredObject {
            chunks,
            size,
            last_modified: SystemTime::now(),
        };
        self.objects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.as_str().to_owned(), object);
        Ok(())
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StoreError> {
        let chunks = self
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key.as_str())
            .map(|object| object.chunks.clone())
            .ok_or_else(|| StoreError::not_found(key.redacted()))?;
        Ok(Box::pin(stream::iter(chunks.into_iter().map(Ok))))
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        let object = objects
            .get(key.as_str())
            .ok_or_else(|| StoreError::not_found(key.redacted()))?;
        Self::meta(key.as_str(), object)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.objects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key.as_str());
        Ok(())
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> DeleteReport {
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            objects.remove(key.as_str());
        }
        DeleteReport::default()
    }

    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        check_prefix(prefix)?;
        let limit = page_size(max_keys);
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        let start = match continuation {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut page = Vec::with_capacity(limit);
        let mut more = false;
        for (key, object) in objects
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            if page.len() == limit {
                more = true;
                break;
            }
            page.push(Self::meta(key, object)?);
        }
        let continuation = more
            .then(|| page.last().map(|meta| meta.key.as_str().to_owned()))
            .flatten();
        Ok(ListPage {
            objects: page,
            continuation,
        })
    }

    async fn check_connectivity(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
