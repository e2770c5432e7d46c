//! The SDK's retry environment (`AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE`) given
//! to the real process: flowwatch's own backoff stays the only retry.

use flowwatch::simulate::Answer;

use super::{running, secs, terminate, wait_for_requests, watch};
use crate::support::{Spawned, TestConfig, fast_poll, flowwatch, simulator};

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
