//! Failure details (issue 9) over the real binary and the simulator: node
//! and flow failure events after the terminal transition of every failing
//! kind, paged; a 403 and persistent 5xx end as one
//! `execution.details_unavailable`; a restart does not repeat them.

use serde_json::Value;

use flowwatch::simulate::{Answer, Simulator};

use crate::support::{Events, TestConfig, fast_poll, run_once, simulator};

/// An execution that runs 300 ms and ends `status` with `nodes` node errors
/// (codes cycling through the API's) and one error without a node.
fn failing(id: &str, status: &str, nodes: usize, extra: &str) -> String {
    const CODES: [&str; 4] = [
        "VALIDATION",
        "DEPENDENCY_FAILED",
        "BAD_GATEWAY",
        "INTERNAL_SERVER",
    ];
    let mut errors: Vec<String> = (0..nodes)
        .map(|n| {
            format!(
                "  {{ error = \"{}\", node = \"Node_{n}\", message = \"node {n} of {id} failed\" }},",
                CODES[n % 4]
            )
        })
        .collect();
    errors.push(format!(
        "  {{ error = \"Other\", message = \"{id} ended\" }},"
    ));
    format!(
        "[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"{id}\"\n\
         timeline = [{{ at = \"0s\", status = \"Running\" }}, {{ at = \"300ms\", status = \"{status}\" }}]\n\
         errors = [\n{}\n]\n{extra}\n",
        errors.join("\n")
    )
}

fn watch(execution: &str) -> String {
    format!(
        "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"{execution}\"\n\n"
    )
}

fn config(sim: &Simulator, extra: &str, ids: &[&str]) -> TestConfig {
    let watches: String = ids.iter().map(|id| watch(id)).collect();
    TestConfig::new(
        &sim.endpoint_url(),
        &format!("{}{extra}\n{watches}", fast_poll()),
    )
}

fn of<'a>(events: &'a Events, name: &str, execution: &str) -> Vec<&'a Value> {
    events
        .named(name)
        .into_iter()
        .filter(|e| e["execution"] == execution)
        .collect()
}

/// Index of the first event named `name` about `execution`.
fn position(events: &Events, name: &str, execution: &str) -> Option<usize> {
    events
        .0
        .iter()
        .position(|e| e["event"] == name && e["execution"] == execution)
}

fn answered(sim: &Simulator, execution: &str, answer: Answer) -> usize {
    sim.stats()
        .log
        .iter()
        .filter(|r| r.execution == execution && r.answer == answer)
        .count()
}

#[tokio::test]
async fn each_failing_terminal_kind_reports_its_node_and_flow_failures_after_the_transition() {
    let sim = simulator(&format!(
        "{}{}{}",
        // 12 node failures: two Node pages of at most 10.
        failing("run-failed", "Failed", 12, ""),
        failing("run-timedout", "TimedOut", 1, ""),
        failing("run-aborted", "Aborted", 2, ""),
    ))
    .await;
    let ids = ["run-failed", "run-timedout", "run-aborted"];
    let cfg = config(&sim, "", &ids);
    let run = run_once(&cfg.path).await;
    let events = &run.events;
    assert_eq!(run.exit_code, 3, "{events}\n{}", run.stderr);
    for (id, status, nodes) in [
        ("run-failed", "Failed", 12),
        ("run-timedout", "TimedOut", 1),
        ("run-aborted", "Aborted", 2),
    ] {
        let terminal: Vec<_> = of(events, "execution.transition", id)
            .into_iter()
            .filter(|e| e["terminal"] == true)
            .collect();
        assert_eq!(terminal.len(), 1, "{id}: {events}");
        assert_eq!(terminal[0]["to"], status);
        let node_failures = of(events, "execution.node_failure", id);
        let names: Vec<&str> = node_failures
            .iter()
            .map(|e| e["node"].as_str().unwrap_or("?"))
            .collect();
        let expected: Vec<String> = (0..nodes).map(|n| format!("Node_{n}")).collect();
        assert_eq!(names, expected, "{id}: every node failure once, in order");
        for failure in &node_failures {
            assert_eq!(failure["level"], "WARN");
            assert_eq!(failure["flow"], "FLOW123456");
            assert_eq!(failure["alias"], "ALIAS12345");
            assert_eq!(failure["region"], "us-east-1");
            assert!(failure["execution_arn"].as_str().is_some(), "{failure}");
            assert!(
                failure["event_time"]
                    .as_str()
                    .is_some_and(|t| t.ends_with('Z'))
            );
        }
        assert_eq!(node_failures[0]["error_code"], "VALIDATION");
        assert_eq!(
            node_failures[0]["error_message"],
            format!("node 0 of {id} failed")
        );
        let flow_failures = of(events, "execution.flow_failure", id);
        assert_eq!(flow_failures.len(), 1, "{id}: {events}");
        assert_eq!(flow_failures[0]["level"], "WARN");
        assert_eq!(flow_failures[0]["error_code"], "NODE_EXECUTION_FAILED");
        assert!(flow_failures[0].get("node").is_none());
        assert!(of(events, "execution.details_unavailable", id).is_empty());
        let last_transition_at = events
            .0
            .iter()
            .rposition(|e| e["event"] == "execution.transition" && e["execution"] == id)
            .unwrap();
        let details_at = position(events, "execution.node_failure", id).unwrap();
        assert!(
            details_at > last_transition_at,
            "{id}: details follow the terminal transition:\n{events}"
        );
    }
}

#[tokio::test]
async fn a_succeeded_execution_and_failure_details_off_fetch_nothing() {
    let sim = simulator(&format!(
        "{}[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"run-ok\"\n\
         timeline = [{{ at = \"0s\", status = \"Running\" }}, {{ at = \"200ms\", status = \"Succeeded\" }}]\n",
        failing("run-failed", "Failed", 2, "")
    ))
    .await;
    let cfg = config(&sim, "failure_details = false\n", &["run-failed", "run-ok"]);
    let run = run_once(&cfg.path).await;
    assert_eq!(run.exit_code, 3, "{}\n{}", run.events, run.stderr);
    for name in [
        "execution.node_failure",
        "execution.flow_failure",
        "execution.details_unavailable",
    ] {
        assert!(run.events.named(name).is_empty(), "{}", run.events);
    }
}

#[tokio::test]
async fn a_403_on_the_events_is_one_details_unavailable_and_never_retried() {
    let sim = simulator(&failing(
        "run-denied",
        "Failed",
        2,
        "events_fault = \"access_denied\"",
    ))
    .await;
    let cfg = config(&sim, "", &["run-denied"]);
    let run = run_once(&cfg.path).await;
    let events = &run.events;
    assert_eq!(run.exit_code, 3, "{events}\n{}", run.stderr);
    let terminal: Vec<_> = of(events, "execution.transition", "run-denied")
        .into_iter()
        .filter(|e| e["to"] == "Failed")
        .collect();
    assert_eq!(terminal.len(), 1, "{events}");
    let unavailable = of(events, "execution.details_unavailable", "run-denied");
    assert_eq!(unavailable.len(), 1, "{events}");
    assert_eq!(unavailable[0]["reason"], "access_denied");
    assert_eq!(unavailable[0]["level"], "WARN");
    assert!(of(events, "execution.node_failure", "run-denied").is_empty());
    assert_eq!(
        answered(&sim, "run-denied", Answer::AccessDenied),
        1,
        "one request, no retry"
    );
    // The contract's execution.error still comes from GetFlowExecution.
    assert_eq!(of(events, "execution.error", "run-denied").len(), 3);
}

#[tokio::test]
async fn persistent_5xx_on_the_events_retry_with_backoff_then_end_as_unavailable_once() {
    let sim = simulator(&failing(
        "run-5xx",
        "Aborted",
        1,
        "events_fault = \"server_error\"",
    ))
    .await;
    let cfg = config(&sim, "", &["run-5xx"]);
    let run = run_once(&cfg.path).await;
    let events = &run.events;
    assert_eq!(run.exit_code, 3, "{events}\n{}", run.stderr);
    let terminal: Vec<_> = of(events, "execution.transition", "run-5xx")
        .into_iter()
        .filter(|e| e["to"] == "Aborted")
        .collect();
    assert_eq!(terminal.len(), 1, "{events}");
    let unavailable = of(events, "execution.details_unavailable", "run-5xx");
    assert_eq!(unavailable.len(), 1, "{events}");
    assert_eq!(unavailable[0]["reason"], "retries_exhausted");
    assert_eq!(
        answered(&sim, "run-5xx", Answer::Internal),
        4,
        "four attempts at the first page, then no more"
    );
    assert!(
        position(events, "execution.details_unavailable", "run-5xx")
            > position(events, "execution.transition", "run-5xx")
    );
    // No poll.failed for details: they are not polls.
    assert!(of(events, "poll.failed", "run-5xx").is_empty(), "{events}");
}

#[tokio::test]
async fn a_restart_with_state_neither_fetches_nor_emits_the_details_again() {
    let sim = simulator(&failing("run-once", "Failed", 3, "")).await;
    let state_dir = tempfile::tempdir().unwrap();
    let state = format!(
        "[state]\npath = \"{}\"\n",
        state_dir.path().join("state.json").display()
    );
    let cfg = TestConfig::new(
        &sim.endpoint_url(),
        &format!("{}\n{state}\n{}", fast_poll(), watch("run-once")),
    );
    let first = run_once(&cfg.path).await;
    assert_eq!(first.exit_code, 3, "{}\n{}", first.events, first.stderr);
    assert_eq!(
        of(&first.events, "execution.node_failure", "run-once").len(),
        3
    );
    let saved = std::fs::read_to_string(state_dir.path().join("state.json")).unwrap();
    assert!(saved.contains("\"details_reported\":true"), "{saved}");
    let requests = sim.stats().log.len();

    let second = run_once(&cfg.path).await;
    assert_eq!(second.exit_code, 3, "{}\n{}", second.events, second.stderr);
    for name in [
        "execution.transition",
        "execution.node_failure",
        "execution.flow_failure",
        "execution.details_unavailable",
    ] {
        assert!(second.events.named(name).is_empty(), "{}", second.events);
    }
    assert_eq!(sim.stats().log.len(), requests, "no request at all");
}

#[tokio::test]
async fn a_fetch_stopped_by_the_page_cap_emits_what_it_got_then_one_details_unavailable() {
    // 25 node failures: three Node pages. A cap of 2 reads one Node page,
    // keeps the other for the Flow page, and says the rest was not read.
    let sim = simulator(&failing("run-many", "Failed", 25, "")).await;
    let cfg = config(&sim, "failure_details_max_pages = 2\n", &["run-many"]);
    let run = run_once(&cfg.path).await;
    let events = &run.events;
    assert_eq!(run.exit_code, 3, "{events}\n{}", run.stderr);
    assert_eq!(of(events, "execution.node_failure", "run-many").len(), 10);
    assert_eq!(of(events, "execution.flow_failure", "run-many").len(), 1);
    let unavailable = of(events, "execution.details_unavailable", "run-many");
    assert_eq!(unavailable.len(), 1, "{events}");
    assert_eq!(unavailable[0]["reason"], "max_pages");
    assert_eq!(unavailable[0]["level"], "WARN");
    let last_detail = events
        .0
        .iter()
        .rposition(|e| {
            e["execution"] == "run-many"
                && (e["event"] == "execution.node_failure"
                    || e["event"] == "execution.flow_failure")
        })
        .unwrap();
    assert!(
        position(events, "execution.details_unavailable", "run-many") > Some(last_detail),
        "after what was fetched:\n{events}"
    );
    let pages = sim
        .stats()
        .log
        .iter()
        .filter(|r| r.operation == "ListFlowExecutionEvents" && r.execution == "run-many")
        .count();
    assert_eq!(pages, 2, "the cap");
}
