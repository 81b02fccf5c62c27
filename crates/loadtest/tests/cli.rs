//! The command line: flags parse into the struct, and the struct into the run's options.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser as _;
use clipfleet_loadtest::{Arrivals, Cli, Load, ModelChoice, PhotoSize, Stop, Target};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("clip-loadtest").chain(args.iter().copied()))
}

#[test]
fn embedded_defaults() -> anyhow::Result<()> {
    let cli = parse(&["--embedded"])?;
    assert!(cli.embedded);
    assert_eq!(cli.ingest, None);
    assert_eq!(cli.rate, None);
    assert_eq!(cli.arrivals, Arrivals::Poisson);
    assert_eq!(
        cli.sizes,
        vec![
            PhotoSize {
                width: 320,
                height: 240
            },
            PhotoSize {
                width: 640,
                height: 480
            },
            PhotoSize {
                width: 1024,
                height: 768
            },
        ]
    );
    assert_eq!(cli.bad_share, 0.05);
    assert_eq!(cli.terminal_timeout, Duration::from_secs(120));

    let options = cli.options(BTreeMap::new())?;
    assert_eq!(
        options.load,
        Load::Rate {
            per_second: 5.0,
            arrivals: Arrivals::Poisson
        }
    );
    assert_eq!(
        options.stop,
        Stop {
            jobs: Some(200),
            duration: None
        }
    );
    assert_eq!(options.model, Some(ModelChoice::noop()));
    let Target::Embedded(fleet) = &options.target else {
        panic!("not embedded: {:?}", options.target);
    };
    assert_eq!(fleet.output_ttl, Duration::from_secs(5));
    assert_eq!(fleet.janitor_every, Some(Duration::from_secs(1)));
    assert_eq!(options.checks.janitor_interval, Duration::from_secs(1));
    Ok(())
}

#[test]
fn every_flag_lands_in_its_field() -> anyhow::Result<()> {
    let cli = parse(&[
        "--embedded",
        "--rate",
        "50",
        "--arrivals",
        "uniform",
        "--jobs",
        "1000",
        "--duration",
        "90s",
        "--sizes",
        "64x48,2000X1500",
        "--png-share",
        "0.5",
        "--bad-share",
        "0.1",
        "--model",
        "cost",
        "--model-version",
        "2",
        "--accounts",
        "9",
        "--seed",
        "77",
        "--ttl",
        "3s",
        "--janitor-every",
        "500ms",
        "--workers",
        "2",
        "--slots",
        "4",
        "--photo-grace",
        "20s",
        "--poll-max",
        "2s",
        "--max-error-share",
        "0.01",
        "--report",
        "out.json",
        "--svg",
        "out.svg",
        "--bucket",
        "2s",
    ])?;
    assert_eq!(cli.rate, Some(50.0));
    assert_eq!(cli.arrivals, Arrivals::Uniform);
    assert_eq!(cli.jobs, Some(1000));
    assert_eq!(cli.duration, Some(Duration::from_secs(90)));
    assert_eq!(
        cli.sizes,
        vec![
            PhotoSize {
                width: 64,
                height: 48
            },
            PhotoSize {
                width: 2000,
                height: 1500
            },
        ]
    );
    assert_eq!(cli.janitor_every, Some(Duration::from_millis(500)));
    assert_eq!(cli.report.as_deref(), Some("out.json".as_ref()));
    assert_eq!(cli.svg.as_deref(), Some("out.svg".as_ref()));

    let options = cli.options(BTreeMap::new())?;
    assert_eq!(
        options.stop,
        Stop {
            jobs: Some(1000),
            duration: Some(Duration::from_secs(90))
        }
    );
    assert_eq!(
        options.model,
        Some(ModelChoice {
            name: "cost".into(),
            version: "2".into()
        })
    );
    assert_eq!(options.accounts, 9);
    assert_eq!(options.seed, 77);
    assert_eq!(options.mix.png_share, 0.5);
    assert_eq!(options.checks.output_ttl, Some(Duration::from_secs(3)));
    assert_eq!(options.checks.photo_grace, Duration::from_secs(20));
    assert_eq!(options.checks.max_error_share, 0.01);
    assert_eq!(options.bucket, Duration::from_secs(2));
    let Target::Embedded(fleet) = &options.target else {
        panic!("not embedded");
    };
    assert_eq!((fleet.workers, fleet.slots), (2, 4));
    assert_eq!(fleet.output_ttl, Duration::from_secs(3));
    Ok(())
}

#[test]
fn remote_fleet_with_closed_loop() -> anyhow::Result<()> {
    let cli = parse(&[
        "--ingest",
        "http://10.0.0.5:8080",
        "--token",
        "s3cret",
        "--concurrency",
        "32",
        "--duration",
        "10m",
    ])?;
    assert!(!cli.embedded);
    let options = cli.options(BTreeMap::new())?;
    assert_eq!(options.load, Load::Concurrency(32));
    assert_eq!(
        options.stop,
        Stop {
            jobs: None,
            duration: Some(Duration::from_secs(600))
        }
    );
    // No model named: the fleet's first pool decides; no TTL given: that check is skipped.
    assert_eq!(options.model, None);
    assert_eq!(options.checks.output_ttl, None);
    assert_eq!(options.checks.janitor_interval, Duration::from_secs(60));
    let Target::Remote { ingest, token } = &options.target else {
        panic!("not remote");
    };
    assert_eq!(
        (ingest.as_str(), token.as_str()),
        ("http://10.0.0.5:8080", "s3cret")
    );
    Ok(())
}

#[test]
fn wrong_command_lines_are_refused() {
    let refused = [
        vec![],                                                  // no target
        vec!["--embedded", "--ingest", "http://x"],              // two targets
        vec!["--embedded", "--rate", "5", "--concurrency", "2"], // two loads
        vec!["--ingest", "http://x", "--no-janitor"],            // embedded-only flag
        vec!["--ingest", "http://x", "--workers", "3"],
        vec!["--embedded", "--sizes", "640"],
        vec!["--embedded", "--sizes", "8x8"],
        vec!["--embedded", "--duration", "soon"],
        vec!["--embedded", "--arrivals", "bursty"],
    ];
    for args in refused {
        assert!(parse(&args).is_err(), "{args:?} parsed");
    }
    // Parses, but is not a run.
    for args in [
        vec!["--embedded", "--rate", "0"],
        vec!["--embedded", "--concurrency", "0"],
        vec!["--embedded", "--bad-share", "1.5"],
    ] {
        let cli = parse(&args).expect("parses");
        assert!(cli.options(BTreeMap::new()).is_err(), "{args:?} accepted");
    }
}

#[test]
fn saturation_search_flags() -> anyhow::Result<()> {
    let cli = parse(&["--embedded", "--saturation", "--rate", "3", "--step", "10s"])?;
    assert!(cli.saturation);
    assert_eq!(cli.step, Duration::from_secs(10));
    assert_eq!(cli.rate, Some(3.0));
    assert_eq!(parse(&["--embedded"])?.step, Duration::from_secs(20));
    // A search sets its own load and length.
    for clash in [
        ["--concurrency", "4"],
        ["--jobs", "10"],
        ["--duration", "1m"],
    ] {
        let mut args = vec!["--embedded", "--saturation"];
        args.extend(clash);
        assert!(parse(&args).is_err(), "{clash:?}");
    }
    Ok(())
}
