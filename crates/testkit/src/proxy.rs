//! [`StallingProxy`]: a loopback TCP proxy whose open connections can be made to go silent, as a
//! network partition or a frozen peer looks from a client: no FIN, no RST, just nothing. It can
//! also hold every byte for a while and then let it through ([`StallingProxy::pause`]), as a
//! partition that heals looks: TCP retransmits, so what was sent arrives late, not lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Forwards every connection made to [`StallingProxy::addr`] to a target. Dropping the proxy
/// closes the connections it carries.
#[derive(Debug)]
pub struct StallingProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    /// Connections are numbered as they arrive.
    next: AtomicU64,
    /// Connections numbered below this are stalled.
    stalled_below: AtomicU64,
    /// While `true`, nothing is forwarded and no new connection reaches the target.
    paused: watch::Sender<bool>,
}

impl Default for State {
    fn default() -> State {
        State {
            next: AtomicU64::new(0),
            stalled_below: AtomicU64::new(0),
            paused: watch::Sender::new(false),
        }
    }
}

impl State {
    /// Returns once the proxy is not paused.
    async fn unpaused(&self) {
        let mut paused = self.paused.subscribe();
        // `wait_for` fails only when the sender is gone, and `self` holds it.
        let _ = paused.wait_for(|paused| !paused).await;
    }
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

impl StallingProxy {
    /// Holds all traffic from now on: bytes on open connections wait (neither side sees them),
    /// new connections are accepted but not yet connected onwards. [`StallingProxy::resume`]
    /// lets everything through in order, as a healed partition does.
    pub fn pause(&self) {
        self.state.paused.send_replace(true);
    }

    /// Ends a [`StallingProxy::pause`].
    pub fn resume(&self) {
        self.state.paused.send_replace(false);
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
            state.unpaused().await;
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
/// the connection is stalled; holds what it read while the proxy is paused (and reads no more).
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
        state.unpaused().await;
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::StallingProxy;

    /// An echo server on a loopback port.
    async fn echo() -> std::io::Result<std::net::SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        Ok(addr)
    }

    async fn read_within(socket: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
        let mut buffer = [0u8; 16];
        match tokio::time::timeout(wait, socket.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => Some(buffer[..n].to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_pause_holds_bytes_and_new_connections_until_resumed() -> anyhow::Result<()> {
        let proxy = StallingProxy::start(echo().await?).await?;
        let mut open = TcpStream::connect(proxy.addr()).await?;
        open.write_all(b"before").await?;
        let echoed = read_within(&mut open, Duration::from_secs(5)).await;
        assert_eq!(echoed.as_deref(), Some(b"before".as_slice()));

        proxy.pause();
        open.write_all(b"held").await?;
        let mut late = TcpStream::connect(proxy.addr()).await?;
        late.write_all(b"late").await?;
        assert_eq!(
            read_within(&mut open, Duration::from_millis(300)).await,
            None
        );
        assert_eq!(
            read_within(&mut late, Duration::from_millis(300)).await,
            None
        );

        proxy.resume();
        let held = read_within(&mut open, Duration::from_secs(5)).await;
        assert_eq!(
            held.as_deref(),
            Some(b"held".as_slice()),
            "delayed, not lost"
        );
        let late_echo = read_within(&mut late, Duration::from_secs(5)).await;
        assert_eq!(late_echo.as_deref(), Some(b"late".as_slice()));
        Ok(())
    }
}
