//! The contract's event vocabulary. A stage builds an `Event` value and
//! `emit` writes it through `tracing` (target `flowwatch`); `init` installs
//! the subscriber whose formatter (`format`) turns each record into one flat
//! JSON line, or one readable text line, on standard output.

pub mod format;
pub mod text;

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};

use crate::config::LogSettings;
use format::LineFormat;
use text::TextStyle;

/// The target of every contract event, and the prefix `[log] level` applies to.
pub const TARGET: &str = "flowwatch";

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
    /// `execution.node_failure` (WARN): one per node failure event of an
    /// execution that ended `Failed`, `TimedOut` or `Aborted` (issue 9).
    NodeFailure {
        subject: Subject<'a>,
        node: &'a str,
        error_code: &'a str,
        error_message: &'a str,
        /// RFC 3339, UTC; absent when the event had no timestamp.
        event_time: Option<&'a str>,
    },
    /// `execution.flow_failure` (WARN): one per flow failure event.
    FlowFailure {
        subject: Subject<'a>,
        error_code: &'a str,
        error_message: &'a str,
        event_time: Option<&'a str>,
    },
    /// `execution.details_unavailable` (WARN): the failure details could not
    /// be fetched (`access_denied`, `invalid`, `retries_exhausted`), or not
    /// all of them (`max_pages`, after the events it got); once.
    DetailsUnavailable {
        subject: Subject<'a>,
        reason: &'a str,
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
        /// The settings keys that changed, as `table.key` (issue 7.2).
        changed: &'a [&'a str],
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
    /// `ha.leading` (INFO): this instance holds the lease and polls.
    HaLeading { identity: &'a str },
    /// `ha.standby` (INFO): this instance does not poll; `leader` is the
    /// holder when known.
    HaStandby {
        identity: &'a str,
        leader: Option<&'a str>,
    },
    /// `daemon.stopping` (INFO)
    Stopping { watches_left: usize },
    /// `daemon.stopped` (INFO)
    Stopped { watches_left: usize },
}

/// Writes one event about an execution: the subject's fields (`execution_arn`
/// when known, `flow`, `alias`, `execution`, `region`, `labels` when any),
/// then the event's own fields and its message.
macro_rules! about {
    ($level:ident, $subject:expr, $($rest:tt)+) => {{
        let subject: &Subject<'_> = $subject;
        let labels = labels_json(subject.labels);
        tracing::$level!(
            target: TARGET,
            execution_arn = subject.execution_arn,
            flow = subject.flow,
            alias = subject.alias,
            execution = subject.execution,
            region = subject.region,
            labels = labels.as_deref(),
            $($rest)+
        )
    }};
}

/// Writes one event. The only place an `event = "…"` name appears.
/// Optional fields that are `None` are absent from the record, and so are
/// `execution_arn` when unknown and `labels` when the watch has none.
pub fn emit(event: &Event<'_>) {
    match event {
        Event::DaemonStarted { watches, version } => tracing::info!(
            target: TARGET,
            event = "daemon.started",
            watches,
            version,
            "daemon started"
        ),
        Event::WatchAdded { subject, source } => about!(
            info,
            subject,
            event = "watch.added",
            source = %source.display(),
            "watch added"
        ),
        Event::WatchRemoved { subject } => {
            about!(info, subject, event = "watch.removed", "watch removed")
        }
        Event::Transition {
            subject,
            transition_id,
            from,
            to,
            terminal,
            flow_version,
            started_at,
            ended_at,
            detect_lag_ms,
            polls,
            watched_ms,
        } => about!(
            info,
            subject,
            event = "execution.transition",
            transition_id,
            from,
            to,
            terminal,
            flow_version,
            started_at,
            ended_at,
            detect_lag_ms,
            polls,
            watched_ms,
            "execution changed status"
        ),
        Event::ExecutionError {
            subject,
            error,
            error_message,
            node,
        } => about!(
            warn,
            subject,
            event = "execution.error",
            error,
            error_message,
            node,
            "execution reported an error"
        ),
        Event::NodeFailure {
            subject,
            node,
            error_code,
            error_message,
            event_time,
        } => about!(
            warn,
            subject,
            event = "execution.node_failure",
            node,
            error_code,
            error_message,
            event_time,
            "a node of the execution failed"
        ),
        Event::FlowFailure {
            subject,
            error_code,
            error_message,
            event_time,
        } => about!(
            warn,
            subject,
            event = "execution.flow_failure",
            error_code,
            error_message,
            event_time,
            "the execution failed"
        ),
        Event::DetailsUnavailable { subject, reason } => about!(
            warn,
            subject,
            event = "execution.details_unavailable",
            reason,
            "failure details unavailable"
        ),
        Event::StaleStatus {
            subject,
            status,
            seen,
        } => about!(
            warn,
            subject,
            event = "execution.stale",
            status,
            seen,
            "stale status after a terminal one ignored"
        ),
        Event::Throttled {
            subject,
            retry_in_ms,
            rate_limit,
        } => about!(
            warn,
            subject,
            event = "poll.throttled",
            retry_in_ms,
            rate_limit,
            "request throttled"
        ),
        Event::PollFailed {
            subject,
            error_kind,
            error_code,
            error_message,
            retry_in_ms,
        } => {
            // The contract: access denied is logged at ERROR each time; other
            // retryable failures at WARN. Levels are static in `tracing`.
            macro_rules! poll_failed {
                ($level:ident) => {
                    about!(
                        $level,
                        subject,
                        event = "poll.failed",
                        error_kind,
                        error_code,
                        error_message,
                        retry_in_ms,
                        "poll failed"
                    )
                };
            }
            if *error_kind == "access_denied" {
                poll_failed!(error)
            } else {
                poll_failed!(warn)
            }
        }
        Event::Abandoned { subject, reason } => about!(
            error,
            subject,
            event = "watch.abandoned",
            reason,
            "watch abandoned without a terminal status"
        ),
        Event::Reloaded {
            added,
            removed,
            watches,
            changed,
        } => tracing::info!(
            target: TARGET,
            event = "daemon.reloaded",
            added,
            removed,
            watches,
            // A JSON array string, written back as an array (like `labels`).
            changed = serde_json::to_string(changed).unwrap_or_default().as_str(),
            "configuration reloaded"
        ),
        Event::ReloadFailed { error } => tracing::error!(
            target: TARGET,
            event = "daemon.reload_failed",
            error,
            "reload rejected, the old configuration stays in force"
        ),
        Event::StateSetAside {
            path,
            moved_to,
            error,
        } => tracing::error!(
            target: TARGET,
            event = "state.set_aside",
            path = %path.display(),
            moved_to = %moved_to.display(),
            error,
            "unreadable state file set aside, starting fresh"
        ),
        Event::HaLeading { identity } => tracing::info!(
            target: TARGET,
            event = "ha.leading",
            identity,
            leader = identity,
            "this instance leads and polls"
        ),
        Event::HaStandby { identity, leader } => tracing::info!(
            target: TARGET,
            event = "ha.standby",
            identity,
            leader,
            "this instance stands by"
        ),
        Event::Stopping { watches_left } => tracing::info!(
            target: TARGET,
            event = "daemon.stopping",
            watches_left,
            "daemon stopping"
        ),
        Event::Stopped { watches_left } => tracing::info!(
            target: TARGET,
            event = "daemon.stopped",
            watches_left,
            "daemon stopped"
        ),
    }
}

/// The labels as one JSON object string, which the formatter writes back as
/// the `labels` object (field names are static in `tracing`, label keys are
/// not); `None` when there are none, so the field is absent.
fn labels_json(labels: &BTreeMap<String, String>) -> Option<String> {
    if labels.is_empty() {
        return None;
    }
    serde_json::to_string(labels).ok()
}

#[derive(Debug, thiserror::Error)]
#[error("cannot install the log subscriber")]
pub struct InitError(#[source] TryInitError);

/// Sets `[log] level` on the subscriber it came from, at once (a reload).
#[derive(Clone)]
pub struct LevelHandle(Arc<dyn Fn(tracing::Level) + Send + Sync>);

impl LevelHandle {
    pub fn set(&self, level: tracing::Level) {
        (self.0)(level);
    }
}

impl std::fmt::Debug for LevelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LevelHandle")
    }
}

/// Installs the global subscriber: records to standard output in
/// `settings.format`, flowwatch's own at `settings.level`, dependencies' at
/// `warn`. `RUST_LOG` is not read. Fails if a global subscriber is already
/// set. The handle changes the level later. Text lines are full, with the
/// level coloured when standard output is a terminal and `NO_COLOR` is
/// unset or empty.
pub fn init(settings: &LogSettings) -> Result<LevelHandle, InitError> {
    init_styled(settings, TextStyle::for_stdout())
}

/// `init`, with text lines in `style` (the demo's are brief).
pub fn init_styled(settings: &LogSettings, style: TextStyle) -> Result<LevelHandle, InitError> {
    let (subscriber, level) = reloadable_styled(settings, io::stdout, style);
    subscriber.try_init().map_err(InitError)?;
    Ok(level)
}

/// The subscriber `init` installs, writing to `writer` instead of standard
/// output: for tests, with `tracing::subscriber::with_default` or
/// `set_default`.
pub fn subscriber<W>(settings: &LogSettings, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    reloadable(settings, writer).0
}

/// `subscriber`, with a handle that changes its level. Text lines are
/// full and plain.
pub fn reloadable<W>(
    settings: &LogSettings,
    writer: W,
) -> (impl Subscriber + Send + Sync + 'static, LevelHandle)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    reloadable_styled(settings, writer, TextStyle::default())
}

fn reloadable_styled<W>(
    settings: &LogSettings,
    writer: W,
    style: TextStyle,
) -> (impl Subscriber + Send + Sync + 'static, LevelHandle)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let targets = |level: tracing::Level| {
        Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target(TARGET, level)
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(targets(settings.level));
    let lines = tracing_subscriber::fmt::layer()
        .event_format(LineFormat::styled(settings.format, style))
        .with_writer(writer);
    let level = LevelHandle(Arc::new(move |level| {
        // Fails only once the subscriber is gone: nothing left to set.
        let _ = handle.reload(targets(level));
    }));
    (
        tracing_subscriber::registry().with(filter).with(lines),
        level,
    )
}

#[cfg(test)]
mod capture;

#[cfg(test)]
mod tests {
    use super::capture::Capture;
    use super::*;
    use crate::config::LogFormat;
    use serde_json::{Value, json};
    use std::collections::BTreeSet;
    use tracing::Level;

    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001";
    const HEADER: [&str; 4] = ["timestamp", "level", "event", "message"];
    const SUBJECT: [&str; 6] = [
        "execution_arn",
        "flow",
        "alias",
        "execution",
        "region",
        "labels",
    ];

    fn settings(format: LogFormat, level: Level) -> LogSettings {
        LogSettings { format, level }
    }

    /// Runs `f` under a capturing subscriber and returns what it wrote.
    fn captured(settings: LogSettings, f: impl FnOnce()) -> Capture {
        let capture = Capture::new();
        tracing::subscriber::with_default(subscriber(&settings, capture.clone()), f);
        capture
    }

    /// Emits `event` as JSON at `info` and returns its one line, parsed.
    fn line_of(event: &Event<'_>) -> Value {
        let capture = captured(settings(LogFormat::Json, Level::INFO), || emit(event));
        let text = capture.text();
        assert_eq!(text.lines().count(), 1, "output: {text:?}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"))
    }

    fn team_search() -> BTreeMap<String, String> {
        BTreeMap::from([("team".to_owned(), "search".to_owned())])
    }

    fn subject(labels: &BTreeMap<String, String>) -> Subject<'_> {
        Subject {
            execution_arn: Some(ARN),
            flow: "FLOW123456",
            alias: "ALIAS12345",
            execution: "run-0001",
            region: "us-east-1",
            labels,
        }
    }

    /// Asserts the line's keys are exactly the header, then `groups`.
    fn assert_keys(line: &Value, groups: &[&[&str]]) {
        let seen: BTreeSet<&str> = line
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"))
            .keys()
            .map(String::as_str)
            .collect();
        let expected: BTreeSet<&str> = HEADER
            .iter()
            .chain(groups.iter().flat_map(|g| g.iter()))
            .copied()
            .collect();
        assert_eq!(seen, expected, "line: {line}");
    }

    fn assert_header(line: &Value, event: &str, level: &str) {
        assert_eq!(line["event"], event, "line: {line}");
        assert_eq!(line["level"], level, "line: {line}");
        let message = line["message"].as_str().expect("message is a string");
        assert!(!message.is_empty(), "line: {line}");
        assert_eq!(message, message.to_lowercase(), "line: {line}");
    }

    fn assert_subject(line: &Value) {
        assert_eq!(line["execution_arn"], ARN);
        assert_eq!(line["flow"], "FLOW123456");
        assert_eq!(line["alias"], "ALIAS12345");
        assert_eq!(line["execution"], "run-0001");
        assert_eq!(line["region"], "us-east-1");
        assert_eq!(line["labels"], json!({"team": "search"}));
    }

    #[test]
    fn daemon_started_carries_the_watch_count_and_version() {
        let line = line_of(&Event::DaemonStarted {
            watches: 12,
            version: "0.1.0",
        });
        assert_header(&line, "daemon.started", "INFO");
        assert_keys(&line, &[&["watches", "version"]]);
        assert_eq!(line["watches"], 12);
        assert_eq!(line["version"], "0.1.0");
    }

    #[test]
    fn watch_added_carries_the_subject_and_its_source_file() {
        let labels = team_search();
        let line = line_of(&Event::WatchAdded {
            subject: subject(&labels),
            source: Path::new("/etc/flowwatch/watches.d/search.toml"),
        });
        assert_header(&line, "watch.added", "INFO");
        assert_keys(&line, &[&SUBJECT, &["source"]]);
        assert_subject(&line);
        assert_eq!(line["source"], "/etc/flowwatch/watches.d/search.toml");
    }

    #[test]
    fn watch_removed_carries_only_the_subject() {
        let labels = team_search();
        let line = line_of(&Event::WatchRemoved {
            subject: subject(&labels),
        });
        assert_header(&line, "watch.removed", "INFO");
        assert_keys(&line, &[&SUBJECT]);
        assert_subject(&line);
    }

    #[test]
    fn a_first_observation_has_no_from_no_end_and_no_lag() {
        // Also: no labels and no known ARN, so neither field appears.
        let labels = BTreeMap::new();
        let line = line_of(&Event::Transition {
            subject: Subject {
                execution_arn: None,
                ..subject(&labels)
            },
            transition_id: "t-1",
            from: None,
            to: "Running",
            terminal: false,
            flow_version: Some("3"),
            started_at: Some("2026-11-25T10:00:00Z"),
            ended_at: None,
            detect_lag_ms: None,
            polls: 1,
            watched_ms: 0,
        });
        assert_header(&line, "execution.transition", "INFO");
        assert_keys(
            &line,
            &[
                &["flow", "alias", "execution", "region"],
                &[
                    "transition_id",
                    "to",
                    "terminal",
                    "flow_version",
                    "started_at",
                ],
                &["polls", "watched_ms"],
            ],
        );
        assert_eq!(line["to"], "Running");
        assert_eq!(line["terminal"], false);
        assert_eq!(line["polls"], 1);
        assert_eq!(line["watched_ms"], 0);
    }

    #[test]
    fn a_terminal_transition_carries_every_field_with_its_type() {
        let labels = team_search();
        let line = line_of(&Event::Transition {
            subject: subject(&labels),
            transition_id: "5f1c0a",
            from: Some("Running"),
            to: "Succeeded",
            terminal: true,
            flow_version: Some("3"),
            started_at: Some("2026-11-25T10:00:00Z"),
            ended_at: Some("2026-11-25T10:10:40Z"),
            detect_lag_ms: Some(1123),
            polls: 17,
            watched_ms: 641_123,
        });
        assert_header(&line, "execution.transition", "INFO");
        assert_keys(
            &line,
            &[
                &SUBJECT,
                &["transition_id", "from", "to", "terminal", "flow_version"],
                &[
                    "started_at",
                    "ended_at",
                    "detect_lag_ms",
                    "polls",
                    "watched_ms",
                ],
            ],
        );
        assert_subject(&line);
        assert_eq!(line["transition_id"], "5f1c0a");
        assert_eq!(line["from"], "Running");
        assert_eq!(line["to"], "Succeeded");
        assert_eq!(line["terminal"], true);
        assert_eq!(line["flow_version"], "3");
        assert_eq!(line["started_at"], "2026-11-25T10:00:00Z");
        assert_eq!(line["ended_at"], "2026-11-25T10:10:40Z");
        assert_eq!(line["detect_lag_ms"], 1123);
        assert_eq!(line["polls"], 17);
        assert_eq!(line["watched_ms"], 641_123);
    }

    #[test]
    fn an_execution_error_is_a_warning_naming_its_node() {
        let labels = team_search();
        let line = line_of(&Event::ExecutionError {
            subject: subject(&labels),
            error: "ExecutionTimedOut",
            error_message: "node timed out",
            node: Some("Prompt_1"),
        });
        assert_header(&line, "execution.error", "WARN");
        assert_keys(&line, &[&SUBJECT, &["error", "error_message", "node"]]);
        assert_subject(&line);
        assert_eq!(line["error"], "ExecutionTimedOut");
        assert_eq!(line["error_message"], "node timed out");
        assert_eq!(line["node"], "Prompt_1");
    }

    #[test]
    fn an_execution_error_without_a_node_has_no_node_field() {
        let labels = team_search();
        let line = line_of(&Event::ExecutionError {
            subject: subject(&labels),
            error: "InternalError",
            error_message: "boom",
            node: None,
        });
        assert_keys(&line, &[&SUBJECT, &["error", "error_message"]]);
    }

    #[test]
    fn a_node_failure_is_a_warning_with_its_node_code_message_and_time() {
        let labels = team_search();
        let line = line_of(&Event::NodeFailure {
            subject: subject(&labels),
            node: "Prompt_1",
            error_code: "BAD_GATEWAY",
            error_message: "model unavailable",
            event_time: Some("2026-11-25T10:10:40.000Z"),
        });
        assert_header(&line, "execution.node_failure", "WARN");
        assert_keys(
            &line,
            &[
                &SUBJECT,
                &["node", "error_code", "error_message", "event_time"],
            ],
        );
        assert_subject(&line);
        assert_eq!(line["node"], "Prompt_1");
        assert_eq!(line["error_code"], "BAD_GATEWAY");
        assert_eq!(line["event_time"], "2026-11-25T10:10:40.000Z");
    }

    #[test]
    fn a_flow_failure_is_a_warning_without_a_node() {
        let labels = team_search();
        let line = line_of(&Event::FlowFailure {
            subject: subject(&labels),
            error_code: "NODE_EXECUTION_FAILED",
            error_message: "a node failed",
            event_time: None,
        });
        assert_header(&line, "execution.flow_failure", "WARN");
        assert_keys(&line, &[&SUBJECT, &["error_code", "error_message"]]);
        assert_eq!(line["error_code"], "NODE_EXECUTION_FAILED");
    }

    #[test]
    fn unavailable_details_are_a_warning_with_the_reason() {
        let labels = team_search();
        let line = line_of(&Event::DetailsUnavailable {
            subject: subject(&labels),
            reason: "access_denied",
        });
        assert_header(&line, "execution.details_unavailable", "WARN");
        assert_keys(&line, &[&SUBJECT, &["reason"]]);
        assert_eq!(line["reason"], "access_denied");
    }

    #[test]
    fn a_stale_status_is_a_warning_with_both_statuses() {
        let labels = team_search();
        let line = line_of(&Event::StaleStatus {
            subject: subject(&labels),
            status: "Running",
            seen: "Succeeded",
        });
        assert_header(&line, "execution.stale", "WARN");
        assert_keys(&line, &[&SUBJECT, &["status", "seen"]]);
        assert_subject(&line);
        assert_eq!(line["status"], "Running");
        assert_eq!(line["seen"], "Succeeded");
    }

    #[test]
    fn throttling_carries_the_adapted_rate_as_a_number() {
        let labels = team_search();
        let line = line_of(&Event::Throttled {
            subject: subject(&labels),
            retry_in_ms: 4000,
            rate_limit: 2.5,
        });
        assert_header(&line, "poll.throttled", "WARN");
        assert_keys(&line, &[&SUBJECT, &["retry_in_ms", "rate_limit"]]);
        assert_subject(&line);
        assert_eq!(line["retry_in_ms"], 4000);
        assert_eq!(line["rate_limit"].as_f64(), Some(2.5), "line: {line}");
    }

    #[test]
    fn a_retryable_poll_failure_is_a_warning() {
        let labels = team_search();
        let line = line_of(&Event::PollFailed {
            subject: subject(&labels),
            error_kind: "server",
            error_code: Some("InternalServerException"),
            error_message: "try again",
            retry_in_ms: 8000,
        });
        assert_header(&line, "poll.failed", "WARN");
        let fields = ["error_kind", "error_code", "error_message", "retry_in_ms"];
        assert_keys(&line, &[&SUBJECT, &fields]);
        assert_subject(&line);
        assert_eq!(line["error_kind"], "server");
        assert_eq!(line["error_code"], "InternalServerException");
        assert_eq!(line["error_message"], "try again");
        assert_eq!(line["retry_in_ms"], 8000);
    }

    #[test]
    fn a_poll_failure_without_a_service_code_has_no_error_code() {
        let labels = team_search();
        let line = line_of(&Event::PollFailed {
            subject: subject(&labels),
            error_kind: "timeout",
            error_code: None,
            error_message: "request timed out",
            retry_in_ms: 2000,
        });
        assert_header(&line, "poll.failed", "WARN");
        assert_keys(
            &line,
            &[&SUBJECT, &["error_kind", "error_message", "retry_in_ms"]],
        );
    }

    #[test]
    fn an_access_denied_poll_failure_is_an_error() {
        let labels = team_search();
        let line = line_of(&Event::PollFailed {
            subject: subject(&labels),
            error_kind: "access_denied",
            error_code: Some("AccessDeniedException"),
            error_message: "not authorized",
            retry_in_ms: 60_000,
        });
        assert_header(&line, "poll.failed", "ERROR");
        let fields = ["error_kind", "error_code", "error_message", "retry_in_ms"];
        assert_keys(&line, &[&SUBJECT, &fields]);
        assert_eq!(line["error_kind"], "access_denied");
        assert_eq!(line["retry_in_ms"], 60_000);
    }

    #[test]
    fn an_abandoned_watch_is_an_error_with_its_reason() {
        let labels = team_search();
        let line = line_of(&Event::Abandoned {
            subject: subject(&labels),
            reason: "max_watch",
        });
        assert_header(&line, "watch.abandoned", "ERROR");
        assert_keys(&line, &[&SUBJECT, &["reason"]]);
        assert_subject(&line);
        assert_eq!(line["reason"], "max_watch");
    }

    #[test]
    fn a_reload_carries_added_removed_and_watches() {
        let line = line_of(&Event::Reloaded {
            added: 2,
            removed: 1,
            watches: 9,
            changed: &["poll.rate_limit", "log.level"],
        });
        assert_header(&line, "daemon.reloaded", "INFO");
        assert_keys(&line, &[&["added", "removed", "watches", "changed"]]);
        assert_eq!(line["changed"], json!(["poll.rate_limit", "log.level"]));
        assert_eq!(line["added"], 2);
        assert_eq!(line["removed"], 1);
        assert_eq!(line["watches"], 9);
    }

    #[test]
    fn leadership_changes_name_this_instance_and_the_leader() {
        let leading = line_of(&Event::HaLeading { identity: "a:1" });
        assert_header(&leading, "ha.leading", "INFO");
        assert_keys(&leading, &[&["identity", "leader"]]);
        assert_eq!(leading["leader"], "a:1");
        let standby = line_of(&Event::HaStandby {
            identity: "b:2",
            leader: Some("a:1"),
        });
        assert_header(&standby, "ha.standby", "INFO");
        assert_eq!(standby["identity"], "b:2");
        assert_eq!(standby["leader"], "a:1");
    }

    #[test]
    fn a_rejected_reload_is_an_error_with_the_reason() {
        let line = line_of(&Event::ReloadFailed {
            error: "flowwatch.toml:3:1: poll.rate: unknown key",
        });
        assert_header(&line, "daemon.reload_failed", "ERROR");
        assert_keys(&line, &[&["error"]]);
        assert_eq!(line["error"], "flowwatch.toml:3:1: poll.rate: unknown key");
    }

    #[test]
    fn a_state_file_set_aside_is_an_error_naming_both_paths() {
        let line = line_of(&Event::StateSetAside {
            path: Path::new("/var/lib/flowwatch/state.json"),
            moved_to: Path::new("/var/lib/flowwatch/state.json.corrupt"),
            error: "expected value at line 1 column 1",
        });
        assert_header(&line, "state.set_aside", "ERROR");
        assert_keys(&line, &[&["path", "moved_to", "error"]]);
        assert_eq!(line["path"], "/var/lib/flowwatch/state.json");
        assert_eq!(line["moved_to"], "/var/lib/flowwatch/state.json.corrupt");
        assert_eq!(line["error"], "expected value at line 1 column 1");
    }

    #[test]
    fn stopping_and_stopped_carry_the_watches_left() {
        let stopping = line_of(&Event::Stopping { watches_left: 3 });
        assert_header(&stopping, "daemon.stopping", "INFO");
        assert_keys(&stopping, &[&["watches_left"]]);
        assert_eq!(stopping["watches_left"], 3);

        let stopped = line_of(&Event::Stopped { watches_left: 0 });
        assert_header(&stopped, "daemon.stopped", "INFO");
        assert_keys(&stopped, &[&["watches_left"]]);
        assert_eq!(stopped["watches_left"], 0);
    }

    #[test]
    fn the_timestamp_is_rfc3339_utc_with_milliseconds() {
        let line = line_of(&Event::Stopped { watches_left: 0 });
        let timestamp = line["timestamp"].as_str().expect("timestamp is a string");
        assert!(humantime::parse_rfc3339(timestamp).is_ok(), "{timestamp}");
        // e.g. 2026-11-25T10:10:41.123Z
        assert_eq!(timestamp.len(), 24, "{timestamp}");
        assert_eq!(&timestamp[19..20], ".", "{timestamp}");
        assert!(timestamp.ends_with('Z'), "{timestamp}");
    }

    #[test]
    fn text_format_is_one_line_leading_with_the_change_then_key_value_pairs() {
        let labels = team_search();
        let capture = captured(settings(LogFormat::Text, Level::INFO), || {
            emit(&Event::Transition {
                subject: subject(&labels),
                transition_id: "5f1c0a",
                from: Some("Running"),
                to: "Succeeded",
                terminal: true,
                flow_version: None,
                started_at: None,
                ended_at: None,
                detect_lag_ms: None,
                polls: 4,
                watched_ms: 1500,
            })
        });
        let text = capture.text();
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(text.ends_with('\n'), "{text:?}");
        let line = text.trim_end();
        assert!(
            line.contains(" INFO  run-0001         Running → Succeeded  after 1.5 s, 4 polls  "),
            "{line}"
        );
        for pair in [
            "flow=FLOW123456",
            "terminal=true",
            "execution=run-0001",
            "team=search",
        ] {
            assert!(line.split(' ').any(|word| word == pair), "{pair} in {line}");
        }
        assert!(!line.contains("ended_at"), "{line}");
    }

    #[test]
    fn a_diagnostic_without_an_event_field_is_a_log_record_with_its_target() {
        let capture = captured(settings(LogFormat::Json, Level::DEBUG), || {
            tracing::debug!(watch = "run-0001", delay_ms = 2000u64, "poll scheduled");
        });
        let lines = capture.json_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["event"], "log");
        assert_eq!(line["level"], "DEBUG");
        assert_eq!(line["message"], "poll scheduled");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["watch"], "run-0001");
        assert_eq!(line["delay_ms"], 2000);
    }

    #[test]
    fn the_info_level_drops_flowwatch_debug_records() {
        let capture = captured(settings(LogFormat::Json, Level::INFO), || {
            tracing::debug!("dropped");
            tracing::info!("kept");
        });
        let messages: Vec<Value> = capture
            .json_lines()
            .into_iter()
            .map(|l| l["message"].clone())
            .collect();
        assert_eq!(messages, [json!("kept")]);
    }

    #[test]
    fn dependencies_stay_at_warn_whatever_our_level() {
        let capture = captured(settings(LogFormat::Json, Level::TRACE), || {
            tracing::info!(target: "hyper::proto", "dropped");
            tracing::warn!(target: "hyper::proto", "kept");
            tracing::trace!("ours, kept");
        });
        let lines = capture.json_lines();
        let messages: Vec<&Value> = lines.iter().map(|l| &l["message"]).collect();
        assert_eq!(
            messages,
            [&json!("kept"), &json!("ours, kept")],
            "{lines:?}"
        );
        assert_eq!(lines[0]["target"], "hyper::proto");
    }

    #[test]
    fn the_error_level_drops_our_warnings() {
        let labels = team_search();
        let capture = captured(settings(LogFormat::Json, Level::ERROR), || {
            emit(&Event::Abandoned {
                subject: subject(&labels),
                reason: "invalid",
            });
            emit(&Event::Throttled {
                subject: subject(&labels),
                retry_in_ms: 1,
                rate_limit: 1.0,
            });
        });
        let events: Vec<Value> = capture
            .json_lines()
            .into_iter()
            .map(|l| l["event"].clone())
            .collect();
        assert_eq!(events, [json!("watch.abandoned")]);
    }

    #[test]
    fn quotes_and_newlines_stay_valid_json_on_one_line() {
        let nasty = "say \"hi\"\nthen\tleave \\ \u{1b}[31m";
        let capture = captured(settings(LogFormat::Json, Level::INFO), || {
            emit(&Event::ReloadFailed { error: nasty });
        });
        let text = capture.text();
        assert_eq!(text.lines().count(), 1, "{text:?}");
        let line: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert_eq!(line["error"], nasty);
    }

    #[test]
    fn labels_with_awkward_keys_and_values_round_trip_as_an_object() {
        let labels = BTreeMap::from([
            ("team".to_owned(), "search \"core\"".to_owned()),
            ("cost-center".to_owned(), "42".to_owned()),
        ]);
        let line = line_of(&Event::WatchRemoved {
            subject: subject(&labels),
        });
        assert_eq!(
            line["labels"],
            json!({"team": "search \"core\"", "cost-center": "42"})
        );
    }

    #[test]
    fn a_field_cannot_overwrite_the_line_header() {
        let capture = captured(settings(LogFormat::Json, Level::INFO), || {
            tracing::info!(level = "fake", timestamp = 1u64, target = "x", "clash");
        });
        let text = capture.text();
        let line: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["field.level"], "fake");
        assert_eq!(line["field.timestamp"], 1);
        assert_eq!(line["target"], module_path!());
        // Each key once: a duplicate would have been silently merged by the parser.
        assert_eq!(text.matches("\"level\":").count(), 1, "{text}");
    }

    #[test]
    fn init_installs_the_global_subscriber_once() {
        // The only test that touches the global default; the others use
        // scoped subscribers, which take precedence over it.
        let settings = LogSettings::default();
        assert!(init(&settings).is_ok());
        let second = init(&settings).expect_err("a global subscriber is already set");
        assert_eq!(second.to_string(), "cannot install the log subscriber");
    }

    #[test]
    fn non_finite_rates_and_error_chains_stay_readable() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read state")]
        struct ReadState(#[source] std::io::Error);
        let err = ReadState(std::io::Error::other("disk on fire"));
        let capture = captured(settings(LogFormat::Json, Level::INFO), || {
            let err: &(dyn std::error::Error + 'static) = &err;
            tracing::info!(rate = f64::NAN, error = err, "odd values");
        });
        let lines = capture.json_lines();
        assert_eq!(lines[0]["rate"], "NaN", "{lines:?}");
        assert_eq!(lines[0]["error"], "cannot read state: disk on fire");
    }
}
