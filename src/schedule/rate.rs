//! The per-region rate budget: a token bucket with a small burst and an
//! adaptive rate.
//!
//! In: request starts (`try_acquire`/`take`) and their answers
//! (`on_success`, `on_throttled`), each with when the request was sent and
//! the caller's `now`. Out: whether
//! a request may start now, or how long to wait.
//!
//! **The bucket.** Tokens refill at the current adapted rate (never above
//! `rate_limit`) up to a capacity of max(2, 10 % of `rate_limit`) − 1, and
//! the bucket starts full. So in any 1 s window at most `rate_limit` +
//! max(2, 10 % of `rate_limit`) − 1 requests start, also right after start-up
//! and after an idle spell: the contract's burst rule, with one request to
//! spare for jitter between us and the server.
//!
//! **Adapting to throttling** (CUBIC-like, in requests per second):
//!
//! - On a throttle, the rate drops to `BETA` (0.9) × the rate the server
//!   actually granted: successes per second over the last 2 s, or since the
//!   last decrease when that is longer and higher (steadier at low rates).
//!   That lands just under the server's quota in one step, where halving
//!   would fall far below it. One step never cuts more than half, so one
//!   odd measurement cannot collapse the rate. The bucket is drained.
//! - Only requests sent after the last decrease can decrease it again the
//!   usual way: the throttles of requests already in flight describe the
//!   old rate.
//! - A sudden quota drop (issue 7.11) is found in a few steps, not in many
//!   10 % ones measured against a 2 s window that still remembers the old
//!   quota. (a) The answers to the requests in flight at a decrease: once
//!   two or more are throttles and at least as many as the successes, the
//!   rate drops again to 0.9 × their success share × the rate they were
//!   sent at. (b) A throttle within 1 s of a decrease (but at least two
//!   requests' time after it) measures the granted rate as the successes
//!   since the decrease, plus one, over that time plus one request's time.
//!   (c) A burst: within 1 s of a decrease, requests sent after it are
//!   throttled at least as often as all answers since it succeeded (the
//!   very first one, or the second after one success: the server's bucket
//!   found one token between). The rate drops to `BETA` × `BURST_CUT`
//!   (0.2) × the rate in force before the episode's measured decrease
//!   (corrections by (a) and (b) within 1 s of it belong to the episode;
//!   not the rate that decrease set, which may only halve and would leave
//!   a start-up far above the quota at a tenth of it), and the cubic climbs
//!   back in the time of 20 requests (at least 2 s) instead of 100: the
//!   cut is a guess (a five-fold drop), not a measure.
//!   Only so does a drop to a small quota cost 2 throttles, not 3-5: at
//!   20 → 4 req/s the 5 s after the drop hold only ~23 requests.
//!   Against a steady quota they stay quiet: a decrease lands under it, so
//!   the server's bucket refills more than a token before the next request,
//!   and neither a follow-up throttle nor mostly throttled answers come
//!   (the quota tests in `schedule::tests` keep their figures).
//! - After successes the rate recovers along a cubic of the time `t` since
//!   the decrease, `granted × (1 + 0.1·((t − K)/K)³)`: it climbs back to the
//!   granted rate in K seconds, flattens there (where throttling happened),
//!   then probes above it ever faster. K is the time of `RECOVERY_REQUESTS`
//!   (100) requests at the granted rate, within 10..=60 s. Against a fixed
//!   quota this gives one throttle about every 2 K, so at most about 1
//!   throttled request per 200 (fewer at high rates, where K is 10 s), and
//!   a send rate within a few percent of the quota.
//! - The rate stays within [floor, `rate_limit`], floor =
//!   max(0.1 req/s, `rate_limit` / 100) (but never above `rate_limit`).

use std::time::Duration;

use tokio::time::Instant;

/// The multiplicative decrease, applied to the measured granted rate.
const BETA: f64 = 0.9;
/// No single decrease goes below this share of the current rate.
const MAX_CUT: f64 = 0.5;
/// The cubic climbs back to the granted rate in the time of this many
/// requests at that rate, within `RECOVERY_SECS`.
const RECOVERY_REQUESTS: f64 = 100.0;
const RECOVERY_SECS: (f64, f64) = (10.0, 60.0);
/// Throttled answers, of requests in flight at a decrease, that it takes
/// to decrease again from their success share.
const LATE_EVIDENCE: u32 = 2;
/// A throttle this soon after the last decrease, but at least the time of
/// `FOLLOW_REQUESTS` requests after it, measures the granted rate since it.
const FOLLOW_WITHIN: Duration = Duration::from_secs(1);
const FOLLOW_REQUESTS: f64 = 2.0;
/// Requests sent after a decrease, throttled at least as often as any
/// answer since it succeeded within `FOLLOW_WITHIN` of it, cut the rate to
/// `BETA` × this share of the rate before the episode.
const BURST_CUT: f64 = 0.2;
/// After such a cut the cubic climbs back in the time of this many requests
/// (at least `BURST_RECOVERY_MIN`): the cut was a guess, not a measure.
const BURST_RECOVERY_REQUESTS: f64 = 20.0;
const BURST_RECOVERY_MIN: Duration = Duration::from_secs(2);
/// Lowest adapted rate, absolute (requests per second).
const FLOOR_MIN: f64 = 0.1;
/// Lowest adapted rate, as a share of `rate_limit`.
const FLOOR_SHARE: f64 = 0.01;
/// Accepting a token this close to whole absorbs float rounding, so the
/// instant `ready_at` promises always passes `try_acquire`.
const EPSILON: f64 = 1e-9;
/// Limits that a validated config never holds are clamped into this range.
const LIMIT_RANGE: (f64, f64) = (0.001, 1_000_000.0);

/// One region's budget.
#[derive(Debug, Clone)]
pub struct RateBudget {
    limit: f64,
    floor: f64,
    capacity: f64,
    /// The adapted rate, requests per second.
    rate: f64,
    tokens: f64,
    refilled_at: Instant,
    /// The last decrease; `None` until the first throttle.
    decrease: Option<Decrease>,
    successes: SuccessWindow,
    /// Successes since the last decrease (or since the start).
    successes_since_decrease: u64,
}

#[derive(Debug, Clone, Copy)]
struct Decrease {
    at: Instant,
    /// The granted rate measured then: the cubic's plateau.
    granted: f64,
    /// Seconds from the decrease back to the plateau (the cubic's K).
    recovery_secs: f64,
    /// The rate in force before it: requests in flight then were sent at it.
    rate_before: f64,
    /// Answers since then to requests sent before it: successes, throttles.
    late_ok: u32,
    late_throttled: u32,
    /// Answers to requests sent since then: successes, throttles.
    fresh_ok: u32,
    fresh_throttled: u32,
    /// The rate in force before the episode's measured decrease, when this
    /// is it or a correction of it within `FOLLOW_WITHIN`; `None` after a
    /// burst cut.
    episode_from: Option<f64>,
}

impl RateBudget {
    /// A full bucket at `rate_limit` requests per second.
    pub fn new(rate_limit: f64, now: Instant) -> RateBudget {
        let limit = if rate_limit.is_nan() {
            LIMIT_RANGE.0
        } else {
            rate_limit.clamp(LIMIT_RANGE.0, LIMIT_RANGE.1)
        };
        // One token under the contract's allowance: requests are counted where
        // they arrive, and network jitter can bunch them on the way.
        let capacity = ((limit * 0.1).max(2.0) - 1.0).max(1.0);
        RateBudget {
            limit,
            floor: (limit * FLOOR_SHARE).max(FLOOR_MIN).min(limit),
            capacity,
            rate: limit,
            tokens: capacity,
            refilled_at: now,
            decrease: None,
            successes: SuccessWindow::new(now),
            successes_since_decrease: 0,
        }
    }

    /// The current adapted rate, requests per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The bucket's size: the most requests that can start at one instant.
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// The earliest instant a request can start (the past when one can start
    /// now). Only `take`, `try_acquire` and `on_throttled` move it.
    pub fn ready_at(&self) -> Instant {
        let missing = 1.0 - self.tokens;
        if missing <= EPSILON {
            return self.refilled_at;
        }
        let nanos = (missing / self.rate * 1e9).ceil();
        self.refilled_at + Duration::from_nanos(nanos as u64)
    }

    /// Spends a token if one is there; else says how long until one is.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        let ready_at = self.ready_at();
        if ready_at <= now {
            self.take(now);
            Ok(())
        } else {
            Err(ready_at - now)
        }
    }

    /// Spends a token; the caller has checked `ready_at() <= now`.
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }

    /// A request sent at `sent_at` got an answer the service counted against
    /// the quota. The rate recovers along the cubic (see the module comment).
    pub fn on_success(&mut self, sent_at: Instant, now: Instant) {
        self.successes.record(now);
        self.successes_since_decrease += 1;
        let Some(decrease) = self.decrease.as_mut() else {
            return; // never throttled: already at `rate_limit`
        };
        if sent_at < decrease.at {
            decrease.late_ok = decrease.late_ok.saturating_add(1);
        } else {
            decrease.fresh_ok = decrease.fresh_ok.saturating_add(1);
        }
        let decrease = *decrease;
        let k = decrease.recovery_secs;
        let t = now.saturating_duration_since(decrease.at).as_secs_f64();
        let target = decrease.granted * (1.0 + (1.0 - BETA) * ((t - k) / k).powi(3));
        self.refill(now); // tokens so far accrued at the old rate
        self.rate = target.clamp(self.floor, self.limit).max(self.rate);
    }

    /// A request sent at `sent_at` was throttled. Returns whether the rate
    /// went down: for a request sent before the last decrease only when the
    /// answers of those requests show the server granted far less.
    pub fn on_throttled(&mut self, sent_at: Instant, now: Instant) -> bool {
        if let Some(decrease) = self.decrease.as_mut().filter(|d| sent_at < d.at) {
            decrease.late_throttled = decrease.late_throttled.saturating_add(1);
            return self.correct(now);
        }
        if let Some(decrease) = self.decrease.as_mut() {
            decrease.fresh_throttled = decrease.fresh_throttled.saturating_add(1);
        }
        let burst = self.decrease.and_then(|d| {
            let from = d.episode_from?;
            let soon = now.saturating_duration_since(d.at) < FOLLOW_WITHIN;
            let burst = d.fresh_ok + d.late_ok <= d.fresh_throttled;
            (soon && burst).then_some(from * BURST_CUT * BETA)
        });
        if let Some(target) = burst.filter(|&target| target < self.rate) {
            // Issue 7.11: the first request sent after a decrease is
            // throttled too (or the second, after one success). Against a
            // steady quota both go through: a decrease lands under the
            // quota, so the server's bucket refills more than one token
            // while we wait for each. So the quota fell below the new rate,
            // how far nobody can tell yet: cut deep and climb back fast.
            self.decrease_to(target, now);
            if let Some(d) = self.decrease.as_mut() {
                let secs = BURST_RECOVERY_REQUESTS / d.granted;
                d.recovery_secs = secs.clamp(BURST_RECOVERY_MIN.as_secs_f64(), RECOVERY_SECS.1);
            }
            return true;
        }
        // A follow-up within `FOLLOW_WITHIN` belongs to the same episode.
        let episode = self
            .decrease
            .filter(|d| now.saturating_duration_since(d.at) < FOLLOW_WITHIN)
            .and_then(|d| d.episode_from);
        let granted = self
            .granted(now)
            .min(self.rate)
            .max(self.rate * MAX_CUT / BETA);
        self.decrease_to(granted * BETA, now);
        if let Some(d) = self.decrease.as_mut() {
            d.episode_from = Some(episode.unwrap_or(d.rate_before));
        }
        true
    }

    /// Issue 7.11: after a sudden quota drop the rate measured at the first
    /// throttle still describes the old quota. The requests in flight then
    /// say more: when at least `LATE_EVIDENCE` of their answers are
    /// throttles and no fewer than the successes, the server granted about
    /// `rate_before` × their success share (counted as one success more,
    /// so a few throttles cannot collapse the rate). Decreases again to
    /// `BETA` × that, once per fresh piece of evidence; returns whether it did.
    fn correct(&mut self, now: Instant) -> bool {
        let decrease = self.decrease.expect("only called after a decrease");
        let (ok, throttled) = (decrease.late_ok, decrease.late_throttled);
        if throttled < LATE_EVIDENCE || throttled < ok {
            return false;
        }
        let share = f64::from(ok + 1) / f64::from(ok + throttled + 1);
        let target = decrease.rate_before * share * BETA;
        if target >= self.rate {
            return false;
        }
        self.decrease_to(target, now);
        if let Some(d) = self.decrease.as_mut() {
            d.episode_from = decrease.episode_from;
        }
        true
    }

    /// Drops the rate to `target` (within the floor and `rate_limit`) and
    /// drains the bucket; the cubic restarts from here.
    fn decrease_to(&mut self, target: f64, now: Instant) {
        self.refill(now);
        let rate_before = self.rate;
        self.rate = target.clamp(self.floor, self.limit);
        self.tokens = self.tokens.min(0.0);
        let granted = self.rate / BETA;
        self.decrease = Some(Decrease {
            at: now,
            granted,
            recovery_secs: (RECOVERY_REQUESTS / granted).clamp(RECOVERY_SECS.0, RECOVERY_SECS.1),
            rate_before,
            late_ok: 0,
            late_throttled: 0,
            fresh_ok: 0,
            fresh_throttled: 0,
            episode_from: None,
        });
        self.successes_since_decrease = 0;
    }

    /// The rate the server granted lately, successes per second.
    fn granted(&mut self, now: Instant) -> f64 {
        let recent = self.successes.rate(now);
        let since = self.decrease.map_or(self.successes.origin, |d| d.at);
        let elapsed = now.saturating_duration_since(since);
        if elapsed < WINDOW {
            let rate = self.rate;
            let follows = self.decrease.is_some()
                && elapsed < FOLLOW_WITHIN
                && elapsed.as_secs_f64() >= FOLLOW_REQUESTS / rate;
            if !follows {
                return recent;
            }
            // Issue 7.11: a throttle soon after a decrease means the quota
            // is well below what the 2 s window still remembers (a sudden
            // drop). Measure the successes since that decrease instead,
            // counting one more success in one more request's time: a few
            // samples must not collapse the rate.
            let since =
                (self.successes_since_decrease + 1) as f64 / (elapsed.as_secs_f64() + 1.0 / rate);
            return recent.min(since);
        }
        let average = self.successes_since_decrease as f64 / elapsed.as_secs_f64();
        recent.max(average)
    }

    fn refill(&mut self, now: Instant) {
        if now > self.refilled_at {
            let elapsed = (now - self.refilled_at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
            self.refilled_at = now;
        }
    }

    /// A new `rate_limit` (a reload), in force at once: the adapted rate
    /// never exceeds it, the bucket shrinks with it, and a budget never
    /// throttled runs at the new limit.
    pub fn set_limit(&mut self, rate_limit: f64, now: Instant) {
        self.refill(now); // tokens so far accrued at the old rate
        let fresh = RateBudget::new(rate_limit, now);
        self.limit = fresh.limit;
        self.floor = fresh.floor;
        self.capacity = fresh.capacity;
        self.rate = match self.decrease {
            None => self.limit,
            Some(_) => self.rate.clamp(self.floor, self.limit),
        };
        self.tokens = self.tokens.min(self.capacity);
    }
}

/// Successes over the last `SLOTS × SLOT` (2 s), in 100 ms slots: a fixed
/// 100-byte footprint whatever the rate.
#[derive(Debug, Clone)]
struct SuccessWindow {
    origin: Instant,
    /// The slot index (since `origin`) of the newest slot.
    newest: u64,
    counts: [u32; SLOTS],
}

const SLOTS: usize = 20;
const SLOT: Duration = Duration::from_millis(100);
const WINDOW: Duration = Duration::from_millis(100 * SLOTS as u64);
/// The shortest span a success rate is measured over.
const MIN_SPAN: Duration = Duration::from_secs(1);

impl SuccessWindow {
    fn new(now: Instant) -> SuccessWindow {
        SuccessWindow {
            origin: now,
            newest: 0,
            counts: [0; SLOTS],
        }
    }

    fn slot_of(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        (since.as_nanos() / SLOT.as_nanos()) as u64
    }

    fn advance(&mut self, slot: u64) {
        if slot <= self.newest {
            return;
        }
        let stale = (slot - self.newest).min(SLOTS as u64);
        for k in 1..=stale {
            self.counts[((self.newest + k) % SLOTS as u64) as usize] = 0;
        }
        self.newest = slot;
    }

    fn record(&mut self, now: Instant) {
        let slot = self.slot_of(now).max(self.newest);
        self.advance(slot);
        let count = &mut self.counts[(slot % SLOTS as u64) as usize];
        *count = count.saturating_add(1);
    }

    /// Successes per second over the window (over the time since `origin`
    /// while that is shorter, but at least `MIN_SPAN`).
    fn rate(&mut self, now: Instant) -> f64 {
        let slot = self.slot_of(now).max(self.newest);
        self.advance(slot);
        let total: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        let since = now.saturating_duration_since(self.origin);
        let oldest = slot.saturating_sub(SLOTS as u64 - 1);
        // At least `MIN_SPAN`: right after start-up the server's own burst
        // lets a few requests through at once, and dividing them by a few
        // milliseconds would promise a rate it never sustains.
        let covered = since.saturating_sub(SLOT * oldest as u32).max(MIN_SPAN);
        total as f64 / covered.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Starts as many requests as the budget allows at `now`.
    fn drain(budget: &mut RateBudget, now: Instant) -> usize {
        let mut n = 0;
        while budget.try_acquire(now).is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn a_new_budget_allows_a_burst_of_its_capacity_and_no_more() {
        let t0 = Instant::now();
        let counts: Vec<_> = [1.0, 10.0, 100.0, 500.0]
            .iter()
            .map(|&limit| drain(&mut RateBudget::new(limit, t0), t0))
            .collect();
        assert_eq!(counts, [1, 1, 9, 49]);
    }

    #[test]
    fn an_empty_bucket_says_how_long_until_the_next_token() {
        let t0 = Instant::now();
        let mut budget = RateBudget::new(10.0, t0);
        drain(&mut budget, t0);
        assert_eq!(budget.try_acquire(t0), Err(ms(100)));
        assert_eq!(budget.try_acquire(t0 + ms(99)), Err(ms(1)));
        assert_eq!(budget.try_acquire(t0 + ms(100)), Ok(()));
    }

    #[test]
    fn an_idle_spell_refills_only_up_to_the_capacity() {
        let t0 = Instant::now();
        let mut budget = RateBudget::new(100.0, t0);
        drain(&mut budget, t0);
        assert_eq!(drain(&mut budget, t0 + Duration::from_secs(60)), 9);
    }

    #[test]
    fn a_throttle_drops_the_rate_to_just_under_the_granted_rate_and_drains_the_bucket() {
        let t0 = Instant::now();
        let mut budget = RateBudget::new(15.0, t0);
        // 2 s of successes at 10/s: the server grants 10/s.
        for k in 0..20 {
            budget.on_success(t0 + ms(100 * k), t0 + ms(100 * k));
        }
        let now = t0 + ms(2000);
        assert!(budget.on_throttled(now, now));
        assert!((budget.rate() - 9.0).abs() < 1e-9, "rate {}", budget.rate());
        assert!(
            budget.try_acquire(now).is_err(),
            "the bucket was not drained"
        );
    }

    #[test]
    fn one_decrease_never_cuts_the_rate_by_more_than_half() {
        let t0 = Instant::now();
        let mut budget = RateBudget::new(40.0, t0);
        let now = t0 + Duration::from_secs(5);
        budget.on_throttled(now, now); // nothing succeeded: measured 0/s
        assert_eq!(budget.rate(), 20.0);
    }

    #[test]
    fn throttles_of_requests_sent_before_the_last_decrease_do_not_decrease_again() {
        let t0 = Instant::now();
        let mut budget = RateBudget::new(40.0, t0);
        let decreased_at = t0 + Duration::from_secs(1);
        assert!(budget.on_throttled(t0 + ms(900), decreased_at));
        let after_first = budget.rate();
        let sent_before = !budget.on_throttled(t0 + ms(950), decreased_at + ms(50));
        assert_eq!((sent_before, budget.rate()), (true, after_first));
        assert!(budget.on_throttled(decreased_at + ms(10), decreased_at + ms(60)));
        assert!(budget.rate() < after_first);
    }

    #[test]
    fn recovery_climbs_back_to_the_granted_rate_then_probes_above_it() {
        let t0 = Instant::now();
        let mut budget = RateBudget::new(15.0, t0);
        for k in 0..20 {
            budget.on_success(t0 + ms(100 * k), t0 + ms(100 * k));
        }
        let decreased_at = t0 + ms(2000);
        budget.on_throttled(decreased_at, decreased_at); // granted 10/s → 9/s
        let rate_at = |budget: &mut RateBudget, secs: u64| {
            let now = decreased_at + Duration::from_secs(secs);
            budget.on_success(now, now);
            budget.rate()
        };
        let at_5 = rate_at(&mut budget, 5);
        let at_10 = rate_at(&mut budget, 10);
        let at_20 = rate_at(&mut budget, 20);
        let at_25 = rate_at(&mut budget, 25);
        let at_30 = rate_at(&mut budget, 30);
        assert!(at_5 > 9.8 && at_5 < 10.0, "5 s after: {at_5}");
        assert!((at_10 - 10.0).abs() < 1e-9, "10 s after: {at_10}");
        assert!((at_20 - 11.0).abs() < 1e-9, "20 s after: {at_20}");
        assert!((at_25 - 13.375).abs() < 1e-9, "25 s after: {at_25}");
        assert_eq!(at_30, 15.0, "30 s after: capped at the rate limit");
    }

    /// A budget at 100/s that saw 2 s of successes at that rate, then a
    /// throttle at `t0` + 2 s: the rate drops to 90/s.
    fn decreased_from_100(t0: Instant) -> (RateBudget, Instant) {
        let mut budget = RateBudget::new(100.0, t0);
        for k in 0..200 {
            budget.on_success(t0 + ms(10 * k), t0 + ms(10 * k));
        }
        let decreased_at = t0 + ms(2000);
        assert!(budget.on_throttled(decreased_at - ms(50), decreased_at));
        assert!(
            (budget.rate() - 90.0).abs() < 1e-9,
            "rate {}",
            budget.rate()
        );
        (budget, decreased_at)
    }

    #[test]
    fn requests_in_flight_at_a_decrease_mostly_throttled_decrease_it_again() {
        // Issue 7.11: sent at 100/s before the decrease, answered after it.
        let t0 = Instant::now();
        let (mut budget, decreased_at) = decreased_from_100(t0);
        let sent = decreased_at - ms(10);
        budget.on_success(sent, decreased_at + ms(1));
        let one = budget.on_throttled(sent, decreased_at + ms(2));
        assert!(!one, "one throttle is no evidence");
        assert!(budget.on_throttled(sent, decreased_at + ms(3)));
        // (1 + 1) of (1 + 2 + 1) answers: half of 100/s, times 0.9.
        let rate = budget.rate();
        assert!((rate - 45.0).abs() < 1e-2, "rate {rate}");
        // Counted afresh against the 90/s in force before this decrease:
        // 2 throttles, no success: a third of it, times 0.9.
        assert!(!budget.on_throttled(sent, decreased_at + ms(4)));
        assert!(budget.on_throttled(sent, decreased_at + ms(5)));
        let rate = budget.rate();
        assert!((rate - 27.0).abs() < 1e-2, "rate {rate}");
    }

    #[test]
    fn requests_in_flight_at_a_decrease_mostly_answered_change_nothing() {
        let t0 = Instant::now();
        let (mut budget, decreased_at) = decreased_from_100(t0);
        let sent = decreased_at - ms(10);
        for k in 1..=4 {
            budget.on_success(sent, decreased_at + ms(k));
        }
        assert!(!budget.on_throttled(sent, decreased_at + ms(5)));
        assert!(!budget.on_throttled(sent, decreased_at + ms(6)));
        let rate = budget.rate();
        assert!((rate - 90.0).abs() < 0.1, "rate {rate}");
    }

    #[test]
    fn a_throttle_soon_after_a_decrease_measures_the_rate_since_it() {
        // Issue 7.11: 0.5 s after the decrease to 90/s, with 40 successes
        // since: about 80/s granted, where the 2 s window still says 95/s.
        let t0 = Instant::now();
        let (mut budget, decreased_at) = decreased_from_100(t0);
        for k in 1..=40 {
            let at = decreased_at + Duration::from_micros(12_500 * k);
            budget.on_success(at - ms(1), at);
        }
        let now = decreased_at + ms(500);
        let before = budget.rate();
        assert!(budget.on_throttled(now - ms(5), now));
        let expected = 41.0 / (0.5 + 1.0 / before) * BETA;
        let rate = budget.rate();
        assert!(
            (rate - expected).abs() < 1e-6,
            "rate {rate}, expected {expected}"
        );
        assert!(rate < 75.0, "rate {rate}: the 2 s window would give 85.5");
    }

    #[test]
    fn the_first_request_after_a_decrease_throttled_too_cuts_to_a_fifth() {
        // Issue 7.11: the quota fell far below the 90/s the decrease set.
        let t0 = Instant::now();
        let (mut budget, decreased_at) = decreased_from_100(t0);
        let sent = decreased_at + ms(12);
        assert!(budget.on_throttled(sent, sent + ms(2)));
        let rate = budget.rate();
        assert!((rate - 18.0).abs() < 1e-9, "rate {rate}");
    }

    #[test]
    fn one_success_then_a_throttle_after_a_decrease_is_a_burst_too() {
        // The quota-drop bench: the server's bucket found one token between
        // the two throttles.
        let t0 = Instant::now();
        let (mut budget, decreased_at) = decreased_from_100(t0);
        budget.on_success(decreased_at + ms(12), decreased_at + ms(14));
        let sent = decreased_at + ms(23);
        assert!(budget.on_throttled(sent, sent + ms(2)));
        let rate = budget.rate();
        assert!((rate - 18.0).abs() < 1e-9, "rate {rate}");
    }

    #[test]
    fn a_burst_cut_counts_from_the_rate_before_the_episode_not_a_halved_one() {
        // Start-up at 25/s against a quota of 5: the first decrease may only
        // halve (12.5/s); the burst lands at 0.9 × a fifth of 25/s, not of
        // 12.5/s, which would sit at half the quota for many seconds.
        let t0 = Instant::now();
        let mut budget = RateBudget::new(25.0, t0);
        for k in 0..5 {
            budget.on_success(t0 + ms(40 * k), t0 + ms(40 * k + 5));
        }
        let first = t0 + ms(205);
        assert!(budget.on_throttled(first - ms(5), first));
        assert!((budget.rate() - 12.5).abs() < 1e-9, "{}", budget.rate());
        let sent = first + ms(90);
        assert!(budget.on_throttled(sent, sent + ms(5)));
        let rate = budget.rate();
        assert!((rate - 4.5).abs() < 1e-9, "rate {rate}");
    }

    #[test]
    fn a_throttle_after_two_requests_since_a_decrease_went_through_is_no_burst() {
        let t0 = Instant::now();
        let (mut budget, decreased_at) = decreased_from_100(t0);
        budget.on_success(decreased_at + ms(12), decreased_at + ms(14));
        budget.on_success(decreased_at + ms(23), decreased_at + ms(25));
        let sent = decreased_at + ms(34);
        assert!(budget.on_throttled(sent, sent + ms(2)));
        let rate = budget.rate();
        assert!(rate >= 45.0 - 1e-9, "rate {rate}: at most halved");
    }

    #[test]
    fn a_throttle_over_a_second_after_a_decrease_is_no_burst() {
        let t0 = Instant::now();
        let (mut budget, decreased_at) = decreased_from_100(t0);
        let sent = decreased_at + ms(1_100);
        assert!(budget.on_throttled(sent, sent + ms(2)));
        let rate = budget.rate();
        assert!(rate >= 45.0 - 1e-9, "rate {rate}: at most halved");
    }

    #[test]
    fn a_burst_after_a_correction_cuts_from_the_rate_before_the_episode() {
        // The late answers first correct 90/s to 45/s; the burst then lands
        // at 0.9 × a fifth of the 100/s before the measured decrease (18/s),
        // not of the 45/s the correction set.
        let t0 = Instant::now();
        let (mut budget, decreased_at) = decreased_from_100(t0);
        let late = decreased_at - ms(10);
        budget.on_success(late, decreased_at + ms(1));
        budget.on_throttled(late, decreased_at + ms(2));
        assert!(budget.on_throttled(late, decreased_at + ms(3)));
        let corrected = budget.rate();
        assert!((corrected - 45.0).abs() < 1e-2, "rate {corrected}");
        let sent = decreased_at + ms(30);
        assert!(budget.on_throttled(sent, sent + ms(2)));
        let rate = budget.rate();
        assert!((rate - 18.0).abs() < 1e-9, "rate {rate}");
    }

    #[test]
    fn after_a_burst_cut_the_rate_climbs_back_within_20_requests_time() {
        let t0 = Instant::now();
        let (mut budget, decreased_at) = decreased_from_100(t0);
        let cut_at = decreased_at + ms(14);
        budget.on_throttled(decreased_at + ms(12), cut_at); // 18/s: granted 20/s
        let rate_at = |budget: &mut RateBudget, after: Duration| {
            let now = cut_at + after;
            budget.on_success(now, now);
            budget.rate()
        };
        // K = 20 requests at 20/s = 1 s, at least 2 s.
        let at_1 = rate_at(&mut budget, ms(1_000));
        let at_2 = rate_at(&mut budget, ms(2_000));
        let at_4 = rate_at(&mut budget, ms(4_000));
        assert!(at_1 > 19.0 && at_1 < 20.0, "1 s after: {at_1}");
        assert!((at_2 - 20.0).abs() < 1e-9, "2 s after: {at_2}");
        assert!((at_4 - 22.0).abs() < 1e-9, "4 s after: {at_4}");
    }

    #[test]
    fn recovery_never_exceeds_the_rate_limit() {
        let t0 = Instant::now();
        let mut budget = RateBudget::new(20.0, t0);
        budget.on_throttled(t0, t0);
        let now = t0 + Duration::from_secs(3600);
        budget.on_success(now, now);
        assert_eq!(budget.rate(), 20.0);
    }

    #[test]
    fn repeated_throttles_never_push_the_rate_below_the_floor() {
        let t0 = Instant::now();
        let mut budget = RateBudget::new(50.0, t0);
        for k in 0..100 {
            let now = t0 + ms(10 * k);
            budget.on_throttled(now, now);
        }
        assert_eq!(budget.rate(), 0.5);
    }

    #[test]
    fn the_instant_ready_at_promises_always_passes() {
        let t0 = Instant::now();
        let mut budget = RateBudget::new(7.3, t0);
        for _ in 0..1000 {
            let at = budget.ready_at().max(t0);
            assert_eq!(budget.try_acquire(at), Ok(()), "at {:?}", at - t0);
        }
    }
}
