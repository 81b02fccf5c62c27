//! No personal data in what the fleet (ingest, a worker, the janitor) logs or traces: an
//! account with recognisable personal values goes through the API (create, read, update, a
//! job from upload to video download, refused submissions), with every log line captured at
//! TRACE/DEBUG and every span captured; none of the values, the raw account id, the caller's
//! address, device id, service token or photo bytes may appear — while the account's
//! pseudonym does (so the scan sees the fields where a leak would be).

use clipfleet_fleet::DEV_TOKEN;
use serde_json::json;

use crate::api::{App, photo_with_marker, start_fleet};
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
