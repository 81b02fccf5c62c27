//! The chaos campaign's end-of-run audit, made from what the fleet holds rather than what its
//! API says: every job row of the ledger, every object of the store, every dead letter. The
//! API's own view (`crate::invariants`) is checked beside it; a fleet must satisfy both.
//!
//! [`audit`] is a pure function of [`Holdings`], so it is tested on made-up holdings of a broken
//! fleet (`tests` below) as well as run on real ones.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::Serialize;

use crate::invariants::{InvariantResult, Violation};

/// One job row, as much of it as the audit reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerJob {
    /// The job id.
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed`, `expired` or `cancelled`.
    pub status: String,
    /// Whether the ledger records the photo deleted.
    pub input_deleted: bool,
    /// Whether the ledger records a video stored and not (yet) deleted.
    pub video_live: bool,
    /// Whether its output is a session's adapter (a `personalize` job): the session
    /// invariants account for it, not the video ones.
    pub adapter: bool,
}

impl LedgerJob {
    fn terminal(&self) -> bool {
        !matches!(self.status.as_str(), "queued" | "running")
    }
}

/// A dead letter as `clipctl dlq list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DeadLetterRow {
    /// The job it carries, when it decodes as one.
    pub job_id: Option<String>,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Deliveries it had.
    pub deliveries: u32,
}

/// A stored object under `inputs/` or `outputs/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredObject {
    /// Its key.
    pub key: String,
    /// When it was written.
    pub last_modified: SystemTime,
}

/// What the fleet holds at the end of a run, and what the load generator knows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Holdings {
    /// Jobs the API accepted (`202`), by id.
    pub accepted: BTreeSet<String>,
    /// Every job row of the ledger.
    pub ledger: Vec<LedgerJob>,
    /// Every object under `inputs/`.
    pub photos: Vec<StoredObject>,
    /// Every object under `outputs/`.
    pub videos: Vec<StoredObject>,
    /// Every dead letter of the pool.
    pub dead_letters: Vec<DeadLetterRow>,
    /// Every object under `sessions/`.
    pub session_objects: Vec<StoredObject>,
    /// The sessions the load's flows opened, and of those the ones whose end was answered.
    pub sessions_opened: BTreeSet<String>,
    /// See `sessions_opened`.
    pub sessions_ended: BTreeSet<String>,
}

/// The job id an object key names: its last segment without an extension
/// (`inputs/<account>/<job>`, `outputs/<account>/<job>.mp4`).
fn job_of(key: &str) -> &str {
    let last = key.rsplit('/').next().unwrap_or(key);
    last.split('.').next().unwrap_or(last)
}

/// Every audit invariant's outcome and the violations, at most `max_listed` listed each.
pub(crate) fn audit(
    holdings: &Holdings,
    max_listed: usize,
) -> (Vec<InvariantResult>, Vec<Violation>) {
    let mut listed = Vec::new();
    let mut results = Vec::new();
    let mut check = |name: &'static str,
                     description: &'static str,
                     found: Vec<(String, String)>,
                     checked: usize| {
        let mut result = InvariantResult::new(name, description);
        result.checked = checked as u64;
        result.violations = found.len() as u64;
        listed.extend(
            found
                .into_iter()
                .take(max_listed)
                .map(|(job_id, detail)| Violation {
                    invariant: name,
                    job_id,
                    detail,
                }),
        );
        results.push(result);
    };
    let jobs: BTreeMap<&str, &LedgerJob> = holdings
        .ledger
        .iter()
        .map(|job| (job.id.as_str(), job))
        .collect();
    let dead: BTreeMap<&str, &DeadLetterRow> = holdings
        .dead_letters
        .iter()
        .filter_map(|letter| Some((letter.job_id.as_deref()?, letter)))
        .collect();
    let mut photos: BTreeMap<&str, Vec<&StoredObject>> = BTreeMap::new();
    for photo in &holdings.photos {
        photos.entry(job_of(&photo.key)).or_default().push(photo);
    }
    let mut videos: BTreeMap<&str, Vec<&StoredObject>> = BTreeMap::new();
    for video in &holdings.videos {
        videos.entry(job_of(&video.key)).or_default().push(video);
    }
    // Settled: terminal, or parked in the dead-letter queue with its reason (an operator's to
    // replay or purge).
    let settled = |job: &LedgerJob| job.terminal() || dead.contains_key(job.id.as_str());

    let lost: Vec<_> = holdings
        .accepted
        .iter()
        .filter(|id| !jobs.contains_key(id.as_str()))
        .map(|id| {
            (
                id.clone(),
                "accepted (202) but not in the ledger".to_owned(),
            )
        })
        .collect();
    check(
        "accepted_kept",
        "no accepted job is lost: each has its ledger row",
        lost,
        holdings.accepted.len(),
    );

    let unsettled_accepted: Vec<_> = holdings
        .accepted
        .iter()
        .filter_map(|id| jobs.get(id.as_str()))
        .filter(|job| !settled(job))
        .map(|job| {
            (
                job.id.clone(),
                format!("still {} in the ledger", job.status),
            )
        })
        .collect();
    check(
        "accepted_settled",
        "every accepted job is terminal (or a dead letter with its reason)",
        unsettled_accepted,
        holdings.accepted.len(),
    );

    let unsettled: Vec<_> = holdings
        .ledger
        .iter()
        .filter(|job| !holdings.accepted.contains(&job.id) && !settled(job))
        .map(|job| {
            (
                job.id.clone(),
                format!("unanswered upload left {} in the ledger", job.status),
            )
        })
        .collect();
    check(
        "unanswered_settled",
        "every job of an upload that got no answer is terminal too",
        unsettled,
        holdings.ledger.len() - holdings.accepted.len().min(holdings.ledger.len()),
    );

    let doubled: Vec<_> = videos
        .iter()
        .filter(|(_, objects)| objects.len() > 1)
        .map(|(job, objects)| {
            let keys: Vec<_> = objects.iter().map(|o| job_of_suffix(&o.key)).collect();
            (
                (*job).to_owned(),
                format!("{} video objects ({})", objects.len(), keys.join(", ")),
            )
        })
        .collect();
    check(
        "one_video",
        "no job has more than one video object",
        doubled,
        videos.len(),
    );

    let ended_photos: Vec<_> = photos
        .keys()
        .filter_map(|id| jobs.get(id))
        .filter(|job| job.terminal())
        .map(|job| {
            (
                job.id.clone(),
                format!(
                    "photo still stored for a {} job (ledger says {})",
                    job.status,
                    if job.input_deleted {
                        "deleted"
                    } else {
                        "present"
                    }
                ),
            )
        })
        .collect();
    check(
        "photo_gone",
        "no photo is stored for a terminal job",
        ended_photos,
        holdings.ledger.iter().filter(|job| job.terminal()).count(),
    );

    let orphans: Vec<_> = photos
        .keys()
        .filter(|id| !jobs.contains_key(*id))
        .map(|id| {
            (
                (*id).to_owned(),
                "photo stored for no job of the ledger".to_owned(),
            )
        })
        .collect();
    check(
        "no_orphan_photo",
        "every stored photo belongs to a job",
        orphans,
        holdings.photos.len(),
    );

    let mut disagree = Vec::new();
    for job in holdings.ledger.iter().filter(|job| !job.adapter) {
        let stored = videos.contains_key(job.id.as_str());
        if job.status == "succeeded" && job.video_live && !stored {
            disagree.push((
                job.id.clone(),
                "succeeded, video live in the ledger, no video object".to_owned(),
            ));
        }
    }
    for id in videos.keys() {
        match jobs.get(id) {
            None => disagree.push((
                (*id).to_owned(),
                "video stored for no job of the ledger".to_owned(),
            )),
            Some(job) if !(job.status == "succeeded" && job.video_live && !job.adapter) => disagree
                .push((
                    job.id.clone(),
                    format!(
                        "video stored, but the ledger has the job {} with no live video",
                        job.status
                    ),
                )),
            Some(_) => {}
        }
    }
    check(
        "ledger_store_agree",
        "a succeeded job's video is stored, and every stored video is one",
        disagree,
        holdings.ledger.len(),
    );

    let unaccounted: Vec<_> = holdings
        .dead_letters
        .iter()
        .filter_map(|letter| {
            let problem = match letter.job_id.as_deref() {
                None => Some("a dead letter that is not a job".to_owned()),
                Some(id) if !jobs.contains_key(id) => {
                    Some("a dead letter of no ledger job".to_owned())
                }
                Some(_) if letter.reason.is_empty() || letter.reason == "unknown" => {
                    Some("a dead letter without its reason".to_owned())
                }
                Some(_) => None,
            };
            problem.map(|problem| (letter.job_id.clone().unwrap_or_else(|| "-".into()), problem))
        })
        .collect();
    check(
        "dead_letters_accounted",
        "every dead letter is a ledger job with its reason",
        unaccounted,
        holdings.dead_letters.len(),
    );

    let unended: Vec<_> = holdings
        .sessions_opened
        .difference(&holdings.sessions_ended)
        .map(|id| {
            (
                id.clone(),
                "a session the load opened never ended".to_owned(),
            )
        })
        .collect();
    check(
        "session_ended",
        "every session the load opened was ended (its DELETE answered)",
        unended,
        holdings.sessions_opened.len(),
    );
    // `sessions/<account>/<session>/…`: once a session ended, only its `ended` marker may stay
    // (until no job can still run); a photo or an adapter is a broken promise.
    let left: Vec<_> = holdings
        .session_objects
        .iter()
        .filter_map(|object| {
            let mut parts = object.key.splitn(4, '/');
            let (_, _, session, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
            let session = session.unwrap_or("-");
            let ended = holdings.sessions_ended.contains(session);
            match rest {
                Some("ended") if ended => None,
                Some("ended") => Some((
                    session.to_owned(),
                    "an end marker of a session no flow ended".to_owned(),
                )),
                Some(rest) => Some((
                    session.to_owned(),
                    format!(
                        "{} still stored{}",
                        rest.split('/').next().unwrap_or(rest),
                        if ended {
                            " after the session ended"
                        } else {
                            ""
                        }
                    ),
                )),
                None => Some((session.to_owned(), "an object outside a session".to_owned())),
            }
        })
        .collect();
    check(
        "session_objects_gone",
        "nothing of an ended session is stored but its end marker: no photo, no adapter",
        left,
        holdings.session_objects.len(),
    );
    (results, listed)
}

/// The part of a key after the account (what tells two objects of one job apart).
fn job_of_suffix(key: &str) -> String {
    key.rsplit('/').next().unwrap_or(key).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, status: &str, video_live: bool) -> LedgerJob {
        LedgerJob {
            id: id.into(),
            status: status.into(),
            input_deleted: status != "queued",
            video_live,
            adapter: false,
        }
    }

    fn object(key: &str) -> StoredObject {
        StoredObject {
            key: key.into(),
            last_modified: SystemTime::UNIX_EPOCH,
        }
    }

    fn violated(results: &[InvariantResult]) -> BTreeMap<&'static str, u64> {
        results
            .iter()
            .filter(|r| r.violations > 0)
            .map(|r| (r.name, r.violations))
            .collect()
    }

    #[test]
    fn a_healthy_fleet_passes() {
        let holdings = Holdings {
            accepted: ["a", "b", "c"].map(String::from).into(),
            ledger: vec![
                job("a", "succeeded", true),
                job("b", "failed", false),
                // Parked: still queued in the ledger, in the dead-letter queue with a reason.
                job("c", "queued", false),
                // An upload that got no answer, rolled back: failed.
                job("d", "failed", false),
            ],
            photos: vec![object("inputs/acct/c")],
            videos: vec![object("outputs/acct/a.mp4")],
            dead_letters: vec![DeadLetterRow {
                job_id: Some("c".into()),
                reason: "delivery_limit".into(),
                deliveries: 5,
            }],
            // A session ended: only its marker is left.
            session_objects: vec![object("sessions/acct/s1/ended")],
            sessions_opened: ["s1"].map(String::from).into(),
            sessions_ended: ["s1"].map(String::from).into(),
        };
        let mut holdings = holdings;
        // Its training: an adapter job, which the video invariants leave to the session's.
        holdings.ledger.push(LedgerJob {
            adapter: true,
            ..job("t", "succeeded", true)
        });
        let (results, listed) = audit(&holdings, 10);
        assert_eq!(violated(&results), BTreeMap::new(), "{listed:?}");
        assert_eq!(results.len(), 10);
    }

    #[test]
    fn a_broken_fleet_is_caught_job_by_job() {
        let holdings = Holdings {
            // "lost": accepted, no row. "stuck": accepted, still running, not a dead letter.
            accepted: ["lost", "stuck", "twice", "kept"].map(String::from).into(),
            ledger: vec![
                job("stuck", "running", false),
                job("twice", "succeeded", true),
                // Its photo survived the end of the job.
                job("kept", "succeeded", true),
                // An unanswered upload left queued.
                job("limbo", "queued", false),
                // The ledger thinks the video is stored; the store lost it.
                job("gone", "succeeded", true),
            ],
            photos: vec![
                object("inputs/acct/kept"),
                object("inputs/acct/limbo"),
                object("inputs/acct/nobody"),
            ],
            videos: vec![
                object("outputs/acct/twice.mp4"),
                object("outputs/acct/twice.webm"),
                object("outputs/acct/kept.mp4"),
                object("outputs/acct/ghost.mp4"),
            ],
            dead_letters: vec![
                DeadLetterRow {
                    job_id: Some("ghost".into()),
                    reason: "delivery_limit".into(),
                    deliveries: 5,
                },
                DeadLetterRow {
                    job_id: None,
                    reason: "undecodable".into(),
                    deliveries: 1,
                },
            ],
            // s1 ended but kept its adapter; s2 never ended and kept a photo.
            session_objects: vec![
                object("sessions/acct/s1/ended"),
                object("sessions/acct/s1/adapters/portrait"),
                object("sessions/acct/s2/photos/p1"),
            ],
            sessions_opened: ["s1", "s2"].map(String::from).into(),
            sessions_ended: ["s1"].map(String::from).into(),
        };
        let (results, listed) = audit(&holdings, 10);
        let expected: BTreeMap<&str, u64> = [
            ("accepted_kept", 1),
            ("accepted_settled", 1),
            ("unanswered_settled", 1),
            ("one_video", 1),
            ("photo_gone", 1),
            ("no_orphan_photo", 1),
            ("ledger_store_agree", 2),
            ("dead_letters_accounted", 2),
            ("session_ended", 1),
            ("session_objects_gone", 2),
        ]
        .into();
        assert_eq!(violated(&results), expected, "{listed:#?}");
        let named = |invariant: &str| -> Vec<&str> {
            listed
                .iter()
                .filter(|v| v.invariant == invariant)
                .map(|v| v.job_id.as_str())
                .collect()
        };
        assert_eq!(named("accepted_kept"), ["lost"]);
        assert_eq!(named("accepted_settled"), ["stuck"]);
        assert_eq!(named("unanswered_settled"), ["limbo"]);
        assert_eq!(named("one_video"), ["twice"]);
        assert_eq!(named("photo_gone"), ["kept"]);
        assert_eq!(named("no_orphan_photo"), ["nobody"]);
        assert_eq!(named("ledger_store_agree"), ["gone", "ghost"]);
        assert_eq!(named("session_ended"), ["s2"]);
        assert_eq!(named("session_objects_gone"), ["s1", "s2"]);
    }
}
