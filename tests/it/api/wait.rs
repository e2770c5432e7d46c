//! `flowwatch wait`: the real binary against the simulator, directly and
//! through a daemon's API; the contract's exit codes.

use super::*;

fn wait(sim: &Simulator, args: &[&str]) -> std::process::Command {
    let mut command = support::flowwatch_without_config(&["wait"]);
    command
        .args(args)
        .env("AWS_ENDPOINT_URL", sim.endpoint_url());
    command
}

#[tokio::test]
async fn wait_exits_0_when_every_execution_succeeded_and_3_otherwise() {
    let sim = support::simulator(&format!(
        "{}{}{}",
        execution("run-ok", Some(("200ms", "Succeeded"))),
        execution("run-bad", Some(("200ms", "Failed"))),
        execution("run-on", None)
    ))
    .await;
    let ok = support::run_to_end(wait(&sim, &[&arn("run-ok"), "--format", "json"])).await;
    assert_eq!(ok.exit_code, 0, "{}\n{}", ok.events, ok.stderr);
    assert_eq!(
        ok.events
            .transitions_of("run-ok")
            .last()
            .map(String::as_str),
        Some("Succeeded")
    );

    let bad = support::run_to_end(wait(
        &sim,
        &[&arn("run-ok"), &arn("run-bad"), "--format", "json"],
    ))
    .await;
    assert_eq!(bad.exit_code, 3, "{}\n{}", bad.events, bad.stderr);

    let late = support::run_to_end(wait(
        &sim,
        &[&arn("run-on"), "--timeout", "500ms", "--format", "json"],
    ))
    .await;
    assert_eq!(
        late.exit_code, 3,
        "the timeout passed: {}\n{}",
        late.events, late.stderr
    );
}

#[tokio::test]
async fn wait_exits_2_on_usage_errors() {
    let sim = support::simulator(&execution("run-ok", None)).await;
    let bad_arn = support::run_to_end(wait(&sim, &["not-an-arn"])).await;
    assert_eq!(bad_arn.exit_code, 2, "{}", bad_arn.stderr);
    assert!(
        bad_arn.stderr.contains("not an execution arn"),
        "{}",
        bad_arn.stderr
    );
    let none = support::run_to_end(wait(&sim, &[])).await;
    assert_eq!(none.exit_code, 2, "{}", none.stderr);
    let bad_timeout = support::run_to_end(wait(&sim, &[&arn("run-ok"), "--timeout", "soon"])).await;
    assert_eq!(bad_timeout.exit_code, 2, "{}", bad_timeout.stderr);
}

#[tokio::test]
async fn wait_via_a_daemon_adds_the_watch_and_long_polls_it() {
    let sim = support::simulator(&format!(
        "{}{}",
        execution("run-ok", Some(("300ms", "Succeeded"))),
        execution("run-bad", Some(("300ms", "Aborted")))
    ))
    .await;
    let setup = Setup::new(&sim, "", ""); // kept: it owns the config folder
    let daemon = setup.start().await;
    let via = format!("http://{}", daemon.addr);
    let ok = support::run_to_end(wait(
        &sim,
        &[&arn("run-ok"), "--via", &via, "--format", "json"],
    ))
    .await;
    assert_eq!(ok.exit_code, 0, "{}", ok.stderr);
    assert_eq!(
        ok.events.0.last().unwrap()["status"],
        "Succeeded",
        "{}",
        ok.events
    );
    let bad = support::run_to_end(wait(
        &sim,
        &[&arn("run-bad"), "--via", &via, "--format", "json"],
    ))
    .await;
    assert_eq!(bad.exit_code, 3, "{}", bad.stderr);
    let list = daemon.get("/v1/watches").await;
    assert_eq!(
        list.json["watches"].as_array().unwrap().len(),
        2,
        "{}",
        list.json
    );
    let gone =
        support::run_to_end(wait(&sim, &[&arn("run-ok"), "--via", "http://127.0.0.1:1"])).await;
    assert_eq!(gone.exit_code, 1, "{}", gone.stderr);
    daemon.stop().await;
}
