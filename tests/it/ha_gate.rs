//! The HA poll gate in the loop, on tokio's paused clock with a scripted
//! fetcher (issue 12): a leader whose renewal deadline passes sends nothing
//! more, even if nobody tells the loop, and polls again once re-opened.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use flowwatch::config;
use flowwatch::daemon::Daemon;
use flowwatch::ha::Gate;

use crate::support::scripted::{Scripted, edges, observed};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn polls_stop_at_the_gate_deadline_and_resume_when_it_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flowwatch.toml");
    let watches: String = (0..3)
        .map(|i| format!("[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-{i}\"\n"))
        .collect();
    std::fs::write(
        &path,
        format!("[aws]\nregion = \"us-east-1\"\n\n[poll]\ninterval_initial = \"1s\"\ninterval_max = \"1s\"\njitter = 0.0\n\n{watches}"),
    )
    .unwrap();
    let fetch = Scripted::always(observed("Running"));
    let t0 = Instant::now();
    let gate = Gate::closed();
    gate.open_until(t0 + secs(5));
    let daemon = Daemon::new(config::load(&path).unwrap(), fetch.clone(), edges(), t0)
        .unwrap()
        .with_gate(gate.clone());
    let shutdown = CancellationToken::new();
    let (_reloads, reload_rx) = mpsc::channel(1);
    let task = tokio::spawn(daemon.run(reload_rx, shutdown.clone()));

    tokio::time::sleep(secs(20)).await;
    let calls = fetch.calls();
    assert!(calls.len() >= 3 * 4, "polled while open: {calls:?}");
    assert!(
        calls.iter().all(|(at, _)| *at < t0 + secs(5)),
        "a poll after the deadline: {calls:?}"
    );

    let reopened = Instant::now();
    gate.open_until(reopened + secs(60));
    tokio::time::sleep(secs(2)).await;
    let after: Vec<_> = fetch
        .calls()
        .into_iter()
        .filter(|(at, _)| *at >= reopened)
        .collect();
    assert!(after.len() >= 3, "no polls after reopening: {after:?}");

    shutdown.cancel();
    task.await.expect("the loop does not panic");
}
