//! Handing a photo to the fleet the way ingest does: the job message for it (ids, the input
//! reference with its sha256 and content type, the model's frames, fps and size), and the
//! submission itself — the photo put sealed under `inputs/<account>/<job>`, then the job
//! published with a confirm. The embedded main job and the worker's tests use it; ingest
//! proper (HTTP, ledger, admission) lands with its issue.

use std::time::SystemTime;

use clipfleet_broker::{Broker, Outgoing, Topic};
use clipfleet_infer::{ModelOutput, ModelSpec};
use clipfleet_media::sniff;
use clipfleet_proto::{
    AccountId, GenerateJob, InputRef, JobId, JobKind, ModelRef, Motion, Params, PoolName, Priority,
    Sha256Hex, Timestamp, encode,
};
use clipfleet_store::{ObjectKey, ObjectStore, body_from_bytes};
use sha2::{Digest, Sha256};

/// The kind of job `model` serves: an `output = "image"` model's jobs are image jobs.
pub(crate) fn job_kind(model: &ModelSpec) -> JobKind {
    match model.output {
        ModelOutput::Video => JobKind::Video,
        ModelOutput::Image => JobKind::Image,
    }
}

/// The job ingest would publish for `photo`, rendered by `model` with `motion`, free class,
/// due at `deadline`.
pub fn job_for_photo(
    account: &AccountId,
    pool: &PoolName,
    model: &ModelSpec,
    photo: &[u8],
    motion: Motion,
    deadline: Timestamp,
) -> GenerateJob {
    let job_id = JobId::generate();
    let digest: [u8; 32] = Sha256::digest(photo).into();
    let content_type = sniff(photo).map_or_else(
        || "application/octet-stream".to_owned(),
        |f| format!("image/{}", f.name()),
    );
    let narrow = |value: u32| u16::try_from(value).unwrap_or(u16::MAX);
    let kind = job_kind(model);
    GenerateJob {
        v: kind.schema_version(),
        job_id,
        account_id: account.clone(),
        pool: pool.clone(),
        model: ModelRef {
            name: model.name.clone(),
            version: model.version.clone(),
        },
        input: InputRef {
            key: ObjectKey::input(account, job_id).as_str().to_owned(),
            size: photo.len() as u64,
            sha256: Sha256Hex::from_digest(&digest),
            content_type,
        },
        params: Params {
            frames: narrow(model.frames),
            fps: narrow(model.fps),
            width: narrow(model.input.width),
            height: narrow(model.input.height),
            seed: 0,
            motion,
            aspect: clipfleet_proto::Aspect::Auto,
        },
        kind,
        session: None,
        priority: Priority::Free,
        submitted_at: Timestamp::from_system_time(SystemTime::now()),
        deadline,
        trace: None,
    }
}

/// Puts `photo` sealed under the job's input key, then publishes the job with a confirm.
pub async fn submit(
    broker: &dyn Broker,
    store: &dyn ObjectStore,
    job: &GenerateJob,
    photo: Vec<u8>,
) -> anyhow::Result<()> {
    store
        .put(
            &ObjectKey::input(&job.account_id, job.job_id),
            body_from_bytes(photo),
        )
        .await?;
    let topic = Topic::Jobs(job.pool.clone(), job.priority);
    let mut outgoing = Outgoing::new(encode(job)?);
    // As ingest does: the worker's job span continues the caller's trace, if there is one.
    clipfleet_telemetry::inject_context(&tracing::Span::current(), &mut outgoing.headers);
    broker.publish(&topic, outgoing).await?;
    Ok(())
}
