//! Requests that are not polls (failure-details pages, discovery pages:
//! issue 9) share a region's rate budget and `max_in_flight` with the polls;
//! and the adapted rates, for events and metrics.

use tokio::time::Instant;

use super::{Outcome, Scheduler};

impl Scheduler {
    /// Takes a token of `region`'s budget and an in-flight slot for a
    /// request that is not a poll (a failure-details page, issue 9): every
    /// request to a region shares its budget and `max_in_flight`. Polls come
    /// first: the caller asks only after `take_ready` said `None`. `Err`
    /// says when to ask again: `None` at `max_in_flight` (when one ends).
    pub fn take_token(&mut self, region: &str, now: Instant) -> Result<(), Option<Instant>> {
        if self.in_flight >= self.max_in_flight {
            return Err(None);
        }
        let index = self.region(region, now) as usize;
        let budget = &mut self.regions[index].budget;
        if budget.ready_at() > now {
            return Err(Some(budget.ready_at()));
        }
        budget.take(now);
        self.in_flight += 1;
        Ok(())
    }

    /// The earliest instant at or after `due` that `take_token` could
    /// succeed for `region`; `None` at `max_in_flight`.
    pub fn token_wakeup(&self, region: &str, due: Instant) -> Option<Instant> {
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        Some(match self.region_index.get(region) {
            Some(&i) => due.max(self.regions[i as usize].budget.ready_at()),
            None => due,
        })
    }

    /// Frees the slot of a `take_token` request sent at `sent_at`; its
    /// answer teaches the region's budget as a poll's would (`Throttled`
    /// lowers the rate, `Failed` says nothing, anything else is a success).
    pub fn token_done(&mut self, region: &str, answer: &Outcome, sent_at: Instant, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(&index) = self.region_index.get(region) else {
            return;
        };
        let budget = &mut self.regions[index as usize].budget;
        match answer {
            Outcome::Throttled { .. } => {
                budget.on_throttled(sent_at, now);
            }
            Outcome::Failed { .. } => {}
            _ => budget.on_success(sent_at, now),
        }
    }

    /// The current adapted rate of a region, requests per second (the
    /// `rate_limit` field of `poll.throttled`); `rate_limit` for a region
    /// with no watch yet.
    pub fn rate(&self, region: &str) -> f64 {
        self.region_index
            .get(region)
            .map_or(self.rate_limit, |&i| self.regions[i as usize].budget.rate())
    }

    /// Every region seen so far with its adapted rate, for metrics.
    pub fn rates(&self) -> impl Iterator<Item = (&str, f64)> {
        self.region_index
            .iter()
            .map(|(name, &i)| (name.as_str(), self.regions[i as usize].budget.rate()))
    }
}
