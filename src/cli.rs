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
}

/// The config file's path for `run` and `check`: `--config`, else
/// `$FLOWWATCH_CONFIG`, else `/etc/flowwatch/flowwatch.toml`.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("FLOWWATCH_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/etc/flowwatch/flowwatch.toml"))
}
