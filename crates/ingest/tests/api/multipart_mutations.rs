//! The multipart upload path under mutation: real submissions (JPEG and PNG photos, params with
//! motions, idempotency keys) are mutated byte-wise and structurally (flip, delete, insert,
//! duplicate, truncate, splice two bodies, mangle the boundary) and posted raw. Every answer must
//! be `202` or a 4xx with a stable code — never a 5xx, never no answer — and afterwards the store
//! holds exactly the photos of the jobs ingest accepted: no half-stored photo that nothing
//! deletes. Structured mutation rather than coverage-guided: the path is the whole async server
//! (`scripts/fuzz` drives the decoders it calls under libFuzzer). `CLIPFLEET_FUZZ_ITERS` sets
//! how many inputs run (default 3,000, about a second: the short run of the test command).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::fleet::{Fleet, error_code, jpeg, png};

const BOUNDARY: &str = "clipfleet-boundary-7d1e";

/// A deterministic generator (SplitMix64): the same seed, the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn body(params: &Value, photo: &[u8], file_name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"params\"\r\n\r\n{params}\r\n\
             --{BOUNDARY}\r\ncontent-disposition: form-data; name=\"photo\"; filename=\"{file_name}\"\r\n\
             content-type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(photo);
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// One mutation of `input`, using `other` for splices.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let len = input.len();
    match rng.below(8) {
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below(64.min(len - at));
            input.drain(at..at + n);
        }
        2 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(32);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            input.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below(256.min(len - at));
            let copy = input[at..at + n].to_vec();
            let to = rng.below(len + 1);
            input.splice(to..to, copy);
        }
        4 => input.truncate(rng.below(len + 1)),
        5 if !other.is_empty() => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        6 => {
            // Damage one of the boundary lines or part headers.
            let marks: [&[u8]; 4] = [BOUNDARY.as_bytes(), b"\r\n\r\n", b"name=\"", b"--"];
            let mark = marks[rng.below(marks.len())];
            if let Some(at) = input.windows(mark.len()).position(|w| w == mark) {
                let at = at + rng.below(mark.len());
                input[at] = b"-\r\n\"x;="[rng.below(7)];
            }
        }
        _ => {
            // Interesting values in place: a length-like number, a NUL, a quote.
            if len > 0 {
                let at = rng.below(len);
                input[at] = [0, 0xFF, b'"', b'\n', b'9'][rng.below(5)];
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // how many inputs ran, for the record
async fn mutated_uploads_get_an_answer_and_leave_no_stray_photo() -> anyhow::Result<()> {
    let iterations: usize = std::env::var("CLIPFLEET_FUZZ_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let fleet = Fleet::embedded(&[("CLIPFLEET_LIMITS__MAX_UPLOAD_BYTES", "200000")]).await?;
    fleet.create_account("ok", json!({})).await?;
    let seeds = [
        body(&json!({ "account_id": "ok" }), &jpeg(48, 32), "a.jpg"),
        body(
            &json!({ "account_id": "ok", "motion": "pan_left" }),
            &png(40, 30),
            "b.png",
        ),
        body(
            &json!({ "account_id": "ok", "motion": "parallax", "priority": "paid" }),
            &jpeg(64, 16),
            "c.jpg",
        ),
    ];
    let mut rng = Rng(0xC11F_F1EE7);
    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut by_status: std::collections::BTreeMap<(u16, String), usize> = Default::default();
    for i in 0..iterations {
        let seed = rng.below(seeds.len());
        let mut input = seeds[seed].clone();
        let other = &seeds[(seed + 1) % seeds.len()];
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut input, other);
        }
        let mut request = fleet
            .request(reqwest::Method::POST, "/v1/jobs")
            .header(
                "content-type",
                if rng.below(16) == 0 {
                    "multipart/form-data; boundary=another".to_owned()
                } else {
                    format!("multipart/form-data; boundary={BOUNDARY}")
                },
            )
            .body(input.clone());
        if rng.below(4) == 0 {
            request = request.header("idempotency-key", format!("key-{}", rng.below(8)));
        }
        let response = request
            .send()
            .await
            .map_err(|err| anyhow::anyhow!("input {i}: no answer: {err}"))?;
        let status = response.status().as_u16();
        if status == 202 || status == 200 {
            let answer: Value = response.json().await?;
            if let Some(id) = answer["job_id"].as_str() {
                accepted.insert(id.to_owned());
            }
            *by_status.entry((status, String::new())).or_default() += 1;
            continue;
        }
        let (status, code) = error_code(response).await?;
        anyhow::ensure!(
            (400..500).contains(&status) && !code.is_empty(),
            "input {i} (seed {seed}): {status} {code:?} for {:?}",
            String::from_utf8_lossy(&input[..input.len().min(400)])
        );
        *by_status.entry((status, code)).or_default() += 1;
    }
    eprintln!("multipart mutations: {iterations} inputs, answers {by_status:?}");
    // Exactly the accepted jobs' photos are stored.
    let stored: BTreeSet<String> = fleet.inputs().await?.into_iter().collect();
    let expected: BTreeSet<String> = accepted
        .iter()
        .map(|id| format!("inputs/ok/{id}"))
        .collect();
    anyhow::ensure!(
        stored == expected,
        "photos stored {} vs jobs accepted {}: extra {:?}, missing {:?}",
        stored.len(),
        expected.len(),
        stored.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&stored).collect::<Vec<_>>()
    );
    fleet.stop().await
}
