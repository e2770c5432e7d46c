//! The command line: clap's types for `flowwatch`, and where `run` and
//! `check` find the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "flowwatch",
    version,
    about = "Watches Amazon Bedrock flow executions until they end"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The daemon: poll every watched execution and emit one event per transition.
    Run {
        /// Default: $FLOWWATCH_CONFIG, else /etc/flowwatch/flowwatch.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Exit when every watched execution is terminal or abandoned.
        #[arg(long)]
        once: bool,
    },
    /// Validate the config and every included watch file; changes nothing.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// A local, offline stand-in for the Bedrock Agent Runtime endpoint.
    Simulate {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Simulator and daemon in one process, with bundled demo data.
    Demo,
    /// Wait until each execution ends: exit 0 when every one Succeeded,
    /// 3 when one ended otherwise or the timeout passed.
    Wait {
        #[arg(required = true, value_name = "EXECUTION_ARN")]
        arns: Vec<String>,
        /// Give up after this long (e.g. 2h); default: until each ends.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Default: AWS_REGION, else the standard chain.
        #[arg(long)]
        region: Option<String>,
        /// Default: AWS_ENDPOINT_URL, else the real regional endpoint.
        #[arg(long)]
        endpoint_url: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: WaitFormat,
        /// Ask a running daemon's API instead (http://HOST:PORT).
        #[arg(long)]
        via: Option<String>,
    },
}

/// The config file's path for `run` and `check`: `--config`, else
/// `$FLOWWATCH_CONFIG`, else `/etc/flowwatch/flowwatch.toml`.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("FLOWWATCH_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/etc/flowwatch/flowwatch.toml"))
}

/// `flowwatch wait --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitFormat {
    Text,
    Json,
}
