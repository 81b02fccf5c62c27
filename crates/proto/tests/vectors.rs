//! Golden vectors: `proto/vectors/<kind>.<case>.json` is the readable twin of
//! `<kind>.<case>.msgpack`. Each msgpack file must decode to its twin and re-encode to the very
//! same bytes; `compat/` holds messages from a "newer writer" (extra fields, unknown enum values)
//! that this reader must accept.
//!
//! After a deliberate change of the encoding, rewrite the msgpack files with
//! `CLIPFLEET_BLESS_VECTORS=1 cargo test -p clipfleet-proto --test vectors` and review the diff.

use std::fmt::Debug;
use std::fs;
use std::path::{Path, PathBuf};

use clipfleet_proto::{
    Control, DecodeError, EventBatch, GenerateJob, JobKind, Message, decode, encode,
};
use serde::de::DeserializeOwned;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/vectors")
}

fn blessing() -> bool {
    std::env::var_os("CLIPFLEET_BLESS_VECTORS").is_some()
}

/// The JSON files of `dir` whose name starts with `kind.` and ends with `suffix`.
fn cases(dir: &Path, kind: &str, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&format!("{kind}.")) && name.ends_with(suffix)
        })
        .collect();
    found.sort();
    found
}

fn read_json<M: DeserializeOwned>(path: &Path) -> M {
    let text = fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn check_golden<M: Message + PartialEq + Debug>(kind: &str) -> usize {
    let jsons = cases(&vectors_dir(), kind, ".json");
    for json_path in &jsons {
        let msgpack_path = json_path.with_extension("msgpack");
        let twin: M = read_json(json_path);
        let encoded = encode(&twin).expect("encode twin");
        if blessing() {
            fs::write(&msgpack_path, &encoded).expect("write vector");
        }
        let golden = fs::read(&msgpack_path)
            .unwrap_or_else(|err| panic!("{}: {err}", msgpack_path.display()));
        let decoded: M =
            decode(&golden).unwrap_or_else(|err| panic!("{}: {err}", msgpack_path.display()));
        assert_eq!(
            decoded,
            twin,
            "{} decodes to its JSON twin",
            msgpack_path.display()
        );
        let reencoded = encode(&decoded).expect("re-encode");
        assert_eq!(
            reencoded,
            golden,
            "{} re-encodes byte for byte",
            msgpack_path.display()
        );
        assert_eq!(
            encoded,
            golden,
            "{} is what the twin encodes to",
            json_path.display()
        );
    }
    jsons.len()
}

#[test]
fn generate_job_vectors_round_trip_byte_for_byte() {
    assert!(check_golden::<GenerateJob>("generate_job") >= 2);
}

#[test]
fn event_batch_vectors_round_trip_byte_for_byte() {
    assert!(check_golden::<EventBatch>("event_batch") >= 2);
}

#[test]
fn control_vectors_round_trip_byte_for_byte() {
    assert!(check_golden::<Control>("control") >= 3);
}

/// JSON to MessagePack without our types in between, as another team's producer would write it.
fn json_to_msgpack(value: &serde_json::Value) -> Vec<u8> {
    fn convert(value: &serde_json::Value) -> rmpv::Value {
        match value {
            serde_json::Value::Null => rmpv::Value::Nil,
            serde_json::Value::Bool(b) => rmpv::Value::Boolean(*b),
            serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => rmpv::Value::from(u),
                (None, Some(i), _) => rmpv::Value::from(i),
                (_, _, Some(f)) => rmpv::Value::F64(f),
                _ => unreachable!("a JSON number is u64, i64 or f64"),
            },
            serde_json::Value::String(s) => rmpv::Value::from(s.as_str()),
            serde_json::Value::Array(items) => {
                rmpv::Value::Array(items.iter().map(convert).collect())
            }
            serde_json::Value::Object(map) => rmpv::Value::Map(
                map.iter()
                    .map(|(k, v)| (rmpv::Value::from(k.as_str()), convert(v)))
                    .collect(),
            ),
        }
    }
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &convert(value)).expect("write msgpack");
    bytes
}

fn check_compat<M: Message + PartialEq + Debug>(kind: &str) -> usize {
    let dir = vectors_dir().join("compat");
    let wires = cases(&dir, kind, ".wire.json");
    for wire_path in &wires {
        let name = wire_path.to_str().expect("utf-8 path");
        let msgpack_path = PathBuf::from(name.replace(".wire.json", ".msgpack"));
        let expected_path = PathBuf::from(name.replace(".wire.json", ".expected.json"));
        let wire: serde_json::Value = read_json(wire_path);
        if blessing() {
            fs::write(&msgpack_path, json_to_msgpack(&wire)).expect("write compat vector");
        }
        let golden = fs::read(&msgpack_path)
            .unwrap_or_else(|err| panic!("{}: {err}", msgpack_path.display()));
        assert_eq!(
            golden,
            json_to_msgpack(&wire),
            "{} matches its wire JSON",
            msgpack_path.display()
        );
        let decoded: M = decode(&golden).unwrap_or_else(|err| {
            panic!("an old reader refused {}: {err}", msgpack_path.display())
        });
        let expected: M = read_json(&expected_path);
        assert_eq!(decoded, expected, "{}", msgpack_path.display());
    }
    wires.len()
}

#[test]
fn old_reader_accepts_newer_generate_job() {
    assert!(check_compat::<GenerateJob>("generate_job") >= 1);
}

/// An image job is schema version 2: a reader of version 1 alone refuses it by its version (it is
/// dead-lettered `undecodable`, never run as a video). This reader reads it, and refuses one that
/// claims version 1, or names a kind this reader does not serve.
#[test]
fn an_image_job_is_version_2_and_refused_where_it_would_be_misread() {
    let path = vectors_dir().join("generate_job.image.json");
    let wire: serde_json::Value = read_json(&path);
    let job: GenerateJob = decode(&json_to_msgpack(&wire)).expect("an image job reads");
    assert_eq!((job.v, job.kind), (2, JobKind::Image));
    assert_eq!(JobKind::Image.schema_version(), 2);
    assert_eq!(JobKind::Video.schema_version(), 1);
    let minimal: GenerateJob = read_json(&vectors_dir().join("generate_job.minimal.json"));
    assert_eq!(
        (minimal.v, minimal.kind),
        (1, JobKind::Video),
        "absent kind is video"
    );
    for (field, value, why) in [
        ("v", serde_json::json!(1), "schema version 2"),
        ("kind", serde_json::json!("hologram"), "kind"),
    ] {
        let mut changed = wire.clone();
        changed[field] = value;
        match decode::<GenerateJob>(&json_to_msgpack(&changed)) {
            Err(DecodeError::Invalid { source, .. }) => {
                assert!(source.to_string().contains(why), "{source}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}

/// A job with a session is schema version 3: a reader of version 2 would run a `personalize` job
/// as nothing it knows and a session's image job without the session's adapter, so it refuses
/// both by their version. This reader reads them, and refuses one that claims version 2, a
/// `personalize` job without its session or its photos, and photos on a job that only uses the
/// session's adapter.
#[test]
fn a_session_s_jobs_are_version_3_and_refused_where_they_would_be_misread() {
    let personalize: serde_json::Value =
        read_json(&vectors_dir().join("generate_job.personalize.json"));
    let job: GenerateJob = decode(&json_to_msgpack(&personalize)).expect("a personalize job reads");
    assert_eq!((job.v, job.kind), (3, JobKind::Personalize));
    assert_eq!(job.session.as_ref().map(|s| s.photos.len()), Some(2));
    assert_eq!(job.schema_version(), 3);
    let image: serde_json::Value =
        read_json(&vectors_dir().join("generate_job.session_image.json"));
    let job: GenerateJob = decode(&json_to_msgpack(&image)).expect("a session's image job reads");
    assert_eq!(
        (job.v, job.kind, job.schema_version()),
        (3, JobKind::Image, 3)
    );
    let refused =
        |wire: &serde_json::Value, why: &str| match decode::<GenerateJob>(&json_to_msgpack(wire)) {
            Err(DecodeError::Invalid { source, .. }) => {
                assert!(source.to_string().contains(why), "{source}");
            }
            other => panic!("{why}: {other:?}"),
        };
    for wire in [&personalize, &image] {
        let mut older = wire.clone();
        older["v"] = serde_json::json!(2);
        refused(&older, "schema version 3");
    }
    let mut no_session = personalize.clone();
    no_session.as_object_mut().expect("map").remove("session");
    refused(&no_session, "needs its session");
    let mut no_photos = personalize.clone();
    no_photos["session"]["photos"] = serde_json::json!([]);
    refused(&no_photos, "trains on 1..=");
    let mut photos_on_image = image.clone();
    photos_on_image["session"]["photos"] = personalize["session"]["photos"].clone();
    refused(&photos_on_image, "only a personalize job");
}

#[test]
fn old_reader_accepts_newer_event_batch() {
    assert!(check_compat::<EventBatch>("event_batch") >= 1);
}

/// Every golden message, with an extra field added to its top-level map and to every nested
/// map, still decodes to the same value.
#[test]
fn extra_fields_anywhere_are_ignored() {
    fn add_extra(value: &mut rmpv::Value) {
        match value {
            rmpv::Value::Map(entries) => {
                for (_, v) in entries.iter_mut() {
                    add_extra(v);
                }
                entries.push((
                    rmpv::Value::from("zz_added_later"),
                    rmpv::Value::Array(vec![rmpv::Value::from(1), rmpv::Value::from("x")]),
                ));
            }
            rmpv::Value::Array(items) => items.iter_mut().for_each(add_extra),
            _ => {}
        }
    }
    fn check<M: Message + PartialEq + Debug>(kind: &str) {
        for json_path in cases(&vectors_dir(), kind, ".json") {
            let golden = fs::read(json_path.with_extension("msgpack")).expect("vector");
            let mut value = rmpv::decode::read_value(&mut golden.as_slice()).expect("msgpack");
            add_extra(&mut value);
            let mut widened = Vec::new();
            rmpv::encode::write_value(&mut widened, &value).expect("encode");
            assert!(widened.len() > golden.len());
            let original: M = decode(&golden).expect("golden decodes");
            let decoded: M = decode(&widened)
                .unwrap_or_else(|err| panic!("{} with extra fields: {err}", json_path.display()));
            assert_eq!(decoded, original, "{}", json_path.display());
        }
    }
    check::<GenerateJob>("generate_job");
    check::<EventBatch>("event_batch");
    check::<Control>("control");
}
