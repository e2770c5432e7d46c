//! What one finished poll does: the transition stage's verdict on an
//! answer (events, the state record), the scheduler's decision, and the
//! events for a poll that failed, was throttled or ended the watch. Also
//! where two watches the service names as one execution merge (issue 7.1).

use std::time::SystemTime;

use tokio::time::Instant;

use super::book::Ending;
use super::{Daemon, Done, Panicked};
use crate::event::{self, Event};
use crate::poll::{Fetch, Lister, Observation, PollOutcome};
use crate::schedule::{self, Next};
use crate::transition::Observed;
use crate::watch::WatchKey;

impl<F: Fetch + Lister> Daemon<F> {
    /// Records one finished poll: transition detection, scheduling, events.
    pub(super) fn finish(&mut self, done: Done, now: Instant) {
        let Done {
            id,
            outcome,
            latency,
        } = done;
        let name = outcome.as_ref().map_or("failed", outcome_name);
        self.edges.metrics.poll(name, latency);
        let Some(key) = self.book.key_of(id).cloned() else {
            // Removed by a reload while in flight: this frees its slot, and
            // the region's budget still learns from the answer.
            let seen = match outcome {
                Ok(PollOutcome::Throttled { retry_after }) => {
                    schedule::Outcome::Throttled { retry_after }
                }
                _ => schedule::Outcome::Unchanged,
            };
            self.scheduler.record(id, &seen, now);
            return;
        };
        let Ok(polled) = &outcome else {
            let failed = schedule::Outcome::Failed { retry_after: None };
            let next = self.scheduler.record(id, &failed, now);
            return self.after(&key, &outcome, next, now);
        };
        let decided = match polled {
            PollOutcome::Observed(observation) => match self.observe(&key, observation) {
                Some(decided) => {
                    self.learn(id, &key, observation, &decided, now);
                    decided
                }
                None => {
                    // Merged into the watch that already names this
                    // execution: forgotten here, its slot freed.
                    self.scheduler.remove(id);
                    self.scheduler
                        .record(id, &schedule::Outcome::Unchanged, now);
                    return;
                }
            },
            PollOutcome::Throttled { retry_after } => {
                self.throttled += 1;
                let tracked = self.book.get(&key).expect("polled watches are tracked");
                self.edges.metrics.throttled(tracked.region());
                schedule::Outcome::Throttled {
                    retry_after: *retry_after,
                }
            }
            PollOutcome::Failed { retry_after, .. } => schedule::Outcome::Failed {
                retry_after: *retry_after,
            },
            PollOutcome::NotFound { message } => {
                tracing::debug!(watch = %key.as_str(), %message, "execution not found yet");
                schedule::Outcome::NotFound
            }
            PollOutcome::Invalid { .. } => schedule::Outcome::Invalid,
            PollOutcome::AccessDenied { .. } => schedule::Outcome::AccessDenied,
        };
        let next = self.scheduler.record(id, &decided, now);
        self.after(&key, &outcome, next, now);
        if decided == schedule::Outcome::Terminal {
            // The terminal transition is out: its details may follow.
            self.want_details(&key, now);
        }
        self.retire_if_done(&key);
    }

    /// Acts on the scheduler's decision for a finished poll: the watch ends,
    /// or the failure that delayed it is reported.
    fn after(
        &mut self,
        key: &WatchKey,
        outcome: &Result<PollOutcome, Panicked>,
        next: Next,
        now: Instant,
    ) {
        match next {
            Next::Abandon(reason) => self.book.end(key, Ending::Abandoned(reason)),
            Next::Done => {
                let last = self.book.get(key).and_then(|t| t.tracker.last().cloned());
                self.book.end(key, Ending::of(last.as_ref()));
            }
            Next::PollAt(at) => {
                tracing::debug!(
                    watch = %key.as_str(),
                    delay_ms = at.saturating_duration_since(now).as_millis() as u64,
                    "poll scheduled"
                );
            }
        }
        let tracked = self.book.get(key).expect("the caller checked the key");
        let retry_in_ms = match next {
            Next::PollAt(at) => at.saturating_duration_since(now).as_millis() as u64,
            _ => 0,
        };
        match (outcome, next) {
            (_, Next::Abandon(reason)) => {
                event::emit(&Event::Abandoned {
                    subject: tracked.subject(),
                    reason: reason.as_str(),
                });
                self.edges.metrics.abandoned(reason.as_str());
            }
            (_, Next::Done) => {}
            (Err(Panicked { message }), Next::PollAt(_)) => {
                event::emit(&Event::PollFailed {
                    subject: tracked.subject(),
                    error_kind: "internal",
                    error_code: None,
                    error_message: message,
                    retry_in_ms,
                });
            }
            (Ok(PollOutcome::Throttled { .. }), Next::PollAt(_)) => {
                event::emit(&Event::Throttled {
                    subject: tracked.subject(),
                    retry_in_ms,
                    rate_limit: self.scheduler.rate(tracked.region()),
                });
            }
            (
                Ok(PollOutcome::Failed {
                    kind,
                    code,
                    message,
                    ..
                }),
                Next::PollAt(_),
            ) => {
                event::emit(&Event::PollFailed {
                    subject: tracked.subject(),
                    error_kind: kind.as_str(),
                    error_code: code.as_deref(),
                    error_message: message.as_str(),
                    retry_in_ms,
                });
            }
            (Ok(PollOutcome::AccessDenied { code, message }), Next::PollAt(_)) => {
                event::emit(&Event::PollFailed {
                    subject: tracked.subject(),
                    error_kind: "access_denied",
                    error_code: Some(code.as_str()),
                    error_message: message.as_str(),
                    retry_in_ms,
                });
            }
            (_, Next::PollAt(_)) => {}
        }
    }

    /// The transition stage for one successful poll; emits what it found,
    /// saves the state record, and says what the scheduler should make of
    /// it. `None` when the answer revealed that another watch already names
    /// this execution: this one merged into it (issue 7.1).
    pub(super) fn observe(
        &mut self,
        key: &WatchKey,
        observation: &Observation,
    ) -> Option<schedule::Outcome> {
        let tracked = self.book.get(key).expect("polled watches are tracked");
        if let Some(arn) = tracked.tracker.would_learn(observation) {
            if let Some(keeper) = self.book.holder_of(arn, key) {
                self.merge(key, &keeper);
                return None;
            }
            let arn = arn.to_string();
            self.book.learned(&arn, key);
        }
        let tracked = self.book.get_mut(key).expect("polled watches are tracked");
        Some(
            match tracked.tracker.observe(observation, SystemTime::now()) {
                Observed::Unchanged => schedule::Outcome::Unchanged,
                Observed::Stale { terminal, seen } => {
                    event::emit(&Event::StaleStatus {
                        subject: tracked.subject(),
                        status: terminal.as_str(),
                        seen: seen.as_str(),
                    });
                    schedule::Outcome::Terminal
                }
                Observed::Transition(transition) => {
                    for event in transition.events(tracked.subject()) {
                        event::emit(&event);
                    }
                    self.edges.metrics.transition(transition.to.as_str());
                    // The event is out before the state says so: a crash in
                    // between replays the transition (at least once), never
                    // loses it.
                    if let Some(state) = &self.edges.state {
                        state.mark(key.as_str(), transition.record.clone());
                    }
                    if transition.terminal {
                        schedule::Outcome::Terminal
                    } else {
                        schedule::Outcome::Changed
                    }
                }
            },
        )
    }

    /// Feeds learned polling (issue 11): when the execution started, so the
    /// next delay is chosen at its age, and, for the terminal answer that
    /// ended the watch, how long it took (`endedAt − startedAt`).
    fn learn(
        &mut self,
        id: schedule::WatchId,
        key: &WatchKey,
        observation: &Observation,
        decided: &schedule::Outcome,
        now: Instant,
    ) {
        let Some(started_at) = observation.started_at else {
            return;
        };
        if *decided == schedule::Outcome::Terminal {
            // A stale answer is `Terminal` too, but `status` is not.
            if let Some(ended_at) = observation.ended_at
                && observation.status.is_terminal()
                && let Ok(duration) = ended_at.duration_since(started_at)
            {
                let tracked = self.book.get(key).expect("polled watches are tracked");
                let target = &tracked.watch.target;
                self.scheduler.observe(
                    tracked.region(),
                    target.flow.as_str(),
                    target.alias.as_str(),
                    duration,
                );
                if let Some(state) = &self.edges.state {
                    state.set_models(self.scheduler.models());
                }
            }
            return;
        }
        let age = SystemTime::now()
            .duration_since(started_at)
            .unwrap_or_default();
        if let Some(started) = now.checked_sub(age) {
            self.scheduler.started(id, started);
        }
    }

    /// `alias` turned out to be the execution `keeper` watches: `keeper`
    /// goes on with both watches' labels, `alias` is forgotten without a
    /// second copy of any event.
    fn merge(&mut self, alias: &WatchKey, keeper: &WatchKey) {
        tracing::debug!(
            watch = %alias.as_str(),
            into = %keeper.as_str(),
            "two watches name one execution; merged"
        );
        self.book.merge(alias, keeper);
        if let Some(state) = &self.edges.state {
            state.forget(alias.as_str());
        }
    }
}

fn outcome_name(outcome: &PollOutcome) -> &'static str {
    match outcome {
        PollOutcome::Observed(_) => "observed",
        PollOutcome::Throttled { .. } => "throttled",
        PollOutcome::Failed { .. } => "failed",
        PollOutcome::NotFound { .. } => "not_found",
        PollOutcome::Invalid { .. } => "invalid",
        PollOutcome::AccessDenied { .. } => "access_denied",
    }
}
