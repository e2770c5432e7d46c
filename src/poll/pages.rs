//! What one page of the two listing reads told us, as plain data:
//! `ListFlowExecutions` (flow discovery) and `ListFlowExecutionEvents`
//! (failure details, issue 9). Built by `poll::listing` (or a test's scripted
//! lister), read by `discover` and `details`. No SDK types leak past this point.
//!
//! Both operations answer at most 10 items per page whatever `maxResults`
//! says, so every read is one page and the caller follows `next_token`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::outcome::{FailureKind, PollOutcome, Status};
use crate::watch::ids::ExecutionRef;

/// One `ListFlowExecutions` attempt: a page of one flow's executions,
/// optionally only one alias's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionsRequest {
    /// Empty: the shared config's region.
    pub region: Arc<str>,
    pub flow: Arc<str>,
    pub alias: Option<Arc<str>>,
    /// `None` asks for the first page.
    pub next_token: Option<String>,
    /// `maxResults`; `None` leaves it to the service (which caps pages at 10).
    pub page_size: Option<u32>,
}

/// Which events a `ListFlowExecutionEvents` page asks for (`eventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Node,
    Flow,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Node => "Node",
            EventKind::Flow => "Flow",
        }
    }
}

/// One `ListFlowExecutionEvents` attempt for one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsRequest {
    /// Empty: the shared config's region.
    pub region: Arc<str>,
    pub flow: Arc<str>,
    pub alias: Arc<str>,
    pub execution: Arc<str>,
    pub kind: EventKind,
    pub next_token: Option<String>,
    pub page_size: Option<u32>,
}

/// One entry of `flowExecutionSummaries`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionSummary {
    /// Parsed from the summary's `executionArn`: the ids to poll it by, its
    /// region and its ARN (the watch key).
    pub execution: ExecutionRef,
    pub status: Status,
    pub flow_version: Option<String>,
    pub created_at: SystemTime,
    pub ended_at: Option<SystemTime>,
}

/// One page of `ListFlowExecutions`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutionsPage {
    pub summaries: Vec<ExecutionSummary>,
    /// Summaries left out because they cannot be watched: no parsable
    /// `executionArn`, no `status` or no `createdAt`.
    pub skipped: usize,
    /// `None` on the last page.
    pub next_token: Option<String>,
}

/// A `nodeFailureEvent`: contract event `execution.node_failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    pub node: String,
    /// The API's `NodeErrorCode` (`VALIDATION`, `DEPENDENCY_FAILED`,
    /// `BAD_GATEWAY`, `INTERNAL_SERVER`), or a newer one carried raw; empty
    /// when the event had none.
    pub error_code: String,
    pub error_message: String,
    /// `None` when the event had no timestamp.
    pub event_time: Option<SystemTime>,
}

/// A `flowFailureEvent`: contract event `execution.flow_failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowFailure {
    /// The API's `FlowErrorCode` (`VALIDATION`, `INTERNAL_SERVER`,
    /// `NODE_EXECUTION_FAILED`), or a newer one carried raw; empty when none.
    pub error_code: String,
    pub error_message: String,
    pub event_time: Option<SystemTime>,
}

/// One page of `ListFlowExecutionEvents`: the failure events on it, in the
/// page's order. Every other kind (inputs, outputs, conditions, and kinds the
/// SDK does not know, `Unknown`) is counted in `skipped`, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventsPage {
    pub node_failures: Vec<NodeFailure>,
    pub flow_failures: Vec<FlowFailure>,
    pub skipped: usize,
    pub next_token: Option<String>,
}

/// Why one listing attempt got no page: the failure classes of
/// `PollOutcome`, with the same rules (see `poll::client::classify`).
#[derive(Debug, Clone, PartialEq)]
pub enum ReadFailure {
    /// `ThrottlingException` or HTTP 429, with any `Retry-After` /
    /// `x-amz-retry-after` hint.
    Throttled { retry_after: Option<Duration> },
    /// A retryable failure (5xx, timeout, connection, unparsable body, other 4xx).
    Failed {
        kind: FailureKind,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// `ResourceNotFoundException`.
    NotFound { message: String },
    /// `ValidationException`.
    Invalid { message: String },
    /// `AccessDeniedException`, or credentials the service refused.
    AccessDenied { code: String, message: String },
}

impl ReadFailure {
    /// The task that sent the request panicked (a bug): not retried as a
    /// server fault would be.
    pub fn panicked() -> ReadFailure {
        ReadFailure::Failed {
            kind: FailureKind::Client,
            code: None,
            message: "the request task panicked".to_string(),
            retry_after: None,
        }
    }

    /// No answer within `limit`: retryable, as a poll's timeout is.
    pub fn timed_out(limit: std::time::Duration) -> ReadFailure {
        ReadFailure::Failed {
            kind: FailureKind::Timeout,
            code: None,
            message: format!("no answer within {}ms", limit.as_millis()),
            retry_after: None,
        }
    }

    /// The failure half of a `PollOutcome`; `None` for an observation.
    pub fn from_outcome(outcome: PollOutcome) -> Option<ReadFailure> {
        Some(match outcome {
            PollOutcome::Observed(_) => return None,
            PollOutcome::Throttled { retry_after } => ReadFailure::Throttled { retry_after },
            PollOutcome::Failed {
                kind,
                code,
                message,
                retry_after,
            } => ReadFailure::Failed {
                kind,
                code,
                message,
                retry_after,
            },
            PollOutcome::NotFound { message } => ReadFailure::NotFound { message },
            PollOutcome::Invalid { message } => ReadFailure::Invalid { message },
            PollOutcome::AccessDenied { code, message } => {
                ReadFailure::AccessDenied { code, message }
            }
        })
    }

    /// The server's hint of when to come back, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ReadFailure::Throttled { retry_after } | ReadFailure::Failed { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// For people: `throttled`, `server: InternalServerException: oops`,
/// `access denied: AccessDeniedException: ...`.
impl fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadFailure::Throttled { .. } => f.write_str("throttled"),
            ReadFailure::Failed {
                kind,
                code: Some(code),
                message,
                ..
            } => write!(f, "{}: {code}: {message}", kind.as_str()),
            ReadFailure::Failed { kind, message, .. } => write!(f, "{}: {message}", kind.as_str()),
            ReadFailure::NotFound { message } => write!(f, "not found: {message}"),
            ReadFailure::Invalid { message } => write!(f, "invalid: {message}"),
            ReadFailure::AccessDenied { code, message } => {
                write!(f, "access denied: {code}: {message}")
            }
        }
    }
}
