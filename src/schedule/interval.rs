//! Delays between polls of one watch; the only user of the `backoff` crate.
//!
//! In: the shared `[poll]` policy (`Intervals`) and a watch's tiny `Delays`
//! state. Out: how long to wait before the next poll. Two independent
//! sequences live here:
//!
//! - the no-change delay: after each `Unchanged` poll it grows from
//!   `interval_initial` by `multiplier` up to `interval_max`; a transition
//!   resets it; a failure neither resets nor advances it;
//! - the error delay, for throttled, failed and not-found attempts: starts at
//!   `interval_initial`, doubles up to `interval_max`; any success resets it.
//!
//! Both are jittered with the policy's `jitter` (the randomization factor:
//! a delay `d` becomes a uniform pick in `d * (1 ± jitter)`). `jitter = 0.0`
//! gives exact delays.

use std::time::Duration;

use backoff::backoff::Backoff;

use crate::config::PollSettings;

/// The error delay grows by this factor per consecutive failure.
const ERROR_MULTIPLIER: f64 = 2.0;

/// The smallest error delay: a zero `interval_initial` must not turn
/// retries into a busy loop of zero delays that never grow.
const MIN_ERROR_DELAY: Duration = Duration::from_millis(1);

/// The shared delay policy, built once from `[poll]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Intervals {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
}

/// One watch's delay state: two durations, 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delays {
    /// The delay the next `Unchanged` poll will get (before jitter).
    no_change: Duration,
    /// The delay the next failure will get (before jitter); zero when the
    /// last answer was a success.
    error: Duration,
}

impl Intervals {
    /// Takes the policy from the settings. Values a validated config never
    /// holds are made harmless instead of panicking: `jitter` is clamped to
    /// 0..=1, a `multiplier` below 1 (or NaN) becomes 1, and an
    /// `interval_initial` above `interval_max` becomes `interval_max`.
    pub fn new(settings: &PollSettings) -> Intervals {
        let max = settings.interval_max;
        Intervals {
            initial: settings.interval_initial.min(max),
            max,
            multiplier: if settings.multiplier >= 1.0 && settings.multiplier.is_finite() {
                settings.multiplier
            } else {
                1.0
            },
            jitter: if settings.jitter.is_nan() {
                0.0
            } else {
                settings.jitter.clamp(0.0, 1.0)
            },
        }
    }

    /// The state of a watch that has not been polled yet.
    pub fn fresh(&self) -> Delays {
        Delays {
            no_change: self.initial,
            error: Duration::ZERO,
        }
    }

    /// The delay after a poll that saw no change; the next one grows by
    /// `multiplier`, up to `interval_max`. Ends any error streak.
    pub fn after_unchanged(&self, delays: &mut Delays) -> Duration {
        delays.error = Duration::ZERO;
        let mut backoff = self.backoff(delays.no_change, self.multiplier);
        let delay = self.next(&mut backoff);
        delays.no_change = backoff.current_interval;
        delay
    }

    /// The delay after a poll that saw a new (non-terminal) status:
    /// `interval_initial`, and the no-change sequence starts over (the next
    /// `Unchanged` also gets `interval_initial`). Ends any error streak.
    pub fn after_changed(&self, delays: &mut Delays) -> Duration {
        delays.error = Duration::ZERO;
        delays.no_change = self.initial;
        let mut backoff = self.backoff(self.initial, self.multiplier);
        self.next(&mut backoff)
    }

    /// The delay after a throttled, failed or not-found attempt: starts at
    /// `interval_initial` and doubles per consecutive failure, up to
    /// `interval_max`. The no-change delay is left as it was.
    pub fn after_error(&self, delays: &mut Delays) -> Duration {
        let current = if delays.error.is_zero() {
            self.initial.max(MIN_ERROR_DELAY)
        } else {
            delays.error
        };
        let mut backoff = self.backoff(current, ERROR_MULTIPLIER);
        let delay = self.next(&mut backoff);
        delays.error = backoff.current_interval.max(MIN_ERROR_DELAY);
        delay
    }

    /// The delay after `AccessDeniedException`: `interval_max` every time
    /// (permissions can be fixed), jittered like every other delay.
    pub fn after_access_denied(&self) -> Duration {
        let mut backoff = self.backoff(self.max, 1.0);
        self.next(&mut backoff)
    }

    /// A backoff positioned at `current`. Built fresh for each delay so that
    /// per-watch state stays two durations.
    fn backoff(&self, current: Duration, multiplier: f64) -> backoff::ExponentialBackoff {
        let mut backoff = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(self.initial)
            .with_max_interval(self.max.max(self.initial))
            .with_multiplier(multiplier)
            .with_randomization_factor(self.jitter)
            // The crate's default gives up after 15 minutes; watches live up
            // to `max_watch` (25 h) and the scheduler enforces that.
            .with_max_elapsed_time(None)
            .build();
        backoff.current_interval = current;
        backoff
    }

    fn next(&self, backoff: &mut backoff::ExponentialBackoff) -> Duration {
        let current = backoff.current_interval;
        // With `max_elapsed_time: None` the crate always answers; the
        // fallback only keeps a future version's `None` from being a panic.
        backoff.next_backoff().unwrap_or(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn intervals(initial: u64, max: u64, jitter: f64) -> Intervals {
        Intervals::new(&PollSettings {
            interval_initial: secs(initial),
            interval_max: secs(max),
            multiplier: 2.0,
            jitter,
            ..PollSettings::default()
        })
    }

    #[test]
    fn unchanged_polls_grow_the_delay_by_the_multiplier_up_to_the_cap() {
        let policy = intervals(2, 10, 0.0);
        let mut delays = policy.fresh();
        let seen: Vec<_> = (0..5)
            .map(|_| policy.after_unchanged(&mut delays))
            .collect();
        assert_eq!(seen, [secs(2), secs(4), secs(8), secs(10), secs(10)]);
    }

    #[test]
    fn a_change_resets_the_no_change_delay_to_the_initial_interval() {
        let policy = intervals(2, 60, 0.0);
        let mut delays = policy.fresh();
        for _ in 0..4 {
            policy.after_unchanged(&mut delays);
        }
        let after_change = policy.after_changed(&mut delays);
        let next_unchanged = policy.after_unchanged(&mut delays);
        assert_eq!((after_change, next_unchanged), (secs(2), secs(2)));
    }

    #[test]
    fn a_failure_neither_resets_nor_advances_the_no_change_delay() {
        let policy = intervals(2, 60, 0.0);
        let mut delays = policy.fresh();
        policy.after_unchanged(&mut delays); // 2 s, next 4 s
        policy.after_error(&mut delays);
        policy.after_error(&mut delays);
        assert_eq!(policy.after_unchanged(&mut delays), secs(4));
    }

    #[test]
    fn consecutive_errors_double_the_delay_up_to_the_cap() {
        let policy = intervals(1, 5, 0.0);
        let mut delays = policy.fresh();
        let seen: Vec<_> = (0..5).map(|_| policy.after_error(&mut delays)).collect();
        assert_eq!(seen, [secs(1), secs(2), secs(4), secs(5), secs(5)]);
    }

    #[test]
    fn a_success_resets_the_error_delay() {
        let policy = intervals(1, 60, 0.0);
        let mut delays = policy.fresh();
        policy.after_error(&mut delays);
        policy.after_error(&mut delays);
        policy.after_unchanged(&mut delays);
        assert_eq!(policy.after_error(&mut delays), secs(1));
    }

    #[test]
    fn access_denied_waits_the_maximum_interval_every_time() {
        let policy = intervals(2, 60, 0.0);
        assert_eq!(
            [policy.after_access_denied(), policy.after_access_denied()],
            [secs(60), secs(60)]
        );
    }

    #[test]
    fn jitter_keeps_each_delay_within_the_randomization_factor() {
        let policy = intervals(10, 10, 0.2);
        let mut delays = policy.fresh();
        for _ in 0..200 {
            let delay = policy.after_unchanged(&mut delays);
            assert!(
                delay >= Duration::from_secs(8) && delay <= Duration::from_secs(12),
                "delay {delay:?} outside 10 s ± 20 %"
            );
        }
    }

    #[test]
    fn out_of_range_settings_are_made_harmless() {
        let policy = Intervals::new(&PollSettings {
            interval_initial: secs(90),
            interval_max: secs(60),
            multiplier: f64::NAN,
            jitter: 7.0,
            ..PollSettings::default()
        });
        assert_eq!(
            (policy.initial, policy.multiplier, policy.jitter),
            (secs(60), 1.0, 1.0)
        );
    }
}
