//! `/livez`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

/// How long one readiness check may take before it counts as failed.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The outcome of one dependency check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`broker`, `store`, `ledger`, `models`, `draining`).
    pub name: &'static str,
    /// `Err` with an operator-facing reason (never a secret) when it is not ready.
    pub result: Result<(), String>,
}

impl Check {
    /// A passed check.
    pub fn ok(name: &'static str) -> Self {
        Check {
            name,
            result: Ok(()),
        }
    }

    /// A failed check.
    pub fn failed(name: &'static str, reason: impl Into<String>) -> Self {
        Check {
            name,
            result: Err(reason.into()),
        }
    }

    /// Runs `check` under [`READINESS_TIMEOUT`].
    pub async fn run<E: std::fmt::Display>(
        name: &'static str,
        check: impl Future<Output = Result<(), E>>,
    ) -> Self {
        match tokio::time::timeout(READINESS_TIMEOUT, check).await {
            Ok(Ok(())) => Check::ok(name),
            Ok(Err(err)) => Check::failed(name, err.to_string()),
            Err(_) => Check::failed(name, format!("no answer within {READINESS_TIMEOUT:?}")),
        }
    }
}

/// What a service checks before it says it is ready to take work.
#[async_trait]
pub trait Readiness: Send + Sync + 'static {
    /// Every check, run now.
    async fn checks(&self) -> Vec<Check>;
}

/// The state the operations endpoints share.
#[derive(Clone)]
pub struct OpsState {
    /// The service's metrics.
    pub registry: Arc<Registry>,
    /// The service's readiness checks.
    pub readiness: Arc<dyn Readiness>,
}

impl std::fmt::Debug for OpsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsState").finish_non_exhaustive()
    }
}

/// The registry in the text exposition format.
pub fn metrics_text(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %err, "encoding metrics failed");
    }
    out
}

/// The router serving `/livez`, `/readyz` and `/metrics`; merge it into a service's own.
pub fn ops_router<S: Clone + Send + Sync + 'static>(state: OpsState) -> Router<S> {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let checks = state.readiness.checks().await;
    let ready = checks.iter().all(|check| check.result.is_ok());
    let body = serde_json::json!({
        "ready": ready,
        "checks": checks
            .iter()
            .map(|check| {
                let value = match &check.result {
                    Ok(()) => "ok".to_owned(),
                    Err(reason) => reason.clone(),
                };
                (check.name.to_owned(), serde_json::Value::String(value))
            })
            .collect::<serde_json::Map<_, _>>(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<OpsState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics_text(&state.registry),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    struct Fixed(Vec<Check>);

    #[async_trait]
    impl Readiness for Fixed {
        async fn checks(&self) -> Vec<Check> {
            self.0.clone()
        }
    }

    fn router(checks: Vec<Check>) -> Router {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        counter.inc();
        registry.register("demo_things", "Things counted", counter);
        ops_router(OpsState {
            registry: Arc::new(registry),
            readiness: Arc::new(Fixed(checks)),
        })
    }

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn readyz_fails_when_any_check_fails_and_says_which() {
        let (status, body) = get(
            router(vec![Check::ok("broker"), Check::failed("store", "refused")]),
            "/readyz",
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"store\":\"refused\""), "{body}");
        let (status, _) = get(router(vec![Check::ok("broker")]), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn livez_and_metrics_answer() {
        assert_eq!(get(router(vec![]), "/livez").await.0, StatusCode::OK);
        let (status, body) = get(router(vec![]), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("demo_things_total 1"), "{body}");
    }

    #[tokio::test]
    async fn a_check_that_hangs_times_out() {
        let check = Check::run("slow", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<(), String>(())
        });
        let started = std::time::Instant::now();
        // Paused time would be nicer; the timeout is 2 s of real time.
        let result = check.await;
        assert!(result.result.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
