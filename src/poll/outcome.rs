//! What one GetFlowExecution attempt told us, as plain data. Built by
//! `poll::client` (or a test's scripted fetcher), read by the daemon, the
//! scheduler and the transition tracker. No SDK types leak past this point.

use std::fmt;
use std::time::{Duration, SystemTime};

/// An execution's status as the API spells it. A status the SDK does not
/// know (some emulators answer `InProgress`) is carried through raw and is
/// never terminal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
    Other(String),
}

impl Status {
    /// Parses the API's string; anything unknown becomes `Other`.
    pub fn parse(s: &str) -> Status {
        match s {
            "Running" => Status::Running,
            "Succeeded" => Status::Succeeded,
            "Failed" => Status::Failed,
            "TimedOut" => Status::TimedOut,
            "Aborted" => Status::Aborted,
            other => Status::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Status::Running => "Running",
            Status::Succeeded => "Succeeded",
            Status::Failed => "Failed",
            Status::TimedOut => "TimedOut",
            Status::Aborted => "Aborted",
            Status::Other(s) => s,
        }
    }

    /// A terminal status is final: nothing after it is a transition.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Failed | Status::TimedOut | Status::Aborted
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a terminal response's `errors` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    pub error: String,
    pub message: String,
    pub node: Option<String>,
}

/// A successful GetFlowExecution response.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub status: Status,
    pub execution_arn: Option<String>,
    pub flow_version: Option<String>,
    pub started_at: Option<SystemTime>,
    pub ended_at: Option<SystemTime>,
    pub errors: Vec<NodeError>,
}

/// Why a retryable attempt failed; `as_str` is the contract's `error_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// HTTP 5xx, or the service's InternalServerException.
    Server,
    /// The per-attempt timeout (`request_timeout`) ran out.
    Timeout,
    /// Connecting, or the connection broke mid-response.
    Connection,
    /// A response we could not parse (truncated, not JSON, missing fields).
    Unparsable,
    /// Any other 4xx the API does not document for this call: retried with
    /// backoff rather than guessed at.
    Client,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Server => "server",
            FailureKind::Timeout => "timeout",
            FailureKind::Connection => "connection",
            FailureKind::Unparsable => "unparsable",
            FailureKind::Client => "client",
        }
    }
}

/// What happened on one attempt. Failures the service is expected to send
/// are data here, not errors.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    Observed(Observation),
    /// `ThrottlingException` or HTTP 429, with any `Retry-After` /
    /// `x-amz-retry-after` hint.
    Throttled {
        retry_after: Option<Duration>,
    },
    /// A retryable failure.
    Failed {
        kind: FailureKind,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// `ResourceNotFoundException`: retried for a grace period, then abandoned.
    NotFound {
        message: String,
    },
    /// `ValidationException`: abandoned at once.
    Invalid {
        message: String,
    },
    /// `AccessDeniedException` (or credentials the service refused): retried
    /// at `interval_max` until `max_watch`.
    AccessDenied {
        code: String,
        message: String,
    },
}
