//! The scheduler's vocabulary: what a poll told it (`Outcome`), and what it
//! decided (`Next`, with a `Reason` when it gave a watch up). Plain data.

use std::time::Duration;
use tokio::time::Instant;

/// What a poll told the scheduler (the daemon derives it from the
/// `PollOutcome` and the transition tracker).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Same non-terminal status as before: the no-change delay grows.
    Unchanged,
    /// A new non-terminal status: the no-change delay resets.
    Changed,
    /// A terminal status: the watch is done.
    Terminal,
    Throttled {
        retry_after: Option<Duration>,
    },
    Failed {
        retry_after: Option<Duration>,
    },
    NotFound,
    Invalid,
    AccessDenied,
}

/// Why a watch stopped without a terminal status (the contract's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotFound,
    Invalid,
    AccessDenied,
    MaxWatch,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotFound => "not_found",
            Reason::Invalid => "invalid",
            Reason::AccessDenied => "access_denied",
            Reason::MaxWatch => "max_watch",
        }
    }
}

/// What to do with a watch after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    PollAt(Instant),
    /// Terminal: the scheduler has forgotten the watch.
    Done,
    /// The scheduler has forgotten the watch.
    Abandon(Reason),
}
