//! Failure details (issue 9), the loop's side: once an execution's terminal
//! `Failed`, `TimedOut` or `Aborted` transition is out, its
//! `details::DetailsFetch` plans `ListFlowExecutionEvents` pages; each page
//! waits for a token of its region's budget and an in-flight slot from the
//! scheduler (polls go first), is sent by the `Lister`, and its failure
//! events become `execution.node_failure` / `execution.flow_failure`. The
//! fetch ends once: complete, or one `execution.details_unavailable` (after
//! the pages it got, when capped at `failure_details_max_pages`); then the state records the details as reported, so a restart does not
//! fetch or emit them again.
//!
//! In: ended watches (`want_details`), finished pages (`details_joined`),
//! `now`. Out: events, state records, scheduler tokens.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::task::{self, JoinError, JoinSet};
use tokio::time::Instant;

use super::Daemon;
use crate::details::{self, DetailsEnd, DetailsFetch, DetailsPolicy};
use crate::event::{self, Event};
use crate::poll::{EventsPage, EventsRequest, Fetch, Lister, ReadFailure};
use crate::schedule;
use crate::watch::WatchKey;

/// Every details fetch still running, and its requests in flight.
#[derive(Default)]
pub(super) struct Details {
    /// By watch key: fetches not yet ended.
    fetches: HashMap<WatchKey, DetailsFetch>,
    pub(super) tasks: JoinSet<PageDone>,
    /// Which fetch each running request is for, so a task that panics
    /// still frees its slot.
    running: HashMap<task::Id, (WatchKey, Arc<str>, Instant)>,
}

/// One finished `ListFlowExecutionEvents` request.
pub(super) struct PageDone {
    key: WatchKey,
    region: Arc<str>,
    sent_at: Instant,
    answer: Result<EventsPage, ReadFailure>,
}

impl Details {
    /// No fetch running or waiting.
    pub fn is_idle(&self) -> bool {
        self.fetches.is_empty() && self.tasks.is_empty()
    }

    /// Whether `key`'s details are still being fetched.
    pub fn is_fetching(&self, key: &WatchKey) -> bool {
        self.fetches.contains_key(key)
    }

    /// Forgets the fetch of a watch a reload dropped; a request in flight
    /// still frees its slot when it ends.
    pub fn drop_watch(&mut self, key: &WatchKey) {
        self.fetches.remove(key);
    }

    /// Stops every request (shutdown): what was not reported is fetched
    /// again after a restart.
    pub fn abort(&mut self) {
        self.tasks.abort_all();
        self.fetches.clear();
    }
}

impl<F: Fetch + Lister> Daemon<F> {
    /// Starts the details fetch of `key` when it ended `Failed`, `TimedOut`
    /// or `Aborted`, `[poll] failure_details` is on, and its details were
    /// not reported before (by this process or one before a restart).
    /// Called after its terminal transition is out, so the first request is
    /// never sent before it.
    pub(super) fn want_details(&mut self, key: &WatchKey, now: Instant) {
        if !self.config.poll.failure_details || self.details.fetches.contains_key(key) {
            return;
        }
        let Some(tracked) = self.book.get(key) else {
            return;
        };
        let ended_failing = tracked.tracker.last().is_some_and(details::wants_details);
        if !ended_failing || tracked.tracker.details_reported() {
            return;
        }
        let policy = DetailsPolicy {
            max_pages: self.config.poll.failure_details_max_pages,
            ..DetailsPolicy::default()
        };
        self.details
            .fetches
            .insert(key.clone(), DetailsFetch::new(policy, now));
    }

    /// When a details request could start next: its due time, or later
    /// when its region's budget is empty; `None` when none is waiting or
    /// every in-flight slot is taken.
    pub(super) fn details_wakeup(&self) -> Option<Instant> {
        self.details
            .fetches
            .iter()
            .filter_map(|(key, fetch)| {
                let due = fetch.due_at()?;
                let region = self.book.get(key)?.region();
                self.scheduler.token_wakeup(region, due)
            })
            .min()
    }

    /// Sends every details request that is due and affordable now. Called
    /// after the polls took their turn.
    pub(super) fn start_details(&mut self, now: Instant) {
        let mut due: Vec<(Instant, WatchKey)> = self
            .details
            .fetches
            .iter()
            .filter_map(|(key, fetch)| Some((fetch.due_at().filter(|at| *at <= now)?, key.clone())))
            .collect();
        due.sort();
        for (_, key) in due {
            let Some(tracked) = self.book.get(&key) else {
                self.details.fetches.remove(&key);
                continue;
            };
            let region = tracked.region().clone();
            match self.scheduler.take_token(&region, now) {
                Ok(()) => {}
                Err(None) => break, // every slot is taken
                Err(Some(_)) => continue,
            }
            let target = &tracked.watch.target;
            let fetch = self
                .details
                .fetches
                .get_mut(&key)
                .expect("collected from the fetches above");
            let Some(next) = fetch.take_request(now) else {
                self.scheduler
                    .token_done(&region, &schedule::Outcome::Unchanged, now, now);
                continue;
            };
            let request = EventsRequest {
                region: region.clone(),
                flow: target.flow.as_str().into(),
                alias: target.alias.as_str().into(),
                execution: target.execution.as_str().into(),
                kind: next.kind,
                next_token: next.next_token,
                page_size: None,
            };
            let lister = self.fetch.clone();
            let limit = self.poll_limit();
            let (task_key, task_region) = (key.clone(), region.clone());
            let task = self.details.tasks.spawn(async move {
                let answer = match tokio::time::timeout(limit, lister.list_events(&request)).await {
                    Ok(answer) => answer,
                    Err(_) => Err(ReadFailure::timed_out(limit)),
                };
                PageDone {
                    key: task_key,
                    region: task_region,
                    sent_at: now,
                    answer,
                }
            });
            self.details.running.insert(task.id(), (key, region, now));
        }
    }

    /// A details request ended: its slot and token are accounted for, its
    /// page's failure events emitted, and the fetch's end reported once.
    pub(super) fn details_joined(
        &mut self,
        joined: Result<(task::Id, PageDone), JoinError>,
        now: Instant,
    ) {
        let done = match joined {
            Ok((task, done)) => {
                self.details.running.remove(&task);
                done
            }
            Err(error) => {
                let Some((key, region, sent_at)) = self.details.running.remove(&error.id()) else {
                    return;
                };
                tracing::error!("a failure-details task panicked; this is a bug");
                PageDone {
                    key,
                    region,
                    sent_at,
                    answer: Err(ReadFailure::panicked()),
                }
            }
        };
        let PageDone {
            key,
            region,
            sent_at,
            answer,
        } = done;
        self.token_answered(&region, answer.as_ref().err(), sent_at, now);
        let (Some(fetch), Some(tracked)) =
            (self.details.fetches.get_mut(&key), self.book.get(&key))
        else {
            return; // a reload dropped the watch meanwhile
        };
        let end = match &answer {
            Ok(page) => {
                let subject = tracked.subject();
                for failure in &page.node_failures {
                    let event_time = failure.event_time.map(rfc3339);
                    event::emit(&Event::NodeFailure {
                        subject,
                        node: &failure.node,
                        error_code: &failure.error_code,
                        error_message: &failure.error_message,
                        event_time: event_time.as_deref(),
                    });
                }
                for failure in &page.flow_failures {
                    let event_time = failure.event_time.map(rfc3339);
                    event::emit(&Event::FlowFailure {
                        subject,
                        error_code: &failure.error_code,
                        error_message: &failure.error_message,
                        event_time: event_time.as_deref(),
                    });
                }
                fetch.on_page(page, now)
            }
            Err(failure) => {
                tracing::debug!(watch = %key.as_str(), %failure, "failure-details request failed");
                fetch.on_failure(failure, now)
            }
        };
        let Some(end) = end else {
            return;
        };
        self.details.fetches.remove(&key);
        if let DetailsEnd::Unavailable(unavailable) = &end {
            tracing::debug!(watch = %key.as_str(), detail = %unavailable.detail, "failure details unavailable");
        }
        // A capped fetch says so too: what was emitted is not all there is.
        if let Some(reason) = end.unavailable_reason() {
            event::emit(&Event::DetailsUnavailable {
                subject: tracked.subject(),
                reason,
            });
        }
        let tracked = self.book.get_mut(&key).expect("checked above");
        tracked.tracker.report_details();
        if let Some(state) = &self.edges.state {
            state.mark(key.as_str(), tracked.tracker.record());
        }
        self.retire_if_done(&key);
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}
