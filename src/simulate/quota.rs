//! The simulator's request quota: a token bucket refilled at `quota` tokens per
//! second, holding at most `quota_burst`, whose rate can change at set instants
//! (`quota_schedule`). In: the instant of each request. Out: whether it is
//! served or throttled. Pure: the caller passes `now` in.

use tokio::time::Instant;

/// A token bucket that starts full; throttled requests take no token.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
    /// Changes still to come, in time order: (from, rate); burst = 1 s of it.
    changes: Vec<(Instant, f64)>,
}

impl TokenBucket {
    /// `rate` tokens per second, at most `burst` stored (at least one, so a
    /// tiny quota still serves a request now and then).
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        let burst = burst.max(1.0);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            refilled_at: now,
            changes: Vec::new(),
        }
    }

    /// From each (instant, rate) on, the bucket refills at that rate and
    /// holds one second's worth of it (at least one token); what it holds
    /// then is cut to that. `changes` must be in time order.
    pub fn with_changes(mut self, changes: impl IntoIterator<Item = (Instant, f64)>) -> Self {
        self.changes = changes.into_iter().collect();
        self.changes.reverse(); // the next one last, to pop
        self
    }

    /// Takes a token if one is there; `false` means the request is throttled.
    pub fn try_take(&mut self, now: Instant) -> bool {
        while let Some(&(at, rate)) = self.changes.last().filter(|&&(at, _)| at <= now) {
            self.refill(at);
            self.rate = rate;
            self.burst = rate.max(1.0);
            self.tokens = self.tokens.min(self.burst);
            self.changes.pop();
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        self.refilled_at = self.refilled_at.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_bucket_serves_its_burst_then_throttles() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(5.0, 5.0, t0);
        let served = (0..8).filter(|_| bucket.try_take(t0)).count();
        assert_eq!(served, 5);
    }

    #[test]
    fn tokens_come_back_at_the_quota_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 1.0, t0);
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 + Duration::from_millis(50)), "not yet");
        assert!(bucket.try_take(t0 + Duration::from_millis(100)), "now");
    }

    #[test]
    fn a_scheduled_change_sets_the_rate_and_cuts_the_burst() {
        let t0 = Instant::now();
        let at = t0 + Duration::from_secs(30);
        let mut bucket = TokenBucket::new(20.0, 20.0, t0).with_changes([(at, 4.0)]);
        let before = (0..30)
            .filter(|_| bucket.try_take(at - Duration::from_millis(1)))
            .count();
        assert_eq!(before, 20, "the old quota's burst, just before");
        let later = at + Duration::from_secs(10);
        let served = (0..30).filter(|_| bucket.try_take(later)).count();
        assert_eq!(served, 4, "one second of the new quota");
        let next = later + Duration::from_millis(250);
        assert!(bucket.try_take(next), "refilled at 4/s");
        assert!(!bucket.try_take(next), "not faster");
    }

    #[test]
    fn an_idle_spell_refills_no_more_than_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0, t0);
        let later = t0 + Duration::from_secs(60);
        let served = (0..10).filter(|_| bucket.try_take(later)).count();
        assert_eq!(served, 3);
    }
}
