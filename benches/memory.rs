//! Bytes per watch: the heap that 100,000 watches take, in the parsed
//! `Config` (the `WatchSet`) and in the `Daemon` (tracking and scheduler),
//! counted by a global allocator that wraps the system one. Then the daemon
//! runs against `flowwatch simulate` for a few seconds and the heap is counted
//! again, in the middle of polling.
//!
//!     cargo bench --bench memory [-- --watches 100000 --run-secs 10]
//!
//! "Requested" is what the program asked for; "malloc" adds glibc's chunk
//! rounding (8-byte header, 16-byte steps, 32-byte minimum), which is what
//! the process really spends. RSS is printed for context only: it also holds
//! code, stacks and memory freed but kept by the allocator.

mod common;
#[path = "common/counting.rs"]
mod counting;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use flowwatch::daemon::Daemon;
use flowwatch::poll::SdkFetcher;
use flowwatch::service::metrics::Metrics;
use flowwatch::simulate::Scenario;

use common::{SimProcess, arg, config_text, credentials, events_to_sink, execution_arns, rss};
use counting::{Heap, PEAK, heap};

/// Per-watch growth from `from` to `to`, as a report row.
fn row(name: &str, from: Heap, to: Heap, watches: usize) {
    let per = |a: usize, b: usize| (b as f64 - a as f64) / watches as f64;
    println!(
        "  {name:<28} {:>9.1} {:>9.1} {:>9.2}",
        per(from.bytes, to.bytes),
        per(from.chunks, to.chunks),
        per(from.count, to.count),
    );
}

fn header() {
    println!(
        "  {:<28} {:>9} {:>9} {:>9}",
        "bytes per watch", "requested", "malloc", "allocs"
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

const POLL: &str =
    "interval_initial = \"2s\"\ninterval_max = \"60s\"\nrate_limit = 400.0\nmax_in_flight = 64";

fn main() {
    let watches: usize = arg("watches", 100_000);
    let run_secs: u64 = arg("run-secs", 10);
    events_to_sink();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    // The repo's bench scenario, resized: ids bench-000001.. ending between
    // 30 s and 5 min, quota 500 req/s.
    let scenario_text = std::fs::read_to_string("config/scenarios/bench-100k.toml")
        .expect("run from the package root, as cargo bench does")
        .replace("count = 100000", &format!("count = {watches}"));
    let arns = execution_arns(&Scenario::parse(&scenario_text).expect("the bench scenario parses"));
    let sim = SimProcess::spawn(&scenario_text);
    let fetch = runtime.block_on(SdkFetcher::new(
        &flowwatch::config::AwsSettings {
            region: Some("us-east-1".into()),
            profile: None,
            endpoint_url: Some(sim.endpoint.clone()),
        },
        Duration::from_secs(10),
        Some(credentials()),
    ));
    let main_path = Path::new("/etc/flowwatch/flowwatch.toml");

    println!("memory: {watches} watches (machine: {} cores)", cores());
    for (name, labels) in [
        ("execution_arn, no labels", None),
        (
            "execution_arn, labels = { team = \"search\" }",
            Some("{ team = \"search\" }"),
        ),
    ] {
        let text = config_text(&sim.endpoint, POLL, &arns, labels);
        let edges = common::edges(Arc::new(Metrics::new()));
        let before = heap();
        PEAK.store(before.bytes, Ordering::Relaxed);
        let clock = std::time::Instant::now();
        let config =
            flowwatch::config::parse_str(&text, main_path).expect("the generated config is valid");
        let parse_time = clock.elapsed();
        let parsed = heap();
        let clock = std::time::Instant::now();
        let daemon = Daemon::new(config, fetch.clone(), edges, tokio::time::Instant::now())
            .expect("every watch has a region");
        let new_time = clock.elapsed();
        let built = heap();
        let peak = PEAK.load(Ordering::Relaxed);
        println!("\n{name}");
        header();
        row("Config (WatchSet)", before, parsed, watches);
        row("Daemon tracking + scheduler", parsed, built, watches);
        row("total", before, built, watches);
        println!(
            "  peak while building: {:.1} bytes/watch requested",
            (peak - before.bytes) as f64 / watches as f64
        );
        let (rss_now, hwm) = rss();
        println!(
            "  RSS {:.1} MiB (high-water {:.1} MiB)",
            mib(rss_now),
            mib(hwm)
        );
        println!(
            "  wall time: config::parse_str {:.2} s, Daemon::new {:.2} s",
            parse_time.as_secs_f64(),
            new_time.as_secs_f64()
        );

        if labels.is_some() {
            drop(daemon);
            continue;
        }
        // The same daemon, polling the simulator (another process) for a while.
        let shutdown = CancellationToken::new();
        let (_reloads, reload_rx) = mpsc::channel(1);
        let task = runtime.spawn(daemon.run(reload_rx, shutdown.clone()));
        std::thread::sleep(Duration::from_secs(run_secs));
        let running = heap();
        let (rss_now, hwm) = rss();
        shutdown.cancel();
        let report = runtime
            .block_on(task)
            .expect("the daemon loop does not panic");
        let polls: u64 = report.watches.iter().map(|w| w.polls).sum();
        println!("\n{name}, after {run_secs} s of polling ({polls} requests)");
        header();
        row("total while polling", before, running, watches);
        println!(
            "  RSS {:.1} MiB (high-water {:.1} MiB)",
            mib(rss_now),
            mib(hwm)
        );
        println!("  simulator process CPU: {:.2} s", sim.cpu().as_secs_f64());
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
