//! The simulator's request quota: a token bucket refilled at `quota` tokens per
//! second, holding at most `quota_burst`. In: the instant of each request. Out:
//! whether it is served or throttled. Pure: the caller passes `now` in.

use tokio::time::Instant;

/// A token bucket that starts full; throttled requests take no token.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
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
        }
    }

    /// Takes a token if one is there; `false` means the request is throttled.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
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
    fn an_idle_spell_refills_no_more_than_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0, t0);
        let later = t0 + Duration::from_secs(60);
        let served = (0..10).filter(|_| bucket.try_take(later)).count();
        assert_eq!(served, 3);
    }
}
