//! The quota bar: behind a server quota Q below the daemon's `rate_limit`,
//! how many requests are throttled, how much of the quota turns into
//! successful polls (goodput), and whether every successful poll goes to a
//! different execution until all are covered. The daemon is compared with
//! two bare-SDK loops of the same concurrency: the SDK's adaptive retry mode
//! (client-side rate limiting) and its standard retry mode (the usual
//! hand-written polling loop).
//!
//!     cargo bench --bench throttle [-- --quota 20 --secs 60 --executions 0 --in-flight 16 --warmup 5]
//!     cargo bench --bench throttle -- --quota 20 --drop-at 30 --secs 70 --executions 2000
//!
//! `--quota` takes a list (`5,20,100`); `--executions 0` means 25 × Q, so
//! that covering every execution takes about 25 s at the quota.
//! `--drop-at S` (issue 7.11) runs the daemon alone against a quota that
//! falls `--drop-factor` (5) fold S seconds in, and reports the throttled
//! share in the 5 s after the drop and the goodput before and after it
//! (from 10 s after the drop on); with `TRACE_DROP=1` in the environment it
//! also prints every request of those 5 s (ms after the drop, status). The
//! simulator runs in-process (a fresh one per run, quota burst = 1 s worth)
//! and its request log is the only source of the figures: the same
//! counting for every contender.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aws_smithy_types::retry::RetryConfig;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use flowwatch::daemon::Daemon;
use flowwatch::poll::SdkFetcher;
use flowwatch::service::metrics::Metrics;
use flowwatch::simulate::{Scenario, Simulator, Stats};

use common::{
    ALIAS, FLOW, arg, config_text, credentials, events_to_sink, execution_arns, execution_ids,
    list_arg, running_scenario_with, sdk_client,
};

/// The bare loops poll one execution at most this often: the daemon's
/// default `interval_initial`.
const LOOP_INTERVAL: Duration = Duration::from_secs(2);

/// Regions for the bare-SDK runs, one each: the SDK keeps its adaptive rate
/// limiter and retry quota per (service, region) for the whole process.
const REGIONS: [&str; 8] = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-northeast-1",
    "sa-east-1",
    "ca-central-1",
];

#[derive(Clone, Copy)]
struct Setup {
    quota: f64,
    executions: usize,
    run_for: Duration,
    warmup: Duration,
    in_flight: usize,
    rate_factor: f64,
    /// The quota falls to quota / factor at this offset (`--drop-at`).
    drop: Option<(Duration, f64)>,
}

fn main() {
    let quotas = list_arg("quota", "20");
    let secs: f64 = arg("secs", 60.0);
    let executions: usize = arg("executions", 0);
    let in_flight: usize = arg("in-flight", 16);
    let rate_factor: f64 = arg("rate-factor", 5.0);
    let warmup: f64 = arg("warmup", 5.0);
    let drop_at: f64 = arg("drop-at", 0.0);
    let drop_factor: f64 = arg("drop-factor", 5.0);
    events_to_sink();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut regions = REGIONS.iter();
    for quota in quotas {
        let setup = Setup {
            quota,
            executions: if executions == 0 {
                (25.0 * quota).round() as usize
            } else {
                executions
            },
            run_for: Duration::from_secs_f64(secs),
            warmup: Duration::from_secs_f64(warmup),
            in_flight,
            rate_factor,
            drop: (drop_at > 0.0).then(|| (Duration::from_secs_f64(drop_at), drop_factor)),
        };
        if setup.drop.is_some() {
            let stats = runtime.block_on(flowwatch(setup));
            DropFigures::of(&stats, setup).print(setup);
            continue;
        }
        println!(
            "\nthrottle: quota {quota} req/s (burst {quota}), {} executions staying Running, {secs} s, {in_flight} in flight; flowwatch rate_limit = {}",
            setup.executions,
            rate_factor * quota
        );
        println!(
            "  {:<26} {:>8} {:>9} {:>9} {:>10} {:>10} {:>14} {:>12}",
            "",
            "requests",
            "throttled",
            "throttled",
            "goodput/Q",
            "goodput/Q",
            "covered before",
            "all covered"
        );
        println!(
            "  {:<26} {:>8} {:>9} {:>9} {:>10} {:>10} {:>14} {:>12}",
            "", "", "overall", "after warm", "after warm", "overall", "first repeat", "at"
        );
        println!("  (warm-up: the first {warmup} s)");
        let stats = runtime.block_on(flowwatch(setup));
        Figures::of(&stats, setup).print("flowwatch daemon", setup);
        let region = regions.next().expect("at most 4 quotas per run");
        let stats = runtime.block_on(bare_loop(setup, RetryConfig::adaptive(), region));
        Figures::of(&stats, setup).print("SDK adaptive retry loop", setup);
        let region = regions.next().expect("at most 4 quotas per run");
        let stats = runtime.block_on(bare_loop(setup, RetryConfig::standard(), region));
        Figures::of(&stats, setup).print("SDK standard retry loop", setup);
    }
}

async fn simulator(setup: Setup) -> (Simulator, Scenario) {
    let schedule = match setup.drop {
        Some((at, factor)) => format!(
            "quota_schedule = [{{ at = \"{}ms\", quota = {:?} }}]\n",
            at.as_millis(),
            setup.quota / factor
        ),
        None => String::new(),
    };
    let text = running_scenario_with(setup.executions, Some(setup.quota), &schedule);
    let scenario = Scenario::parse(&text).expect("the bench scenario parses");
    let sim = Simulator::spawn(scenario.clone(), "127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the simulator binds a loopback port");
    (sim, scenario)
}

/// The daemon with its default polling policy but `rate_limit` = factor × Q
/// and the bench's `max_in_flight`.
async fn flowwatch(setup: Setup) -> Stats {
    let (sim, scenario) = simulator(setup).await;
    let poll = format!(
        "rate_limit = {:?}\nmax_in_flight = {}",
        setup.rate_factor * setup.quota,
        setup.in_flight
    );
    let text = config_text(&sim.endpoint_url(), &poll, &execution_arns(&scenario), None);
    let config =
        flowwatch::config::parse_str(&text, std::path::Path::new("/etc/flowwatch/flowwatch.toml"))
            .expect("the generated config is valid");
    let fetch = SdkFetcher::new(
        &config.aws,
        config.poll.request_timeout,
        Some(credentials()),
    )
    .await;
    let edges = common::edges(Arc::new(Metrics::new()));
    let daemon =
        Daemon::new(config, fetch, edges, Instant::now()).expect("every watch has a region");
    let stop = CancellationToken::new();
    let (_reloads, reload_rx) = mpsc::channel(1);
    let task = tokio::spawn(daemon.run(reload_rx, stop.clone()));
    tokio::time::sleep(setup.run_for).await;
    stop.cancel();
    task.await.expect("the daemon loop does not panic");
    let stats = sim.stats();
    sim.shutdown().await;
    stats
}

/// A bare-SDK polling loop: `in_flight` workers take executions round-robin
/// and poll each (with the SDK's own retries, in `retry` mode) at most every
/// `LOOP_INTERVAL`.
async fn bare_loop(setup: Setup, retry: RetryConfig, region: &str) -> Stats {
    let (sim, scenario) = simulator(setup).await;
    let client = sdk_client(&sim.endpoint_url(), region, retry);
    let ids: Arc<Vec<String>> = Arc::new(execution_ids(&scenario));
    let next = Arc::new(AtomicUsize::new(0));
    let origin = Instant::now();
    // When each execution's last poll started, in ms since `origin` + 1; 0: never.
    let last: Arc<Vec<AtomicU64>> = Arc::new(ids.iter().map(|_| AtomicU64::new(0)).collect());
    let mut workers = JoinSet::new();
    for _ in 0..setup.in_flight {
        let (client, ids, next, last) = (client.clone(), ids.clone(), next.clone(), last.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) % ids.len();
                let previous = last[i].load(Ordering::Relaxed);
                if previous > 0 {
                    let due = origin + Duration::from_millis(previous - 1) + LOOP_INTERVAL;
                    tokio::time::sleep_until(due).await;
                }
                let started = origin.elapsed().as_millis() as u64 + 1;
                last[i].store(started, Ordering::Relaxed);
                let _ = client
                    .get_flow_execution()
                    .flow_identifier(FLOW)
                    .flow_alias_identifier(ALIAS)
                    .execution_identifier(&ids[i])
                    .send()
                    .await;
            }
        });
    }
    tokio::time::sleep(setup.run_for).await;
    workers.abort_all();
    while workers.join_next().await.is_some() {}
    let stats = sim.stats();
    sim.shutdown().await;
    stats
}

/// What one run achieved, from the simulator's request log (requests that
/// arrived within the run).
struct Figures {
    requests: u64,
    throttled: u64,
    requests_after_warmup: u64,
    throttled_after_warmup: u64,
    ok_after_warmup: u64,
    ok: u64,
    /// Distinct executions with a 200 before any execution got its second.
    covered_before_repeat: usize,
    /// When the last execution got its first 200, if all did.
    all_covered_at: Option<Duration>,
    covered: usize,
}

impl Figures {
    fn of(stats: &Stats, setup: Setup) -> Figures {
        let mut figures = Figures {
            requests: 0,
            throttled: 0,
            requests_after_warmup: 0,
            throttled_after_warmup: 0,
            ok_after_warmup: 0,
            ok: 0,
            covered_before_repeat: 0,
            all_covered_at: None,
            covered: 0,
        };
        assert_eq!(stats.log_dropped, 0, "the request log holds the whole run");
        let mut seen: HashSet<&str> = HashSet::new();
        let mut repeated = false;
        for record in stats.log.iter().filter(|r| r.at < setup.run_for) {
            let warm = record.at >= setup.warmup;
            figures.requests += 1;
            figures.requests_after_warmup += u64::from(warm);
            match record.status {
                429 => {
                    figures.throttled += 1;
                    figures.throttled_after_warmup += u64::from(warm);
                }
                200 => {
                    figures.ok += 1;
                    figures.ok_after_warmup += u64::from(warm);
                    if !seen.insert(&record.execution) {
                        repeated = true;
                    } else if seen.len() == setup.executions {
                        figures.all_covered_at = Some(record.at);
                    }
                    if !repeated {
                        figures.covered_before_repeat = seen.len();
                    }
                }
                _ => {}
            }
        }
        figures.covered = seen.len();
        figures
    }

    fn print(&self, name: &str, setup: Setup) {
        let q = setup.quota;
        let after = (setup.run_for - setup.warmup).as_secs_f64();
        let covered_at = match self.all_covered_at {
            Some(at) => format!("{:.1} s", at.as_secs_f64()),
            None => format!("{}/{} by end", self.covered, setup.executions),
        };
        println!(
            "  {name:<26} {:>8} {:>8.1}% {:>8.1}% {:>9.1}% {:>9.1}% {:>14} {:>12}",
            self.requests,
            100.0 * self.throttled as f64 / self.requests.max(1) as f64,
            100.0 * self.throttled_after_warmup as f64 / self.requests_after_warmup.max(1) as f64,
            100.0 * self.ok_after_warmup as f64 / after / q,
            100.0 * self.ok as f64 / setup.run_for.as_secs_f64() / q,
            format!("{}/{}", self.covered_before_repeat, setup.executions),
            covered_at,
        );
    }
}

/// The quota-drop figures of one daemon run (`--drop-at`).
struct DropFigures {
    /// Requests and throttles that arrived in the 5 s after the drop.
    requests_after: u64,
    throttled_after: u64,
    /// 200s per second from the warm-up to the drop, and from 10 s after the
    /// drop to the end.
    goodput_before: f64,
    goodput_settled: f64,
    throttled_overall: u64,
    requests: u64,
}

/// How long after the drop the throttled share is counted.
const DROP_WINDOW: Duration = Duration::from_secs(5);
/// Goodput after the drop counts from this long after it.
const SETTLE: Duration = Duration::from_secs(10);

impl DropFigures {
    fn of(stats: &Stats, setup: Setup) -> DropFigures {
        let (at, _) = setup.drop.expect("a drop run");
        assert_eq!(stats.log_dropped, 0, "the request log holds the whole run");
        let (mut ok_before, mut ok_settled) = (0u64, 0u64);
        let mut figures = DropFigures {
            requests_after: 0,
            throttled_after: 0,
            goodput_before: 0.0,
            goodput_settled: 0.0,
            throttled_overall: 0,
            requests: 0,
        };
        for record in stats.log.iter().filter(|r| r.at < setup.run_for) {
            let throttled = record.status == 429;
            figures.requests += 1;
            figures.throttled_overall += u64::from(throttled);
            if record.at >= at && record.at < at + DROP_WINDOW {
                if std::env::var_os("TRACE_DROP").is_some() {
                    let ms = (record.at - at).as_secs_f64() * 1e3;
                    eprintln!("  +{ms:8.1} ms {}", record.status);
                }
                figures.requests_after += 1;
                figures.throttled_after += u64::from(throttled);
            }
            if record.status == 200 {
                ok_before += u64::from(record.at >= setup.warmup && record.at < at);
                ok_settled += u64::from(record.at >= at + SETTLE);
            }
        }
        figures.goodput_before = ok_before as f64 / (at - setup.warmup).as_secs_f64();
        let settled = setup.run_for.saturating_sub(at + SETTLE).as_secs_f64();
        figures.goodput_settled = ok_settled as f64 / settled.max(f64::MIN_POSITIVE);
        figures
    }

    fn print(&self, setup: Setup) {
        let (at, factor) = setup.drop.expect("a drop run");
        let (q, after) = (setup.quota, setup.quota / factor);
        println!(
            "\nthrottle --drop-at: quota {q} -> {after} req/s at {:.0} s, {} executions staying Running, {:.0} s, {} in flight; flowwatch rate_limit = {}",
            at.as_secs_f64(),
            setup.executions,
            setup.run_for.as_secs_f64(),
            setup.in_flight,
            setup.rate_factor * q
        );
        println!(
            "  flowwatch daemon: throttled in the 5 s after the drop {:.1} % ({} of {}); goodput/Q before {:.1} %, from {} s after on {:.1} % of the new quota; throttled overall {:.1} % of {}",
            100.0 * self.throttled_after as f64 / self.requests_after.max(1) as f64,
            self.throttled_after,
            self.requests_after,
            100.0 * self.goodput_before / q,
            SETTLE.as_secs(),
            100.0 * self.goodput_settled / after,
            100.0 * self.throttled_overall as f64 / self.requests.max(1) as f64,
            self.requests,
        );
    }
}
