//! The one loop: wires config -> watch set -> scheduler -> poll -> transition
//! -> events and state, and owns reload and shutdown.
//!
//! In: a validated `Config`, a `Fetch` (the SDK client, or a test's scripted
//! one), reload requests, a shutdown token. Out: contract events, state
//! writes, metrics, and the `--once` verdict. Every decision is made by the
//! pure stages (`schedule`, `transition`); this module only moves data
//! between them and the edges. `book.rs` keeps the watches, `answer.rs`
//! acts on a finished poll, `reload.rs` applies a new config, `details.rs`
//! fetches the failure details of executions that ended failing (issue 9).
//!
//! Why one file of this size: it is the one loop, and every kind of request it
//! starts (polls, and the hooks of the details, discovery, API and HA rooms)
//! meets here; each room's own logic lives in its own file beside it.

mod answer;
pub mod api;
mod book;
mod details;
mod discovery;
mod reload;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::{self, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::event::{self, Event, LevelHandle};
use crate::poll::{FailureKind, Fetch, Lister, PollOutcome, ReadFailure, Target};
use crate::schedule::{Scheduler, WatchId};
use crate::service::files::FileWatcher;
use crate::service::http::Health;
use crate::service::metrics::Metrics;
use crate::service::notify::{self, Notifier};
use crate::state::{Snapshot, StateWriter};
use crate::transition::Tracker;
use crate::watch::{Watch, WatchKey, WatchSet};

use book::{Book, Tracked};
pub use book::{Report, Verdict, WatchReport};
use details::Details;
use discovery::Discovery;
use reload::Launch;
pub use reload::Reload;

/// How long in-flight polls may finish after a stop was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The longest the shutdown's state flush may take: a stuck disk must not
/// keep a stopping daemon alive (issue 7.8).
const FLUSH_LIMIT: Duration = Duration::from_secs(5);
/// How often a loop whose HA gate is shut looks again (issue 12).
const GATE_RECHECK: Duration = Duration::from_millis(100);
/// The loop wakes at least this often to beat the health check and watchdog,
/// even when no watch is due.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Problems that stop the daemon before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no region for watch {watch}: set [aws] region, the watch's region, or AWS_REGION")]
    NoRegion { watch: String },
    #[error(transparent)]
    Duplicate(#[from] Box<crate::watch::DuplicateConflict>),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// `[ha]`: the coordination engine cannot be set up (no Kubernetes
    /// client configuration, say).
    #[error("cannot set up the [ha] backend")]
    Coordination(#[source] crate::ha::EngineError),
    #[error("cannot serve http on {listen}")]
    Http {
        listen: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the loop needs beyond the config; the edges hand these in.
pub struct Edges {
    /// The region for watches that name none (the standard chain's answer).
    pub default_region: Option<String>,
    pub state: Option<StateWriter>,
    /// Restored statuses by watch key (empty without `[state]`).
    pub restored: Snapshot,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub notifier: Notifier,
    /// Kept alive while the loop runs; re-aimed after a reload.
    pub files: Option<Arc<FileWatcher>>,
    /// With `--once`: stop when every watch is terminal or abandoned.
    pub once: bool,
}

/// A finished poll, as the spawned task hands it back.
struct Done {
    id: WatchId,
    /// `Err` when the poll task panicked.
    outcome: Result<PollOutcome, Panicked>,
    latency: Duration,
}

/// A poll task that panicked: a failed poll of kind `internal` (issue 7.4).
struct Panicked {
    message: String,
}

pub struct Daemon<F: Fetch + Lister> {
    fetch: F,
    config: Config,
    scheduler: Scheduler,
    /// Every watch of the current config, polled or ended.
    book: Book,
    in_flight: JoinSet<Done>,
    /// Failure-details fetches and their requests in flight (issue 9).
    details: Details,
    /// `[[watch_flow]]` walks and the watches they found (issue 9).
    discovery: Discovery,
    /// Which watch each running poll task is for, so a task that panics
    /// still frees its watch's slot.
    tasks: HashMap<task::Id, WatchId>,
    edges: Edges,
    /// What this process was started with that a reload cannot change.
    launch: Launch,
    /// Sets `[log] level` on a reload, when the caller installed one.
    log_level: Option<LevelHandle>,
    /// Cancelled by a second stop signal: stop waiting for in-flight polls.
    hurry: CancellationToken,
    /// Throttled answers so far, for STATUS.
    throttled: usize,
    /// Why the last reload was refused, to tell a real change from an echo.
    last_error: Option<String>,
    /// The watch API's requests and memory (issue 10).
    api: api::Room,
    /// With `[ha]`: polls start only while it is open (issue 12).
    gate: Option<crate::ha::Gate>,
}

impl<F: Fetch + Lister> Daemon<F> {
    /// Builds the loop's state and starts every watch of `config` (terminal
    /// ones restored from state are counted, not polled).
    pub fn new(config: Config, fetch: F, edges: Edges, now: Instant) -> Result<Self, DaemonError> {
        let mut daemon = Daemon {
            fetch,
            scheduler: Scheduler::new(&config.poll),
            book: Book::default(),
            in_flight: JoinSet::new(),
            details: Details::default(),
            discovery: Discovery::new(SystemTime::now()),
            tasks: HashMap::new(),
            launch: Launch::of(&config),
            log_level: None,
            hurry: CancellationToken::new(),
            edges,
            throttled: 0,
            last_error: None,
            api: api::Room::default(),
            gate: None,
            config,
        };
        if let Some(models) = daemon.edges.restored.models.take() {
            daemon.scheduler.restore_models(models);
        }
        let mut watches = daemon.config.watches.clone();
        daemon.resolve_regions(&mut watches)?;
        daemon.config.watches = watches.clone();
        event::emit(&Event::DaemonStarted {
            watches: watches.len(),
            version: env!("CARGO_PKG_VERSION"),
        });
        for (key, watch) in watches.iter() {
            daemon.add(key.clone(), watch.clone(), now);
        }
        daemon.restore_api(now);
        let flows = daemon.config.flows.clone();
        daemon.set_flows(&flows, now);
        daemon.restore_discovered(now);
        // Saved watches the config no longer lists leave the state file.
        if let Some(state) = &daemon.edges.state {
            for key in std::mem::take(&mut daemon.edges.restored.watches).into_keys() {
                state.forget(&key);
            }
            // And the seen records of tables the config no longer has.
            for table in std::mem::take(&mut daemon.edges.restored.seen).into_keys() {
                state.forget_seen(&table);
            }
        }
        Ok(daemon)
    }

    /// A reload sets `[log] level` through `handle`.
    pub fn with_log_level(mut self, handle: LevelHandle) -> Self {
        self.log_level = Some(handle);
        self
    }

    /// Once `hurry` is cancelled (a second stop signal), shutdown stops
    /// waiting for in-flight polls: the state is flushed and the loop ends.
    pub fn with_hurry(mut self, hurry: CancellationToken) -> Self {
        self.hurry = hurry;
        self
    }

    /// Polls start only while `gate` is open: a standby, or a leader whose
    /// renewal is overdue, sends nothing (issue 12).
    pub fn with_gate(mut self, gate: crate::ha::Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Runs until shutdown, or with `--once` until every watch has ended.
    pub async fn run(
        mut self,
        mut reloads: mpsc::Receiver<Reload>,
        shutdown: CancellationToken,
    ) -> Report {
        self.start_ready(Instant::now());
        self.edges.health.set_ready();
        self.edges.notifier.ready();
        self.report_status();
        let mut heartbeat = tokio::time::interval(self.heartbeat_period());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.edges.once && self.is_finished() {
                break;
            }
            let wakeup = self.next_wakeup(Instant::now());
            // Biased, in this order: a stop first; the heartbeat before the
            // busy branches so a flood of completions cannot starve the
            // watchdog; reloads before polls.
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = heartbeat.tick() => self.beat(),
                Some(trigger) = reloads.recv() => self.reload(trigger, Instant::now()),
                Some(request) = api::next_request(&mut self.api) => {
                    self.answer_api(request, Instant::now());
                }
                Some(joined) = self.in_flight.join_next_with_id() => {
                    let now = Instant::now();
                    self.joined_noting(joined, now);
                    self.start_ready(now);
                }
                Some(joined) = self.details.tasks.join_next_with_id() => {
                    let now = Instant::now();
                    self.details_joined(joined, now);
                    self.start_ready(now);
                }
                Some(joined) = self.discovery.tasks.join_next_with_id() => {
                    let now = Instant::now();
                    self.list_joined(joined, now);
                    self.start_ready(now);
                }
                () = sleep_until_or_never(wakeup) => self.start_ready(Instant::now()),
            }
        }
        self.stop().await
    }

    /// The scheduler's next wakeup; while the HA gate is shut, no sooner
    /// than `GATE_RECHECK` from now, so a due watch does not spin the loop.
    /// When the loop must next look for work: a poll, a details page or a
    /// discovery page; while an `[ha]` gate is shut, only to re-check it.
    fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        let wakeup = earliest(
            earliest(self.scheduler.next_wakeup(), self.details_wakeup()),
            self.discovery_wakeup(),
        );
        match &self.gate {
            Some(gate) if !gate.may_poll(now) => wakeup.map(|at| at.max(now + GATE_RECHECK)),
            _ => wakeup,
        }
    }

    fn heartbeat_period(&self) -> Duration {
        match self.edges.notifier.watchdog_interval() {
            Some(half) if half < HEARTBEAT => half,
            _ => HEARTBEAT,
        }
    }

    /// Health, watchdog and STATUS: proof that this loop, not just the
    /// process, is alive.
    fn beat(&mut self) {
        self.edges.health.beat();
        self.edges.notifier.watchdog();
        self.report_status();
        self.sweep_ended();
    }

    fn report_status(&self) {
        let counts = self.book.counts();
        let mut line = notify::status_line(
            self.scheduler.len(),
            counts.succeeded + counts.failed,
            self.throttled,
        );
        if let Some(walk) = self.discovery.longest_walk() {
            // How long one discovery walk takes (issue 9).
            line += &format!(", walk {:.1}s", walk.as_secs_f64());
        }
        self.edges.notifier.status(&line);
        self.edges.metrics.set_watches(&self.book.by_status());
        for (region, rate) in self.scheduler.rates() {
            self.edges.metrics.set_rate(region, rate);
        }
    }

    fn is_finished(&self) -> bool {
        self.scheduler.is_empty()
            && self.in_flight.is_empty()
            && self.details.is_idle()
            && self.discovery.is_idle()
    }

    /// Every watch needs a region before any request is sent. Watches left
    /// to the default chain take its region here, so a watch by parts and
    /// the same execution by ARN are one watch (issue 7.1), on both sides of
    /// a reload's diff.
    fn resolve_regions(&self, watches: &mut WatchSet) -> Result<(), DaemonError> {
        if let Some(region) = &self.edges.default_region {
            watches.resolve_default_region(region)?;
        }
        match watches
            .iter()
            .find(|(_, watch)| watch.target.region.is_none())
        {
            Some((key, _)) => Err(DaemonError::NoRegion {
                watch: key.as_str().to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Tracks a watch, resuming it from the state file when it was saved,
    /// and polls it unless it already ended.
    fn add(&mut self, key: WatchKey, watch: Arc<Watch>, now: Instant) {
        if let Some(tracked) = self.book.get_mut(&key)
            && api::is_api(tracked)
        {
            // Already watched over the API (issue 10): the config now lists
            // it too, and its watch (source, labels) goes on from here.
            tracked.watch = watch;
            return;
        }
        if let Some(arn) = watch.target.arn.as_deref()
            && let Some(keeper) = self.book.learned_by(arn)
        {
            // A watch by parts already learned this ARN (a reload added the
            // other spelling): one execution, one watch (issue 7.1).
            self.book.alias(&key, &watch.labels, &keeper);
            return;
        }
        let watch = self.with_region(watch);
        let wall_now = SystemTime::now();
        let arn_given = watch.target.arn.is_some();
        let saved = self.edges.restored.watches.remove(key.as_str());
        let tracker = match &saved {
            Some(saved) => Tracker::restore(&key, arn_given, saved, wall_now),
            None => Tracker::new(&key, arn_given, wall_now),
        };
        if saved.is_none()
            && let Some(state) = &self.edges.state
        {
            // When watching began is saved before the first answer, so
            // `max_watch` is not reset by every restart (issue 7.7).
            state.mark(key.as_str(), tracker.record());
        }
        let tracked = self.book.add(Tracked {
            key: key.clone(),
            watch,
            id: None,
            tracker,
            ended: None,
        });
        if tracked.ended.is_some() {
            // Ended before a restart: its details, if not yet reported.
            self.want_details(&key, now);
            return;
        }
        let watched_for = tracked.tracker.watched_for(wall_now);
        let id = self.scheduler.insert(tracked.region(), now, watched_for);
        let target = &tracked.watch.target;
        self.scheduler
            .set_flow(id, target.flow.as_str(), target.alias.as_str());
        event::emit(&Event::WatchAdded {
            subject: tracked.subject(),
            source: &tracked.watch.source,
        });
        self.book.poll_as(&key, id);
    }

    /// `watch` with a region: its own (shared with the config's copy, one
    /// string per region), else the default chain's. `Tracked::region`
    /// reads it from there.
    fn with_region(&self, watch: Arc<Watch>) -> Arc<Watch> {
        if watch.target.region.is_some() {
            return watch;
        }
        let mut watch = Arc::unwrap_or_clone(watch);
        watch.target.region = self.edges.default_region.as_deref().map(Arc::from);
        assert!(
            watch.target.region.is_some(),
            "resolve_regions ran before any watch is added"
        );
        Arc::new(watch)
    }

    fn remove(&mut self, key: &WatchKey) {
        self.details.drop_watch(key);
        if let Some(tracked) = self.book.remove(key) {
            if let Some(id) = tracked.id {
                self.scheduler.remove(id);
            }
            event::emit(&Event::WatchRemoved {
                subject: tracked.subject(),
            });
            if let Some(state) = &self.edges.state {
                state.forget(key.as_str());
            }
        }
    }

    /// Starts the discovery pages that are due (they pace themselves to
    /// `discovery_share` of the rate, so polls keep the rest), then every
    /// poll the scheduler allows now, then the failure-details requests the
    /// budget has room for.
    fn start_ready(&mut self, now: Instant) {
        // Only a leader sends requests (issue 12): a shut gate holds every kind.
        if let Some(gate) = &self.gate
            && !gate.may_poll(now)
        {
            return;
        }
        self.start_walks(now);
        while let Some(id) = self.scheduler.take_ready(now) {
            let tracked = self
                .book
                .polled_mut(id)
                .expect("the scheduler only hands out ids the loop polls");
            tracked.tracker.polled();
            let target = Target {
                region: tracked.region().clone(),
                flow: tracked.watch.target.flow.as_str().into(),
                alias: tracked.watch.target.alias.as_str().into(),
                execution: tracked.watch.target.execution.as_str().into(),
            };
            let fetch = self.fetch.clone();
            let limit = self.poll_limit();
            let gate = self.gate.clone();
            let task = self.in_flight.spawn(async move {
                let started = Instant::now();
                // The gate again, as the request goes out: a process frozen
                // between spawning this task and sending (SIGSTOP, a long
                // pause) must not send once its lease may have passed on.
                if let Some(gate) = gate
                    && !gate.may_poll(started)
                {
                    let outcome = PollOutcome::Failed {
                        kind: FailureKind::Connection,
                        code: None,
                        message: "not sent: this instance no longer leads".to_string(),
                        retry_after: None,
                    };
                    return Done {
                        id,
                        outcome: Ok(outcome),
                        latency: Duration::ZERO,
                    };
                }
                let outcome = match tokio::time::timeout(limit, fetch.fetch(&target)).await {
                    Ok(outcome) => outcome,
                    Err(_) => PollOutcome::Failed {
                        kind: FailureKind::Timeout,
                        code: None,
                        message: format!("no answer within {}ms", limit.as_millis()),
                        retry_after: None,
                    },
                };
                Done {
                    id,
                    outcome: Ok(outcome),
                    latency: started.elapsed(),
                }
            });
            self.tasks.insert(task.id(), id);
        }
        self.start_details(now);
    }

    /// A list or details request (not a poll) was answered: its token and
    /// in-flight slot go back, and a throttle or failure tells the region's
    /// shared rate, as a poll's would.
    fn token_answered(
        &mut self,
        region: &str,
        failure: Option<&ReadFailure>,
        sent_at: Instant,
        now: Instant,
    ) {
        let seen = match failure {
            Some(ReadFailure::Throttled { retry_after }) => {
                self.edges.metrics.throttled(region);
                crate::schedule::Outcome::Throttled {
                    retry_after: *retry_after,
                }
            }
            Some(ReadFailure::Failed { .. }) => {
                crate::schedule::Outcome::Failed { retry_after: None }
            }
            _ => crate::schedule::Outcome::Unchanged,
        };
        self.scheduler.token_done(region, &seen, sent_at, now);
    }

    /// How long one poll may take, fixed when it starts (a reload leaves
    /// requests in flight with their old timeout). The SDK client keeps the
    /// `request_timeout` it was built with; this bounds each poll even if
    /// that never fires (e.g. a credential provider that hangs), and applies
    /// a timeout lowered by a reload.
    fn poll_limit(&self) -> Duration {
        let current = self.config.poll.request_timeout;
        if current < self.launch.request_timeout {
            current
        } else {
            self.launch.request_timeout + Duration::from_secs(5)
        }
    }

    /// A poll task ended: normally with its `Done`; a panic is a failed poll
    /// of its watch, retried like any other (issue 7.4).
    fn joined(&mut self, joined: Result<(task::Id, Done), JoinError>, now: Instant) {
        let done = match joined {
            Ok((task, done)) => {
                self.tasks.remove(&task);
                done
            }
            Err(error) => {
                let Some(id) = self.tasks.remove(&error.id()) else {
                    return;
                };
                let message = if error.is_panic() {
                    panic_message(error.into_panic())
                } else {
                    "the poll task was cancelled".to_string()
                };
                tracing::error!(%message, "a poll task panicked; this is a bug");
                Done {
                    id,
                    outcome: Err(Panicked { message }),
                    latency: Duration::ZERO,
                }
            }
        };
        self.finish(done, now);
    }

    /// No new polls; in-flight ones get `SHUTDOWN_GRACE` to finish and be
    /// reported; state is flushed.
    async fn stop(mut self) -> Report {
        event::emit(&Event::Stopping {
            watches_left: self.scheduler.len(),
        });
        self.details.abort();
        self.discovery.abort();
        self.edges.notifier.stopping();
        let grace_ends = Instant::now() + SHUTDOWN_GRACE;
        let hurry = self.hurry.clone();
        while !self.in_flight.is_empty() {
            tokio::select! {
                biased;
                () = hurry.cancelled() => {
                    tracing::warn!(
                        in_flight = self.in_flight.len(),
                        "stopping at once: in-flight polls are not awaited"
                    );
                    self.in_flight.abort_all();
                    break;
                }
                joined = tokio::time::timeout_at(grace_ends, self.in_flight.join_next_with_id()) => {
                    match joined {
                        Ok(Some(joined)) => self.joined(joined, Instant::now()),
                        Ok(None) => break,
                        Err(_) => {
                            self.in_flight.abort_all();
                            break;
                        }
                    }
                }
            }
        }
        if let Some(state) = &self.edges.state {
            match tokio::time::timeout(FLUSH_LIMIT, state.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "cannot write the state file"),
                Err(_) => tracing::error!(
                    limit_ms = FLUSH_LIMIT.as_millis() as u64,
                    "the state file was not written in time; stopping without it"
                ),
            }
        }
        event::emit(&Event::Stopped {
            watches_left: self.scheduler.len(),
        });
        self.book.report()
    }

    /// The config the loop runs on (after any reloads).
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// What a panic said, when it said it with a string.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_string(),
            Err(_) => "a poll task panicked".to_string(),
        },
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
