//! `flowwatch demo` (issue 10.4 and 10.3): the real binary adds one
//! execution over the API and follows it over the event stream, exits 0,
//! and every line it prints fits 100 columns.

use crate::support::flowwatch_without_config;

#[test]
fn the_demo_adds_an_execution_over_the_api_and_follows_it_over_the_event_stream() {
    let out = flowwatch_without_config(&["demo"])
        .output()
        .expect("flowwatch demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    assert!(
        stderr.contains("POST /v1/watches {\"execution_arn\": \"…/api-added\"} → 201 Created"),
        "{stderr}"
    );
    let streamed: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split_once("SSE client got event ").map(|(_, rest)| rest))
        .map(|rest| rest.split_once(": ").map_or(rest, |(_, what)| what))
        .collect();
    assert_eq!(
        streamed,
        [
            "watch.added api-added",
            "execution.transition api-added  first seen Running",
            "execution.transition api-added  Running → Succeeded",
        ],
        "{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" api-added ") && l.contains("Running → Succeeded")),
        "the daemon's own line too: {stdout}"
    );
}

#[test]
fn every_demo_line_fits_100_columns() {
    let out = flowwatch_without_config(&["demo"])
        .output()
        .expect("flowwatch demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stdout.contains("failed (") && stdout.contains("flow failed ("),
        "the failure details are in the demo: {stdout}"
    );
    for line in stdout.lines().chain(stderr.lines()) {
        assert!(
            line.chars().count() <= 100,
            "{} columns: {line}",
            line.chars().count()
        );
    }
}
