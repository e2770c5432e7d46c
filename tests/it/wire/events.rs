//! Every contract event as a user sees it in the real binary's JSON output:
//! the fields, their levels and types, the subject (the ARN the service
//! answered with), and transition ids that hold across runs.

use std::collections::HashMap;

use serde_json::Value;

use flowwatch::simulate::RequestRecord;

use super::watch;
use crate::support::{Events, TestConfig, fast_poll, run_once, simulator};

const ARN_PREFIX: &str =
    "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/";

/// Parses an RFC 3339 UTC timestamp as the contract writes it (`Z`, not an offset).
fn utc(value: &Value, field: &str) -> std::time::SystemTime {
    let text = value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string in {value}"));
    assert!(text.ends_with('Z'), "{field} is not UTC: {value}");
    humantime::parse_rfc3339(text)
        .unwrap_or_else(|e| panic!("{field} is not RFC 3339 ({e}): {value}"))
}

/// Requests the simulator logged for one execution label.
fn requests_for<'a>(log: &'a [RequestRecord], execution: &str) -> Vec<&'a RequestRecord> {
    log.iter().filter(|r| r.execution == execution).collect()
}

const TWO_ENDINGS: &str = r#"
[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "run-ok"
flow_version = "7"
timeline = [{ at = "0s", status = "Running" }, { at = "2200ms", status = "Succeeded" }]

[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "run-failed"
flow_version = "3"
timeline = [{ at = "0s", status = "Running" }, { at = "1800ms", status = "Failed" }]
errors = [
  { error = "NodeExecutionFailed", node = "Prompt_1", message = "model invocation failed" },
  { error = "OutputMissing", message = "flow output missing" },
]
"#;

fn two_endings_config(endpoint_url: &str) -> TestConfig {
    let body = format!(
        "{}\n[[watch]]\nexecution_arn = \"{ARN_PREFIX}run-ok\"\nlabels = {{ team = \"search\", tier = \"gold\" }}\n\n{}",
        fast_poll(),
        watch("run-failed")
    );
    TestConfig::new(endpoint_url, &body)
}

/// The level the contract's Events table gives each event.
fn contract_level(event: &Value) -> Option<&'static str> {
    Some(match event["event"].as_str()? {
        "daemon.started"
        | "watch.added"
        | "watch.removed"
        | "execution.transition"
        | "daemon.reloaded"
        | "daemon.stopping"
        | "daemon.stopped" => "INFO",
        "execution.error" | "poll.throttled" => "WARN",
        // Access denied is logged at ERROR each time (contract, polling behaviour).
        "poll.failed" if event["error_kind"] == "access_denied" => "ERROR",
        "poll.failed" => "WARN",
        "watch.abandoned" | "daemon.reload_failed" => "ERROR",
        _ => return None,
    })
}

/// Every line has `timestamp` (RFC 3339, UTC), `level`, `event` and a
/// `message`; every contract event has the contract's level.
fn assert_every_line_is_complete(events: &Events) {
    for event in &events.0 {
        utc(event, "timestamp");
        for field in ["level", "event", "message"] {
            assert!(
                event[field].as_str().is_some_and(|s| !s.is_empty()),
                "no {field} in {event}"
            );
        }
        if let Some(level) = contract_level(event) {
            assert_eq!(event["level"], level, "level of {event}");
        }
    }
}

/// The fields every event about one execution carries (`FLOW123456`,
/// `ALIAS12345`, us-east-1): the ARN only when the watch names one, the
/// labels object only when the watch has labels.
fn assert_subject(event: &Value, execution: &str, by_arn: bool, labels: Option<Value>) {
    assert_eq!(event["flow"], "FLOW123456", "{event}");
    assert_eq!(event["alias"], "ALIAS12345", "{event}");
    assert_eq!(event["execution"], execution, "{event}");
    assert_eq!(event["region"], "us-east-1", "{event}");
    if by_arn {
        assert_eq!(
            event["execution_arn"],
            format!("{ARN_PREFIX}{execution}"),
            "{event}"
        );
    } else if event["event"] == "watch.added" {
        // Given by parts: unknown until the service answers...
        assert!(
            event.get("execution_arn").is_none(),
            "an arn nobody gave: {event}"
        );
    } else if let Some(arn) = event.get("execution_arn") {
        // ...then the ARN the service answered with.
        assert_eq!(*arn, format!("{ARN_PREFIX}{execution}"), "{event}");
    }
    match labels {
        Some(labels) => assert_eq!(event["labels"], labels, "{event}"),
        None => assert!(event.get("labels").is_none(), "labels nobody gave: {event}"),
    }
}

/// Every event that names `execution`.
fn about<'a>(events: &'a Events, execution: &str) -> Vec<&'a Value> {
    events
        .0
        .iter()
        .filter(|e| e["execution"] == execution)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_a_run_carries_the_contract_fields() {
    let sim = simulator(TWO_ENDINGS).await;
    let cfg = two_endings_config(&sim.endpoint_url());
    let run = run_once(&cfg.path).await;
    let events = &run.events;
    assert_eq!(
        run.exit_code, 3,
        "one execution failed; stderr: {}\n{events}",
        run.stderr
    );
    assert_every_line_is_complete(events);

    let names: Vec<&str> = events.names().into_iter().filter(|n| *n != "log").collect();
    assert_eq!(names.first(), Some(&"daemon.started"), "{events}");
    assert_eq!(
        names[names.len() - 2..],
        ["daemon.stopping", "daemon.stopped"],
        "{events}"
    );
    let started = events.one("daemon.started", |_| true);
    assert_eq!(started["watches"], 2, "{started}");
    assert_eq!(started["version"], env!("CARGO_PKG_VERSION"), "{started}");
    for stop in [
        events.one("daemon.stopping", |_| true),
        events.one("daemon.stopped", |_| true),
    ] {
        assert_eq!(
            stop["watches_left"], 0,
            "--once ends when nothing is left: {stop}"
        );
    }

    let labels = serde_json::json!({ "team": "search", "tier": "gold" });
    for e in about(events, "run-ok") {
        assert_subject(e, "run-ok", true, Some(labels.clone()));
    }
    for e in about(events, "run-failed") {
        assert_subject(e, "run-failed", false, None);
    }
    let source = cfg.path.display().to_string();
    for execution in ["run-ok", "run-failed"] {
        let added = events.one("watch.added", |e| e["execution"] == execution);
        assert_eq!(added["source"], source.as_str(), "{added}");
    }

    let log = sim.stats().log;
    for (execution, end, flow_version) in
        [("run-ok", "Succeeded", "7"), ("run-failed", "Failed", "3")]
    {
        let transitions: Vec<&Value> = events
            .named("execution.transition")
            .into_iter()
            .filter(|e| e["execution"] == execution)
            .collect();
        assert_eq!(
            events.transitions_of(execution),
            ["Running", end],
            "{events}"
        );
        let (first, last) = (transitions[0], transitions[1]);
        assert!(
            first.get("from").is_none(),
            "the first observation has no from: {first}"
        );
        assert_eq!(last["from"], "Running", "{last}");
        assert_eq!(
            (&first["terminal"], &last["terminal"]),
            (&Value::Bool(false), &Value::Bool(true))
        );
        for t in [first, last] {
            assert_eq!(t["flow_version"], flow_version, "{t}");
            assert!(
                t["transition_id"].as_str().is_some_and(|id| !id.is_empty()),
                "{t}"
            );
            assert!(t["watched_ms"].is_u64(), "{t}");
        }
        assert_ne!(first["transition_id"], last["transition_id"]);
        assert_eq!(utc(first, "started_at"), utc(last, "started_at"));
        assert!(
            first.get("ended_at").is_none(),
            "ended_at while running: {first}"
        );
        assert!(
            first.get("detect_lag_ms").is_none(),
            "detect_lag_ms while running: {first}"
        );
        let ended_at = utc(last, "ended_at");
        assert!(ended_at > utc(last, "started_at"), "{last}");
        // detect_lag_ms is the event's own now − ended_at: consistent with the
        // timestamp it is written with (a few ms apart at most).
        let lag = last["detect_lag_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("no detect_lag_ms: {last}"));
        let by_timestamp = utc(last, "timestamp")
            .duration_since(ended_at)
            .unwrap()
            .as_millis() as i64;
        assert!(
            (by_timestamp - lag as i64).abs() <= 250,
            "lag {lag} vs timestamp {by_timestamp}: {last}"
        );
        assert!(
            last["watched_ms"].as_u64() > first["watched_ms"].as_u64(),
            "{first}\n{last}"
        );
        // `polls` counts requests so far: the first answer was the first
        // request, and the terminal one the last the simulator saw.
        assert_eq!(first["polls"], 1, "{first}");
        let requests = requests_for(&log, execution).len();
        assert_eq!(
            last["polls"], requests,
            "{last}; the simulator saw {requests}"
        );
    }

    let errors: Vec<&Value> = events.named("execution.error");
    assert_eq!(errors.len(), 2, "once per entry of errors: {events}");
    assert_eq!(
        (
            &errors[0]["error"],
            &errors[0]["error_message"],
            &errors[0]["node"]
        ),
        (
            &Value::from("NodeExecutionFailed"),
            &Value::from("model invocation failed"),
            &Value::from("Prompt_1")
        ),
    );
    assert_eq!(
        (&errors[1]["error"], &errors[1]["error_message"]),
        (
            &Value::from("OutputMissing"),
            &Value::from("flow output missing")
        ),
    );
    assert!(
        errors[1].get("node").is_none(),
        "an error without a node: {}",
        errors[1]
    );
    let names = events.names();
    let failed_at = events
        .0
        .iter()
        .position(|e| e["event"] == "execution.transition" && e["to"] == "Failed");
    let first_error = names.iter().position(|n| *n == "execution.error");
    assert!(
        first_error > failed_at && failed_at.is_some(),
        "errors follow the terminal transition:\n{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transition_ids_are_the_same_in_two_separate_runs_however_the_watch_is_spelled() {
    let (sim_a, sim_b) = (simulator(TWO_ENDINGS).await, simulator(TWO_ENDINGS).await);
    // The second run names run-ok by parts and run-failed by ARN.
    let swapped = format!(
        "{}\n{}\n[[watch]]\nexecution_arn = \"{ARN_PREFIX}run-failed\"\n",
        fast_poll(),
        watch("run-ok")
    );
    let (cfg_a, cfg_b) = (
        two_endings_config(&sim_a.endpoint_url()),
        TestConfig::new(&sim_b.endpoint_url(), &swapped),
    );
    let (a, b) = tokio::join!(run_once(&cfg_a.path), run_once(&cfg_b.path));
    let ids = |events: &Events| -> HashMap<(String, String), String> {
        events
            .named("execution.transition")
            .into_iter()
            .map(|e| {
                let key = (
                    e["execution"].as_str().unwrap().to_owned(),
                    e["to"].as_str().unwrap().to_owned(),
                );
                (key, e["transition_id"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    let (ids_a, ids_b) = (ids(&a.events), ids(&b.events));
    assert_eq!(ids_a.len(), 4, "{}", a.events);
    assert_eq!(
        ids_a, ids_b,
        "first run:\n{}\nsecond run:\n{}",
        a.events, b.events
    );
    let distinct: std::collections::HashSet<&String> = ids_a.values().collect();
    assert_eq!(distinct.len(), 4, "one id per (execution, to): {ids_a:?}");
}
