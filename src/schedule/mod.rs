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
//! - Waiting watches sit in a per-region `BTreeSet` ordered by (due, id):
//!   the one due longest is served first across all regions, so no watch
//!   starves and a short budget goes round-robin. A decision costs
//!   O(regions + log watches).
//! - At most `max_in_flight` requests in all, at most one per watch.
//! - `max_watch` is a per-watch deadline; `not_found_grace` bounds a streak
//!   of `ResourceNotFoundException`.

pub mod interval;
pub mod learned;
pub mod rate;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tokio::time::Instant;

use crate::config::PollSettings;
use interval::{Delays, Intervals};
use rate::RateBudget;

/// Cap deadlines: nothing we watch outlives `max_watch`, and a bounded
/// horizon keeps instant arithmetic far from overflow.
const HORIZON: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A watch's handle inside the scheduler. Ids are never reused within one
/// process, so a late result for a removed watch is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(pub u64);

/// What a poll told the scheduler (the daemon derives it from the
/// `PollOutcome` and the transition tracker).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Same non-terminal status as before: the no-change delay grows.
    Unchanged,
    /// A new non-terminal status: the no-change delay resets.
    Changed,
    /// A terminal status: the watch is done.
    Terminal,
    Throttled {
        retry_after: Option<Duration>,
    },
    Failed {
        retry_after: Option<Duration>,
    },
    NotFound,
    Invalid,
    AccessDenied,
}

/// Why a watch stopped without a terminal status (the contract's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotFound,
    Invalid,
    AccessDenied,
    MaxWatch,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotFound => "not_found",
            Reason::Invalid => "invalid",
            Reason::AccessDenied => "access_denied",
            Reason::MaxWatch => "max_watch",
        }
    }
}

/// What to do with a watch after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    PollAt(Instant),
    /// Terminal: the scheduler has forgotten the watch.
    Done,
    /// The scheduler has forgotten the watch.
    Abandon(Reason),
}

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
}

/// One watch's state, 96 bytes; with its map and waiting-set entries about
/// 160 bytes (see `a_watch_costs_well_under_200_bytes`).
#[derive(Debug, Clone)]
struct Watch {
    /// When it is due while waiting; when its request started while in flight.
    at: Instant,
    /// How long it had waited past its due time when its request started:
    /// its place in line, kept for a retry (milliseconds, saturating).
    overdue_ms: u32,
    /// `max_watch` ends here.
    deadline: Instant,
    /// The first `NotFound` of the current streak.
    not_found_since: Option<Instant>,
    delays: Delays,
    region: u32,
    in_flight: bool,
    /// Removed while in flight: forgotten when its result comes.
    removed: bool,
    /// The service has answered with a status at least once.
    seen: bool,
}

#[derive(Debug)]
struct Region {
    budget: RateBudget,
    /// Watches waiting for their turn (not in flight), by (due, id), in two
    /// lanes: `NEW` for watches the service has not answered yet, `SEEN`
    /// for the rest. A due `NEW` watch goes first, so a short budget covers
    /// every execution once before it polls any twice.
    waiting: [BTreeSet<(Instant, WatchId)>; 2],
}

const NEW: usize = 0;
const SEEN: usize = 1;

impl Region {
    /// What this region would serve at `now`: (lane, due, id).
    fn head(&self, now: Instant) -> Option<(usize, Instant, WatchId)> {
        self.waiting.iter().enumerate().find_map(|(lane, set)| {
            let &(due, id) = set.first()?;
            (due <= now).then_some((lane, due, id))
        })
    }

    /// When its earliest waiting watch comes due.
    fn earliest(&self) -> Option<Instant> {
        self.waiting
            .iter()
            .filter_map(|set| set.first().map(|&(due, _)| due))
            .min()
    }
}

impl Watch {
    fn lane(&self) -> usize {
        if self.seen { SEEN } else { NEW }
    }
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
                at: now,
                overdue_ms: 0,
                deadline,
                not_found_since: None,
                delays: self.intervals.fresh(),
                region,
                in_flight: false,
                removed: false,
                seen: false,
            },
        );
        self.regions[region as usize].waiting[NEW].insert((now, id));
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
        let (at, region, lane) = (watch.at, watch.region, watch.lane());
        self.watches.remove(&id);
        self.regions[region as usize].waiting[lane].remove(&(at, id));
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
            .filter_map(|r| Some(r.earliest()?.max(r.budget.ready_at())))
            .min()
    }

    /// The watch to poll now, if any: among regions whose budget has a
    /// token, a due watch the service has not answered yet, else the one
    /// due longest. It is marked in flight (no other request
    /// for it starts until `record`) and spends a token of its region.
    /// `None` at `max_in_flight`, or when nothing is due or affordable.
    pub fn take_ready(&mut self, now: Instant) -> Option<WatchId> {
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        let ((lane, due, id), region) = self
            .regions
            .iter()
            .enumerate()
            .filter(|(_, r)| r.budget.ready_at() <= now)
            .filter_map(|(index, r)| Some((r.head(now)?, index)))
            .min()?;
        let region = &mut self.regions[region];
        region.waiting[lane].remove(&(due, id));
        region.budget.take(now);
        let watch = self
            .watches
            .get_mut(&id)
            .expect("every waiting entry has a watch");
        watch.in_flight = true;
        watch.at = now;
        watch.overdue_ms = u32::try_from((now - due).as_millis()).unwrap_or(u32::MAX);
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
    /// Surprises: an id that is unknown or was removed answers `Done` and
    /// changes nothing but freeing the slot (the budget still learns from
    /// the answer); an id that is not in flight answers `PollAt(its due
    /// time)` and changes nothing.
    pub fn record(&mut self, id: WatchId, outcome: &Outcome, now: Instant) -> Next {
        let Some(watch) = self.watches.get_mut(&id) else {
            return Next::Done;
        };
        if !watch.in_flight {
            return Next::PollAt(watch.at);
        }
        watch.in_flight = false;
        self.in_flight -= 1;
        let sent_at = watch.at;
        let budget = &mut self.regions[watch.region as usize].budget;
        match outcome {
            Outcome::Throttled { .. } => {
                budget.on_throttled(sent_at, now);
            }
            // No answer from the service (or a 5xx): says nothing about the quota.
            Outcome::Failed { .. } => {}
            _ => budget.on_success(now),
        }
        if watch.removed {
            self.removed_in_flight -= 1;
            self.watches.remove(&id);
            return Next::Done;
        }
        match self.decide(id, outcome, now) {
            Ok(due) => {
                let watch = self.watches.get_mut(&id).expect("decide keeps the watch");
                watch.at = due;
                watch.seen |= matches!(outcome, Outcome::Unchanged | Outcome::Changed);
                self.regions[watch.region as usize].waiting[watch.lane()].insert((due, id));
                Next::PollAt(due)
            }
            Err(next) => {
                self.watches.remove(&id);
                next
            }
        }
    }

    /// The next due time, or `Err` with how the watch ends.
    fn decide(&mut self, id: WatchId, outcome: &Outcome, now: Instant) -> Result<Instant, Next> {
        let grace = self.not_found_grace;
        let intervals = &self.intervals;
        let watch = self.watches.get_mut(&id).expect("record checked the id");
        let mut latest = watch.deadline;
        if matches!(outcome, Outcome::Unchanged | Outcome::Changed) {
            watch.not_found_since = None; // a success ends the streak
        }
        // Far enough to be capped by `latest` below when the sum overflows.
        let after = |delay: Duration| now.checked_add(delay).unwrap_or(watch.deadline);
        let due = match outcome {
            Outcome::Terminal => return Err(Next::Done),
            Outcome::Invalid => return Err(Next::Abandon(Reason::Invalid)),
            Outcome::NotFound => {
                let since = *watch.not_found_since.get_or_insert(now);
                let grace_ends_at = since + grace;
                if now >= grace_ends_at {
                    return Err(Next::Abandon(Reason::NotFound));
                }
                latest = latest.min(grace_ends_at);
                after(intervals.after_error(&mut watch.delays))
            }
            Outcome::Unchanged => after(intervals.after_unchanged(&mut watch.delays)),
            Outcome::Changed => after(intervals.after_changed(&mut watch.delays)),
            Outcome::Throttled { retry_after } | Outcome::Failed { retry_after } => {
                // A watch that already waited in line longer than its
                // backoff has backed off: it keeps its place, ahead of the
                // watches that came due after it, so under a short budget a
                // throttle does not cost it its turn (every execution gets a
                // successful poll before any gets a second). Otherwise the
                // backoff counts from its place: at most `now + backoff`.
                let backoff = intervals.after_error(&mut watch.delays);
                let overdue = Duration::from_millis(watch.overdue_ms.into());
                let due_was = watch.at.checked_sub(overdue).unwrap_or(watch.at);
                let place = if overdue >= backoff {
                    due_was
                } else {
                    due_was.checked_add(backoff).unwrap_or(watch.deadline)
                };
                match retry_after {
                    Some(hint) => place.max(after(*hint)),
                    None => place,
                }
            }
            Outcome::AccessDenied => after(intervals.after_access_denied()),
        };
        if now >= watch.deadline {
            return Err(Next::Abandon(match outcome {
                Outcome::AccessDenied => Reason::AccessDenied,
                _ => Reason::MaxWatch,
            }));
        }
        Ok(due.min(latest))
    }

    /// The current adapted rate of a region, requests per second (the
    /// `rate_limit` field of `poll.throttled`); `rate_limit` for a region
    /// with no watch yet.
    pub fn rate(&self, region: &str) -> f64 {
        self.region_index
            .get(region)
            .map_or(self.rate_limit, |&i| self.regions[i as usize].budget.rate())
    }

    /// Every region seen so far with its adapted rate, for metrics.
    pub fn rates(&self) -> impl Iterator<Item = (&str, f64)> {
        self.region_index
            .iter()
            .map(|(name, &i)| (name.as_str(), self.regions[i as usize].budget.rate()))
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
            waiting: [BTreeSet::new(), BTreeSet::new()],
        });
        self.region_index.insert(name.to_string(), index);
        index
    }

    /// Applies a new `[poll]` policy (a reload): each region's budget takes
    /// the new `rate_limit` at once, `max_in_flight` and `not_found_grace`
    /// hold from now, the intervals shape every delay chosen from now on,
    /// and every deadline moves by the change in `max_watch`. Due times
    /// already chosen stand.
    pub fn set_policy(&mut self, policy: &PollSettings, now: Instant) {
        let max_watch_was = self.max_watch;
        self.intervals = Intervals::new(policy);
        self.rate_limit = policy.rate_limit;
        self.max_in_flight = policy.max_in_flight.max(1);
        self.max_watch = policy.max_watch.min(HORIZON);
        self.not_found_grace = policy.not_found_grace.min(HORIZON);
        for region in &mut self.regions {
            region.budget.set_limit(policy.rate_limit, now);
        }
        if self.max_watch != max_watch_was {
            for watch in self.watches.values_mut() {
                watch.deadline = if self.max_watch > max_watch_was {
                    watch.deadline + (self.max_watch - max_watch_was)
                } else {
                    let cut = max_watch_was - self.max_watch;
                    watch.deadline.checked_sub(cut).unwrap_or(now)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn a_new_policy_lowers_the_rate_and_moves_deadlines_at_once() {
        let t0 = Instant::now();
        let mut policy = PollSettings {
            rate_limit: 100.0,
            max_watch: Duration::from_secs(60),
            ..PollSettings::default()
        };
        let mut s = Scheduler::new(&policy);
        let id = s.insert("r", t0, Duration::ZERO);
        assert_eq!(s.rate("r"), 100.0);
        policy.rate_limit = 2.0;
        policy.max_watch = Duration::from_secs(30);
        s.set_policy(&policy, t0);
        assert_eq!(s.rate("r"), 2.0);
        assert_eq!(s.take_ready(t0), Some(id));
        let later = t0 + Duration::from_secs(31);
        assert_eq!(
            s.record(id, &Outcome::Unchanged, later),
            Next::Abandon(Reason::MaxWatch)
        );
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// 2 s growing ×2 to 60 s, no jitter, and a budget too large to matter.
    fn policy() -> PollSettings {
        PollSettings {
            interval_initial: secs(2),
            interval_max: secs(60),
            multiplier: 2.0,
            jitter: 0.0,
            rate_limit: 1000.0,
            max_in_flight: 16,
            request_timeout: secs(10),
            max_watch: secs(25 * 3600),
            not_found_grace: secs(30),
        }
    }

    /// Starts the poll of `id` at `now` (it must be the one handed out) and
    /// records its outcome at the same instant.
    fn poll(s: &mut Scheduler, id: WatchId, outcome: Outcome, now: Instant) -> Next {
        assert_eq!(s.take_ready(now), Some(id), "expected {id:?} to be ready");
        s.record(id, &outcome, now)
    }

    /// Polls `id` each time it comes due with the next outcome; returns each
    /// `Next` as seconds after `t0` (or the end).
    fn run(s: &mut Scheduler, id: WatchId, t0: Instant, outcomes: &[Outcome]) -> Vec<Next> {
        let mut now = t0;
        let mut seen = Vec::new();
        for outcome in outcomes {
            let next = poll(s, id, outcome.clone(), now);
            seen.push(next);
            match next {
                Next::PollAt(at) => now = at,
                _ => break,
            }
        }
        seen
    }

    fn at(t0: Instant, offsets_secs: &[u64]) -> Vec<Next> {
        offsets_secs
            .iter()
            .map(|&s| Next::PollAt(t0 + secs(s)))
            .collect()
    }

    fn throttled() -> Outcome {
        Outcome::Throttled { retry_after: None }
    }

    fn failed() -> Outcome {
        Outcome::Failed { retry_after: None }
    }

    #[test]
    fn a_new_watch_is_due_at_once() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        assert_eq!(s.next_wakeup(), Some(t0));
        assert_eq!(s.take_ready(t0), Some(id));
    }

    #[test]
    fn a_watch_is_not_handed_out_before_it_is_due() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        poll(&mut s, id, Outcome::Unchanged, t0);
        assert_eq!(s.take_ready(t0 + ms(1999)), None);
        assert_eq!(s.next_wakeup(), Some(t0 + secs(2)));
        assert_eq!(s.take_ready(t0 + secs(2)), Some(id));
    }

    #[test]
    fn unchanged_status_grows_the_delay_by_the_multiplier_up_to_the_cap() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            interval_max: secs(8),
            ..policy()
        });
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        let seen = run(&mut s, id, t0, &[const { Outcome::Unchanged }; 5]);
        assert_eq!(seen, at(t0, &[2, 6, 14, 22, 30]));
    }

    #[test]
    fn a_transition_resets_the_no_change_delay() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        use Outcome::{Changed, Unchanged};
        let seen = run(
            &mut s,
            id,
            t0,
            &[Unchanged, Unchanged, Unchanged, Changed, Unchanged],
        );
        // delays 2, 4, 8, then 2 after the change and 2 again.
        assert_eq!(seen, at(t0, &[2, 6, 14, 16, 18]));
    }

    #[test]
    fn a_failure_neither_resets_nor_advances_the_no_change_delay() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        use Outcome::Unchanged;
        let seen = run(&mut s, id, t0, &[Unchanged, Unchanged, failed(), Unchanged]);
        // delays 2, 4, then the error delay 2, then the no-change delay 8.
        assert_eq!(seen, at(t0, &[2, 6, 8, 16]));
    }

    #[test]
    fn throttled_and_failed_attempts_share_one_doubling_error_backoff() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            interval_max: secs(10),
            ..policy()
        });
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        let seen = run(
            &mut s,
            id,
            t0,
            &[throttled(), failed(), throttled(), failed(), failed()],
        );
        // delays 2, 4, 8, 10, 10.
        assert_eq!(seen, at(t0, &[2, 6, 14, 24, 34]));
    }

    #[test]
    fn a_success_resets_the_error_backoff() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        let seen = run(
            &mut s,
            id,
            t0,
            &[failed(), failed(), Outcome::Changed, failed()],
        );
        // error delays 2, 4; the change 2; the error delay starts over at 2.
        assert_eq!(seen, at(t0, &[2, 6, 8, 10]));
    }

    #[test]
    fn a_retry_after_hint_longer_than_the_backoff_is_honoured() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        let hint = Outcome::Throttled {
            retry_after: Some(secs(30)),
        };
        assert_eq!(poll(&mut s, id, hint, t0), Next::PollAt(t0 + secs(30)));
    }

    #[test]
    fn a_retry_after_hint_shorter_than_the_backoff_does_not_shorten_it() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        let hint = Outcome::Failed {
            retry_after: Some(ms(100)),
        };
        assert_eq!(poll(&mut s, id, hint, t0), Next::PollAt(t0 + secs(2)));
    }

    #[test]
    fn an_overdue_watch_keeps_its_place_in_line_when_retried() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let first = s.insert("us-east-1", t0, Duration::ZERO);
        let later = s.insert("us-east-1", t0 + secs(5), Duration::ZERO);
        // Served 10 s late (a short budget), then throttled: it waited
        // longer than its 2 s backoff, so it keeps its place, still ahead of
        // `later`, which came due after it.
        let now = t0 + secs(10);
        assert_eq!(poll(&mut s, first, throttled(), now), Next::PollAt(t0));
        // Served 11 s late, throttled again: the 4 s backoff is spent too.
        assert_eq!(
            poll(&mut s, first, throttled(), now + secs(1)),
            Next::PollAt(t0)
        );
        assert_eq!(s.take_ready(now + secs(2)), Some(first));
        assert_eq!(
            s.record(first, &Outcome::Unchanged, now + secs(2)),
            Next::PollAt(now + secs(4))
        );
        assert_eq!(s.take_ready(now + secs(2)), Some(later));
    }

    #[test]
    fn a_due_watch_the_service_has_not_answered_yet_goes_first() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let answered = s.insert("us-east-1", t0, Duration::ZERO);
        assert_eq!(
            poll(&mut s, answered, Outcome::Changed, t0),
            Next::PollAt(t0 + secs(2))
        );
        let waiting = s.insert("us-east-1", t0 + secs(1), Duration::ZERO);
        assert_eq!(
            poll(&mut s, waiting, throttled(), t0 + secs(1)),
            Next::PollAt(t0 + secs(3))
        );
        // Both due at t0 + 3 s: the one never answered goes first, although
        // the other came due a second earlier.
        let now = t0 + secs(3);
        assert_eq!(s.take_ready(now), Some(waiting));
        assert_eq!(s.take_ready(now), Some(answered));
    }

    #[test]
    fn a_watch_served_a_little_late_backs_off_from_its_due_time() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        let now = t0 + secs(1);
        assert_eq!(poll(&mut s, id, failed(), now), Next::PollAt(t0 + secs(2)));
    }

    #[test]
    fn a_watch_served_on_time_backs_off_from_now() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        let seen = run(&mut s, id, t0, &[throttled(), throttled(), failed()]);
        assert_eq!(seen, at(t0, &[2, 6, 14]));
    }

    #[test]
    fn not_found_is_retried_until_the_grace_period_ends_then_abandoned() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            not_found_grace: secs(20),
            ..policy()
        });
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        let seen = run(&mut s, id, t0, &[const { Outcome::NotFound }; 6]);
        // error delays 2, 4, 8, then 16 clamped to the grace's end at 20 s.
        let mut expected = at(t0, &[2, 6, 14, 20]);
        expected.push(Next::Abandon(Reason::NotFound));
        assert_eq!(seen, expected);
        assert!(s.is_empty());
    }

    #[test]
    fn a_success_ends_a_not_found_streak() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            not_found_grace: secs(5),
            interval_initial: secs(4),
            ..policy()
        });
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        use Outcome::{NotFound, Unchanged};
        let seen = run(&mut s, id, t0, &[NotFound, Unchanged, NotFound, NotFound]);
        // 0 s: a streak starts; 4 s: a success ends it; 8 s: a new streak
        // (8 s after the first NotFound, but only 0 s into this streak);
        // 12 s: still within 5 s of 8 s, retry at the grace's end, 13 s.
        assert_eq!(seen, at(t0, &[4, 8, 12, 13]));
    }

    #[test]
    fn a_throttle_or_failure_does_not_end_a_not_found_streak() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            not_found_grace: secs(5),
            interval_initial: secs(4),
            ..policy()
        });
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        let seen = run(
            &mut s,
            id,
            t0,
            &[Outcome::NotFound, failed(), Outcome::NotFound],
        );
        assert_eq!(seen[2], Next::Abandon(Reason::NotFound), "seen {seen:?}");
    }

    #[test]
    fn invalid_abandons_at_once() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        assert_eq!(
            poll(&mut s, id, Outcome::Invalid, t0),
            Next::Abandon(Reason::Invalid)
        );
        assert_eq!((s.len(), s.next_wakeup()), (0, None));
    }

    #[test]
    fn access_denied_is_retried_at_the_maximum_interval_each_time() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        let seen = run(&mut s, id, t0, &[const { Outcome::AccessDenied }; 3]);
        assert_eq!(seen, at(t0, &[60, 120, 180]));
    }

    #[test]
    fn a_terminal_status_is_done_and_the_watch_is_forgotten() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        assert_eq!(poll(&mut s, id, Outcome::Terminal, t0), Next::Done);
        assert_eq!((s.len(), s.in_flight(), s.next_wakeup()), (0, 0, None));
    }

    fn short_watch() -> PollSettings {
        PollSettings {
            interval_initial: secs(4),
            max_watch: secs(10),
            ..policy()
        }
    }

    #[test]
    fn a_next_poll_past_max_watch_is_clamped_to_the_deadline() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&short_watch());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        let seen = run(&mut s, id, t0, &[const { Outcome::Unchanged }; 2]);
        assert_eq!(seen, at(t0, &[4, 10])); // 4 + 8 = 12, clamped to 10
    }

    #[test]
    fn time_already_watched_counts_toward_max_watch() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&short_watch());
        let id = s.insert("us-east-1", t0, secs(7));
        assert_eq!(
            poll(&mut s, id, Outcome::Unchanged, t0),
            Next::PollAt(t0 + secs(3))
        );
    }

    #[test]
    fn a_poll_just_before_the_deadline_still_schedules_one_at_it() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&short_watch());
        let id = s.insert("us-east-1", t0, secs(10) - ms(1));
        assert_eq!(
            poll(&mut s, id, Outcome::AccessDenied, t0),
            Next::PollAt(t0 + ms(1))
        );
    }

    #[test]
    fn a_poll_at_the_deadline_abandons_the_watch_for_max_watch() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&short_watch());
        let id = s.insert("us-east-1", t0, secs(10));
        assert_eq!(
            poll(&mut s, id, failed(), t0),
            Next::Abandon(Reason::MaxWatch)
        );
        assert!(s.is_empty());
    }

    #[test]
    fn a_watch_last_denied_access_at_the_deadline_is_abandoned_for_access_denied() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&short_watch());
        let id = s.insert("us-east-1", t0, secs(10));
        assert_eq!(
            poll(&mut s, id, Outcome::AccessDenied, t0),
            Next::Abandon(Reason::AccessDenied)
        );
    }

    #[test]
    fn a_terminal_status_at_the_deadline_is_still_done() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&short_watch());
        let id = s.insert("us-east-1", t0, secs(20));
        assert_eq!(poll(&mut s, id, Outcome::Terminal, t0), Next::Done);
    }

    #[test]
    fn no_request_starts_while_max_in_flight_are_running() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            max_in_flight: 2,
            ..policy()
        });
        let ids: Vec<_> = (0..3)
            .map(|_| s.insert("us-east-1", t0, Duration::ZERO))
            .collect();
        let first = s.take_ready(t0).expect("a slot is free");
        assert!(s.take_ready(t0).is_some());
        assert_eq!(
            (s.take_ready(t0), s.next_wakeup(), s.in_flight()),
            (None, None, 2)
        );
        s.record(first, &Outcome::Unchanged, t0 + ms(5));
        assert_eq!(s.take_ready(t0 + ms(5)), Some(ids[2]));
    }

    #[test]
    fn a_watch_in_flight_is_not_handed_out_again() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        assert_eq!(s.take_ready(t0), Some(id));
        assert_eq!(
            (s.take_ready(t0 + secs(600)), s.next_wakeup()),
            (None, None)
        );
    }

    #[test]
    fn ready_watches_are_served_earliest_due_first_across_regions() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let c = s.insert("eu-west-1", t0 + ms(2), Duration::ZERO);
        let a = s.insert("eu-west-1", t0, Duration::ZERO);
        let b = s.insert("us-east-1", t0 + ms(1), Duration::ZERO);
        let now = t0 + ms(10);
        let order: Vec<_> = std::iter::from_fn(|| s.take_ready(now)).collect();
        assert_eq!(order, [a, b, c]);
    }

    #[test]
    fn an_empty_budget_holds_back_only_its_own_region() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            rate_limit: 1.0, // a burst of 1
            ..policy()
        });
        let east: Vec<_> = (0..2)
            .map(|_| s.insert("us-east-1", t0, Duration::ZERO))
            .collect();
        let west = s.insert("eu-west-1", t0 + ms(1), Duration::ZERO);
        let now = t0 + ms(1);
        let order: Vec<_> = std::iter::from_fn(|| s.take_ready(now)).collect();
        assert_eq!(order, [east[0], west]);
        // The second eastern watch waits for the next token, 1 s later.
        assert_eq!(s.next_wakeup(), Some(now + secs(1)));
        assert_eq!(s.take_ready(now + ms(999)), None);
        assert_eq!(s.take_ready(now + secs(1)), Some(east[1]));
    }

    #[test]
    fn a_throttle_lowers_the_rate_of_its_own_region_only() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            rate_limit: 10.0,
            ..policy()
        });
        let east = s.insert("us-east-1", t0, Duration::ZERO);
        s.insert("eu-west-1", t0 + ms(1), Duration::ZERO);
        poll(&mut s, east, throttled(), t0);
        assert!(s.rate("us-east-1") < 10.0, "rate {}", s.rate("us-east-1"));
        assert_eq!((s.rate("eu-west-1"), s.rate("ap-south-1")), (10.0, 10.0));
    }

    #[test]
    fn a_removed_watch_is_never_handed_out() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let gone = s.insert("us-east-1", t0, Duration::ZERO);
        let kept = s.insert("us-east-1", t0, Duration::ZERO);
        s.remove(gone);
        assert_eq!(s.len(), 1);
        assert_eq!(s.take_ready(t0), Some(kept));
        assert_eq!(s.take_ready(t0), None);
    }

    #[test]
    fn a_watch_removed_in_flight_is_forgotten_when_its_result_comes() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        assert_eq!(s.take_ready(t0), Some(id));
        s.remove(id);
        s.remove(id); // twice is harmless
        assert_eq!((s.len(), s.in_flight()), (0, 1));
        assert_eq!(s.record(id, &Outcome::Unchanged, t0 + ms(5)), Next::Done);
        assert_eq!((s.len(), s.in_flight(), s.next_wakeup()), (0, 0, None));
    }

    #[test]
    fn a_result_for_an_unknown_watch_is_done_and_changes_nothing() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        s.take_ready(t0);
        assert_eq!(s.record(WatchId(999), &Outcome::Terminal, t0), Next::Done);
        s.remove(WatchId(999));
        assert_eq!((s.len(), s.in_flight()), (1, 1));
        assert_eq!(s.record(id, &Outcome::Terminal, t0), Next::Done);
    }

    #[test]
    fn a_result_for_a_watch_not_in_flight_changes_nothing() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let id = s.insert("us-east-1", t0, Duration::ZERO);
        assert_eq!(s.record(id, &Outcome::Terminal, t0), Next::PollAt(t0));
        assert_eq!((s.len(), s.in_flight(), s.take_ready(t0)), (1, 0, Some(id)));
    }

    #[test]
    fn ids_are_never_reused() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&policy());
        let first = s.insert("us-east-1", t0, Duration::ZERO);
        s.remove(first);
        let second = s.insert("us-east-1", t0, Duration::ZERO);
        assert_ne!(first, second);
    }

    #[test]
    fn a_watch_costs_well_under_200_bytes() {
        // Per watch: the map entry (id + Watch + a control byte, at most 8/7
        // of it for the load factor) and the waiting set's (Instant, id).
        let entry = std::mem::size_of::<(WatchId, Watch)>() + 1;
        let waiting = std::mem::size_of::<(Instant, WatchId)>();
        let estimate = entry * 8 / 7 + waiting * 3 / 2;
        eprintln!("about {estimate} bytes per watch");
        assert!(estimate < 160, "about {estimate} bytes per watch");
    }

    #[test]
    fn a_hundred_thousand_watches_are_each_polled_once_in_due_order() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            rate_limit: 100_000.0,
            interval_initial: secs(3600),
            max_in_flight: 64,
            ..policy()
        });
        let ids: Vec<_> = (0..100_000)
            .map(|k| s.insert(if k % 2 == 0 { "a" } else { "b" }, t0, Duration::ZERO))
            .collect();
        let mut seen = Vec::with_capacity(ids.len());
        while let Some(now) = s.next_wakeup().filter(|&at| at < t0 + secs(60)) {
            while let Some(id) = s.take_ready(now) {
                s.record(id, &Outcome::Unchanged, now);
                seen.push(id);
            }
        }
        assert_eq!(s.len(), 100_000);
        assert_eq!(seen, ids);
    }

    /// A server quota: a token bucket of `rate` per second holding `burst`.
    struct Quota {
        rate: f64,
        burst: f64,
        tokens: f64,
        at: Instant,
    }

    impl Quota {
        fn new(rate: f64, burst: f64, now: Instant) -> Quota {
            Quota {
                rate,
                burst,
                tokens: burst,
                at: now,
            }
        }

        fn admit(&mut self, now: Instant) -> bool {
            let elapsed = (now - self.at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
            self.at = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                true
            } else {
                false
            }
        }
    }

    /// Share of throttled requests and successes per second among requests
    /// sent in [from, to) seconds after start.
    fn stats(log: &[(f64, bool)], from: f64, to: f64) -> (f64, f64) {
        let sent: Vec<_> = log.iter().filter(|(t, _)| *t >= from && *t < to).collect();
        let ok = sent.iter().filter(|(_, ok)| *ok).count();
        let throttled = sent.len() - ok;
        (
            throttled as f64 / sent.len().max(1) as f64,
            ok as f64 / (to - from),
        )
    }

    /// Drives 200 never-changing watches, polled as fast as the budget
    /// allows, against a server `Quota` of `quota_rate` req/s (burst: 1 s of
    /// it) for `end_secs` virtual seconds; every answer takes `latency`.
    /// Returns each request's start (seconds) and whether it got through.
    fn against_quota(
        quota_rate: f64,
        rate_limit: f64,
        latency: Duration,
        end_secs: f64,
    ) -> Vec<(f64, bool)> {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            interval_initial: ms(10),
            interval_max: ms(10),
            rate_limit,
            ..policy()
        });
        for _ in 0..200 {
            s.insert("us-east-1", t0, Duration::ZERO);
        }
        let mut server = Quota::new(quota_rate, quota_rate.max(1.0), t0);
        let mut answers: VecDeque<(Instant, WatchId, bool)> = VecDeque::new();
        let mut log = Vec::new();
        let mut now = t0;
        loop {
            while let Some(&(done_at, id, ok)) = answers.front() {
                if done_at > now {
                    break;
                }
                answers.pop_front();
                let outcome = if ok { Outcome::Unchanged } else { throttled() };
                assert!(matches!(s.record(id, &outcome, done_at), Next::PollAt(_)));
            }
            while let Some(id) = s.take_ready(now) {
                let ok = server.admit(now);
                log.push(((now - t0).as_secs_f64(), ok));
                answers.push_back((now + latency, id, ok));
            }
            let wake = [answers.front().map(|a| a.0), s.next_wakeup()]
                .into_iter()
                .flatten()
                .min()
                .expect("something is always pending");
            assert!(wake > now, "no progress at {:?}", now - t0);
            if (wake - t0).as_secs_f64() >= end_secs {
                return log;
            }
            now = wake;
        }
    }

    #[test]
    fn against_a_lower_server_quota_the_rate_settles_just_under_it() {
        // rate_limit 50 against a server granting 10 req/s (burst 10).
        let quota_rate = 10.0;
        let end = 600.0;
        let log = against_quota(quota_rate, 50.0, ms(50), end);
        let (throttled_share, goodput) = stats(&log, 30.0, end);
        let (first_share, _) = stats(&log, 0.0, 5.0);
        let (last_share, _) = stats(&log, end - 60.0, end);
        let (overall_share, overall_goodput) = stats(&log, 0.0, end);
        eprintln!(
            "quota {quota_rate}/s, after 30 s: throttled {:.2} %, goodput {goodput:.3}/s \
             ({:.1} % of quota); first 5 s throttled {:.1} %, last 60 s {:.2} %; \
             overall throttled {:.2} %, goodput {overall_goodput:.3}/s",
            throttled_share * 100.0,
            goodput / quota_rate * 100.0,
            first_share * 100.0,
            last_share * 100.0,
            overall_share * 100.0,
        );
        assert!(throttled_share < 0.013, "throttled {throttled_share}");
        assert!(goodput >= 0.95 * quota_rate, "goodput {goodput}");
        assert!(
            last_share < first_share / 5.0,
            "last 60 s {last_share} vs first 5 s {first_share}"
        );
    }

    #[test]
    fn starting_far_above_the_quota_costs_only_a_few_throttles() {
        // rate_limit 5 × the quota: the server's start-up burst must not
        // make the budget believe in a rate it never sustains.
        for quota_rate in [5.0, 20.0, 100.0] {
            let log = against_quota(quota_rate, 5.0 * quota_rate, ms(5), 30.0);
            let throttled = log.iter().filter(|(t, ok)| *t < 5.0 && !ok).count();
            let (_, goodput) = stats(&log, 5.0, 30.0);
            assert!(
                throttled <= 6,
                "quota {quota_rate}: {throttled} throttled in the first 5 s"
            );
            assert!(
                goodput >= 0.95 * quota_rate,
                "quota {quota_rate}: goodput {goodput}"
            );
        }
    }

    #[test]
    fn a_short_budget_still_polls_every_watch_in_turn() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            interval_initial: secs(1),
            interval_max: secs(1),
            rate_limit: 10.0,
            ..policy()
        });
        let ids: Vec<_> = (0..30)
            .map(|_| s.insert("us-east-1", t0, Duration::ZERO))
            .collect();
        let mut polls: HashMap<WatchId, Vec<Instant>> = HashMap::new();
        let mut order = Vec::new();
        let end = t0 + secs(60);
        while let Some(now) = s.next_wakeup().filter(|&at| at <= end) {
            while let Some(id) = s.take_ready(now) {
                s.record(id, &Outcome::Unchanged, now);
                polls.entry(id).or_default().push(now);
                order.push(id);
            }
        }
        let first: std::collections::HashSet<_> = order.iter().take(30).collect();
        assert_eq!(first.len(), 30, "first polls: {:?}", &order[..30]);
        let limit = Duration::from_secs_f64(1.5 * 30.0 / 10.0);
        for id in ids {
            let times = &polls[&id];
            let mut gaps: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
            gaps.push(times[0] - t0);
            gaps.push(end - times[times.len() - 1]);
            let longest = gaps.iter().max().expect("at least two gaps");
            assert!(*longest <= limit, "{id:?} waited {longest:?}: {times:?}");
        }
    }

    #[test]
    fn no_one_second_window_exceeds_the_rate_limit_by_more_than_the_burst() {
        for limit in [1.0, 10.0, 100.0, 500.0] {
            let t0 = Instant::now();
            let mut s = Scheduler::new(&PollSettings {
                // every watch comes due again long after the first round:
                // an idle spell of over 60 s between the rounds.
                interval_initial: secs(100),
                interval_max: secs(100),
                rate_limit: limit,
                ..policy()
            });
            let watches = (limit as usize * 5).max(20);
            for _ in 0..watches {
                s.insert("us-east-1", t0, Duration::ZERO);
            }
            let mut sent = Vec::new();
            while let Some(now) = s.next_wakeup().filter(|&at| at < t0 + secs(190)) {
                while let Some(id) = s.take_ready(now) {
                    s.record(id, &Outcome::Unchanged, now);
                    sent.push(now);
                }
            }
            let allowed = (limit + (0.1 * limit).max(2.0)).floor() as usize;
            let mut busiest = 0;
            let mut oldest = 0;
            for (k, &t) in sent.iter().enumerate() {
                while sent[oldest] + secs(1) <= t {
                    oldest += 1;
                }
                busiest = busiest.max(k + 1 - oldest);
            }
            let idle = sent.windows(2).map(|w| w[1] - w[0]).max();
            assert_eq!(sent.len(), 2 * watches, "limit {limit}");
            assert!(idle >= Some(secs(60)), "limit {limit}: no idle spell");
            assert!(busiest <= allowed, "limit {limit}: {busiest} in 1 s");
            assert!(busiest >= limit as usize, "limit {limit}: budget unused");
        }
    }
}
