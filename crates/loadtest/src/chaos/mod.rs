//! The chaos campaign (`clip-chaos`): the load test against a fleet of processes while
//! everything that can go wrong does — workers SIGKILLed and replaced, ingest killed, RabbitMQ
//! restarted, the object store and PostgreSQL unreachable for a while, a worker drained while it
//! holds jobs — and then an audit of what the fleet holds, job by job.
//!
//! Modules: `fleet` (the processes and their private services, with a supervisor),
//! `faults` (the schedule and the injector), `audit` (the checks on the ledger, the store and
//! the dead letters). The load, its numbers and the API's invariants are the load test's own
//! (`crate::drive`, `crate::stats`, `crate::invariants`); the report adds the faults, the
//! process exits and the audit, and the SVG marks each fault on the timeline.

pub(crate) mod audit;
mod faults;
mod fleet;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::time::Instant;
use tracing::info;

pub use audit::DeadLetterRow;
pub use faults::{Fault, FaultKind, FaultRecord, FaultSet, schedule};
pub use fleet::{ExitRecord, FleetSpec, ProcessFleet, Role};

use crate::drive::Outcome;
use crate::invariants::{InvariantResult, Violation};
use crate::options::{Load, Options, Target};
use crate::report::{Exit, Report};
use crate::svg::Mark;

/// Violations listed per audit invariant (all are counted).
const MAX_LISTED: usize = 50;
/// How long processes get to stop at the end before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// One campaign.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// The load (its target is replaced by the fleet's ingest).
    pub load: Options,
    /// The fleet.
    pub fleet: FleetSpec,
    /// The faults.
    pub faults: FaultSet,
}

/// What a campaign found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChaosReport {
    /// The load test's report: counts, latency, timeline, the API's invariants.
    pub load: Report,
    /// Workers kept running, and the jobs each held at once.
    pub workers: usize,
    /// Jobs each worker held at once.
    pub slots: usize,
    /// The schedule as planned.
    pub planned: Vec<Fault>,
    /// The faults as carried out.
    pub faults: Vec<FaultRecord>,
    /// Every process exit (planned kills and drains, and any crash).
    pub exits: Vec<ExitRecord>,
    /// The highest resident set size of any one process of each role over the run, MiB.
    pub peak_rss_mib: BTreeMap<Role, f64>,
    /// Dead letters at the end, each with its reason.
    pub dead_letters: Vec<DeadLetterRow>,
    /// The audit of the ledger, the store and the dead letters.
    pub audit: Vec<InvariantResult>,
    /// The jobs that broke an audit invariant (at most 50 listed per invariant).
    pub audit_violations: Vec<Violation>,
    /// Objects counted at the end: photos and videos in the store, jobs in the ledger.
    pub holdings: HoldingCounts,
    /// How the campaign ends.
    pub exit: Exit,
    /// Its process exit code.
    pub exit_code: u8,
}

/// What the fleet held at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HoldingCounts {
    /// Job rows in the ledger.
    pub ledger_jobs: usize,
    /// Objects under `inputs/`.
    pub photos: usize,
    /// Objects under `outputs/`.
    pub videos: usize,
    /// Objects under `sessions/` (end markers, if the promises held).
    pub session_objects: usize,
}

/// Runs one campaign: starts the fleet, drives the load while the faults happen, lets the
/// janitor catch up, checks the API's invariants and audits the holdings, stops the fleet.
pub async fn run(options: ChaosOptions) -> anyhow::Result<ChaosReport> {
    let mut load = options.load.clone();
    anyhow::ensure!(
        load.stop.jobs.is_some(),
        "a campaign needs a job count (--jobs)"
    );
    let mix = load.mix.clone();
    let inputs = tokio::task::spawn_blocking(move || crate::mix::Inputs::generate(&mix))
        .await
        .context("generate the photos")??;
    let length = planned_length(&load);
    let planned = schedule(&options.faults, length, load.seed);
    info!(
        faults = planned.len(),
        length_s = length.as_secs_f64(),
        "fault schedule:\n{}",
        describe_schedule(&planned)
    );

    let fleet = ProcessFleet::start(options.fleet.clone()).await?;
    let supervisor = tokio::spawn(fleet.clone().supervise());
    let outcome = campaign(&fleet, &mut load, inputs, &planned, &options).await;
    let stopped = fleet.stop(supervisor, STOP_GRACE).await;
    let Outcomes {
        report,
        faults,
        exits,
        peak_rss_mib,
        holdings,
    } = outcome?;
    stopped.context("stop the fleet")?;
    let (mut audit, mut audit_violations) = audit::audit(&holdings, MAX_LISTED);
    // A campaign whose faults did not happen proved nothing: each one not carried out fails it.
    let mut carried =
        InvariantResult::new("faults_carried_out", "every planned fault was carried out");
    carried.checked = planned.len() as u64;
    for fault in faults.iter().filter(|f| !f.done) {
        carried.violations += 1;
        audit_violations.push(Violation {
            invariant: "faults_carried_out",
            job_id: "-".into(),
            detail: format!("{} at {:.1} s: {}", fault.fault, fault.at_s, fault.detail),
        });
    }
    if faults.len() < planned.len() {
        carried.violations += (planned.len() - faults.len()) as u64;
    }
    audit.push(carried);
    let exit = if !report.invariants.iter().all(InvariantResult::held)
        || !audit.iter().all(InvariantResult::held)
    {
        Exit::Violations
    } else if report.error_share > report.max_error_share {
        Exit::Errors
    } else {
        Exit::Passed
    };
    Ok(ChaosReport {
        load: report,
        workers: options.fleet.workers,
        slots: options.fleet.slots,
        planned,
        faults,
        exits,
        peak_rss_mib,
        holdings: HoldingCounts {
            ledger_jobs: holdings.ledger.len(),
            photos: holdings.photos.len(),
            videos: holdings.videos.len(),
            session_objects: holdings.session_objects.len(),
        },
        dead_letters: holdings.dead_letters,
        audit,
        audit_violations,
        exit,
        exit_code: exit.code(),
    })
}

struct Outcomes {
    report: Report,
    faults: Vec<FaultRecord>,
    exits: Vec<ExitRecord>,
    peak_rss_mib: BTreeMap<Role, f64>,
    holdings: audit::Holdings,
}

async fn campaign(
    fleet: &Arc<ProcessFleet>,
    load: &mut Options,
    inputs: crate::mix::Inputs,
    planned: &[Fault],
    options: &ChaosOptions,
) -> anyhow::Result<Outcomes> {
    let base = fleet.ingest_url();
    load.target = Target::Remote {
        ingest: base.clone(),
        token: fleet.token().to_owned(),
    };
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let injector = {
        let (fleet, planned, seed) = (fleet.clone(), planned.to_vec(), load.seed);
        tokio::spawn(async move {
            match started_rx.await {
                Ok(start) => faults::inject(fleet, planned, start, seed).await,
                Err(_) => Vec::new(),
            }
        })
    };
    let driven = crate::drive_load(load, inputs, &base, fleet.token(), Some(started_tx)).await;
    let faults = injector.await.context("the fault injector")?;
    let driven = driven?;
    // Let the janitor take what an upload cut short may have left: a photo of no job (ingest
    // killed between its put and its ledger row, or a put the store outage delayed past the
    // moment ingest gave up on it), once older than the orphan grace, at its next sweep.
    let may_orphan = faults
        .iter()
        .filter(|f| f.done && matches!(f.fault, "kill_ingest" | "store_outage"))
        .map(|f| f.until_s.unwrap_or(f.at_s))
        .fold(None, |last: Option<f64>, at| {
            Some(last.map_or(at, |l| l.max(at)))
        });
    if let Some(at_s) = may_orphan {
        let settled = driven.start
            + Duration::from_secs_f64(at_s)
            + options.fleet.orphan_grace
            + options.fleet.janitor_every * 2
            + Duration::from_secs(2);
        if settled > Instant::now() {
            info!(
                wait_s = (settled - Instant::now()).as_secs(),
                "waiting for the janitor's orphan rule to pass over the faults"
            );
            tokio::time::sleep_until(settled).await;
        }
    }
    let report = crate::check_and_report(load, &base, &driven).await;
    let holdings = gather(fleet, &options.fleet, &driven).await?;
    let exits = fleet
        .exits()
        .into_iter()
        .map(|mut exit| {
            exit.at_s -= (driven.start - fleet.started()).as_secs_f64();
            exit
        })
        .collect();
    let peak_rss_mib = fleet
        .peak_rss_kib()
        .into_iter()
        .map(|(role, kib)| (role, kib as f64 / 1024.0))
        .collect();
    Ok(Outcomes {
        report,
        faults,
        exits,
        peak_rss_mib,
        holdings,
    })
}

/// Reads what the fleet holds, from the ledger and the store directly (not through the
/// proxies the faults went through) and the dead letters through `clipctl`.
async fn gather(
    fleet: &ProcessFleet,
    spec: &FleetSpec,
    driven: &crate::Driven,
) -> anyhow::Result<audit::Holdings> {
    let accepted: BTreeSet<String> = driven
        .records
        .iter()
        .filter_map(|record| match &record.outcome {
            Outcome::Accepted { job_id, .. } => Some(job_id.clone()),
            _ => None,
        })
        .collect();
    let ledger = clipfleet_ledger::Ledger::connect(fleet.direct_ledger_url())
        .await
        .context("open the run's ledger")?;
    let mut jobs = Vec::new();
    let mut after = None;
    loop {
        let page = ledger.jobs_page(after, 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        jobs.extend(page.into_iter().map(|job| audit::LedgerJob {
            id: job.id.to_string(),
            status: job.status.as_str().to_owned(),
            input_deleted: job.input_deleted_at.is_some(),
            video_live: job.output_key.is_some() && job.output_deleted_at.is_none(),
            adapter: job.kind.as_deref() == Some(clipfleet_ledger::PERSONALIZE_KIND),
        }));
    }
    ledger.close().await;
    let store = clipfleet_store::open(&fleet.store_url())
        .await
        .context("open the run's bucket")?;
    let listed = |prefix: &'static str| {
        let store = store.clone();
        async move {
            anyhow::Ok(
                clipfleet_store::list_all(store.as_ref(), prefix)
                    .await?
                    .into_iter()
                    .map(|object| audit::StoredObject {
                        key: object.key.as_str().to_owned(),
                        last_modified: object.last_modified,
                    })
                    .collect::<Vec<_>>(),
            )
        }
    };
    let photos = listed("inputs/").await.context("list the photos")?;
    let videos = listed("outputs/").await.context("list the videos")?;
    let session_objects = listed("sessions/")
        .await
        .context("list the sessions' objects")?;
    let dead_letters = dead_letters(spec, fleet).await?;
    let opened = driven.sessions.iter().filter_map(|s| s.session_id.clone());
    let ended = driven
        .sessions
        .iter()
        .filter(|s| {
            s.end
                .as_ref()
                .is_some_and(|end| end.deleted_objects.is_some())
        })
        .filter_map(|s| s.session_id.clone());
    Ok(audit::Holdings {
        accepted,
        ledger: jobs,
        photos,
        videos,
        dead_letters,
        session_objects,
        sessions_opened: opened.collect(),
        sessions_ended: ended.collect(),
    })
}

/// `clipctl dlq list` over the run's config: the operator's own view of the dead letters.
async fn dead_letters(
    spec: &FleetSpec,
    fleet: &ProcessFleet,
) -> anyhow::Result<Vec<DeadLetterRow>> {
    let mut pools = vec!["default"];
    if spec.session_model.is_some() {
        pools.push(fleet::SESSION_POOL);
    }
    let mut letters = Vec::new();
    for pool in pools {
        let out = tokio::process::Command::new(spec.bin_dir.join("clipctl"))
            .arg("--config")
            .arg(fleet.config())
            .args(["--output", "json", "dlq", "list", "--limit", "100000"])
            .args(["--pool", pool])
            .env("RUST_LOG", "warn")
            .output()
            .await
            .context("run clipctl dlq list")?;
        anyhow::ensure!(
            out.status.success(),
            "clipctl dlq list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        #[derive(serde::Deserialize)]
        struct Listing {
            dead_letters: Vec<DeadLetterRow>,
        }
        let listing: Listing =
            serde_json::from_slice(&out.stdout).context("read clipctl dlq list's JSON")?;
        letters.extend(listing.dead_letters);
    }
    Ok(letters)
}

/// How long the load takes to submit (what the schedule spreads the faults over).
fn planned_length(load: &Options) -> Duration {
    let jobs = load.stop.jobs.unwrap_or(0) as f64;
    let by_jobs = match load.load {
        Load::Rate { per_second, .. } => Some(jobs / per_second.max(1e-3)),
        Load::Concurrency(_) => None,
    };
    let secs = match (by_jobs, load.stop.duration) {
        (Some(a), Some(d)) => a.min(d.as_secs_f64()),
        (Some(a), None) => a,
        (None, Some(d)) => d.as_secs_f64(),
        (None, None) => 60.0,
    };
    Duration::from_secs_f64(secs.max(1.0))
}

fn describe_schedule(faults: &[Fault]) -> String {
    let mut out = String::new();
    for fault in faults {
        let _ = write!(out, "  {:>7.1} s  {}", fault.at_s, fault.kind.name());
        match fault.kind {
            FaultKind::RestartBroker { down_s } => {
                let _ = write!(out, " (down {down_s:.0} s)");
            }
            FaultKind::StoreOutage { for_s } | FaultKind::LedgerOutage { for_s } => {
                let _ = write!(out, " ({for_s:.0} s)");
            }
            _ => {}
        }
        out.push('\n');
    }
    out
}

impl ChaosReport {
    /// The load test's table, then the faults, the exits, the dead letters and the audit.
    pub fn table(&self) -> String {
        let mut out = self.load.table();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "chaos: {} workers × {} slots; {} faults carried out of {} planned",
            self.workers,
            self.slots,
            self.faults.iter().filter(|f| f.done).count(),
            self.planned.len()
        );
        for fault in &self.faults {
            let until = fault
                .until_s
                .map(|u| format!("–{u:.1}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:>7.1}{until:<8} s  {:<15} {}{}",
                fault.at_s,
                fault.fault,
                fault.detail,
                if fault.done { "" } else { "  (NOT DONE)" }
            );
        }
        let crashed: Vec<_> = self.exits.iter().filter(|e| e.cause == "crashed").collect();
        let _ = writeln!(
            out,
            "  process exits: {} killed, {} drained, {} crashed (restarted by the supervisor)",
            self.exits.iter().filter(|e| e.cause == "killed").count(),
            self.exits.iter().filter(|e| e.cause == "drained").count(),
            crashed.len()
        );
        for exit in crashed {
            let _ = writeln!(
                out,
                "    {:>7.1} s  {} exited by itself after {:.1} s: {}",
                exit.at_s, exit.name, exit.ran_s, exit.status
            );
        }
        let rss: Vec<String> = self
            .peak_rss_mib
            .iter()
            .map(|(role, mib)| format!("{} {mib:.0} MiB", role.name()))
            .collect();
        let _ = writeln!(out, "  peak RSS of one process: {}", rss.join(", "));
        let _ = writeln!(
            out,
            "  held at the end: {} ledger jobs, {} photos, {} videos, {} session objects (end markers), {} dead letters",
            self.holdings.ledger_jobs,
            self.holdings.photos,
            self.holdings.videos,
            self.holdings.session_objects,
            self.dead_letters.len()
        );
        for letter in &self.dead_letters {
            let _ = writeln!(
                out,
                "    dead letter {} ({}, {} deliveries)",
                letter.job_id.as_deref().unwrap_or("(not a job)"),
                letter.reason,
                letter.deliveries
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "  audit (ledger, store, dead letters)");
        for i in &self.audit {
            let verdict = match i.violations {
                0 => "ok".to_owned(),
                n => format!("VIOLATED by {n}"),
            };
            let _ = writeln!(
                out,
                "    {:<66}{:>6} checked  {verdict}",
                i.description, i.checked
            );
        }
        for v in self.audit_violations.iter().take(20) {
            let _ = writeln!(out, "    ! {} {}: {}", v.invariant, v.job_id, v.detail);
        }
        let verdict = match self.exit {
            Exit::Passed => "passed",
            Exit::Violations => "FAILED: invariants violated",
            Exit::Errors => "FAILED: too many unexpected errors",
            Exit::Setup | Exit::Usage => "FAILED",
        };
        let _ = writeln!(out);
        let _ = writeln!(out, "chaos result: {verdict} (exit {})", self.exit.code());
        out
    }

    /// The faults as marks on the SVG timeline.
    pub fn marks(&self) -> Vec<Mark> {
        self.faults
            .iter()
            .filter(|f| f.done)
            .map(|f| Mark {
                at_s: f.at_s,
                until_s: f.until_s,
                label: f.fault.to_owned(),
            })
            .collect()
    }
}

/// The SVG of a campaign: the load test's plot with the faults marked.
pub fn render_svg(report: &ChaosReport) -> String {
    crate::svg::render_marked(&report.load, &report.marks())
}

/// A directory for a run's logs and config, under the system's temporary directory.
pub fn default_run_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "clip-chaos-{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    ))
}
