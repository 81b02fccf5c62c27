//! A RabbitMQ node of a test's own: started from the installed RabbitMQ on free loopback ports,
//! in a temporary directory, so a test can stop and restart its broker without touching the
//! shared one other tests use. Stopped and removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's RabbitMQ keeps its real scripts (the `/usr/sbin` wrappers switch users).
const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";

/// A private RabbitMQ node.
#[derive(Debug)]
pub struct PrivateRabbit {
    node: String,
    port: u16,
    dir: PathBuf,
    server: Child,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> std::io::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(std::io::Error::other(format!(
        "{what}: not within {timeout:?}"
    )))
}

impl PrivateRabbit {
    /// Starts a node and waits until it accepts AMQP connections.
    pub fn start() -> std::io::Result<Self> {
        let id = ulid::Ulid::new().to_string().to_ascii_lowercase();
        let node = format!("clipfleet-{id}@localhost");
        let dir = std::env::temp_dir().join(format!("clipfleet-rabbit-{id}"));
        std::fs::create_dir_all(dir.join("log"))?;
        std::fs::create_dir_all(dir.join("mnesia"))?;
        let port = free_port()?;
        let dist_port = free_port()?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(dir.join("env.conf"), "")?;
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\n"),
        )?;
        let log = std::fs::File::create(dir.join("server.log"))?;
        let server = Command::new(Path::new(RABBIT_BIN).join("rabbitmq-server"))
            .current_dir(&dir)
            .envs(Self::env(&dir, &node))
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let rabbit = PrivateRabbit {
            node,
            port,
            dir,
            server,
        };
        wait_until("private RabbitMQ start", Duration::from_secs(60), || {
            port_open(port)
        })?;
        Ok(rabbit)
    }

    fn env(dir: &Path, node: &str) -> Vec<(&'static str, String)> {
        vec![
            ("HOME", dir.display().to_string()),
            ("RABBITMQ_NODENAME", node.to_owned()),
            (
                "RABBITMQ_CONF_ENV_FILE",
                dir.join("env.conf").display().to_string(),
            ),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".to_owned()),
        ]
    }

    /// Its AMQP URL.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn ctl(&self, args: &[&str]) -> std::io::Result<()> {
        let out = Command::new(Path::new(RABBIT_BIN).join("rabbitmqctl"))
            .current_dir(&self.dir)
            .envs(Self::env(&self.dir, &self.node))
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "rabbitmqctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// Stops the broker application (connections drop, the port closes; data stays).
    pub fn stop_app(&self) -> std::io::Result<()> {
        self.ctl(&["stop_app"])?;
        wait_until("private RabbitMQ stop", Duration::from_secs(30), || {
            !port_open(self.port)
        })
    }

    /// Starts it again and waits for the port.
    pub fn start_app(&self) -> std::io::Result<()> {
        self.ctl(&["start_app"])?;
        wait_until("private RabbitMQ restart", Duration::from_secs(60), || {
            port_open(self.port)
        })
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if self.ctl(&["stop"]).is_err() {
            let _ = self.server.kill();
        }
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
