//! The real `flowwatch` binary's command line: exit codes of `run --once`,
//! the config path from `$FLOWWATCH_CONFIG`, configuration errors (file, line,
//! column, key on stderr, exit 2) and `flowwatch check`, which validates
//! without sending a request.

use std::path::Path;

use crate::support::{
    Run, TestConfig, fast_poll, flowwatch, flowwatch_without_config, run_once, run_to_end,
    simulator,
};

/// `[[watch]]` by parts, with no labels.
fn watch(execution: &str) -> String {
    format!(
        "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"{execution}\"\n\n"
    )
}

/// An execution that is `Running` at first and `end` from 300 ms on.
fn ending(id: &str, end: &str) -> String {
    format!(
        "[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"{id}\"\ntimeline = [{{ at = \"0s\", status = \"Running\" }}, {{ at = \"300ms\", status = \"{end}\" }}]\n\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_0_when_every_execution_succeeded() {
    let sim = simulator(&format!(
        "{}{}",
        ending("run-1", "Succeeded"),
        ending("run-2", "Succeeded")
    ))
    .await;
    let cfg = TestConfig::new(
        &sim.endpoint_url(),
        &format!("{}{}{}", fast_poll(), watch("run-1"), watch("run-2")),
    );
    let run = run_once(&cfg.path).await;
    assert_eq!(run.exit_code, 0, "stderr: {}\n{}", run.stderr, run.events);
    for execution in ["run-1", "run-2"] {
        let seen = run.events.transitions_of(execution);
        assert_eq!(
            seen.last().map(String::as_str),
            Some("Succeeded"),
            "{}",
            run.events
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_3_when_an_execution_failed_timed_out_aborted_or_was_abandoned() {
    let sim = simulator(&format!(
        "{}{}{}{}[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"broken\"\ninvalid = true\n",
        ending("ok", "Succeeded"),
        ending("failed", "Failed"),
        ending("timed-out", "TimedOut"),
        ending("aborted", "Aborted"),
    ))
    .await;
    // One config per bad ending, each next to a success.
    let configs: Vec<(&str, TestConfig)> = ["failed", "timed-out", "aborted", "broken"]
        .into_iter()
        .map(|bad| {
            let body = format!("{}{}{}", fast_poll(), watch("ok"), watch(bad));
            (bad, TestConfig::new(&sim.endpoint_url(), &body))
        })
        .collect();
    let runs = futures_join(configs.iter().map(|(_, cfg)| cfg.path.as_path())).await;
    for ((bad, _), run) in configs.iter().zip(&runs) {
        assert_eq!(
            run.exit_code, 3,
            "{bad}: stderr: {}\n{}",
            run.stderr, run.events
        );
        assert_eq!(
            run.events.transitions_of("ok").last().map(String::as_str),
            Some("Succeeded"),
            "{bad}"
        );
    }
}

/// Runs `flowwatch run --once` on every config at the same time.
async fn futures_join<'a>(paths: impl Iterator<Item = &'a Path>) -> Vec<Run> {
    let handles: Vec<_> = paths
        .map(|path| {
            let command = flowwatch(path, &["run", "--once"]);
            tokio::spawn(run_to_end(command))
        })
        .collect();
    let mut runs = Vec::new();
    for handle in handles {
        runs.push(handle.await.expect("the run task ends"));
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_address_in_use_is_a_runtime_failure_exit_1() {
    let sim = simulator(&ending("run-1", "Succeeded")).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let body = format!(
        "{}[http]\nlisten = \"{addr}\"\n\n{}",
        fast_poll(),
        watch("run-1")
    );
    let cfg = TestConfig::new(&sim.endpoint_url(), &body);
    let run = run_once(&cfg.path).await;
    assert_eq!(run.exit_code, 1, "stderr: {}\n{}", run.stderr, run.events);
    let expected = format!("flowwatch: cannot serve http on {addr}: ");
    assert!(run.stderr.starts_with(&expected), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("in use"),
        "the reason is given: {}",
        run.stderr
    );
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "the chain is printed once: {}",
        run.stderr
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_config_reads_the_flowwatch_config_variable() {
    let sim = simulator(&ending("run-1", "Succeeded")).await;
    let cfg = TestConfig::new(
        &sim.endpoint_url(),
        &format!("{}{}", fast_poll(), watch("run-1")),
    );
    let mut command = flowwatch_without_config(&["run", "--once"]);
    command.env("FLOWWATCH_CONFIG", &cfg.path);
    let run = run_to_end(command).await;
    assert_eq!(run.exit_code, 0, "stderr: {}\n{}", run.stderr, run.events);
    let added = run.events.one("watch.added", |_| true);
    assert_eq!(added["source"], cfg.path.display().to_string(), "{added}");

    // Without the variable the default path is used (absent here): exit 2.
    let run = run_to_end(flowwatch_without_config(&["run", "--once"])).await;
    assert_eq!(run.exit_code, 2, "stderr: {}", run.stderr);
    assert!(
        run.stderr
            .starts_with("flowwatch: cannot read /etc/flowwatch/flowwatch.toml: "),
        "stderr: {}",
        run.stderr
    );
}

const ONE_WATCH: &str =
    "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-1\"\n";

/// A bad main file (after the `[aws]` and `[log]` tables `TestConfig`
/// writes, 7 lines) and the start of the stderr line it must give, after the
/// file name.
fn bad_configs() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "unknown key",
            format!("[poll]\nintervall_max = \"2s\"\n\n{ONE_WATCH}"),
            ":9:1: poll.intervall_max: unknown key",
        ),
        (
            "bad duration",
            format!("[poll]\ninterval_max = \"2 parsecs\"\n\n{ONE_WATCH}"),
            ":9:16: poll.interval_max: invalid duration \"2 parsecs\"",
        ),
        (
            "bad arn",
            "[[watch]]\nexecution_arn = \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/run-1\"\n"
                .to_string(),
            ":9:17: watch[1].execution_arn: \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/run-1\" is not an execution arn",
        ),
        (
            "bad execution id",
            "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run 1\"\n".to_string(),
            ":11:13: watch[1].execution: ",
        ),
        (
            "no watches and no include",
            "[poll]\nrate_limit = 5.0\n".to_string(),
            ": no watches: add [[watch]] tables or an include",
        ),
        (
            "conflicting duplicate",
            format!("{ONE_WATCH}labels = {{ team = \"a\" }}\n\n{ONE_WATCH}labels = {{ team = \"b\" }}\n"),
            ":18:19: watch[2].labels.team: duplicate watch us-east-1/FLOW123456/ALIAS12345/run-1 conflicts with ",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_exits_2_naming_file_line_column_and_key() {
    let sim = simulator("").await;
    for (what, body, expected) in bad_configs() {
        let cfg = TestConfig::new(&sim.endpoint_url(), &body);
        let expected = format!("flowwatch: {}{expected}", cfg.path.display());
        for args in [&["run", "--once"][..], &["check"][..]] {
            let run = run_to_end(flowwatch(&cfg.path, args)).await;
            assert_eq!(
                run.exit_code, 2,
                "{what} ({args:?}): stderr: {}",
                run.stderr
            );
            assert!(
                run.stderr.starts_with(&expected),
                "{what} ({args:?}):\n  expected: {expected}\n  stderr:   {}",
                run.stderr
            );
            assert_eq!(run.stderr.lines().count(), 1, "{what}: {}", run.stderr);
            assert!(
                run.events.0.is_empty(),
                "{what}: nothing runs:\n{}",
                run.events
            );
        }
    }
    assert_eq!(sim.stats().total(), 0, "no request for a bad config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_duplicate_is_one_watch() {
    let sim = simulator(&ending("run-1", "Succeeded")).await;
    let labelled = format!("{ONE_WATCH}labels = {{ team = \"a\" }}\n\n");
    let cfg = TestConfig::new(
        &sim.endpoint_url(),
        &format!("{}{labelled}{labelled}", fast_poll()),
    );
    let run = run_once(&cfg.path).await;
    assert_eq!(run.exit_code, 0, "stderr: {}\n{}", run.stderr, run.events);
    assert_eq!(run.events.one("daemon.started", |_| true)["watches"], 1);
    let added = run.events.one("watch.added", |_| true);
    assert_eq!(
        added["labels"],
        serde_json::json!({ "team": "a" }),
        "{added}"
    );
    let (code, stdout) = check(&cfg.path).await;
    assert_eq!(code, Some(0));
    assert!(
        stdout.ends_with("ok: 1 watch (1 duplicate merged) in 1 file, region us-east-1\n"),
        "{stdout}"
    );
}

/// `flowwatch check`'s exit code and stdout (its output is not JSON events).
async fn check(config: &Path) -> (Option<i32>, String) {
    let path = config.to_path_buf();
    let output =
        tokio::task::spawn_blocking(move || flowwatch(&path, &["check"]).output().unwrap())
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_a_line_per_file_and_a_summary_and_sends_nothing() {
    let sim = simulator(&ending("run-1", "Succeeded")).await;
    let body = format!("include = [\"watches.d/*.toml\"]\n\n{ONE_WATCH}\n{ONE_WATCH}");
    // `include` must come before the first table: put it at the top.
    let cfg = TestConfig::new(&sim.endpoint_url(), "");
    let main = std::fs::read_to_string(&cfg.path).unwrap();
    std::fs::write(&cfg.path, format!("{body}\n{main}")).unwrap();
    let a = cfg.write(
        "watches.d/a.toml",
        &format!("{ONE_WATCH}region = \"eu-west-1\"\n"),
    );
    let b = cfg.write(
        "watches.d/b.toml",
        "[[watch]]\nexecution_arn = \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-2\"\n\n[[watch]]\nexecution_arn = \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-3\"\n",
    );
    let (code, stdout) = check(&cfg.path).await;
    assert_eq!(code, Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{}: 2 watches", cfg.path.display()),
            format!("{}: 1 watch", a.display()),
            format!("{}: 2 watches", b.display()),
            "ok: 4 watches (1 duplicate merged) in 3 files, regions eu-west-1, us-east-1"
                .to_string(),
        ],
        "stdout:\n{stdout}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(sim.stats().total(), 0, "check sends no request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_with_a_bad_scenario_exits_2_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, "quota = 5.0\nlatnecy = \"5ms\"\n").unwrap();
    let mut command = flowwatch_without_config(&["simulate", "--listen", "127.0.0.1:0"]);
    command.arg("--scenario").arg(&scenario);
    let run = run_to_end(command).await;
    assert_eq!(run.exit_code, 2, "stderr: {}", run.stderr);
    let expected = format!("flowwatch: {}:2:1: latnecy:", scenario.display());
    assert!(run.stderr.starts_with(&expected), "stderr: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_an_include_glob_that_splits_a_class_across_folders_with_exit_2() {
    // Issue 7.3: a valid pattern whose folders are not; this was exit 101.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowwatch.toml");
    std::fs::write(&config, "include = [\"w[/]x.toml\"]\n").unwrap();
    let run = run_to_end(flowwatch(&config, &["check"])).await;
    assert_eq!(run.exit_code, 2, "stderr: {}", run.stderr);
    assert_eq!(
        run.stderr.trim_end(),
        format!(
            "flowwatch: {}:1:12: include: invalid glob \"w[/]x.toml\": invalid range pattern (a [...] class cannot hold a '/')",
            config.display()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_execution_by_arn_and_by_parts_in_an_include_is_one_watch() {
    // Issue 7.1: two spellings of one execution, the second from an include.
    let sim = simulator(&ending("run-1", "Succeeded")).await;
    let arn =
        "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-1";
    let cfg = TestConfig::new(
        &sim.endpoint_url(),
        &format!(
            "include = [\"w/*.toml\"]\n{}[[watch]]\nexecution_arn = \"{arn}\"\nlabels = {{ team = \"a\" }}\n",
            fast_poll()
        ),
    );
    cfg.write(
        "w/x.toml",
        &format!(
            "{}\nlabels = {{ tier = \"gold\" }}\n",
            watch("run-1").trim_end()
        ),
    );
    let run = run_once(&cfg.path).await;
    assert_eq!(run.exit_code, 0, "stderr: {}\n{}", run.stderr, run.events);
    assert_eq!(run.events.one("daemon.started", |_| true)["watches"], 1);
    let added = run.events.one("watch.added", |_| true);
    assert_eq!(added["execution_arn"], arn, "{added}");
    assert_eq!(
        added["labels"],
        serde_json::json!({ "team": "a", "tier": "gold" }),
        "{added}"
    );
    // Each transition once (a late first poll on a loaded machine may see
    // only the end).
    let seen = run.events.transitions_of("run-1");
    assert!(
        seen == ["Running", "Succeeded"] || seen == ["Succeeded"],
        "{}",
        run.events
    );
}
