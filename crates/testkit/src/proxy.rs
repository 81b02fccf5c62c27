//! [`StallingProxy`]: a loopback TCP proxy whose open connections can be made to go silent, as a
//! network partition or a frozen peer looks from a client: no FIN, no RST, just nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Forwards every connection made to [`StallingProxy::addr`] to a target. Dropping the proxy
/// closes the connections it carries.
#[derive(Debug)]
pub struct StallingProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    /// Connections are numbered as they arrive.
    next: AtomicU64,
    /// Connections numbered below this are stalled.
    stalled_below: AtomicU64,
}

impl StallingProxy {
    /// Listens on an ephemeral loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let accept = tokio::spawn(accept(listener, target, state.clone()));
        Ok(StallingProxy {
            addr,
            state,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on the connections already open forward nothing either way (what arrives is
    /// read and dropped, so neither side sees back-pressure), and stay open. Connections made
    /// later are forwarded normally.
    pub fn stall_open_connections(&self) {
        let open = self.state.next.load(Ordering::SeqCst);
        self.state.stalled_below.store(open, Ordering::SeqCst);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        // The accept task owns the connections' tasks: aborting it drops their sockets.
        self.accept.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, state: Arc<State>) {
    let mut connections = JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        let id = state.next.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        connections.spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                pump(client_read, server_write, id, &state),
                pump(server_read, client_write, id, &state)
            );
        });
        // Reap finished connections so a long test does not accumulate them.
        while connections.try_join_next().is_some() {}
    }
}

/// Copies one direction until its reader ends, then ends the writer; swallows everything once
/// the connection is stalled.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, id: u64, state: &State) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if id < state.stalled_below.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
