//! The settings tables and their validation: `[aws]`, `[poll]`, `[log]`,
//! `[state]` and `[http]`. In: the raw tables with their spans. Out: the
//! typed settings with every default filled in, or a `ConfigError` at the
//! offending value. Each value is checked here once; nothing downstream re-checks.
//!
//! Why one file of this size: every settings table and its checks, each key
//! read the same way with its position; the tables are small, the keys many.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, Source};
use super::raw::{self, RawPoll};
use crate::watch::ids::check_region;

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
    /// Fetch the failure events of executions that end `Failed`,
    /// `TimedOut` or `Aborted` (issue 9); default true.
    pub failure_details: bool,
    /// ListFlowExecutionEvents pages per execution, both kinds; default 20.
    pub failure_details_max_pages: u32,
    /// The share of a region's rate all `[[watch_flow]]` walks may use
    /// together, above 0 and at most 1; default 0.25.
    pub discovery_share: f64,
    /// How often a walk starts when it is cheap; default 30s.
    pub list_interval: Duration,
    /// How no-change delays are chosen (issue 11); flowwatch's own addition
    /// to the contract's `[poll]` keys; default exponential.
    pub schedule: SchedulePolicy,
}

/// `[poll] schedule`: the contract's exponential no-change delays, or the
/// learned ones (issue 11, `schedule::learned`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulePolicy {
    #[default]
    Exponential,
    Learned,
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
            failure_details: true,
            failure_details_max_pages: crate::details::MAX_PAGES,
            discovery_share: crate::discover::DISCOVERY_SHARE,
            list_interval: crate::discover::LIST_INTERVAL,
            schedule: SchedulePolicy::Exponential,
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
    /// A file holding the bearer token that write requests to `/v1` must
    /// carry (issue 10); none: writes are open (the listener is loopback).
    pub token_file: Option<PathBuf>,
    /// How long an ended API watch stays queryable before it is dropped
    /// from memory and `[state]`.
    pub keep_ended: Duration,
    /// API watches at once (ended ones kept for `keep_ended` count).
    pub max_api_watches: usize,
    /// The largest `POST /v1/watches` body.
    pub max_body_bytes: usize,
    /// Long polls waiting at once.
    pub max_long_polls: usize,
    /// `GET /v1/events` clients at once.
    pub max_sse_clients: usize,
    /// Events kept for clients that reconnect with `Last-Event-ID`.
    pub events_buffer: usize,
}

impl HttpSettings {
    /// The settings an `[http]` table with only `listen` gives.
    pub fn on(listen: SocketAddr) -> HttpSettings {
        HttpSettings {
            listen,
            token_file: None,
            keep_ended: Duration::from_secs(3600),
            max_api_watches: 10_000,
            max_body_bytes: 64 * 1024,
            // Both below the listener's connection cap (256), so a full
            // house of waiters never locks a health probe out.
            max_long_polls: 128,
            max_sse_clients: 64,
            events_buffer: 1024,
        }
    }
}

/// `[state] path` when the table is present but the key is not.
const DEFAULT_STATE_PATH: &str = "/var/lib/flowwatch/state.json";
/// `[http] listen` when the table is present but the key is not (as text,
/// for messages; `http_settings` builds the same address).
const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// Longest duration accepted anywhere: far beyond any execution (24 h), and it
/// keeps instant arithmetic downstream far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// Most concurrent requests accepted (a semaphore's permit count stays sane).
const MAX_IN_FLIGHT: i64 = 65_536;
/// Largest `[http]` limit accepted: far beyond what one process serves.
const MAX_COUNT: i64 = 10_000_000;
/// `failure_details_max_pages` at most: 10 events a page, 10,000 events.
const MAX_DETAILS_PAGES: u32 = 1000;

pub(super) fn aws_settings(
    src: &Source<'_>,
    raw: &raw::RawAws,
) -> Result<AwsSettings, ConfigError> {
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
        http_url(src, url, "aws.endpoint_url")?;
    }
    Ok(AwsSettings {
        region: raw.region.as_ref().map(|r| r.get_ref().clone()),
        profile: raw.profile.as_ref().map(|p| p.get_ref().clone()),
        endpoint_url: raw.endpoint_url.as_ref().map(|u| u.get_ref().clone()),
    })
}

pub(super) fn poll_settings(src: &Source<'_>, raw: &RawPoll) -> Result<PollSettings, ConfigError> {
    let d = PollSettings::default();
    let interval_initial = duration(
        src,
        &raw.interval_initial,
        "poll.interval_initial",
        d.interval_initial,
    )?;
    let interval_max = duration(src, &raw.interval_max, "poll.interval_max", d.interval_max)?;
    if interval_max < interval_initial {
        // At least one was given: the defaults are ordered.
        let (span, key) = match (&raw.interval_max, &raw.interval_initial) {
            (Some(max), _) => (max.span(), "poll.interval_max"),
            (None, Some(initial)) => (initial.span(), "poll.interval_initial"),
            (None, None) => (0..0, "poll.interval_max"),
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
    let failure_details_max_pages = match &raw.failure_details_max_pages {
        None => d.failure_details_max_pages,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(v) if (1..=MAX_DETAILS_PAGES).contains(&v) => v,
            _ => {
                return Err(src.invalid(
                    n.span(),
                    "poll.failure_details_max_pages",
                    format!(
                        "must be between 1 and {MAX_DETAILS_PAGES}, not {}",
                        n.get_ref()
                    ),
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
        failure_details: raw
            .failure_details
            .as_ref()
            .map_or(d.failure_details, |v| *v.get_ref()),
        failure_details_max_pages,
        discovery_share: number(
            src,
            &raw.discovery_share,
            "poll.discovery_share",
            d.discovery_share,
            |x| {
                (x > 0.0 && x <= 1.0)
                    .then_some(())
                    .ok_or("must be above 0.0 and at most 1.0")
            },
        )?,
        list_interval: duration(
            src,
            &raw.list_interval,
            "poll.list_interval",
            d.list_interval,
        )?,
        schedule: match &raw.schedule {
            None => d.schedule,
            Some(s) => match s.get_ref().as_str() {
                "exponential" => SchedulePolicy::Exponential,
                "learned" => SchedulePolicy::Learned,
                other => {
                    return Err(src.invalid(
                        s.span(),
                        "poll.schedule",
                        format!("must be exponential or learned, not {other:?}"),
                    ));
                }
            },
        },
    })
}

/// A duration string such as "500ms", "2s", "5m" or "25h"; above zero.
pub(super) fn duration(
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

pub(super) fn log_settings(
    src: &Source<'_>,
    raw: &raw::RawLog,
) -> Result<LogSettings, ConfigError> {
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

pub(super) fn state_settings(
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

pub(super) fn http_settings(
    src: &Source<'_>,
    raw: &raw::RawHttp,
    folder: &Path,
) -> Result<HttpSettings, ConfigError> {
    let listen = match &raw.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 9464)),
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
    let d = HttpSettings::on(listen);
    let token_file = match &raw.token_file {
        None => None,
        Some(p) if p.get_ref().is_empty() => {
            return Err(src.invalid(p.span(), "http.token_file", "must not be empty"));
        }
        Some(p) => Some(folder.join(p.get_ref())),
    };
    Ok(HttpSettings {
        listen,
        token_file,
        keep_ended: duration(src, &raw.keep_ended, "http.keep_ended", d.keep_ended)?,
        max_api_watches: count(
            src,
            &raw.max_api_watches,
            "http.max_api_watches",
            d.max_api_watches,
        )?,
        max_body_bytes: count(
            src,
            &raw.max_body_bytes,
            "http.max_body_bytes",
            d.max_body_bytes,
        )?,
        max_long_polls: count(
            src,
            &raw.max_long_polls,
            "http.max_long_polls",
            d.max_long_polls,
        )?,
        max_sse_clients: count(
            src,
            &raw.max_sse_clients,
            "http.max_sse_clients",
            d.max_sse_clients,
        )?,
        events_buffer: count(
            src,
            &raw.events_buffer,
            "http.events_buffer",
            d.events_buffer,
        )?,
    })
}

/// A count from 1 to `MAX_COUNT`.
fn count(
    src: &Source<'_>,
    value: &Option<Spanned<i64>>,
    key: &str,
    default: usize,
) -> Result<usize, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match usize::try_from(*value.get_ref()) {
        Ok(n) if (1..=MAX_COUNT).contains(value.get_ref()) => Ok(n),
        _ => Err(src.invalid(
            value.span(),
            key,
            format!("must be between 1 and {MAX_COUNT}, not {}", value.get_ref()),
        )),
    }
}

/// `url` is an http:// or https:// url with something after the scheme.
pub(super) fn http_url(src: &Source, url: &Spanned<String>, key: &str) -> Result<(), ConfigError> {
    let rest = url
        .get_ref()
        .strip_prefix("http://")
        .or_else(|| url.get_ref().strip_prefix("https://"));
    if rest.is_none_or(str::is_empty) {
        return Err(src.invalid(
            url.span(),
            key,
            format!(
                "must be an http:// or https:// url, not {:?}",
                url.get_ref()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixture::*;

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
    fn schedule_is_exponential_unless_learned_is_asked_for() {
        let dir = Dir::new();
        assert_eq!(
            dir.load(ONE_WATCH).unwrap().poll.schedule,
            SchedulePolicy::Exponential
        );
        let text = format!("[poll]\nschedule = \"learned\"\n{ONE_WATCH}");
        assert_eq!(
            dir.load(&text).unwrap().poll.schedule,
            SchedulePolicy::Learned
        );
        let text = format!("[poll]\nschedule = \"smart\"\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:12: poll.schedule: must be exponential or learned, not \"smart\""
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
    fn failure_details_default_on_with_twenty_pages_and_can_be_turned_off() {
        let dir = Dir::new();
        let poll = dir.load(ONE_WATCH).unwrap().poll;
        assert_eq!(
            (poll.failure_details, poll.failure_details_max_pages),
            (true, 20)
        );
        let text =
            format!("[poll]\nfailure_details = false\nfailure_details_max_pages = 3\n{ONE_WATCH}");
        let poll = dir.load(&text).unwrap().poll;
        assert_eq!(
            (poll.failure_details, poll.failure_details_max_pages),
            (false, 3)
        );
    }

    #[test]
    fn failure_details_keys_are_validated_at_their_value() {
        let dir = Dir::new();
        let text = format!("[poll]\nfailure_details_max_pages = 0\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:29: poll.failure_details_max_pages: must be between 1 and 1000, not 0"
        );
        let text = format!("[poll]\nfailure_details = \"yes\"\n{ONE_WATCH}");
        assert!(
            dir.error(&text)
                .starts_with("{main}:2:19: poll.failure_details: invalid type: string"),
            "{}",
            dir.error(&text)
        );
    }

    #[test]
    fn discovery_share_and_list_interval_default_and_are_validated() {
        let dir = Dir::new();
        let poll = dir.load(ONE_WATCH).unwrap().poll;
        assert_eq!(poll.discovery_share, 0.25);
        assert_eq!(poll.list_interval, Duration::from_secs(30));
        let text = format!("[poll]\ndiscovery_share = 1.5\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:19: poll.discovery_share: must be above 0.0 and at most 1.0, not 1.5"
        );
        let text = format!("[poll]\nlist_interval = \"0s\"\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:17: poll.list_interval: must be longer than zero"
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
    fn http_api_keys_have_defaults_and_are_checked() {
        let dir = Dir::new();
        let http = dir
            .load(&format!("[http]\n{ONE_WATCH}"))
            .unwrap()
            .http
            .unwrap();
        assert_eq!(http.keep_ended, Duration::from_secs(3600));
        assert_eq!(http.token_file, None);
        let text = format!(
            "[http]\nkeep_ended = \"5m\"\nmax_sse_clients = 3\ntoken_file = \"token\"\n{ONE_WATCH}"
        );
        let http = dir.load(&text).unwrap().http.unwrap();
        assert_eq!(http.keep_ended, Duration::from_secs(300));
        assert_eq!(http.max_sse_clients, 3);
        assert!(http.token_file.unwrap().ends_with("token"));
        let text = format!("[http]\nmax_long_polls = 0\n{ONE_WATCH}");
        assert!(
            dir.error(&text)
                .contains("http.max_long_polls: must be between 1 and")
        );
    }
}
