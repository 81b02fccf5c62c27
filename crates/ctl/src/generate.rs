//! `generate` (the main job: a photo becomes a video, or with `--kind` a portrait or a
//! beautified photo, through the real ingest HTTP path) and
//! `up` (the whole fleet in one process, with the console), `console` (the console alone).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clipfleet_client::{Client, ClientError};
use clipfleet_config::{Config, PoolConfig};
use clipfleet_fleet::{DEV_TOKEN, Fleet, FleetOptions};
use clipfleet_models::{Manifest, ModelOutput, ModelSpec};
use clipfleet_proto::{AccountId, JobId, PoolName};
use clipfleet_store::{ObjectKey, StoreErrorKind};
use serde_json::json;

use crate::cli::{ConsoleArgs, GenerateArgs, Output, UpArgs};
use crate::console::{self, ConsoleOptions};
use crate::ctx::Ctx;
use crate::exit::{CtlResult, Exit, Failure};
use crate::output::Report;
use crate::progress;

fn client_failure(err: ClientError) -> Failure {
    let exit = match &err {
        ClientError::Transport(_) => Exit::Unavailable,
        ClientError::Api { status: 404, .. } => Exit::NotFound,
        _ => Exit::Failed,
    };
    Failure::new(exit, err)
}

/// `generate PHOTO -o OUT`.
pub async fn generate(ctx: &Ctx, args: &GenerateArgs) -> CtlResult<Report> {
    let started = Instant::now();
    let photo = Bytes::from(
        std::fs::read(&args.photo)
            .with_context(|| format!("read {}", args.photo.display()))
            .map_err(|err| Failure::new(Exit::NotFound, err))?,
    );
    let model = args.model.clone().or_else(|| kind_model(&args.kind));
    let fleet = match &args.ingest {
        Some(_) => None,
        None => {
            let spinner = progress::spinner(ctx, "starting the embedded fleet (loading models)");
            let mut options = FleetOptions::embedded()?;
            options.config = (*ctx.config).clone();
            options.janitor_every = None;
            if let Some(model) = &model {
                let manifest = Manifest::load(&options.manifest).map_err(anyhow::Error::from)?;
                serve_model(&mut options.config, &manifest, model)?;
                let image = manifest
                    .models
                    .iter()
                    .any(|spec| spec.name == *model && spec.output == ModelOutput::Image);
                if args.kind != "video" && !image {
                    return Err(Failure::msg(
                        Exit::Usage,
                        format!("--kind {model}: no image model of that name in the manifest"),
                    ));
                }
            }
            let fleet = Fleet::start(options).await?;
            spinner.finish_and_clear();
            Some(fleet)
        }
    };
    let result = run_job(ctx, args, model.as_deref(), fleet.as_ref(), photo, started).await;
    if let Some(fleet) = fleet {
        fleet.shutdown().await.context("stop the embedded fleet")?;
    }
    result
}

/// The model a `--kind` names: none for `video` (the pool's), else the image model of that name.
fn kind_model(kind: &str) -> Option<String> {
    (kind != "video").then(|| kind.to_owned())
}

/// `name` or `name@version` as the API's params.
fn model_params(model: &str) -> (&str, Option<&str>) {
    match model.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (model, None),
    }
}

/// Adds a pool for `model` (of the fleet's `manifest`) to an in-process fleet's config when
/// none serves it (a copy of the first pool's limits, named after the model).
fn serve_model(config: &mut Config, manifest: &Manifest, model: &str) -> CtlResult<()> {
    let (name, version) = model_params(model);
    let serves = |pool: &PoolConfig| {
        pool.model == name && version.is_none_or(|version| pool.model_version == version)
    };
    if config.pools.iter().any(serves) {
        return Ok(());
    }
    let spec = manifest
        .models
        .iter()
        .find(|spec| spec.name == name && version.is_none_or(|v| spec.version == v))
        .filter(|spec| spec.is_servable())
        .ok_or_else(|| {
            let servable: Vec<String> = manifest
                .models
                .iter()
                .filter(|spec| spec.is_servable())
                .map(ModelSpec::key)
                .collect();
            Failure::msg(
                Exit::Usage,
                format!("no model {model} to generate with; the manifest has {servable:?}"),
            )
        })?;
    let Some(mut pool) = config.pools.first().cloned() else {
        return Err(Failure::msg(Exit::Usage, "the config has no pool to copy"));
    };
    pool.name =
        PoolName::new(spec.name.replace('.', "-")).map_err(|err| Failure::new(Exit::Usage, err))?;
    pool.model = spec.name.clone();
    pool.model_version = spec.version.clone();
    config.pools.push(pool);
    Ok(())
}

async fn run_job(
    ctx: &Ctx,
    args: &GenerateArgs,
    model: Option<&str>,
    fleet: Option<&Fleet>,
    photo: Bytes,
    started: Instant,
) -> CtlResult<Report> {
    let base = match (fleet, &args.ingest) {
        (Some(fleet), _) => fleet.base_url().to_owned(),
        (None, Some(url)) => url.clone(),
        (None, None) => unreachable!("generate runs a fleet or has --ingest"),
    };
    let token = args.token.clone().unwrap_or_else(|| DEV_TOKEN.to_owned());
    let client = Client::new(&base, &token)
        .map_err(client_failure)?
        .with_device_id("clipctl");
    client
        .ensure_account(&args.account, "1990-01-01")
        .await
        .map_err(client_failure)?;
    let mut params = json!({ "motion": args.motion, "aspect": args.aspect });
    if let Some(model) = model {
        let (name, version) = model_params(model);
        params["model"] = json!(name);
        if let Some(version) = version {
            params["model_version"] = json!(version);
        }
    }
    let accepted = client
        .submit(&args.account, photo, params, None)
        .await
        .map_err(client_failure)?;
    let bar = progress::bar(ctx, 100, "%");
    bar.set_message("queued");
    let status = client
        .wait(
            &accepted.job_id,
            Duration::from_millis(100),
            args.timeout,
            |status| {
                bar.set_message(status.status.clone());
                if let Some(pct) = status.progress_pct {
                    bar.set_position(u64::from(pct));
                }
            },
        )
        .await
        .map_err(|err| match err {
            ClientError::Protocol(message) => Failure::msg(Exit::Timeout, message),
            other => client_failure(other),
        })?;
    bar.finish_and_clear();
    if status.status != "succeeded" {
        let code = status
            .error_code()
            .map_or_else(|| status.status.clone(), |c| c.as_str().to_owned());
        return Err(Failure::msg(
            Exit::Failed,
            format!("job {} ended {}: {code}", status.job_id, status.status),
        ));
    }
    let output = client
        .output(&accepted.job_id)
        .await
        .map_err(client_failure)?;
    std::fs::write(&args.out, &output).with_context(|| format!("write {}", args.out.display()))?;
    // The photo goes right after the output is stored; the ledger hears of it by event.
    let mut status = status;
    let waited = Instant::now();
    while status.input_deleted_at_ms.is_none() && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = client.job(&accepted.job_id).await.map_err(client_failure)?;
    }
    // In-process, look in the store itself as well.
    let photo_in_store = match fleet {
        Some(fleet) => {
            let job: JobId = accepted
                .job_id
                .parse()
                .map_err(|_| Failure::msg(Exit::Failed, "ingest returned a malformed job id"))?;
            let account =
                AccountId::new(&args.account).map_err(|err| Failure::new(Exit::Usage, err))?;
            match fleet.store.head(&ObjectKey::input(&account, job)).await {
                Ok(_) => Some(true),
                Err(err) if err.kind() == StoreErrorKind::NotFound => Some(false),
                Err(err) => return Err(anyhow::Error::from(err).into()),
            }
        }
        None => None,
    };
    let photo_gone = status.input_deleted_at_ms.is_some() && photo_in_store != Some(true);
    let after_ms = match (status.input_deleted_at_ms, status.finished_at_ms) {
        (Some(deleted), Some(finished)) => Some(deleted.saturating_sub(finished)),
        _ => None,
    };
    let text = format!(
        "{}: {} bytes, {} (job {})\nmodels: {}\nsubmitted → succeeded {} ms; total {} ms\nphoto deleted from the store after generation: {}\n",
        args.out.display(),
        output.len(),
        status.kind,
        accepted.job_id,
        status.runs.join(" → "),
        status
            .finished_at_ms
            .unwrap_or(status.submitted_at_ms)
            .saturating_sub(status.submitted_at_ms),
        started.elapsed().as_millis(),
        match (photo_gone, after_ms) {
            (true, Some(ms)) => format!("yes ({ms} ms after the {} was stored)", status.kind),
            (true, None) => "yes".to_owned(),
            (false, _) => "NO".to_owned(),
        }
    );
    if !photo_gone {
        return Err(Failure::msg(
            Exit::Failed,
            format!("{text}the photo outlived its {}", status.kind),
        ));
    }
    Ok(Report::new(
        json!({
            "job_id": accepted.job_id,
            "out": args.out.display().to_string(),
            "bytes": output.len(),
            "kind": status.kind,
            "runs": status.runs,
            "photo_deleted": photo_gone,
            "photo_deleted_after_ms": after_ms,
            "took_ms": started.elapsed().as_millis() as u64,
        }),
        text,
    ))
}

/// `up`: the fleet in one process until Ctrl-C or SIGTERM.
#[allow(clippy::print_stderr)] // the banner: how to reach the fleet
pub async fn up(ctx: &Ctx, args: &UpArgs) -> CtlResult<Report> {
    let mut options = FleetOptions::embedded()?;
    options.config = (*ctx.config).clone();
    options.listen = args.listen;
    options.workers_per_pool = args.workers;
    options.janitor_every = Some(args.janitor_every);
    let spinner = progress::spinner(ctx, "starting the fleet (loading models)");
    let fleet = Fleet::start(options).await?;
    spinner.finish_and_clear();
    let base = fleet.base_url().to_owned();
    let console_ctx = Arc::new(Ctx::for_fleet(&fleet, Output::Json));
    let operator_token = operator_token(None)?;
    let listener = tokio::net::TcpListener::bind(args.console)
        .await
        .with_context(|| format!("listen on {} for the console", args.console))
        .map_err(|err| Failure::new(Exit::Unavailable, err))?;
    let console_url = format!(
        "http://{}",
        listener.local_addr().context("console address")?
    );
    let try_it = Client::new(&base, DEV_TOKEN)
        .map_err(client_failure)?
        .with_device_id("clipctl-try-it");
    let (stop_console, console_stopped) = tokio::sync::oneshot::channel::<()>();
    let console = tokio::spawn(console::serve(
        console_ctx,
        ConsoleOptions {
            operator_token: operator_token.clone(),
            secure_cookie: false,
            try_it: Some(try_it),
        },
        listener,
        async move {
            let _ = console_stopped.await;
        },
    ));
    // One line per piece: a `\` continuation in a format string would eat the indentation.
    let lines = [
        format!(
            "clipfleet is up: ingest at {base}, {} worker(s), janitor every {:?}",
            fleet.worker_ids().len(),
            args.janitor_every
        ),
        format!("try it in a browser: {console_url}/try"),
        format!("console:  {console_url}/ (operator token: {operator_token})"),
        format!("token: {DEV_TOKEN}"),
        format!(
            "try:   curl -s -H 'authorization: Bearer {DEV_TOKEN}' -H 'content-type: application/json' \\"
        ),
        format!(
            "         -d '{{\"account_id\":\"demo\",\"birth_date\":\"1990-01-01\"}}' {base}/v1/accounts"
        ),
        format!(
            "       curl -s -H 'authorization: Bearer {DEV_TOKEN}' -F 'params={{\"account_id\":\"demo\"}}' \\"
        ),
        format!("         -F photo=@models/samples/hillside.jpg {base}/v1/jobs"),
        "Ctrl-C stops it (workers drain first).".to_owned(),
    ];
    eprintln!("{}", lines.join("\n"));
    shutdown_signal().await;
    let _ = stop_console.send(());
    match console.await {
        Ok(Err(err)) => tracing::warn!(error = %err, "the console stopped with an error"),
        Err(err) => tracing::warn!(error = %err, "the console task failed"),
        Ok(Ok(())) => {}
    }
    eprintln!("stopping: draining workers");
    let report = fleet.shutdown().await?;
    let done: u64 = report.workers.iter().map(|(_, r)| r.succeeded).sum();
    Ok(Report::new(
        json!({ "url": base, "succeeded": done }),
        format!("stopped; {done} job(s) succeeded\n"),
    ))
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The operator token: the one given (at least 16 characters), or a new random one.
fn operator_token(given: Option<&str>) -> CtlResult<String> {
    match given {
        Some(token) if token.len() >= 16 => Ok(token.to_owned()),
        Some(_) => Err(Failure::msg(
            Exit::Usage,
            "the console's operator token must be at least 16 characters",
        )),
        None => {
            let token = console::random_token();
            if token.is_empty() {
                return Err(Failure::msg(
                    Exit::Failed,
                    "the system's random number source failed: no operator token",
                ));
            }
            Ok(token)
        }
    }
}

/// `console`: the operator web console for the config's fleet until Ctrl-C or SIGTERM.
#[allow(clippy::print_stderr)] // the banner: where the console is and how to sign in
pub async fn console(ctx: &Ctx, args: &ConsoleArgs) -> CtlResult<Report> {
    let token = operator_token(args.token.as_deref())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))
        .map_err(|err| Failure::new(Exit::Unavailable, err))?;
    let url = format!(
        "http://{}",
        listener.local_addr().context("console address")?
    );
    if args.token.is_none() {
        eprintln!("console: {url}/ (operator token: {token})");
    } else {
        eprintln!("console: {url}/ (sign in with the operator token given)");
    }
    console::serve(
        Arc::new(ctx.quiet()),
        ConsoleOptions {
            operator_token: token,
            secure_cookie: args.secure_cookie,
            try_it: None,
        },
        listener,
        shutdown_signal(),
    )
    .await
    .map_err(|err| Failure::new(Exit::Failed, err))?;
    Ok(Report::new(json!({ "url": url }), "console stopped\n"))
}
