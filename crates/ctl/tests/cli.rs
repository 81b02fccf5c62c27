//! The command line as data: each case parses argv and asserts on the structs clap built, or
//! on the kind of usage error.

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, error::ErrorKind};
use clipfleet_ctl::cli::{
    AccountCommand, Cli, Command, ConsoleArgs, DlqArgs, DlqCommand, DrainArgs, GenerateArgs,
    JanitorCommand, JobCommand, Output, PurgeReason, QueueCommand, QueueName, StatusArgs, Target,
    UpArgs,
};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("clipctl").chain(args.iter().copied()))
}

fn command(args: &[&str]) -> Command {
    match parse(args) {
        Ok(cli) => cli.command,
        Err(err) => panic!("{args:?}: {err}"),
    }
}

#[test]
fn the_command_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn global_flags_go_before_or_after_the_command() {
    let cli = parse(&["status", "--output", "json", "--config", "/etc/clip.toml"]).expect("parse");
    assert_eq!(cli.output, Output::Json);
    assert_eq!(cli.config, Some(PathBuf::from("/etc/clip.toml")));
    assert_eq!(
        cli.command,
        Command::Status(StatusArgs {
            listen: Duration::from_secs(6)
        })
    );
    let cli = parse(&["--broker-namespace", "staging", "status", "--listen", "2s"]).expect("parse");
    assert_eq!(cli.broker_namespace.as_deref(), Some("staging"));
    assert_eq!(cli.output, Output::Text);
}

#[test]
fn drain_takes_exactly_one_target() {
    assert_eq!(
        command(&["drain", "--pool", "default", "--wait", "--timeout", "90s"]),
        Command::Drain(DrainArgs {
            target: Target {
                pool: Some("default".into()),
                worker: None,
                all: false
            },
            wait: true,
            timeout: Duration::from_secs(90),
        })
    );
    assert_eq!(
        command(&["resume", "--worker", "gpu-7.123"]),
        Command::Resume(Target {
            pool: None,
            worker: Some("gpu-7.123".into()),
            all: false
        })
    );
    let none = parse(&["drain"]).expect_err("a target is required");
    assert_eq!(none.kind(), ErrorKind::MissingRequiredArgument);
    let two = parse(&["drain", "--pool", "a", "--all"]).expect_err("targets exclude each other");
    assert_eq!(two.kind(), ErrorKind::ArgumentConflict);
}

#[test]
fn queue_move_names_pool_queues() {
    assert_eq!(
        command(&[
            "queue",
            "move",
            "--from",
            "dead:default",
            "--to",
            "jobs:default",
            "--limit",
            "500"
        ]),
        Command::Queue(QueueCommand::Move {
            from: QueueName::Dead("default".into()),
            to: QueueName::Jobs("default".into()),
            limit: Some(500),
            batch: 100,
        })
    );
    for bad in ["events", "jobs:", "retry:default", "default"] {
        let err = parse(&["queue", "move", "--from", bad, "--to", "jobs:default"])
            .expect_err("not a pool queue");
        assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad}");
    }
    let err = parse(&[
        "queue", "move", "--from", "jobs:a", "--to", "dead:a", "--batch", "0",
    ])
    .expect_err("a batch moves something");
    assert_eq!(err.kind(), ErrorKind::ValueValidation);
}

#[test]
fn dead_letter_commands() {
    assert_eq!(
        command(&["dlq", "list", "--pool", "paid-gpu"]),
        Command::Dlq(DlqCommand::List(DlqArgs {
            pool: Some("paid-gpu".into()),
            limit: 1000
        }))
    );
    assert_eq!(
        command(&["dlq", "purge", "--limit", "5", "--yes"]),
        Command::Dlq(DlqCommand::Purge {
            args: DlqArgs {
                pool: None,
                limit: 5
            },
            yes: true
        })
    );
}

#[test]
fn records_and_janitor() {
    assert_eq!(
        command(&["job", "show", "01JB8Z5V4N3P2Q1R0S9T8U7V6W"]),
        Command::Job(JobCommand::Show {
            id: "01JB8Z5V4N3P2Q1R0S9T8U7V6W".into()
        })
    );
    assert_eq!(
        command(&["account", "purge", "acct-1", "--reason", "under-age"]),
        Command::Account(AccountCommand::Purge {
            id: "acct-1".into(),
            reason: PurgeReason::UnderAge
        })
    );
    let err = parse(&["account", "purge", "acct-1"]).expect_err("a reason is required");
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    let err = parse(&["account", "purge", "acct-1", "--reason", "because"])
        .expect_err("reasons are the policy's grounds");
    assert_eq!(err.kind(), ErrorKind::InvalidValue);
    assert_eq!(
        command(&["janitor", "plan"]),
        Command::Janitor(JanitorCommand::Plan)
    );
}

#[test]
fn generate_and_up() {
    assert_eq!(
        command(&[
            "generate",
            "in.jpg",
            "-o",
            "out.mp4",
            "--motion",
            "parallax",
            "--model",
            "motion-rife",
            "--aspect",
            "9:16"
        ]),
        Command::Generate(GenerateArgs {
            photo: "in.jpg".into(),
            out: "out.mp4".into(),
            kind: "video".into(),
            motion: "parallax".into(),
            aspect: "9:16".into(),
            model: Some("motion-rife".into()),
            ingest: None,
            token: None,
            account: "clipctl-generate".into(),
            timeout: Duration::from_secs(600),
        })
    );
    let err = parse(&[
        "generate", "in.jpg", "-o", "o.jpg", "--kind", "portrait", "--model", "m",
    ])
    .expect_err("a kind names its model");
    assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    let err = parse(&["generate", "in.jpg"]).expect_err("an output path is required");
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    assert_eq!(
        command(&["up", "--workers", "3", "--listen", "127.0.0.1:9000"]),
        Command::Up(UpArgs {
            listen: "127.0.0.1:9000".parse().expect("addr"),
            workers: 3,
            janitor_every: Duration::from_secs(10),
            console: "127.0.0.1:8090".parse().expect("addr"),
        })
    );
    assert_eq!(
        command(&["console", "--listen", "127.0.0.1:0", "--secure-cookie"]),
        Command::Console(ConsoleArgs {
            listen: "127.0.0.1:0".parse().expect("addr"),
            token: None,
            secure_cookie: true,
        })
    );
}

#[test]
fn durations_have_units() {
    let timeout = |text: &str| match parse(&["drain", "--all", "--timeout", text]) {
        Ok(Cli {
            command: Command::Drain(args),
            ..
        }) => Ok(args.timeout),
        Ok(other) => panic!("{other:?}"),
        Err(err) => Err(err.kind()),
    };
    assert_eq!(timeout("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(timeout("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(timeout("1h 30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(timeout("ten"), Err(ErrorKind::ValueValidation));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        assert!(matches!(
            command(&["completions", shell]),
            Command::Completions { .. }
        ));
    }
}
