//! The contract's event vocabulary. A stage builds an `Event` value and
//! `emit` writes it through `tracing`; the formatter in `format` turns each
//! record into one flat JSON line (or a readable text line).
//! (Skeleton: the event helper fills in `emit`, `init` and `format`.)

pub mod format;

use std::collections::BTreeMap;
use std::path::Path;

/// The execution an event is about: the fields every execution event carries.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub execution_arn: Option<&'a str>,
    pub flow: &'a str,
    pub alias: &'a str,
    pub execution: &'a str,
    pub region: &'a str,
    /// Written as the `labels` object; absent when empty.
    pub labels: &'a BTreeMap<String, String>,
}

/// Every contract event, with exactly the contract's fields.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// `daemon.started` (INFO)
    DaemonStarted { watches: usize, version: &'a str },
    /// `watch.added` (INFO)
    WatchAdded {
        subject: Subject<'a>,
        source: &'a Path,
    },
    /// `watch.removed` (INFO)
    WatchRemoved { subject: Subject<'a> },
    /// `execution.transition` (INFO)
    Transition {
        subject: Subject<'a>,
        transition_id: &'a str,
        from: Option<&'a str>,
        to: &'a str,
        terminal: bool,
        flow_version: Option<&'a str>,
        /// RFC 3339, UTC.
        started_at: Option<&'a str>,
        ended_at: Option<&'a str>,
        detect_lag_ms: Option<u64>,
        polls: u64,
        watched_ms: u64,
    },
    /// `execution.error` (WARN), once per entry of a terminal response's `errors`.
    ExecutionError {
        subject: Subject<'a>,
        error: &'a str,
        error_message: &'a str,
        node: Option<&'a str>,
    },
    /// `execution.stale` (WARN): a response disagreed with a terminal status
    /// already seen; never a transition.
    StaleStatus {
        subject: Subject<'a>,
        status: &'a str,
        seen: &'a str,
    },
    /// `poll.throttled` (WARN)
    Throttled {
        subject: Subject<'a>,
        retry_in_ms: u64,
        /// The adapted rate, requests/second.
        rate_limit: f64,
    },
    /// `poll.failed`: WARN for retryable failures; ERROR for access denied
    /// (`error_kind = "access_denied"`), which is retried at `interval_max`.
    PollFailed {
        subject: Subject<'a>,
        error_kind: &'a str,
        error_code: Option<&'a str>,
        error_message: &'a str,
        retry_in_ms: u64,
    },
    /// `watch.abandoned` (ERROR)
    Abandoned {
        subject: Subject<'a>,
        reason: &'a str,
    },
    /// `daemon.reloaded` (INFO)
    Reloaded {
        added: usize,
        removed: usize,
        watches: usize,
    },
    /// `daemon.reload_failed` (ERROR)
    ReloadFailed { error: &'a str },
    /// `state.set_aside` (ERROR): a corrupt or unreadable state file was
    /// renamed to `moved_to`; the daemon starts fresh.
    StateSetAside {
        path: &'a Path,
        moved_to: &'a Path,
        error: &'a str,
    },
    /// `daemon.stopping` (INFO)
    Stopping { watches_left: usize },
    /// `daemon.stopped` (INFO)
    Stopped { watches_left: usize },
}

/// Writes one event. The only place an `event = "…"` name appears.
pub fn emit(event: &Event<'_>) {
    let _ = event;
    todo!("event helper")
}
