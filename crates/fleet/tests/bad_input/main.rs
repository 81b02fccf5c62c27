//! Bad input, end to end, in one table: every kind of bad request through the HTTP API (photo,
//! params, headers, accounts, ranges, ids) gets its status and stable code, and every kind of bad
//! message published to the jobs exchange by a client that is not clipfleet's (raw lapin) ends
//! with its dead-letter reason or its job's error code. The fleet runs in one process on
//! RabbitMQ (a namespace of the test's own), the sealed in-memory store and SQLite; its workers
//! serve the `noop` model. `proto/README.md` ("Bad input") is this table in prose.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, ensure};
use clipfleet_broker::{QueueRef, Receive};
use clipfleet_config::Config;
use clipfleet_fleet::{DEV_TOKEN, Fleet, FleetOptions};
use clipfleet_ledger::{JobStatus, NewJob};
use clipfleet_proto::{
    AccountId, GenerateJob, JobId, ModelRef, Motion, PoolName, Timestamp, encode,
};
use clipfleet_store::{ObjectKey, body_from_bytes};
use clipfleet_testkit::{amqp_url, png_claiming, repo_root, small_noop_manifest, unique_name};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn config(overrides: &[(&str, String)]) -> Config {
    let env = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    Config::load(None, &env).expect("config")
}

fn photo() -> Vec<u8> {
    std::fs::read(repo_root().join("models/samples/hillside.jpg")).expect("sample photo")
}

/// One HTTP case: what, the request, the status and code it must get (`""`: a status without
/// a JSON body, as `416` is).
struct HttpCase {
    what: &'static str,
    request: reqwest::RequestBuilder,
    status: u16,
    code: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_input_gets_its_code_or_dead_letter_reason() -> anyhow::Result<()> {
    let namespace = unique_name("badin");
    let mut options = FleetOptions::embedded()?;
    options.config = config(&[
        ("CLIPFLEET_BROKER__URL", amqp_url()),
        ("CLIPFLEET_POOLS__0__MODEL", "noop".to_owned()),
        ("CLIPFLEET_LIMITS__MAX_UPLOAD_BYTES", "2000000".to_owned()),
        ("CLIPFLEET_LIMITS__MAX_PIXELS", "4000000".to_owned()),
    ]);
    options.manifest = small_noop_manifest("fleet-bad-input");
    options.broker_namespace = Some(namespace.clone());
    options.janitor_every = None;
    let fleet = Fleet::start(options).await?;
    let result = run_table(&fleet, &namespace).await;
    fleet.shutdown().await?;
    result
}

async fn run_table(fleet: &Fleet, namespace: &str) -> anyhow::Result<()> {
    let base = fleet.base_url().to_owned();
    let http = reqwest::Client::new();
    let oneshot = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let api = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(DEV_TOKEN)
    };
    let account = |id: &str, birth: &str| {
        api(reqwest::Method::POST, "/v1/accounts")
            .json(&json!({ "account_id": id, "birth_date": birth }))
    };
    for (id, birth) in [
        ("ok", "1990-01-01"),
        ("gone", "1990-01-01"),
        ("kid", "1990-01-01"),
    ] {
        let made = account(id, birth).send().await?;
        ensure!(made.status() == 201, "create {id}: {}", made.status());
    }
    let ended = api(reqwest::Method::POST, "/v1/accounts/gone/terminate")
        .send()
        .await?;
    ensure!(ended.status() == 200);
    let flagged = api(reqwest::Method::PATCH, "/v1/accounts/kid")
        .json(&json!({ "birth_date": "2020-02-02" }))
        .send()
        .await?;
    ensure!(flagged.status() == 200);

    let photo = photo();
    let form = |params: Value, photo: Vec<u8>| {
        Form::new()
            .part("params", Part::text(params.to_string()))
            .part("photo", Part::bytes(photo).file_name("p.jpg"))
    };
    let submit = |params: Value, photo: Vec<u8>| {
        api(reqwest::Method::POST, "/v1/jobs").multipart(form(params, photo))
    };
    let ok = json!({ "account_id": "ok" });
    // A job that succeeds, for the id and range cases; one holding an idempotency key.
    let done = submit(ok.clone(), photo.clone()).send().await?;
    ensure!(done.status() == 202, "the good job: {}", done.status());
    let done: Value = done.json().await?;
    let done_id = done["job_id"].as_str().context("job id")?.to_owned();
    let keyed = submit(ok.clone(), photo.clone())
        .header("idempotency-key", "key-1")
        .send()
        .await?;
    ensure!(keyed.status() == 202);
    let keyed: Value = keyed.json().await?;
    let keyed_id = keyed["job_id"].as_str().context("job id")?.to_owned();
    for id in [&done_id, &keyed_id] {
        let started = Instant::now();
        loop {
            let status: Value = api(reqwest::Method::GET, &format!("/v1/jobs/{id}"))
                .send()
                .await?
                .json()
                .await?;
            if status["status"] == "succeeded" {
                break;
            }
            ensure!(started.elapsed() < WAIT, "the good job ends: {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The user deletes one video: asking for it afterwards is a bad request of its own.
    let deleted = api(reqwest::Method::DELETE, &format!("/v1/jobs/{keyed_id}"))
        .send()
        .await?;
    ensure!(
        deleted.status().is_success(),
        "delete a video: {}",
        deleted.status()
    );
    let mut truncated = photo.clone();
    truncated.truncate(truncated.len() / 2);
    let unknown_job = JobId::generate();

    let cases = vec![
        HttpCase {
            what: "no token",
            request: http
                .post(format!("{base}/v1/jobs"))
                .multipart(form(ok.clone(), photo.clone())),
            status: 401,
            code: "unauthorized",
        },
        HttpCase {
            what: "wrong token",
            request: http
                .post(format!("{base}/v1/jobs"))
                .bearer_auth("not-the-token")
                .multipart(form(ok.clone(), photo.clone())),
            status: 401,
            code: "unauthorized",
        },
        HttpCase {
            what: "basic auth instead of a bearer token",
            request: http
                .post(format!("{base}/v1/jobs"))
                .basic_auth("app", Some(DEV_TOKEN))
                .multipart(form(ok.clone(), photo.clone())),
            status: 401,
            code: "unauthorized",
        },
        HttpCase {
            what: "JSON body instead of multipart",
            request: api(reqwest::Method::POST, "/v1/jobs").json(&ok),
            status: 400,
            code: "bad_request",
        },
        HttpCase {
            what: "empty body",
            request: api(reqwest::Method::POST, "/v1/jobs"),
            status: 400,
            code: "bad_request",
        },
        HttpCase {
            what: "multipart cut short",
            request: api(reqwest::Method::POST, "/v1/jobs")
                .header("content-type", "multipart/form-data; boundary=XyZ")
                .body("--XyZ\r\ncontent-disposition: form-data; name=\"params\"\r\n\r\n{\"acc"),
            status: 400,
            code: "bad_request",
        },
        HttpCase {
            what: "no params part",
            request: api(reqwest::Method::POST, "/v1/jobs").multipart(
                Form::new().part("photo", Part::bytes(photo.clone()).file_name("p.jpg")),
            ),
            status: 400,
            code: "bad_request",
        },
        HttpCase {
            what: "params not JSON",
            request: api(reqwest::Method::POST, "/v1/jobs").multipart(
                Form::new()
                    .part("params", Part::text("account_id=ok"))
                    .part("photo", Part::bytes(photo.clone()).file_name("p.jpg")),
            ),
            status: 400,
            code: "bad_request",
        },
        HttpCase {
            what: "params a JSON array",
            request: submit(json!(["ok"]), photo.clone()),
            status: 400,
            code: "bad_request",
        },
        HttpCase {
            what: "unknown params field",
            request: submit(
                json!({ "account_id": "ok", "colour": "red" }),
                photo.clone(),
            ),
            status: 400,
            code: "bad_request",
        },
        HttpCase {
            what: "unknown motion",
            request: submit(
                json!({ "account_id": "ok", "motion": "spin" }),
                photo.clone(),
            ),
            status: 400,
            code: "invalid_params",
        },
        HttpCase {
            what: "unknown aspect",
            request: submit(
                json!({ "account_id": "ok", "aspect": "2:1" }),
                photo.clone(),
            ),
            status: 400,
            code: "invalid_params",
        },
        HttpCase {
            what: "unknown model",
            request: submit(
                json!({ "account_id": "ok", "model": "nope" }),
                photo.clone(),
            ),
            status: 422,
            code: "unknown_model",
        },
        HttpCase {
            what: "malformed account id",
            request: submit(json!({ "account_id": "a/b c" }), photo.clone()),
            status: 400,
            code: "invalid_params",
        },
        HttpCase {
            what: "no photo part",
            request: api(reqwest::Method::POST, "/v1/jobs")
                .multipart(Form::new().part("params", Part::text(ok.to_string()))),
            status: 400,
            code: "bad_request",
        },
        HttpCase {
            what: "empty photo",
            request: submit(ok.clone(), Vec::new()),
            status: 400,
            code: "bad_request",
        },
        HttpCase {
            what: "text as photo",
            request: submit(ok.clone(), b"just some text, not a photo".to_vec()),
            status: 415,
            code: "unsupported_format",
        },
        HttpCase {
            what: "truncated JPEG",
            request: submit(ok.clone(), truncated),
            status: 422,
            code: "bad_image",
        },
        HttpCase {
            what: "PNG header claiming 100000x100000 pixels",
            request: submit(ok.clone(), png_claiming(100_000, 100_000)),
            status: 413,
            code: "too_large",
        },
        HttpCase {
            what: "upload over the byte limit",
            // Its own connection: ingest answers 413 once past the limit and closes without
            // reading the rest, which would break a pooled connection for the next case.
            request: oneshot
                .post(format!("{base}/v1/jobs"))
                .bearer_auth(DEV_TOKEN)
                .multipart(form(ok.clone(), vec![0xFF; 2_100_000])),
            status: 413,
            code: "too_large",
        },
        HttpCase {
            what: "account unknown",
            request: submit(json!({ "account_id": "nobody" }), photo.clone()),
            status: 403,
            code: "account_inactive",
        },
        HttpCase {
            what: "account terminated",
            request: submit(json!({ "account_id": "gone" }), photo.clone()),
            status: 403,
            code: "account_inactive",
        },
        HttpCase {
            what: "account holder under 14",
            request: submit(json!({ "account_id": "kid" }), photo.clone()),
            status: 403,
            code: "under_age",
        },
        HttpCase {
            what: "idempotency key reused with another body",
            request: submit(
                json!({ "account_id": "ok", "motion": "pan_left" }),
                photo.clone(),
            )
            .header("idempotency-key", "key-1"),
            status: 409,
            code: "conflict",
        },
        HttpCase {
            what: "idempotency key over 255 bytes",
            request: submit(ok.clone(), photo.clone()).header("idempotency-key", "k".repeat(300)),
            status: 400,
            code: "bad_request",
        },
        HttpCase {
            what: "job id malformed",
            request: api(reqwest::Method::GET, "/v1/jobs/not-a-ulid"),
            status: 404,
            code: "not_found",
        },
        HttpCase {
            what: "job id unknown",
            request: api(reqwest::Method::GET, &format!("/v1/jobs/{unknown_job}")),
            status: 404,
            code: "not_found",
        },
        HttpCase {
            what: "video of an unknown job",
            request: api(
                reqwest::Method::GET,
                &format!("/v1/jobs/{unknown_job}/video"),
            ),
            status: 404,
            code: "not_found",
        },
        HttpCase {
            what: "range past the video's end",
            request: api(reqwest::Method::GET, &format!("/v1/jobs/{done_id}/video"))
                .header("range", "bytes=99999999-"),
            status: 416,
            code: "",
        },
        HttpCase {
            what: "video deleted on request",
            request: api(reqwest::Method::GET, &format!("/v1/jobs/{keyed_id}/video")),
            status: 404,
            code: "not_found",
        },
        HttpCase {
            what: "delete an unknown job",
            request: api(reqwest::Method::DELETE, &format!("/v1/jobs/{unknown_job}")),
            status: 404,
            code: "not_found",
        },
        HttpCase {
            what: "account body not JSON",
            request: api(reqwest::Method::POST, "/v1/accounts")
                .header("content-type", "application/json")
                .body("{"),
            status: 400,
            code: "bad_request",
        },
        HttpCase {
            what: "account birth date not a date",
            request: account("fresh", "1990-13-45"),
            status: 400,
            code: "invalid_params",
        },
        HttpCase {
            what: "account created twice",
            request: account("ok", "1990-01-01"),
            status: 409,
            code: "conflict",
        },
        HttpCase {
            what: "account of a child under 14",
            request: account("toddler", "2024-01-01"),
            status: 403,
            code: "under_age",
        },
    ];
    let mut failures = Vec::new();
    let http_cases = cases.len();
    for case in cases {
        let response = match case.request.send().await {
            Ok(response) => response,
            // The client may see the closed connection before the 413 it was answered with:
            // then ingest's own count of refusals says what it answered.
            Err(err) if case.status == 413 && case.what.starts_with("upload over") => {
                let metrics = http
                    .get(format!("{base}/metrics"))
                    .send()
                    .await?
                    .text()
                    .await?;
                if !metrics.contains("ingest_submissions_refused_total{code=\"too_large\"}") {
                    failures.push(format!(
                        "HTTP {:?}: no answer ({err}) and no too_large refusal counted",
                        case.what
                    ));
                }
                continue;
            }
            Err(err) => return Err(anyhow::Error::from(err).context(case.what)),
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
        if status != case.status || code != case.code {
            failures.push(format!(
                "HTTP {:?}: got {status} {code}, want {} {} ({body})",
                case.what, case.status, case.code
            ));
        }
    }

    let broker_cases = broker_table(fleet, namespace, &photo).await?;
    for line in &broker_cases.1 {
        failures.push(line.clone());
    }
    ensure!(
        failures.is_empty(),
        "{} of {} cases went otherwise:\n{}",
        failures.len(),
        http_cases + broker_cases.0,
        failures.join("\n")
    );
    ensure!(http_cases >= 25 && broker_cases.0 >= 10);
    Ok(())
}

/// What a broker case must end with.
enum Outcome {
    /// Dead-lettered with this reason.
    Dead(&'static str),
    /// Its job (a ledger row the test made) failed with this code.
    Failed(&'static str),
}

/// Publishes each bad message raw (lapin, publisher confirms) and checks how it ended.
/// Returns the number of cases and the ones that went otherwise.
async fn broker_table(
    fleet: &Fleet,
    namespace: &str,
    photo: &[u8],
) -> anyhow::Result<(usize, Vec<String>)> {
    let pool = PoolName::new("default")?;
    let ok = AccountId::new("ok")?;
    let other = AccountId::new("other-account")?;
    let erased = AccountId::new("erased-account")?;
    for id in [&other, &erased] {
        fleet
            .ledger
            .create_account(&clipfleet_ledger::NewAccount {
                id: id.clone(),
                birth_date: Some("1990-01-01".into()),
                under_14: false,
                personal: Default::default(),
            })
            .await?;
    }
    fleet
        .store
        .put(
            &ObjectKey::tombstone(&erased),
            body_from_bytes(b"{}".to_vec()),
        )
        .await?;
    let now = Timestamp::from_system_time(SystemTime::now()).unix_ms();
    let manifest = clipfleet_models::Manifest::load(&small_noop_manifest("fleet-bad-input-jobs"))?;
    let noop = manifest
        .models
        .iter()
        .find(|m| m.name == "noop")
        .context("noop model")?;

    // A well-formed job for `account` with its photo stored and its ledger row written; the
    // cases spoil one thing each.
    let job = |account: &AccountId| {
        clipfleet_worker::job_for_photo(
            account,
            &pool,
            noop,
            photo,
            Motion::ZoomIn,
            Timestamp::from_unix_ms(now + 600_000),
        )
    };
    let prepare = async |job: &GenerateJob, store_photo: bool| -> anyhow::Result<()> {
        if store_photo {
            fleet
                .store
                .put(
                    &ObjectKey::input(&job.account_id, job.job_id),
                    body_from_bytes(photo.to_vec()),
                )
                .await?;
        }
        fleet
            .ledger
            .insert_job(&NewJob {
                id: job.job_id,
                account_id: job.account_id.clone(),
                pool: pool.clone(),
                model: format!("{}@{}", job.model.name, job.model.version),
                input_key: ObjectKey::input(&job.account_id, job.job_id)
                    .as_str()
                    .to_owned(),
                idempotency: None,
                kind: None,
                session_id: None,
            })
            .await?;
        Ok(())
    };
    let named = |value: &Value| rmp_serde::to_vec_named(value).expect("msgpack");
    let as_value = |job: &GenerateJob| serde_json::to_value(job).expect("json");

    let mut cases: Vec<(&'static str, Vec<u8>, Outcome, Option<JobId>)> = Vec::new();
    cases.push((
        "not MessagePack",
        b"\x00\x01garbage\xff".to_vec(),
        Outcome::Dead("undecodable"),
        None,
    ));
    cases.push(("empty body", Vec::new(), Outcome::Dead("undecodable"), None));
    let j = job(&ok);
    cases.push((
        "JSON instead of MessagePack",
        serde_json::to_vec(&j)?,
        Outcome::Dead("undecodable"),
        None,
    ));
    let mut v = as_value(&job(&ok));
    v["v"] = json!(99);
    cases.push((
        "schema version 99",
        named(&v),
        Outcome::Dead("undecodable"),
        None,
    ));
    let mut v = as_value(&job(&ok));
    v.as_object_mut().context("a map")?.remove("job_id");
    cases.push(("no job_id", named(&v), Outcome::Dead("undecodable"), None));
    let mut v = as_value(&job(&ok));
    v["trace"] = json!("x".repeat(300 * 1024));
    cases.push((
        "over 256 KiB",
        named(&v),
        Outcome::Dead("undecodable"),
        None,
    ));
    let mut v = as_value(&job(&ok));
    v["params"]["frames"] = json!(0);
    cases.push(("zero frames", named(&v), Outcome::Dead("undecodable"), None));
    let mut v = as_value(&job(&ok));
    v["job_id"] = json!("not-a-ulid");
    cases.push((
        "malformed job id",
        named(&v),
        Outcome::Dead("undecodable"),
        None,
    ));

    let mut unknown_model = job(&ok);
    unknown_model.model = ModelRef {
        name: "nope".into(),
        version: "1".into(),
    };
    prepare(&unknown_model, true).await?;
    cases.push((
        "unknown model",
        encode(&unknown_model)?,
        Outcome::Failed("unknown_model"),
        Some(unknown_model.job_id),
    ));
    let mut expired = job(&ok);
    expired.deadline = Timestamp::from_unix_ms(now - 1_000);
    prepare(&expired, true).await?;
    cases.push((
        "deadline passed",
        encode(&expired)?,
        Outcome::Failed("expired"),
        Some(expired.job_id),
    ));
    let for_erased = job(&erased);
    prepare(&for_erased, true).await?;
    cases.push((
        "account erased (tombstone)",
        encode(&for_erased)?,
        Outcome::Failed("account_erased"),
        Some(for_erased.job_id),
    ));
    let missing = job(&ok);
    prepare(&missing, false).await?;
    cases.push((
        "photo missing",
        encode(&missing)?,
        Outcome::Failed("not_found"),
        Some(missing.job_id),
    ));
    // The key names another account's photo: the worker reads only the job's own key.
    let theirs = job(&other);
    fleet
        .store
        .put(
            &ObjectKey::input(&other, theirs.job_id),
            body_from_bytes(photo.to_vec()),
        )
        .await?;
    let mut stolen = job(&ok);
    stolen.input.key = ObjectKey::input(&other, theirs.job_id).as_str().to_owned();
    prepare(&stolen, false).await?;
    cases.push((
        "photo key of another account",
        encode(&stolen)?,
        Outcome::Failed("not_found"),
        Some(stolen.job_id),
    ));
    let mut tampered = job(&ok);
    tampered.input.sha256 = clipfleet_proto::Sha256Hex::from_digest(&[7; 32]);
    prepare(&tampered, true).await?;
    cases.push((
        "photo does not match its sha256",
        encode(&tampered)?,
        Outcome::Failed("bad_image"),
        Some(tampered.job_id),
    ));
    let mut v = as_value(&job(&ok));
    let spin: JobId = serde_json::from_value(v["job_id"].clone())?;
    v["params"]["motion"] = json!("spin");
    let spin_job: GenerateJob = serde_json::from_value(v.clone())?;
    prepare(&spin_job, true).await?;
    cases.push((
        "unknown motion",
        named(&v),
        Outcome::Failed("invalid_params"),
        Some(spin),
    ));
    let mut v = as_value(&job(&ok));
    let wide: JobId = serde_json::from_value(v["job_id"].clone())?;
    v["params"]["aspect"] = json!("2:1");
    let wide_job: GenerateJob = serde_json::from_value(v.clone())?;
    prepare(&wide_job, true).await?;
    cases.push((
        "unknown aspect",
        named(&v),
        Outcome::Failed("invalid_params"),
        Some(wide),
    ));

    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let exchange = format!("{namespace}.jobs");
    for (what, body, _, _) in &cases {
        channel
            .basic_publish(
                exchange.as_str().into(),
                "default".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .with_context(|| format!("publish {what}"))?
            .await
            .with_context(|| format!("confirm {what}"))?;
    }
    let _ = connection.close(200, "done".into()).await;

    // Dead letters: collect every reason (taken for good: the test's namespace is its own).
    let expected_dead = cases
        .iter()
        .filter(|c| matches!(c.2, Outcome::Dead(_)))
        .count();
    let mut dead: BTreeMap<String, usize> = BTreeMap::new();
    let started = Instant::now();
    while dead.values().sum::<usize>() < expected_dead && started.elapsed() < WAIT {
        let got = fleet
            .broker
            .receive(
                &QueueRef::Dead(pool.clone()),
                Receive::new(64, Duration::from_secs(30), Duration::from_millis(500)),
            )
            .await?;
        for delivery in &got {
            *dead
                .entry(delivery.dead_reason().unwrap_or("(none)").to_owned())
                .or_default() += 1;
        }
        let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
        fleet.broker.ack(&leases).await?;
    }
    let mut failures = Vec::new();
    let mut want_dead: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, outcome, _) in &cases {
        if let Outcome::Dead(reason) = outcome {
            *want_dead.entry((*reason).to_owned()).or_default() += 1;
        }
    }
    if dead != want_dead {
        failures.push(format!(
            "broker dead letters by reason: got {dead:?}, want {want_dead:?}"
        ));
    }
    for (what, _, outcome, job) in &cases {
        let (Outcome::Failed(code), Some(job)) = (outcome, job) else {
            continue;
        };
        let started = Instant::now();
        let row = loop {
            let row = fleet.ledger.get_job(*job).await?;
            if row.status.is_terminal() || started.elapsed() > WAIT {
                break row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let got = row.error_code.map_or("(none)", |c| c.as_str());
        if row.status == JobStatus::Succeeded || got != *code {
            failures.push(format!(
                "broker {what:?}: job ended {} {got}, want failed {code}",
                row.status.as_str()
            ));
        }
    }
    // The other account's photo was not touched by the job that named it.
    ensure!(
        fleet
            .store
            .head(&ObjectKey::input(&other, theirs.job_id))
            .await
            .is_ok(),
        "another account's photo is untouched"
    );
    Ok((cases.len(), failures))
}
