//! The validated configuration: `load` reads the main TOML file and every
//! file its `include` globs match, and returns a `Config` or a `ConfigError`
//! naming file, line, column and key. `raw` mirrors the TOML; this module
//! checks every value once (durations, ranges, ids) and builds the `WatchSet`.
//! Nothing here talks to AWS: the ids are checked against the API's patterns.

pub mod raw;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

#[cfg(test)]
use crate::watch::WatchKey;
use crate::watch::ids::{Part, check_region};
use crate::watch::{ExecutionRef, Labels, Origin, Watch, WatchSet};
use raw::{RawError, RawMain, RawPoll, RawWatch};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}:{line}:{column}: {key}: {problem}", .file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        key: String,
        problem: String,
    },
    #[error("cannot read {}", .file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A problem with no single position (e.g. no watches and no include).
    #[error("{}: {problem}", .file.display())]
    File { file: PathBuf, problem: String },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PollSettings {
    pub interval_initial: Duration,
    pub interval_max: Duration,
    pub multiplier: f64,
    pub jitter: f64,
    pub rate_limit: f64,
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    pub max_watch: Duration,
    /// How long `ResourceNotFoundException` is retried before the watch is
    /// abandoned (eventual consistency right after StartFlowExecution).
    /// flowwatch's own addition to the contract's `[poll]` keys; default 30s.
    pub not_found_grace: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            interval_initial: Duration::from_secs(2),
            interval_max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            rate_limit: 10.0,
            max_in_flight: 16,
            request_timeout: Duration::from_secs(10),
            max_watch: Duration::from_secs(25 * 3600),
            not_found_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` level name: error, warn, info, debug, trace.
    pub level: tracing::Level,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Json,
            level: tracing::Level::INFO,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub listen: SocketAddr,
}

/// One file that was read, for `flowwatch check`'s one line per file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub path: PathBuf,
    /// `[[watch]]` tables in this file (before dedup).
    pub watches: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The main file, as given.
    pub path: PathBuf,
    pub aws: AwsSettings,
    pub poll: PollSettings,
    pub log: LogSettings,
    pub state: Option<StateSettings>,
    pub http: Option<HttpSettings>,
    /// The `include` globs, made absolute (relative to the main file's folder).
    pub include: Vec<String>,
    /// Every watch of every file, deduplicated.
    pub watches: WatchSet,
    /// The main file first, then each included file in sorted order.
    pub files: Vec<FileSummary>,
}

/// `[state] path` when the table is present but the key is not.
const DEFAULT_STATE_PATH: &str = "/var/lib/flowwatch/state.json";
/// `[http] listen` when the table is present but the key is not.
const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// Longest duration accepted anywhere: far beyond any execution (24 h), and it
/// keeps instant arithmetic downstream far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// Most concurrent requests accepted (a semaphore's permit count stays sane).
const MAX_IN_FLIGHT: i64 = 65_536;

/// Reads and validates the main file and its includes. Nothing is half-read:
/// either every file is valid or the error names the first bad place.
/// A missing or unreadable file is `ConfigError::Read`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    parse_str(&text, path)
}

/// Like `load`, with the main file's text given; `path` names it in errors
/// and anchors relative paths. Included files are still read from disk.
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let main = Source { path, text };
    let raw: RawMain = raw::parse_main(text).map_err(|e| main.raw_error(e))?;
    let folder = folder_of(path);

    let aws = aws_settings(&main, &raw.aws)?;
    let poll = poll_settings(&main, &raw.poll)?;
    let log = log_settings(&main, &raw.log)?;
    let state = match &raw.state {
        Some(state) => Some(state_settings(&main, state, &folder)?),
        None => None,
    };
    let http = match &raw.http {
        Some(http) => Some(http_settings(&main, http)?),
        None => None,
    };
    let globs = one_include(&main, &raw)?.map_or(&[][..], |g| g.get_ref().as_slice());
    let include = include_globs(&main, globs, &folder)?;

    let region = aws.region.as_deref();
    let mut watches = WatchSet::default();
    // One copy of each distinct label set for every watch of every file.
    let mut label_sets = HashSet::new();
    let count = add_watches(&main, &raw.watch, region, &mut label_sets, &mut watches)?;
    let mut files = vec![FileSummary {
        path: path.to_path_buf(),
        watches: count,
    }];
    for file in included_files(path, &include)? {
        let text = read(&file)?;
        let source = Source {
            path: &file,
            text: &text,
        };
        let raw = raw::parse_include(&text).map_err(|e| source.raw_error(e))?;
        let count = add_watches(&source, &raw.watch, region, &mut label_sets, &mut watches)?;
        files.push(FileSummary {
            path: file,
            watches: count,
        });
    }

    // With an include, an empty list is fine: a sidecar's watch folder starts empty.
    if watches.is_empty() && include.is_empty() {
        return Err(ConfigError::File {
            file: path.to_path_buf(),
            problem: "no watches: add [[watch]] tables or an include".to_string(),
        });
    }

    Ok(Config {
        path: path.to_path_buf(),
        aws,
        poll,
        log,
        state,
        http,
        include,
        watches,
        files,
    })
}

impl Config {
    /// Everything but the watch list and the files it came from.
    pub fn settings(&self) -> impl PartialEq + '_ {
        (&self.aws, &self.poll, &self.log, &self.state, &self.http)
    }

    /// `flowwatch check`'s output: one line per file, then a total, e.g.
    /// `ok: 5 watches (1 duplicate merged) in 2 files, regions eu-west-1, us-east-1`.
    /// A watch whose region the AWS default chain will decide counts as `(default)`.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .files
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f.path.display(),
                    count(f.watches, "watch", "watches")
                )
            })
            .collect();
        let mut total = format!("ok: {}", count(self.watches.len(), "watch", "watches"));
        let merged = self.watches.merged();
        if merged > 0 {
            total += &format!(" ({} merged)", count(merged, "duplicate", "duplicates"));
        }
        total += &format!(" in {}", count(self.files.len(), "file", "files"));
        let regions: BTreeSet<&str> = self
            .watches
            .iter()
            .map(|(_, w)| w.target.region.as_deref().unwrap_or("(default)"))
            .collect();
        if !regions.is_empty() {
            let word = if regions.len() == 1 {
                "region"
            } else {
                "regions"
            };
            let names: Vec<&str> = regions.into_iter().collect();
            total += &format!(", {word} {}", names.join(", "));
        }
        lines.push(total);
        lines
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One file's text and name, to turn spans into `ConfigError::Invalid`.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn invalid(&self, span: Range<usize>, key: &str, problem: impl Into<String>) -> ConfigError {
        let (line, column) = raw::position(self.text, span.start);
        ConfigError::Invalid {
            file: self.path.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    fn raw_error(&self, err: RawError) -> ConfigError {
        match err {
            RawError::At {
                line,
                column,
                key,
                problem,
            } => ConfigError::Invalid {
                file: self.path.to_path_buf(),
                line,
                column,
                key,
                problem,
            },
            RawError::Whole { problem } => ConfigError::File {
                file: self.path.to_path_buf(),
                problem,
            },
        }
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })
}

/// The main file's folder, absolute, so that `state.path` and the include
/// globs stay right whatever the working directory is later.
fn folder_of(path: &Path) -> PathBuf {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::path::absolute(&folder).unwrap_or(folder)
}

fn aws_settings(src: &Source<'_>, raw: &raw::RawAws) -> Result<AwsSettings, ConfigError> {
    if let Some(region) = &raw.region {
        check_region(region.get_ref())
            .map_err(|e| src.invalid(region.span(), "aws.region", e.0))?;
    }
    if let Some(profile) = &raw.profile
        && profile.get_ref().trim().is_empty()
    {
        return Err(src.invalid(profile.span(), "aws.profile", "must not be empty"));
    }
    if let Some(url) = &raw.endpoint_url {
        let rest = url
            .get_ref()
            .strip_prefix("http://")
            .or_else(|| url.get_ref().strip_prefix("https://"));
        if rest.is_none_or(str::is_empty) {
            return Err(src.invalid(
                url.span(),
                "aws.endpoint_url",
                format!(
                    "must be an http:// or https:// url, not {:?}",
                    url.get_ref()
                ),
            ));
        }
    }
    Ok(AwsSettings {
        region: raw.region.as_ref().map(|r| r.get_ref().clone()),
        profile: raw.profile.as_ref().map(|p| p.get_ref().clone()),
        endpoint_url: raw.endpoint_url.as_ref().map(|u| u.get_ref().clone()),
    })
}

fn poll_settings(src: &Source<'_>, raw: &RawPoll) -> Result<PollSettings, ConfigError> {
    let d = PollSettings::default();
    let interval_initial = duration(
        src,
        &raw.interval_initial,
        "poll.interval_initial",
        d.interval_initial,
    )?;
    let interval_max = duration(src, &raw.interval_max, "poll.interval_max", d.interval_max)?;
    if interval_max < interval_initial {
        let (span, key) = match (&raw.interval_max, &raw.interval_initial) {
            (Some(max), _) => (max.span(), "poll.interval_max"),
            (None, Some(initial)) => (initial.span(), "poll.interval_initial"),
            (None, None) => unreachable!("the defaults are ordered"),
        };
        return Err(src.invalid(
            span,
            key,
            format!(
                "interval_max ({}) is shorter than interval_initial ({})",
                humantime::format_duration(interval_max),
                humantime::format_duration(interval_initial)
            ),
        ));
    }
    let multiplier = number(src, &raw.multiplier, "poll.multiplier", d.multiplier, |m| {
        (m.is_finite() && m >= 1.0)
            .then_some(())
            .ok_or("must be at least 1.0")
    })?;
    let jitter = number(src, &raw.jitter, "poll.jitter", d.jitter, |j| {
        (0.0..=1.0)
            .contains(&j)
            .then_some(())
            .ok_or("must be between 0.0 and 1.0")
    })?;
    let rate_limit = number(src, &raw.rate_limit, "poll.rate_limit", d.rate_limit, |r| {
        (r.is_finite() && r > 0.0)
            .then_some(())
            .ok_or("must be a finite number above 0")
    })?;
    let max_in_flight = match &raw.max_in_flight {
        None => d.max_in_flight,
        Some(n) => match usize::try_from(*n.get_ref()) {
            Ok(v) if (1..=MAX_IN_FLIGHT).contains(n.get_ref()) => v,
            _ => {
                return Err(src.invalid(
                    n.span(),
                    "poll.max_in_flight",
                    format!("must be between 1 and {MAX_IN_FLIGHT}, not {}", n.get_ref()),
                ));
            }
        },
    };
    Ok(PollSettings {
        interval_initial,
        interval_max,
        multiplier,
        jitter,
        rate_limit,
        max_in_flight,
        request_timeout: duration(
            src,
            &raw.request_timeout,
            "poll.request_timeout",
            d.request_timeout,
        )?,
        max_watch: duration(src, &raw.max_watch, "poll.max_watch", d.max_watch)?,
        not_found_grace: duration(
            src,
            &raw.not_found_grace,
            "poll.not_found_grace",
            d.not_found_grace,
        )?,
    })
}

/// A duration string such as "500ms", "2s", "5m" or "25h"; above zero.
fn duration(
    src: &Source<'_>,
    value: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let text = value.get_ref();
    let parsed = humantime::parse_duration(text.trim())
        .map_err(|e| src.invalid(value.span(), key, format!("invalid duration {text:?}: {e}")))?;
    if parsed.is_zero() {
        return Err(src.invalid(value.span(), key, "must be longer than zero"));
    }
    if parsed > MAX_DURATION {
        return Err(src.invalid(value.span(), key, "must be at most 366 days"));
    }
    Ok(parsed)
}

fn number(
    src: &Source<'_>,
    value: &Option<Spanned<f64>>,
    key: &str,
    default: f64,
    rule: impl Fn(f64) -> Result<(), &'static str>,
) -> Result<f64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let v = *value.get_ref();
    rule(v).map_err(|problem| src.invalid(value.span(), key, format!("{problem}, not {v}")))?;
    Ok(v)
}

fn log_settings(src: &Source<'_>, raw: &raw::RawLog) -> Result<LogSettings, ConfigError> {
    let d = LogSettings::default();
    let format = match &raw.format {
        None => d.format,
        Some(f) => match f.get_ref().as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                return Err(src.invalid(
                    f.span(),
                    "log.format",
                    format!("must be json or text, not {other:?}"),
                ));
            }
        },
    };
    let level = match &raw.level {
        None => d.level,
        Some(l) => match l.get_ref().to_ascii_lowercase().as_str() {
            "error" => tracing::Level::ERROR,
            "warn" => tracing::Level::WARN,
            "info" => tracing::Level::INFO,
            "debug" => tracing::Level::DEBUG,
            "trace" => tracing::Level::TRACE,
            _ => {
                return Err(src.invalid(
                    l.span(),
                    "log.level",
                    format!(
                        "must be error, warn, info, debug or trace, not {:?}",
                        l.get_ref()
                    ),
                ));
            }
        },
    };
    Ok(LogSettings { format, level })
}

fn state_settings(
    src: &Source<'_>,
    raw: &raw::RawState,
    folder: &Path,
) -> Result<StateSettings, ConfigError> {
    let path = match &raw.path {
        None => PathBuf::from(DEFAULT_STATE_PATH),
        Some(p) if p.get_ref().is_empty() => {
            return Err(src.invalid(p.span(), "state.path", "must not be empty"));
        }
        // Relative to the main file's folder (an absolute path replaces it).
        Some(p) => folder.join(p.get_ref()),
    };
    Ok(StateSettings { path })
}

fn http_settings(src: &Source<'_>, raw: &raw::RawHttp) -> Result<HttpSettings, ConfigError> {
    let listen = match &raw.listen {
        None => DEFAULT_LISTEN.parse().expect("the default address parses"),
        Some(l) => l.get_ref().parse().map_err(|_| {
            src.invalid(
                l.span(),
                "http.listen",
                format!(
                    "must be an ip address and port such as {DEFAULT_LISTEN}, not {:?}",
                    l.get_ref()
                ),
            )
        })?,
    };
    Ok(HttpSettings { listen })
}

/// The `include` list: at the top, or (as TOML reads the contract's own
/// example, where `include` follows `[http]`) inside one settings table.
/// Given in two places, it is refused rather than guessed at.
fn one_include<'a>(
    src: &Source<'_>,
    raw: &'a RawMain,
) -> Result<Option<&'a Spanned<Vec<Spanned<String>>>>, ConfigError> {
    let places = [
        ("include", raw.include.as_ref()),
        ("aws.include", raw.aws.include.as_ref()),
        ("poll.include", raw.poll.include.as_ref()),
        ("log.include", raw.log.include.as_ref()),
        (
            "state.include",
            raw.state.as_ref().and_then(|s| s.include.as_ref()),
        ),
        (
            "http.include",
            raw.http.as_ref().and_then(|h| h.include.as_ref()),
        ),
    ];
    let mut found: Option<(&str, &'a Spanned<Vec<Spanned<String>>>)> = None;
    for (key, value) in places {
        let Some(value) = value else { continue };
        if let Some((first, _)) = found {
            return Err(src.invalid(
                value.span(),
                key,
                format!("include is already given as {first}"),
            ));
        }
        found = Some((key, value));
    }
    Ok(found.map(|(_, value)| value))
}

/// Each glob made absolute against the main file's folder (whose own glob
/// characters are escaped), and checked as a pattern.
fn include_globs(
    src: &Source<'_>,
    globs: &[Spanned<String>],
    folder: &Path,
) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::with_capacity(globs.len());
    for glob in globs {
        let text = glob.get_ref();
        if text.trim().is_empty() {
            return Err(src.invalid(glob.span(), "include", "a glob must not be empty"));
        }
        let absolute = if Path::new(text).is_absolute() {
            text.clone()
        } else {
            let folder = glob::Pattern::escape(&folder.to_string_lossy());
            Path::new(&folder).join(text).to_string_lossy().into_owned()
        };
        if let Err(e) = glob::Pattern::new(&absolute) {
            return Err(src.invalid(
                glob.span(),
                "include",
                format!("invalid glob {text:?}: {}", e.msg),
            ));
        }
        out.push(absolute);
    }
    Ok(out)
}

/// Every regular file the globs match, sorted, without the main file itself.
/// Hidden files (editor leftovers) match only a glob that names the dot.
fn included_files(main: &Path, globs: &[String]) -> Result<Vec<PathBuf>, ConfigError> {
    let options = glob::MatchOptions {
        require_literal_leading_dot: true,
        ..glob::MatchOptions::new()
    };
    let main = main.canonicalize().ok();
    let mut files = BTreeSet::new();
    for pattern in globs {
        let paths = glob::glob_with(pattern, options).expect("include globs are checked on parse");
        for entry in paths {
            let path = entry.map_err(|e| ConfigError::Read {
                file: e.path().to_path_buf(),
                source: e.into(),
            })?;
            if !path.is_file() || (main.is_some() && path.canonicalize().ok() == main) {
                continue;
            }
            files.insert(path);
        }
    }
    Ok(files.into_iter().collect())
}

/// Validates one file's `[[watch]]` tables into `set`; returns how many
/// tables the file held (before dedup).
fn add_watches(
    src: &Source<'_>,
    watches: &[Spanned<RawWatch>],
    default_region: Option<&str>,
    label_sets: &mut HashSet<Arc<Labels>>,
    set: &mut WatchSet,
) -> Result<usize, ConfigError> {
    // Tables come in file order: count lines from the previous table on, so
    // a file of N watches is read once, not N times.
    let (mut counted_to, mut line) = (0, 1);
    // One copy of the path and of each region for all of this file's watches.
    let file: Arc<Path> = src.path.into();
    let mut regions: Vec<Arc<str>> = Vec::new();
    for (i, raw) in watches.iter().enumerate() {
        let index = i + 1;
        let mut watch = build_watch(src, index, raw, default_region, &file)?;
        match label_sets.get(&watch.labels) {
            Some(known) => watch.labels = known.clone(),
            None => {
                label_sets.insert(watch.labels.clone());
            }
        }
        if let Some(region) = &mut watch.target.region {
            match regions.iter().find(|known| **known == *region) {
                Some(known) => *region = known.clone(),
                None => regions.push(region.clone()),
            }
        }
        let start = raw.span().start.min(src.text.len());
        if start < counted_to {
            (counted_to, line) = (0, 1); // out of order after all: count from the top
        }
        line += src.text.as_bytes()[counted_to..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        counted_to = start;
        let at = Origin {
            file: file.clone(),
            line: Some(line),
        };
        set.insert(watch, at).map_err(|conflict| {
            let labels = raw.get_ref().labels.as_ref();
            let span = labels
                .and_then(|l| l.get(&conflict.label))
                .map_or(raw.span(), |v| v.span());
            let key = format!("watch[{index}].labels.{}", conflict.label);
            src.invalid(span, &key, conflict.to_string())
        })?;
    }
    Ok(watches.len())
}

fn build_watch(
    src: &Source<'_>,
    index: usize,
    raw: &Spanned<RawWatch>,
    default_region: Option<&str>,
    file: &Arc<Path>,
) -> Result<Watch, ConfigError> {
    let w = raw.get_ref();
    let key = |name: &str| format!("watch[{index}].{name}");
    let whole = format!("watch[{index}]");

    let mut target = match (&w.execution_arn, &w.flow, &w.alias, &w.execution) {
        (Some(arn), None, None, None) => {
            let target = ExecutionRef::parse_arn(arn.get_ref())
                .map_err(|e| src.invalid(arn.span(), &key("execution_arn"), e.0))?;
            if let Some(region) = &w.region {
                check_region(region.get_ref())
                    .map_err(|e| src.invalid(region.span(), &key("region"), e.0))?;
                if target.region.as_deref() != Some(region.get_ref().as_str()) {
                    return Err(src.invalid(
                        region.span(),
                        &key("region"),
                        format!(
                            "region {} differs from the execution arn's region {}",
                            region.get_ref(),
                            target.region.as_deref().unwrap_or("-")
                        ),
                    ));
                }
            }
            target
        }
        (None, Some(flow), Some(alias), Some(execution)) => {
            let region = w.region.as_ref().map(|r| r.get_ref().as_str());
            ExecutionRef::parse_parts_located(
                flow.get_ref(),
                alias.get_ref(),
                execution.get_ref(),
                region,
            )
            .map_err(|(part, e)| {
                let span = match part {
                    Part::Flow => flow.span(),
                    Part::Alias => alias.span(),
                    Part::Execution => execution.span(),
                    Part::Region => w.region.as_ref().map_or(raw.span(), |r| r.span()),
                };
                src.invalid(span, &key(part.key()), e.0)
            })?
        }
        (Some(_), ..) => {
            return Err(src.invalid(
                raw.span(),
                &whole,
                "give either execution_arn or flow, alias and execution, not both",
            ));
        }
        (None, flow, alias, execution) => {
            let missing: Vec<&str> = [("flow", flow), ("alias", alias), ("execution", execution)]
                .into_iter()
                .filter(|(_, v)| v.is_none())
                .map(|(name, _)| name)
                .collect();
            let problem = if missing.len() == 3 {
                "missing execution_arn, or flow, alias and execution".to_string()
            } else {
                format!(
                    "missing {} (give flow, alias and execution, or execution_arn)",
                    missing.join(" and ")
                )
            };
            return Err(src.invalid(raw.span(), &whole, problem));
        }
    };
    if target.region.is_none() {
        target.region = default_region.map(Arc::from);
    }

    let mut labels = BTreeMap::new();
    for (name, value) in w.labels.iter().flatten() {
        if name.is_empty() {
            return Err(src.invalid(
                value.span(),
                &key("labels"),
                "a label name must not be empty",
            ));
        }
        labels.insert(name.clone(), value.get_ref().clone());
    }

    Ok(Watch {
        target,
        labels: Arc::new(labels),
        source: file.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001";
    const ONE_WATCH: &str =
        "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-0001\"\n";

    /// A temporary folder holding the main file `flowwatch.toml`.
    struct Dir {
        dir: tempfile::TempDir,
    }

    impl Dir {
        fn new() -> Dir {
            Dir {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }
        fn main(&self) -> PathBuf {
            self.dir.path().join("flowwatch.toml")
        }
        fn load(&self, text: &str) -> Result<Config, ConfigError> {
            load(&self.write("flowwatch.toml", text))
        }
        /// The error's Display, with the main file's path replaced by `{main}`.
        fn error(&self, text: &str) -> String {
            let err = self.load(text).expect_err("config should be refused");
            err.to_string()
                .replace(&self.main().display().to_string(), "{main}")
        }
    }

    #[test]
    fn an_unknown_key_names_file_line_column_and_the_dotted_key() {
        let dir = Dir::new();
        let text = format!("{ONE_WATCH}\n[poll]\nintreval_max = \"5s\"\n");
        assert_eq!(
            dir.error(&text),
            "{main}:7:1: poll.intreval_max: unknown key, expected one of `interval_initial`, \
             `interval_max`, `multiplier`, `jitter`, `rate_limit`, `max_in_flight`, \
             `request_timeout`, `max_watch`, `not_found_grace`, `include`"
        );
    }

    #[test]
    fn an_include_after_a_table_header_still_counts_as_the_include() {
        // TOML puts it inside [http]; the contract's example is written so.
        let dir = Dir::new();
        dir.write(
            "w/x.toml",
            &format!("[[watch]]\nexecution_arn = \"{ARN}\"\n"),
        );
        let text = "[http]\nlisten = \"127.0.0.1:9464\"\n\ninclude = [\"w/*.toml\"]\n";
        let config = dir.load(text).unwrap();
        assert_eq!(config.include.len(), 1);
        assert_eq!(config.watches.len(), 1);
        assert!(config.http.is_some());
    }

    #[test]
    fn an_include_given_twice_is_refused_at_the_second() {
        let dir = Dir::new();
        let text = "include = [\"a/*.toml\"]\n[log]\ninclude = [\"b/*.toml\"]\n";
        assert_eq!(
            dir.error(text),
            "{main}:3:11: log.include: include is already given as include"
        );
    }

    #[test]
    fn an_unknown_key_in_a_watch_names_the_watch_by_index() {
        let dir = Dir::new();
        let text = format!("{ONE_WATCH}[[watch]]\nexecution_arn = \"{ARN}\"\nlables = {{}}\n");
        let err = dir.error(&text);
        assert!(
            err.starts_with("{main}:7:1: watch[2].lables: unknown key, expected one of"),
            "{err}"
        );
    }

    #[test]
    fn a_duration_without_a_unit_is_refused_at_its_value() {
        let dir = Dir::new();
        let text = format!("[poll]\ninterval_max = \"5\"\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:16: poll.interval_max: invalid duration \"5\": time unit needed, for example 5sec or 5ms"
        );
    }

    #[test]
    fn a_zero_duration_is_refused() {
        let dir = Dir::new();
        let text = format!("[poll]\nrequest_timeout = \"0s\"\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:19: poll.request_timeout: must be longer than zero"
        );
    }

    #[test]
    fn durations_accept_milliseconds_to_hours() {
        let dir = Dir::new();
        let text = format!(
            "[poll]\ninterval_initial = \"500ms\"\ninterval_max = \"5m\"\nmax_watch = \"25h\"\nnot_found_grace = \"2s\"\n{ONE_WATCH}"
        );
        let poll = dir.load(&text).unwrap().poll;
        assert_eq!(poll.interval_initial, Duration::from_millis(500));
        assert_eq!(poll.interval_max, Duration::from_secs(300));
        assert_eq!(poll.max_watch, Duration::from_secs(25 * 3600));
        assert_eq!(poll.not_found_grace, Duration::from_secs(2));
    }

    #[test]
    fn interval_max_below_interval_initial_is_refused_at_interval_max() {
        let dir = Dir::new();
        let text =
            format!("[poll]\ninterval_initial = \"10s\"\ninterval_max = \"5s\"\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:3:16: poll.interval_max: interval_max (5s) is shorter than interval_initial (10s)"
        );
    }

    #[test]
    fn a_multiplier_below_one_is_refused() {
        let dir = Dir::new();
        let text = format!("[poll]\nmultiplier = 0.5\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:14: poll.multiplier: must be at least 1.0, not 0.5"
        );
    }

    #[test]
    fn a_jitter_above_one_is_refused() {
        let dir = Dir::new();
        let text = format!("[poll]\njitter = 1.5\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:10: poll.jitter: must be between 0.0 and 1.0, not 1.5"
        );
    }

    #[test]
    fn a_rate_limit_must_be_finite_and_positive() {
        let dir = Dir::new();
        for (value, shown) in [("0.0", "0"), ("nan", "NaN"), ("inf", "inf"), ("-1", "-1")] {
            let text = format!("[poll]\nrate_limit = {value}\n{ONE_WATCH}");
            assert_eq!(
                dir.error(&text),
                format!(
                    "{{main}}:2:14: poll.rate_limit: must be a finite number above 0, not {shown}"
                )
            );
        }
    }

    #[test]
    fn max_in_flight_must_be_at_least_one() {
        let dir = Dir::new();
        let text = format!("[poll]\nmax_in_flight = 0\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:17: poll.max_in_flight: must be between 1 and 65536, not 0"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_says_what_was_expected() {
        let dir = Dir::new();
        let text = format!("[poll]\nmax_in_flight = \"many\"\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:17: poll.max_in_flight: invalid type: string \"many\", expected an integer"
        );
    }

    #[test]
    fn an_unknown_log_format_is_refused() {
        let dir = Dir::new();
        let text = format!("[log]\nformat = \"yaml\"\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:10: log.format: must be json or text, not \"yaml\""
        );
    }

    #[test]
    fn an_unknown_log_level_is_refused() {
        let dir = Dir::new();
        let text = format!("[log]\nlevel = \"loud\"\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:9: log.level: must be error, warn, info, debug or trace, not \"loud\""
        );
    }

    #[test]
    fn http_listen_must_be_a_socket_address() {
        let dir = Dir::new();
        let text = format!("[http]\nlisten = \"localhost\"\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:10: http.listen: must be an ip address and port such as 127.0.0.1:9464, not \"localhost\""
        );
    }

    #[test]
    fn a_syntax_error_is_one_line_with_the_key_on_that_line() {
        let dir = Dir::new();
        let text = format!("{ONE_WATCH}[poll]\nmultiplier = \n");
        assert_eq!(
            dir.error(&text),
            "{main}:6:14: poll.multiplier: string values must be quoted, expected literal string"
        );
    }

    #[test]
    fn a_bad_execution_arn_names_the_watch_and_the_rule() {
        let dir = Dir::new();
        let bad = ARN.replace("123456789012", "1234");
        let text = format!("{ONE_WATCH}\n[[watch]]\nexecution_arn = \"{bad}\"\n");
        assert_eq!(
            dir.error(&text),
            format!(
                "{{main}}:7:17: watch[2].execution_arn: {bad:?} is not an execution arn: the account must be 12 digits"
            )
        );
    }

    #[test]
    fn arn_parts_that_disagree_are_refused_at_the_later_part() {
        let dir = Dir::new();
        let text = "[[watch]]\n\
                    flow = \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456\"\n\
                    alias = \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOWOTHER1/alias/ALIAS12345\"\n\
                    execution = \"run-1\"\n";
        assert_eq!(
            dir.error(text),
            "{main}:3:9: watch[1].alias: alias arn names flow FLOWOTHER1 but flow is FLOW123456"
        );
    }

    #[test]
    fn a_watch_region_that_contradicts_its_arn_is_refused() {
        let dir = Dir::new();
        let text = format!("[[watch]]\nexecution_arn = \"{ARN}\"\nregion = \"eu-west-1\"\n");
        assert_eq!(
            dir.error(&text),
            "{main}:3:10: watch[1].region: region eu-west-1 differs from the execution arn's region us-east-1"
        );
    }

    #[test]
    fn a_watch_with_both_forms_is_refused() {
        let dir = Dir::new();
        let text = format!("{ONE_WATCH}execution_arn = \"{ARN}\"\n");
        assert_eq!(
            dir.error(&text),
            "{main}:1:1: watch[1]: give either execution_arn or flow, alias and execution, not both"
        );
    }

    #[test]
    fn a_watch_missing_parts_names_them() {
        let dir = Dir::new();
        let text = "[[watch]]\nflow = \"FLOW123456\"\n";
        assert_eq!(
            dir.error(text),
            "{main}:1:1: watch[1]: missing alias and execution (give flow, alias and execution, or execution_arn)"
        );
    }

    #[test]
    fn no_watches_and_no_include_is_refused() {
        let dir = Dir::new();
        let err = dir.load("[poll]\nmultiplier = 2.0\n").unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: no watches: add [[watch]] tables or an include",
                dir.main().display()
            )
        );
    }

    #[test]
    fn an_include_that_matches_nothing_is_a_valid_empty_watch_list() {
        let dir = Dir::new();
        let config = dir.load("include = [\"watches.d/*.toml\"]\n").unwrap();
        assert!(config.watches.is_empty());
        assert_eq!(config.files.len(), 1);
    }

    #[test]
    fn a_missing_main_file_is_a_read_error() {
        let dir = Dir::new();
        let err = load(&dir.main()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot read {}", dir.main().display())
        );
    }

    #[test]
    fn defaults_apply_to_every_key_but_the_watches() {
        let dir = Dir::new();
        let config = dir.load(ONE_WATCH).unwrap();
        assert_eq!(config.aws, AwsSettings::default());
        assert_eq!(config.poll, PollSettings::default());
        assert_eq!(config.poll.not_found_grace, Duration::from_secs(30));
        assert_eq!(config.log, LogSettings::default());
        assert_eq!(config.state, None);
        assert_eq!(config.http, None);
        assert!(config.include.is_empty());
        assert_eq!(config.watches.len(), 1);
    }

    #[test]
    fn empty_state_and_http_tables_use_the_documented_defaults() {
        let dir = Dir::new();
        let config = dir.load(&format!("[state]\n[http]\n{ONE_WATCH}")).unwrap();
        assert_eq!(
            config.state.unwrap().path,
            PathBuf::from("/var/lib/flowwatch/state.json")
        );
        assert_eq!(
            config.http.unwrap().listen,
            "127.0.0.1:9464".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn relative_state_path_and_include_globs_are_anchored_at_the_main_file() {
        let dir = Dir::new();
        let config = dir
            .load(&format!(
                "include = [\"w/*.toml\"]\n[state]\npath = \"state.json\"\n{ONE_WATCH}"
            ))
            .unwrap();
        let folder = dir.dir.path();
        assert_eq!(config.state.unwrap().path, folder.join("state.json"));
        assert_eq!(
            config.include,
            [folder.join("w/*.toml").to_string_lossy().into_owned()]
        );
    }

    #[test]
    fn the_aws_region_fills_in_for_watches_without_one() {
        let dir = Dir::new();
        let text = format!(
            "[aws]\nregion = \"ap-south-1\"\n{ONE_WATCH}[[watch]]\nexecution_arn = \"{ARN}\"\n"
        );
        let config = dir.load(&text).unwrap();
        let regions: Vec<_> = config
            .watches
            .iter()
            .map(|(k, w)| {
                (
                    k.as_str().to_string(),
                    w.target.region.as_deref().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            regions,
            [
                (
                    "ap-south-1/FLOW123456/ALIAS12345/run-0001".to_string(),
                    "ap-south-1".to_string()
                ),
                (ARN.to_string(), "us-east-1".to_string()),
            ]
        );
    }

    #[test]
    fn included_files_are_read_in_sorted_order_after_the_main_file() {
        let dir = Dir::new();
        let w = |e: &str| {
            format!(
                "[[watch]]\nexecution_arn = \"{}\"\n",
                ARN.replace("run-0001", e)
            )
        };
        dir.write("w/b.toml", &w("run-b"));
        dir.write("w/a.toml", &format!("{}{}", w("run-a1"), w("run-a2")));
        dir.write("w/.hidden.toml", "not toml at all");
        dir.write("w/notes.txt", "not toml at all");
        let config = dir
            .load(&format!("include = [\"w/*.toml\"]\n{ONE_WATCH}"))
            .unwrap();
        let files: Vec<_> = config
            .files
            .iter()
            .map(|f| (f.path.clone(), f.watches))
            .collect();
        let folder = dir.dir.path();
        assert_eq!(
            files,
            [
                (dir.main(), 1),
                (folder.join("w/a.toml"), 2),
                (folder.join("w/b.toml"), 1)
            ]
        );
        assert_eq!(config.watches.len(), 4);
        let key = WatchKey(ARN.replace("run-0001", "run-b").into());
        assert_eq!(
            &*config.watches.get(&key).unwrap().source,
            folder.join("w/b.toml")
        );
    }

    #[test]
    fn an_included_file_with_a_non_watch_key_is_refused() {
        let dir = Dir::new();
        let included = dir.write(
            "w/x.toml",
            "[[watch]]\nexecution_arn = \"ARN\"\n\n[poll]\njitter = 0.1\n",
        );
        let err = dir
            .load(&format!("include = [\"w/*.toml\"]\n{ONE_WATCH}"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:4:2: poll: unknown key: an included file holds only [[watch]] tables",
                included.display()
            )
        );
    }

    #[test]
    fn an_error_in_an_included_file_counts_watches_within_that_file() {
        let dir = Dir::new();
        let included = dir.write(
            "w/x.toml",
            &format!("[[watch]]\nexecution_arn = \"{ARN}\"\n[[watch]]\nexecution_arn = \"nope\"\n"),
        );
        let err = dir
            .load(&format!("include = [\"w/*.toml\"]\n{ONE_WATCH}"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:4:17: watch[2].execution_arn: \"nope\" is not an execution arn (arn:PARTITION:bedrock:REGION:ACCOUNT:...)",
                included.display()
            )
        );
    }

    #[test]
    fn watches_with_the_same_labels_share_one_copy_across_files() {
        let dir = Dir::new();
        let watch = |id: &str, team: &str| {
            format!(
                "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"{id}\"\nlabels = {{ team = \"{team}\" }}\n"
            )
        };
        dir.write("w/a.toml", &watch("a", "search"));
        dir.write("w/b.toml", &watch("b", "search"));
        let main = format!("include = [\"w/*.toml\"]\n{}", watch("c", "ads"));
        let config = dir.load(&main).unwrap();
        let labels: Vec<_> = config
            .watches
            .iter()
            .map(|(_, w)| w.labels.clone())
            .collect();
        assert_eq!(labels.len(), 3);
        let search: Vec<_> = labels.iter().filter(|l| l["team"] == "search").collect();
        assert_eq!(search.len(), 2);
        assert!(Arc::ptr_eq(search[0], search[1]), "one shared copy");
    }

    #[test]
    fn the_same_execution_in_two_files_is_one_watch_with_merged_labels() {
        let dir = Dir::new();
        dir.write(
            "w/x.toml",
            &format!("[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ tier = \"gold\" }}\n"),
        );
        let text = format!(
            "include = [\"w/*.toml\"]\n[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ team = \"search\" }}\n"
        );
        let config = dir.load(&text).unwrap();
        assert_eq!(config.watches.len(), 1);
        assert_eq!(config.watches.merged(), 1);
        let (_, watch) = config.watches.iter().next().unwrap();
        assert_eq!(&*watch.source, dir.main());
        assert_eq!(
            *watch.labels,
            BTreeMap::from([
                ("team".to_string(), "search".to_string()),
                ("tier".to_string(), "gold".to_string())
            ])
        );
    }

    #[test]
    fn a_duplicate_with_a_conflicting_label_names_both_places() {
        let dir = Dir::new();
        let included = dir.write(
            "w/x.toml",
            &format!("\n[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ team = \"ads\" }}\n"),
        );
        let text = format!(
            "include = [\"w/*.toml\"]\n[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ team = \"search\" }}\n"
        );
        let err = dir.load(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:4:19: watch[1].labels.team: duplicate watch {ARN} conflicts with {}:2: label team is \"search\" there and \"ads\" here",
                included.display(),
                dir.main().display()
            )
        );
    }

    #[test]
    fn summary_has_a_line_per_file_and_a_total() {
        let dir = Dir::new();
        let included = dir.write(
            "w/x.toml",
            &format!(
                "[[watch]]\nexecution_arn = \"{ARN}\"\n[[watch]]\nexecution_arn = \"{}\"\n",
                ARN.replace("us-east-1", "eu-west-1")
            ),
        );
        let text =
            format!("include = [\"w/*.toml\"]\n{ONE_WATCH}[[watch]]\nexecution_arn = \"{ARN}\"\n");
        let config = dir.load(&text).unwrap();
        assert_eq!(
            config.summary_lines(),
            [
                format!("{}: 2 watches", dir.main().display()),
                format!("{}: 2 watches", included.display()),
                "ok: 3 watches (1 duplicate merged) in 2 files, regions (default), eu-west-1, us-east-1"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn parse_str_reads_the_main_file_from_memory_and_includes_from_disk() {
        let dir = Dir::new();
        dir.write(
            "w/x.toml",
            &format!("[[watch]]\nexecution_arn = \"{ARN}\"\n"),
        );
        let config = parse_str("include = [\"w/*.toml\"]\n", &dir.main()).unwrap();
        assert_eq!(config.path, dir.main());
        assert_eq!(config.watches.len(), 1);
        assert!(!dir.main().exists());
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
        let config = load(&path).unwrap();
        assert_eq!(config.files.len(), 2, "{:?}", config.files);
        assert_eq!(config.watches.len(), 3);
        assert_eq!(config.aws.region.as_deref(), Some("us-east-1"));
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.poll.not_found_grace, Duration::from_secs(30));
        assert!(config.state.is_some() && config.http.is_some());
        let included = config
            .watches
            .get(&WatchKey(
                "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/TSTALIASID/execution/run-0003"
                    .into(),
            ))
            .expect("the included watch is keyed by its built arn");
        assert_eq!(included.labels["pipeline"], "nightly");
    }

    /// The contract's configuration block, verbatim.
    const CONTRACT_BLOCK: &str = r#"[aws]
region = "us-east-1"          # default: the standard AWS chain (env, profile, IMDS)
profile = "prod"              # default: the standard chain
endpoint_url = "http://127.0.0.1:4566"   # default: the real regional endpoint

[poll]
interval_initial = "2s"       # first re-poll delay after a poll that saw no change
interval_max = "60s"          # cap of the no-change backoff
multiplier = 2.0
jitter = 0.2                  # randomization factor, 0.0..=1.0
rate_limit = 10.0             # requests/second to one region, all watches together
max_in_flight = 16            # concurrent requests
request_timeout = "10s"       # per attempt
max_watch = "25h"             # abandon a watch after this long (executions time out at 24 h)

[log]
format = "json"               # json | text
level = "info"

[state]
path = "/var/lib/flowwatch/state.json"   # optional; persistence across restarts

[http]
listen = "127.0.0.1:9464"     # optional; GET /healthz, /readyz, /metrics (Prometheus text)

include = ["watches.d/*.toml"]  # optional globs, relative to this file; each holds [[watch]] tables only

[[watch]]
execution_arn = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001"
labels = { team = "search" } # optional, copied onto every event of this watch

[[watch]]                     # the same execution, by parts
flow = "FLOW123456"           # id or flow ARN
alias = "ALIAS12345"          # id or alias ARN
execution = "run-0001"        # id or execution ARN
region = "eu-west-1"          # optional per-watch region
"#;

    #[test]
    fn the_contract_example_block_is_valid_as_written() {
        let dir = Dir::new();
        dir.write(
            "watches.d/a.toml",
            &format!(
                "[[watch]]\nexecution_arn = \"{}\"\n",
                ARN.replace("run-0001", "run-9")
            ),
        );
        let config = dir.load(CONTRACT_BLOCK).unwrap();
        assert_eq!(config.files.len(), 2);
        assert_eq!(config.watches.len(), 3);
        assert_eq!(config.http.unwrap().listen.port(), 9464);
        assert_eq!(config.poll.max_watch, Duration::from_secs(25 * 3600));
    }
}
