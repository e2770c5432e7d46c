//! A local, offline stand-in for the Bedrock Agent Runtime endpoint, for
//! `flowwatch simulate`, `flowwatch demo` and the tests' HTTP fake. It speaks
//! the service's REST-JSON wire format over real HTTP, so the unmodified
//! aws-sdk-bedrockagentruntime client talks to it. In: a scenario file (see
//! docs/simulator.md). Out: GetFlowExecution, ListFlowExecutions and
//! ListFlowExecutionEvents answers that follow the scenario's timelines, with
//! its throttling, faults and latency.
//!
//! ```text
//! parse (TOML) -> scenario (what exists, status at a time) -> answer (one reply)
//!                                       server (auth, quota, faults, latency, stats) -> wire
//! ```

mod answer;
pub mod ids;
mod parse;
pub mod quota;
pub mod scenario;
pub mod server;
pub mod wire;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

pub use scenario::{Scenario, ScenarioError};
pub use server::{RequestRecord, Simulator, Stats};
pub use wire::Answer;

/// Why `flowwatch simulate` could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// A usage or configuration error (exit code 2).
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// `flowwatch simulate`: loads `scenario` (none: an empty one, where every
/// execution is a 404), serves on `listen` until `shutdown` is cancelled, and
/// prints `simulator listening on http://ADDR` to stderr once bound.
pub async fn run(
    listen: SocketAddr,
    scenario: Option<&Path>,
    shutdown: CancellationToken,
) -> Result<(), SimulateError> {
    let scenario = match scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::default(),
    };
    let source = scenario
        .source
        .clone()
        .unwrap_or_else(|| PathBuf::from("(empty scenario)"));
    let executions = scenario.len();
    let simulator =
        Simulator::spawn(scenario, listen)
            .await
            .map_err(|source| SimulateError::Listen {
                addr: listen,
                source,
            })?;
    eprintln!("simulator listening on {}", simulator.endpoint_url());
    tracing::debug!(scenario = %source.display(), executions, "simulator started");
    shutdown.cancelled().await;
    simulator.shutdown().await;
    Ok(())
}
