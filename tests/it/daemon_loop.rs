//! The loop on tokio's paused clock with a scripted fetcher, no sockets:
//! hours of polling in milliseconds, every rule of the contract's polling
//! behaviour observed through the events the loop emits.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::capture::Capture;
use flowwatch::config::{self, Config, LogFormat, LogSettings};
use flowwatch::daemon::{Daemon, Edges, Reload, Report, Verdict};
use flowwatch::poll::{FailureKind, PollOutcome};

use crate::support::Events;
use crate::support::scripted::{Scripted, edges, failed_with_errors, observed, observed_as};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A config file in a temp dir with `poll` settings and `n` watches
/// `run-0`..`run-{n-1}`, or the given watch TOML.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(poll: &str, watches: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("[aws]\nregion = \"us-east-1\"\n\n[poll]\n{poll}\n\n{watches}");
        std::fs::write(dir.path().join("flowwatch.toml"), text).unwrap();
        Files { dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("flowwatch.toml")
    }

    fn config(&self) -> Config {
        config::load(&self.path()).expect("the test config is valid")
    }

    fn rewrite(&self, poll: &str, watches: &str) {
        let text = format!("[aws]\nregion = \"us-east-1\"\n\n[poll]\n{poll}\n\n{watches}");
        std::fs::write(self.path(), text).unwrap();
    }
}

fn watches(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-{i}\"\n")
        })
        .collect()
}

struct TestLoop {
    captured: Capture,
    shutdown: CancellationToken,
    reloads: mpsc::Sender<Reload>,
    task: JoinHandle<Report>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl TestLoop {
    fn start(config: Config, fetch: Scripted, once: bool) -> TestLoop {
        let captured = Capture::new();
        let settings = LogSettings {
            format: LogFormat::Json,
            level: tracing::Level::INFO,
        };
        let guard = tracing::subscriber::set_default(flowwatch::event::subscriber(
            &settings,
            captured.clone(),
        ));
        let edges = Edges { once, ..edges() };
        let daemon = Daemon::new(config, fetch, edges, Instant::now()).expect("daemon starts");
        let shutdown = CancellationToken::new();
        let (reloads, reload_rx) = mpsc::channel(1);
        let task = tokio::spawn(daemon.run(reload_rx, shutdown.clone()));
        TestLoop {
            captured,
            shutdown,
            reloads,
            task,
            _guard: guard,
        }
    }

    fn events(&self) -> Events {
        Events(self.captured.json_lines())
    }

    async fn stop(self) -> (Report, Events) {
        self.shutdown.cancel();
        let report = self.task.await.expect("the loop does not panic");
        (report, Events(self.captured.json_lines()))
    }

    async fn finish(self) -> (Report, Events) {
        let report = tokio::time::timeout(secs(24 * 3600), self.task)
            .await
            .expect("the --once loop ends")
            .expect("the loop does not panic");
        (report, Events(self.captured.json_lines()))
    }
}

const FIXED_1S: &str = "interval_initial = \"1s\"\ninterval_max = \"1s\"\njitter = 0.0";

#[tokio::test(start_paused = true)]
async fn a_short_budget_still_polls_every_watch() {
    let files = Files::new(&format!("{FIXED_1S}\nrate_limit = 10.0"), &watches(30));
    let fetch = Scripted::always(observed("Running"));
    let daemon = TestLoop::start(files.config(), fetch.clone(), false);
    tokio::time::sleep(secs(60)).await;
    let (_, events) = daemon.stop().await;
    for i in 0..30 {
        let calls = fetch.calls_for(&format!("run-{i}"));
        assert!(calls.len() >= 10, "run-{i} polled {} times", calls.len());
        let longest = calls.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            longest <= Duration::from_secs_f64(1.5 * 30.0 / 10.0),
            "run-{i} waited {longest:?} between polls"
        );
    }
    // The first 30 polls go to 30 different watches.
    let first: std::collections::HashSet<String> =
        fetch.calls().into_iter().take(30).map(|(_, e)| e).collect();
    assert_eq!(first.len(), 30);
    assert_eq!(events.named("execution.transition").len(), 30, "{events}");
}

#[tokio::test(start_paused = true)]
async fn each_transition_is_emitted_once_in_order_and_success_ends_the_run() {
    let files = Files::new(FIXED_1S, &watches(1));
    let fetch = Scripted::always(observed("Running")).script(
        "run-0",
        vec![
            observed("Running"),
            observed("Running"),
            observed("Succeeded"),
        ],
    );
    let (report, events) = TestLoop::start(files.config(), fetch.clone(), true)
        .finish()
        .await;
    assert_eq!(report.verdict, Verdict::Success);
    assert_eq!(
        events.transitions_of("run-0"),
        ["Running", "Succeeded"],
        "{events}"
    );
    let first = events.one("execution.transition", |e| e["to"] == "Running");
    assert!(
        first.get("from").is_none(),
        "first observation has no from: {first}"
    );
    assert_eq!(first["terminal"], false);
    let last = events.one("execution.transition", |e| e["to"] == "Succeeded");
    assert_eq!(last["from"], "Running");
    assert_eq!(last["terminal"], true);
    assert_eq!(last["polls"], 3);
    assert!(last["detect_lag_ms"].as_u64().is_some(), "{last}");
    assert_eq!(
        fetch.calls_for("run-0").len(),
        3,
        "no poll after the terminal status"
    );
    let names = events.names();
    let added = names.iter().position(|n| *n == "watch.added").unwrap();
    let started = names.iter().position(|n| *n == "daemon.started").unwrap();
    assert!(started < added, "{names:?}");
    assert_eq!(names.last(), Some(&"daemon.stopped"), "{names:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_execution_reports_each_node_error_and_fails_the_run() {
    let files = Files::new(FIXED_1S, &watches(1));
    let fetch = Scripted::always(failed_with_errors());
    let (report, events) = TestLoop::start(files.config(), fetch, true).finish().await;
    assert_eq!(report.verdict, Verdict::SomeFailed);
    let errors = events.named("execution.error");
    assert_eq!(errors.len(), 2, "{events}");
    assert_eq!(errors[0]["error"], "ExecutionTimedOut");
    assert_eq!(errors[0]["node"], "Summarize");
    assert_eq!(errors[0]["level"], "WARN");
    assert!(errors[1].get("node").is_none(), "{}", errors[1]);
}

#[tokio::test(start_paused = true)]
async fn not_found_is_retried_for_the_grace_period_then_abandoned() {
    let poll = format!("{FIXED_1S}\nnot_found_grace = \"10s\"");
    let files = Files::new(&poll, &watches(1));
    let fetch = Scripted::always(PollOutcome::NotFound {
        message: "no such execution".into(),
    });
    let started = Instant::now();
    let (report, events) = TestLoop::start(files.config(), fetch.clone(), true)
        .finish()
        .await;
    assert_eq!(report.verdict, Verdict::SomeFailed);
    let abandoned = events.one("watch.abandoned", |_| true);
    assert_eq!(abandoned["reason"], "not_found");
    assert_eq!(abandoned["level"], "ERROR");
    let calls = fetch.calls_for("run-0");
    assert!(
        calls.len() >= 3,
        "retried during the grace: {}",
        calls.len()
    );
    let last = *calls.last().unwrap() - started;
    assert!(
        last >= secs(10) && last < secs(20),
        "abandoned after {last:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_not_found_that_resolves_within_the_grace_is_an_ordinary_watch() {
    let poll = format!("{FIXED_1S}\nnot_found_grace = \"10s\"");
    let files = Files::new(&poll, &watches(1));
    let not_found = PollOutcome::NotFound {
        message: "not yet".into(),
    };
    let fetch = Scripted::always(observed("Succeeded")).script(
        "run-0",
        vec![
            not_found.clone(),
            not_found,
            observed("Running"),
            observed("Succeeded"),
        ],
    );
    let (report, events) = TestLoop::start(files.config(), fetch, true).finish().await;
    assert_eq!(report.verdict, Verdict::Success, "{events}");
    assert_eq!(events.transitions_of("run-0"), ["Running", "Succeeded"]);
    assert!(events.named("watch.abandoned").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_validation_error_abandons_at_once() {
    let files = Files::new(FIXED_1S, &watches(1));
    let fetch = Scripted::always(PollOutcome::Invalid {
        message: "bad id".into(),
    });
    let (report, events) = TestLoop::start(files.config(), fetch.clone(), true)
        .finish()
        .await;
    assert_eq!(report.verdict, Verdict::SomeFailed);
    assert_eq!(events.one("watch.abandoned", |_| true)["reason"], "invalid");
    assert_eq!(fetch.calls_for("run-0").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn access_denied_is_retried_at_interval_max_and_logged_at_error_until_max_watch() {
    let poll =
        "interval_initial = \"1s\"\ninterval_max = \"10s\"\njitter = 0.0\nmax_watch = \"60s\"";
    let files = Files::new(poll, &watches(1));
    let fetch = Scripted::always(PollOutcome::AccessDenied {
        code: "AccessDeniedException".into(),
        message: "not allowed".into(),
    });
    let (report, events) = TestLoop::start(files.config(), fetch.clone(), true)
        .finish()
        .await;
    assert_eq!(report.verdict, Verdict::SomeFailed);
    let calls = fetch.calls_for("run-0");
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter()
            .all(|g| *g >= secs(10) - Duration::from_millis(50)),
        "retried at interval_max: {gaps:?}"
    );
    let denied = events.named("poll.failed");
    assert!(denied.len() >= 5, "{events}");
    assert!(
        denied
            .iter()
            .all(|e| e["level"] == "ERROR" && e["error_kind"] == "access_denied")
    );
    assert_eq!(
        events.one("watch.abandoned", |_| true)["reason"],
        "access_denied"
    );
}

#[tokio::test(start_paused = true)]
async fn a_watch_that_never_ends_is_abandoned_at_max_watch() {
    let poll =
        "interval_initial = \"1s\"\ninterval_max = \"10s\"\njitter = 0.0\nmax_watch = \"60s\"";
    let files = Files::new(poll, &watches(1));
    let fetch = Scripted::always(observed("Running"));
    let started = Instant::now();
    let (_, events) = TestLoop::start(files.config(), fetch.clone(), true)
        .finish()
        .await;
    assert_eq!(
        events.one("watch.abandoned", |_| true)["reason"],
        "max_watch"
    );
    let last = *fetch.calls_for("run-0").last().unwrap() - started;
    assert!(last <= secs(61), "no poll after max_watch: {last:?}");
}

#[tokio::test(start_paused = true)]
async fn throttling_is_reported_with_the_adapted_rate_and_retried() {
    let files = Files::new(&format!("{FIXED_1S}\nrate_limit = 10.0"), &watches(1));
    let fetch = Scripted::always(observed("Succeeded")).script(
        "run-0",
        vec![
            PollOutcome::Throttled {
                retry_after: Some(secs(3)),
            },
            observed("Succeeded"),
        ],
    );
    let (report, events) = TestLoop::start(files.config(), fetch.clone(), true)
        .finish()
        .await;
    assert_eq!(report.verdict, Verdict::Success);
    let throttled = events.one("poll.throttled", |_| true);
    assert_eq!(throttled["level"], "WARN");
    assert!(
        throttled["retry_in_ms"].as_u64().unwrap() >= 3000,
        "{throttled}"
    );
    let rate = throttled["rate_limit"].as_f64().unwrap();
    assert!(rate > 0.0 && rate < 10.0, "the rate was lowered: {rate}");
    let calls = fetch.calls_for("run-0");
    assert!(calls[1] - calls[0] >= secs(3), "Retry-After honoured");
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_is_reported_and_backs_off() {
    let files = Files::new(FIXED_1S, &watches(1));
    let failure = PollOutcome::Failed {
        kind: FailureKind::Server,
        code: Some("InternalServerException".into()),
        message: "try again".into(),
        retry_after: None,
    };
    let fetch = Scripted::always(observed("Succeeded")).script(
        "run-0",
        vec![failure.clone(), failure, observed("Succeeded")],
    );
    let (report, events) = TestLoop::start(files.config(), fetch, true).finish().await;
    assert_eq!(report.verdict, Verdict::Success);
    let failed = events.named("poll.failed");
    assert_eq!(failed.len(), 2, "{events}");
    assert_eq!(failed[0]["error_kind"], "server");
    assert_eq!(failed[0]["error_code"], "InternalServerException");
    assert_eq!(failed[0]["level"], "WARN");
    assert!(failed[0]["retry_in_ms"].as_u64().unwrap() > 0);
}

#[tokio::test(start_paused = true)]
async fn a_reload_adds_and_removes_watches_and_keeps_the_rest() {
    let files = Files::new(FIXED_1S, &watches(3));
    let fetch = Scripted::always(observed("Running"));
    let daemon = TestLoop::start(files.config(), fetch.clone(), false);
    tokio::time::sleep(secs(5)).await;
    // run-0 dropped, run-3 new; run-1 and run-2 kept.
    let kept_and_new: String = [1, 2, 3]
        .iter()
        .map(|i| format!("[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-{i}\"\n"))
        .collect();
    files.rewrite(FIXED_1S, &kept_and_new);
    daemon.reloads.send(Reload::Signal).await.unwrap();
    tokio::time::sleep(secs(5)).await;
    let (_, events) = daemon.stop().await;
    let reloaded = events.one("daemon.reloaded", |_| true);
    assert_eq!(reloaded["added"], 1);
    assert_eq!(reloaded["removed"], 1);
    assert_eq!(reloaded["watches"], 3);
    events.one("watch.removed", |e| e["execution"] == "run-0");
    events.one("watch.added", |e| e["execution"] == "run-3");
    // Kept watches keep their status: no second first-observation.
    assert_eq!(events.transitions_of("run-1"), ["Running"], "{events}");
    assert_eq!(events.transitions_of("run-3"), ["Running"]);
    let after_reload = fetch.calls_for("run-0");
    let last_run0 = *after_reload.last().unwrap();
    let reload_at = fetch.calls_for("run-3")[0];
    assert!(last_run0 <= reload_at, "run-0 not polled after its removal");
}

#[tokio::test(start_paused = true)]
async fn an_invalid_reload_keeps_the_old_watch_set() {
    let files = Files::new(FIXED_1S, &watches(2));
    let fetch = Scripted::always(observed("Running"));
    let daemon = TestLoop::start(files.config(), fetch.clone(), false);
    tokio::time::sleep(secs(3)).await;
    std::fs::write(files.path(), "[poll]\nintreval_max = \"1s\"\n").unwrap();
    daemon.reloads.send(Reload::Signal).await.unwrap();
    tokio::time::sleep(secs(3)).await;
    let before = fetch.calls_for("run-1").len();
    tokio::time::sleep(secs(5)).await;
    let (_, events) = daemon.stop().await;
    let failed = events.one("daemon.reload_failed", |_| true);
    assert_eq!(failed["level"], "ERROR");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("flowwatch.toml:2:1") && error.contains("intreval_max"),
        "{error}"
    );
    assert!(events.named("watch.removed").is_empty());
    assert!(
        fetch.calls_for("run-1").len() > before,
        "still polling the old set"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_in_flight_polls_finish_and_reports_what_is_left() {
    let files = Files::new(FIXED_1S, &watches(2));
    let fetch = Scripted::always(observed("Running")).latency(secs(2));
    let daemon = TestLoop::start(files.config(), fetch.clone(), false);
    tokio::time::sleep(secs(1)).await; // both first polls are in flight
    assert!(daemon.events().named("execution.transition").is_empty());
    let (report, events) = daemon.stop().await;
    assert_eq!(report.verdict, Verdict::Success);
    assert_eq!(events.named("execution.transition").len(), 2, "{events}");
    let names = events.names();
    let stopping = names.iter().position(|n| *n == "daemon.stopping").unwrap();
    let first_transition = names
        .iter()
        .position(|n| *n == "execution.transition")
        .unwrap();
    assert!(stopping < first_transition, "{names:?}");
    assert_eq!(events.one("daemon.stopped", |_| true)["watches_left"], 2);
    assert_eq!(fetch.calls().len(), 2, "no new polls after the stop");
}

#[tokio::test(start_paused = true)]
async fn a_file_change_that_reads_the_same_as_the_last_reload_is_no_news() {
    let files = Files::new(FIXED_1S, &watches(2));
    let fetch = Scripted::always(observed("Running"));
    let daemon = TestLoop::start(files.config(), fetch, false);
    tokio::time::sleep(secs(2)).await;
    // An unchanged file: nothing to report.
    daemon.reloads.send(Reload::Files).await.unwrap();
    tokio::time::sleep(secs(1)).await;
    assert!(daemon.events().named("daemon.reloaded").is_empty());
    // A bad edit, reloaded by SIGHUP, then echoed by the file watcher:
    // rejected once.
    std::fs::write(files.path(), "[poll]\nintreval_max = \"1s\"\n").unwrap();
    daemon.reloads.send(Reload::Signal).await.unwrap();
    tokio::time::sleep(secs(1)).await;
    daemon.reloads.send(Reload::Files).await.unwrap();
    tokio::time::sleep(secs(1)).await;
    // A real change is applied; a SIGHUP always reports.
    files.rewrite(FIXED_1S, &watches(3));
    daemon.reloads.send(Reload::Files).await.unwrap();
    tokio::time::sleep(secs(1)).await;
    daemon.reloads.send(Reload::Signal).await.unwrap();
    tokio::time::sleep(secs(1)).await;
    let (_, events) = daemon.stop().await;
    assert_eq!(events.named("daemon.reload_failed").len(), 1, "{events}");
    let reloaded = events.named("daemon.reloaded");
    assert_eq!(reloaded.len(), 2, "{events}");
    assert_eq!(reloaded[0]["added"], 1);
    assert_eq!(reloaded[1]["added"], 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_poll_is_a_failed_poll_that_is_retried_and_frees_its_slot() {
    let poll = format!("{FIXED_1S}\nmax_in_flight = 1");
    let files = Files::new(&poll, &watches(2));
    let fetch = Scripted::always(observed("Succeeded")).panic_first("run-0");
    let (report, events) = TestLoop::start(files.config(), fetch.clone(), true)
        .finish()
        .await;
    assert_eq!(report.verdict, Verdict::Success, "{events}");
    let failed = events.one("poll.failed", |e| e["execution"] == "run-0");
    assert_eq!(failed["error_kind"], "internal", "{failed}");
    assert!(failed["retry_in_ms"].as_u64().unwrap() > 0, "{failed}");
    assert_eq!(events.transitions_of("run-0"), ["Succeeded"], "{events}");
    assert_eq!(events.transitions_of("run-1"), ["Succeeded"], "{events}");
    assert_eq!(fetch.calls_for("run-0").len(), 2, "retried once");
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_lowers_rate_limit_takes_effect_within_a_second() {
    let files = Files::new(&format!("{FIXED_1S}\nrate_limit = 20.0"), &watches(30));
    let fetch = Scripted::always(observed("Running"));
    let daemon = TestLoop::start(files.config(), fetch.clone(), false);
    tokio::time::sleep(secs(10)).await;
    let reload_at = Instant::now();
    let in_window = |from: Instant, to: Instant| {
        fetch
            .calls()
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .count()
    };
    let before = in_window(reload_at - secs(5), reload_at);
    assert!(before >= 90, "about 20 a second before: {before} in 5 s");
    files.rewrite(&format!("{FIXED_1S}\nrate_limit = 2.0"), &watches(30));
    daemon.reloads.send(Reload::Signal).await.unwrap();
    tokio::time::sleep(secs(11)).await;
    let (_, events) = daemon.stop().await;
    let after = in_window(reload_at + secs(1), reload_at + secs(11));
    // 2 a second, plus the contract's burst allowance of 2.
    assert!(
        after <= 2 * 10 + 2,
        "{after} requests in the 10 s after the reload"
    );
    assert!(after >= 2 * 10 - 2, "still polling: {after}");
    let reloaded = events.one("daemon.reloaded", |_| true);
    assert_eq!(reloaded["changed"], serde_json::json!(["poll.rate_limit"]));
}

#[tokio::test(start_paused = true)]
async fn two_watches_the_service_reveals_as_one_execution_report_it_once() {
    const ARN: &str =
        "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0";
    let watches = format!(
        "[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ team = \"search\" }}\n\n\
         [[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-0\"\nlabels = {{ owner = \"ops\" }}\n"
    );
    let files = Files::new(FIXED_1S, &watches);
    let fetch = Scripted::always(observed_as("Succeeded", ARN)).script(
        "run-0",
        vec![
            observed_as("Running", ARN),
            observed_as("Running", ARN),
            observed_as("Running", ARN),
            observed_as("Succeeded", ARN),
        ],
    );
    let (report, events) = TestLoop::start(files.config(), fetch, true).finish().await;
    assert_eq!(report.verdict, Verdict::Success, "{events}");
    assert_eq!(report.watches.len(), 1, "{:?}", report.watches);
    assert_eq!(
        events.transitions_of("run-0"),
        ["Running", "Succeeded"],
        "{events}"
    );
    let last = events.one("execution.transition", |e| e["to"] == "Succeeded");
    assert_eq!(last["labels"]["team"], "search", "{last}");
    assert_eq!(last["labels"]["owner"], "ops", "labels merged: {last}");
    assert_eq!(last["execution_arn"], ARN);
}

#[tokio::test(start_paused = true)]
async fn a_reload_adding_the_arn_a_watch_already_learned_adds_no_second_watch() {
    const ARN: &str =
        "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0";
    let by_parts =
        "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-0\"\n";
    let files = Files::new(FIXED_1S, by_parts);
    let fetch = Scripted::always(observed_as("Running", ARN));
    let daemon = TestLoop::start(files.config(), fetch.clone(), false);
    tokio::time::sleep(secs(3)).await;
    let by_arn =
        format!("[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ team = \"search\" }}\n");
    files.rewrite(FIXED_1S, &format!("{by_parts}\n{by_arn}"));
    daemon.reloads.send(Reload::Signal).await.unwrap();
    tokio::time::sleep(secs(3)).await;
    let calls_before = fetch.calls().len();
    tokio::time::sleep(secs(10)).await;
    let (report, events) = daemon.stop().await;
    assert_eq!(events.transitions_of("run-0"), ["Running"], "{events}");
    assert_eq!(report.watches.len(), 1, "{:?}", report.watches);
    assert_eq!(events.one("daemon.reloaded", |_| true)["watches"], 1);
    let polls = fetch.calls().len() - calls_before;
    assert!(
        polls <= 11,
        "one watch polls about once a second: {polls} in 10 s"
    );
    assert_eq!(events.named("watch.added").len(), 1, "{events}");
}
