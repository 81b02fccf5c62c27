//! `clip-loadtest`: parse, run, print the table, write the reports, exit with a code CI can
//! trust (see `Exit`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser as _;
use clipfleet_config::env_from_process;
use clipfleet_loadtest::{
    Cli, Exit, Report, SaturationPlan, SaturationReport, find_saturation, render_svg, run,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    clipfleet_loadtest::init_logging();
    if cli.saturation {
        return saturation(&cli).await;
    }
    let result = async {
        let options = cli.options(env_from_process())?;
        let report = run(options).await?;
        write_reports(&cli, &report)?;
        anyhow::Ok(report)
    }
    .await;
    match result {
        Ok(report) => {
            print_table(&report);
            ExitCode::from(report.exit.code())
        }
        Err(err) => fail(&err),
    }
}

fn write_reports(cli: &Cli, report: &Report) -> anyhow::Result<()> {
    if let Some(path) = &cli.report {
        let json = serde_json::to_string_pretty(report).context("encode the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &cli.svg {
        std::fs::write(path, render_svg(report))
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// `--saturation`: the search, its table, the JSON report of every step and the measured run.
async fn saturation(cli: &Cli) -> ExitCode {
    let result = async {
        let options = cli.options(env_from_process())?;
        let plan = SaturationPlan {
            start_rate: cli.rate.unwrap_or(SaturationPlan::default().start_rate),
            step: cli.step,
            ..SaturationPlan::default()
        };
        let report = find_saturation(&options, &plan).await?;
        if let Some(path) = &cli.report {
            let json = serde_json::to_string_pretty(&report).context("encode the report")?;
            std::fs::write(path, json + "\n")
                .with_context(|| format!("write {}", path.display()))?;
        }
        if let (Some(path), Some(measured)) = (&cli.svg, &report.measured) {
            std::fs::write(path, render_svg(measured))
                .with_context(|| format!("write {}", path.display()))?;
        }
        anyhow::Ok(report)
    }
    .await;
    match result {
        Ok(report) => {
            print_saturation(&report);
            ExitCode::from(report.exit().code())
        }
        Err(err) => fail(&err),
    }
}

#[allow(clippy::print_stdout)] // the command's result
fn print_saturation(report: &SaturationReport) {
    print!("{}", report.table());
}

#[allow(clippy::print_stdout)] // the command's result
fn print_table(report: &Report) {
    print!("{}", report.table());
}

#[allow(clippy::print_stderr)] // the command's error
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("clip-loadtest: {err:#}");
    ExitCode::from(Exit::Setup.code())
}
