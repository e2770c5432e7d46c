//! The due queue of one region: which waiting watch that region serves next.
//! This file is the lane policy, in one place.
//!
//! In: waiting watches (`push`, `remove`) and `now`. Out: the watch this
//! region would serve at `now` (`head`), and when its earliest waiting watch
//! comes due (`earliest`). A watch in flight is not in the queue.
//!
//! Two lanes:
//!
//! - `Lane::New`, watches never polled (no request sent yet), by (due, id).
//!   A due one goes first, so a short budget covers every execution once
//!   before it polls any twice.
//! - `Lane::Polled`, every other watch, served by its place in line: the one
//!   due longest goes first (the contract: no watch starves). A watch's
//!   place is normally its due time. A retry keeps an earlier place (see
//!   `Scheduler::record`) but may not start before its backoff ends: until
//!   then it is held aside by (due, place, id), then it joins the line at
//!   its place.

use std::collections::BTreeSet;

use tokio::time::Instant;

use super::WatchId;

/// Which lane a waiting watch is in. `New` sorts first: it is served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lane {
    /// No request for this watch has been sent yet.
    New,
    /// Polled at least once, whatever the answer.
    Polled,
}

/// One waiting watch as the queue sees it. Entries order as served: the
/// `New` lane first, then by place in line, then by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub lane: Lane,
    /// Its place in line: when it came due, or for a retry the earlier place
    /// it keeps. Never after `due`.
    pub place: Instant,
    pub id: WatchId,
    /// It may not start before this.
    pub due: Instant,
}

/// One region's waiting watches.
#[derive(Debug, Default)]
pub struct DueQueue {
    /// `Lane::New` by (due, id); place = due.
    new: BTreeSet<(Instant, WatchId)>,
    /// `Lane::Polled` watches free to go once their place comes, by (place, id).
    line: BTreeSet<(Instant, WatchId)>,
    /// `Lane::Polled` watches keeping a place before their due time, by
    /// (due, place, id), until they are due.
    held: BTreeSet<(Instant, Instant, WatchId)>,
}

impl DueQueue {
    pub fn push(&mut self, entry: Entry) {
        let Entry {
            lane,
            place,
            id,
            due,
        } = entry;
        match lane {
            Lane::New => self.new.insert((due, id)),
            Lane::Polled if place < due => self.held.insert((due, place, id)),
            Lane::Polled => self.line.insert((place, id)),
        };
    }

    /// Takes a watch out of the queue; an entry that is not there is ignored.
    pub fn remove(&mut self, entry: Entry) {
        let Entry {
            lane,
            place,
            id,
            due,
        } = entry;
        match lane {
            Lane::New => {
                self.new.remove(&(due, id));
            }
            Lane::Polled => {
                // Held until due, or already in line at its place.
                if !self.held.remove(&(due, place, id)) {
                    self.line.remove(&(place, id));
                }
            }
        }
    }

    /// What this region would serve at `now`: a due `New` watch, else the
    /// due `Polled` watch with the earliest place. `None` when nothing is
    /// due. Moves held watches that are due by `now` into the line.
    pub fn head(&mut self, now: Instant) -> Option<Entry> {
        while let Some(&(due, place, id)) = self.held.first() {
            if due > now {
                break;
            }
            self.held.pop_first();
            self.line.insert((place, id));
        }
        if let Some(&(due, id)) = self.new.first().filter(|&&(due, _)| due <= now) {
            let lane = Lane::New;
            return Some(Entry {
                lane,
                place: due,
                id,
                due,
            });
        }
        // Everything in the line is due at its place or earlier.
        let &(place, id) = self.line.first().filter(|&&(place, _)| place <= now)?;
        Some(Entry {
            lane: Lane::Polled,
            place,
            id,
            due: place,
        })
    }

    /// When its earliest waiting watch comes due (may be in the past).
    pub fn earliest(&self) -> Option<Instant> {
        let new = self.new.first().map(|&(due, _)| due);
        let line = self.line.first().map(|&(place, _)| place);
        let held = self.held.first().map(|&(due, _, _)| due);
        [new, line, held].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn new(due: Instant, id: u64) -> Entry {
        Entry {
            lane: Lane::New,
            place: due,
            id: WatchId(id),
            due,
        }
    }

    fn polled(place: Instant, due: Instant, id: u64) -> Entry {
        Entry {
            lane: Lane::Polled,
            place,
            id: WatchId(id),
            due,
        }
    }

    fn served(entry: Option<Entry>) -> Option<WatchId> {
        entry.map(|e| e.id)
    }

    #[test]
    fn nothing_is_served_before_it_is_due() {
        let t0 = Instant::now();
        let mut queue = DueQueue::default();
        queue.push(polled(t0 + secs(2), t0 + secs(2), 1));
        assert_eq!(queue.head(t0 + secs(1)), None);
        assert_eq!(queue.earliest(), Some(t0 + secs(2)));
        assert_eq!(served(queue.head(t0 + secs(2))), Some(WatchId(1)));
    }

    #[test]
    fn a_due_watch_never_polled_goes_before_a_polled_one_due_longer() {
        let t0 = Instant::now();
        let mut queue = DueQueue::default();
        queue.push(polled(t0, t0, 1));
        queue.push(new(t0 + secs(3), 2));
        assert_eq!(served(queue.head(t0 + secs(2))), Some(WatchId(1)));
        assert_eq!(served(queue.head(t0 + secs(3))), Some(WatchId(2)));
        assert_eq!(queue.earliest(), Some(t0));
    }

    #[test]
    fn a_held_retry_waits_for_its_due_time_then_goes_at_its_place() {
        let t0 = Instant::now();
        let mut queue = DueQueue::default();
        queue.push(polled(t0 + secs(2), t0 + secs(12), 1)); // a retry
        queue.push(polled(t0 + secs(5), t0 + secs(5), 2));
        assert_eq!(queue.earliest(), Some(t0 + secs(5)));
        // Not yet due: the other one goes, although it stands behind.
        let now = t0 + secs(11);
        assert_eq!(served(queue.head(now)), Some(WatchId(2)));
        // Due now: its earlier place puts it first.
        let now = t0 + secs(12);
        assert_eq!(queue.head(now), Some(polled(t0 + secs(2), t0 + secs(2), 1)));
        assert_eq!(queue.earliest(), Some(t0 + secs(2)));
    }

    #[test]
    fn a_removed_entry_is_never_served_whether_held_or_in_line() {
        let t0 = Instant::now();
        let mut queue = DueQueue::default();
        let entries = [
            new(t0, 1),
            polled(t0, t0, 2),
            polled(t0, t0 + secs(1), 3),
            polled(t0, t0 + secs(1), 4),
        ];
        for entry in entries {
            queue.push(entry);
        }
        queue.head(t0 + secs(1)); // moves 3 and 4 into the line
        queue.push(polled(t0, t0 + secs(2), 5));
        for entry in entries {
            queue.remove(entry);
        }
        queue.remove(polled(t0, t0 + secs(2), 5));
        queue.remove(polled(t0, t0, 7)); // not there: ignored
        assert_eq!((queue.head(t0 + secs(9)), queue.earliest()), (None, None));
    }
}
