//! One watch's timing state inside the scheduler, compact because there is
//! one per watch: its instants are 8-byte ticks (`ticks.rs`), and learned
//! polling's part shares its padding. In: what `Scheduler` writes. Out: its
//! place in line and its queue entry, as instants.

use std::time::Duration;
use tokio::time::Instant;

use super::WatchId;
use super::interval::Delays;
use super::learning::PerWatch;
use super::queue::{Entry, Lane};
use super::ticks::{Epoch, MaybeTick, Tick};

/// One watch's state, 88 bytes (instants as 8-byte ticks, exact); with its
/// map and waiting-set entries about 150 bytes (see
/// `a_watch_costs_well_under_200_bytes` and `a_watch_stays_88_bytes`).
/// Learned polling's `model`, `started_at` and `running_at` sit here rather
/// than in a map beside it: 20 bytes instead of ~50 per watch.
#[derive(Debug, Clone)]
pub(super) struct Watch {
    /// When it is due while waiting; when its request started while in flight.
    pub at: Tick,
    /// `max_watch` ends here.
    pub deadline: Tick,
    /// The first `NotFound` of the current streak.
    pub not_found_since: MaybeTick,
    /// Learned polling's part (`learning.rs`): when its execution started.
    pub started_at: MaybeTick,
    /// When an answer last said it was running (learned polling: a watch
    /// dropped without an end ran at least this long).
    pub running_at: MaybeTick,
    pub delays: Delays,
    /// Its place in line, as milliseconds before `at` (saturating): while
    /// waiting, how much earlier than its due time its place is (a retry
    /// keeps an earlier place); while in flight, how long it had waited past
    /// its place when its request started.
    pub lag_ms: u32,
    pub region: u32,
    /// Learned polling's part: its model, `NO_MODEL` until its flow is told.
    pub model: u32,
    pub in_flight: bool,
    /// Removed while in flight: forgotten when its result comes.
    pub removed: bool,
    /// A request for it has been sent at least once.
    pub polled: bool,
}

impl Watch {
    /// Its place in line: `at` less `lag_ms`.
    pub fn place(&self, epoch: Epoch) -> Instant {
        let at = epoch.instant(self.at);
        let lag = Duration::from_millis(self.lag_ms.into());
        at.checked_sub(lag).unwrap_or(at)
    }

    /// Its entry in its region's queue while it waits.
    pub fn entry(&self, id: WatchId, epoch: Epoch) -> Entry {
        let lane = if self.polled { Lane::Polled } else { Lane::New };
        Entry {
            lane,
            place: self.place(epoch),
            id,
            due: epoch.instant(self.at),
        }
    }

    /// What learned polling reads of it.
    pub fn learning(&self) -> PerWatch {
        PerWatch {
            model: self.model,
            started_at: self.started_at,
            running_at: self.running_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_stays_88_bytes() {
        // One per watch (100,000 in docs/benchmarks.md's memory bench), in a
        // map whose table holds 1.3 entries per watch at that size.
        assert_eq!(std::mem::size_of::<Watch>(), 88);
        assert_eq!(std::mem::size_of::<(WatchId, Watch)>(), 96);
    }
}
