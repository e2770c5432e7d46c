//! SIGTERM and SIGINT sent to the real process: in-flight polls finish and
//! are reported, nothing new is sent, exit 0.

use std::time::Duration;

use super::{running, secs, watch};
use crate::support::{Spawned, TestConfig, fast_poll, flowwatch, simulator};

/// SIGTERM/SIGINT right after start-up, while the first polls are in flight
/// behind 1.5 s of latency: their answers are still reported, and nothing
/// new is sent.
async fn a_stop_signal_lets_in_flight_polls_finish(signal: &str) {
    let scenario = format!(
        "latency = \"1500ms\"\n\n{}{}[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"done\"\ntimeline = [{{ at = \"0s\", status = \"Succeeded\" }}]\n",
        running("slow-1"),
        running("slow-2")
    );
    let sim = simulator(&scenario).await;
    let body = format!(
        "{}{}{}{}",
        fast_poll(),
        watch("slow-1"),
        watch("slow-2"),
        watch("done")
    );
    let cfg = TestConfig::new(&sim.endpoint_url(), &body);
    let daemon = Spawned::start(flowwatch(&cfg.path, &["run"]));
    daemon
        .wait_for("3 watch.added", secs(20), |events| {
            events.named("watch.added").len() >= 3
        })
        .await;
    daemon.signal(signal);
    let run = daemon.wait_exit(secs(20)).await;
    let events = &run.events;
    assert_eq!(run.exit_code, 0, "stderr: {}\n{events}", run.stderr);
    let names: Vec<&str> = events.names().into_iter().filter(|n| *n != "log").collect();
    assert_eq!(
        names,
        [
            "daemon.started",
            "watch.added",
            "watch.added",
            "watch.added",
            "daemon.stopping",
            "execution.transition",
            "execution.transition",
            "execution.transition",
            "daemon.stopped",
        ],
        "{events}"
    );
    assert_eq!(
        events.one("daemon.stopping", |_| true)["watches_left"],
        3,
        "{events}"
    );
    assert_eq!(
        events.one("daemon.stopped", |_| true)["watches_left"],
        2,
        "done ended in the grace period: {events}"
    );
    assert_eq!(events.transitions_of("done"), ["Succeeded"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = sim.stats().log;
    assert_eq!(
        log.len(),
        3,
        "only the polls in flight at the stop: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_and_reports_in_flight_polls() {
    a_stop_signal_lets_in_flight_polls_finish("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_gracefully_and_reports_in_flight_polls() {
    a_stop_signal_lets_in_flight_polls_finish("INT").await;
}
