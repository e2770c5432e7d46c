//! Scenario TOML → [`Scenario`]. In: the file's text and name. Out: a checked
//! scenario, or the first problem as `FILE:LINE:COLUMN: KEY: PROBLEM`. Every
//! key is read through one small reader that remembers which keys it took, so
//! an unknown key (a typo) is an error pointing at that key.
//!
//! Why one file of this size: one function per scenario table, each checking
//! every key at its position through the one key reader at the bottom;
//! splitting tables from that reader would scatter one format.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ids;
use super::scenario::{
    EventsFault, Execution, Generated, ListOrder, NodeError, QuotaChange, Scenario, ServerKnobs,
    Step,
};

/// Why a scenario was refused: the config's own error, so both read
/// `file:line:column: key: problem`.
pub type ScenarioError = crate::config::ConfigError;

/// Largest `count` of one `[[generate]]` table.
const MAX_GENERATED: u64 = 10_000_000;

/// Longest drawn `duration`: the service ends an execution after 24 h.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

pub(super) fn parse(text: &str, file: &Path) -> Result<Scenario, ScenarioError> {
    let cx = Cx { text, file };
    let doc = DeTable::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        cx.error(span, "(syntax)", e.message().trim().to_owned())
    })?;
    let mut root = Fields {
        cx: &cx,
        path: String::new(),
        table: doc.get_ref(),
        used: Vec::new(),
    };
    root.allow(&[
        "quota",
        "quota_burst",
        "quota_schedule",
        "error_rate",
        "seed",
        "latency",
        "latency_jitter",
        "retry_after",
        "region",
        "account",
        "list_order",
        "execution",
        "generate",
    ])?;
    let server = server_knobs(&mut root)?;
    let mut executions: Vec<Execution> = Vec::new();
    if let Some(list) = root.get("execution") {
        for item in list.array()? {
            let id_span = item.value.span();
            let e = execution(item.table()?)?;
            if executions
                .iter()
                .any(|x| x.id == e.id && x.flow == e.flow && x.alias == e.alias)
            {
                return Err(cx.error(id_span, &item.key, "the same execution is listed twice"));
            }
            executions.push(e);
        }
    }
    let mut generated = Vec::new();
    if let Some(list) = root.get("generate") {
        for (index, item) in list.array()?.into_iter().enumerate() {
            // Each table gets its own stream, so adding a table leaves the others' offsets alone.
            let seed = server
                .seed
                .wrapping_add((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            generated.push(generate(item.table()?, seed)?);
        }
    }
    root.finish()?;
    let mut scenario = Scenario {
        source: None,
        server,
        executions,
        generated,
        list_order: Vec::new(),
    };
    if scenario.server.list_order == ListOrder::Shuffled {
        let len = u32::try_from(scenario.len()).expect("at most 10,000,000 per table");
        let mut order: Vec<u32> = (0..len).collect();
        // A stream of its own: the listing order never moves end offsets.
        fastrand::Rng::with_seed(scenario.server.seed ^ 0x005E_ED0F_115E).shuffle(&mut order);
        scenario.list_order = order;
    }
    Ok(scenario)
}

fn server_knobs(root: &mut Fields<'_>) -> Result<ServerKnobs, ScenarioError> {
    let mut s = ServerKnobs::default();
    if let Some(v) = root.get("quota") {
        let quota = v.f64()?;
        if quota <= 0.0 {
            return Err(v.error("must be greater than 0 (leave it out for no quota)"));
        }
        s.quota = Some(quota);
    }
    if let Some(v) = root.get("quota_burst") {
        let burst = v.f64()?;
        if burst < 1.0 {
            return Err(v.error("must be at least 1"));
        }
        s.quota_burst = Some(burst);
    }
    if let Some(list) = root.get("quota_schedule") {
        if s.quota.is_none() {
            return Err(list.error("needs a `quota` to start from"));
        }
        for item in list.array()? {
            let mut t = item.table()?;
            t.allow(&["at", "quota"])?;
            let at_value = t.require("at")?;
            let at = at_value.duration()?;
            if s.quota_schedule.last().is_some_and(|prev| prev.at > at) {
                return Err(at_value.error("steps must be in time order"));
            }
            let quota_value = t.require("quota")?;
            let quota = quota_value.f64()?;
            if quota <= 0.0 {
                return Err(quota_value.error("must be greater than 0"));
            }
            t.finish()?;
            s.quota_schedule.push(QuotaChange { at, quota });
        }
    }
    if let Some(v) = root.get("error_rate") {
        s.error_rate = v.f64()?;
        if !(0.0..=1.0).contains(&s.error_rate) {
            return Err(v.error("must be between 0.0 and 1.0"));
        }
    }
    if let Some(v) = root.get("seed") {
        s.seed = v.u64()?;
    }
    if let Some(v) = root.get("latency") {
        s.latency = v.duration()?;
    }
    if let Some(v) = root.get("latency_jitter") {
        s.latency_jitter = v.duration()?;
    }
    if let Some(v) = root.get("retry_after") {
        s.retry_after = Some(v.duration()?);
    }
    if let Some(v) = root.get("region") {
        s.region = v.string()?;
        let ok = (1..=20).contains(&s.region.len())
            && s.region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(v.error("must match [a-z0-9-]{1,20}, e.g. \"us-east-1\""));
        }
    }
    if let Some(v) = root.get("list_order") {
        s.list_order = match v.str()? {
            "scenario" => ListOrder::Scenario,
            "shuffled" => ListOrder::Shuffled,
            _ => return Err(v.error("must be \"scenario\" or \"shuffled\"")),
        };
    }
    if let Some(v) = root.get("account") {
        s.account = v.string()?;
        if s.account.len() != 12 || !s.account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(v.error("must be 12 digits"));
        }
    }
    Ok(s)
}

fn execution(mut t: Fields<'_>) -> Result<Execution, ScenarioError> {
    t.allow(&[
        "flow",
        "alias",
        "id",
        "flow_version",
        "timeline",
        "errors",
        "not_found_for",
        "access_denied",
        "invalid",
        "events_fault",
    ])?;
    let (flow, alias) = flow_and_alias(&mut t)?;
    let id = t.require("id")?;
    let id_text = id.str()?;
    let Some((None, id_text)) = ids::execution(id_text) else {
        return Err(id.error("must be an execution id: [a-zA-Z0-9-]{1,36}"));
    };
    let e = Execution {
        flow,
        alias,
        id: id_text.to_owned(),
        flow_version: flow_version(&mut t)?,
        timeline: timeline(&mut t)?.unwrap_or_else(default_timeline),
        errors: errors(&mut t)?,
        not_found_for: t
            .get("not_found_for")
            .map(|v| v.duration())
            .transpose()?
            .unwrap_or_default(),
        access_denied: t
            .get("access_denied")
            .map(|v| v.bool())
            .transpose()?
            .unwrap_or(false),
        invalid: t
            .get("invalid")
            .map(|v| v.bool())
            .transpose()?
            .unwrap_or(false),
        events_fault: match t.get("events_fault") {
            None => None,
            Some(v) => Some(match v.str()? {
                "access_denied" => EventsFault::AccessDenied,
                "server_error" => EventsFault::ServerError,
                _ => return Err(v.error("must be \"access_denied\" or \"server_error\"")),
            }),
        },
    };
    t.finish()?;
    Ok(e)
}

fn generate(mut t: Fields<'_>, seed: u64) -> Result<Generated, ScenarioError> {
    t.allow(&[
        "count",
        "id_prefix",
        "flow",
        "alias",
        "flow_version",
        "timeline",
        "end_status",
        "end_between",
        "start_between",
        "duration",
        "errors",
    ])?;
    let count_value = t.require("count")?;
    let count = count_value.u64()?;
    if !(1..=MAX_GENERATED).contains(&count) {
        return Err(count_value.error(format!("must be between 1 and {MAX_GENERATED}")));
    }
    let count = count as u32;
    let prefix_value = t.require("id_prefix")?;
    let id_prefix = prefix_value.string()?;
    let sample = format!("{id_prefix}{count}");
    if !ids::is_execution_id(&sample) {
        return Err(prefix_value.error(format!(
            "generated ids such as {sample:?} must match [a-zA-Z0-9-]{{1,36}}"
        )));
    }
    let (flow, alias) = flow_and_alias(&mut t)?;
    let flow_version = flow_version(&mut t)?;
    let timeline = timeline(&mut t)?.unwrap_or_else(default_timeline);
    let end_status = match t.get("end_status") {
        Some(v) => status(&v)?,
        None => "Succeeded".to_owned(),
    };
    let last_step = timeline.last().map_or(Duration::ZERO, |s| s.at);
    let mut rng = fastrand::Rng::with_seed(seed);
    let start_at_ms = match t.get("start_between") {
        None => Vec::new(),
        Some(v) => {
            let (from, to) = range(&v)?;
            // Leave room for a day-long run after the latest start.
            let latest = Duration::from_secs(48 * 24 * 3600);
            if to > latest {
                return Err(v.error("the latest start must be under 48 days"));
            }
            let (from, to) = (from.as_millis() as u32, to.as_millis() as u32);
            (0..count).map(|_| rng.u32(from..=to)).collect()
        }
    };
    let start = |n: usize| start_at_ms.get(n).map_or(0, |&ms| u64::from(ms));
    let end_at_ms = match (t.get("end_between"), t.get("duration")) {
        (Some(_), Some(d)) => {
            return Err(d.error("give either end_between or duration, not both"));
        }
        (None, None) => {
            return Err(t.cx.error(
                t.span(),
                &t.key_path("end_between"),
                "is required (or a duration distribution)",
            ));
        }
        (Some(between), None) => {
            let (from_at, to_at) = range(&between)?;
            if from_at < last_step {
                return Err(between.error("the earliest end comes before the last timeline step"));
            }
            let limit = u64::from(u32::MAX) - start_at_ms.iter().max().map_or(0, |&m| u64::from(m));
            if to_at.as_millis() > u128::from(limit) {
                return Err(between.error("must end under 49 days after the simulator starts"));
            }
            let (from_ms, to_ms) = (from_at.as_millis() as u32, to_at.as_millis() as u32);
            (0..count as usize)
                .map(|n| (start(n) + u64::from(rng.u32(from_ms..=to_ms))) as u32)
                .collect()
        }
        (None, Some(d)) => {
            let dist = Distribution::parse(d.table()?)?;
            (0..count as usize)
                .map(|n| {
                    let drawn = dist.draw(&mut rng).min(MAX_DURATION).max(last_step);
                    (start(n) + drawn.as_millis() as u64) as u32
                })
                .collect()
        }
    };
    let g = Generated {
        id_prefix,
        count,
        flow,
        alias,
        flow_version,
        timeline,
        end_status,
        errors: errors(&mut t)?,
        end_at_ms,
        start_at_ms,
    };
    t.finish()?;
    Ok(g)
}

/// `[FROM, TO]`, two durations in order.
fn range(v: &Val<'_>) -> Result<(Duration, Duration), ScenarioError> {
    let items = v.array()?;
    let [from, to] = items.as_slice() else {
        return Err(v.error("must be two durations, [earliest, latest]"));
    };
    let (from, to) = (from.duration()?, to.duration()?);
    if from > to {
        return Err(v.error("the earliest comes after the latest"));
    }
    Ok((from, to))
}

/// A `duration = { dist = ... }` table: how long each generated execution runs.
#[derive(Debug, Clone, PartialEq)]
enum Distribution {
    /// exp(ln(median) + sigma × N(0, 1)).
    Lognormal { median: f64, sigma: f64 },
    /// `a` with probability `p`, else `b`; each spread by a lognormal factor
    /// with this `sigma` (0: exactly `a` or `b`).
    Bimodal { a: f64, b: f64, p: f64, sigma: f64 },
    /// min / U^(1/alpha).
    Pareto { alpha: f64, min: f64 },
}

impl Distribution {
    fn parse(mut t: Fields<'_>) -> Result<Distribution, ScenarioError> {
        let dist = t.require("dist")?;
        let secs = |t: &mut Fields<'_>, key: &str| -> Result<f64, ScenarioError> {
            let v = t.require(key)?;
            let d = v.duration()?;
            if d.is_zero() {
                return Err(v.error("must be longer than 0s"));
            }
            Ok(d.as_secs_f64())
        };
        let number =
            |t: &mut Fields<'_>, key: &str, ok: fn(f64) -> bool, what: &str| match t.get(key) {
                None => Ok(None),
                Some(v) => {
                    let x = v.f64()?;
                    if ok(x) {
                        Ok(Some(x))
                    } else {
                        Err(v.error(what.to_owned()))
                    }
                }
            };
        let d = match dist.str()? {
            "lognormal" => {
                t.allow(&["dist", "median", "sigma"])?;
                Distribution::Lognormal {
                    median: secs(&mut t, "median")?,
                    sigma: number(&mut t, "sigma", |x| x >= 0.0, "must be 0 or more")?
                        .ok_or_else(|| t.cx.error(t.span(), &t.key_path("sigma"), "is required"))?,
                }
            }
            "bimodal" => {
                t.allow(&["dist", "a", "b", "p", "sigma"])?;
                Distribution::Bimodal {
                    a: secs(&mut t, "a")?,
                    b: secs(&mut t, "b")?,
                    p: number(
                        &mut t,
                        "p",
                        |x| (0.0..=1.0).contains(&x),
                        "must be between 0.0 and 1.0",
                    )?
                    .unwrap_or(0.5),
                    sigma: number(&mut t, "sigma", |x| x >= 0.0, "must be 0 or more")?
                        .unwrap_or(0.0),
                }
            }
            "pareto" => {
                t.allow(&["dist", "alpha", "min"])?;
                Distribution::Pareto {
                    alpha: number(&mut t, "alpha", |x| x > 0.0, "must be greater than 0")?
                        .ok_or_else(|| t.cx.error(t.span(), &t.key_path("alpha"), "is required"))?,
                    min: secs(&mut t, "min")?,
                }
            }
            _ => return Err(dist.error("must be \"lognormal\", \"bimodal\" or \"pareto\"")),
        };
        t.finish()?;
        Ok(d)
    }

    fn draw(&self, rng: &mut fastrand::Rng) -> Duration {
        let normal = |rng: &mut fastrand::Rng| {
            let u = 1.0 - rng.f64(); // in (0, 1]
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos()
        };
        let secs = match *self {
            Distribution::Lognormal { median, sigma } => median * (sigma * normal(rng)).exp(),
            Distribution::Bimodal { a, b, p, sigma } => {
                let mode = if rng.f64() < p { a } else { b };
                mode * (sigma * normal(rng)).exp()
            }
            Distribution::Pareto { alpha, min } => min / (1.0 - rng.f64()).powf(1.0 / alpha),
        };
        Duration::try_from_secs_f64(secs).unwrap_or(MAX_DURATION)
    }
}

fn flow_and_alias(t: &mut Fields<'_>) -> Result<(String, String), ScenarioError> {
    let flow = t.require("flow")?;
    let Some(flow_id) = ids::flow(flow.str()?) else {
        return Err(flow.error("must be a flow id (10 letters or digits) or a flow ARN"));
    };
    let alias = t.require("alias")?;
    let Some((alias_flow, alias_id)) = ids::alias(alias.str()?) else {
        return Err(alias.error("must be an alias id (up to 10 letters or digits) or an alias ARN"));
    };
    if alias_flow.is_some_and(|f| f != flow_id) {
        return Err(alias.error(format!("this alias ARN names another flow than {flow_id}")));
    }
    Ok((flow_id.to_owned(), alias_id.to_owned()))
}

fn flow_version(t: &mut Fields<'_>) -> Result<String, ScenarioError> {
    Ok(match t.get("flow_version") {
        Some(v) => v.string()?,
        None => "1".to_owned(),
    })
}

fn default_timeline() -> Vec<Step> {
    vec![Step {
        at: Duration::ZERO,
        status: "Running".to_owned(),
    }]
}

fn status(v: &Val<'_>) -> Result<String, ScenarioError> {
    let s = v.string()?;
    if s.is_empty() {
        return Err(v.error("must not be empty"));
    }
    Ok(s)
}

fn timeline(t: &mut Fields<'_>) -> Result<Option<Vec<Step>>, ScenarioError> {
    let Some(list) = t.get("timeline") else {
        return Ok(None);
    };
    let items = list.array()?;
    if items.is_empty() {
        return Err(list.error("needs at least one step (or leave it out for Running from 0s)"));
    }
    let mut steps: Vec<Step> = Vec::with_capacity(items.len());
    for item in items {
        let mut st = item.table()?;
        st.allow(&["at", "status"])?;
        let at_value = st.require("at")?;
        let at = at_value.duration()?;
        if steps.last().is_some_and(|prev| prev.at > at) {
            return Err(at_value.error("steps must be in time order"));
        }
        let status = status(&st.require("status")?)?;
        st.finish()?;
        steps.push(Step { at, status });
    }
    Ok(Some(steps))
}

fn errors(t: &mut Fields<'_>) -> Result<Vec<NodeError>, ScenarioError> {
    let Some(list) = t.get("errors") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in list.array()? {
        let mut e = item.table()?;
        e.allow(&["error", "message", "node"])?;
        let error = e.get("error").map(|v| v.string()).transpose()?;
        let message = e.require("message")?.string()?;
        let node = e.get("node").map(|v| v.string()).transpose()?;
        e.finish()?;
        out.push(NodeError {
            error,
            message,
            node,
        });
    }
    Ok(out)
}

/// The text being parsed, to turn byte spans into line and column.
struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Cx<'_> {
    fn error(&self, span: Range<usize>, key: &str, problem: impl Into<String>) -> ScenarioError {
        let (line, column) = crate::config::raw::position(self.text, span.start);
        ScenarioError::Invalid {
            file: self.file.to_owned(),
            line,
            column,
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}

/// One TOML table being read; remembers the keys taken so `finish` can reject the rest.
struct Fields<'a> {
    cx: &'a Cx<'a>,
    /// Dotted path of this table, empty at the top.
    path: String,
    table: &'a DeTable<'a>,
    used: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&mut self, key: &str) -> Option<Val<'a>> {
        let (k, value) = self.table.iter().find(|(k, _)| k.get_ref() == key)?;
        self.used.push(k.get_ref());
        Some(Val {
            cx: self.cx,
            key: self.key_path(key),
            value,
        })
    }

    fn require(&mut self, key: &str) -> Result<Val<'a>, ScenarioError> {
        match self.get(key) {
            Some(v) => Ok(v),
            None => Err(self
                .cx
                .error(self.span(), &self.key_path(key), "is required")),
        }
    }

    /// Where a missing key is reported: the table's first key, or the top of the file.
    fn span(&self) -> Range<usize> {
        self.table
            .iter()
            .map(|(k, _)| k.span())
            .min_by_key(|s| s.start)
            .unwrap_or(0..0)
    }

    /// Rejects the first key (in file order) not in `known`, before anything is
    /// read, so a typo is reported as itself rather than as a missing key.
    fn allow(&self, known: &[&str]) -> Result<(), ScenarioError> {
        self.reject_first(|k| !known.contains(&k))
    }

    /// Rejects the first key that was never read.
    fn finish(self) -> Result<(), ScenarioError> {
        self.reject_first(|k| !self.used.contains(&k))
    }

    fn reject_first(&self, unknown: impl Fn(&str) -> bool) -> Result<(), ScenarioError> {
        let unknown = self
            .table
            .iter()
            .filter(|(k, _)| unknown(k.get_ref()))
            .min_by_key(|(k, _)| k.span().start);
        match unknown {
            Some((k, _)) => {
                Err(self
                    .cx
                    .error(k.span(), &self.key_path(k.get_ref()), "unknown key"))
            }
            None => Ok(()),
        }
    }
}

/// One value with its full key path, for messages.
struct Val<'a> {
    cx: &'a Cx<'a>,
    key: String,
    value: &'a Spanned<DeValue<'a>>,
}

impl<'a> Val<'a> {
    fn error(&self, problem: impl Into<String>) -> ScenarioError {
        self.cx.error(self.value.span(), &self.key, problem)
    }

    fn expected(&self, what: &str) -> ScenarioError {
        self.error(format!(
            "expected {what}, found {}",
            self.value.get_ref().type_str()
        ))
    }

    fn str(&self) -> Result<&'a str, ScenarioError> {
        match self.value.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.expected("a string")),
        }
    }

    fn string(&self) -> Result<String, ScenarioError> {
        self.str().map(str::to_owned)
    }

    fn bool(&self) -> Result<bool, ScenarioError> {
        self.value
            .get_ref()
            .as_bool()
            .ok_or_else(|| self.expected("true or false"))
    }

    fn u64(&self) -> Result<u64, ScenarioError> {
        match self.value.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| self.error("must be a whole number from 0 up")),
            _ => Err(self.expected("an integer")),
        }
    }

    fn f64(&self) -> Result<f64, ScenarioError> {
        let parsed = match self.value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            _ => return Err(self.expected("a number")),
        };
        parsed
            .filter(|f| f.is_finite())
            .ok_or_else(|| self.error("must be a finite number"))
    }

    fn duration(&self) -> Result<Duration, ScenarioError> {
        let text = self
            .str()
            .map_err(|_| self.expected("a duration string such as \"500ms\""))?;
        humantime::parse_duration(text).map_err(|e| {
            self.error(format!(
                "not a duration ({e}); write e.g. \"500ms\", \"2s\""
            ))
        })
    }

    fn table(&self) -> Result<Fields<'a>, ScenarioError> {
        match self.value.get_ref() {
            DeValue::Table(t) => Ok(Fields {
                cx: self.cx,
                path: self.key.clone(),
                table: t,
                used: Vec::new(),
            }),
            _ => Err(self.expected("a table")),
        }
    }

    fn array(&self) -> Result<Vec<Val<'a>>, ScenarioError> {
        match self.value.get_ref() {
            DeValue::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Val {
                    cx: self.cx,
                    key: format!("{}[{i}]", self.key),
                    value,
                })
                .collect()),
            _ => Err(self.expected("an array")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(text: &str) -> (usize, usize, String, String) {
        match Scenario::parse(text) {
            Err(ScenarioError::Invalid {
                line,
                column,
                key,
                problem,
                ..
            }) => (line, column, key, problem),
            other => panic!("expected a position error, got {other:?}"),
        }
    }

    #[test]
    fn a_quota_schedule_changes_the_quota_at_offsets() {
        let text = "quota = 20.0\nquota_schedule = [{ at = \"30s\", quota = 4.0 }]\n";
        let s = Scenario::parse(text).unwrap();
        let change = QuotaChange {
            at: Duration::from_secs(30),
            quota: 4.0,
        };
        assert_eq!(s.server.quota_schedule, [change]);
    }

    #[test]
    fn a_quota_schedule_needs_a_quota_and_time_order() {
        let (line, _, key, problem) = invalid("quota_schedule = []\n");
        assert_eq!((line, key.as_str()), (1, "quota_schedule"), "{problem}");
        let text = "quota = 5.0\nquota_schedule = [{ at = \"9s\", quota = 1.0 }, { at = \"2s\", quota = 2.0 }]\n";
        let (line, _, key, problem) = invalid(text);
        assert_eq!(
            (line, problem.as_str()),
            (2, "steps must be in time order"),
            "{key}"
        );
    }

    const ONE: &str = r#"
seed = 7
[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "run-0001"
timeline = [
  { at = "0s", status = "Running" },
  { at = "2s", status = "Failed" },
]
errors = [{ error = "NodeFailed", message = "boom", node = "Prompt_1" }]
"#;

    #[test]
    fn a_full_execution_table_parses_with_defaults_filled_in() {
        let s = Scenario::parse(ONE).unwrap();
        assert_eq!(s.server.seed, 7);
        assert_eq!(s.server.region, "us-east-1");
        let e = &s.executions[0];
        assert_eq!(e.flow_version, "1");
        assert_eq!(e.timeline[1].status, "Failed");
        assert_eq!(e.timeline[1].at, Duration::from_secs(2));
        assert_eq!(e.errors[0].node.as_deref(), Some("Prompt_1"));
        assert!(!e.access_denied && !e.invalid);
    }

    #[test]
    fn an_unknown_key_names_its_line_column_and_path() {
        let text = ONE.replace("id = \"run-0001\"", "id = \"run-0001\"\nstatuss = \"x\"");
        let (line, column, key, problem) = invalid(&text);
        assert_eq!((line, column), (7, 1));
        assert_eq!(key, "execution[0].statuss");
        assert_eq!(problem, "unknown key");
    }

    #[test]
    fn an_unknown_key_inside_a_timeline_step_is_refused() {
        let text = ONE.replace("{ at = \"2s\", status", "{ at = \"2s\", stat = 1, status");
        let (line, column, key, _) = invalid(&text);
        assert_eq!((line, column), (9, 16));
        assert_eq!(key, "execution[0].timeline[1].stat");
    }

    #[test]
    fn a_bad_duration_points_at_the_value() {
        let (line, column, key, problem) = invalid("latency = \"fast\"\n");
        assert_eq!((line, column, key.as_str()), (1, 11, "latency"));
        assert!(problem.contains("not a duration"), "{problem}");
    }

    #[test]
    fn an_id_breaking_the_api_pattern_is_refused() {
        let text = ONE.replace("run-0001", "run_0001");
        let (line, _, key, _) = invalid(&text);
        assert_eq!((line, key.as_str()), (6, "execution[0].id"));
    }

    #[test]
    fn steps_out_of_time_order_are_refused() {
        let text = ONE
            .replace("at = \"2s\"", "at = \"0ms\"")
            .replace("at = \"0s\"", "at = \"1s\"");
        let (_, _, key, problem) = invalid(&text);
        assert_eq!(key, "execution[0].timeline[1].at");
        assert!(problem.contains("time order"), "{problem}");
    }

    #[test]
    fn a_missing_required_key_is_named() {
        let (_, _, key, problem) = invalid("[[execution]]\nflow = \"FLOW123456\"\nid = \"x\"\n");
        assert_eq!(
            (key.as_str(), problem.as_str()),
            ("execution[0].alias", "is required")
        );
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let (line, _, key, _) = invalid("quota = 5\nerror_rate = = 1\n");
        assert_eq!((line, key.as_str()), (2, "(syntax)"));
    }

    #[test]
    fn the_same_execution_twice_is_refused() {
        let dup = format!(
            "{ONE}\n[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"run-0001\"\n"
        );
        let (line, _, key, _) = invalid(&dup);
        assert_eq!((line, key.as_str()), (13, "execution[1]"));
    }

    #[test]
    fn load_names_the_file_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "quota = -1\n").unwrap();
        let err = Scenario::load(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:1:9: quota: must be greater than 0 (leave it out for no quota)",
                path.display()
            )
        );
    }

    #[test]
    fn generated_end_offsets_are_reproducible_with_the_seed_and_in_range() {
        let text = r#"
seed = 3
[[generate]]
count = 1000
id_prefix = "g-"
flow = "FLOW123456"
alias = "ALIAS12345"
end_between = ["1s", "2s"]
"#;
        let a = Scenario::parse(text).unwrap();
        let b = Scenario::parse(text).unwrap();
        let c = Scenario::parse(&text.replace("seed = 3", "seed = 4")).unwrap();
        let ends = &a.generated[0].end_at_ms;
        assert_eq!(ends, &b.generated[0].end_at_ms);
        assert_ne!(ends, &c.generated[0].end_at_ms);
        assert!(ends.iter().all(|&ms| (1000..=2000).contains(&ms)));
        assert!(ends.iter().any(|&ms| ms < 1100) && ends.iter().any(|&ms| ms > 1900));
        assert_eq!(a.len(), 1000);
    }

    fn generated(rest: &str) -> Scenario {
        Scenario::parse(&format!(
            "[[generate]]\ncount = 2000\nid_prefix = \"g-\"\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\n{rest}\n"
        ))
        .unwrap()
    }

    /// Each execution's run time (end − start) in seconds, sorted.
    fn durations(g: &Generated) -> Vec<f64> {
        let mut d: Vec<f64> = (0..g.count as usize)
            .map(|n| {
                let start = g.start_at_ms.get(n).copied().unwrap_or(0);
                f64::from(g.end_at_ms[n] - start) / 1000.0
            })
            .collect();
        d.sort_by(f64::total_cmp);
        d
    }

    #[test]
    fn start_between_spreads_starts_and_end_between_counts_from_each_start() {
        let s = generated("start_between = [\"1m\", \"2m\"]\nend_between = [\"10s\", \"20s\"]");
        let g = &s.generated[0];
        assert!(
            g.start_at_ms
                .iter()
                .all(|&ms| (60_000..=120_000).contains(&ms))
        );
        assert!(
            g.start_at_ms.iter().any(|&ms| ms < 65_000)
                && g.start_at_ms.iter().any(|&ms| ms > 115_000)
        );
        let d = durations(g);
        assert!(
            d[0] >= 10.0 && d[d.len() - 1] <= 20.0,
            "{} .. {}",
            d[0],
            d[d.len() - 1]
        );
        // Eight bytes per execution: its start and its end.
        let per_execution = s.heap_bytes() as f64 / 2000.0;
        assert!(per_execution < 9.0, "{per_execution} bytes per execution");
    }

    #[test]
    fn a_lognormal_duration_has_its_median_and_spread() {
        let s = generated("duration = { dist = \"lognormal\", median = \"60s\", sigma = 0.3 }");
        let d = durations(&s.generated[0]);
        let median = d[1000];
        // exp(±0.3 × 1.2816) around the median: the 10th and 90th percentiles.
        let (p10, p90) = (d[200], d[1800]);
        assert!((57.0..63.0).contains(&median), "median {median}");
        assert!(
            (39.0..45.0).contains(&p10) && (80.0..90.0).contains(&p90),
            "{p10} {p90}"
        );
    }

    #[test]
    fn a_bimodal_duration_picks_a_with_probability_p() {
        let s = generated("duration = { dist = \"bimodal\", a = \"20s\", b = \"5m\", p = 0.25 }");
        let d = durations(&s.generated[0]);
        let short = d.iter().filter(|&&x| x == 20.0).count();
        let long = d.iter().filter(|&&x| x == 300.0).count();
        assert_eq!(short + long, 2000, "exactly a or b without sigma");
        assert!((400..600).contains(&short), "{short} of 2000 short");
        let spread =
            generated("duration = { dist = \"bimodal\", a = \"20s\", b = \"5m\", sigma = 0.1 }");
        let d = durations(&spread.generated[0]);
        assert!(d.iter().filter(|&&x| x < 60.0).count().abs_diff(1000) < 100);
        assert!(
            d.iter().any(|&x| x != 20.0 && x < 60.0),
            "sigma spreads each mode"
        );
    }

    #[test]
    fn a_pareto_duration_starts_at_min_and_has_a_heavy_tail() {
        let s = generated("duration = { dist = \"pareto\", alpha = 1.5, min = \"10s\" }");
        let d = durations(&s.generated[0]);
        assert!(d[0] >= 10.0);
        // P(T > 40 s) = (10/40)^1.5 = 12.5 %.
        let over = d.iter().filter(|&&x| x > 40.0).count();
        assert!((180..320).contains(&over), "{over} of 2000 over 40 s");
        assert!(d[d.len() - 1] <= 24.0 * 3600.0, "capped at a day");
    }

    #[test]
    fn two_tables_with_later_starts_make_a_shift() {
        let text = r#"
[[generate]]
count = 100
id_prefix = "before-"
flow = "FLOW123456"
alias = "ALIAS12345"
start_between = ["0s", "1h"]
duration = { dist = "lognormal", median = "30s", sigma = 0.1 }

[[generate]]
count = 100
id_prefix = "after-"
flow = "FLOW123456"
alias = "ALIAS12345"
start_between = ["1h", "2h"]
duration = { dist = "lognormal", median = "3m", sigma = 0.1 }
"#;
        let s = Scenario::parse(text).unwrap();
        let (before, after) = (&s.generated[0], &s.generated[1]);
        assert!(before.start_at_ms.iter().all(|&ms| ms <= 3_600_000));
        assert!(after.start_at_ms.iter().all(|&ms| ms >= 3_600_000));
        assert!(durations(before).iter().all(|&d| d < 60.0));
        assert!(durations(after).iter().all(|&d| d > 120.0));
    }

    #[test]
    fn a_duration_table_is_checked() {
        let table = "[[generate]]\ncount = 1\nid_prefix = \"g-\"\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\n";
        let cases = [
            (
                "duration = { dist = \"gamma\" }",
                "generate[0].duration.dist",
                "must be",
            ),
            (
                "duration = { dist = \"pareto\", alpha = 1.5 }",
                "generate[0].duration.min",
                "is required",
            ),
            (
                "duration = { dist = \"lognormal\", median = \"1m\", sigma = 0.3, mean = 2 }",
                "generate[0].duration.mean",
                "unknown key",
            ),
            (
                "duration = { dist = \"bimodal\", a = \"1s\", b = \"2s\", p = 2 }",
                "generate[0].duration.p",
                "between",
            ),
            (
                "duration = { dist = \"pareto\", alpha = 1.5, min = \"1s\" }\nend_between = [\"1s\", \"2s\"]",
                "generate[0].duration",
                "not both",
            ),
            ("", "generate[0].end_between", "is required"),
            (
                "end_between = [\"1s\", \"2s\"]\nstart_between = [\"2s\", \"1s\"]",
                "generate[0].start_between",
                "earliest",
            ),
            (
                "end_between = [\"1s\", \"2s\"]\nstart_between = [\"0s\", \"60d\"]",
                "generate[0].start_between",
                "48 days",
            ),
        ];
        for (rest, key, problem) in cases {
            let (_, _, k, p) = invalid(&format!("{table}{rest}\n"));
            assert_eq!(k, key, "{rest}");
            assert!(p.contains(problem), "{rest}: {p}");
        }
    }

    #[test]
    fn list_order_is_scenario_or_shuffled() {
        assert_eq!(
            Scenario::parse("").unwrap().server.list_order,
            ListOrder::Scenario
        );
        let s = Scenario::parse("list_order = \"shuffled\"").unwrap();
        assert_eq!(s.server.list_order, ListOrder::Shuffled);
        let (_, _, key, _) = invalid("list_order = \"random\"");
        assert_eq!(key, "list_order");
    }
}
