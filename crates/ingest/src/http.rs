//! The HTTP/1 server under the router: hyper with a bounded read buffer per connection, the
//! caller's address as axum's `ConnectInfo` (usage records), and a graceful stop.
//!
//! Why not `axum::serve`: it cannot configure hyper, whose adaptive read buffer grows to
//! ~408 KB on every connection that uploads a photo and keeps that capacity while the
//! connection lives. Bounding it halved ingest's peak RSS at 100 concurrent uploads (ingest
//! bench: 127–159 MiB before, 60–83 MiB after, the two binaries alternated).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Largest read buffer of one connection. Uploads stream through it in pieces of this size
/// (the handler copies each piece out), so a bigger buffer only saves read calls.
pub(crate) const MAX_READ_BUFFER_BYTES: usize = 32 * 1024;

/// Serves `router` on `listener` until `stop` turns true, then stops accepting, lets requests
/// in progress finish (connections close after their current response) and returns.
pub(crate) async fn serve(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(MAX_READ_BUFFER_BYTES);
    // Every connection task holds a receiver; when all are gone, every connection has ended.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors or a connection reset before accept: not fatal.
                    warn!(error = %err, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        if let Err(err) = stream.set_nodelay(true) {
            debug!(error = %err, "TCP_NODELAY not set");
        }
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                request
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let mut stop = stop.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(err) = served {
                            debug!(error = %err, "connection ended with an error");
                        }
                        break;
                    }
                    () = stopped(&mut stop), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    open_tx.closed().await;
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not in the caller's select.
    let _ = stop.wait_for(|stopped| *stopped).await;
}
