//! Puts of any size with bounded memory: a body that fits in one part goes up as one
//! `PutObject`; a larger one as a multipart upload of `part_size` parts, buffered one part at a
//! time. Each request is retried from its buffered bytes. On any failure the multipart upload is
//! aborted so no half object is left; a put dropped midway aborts from a spawned task.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::S3ObjectStore;
use super::errors::from_sdk;
use crate::api::ByteStream;
use crate::error::StoreError;

/// S3's smallest part (all parts but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Default part size: few requests for media-sized objects, modest memory per put.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// S3's limit on parts per upload.
const MAX_PARTS: i32 = 10_000;

pub(super) async fn put(
    store: &S3ObjectStore,
    key: &str,
    mut body: ByteStream,
) -> Result<(), StoreError> {
    let mut buffer = BytesMut::new();
    let ended = fill(&mut body, &mut buffer, store.part_size).await?;
    if ended {
        return put_single(store, key, buffer.freeze()).await;
    }
    let upload_id = store
        .retry
        .run("create multipart upload", || async {
            store
                .client
                .create_multipart_upload()
                .bucket(store.bucket())
                .key(key)
                .send()
                .await
                .map_err(|err| from_sdk("create multipart upload", err))
        })
        .await?
        .upload_id
        .ok_or_else(|| StoreError::internal("create multipart upload: no upload id"))?;
    let mut guard = AbortOnDrop {
        client: store.client.clone(),
        bucket: store.bucket().to_owned(),
        key: key.to_owned(),
        upload_id: Some(upload_id.clone()),
    };
    let outcome = upload_parts(store, key, &upload_id, body, buffer).await;
    if let Err(err) = outcome {
        guard.upload_id = None;
        abort(store, key, &upload_id).await;
        return Err(err);
    }
    guard.upload_id = None;
    Ok(())
}

async fn put_single(store: &S3ObjectStore, key: &str, bytes: Bytes) -> Result<(), StoreError> {
    store
        .retry
        .run("put object", || async {
            store
                .client
                .put_object()
                .bucket(store.bucket())
                .key(key)
                .body(SdkBody::from(bytes.clone()))
                .send()
                .await
                .map_err(|err| from_sdk("put object", err))
        })
        .await
        .map(drop)
}

/// Reads chunks into `buffer` until it holds `part_size` bytes (false) or the body ends (true).
async fn fill(
    body: &mut ByteStream,
    buffer: &mut BytesMut,
    part_size: usize,
) -> Result<bool, StoreError> {
    while buffer.len() < part_size {
        match body.next().await {
            Some(chunk) => buffer.extend_from_slice(&chunk?),
            None => return Ok(true),
        }
    }
    Ok(false)
}

async fn upload_parts(
    store: &S3ObjectStore,
    key: &str,
    upload_id: &str,
    mut body: ByteStream,
    mut buffer: BytesMut,
) -> Result<(), StoreError> {
    let mut parts = Vec::new();
    let mut ended = false;
    let mut number: i32 = 0;
    while !ended || !buffer.is_empty() {
        if !ended {
            ended = fill(&mut body, &mut buffer, store.part_size).await?;
        }
        if buffer.is_empty() {
            break;
        }
        number += 1;
        if number > MAX_PARTS {
            return Err(StoreError::invalid(format!(
                "object needs more than {MAX_PARTS} parts of {} bytes",
                store.part_size
            )));
        }
        let take = buffer.len().min(store.part_size);
        let part = buffer.split_to(take).freeze();
        let e_tag = store
            .retry
            .run("upload part", || async {
                store
                    .client
                    .upload_part()
                    .bucket(store.bucket())
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(SdkBody::from(part.clone()))
                    .send()
                    .await
                    .map_err(|err| from_sdk("upload part", err))
            })
            .await?
            .e_tag
            .ok_or_else(|| StoreError::internal("upload part: no etag"))?;
        parts.push(
            CompletedPart::builder()
                .e_tag(e_tag)
                .part_number(number)
                .build(),
        );
    }
    let completed = CompletedMultipartUpload::builder()
        .set_parts(Some(parts))
        .build();
    store
        .retry
        .run("complete multipart upload", || async {
            store
                .client
                .complete_multipart_upload()
                .bucket(store.bucket())
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(completed.clone())
                .send()
                .await
                .map_err(|err| from_sdk("complete multipart upload", err))
        })
        .await
        .map(drop)
}

async fn abort(store: &S3ObjectStore, key: &str, upload_id: &str) {
    let aborted = store
        .retry
        .run("abort multipart upload", || async {
            store
                .client
                .abort_multipart_upload()
                .bucket(store.bucket())
                .key(key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(|err| from_sdk("abort multipart upload", err))
        })
        .await;
    if let Err(err) = aborted {
        // The parts stay invisible (no object) until the bucket's lifecycle rule removes them.
        tracing::warn!(error = %err, "abort of a failed multipart upload failed");
    }
}

/// Aborts the upload from a spawned task when a put future is dropped between create and
/// complete (a cancelled request, a shutdown): no parts are left behind.
struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: String,
    /// `None` once the upload completed or was aborted in line.
    upload_id: Option<String>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        runtime.spawn(async move {
            let aborted = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await;
            if let Err(err) = aborted {
                tracing::warn!(error = %from_sdk("abort multipart upload", err), "abort of a cancelled upload failed");
            }
        });
    }
}
