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
//! the process really spends (the counting allocator is `common::heap`). RSS also holds code, stacks, the runtime and
//! memory freed but kept by the allocator: so the bench first runs itself
//! with one watch (`--rss-baseline 1`, a separate process doing the same
//! steps) and reports RSS per watch as the difference, at its peak and
//! while polling ("steady").

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use flowwatch::daemon::Daemon;
use flowwatch::poll::SdkFetcher;
use flowwatch::service::metrics::Metrics;
use flowwatch::simulate::Scenario;

use common::heap::{Heap, heap, peak, reset_peak};
use common::{SimProcess, arg, config_text, credentials, events_to_sink, execution_arns, rss};

#[global_allocator]
static ALLOCATOR: common::heap::Counting = common::heap::Counting;

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

/// RSS of a run: while polling, and the process's high-water mark.
#[derive(Clone, Copy)]
struct Rss {
    steady: u64,
    peak: u64,
}

/// The one-watch run, in a process of its own so that its peak is its own.
fn baseline_rss(run_secs: u64) -> Rss {
    let exe = std::env::current_exe().expect("the bench knows its own path");
    let output = std::process::Command::new(exe)
        .args(["--watches", "1", "--run-secs", &run_secs.to_string()])
        .args(["--rss-baseline", "1"])
        .output()
        .expect("the bench runs itself with one watch");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the one-watch run's output: {text}"))
    };
    Rss {
        steady: field("steady="),
        peak: field("peak="),
    }
}

fn main() {
    let watches: usize = arg("watches", 100_000);
    let run_secs: u64 = arg("run-secs", 10);
    let rss_baseline = arg::<u8>("rss-baseline", 0) == 1;
    let baseline = (!rss_baseline).then(|| baseline_rss(run_secs));
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

    if !rss_baseline {
        println!("memory: {watches} watches (machine: {} cores)", cores());
    }
    for (name, labels) in [
        ("execution_arn, no labels", None),
        (
            "execution_arn, labels = { team = \"search\" }",
            Some("{ team = \"search\" }"),
        ),
    ] {
        if rss_baseline && labels.is_some() {
            break;
        }
        let text = config_text(&sim.endpoint, POLL, &arns, labels);
        let edges = common::edges(Arc::new(Metrics::new()));
        let before = heap();
        reset_peak();
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
        let peak = peak();
        if !rss_baseline {
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
        }

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
        let (steady, peak) = rss();
        shutdown.cancel();
        let report = runtime
            .block_on(task)
            .expect("the daemon loop does not panic");
        if rss_baseline {
            println!("rss steady={steady} peak={peak}");
            return;
        }
        let polls: u64 = report.watches.iter().map(|w| w.polls).sum();
        println!("\n{name}, after {run_secs} s of polling ({polls} requests)");
        header();
        row("total while polling", before, running, watches);
        println!(
            "  RSS {:.1} MiB (high-water {:.1} MiB)",
            mib(steady),
            mib(peak)
        );
        if let Some(one) = baseline {
            // Per watch beyond a one-watch run's process: code, runtime and
            // SDK are in both and cancel out.
            let per = |a: u64, b: u64| (a as f64 - b as f64) / (watches - 1).max(1) as f64;
            println!(
                "  RSS minus a one-watch run ({:.1} MiB steady, {:.1} MiB peak): steady {:.0} bytes/watch, peak {:.0} bytes/watch (live heap {:.0} malloc)",
                mib(one.steady),
                mib(one.peak),
                per(steady, one.steady),
                per(peak, one.peak),
                (running.chunks - before.chunks) as f64 / watches as f64,
            );
        }
        println!("  simulator process CPU: {:.2} s", sim.cpu().as_secs_f64());
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
