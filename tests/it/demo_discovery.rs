//! `flowwatch demo` shows flow discovery (issue 9): an execution the
//! simulator starts while the demo runs, listed by no `[[watch]]`, is found
//! by the demo's `[[watch_flow]]` table and reported with
//! `source=discovery`, next to the failure with its node details.

use crate::support::flowwatch_without_config;

#[tokio::test]
async fn the_demo_discovers_an_execution_started_while_it_runs_and_exits_0() {
    let output = tokio::task::spawn_blocking(|| {
        flowwatch_without_config(&["demo"])
            .output()
            .expect("the flowwatch binary runs")
    })
    .await
    .expect("the waiting thread finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("ad-hoc-run"))
        .collect();
    assert!(
        lines[0].contains("watch added") && lines[0].contains("source=discovery"),
        "found by discovery first: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("→ Succeeded")),
        "watched to its end: {lines:?}"
    );
    // Next to the failure with node details the demo already shows.
    assert!(
        stdout.contains("broken-pipeline  node Prompt_1 failed ("),
        "{stdout}"
    );
    assert!(stderr.contains("discovery: "), "{stderr}");
}
