//! The objects a job may touch, and nothing else. The worker holds the store only inside
//! [`StoreAccess`], which hands out nothing but a [`JobObjects`] made from a job's own ids: its
//! photo (read, delete), its output (is it there, write it once) and its account's tombstone
//! (is it there). No method takes a key, so no code path of a job can write an embedding, a
//! face crop or a copy of the photo anywhere else, or read another account's objects: the
//! policy's "nothing else is kept" holds by construction, not by review. (The fields are private
//! to this module, so `job.rs` and `failure.rs` cannot reach the store around it.)

use std::sync::Arc;

use clipfleet_proto::{GenerateJob, JobKind};
use clipfleet_store::{ByteStream, ObjectKey, ObjectStore, StoreError, StoreErrorKind};

/// The worker's only way to the store.
#[derive(Clone)]
pub(crate) struct StoreAccess(Arc<dyn ObjectStore>);

impl StoreAccess {
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Self {
        StoreAccess(store)
    }

    /// The objects of `job`, named from its account and id (and kind, for the output's name).
    pub(crate) fn for_job(&self, job: &GenerateJob) -> JobObjects {
        let (account, id) = (&job.account_id, job.job_id);
        JobObjects {
            store: self.0.clone(),
            input: ObjectKey::input(account, id),
            output: match job.kind {
                JobKind::Image => ObjectKey::output_image(account, id),
                _ => ObjectKey::output(account, id),
            },
            tombstone: ObjectKey::tombstone(account),
        }
    }
}

/// One job's objects.
pub(crate) struct JobObjects {
    store: Arc<dyn ObjectStore>,
    input: ObjectKey,
    output: ObjectKey,
    tombstone: ObjectKey,
}

impl JobObjects {
    /// The output's key (`outputs/<account>/<job>.mp4`, `.jpg` for an image job).
    pub(crate) fn output(&self) -> &ObjectKey {
        &self.output
    }

    /// Whether the account was erased while the job waited (its tombstone exists).
    pub(crate) async fn account_erased(&self) -> Result<bool, StoreError> {
        match self.store.head(&self.tombstone).await {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == StoreErrorKind::NotFound => Ok(false),
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

    /// The photo, sealed at rest, unsealed as it streams.
    pub(crate) async fn photo(&self) -> Result<ByteStream, StoreError> {
        self.store.get(&self.input).await
    }

    /// Stores the output.
    pub(crate) async fn put_output(&self, body: ByteStream) -> Result<(), StoreError> {
        self.store.put(&self.output, body).await.map(|_| ())
    }

    /// Deletes the photo (idempotent).
    pub(crate) async fn delete_photo(&self) -> Result<(), StoreError> {
        self.store.delete(&self.input).await
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
            let objects = access.for_job(&job);
            let id = job.job_id.to_string();
            assert_eq!(objects.input.as_str(), format!("inputs/acct-a/{id}"));
            assert_eq!(
                objects.output().as_str(),
                format!("outputs/acct-a/{id}{ext}")
            );
            assert_eq!(objects.tombstone.as_str(), "tombstones/acct-a");
        }
    }
}
