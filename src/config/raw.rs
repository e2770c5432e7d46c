//! The TOML as written: serde structs with spans, unknown keys rejected.
//! In: one file's text. Out: `RawMain` (the main file) or `RawInclude` (an
//! included file: `[[watch]]` tables only), or a `RawError` that says where
//! (1-based line and column, dotted key) and what, in one lowercase line.
//! Values that `settings.rs` and `watches.rs` check after parsing keep their spans (`Spanned`).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The main file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMain {
    #[serde(default)]
    pub aws: RawAws,
    #[serde(default)]
    pub poll: RawPoll,
    #[serde(default)]
    pub log: RawLog,
    pub state: Option<RawState>,
    pub http: Option<RawHttp>,
    pub ha: Option<Spanned<RawHa>>,
    pub include: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub watch: Vec<Spanned<RawWatch>>,
    #[serde(default)]
    pub watch_flow: Vec<Spanned<RawWatchFlow>>,
}

/// One `[[watch_flow]]` table (issue 9): discover the executions of a flow.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatchFlow {
    pub flow: Option<Spanned<String>>,
    pub alias: Option<Spanned<String>>,
    pub region: Option<Spanned<String>>,
    pub since: Option<Spanned<String>>,
    pub labels: Option<BTreeMap<String, Spanned<String>>>,
}

/// An included file: it may hold `[[watch]]` tables only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInclude {
    #[serde(default)]
    pub watch: Vec<Spanned<RawWatch>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub region: Option<Spanned<String>>,
    pub profile: Option<Spanned<String>>,
    pub endpoint_url: Option<Spanned<String>>,
    /// A top-level `include` written after this table's header lands here in
    /// TOML; the contract's own example does that, so it is accepted.
    pub include: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Durations stay strings here ("2s"); `settings.rs` parses them with humantime.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoll {
    pub interval_initial: Option<Spanned<String>>,
    pub interval_max: Option<Spanned<String>>,
    pub multiplier: Option<Spanned<f64>>,
    pub jitter: Option<Spanned<f64>>,
    pub rate_limit: Option<Spanned<f64>>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub request_timeout: Option<Spanned<String>>,
    pub max_watch: Option<Spanned<String>>,
    pub not_found_grace: Option<Spanned<String>>,
    pub failure_details: Option<Spanned<bool>>,
    pub failure_details_max_pages: Option<Spanned<i64>>,
    pub discovery_share: Option<Spanned<f64>>,
    pub list_interval: Option<Spanned<String>>,
    pub schedule: Option<Spanned<String>>,
    /// A top-level `include` written after this table's header lands here in
    /// TOML; the contract's own example does that, so it is accepted.
    pub include: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<Spanned<String>>,
    pub level: Option<Spanned<String>>,
    /// A top-level `include` written after this table's header lands here in
    /// TOML; the contract's own example does that, so it is accepted.
    pub include: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub path: Option<Spanned<String>>,
    /// A top-level `include` written after this table's header lands here in
    /// TOML; the contract's own example does that, so it is accepted.
    pub include: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub keep_ended: Option<Spanned<String>>,
    pub max_api_watches: Option<Spanned<i64>>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub max_long_polls: Option<Spanned<i64>>,
    pub max_sse_clients: Option<Spanned<i64>>,
    pub events_buffer: Option<Spanned<i64>>,
    /// A top-level `include` written after this table's header lands here in
    /// TOML; the contract's own example does that, so it is accepted.
    pub include: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[ha]`: active/standby on etcd or Kubernetes (issue 12); checked in `config/ha.rs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHa {
    pub backend: Option<Spanned<String>>,
    pub endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    pub election: Option<Spanned<String>>,
    pub lease_name: Option<Spanned<String>>,
    pub namespace: Option<Spanned<String>>,
    pub lease: Option<Spanned<String>>,
    pub renew_deadline: Option<Spanned<String>>,
    pub retry: Option<Spanned<String>>,
    pub identity: Option<Spanned<String>>,
    /// A top-level `include` written after this table's header lands here in
    /// TOML; the contract's own example does that, so it is accepted.
    pub include: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One `[[watch]]` table: `execution_arn`, or `flow` + `alias` + `execution`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    pub execution_arn: Option<Spanned<String>>,
    pub flow: Option<Spanned<String>>,
    pub alias: Option<Spanned<String>>,
    pub execution: Option<Spanned<String>>,
    pub region: Option<Spanned<String>>,
    pub labels: Option<BTreeMap<String, Spanned<String>>>,
}

/// Why a file's text did not parse into its raw shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawError {
    /// A problem at one place: 1-based line and column, and the dotted key
    /// (`poll.interval_max`, `watch[2].flow`; `syntax` when none is known).
    At {
        line: usize,
        column: usize,
        key: String,
        problem: String,
    },
    /// A problem the parser could not place.
    Whole { problem: String },
}

/// Parses the main file.
pub fn parse_main(text: &str) -> Result<RawMain, RawError> {
    parse(text)
}

/// Parses an included file; any key but `watch` at the top is refused with
/// a message that says why.
pub fn parse_include(text: &str) -> Result<RawInclude, RawError> {
    parse(text).map_err(|e| match e {
        RawError::At {
            line,
            column,
            key,
            problem,
        } if problem.starts_with("unknown key") && !key.contains(['.', '[']) => RawError::At {
            line,
            column,
            key,
            problem: "unknown key: an included file holds only [[watch]] tables".to_string(),
        },
        other => other,
    })
}

/// 1-based line and column (in characters) of a byte offset into `text`.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let last_line = before.rsplit('\n').next().unwrap_or_default();
    let column = last_line.chars().count() + 1;
    (line, column)
}

fn parse<T: DeserializeOwned>(text: &str) -> Result<T, RawError> {
    let err = match toml::from_str::<T>(text) {
        Ok(value) => return Ok(value),
        Err(err) => err,
    };
    let problem = tidy(err.message());
    let Some(span) = err.span() else {
        return Err(RawError::Whole { problem });
    };
    let (line, column) = position(text, span.start);
    // A document that parses as TOML gives exact key paths; a syntax error
    // leaves only the text of the line to go on.
    let key = match DeTable::parse(text) {
        Ok(table) => key_at(table.get_ref(), "", span.start),
        Err(_) => None,
    }
    .unwrap_or_else(|| key_on_line(text, span.start));
    Err(RawError::At {
        line,
        column,
        key,
        problem,
    })
}

/// The dotted path of the innermost key or value at `offset`; arrays of
/// tables count from 1 (`watch[2].flow`).
fn key_at(table: &DeTable<'_>, prefix: &str, offset: usize) -> Option<String> {
    for (key, value) in table {
        let path = join(prefix, key.get_ref());
        if contains(&key.span(), offset) {
            return Some(path);
        }
        match value.get_ref() {
            DeValue::Table(inner) => {
                if let Some(found) = key_at(inner, &path, offset) {
                    return Some(found);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let DeValue::Table(inner) = item.get_ref() else {
                        continue;
                    };
                    let element = format!("{path}[{}]", i + 1);
                    if let Some(found) = key_at(inner, &element, offset) {
                        return Some(found);
                    }
                    if contains(&item.span(), offset) {
                        return Some(element);
                    }
                }
            }
            _ => {}
        }
        if contains(&value.span(), offset) {
            return Some(path);
        }
    }
    None
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// Best effort for a syntax error: the table header in force plus the key
/// written on the error's line, else the header, else `syntax`.
fn key_on_line(text: &str, offset: usize) -> String {
    let (line_no, _) = position(text, offset);
    let mut header = String::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines().take(line_no - 1) {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_default();
            *n += 1;
            header = format!("{name}[{n}]");
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            header = name.trim().to_string();
        }
    }
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    if line.starts_with('[') {
        let name = line.trim_matches(|c| c == '[' || c == ']' || c == ' ');
        return if name.is_empty() {
            "syntax".to_string()
        } else {
            name.to_string()
        };
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace));
    match key {
        Some(key) if header.is_empty() => key.to_string(),
        Some(key) => format!("{header}.{key}"),
        None if header.is_empty() => "syntax".to_string(),
        None => header,
    }
}

/// One lowercase line without a final period, in the config's words rather
/// than serde's (`key` not `field`, `a number` not `f64`).
fn tidy(message: &str) -> String {
    let mut msg = message
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .trim_end_matches('.')
        .to_string();
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((_, rest)) = rest.split_once('`')
    {
        msg = match rest {
            "" | ", there are no fields" => "unknown key".to_string(),
            rest => format!("unknown key{rest}"),
        };
    }
    if msg.contains(" as i128") || msg.contains(" as u128") {
        return "integer out of range".to_string();
    }
    if let Some((head, expected)) = msg.split_once(", expected ")
        && head.starts_with("invalid type")
    {
        let expected = match expected {
            "f64" | "f32" => "a number",
            "i64" | "u64" | "usize" | "i32" | "u32" => "an integer",
            "a sequence" => "an array",
            "a map" => "a table",
            e if e.starts_with("struct ") => "a table",
            e => e,
        };
        msg = format!("{head}, expected {expected}");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> (usize, usize, String, String) {
        match parse_main(text).unwrap_err() {
            RawError::At {
                line,
                column,
                key,
                problem,
            } => (line, column, key, problem),
            other => panic!("no position: {other:?}"),
        }
    }

    #[test]
    fn an_unknown_key_is_placed_and_named_with_its_table() {
        let (line, column, key, problem) =
            at("[poll]\nmultiplier = 2.0\n  intreval_max = \"5s\"\n");
        assert_eq!((line, column, key.as_str()), (3, 3, "poll.intreval_max"));
        assert!(
            problem.starts_with("unknown key, expected one of `interval_initial`"),
            "{problem}"
        );
    }

    #[test]
    fn a_wrong_type_in_the_second_watch_names_its_index() {
        let text = "[[watch]]\nflow = \"FLOW123456\"\n[[watch]]\nflow = 7\n";
        assert_eq!(
            at(text),
            (
                4,
                8,
                "watch[2].flow".to_string(),
                "invalid type: integer `7`, expected a string".to_string()
            )
        );
    }

    #[test]
    fn a_label_of_the_wrong_type_names_the_label() {
        let (_, _, key, problem) = at("[[watch]]\nlabels = { team = 1 }\n");
        assert_eq!(key, "watch[1].labels.team");
        assert_eq!(problem, "invalid type: integer `1`, expected a string");
    }

    #[test]
    fn a_table_given_as_a_number_says_a_table_was_expected() {
        assert_eq!(
            at("poll = 3\n"),
            (
                1,
                8,
                "poll".to_string(),
                "invalid type: integer `3`, expected a table".to_string()
            )
        );
    }

    #[test]
    fn a_syntax_error_names_the_key_on_its_line() {
        let (line, column, key, problem) = at("[poll]\nmultiplier = 2.0\ninterval_max = \n");
        assert_eq!((line, column, key.as_str()), (3, 16, "poll.interval_max"));
        assert!(!problem.contains('\n'), "{problem}");
        assert!(!problem.ends_with('.'), "{problem}");
    }

    #[test]
    fn a_syntax_error_without_a_key_says_syntax() {
        let (line, _, key, _) = at("\"unterminated\n");
        assert_eq!((line, key.as_str()), (1, "syntax"));
    }

    #[test]
    fn an_included_file_refuses_tables_other_than_watch() {
        let err = parse_include("[[watch]]\nflow = \"FLOW123456\"\n\n[poll]\nmultiplier = 2.0\n")
            .unwrap_err();
        assert_eq!(
            err,
            RawError::At {
                line: 4,
                column: 2,
                key: "poll".to_string(),
                problem: "unknown key: an included file holds only [[watch]] tables".to_string()
            }
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(position("é = 1\nab", 7), (2, 1));
        assert_eq!(position("é = 1", 3), (1, 3));
    }
}
