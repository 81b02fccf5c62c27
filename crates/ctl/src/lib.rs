//! `clipctl`: the operator's command line. Every command is a library function over a
//! [`Ctx`] (the fleet's config and its backends, opened on first use or handed in), so tests
//! run the commands against real backends in-process; `main` only parses, prints and exits.
//!
//! Modules:
//! - `cli`: the command line as `clap` structs.
//! - `ctx`: the config and the backends a command works on.
//! - `exit`: exit codes scripts can trust, and the error carrying one.
//! - `status`, `heartbeats`: queues and workers; listening to heartbeats.
//! - `steer`: `drain [--wait]`, `pause`, `resume`.
//! - `queues`: `queue move` (batches move whole or not at all), `dlq list|replay|purge`.
//! - `records`: `job show`, `account purge`, `janitor plan`, `topology apply`.
//! - `generate`: `generate` (the main job through ingest's HTTP API) and `up` (with the console).
//! - `console`: the operator web console and the try-it page (`console`, and `up`).
//! - `output`, `progress`: JSON or text reports; progress bars on stderr.

pub mod cli;
pub mod console;
mod ctx;
mod exit;
mod generate;
mod heartbeats;
mod output;
mod progress;
mod queues;
mod records;
mod status;
mod steer;

use clap::CommandFactory as _;

pub use ctx::{Backends, Ctx};
pub use exit::{CtlResult, Exit, Failure};
pub use heartbeats::WorkerSeen;
pub use output::Report;
pub use steer::Steer;

use crate::cli::{
    AccountCommand, Cli, Command, DlqCommand, JanitorCommand, JobCommand, QueueCommand,
    TopologyCommand,
};

/// Runs one command on `ctx`.
pub async fn run(ctx: &Ctx, command: &Command) -> CtlResult<Report> {
    match command {
        Command::Status(args) => status::status(ctx, args).await,
        Command::Drain(args) => steer::drain(ctx, args).await,
        Command::Pause(target) => steer::steer(ctx, Steer::Pause, target).await,
        Command::Resume(target) => steer::steer(ctx, Steer::Resume, target).await,
        Command::Queue(QueueCommand::Move {
            from,
            to,
            limit,
            batch,
        }) => queues::move_queue(ctx, from, to, *limit, *batch).await,
        Command::Dlq(DlqCommand::List(args)) => queues::list(ctx, args).await,
        Command::Dlq(DlqCommand::Replay(args)) => queues::replay(ctx, args).await,
        Command::Dlq(DlqCommand::Purge { args, yes }) => queues::purge(ctx, args, *yes).await,
        Command::Job(JobCommand::Show { id }) => records::job_show(ctx, id).await,
        Command::Account(AccountCommand::Purge { id, reason }) => {
            records::account_purge(ctx, id, *reason).await
        }
        Command::Janitor(JanitorCommand::Plan) => records::janitor_plan(ctx).await,
        Command::Topology(TopologyCommand::Apply) => records::topology_apply(ctx).await,
        Command::Generate(args) => generate::generate(ctx, args).await,
        Command::Up(args) => generate::up(ctx, args).await,
        Command::Console(args) => generate::console(ctx, args).await,
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "clipctl", &mut out);
            Ok(Report::new(
                serde_json::Value::Null,
                String::from_utf8_lossy(&out).into_owned(),
            ))
        }
    }
}
