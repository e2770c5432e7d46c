//! Failure details (issue 9), the pure half: for one execution that ended
//! `Failed`, `TimedOut` or `Aborted`, plans its `ListFlowExecutionEvents`
//! pages (`Node` first, then `Flow`), its own backoff on throttles and
//! retryable failures, the page cap, and how it ends: exactly once. Nothing
//! here sleeps or does I/O; the caller passes `now`, sends the request (after
//! a region budget token, and only once the terminal transition is out) and
//! emits each page's failure events itself (`daemon/details.rs`).
//!
//! ```text
//! take_request(now) -> DetailsRequest --(daemon: budget, Lister)--> on_page / on_failure
//!                                                                   -> Option<DetailsEnd>
//! ```

use std::time::Duration;

use tokio::time::Instant;

use crate::poll::outcome::Status;
use crate::poll::pages::{EventKind, EventsPage, ReadFailure};

/// `[poll] failure_details_max_pages` default.
pub const MAX_PAGES: u32 = 20;

/// Whether an execution that ended with `status` gets its details fetched.
pub fn wants_details(status: &Status) -> bool {
    matches!(status, Status::Failed | Status::TimedOut | Status::Aborted)
}

/// The knobs of one fetch; `Default` is the issue's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetailsPolicy {
    /// Pages in all, both kinds together; one is kept for `Flow`.
    pub max_pages: u32,
    /// Attempts at one page before the details are unavailable.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `backoff_max`. A
    /// server's hint, when longer, wins.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for DetailsPolicy {
    fn default() -> DetailsPolicy {
        DetailsPolicy {
            max_pages: MAX_PAGES,
            max_attempts: 4,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Send this page next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailsRequest {
    pub kind: EventKind,
    pub next_token: Option<String>,
}

/// How a fetch ended; reported once.
#[derive(Debug, Clone, PartialEq)]
pub enum DetailsEnd {
    /// Every page of both kinds came back.
    Complete,
    /// `max_pages` pages came back and more were left: what was emitted
    /// stands, and one `execution.details_unavailable` with reason
    /// `max_pages` says the rest was not fetched.
    Capped,
    /// `execution.details_unavailable`, with its reason.
    Unavailable(Unavailable),
}

/// The `reason` of a capped fetch's `execution.details_unavailable`, named
/// for `[poll] failure_details_max_pages` as `max_watch` is for its key.
pub const CAPPED_REASON: &str = "max_pages";

impl DetailsEnd {
    /// The `reason` of the `execution.details_unavailable` this end is
    /// reported with; `None` when every page came back.
    pub fn unavailable_reason(&self) -> Option<&'static str> {
        match self {
            DetailsEnd::Complete => None,
            DetailsEnd::Capped => Some(CAPPED_REASON),
            DetailsEnd::Unavailable(unavailable) => Some(unavailable.reason),
        }
    }
}

/// Why the details could not be fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct Unavailable {
    /// `access_denied` (the role lacks `bedrock:ListFlowExecutionEvents`),
    /// `invalid`, or `retries_exhausted`.
    pub reason: &'static str,
    /// The last failure, for people.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Due(Instant),
    InFlight,
    Done,
}

/// The details fetch of one ended execution.
#[derive(Debug, Clone)]
pub struct DetailsFetch {
    policy: DetailsPolicy,
    phase: Phase,
    kind: EventKind,
    next_token: Option<String>,
    /// Pages answered, both kinds.
    pages: u32,
    /// Node pages were left unread to keep a page for `Flow`.
    nodes_cut: bool,
    /// Attempts at the current page.
    attempt: u32,
}

impl DetailsFetch {
    /// A fetch whose first request (`Node`, first page) is due at `now`.
    pub fn new(policy: DetailsPolicy, now: Instant) -> DetailsFetch {
        DetailsFetch {
            policy,
            phase: Phase::Due(now),
            kind: EventKind::Node,
            next_token: None,
            pages: 0,
            nodes_cut: false,
            attempt: 1,
        }
    }

    /// When the next request may be sent; `None` while one is out or once done.
    pub fn due_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Due(at) => Some(at),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The request to send now, if one is due.
    pub fn take_request(&mut self, now: Instant) -> Option<DetailsRequest> {
        match self.phase {
            Phase::Due(at) if at <= now => {
                self.phase = Phase::InFlight;
                Some(DetailsRequest {
                    kind: self.kind,
                    next_token: self.next_token.clone(),
                })
            }
            _ => None,
        }
    }

    /// Takes one page (the caller emits its failure events). The next page
    /// is due at once: the region budget paces it. Returns the end when this
    /// page was the last; `None` also when no request was out.
    pub fn on_page(&mut self, page: &EventsPage, now: Instant) -> Option<DetailsEnd> {
        if self.phase != Phase::InFlight {
            return None;
        }
        self.pages += 1;
        self.attempt = 1;
        // Node pages stop one short of the cap so the flow failure, the
        // summary of what went wrong, is always asked for.
        let node_cap = self.policy.max_pages.saturating_sub(1).max(1);
        match (self.kind, &page.next_token) {
            (EventKind::Node, Some(token)) if self.pages < node_cap => {
                self.next_token = Some(token.clone());
            }
            (EventKind::Node, next) if self.pages < self.policy.max_pages => {
                self.nodes_cut = next.is_some();
                self.kind = EventKind::Flow;
                self.next_token = None;
            }
            (EventKind::Flow, Some(token)) if self.pages < self.policy.max_pages => {
                self.next_token = Some(token.clone());
            }
            (EventKind::Flow, None) if self.nodes_cut => return self.end(DetailsEnd::Capped),
            (EventKind::Flow, None) => return self.end(DetailsEnd::Complete),
            _ => return self.end(DetailsEnd::Capped),
        }
        self.phase = Phase::Due(now);
        None
    }

    /// Takes one failed attempt: 403 or 400 end it at once; anything else is
    /// retried with backoff until `max_attempts`. Returns the end, once.
    pub fn on_failure(&mut self, failure: &ReadFailure, now: Instant) -> Option<DetailsEnd> {
        if self.phase != Phase::InFlight {
            return None;
        }
        let unavailable = |reason| {
            DetailsEnd::Unavailable(Unavailable {
                reason,
                detail: failure.to_string(),
            })
        };
        match failure {
            ReadFailure::AccessDenied { .. } => return self.end(unavailable("access_denied")),
            ReadFailure::Invalid { .. } => return self.end(unavailable("invalid")),
            // Throttles, retryable failures, and a not-found right after the
            // end (eventual consistency): retried, a bounded number of times.
            _ => {}
        }
        if self.attempt >= self.policy.max_attempts {
            return self.end(unavailable("retries_exhausted"));
        }
        let backoff = self
            .policy
            .backoff_initial
            .saturating_mul(1 << (self.attempt - 1).min(16))
            .min(self.policy.backoff_max);
        self.attempt += 1;
        self.phase = Phase::Due(now + backoff.max(failure.retry_after().unwrap_or_default()));
        None
    }

    fn end(&mut self, end: DetailsEnd) -> Option<DetailsEnd> {
        self.phase = Phase::Done;
        Some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::outcome::FailureKind;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn page(next: Option<&str>) -> EventsPage {
        EventsPage {
            next_token: next.map(str::to_string),
            ..EventsPage::default()
        }
    }

    fn server_error() -> ReadFailure {
        ReadFailure::Failed {
            kind: FailureKind::Server,
            code: Some("InternalServerException".into()),
            message: "oops".into(),
            retry_after: None,
        }
    }

    /// Answers every request with the next page of `script` until it ends.
    fn run(
        fetch: &mut DetailsFetch,
        t0: Instant,
        script: &[(EventKind, Option<&str>)],
    ) -> (Vec<DetailsRequest>, Option<DetailsEnd>) {
        let mut sent = Vec::new();
        for (kind, next) in script {
            let request = fetch.take_request(t0).expect("a request is due");
            assert_eq!(request.kind, *kind, "after {sent:?}");
            sent.push(request);
            if let Some(end) = fetch.on_page(&page(*next), t0) {
                return (sent, Some(end));
            }
        }
        (sent, None)
    }

    #[test]
    fn only_failed_timed_out_and_aborted_executions_get_details() {
        let wanted: Vec<_> = [
            Status::Running,
            Status::Succeeded,
            Status::Failed,
            Status::TimedOut,
            Status::Aborted,
            Status::Other("InProgress".into()),
        ]
        .iter()
        .map(wants_details)
        .collect();
        assert_eq!(wanted, [false, false, true, true, true, false]);
    }

    #[test]
    fn node_pages_come_first_then_flow_pages_then_it_is_complete() {
        let t0 = Instant::now();
        let mut f = DetailsFetch::new(DetailsPolicy::default(), t0);
        let (sent, end) = run(
            &mut f,
            t0,
            &[
                (EventKind::Node, Some("n2")),
                (EventKind::Node, None),
                (EventKind::Flow, Some("f2")),
                (EventKind::Flow, None),
            ],
        );
        let tokens: Vec<_> = sent.iter().map(|r| r.next_token.as_deref()).collect();
        assert_eq!(tokens, [None, Some("n2"), None, Some("f2")]);
        assert_eq!(end, Some(DetailsEnd::Complete));
        assert!(f.is_done());
        assert_eq!(f.take_request(t0), None);
    }

    #[test]
    fn the_page_cap_keeps_one_page_for_the_flow_failure_and_then_stops() {
        let t0 = Instant::now();
        let policy = DetailsPolicy {
            max_pages: 3,
            ..DetailsPolicy::default()
        };
        let mut f = DetailsFetch::new(policy, t0);
        let (sent, end) = run(
            &mut f,
            t0,
            &[
                (EventKind::Node, Some("n2")),
                (EventKind::Node, Some("n3")), // node pages stop at 2 of 3
                (EventKind::Flow, Some("f2")), // page 3: the cap
            ],
        );
        assert_eq!(sent.len(), 3);
        assert_eq!(end, Some(DetailsEnd::Capped));
        assert_eq!(f.due_at(), None);
    }

    #[test]
    fn node_pages_cut_short_for_the_flow_page_end_capped_even_when_the_flow_page_is_the_last() {
        let t0 = Instant::now();
        let policy = DetailsPolicy {
            max_pages: 2,
            ..DetailsPolicy::default()
        };
        let mut f = DetailsFetch::new(policy, t0);
        let (sent, end) = run(
            &mut f,
            t0,
            &[(EventKind::Node, Some("n2")), (EventKind::Flow, None)],
        );
        assert_eq!(sent.len(), 2);
        assert_eq!(end, Some(DetailsEnd::Capped));
    }

    #[test]
    fn a_capped_or_failed_fetch_is_reported_unavailable_with_its_reason_and_a_complete_one_is_not()
    {
        let denied = DetailsEnd::Unavailable(Unavailable {
            reason: "access_denied",
            detail: String::new(),
        });
        let reasons: Vec<_> = [DetailsEnd::Complete, DetailsEnd::Capped, denied]
            .iter()
            .map(DetailsEnd::unavailable_reason)
            .collect();
        assert_eq!(reasons, [None, Some("max_pages"), Some("access_denied")]);
    }

    #[test]
    fn throttles_back_off_doubling_and_honour_a_longer_hint() {
        let t0 = Instant::now();
        let mut f = DetailsFetch::new(DetailsPolicy::default(), t0);
        f.take_request(t0).unwrap();
        assert_eq!(
            f.on_failure(&ReadFailure::Throttled { retry_after: None }, t0),
            None
        );
        assert_eq!(f.due_at(), Some(t0 + ms(1000)));
        assert_eq!(f.take_request(t0 + ms(999)), None, "not yet");
        let t1 = t0 + ms(1000);
        let again = f.take_request(t1).unwrap();
        assert_eq!((again.kind, again.next_token), (EventKind::Node, None));
        let hint = ReadFailure::Throttled {
            retry_after: Some(ms(5000)),
        };
        assert_eq!(f.on_failure(&hint, t1), None);
        assert_eq!(f.due_at(), Some(t1 + ms(5000)), "the hint beats 2 s");
    }

    #[test]
    fn a_success_resets_the_attempts_of_the_next_page() {
        let t0 = Instant::now();
        let mut f = DetailsFetch::new(DetailsPolicy::default(), t0);
        f.take_request(t0).unwrap();
        f.on_failure(&server_error(), t0);
        let t1 = f.due_at().unwrap();
        f.take_request(t1).unwrap();
        f.on_page(&page(Some("n2")), t1);
        f.take_request(t1).unwrap();
        f.on_failure(&server_error(), t1);
        assert_eq!(f.due_at(), Some(t1 + ms(1000)), "back to the first delay");
    }

    #[test]
    fn retryable_failures_end_as_unavailable_once_after_the_last_attempt() {
        let t0 = Instant::now();
        let mut f = DetailsFetch::new(DetailsPolicy::default(), t0);
        let mut now = t0;
        let mut delays = Vec::new();
        let mut ends = Vec::new();
        while let Some(request) = f.take_request(now) {
            assert_eq!(request.next_token, None, "the same page each time");
            if let Some(end) = f.on_failure(&server_error(), now) {
                ends.push(end);
                break;
            }
            let due = f.due_at().unwrap();
            delays.push(due - now);
            now = due;
        }
        assert_eq!(delays, [ms(1000), ms(2000), ms(4000)]);
        match ends.as_slice() {
            [DetailsEnd::Unavailable(u)] => {
                assert_eq!(u.reason, "retries_exhausted");
                assert!(u.detail.contains("oops"), "{u:?}");
            }
            other => panic!("{other:?}"),
        }
        // Exactly once: nothing more is sent or reported.
        assert_eq!(f.take_request(now + ms(60_000)), None);
        assert_eq!(f.on_failure(&server_error(), now), None);
        assert_eq!(f.on_page(&page(None), now), None);
    }

    #[test]
    fn access_denied_is_unavailable_at_once_with_no_retry() {
        let t0 = Instant::now();
        let mut f = DetailsFetch::new(DetailsPolicy::default(), t0);
        f.take_request(t0).unwrap();
        let denied = ReadFailure::AccessDenied {
            code: "AccessDeniedException".into(),
            message: "not authorized to perform: bedrock:ListFlowExecutionEvents".into(),
        };
        let end = f.on_failure(&denied, t0);
        match end {
            Some(DetailsEnd::Unavailable(u)) => {
                assert_eq!(u.reason, "access_denied");
                assert!(u.detail.contains("ListFlowExecutionEvents"), "{u:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(f.is_done());
        assert_eq!(f.take_request(t0 + ms(60_000)), None);
    }
}
