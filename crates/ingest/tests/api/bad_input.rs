//! Every kind of bad request gets its status and stable code, and leaves nothing behind: no
//! photo in the store, no job on the queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use clipfleet_ingest::DEV_TOKEN;
use futures_util::{StreamExt, stream};
use reqwest::multipart::{Form, Part};
use serde_json::json;

use clipfleet_testkit::png_claiming;

use crate::fleet::{Fleet, error_code, jpeg, png};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_codes_and_leave_nothing() -> anyhow::Result<()> {
    const MAX_UPLOAD: u64 = 1_000_000;
    let fleet = Fleet::embedded(&[
        ("CLIPFLEET_LIMITS__MAX_UPLOAD_BYTES", "1000000"),
        ("CLIPFLEET_LIMITS__MAX_PIXELS", "100000"),
    ])
    .await?;
    fleet.create_account("ok", json!({})).await?;
    fleet.create_account("gone", json!({})).await?;
    fleet.create_account("child", json!({})).await?;
    let terminated = fleet
        .request(reqwest::Method::POST, "/v1/accounts/gone/terminate")
        .send()
        .await?;
    assert_eq!(terminated.status(), 200);
    // Discovered under 14 after sign-up: flagged and erased at once.
    let flagged = fleet
        .request(reqwest::Method::PATCH, "/v1/accounts/child")
        .json(&json!({"birth_date": "2020-02-02"}))
        .send()
        .await?;
    assert_eq!(flagged.status(), 200);
    // One legitimate job holds an idempotency key.
    let legit = fleet
        .submit("ok", jpeg(64, 64), json!({}), Some("key-1"))
        .await?;
    assert_eq!(legit.status(), 202);

    let small = jpeg(64, 64);
    let mut truncated = jpeg(200, 150);
    truncated.truncate(truncated.len() * 2 / 3);
    let post = || fleet.request(reqwest::Method::POST, "/v1/jobs");
    let form = |params: String, photo: Vec<u8>| {
        Form::new()
            .part("params", Part::text(params))
            .part("photo", Part::bytes(photo).file_name("p"))
    };
    let params = |account: &str| json!({"account_id": account}).to_string();

    let mut cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "no token",
            fleet
                .http
                .post(fleet.url("/v1/jobs"))
                .multipart(form(params("ok"), small.clone())),
            401,
            "unauthorized",
        ),
        (
            "bad token",
            fleet
                .http
                .post(fleet.url("/v1/jobs"))
                .bearer_auth(format!("{DEV_TOKEN}x"))
                .multipart(form(params("ok"), small.clone())),
            401,
            "unauthorized",
        ),
        (
            "unknown account",
            post().multipart(form(params("nobody"), small.clone())),
            403,
            "account_inactive",
        ),
        (
            "terminated account",
            post().multipart(form(params("gone"), small.clone())),
            403,
            "account_inactive",
        ),
        (
            "under-14 account",
            post().multipart(form(params("child"), small.clone())),
            403,
            "under_age",
        ),
        ("empty body", post(), 400, "bad_request"),
        (
            "empty multipart body",
            post().header("content-type", "multipart/form-data; boundary=X"),
            400,
            "bad_request",
        ),
        (
            "non-image",
            post().multipart(form(params("ok"), b"%PDF-1.7 not a photo".to_vec())),
            415,
            "unsupported_format",
        ),
        (
            "truncated jpeg",
            post().multipart(form(params("ok"), truncated)),
            422,
            "bad_image",
        ),
        (
            "png decompression bomb header",
            post().multipart(form(params("ok"), png_claiming(60_000, 60_000))),
            413,
            "too_large",
        ),
        (
            "pixels over the limit",
            post().multipart(form(params("ok"), png(400, 300))),
            413,
            "too_large",
        ),
        (
            "malformed multipart",
            post()
                .header("content-type", "multipart/form-data; boundary=B")
                .body("--B\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{\"acc"),
            400,
            "bad_request",
        ),
        (
            "malformed json params",
            post().multipart(form("{\"account_id\": ".into(), small.clone())),
            400,
            "bad_request",
        ),
        (
            "unknown params field",
            post().multipart(form(
                json!({"account_id": "ok", "colour": "red"}).to_string(),
                small.clone(),
            )),
            400,
            "bad_request",
        ),
        (
            "unknown motion",
            post().multipart(form(
                json!({"account_id": "ok", "motion": "dolly_zoom"}).to_string(),
                small.clone(),
            )),
            400,
            "invalid_params",
        ),
        (
            "unknown model",
            post().multipart(form(
                json!({"account_id": "ok", "model": "sora"}).to_string(),
                small.clone(),
            )),
            422,
            "unknown_model",
        ),
        (
            "no photo part",
            post().multipart(Form::new().part("params", Part::text(params("ok")))),
            400,
            "bad_request",
        ),
        (
            "duplicate idempotency key, other body",
            post()
                .header("idempotency-key", "key-1")
                .multipart(form(params("ok"), jpeg(64, 65))),
            409,
            "conflict",
        ),
    ];

    // Over-size upload, streamed: refused once past the limit, without reading the rest.
    let pulled = Arc::new(AtomicU64::new(0));
    let total: u64 = 64 * MAX_UPLOAD;
    let chunks = {
        let pulled = pulled.clone();
        let chunk = Bytes::from(vec![0xAB; 64 * 1024]);
        stream::iter((0..total / chunk.len() as u64).map(move |_| {
            pulled.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Ok::<_, std::io::Error>(chunk.clone())
        }))
    };
    let mut jpeg_start = jpeg(64, 64);
    jpeg_start.truncate(600);
    let streamed = Form::new().part("params", Part::text(params("ok"))).part(
        "photo",
        Part::stream(reqwest::Body::wrap_stream(
            stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(jpeg_start)) })
                .chain(chunks),
        ))
        .file_name("big.jpg"),
    );
    cases.push((
        "over-size upload",
        post().multipart(streamed),
        413,
        "too_large",
    ));

    for (name, request, status, code) in cases {
        let response = match request.send().await {
            Ok(response) => response,
            // The server answers 413 and closes while the client is still sending the rest:
            // a client without `Expect: 100-continue` may see the closed connection before the
            // answer. The server's own count of refusals says what it answered.
            Err(err) if name == "over-size upload" => {
                let metrics = fleet.metrics().await?;
                assert!(
                    metrics.contains("ingest_submissions_refused_total{code=\"too_large\"} 3"),
                    "{name}: no answer ({err}) and no too_large refusal counted:\n{metrics}"
                );
                continue;
            }
            Err(err) => panic!("{name}: no answer: {err}"),
        };
        let got = error_code(response).await?;
        assert_eq!(got, (status, code.to_owned()), "{name}");
    }
    assert!(
        pulled.load(Ordering::SeqCst) < total / 4,
        "the over-size upload was read on: {} of {total} bytes",
        pulled.load(Ordering::SeqCst)
    );
    // Only the legitimate job is anywhere.
    assert_eq!(fleet.inputs().await?.len(), 1);
    assert_eq!(fleet.queued().await?, 1);
    fleet.stop().await
}
