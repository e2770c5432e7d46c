//! Flow discovery (issue 9) over the real binary and the simulator (pages
//! of at most 10): paging across many pages, executions appearing while the
//! daemon runs, `since`, a reload that adds and drops a `[[watch_flow]]`,
//! the discovery share under a long history, and the combined request rate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use flowwatch::simulate::{Answer, Simulator};

use crate::support::{Events, Spawned, TestConfig, fast_poll, flowwatch, run_once, simulator};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn flow_table(flow: &str, extra: &str) -> String {
    format!("[[watch_flow]]\nflow = \"{flow}\"\n{extra}\n")
}

/// Executions that start at `start` (offset from the simulator's start) and
/// succeed 300 ms later.
fn execution(flow: &str, id: &str, start_ms: u64) -> String {
    format!(
        "[[execution]]\nflow = \"{flow}\"\nalias = \"ALIAS12345\"\nid = \"{id}\"\n\
         timeline = [{{ at = \"{start_ms}ms\", status = \"Running\" }}, {{ at = \"{}ms\", status = \"Succeeded\" }}]\n\n",
        start_ms + 300
    )
}

fn config(sim: &Simulator, poll: &str, tables: &str) -> TestConfig {
    TestConfig::new(
        &sim.endpoint_url(),
        &format!("{}{poll}\n{tables}", fast_poll()),
    )
}

/// `config` walking every 200 ms, with `[state]` in a folder of its own
/// (kept while the returned `TempDir` lives).
fn with_state(sim: &Simulator, tables: &str) -> (tempfile::TempDir, PathBuf, TestConfig) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let state = format!("[state]\npath = \"{}\"\n\n{tables}", path.display());
    let cfg = config(sim, "list_interval = \"200ms\"", &state);
    (dir, path, cfg)
}

fn discovered(events: &Events) -> Vec<&Value> {
    events
        .named("watch.added")
        .into_iter()
        .filter(|e| e["source"] == "discovery")
        .collect()
}

fn list_requests(sim: &Simulator) -> usize {
    sim.stats()
        .log
        .iter()
        .filter(|r| r.operation == "ListFlowExecutions")
        .count()
}

#[tokio::test]
async fn one_walk_pages_across_many_pages_and_watches_every_execution_once() {
    let sim = simulator(
        "[[generate]]\ncount = 35\nid_prefix = \"gen-\"\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nend_between = [\"100ms\", \"400ms\"]\n",
    )
    .await;
    let cfg = config(&sim, "", &flow_table("FLOW123456", "since = \"1h\""));
    let run = run_once(&cfg.path).await;
    let events = &run.events;
    assert_eq!(run.exit_code, 0, "{events}\n{}", run.stderr);
    let added = discovered(events);
    assert_eq!(added.len(), 35, "{events}");
    for add in &added {
        assert_eq!(add["flow"], "FLOW123456");
        assert!(add["execution_arn"].as_str().is_some(), "{add}");
    }
    let mut terminal: BTreeMap<String, usize> = BTreeMap::new();
    for e in events.named("execution.transition") {
        if e["terminal"] == true {
            *terminal
                .entry(e["execution"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(terminal.len(), 35, "{events}");
    assert!(terminal.values().all(|n| *n == 1), "{terminal:?}");
    assert!(
        list_requests(&sim) >= 4,
        "35 executions take 4 pages of 10: {}",
        list_requests(&sim)
    );
}

#[tokio::test]
async fn executions_that_start_while_the_daemon_runs_are_found_and_older_ones_are_not() {
    let sim = simulator(&format!(
        "{}{}",
        execution("FLOW123456", "run-old", 0),
        execution("FLOW123456", "run-late", 1500),
    ))
    .await;
    // `since` defaults to the daemon's start: run-old started before it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cfg = config(
        &sim,
        "list_interval = \"200ms\"",
        &flow_table("FLOW123456", ""),
    );
    let daemon = Spawned::start(flowwatch(&cfg.path, &["run"]));
    let events = daemon
        .wait_for("run-late to succeed", secs(20), |events| {
            events.transitions_of("run-late").last().map(String::as_str) == Some("Succeeded")
        })
        .await;
    let added = discovered(&events);
    assert_eq!(added.len(), 1, "{events}");
    assert_eq!(added[0]["execution"], "run-late");
    assert!(events.transitions_of("run-old").is_empty(), "{events}");
    daemon.signal("TERM");
    let run = daemon.wait_exit(secs(10)).await;
    assert_eq!(run.exit_code, 0, "{}", run.stderr);
}

#[tokio::test]
async fn since_as_an_rfc_3339_time_or_a_duration_bounds_what_is_discovered() {
    let sim = simulator(&format!(
        "{}{}",
        execution("FLOW123456", "run-a", 0),
        execution("FLOWBBBBBB", "run-b", 0),
    ))
    .await;
    let future = humantime::format_rfc3339(std::time::SystemTime::now() + secs(3600)).to_string();
    let cfg = config(
        &sim,
        "",
        &format!(
            "{}{}",
            flow_table("FLOW123456", "since = \"10m\""),
            flow_table("FLOWBBBBBB", &format!("since = \"{future}\"")),
        ),
    );
    let run = run_once(&cfg.path).await;
    assert_eq!(run.exit_code, 0, "{}\n{}", run.events, run.stderr);
    let added: Vec<&str> = discovered(&run.events)
        .iter()
        .map(|e| e["execution"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["run-a"], "{}", run.events);
}

#[tokio::test]
async fn a_reload_adds_a_flow_table_and_dropping_it_removes_its_watches() {
    // Executions that run for a minute: still watched when the table goes.
    let running = |flow: &str, id: &str| {
        format!("[[execution]]\nflow = \"{flow}\"\nalias = \"ALIAS12345\"\nid = \"{id}\"\n\n")
    };
    let sim = simulator(&format!(
        "{}{}",
        running("FLOW123456", "run-a"),
        running("FLOWBBBBBB", "run-b"),
    ))
    .await;
    let table_a = flow_table("FLOW123456", "since = \"1h\"");
    let table_b = flow_table("FLOWBBBBBB", "since = \"1h\"");
    let cfg = config(&sim, "list_interval = \"200ms\"", &table_a);
    let daemon = Spawned::start(flowwatch(&cfg.path, &["run"]));
    daemon
        .wait_for("run-a found", secs(20), |e| {
            discovered(e).iter().any(|a| a["execution"] == "run-a")
        })
        .await;
    std::fs::write(
        &cfg.path,
        std::fs::read_to_string(&cfg.path).unwrap() + &table_b,
    )
    .unwrap();
    daemon.signal("HUP");
    daemon
        .wait_for("run-b found", secs(20), |e| {
            discovered(e).iter().any(|a| a["execution"] == "run-b")
        })
        .await;
    let text = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .replace(&table_a, "");
    std::fs::write(&cfg.path, text).unwrap();
    daemon.signal("HUP");
    let events = daemon
        .wait_for("run-a removed", secs(20), |e| {
            e.named("watch.removed")
                .iter()
                .any(|r| r["execution"] == "run-a")
        })
        .await;
    assert!(
        !events
            .named("watch.removed")
            .iter()
            .any(|r| r["execution"] == "run-b"),
        "{events}"
    );
    daemon.signal("TERM");
    let run = daemon.wait_exit(secs(10)).await;
    assert_eq!(run.exit_code, 0, "{}", run.stderr);
    let added_a = discovered(&run.events)
        .iter()
        .filter(|a| a["execution"] == "run-a")
        .count();
    assert_eq!(added_a, 1, "found once: {}", run.events);
}

/// The largest number of requests in any 1 s window of the simulator's log.
fn busiest_second(at: &[Duration]) -> usize {
    let mut best = 0;
    for (i, start) in at.iter().enumerate() {
        let n = at[i..]
            .iter()
            .take_while(|t| **t < *start + secs(1))
            .count();
        best = best.max(n);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_long_history_discovery_keeps_to_its_share_and_all_requests_to_the_rate_limit() {
    // 3,000 ended executions: a walk of 300 pages. Five running watched
    // executions share the region with it.
    let mut scenario = String::from(
        "[[generate]]\ncount = 3000\nid_prefix = \"old-\"\nflow = \"FLOWLONGHI\"\nalias = \"ALIAS12345\"\nend_between = [\"1ms\", \"2ms\"]\n\n",
    );
    for n in 0..5 {
        scenario += &format!(
            "[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"run-{n}\"\n\n"
        );
    }
    let sim = simulator(&scenario).await;
    let watches: String = (0..5)
        .map(|n| {
            format!(
                "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-{n}\"\n\n"
            )
        })
        .collect();
    let body = format!(
        "[poll]\ninterval_initial = \"100ms\"\ninterval_max = \"100ms\"\njitter = 0.0\nrate_limit = 20.0\nlist_interval = \"1s\"\n\n{watches}{}",
        flow_table("FLOWLONGHI", "")
    );
    let cfg = TestConfig::new(&sim.endpoint_url(), &body);
    let daemon = Spawned::start(flowwatch(&cfg.path, &["run"]));
    tokio::time::sleep(secs(6)).await;
    daemon.signal("TERM");
    let run = daemon.wait_exit(secs(10)).await;
    assert_eq!(run.exit_code, 0, "{}", run.stderr);
    let log = sim.stats().log;
    let started = log
        .iter()
        .find(|r| r.operation == "ListFlowExecutions")
        .map(|r| r.at)
        .expect("a walk started");
    let lists: Vec<Duration> = log
        .iter()
        .filter(|r| r.operation == "ListFlowExecutions")
        .map(|r| r.at)
        .collect();
    let ended = log.last().unwrap().at;
    let span = (ended - started).as_secs_f64();
    // 20 req/s × 0.25 = 5 pages a second, at most (plus one for the edges).
    assert!(
        lists.len() as f64 <= 5.0 * span + 2.0,
        "{} list pages in {span:.1}s",
        lists.len()
    );
    assert!(lists.len() >= 10, "the walk went on: {}", lists.len());
    // Polls did not starve: every watch was polled many times.
    for n in 0..5 {
        let id = format!("run-{n}");
        let polls = log
            .iter()
            .filter(|r| r.execution == id && r.answer == Answer::Ok)
            .count();
        assert!(polls >= 10, "{id} polled {polls} times");
    }
    // All requests together stay within rate_limit in any 1 s window,
    // with the contract's burst of max(2, 10 %).
    let all: Vec<Duration> = log.iter().map(|r| r.at).collect();
    let busiest = busiest_second(&all);
    eprintln!(
        "figures: {} list pages in {span:.1}s ({:.2}/s), {} requests in all, busiest second {busiest}",
        lists.len(),
        lists.len() as f64 / span,
        all.len()
    );
    assert!(busiest <= 22, "{busiest} requests in one second");
}

#[tokio::test]
async fn a_discovered_watch_survives_a_restart_through_the_state_file() {
    // run-long starts after the daemon and ends 5 s in: the first daemon
    // finds it and stops; the second, started after it (so its default
    // `since` is later), still watches it to its end.
    let sim = simulator(
        "[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"run-long\"\n\
         timeline = [{ at = \"2s\", status = \"Running\" }, { at = \"5s\", status = \"Succeeded\" }]\n",
    )
    .await;
    let (_state_dir, state_path, cfg) = with_state(&sim, &flow_table("FLOW123456", ""));
    let first = Spawned::start(flowwatch(&cfg.path, &["run"]));
    first
        .wait_for("run-long found", secs(20), |e| {
            discovered(e).iter().any(|a| a["execution"] == "run-long")
        })
        .await;
    first.signal("TERM");
    let run = first.wait_exit(secs(10)).await;
    assert_eq!(run.exit_code, 0, "{}", run.stderr);
    let saved = std::fs::read_to_string(&state_path).unwrap();
    assert!(saved.contains("\"discovered\""), "{saved}");

    let second = run_once(&cfg.path).await;
    assert_eq!(second.exit_code, 0, "{}\n{}", second.events, second.stderr);
    assert_eq!(
        second
            .events
            .transitions_of("run-long")
            .last()
            .map(String::as_str),
        Some("Succeeded"),
        "{}",
        second.events
    );
    let restored = discovered(&second.events);
    assert_eq!(restored.len(), 1, "restored once: {}", second.events);
    // Ended and out: it leaves the state file.
    let saved = std::fs::read_to_string(&state_path).unwrap();
    assert!(!saved.contains("run-long"), "{saved}");
}

#[tokio::test]
async fn an_ended_execution_retired_before_a_restart_is_not_reported_again_after_it() {
    // `since = "1h"` reaches back before the restart: without the seen
    // records in `[state]`, the second daemon would list run-a again and
    // report it as new.
    let sim = simulator(&execution("FLOW123456", "run-a", 0)).await;
    let (_state_dir, state_path, cfg) =
        with_state(&sim, &flow_table("FLOW123456", "since = \"1h\""));
    let first = run_once(&cfg.path).await;
    assert_eq!(first.exit_code, 0, "{}\n{}", first.events, first.stderr);
    assert_eq!(discovered(&first.events).len(), 1, "{}", first.events);
    assert_eq!(
        first
            .events
            .transitions_of("run-a")
            .last()
            .map(String::as_str),
        Some("Succeeded"),
        "{}",
        first.events
    );
    // Retired: out of the watches, in the table's seen records.
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert!(!saved.to_string().contains("run-a"), "{saved}");
    let tables = saved["seen"]
        .as_object()
        .unwrap_or_else(|| panic!("no seen records: {saved}"));
    assert_eq!(tables.len(), 1, "{saved}");
    let records = tables.values().next().and_then(Value::as_str).unwrap();
    assert_eq!(records.len(), 32, "one 24-byte record in base64: {saved}");

    let second = run_once(&cfg.path).await;
    assert_eq!(second.exit_code, 0, "{}\n{}", second.events, second.stderr);
    assert!(discovered(&second.events).is_empty(), "{}", second.events);
    assert!(
        second.events.transitions_of("run-a").is_empty(),
        "{}",
        second.events
    );
    assert!(
        list_requests(&sim) >= 2,
        "the second daemon walked too: {}",
        list_requests(&sim)
    );
}
