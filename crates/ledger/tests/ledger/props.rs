//! Property: whatever the order, duplication and batching of a job's events, the ledger ends in
//! the row that applying them once, in order, gives.

use std::time::Duration;

use anyhow::{Context, ensure};
use clipfleet_ledger::Ledger;
use clipfleet_proto::JobEvent;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::events::{OUTCOMES, Outcome, account, account_id, batch, new_job, retarget, scenario};
use crate::fixture::{Db, Fixture};

const TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
struct Case {
    retries: u8,
    outcome: Outcome,
    /// The scenario's events, in the order they happened.
    in_order: Vec<JobEvent>,
    /// The same events plus duplicates, shuffled.
    shuffled: Vec<JobEvent>,
    /// Sizes of the batches the shuffled events are sent in (cycled).
    batch_sizes: Vec<usize>,
}

fn cases() -> impl Strategy<Value = Case> {
    let placeholder = clipfleet_proto::JobId::from_ulid(ulid::Ulid::nil());
    (0u8..3, 0usize..OUTCOMES.len())
        .prop_flat_map(move |(retries, outcome)| {
            let in_order = scenario(placeholder, retries, OUTCOMES[outcome]);
            let n = in_order.len();
            (
                Just((retries, OUTCOMES[outcome], in_order)),
                prop::collection::vec(0..n, 0..6),
                prop::collection::vec(1usize..5, 1..6),
            )
        })
        .prop_flat_map(|((retries, outcome, in_order), duplicates, batch_sizes)| {
            let mut with_duplicates = in_order.clone();
            with_duplicates.extend(duplicates.iter().map(|i| in_order[*i].clone()));
            (
                Just((retries, outcome, in_order, batch_sizes)),
                Just(with_duplicates).prop_shuffle(),
            )
        })
        .prop_map(
            |((retries, outcome, in_order, batch_sizes), shuffled)| Case {
                retries,
                outcome,
                in_order,
                shuffled,
                batch_sizes,
            },
        )
}

async fn check(ledger: &Ledger, case: &Case) -> anyhow::Result<()> {
    let owner = account_id("prop");
    ledger.create_account(&account(&owner)).await?;
    let reference = ledger.insert_job(&new_job(&owner, None)).await?.job;
    let subject = ledger.insert_job(&new_job(&owner, None)).await?.job;
    ledger
        .apply_events(&batch(retarget(&case.in_order, reference.id)), TTL)
        .await
        .context("in order")?;
    let shuffled = retarget(&case.shuffled, subject.id);
    let mut rest = shuffled.as_slice();
    for size in case.batch_sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at((*size).min(rest.len()));
        ledger
            .apply_events(&batch(now.to_vec()), TTL)
            .await
            .context("shuffled")?;
        rest = later;
    }
    let expected = ledger.get_job(reference.id).await?;
    let mut got = ledger.get_job(subject.id).await?;
    got.id = expected.id;
    got.input_key.clone_from(&expected.input_key);
    ensure!(
        got == expected,
        "{:?} with {} retries:\nshuffled: {got:?}\nin order: {expected:?}",
        case.outcome,
        case.retries
    );
    ensure!(
        expected.attempts == u32::from(case.retries) + 1,
        "attempts {expected:?}"
    );
    ensure!(expected.status.is_terminal(), "not terminal: {expected:?}");
    Ok(())
}

fn run(db: Db, case_count: u32) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let fixture = runtime.block_on(Fixture::new(db))?;
    let mut runner = TestRunner::new(Config {
        cases: case_count,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&cases(), |case| {
        runtime
            .block_on(check(&fixture.ledger, &case))
            .map_err(|err| TestCaseError::fail(format!("{err:#}")))
    });
    runtime.block_on(fixture.cleanup())?;
    result.map_err(|err| anyhow::anyhow!("{err}"))
}

#[test]
fn any_order_of_events_reaches_the_in_order_row_on_sqlite() -> anyhow::Result<()> {
    run(Db::Sqlite, 128)
}

#[test]
fn any_order_of_events_reaches_the_in_order_row_on_postgres() -> anyhow::Result<()> {
    run(Db::Postgres, 64)
}
