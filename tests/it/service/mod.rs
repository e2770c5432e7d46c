//! The daemon as a service, over the real binary against the in-process
//! simulator on the real clock: sd_notify, reloads (SIGHUP and unprompted
//! file changes), persistence across restarts, health and metrics.

mod files;
mod http;
mod notify;
mod reload;
mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use flowwatch::simulate::Simulator;

use crate::support::{self, Events, Spawned};

/// Generous limit for anything the daemon should do within about a second.
const SOON: Duration = Duration::from_secs(5);

/// A `[[watch]]` table for `execution` of the simulator's flow and alias.
fn watch(execution: &str) -> String {
    format!(
        "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"{execution}\"\n"
    )
}

/// A scenario execution: `Running` from the start, then `end` at `end_at`
/// (`None`: running for ever).
fn execution(id: &str, end: Option<(&str, &str)>) -> String {
    let mut text = format!(
        "[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"{id}\"\ntimeline = [{{ at = \"0s\", status = \"Running\" }}"
    );
    if let Some((end_at, status)) = end {
        text.push_str(&format!(", {{ at = \"{end_at}\", status = \"{status}\" }}"));
    }
    text.push_str("]\n");
    text
}

/// The main config file's text: `top` (top-level keys such as `include`,
/// which TOML wants before any table), the simulator's endpoint, JSON logs,
/// fast polling, then `body` (tables and watches).
fn config_text(sim: &Simulator, top: &str, body: &str) -> String {
    format!(
        "{top}\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n{}\n{body}",
        sim.endpoint_url(),
        support::fast_poll()
    )
}

/// A fresh temp dir holding `flowwatch.toml`.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("flowwatch.toml")
    }

    /// Writes `name` (parents created) in one go.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `name` the way docs/service.md tells applications to: under a
    /// name that no glob matches, then renamed into place.
    fn write_then_rename(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        let temp = path.with_extension("partial");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, &path).unwrap();
        path
    }
}

/// `flowwatch run --config PATH` (no `--once`), started.
fn start(config: &Path) -> Spawned {
    Spawned::start(support::flowwatch(config, &["run"]))
}

/// Waits until `check` gives a value, polling every 20 ms; fails with
/// `what` after `limit`.
async fn until<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {limit:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `execution` has reported a transition to `to`.
fn reached(events: &Events, execution: &str, to: &str) -> bool {
    events.transitions_of(execution).iter().any(|t| t == to)
}

/// The `watch.added` / `watch.removed` events of one execution.
fn count(events: &Events, name: &str, execution: &str) -> usize {
    events
        .named(name)
        .iter()
        .filter(|e| e["execution"] == execution)
        .count()
}

/// Requests the simulator logged for `execution`.
fn requests_for(sim: &Simulator, execution: &str) -> usize {
    sim.stats()
        .log
        .iter()
        .filter(|r| r.execution == execution)
        .count()
}

/// Stops the daemon with SIGTERM and checks it exits 0.
async fn stop(daemon: Spawned) -> Events {
    daemon.signal("TERM");
    let run = daemon.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        run.exit_code, 0,
        "events:\n{}\nstderr:\n{}",
        run.events, run.stderr
    );
    assert_eq!(
        run.events.names().last(),
        Some(&"daemon.stopped"),
        "{}",
        run.events
    );
    run.events
}

/// The `daemon.reloaded` events that changed something, with their index:
/// the file watcher may add reloads that change nothing (it sees the same
/// edit a SIGHUP was sent for).
fn changing_reloads(events: &Events) -> Vec<(usize, &serde_json::Value)> {
    events
        .0
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "daemon.reloaded")
        .filter(|(_, e)| e["added"] != 0 || e["removed"] != 0)
        .collect()
}

/// `[added, removed, watches]` of a `daemon.reloaded` event.
fn reload_counts(reloaded: &serde_json::Value) -> [&serde_json::Value; 3] {
    [
        &reloaded["added"],
        &reloaded["removed"],
        &reloaded["watches"],
    ]
}
