//! The text line, for people (`format = "text"`: the demo, `wait`, a
//! terminal). In: one record's parts from the formatter. Out: one line that
//! leads with what people look for, then the rest as `key=value` pairs:
//!
//! ```text
//! 21:04:05.123 INFO  nightly-report   Running → Succeeded  after 6.2 s, 4 polls  team=analytics …
//! ```
//!
//! - the time of day, UTC like the JSON `timestamp`, to the millisecond;
//! - the level, coloured only when standard output is a terminal and
//!   `NO_COLOR` is unset or empty (<https://no-color.org>);
//! - the execution's short name: its `name` label when it has one, else the
//!   execution id (events about no execution have none);
//! - what happened: `Running → Succeeded  after 6.2 s, 4 polls` for a
//!   transition, `throttled, retry in 400 ms, rate now 5.74 req/s`,
//!   `retrying in 1.2 s: <the service's message>` for a failed poll,
//!   `node Prompt_1 failed (INTERNAL_SERVER): <message>` for a node
//!   failure, alike for execution
//!   errors, flow failures, unavailable details, stale statuses, abandoned
//!   watches and rejected reloads, and the record's `message` for any other
//!   event;
//! - then the labels as `key=value`, the other fields, and last the
//!   execution's identity (`flow`, `alias`, `region`, `execution`,
//!   `execution_arn`). Numbers are rounded (floats to 2 decimals) and `*_ms`
//!   fields humanized without their suffix: `detect_lag=1.1s`, `retry_in=3min4s`.
//!
//! The brief style (the demo, `wait`) keeps every line within 100 columns:
//! it drops the identity and the machine details (`transition_id`,
//! `started_at`, `event_time`, …, and a `source` that is a file path;
//! `source=discovery` stays), shows labels once, on `watch.added`, and
//! cuts what is still too long with `…`: a long message first (the service's
//! own words in `poll.failed`, `execution.error`, `execution.node_failure`,
//! `execution.flow_failure`), then the end of the line. The JSON line keeps
//! every word.
//!
//! Why one file of this size: the order of a line, the phrase for each
//! event and the width rules decide together what a person sees first; the
//! phrases are many and small.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::time::SystemTime;

use serde_json::Value;
use tracing::Level;

use super::format::Record;

/// How text lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextStyle {
    /// Colour the level (ANSI escapes).
    pub colour: bool,
    /// Drop the identity and machine details: a line fits a narrow terminal.
    pub brief: bool,
}

impl TextStyle {
    /// Full lines, coloured when standard output is a terminal and
    /// `NO_COLOR` is unset or empty.
    pub fn for_stdout() -> TextStyle {
        TextStyle {
            colour: colour(
                std::io::stdout().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ),
            brief: false,
        }
    }

    /// The same, brief.
    pub fn brief(self) -> TextStyle {
        TextStyle {
            brief: true,
            ..self
        }
    }
}

/// Whether to colour: only on a terminal, and never when `NO_COLOR` is set
/// to a non-empty value. The caller passes both facts in, so tests can.
pub fn colour(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// The execution's identity, written last (full style only).
const IDENTITY: [&str; 5] = ["flow", "alias", "region", "execution", "execution_arn"];

/// Fields the brief style leaves out: for machines, or said by the head.
const DETAILS: [&str; 9] = [
    "transition_id",
    "terminal",
    "flow_version",
    "started_at",
    "ended_at",
    "detect_lag_ms",
    "source",
    "error_kind",
    "error_code",
];

/// A `source` that is not a file path (`discovery`, `api`): short, and it
/// says how the watch came, so the brief style keeps it.
fn names_no_file(key: &str, value: &Value) -> bool {
    key == "source" && value.as_str().is_some_and(|v| !v.contains('/'))
}

/// Width of the short-name column: most execution ids fit, longer ones push on.
const NAME_WIDTH: usize = 15;

/// Columns a brief line takes at most (issue 10.3: the demo and `wait` read
/// well at 100 columns), counted in characters without colour escapes.
const BRIEF_WIDTH: usize = 100;

/// Characters of the head a brief line keeps, however long its pairs.
const BRIEF_HEAD_MIN: usize = 24;

/// One record as one text line and a newline.
pub(super) fn render(record: &Record, now: SystemTime, style: TextStyle) -> String {
    let fields = Fields(&record.fields);
    let stamp = humantime::format_rfc3339_millis(now).to_string();
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`: keep `HH:MM:SS.mmm`.
    let mut line = stamp.get(11..23).unwrap_or(&stamp).to_owned();
    line.push(' ');
    push_level(&mut line, record.level, style.colour);
    if let Some(name) = fields.short_name() {
        let _ = write!(line, "{:<NAME_WIDTH$}  ", escape_controls(name));
    }
    let head = Head::of(record, &fields);
    let phrase = escape_controls(&head.phrase);

    let mut rest = String::new();
    let event = record.event.as_deref();
    if (!style.brief || event == Some("watch.added"))
        && let Some(Value::Object(labels)) = fields.get("labels")
    {
        for (key, value) in labels {
            push_pair(&mut rest, key, value);
        }
    }
    for (key, value) in &record.fields {
        let key: &str = key;
        let hidden = style.brief
            && (DETAILS.contains(&key) || head.brief_hides.contains(&key))
            && !names_no_file(key, value);
        if key == "labels" || IDENTITY.contains(&key) || head.uses.contains(&key) || hidden {
            continue;
        }
        push_pair(&mut rest, key, value);
    }
    if !style.brief {
        for key in IDENTITY {
            if let Some(value) = fields.get(key) {
                push_pair(&mut rest, key, value);
            }
        }
    }
    let pairs = if rest.is_empty() {
        0
    } else {
        1 + columns(&rest)
    };
    if style.brief {
        // A long message gives way first (its end is in the JSON line),
        // then, for very long pairs, the end of the line.
        let room = BRIEF_WIDTH
            .saturating_sub(columns(&line) + pairs)
            .max(BRIEF_HEAD_MIN);
        line.push_str(&clip(&phrase, room));
    } else {
        line.push_str(&phrase);
    }
    if !rest.is_empty() {
        line.push(' ');
        line.push_str(&rest);
    }
    if style.brief {
        line = clip(&line, BRIEF_WIDTH).into_owned();
    }
    line.push('\n');
    line
}

/// Characters of `text` a terminal shows: colour escapes take none.
fn columns(text: &str) -> usize {
    let mut count = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (false, _) => count += 1,
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    count
}

/// `text` within `max` columns: past that, cut and ended with `…`.
fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if columns(text) <= max {
        return Cow::Borrowed(text);
    }
    let mut kept = String::with_capacity(text.len());
    let mut count = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (false, _) if count + 1 >= max => break,
            (false, _) => count += 1,
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
        kept.push(c);
    }
    let kept = kept.trim_end();
    Cow::Owned(format!("{kept}…"))
}

/// The level, padded to 5 columns (the padding outside the colour).
fn push_level(line: &mut String, level: Level, colour: bool) {
    let name = level.as_str();
    let pad = " ".repeat(5usize.saturating_sub(name.len()) + 1);
    if colour {
        let code = if level == Level::ERROR {
            "31"
        } else if level == Level::WARN {
            "33"
        } else if level == Level::INFO {
            "32"
        } else if level == Level::DEBUG {
            "34"
        } else {
            "35"
        };
        let _ = write!(line, "\x1b[{code}m{name}\x1b[0m{pad}");
    } else {
        let _ = write!(line, "{name}{pad}");
    }
}

/// A record's fields, looked up by key.
struct Fields<'a>(&'a [(Cow<'static, str>, Value)]);

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Value::as_str)
    }

    fn u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    /// The `name` label when set, else the execution id.
    fn short_name(&self) -> Option<&'a str> {
        let label = match self.get("labels") {
            Some(Value::Object(labels)) => labels.get("name").and_then(Value::as_str),
            _ => None,
        };
        label
            .filter(|name| !name.is_empty())
            .or_else(|| self.str("execution"))
    }
}

/// What happened, in words, and the fields the words already say.
struct Head {
    phrase: String,
    uses: &'static [&'static str],
    /// Fields the brief style also drops for this event.
    brief_hides: &'static [&'static str],
}

impl Head {
    fn of(record: &Record, fields: &Fields<'_>) -> Head {
        let said = |phrase: String, uses| Head {
            phrase,
            uses,
            brief_hides: &[],
        };
        match record.event.as_deref() {
            Some("execution.transition") => {
                let to = fields.str("to").unwrap_or("?");
                let mut phrase = match fields.str("from") {
                    Some(from) => format!("{from} → {to}"),
                    None => format!("first seen {to}"),
                };
                let mut after = Vec::new();
                if let Some(ms) = fields.u64("watched_ms") {
                    after.push(format!("after {}", duration(ms, " ")));
                }
                if let Some(polls) = fields.u64("polls") {
                    let s = if polls == 1 { "" } else { "s" };
                    after.push(format!("{polls} poll{s}"));
                }
                if !after.is_empty() {
                    phrase.push_str("  ");
                    phrase.push_str(&after.join(", "));
                }
                said(phrase, &["from", "to", "watched_ms", "polls"])
            }
            Some("poll.throttled") => {
                let mut phrase = String::from("throttled");
                if let Some(ms) = fields.u64("retry_in_ms") {
                    let _ = write!(phrase, ", retry in {}", duration(ms, " "));
                }
                if let Some(rate) = fields.get("rate_limit").and_then(Value::as_f64) {
                    let _ = write!(phrase, ", rate now {} req/s", decimals(rate));
                }
                said(phrase, &["retry_in_ms", "rate_limit"])
            }
            Some("poll.failed") => {
                // Retry first: a service's message can be long, and the
                // line should still fit 100 columns.
                let mut phrase = match fields.u64("retry_in_ms") {
                    Some(ms) => format!("retrying in {}", duration(ms, " ")),
                    None => String::from("poll failed"),
                };
                if let Some(message) = fields.str("error_message") {
                    let _ = write!(phrase, ": {message}");
                }
                said(phrase, &["error_message", "retry_in_ms"])
            }
            Some("execution.error") => {
                let message = fields.str("error_message").unwrap_or("");
                match fields.str("node") {
                    Some(node) => Head {
                        phrase: format!("{node} failed: {message}"),
                        uses: &["node", "error_message"],
                        brief_hides: &["error"],
                    },
                    None => {
                        let error = fields.str("error").unwrap_or("error");
                        said(format!("{error}: {message}"), &["error", "error_message"])
                    }
                }
            }
            Some("execution.node_failure") => {
                // "node …" and the code: `execution.error` says "Prompt_1
                // failed: …" for the same failure, from another source.
                let node = fields.str("node").unwrap_or("?");
                let code = fields.str("error_code").unwrap_or("?");
                let message = fields.str("error_message").unwrap_or("");
                Head {
                    phrase: format!("node {node} failed ({code}): {message}"),
                    uses: &["node", "error_code", "error_message"],
                    brief_hides: &["event_time"],
                }
            }
            Some("execution.flow_failure") => {
                let code = fields.str("error_code").unwrap_or("?");
                let message = fields.str("error_message").unwrap_or("");
                Head {
                    phrase: format!("flow failed ({code}): {message}"),
                    uses: &["error_code", "error_message"],
                    brief_hides: &["event_time"],
                }
            }
            Some("execution.details_unavailable") => {
                let reason = fields.str("reason").unwrap_or("?");
                said(
                    format!("failure details unavailable: {reason}"),
                    &["reason"],
                )
            }
            Some("execution.stale") => {
                let status = fields.str("status").unwrap_or("?");
                let seen = fields.str("seen").unwrap_or("?");
                said(
                    format!("stale {status} after {seen} ignored"),
                    &["status", "seen"],
                )
            }
            Some("watch.abandoned") => {
                let reason = fields.str("reason").unwrap_or("?");
                said(
                    format!("abandoned without a terminal status: {reason}"),
                    &["reason"],
                )
            }
            Some("daemon.reload_failed") => {
                let error = fields.str("error").unwrap_or("?");
                said(format!("reload rejected: {error}"), &["error"])
            }
            _ => said(record.message.clone(), &[]),
        }
    }
}

/// A duration for people: `850 ms`, `6.2 s`, `42 s`, `3 min 4 s`,
/// `2 h 5 min`. `sep` goes between number and unit and between parts:
/// `" "` in the line's head, `""` in a `key=value` pair (`3min4s`).
pub fn duration(ms: u64, sep: &str) -> String {
    if ms < 1_000 {
        return format!("{ms}{sep}ms");
    }
    if ms < 10_000 {
        // One decimal, rounded half up in whole milliseconds.
        let tenths = (ms + 50) / 100;
        return format!("{}.{}{sep}s", tenths / 10, tenths % 10);
    }
    let secs = (ms + 500) / 1_000;
    if secs < 60 {
        return format!("{secs}{sep}s");
    }
    if secs < 3_600 {
        let (min, s) = (secs / 60, secs % 60);
        return if s == 0 {
            format!("{min}{sep}min")
        } else {
            format!("{min}{sep}min{sep}{s}{sep}s")
        };
    }
    let (h, min) = (secs / 3_600, secs % 3_600 / 60);
    if min == 0 {
        format!("{h}{sep}h")
    } else {
        format!("{h}{sep}h{sep}{min}{sep}min")
    }
}

/// A float to 2 decimals, without trailing zeros: `5.74`, `10`, `0.5`.
pub fn decimals(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// Appends ` key=value`. A `*_ms` count loses its suffix and becomes a
/// duration; a float is rounded; an object becomes `key.inner=value` pairs;
/// a string that would break the pair apart (spaces, quotes, `=`, control
/// characters, or empty) is quoted JSON-style.
fn push_pair(line: &mut String, key: &str, value: &Value) {
    if let (Some(base), Some(ms)) = (key.strip_suffix("_ms"), value.as_u64()) {
        let _ = write!(line, " {}={}", escape_controls(base), duration(ms, ""));
        return;
    }
    if let Value::Object(entries) = value {
        for (inner, value) in entries {
            push_pair(line, &format!("{key}.{inner}"), value);
        }
        return;
    }
    line.push(' ');
    line.push_str(&escape_controls(key));
    line.push('=');
    match value {
        Value::String(text) if needs_quotes(text) => line.push_str(&value.to_string()),
        Value::String(text) => line.push_str(text),
        Value::Number(number) if number.is_f64() => {
            line.push_str(&number.as_f64().map_or_else(|| number.to_string(), decimals));
        }
        other => line.push_str(&other.to_string()),
    }
}

fn needs_quotes(text: &str) -> bool {
    text.is_empty()
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'))
}

/// Keeps free text on one line: control characters become escapes.
fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001";

    fn at() -> SystemTime {
        // 2026-11-25T10:10:41.123Z
        UNIX_EPOCH + Duration::from_millis(1_795_601_441_123)
    }

    fn record(level: Level, event: &str, fields: Vec<(&'static str, Value)>) -> Record {
        Record {
            level,
            event: Some(event.to_owned()),
            message: "execution changed status".to_owned(),
            target: "flowwatch".to_owned(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (Cow::Borrowed(k), v))
                .collect(),
        }
    }

    /// The subject's fields as `about!` records them, then `rest`.
    fn about(labels: Value, rest: Vec<(&'static str, Value)>) -> Vec<(&'static str, Value)> {
        let mut fields = vec![
            ("execution_arn", json!(ARN)),
            ("flow", json!("FLOW123456")),
            ("alias", json!("ALIAS12345")),
            ("execution", json!("run-0001")),
            ("region", json!("us-east-1")),
            ("labels", labels),
        ];
        fields.extend(rest);
        fields
    }

    fn transition(labels: Value) -> Record {
        record(
            Level::INFO,
            "execution.transition",
            about(
                labels,
                vec![
                    ("transition_id", json!("5f1c0a")),
                    ("from", json!("Running")),
                    ("to", json!("Succeeded")),
                    ("terminal", json!(true)),
                    ("detect_lag_ms", json!(1123)),
                    ("polls", json!(4)),
                    ("watched_ms", json!(6_200)),
                ],
            ),
        )
    }

    fn plain() -> TextStyle {
        TextStyle::default()
    }

    #[test]
    fn a_transition_line_leads_with_time_level_name_and_the_change() {
        let line = render(&transition(json!({"team": "search"})), at(), plain());
        assert_eq!(
            line,
            format!(
                "10:10:41.123 INFO  run-0001         Running → Succeeded  after 6.2 s, 4 polls  \
                 team=search transition_id=5f1c0a terminal=true detect_lag=1.1s \
                 flow=FLOW123456 alias=ALIAS12345 region=us-east-1 execution=run-0001 \
                 execution_arn={ARN}\n"
            )
        );
    }

    #[test]
    fn a_name_label_is_the_short_name_and_labels_stay_key_value_pairs() {
        let labels = json!({"name": "nightly-report", "team": "analytics"});
        let line = render(&transition(labels), at(), plain());
        assert!(
            line.starts_with("10:10:41.123 INFO  nightly-report   Running → Succeeded  "),
            "{line}"
        );
        for pair in [
            "name=nightly-report",
            "team=analytics",
            "execution=run-0001",
        ] {
            assert!(line.split(' ').any(|word| word == pair), "{pair} in {line}");
        }
    }

    #[test]
    fn the_first_observation_says_first_seen() {
        let r = record(
            Level::INFO,
            "execution.transition",
            about(
                json!({}),
                vec![
                    ("to", json!("Running")),
                    ("polls", json!(1)),
                    ("watched_ms", json!(900)),
                ],
            ),
        );
        let line = render(&r, at(), plain().brief());
        assert_eq!(
            line,
            "10:10:41.123 INFO  run-0001         first seen Running  after 900 ms, 1 poll\n"
        );
    }

    #[test]
    fn a_throttle_line_rounds_the_rate() {
        let r = record(
            Level::WARN,
            "poll.throttled",
            about(
                json!({}),
                vec![
                    ("retry_in_ms", json!(1_234)),
                    ("rate_limit", json!(5.735_369_428_378_465_5)),
                ],
            ),
        );
        let line = render(&r, at(), plain().brief());
        assert_eq!(
            line,
            "10:10:41.123 WARN  run-0001         throttled, retry in 1.2 s, rate now 5.74 req/s\n"
        );
        assert!(!line.contains("5.735"), "{line}");
    }

    #[test]
    fn other_floats_are_rounded_in_pairs_too() {
        let r = record(
            Level::DEBUG,
            "log",
            vec![("rate", json!(0.333_333)), ("x", json!(2.0))],
        );
        let line = render(&r, at(), plain());
        assert!(line.ends_with(" rate=0.33 x=2\n"), "{line}");
    }

    #[test]
    fn durations_are_humanized() {
        let cases = [
            (0, "0 ms"),
            (850, "850 ms"),
            (1_000, "1.0 s"),
            (1_234, "1.2 s"),
            (6_250, "6.3 s"),
            (42_400, "42 s"),
            (60_000, "1 min"),
            (184_000, "3 min 4 s"),
            (3_600_000, "1 h"),
            (7_500_000, "2 h 5 min"),
        ];
        for (ms, text) in cases {
            assert_eq!(duration(ms, " "), text, "{ms} ms");
        }
        assert_eq!(duration(184_000, ""), "3min4s");
    }

    #[test]
    fn ms_fields_lose_their_suffix_and_become_durations() {
        let r = record(
            Level::WARN,
            "poll.failed",
            about(
                json!({}),
                vec![
                    ("error_kind", json!("timeout")),
                    ("error_message", json!("request timed out")),
                    ("retry_in_ms", json!(184_000)),
                ],
            ),
        );
        let line = render(&r, at(), plain());
        assert!(
            line.contains("  retrying in 3 min 4 s: request timed out  error_kind=timeout "),
            "{line}"
        );
        assert!(!line.contains("_ms"), "{line}");
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(colour(true, None));
        assert!(
            colour(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!colour(true, Some(OsStr::new("1"))), "NO_COLOR set");
        assert!(!colour(false, None), "not a terminal");
        assert!(!colour(false, Some(OsStr::new("1"))));
    }

    #[test]
    fn the_level_is_coloured_only_when_asked() {
        let r = transition(json!({}));
        let coloured = render(
            &r,
            at(),
            TextStyle {
                colour: true,
                brief: true,
            },
        );
        assert!(
            coloured.starts_with("10:10:41.123 \x1b[32mINFO\x1b[0m  run-0001 "),
            "{coloured:?}"
        );
        let plain = render(&r, at(), plain().brief());
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(
            plain.starts_with("10:10:41.123 INFO  run-0001 "),
            "{plain:?}"
        );
    }

    #[test]
    fn brief_lines_drop_identity_and_details() {
        let line = render(
            &transition(json!({"team": "search"})),
            at(),
            plain().brief(),
        );
        assert_eq!(
            line,
            "10:10:41.123 INFO  run-0001         Running → Succeeded  after 6.2 s, 4 polls\n"
        );
    }

    fn node_failure(message: &str) -> Record {
        record(
            Level::WARN,
            "execution.node_failure",
            about(
                json!({"team": "search", "tier": "gold"}),
                vec![
                    ("node", json!("KnowledgeBase_1")),
                    ("error_code", json!("INTERNAL_SERVER")),
                    ("error_message", json!(message)),
                    ("event_time", json!("2026-11-25T10:10:40.000Z")),
                ],
            ),
        )
    }

    #[test]
    fn a_node_failure_leads_with_the_node_and_its_message() {
        let line = render(&node_failure("no index"), at(), plain().brief());
        assert_eq!(
            line,
            "10:10:41.123 WARN  run-0001         node KnowledgeBase_1 failed (INTERNAL_SERVER): no index\n"
        );
        let full = render(&node_failure("no index"), at(), plain());
        assert!(
            full.contains(
                "no index  team=search tier=gold event_time=2026-11-25T10:10:40.000Z flow="
            ),
            "{full}"
        );
    }

    #[test]
    fn brief_lines_fit_100_columns_and_cut_a_long_message_with_an_ellipsis() {
        let long = "model invocation failed: the input is longer than the model's context \
                    window of 8192 tokens (12000 given); shorten the prompt or choose another \
                    model";
        let mut flow = node_failure(long);
        flow.event = Some("execution.flow_failure".to_owned());
        flow.fields.retain(|(key, _)| key != "node");
        let mut unavailable = record(
            Level::WARN,
            "execution.details_unavailable",
            about(json!({}), vec![("reason", json!("retries_exhausted"))]),
        );
        unavailable.fields[3].1 = json!("an-execution-id-far-longer-than-the-name-column-is-wide");
        let mut failed = record(
            Level::WARN,
            "poll.failed",
            about(
                json!({}),
                vec![("error_message", json!(long)), ("retry_in_ms", json!(800))],
            ),
        );
        failed
            .fields
            .push((Cow::Borrowed("attempt_detail"), json!("x".repeat(150))));
        for style in [
            plain().brief(),
            TextStyle {
                colour: true,
                brief: true,
            },
        ] {
            for r in [&node_failure(long), &flow, &unavailable, &failed] {
                let line = render(r, at(), style);
                let shown = line.trim_end_matches('\n');
                assert!(columns(shown) <= 100, "{} columns: {line}", columns(shown));
                assert_eq!(line.lines().count(), 1, "{line:?}");
            }
        }
        let line = render(&node_failure(long), at(), plain().brief());
        assert_eq!(columns(line.trim_end()), 100, "{line}");
        assert!(
            line.starts_with(
                "10:10:41.123 WARN  run-0001         node KnowledgeBase_1 failed (INTERNAL_SERVER): \
                 model invocation"
            ),
            "{line}"
        );
        assert!(line.ends_with("…\n"), "{line}");
        let line = render(&flow, at(), plain().brief());
        assert!(
            line.contains("  flow failed (INTERNAL_SERVER): model invocation"),
            "{line}"
        );
        let line = render(&unavailable, at(), plain().brief());
        assert!(
            line.contains(
                " an-execution-id-far-longer-than-the-name-column-is-wide  failure details"
            ),
            "a long name stays whole: {line}"
        );
        let line = render(&failed, at(), plain().brief());
        assert!(
            line.contains("  retrying in 800 ms: mod…  attempt_detail=xxx"),
            "the message gives way first, down to 24 characters: {line}"
        );
    }

    #[test]
    fn full_lines_and_short_brief_lines_are_not_cut() {
        let long = "y".repeat(300);
        let full = render(&node_failure(&long), at(), plain());
        assert!(full.contains(&long), "{full}");
        assert!(!full.contains('…'), "{full}");
        let brief = render(&transition(json!({})), at(), plain().brief());
        assert!(!brief.contains('…'), "{brief}");
    }

    #[test]
    fn brief_lines_keep_a_source_that_is_not_a_file() {
        let added = |source: &str| {
            let mut r = record(
                Level::INFO,
                "watch.added",
                vec![("execution", json!("run-7")), ("source", json!(source))],
            );
            r.message = "watch added".to_owned();
            render(&r, at(), plain().brief())
        };
        assert_eq!(
            added("discovery"),
            "10:10:41.123 INFO  run-7            watch added  source=discovery\n"
        );
        assert_eq!(
            added("/etc/flowwatch/flowwatch.toml"),
            "10:10:41.123 INFO  run-7            watch added\n"
        );
    }

    #[test]
    fn an_event_about_no_execution_leads_with_its_message() {
        let mut r = record(
            Level::INFO,
            "daemon.started",
            vec![("watches", json!(12)), ("version", json!("0.1.0"))],
        );
        r.message = "daemon started".to_owned();
        assert_eq!(
            render(&r, at(), plain()),
            "10:10:41.123 INFO  daemon started  watches=12 version=0.1.0\n"
        );
    }

    #[test]
    fn values_that_would_break_a_pair_are_quoted_and_newlines_escaped() {
        let mut r = record(
            Level::INFO,
            "log",
            vec![
                ("error", json!("bad \"thing\"\nhere")),
                ("empty", json!("")),
                ("eq", json!("a=b")),
            ],
        );
        r.event = None;
        r.message = "two\nlines".to_owned();
        let line = render(&r, at(), plain());
        assert_eq!(line.lines().count(), 1, "{line:?}");
        assert_eq!(
            line,
            "10:10:41.123 INFO  two\\nlines  error=\"bad \\\"thing\\\"\\nhere\" empty=\"\" eq=\"a=b\"\n"
        );
    }
}
