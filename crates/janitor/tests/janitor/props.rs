//! Nothing outside the rules is touched: random ledgers and stores (accounts in every state,
//! jobs of every age and outcome, orphans, sessions), one sweep at a random instant, then every
//! object and row checked against an oracle that restates the policy independently of the
//! rules' code. SQLite in memory and the in-memory store: the property is about decisions; the
//! backends have their own scenarios.

use std::sync::Arc;
use std::time::Duration;

use clipfleet_janitor::{ExecuteOptions, Janitor, LockSpec, add_months};
use clipfleet_ledger::{
    Clock, Ledger, LedgerErrorKind, ManualClock, NewAccount, NewJob, PersonalFields,
};
use clipfleet_proto::{AccountId, JobId, PoolName, Timestamp};
use clipfleet_store::{InMemoryObjectStore, ObjectKey, ObjectStore, body_from_bytes, list_all};
use proptest::prelude::*;

use crate::fixture::{default_policy, real_now, sweep};

const DAY_MS: u64 = 24 * 3600 * 1000;
const HOUR_MS: u64 = 3600 * 1000;

#[derive(Debug, Clone)]
enum AccountState {
    Active,
    /// Terminated this many days before the sweep.
    Terminated(u64),
    Erasure,
    Under14Later,
    Under14AtSignup,
}

#[derive(Debug, Clone)]
enum JobState {
    Queued,
    Succeeded,
}

#[derive(Debug, Clone)]
struct JobSpec {
    /// Submitted this many minutes before the objects were written (0: with them).
    submitted_min_before: u64,
    state: JobState,
}

#[derive(Debug, Clone)]
struct AccountSpec {
    state: AccountState,
    hold: bool,
    jobs: Vec<JobSpec>,
    orphans: usize,
    session: bool,
}

fn account_spec() -> impl Strategy<Value = AccountSpec> {
    let state = prop_oneof![
        Just(AccountState::Active),
        (150u64..220).prop_map(AccountState::Terminated),
        Just(AccountState::Erasure),
        Just(AccountState::Under14Later),
        Just(AccountState::Under14AtSignup),
    ];
    let job = (
        0u64..120,
        prop_oneof![Just(JobState::Queued), Just(JobState::Succeeded)],
    )
        .prop_map(|(submitted_min_before, state)| JobSpec {
            submitted_min_before,
            state,
        });
    (
        state,
        proptest::bool::weighted(0.25),
        proptest::collection::vec(job, 0..3),
        0usize..2,
        any::<bool>(),
    )
        .prop_map(|(state, hold, jobs, orphans, session)| AccountSpec {
            state,
            hold,
            jobs,
            orphans,
            session,
        })
}

/// What the world looked like, to check the sweep against.
struct Built {
    start: Timestamp,
    accounts: Vec<(AccountId, AccountSpec, Option<Timestamp>)>,
    /// (key, account, job spec if it is a job's photo or video, is_video)
    objects: Vec<(ObjectKey, AccountId, Option<JobSpec>, bool)>,
}

async fn build(
    ledger: &Ledger,
    clock: &ManualClock,
    store: &dyn ObjectStore,
    specs: &[AccountSpec],
) -> anyhow::Result<Built> {
    let start = real_now();
    let mut built = Built {
        start,
        accounts: Vec::new(),
        objects: Vec::new(),
    };
    for (n, spec) in specs.iter().enumerate() {
        clock.set(Timestamp::from_unix_ms(start.unix_ms() - 400 * DAY_MS));
        let id = AccountId::new(format!("acct-{n}"))?;
        ledger
            .create_account(&NewAccount {
                id: id.clone(),
                birth_date: None,
                under_14: matches!(spec.state, AccountState::Under14AtSignup),
                personal: PersonalFields {
                    email: Some("x@example.com".into()),
                    ..PersonalFields::default()
                },
            })
            .await?;
        for job in &spec.jobs {
            clock.set(Timestamp::from_unix_ms(
                start.unix_ms() - job.submitted_min_before * 60_000,
            ));
            let job_id = JobId::generate();
            let input = ObjectKey::input(&id, job_id);
            ledger
                .insert_job(&NewJob {
                    id: job_id,
                    account_id: id.clone(),
                    pool: PoolName::new("default")?,
                    model: "motion@1".into(),
                    input_key: input.to_string(),
                    idempotency: None,
                    kind: None,
                    session_id: None,
                })
                .await?;
            store.put(&input, body_from_bytes(&b"p"[..])).await?;
            built
                .objects
                .push((input, id.clone(), Some(job.clone()), false));
            if matches!(job.state, JobState::Succeeded) {
                let output = ObjectKey::output(&id, job_id);
                store.put(&output, body_from_bytes(&b"v"[..])).await?;
                let event = |kind| clipfleet_proto::JobEvent {
                    job_id,
                    at: clock.now(),
                    worker: clipfleet_proto::WorkerId::new("w").expect("worker id"),
                    event: kind,
                };
                ledger
                    .apply_events(
                        &clipfleet_proto::EventBatch {
                            v: 1,
                            events: vec![
                                event(clipfleet_proto::EventKind::Started),
                                event(clipfleet_proto::EventKind::Succeeded {
                                    output_key: output.to_string(),
                                    size: 1,
                                    stages: Default::default(),
                                }),
                            ],
                        },
                        Duration::from_secs(24 * 3600),
                    )
                    .await?;
                built
                    .objects
                    .push((output, id.clone(), Some(job.clone()), true));
            }
        }
        for _ in 0..spec.orphans {
            let key = ObjectKey::input(&id, JobId::generate());
            store.put(&key, body_from_bytes(&b"o"[..])).await?;
            built.objects.push((key, id.clone(), None, false));
        }
        if spec.session {
            let key = ObjectKey::new(format!("sessions/{id}/s1/lora.bin"))?;
            store.put(&key, body_from_bytes(&b"s"[..])).await?;
            built.objects.push((key, id.clone(), None, false));
        }
        let mut terminated_at = None;
        match spec.state {
            AccountState::Active | AccountState::Under14AtSignup => {}
            AccountState::Terminated(days) => {
                let at = Timestamp::from_unix_ms(start.unix_ms() - days * DAY_MS);
                clock.set(at);
                ledger.terminate_account(&id).await?;
                terminated_at = Some(at);
            }
            AccountState::Erasure => {
                ledger.request_erasure(&id).await?;
            }
            AccountState::Under14Later => {
                ledger.flag_under_14(&id).await?;
            }
        }
        if spec.hold {
            ledger.set_legal_hold(&id, true).await?;
        }
        built.accounts.push((id, spec.clone(), terminated_at));
    }
    Ok(built)
}

/// The oracle: whether the policy demands the account's purge at `now`.
fn purge_due(spec: &AccountSpec, terminated_at: Option<Timestamp>, now: Timestamp) -> bool {
    if spec.hold {
        return false;
    }
    match spec.state {
        AccountState::Active => false,
        AccountState::Erasure | AccountState::Under14Later | AccountState::Under14AtSignup => true,
        AccountState::Terminated(_) => terminated_at.is_some_and(|at| add_months(at, 6) <= now),
    }
}

async fn check(specs: Vec<AccountSpec>, sweep_after_min: u64) -> anyhow::Result<()> {
    let clock = Arc::new(ManualClock::new(real_now()));
    let ledger = Ledger::connect_with_clock("sqlite::memory:", clock.clone()).await?;
    ledger.migrate().await?;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemoryObjectStore::new());
    let built = build(&ledger, &clock, store.as_ref(), &specs).await?;
    let now = Timestamp::from_unix_ms(built.start.unix_ms() + sweep_after_min * 60_000);
    clock.set(now);
    let policy = default_policy();
    let janitor = Janitor::new(
        ledger.clone(),
        store.clone(),
        policy.clone(),
        clock.clone(),
        LockSpec::for_ledger_url("sqlite::memory:")?,
    )
    .with_execute_options(ExecuteOptions {
        batch_size: 3,
        ..ExecuteOptions::default()
    });
    let report = sweep(&janitor).await?;
    anyhow::ensure!(report.failures == 0, "{report:?}");
    let remaining: Vec<String> = list_all(store.as_ref(), "")
        .await?
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    let objects_age_ms = now.unix_ms() - built.start.unix_ms();
    for (id, spec, terminated_at) in &built.accounts {
        let purged = purge_due(spec, *terminated_at, now);
        let row = ledger.get_account(id).await;
        let gone = matches!(&row, Err(err) if err.kind() == LedgerErrorKind::NotFound);
        anyhow::ensure!(
            gone == purged,
            "{id} {spec:?}: purged {gone}, expected {purged}"
        );
        if let Ok(account) = row {
            anyhow::ensure!(
                account.personal.email.is_some(),
                "{id}: personal fields cleared"
            );
        }
        let tombstone = remaining.contains(&format!("tombstones/{id}"));
        let immediate = !matches!(spec.state, AccountState::Terminated(_));
        anyhow::ensure!(
            tombstone == (purged && immediate),
            "{id} {spec:?}: tombstone {tombstone}"
        );
    }
    for (key, account, job, is_video) in &built.objects {
        let (_, spec, terminated_at) = built
            .accounts
            .iter()
            .find(|(id, ..)| id == account)
            .expect("built account");
        let expect_gone = if spec.hold {
            false
        } else if purge_due(spec, *terminated_at, now) {
            true
        } else {
            match (job, is_video) {
                // A job's video: 24 h after it was generated.
                (Some(job), true) => {
                    job.submitted_min_before * 60_000 + objects_age_ms >= 24 * HOUR_MS
                }
                // A job's photo: at once when it ended, else at 1 h.
                (Some(job), false) => {
                    matches!(job.state, JobState::Succeeded)
                        || job.submitted_min_before * 60_000 + objects_age_ms >= HOUR_MS
                }
                // Orphan photos after 15 min; sessions after 24 h.
                (None, _) if key.as_str().starts_with("inputs/") => objects_age_ms >= 15 * 60_000,
                (None, _) => objects_age_ms >= 24 * HOUR_MS,
            }
        };
        let gone = !remaining.contains(&key.to_string());
        anyhow::ensure!(
            gone == expect_gone,
            "{key} ({spec:?}, {job:?}): gone {gone}, expected {expect_gone}"
        );
    }
    // Nothing else was written but tombstones of immediate purges.
    for key in &remaining {
        anyhow::ensure!(
            key.starts_with("tombstones/") || built.objects.iter().any(|(k, ..)| k.as_str() == key),
            "unexpected object {key}"
        );
    }
    ledger.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn nothing_outside_the_rules_is_touched(
        specs in proptest::collection::vec(account_spec(), 1..6),
        // Object write times are real: instants near the object rules' edges (15 min, 24 h)
        // are left out so a few milliseconds of building cannot flip the expectation.
        sweep_after_min in prop_oneof![Just(0u64), 1u64..14, 16u64..30, 50u64..70, 1400u64..1439, 1441u64..1500],
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(check(specs, sweep_after_min)).map_err(|err| TestCaseError::fail(format!("{err:#}")))?;
    }
}
