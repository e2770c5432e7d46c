//! Issue 7.8: the shutdown's state flush has a bound. A state store whose
//! write never returns (a stuck disk) must not keep a stopping daemon alive
//! past the flush limit (5 s).
//!
//! The loop runs on tokio's paused clock with a scripted fetcher. The flush
//! runs in `spawn_blocking`, and while a blocking task runs tokio does not
//! auto-advance a paused clock, so the test moves the clock by hand.

use std::sync::Mutex;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::Events;
use crate::support::capture::Capture;
use crate::support::scripted::{Scripted, edges, observed};
use flowwatch::config::{self, LogFormat, LogSettings};
use flowwatch::daemon::{Daemon, Edges};
use flowwatch::state::{Snapshot, StateWriter, Store};

/// A store whose `save` says it started, then blocks until the test drops
/// its `release` sender (also when the test fails, so no thread is left
/// blocked).
struct StuckStore {
    started: mpsc::UnboundedSender<()>,
    release: Mutex<std_mpsc::Receiver<()>>,
}

impl Store for StuckStore {
    fn save(&self, _bytes: &[u8]) -> std::io::Result<()> {
        let _ = self.started.send(());
        let release = flowwatch::lock::lock(&self.release);
        let _ = release.recv(); // returns once the sender is dropped
        Err(std::io::Error::other("the stuck store was released"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_state_write_that_never_returns_holds_the_stop_for_at_most_5_s() {
    let captured = Capture::new();
    let settings = LogSettings {
        format: LogFormat::Json,
        level: tracing::Level::INFO,
    };
    let _guard =
        tracing::subscriber::set_default(flowwatch::event::subscriber(&settings, captured.clone()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flowwatch.toml");
    let text = "[aws]\nregion = \"us-east-1\"\n\n[[watch]]\nflow = \"FLOW123456\"\n\
                alias = \"ALIAS12345\"\nexecution = \"run-0\"\n";
    std::fs::write(&path, text).unwrap();
    let config = config::load(&path).expect("the test config is valid");

    let (started, mut save_started) = mpsc::unbounded_channel();
    let (release, stuck) = std_mpsc::channel::<()>();
    let store = StuckStore {
        started,
        release: Mutex::new(stuck),
    };
    // A period far beyond the test: only the shutdown flush writes.
    let state = StateWriter::spawn_to(
        Box::new(store),
        "stuck store",
        Snapshot::default(),
        Duration::from_secs(24 * 3600),
    );
    let edges = Edges {
        state: Some(state),
        ..edges()
    };
    let fetch = Scripted::always(observed("Running"));
    let daemon = Daemon::new(config, fetch.clone(), edges, Instant::now()).expect("daemon starts");
    let shutdown = CancellationToken::new();
    let (_reloads, reload_rx) = mpsc::channel(1);
    let task = tokio::spawn(daemon.run(reload_rx, shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fetch.calls().len(), 1, "the first poll is answered");

    shutdown.cancel();
    save_started
        .recv()
        .await
        .expect("the stop flushes the state");
    tokio::time::advance(Duration::from_millis(4_900)).await;
    settle().await;
    assert!(
        !task.is_finished(),
        "the stop gave up on the flush too soon"
    );
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    assert!(
        task.is_finished(),
        "5.1 s into a flush that never returns, the stop still waits for it"
    );
    drop(release);
    task.await.expect("the loop does not panic");
    let events = Events(captured.json_lines());
    assert!(
        events
            .0
            .iter()
            .any(|e| e["message"] == "the state file was not written in time; stopping without it"),
        "{events}"
    );
    assert_eq!(events.names().last(), Some(&"daemon.stopped"), "{events}");
}

/// Lets every task woken by a clock move run to its next wait.
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}
