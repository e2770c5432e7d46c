//! A month of flow discovery, on a simulated clock: one flow runs 1,000
//! executions a day for 30 days, nobody lists them, and a `[[watch_flow]]`
//! table finds them (issue 9: "memory flat over a simulated month at 1,000
//! executions a day"). The real `Daemon` runs on tokio's paused clock, so a
//! month passes in a minute or two; only the service is stood in for, by
//! `Month` below (in process: sockets cannot live under a paused clock).
//! Everything the daemon does with what it lists is its own code: walks
//! paced to `discovery_share`, `SeenSet`, watches added, polled, ended,
//! their failure details fetched, retired from memory and from `[state]`
//! (written every 6 simulated hours to a temp file, the walk's own set
//! shared with the writer).
//!
//!     cargo bench --bench month [-- --days 30 --per-day 1000 --rate-limit 2]
//!
//! The live heap (the counting allocator of `common::heap`) is read at
//! days 1, 7, 14 and 30 with the watches still in memory (the
//! `flowwatch_watches` gauge), the seen records saved (the state file's
//! `seen` string, 32 characters a record, as of its last write), and the
//! growth per retired execution since day 1: that is the seen record's
//! cost, and nothing else should grow. Executions run 1 to 11 minutes; one in
//! 100 fails (so details are fetched); the service lists newest first, 10 a
//! page, the whole history every walk.

mod common;

#[global_allocator]
static ALLOCATOR: common::heap::Counting = common::heap::Counting;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use flowwatch::daemon::Daemon;
use flowwatch::poll::{
    EventKind, EventsPage, EventsRequest, ExecutionSummary, ExecutionsPage, ExecutionsRequest,
    Fetch, FlowFailure, Lister, NodeFailure, Observation, PollOutcome, ReadFailure, Status, Target,
};
use flowwatch::service::metrics::Metrics;
use flowwatch::state::{self, Snapshot, StateWriter};
use flowwatch::watch::ExecutionRef;

use common::heap::{Heap, heap};
use common::{arg, events_to_sink};

const FLOW: &str = "FLOWMONTH1";
const ALIAS: &str = "ALIASMONTH";
const REGION: &str = "us-east-1";
const DAY: Duration = Duration::from_secs(86_400);

/// The service, as far as this flow goes: execution `i` is created at
/// `i × spacing` after `start` and runs `runs_for(i)`.
struct Month {
    start: Instant,
    /// The wall time of `start`, for creation times.
    wall: SystemTime,
    spacing: Duration,
    polls: AtomicU64,
    list_pages: AtomicU64,
    event_pages: AtomicU64,
}

#[derive(Clone)]
struct Service(Arc<Month>);

impl Month {
    /// How many executions exist at `now`.
    fn started(&self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.start);
        (elapsed.as_secs_f64() / self.spacing.as_secs_f64()) as usize + 1
    }

    fn created(&self, i: usize) -> Duration {
        self.spacing.mul_f64(i as f64)
    }

    fn runs_for(i: usize) -> Duration {
        Duration::from_secs(60 + (i as u64 * 7_919) % 600)
    }

    fn status(&self, i: usize, now: Instant) -> (Status, Option<SystemTime>) {
        let ends = self.created(i) + Month::runs_for(i);
        if now.saturating_duration_since(self.start) < ends {
            (Status::Running, None)
        } else if i % 100 == 7 {
            (Status::Failed, Some(self.wall + ends))
        } else {
            (Status::Succeeded, Some(self.wall + ends))
        }
    }

    fn arn(i: usize) -> String {
        format!(
            "arn:aws:bedrock:{REGION}:123456789012:flow/{FLOW}/alias/{ALIAS}/execution/month-{i:06}"
        )
    }

    fn summary(&self, i: usize, now: Instant) -> ExecutionSummary {
        let (status, ended_at) = self.status(i, now);
        ExecutionSummary {
            execution: ExecutionRef::parse_arn(&Month::arn(i)).expect("a valid arn"),
            status,
            flow_version: Some("1".into()),
            created_at: self.wall + self.created(i),
            ended_at,
        }
    }
}

fn index(execution: &str) -> Option<usize> {
    execution.strip_prefix("month-")?.parse().ok()
}

impl Fetch for Service {
    async fn fetch(&self, target: &Target) -> PollOutcome {
        self.0.polls.fetch_add(1, Ordering::Relaxed);
        let Some(i) = index(&target.execution) else {
            return PollOutcome::NotFound {
                message: "no such execution".into(),
            };
        };
        let (status, ended_at) = self.0.status(i, Instant::now());
        PollOutcome::Observed(Observation {
            status,
            execution_arn: None,
            flow_version: Some("1".into()),
            started_at: Some(self.0.wall + self.0.created(i)),
            ended_at,
            errors: Vec::new(),
        })
    }
}

impl Lister for Service {
    /// Newest first, 10 a page; the token is the index to go on from.
    async fn list_executions(
        &self,
        request: &ExecutionsRequest,
    ) -> Result<ExecutionsPage, ReadFailure> {
        self.0.list_pages.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let top = match &request.next_token {
            Some(token) => token.parse::<usize>().expect("our own token"),
            None => self.0.started(now) - 1,
        };
        let bottom = top.saturating_sub(9);
        Ok(ExecutionsPage {
            summaries: (bottom..=top)
                .rev()
                .map(|i| self.0.summary(i, now))
                .collect(),
            skipped: 0,
            next_token: (bottom > 0).then(|| (bottom - 1).to_string()),
        })
    }

    /// One node failure and one flow failure, one page each.
    async fn list_events(&self, request: &EventsRequest) -> Result<EventsPage, ReadFailure> {
        self.0.event_pages.fetch_add(1, Ordering::Relaxed);
        let mut page = EventsPage::default();
        match request.kind {
            EventKind::Node => page.node_failures.push(NodeFailure {
                node: "Prompt_1".into(),
                error_code: "VALIDATION".into(),
                error_message: "input too long".into(),
                event_time: None,
            }),
            EventKind::Flow => page.flow_failures.push(FlowFailure {
                error_code: "NODE_EXECUTION_FAILED".into(),
                error_message: "a node failed".into(),
                event_time: None,
            }),
        }
        Ok(page)
    }
}

/// The sum of the `flowwatch_watches` gauge: watches in memory.
fn watches_in_memory(metrics: &Metrics) -> i64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("flowwatch_watches{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as i64
}

/// Seen records in the state file as last written, and the file's size.
fn saved_records(path: &Path) -> (usize, u64) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (0, 0);
    };
    let json: serde_json::Value = serde_json::from_str(&text).expect("the state file parses");
    let records = json["seen"].as_object().map_or(0, |tables| {
        tables
            .values()
            .filter_map(|v| v.as_str())
            .map(|s| s.len() / 32)
            .sum()
    });
    (records, text.len() as u64)
}

fn main() {
    let days: u64 = arg("days", 30);
    let per_day: u64 = arg("per-day", 1_000);
    let rate_limit: f64 = arg("rate-limit", 2.0);
    events_to_sink();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let state_path = dir.path().join("state.json");
    let clock = std::time::Instant::now();
    runtime.block_on(async {
        let before = heap();
        // A minute after the daemon's start, so its default `since` keeps all.
        let month = Arc::new(Month {
            start: Instant::now(),
            wall: SystemTime::now() + Duration::from_secs(60),
            spacing: DAY / per_day as u32,
            polls: AtomicU64::new(0),
            list_pages: AtomicU64::new(0),
            event_pages: AtomicU64::new(0),
        });
        let text = format!(
            "[aws]\nregion = \"{REGION}\"\n\n[poll]\ninterval_initial = \"2s\"\ninterval_max = \"60s\"\n\
             rate_limit = {rate_limit:?}\nmax_in_flight = 16\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n\n\
             [[watch_flow]]\nflow = \"{FLOW}\"\nalias = \"{ALIAS}\"\n"
        );
        let config = flowwatch::config::parse_str(&text, Path::new("/etc/flowwatch/month.toml"))
            .expect("the bench config is valid");
        let metrics = Arc::new(Metrics::new());
        let mut edges = common::edges(metrics.clone());
        edges.default_region = Some(REGION.into());
        edges.state = Some(StateWriter::spawn(
            state::lock(&state_path).expect("a fresh temp dir"),
            Snapshot::default(),
            DAY / 4,
        ));
        let daemon = Daemon::new(config, Service(month.clone()), edges, Instant::now())
            .expect("the table has a region");
        let shutdown = CancellationToken::new();
        let (_reloads, reload_rx) = mpsc::channel(1);
        let task = tokio::spawn(daemon.run(reload_rx, shutdown.clone()));

        println!(
            "month: {per_day} executions a day for {days} days, rate_limit {rate_limit} req/s \
             (discovery 25 %), state written every 6 h"
        );
        println!(
            "\n  {:>4} {:>7} {:>8} {:>8} {:>10} {:>10} {:>10} {:>9} {:>10} {:>8}",
            "day",
            "started",
            "watches",
            "seen",
            "heap B",
            "malloc B",
            "Δheap/seen",
            "state KB",
            "list pages",
            "polls"
        );
        let mut first: Option<(Heap, usize)> = None;
        for day in 1..=days {
            // Just past the day, so the state write due at it is on disk.
            tokio::time::sleep_until(month.start + DAY * day as u32 + Duration::from_secs(600)).await;
            if ![1, 7, 14, 30].contains(&day) && day != days {
                continue;
            }
            let now = heap();
            let (seen, state_bytes) = saved_records(&state_path);
            let per_seen = match first {
                Some((h, s)) if seen > s => {
                    format!(
                        "{:.1}",
                        (now.bytes as f64 - h.bytes as f64) / (seen - s) as f64
                    )
                }
                _ => "-".into(),
            };
            println!(
                "  {:>4} {:>7} {:>8} {:>8} {:>10} {:>10} {:>10} {:>9.0} {:>10} {:>8}",
                day,
                month.started(Instant::now()),
                watches_in_memory(&metrics),
                seen,
                now.bytes - before.bytes,
                now.chunks - before.chunks,
                per_seen,
                state_bytes as f64 / 1024.0,
                month.list_pages.load(Ordering::Relaxed),
                month.polls.load(Ordering::Relaxed),
            );
            first.get_or_insert((now, seen));
        }
        shutdown.cancel();
        let report = task.await.expect("the daemon loop does not panic");
        println!(
            "\n  at the end: {} watches in the report (in memory), {} details pages, {:.0} s of wall time",
            report.watches.len(),
            month.event_pages.load(Ordering::Relaxed),
            clock.elapsed().as_secs_f64()
        );
    });
}
