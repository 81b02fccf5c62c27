//! No personal data in what the fleet (ingest, a worker, the janitor) logs or traces: an
//! account with recognisable personal values goes through the API (create, read, update, a
//! job from upload to video download, refused submissions), with every log line captured at
//! TRACE/DEBUG and every span captured; none of the values, the raw account id, the caller's
//! address, device id, service token or photo bytes may appear — while the account's
//! pseudonym does (so the scan sees the fields where a leak would be). And a portrait framed
//! on its face: the face's box lives only in the job's memory — not in a log line, a span, the
//! ledger's view of the job, or any stored object.

use clipfleet_fleet::DEV_TOKEN;
use serde_json::json;

use anyhow::Context;
use clipfleet_infer::{Device, ModelRegistry, RgbFrame, frames_to_batch};
use clipfleet_media::{Limits, decode, fit_within};

use crate::api::{App, photo_with_marker, start_fleet, start_fleet_serving};
use crate::capture::Capture;

const ACCOUNT: &str = "acct-ada-7f3c9q";
const UNKNOWN_ACCOUNT: &str = "acct-nobody-7f3c9q";
const EMAIL: &str = "ada.lovelace.7f3c9q@example.com";
const NAME: &str = "Ada Zqlovelace";
const USERNAME: &str = "adaq7f3c9";
const PHONE: &str = "+44 20 7946 0958";
const NEW_PHONE: &str = "+44 20 7946 0777";
const CLIENT_IP: &str = "203.0.113.77";
const DEVICE: &str = "device-ada-7f3c9q";
/// Text inside the photo's bytes (a JPEG comment).
const PHOTO_MARKER: &str = "PIXELS-ADA-7f3c9q";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_spans_hold_no_personal_data() -> anyhow::Result<()> {
    let capture = Capture::global();
    let fleet = start_fleet("privacy").await?;
    let app = App {
        fleet: &fleet,
        http: reqwest::Client::new(),
        device_id: DEVICE,
        client_ip: CLIENT_IP,
    };
    app.create_account(
        ACCOUNT,
        json!({ "email": EMAIL, "name": NAME, "username": USERNAME, "phone": PHONE }),
    )
    .await?;
    let path = format!("/v1/accounts/{ACCOUNT}");
    let shown = app.request(reqwest::Method::GET, &path).send().await?;
    anyhow::ensure!(shown.status() == 200, "show account: {}", shown.status());
    let updated = app
        .request(reqwest::Method::PATCH, &path)
        .json(&json!({ "phone": NEW_PHONE }))
        .send()
        .await?;
    anyhow::ensure!(
        updated.status() == 200,
        "update account: {}",
        updated.status()
    );

    let job_id = app
        .submit(ACCOUNT, photo_with_marker(PHOTO_MARKER)?)
        .await?;
    app.wait_done(&job_id).await?;
    let video = app
        .request(reqwest::Method::GET, &format!("/v1/jobs/{job_id}/video"))
        .send()
        .await?;
    anyhow::ensure!(video.status() == 200, "video: {}", video.status());
    anyhow::ensure!(!video.bytes().await?.is_empty(), "an empty video");
    let refused = app
        .submit(UNKNOWN_ACCOUNT, photo_with_marker(PHOTO_MARKER)?)
        .await;
    anyhow::ensure!(
        refused.is_err(),
        "a job for an unknown account was accepted"
    );
    let mut truncated = photo_with_marker(PHOTO_MARKER)?;
    truncated.truncate(truncated.len() / 2);
    let refused = app.submit(ACCOUNT, truncated).await;
    anyhow::ensure!(refused.is_err(), "a truncated photo was accepted");
    capture.wait_for_span("process job", &job_id).await?;
    // At least one janitor sweep runs over the account's rows and objects (every second).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    fleet.shutdown().await?;

    let logs = capture.logs();
    let spans = format!("{:?}", capture.spans());
    let pseudonym = clipfleet_telemetry::pseudonym(ACCOUNT);
    // The scan looks where a leak would be: the job and the account's pseudonym are there.
    assert!(logs.contains(&job_id), "the job is in no log line");
    assert!(
        logs.contains(&pseudonym),
        "the account's pseudonym is in no log line"
    );
    assert!(
        spans.contains(&pseudonym),
        "the account's pseudonym is in no span"
    );
    let forbidden = [
        ("the raw account id", ACCOUNT),
        ("an unknown account's id", UNKNOWN_ACCOUNT),
        ("the email", EMAIL),
        ("the name", NAME),
        ("the surname", "Zqlovelace"),
        ("the username", USERNAME),
        ("the phone number", PHONE),
        ("the phone number's digits", "7946 0958"),
        ("the new phone number", NEW_PHONE),
        ("the client address", CLIENT_IP),
        ("the device id", DEVICE),
        ("the photo's bytes", PHOTO_MARKER),
        ("the service token", DEV_TOKEN),
    ];
    let mut leaks = Vec::new();
    for (what, value) in forbidden {
        let needle = value.to_ascii_lowercase();
        for (place, text) in [("logs", &logs), ("spans", &spans)] {
            if let Some(at) = text.to_ascii_lowercase().find(&needle) {
                let from = text[..at]
                    .char_indices()
                    .rev()
                    .nth(200)
                    .map_or(0, |(i, _)| i);
                let to = (at + needle.len() + 200).min(text.len());
                let to = (to..=text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(text.len());
                leaks.push(format!("{what} in {place}: …{}…", &text[from..to]));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "personal data leaked:\n{}",
        leaks.join("\n")
    );
    Ok(())
}

/// Every way a face box's coordinate could be printed, to three decimals (the truncations of a
/// value a few ten-thousandths either side, so a last-bit difference between two runs of the
/// detector still matches): in the detector's pixels and in the photo's.
fn printed_coordinates(manifest: &std::path::Path, photo: &[u8]) -> anyhow::Result<Vec<String>> {
    let registry = ModelRegistry::load_serving(manifest, Device::Cpu, &["mtcnn@2.6.0".into()])?;
    let detector = registry.get("mtcnn", "2.6.0").context("mtcnn")?;
    // What the worker does: decode, scale into the detector's input box, detect.
    let image = decode(photo, &Limits::default())?;
    let (small, back) = fit_within(
        &image,
        detector.spec.input.width,
        detector.spec.input.height,
    )?;
    let frame = RgbFrame::new(small.width, small.height, small.data)?;
    let faces = detector
        .model
        .detect(&frames_to_batch(&[frame], Device::Cpu)?)?;
    anyhow::ensure!(faces.len() == 1, "the portrait has one face: {faces:?}");
    let mut printed = Vec::new();
    for face in &faces {
        for value in [face.x1, face.y1, face.x2, face.y2] {
            for scaled in [f64::from(value), f64::from(value) * back] {
                for nudge in [-0.0005, 0.0005] {
                    let text = format!("{:.4}", scaled + nudge);
                    printed.push(text[..text.len() - 1].to_owned());
                }
            }
        }
    }
    Ok(printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn face_boxes_stay_in_the_job_s_memory() -> anyhow::Result<()> {
    let capture = Capture::global();
    let manifest = clipfleet_testkit::small_framed_motion_manifest("privacy-faces");
    let photo = std::fs::read(clipfleet_testkit::repo_root().join("models/samples/portrait.jpg"))?;
    let coordinates = printed_coordinates(&manifest, &photo)?;
    let fleet = start_fleet_serving("motion", manifest).await?;
    let app = App {
        fleet: &fleet,
        http: reqwest::Client::new(),
        device_id: DEVICE,
        client_ip: CLIENT_IP,
    };
    let account = "acct-portrait-7f3c9q";
    app.create_account(account, json!({})).await?;
    let job_id = app.submit(account, photo).await?;
    let shown = app.wait_done(&job_id).await?;
    anyhow::ensure!(
        shown["runs"] == json!(["mtcnn@2.6.0", "motion@1"]),
        "the job ran the detector: {shown}"
    );
    capture.wait_for_span("process job", &job_id).await?;
    // Every object the store holds: the job's video and nothing else (the photo is gone).
    let keys: Vec<String> = clipfleet_store::list_all(fleet.raw_store.as_ref(), "")
        .await?
        .into_iter()
        .map(|object| object.key.as_str().to_owned())
        .collect();
    fleet.shutdown().await?;
    anyhow::ensure!(
        keys.len() == 1 && keys[0].starts_with("outputs/") && keys[0].contains(&job_id),
        "the store holds more than the video: {keys:?}"
    );

    // The fleet's own log lines (a library's, such as sqlx's statement timings, cannot hold what
    // our code never handed it; the ledger's and the store's contents are checked directly).
    let logs: String = capture
        .logs()
        .lines()
        .filter(|line| line.contains("\"target\":\"clipfleet"))
        .collect::<Vec<_>>()
        .join("\n")
        .to_ascii_lowercase();
    let spans = format!("{:?}", capture.spans()).to_ascii_lowercase();
    let view = shown.to_string().to_ascii_lowercase();
    // The scan looks where a leak would be: the job's own spans are there, its framing stage too.
    anyhow::ensure!(
        spans.contains(&job_id.to_ascii_lowercase()),
        "the job is in no span"
    );
    anyhow::ensure!(spans.contains("\"frame\""), "the framing stage has no span");
    anyhow::ensure!(
        logs.contains(&job_id.to_ascii_lowercase()),
        "the job is in no log line of the fleet's"
    );
    let words = ["face", "landmark", "bbox", "focus"];
    let mut leaks = Vec::new();
    for (place, text) in [
        ("logs", &logs),
        ("spans", &spans),
        ("the job's view", &view),
    ] {
        for needle in words
            .iter()
            .copied()
            .chain(coordinates.iter().map(String::as_str))
        {
            if let Some(at) = text.find(needle) {
                let from = at.saturating_sub(120);
                let to = (at + needle.len() + 120).min(text.len());
                let context: String = text
                    .get(from..to)
                    .map_or_else(|| needle.to_owned(), str::to_owned);
                leaks.push(format!("{needle:?} in {place}: …{context}…"));
            }
        }
    }
    assert!(leaks.is_empty(), "face data leaked:\n{}", leaks.join("\n"));
    Ok(())
}
