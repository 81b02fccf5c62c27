//! Decoding never panics and never trusts its input: random bytes, truncated messages, wrong
//! types, deep nesting and oversized blobs all come back as typed errors.

use std::fs;
use std::path::Path;

use clipfleet_proto::{
    AccountId, Control, DecodeError, EventBatch, GenerateJob, InputRef, JobId, JobKind,
    MAX_MESSAGE_BYTES, MAX_SUPPORTED_VERSION, ModelRef, Motion, Params, PoolName, Priority,
    SCHEMA_VERSION, Sha256Hex, Timestamp, decode, encode,
};
use proptest::prelude::*;

fn golden(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../proto/vectors")
        .join(name);
    fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

const GOLDEN: [&str; 7] = [
    "generate_job.minimal.msgpack",
    "generate_job.paid_traced.msgpack",
    "event_batch.lifecycle.msgpack",
    "event_batch.failures.msgpack",
    "control.drain_pool.msgpack",
    "control.resume_all.msgpack",
    "control.heartbeat.msgpack",
];

/// Decodes `bytes` as every message type; the result only matters in that it must return.
fn decode_all(bytes: &[u8]) -> [bool; 3] {
    [
        decode::<GenerateJob>(bytes).is_ok(),
        decode::<EventBatch>(bytes).is_ok(),
        decode::<Control>(bytes).is_ok(),
    ]
}

/// Replaces the value at a pseudo-random position of a msgpack tree with `replacement`.
fn replace_nth(value: &mut rmpv::Value, n: &mut usize, replacement: &rmpv::Value) -> bool {
    if *n == 0 {
        *value = replacement.clone();
        return true;
    }
    *n -= 1;
    match value {
        rmpv::Value::Map(entries) => entries
            .iter_mut()
            .any(|(_, v)| replace_nth(v, n, replacement)),
        rmpv::Value::Array(items) => items.iter_mut().any(|v| replace_nth(v, n, replacement)),
        _ => false,
    }
}

fn msgpack_scalar() -> impl Strategy<Value = rmpv::Value> {
    prop_oneof![
        Just(rmpv::Value::Nil),
        any::<bool>().prop_map(rmpv::Value::Boolean),
        any::<i64>().prop_map(rmpv::Value::from),
        any::<u64>().prop_map(rmpv::Value::from),
        any::<f64>().prop_map(rmpv::Value::F64),
        ".{0,40}".prop_map(|s| rmpv::Value::from(s.as_str())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(rmpv::Value::Binary),
        Just(rmpv::Value::Array(vec![])),
        Just(rmpv::Value::Map(vec![])),
    ]
}

fn valid_job() -> impl Strategy<Value = GenerateJob> {
    (
        any::<u128>(),
        "[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}",
        "[a-z0-9][a-z0-9-]{0,47}",
        any::<[u8; 32]>(),
        (
            1u16..=600,
            1u16..=120,
            1u16..=4096,
            1u16..=4096,
            any::<u64>(),
        ),
        (
            0usize..Motion::KNOWN.len(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
        ),
        proptest::option::of("[0-9a-f-]{1,55}"),
    )
        .prop_map(
            |(ulid, account, pool, digest, (frames, fps, width, height, seed), rest, trace)| {
                let (motion, paid, submitted, deadline) = rest;
                let job_id = JobId::from_ulid(ulid::Ulid(ulid));
                let account_id = AccountId::new(account).expect("account");
                // Both kinds, each at its schema version.
                let kind = if seed % 2 == 0 {
                    JobKind::Video
                } else {
                    JobKind::Image
                };
                GenerateJob {
                    v: kind.schema_version(),
                    kind,
                    input: InputRef {
                        key: format!("inputs/{account_id}/{job_id}"),
                        size: u64::from(width) * u64::from(height),
                        sha256: Sha256Hex::from_digest(&digest),
                        content_type: "image/png".into(),
                    },
                    job_id,
                    account_id,
                    pool: PoolName::new(pool).expect("pool"),
                    model: ModelRef {
                        name: "motion".into(),
                        version: "1".into(),
                    },
                    params: Params {
                        frames,
                        fps,
                        width,
                        height,
                        seed,
                        motion: Motion::KNOWN[motion],
                        aspect: clipfleet_proto::Aspect::Auto,
                    },
                    session: None,
                    priority: if paid { Priority::Paid } else { Priority::Free },
                    submitted_at: Timestamp::from_unix_ms(submitted),
                    deadline: Timestamp::from_unix_ms(deadline),
                    trace,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
    }

    #[test]
    fn random_bytes_after_a_map_header_never_panic(
        header in prop_oneof![Just(0x80u8..=0x8f), Just(0xdeu8..=0xdf)].prop_flat_map(|r| r),
        tail in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = vec![header];
        bytes.extend(tail);
        decode_all(&bytes);
    }

    #[test]
    fn every_truncation_of_a_valid_message_is_an_error(which in 0..GOLDEN.len(), cut in any::<prop::sample::Index>()) {
        let bytes = golden(GOLDEN[which]);
        let cut = cut.index(bytes.len());
        prop_assert_eq!(decode_all(&bytes[..cut]), [false, false, false]);
    }

    #[test]
    fn a_value_of_the_wrong_type_anywhere_never_panics(
        which in 0..GOLDEN.len(),
        position in 0usize..64,
        replacement in msgpack_scalar(),
    ) {
        let bytes = golden(GOLDEN[which]);
        let mut value = rmpv::decode::read_value(&mut bytes.as_slice()).expect("golden");
        let mut n = position;
        replace_nth(&mut value, &mut n, &replacement);
        let mut mutated = Vec::new();
        rmpv::encode::write_value(&mut mutated, &value).expect("encode");
        decode_all(&mutated);
    }

    #[test]
    fn valid_jobs_round_trip(job in valid_job()) {
        let bytes = encode(&job).expect("encode");
        let back: GenerateJob = decode(&bytes).expect("decode");
        prop_assert_eq!(back, job);
    }
}

fn with_field(name: &str, key: &str, replacement: rmpv::Value) -> Vec<u8> {
    let bytes = golden(name);
    let mut value = rmpv::decode::read_value(&mut bytes.as_slice()).expect("golden");
    let rmpv::Value::Map(entries) = &mut value else {
        panic!("not a map")
    };
    let slot = entries
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some(key))
        .unwrap_or_else(|| panic!("no field {key}"));
    slot.1 = replacement;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value).expect("encode");
    out
}

#[test]
fn wrong_types_are_malformed() {
    let cases = [
        ("job_id", rmpv::Value::from(42)),
        ("job_id", rmpv::Value::from("not-a-ulid")),
        ("account_id", rmpv::Value::from("../../etc")),
        ("params", rmpv::Value::from("fast")),
        ("submitted_at", rmpv::Value::from(-1)),
        ("input", rmpv::Value::Nil),
    ];
    for (key, replacement) in cases {
        let bytes = with_field("generate_job.minimal.msgpack", key, replacement.clone());
        match decode::<GenerateJob>(&bytes) {
            Err(DecodeError::Malformed {
                kind: "generate_job",
                ..
            }) => {}
            other => panic!("{key} = {replacement}: {other:?}"),
        }
    }
}

#[test]
fn rule_breaking_values_are_invalid() {
    let mut job: GenerateJob = decode(&golden("generate_job.minimal.msgpack")).expect("golden");
    job.params.frames = 0;
    let bytes = encode(&job).expect("encode");
    assert!(matches!(
        decode::<GenerateJob>(&bytes),
        Err(DecodeError::Invalid { .. })
    ));

    let empty = EventBatch {
        v: SCHEMA_VERSION,
        events: vec![],
    };
    let bytes = encode(&empty).expect("encode");
    assert!(matches!(
        decode::<EventBatch>(&bytes),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn other_schema_versions_are_refused_by_name() {
    for v in [0u32, MAX_SUPPORTED_VERSION + 1, u32::MAX] {
        let bytes = with_field("generate_job.minimal.msgpack", "v", rmpv::Value::from(v));
        match decode::<GenerateJob>(&bytes) {
            Err(DecodeError::UnsupportedVersion { got, .. }) => assert_eq!(got, v),
            other => panic!("v = {v}: {other:?}"),
        }
    }
    // A future version that reshaped the message is still reported as a version problem.
    let reshaped = with_field(
        "generate_job.minimal.msgpack",
        "v",
        rmpv::Value::from(MAX_SUPPORTED_VERSION + 1),
    );
    let reshaped = {
        let mut value = rmpv::decode::read_value(&mut reshaped.as_slice()).expect("msgpack");
        let rmpv::Value::Map(entries) = &mut value else {
            panic!("not a map")
        };
        entries.retain(|(k, _)| k.as_str() != Some("job_id"));
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &value).expect("encode");
        out
    };
    assert!(matches!(
        decode::<GenerateJob>(&reshaped),
        Err(DecodeError::UnsupportedVersion { got, .. }) if got == MAX_SUPPORTED_VERSION + 1
    ));
}

#[test]
fn a_ten_megabyte_blob_is_refused_before_parsing() {
    let blob = vec![0xc4; 10 * 1024 * 1024];
    match decode::<GenerateJob>(&blob) {
        Err(DecodeError::TooLarge { len, max, .. }) => {
            assert_eq!(len, blob.len());
            assert_eq!(max, MAX_MESSAGE_BYTES);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decode::<Control>(&[]),
        Err(DecodeError::Empty { .. })
    ));
}

#[test]
fn forged_lengths_and_deep_nesting_are_errors() {
    // A str32 header claiming 4 GiB, with 10 bytes behind it.
    let mut forged = vec![0x81, 0xa1, b'v', 0xdb, 0xff, 0xff, 0xff, 0xff];
    forged.extend_from_slice(b"0123456789");
    assert!(decode::<GenerateJob>(&forged).is_err());
    // An array32 header claiming 4 billion elements.
    assert!(
        decode::<EventBatch>(&[
            0x81, 0xa6, b'e', b'v', b'e', b'n', b't', b's', 0xdd, 0xff, 0xff, 0xff, 0xff
        ])
        .is_err()
    );
    // An unknown field nested 200,000 arrays deep: refused, not a stack overflow.
    let mut deep = vec![0x81, 0xa5, b'e', b'x', b't', b'r', b'a'];
    deep.extend(std::iter::repeat_n(0x91, 200_000));
    deep.push(0xc0);
    assert!(decode_all(&deep) == [false, false, false]);
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = golden("control.heartbeat.msgpack");
    bytes.push(0xc0);
    assert!(matches!(
        decode::<Control>(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn every_decode_error_is_undecodable() {
    let err = decode::<Control>(&[0xc1]).expect_err("0xc1 is never valid msgpack");
    assert_eq!(err.code(), clipfleet_proto::ErrorCode::Undecodable);
}
