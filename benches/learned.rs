//! Issue 11's benchmark: for each workload, the daemon in-process against
//! the in-process simulator, and the figures users feel: requests per
//! execution and `detect_lag_ms` (mean, p50, p99, max) from the daemon's own
//! `execution.transition` events, for `[poll] schedule = "exponential"` and
//! `"learned"` on the same executions (same seed: the two scenarios differ
//! only in their id prefixes). Every (workload, schedule) pair runs at the
//! same time, each with its own simulator and daemon, so a run takes one
//! window plus the tail.
//!
//!     cargo bench --bench learned [-- --count 2000 --window 1800 --scale 0.25 --tail 400 --workloads a,b,c,d]
//!
//! Workloads (issue 11): (a) lognormal, median 60 s, σ 0.3; (b) bimodal, 20 s
//! or 5 min; (c) Pareto, α 1.5, min 10 s; (d) lognormal σ 0.2 with a median
//! of 30 s for the executions starting in the first half of the window and
//! 3 min after. Each execution starts at a random time in the window
//! (`start_between`) and does not exist before.
//!
//! Time is compressed by `--scale` so an hour of traffic takes minutes: every
//! duration in the scenario and in `[poll]` (interval_initial 2 s, interval_max
//! 60 s, multiplier 2, jitter 0.2) is multiplied by it, and the lags measured
//! are divided by it, so the figures printed are in the workload's own
//! seconds. Loopback latency (about a millisecond) is magnified by 1/scale too.
//! A watch is added (config rewrite + reload) within `BATCH` (workload
//! seconds) of its execution's start, as a user adding it when starting the run would; the
//! run lasts the window plus `--tail`, and executions still running then are
//! reported, not measured. `rate_limit` is set high (1000/s) so the daemon's
//! own budget does not shape the schedule. With `LEARNED_DUMP=DIR` every
//! request is written out too (`write_polls`).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use flowwatch::daemon::{Daemon, Reload};
use flowwatch::poll::SdkFetcher;
use flowwatch::service::metrics::Metrics;
use flowwatch::simulate::scenario::ExecRef;
use flowwatch::simulate::{Scenario, Simulator};

use common::{arg, config_text, credentials};

const SCHEDULES: [(&str, &str); 2] = [("exponential", "e"), ("learned", "l")];

const ALIAS: &str = "ALIASBENCH";

/// Watches are added in batches this often (workload seconds).
const BATCH: f64 = 6.0;

#[derive(Clone, Copy)]
struct Setup {
    count: usize,
    /// The start window, in workload seconds.
    window: f64,
    /// Real seconds per workload second.
    scale: f64,
    /// How long after the window the run goes on, in workload seconds.
    tail: f64,
}

impl Setup {
    /// A workload duration as a scaled duration string.
    fn d(&self, secs: f64) -> String {
        format!("{}ms", (secs * 1000.0 * self.scale).round() as u64)
    }
}

struct Workload {
    name: &'static str,
    flow: &'static str,
    /// `[[generate]]` tables, given the setup, flow and id prefix.
    tables: fn(&Setup, &str, &str) -> String,
}

fn table(
    s: &Setup,
    flow: &str,
    prefix: &str,
    count: usize,
    starts: (f64, f64),
    duration: &str,
) -> String {
    format!(
        "[[generate]]\ncount = {count}\nid_prefix = \"{prefix}\"\nflow = \"{flow}\"\nalias = \"{ALIAS}\"\nstart_between = [\"{}\", \"{}\"]\nduration = {duration}\n\n",
        s.d(starts.0),
        s.d(starts.1)
    )
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "a",
        flow: "FLOWLOGNRM",
        tables: |s, flow, prefix| {
            let d = format!(
                "{{ dist = \"lognormal\", median = \"{}\", sigma = 0.3 }}",
                s.d(60.0)
            );
            table(s, flow, prefix, s.count, (0.0, s.window), &d)
        },
    },
    Workload {
        name: "b",
        flow: "FLOWBIMODL",
        tables: |s, flow, prefix| {
            let d = format!(
                "{{ dist = \"bimodal\", a = \"{}\", b = \"{}\", p = 0.5 }}",
                s.d(20.0),
                s.d(300.0)
            );
            table(s, flow, prefix, s.count, (0.0, s.window), &d)
        },
    },
    Workload {
        name: "c",
        flow: "FLOWPARETO",
        tables: |s, flow, prefix| {
            let d = format!(
                "{{ dist = \"pareto\", alpha = 1.5, min = \"{}\" }}",
                s.d(10.0)
            );
            table(s, flow, prefix, s.count, (0.0, s.window), &d)
        },
    },
    Workload {
        name: "d",
        flow: "FLOWSHIFT1",
        tables: |s, flow, prefix| {
            let half = s.count / 2;
            let before = format!(
                "{{ dist = \"lognormal\", median = \"{}\", sigma = 0.2 }}",
                s.d(30.0)
            );
            let after = format!(
                "{{ dist = \"lognormal\", median = \"{}\", sigma = 0.2 }}",
                s.d(180.0)
            );
            table(
                s,
                flow,
                &format!("{prefix}before-"),
                half,
                (0.0, s.window / 2.0),
                &before,
            ) + &table(
                s,
                flow,
                &format!("{prefix}after-"),
                s.count - half,
                (s.window / 2.0, s.window),
                &after,
            )
        },
    },
];

/// The event lines the daemon writes, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("no writer panics")
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> Vec<serde_json::Value> {
        let bytes = std::mem::take(&mut *self.0.lock().expect("no writer panics"));
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn main() {
    let setup = Setup {
        count: arg("count", 2000),
        window: arg("window", 1800.0),
        scale: arg("scale", 0.25),
        tail: arg("tail", 400.0),
    };
    let chosen: String = arg("workloads", "a,b,c,d".to_string());
    let captured = Captured::default();
    let settings = flowwatch::config::LogSettings::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(flowwatch::event::subscriber(&settings, move || {
        writer.clone()
    }))
    .expect("the bench installs the subscriber once");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "learned: {} executions per workload starting within {} s, time × {}, run = window + {} s, every row at once",
        setup.count, setup.window, setup.scale, setup.tail
    );
    // Every row at once: (workload, schedule, id prefix, scenario).
    let rows: Vec<(&Workload, &str, String, Scenario)> = WORKLOADS
        .iter()
        .filter(|w| chosen.split(',').any(|c| c.trim() == w.name))
        .flat_map(|w| {
            SCHEDULES
                .iter()
                .map(move |(schedule, tag)| (w, *schedule, *tag))
        })
        .map(|(w, schedule, tag)| {
            let prefix = format!("{}-{tag}-", w.name);
            let text = format!("seed = 11\n\n{}", (w.tables)(&setup, w.flow, &prefix));
            let scenario = Scenario::parse(&text).expect("the bench scenario parses");
            (w, schedule, prefix, scenario)
        })
        .collect();
    let starts: Vec<Vec<(Duration, String)>> = rows.iter().map(|r| start_order(&r.3)).collect();
    let requests: Vec<HashMap<String, u64>> = runtime.block_on(async {
        let runs: Vec<_> = rows
            .iter()
            .zip(&starts)
            .map(|((_, schedule, _, scenario), starts)| {
                let run = run(
                    setup,
                    scenario.clone(),
                    starts.clone(),
                    schedule.to_string(),
                );
                tokio::spawn(run)
            })
            .collect();
        let mut requests = Vec::new();
        for r in runs {
            requests.push(r.await.expect("a run does not panic"));
        }
        requests
    });
    let events = captured.take();
    println!(
        "  {:<3} {:<12} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "", "schedule", "ended", "req/exec", "lag mean", "lag p50", "lag p99", "lag max"
    );
    for (((w, schedule, prefix, _), starts), requests) in rows.iter().zip(&starts).zip(&requests) {
        let lags = lags(&events, &setup, prefix);
        let total: u64 = requests.values().sum();
        print_row(w.name, schedule, &setup, total, &lags);
        if w.name == "d" {
            print_shift(&format!("{prefix}after-"), starts, &lags, requests);
        }
    }
}

/// (start offset, ARN) of every execution of `scenario`, in start order.
fn start_order(scenario: &Scenario) -> Vec<(Duration, String)> {
    let mut starts: Vec<(Duration, String)> = (0..scenario.len())
        .map(|i| {
            let e = scenario.nth(i).expect("index below len");
            let ExecRef::Generated(g, n) = e else {
                unreachable!("the bench generates every execution")
            };
            let start = Duration::from_millis(u64::from(g.start_at_ms[(n - 1) as usize]));
            (start, scenario.execution_arn(&e))
        })
        .collect();
    starts.sort();
    starts
}

/// The execution id at the end of an ARN or of a request's label.
fn id_of(label: &str) -> &str {
    let last = label.rsplit('/').next().unwrap_or(label);
    last.rsplit("%2F").next().unwrap_or(last)
}

/// The lag (workload seconds) of every terminal transition of the row whose
/// ids start with `prefix`, by execution id.
fn lags(events: &[serde_json::Value], setup: &Setup, prefix: &str) -> HashMap<String, f64> {
    events
        .iter()
        .filter(|e| e["event"] == "execution.transition" && e["terminal"] == true)
        .filter_map(|e| {
            let id = id_of(e["execution_arn"].as_str()?);
            let lag = e["detect_lag_ms"].as_f64()? / 1000.0 / setup.scale;
            id.starts_with(prefix).then(|| (id.to_string(), lag))
        })
        .collect()
}

/// (d): the executions after the shift in start order, in groups: mean lag
/// and requests per execution.
fn print_shift(
    after: &str,
    starts: &[(Duration, String)],
    lags: &HashMap<String, f64>,
    requests: &HashMap<String, u64>,
) {
    let shifted: Vec<(f64, u64)> = starts
        .iter()
        .map(|(_, arn)| id_of(arn))
        .filter(|id| id.starts_with(after))
        .filter_map(|id| Some((*lags.get(id)?, requests.get(id).copied().unwrap_or(0))))
        .collect();
    let per = |n: usize, upto: usize| {
        shifted[..upto.min(shifted.len())]
            .chunks(n)
            .map(|c| {
                let lag = c.iter().map(|(l, _)| l).sum::<f64>() / c.len() as f64;
                let req = c.iter().map(|(_, r)| *r as f64).sum::<f64>() / c.len() as f64;
                format!("{lag:.1}/{req:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "       after the shift, mean lag (s)/requests per 25, first 200: {}",
        per(25, 200)
    );
    println!("       per 100: {}", per(100, shifted.len()));
}

fn print_row(
    name: &str,
    schedule: &str,
    setup: &Setup,
    requests: u64,
    lags: &HashMap<String, f64>,
) {
    let mut sorted: Vec<f64> = lags.values().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "  ({name}) {:<12} {:>9} {:>8.2} {:>8.2}s {:>8.2}s {:>8.2}s {:>8.2}s",
        schedule,
        format!("{}/{}", sorted.len(), setup.count),
        requests as f64 / setup.count as f64,
        sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
        at(0.5),
        at(0.99),
        at(1.0),
    );
}

/// One run: the daemon with `schedule` watching `scenario`'s executions
/// (`starts`, in start order) as they start. Returns the GetFlowExecution
/// requests per execution id.
async fn run(
    setup: Setup,
    scenario: Scenario,
    starts: Vec<(Duration, String)>,
    schedule: String,
) -> HashMap<String, u64> {
    let ends = end_offsets(&scenario);
    let sim = Simulator::spawn(scenario, "127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the simulator binds a loopback port");
    let origin = Instant::now();
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("flowwatch.toml");
    let poll = format!(
        "interval_initial = \"{}\"\ninterval_max = \"{}\"\nmultiplier = 2.0\nrate_limit = 1000.0\nmax_in_flight = 64\nnot_found_grace = \"{}\"\nschedule = \"{schedule}\"",
        setup.d(2.0),
        setup.d(60.0),
        setup.d(30.0)
    );
    let write = |arns: &[String]| {
        let text = config_text(&sim.endpoint_url(), &poll, arns, None);
        std::fs::write(&path, text).expect("write the config");
    };
    // A config needs a watch: start with the first execution, once it exists.
    let mut added: Vec<String> = Vec::new();
    let mut next = starts.iter().peekable();
    tokio::time::sleep_until(origin + starts[0].0).await;
    let now = origin.elapsed();
    while let Some((_, arn)) = next.next_if(|(at, _)| *at <= now) {
        added.push(arn.clone());
    }
    write(&added);
    let config = flowwatch::config::load(&path).expect("the generated config is valid");
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
    let (reloads, reload_rx) = mpsc::channel(16);
    let task = tokio::spawn(daemon.run(reload_rx, stop.clone()));
    let end = Duration::from_secs_f64((setup.window + setup.tail) * setup.scale);
    let batch = Duration::from_secs_f64(BATCH * setup.scale);
    while origin.elapsed() < end {
        let now = origin.elapsed();
        let before = added.len();
        while let Some((_, arn)) = next.next_if(|(at, _)| *at <= now) {
            added.push(arn.clone());
        }
        if added.len() > before {
            write(&added);
            reloads.send(Reload::Signal).await.expect("the loop runs");
        }
        tokio::time::sleep(batch).await;
    }
    stop.cancel();
    task.await.expect("the daemon loop does not panic");
    if let Ok(dir) = std::env::var("LEARNED_DUMP") {
        write_polls(&dir, &starts, &ends, &sim.stats().log);
    }
    let mut requests: HashMap<String, u64> = HashMap::new();
    for r in sim.stats().log.iter().filter(|r| !r.execution.is_empty()) {
        *requests.entry(id_of(&r.execution).to_string()).or_default() += 1;
    }
    sim.shutdown().await;
    requests
}

/// The end offset (ms) of every execution of `scenario`, by id.
fn end_offsets(scenario: &Scenario) -> HashMap<String, u32> {
    (0..scenario.len())
        .filter_map(|i| {
            let e = scenario.nth(i)?;
            let ExecRef::Generated(g, n) = e else {
                return None;
            };
            let id = id_of(&scenario.execution_arn(&e)).to_string();
            Some((id, g.end_at_ms[(n - 1) as usize]))
        })
        .collect()
}

/// `LEARNED_DUMP=DIR`: one line per GetFlowExecution request of a row
/// (execution id, its start and end offsets, the request's arrival, all in
/// ms since the simulator started, and the status) to `DIR/<prefix>.txt`,
/// to see where each schedule spent its polls.
fn write_polls(
    dir: &str,
    starts: &[(Duration, String)],
    ends: &HashMap<String, u32>,
    log: &[flowwatch::simulate::RequestRecord],
) {
    let start_of: HashMap<&str, Duration> =
        starts.iter().map(|(at, arn)| (id_of(arn), *at)).collect();
    let mut out = String::new();
    for r in log.iter().filter(|r| !r.execution.is_empty()) {
        let id = id_of(&r.execution);
        let start = start_of.get(id).map_or(0, Duration::as_millis);
        let end = ends.get(id).copied().unwrap_or_default();
        let at = r.at.as_millis();
        out += &format!("{id} {start} {end} {at} {}\n", r.status);
    }
    let first = id_of(&starts[0].1);
    let prefix = first.rsplit_once('-').map_or(first, |(p, _)| p);
    std::fs::write(format!("{dir}/{prefix}.txt"), out).expect("write the polls");
}
