//! The command line: flags parse into the struct, and the struct into the run's options.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser as _;
use clipfleet_loadtest::{
    Arrivals, Cli, EmbeddedFleet, Load, ModelArg, ModelChoice, PhotoSize, Stop, Target,
    WeightedModel,
};

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
    assert_eq!(
        options.models,
        vec![WeightedModel::new(ModelChoice::noop())]
    );
    assert_eq!(options.sessions.share, 0.0);
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
        options.models,
        vec![WeightedModel::new(ModelChoice {
            name: "cost".into(),
            version: "2".into()
        })]
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
    assert!(options.models.is_empty());
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
        vec!["--embedded", "--model", "noop=-1"],
        vec!["--embedded", "--model", "noop=many"],
        vec!["--embedded", "--model", ""],
        vec!["--embedded", "--session-share", "some"],
    ];
    for args in refused {
        assert!(parse(&args).is_err(), "{args:?} parsed");
    }
    // Parses, but is not a run.
    for args in [
        vec!["--embedded", "--rate", "0"],
        vec!["--embedded", "--concurrency", "0"],
        vec!["--embedded", "--bad-share", "1.5"],
        vec!["--embedded", "--session-share", "1.5"],
        // The session model has no pool among the run's models.
        vec!["--embedded", "--session-share", "0.2"],
        vec!["--embedded", "--model", "noop", "--session-share", "0.2"],
        vec![
            "--embedded",
            "--model",
            "portrait@2",
            "--session-share",
            "0.2",
            "--session-model",
            "portrait@1",
        ],
        // A model twice, or nothing left to submit.
        vec!["--embedded", "--model", "noop", "--model", "noop@1=3"],
        vec!["--embedded", "--model", "noop=0"],
        vec![
            "--embedded",
            "--model",
            "portrait",
            "--session-share",
            "0.2",
            "--session-model",
            "portrait=2",
        ],
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

#[test]
fn a_mix_of_models_and_session_flows() -> anyhow::Result<()> {
    let cli = parse(&[
        "--embedded",
        "--model",
        "noop",
        "--model",
        "portrait=2",
        "--model",
        "rife@3.9=0.5",
        "--model",
        "beautify=0",
        "--session-share",
        "0.25",
        "--session-model",
        "beautify",
        "--model-version",
        "7",
    ])?;
    assert_eq!(
        cli.model[2],
        ModelArg {
            name: "rife".into(),
            version: Some("3.9".into()),
            weight: 0.5
        }
    );
    assert_eq!(cli.session_share, 0.25);
    let options = cli.options(BTreeMap::new())?;
    let model = |name: &str, version: &str, weight: f64| WeightedModel {
        model: ModelChoice {
            name: name.into(),
            version: version.into(),
        },
        weight,
    };
    assert_eq!(
        options.models,
        vec![
            model("noop", "7", 1.0),
            model("portrait", "7", 2.0),
            model("rife", "3.9", 0.5),
            model("beautify", "7", 0.0),
        ]
    );
    assert_eq!(options.sessions.share, 0.25);
    // The session model takes the listed model's version.
    assert_eq!(
        options.sessions.model,
        ModelChoice {
            name: "beautify".into(),
            version: "7".into()
        }
    );
    assert_eq!(options.sessions.photos, 2);
    // A session's adapter goes with its session, not the outputs' TTL: the TTL is the usual one.
    let Target::Embedded(fleet) = &options.target else {
        panic!("not embedded");
    };
    assert_eq!(fleet.output_ttl, EmbeddedFleet::default().output_ttl);

    // The defaults: no session flows, on `portrait`.
    let plain = parse(&["--embedded", "--model", "portrait"])?;
    assert_eq!(
        (plain.session_share, plain.session_model.as_str()),
        (0.0, "portrait")
    );
    let options = parse(&[
        "--embedded",
        "--model",
        "noop",
        "--model",
        "portrait",
        "--session-share",
        "1",
    ])?
    .options(BTreeMap::new())?;
    assert_eq!(
        options.sessions.model,
        ModelChoice {
            name: "portrait".into(),
            version: "1".into()
        }
    );
    // Against a running fleet no model need be named: its pools decide.
    let remote =
        parse(&["--ingest", "http://x", "--session-share", "0.5"])?.options(BTreeMap::new())?;
    assert!(remote.models.is_empty());
    assert_eq!(remote.sessions.share, 0.5);
    Ok(())
}
