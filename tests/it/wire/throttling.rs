//! Throttling and the rate as the simulator's request log shows it: the
//! budget adapts to a server quota well below `rate_limit`, and no second
//! carries more than the burst.

use std::time::Duration;

use flowwatch::simulate::{Answer, RequestRecord};

use super::{running, secs, terminate, wait_for_requests};
use crate::support::{Spawned, TestConfig, flowwatch, simulator, watches_by_parts};

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
    // The budget adapts within the first second already (a burst cut after
    // two throttles), so its share of 429s there is only a fraction; what
    // counts is that the quota bit, and that afterwards only the budget's
    // probes above the quota are throttled: unadapted, 100/s against 20/s
    // would be 80 %.
    assert!(first.0 >= 2, "the quota bites at start-up: {first:?}");
    assert!(
        last.0 <= 2 && last.2 <= 0.05,
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
