//! The real `flowwatch` binary and the real SDK against the in-process
//! simulator over loopback: what only the wire shows. One module per
//! capability. A rule of one stage is tested next to its code, a rule of the
//! loop in `daemon_loop.rs` on the paused clock; here stay the rules that need
//! real HTTP, the SDK's own behaviour, or the real process.

mod events;
mod sdk_retries;
mod signals;
mod throttling;

use std::time::Duration;

use flowwatch::simulate::Simulator;

use crate::support::{Run, Spawned};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `[[watch]]` by parts, with no labels.
fn watch(execution: &str) -> String {
    format!(
        "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"{execution}\"\n\n"
    )
}

/// An execution that stays `Running` for the whole test.
fn running(id: &str) -> String {
    format!("[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"{id}\"\n\n")
}

/// Waits until the simulator has logged `n` requests (fails after `limit`).
async fn wait_for_requests(sim: &Simulator, n: usize, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while sim.stats().log.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} requests within {limit:?}",
            sim.stats().log.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops a daemon with SIGTERM and checks it exits 0.
async fn terminate(daemon: Spawned) -> Run {
    daemon.signal("TERM");
    let run = daemon.wait_exit(secs(20)).await;
    assert_eq!(run.exit_code, 0, "stderr: {}", run.stderr);
    run
}
