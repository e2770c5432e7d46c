//! The daemon's Prometheus metrics. The daemon records what happened
//! (`poll`, `transition`, `throttled`, ...) and `/metrics` reads `encode`.
//! Every family is named `flowwatch_*`; label values are the contract's
//! strings (API statuses, poll outcomes, abandon reasons, regions). Every
//! counter series an alert may `rate()` exists from the first scrape at 0
//! (issue 7.10): known label values up front, a region's once it is in use.
//!
//! Recording is cheap enough for hundreds of polls a second: a read lock and
//! an atomic add. Label values known at compile time are borrowed, so only a
//! region name or a status the SDK does not know costs a small allocation.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// One label: (name, value). A borrowed `'static` value needs no allocation.
type Label = [(&'static str, Cow<'static, str>); 1];

/// Watch statuses that are always exported, at 0 when no watch has them, so
/// a dashboard sees a flat line rather than a missing series.
const KNOWN_WATCH_STATUSES: [&str; 6] = [
    "Running",
    "Succeeded",
    "Failed",
    "TimedOut",
    "Aborted",
    "abandoned",
];

/// Label values created at 0 up front, so `rate()` sees every counter from
/// its start and dashboards see a flat line rather than a missing series.
const POLL_OUTCOMES: [&str; 6] = [
    "observed",
    "throttled",
    "failed",
    "not_found",
    "invalid",
    "access_denied",
];
/// The `to` of a transition the SDK has no name for: the server's raw
/// string would make the label set unbounded (issue 7.10).
const OTHER_STATUS: &str = "other";
const ABANDON_REASONS: [&str; 4] = ["not_found", "invalid", "access_denied", "max_watch"];
const RELOAD_RESULTS: [&str; 2] = ["ok", "failed"];

/// Upper bounds in seconds: a loopback simulator answers in ~5 ms, a slow
/// attempt runs into `request_timeout` (10 s by default, 30 s at most sane).
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every flowwatch metric, registered in one `Registry`. Share it as
/// `Arc<Metrics>`: every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    watches: Family<Label, Gauge>,
    /// Statuses outside `KNOWN_WATCH_STATUSES` last set by `set_watches`,
    /// so the next call can drop the ones that disappeared.
    other_watch_statuses: Mutex<BTreeSet<String>>,
    polls: Family<Label, Counter>,
    transitions: Family<Label, Counter>,
    throttles: Family<Label, Counter>,
    rate: Family<Label, Gauge<f64, AtomicU64>>,
    latency: Histogram,
    reloads: Family<Label, Counter>,
    abandoned: Family<Label, Counter>,
    /// How long the last walk of each `[[watch_flow]]` table took (issue 9).
    walk: Family<Label, Gauge<f64, AtomicU64>>,
    /// `flowwatch_leader`, registered by `with_leader` (`[ha]` only).
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every family. Series whose label values are known up front
    /// (statuses and `other`, outcomes, reasons, results) start at 0;
    /// per-region series appear with `register_region` or first use.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("flowwatch");
        let watches = Family::<Label, Gauge>::default();
        let polls = Family::<Label, Counter>::default();
        let transitions = Family::<Label, Counter>::default();
        let throttles = Family::<Label, Counter>::default();
        let rate = Family::<Label, Gauge<f64, AtomicU64>>::default();
        let latency = Histogram::new(LATENCY_BUCKETS);
        let reloads = Family::<Label, Counter>::default();
        let abandoned = Family::<Label, Counter>::default();
        let walk = Family::<Label, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "discovery_walk_duration",
            "How long the last ListFlowExecutions walk of each [[watch_flow]] table took",
            Unit::Seconds,
            walk.clone(),
        );

        registry.register(
            "watches",
            "Watched executions by last seen status (API status string, or abandoned)",
            watches.clone(),
        );
        registry.register(
            "polls",
            "GetFlowExecution attempts by outcome",
            polls.clone(),
        );
        registry.register(
            "transitions",
            "Status transitions reported, by the status changed to",
            transitions.clone(),
        );
        registry.register(
            "throttles",
            "Requests answered with ThrottlingException, by region",
            throttles.clone(),
        );
        registry.register_with_unit(
            "rate_limit",
            "The adapted request rate budget per region",
            Unit::Other("requests_per_second".to_string()),
            rate.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "GetFlowExecution attempt latency, any outcome",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "reloads",
            "Configuration reloads by result (ok, failed)",
            reloads.clone(),
        );
        registry.register(
            "abandoned",
            "Watches abandoned without a terminal status, by reason",
            abandoned.clone(),
        );

        for status in KNOWN_WATCH_STATUSES {
            let _ = watches.get_or_create(&label("status", Cow::Borrowed(status)));
        }
        // "abandoned" is a watch state, never a transition's `to`.
        for status in KNOWN_WATCH_STATUSES[..5].iter().chain([&OTHER_STATUS]) {
            let _ = transitions.get_or_create(&label("to", Cow::Borrowed(status)));
        }
        for outcome in POLL_OUTCOMES {
            let _ = polls.get_or_create(&label("outcome", Cow::Borrowed(outcome)));
        }
        for reason in ABANDON_REASONS {
            let _ = abandoned.get_or_create(&label("reason", Cow::Borrowed(reason)));
        }
        for result in RELOAD_RESULTS {
            let _ = reloads.get_or_create(&label("result", Cow::Borrowed(result)));
        }

        Metrics {
            registry,
            watches,
            other_watch_statuses: Mutex::new(BTreeSet::new()),
            polls,
            transitions,
            throttles,
            rate,
            latency,
            reloads,
            abandoned,
            walk,
            leader: Gauge::default(),
        }
    }

    /// Sets how long the last walk of the `[[watch_flow]]` table `flow`
    /// (region/flow/alias) took, in seconds.
    pub fn set_walk(&self, flow: &str, seconds: f64) {
        self.walk
            .get_or_create(&label("flow", Cow::Owned(flow.to_string())))
            .set(seconds);
    }

    /// Adds the `flowwatch_leader` gauge (1 leading, 0 standing by): with
    /// `[ha]` only, so a single instance's metrics stay as they were.
    pub fn with_leader(mut self) -> Metrics {
        self.registry.register(
            "leader",
            "1 while this instance leads and polls, 0 while it stands by",
            self.leader.clone(),
        );
        self
    }

    /// Sets `flowwatch_leader`.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Counts one attempt by its outcome (`observed`, `throttled`, `failed`,
    /// `not_found`, `invalid`, `access_denied`) and records its latency.
    pub fn poll(&self, outcome: &'static str, latency: Duration) {
        self.polls
            .get_or_create(&label("outcome", Cow::Borrowed(outcome)))
            .inc();
        self.latency.observe(latency.as_secs_f64());
    }

    /// Counts one reported transition to `to` (an API status string); a
    /// status outside the five the API documents counts as `other`.
    pub fn transition(&self, to: &str) {
        let to = KNOWN_WATCH_STATUSES[..5]
            .iter()
            .find(|known| **known == to)
            .map_or(OTHER_STATUS, |known| *known);
        self.transitions
            .get_or_create(&label("to", Cow::Borrowed(to)))
            .inc();
    }

    /// Makes `region`'s per-region counters exist (at 0 until something
    /// happens), so a `rate()` alert on throttles sees data from the first
    /// scrape. Idempotent and cheap; `set_rate` calls it too.
    pub fn register_region(&self, region: &str) {
        let _ = self
            .throttles
            .get_or_create(&label("region", Cow::Owned(region.to_string())));
    }

    /// Counts one `ThrottlingException` from `region`.
    pub fn throttled(&self, region: &str) {
        self.throttles
            .get_or_create(&label("region", Cow::Owned(region.to_string())))
            .inc();
    }

    /// Sets the adapted rate budget of `region`, in requests per second; the
    /// region counts as in use from then on (`register_region`).
    pub fn set_rate(&self, region: &str, per_second: f64) {
        self.register_region(region);
        self.rate
            .get_or_create(&label("region", Cow::Owned(region.to_string())))
            .set(per_second);
    }

    /// Counts one reload, applied (`ok`) or rejected (`failed`).
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&label("result", Cow::Borrowed(result)))
            .inc();
    }

    /// Counts one abandoned watch by the contract's `reason` (`not_found`,
    /// `invalid`, `access_denied`, `max_watch`).
    pub fn abandoned(&self, reason: &'static str) {
        self.abandoned
            .get_or_create(&label("reason", Cow::Borrowed(reason)))
            .inc();
    }

    /// Replaces the watch counts by status. Known statuses missing from
    /// `counts` drop to 0; unknown ones missing from `counts` disappear.
    /// A status listed twice adds up.
    pub fn set_watches(&self, counts: &[(&str, i64)]) {
        let mut totals: Vec<(Cow<'static, str>, i64)> = Vec::with_capacity(counts.len());
        for &(status, count) in counts {
            match totals.iter_mut().find(|(s, _)| s == status) {
                Some((_, total)) => *total = total.saturating_add(count),
                None => totals.push((status_value(status), count)),
            }
        }

        let mut others = crate::lock::lock(&self.other_watch_statuses);
        for status in KNOWN_WATCH_STATUSES {
            let count = totals
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            self.watches
                .get_or_create(&label("status", Cow::Borrowed(status)))
                .set(count);
        }
        let now: BTreeSet<String> = totals
            .iter()
            .filter(|(s, _)| matches!(s, Cow::Owned(_)))
            .map(|(s, _)| s.to_string())
            .collect();
        for gone in others.difference(&now) {
            self.watches
                .remove(&label("status", Cow::Owned(gone.clone())));
        }
        for (status, count) in totals {
            if let Cow::Owned(_) = status {
                self.watches
                    .get_or_create(&label("status", status))
                    .set(count);
            }
        }
        *others = now;
    }

    /// The whole exposition in OpenMetrics text, ending with `# EOF`; serve
    /// it with [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(4096);
        encode(&mut text, &self.registry).expect("writing to a String never fails");
        text
    }
}

/// The content type of [`Metrics::encode`]'s text (OpenMetrics 1.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn label(name: &'static str, value: Cow<'static, str>) -> Label {
    [(name, value)]
}

/// A status as a label value, borrowed when it is one we know.
fn status_value(status: &str) -> Cow<'static, str> {
    match KNOWN_WATCH_STATUSES.iter().find(|known| **known == status) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(status.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the one sample line `name{labels} value`, if present.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().expect("a sample value is a number"))
        })
    }

    #[test]
    fn the_leader_gauge_exists_only_with_ha() {
        assert!(!Metrics::new().encode().contains("flowwatch_leader"));
        let ha = Metrics::new().with_leader();
        assert!(
            ha.encode().contains("flowwatch_leader 0"),
            "{}",
            ha.encode()
        );
    }

    #[test]
    fn every_family_is_exported_with_its_help_and_type() {
        let m = Metrics::new();
        m.throttled("us-east-1");
        m.set_rate("us-east-1", 10.0);
        let text = m.encode();
        for (family, kind) in [
            ("flowwatch_watches", "gauge"),
            ("flowwatch_polls", "counter"),
            ("flowwatch_transitions", "counter"),
            ("flowwatch_throttles", "counter"),
            ("flowwatch_rate_limit_requests_per_second", "gauge"),
            ("flowwatch_request_duration_seconds", "histogram"),
            ("flowwatch_reloads", "counter"),
            ("flowwatch_abandoned", "counter"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} {kind}\n")),
                "no {kind} {family} in:\n{text}"
            );
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "no help for {family}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "not OpenMetrics:\n{text}");
    }

    #[test]
    fn polls_are_counted_by_outcome_and_timed() {
        let m = Metrics::new();
        m.poll("observed", Duration::from_millis(20));
        m.poll("observed", Duration::from_millis(20));
        m.poll("throttled", Duration::from_secs(3));
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"flowwatch_polls_total{outcome="observed"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_polls_total{outcome="throttled"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_polls_total{outcome="failed"}"#),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "flowwatch_request_duration_seconds_count"),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"flowwatch_request_duration_seconds_bucket{le="0.025"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"flowwatch_request_duration_seconds_bucket{le="5.0"}"#
            ),
            Some(3.0),
            "{text}"
        );
        let sum = sample(&text, "flowwatch_request_duration_seconds_sum").unwrap();
        assert!((sum - 3.04).abs() < 1e-9, "sum {sum}");
    }

    #[test]
    fn transitions_throttles_reloads_and_abandons_are_counted_by_label() {
        let m = Metrics::new();
        m.transition("Running");
        m.transition("Succeeded");
        m.transition("Running");
        m.throttled("us-east-1");
        m.throttled("us-east-1");
        m.reload(true);
        m.reload(false);
        m.reload(false);
        m.abandoned("not_found");
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"flowwatch_transitions_total{to="Running"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_transitions_total{to="Succeeded"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_throttles_total{region="us-east-1"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_reloads_total{result="ok"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_reloads_total{result="failed"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_abandoned_total{reason="not_found"}"#),
            Some(1.0)
        );
    }

    #[test]
    fn known_label_values_start_at_zero_and_regions_appear_on_first_use() {
        let text = Metrics::new().encode();
        for series in [
            r#"flowwatch_polls_total{outcome="access_denied"}"#,
            r#"flowwatch_transitions_total{to="TimedOut"}"#,
            r#"flowwatch_abandoned_total{reason="max_watch"}"#,
            r#"flowwatch_reloads_total{result="failed"}"#,
            r#"flowwatch_watches{status="abandoned"}"#,
            r#"flowwatch_transitions_total{to="other"}"#,
        ] {
            assert_eq!(sample(&text, series), Some(0.0), "{series} in:\n{text}");
        }
        assert!(!text.contains("region="), "{text}");
        assert!(!text.contains(r#"to="abandoned""#), "{text}");
    }

    #[test]
    fn a_status_the_api_does_not_document_counts_as_other() {
        let m = Metrics::new();
        m.transition("InProgress");
        m.transition("Paused; drop table");
        m.transition("Running");
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"flowwatch_transitions_total{to="other"}"#),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, r#"flowwatch_transitions_total{to="Running"}"#),
            Some(1.0)
        );
        let to_values = text
            .lines()
            .filter(|l| l.starts_with("flowwatch_transitions_total{"))
            .count();
        assert_eq!(to_values, 6, "{text}");
    }

    #[test]
    fn a_region_in_use_has_its_throttle_counter_at_zero_before_any_throttle() {
        let m = Metrics::new();
        m.register_region("eu-west-1");
        m.set_rate("us-east-1", 10.0);
        let text = m.encode();
        for region in ["eu-west-1", "us-east-1"] {
            let series = format!(r#"flowwatch_throttles_total{{region="{region}"}}"#);
            assert_eq!(sample(&text, &series), Some(0.0), "{series} in:\n{text}");
        }
        m.register_region("eu-west-1");
        m.throttled("eu-west-1");
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"flowwatch_throttles_total{region="eu-west-1"}"#),
            Some(1.0)
        );
    }

    #[test]
    fn the_rate_gauge_holds_the_last_value_per_region() {
        let m = Metrics::new();
        m.set_rate("us-east-1", 10.0);
        m.set_rate("us-east-1", 2.5);
        m.set_rate("eu-west-1", 7.0);
        let text = m.encode();
        let us = r#"flowwatch_rate_limit_requests_per_second{region="us-east-1"}"#;
        let eu = r#"flowwatch_rate_limit_requests_per_second{region="eu-west-1"}"#;
        assert_eq!(sample(&text, us), Some(2.5), "{text}");
        assert_eq!(sample(&text, eu), Some(7.0), "{text}");
    }

    #[test]
    fn set_watches_replaces_the_previous_counts() {
        let m = Metrics::new();
        m.set_watches(&[("Running", 3), ("InProgress", 2), ("abandoned", 1)]);
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"flowwatch_watches{status="Running"}"#),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_watches{status="InProgress"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_watches{status="abandoned"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_watches{status="Succeeded"}"#),
            Some(0.0)
        );

        m.set_watches(&[("Succeeded", 4), ("Running", 1), ("Running", 1)]);
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"flowwatch_watches{status="Running"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_watches{status="Succeeded"}"#),
            Some(4.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_watches{status="abandoned"}"#),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, r#"flowwatch_watches{status="InProgress"}"#),
            None,
            "{text}"
        );
    }
}
