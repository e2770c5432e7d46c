//! The `flowwatch` command line: parse it, call one entry point, turn the
//! result into the contract's exit code (0 ok, 1 runtime failure, 2 usage or
//! configuration error, 3 `--once` with a failed or abandoned execution).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use flowwatch::cli::{Cli, Command, WaitFormat, config_path};
use flowwatch::daemon::{DaemonError, Verdict};
use flowwatch::error::error_chain;
use flowwatch::run::{self, StartOptions};
use flowwatch::{config, demo, simulate, wait};

const CONFIG_ERROR: u8 = 2;
const SOME_FAILED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors exit 2, as the contract pins
    match cli.command {
        Command::Check { config } => check(config_path(config)),
        Command::Run { config, once } => {
            let path = config_path(config);
            let config = match config::load(&path) {
                Ok(config) => config,
                Err(error) => return fail(&error, CONFIG_ERROR),
            };
            let mut options = StartOptions::new(once);
            match flowwatch::event::init(&config.log) {
                Ok(log_level) => options.log_level = Some(log_level),
                Err(error) => return fail(&error, 1),
            }
            match runtime().block_on(run::start(config, options)) {
                Ok(report) if once && report.verdict == Verdict::SomeFailed => {
                    ExitCode::from(SOME_FAILED)
                }
                Ok(_) => ExitCode::SUCCESS,
                Err(
                    error @ (DaemonError::Config(_)
                    | DaemonError::NoRegion { .. }
                    | DaemonError::Duplicate(_)),
                ) => fail(&error, CONFIG_ERROR),
                Err(error) => fail(&error, 1),
            }
        }
        Command::Simulate { listen, scenario } => {
            let shutdown = tokio_util::sync::CancellationToken::new();
            let result = runtime().block_on(async {
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    run::wait_for_stop_signal().await;
                    stop.cancel();
                });
                simulate::run(listen, scenario.as_deref(), shutdown).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error @ simulate::SimulateError::Scenario(_)) => fail(&error, CONFIG_ERROR),
                Err(error) => fail(&error, 1),
            }
        }
        Command::Wait {
            arns,
            timeout,
            region,
            endpoint_url,
            format,
            via,
        } => {
            let format = match format {
                WaitFormat::Text => config::LogFormat::Text,
                WaitFormat::Json => config::LogFormat::Json,
            };
            let args = wait::WaitArgs {
                arns,
                timeout,
                region,
                endpoint_url,
                format,
                via,
            };
            waiting(args)
        }
        Command::Demo => match runtime().block_on(demo::run()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&*error, 1),
        },
    }
}

fn check(path: PathBuf) -> ExitCode {
    match config::load(&path) {
        Ok(config) => {
            for line in config.summary_lines() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error, CONFIG_ERROR),
    }
}

fn waiting(args: wait::WaitArgs) -> ExitCode {
    let result = match &args.via {
        Some(url) => runtime().block_on(wait::via(url, &args)),
        None => match wait::config(&args) {
            Err(error) => Err(error),
            Ok(config) => match flowwatch::event::init_styled(
                &config.log,
                flowwatch::event::text::TextStyle::for_stdout().brief(),
            ) {
                Err(error) => return fail(&error, 1),
                Ok(_) => runtime().block_on(wait::direct(config, args.timeout)),
            },
        },
    };
    match result {
        Ok(wait::Outcome::Succeeded) => ExitCode::SUCCESS,
        Ok(wait::Outcome::NotSucceeded) => ExitCode::from(SOME_FAILED),
        Err(
            error @ (wait::WaitError::Usage(_)
            | wait::WaitError::Config(_)
            | wait::WaitError::Daemon(
                DaemonError::Config(_) | DaemonError::NoRegion { .. } | DaemonError::Duplicate(_),
            )),
        ) => fail(&error, CONFIG_ERROR),
        Err(error) => fail(&error, 1),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built on any supported platform")
}

/// Prints the error chain once, as `flowwatch: what: why`.
fn fail(error: &(dyn std::error::Error + 'static), code: u8) -> ExitCode {
    eprintln!("flowwatch: {}", error_chain(error));
    ExitCode::from(code)
}
