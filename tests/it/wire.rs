//! The real `flowwatch` binary and the real SDK against the in-process
//! simulator over loopback: every contract event as a user sees it in the
//! JSON output, throttling, fairness and burst as the simulator's request log
//! shows them, signals, and the SDK's retry environment.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use flowwatch::simulate::{Answer, RequestRecord};

use flowwatch::simulate::Simulator;

use crate::support::{
    Events, Run, Spawned, TestConfig, fast_poll, flowwatch, run_once, simulator, watches_by_parts,
};

const ARN_PREFIX: &str =
    "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_cannot_end_is_abandoned_with_its_reason() {
    let scenario = format!(
        r#"
[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "broken"
invalid = true

[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "forbidden"
access_denied = true

{}"#,
        running("forever")
    );
    let sim = simulator(&scenario).await;
    // "ghost" is unknown to the simulator: 404 until not_found_grace (300ms).
    let body = format!(
        "{}max_watch = \"1500ms\"\n\n{}{}{}{}",
        fast_poll(),
        watch("ghost"),
        watch("broken"),
        watch("forbidden"),
        watch("forever")
    );
    let cfg = TestConfig::new(&sim.endpoint_url(), &body);
    let run = run_once(&cfg.path).await;
    let events = &run.events;
    assert_eq!(
        run.exit_code, 3,
        "abandoned watches fail --once; stderr: {}\n{events}",
        run.stderr
    );
    assert_every_line_is_complete(events);
    for (execution, reason) in [
        ("ghost", "not_found"),
        ("broken", "invalid"),
        ("forbidden", "access_denied"),
        ("forever", "max_watch"),
    ] {
        let abandoned = events.one("watch.abandoned", |e| e["execution"] == execution);
        assert_eq!(abandoned["reason"], reason, "{abandoned}");
        assert_subject(abandoned, execution, false, None);
    }
    assert_eq!(events.transitions_of("forever"), ["Running"], "{events}");
    let log = sim.stats().log;
    assert_eq!(
        requests_for(&log, "broken").len(),
        1,
        "a ValidationException abandons at once"
    );
    // Access denied is retried (at interval_max) and logged at ERROR each
    // time, but for the last answer, which ends the watch.
    let denied = events.named("poll.failed");
    assert!(denied.len() >= 2, "{events}");
    for failed in &denied {
        assert_eq!(failed["execution"], "forbidden", "{failed}");
        assert_eq!(failed["error_kind"], "access_denied", "{failed}");
        assert_eq!(failed["error_code"], "AccessDeniedException", "{failed}");
        assert!(failed["retry_in_ms"].is_u64(), "{failed}");
    }
    assert_eq!(
        requests_for(&log, "forbidden").len(),
        denied.len() + 1,
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_failed_polls_are_warnings_with_their_retry_delay() {
    let scenario = r#"
quota = 5.0
quota_burst = 1
retry_after = "300ms"
error_rate = 0.3
seed = 7

[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "run-1"
timeline = [{ at = "0s", status = "Running" }, { at = "1s", status = "Succeeded" }]

[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "run-2"
timeline = [{ at = "0s", status = "Running" }, { at = "1200ms", status = "Succeeded" }]
"#;
    let sim = simulator(scenario).await;
    let body = format!("{}{}{}", fast_poll(), watch("run-1"), watch("run-2"));
    let cfg = TestConfig::new(&sim.endpoint_url(), &body);
    let run = run_once(&cfg.path).await;
    let events = &run.events;
    assert_eq!(run.exit_code, 0, "stderr: {}\n{events}", run.stderr);
    assert_every_line_is_complete(events);
    let stats = sim.stats();

    let throttled = events.named("poll.throttled");
    assert!(!throttled.is_empty(), "{events}");
    assert_eq!(
        throttled.len() as u64,
        stats.count(Answer::Throttled),
        "one event per 429"
    );
    for t in &throttled {
        let retry_in_ms = t["retry_in_ms"].as_u64().unwrap_or_else(|| panic!("{t}"));
        assert!(
            retry_in_ms >= 300,
            "the x-amz-retry-after hint is honoured: {t}"
        );
        let rate = t["rate_limit"].as_f64().unwrap_or_else(|| panic!("{t}"));
        assert!(
            rate > 0.0 && rate < 200.0,
            "the adapted rate is below rate_limit: {t}"
        );
    }
    let failed = events.named("poll.failed");
    assert!(!failed.is_empty(), "{events}");
    assert_eq!(
        failed.len() as u64,
        stats.count(Answer::Internal),
        "one event per 500"
    );
    for f in &failed {
        assert_eq!(f["error_kind"], "server", "{f}");
        assert_eq!(f["error_code"], "InternalServerException", "{f}");
        assert!(f["retry_in_ms"].is_u64(), "{f}");
    }
    for execution in ["run-1", "run-2"] {
        // The first answer may already be the end when 429s and 500s came first.
        let seen = events.transitions_of(execution);
        assert_eq!(
            seen.last().map(String::as_str),
            Some("Succeeded"),
            "{events}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_status_is_carried_raw_and_nothing_is_polled_after_the_end() {
    // The stale `Running` at 1.2 s comes after `Succeeded`: once terminal the
    // watch is no longer polled, so it is never read. "other" keeps the
    // daemon running past it.
    let scenario = r#"
[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "odd"
timeline = [
  { at = "0s", status = "Running" },
  { at = "400ms", status = "InProgress" },
  { at = "800ms", status = "Succeeded" },
  { at = "1200ms", status = "Running" },
  { at = "1600ms", status = "Succeeded" },
]

[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "other"
timeline = [{ at = "0s", status = "Running" }, { at = "2s", status = "Succeeded" }]
"#;
    let sim = simulator(scenario).await;
    let body = format!("{}{}{}", fast_poll(), watch("odd"), watch("other"));
    let cfg = TestConfig::new(&sim.endpoint_url(), &body);
    let run = run_once(&cfg.path).await;
    let events = &run.events;
    assert_eq!(run.exit_code, 0, "stderr: {}\n{events}", run.stderr);
    // Running first, unless the daemon started after 400 ms.
    let odd = events.transitions_of("odd");
    assert!(
        odd.ends_with(&["InProgress".into(), "Succeeded".into()]),
        "{events}"
    );
    assert!(odd.len() == 2 || odd[0] == "Running", "{events}");
    let raw = events.one("execution.transition", |e| e["to"] == "InProgress");
    assert_eq!(
        raw["terminal"], false,
        "an unknown status is not terminal: {raw}"
    );
    assert!(raw.get("ended_at").is_none(), "{raw}");
    if odd.len() == 3 {
        assert_eq!(raw["from"], "Running", "{raw}");
    }

    // The last request for "odd" is the one that saw Succeeded; "other" was
    // still polled well after it.
    let log = sim.stats().log;
    let odd_requests = requests_for(&log, "odd");
    let end = events.one("execution.transition", |e| {
        e["execution"] == "odd" && e["to"] == "Succeeded"
    });
    assert_eq!(
        end["polls"],
        odd_requests.len(),
        "no request after the terminal answer: {end}"
    );
    let last_odd = odd_requests.last().unwrap().at;
    let last_other = requests_for(&log, "other").last().unwrap().at;
    assert!(
        last_other > last_odd + Duration::from_millis(400),
        "odd {last_odd:?}, other {last_other:?}"
    );
    assert!(
        last_odd < Duration::from_millis(1200),
        "no request for odd in its stale window: {last_odd:?}"
    );
}

/// A config polling `n` executions `w-1`..`w-n` that all stay `Running`,
/// every `interval` (no backoff, no jitter), at most `rate_limit` req/s.
fn busy(n: usize, interval: &str, rate_limit: f64) -> (String, String) {
    let scenario: String = (1..=n).map(|i| running(&format!("w-{i}"))).collect();
    let body = format!(
        "[poll]\ninterval_initial = \"{interval}\"\ninterval_max = \"{interval}\"\nmultiplier = 1.0\njitter = 0.0\nrate_limit = {rate_limit:?}\nrequest_timeout = \"2s\"\n\n{}",
        watches_by_parts("w-", n)
    );
    (scenario, body)
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

/// Share of 429s among the logged requests that arrived in `window`.
fn throttled_share(
    log: &[RequestRecord],
    window: std::ops::Range<Duration>,
) -> (usize, usize, f64) {
    let inside: Vec<&RequestRecord> = log.iter().filter(|r| window.contains(&r.at)).collect();
    let throttled = inside
        .iter()
        .filter(|r| r.answer == Answer::Throttled)
        .count();
    (
        throttled,
        inside.len(),
        throttled as f64 / inside.len().max(1) as f64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_adapts_to_a_quota_well_below_rate_limit() {
    let (executions, body) = busy(50, "20ms", 100.0);
    let sim = simulator(&format!("quota = 20.0\n{executions}")).await;
    let cfg = TestConfig::new(&sim.endpoint_url(), &body);
    let daemon = Spawned::start(flowwatch(&cfg.path, &["run"]));
    // Run until the simulator has seen ~6 s of traffic.
    let deadline = std::time::Instant::now() + secs(30);
    loop {
        let log = sim.stats().log;
        if let (Some(first), Some(last)) = (log.first(), log.last())
            && last.at >= first.at + secs(6)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon stopped polling"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = terminate(daemon).await;
    let log = sim.stats().log;
    let (start, end) = (log[0].at, log.last().unwrap().at);
    let first = throttled_share(&log, start..start + secs(1));
    let last = throttled_share(&log, end - secs(2)..end + secs(1));
    eprintln!(
        "throttled share: first second {}/{} = {:.2}, last 2 s {}/{} = {:.2}; run {:?}",
        first.0,
        first.1,
        first.2,
        last.0,
        last.1,
        last.2,
        end - start
    );
    // The budget adapts within the first second already, so its share of
    // 429s is only a fraction; what counts is that the quota bit.
    assert!(first.0 >= 2, "the quota bites at start-up: {first:?}");
    assert!(
        last.2 < first.2 / 3.0,
        "first second {first:?}, last 2 s {last:?}"
    );
    // Still polling near the quota, not starved by the adaptation.
    assert!(last.1 >= 20, "last 2 s: {last:?}");

    let rates: Vec<f64> = run
        .events
        .named("poll.throttled")
        .iter()
        .map(|e| e["rate_limit"].as_f64().unwrap_or_else(|| panic!("{e}")))
        .collect();
    let lowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    eprintln!(
        "poll.throttled: {} events, rate_limit from {:?} down to {lowest:.2}",
        rates.len(),
        rates.first()
    );
    assert!(
        rates.iter().all(|r| *r < 100.0),
        "every throttle reports a lowered rate: {rates:?}"
    );
    assert!(
        lowest < 40.0,
        "the rate comes down near the quota (20/s): {rates:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_budget_polls_every_watch_before_any_twice() {
    let (executions, body) = busy(40, "50ms", 20.0);
    let sim = simulator(&executions).await;
    let cfg = TestConfig::new(&sim.endpoint_url(), &body);
    let daemon = Spawned::start(flowwatch(&cfg.path, &["run"]));
    wait_for_requests(&sim, 100, secs(30)).await;
    terminate(daemon).await;
    let log = sim.stats().log;
    assert!(
        log.iter().all(|r| r.answer == Answer::Ok),
        "no quota here: {log:?}"
    );

    let first_round: std::collections::HashSet<&str> =
        log[..40].iter().map(|r| r.execution.as_str()).collect();
    assert_eq!(first_round.len(), 40, "first 40 polls: {:?}", &log[..40]);

    let start = log[0].at;
    let mut last_seen: HashMap<&str, Duration> = HashMap::new();
    let mut longest = (Duration::ZERO, String::new());
    for r in &log {
        let previous = last_seen
            .insert(r.execution.as_str(), r.at)
            .unwrap_or(start);
        if r.at - previous > longest.0 {
            longest = (r.at - previous, r.execution.clone());
        }
    }
    eprintln!(
        "fairness: {} polls over {:?}, longest gap {:?} ({})",
        log.len(),
        log.last().unwrap().at - start,
        longest.0,
        longest.1
    );
    // 40 watches at 20 req/s: each is served every 2 s; allow 1.5x.
    assert!(
        longest.0 <= Duration::from_secs(3),
        "longest gap {longest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_one_second_window_exceeds_the_rate_by_more_than_the_burst() {
    let (executions, body) = busy(50, "20ms", 10.0);
    let sim = simulator(&executions).await;
    let cfg = TestConfig::new(&sim.endpoint_url(), &body);
    let daemon = Spawned::start(flowwatch(&cfg.path, &["run"]));
    wait_for_requests(&sim, 35, secs(30)).await;
    terminate(daemon).await;
    let arrivals: Vec<Duration> = sim.stats().log.iter().map(|r| r.at).collect();
    // rate_limit + max(2, 10 %): 12 in any 1 s window, start-up included.
    let busiest = arrivals
        .iter()
        .map(|&from| {
            arrivals
                .iter()
                .filter(|&&at| at >= from && at < from + secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    let first_window = arrivals
        .iter()
        .filter(|&&at| at < arrivals[0] + secs(1))
        .count();
    eprintln!(
        "burst: {} requests, busiest 1 s window {busiest}, first {first_window}",
        arrivals.len()
    );
    assert!(
        busiest <= 12,
        "busiest 1 s window: {busiest}; arrivals {arrivals:?}"
    );
    assert!(
        first_window >= 8,
        "polling starts at the rate: {arrivals:?}"
    );
}

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

/// Every 500 is one request and one poll.failed, whatever the SDK's retry
/// environment says.
async fn one_request_per_attempt_with_retry_mode(mode: &str) {
    let scenario = format!(
        "error_rate = 1.0\n\n{}{}",
        running("run-1"),
        running("run-2")
    );
    let sim = simulator(&scenario).await;
    let body = format!("{}{}{}", fast_poll(), watch("run-1"), watch("run-2"));
    let cfg = TestConfig::new(&sim.endpoint_url(), &body);
    let mut command = flowwatch(&cfg.path, &["run"]);
    command
        .env("AWS_MAX_ATTEMPTS", "5")
        .env("AWS_RETRY_MODE", mode)
        .env("AWS_NEW_RETRIES_2026", "true");
    let daemon = Spawned::start(command);
    wait_for_requests(&sim, 8, secs(20)).await;
    let run = terminate(daemon).await;
    let stats = sim.stats();
    let failed = run.events.named("poll.failed").len() as u64;
    assert_eq!(
        stats.total(),
        stats.count(Answer::Internal),
        "{:?}",
        stats.log
    );
    assert_eq!(
        stats.total(),
        failed,
        "requests seen vs attempts reported ({mode}):\n{}",
        run.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_does_not_retry_in_standard_mode() {
    one_request_per_attempt_with_retry_mode("standard").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_does_not_retry_in_adaptive_mode() {
    one_request_per_attempt_with_retry_mode("adaptive").await;
}
