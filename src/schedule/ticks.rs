//! Compact instants for the per-watch state: an instant as nanoseconds from
//! the scheduler's epoch, 8 bytes instead of a `tokio::time::Instant`'s 16.
//! Exact both ways (the clock counts nanoseconds too) within ±292 years of
//! the epoch; `HORIZON` keeps every instant the scheduler makes far inside.
//!
//! In: instants (`Epoch::tick`). Out: the same instants (`Epoch::instant`),
//! and the time between two ticks.

use std::time::Duration;
use tokio::time::Instant;

/// An instant, as nanoseconds after (or, negative, before) the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Tick(i64);

/// The instant ticks count from (any instant will do: ticks are signed).
#[derive(Debug, Clone, Copy)]
pub(super) struct Epoch(Instant);

impl Epoch {
    pub fn new(at: Instant) -> Epoch {
        Epoch(at)
    }

    pub fn tick(self, at: Instant) -> Tick {
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        match at.checked_duration_since(self.0) {
            Some(after) => Tick(nanos(after)),
            None => Tick(-nanos(self.0 - at)),
        }
    }

    pub fn instant(self, tick: Tick) -> Instant {
        let nanos = Duration::from_nanos(tick.0.unsigned_abs());
        if tick.0 >= 0 {
            self.0 + nanos
        } else {
            self.0 - nanos
        }
    }
}

impl Tick {
    /// The time from `earlier` to this tick; zero when `earlier` is later
    /// (as `Instant::saturating_duration_since`).
    pub fn since(self, earlier: Tick) -> Duration {
        u64::try_from(self.0.saturating_sub(earlier.0)).map_or(Duration::ZERO, Duration::from_nanos)
    }
}

/// An `Option<Tick>` in 8 bytes: `i64::MIN`, which `Epoch::tick` never
/// gives (it saturates at `-i64::MAX`), is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MaybeTick(i64);

impl MaybeTick {
    pub const NONE: MaybeTick = MaybeTick(i64::MIN);

    pub fn get(self) -> Option<Tick> {
        (self != MaybeTick::NONE).then_some(Tick(self.0))
    }
}

impl From<Tick> for MaybeTick {
    fn from(tick: Tick) -> MaybeTick {
        MaybeTick(tick.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_before_and_after_the_epoch_come_back_exactly() {
        let t0 = Instant::now();
        let epoch = Epoch::new(t0 + Duration::from_secs(5));
        for at in [
            t0,
            t0 + Duration::from_nanos(1),
            t0 + Duration::from_secs(5),
            t0 + Duration::new(3600 * 24 * 365 * 10, 123_456_789),
        ] {
            assert_eq!(epoch.instant(epoch.tick(at)), at);
        }
        assert!(epoch.tick(t0) < epoch.tick(t0 + Duration::from_nanos(1)));
    }

    #[test]
    fn the_time_between_ticks_saturates_at_zero() {
        let t0 = Instant::now();
        let epoch = Epoch::new(t0);
        let (a, b) = (epoch.tick(t0), epoch.tick(t0 + Duration::from_millis(1500)));
        assert_eq!(b.since(a), Duration::from_millis(1500));
        assert_eq!(a.since(b), Duration::ZERO);
    }

    #[test]
    fn maybe_tick_holds_none_and_any_tick() {
        let epoch = Epoch::new(Instant::now());
        assert_eq!(MaybeTick::NONE.get(), None);
        let tick = epoch.tick(Instant::now());
        assert_eq!(MaybeTick::from(tick).get(), Some(tick));
        assert_eq!(std::mem::size_of::<MaybeTick>(), 8);
    }
}
