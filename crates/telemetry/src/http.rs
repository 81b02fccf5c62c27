//! A span per API request: the route *template* (`/v1/accounts/{id}`, never the path itself,
//! which may hold an account id), the method and the status — no query, no client address, no
//! headers. The caller's `traceparent`, if it sends one, becomes the parent.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::Empty;

use crate::propagation::set_parent_from_http;

/// Middleware (`axum::middleware::from_fn(trace_http)`, as a `route_layer` so the route is
/// known) opening one server span per request.
pub async fn trace_http(request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!(
        "http request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    set_parent_from_http(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
