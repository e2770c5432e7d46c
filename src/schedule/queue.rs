//! The due queue of one region: which waiting watch that region serves next.
//! This file is the lane policy, in one place.
//!
//! In: waiting watches (`push`, `remove`) with their due times, and `now`.
//! Out: the watch this region would serve at `now` (`head`, then `pop`), and
//! when its earliest waiting watch comes due (`earliest`). A watch in
//! flight is not in the queue.
//!
//! Watches wait by (due, id) in two lanes: `Lane::New` for watches the
//! service has not answered yet, `Lane::Seen` for the rest. A due `New`
//! watch goes first, so a short budget covers every execution once before
//! it polls any twice; within a lane the one due longest goes first.

use std::collections::BTreeSet;

use tokio::time::Instant;

use super::WatchId;

/// Which lane a waiting watch is in. `New` sorts first: it is served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lane {
    /// The service has not answered this watch with a status yet.
    New,
    /// The service has answered it at least once.
    Seen,
}

/// One waiting watch as the queue sees it. Entries order as served: the
/// `New` lane first, then by due time, then by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub lane: Lane,
    pub due: Instant,
    pub id: WatchId,
}

/// One region's waiting watches.
#[derive(Debug, Default)]
pub struct DueQueue {
    new: BTreeSet<(Instant, WatchId)>,
    seen: BTreeSet<(Instant, WatchId)>,
}

impl DueQueue {
    pub fn push(&mut self, entry: Entry) {
        self.lane_mut(entry.lane).insert((entry.due, entry.id));
    }

    /// Takes a watch out of the queue; an entry that is not there is ignored.
    pub fn remove(&mut self, entry: Entry) {
        self.lane_mut(entry.lane).remove(&(entry.due, entry.id));
    }

    /// What this region would serve at `now`: a due `New` watch, else the
    /// `Seen` watch due longest. `None` when nothing is due.
    pub fn head(&self, now: Instant) -> Option<Entry> {
        [(Lane::New, &self.new), (Lane::Seen, &self.seen)]
            .into_iter()
            .find_map(|(lane, set)| {
                let &(due, id) = set.first()?;
                (due <= now).then_some(Entry { lane, due, id })
            })
    }

    /// When its earliest waiting watch comes due.
    pub fn earliest(&self) -> Option<Instant> {
        [&self.new, &self.seen]
            .into_iter()
            .filter_map(|set| set.first().map(|&(due, _)| due))
            .min()
    }

    fn lane_mut(&mut self, lane: Lane) -> &mut BTreeSet<(Instant, WatchId)> {
        match lane {
            Lane::New => &mut self.new,
            Lane::Seen => &mut self.seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn entry(lane: Lane, due: Instant, id: u64) -> Entry {
        Entry {
            lane,
            due,
            id: WatchId(id),
        }
    }

    #[test]
    fn nothing_is_served_before_it_is_due() {
        let t0 = Instant::now();
        let mut queue = DueQueue::default();
        queue.push(entry(Lane::Seen, t0 + secs(2), 1));
        assert_eq!(queue.head(t0 + secs(1)), None);
        assert_eq!(queue.earliest(), Some(t0 + secs(2)));
        assert_eq!(
            queue.head(t0 + secs(2)),
            Some(entry(Lane::Seen, t0 + secs(2), 1))
        );
    }

    #[test]
    fn a_due_new_watch_goes_before_a_seen_one_due_longer() {
        let t0 = Instant::now();
        let mut queue = DueQueue::default();
        queue.push(entry(Lane::Seen, t0, 1));
        queue.push(entry(Lane::New, t0 + secs(3), 2));
        assert_eq!(queue.head(t0 + secs(2)), Some(entry(Lane::Seen, t0, 1)));
        assert_eq!(
            queue.head(t0 + secs(3)),
            Some(entry(Lane::New, t0 + secs(3), 2))
        );
        assert_eq!(queue.earliest(), Some(t0));
    }

    #[test]
    fn a_removed_entry_is_never_served() {
        let t0 = Instant::now();
        let mut queue = DueQueue::default();
        queue.push(entry(Lane::New, t0, 1));
        queue.remove(entry(Lane::New, t0, 1));
        queue.remove(entry(Lane::Seen, t0, 7)); // not there: ignored
        assert_eq!((queue.head(t0), queue.earliest()), (None, None));
    }
}
