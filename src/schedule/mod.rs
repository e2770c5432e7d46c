//! Decides which watch to poll next. Nothing here sleeps, spawns or does
//! I/O: the caller passes `now` in and acts on what comes back.
//!
//! In: watches (`insert`, `remove`), poll results (`record`) and `now`.
//! Out: which watch may start a request now (`take_ready`), when to look
//! again (`next_wakeup`), and what to do with a watch after a poll (`Next`).
//!
//! - Delays per watch come from `interval` (no-change and error backoff).
//! - Each region has one `rate::RateBudget`; a region's budget holds back
//!   only that region's watches.
//! - Waiting watches sit in a per-region `queue::DueQueue`, which holds the
//!   lane policy: the one due longest is served first across all regions,
//!   so no watch starves and a short budget goes round-robin. A decision
//!   costs O(regions + log watches).
//! - At most `max_in_flight` requests in all, at most one per watch.
//! - `max_watch` is a per-watch deadline; `not_found_grace` bounds a streak
//!   of `ResourceNotFoundException`.
//!
//! This file is the scheduler's state and the rules that change it. Beside
//! it: `outcome` (its vocabulary), `timing` (one watch's compact state, with
//! `ticks`), `learning` (learned polling's per-watch part and its wiring;
//! the model is `learned`), `tokens` (requests that are not polls).

pub mod interval;
pub mod learned;
mod learning;
mod outcome;
mod queue;
pub mod rate;
mod ticks;
mod timing;
mod tokens;

use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

use crate::config::PollSettings;
use interval::Intervals;
use learning::{Learning, NO_MODEL};
pub use outcome::{Next, Outcome, Reason};
use queue::{DueQueue, Entry, Lane};
use rate::RateBudget;
use ticks::{Epoch, MaybeTick};
use timing::Watch;

/// Cap deadlines: nothing we watch outlives `max_watch`, and a bounded
/// horizon keeps instant arithmetic far from overflow.
const HORIZON: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The shortest retry after a throttle or failure, whatever the jitter.
const MIN_RETRY: Duration = Duration::from_millis(1);

/// A watch's handle inside the scheduler. Ids are never reused within one
/// process, so a late result for a removed watch is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(pub u64);

/// The scheduler: every watch's timing state, and one rate budget per region.
#[derive(Debug)]
pub struct Scheduler {
    intervals: Intervals,
    rate_limit: f64,
    max_in_flight: usize,
    max_watch: Duration,
    not_found_grace: Duration,
    watches: HashMap<WatchId, Watch>,
    regions: Vec<Region>,
    region_index: HashMap<String, u32>,
    next_id: u64,
    in_flight: usize,
    /// Removed while in flight: kept until their result comes, not counted
    /// by `len`.
    removed_in_flight: usize,
    learning: Learning,
    /// What every watch's ticks count from.
    epoch: Epoch,
}

#[derive(Debug)]
struct Region {
    budget: RateBudget,
    /// Watches waiting for their turn (not in flight).
    queue: DueQueue,
}

impl Scheduler {
    /// An empty scheduler with the `[poll]` policy. A `max_in_flight` of 0
    /// is taken as 1 (a validated config never holds it).
    pub fn new(policy: &PollSettings) -> Scheduler {
        Scheduler {
            intervals: Intervals::new(policy),
            rate_limit: policy.rate_limit,
            max_in_flight: policy.max_in_flight.max(1),
            max_watch: policy.max_watch.min(HORIZON),
            not_found_grace: policy.not_found_grace.min(HORIZON),
            watches: HashMap::new(),
            regions: Vec::new(),
            region_index: HashMap::new(),
            next_id: 0,
            in_flight: 0,
            removed_in_flight: 0,
            learning: Learning::new(policy),
            epoch: Epoch::new(Instant::now()),
        }
    }

    /// Adds a watch, due at once (the contract: a new watch is polled at
    /// once). `watched_for` is time already spent watching it (restored from
    /// state); it counts toward `max_watch`. A watch with no time left is
    /// still polled once: a terminal answer ends it as `Done`, any other as
    /// `Abandon(MaxWatch)` (or `AccessDenied`).
    pub fn insert(&mut self, region: &str, now: Instant, watched_for: Duration) -> WatchId {
        let id = WatchId(self.next_id);
        self.next_id += 1;
        let region = self.region(region, now);
        let deadline = now + self.max_watch.saturating_sub(watched_for);
        self.watches.insert(
            id,
            Watch {
                at: self.epoch.tick(now),
                deadline: self.epoch.tick(deadline),
                not_found_since: MaybeTick::NONE,
                started_at: MaybeTick::NONE,
                running_at: MaybeTick::NONE,
                delays: self.intervals.fresh(),
                lag_ms: 0,
                region,
                model: NO_MODEL,
                in_flight: false,
                removed: false,
                polled: false,
            },
        );
        self.regions[region as usize].queue.push(Entry {
            lane: Lane::New,
            place: now,
            id,
            due: now,
        });
        id
    }

    /// Forgets a watch. Unknown or already removed ids are ignored; a watch
    /// in flight keeps its slot until its result comes to `record`, which
    /// then answers `Done`.
    pub fn remove(&mut self, id: WatchId) {
        let Some(watch) = self.watches.get_mut(&id) else {
            return;
        };
        if watch.in_flight {
            if !watch.removed {
                watch.removed = true;
                self.removed_in_flight += 1;
            }
            return;
        }
        let (entry, region) = (watch.entry(id, self.epoch), watch.region);
        self.forget(id, false);
        self.regions[region as usize].queue.remove(entry);
    }

    /// The earliest instant `take_ready` could return a watch: its due time,
    /// or later when its region's budget is empty. `None` when nothing can
    /// start: no watch is waiting, or `max_in_flight` requests are running
    /// (the caller wakes when one completes).
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        self.regions
            .iter()
            .filter_map(|r| Some(r.queue.earliest()?.max(r.budget.ready_at())))
            .min()
    }

    /// The watch to poll now, if any: among regions whose budget has a
    /// token, a due watch never polled yet, else the one due longest (see
    /// `queue`). It is marked in flight (no other request
    /// for it starts until `record`) and spends a token of its region.
    /// `None` at `max_in_flight`, or when nothing is due or affordable.
    pub fn take_ready(&mut self, now: Instant) -> Option<WatchId> {
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        let (entry, region) = self
            .regions
            .iter_mut()
            .enumerate()
            .filter(|(_, r)| r.budget.ready_at() <= now)
            .filter_map(|(index, r)| Some((r.queue.head(now)?, index)))
            .min()?;
        let Entry { place, id, .. } = entry;
        let region = &mut self.regions[region];
        region.queue.remove(entry);
        region.budget.take(now);
        let watch = self
            .watches
            .get_mut(&id)
            .expect("every waiting entry has a watch");
        watch.in_flight = true;
        watch.at = self.epoch.tick(now);
        watch.polled = true;
        watch.lag_ms = u32::try_from((now - place).as_millis()).unwrap_or(u32::MAX);
        self.in_flight += 1;
        Some(id)
    }

    /// Records a poll's outcome, frees its in-flight slot and returns when
    /// to poll this watch again, or that the scheduler has forgotten it.
    ///
    /// A transition resets the no-change delay; a failure never does. In
    /// order: `Terminal` is `Done`; `Invalid` abandons; `NotFound` abandons
    /// once `not_found_grace` has passed since the first `NotFound` of the
    /// streak; then, at or past the deadline, the watch is abandoned for
    /// `AccessDenied` when that was this answer, else for `MaxWatch`. A next
    /// poll is never later than the deadline (nor, in a `NotFound` streak,
    /// than the grace's end), so the last poll lands on it.
    ///
    /// Every delay counts from `now`, when the answer came: a throttled or
    /// failed watch is `PollAt` no sooner than `now` + its backoff (at least
    /// 1 ms, and at least a `Retry-After` hint), so a throttle's `retry_in`
    /// is never zero and the watch does not start before it.
    ///
    /// Surprises: an id that is unknown or was removed answers `Done` and
    /// changes nothing but freeing the slot (the budget still learns from
    /// the answer); an id that is not in flight answers `PollAt(its due
    /// time)` and changes nothing.
    pub fn record(&mut self, id: WatchId, outcome: &Outcome, now: Instant) -> Next {
        let Some(watch) = self.watches.get_mut(&id) else {
            return Next::Done;
        };
        if !watch.in_flight {
            return Next::PollAt(self.epoch.instant(watch.at));
        }
        watch.in_flight = false;
        self.in_flight -= 1;
        let sent_at = self.epoch.instant(watch.at);
        let budget = &mut self.regions[watch.region as usize].budget;
        match outcome {
            Outcome::Throttled { .. } => {
                budget.on_throttled(sent_at, now);
            }
            // No answer from the service (or a 5xx): says nothing about the quota.
            Outcome::Failed { .. } => {}
            _ => budget.on_success(sent_at, now),
        }
        if watch.removed {
            self.removed_in_flight -= 1;
            self.forget(id, false);
            return Next::Done;
        }
        match self.decide(id, outcome, now) {
            Ok((place, due)) => {
                let watch = self.watches.get_mut(&id).expect("decide keeps the watch");
                watch.at = self.epoch.tick(due);
                watch.lag_ms = u32::try_from((due - place).as_millis()).unwrap_or(u32::MAX);
                self.regions[watch.region as usize]
                    .queue
                    .push(watch.entry(id, self.epoch));
                Next::PollAt(due)
            }
            Err(next) => {
                self.forget(id, next == Next::Done);
                next
            }
        }
    }

    /// The next (place in line, due time), or `Err` with how the watch ends.
    fn decide(
        &mut self,
        id: WatchId,
        outcome: &Outcome,
        now: Instant,
    ) -> Result<(Instant, Instant), Next> {
        let grace = self.not_found_grace;
        // Issue 11: a learned delay replaces the no-change delay (the
        // exponential state still advances, for a fallback later).
        let learned = match outcome {
            Outcome::Unchanged | Outcome::Changed => self.learned_delay(id, now),
            _ => None,
        };
        let (intervals, epoch) = (&self.intervals, self.epoch);
        let watch = self.watches.get_mut(&id).expect("record checked the id");
        let deadline = epoch.instant(watch.deadline);
        let mut latest = deadline;
        if matches!(outcome, Outcome::Unchanged | Outcome::Changed) {
            watch.not_found_since = MaybeTick::NONE; // a success ends the streak
        }
        // Far enough to be capped by `latest` below when the sum overflows.
        let after = |delay: Duration| now.checked_add(delay).unwrap_or(deadline);
        let mut place = None;
        let due = match outcome {
            Outcome::Terminal => return Err(Next::Done),
            Outcome::Invalid => return Err(Next::Abandon(Reason::Invalid)),
            Outcome::NotFound => {
                let since = match watch.not_found_since.get() {
                    Some(since) => epoch.instant(since),
                    None => {
                        watch.not_found_since = epoch.tick(now).into();
                        now
                    }
                };
                let grace_ends_at = since + grace;
                if now >= grace_ends_at {
                    return Err(Next::Abandon(Reason::NotFound));
                }
                latest = latest.min(grace_ends_at);
                after(intervals.after_error(&mut watch.delays))
            }
            Outcome::Unchanged => {
                let exponential = intervals.after_unchanged(&mut watch.delays);
                after(learned.unwrap_or(exponential))
            }
            Outcome::Changed => {
                let exponential = intervals.after_changed(&mut watch.delays);
                after(learned.unwrap_or(exponential))
            }
            Outcome::Throttled { retry_after } | Outcome::Failed { retry_after } => {
                // Issue 7.6: the backoff counts from the answer (`now`), so
                // a request that timed out is not retried at once, and a
                // throttle's retry is never zero. At least 1 ms: jitter must
                // not turn a retry into `retry_in_ms = 0`.
                let backoff = intervals.after_error(&mut watch.delays).max(MIN_RETRY);
                // A throttled watch keeps its place in line: once due, it
                // goes ahead of the watches that came due after it. A
                // throttle is the shared budget's doing and must not cost a
                // watch its turn under a short budget (every execution
                // covered once before any is polled twice). A failure
                // (5xx, timeout) joins the line at its due time like any
                // other answer: a watch that always fails must not hold an
                // old place and starve the others (issue 7.12).
                if matches!(outcome, Outcome::Throttled { .. }) {
                    place = Some(watch.place(epoch));
                }
                let due = after(backoff);
                match retry_after {
                    Some(hint) => due.max(after(*hint)),
                    None => due,
                }
            }
            Outcome::AccessDenied => after(intervals.after_access_denied()),
        };
        if now >= deadline {
            return Err(Next::Abandon(match outcome {
                Outcome::AccessDenied => Reason::AccessDenied,
                _ => Reason::MaxWatch,
            }));
        }
        let due = due.min(latest);
        Ok((place.map_or(due, |place| place.min(due)), due))
    }

    /// Makes a waiting watch due at `now` (discovery saw it change): it
    /// keeps its lane; one in flight or already due is left alone.
    pub fn due_now(&mut self, id: WatchId, now: Instant) {
        let Some(watch) = self.watches.get_mut(&id) else {
            return;
        };
        let epoch = self.epoch;
        if watch.in_flight || epoch.instant(watch.at) <= now {
            return;
        }
        let queue = &mut self.regions[watch.region as usize].queue;
        queue.remove(watch.entry(id, epoch));
        let place = watch.place(epoch).min(now);
        watch.at = epoch.tick(now);
        watch.lag_ms = u32::try_from((now - place).as_millis()).unwrap_or(u32::MAX);
        queue.push(watch.entry(id, epoch));
    }

    /// Watches known (waiting or in flight), not counting removed ones.
    pub fn len(&self) -> usize {
        self.watches.len() - self.removed_in_flight
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests started by `take_ready` and not yet recorded.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn region(&mut self, name: &str, now: Instant) -> u32 {
        if let Some(&index) = self.region_index.get(name) {
            return index;
        }
        let index = self.regions.len() as u32;
        self.regions.push(Region {
            budget: RateBudget::new(self.rate_limit, now),
            queue: DueQueue::default(),
        });
        self.region_index.insert(name.to_string(), index);
        index
    }

    /// Applies a new `[poll]` policy (a reload): each region's budget takes
    /// the new `rate_limit` at once, `max_in_flight` and `not_found_grace`
    /// hold from now, the intervals and `schedule` shape every delay chosen
    /// from now on (learned models are kept),
    /// and every deadline moves by the change in `max_watch`. Due times
    /// already chosen stand.
    pub fn set_policy(&mut self, policy: &PollSettings, now: Instant) {
        let max_watch_was = self.max_watch;
        self.intervals = Intervals::new(policy);
        self.learning.set_policy(policy);
        self.rate_limit = policy.rate_limit;
        self.max_in_flight = policy.max_in_flight.max(1);
        self.max_watch = policy.max_watch.min(HORIZON);
        self.not_found_grace = policy.not_found_grace.min(HORIZON);
        for region in &mut self.regions {
            region.budget.set_limit(policy.rate_limit, now);
        }
        if self.max_watch != max_watch_was {
            let epoch = self.epoch;
            for watch in self.watches.values_mut() {
                let deadline = epoch.instant(watch.deadline);
                let moved = if self.max_watch > max_watch_was {
                    deadline + (self.max_watch - max_watch_was)
                } else {
                    let cut = max_watch_was - self.max_watch;
                    deadline.checked_sub(cut).unwrap_or(now)
                };
                watch.deadline = epoch.tick(moved);
            }
        }
    }
}

#[cfg(test)]
mod tests;
