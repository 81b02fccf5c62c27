//! The command line, as data: `clap` derive structs that tests parse and assert on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// clipctl: operate a clipfleet fleet (queues, workers, dead letters, jobs, accounts, the
/// janitor), run the main job, or start the whole fleet in one process.
#[derive(Debug, Parser, PartialEq)]
#[command(name = "clipctl", version, about, propagate_version = true)]
pub struct Cli {
    /// The fleet's config file (default: the embedded default; `CLIPFLEET_*` overrides apply).
    #[arg(long, global = true, env = "CLIPFLEET_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format of read commands: `text` for people, `json` for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Queue-name prefix on the broker (fleets sharing a broker keep apart by it).
    #[arg(long, global = true)]
    pub broker_namespace: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table or a few lines.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand, PartialEq)]
pub enum Command {
    /// Per pool: ready, in flight, consumers, dead letters; workers seen by heartbeat.
    Status(StatusArgs),
    /// Workers stop taking jobs, finish what they hold and exit.
    Drain(DrainArgs),
    /// Workers stop taking jobs but stay up (`resume` undoes it).
    Pause(Target),
    /// Undoes `pause`, and a `drain` that has not finished.
    Resume(Target),
    /// Queue operations.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Dead letters: list, replay, purge.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// The janitor.
    #[command(subcommand)]
    Janitor(JanitorCommand),
    /// The broker topology.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// The main job: a photo becomes a video, through the real ingest HTTP path.
    Generate(GenerateArgs),
    /// The whole fleet in one process on embedded defaults: ingest, workers, janitor, and the
    /// web console with the try-it page.
    Up(UpArgs),
    /// The operator web console for the config's fleet (overview, jobs, dead letters,
    /// steering, janitor), until Ctrl-C.
    Console(ConsoleArgs),
    /// Shell completions on stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `status`.
#[derive(Debug, Args, PartialEq)]
pub struct StatusArgs {
    /// How long to listen for worker heartbeats (they come every 5 s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "6s")]
    pub listen: Duration,
}

/// Which workers a steering command addresses.
#[derive(Debug, Args, PartialEq, Clone)]
#[command(group(ArgGroup::new("target").required(true).args(["pool", "worker", "all"])))]
pub struct Target {
    /// Every worker of this pool.
    #[arg(long)]
    pub pool: Option<String>,
    /// One worker, by id.
    #[arg(long)]
    pub worker: Option<String>,
    /// Every worker.
    #[arg(long)]
    pub all: bool,
}

/// `drain`.
#[derive(Debug, Args, PartialEq)]
pub struct DrainArgs {
    /// Which workers.
    #[command(flatten)]
    pub target: Target,
    /// Show progress until no addressed worker holds a job.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (exit code 4).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

/// `queue …`.
#[derive(Debug, Subcommand, PartialEq)]
pub enum QueueCommand {
    /// Moves messages between a pool's queues (`jobs:POOL`, `dead:POOL`), in batches that
    /// move whole or not at all.
    Move {
        /// Source queue.
        #[arg(long, value_parser = parse_queue)]
        from: QueueName,
        /// Destination queue.
        #[arg(long, value_parser = parse_queue)]
        to: QueueName,
        /// Move at most this many.
        #[arg(long)]
        limit: Option<u64>,
        /// Messages per batch.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        batch: u64,
    },
}

/// A pool's queue on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueName {
    /// `jobs:POOL`.
    Jobs(String),
    /// `dead:POOL`.
    Dead(String),
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueName::Jobs(pool) => write!(f, "jobs:{pool}"),
            QueueName::Dead(pool) => write!(f, "dead:{pool}"),
        }
    }
}

/// `dlq …`.
#[derive(Debug, Subcommand, PartialEq)]
pub enum DlqCommand {
    /// Lists dead letters with their reasons (they stay where they are).
    List(DlqArgs),
    /// Sends dead letters back to their pool's jobs queue, after checking the account: an
    /// erased, under-14 or ended account's photo is deleted instead.
    Replay(DlqArgs),
    /// Drops dead letters and deletes the photos they refer to.
    Purge {
        /// Which dead letters.
        #[command(flatten)]
        args: DlqArgs,
        /// Confirms the purge (it cannot be undone).
        #[arg(long)]
        yes: bool,
    },
}

/// Which dead letters.
#[derive(Debug, Args, PartialEq)]
pub struct DlqArgs {
    /// The pool (default: the config's first).
    #[arg(long)]
    pub pool: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    pub limit: u64,
}

/// `job …`.
#[derive(Debug, Subcommand, PartialEq)]
pub enum JobCommand {
    /// A job's record and whether its photo and video are stored.
    Show {
        /// The job id.
        id: String,
    },
}

/// `account …`.
#[derive(Debug, Subcommand, PartialEq)]
pub enum AccountCommand {
    /// Purges an account now: tombstone (workers drop its jobs), then the janitor deletes its
    /// media, jobs, usage and row; shows what is left (nothing, or the legal hold that kept it).
    Purge {
        /// The account id.
        id: String,
        /// Why (recorded in the deletion audit).
        #[arg(long, value_enum)]
        reason: PurgeReason,
    },
}

/// Why an operator purges an account: the policy's grounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PurgeReason {
    /// The holder asked for erasure.
    ErasureRequest,
    /// The holder is under 14.
    UnderAge,
}

/// `janitor …`.
#[derive(Debug, Subcommand, PartialEq)]
pub enum JanitorCommand {
    /// What a sweep would delete now, by rule (nothing is deleted).
    Plan,
}

/// `topology …`.
#[derive(Debug, Subcommand, PartialEq)]
pub enum TopologyCommand {
    /// Declares every pool's queues (idempotent).
    Apply,
}

/// `generate`.
#[derive(Debug, Args, PartialEq)]
pub struct GenerateArgs {
    /// The photo (JPEG, PNG, WebP, HEIC).
    pub photo: PathBuf,
    /// Where the output goes: the MP4, or for an image kind the JPEG.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// What to make: `video` (the first pool's model, or `--model`), or an image-to-image
    /// kind, named after its model in the manifest: `portrait` (a stylised portrait),
    /// `beautify` (skin smoothing, tone, light).
    #[arg(long, default_value = "video", conflicts_with = "model")]
    pub kind: String,
    /// Camera motion: zoom_in, zoom_out, pan_left, pan_right, pan_up, pan_down, parallax.
    #[arg(long, default_value = "zoom_in")]
    pub motion: String,
    /// The video's shape: auto (the bucket nearest the photo's), 9:16, 3:4, 1:1, 4:3, 16:9.
    #[arg(long, default_value = "auto")]
    pub aspect: String,
    /// The model (`name` or `name@version`, e.g. `motion-rife`: keyframes and RIFE in-betweens);
    /// default: the first pool's. In-process, a pool for it is added when none serves it.
    #[arg(long)]
    pub model: Option<String>,
    /// Send it to a running fleet's ingest instead of an in-process one.
    #[arg(long)]
    pub ingest: Option<String>,
    /// Service token for `--ingest` (default: the development token).
    #[arg(long, env = "CLIPFLEET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The account the photo belongs to (created if missing, as an adult test account).
    #[arg(long, default_value = "clipctl-generate")]
    pub account: String,
    /// Give up after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

/// `up`.
#[derive(Debug, Args, PartialEq)]
pub struct UpArgs {
    /// Where ingest listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Workers per pool.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Janitor sweep interval.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub janitor_every: Duration,
    /// Where the web console and the try-it page listen.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub console: SocketAddr,
}

/// `console`.
#[derive(Debug, Args, PartialEq)]
pub struct ConsoleArgs {
    /// Where it listens.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The operator token to sign in with (at least 16 characters; not the API token). Without
    /// it a random one is made and printed.
    #[arg(long, env = "CLIPFLEET_CONSOLE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Mark the session cookie `Secure`: the console is reached over TLS (a proxy in front).
    #[arg(long)]
    pub secure_cookie: bool,
}

/// `jobs:POOL` or `dead:POOL`.
pub fn parse_queue(text: &str) -> Result<QueueName, String> {
    match text.split_once(':') {
        Some(("jobs", pool)) if !pool.is_empty() => Ok(QueueName::Jobs(pool.to_owned())),
        Some(("dead", pool)) if !pool.is_empty() => Ok(QueueName::Dead(pool.to_owned())),
        _ => Err(format!("{text:?}: a queue is jobs:POOL or dead:POOL")),
    }
}
