//! The formatter: every `tracing` record becomes one line on its own, with no
//! span data. In: a record (a contract event from `emit`, or a diagnostic from
//! any `debug!`/`warn!`). Out: one flat JSON object, or one readable text line.
//!
//! JSON: `timestamp` (RFC 3339 UTC, milliseconds), `level`, `event`,
//! `message`, then every field flat, typed as recorded. A record without an
//! `event` field is a diagnostic: `"event": "log"` plus its `target`.
//! The `labels` field (a JSON object string, see `emit`) is written back as
//! an object. Text lines are `text.rs`'s: time, level, short name and what
//! happened first, then `key=value` pairs (labels as `key=value`).

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use serde_json::{Number, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::text::{self, TextStyle};
use crate::config::LogFormat;

/// The `event` of a record that is not a contract event.
const DIAGNOSTIC: &str = "log";

/// Our `FormatEvent`: flat JSON lines or readable text lines.
#[derive(Debug, Clone, Copy)]
pub struct LineFormat {
    format: LogFormat,
    style: TextStyle,
}

impl LineFormat {
    /// Text lines plain and full (no colour).
    pub fn new(format: LogFormat) -> Self {
        LineFormat::styled(format, TextStyle::default())
    }

    /// Text lines in `style`; JSON lines do not change.
    pub fn styled(format: LogFormat, style: TextStyle) -> Self {
        LineFormat { format, style }
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let record = Record::of(event);
        let now = SystemTime::now();
        if record.event.is_some() && crate::service::stream::is_on() {
            // `/v1/events` carries the JSON line whatever `[log] format` is.
            crate::service::stream::publish(&record.json(now));
        }
        let line = match self.format {
            LogFormat::Json => record.json(now),
            LogFormat::Text => text::render(&record, now, self.style),
        };
        writer.write_str(&line)
    }
}

/// One record's parts: the header we place first, then the fields in the
/// order they were recorded.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) level: Level,
    pub(super) event: Option<String>,
    pub(super) message: String,
    pub(super) target: String,
    pub(super) fields: Vec<(Cow<'static, str>, Value)>,
}

impl Record {
    fn of(event: &Event<'_>) -> Record {
        let metadata = event.metadata();
        let mut record = Record {
            level: *metadata.level(),
            event: None,
            message: String::new(),
            target: metadata.target().to_owned(),
            fields: Vec::new(),
        };
        event.record(&mut record);
        record
    }

    /// One flat JSON object and a newline.
    fn json(&self, now: SystemTime) -> String {
        let mut line = String::from("{");
        let timestamp = humantime::format_rfc3339_millis(now).to_string();
        push_json(&mut line, "timestamp", &Value::String(timestamp));
        push_json(&mut line, "level", &Value::from(self.level.as_str()));
        push_json(&mut line, "event", &Value::from(self.name()));
        push_json(&mut line, "message", &Value::from(self.message.as_str()));
        if self.event.is_none() {
            push_json(&mut line, "target", &Value::from(self.target.as_str()));
        }
        for (key, value) in &self.fields {
            push_json(&mut line, key, value);
        }
        line.push_str("}\n");
        line
    }

    /// The contract event's name, or `log` for a diagnostic.
    fn name(&self) -> &str {
        self.event.as_deref().unwrap_or(DIAGNOSTIC)
    }

    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "event" => self.event = Some(plain(value)),
            "message" => self.message = plain(value),
            // Records bridged from the `log` crate carry their origin as fields.
            "log.target" => self.target = plain(value),
            name if name.starts_with("log.") => {}
            "labels" => {
                let labels = match value {
                    Value::String(text) => match serde_json::from_str(&text) {
                        Ok(Value::Object(object)) => Value::Object(object),
                        _ => Value::String(text),
                    },
                    other => other,
                };
                self.fields.push((Cow::Borrowed("labels"), labels));
            }
            // `daemon.reloaded`'s list of changed keys, also a JSON string.
            "changed" => {
                let changed = match value {
                    Value::String(text) => match serde_json::from_str(&text) {
                        Ok(Value::Array(array)) => Value::Array(array),
                        _ => Value::String(text),
                    },
                    other => other,
                };
                self.fields.push((Cow::Borrowed("changed"), changed));
            }
            // Keep the line's own keys unique: a field may not overwrite them.
            name @ ("timestamp" | "level" | "target") => {
                self.fields
                    .push((Cow::Owned(format!("field.{name}")), value));
            }
            name => self.fields.push((Cow::Borrowed(name), value)),
        }
    }
}

impl Visit for Record {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value =
            u64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.put(field, value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value =
            i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.put(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; keep them readable as strings.
        let value =
            Number::from_f64(value).map_or_else(|| Value::from(value.to_string()), Value::Number);
        self.put(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole chain once, as `main` prints it: "outer: inner: root".
        self.put(field, Value::String(crate::error::error_chain(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// A value as plain text: strings unquoted, anything else as JSON.
fn plain(value: Value) -> String {
    match value {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

/// Appends `"key":value` (with a comma after the first pair). `Value`'s
/// `Display` is compact JSON with proper escaping, and cannot fail.
fn push_json(line: &mut String, key: &str, value: &Value) {
    if line.len() > 1 {
        line.push(',');
    }
    line.push_str(&Value::from(key).to_string());
    line.push(':');
    line.push_str(&value.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at() -> SystemTime {
        // 2026-11-25T10:10:41.123Z
        UNIX_EPOCH + Duration::from_millis(1_795_601_441_123)
    }

    fn record(event: Option<&str>, fields: Vec<(&'static str, Value)>) -> Record {
        Record {
            level: Level::INFO,
            event: event.map(str::to_owned),
            message: "execution changed status".to_owned(),
            target: "flowwatch".to_owned(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (Cow::Borrowed(k), v))
                .collect(),
        }
    }

    #[test]
    fn json_line_starts_with_the_header_in_order_then_the_fields() {
        let r = record(
            Some("execution.transition"),
            vec![
                ("to", Value::from("Succeeded")),
                ("polls", Value::from(3u64)),
            ],
        );
        assert_eq!(
            r.json(at()),
            "{\"timestamp\":\"2026-11-25T10:10:41.123Z\",\"level\":\"INFO\",\
             \"event\":\"execution.transition\",\"message\":\"execution changed status\",\
             \"to\":\"Succeeded\",\"polls\":3}\n"
        );
    }

    #[test]
    fn diagnostic_json_names_its_target() {
        let r = record(None, vec![]);
        let line: Value = serde_json::from_str(&r.json(at())).expect("valid JSON");
        assert_eq!(line["event"], "log");
        assert_eq!(line["target"], "flowwatch");
    }
}
