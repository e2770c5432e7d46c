//! Flow discovery (issue 9), the pure half: one `Walk` per `[[watch_flow]]`
//! table plans its `ListFlowExecutions` pages and decides what each listed
//! summary means. Nothing here sleeps, spawns or does I/O: the caller passes
//! `now` (and the wall clock where creation times are compared) and acts on
//! what comes back. The daemon runs it in `daemon/discovery.rs`.
//!
//! ```text
//! take_page(now) -> PageRequest --(daemon: budget token, Lister)--> on_page / on_failure
//!                                                                   -> Found { Add | Observe }
//! retire(arn, created_at) when a discovered watch is dropped -> SeenSet
//! ```
//!
//! Budget: one walk costs ceil(listed / 10) requests (the service pages at
//! 10 whatever `maxResults` says, lists in no documented order and has no
//! status filter, so every walk lists the flow's whole 90-day history).
//! Pages are spaced at least 1 / `budget` apart, where `budget` is this
//! walk's slice of the region's rate (`walk_budget`), and the next walk
//! starts `list_interval` after this one started, or when its last page's
//! spacing runs out if that is later. So a walk of `p` pages repeats every
//! `max(list_interval, p / budget)`: the interval stretches on its own and
//! discovery never averages more than `budget` requests per second.
//!
//! Why one file of this size: a walk's phases, its page decisions and its
//! pacing are one state machine (its tests are in `tests.rs`, the seen
//! records in `seen.rs`).

pub mod seen;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::poll::outcome::Status;
use crate::poll::pages::{ExecutionSummary, ExecutionsPage, ReadFailure};
pub use seen::{RETENTION, SeenSet, SharedSeen};

/// `[poll] list_interval` default: how often a walk starts when it is cheap.
pub const LIST_INTERVAL: Duration = Duration::from_secs(30);
/// `[poll] discovery_share` default: the share of a region's rate limit
/// that all walks in that region may use together.
pub const DISCOVERY_SHARE: f64 = 0.25;
/// What the service returns per page at most; what the walk asks for.
pub const PAGE_SIZE: u32 = 10;
/// Attempts at one page (throttles and retryable failures) before the walk
/// gives up and the next one starts from the first page again.
pub const MAX_PAGE_ATTEMPTS: u32 = 5;
/// The longest page spacing: a budget near zero must not park a walk forever.
const MAX_GAP: Duration = Duration::from_secs(3600);

/// The request rate (per second) one walk may use: the region's rate times
/// `discovery_share`, split evenly between the walks in that region.
/// `rate` may be the adapted rate after throttling, so walks slow down with
/// the polls.
pub fn walk_budget(rate: f64, share: f64, walks_in_region: usize) -> f64 {
    rate * share / walks_in_region.max(1) as f64
}

/// The spacing between two pages at `budget` requests per second.
pub fn page_gap(budget: f64) -> Duration {
    if budget.is_finite() && budget > 0.0 {
        Duration::from_secs_f64((1.0 / budget).min(MAX_GAP.as_secs_f64()))
    } else {
        MAX_GAP
    }
}

/// How often a walk of `pages` pages repeats at `budget`:
/// `max(list_interval, pages / budget)` (for the docs and the status line;
/// `Walk` arrives at it by spacing pages).
pub fn walk_interval(pages: u32, budget: f64, list_interval: Duration) -> Duration {
    list_interval.max(page_gap(budget).saturating_mul(pages))
}

/// The oldest creation time that still matters: before `since` nothing is
/// discovered, and past the service's retention nothing is listed.
pub fn horizon(since: SystemTime, now: SystemTime) -> SystemTime {
    since.max(now.checked_sub(RETENTION).unwrap_or(since))
}

/// What the daemon knows about a listed execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Not watched: not in the watch set (by ARN).
    Unwatched,
    /// Watched, with its last reported status (`None`: not observed yet).
    Watched(Option<Status>),
}

/// What to do with one listed summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start a watch (`watch.added`, `source = "discovery"`). `terminal`:
    /// already ended when first found; the summary is its first
    /// observation, reported once, and then it is retired.
    Add { terminal: bool },
    /// A watched execution whose summary shows a status not yet reported:
    /// feed it to the tracker as an observation (a terminal one is then
    /// confirmed with one GetFlowExecution for `errors`).
    Observe,
    /// Nothing to do.
    Ignore(Ignored),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Created before the table's `since`.
    BeforeSince,
    /// Seen before, watched, ended and retired.
    Seen,
    /// Watched, and the summary says nothing new.
    Unchanged,
}

/// Decides one summary. Pure.
pub fn decide(
    summary: &ExecutionSummary,
    since: SystemTime,
    seen: &SeenSet,
    known: &Known,
) -> Decision {
    match known {
        Known::Watched(last) if last.as_ref() == Some(&summary.status) => {
            Decision::Ignore(Ignored::Unchanged)
        }
        // A reported terminal status is final: a summary that disagrees is a
        // stale read for the tracker to warn about, not news from here.
        Known::Watched(Some(last)) if last.is_terminal() => Decision::Ignore(Ignored::Unchanged),
        Known::Watched(_) => Decision::Observe,
        Known::Unwatched if summary.created_at < since => Decision::Ignore(Ignored::BeforeSince),
        Known::Unwatched => {
            let arn = summary.execution.arn.as_deref().unwrap_or_default();
            if seen.contains(arn, summary.created_at) {
                Decision::Ignore(Ignored::Seen)
            } else {
                Decision::Add {
                    terminal: summary.status.is_terminal(),
                }
            }
        }
    }
}

/// A summary that needs the daemon's attention.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub summary: ExecutionSummary,
    /// `Add` or `Observe`, never `Ignore`.
    pub decision: Decision,
}

/// Ask for this page next (`None`: the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub next_token: Option<String>,
}

/// How a walk ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WalkEnd {
    /// The last page came back.
    Complete,
    /// A page failed for good (`AccessDenied`, `Invalid`, `NotFound`, or
    /// `MAX_PAGE_ATTEMPTS` retryable failures); the next walk starts over.
    GaveUp(ReadFailure),
}

/// One finished walk, for the metric and the status line.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkReport {
    /// From sending the first page to the last answer.
    pub duration: Duration,
    /// Pages answered.
    pub pages: u32,
    /// Summaries listed (as parsed) and left out as unwatchable.
    pub listed: u32,
    pub skipped: u32,
    pub added: u32,
    pub observed: u32,
    pub end: WalkEnd,
}

/// What came of one page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PageResult {
    pub found: Vec<Found>,
    /// Set when this page ended the walk.
    pub finished: Option<WalkReport>,
}

#[derive(Debug, Clone)]
enum Phase {
    /// The next page may be sent from `at` on.
    Due {
        at: Instant,
        next_token: Option<String>,
        attempt: u32,
    },
    /// A page is out; its answer comes to `on_page` / `on_failure`.
    InFlight {
        next_token: Option<String>,
        attempt: u32,
        sent_at: Instant,
    },
}

/// The walk under way.
#[derive(Debug, Clone)]
struct Progress {
    started_at: Instant,
    pages: u32,
    listed: u32,
    skipped: u32,
    added: u32,
    observed: u32,
}

/// Discovery for one `[[watch_flow]]` table: its `since`, its seen records,
/// and where its walk is.
#[derive(Debug)]
pub struct Walk {
    since: SystemTime,
    list_interval: Duration,
    /// Shared with the state writer (`shared_seen`); locked only briefly.
    seen: SharedSeen,
    /// A prune dropped records since `take_pruned` last asked.
    pruned: bool,
    phase: Phase,
    progress: Option<Progress>,
    last: Option<WalkReport>,
}

impl Walk {
    /// A table's walk; the first page is due at once. `seen`: from `[state]`,
    /// or empty.
    pub fn new(since: SystemTime, list_interval: Duration, seen: SeenSet, now: Instant) -> Walk {
        Walk {
            since,
            list_interval,
            seen: Arc::new(Mutex::new(seen)),
            pruned: false,
            phase: Phase::Due {
                at: now,
                next_token: None,
                attempt: 1,
            },
            progress: None,
            last: None,
        }
    }

    /// When the next page may be sent; `None` while one is out.
    pub fn due_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Due { at, .. } => Some(at),
            Phase::InFlight { .. } => None,
        }
    }

    /// The page to send now, if one is due (the caller still needs a token
    /// of the region budget). The first page of a walk also prunes the seen
    /// records to `horizon(since, wall)` (`take_pruned` says whether any went).
    pub fn take_page(&mut self, now: Instant, wall: SystemTime) -> Option<PageRequest> {
        let Phase::Due {
            at,
            next_token,
            attempt,
        } = &mut self.phase
        else {
            return None;
        };
        if *at > now {
            return None;
        }
        let (next_token, attempt) = (next_token.take(), *attempt);
        if self.progress.is_none() {
            let dropped = crate::lock::lock(&self.seen).prune(horizon(self.since, wall));
            self.pruned |= dropped > 0;
            self.progress = Some(Progress {
                started_at: now,
                pages: 0,
                listed: 0,
                skipped: 0,
                added: 0,
                observed: 0,
            });
        }
        self.phase = Phase::InFlight {
            next_token: next_token.clone(),
            attempt,
            sent_at: now,
        };
        Some(PageRequest { next_token })
    }

    /// Takes one page's answer. `known` says what the daemon knows of each
    /// listed execution; `budget` is this walk's request rate now
    /// (`walk_budget`). Ignored (empty result) when no page is out.
    pub fn on_page(
        &mut self,
        page: ExecutionsPage,
        mut known: impl FnMut(&ExecutionSummary) -> Known,
        now: Instant,
        budget: f64,
    ) -> PageResult {
        let (Phase::InFlight { sent_at, .. }, Some(progress)) = (&self.phase, &mut self.progress)
        else {
            return PageResult::default();
        };
        let sent_at = *sent_at;
        progress.pages += 1;
        progress.skipped += count(page.skipped);
        let mut found = Vec::new();
        let seen = crate::lock::lock(&self.seen);
        for summary in page.summaries {
            progress.listed += 1;
            let decision = decide(&summary, self.since, &seen, &known(&summary));
            match decision {
                Decision::Add { .. } => progress.added += 1,
                Decision::Observe => progress.observed += 1,
                Decision::Ignore(_) => continue,
            }
            found.push(Found { summary, decision });
        }
        drop(seen);
        let next_page_at = sent_at + page_gap(budget);
        let finished = match page.next_token {
            Some(token) => {
                self.phase = Phase::Due {
                    at: next_page_at,
                    next_token: Some(token),
                    attempt: 1,
                };
                None
            }
            None => Some(self.finish(WalkEnd::Complete, next_page_at, now)),
        };
        PageResult { found, finished }
    }

    /// Takes one page's failure: a throttle or retryable failure retries the
    /// same page after a backoff (at least the server's hint), up to
    /// `MAX_PAGE_ATTEMPTS`; anything else, or too many, ends the walk.
    /// Returns the report when the walk ended.
    pub fn on_failure(
        &mut self,
        failure: &ReadFailure,
        now: Instant,
        budget: f64,
    ) -> Option<WalkReport> {
        let Phase::InFlight {
            next_token,
            attempt,
            sent_at,
        } = &mut self.phase
        else {
            return None;
        };
        let gap = page_gap(budget);
        let retryable = matches!(
            failure,
            ReadFailure::Throttled { .. } | ReadFailure::Failed { .. }
        );
        if retryable && *attempt < MAX_PAGE_ATTEMPTS {
            // Back off from the page spacing, doubling, within one interval.
            let backoff = gap
                .saturating_mul(1 << (*attempt).min(16))
                .min(self.list_interval.max(gap));
            let delay = backoff.max(failure.retry_after().unwrap_or_default());
            self.phase = Phase::Due {
                at: *sent_at + delay,
                next_token: next_token.take(),
                attempt: *attempt + 1,
            };
            return None;
        }
        Some(self.finish(WalkEnd::GaveUp(failure.clone()), now + gap, now))
    }

    /// Ends the walk under way; the next starts `list_interval` after this
    /// one started, or at `not_before` (the page spacing) if later.
    fn finish(&mut self, end: WalkEnd, not_before: Instant, now: Instant) -> WalkReport {
        let p = self
            .progress
            .take()
            .expect("a page in flight belongs to a walk under way");
        let report = WalkReport {
            duration: now.saturating_duration_since(p.started_at),
            pages: p.pages,
            listed: p.listed,
            skipped: p.skipped,
            added: p.added,
            observed: p.observed,
            end,
        };
        self.phase = Phase::Due {
            at: (p.started_at + self.list_interval).max(not_before),
            next_token: None,
            attempt: 1,
        };
        self.last = Some(report.clone());
        report
    }

    /// A discovered watch is done (terminal transition and details out) and
    /// leaves memory: remember it so it is not found again.
    pub fn retire(&mut self, execution_arn: &str, created_at: SystemTime) {
        crate::lock::lock(&self.seen).insert(execution_arn, created_at);
    }

    /// The last finished walk, for the metric and the status line.
    pub fn last_walk(&self) -> Option<&WalkReport> {
        self.last.as_ref()
    }

    /// Whether a walk is under way (between its first page and its end).
    pub fn walking(&self) -> bool {
        self.progress.is_some()
    }

    /// Whether a walk's start pruned seen records since the last call (the
    /// state file then has records to drop).
    pub fn take_pruned(&mut self) -> bool {
        std::mem::take(&mut self.pruned)
    }

    /// The seen records (held locked while the guard lives: drop it soon).
    pub fn seen(&self) -> MutexGuard<'_, SeenSet> {
        crate::lock::lock(&self.seen)
    }

    /// The seen records themselves, for the state writer to save
    /// (`StateWriter::share_seen`): no copy is made.
    pub fn shared_seen(&self) -> SharedSeen {
        Arc::clone(&self.seen)
    }

    pub fn since(&self) -> SystemTime {
        self.since
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
