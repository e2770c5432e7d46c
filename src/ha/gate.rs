//! The poll gate: whether this instance may send a request right now. The
//! leadership task opens it until a deadline (last renewal sent +
//! `renew_deadline`) and closes it on losing the lease; the loop asks it,
//! synchronously, before every poll it starts. A deadline rather than a flag,
//! so a leader frozen past its lease (SIGSTOP, a long pause) sends nothing
//! after it resumes, even before the leadership task has run again.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// Shared between the leadership task (writer) and the loop (reader).
#[derive(Clone, Debug, Default)]
pub struct Gate {
    /// `Some(until)` while leading: polls may start before `until`.
    open_until: Arc<Mutex<Option<Instant>>>,
}

impl Gate {
    /// A closed gate: nothing may be polled until `open_until`.
    pub fn closed() -> Gate {
        Gate::default()
    }

    /// Whether a poll may start at `now`.
    pub fn may_poll(&self, now: Instant) -> bool {
        matches!(*self.lock(), Some(until) if now < until)
    }

    /// Polls may start until `until` (a renewal moves it on).
    pub fn open_until(&self, until: Instant) {
        *self.lock() = Some(until);
    }

    /// No poll may start from now on.
    pub fn close(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        crate::lock::lock(&self.open_until)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_closed_gate_lets_nothing_through() {
        assert!(!Gate::closed().may_poll(Instant::now()));
    }

    #[test]
    fn an_open_gate_shuts_at_its_deadline_without_being_told() {
        let t0 = Instant::now();
        let gate = Gate::closed();
        gate.open_until(t0 + Duration::from_secs(10));
        assert!(gate.may_poll(t0));
        assert!(gate.may_poll(t0 + Duration::from_millis(9_999)));
        assert!(!gate.may_poll(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn closing_shuts_it_at_once_for_every_clone() {
        let t0 = Instant::now();
        let gate = Gate::closed();
        let seen_by_loop = gate.clone();
        gate.open_until(t0 + Duration::from_secs(10));
        gate.close();
        assert!(!seen_by_loop.may_poll(t0));
    }
}
