//! `clipctl`: parse, run, print, exit with a code scripts can trust (see `Exit`).

use std::process::ExitCode;

use clap::Parser as _;
use clipfleet_config::{Config, env_from_process};
use clipfleet_ctl::cli::{Cli, Command, Output};
use clipfleet_ctl::{Ctx, Exit, Failure, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if matches!(cli.command, Command::Generate(_) | Command::Up(_)) {
        // Inference shares the machine with the rest of the fleet in one process.
        tch::set_num_threads(1);
    }
    let config = match Config::load(cli.config.as_deref(), &env_from_process()) {
        Ok(config) => config,
        Err(err) => {
            return fail(&Failure::new(
                Exit::Usage,
                anyhow::Error::from(err).context("load config"),
            ));
        }
    };
    let ctx = Ctx::new(config, cli.output, cli.broker_namespace.clone());
    match run(&ctx, &cli.command).await {
        Ok(report) => {
            print(&cli, &report);
            ExitCode::SUCCESS
        }
        Err(failure) => fail(&failure),
    }
}

#[allow(clippy::print_stdout)] // the command's result
fn print(cli: &Cli, report: &clipfleet_ctl::Report) {
    if cli.output == Output::Json && !matches!(cli.command, Command::Completions { .. }) {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json).unwrap_or_else(|_| "null".into())
        );
    } else {
        print!("{}", report.text);
    }
}

#[allow(clippy::print_stderr)] // the command's error
fn fail(failure: &Failure) -> ExitCode {
    eprintln!("clipctl: {failure}");
    ExitCode::from(failure.exit.code())
}
