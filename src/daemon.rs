//! The one loop: wires config -> watch set -> scheduler -> poll -> transition
//! -> events and state, and owns reload and shutdown.
//!
//! In: a validated `Config`, a `Fetch` (the SDK client, or a test's scripted
//! one), reload requests, a shutdown token. Out: contract events, state
//! writes, metrics, and the `--once` verdict. Every decision is made by the
//! pure stages (`schedule`, `transition`); this file only moves data between
//! them and the edges.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError};
use crate::event::{self, Event, Subject};
use crate::poll::{FailureKind, Fetch, Observation, PollOutcome, SdkFetcher, Status, Target};
use crate::schedule::{self, Next, Scheduler, WatchId};
use crate::service;
use crate::service::files::FileWatcher;
use crate::service::http::Health;
use crate::service::metrics::Metrics;
use crate::service::notify::{self, Notifier};
use crate::state::{self, Loaded, SavedWatch, Snapshot, StateWriter};
use crate::transition::{self, Change};
use crate::watch::{Watch, WatchKey, WatchSet};

/// How long in-flight polls may finish after a stop was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The loop wakes at least this often to beat the health check and watchdog,
/// even when no watch is due.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How the run ended: the verdict, and each watch's last word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub verdict: Verdict,
    /// One per watch, in key order.
    pub watches: Vec<WatchReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchReport {
    pub execution: String,
    /// The last status seen, or `abandoned (REASON)`, or `-` when none yet.
    pub result: String,
    pub polls: u64,
}

/// How a `--once` run ended, and so the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every execution `Succeeded` (or the daemon was stopped by a signal).
    Success,
    /// At least one ended `Failed`, `TimedOut`, `Aborted`, or was abandoned.
    SomeFailed,
}

/// Problems that stop the daemon before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no region for watch {watch}: set [aws] region, the watch's region, or AWS_REGION")]
    NoRegion { watch: String },
    #[error(transparent)]
    State(#[from] state::StateError),
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
    pub files: Option<FileWatcher>,
    /// With `--once`: stop when every watch is terminal or abandoned.
    pub once: bool,
}

/// One watched execution, as the loop tracks it.
struct Tracked {
    key: WatchKey,
    watch: Arc<Watch>,
    region: Arc<str>,
    /// The scheduler's handle while the watch is polled.
    id: Option<WatchId>,
    /// The execution ARN the service answered with, for a watch the config
    /// gave by parts (events carry `execution_arn` once it is known).
    learned_arn: Option<String>,
    last: Option<Status>,
    polls: u64,
    /// When watching began, for `watched_ms` (restored watches started earlier).
    since: SystemTime,
    /// How the watch ended, once it is no longer polled.
    ended: Option<Ending>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Succeeded,
    Failed,
    Abandoned(schedule::Reason),
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// SIGHUP (or `systemctl reload`): always re-read and reported.
    Signal,
    /// A change to the config or an include file.
    Files,
}

/// A finished poll, as the spawned task hands it back.
struct Done {
    id: WatchId,
    outcome: PollOutcome,
    latency: Duration,
}

pub struct Daemon<F: Fetch> {
    fetch: F,
    config: Config,
    scheduler: Scheduler,
    /// Every watch of the current config, polled or ended.
    tracked: HashMap<WatchKey, Tracked>,
    /// The watches the scheduler still polls.
    polling: HashMap<WatchId, WatchKey>,
    in_flight: JoinSet<Done>,
    edges: Edges,
    /// Watches no longer polled: how each ended, for the verdict and STATUS.
    succeeded: usize,
    failed: usize,
    abandoned: usize,
    throttled: usize,
    /// Why the last reload was refused, to tell a real change from an echo.
    last_error: Option<String>,
}

impl<F: Fetch> Daemon<F> {
    /// Builds the loop's state and starts every watch of `config` (terminal
    /// ones restored from state are counted, not polled).
    pub fn new(config: Config, fetch: F, edges: Edges, now: Instant) -> Result<Self, DaemonError> {
        let mut daemon = Daemon {
            fetch,
            scheduler: Scheduler::new(&config.poll),
            config,
            tracked: HashMap::new(),
            polling: HashMap::new(),
            in_flight: JoinSet::new(),
            edges,
            succeeded: 0,
            failed: 0,
            abandoned: 0,
            throttled: 0,
            last_error: None,
        };
        let watches = daemon.config.watches.clone();
        daemon.check_regions(&watches)?;
        event::emit(&Event::DaemonStarted {
            watches: watches.len(),
            version: env!("CARGO_PKG_VERSION"),
        });
        for (key, watch) in watches.iter() {
            daemon.add(key.clone(), watch.clone(), now);
        }
        // Saved watches the config no longer lists leave the state file.
        if let Some(state) = &daemon.edges.state {
            for key in std::mem::take(&mut daemon.edges.restored.watches).into_keys() {
                state.forget(&key);
            }
        }
        Ok(daemon)
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
            let wakeup = self.scheduler.next_wakeup();
            // Biased, in this order: a stop first; the heartbeat before the
            // busy branches so a flood of completions cannot starve the
            // watchdog; reloads before polls.
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = heartbeat.tick() => self.beat(),
                Some(trigger) = reloads.recv() => self.reload(trigger, Instant::now()),
                Some(done) = self.in_flight.join_next() => {
                    let now = Instant::now();
                    match done {
                        Ok(done) => self.finish(done, now),
                        Err(error) => tracing::error!(%error, "a poll task died; this is a bug"),
                    }
                    self.start_ready(now);
                }
                () = sleep_until_or_never(wakeup) => self.start_ready(Instant::now()),
            }
        }
        self.stop().await
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
    }

    fn report_status(&self) {
        self.edges.notifier.status(&notify::status_line(
            self.scheduler.len(),
            self.succeeded + self.failed,
            self.throttled,
        ));
        let mut by_status: HashMap<&str, i64> = HashMap::new();
        for tracked in self.tracked.values() {
            let status = match (&tracked.ended, &tracked.last) {
                (Some(Ending::Abandoned(_)), _) => "abandoned",
                (_, Some(status)) => status.as_str(),
                (_, None) => "unknown",
            };
            *by_status.entry(status).or_default() += 1;
        }
        let counts: Vec<(&str, i64)> = by_status.into_iter().collect();
        self.edges.metrics.set_watches(&counts);
        for (region, rate) in self.scheduler.rates() {
            self.edges.metrics.set_rate(region, rate);
        }
    }

    fn is_finished(&self) -> bool {
        self.scheduler.is_empty() && self.in_flight.is_empty()
    }

    fn verdict(&self) -> Verdict {
        if self.failed + self.abandoned > 0 {
            Verdict::SomeFailed
        } else {
            Verdict::Success
        }
    }

    /// Every watch needs a region before any request is sent.
    fn check_regions(&self, watches: &WatchSet) -> Result<(), DaemonError> {
        for (key, watch) in watches.iter() {
            if watch.target.region.is_none() && self.edges.default_region.is_none() {
                return Err(DaemonError::NoRegion {
                    watch: key.as_str().to_string(),
                });
            }
        }
        Ok(())
    }

    fn add(&mut self, key: WatchKey, watch: Arc<Watch>, now: Instant) {
        // Shared with the config's copy: one per region, not per watch.
        let region: Arc<str> = watch
            .target
            .region
            .clone()
            .or_else(|| self.edges.default_region.as_deref().map(Arc::from))
            .expect("check_regions ran before any watch is added");
        let saved = self.edges.restored.watches.remove(key.as_str());
        let wall_now = SystemTime::now();
        let since = saved
            .as_ref()
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_millis(s.watched_since_unix_ms))
            .filter(|since| *since <= wall_now)
            .unwrap_or(wall_now);
        let mut tracked = Tracked {
            key: key.clone(),
            watch,
            region,
            id: None,
            learned_arn: None,
            last: saved.as_ref().map(|s| Status::parse(&s.status)),
            polls: saved.as_ref().map_or(0, |s| s.polls),
            since,
            ended: None,
        };
        if tracked.last.as_ref().is_some_and(Status::is_terminal) {
            // Restored terminal: neither re-polled nor re-emitted (issue 4).
            tracked.ended = Some(ending_of(tracked.last.as_ref()));
            self.count_ending(tracked.ended);
        } else {
            let watched_for = wall_now.duration_since(since).unwrap_or_default();
            let id = self.scheduler.insert(&tracked.region, now, watched_for);
            event::emit(&Event::WatchAdded {
                subject: subject(&tracked),
                source: &tracked.watch.source,
            });
            self.polling.insert(id, key.clone());
            tracked.id = Some(id);
        }
        self.tracked.insert(key, tracked);
    }

    fn count_ending(&mut self, ending: Option<Ending>) {
        match ending {
            Some(Ending::Succeeded) => self.succeeded += 1,
            Some(Ending::Failed) => self.failed += 1,
            Some(Ending::Abandoned(_)) => self.abandoned += 1,
            None => {}
        }
    }

    fn remove(&mut self, key: &WatchKey) {
        if let Some(tracked) = self.tracked.remove(key) {
            if let Some(id) = tracked.id {
                self.scheduler.remove(id);
                self.polling.remove(&id);
            }
            match tracked.ended {
                Some(Ending::Succeeded) => self.succeeded -= 1,
                Some(Ending::Failed) => self.failed -= 1,
                Some(Ending::Abandoned(_)) => self.abandoned -= 1,
                None => {}
            }
            event::emit(&Event::WatchRemoved {
                subject: subject(&tracked),
            });
            if let Some(state) = &self.edges.state {
                state.forget(key.as_str());
            }
        }
    }

    /// Starts every poll the scheduler allows now.
    fn start_ready(&mut self, now: Instant) {
        while let Some(id) = self.scheduler.take_ready(now) {
            let tracked = self
                .polling
                .get(&id)
                .and_then(|key| self.tracked.get_mut(key))
                .expect("the scheduler only hands out ids the loop polls");
            tracked.polls += 1;
            let target = Target {
                region: tracked.region.clone(),
                flow: tracked.watch.target.flow.as_str().into(),
                alias: tracked.watch.target.alias.as_str().into(),
                execution: tracked.watch.target.execution.as_str().into(),
            };
            let fetch = self.fetch.clone();
            // Bound each poll even if the SDK's own timeout never fires
            // (e.g. a credential provider that hangs).
            let limit = self.config.poll.request_timeout + Duration::from_secs(5);
            self.in_flight.spawn(async move {
                let started = Instant::now();
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
                    outcome,
                    latency: started.elapsed(),
                }
            });
        }
    }

    /// Records one finished poll: transition detection, scheduling, events.
    fn finish(&mut self, done: Done, now: Instant) {
        let Done {
            id,
            outcome,
            latency,
        } = done;
        self.edges.metrics.poll(outcome_name(&outcome), latency);
        let Some(key) = self.polling.get(&id).cloned() else {
            // Removed by a reload while in flight: this frees its slot, and
            // the region's budget still learns from the answer.
            let seen = match outcome {
                PollOutcome::Throttled { retry_after } => {
                    schedule::Outcome::Throttled { retry_after }
                }
                _ => schedule::Outcome::Unchanged,
            };
            self.scheduler.record(id, &seen, now);
            return;
        };
        let tracked = self
            .tracked
            .get_mut(&key)
            .expect("polled watches are tracked");
        let decided = match &outcome {
            PollOutcome::Observed(observation) => observe(tracked, observation, &self.edges),
            PollOutcome::Throttled { retry_after } => {
                self.throttled += 1;
                self.edges.metrics.throttled(&tracked.region);
                schedule::Outcome::Throttled {
                    retry_after: *retry_after,
                }
            }
            PollOutcome::Failed { retry_after, .. } => schedule::Outcome::Failed {
                retry_after: *retry_after,
            },
            PollOutcome::NotFound { message } => {
                tracing::debug!(watch = %tracked.key.as_str(), %message, "execution not found yet");
                schedule::Outcome::NotFound
            }
            PollOutcome::Invalid { .. } => schedule::Outcome::Invalid,
            PollOutcome::AccessDenied { .. } => schedule::Outcome::AccessDenied,
        };
        let next = self.scheduler.record(id, &decided, now);
        let tracked = self.tracked.get_mut(&key).expect("looked up above");
        if matches!(next, Next::Done | Next::Abandon(_)) {
            self.polling.remove(&id);
            tracked.id = None;
        }
        let retry_in_ms = match next {
            Next::PollAt(at) => at.saturating_duration_since(now).as_millis() as u64,
            _ => 0,
        };
        match (&outcome, next) {
            (_, Next::Abandon(reason)) => {
                event::emit(&Event::Abandoned {
                    subject: subject(tracked),
                    reason: reason.as_str(),
                });
                self.edges.metrics.abandoned(reason.as_str());
                tracked.ended = Some(Ending::Abandoned(reason));
                self.abandoned += 1;
            }
            (_, Next::Done) => {
                tracked.ended = Some(ending_of(tracked.last.as_ref()));
                let ended = tracked.ended;
                self.count_ending(ended);
            }
            (PollOutcome::Throttled { .. }, Next::PollAt(_)) => {
                event::emit(&Event::Throttled {
                    subject: subject(tracked),
                    retry_in_ms,
                    rate_limit: self.scheduler.rate(&tracked.region),
                });
            }
            (
                PollOutcome::Failed {
                    kind,
                    code,
                    message,
                    ..
                },
                Next::PollAt(_),
            ) => {
                event::emit(&Event::PollFailed {
                    subject: subject(tracked),
                    error_kind: kind.as_str(),
                    error_code: code.as_deref(),
                    error_message: message.as_str(),
                    retry_in_ms,
                });
            }
            (PollOutcome::AccessDenied { code, message }, Next::PollAt(_)) => {
                event::emit(&Event::PollFailed {
                    subject: subject(tracked),
                    error_kind: "access_denied",
                    error_code: Some(code.as_str()),
                    error_message: message.as_str(),
                    retry_in_ms,
                });
            }
            (_, Next::PollAt(_)) => {}
        }
    }

    /// Re-reads the config and applies the new watch set; a bad config keeps
    /// the old one in force. A file change that reads the same as the last
    /// attempt (the echo of an edit already reloaded by SIGHUP, or an
    /// editor's second write) is no news and changes nothing.
    fn reload(&mut self, trigger: Reload, now: Instant) {
        let loaded = config::load(&self.config.path)
            .map_err(DaemonError::from)
            .and_then(|new| self.check_regions(&new.watches).map(|()| new))
            .map_err(|error| error_chain(&error));
        let echo = match &loaded {
            Ok(new) => self.last_error.is_none() && *new == self.config,
            Err(error) => self.last_error.as_ref() == Some(error),
        };
        if trigger == Reload::Files && echo {
            tracing::debug!("config files changed but read the same; nothing to reload");
            return;
        }
        self.last_error = loaded.as_ref().err().cloned();
        self.edges.notifier.reloading();
        if let Some(files) = &mut self.edges.files {
            // Before applying: the watched folders follow the include globs
            // (and folders created since), whether or not the config is good.
            let include = loaded
                .as_ref()
                .map_or(&self.config.include, |new| &new.include);
            files.rewatch(&self.config.path, include);
        }
        match loaded {
            Err(error) => {
                event::emit(&Event::ReloadFailed { error: &error });
                self.edges.metrics.reload(false);
            }
            Ok(new) => {
                if Config::settings(&new) != Config::settings(&self.config) {
                    tracing::warn!(
                        "a reload applies the watch list; [aws], [poll], [log], [state] and [http] changes take effect on restart"
                    );
                }
                let diff = self.config.watches.diff(&new.watches);
                for key in &diff.removed {
                    self.remove(key);
                }
                for key in &diff.added {
                    let watch = new
                        .watches
                        .get(key)
                        .expect("diff names keys of the new set");
                    self.add(key.clone(), watch.clone(), now);
                }
                // Kept watches keep status, backoff and counts; labels may change.
                for (key, watch) in new.watches.iter() {
                    if let Some(tracked) = self.tracked.get_mut(key) {
                        tracked.watch = watch.clone();
                    }
                }
                event::emit(&Event::Reloaded {
                    added: diff.added.len(),
                    removed: diff.removed.len(),
                    watches: new.watches.len(),
                });
                self.edges.metrics.reload(true);
                // The config as last read: the next reload compares with it
                // (settings beyond the watch list stay as they started).
                self.config = new;
                self.start_ready(now);
            }
        }
        self.edges.notifier.ready();
        self.report_status();
    }

    /// No new polls; in-flight ones get `SHUTDOWN_GRACE` to finish and be
    /// reported; state is flushed.
    async fn stop(mut self) -> Report {
        event::emit(&Event::Stopping {
            watches_left: self.scheduler.len(),
        });
        self.edges.notifier.stopping();
        let grace_ends = Instant::now() + SHUTDOWN_GRACE;
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(grace_ends, self.in_flight.join_next()).await {
                Ok(Some(Ok(done))) => {
                    self.finish(done, Instant::now());
                }
                Ok(Some(Err(error))) => tracing::error!(%error, "a poll task died; this is a bug"),
                Ok(None) => break,
                Err(_) => {
                    self.in_flight.abort_all();
                    break;
                }
            }
        }
        if let Some(state) = &self.edges.state
            && let Err(error) = state.flush().await
        {
            tracing::error!(%error, "cannot write the state file");
        }
        event::emit(&Event::Stopped {
            watches_left: self.scheduler.len(),
        });
        self.report()
    }

    fn report(&self) -> Report {
        let mut watches: Vec<(&WatchKey, WatchReport)> = self
            .tracked
            .iter()
            .map(|(key, tracked)| {
                let result = match (&tracked.ended, &tracked.last) {
                    (Some(Ending::Abandoned(reason)), _) => {
                        format!("abandoned ({})", reason.as_str())
                    }
                    (_, Some(status)) => status.to_string(),
                    (_, None) => "-".to_string(),
                };
                let report = WatchReport {
                    execution: tracked.watch.target.execution.clone(),
                    result,
                    polls: tracked.polls,
                };
                (key, report)
            })
            .collect();
        watches.sort_by(|a, b| a.0.cmp(b.0));
        Report {
            verdict: self.verdict(),
            watches: watches.into_iter().map(|(_, report)| report).collect(),
        }
    }

    /// The config the loop runs on (after any reloads).
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// The transition stage for one successful poll: events, state, and what
/// the scheduler should make of it.
fn observe(tracked: &mut Tracked, observation: &Observation, edges: &Edges) -> schedule::Outcome {
    if tracked.watch.target.arn.is_none() && tracked.learned_arn.is_none() {
        // A watch given by parts learns its ARN from the first answer.
        tracked.learned_arn = observation.execution_arn.clone();
    }
    match transition::observe(tracked.last.as_ref(), &observation.status) {
        Change::Unchanged => schedule::Outcome::Unchanged,
        Change::Stale { terminal, seen } => {
            event::emit(&Event::StaleStatus {
                subject: subject(tracked),
                status: terminal.as_str(),
                seen: seen.as_str(),
            });
            schedule::Outcome::Terminal
        }
        Change::Transition { from, to, terminal } => {
            // The execution as the service names it, so the id is the same
            // however the config spelled the watch.
            let execution = observation
                .execution_arn
                .as_deref()
                .or(tracked.watch.target.arn.as_deref())
                .unwrap_or(tracked.key.as_str());
            let transition_id = transition::transition_id(execution, &to);
            let now_wall = SystemTime::now();
            let started_at = observation.started_at.map(rfc3339);
            let ended_at = observation.ended_at.map(rfc3339);
            let detect_lag_ms = match (terminal, observation.ended_at) {
                (true, Some(ended)) => Some(
                    now_wall
                        .duration_since(ended)
                        .unwrap_or_default()
                        .as_millis() as u64,
                ),
                _ => None,
            };
            let watched_ms = now_wall
                .duration_since(tracked.since)
                .unwrap_or_default()
                .as_millis() as u64;
            event::emit(&Event::Transition {
                subject: subject(tracked),
                transition_id: &transition_id,
                from: from.as_ref().map(Status::as_str),
                to: to.as_str(),
                terminal,
                flow_version: observation.flow_version.as_deref(),
                started_at: started_at.as_deref(),
                ended_at: ended_at.as_deref(),
                detect_lag_ms,
                polls: tracked.polls,
                watched_ms,
            });
            edges.metrics.transition(to.as_str());
            if terminal {
                for error in &observation.errors {
                    event::emit(&Event::ExecutionError {
                        subject: subject(tracked),
                        error: &error.error,
                        error_message: &error.message,
                        node: error.node.as_deref(),
                    });
                }
            }
            tracked.last = Some(to);
            // The event is out before the state says so: a crash in between
            // replays the transition (at least once), never loses it.
            if let Some(state) = &edges.state {
                state.mark(
                    tracked.key.as_str(),
                    SavedWatch {
                        status: tracked.last.as_ref().map_or("", |s| s.as_str()).to_string(),
                        terminal,
                        polls: tracked.polls,
                        watched_since_unix_ms: tracked
                            .since
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_millis() as u64,
                    },
                );
            }
            if terminal {
                schedule::Outcome::Terminal
            } else {
                schedule::Outcome::Changed
            }
        }
    }
}

fn ending_of(status: Option<&Status>) -> Ending {
    match status {
        Some(Status::Succeeded) => Ending::Succeeded,
        _ => Ending::Failed,
    }
}

fn subject(tracked: &Tracked) -> Subject<'_> {
    let target = &tracked.watch.target;
    Subject {
        execution_arn: target.arn.as_deref().or(tracked.learned_arn.as_deref()),
        flow: &target.flow,
        alias: &target.alias,
        execution: &target.execution,
        region: &tracked.region,
        labels: &tracked.watch.labels,
    }
}

fn outcome_name(outcome: &PollOutcome) -> &'static str {
    match outcome {
        PollOutcome::Observed(_) => "observed",
        PollOutcome::Throttled { .. } => "throttled",
        PollOutcome::Failed { .. } => "failed",
        PollOutcome::NotFound { .. } => "not_found",
        PollOutcome::Invalid { .. } => "invalid",
        PollOutcome::AccessDenied { .. } => "access_denied",
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// `error: cause: cause`, each source once.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The config file's path for `run` and `check`: `--config`, else
/// `$FLOWWATCH_CONFIG`, else `/etc/flowwatch/flowwatch.toml`.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("FLOWWATCH_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/etc/flowwatch/flowwatch.toml"))
}

/// How `start` runs the loop.
pub struct StartOptions {
    /// `--once`: stop when every watch is terminal or abandoned.
    pub once: bool,
    /// Credentials that replace the standard chain (the demo's static ones).
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    /// Cancelled by SIGTERM/SIGINT; callers may cancel it too.
    pub shutdown: CancellationToken,
    /// Reload on SIGHUP and on changes to the config and include files.
    pub live_reload: bool,
}

impl StartOptions {
    pub fn new(once: bool) -> StartOptions {
        StartOptions {
            once,
            credentials: None,
            shutdown: CancellationToken::new(),
            live_reload: true,
        }
    }
}

/// Wires the edges (SDK client, state file, HTTP, systemd, signals, file
/// watching) around the loop and runs it to the end.
pub async fn start(config: Config, options: StartOptions) -> Result<Report, DaemonError> {
    let shutdown = options.shutdown;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        stop.cancel();
    });
    let (reload_tx, reload_rx) = mpsc::channel(2);
    if options.live_reload {
        spawn_reload_on_sighup(reload_tx.clone());
    }
    let fetch = SdkFetcher::new(
        &config.aws,
        config.poll.request_timeout,
        options.credentials,
    )
    .await;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    if let Some(http) = &config.http {
        service::http::serve(
            http.listen,
            health.clone(),
            metrics.clone(),
            shutdown.clone(),
        )
        .await
        .map_err(|source| DaemonError::Http {
            listen: http.listen,
            source,
        })?;
    }
    let (state, restored) = match &config.state {
        None => (None, Snapshot::default()),
        Some(settings) => {
            let lock = state::lock(&settings.path)?;
            let restored = match state::load(&settings.path)? {
                Loaded::Fresh => Snapshot::default(),
                Loaded::Restored(snapshot) => snapshot,
                Loaded::SetAside { moved_to, error } => {
                    event::emit(&Event::StateSetAside {
                        path: &settings.path,
                        moved_to: &moved_to,
                        error: &error,
                    });
                    Snapshot::default()
                }
            };
            let writer = StateWriter::spawn(lock, restored.clone(), STATE_EVERY);
            (Some(writer), restored)
        }
    };
    let files = if options.live_reload {
        match FileWatcher::spawn(&config.path, &config.include, FILES_QUIET) {
            Ok((watcher, mut changes)) => {
                let reload_tx = reload_tx.clone();
                tokio::spawn(async move {
                    while changes.recv().await.is_some() {
                        let _ = reload_tx.try_send(Reload::Files); // one pending is enough
                    }
                });
                Some(watcher)
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "config files are not watched; SIGHUP still reloads");
                None
            }
        }
    } else {
        None
    };
    let edges = Edges {
        default_region: fetch.default_region(),
        state,
        restored,
        metrics,
        health,
        notifier: Notifier::from_env(),
        files,
        once: options.once,
    };
    let daemon = Daemon::new(config, fetch, edges, Instant::now())?;
    Ok(daemon.run(reload_rx, shutdown).await)
}

/// State writes are coalesced to at most one per this period.
const STATE_EVERY: Duration = Duration::from_secs(1);
/// A changed file is re-read once it has been quiet this long, so a file
/// being written is not read half-way.
const FILES_QUIET: Duration = Duration::from_millis(300);

/// Returns on SIGTERM or SIGINT.
pub async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM can be handled on unix");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT can be handled on unix");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn spawn_reload_on_sighup(reload_tx: mpsc::Sender<Reload>) {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered before READY: SIGHUP's default action would end the process.
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP can be handled on unix");
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = reload_tx.try_send(Reload::Signal);
        }
    });
}
