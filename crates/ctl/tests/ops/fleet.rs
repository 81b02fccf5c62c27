//! Steering and the main job on the embedded fleet: `status` hears the workers, `pause` and
//! `resume` hold and release the queue, `drain --wait` lets in-flight jobs finish, loses none
//! and the workers exit; `generate` turns the sample photo into an MP4 through ingest's HTTP
//! API; `job show` reads it back.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clipfleet_broker::QueueRef;
use clipfleet_client::Client;
use clipfleet_ctl::cli::{Command, DrainArgs, JobCommand, Output, StatusArgs, Target};
use clipfleet_ctl::{Ctx, Exit, run};
use clipfleet_fleet::{DEV_TOKEN, Fleet, FleetOptions};
use clipfleet_testkit::{repo_root, small_noop_manifest};
use serde_json::json;

use super::common::{config, pool, sample_photo};

fn all() -> Target {
    Target {
        pool: None,
        worker: None,
        all: true,
    }
}

async fn statuses(client: &Client, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        out.push(client.job(id).await.expect("job").status);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // the drain's numbers, for the record
async fn pause_resume_and_drain_finish_what_runs_and_lose_nothing() {
    let mut options = FleetOptions::embedded().expect("options");
    options.config = config(&[("CLIPFLEET_POOLS__0__MODEL", "noop")]);
    options.manifest = small_noop_manifest("ctl-drain");
    options.workers_per_pool = 2;
    options.worker_slots = 4;
    options.janitor_every = None;
    let fleet = Fleet::start(options).await.expect("fleet");
    let ctx = Ctx::for_fleet(&fleet, Output::Json);
    let client = Client::new(fleet.base_url(), DEV_TOKEN).expect("client");
    client
        .ensure_account("acct-drain", "1990-01-01")
        .await
        .expect("account");
    let photo = Bytes::from(sample_photo());

    let status = run(
        &ctx,
        &Command::Status(StatusArgs {
            listen: Duration::from_millis(5_500),
        }),
    )
    .await
    .expect("status");
    let workers = status.json["workers"]
        .as_array()
        .expect("workers heard")
        .clone();
    assert_eq!(workers.len(), 2, "{status:?}");
    assert!(
        workers
            .iter()
            .all(|w| w["draining"] == false && w["slots"] == 4)
    );
    assert_eq!(status.json["pools"][0]["pool"], "default");

    // Paused: jobs wait in the queue.
    run(&ctx, &Command::Pause(all())).await.expect("pause");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let accepted = client
            .submit("acct-drain", photo.clone(), json!({}), None)
            .await
            .expect("submit");
        held.push(accepted.job_id);
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        statuses(&client, &held).await,
        vec!["queued"; 4],
        "paused workers take nothing"
    );
    assert_eq!(
        fleet
            .broker
            .depth(&QueueRef::Jobs(pool()))
            .await
            .expect("depth")
            .ready,
        4
    );
    run(&ctx, &Command::Resume(all())).await.expect("resume");
    for id in &held {
        let done = client
            .wait(
                id,
                Duration::from_millis(50),
                Duration::from_secs(60),
                |_| {},
            )
            .await
            .expect("wait");
        assert_eq!(done.status, "succeeded");
    }

    // Drain with a backlog: what runs finishes, the rest stays queued, the workers exit.
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(
            client
                .submit("acct-drain", photo.clone(), json!({}), None)
                .await
                .expect("submit")
                .job_id,
        );
    }
    let started = Instant::now();
    let drained = run(
        &ctx,
        &Command::Drain(DrainArgs {
            target: all(),
            wait: true,
            timeout: Duration::from_secs(60),
        }),
    )
    .await
    .expect("drain --wait");
    assert_eq!(
        drained.json["drained"].as_array().map(Vec::len),
        Some(2),
        "{drained:?}"
    );
    let report = tokio::time::timeout(Duration::from_secs(30), fleet_workers_exit(&fleet))
        .await
        .expect("the workers exit after a drain");
    assert!(report, "every worker task ended");
    // Give the ledger the last events.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = statuses(&client, &ids).await;
    let succeeded = after.iter().filter(|s| *s == "succeeded").count();
    let queued = after.iter().filter(|s| *s == "queued").count();
    let waiting = fleet
        .broker
        .depth(&QueueRef::Jobs(pool()))
        .await
        .expect("depth");
    assert_eq!(
        succeeded + queued,
        ids.len(),
        "nothing failed or stuck running: {after:?}"
    );
    assert_eq!(
        waiting.ready as usize, queued,
        "what did not run is still queued"
    );
    assert_eq!(waiting.in_flight, Some(0), "nothing held by a gone worker");
    eprintln!(
        "drain: {succeeded} finished, {queued} left queued, {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // A drain with no worker left to hear it gives up with its exit code.
    let nobody = run(
        &ctx,
        &Command::Drain(DrainArgs {
            target: all(),
            wait: true,
            timeout: Duration::from_secs(2),
        }),
    )
    .await
    .expect_err("nobody answers");
    assert_eq!(nobody.exit, Exit::Timeout);
    let shown = run(
        &ctx,
        &Command::Job(JobCommand::Show {
            id: held[0].clone(),
        }),
    )
    .await
    .expect("job show");
    assert_eq!(shown.json["status"], "succeeded");
    assert_eq!(shown.json["photo_stored"], false);
    assert_eq!(shown.json["video_stored"], true);
    fleet.shutdown().await.expect("shutdown");
}

/// Waits until every worker of the fleet has returned (without joining them, so the rest of
/// the fleet stays usable).
async fn fleet_workers_exit(fleet: &Fleet) -> bool {
    loop {
        if fleet.workers_running() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `clipctl generate SAMPLE -o OUT ARGS --output json` on embedded defaults: its JSON report.
fn generate(sample: &str, out: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_clipctl"))
        .arg("generate")
        .arg(repo_root().join("models/samples").join(sample))
        .arg("-o")
        .arg(out)
        .args(args)
        .args(["--output", "json"])
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("CLIPFLEET_CONFIG")
        .output()
        .expect("run clipctl");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json report");
    assert_eq!(report["photo_deleted"], true, "{report}");
    report
}

#[test]
fn generate_turns_the_samples_into_an_mp4_and_a_portrait_through_ingest() {
    let out = std::env::temp_dir().join(format!("clipctl-generate-{}.mp4", std::process::id()));
    let report = generate("hillside.jpg", &out, &["--motion", "pan_left"]);
    assert_eq!(
        report["runs"],
        serde_json::json!(["mtcnn@2.6.0", "motion@1"]),
        "{report}"
    );
    let mp4 = std::fs::read(&out).expect("mp4 written");
    assert_eq!(&mp4[4..8], b"ftyp", "an MP4");
    assert_eq!(report["bytes"], mp4.len());
    std::fs::remove_file(&out).expect("clean up");

    // The image kinds: the portrait sample as a stylised portrait, a JPEG through the same API.
    let out = out.with_extension("jpg");
    let report = generate("portrait.jpg", &out, &["--kind", "portrait"]);
    assert_eq!(report["kind"], "image", "{report}");
    assert_eq!(
        report["runs"],
        serde_json::json!(["mtcnn@2.6.0", "portrait@1"]),
        "{report}"
    );
    let jpeg = std::fs::read(&out).expect("jpeg written");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
    std::fs::remove_file(&out).expect("clean up");

    let unreachable = std::process::Command::new(env!("CARGO_BIN_EXE_clipctl"))
        .arg("generate")
        .arg(repo_root().join("models/samples/hillside.jpg"))
        .args(["-o", "/dev/null", "--ingest", "http://127.0.0.1:9"])
        .output()
        .expect("run clipctl");
    assert_eq!(
        unreachable.status.code(),
        Some(i32::from(Exit::Unavailable.code()))
    );
}
