//! The live event stream behind `GET /v1/events` (issue 10): every contract
//! event, as the JSON line the formatter writes, numbered and kept in a
//! bounded ring. In: `publish` from the formatter, one call per contract
//! event (a no-op until `enable`). Out: `Subscription`s that replay what a
//! reconnecting client missed, or say how many it lost, then follow live.
//!
//! One ring per process: the formatter is global (`tracing`), and so is this.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::broadcast;

/// One published event: its id and its JSON line (no newline).
pub type Item = (u64, Arc<str>);

static RING: OnceLock<Ring> = OnceLock::new();

/// Turns the stream on with room for `capacity` events; the first call
/// decides the capacity. Returns the process's ring.
pub fn enable(capacity: usize) -> &'static Ring {
    RING.get_or_init(|| Ring::new(capacity))
}

/// Whether `enable` was called: the formatter builds the JSON line for the
/// stream only then.
pub fn is_on() -> bool {
    RING.get().is_some()
}

/// Publishes one contract event's JSON line; nothing happens until `enable`.
pub fn publish(line: &str) {
    if let Some(ring) = RING.get() {
        ring.publish(line);
    }
}

/// The bounded history and the live feed.
pub struct Ring {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Item>,
}

struct Inner {
    /// The id the next event gets; ids start at 1.
    next_id: u64,
    kept: VecDeque<Item>,
    capacity: usize,
}

/// What a client gets on (re)connecting.
pub struct Subscription {
    /// Events it missed that the ring still holds, oldest first.
    pub backlog: Vec<Item>,
    /// How many it missed that the ring no longer holds; `None` when
    /// nothing was lost. A `Last-Event-ID` this process never issued (the
    /// daemon restarted) loses an unknown number: `Lost::Unknown`.
    pub lost: Option<Lost>,
    /// Everything published after the backlog.
    pub live: broadcast::Receiver<Item>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    Count(u64),
    /// The id is from before this process started.
    Unknown,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        let capacity = capacity.max(1);
        Ring {
            inner: Mutex::new(Inner {
                next_id: 1,
                kept: VecDeque::with_capacity(capacity.min(4096)),
                capacity,
            }),
            live: broadcast::channel(capacity).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers and keeps one event, and hands it to every live client.
    pub fn publish(&self, line: &str) {
        let line = line.trim_end_matches('\n');
        let mut inner = self.lock();
        let item: Item = (inner.next_id, Arc::from(line));
        inner.next_id += 1;
        if inner.kept.len() >= inner.capacity {
            inner.kept.pop_front();
        }
        inner.kept.push_back(item.clone());
        // Under the lock, so a subscriber's backlog and live feed neither
        // overlap nor leave a hole. No receivers is fine.
        let _ = self.live.send(item);
    }

    /// A client that saw everything up to `last_seen` (none: a new client,
    /// which gets only what comes next).
    pub fn subscribe(&self, last_seen: Option<u64>) -> Subscription {
        let inner = self.lock();
        let live = self.live.subscribe();
        let Some(last) = last_seen else {
            return Subscription {
                backlog: Vec::new(),
                lost: None,
                live,
            };
        };
        if last >= inner.next_id {
            return Subscription {
                backlog: inner.kept.iter().cloned().collect(),
                lost: Some(Lost::Unknown),
                live,
            };
        }
        let oldest = inner.kept.front().map_or(inner.next_id, |(id, _)| *id);
        let lost = oldest.saturating_sub(last + 1);
        Subscription {
            backlog: inner
                .kept
                .iter()
                .filter(|(id, _)| *id > last)
                .cloned()
                .collect(),
            lost: (lost > 0).then_some(Lost::Count(lost)),
            live,
        }
    }
}

/// One event in SSE framing.
pub fn frame((id, line): &Item) -> String {
    format!("id: {id}\ndata: {line}\n\n")
}

/// The `gap` event: how many events this client will never see.
pub fn gap_frame(lost: Lost) -> String {
    let lost = match lost {
        Lost::Count(n) => n.to_string(),
        Lost::Unknown => "null".to_string(),
    };
    format!("event: gap\ndata: {{\"event\":\"gap\",\"lost\":{lost}}}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(items: &[Item]) -> Vec<u64> {
        items.iter().map(|(id, _)| *id).collect()
    }

    #[test]
    fn a_reconnect_within_the_ring_replays_what_was_missed() {
        let ring = Ring::new(4);
        for n in 0..3 {
            ring.publish(&format!("{{\"n\":{n}}}\n"));
        }
        let sub = ring.subscribe(Some(1));
        assert_eq!(ids(&sub.backlog), [2, 3]);
        assert_eq!(sub.lost, None);
        assert_eq!(&*sub.backlog[0].1, "{\"n\":1}");
    }

    #[test]
    fn a_reconnect_past_the_ring_reports_the_gap() {
        let ring = Ring::new(2);
        for n in 0..5 {
            ring.publish(&n.to_string());
        }
        let sub = ring.subscribe(Some(1));
        assert_eq!(ids(&sub.backlog), [4, 5]);
        assert_eq!(sub.lost, Some(Lost::Count(2)));
    }

    #[test]
    fn an_id_from_another_process_loses_an_unknown_number() {
        let ring = Ring::new(2);
        ring.publish("a");
        let sub = ring.subscribe(Some(99));
        assert_eq!(ids(&sub.backlog), [1]);
        assert_eq!(sub.lost, Some(Lost::Unknown));
    }

    #[test]
    fn a_new_client_gets_only_what_comes_next() {
        let ring = Ring::new(2);
        ring.publish("a");
        let mut sub = ring.subscribe(None);
        assert!(sub.backlog.is_empty());
        ring.publish("b");
        assert_eq!(sub.live.try_recv().unwrap().0, 2);
    }
}
