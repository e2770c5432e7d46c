//! CPU per request: the daemon polling N executions against the simulator,
//! versus a bare SDK loop making the same number of GetFlowExecution
//! requests with the same client settings (retries off, same timeouts), the
//! same concurrency and the same request rate.
//!
//!     cargo bench --bench cpu [-- --executions 5000 --requests 40000 --rate 2000 --in-flight 64]
//!
//! The simulator runs as a separate process (`flowwatch simulate`, which
//! Cargo builds for benches), so this process's CPU time (user + system, all
//! threads, from /proc/self/stat) is the client side only: the daemon, or
//! the bare loop, plus the SDK and hyper under each. Both run in the same
//! tokio runtime (one worker per core). The daemon's figure includes its
//! per-poll work (scheduler, rate budget, metrics) and the first observation
//! of each execution (one `execution.transition` event each, formatted as
//! JSON into a sink); the watches' start-up (`watch.added` events) is
//! reported apart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant as StdInstant};

use aws_smithy_types::retry::RetryConfig;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use flowwatch::daemon::Daemon;
use flowwatch::poll::{
    EventsPage, EventsRequest, ExecutionsPage, ExecutionsRequest, Fetch, Lister, PollOutcome,
    ReadFailure, SdkFetcher, Target,
};
use flowwatch::service::metrics::Metrics;
use flowwatch::simulate::Scenario;

use common::{
    ALIAS, FLOW, SimProcess, arg, config_text, credentials, events_to_sink, execution_arns,
    execution_ids, process_cpu, running_scenario, sdk_client,
};

/// The daemon's fetcher, counting: it asks the daemon to stop once `limit`
/// requests have started, and counts the ones that completed.
#[derive(Clone)]
struct Counted {
    inner: SdkFetcher,
    started: Arc<AtomicU64>,
    completed: Arc<AtomicU64>,
    observed: Arc<AtomicU64>,
    limit: u64,
    stop: CancellationToken,
}

impl Fetch for Counted {
    async fn fetch(&self, target: &Target) -> PollOutcome {
        if self.started.fetch_add(1, Ordering::Relaxed) + 1 >= self.limit {
            self.stop.cancel();
        }
        let outcome = self.inner.fetch(target).await;
        self.completed.fetch_add(1, Ordering::Relaxed);
        if matches!(outcome, PollOutcome::Observed(_)) {
            self.observed.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }
}

/// Listing reads pass through uncounted (the bench measures polls).
impl Lister for Counted {
    async fn list_executions(
        &self,
        request: &ExecutionsRequest,
    ) -> Result<ExecutionsPage, ReadFailure> {
        self.inner.list_executions(request).await
    }

    async fn list_events(&self, request: &EventsRequest) -> Result<EventsPage, ReadFailure> {
        self.inner.list_events(request).await
    }
}

/// One side's measurement.
struct Measured {
    requests: u64,
    ok: u64,
    cpu: Duration,
    wall: Duration,
    sim_cpu: Duration,
}

impl Measured {
    fn us_per_request(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests as f64
    }

    fn print(&self, name: &str) {
        println!(
            "  {name:<26} {:>8} {:>8} {:>8.2} {:>8.0} {:>10.1} {:>10.1}",
            self.requests,
            self.ok,
            self.cpu.as_secs_f64(),
            self.requests as f64 / self.wall.as_secs_f64(),
            self.us_per_request(),
            self.sim_cpu.as_secs_f64() * 1e6 / self.requests as f64,
        );
    }
}

fn main() {
    let executions: usize = arg("executions", 5_000);
    let requests: u64 = arg("requests", 40_000);
    let rate: f64 = arg("rate", 2_000.0);
    let in_flight: usize = arg("in-flight", 64);
    events_to_sink();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let scenario_text = running_scenario(executions, None);
    let scenario = Scenario::parse(&scenario_text).expect("the bench scenario parses");
    let sim = SimProcess::spawn(&scenario_text);

    println!(
        "cpu: {executions} executions, {requests} requests each side, {rate} req/s, {in_flight} in flight, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let bare = runtime.block_on(bare_sdk(&sim, &scenario, requests, rate, in_flight));
    let (daemon, setup) = runtime.block_on(daemon(&sim, &scenario, requests, rate, in_flight));
    println!(
        "\n  {:<26} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "", "requests", "200s", "cpu s", "req/s", "µs/request", "sim µs/req"
    );
    bare.print("bare SDK loop");
    daemon.print("flowwatch daemon");
    println!(
        "\n  daemon / bare SDK: {:.2}× CPU per request",
        daemon.us_per_request() / bare.us_per_request()
    );
    println!(
        "  daemon start-up (parse + {executions} watches added): {:.2} s CPU, {:.1} µs/watch",
        setup.as_secs_f64(),
        setup.as_secs_f64() * 1e6 / executions as f64
    );
}

/// The bare SDK: a paced loop that starts one GetFlowExecution every
/// 1/`rate` s, round-robin over the executions, at most `in_flight` at once.
async fn bare_sdk(
    sim: &SimProcess,
    scenario: &Scenario,
    requests: u64,
    rate: f64,
    in_flight: usize,
) -> Measured {
    let client = sdk_client(&sim.endpoint, "us-east-1", RetryConfig::disabled());
    let ids: Vec<Arc<str>> = execution_ids(scenario).into_iter().map(Arc::from).collect();
    let limit = Arc::new(Semaphore::new(in_flight));
    let ok = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let (sim_before, cpu_before, wall_before) = (sim.cpu(), process_cpu(), StdInstant::now());
    for i in 0..requests {
        pace.tick().await;
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let request = client
            .get_flow_execution()
            .flow_identifier(FLOW)
            .flow_alias_identifier(ALIAS)
            .execution_identifier(&*ids[i as usize % ids.len()]);
        let ok = ok.clone();
        tasks.spawn(async move {
            if request.send().await.is_ok() {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
        // Reap finished tasks as we go, as a long-running loop must.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Measured {
        requests,
        ok: ok.load(Ordering::Relaxed),
        cpu: process_cpu() - cpu_before,
        wall: wall_before.elapsed(),
        sim_cpu: sim.cpu() - sim_before,
    }
}

/// The daemon: N watches, short fixed intervals, so the rate budget
/// (`rate_limit` = `rate`) is what paces it; stopped after `requests`.
/// Returns the run's figures and the start-up CPU.
async fn daemon(
    sim: &SimProcess,
    scenario: &Scenario,
    requests: u64,
    rate: f64,
    in_flight: usize,
) -> (Measured, Duration) {
    let poll = format!(
        "interval_initial = \"100ms\"\ninterval_max = \"100ms\"\njitter = 0.0\nrate_limit = {rate:?}\nmax_in_flight = {in_flight}"
    );
    let text = config_text(&sim.endpoint, &poll, &execution_arns(scenario), None);
    let stop = CancellationToken::new();
    let started = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let observed = Arc::new(AtomicU64::new(0));
    let metrics = Arc::new(Metrics::new());
    let cpu_setup = process_cpu();
    let config =
        flowwatch::config::parse_str(&text, std::path::Path::new("/etc/flowwatch/flowwatch.toml"))
            .expect("the generated config is valid");
    let inner = SdkFetcher::new(
        &config.aws,
        config.poll.request_timeout,
        Some(credentials()),
    )
    .await;
    let fetch = Counted {
        inner,
        started: started.clone(),
        completed: completed.clone(),
        observed: observed.clone(),
        limit: requests,
        stop: stop.clone(),
    };
    let edges = common::edges(metrics.clone());
    let daemon = Daemon::new(config, fetch, edges, tokio::time::Instant::now())
        .expect("every watch has a region");
    let setup = process_cpu() - cpu_setup;
    let (_reloads, reload_rx) = mpsc::channel(1);
    let (sim_before, cpu_before, wall_before) = (sim.cpu(), process_cpu(), StdInstant::now());
    daemon.run(reload_rx, stop).await;
    let measured = Measured {
        requests: completed.load(Ordering::Relaxed),
        ok: observed.load(Ordering::Relaxed),
        cpu: process_cpu() - cpu_before,
        wall: wall_before.elapsed(),
        sim_cpu: sim.cpu() - sim_before,
    };
    (measured, setup)
}
