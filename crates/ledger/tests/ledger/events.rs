//! A realistic set of events for one job, shared by the suite and the property test.

use clipfleet_ledger::{Idempotency, NewAccount, NewJob, PersonalFields};
use clipfleet_proto::{
    AccountId, ErrorCode, EventBatch, EventKind, JobEvent, JobId, PoolName, StageDurations,
    Timestamp, WorkerId,
};

use crate::fixture::START;

/// How a scenario's last attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Expired,
    Cancelled,
}

pub const OUTCOMES: [Outcome; 4] = [
    Outcome::Succeeded,
    Outcome::Failed,
    Outcome::Expired,
    Outcome::Cancelled,
];

pub fn account(id: &AccountId) -> NewAccount {
    NewAccount {
        id: id.clone(),
        birth_date: Some("1990-04-01".into()),
        under_14: false,
        personal: PersonalFields {
            email: Some("ada@example.com".into()),
            username: Some("ada".into()),
            password_hash: Some("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA".into()),
            name: Some("Ada Lovelace".into()),
            gender: Some("female".into()),
            phone: Some("+44 20 7946 0000".into()),
            third_party_login: Some("apple:001234.abcd".into()),
        },
    }
}

pub fn account_id(prefix: &str) -> AccountId {
    AccountId::new(clipfleet_testkit::unique_name(prefix)).expect("a valid account id")
}

pub fn new_job(account: &AccountId, idempotency: Option<(&str, &str)>) -> NewJob {
    let id = JobId::generate();
    NewJob {
        id,
        account_id: account.clone(),
        pool: PoolName::new("default").expect("a valid pool"),
        model: "motion@1".into(),
        input_key: format!("inputs/{account}/{id}"),
        idempotency: idempotency.map(|(key, hash)| Idempotency {
            key: key.into(),
            request_hash: hash.into(),
        }),
        kind: None,
        session_id: None,
    }
}

pub fn event(job: JobId, at_offset_ms: u64, worker: &str, kind: EventKind) -> JobEvent {
    JobEvent {
        job_id: job,
        at: Timestamp::from_unix_ms(START.unix_ms() + at_offset_ms),
        worker: WorkerId::new(worker).expect("a valid worker id"),
        event: kind,
    }
}

pub fn batch(events: Vec<JobEvent>) -> EventBatch {
    EventBatch { v: 1, events }
}

/// The events of a job that fails `retries` times (retryably) and then ends with `outcome`,
/// each attempt on another worker, in the order they happened.
pub fn scenario(job: JobId, retries: u8, outcome: Outcome) -> Vec<JobEvent> {
    let mut events = Vec::new();
    for attempt in 0..=u64::from(retries) {
        let t = 1_000 + attempt * 10_000;
        let worker = format!("worker-{attempt}");
        events.push(event(job, t, &worker, EventKind::Started));
        events.push(event(
            job,
            t + 1_000,
            &worker,
            EventKind::Progress {
                pct: u8::try_from(20 + attempt * 10).expect("small"),
            },
        ));
        if attempt < u64::from(retries) {
            events.push(event(
                job,
                t + 2_000,
                &worker,
                EventKind::Failed {
                    code: ErrorCode::Transient,
                    message: format!("store timed out on attempt {attempt}"),
                    retryable: true,
                },
            ));
            continue;
        }
        let end = match outcome {
            Outcome::Succeeded => EventKind::Succeeded {
                output_key: format!("outputs/acct/{job}.mp4"),
                size: 361_000,
                stages: StageDurations::default(),
            },
            Outcome::Failed => EventKind::Failed {
                code: ErrorCode::ModelError,
                message: "model produced NaN".into(),
                retryable: false,
            },
            Outcome::Expired => EventKind::Failed {
                code: ErrorCode::Expired,
                message: "past the deadline".into(),
                retryable: false,
            },
            Outcome::Cancelled => EventKind::Cancelled,
        };
        events.push(event(job, t + 3_000, &worker, end));
        events.push(event(job, t + 3_500, &worker, EventKind::InputDeleted));
    }
    events
}

/// The same events, about another job.
pub fn retarget(events: &[JobEvent], job: JobId) -> Vec<JobEvent> {
    events
        .iter()
        .map(|event| JobEvent {
            job_id: job,
            ..event.clone()
        })
        .collect()
}
