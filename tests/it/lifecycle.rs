//! The daemon's life as a process, over the real binary: a second stop
//! signal during the grace period, the state saved before a watch's first
//! answer, and a reload that applies `[poll]` and `[log] level` live.

use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{self, Events, Spawned, TestConfig};

/// Generous limit for anything the daemon should do within about a second.
const SOON: Duration = Duration::from_secs(10);

/// An endpoint that accepts connections, reads what comes and never
/// answers: every poll stays in flight. Returns its URL and how many
/// connections it has taken.
fn silent_endpoint() -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            *count.lock().unwrap() += 1;
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(1..) = stream.read(&mut buf) {}
            });
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn a_second_stop_signal_ends_the_grace_period_at_once_and_the_state_keeps_each_watch() {
    let (url, accepted) = silent_endpoint();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let body = format!(
        "[poll]\nrequest_timeout = \"60s\"\n\n[state]\npath = \"{}\"\n\n{}",
        state.display(),
        support::watches_by_parts("run-", 1)
    );
    let config = TestConfig::new(&url, &body);
    let daemon = Spawned::start(support::flowwatch(&config.path, &["run"]));
    daemon
        .wait_for("the watch", SOON, |e| !e.named("watch.added").is_empty())
        .await;
    let deadline = std::time::Instant::now() + SOON;
    while *accepted.lock().unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "no request came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.signal("TERM");
    daemon
        .wait_for("stopping", SOON, |e| !e.named("daemon.stopping").is_empty())
        .await;
    daemon.signal("TERM");
    let run = daemon.wait_exit(SOON).await;
    assert_eq!(run.exit_code, 0, "stderr: {}", run.stderr);
    let events = &run.events;
    assert!(
        events.0.iter().any(|e| e["level"] == "WARN"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("stopping at once"))),
        "the second signal cut the grace short: {events}"
    );
    assert_eq!(events.names().last(), Some(&"daemon.stopped"), "{events}");
    assert!(events.named("execution.transition").is_empty(), "{events}");
    // Never answered, yet saved: when watching began survives a restart.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("the state was flushed"))
            .unwrap();
    let watches = saved["watches"].as_object().expect("a watches map");
    assert_eq!(watches.len(), 1, "{saved}");
    let (key, watch) = watches.iter().next().unwrap();
    assert!(key.ends_with("run-1"), "{key}");
    assert_eq!(watch["status"], "", "{saved}");
    assert!(
        watch["watched_since_unix_ms"].as_u64().unwrap() > 0,
        "{saved}"
    );
}

fn scenario_running(id: &str) -> String {
    format!(
        "[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"{id}\"\ntimeline = [{{ at = \"0s\", status = \"Running\" }}]\n"
    )
}

fn debug_records(events: &Events) -> usize {
    events.0.iter().filter(|e| e["level"] == "DEBUG").count()
}

#[tokio::test]
async fn a_reload_applies_poll_settings_and_log_level_and_names_what_needs_a_restart() {
    let sim = support::simulator(&scenario_running("run-1")).await;
    let text = |poll: &str, log_level: &str, tail: &str| {
        format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[log]\nformat = \"json\"\nlevel = \"{log_level}\"\n\n[poll]\ninterval_initial = \"20ms\"\ninterval_max = \"100ms\"\njitter = 0.0\n{poll}\n{tail}\n{}",
            sim.endpoint_url(),
            support::watches_by_parts("run-", 1)
        )
    };
    let config = TestConfig::new(&sim.endpoint_url(), "");
    std::fs::write(&config.path, text("rate_limit = 50.0", "info", "")).unwrap();
    let daemon = Spawned::start(support::flowwatch(&config.path, &["run"]));
    daemon
        .wait_for("running", SOON, |e| !e.transitions_of("run-1").is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(debug_records(&daemon.events()), 0, "{}", daemon.events());

    let state = config.dir.path().join("state.json");
    let tail = format!("[state]\npath = \"{}\"\n", state.display());
    std::fs::write(&config.path, text("rate_limit = 5.0", "debug", &tail)).unwrap();
    daemon.signal("HUP");
    let events = daemon
        .wait_for("debug records after the reload", SOON, |e| {
            !e.named("daemon.reloaded").is_empty() && debug_records(e) > 0
        })
        .await;
    let reloaded = events.one("daemon.reloaded", |_| true);
    assert_eq!(
        reloaded["changed"],
        serde_json::json!(["poll.rate_limit", "log.level", "state.path"]),
        "{reloaded}"
    );
    assert_eq!(reloaded["watches"], 1);
    let warning = events
        .0
        .iter()
        .find(|e| e["level"] == "WARN" && e.get("keys").is_some())
        .unwrap_or_else(|| panic!("a restart warning: {events}"));
    assert_eq!(warning["keys"], "state.path", "{warning}");
    assert!(!state.exists(), "[state] waits for a restart");
    daemon.signal("TERM");
    let run = daemon.wait_exit(SOON).await;
    assert_eq!(run.exit_code, 0, "stderr: {}", run.stderr);
}
