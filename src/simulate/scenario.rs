//! What the simulator plays: server-wide knobs and the executions it knows,
//! each with a timeline of statuses at offsets from the simulator's start.
//! In: a parsed scenario (see `parse.rs`) and an elapsed time. Out: which
//! execution a request names and what it looks like at that moment. Pure.
//!
//! `[[generate]]` executions are stored once per table (the template) plus
//! four bytes per execution (its end offset), eight with `start_between` (and
//! its start offset), so 100,000 of them stay small. `list_order = "shuffled"`
//! adds four bytes per execution (its place in the listing).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use super::parse::ScenarioError;

/// A parsed scenario file. Build one with [`Scenario::parse`] or [`Scenario::load`];
/// [`Scenario::default`] knows no executions (every lookup is a 404).
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// The file it came from, when loaded from one.
    pub source: Option<PathBuf>,
    pub server: ServerKnobs,
    pub executions: Vec<Execution>,
    pub generated: Vec<Generated>,
    /// With `list_order = "shuffled"`: listing position → scenario position
    /// (`nth`), a seeded permutation of every execution. Empty: scenario order.
    pub list_order: Vec<u32>,
}

/// Server-wide behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerKnobs {
    /// Requests per second served before `ThrottlingException`; `None` = unlimited.
    pub quota: Option<f64>,
    /// Token-bucket capacity; `None` = one second's worth of `quota`.
    pub quota_burst: Option<f64>,
    /// Later quotas (`quota_schedule`), in time order: from `at` on, the
    /// quota is `quota` with one second's worth of burst.
    pub quota_schedule: Vec<QuotaChange>,
    /// Share of requests (0.0..=1.0) answered with `InternalServerException`.
    pub error_rate: f64,
    /// Seeds every random choice (faults, jitter, generated end offsets).
    pub seed: u64,
    pub latency: Duration,
    /// Up to this much extra latency, uniformly drawn per request.
    pub latency_jitter: Duration,
    /// Sent as `Retry-After` (whole seconds) and `x-amz-retry-after` (ms) on 429s.
    pub retry_after: Option<Duration>,
    pub region: String,
    pub account: String,
    /// The order ListFlowExecutions lists in (the API leaves it undocumented).
    pub list_order: ListOrder,
}

/// `list_order`: how ListFlowExecutions orders what it lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOrder {
    /// Explicit executions in file order, then each generated table in order.
    #[default]
    Scenario,
    /// A permutation of that, drawn once from `seed`.
    Shuffled,
}

impl Default for ServerKnobs {
    fn default() -> Self {
        ServerKnobs {
            quota: None,
            quota_burst: None,
            quota_schedule: Vec::new(),
            error_rate: 0.0,
            seed: 0,
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            retry_after: None,
            region: "us-east-1".to_owned(),
            account: "123456789012".to_owned(),
            list_order: ListOrder::Scenario,
        }
    }
}

/// One step of `quota_schedule`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaChange {
    /// Offset from the simulator's start.
    pub at: Duration,
    /// Requests per second from then on.
    pub quota: f64,
}

/// One `[[execution]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub flow: String,
    pub alias: String,
    pub id: String,
    pub flow_version: String,
    /// Sorted by `at`; never empty.
    pub timeline: Vec<Step>,
    pub errors: Vec<NodeError>,
    pub not_found_for: Duration,
    pub access_denied: bool,
    pub invalid: bool,
}

/// The status an execution reports from `at` (offset from the simulator's start) on.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub status: String,
}

/// One entry of `errors` in a terminal `GetFlowExecution` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeError {
    pub error: Option<String>,
    pub message: String,
    pub node: Option<String>,
}

/// One `[[generate]]` table: `count` executions named `{id_prefix}{n}` (n from 1,
/// zero-padded to the width of `count`), sharing a timeline template and each
/// ending with `end_status` at its own offset.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub id_prefix: String,
    pub count: u32,
    pub flow: String,
    pub alias: String,
    pub flow_version: String,
    /// Steps before the end, shared by every execution of the table.
    pub timeline: Vec<Step>,
    pub end_status: String,
    pub errors: Vec<NodeError>,
    /// End offset of execution n (index n - 1), in milliseconds since the
    /// simulator's start.
    pub end_at_ms: Vec<u32>,
    /// Start offset of execution n (index n - 1), in milliseconds, with
    /// `start_between`: the template's steps count from it. Empty: every
    /// execution starts at 0 (the template's offsets are the simulator's).
    pub start_at_ms: Vec<u32>,
}

impl Generated {
    fn width(&self) -> usize {
        self.count.to_string().len()
    }

    /// Execution number (1-based) named by `id`, if it is one of this table's.
    fn number(&self, id: &str) -> Option<u32> {
        let digits = id.strip_prefix(self.id_prefix.as_str())?;
        if digits.len() != self.width() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = digits.parse().ok()?;
        (1..=self.count).contains(&n).then_some(n)
    }

    fn id(&self, n: u32) -> String {
        format!("{}{:0width$}", self.id_prefix, n, width = self.width())
    }
}

/// Statuses after which an execution never runs again (the API's terminal set).
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "Succeeded" | "Failed" | "TimedOut" | "Aborted")
}

/// An execution the scenario knows, explicit or generated.
#[derive(Debug, Clone, Copy)]
pub enum ExecRef<'a> {
    Explicit(&'a Execution),
    /// A generated table and the execution's number in it (1-based).
    Generated(&'a Generated, u32),
}

/// What an execution looks like at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot<'a> {
    pub status: &'a str,
    /// Offset of the first timeline step.
    pub started_at: Duration,
    /// Offset of the first terminal step, when the current status is terminal.
    pub ended_at: Option<Duration>,
}

impl<'a> ExecRef<'a> {
    pub fn flow(&self) -> &'a str {
        match self {
            ExecRef::Explicit(e) => &e.flow,
            ExecRef::Generated(g, _) => &g.flow,
        }
    }

    pub fn alias(&self) -> &'a str {
        match self {
            ExecRef::Explicit(e) => &e.alias,
            ExecRef::Generated(g, _) => &g.alias,
        }
    }

    pub fn id(&self) -> Cow<'a, str> {
        match self {
            ExecRef::Explicit(e) => Cow::Borrowed(&e.id),
            ExecRef::Generated(g, n) => Cow::Owned(g.id(*n)),
        }
    }

    pub fn flow_version(&self) -> &'a str {
        match self {
            ExecRef::Explicit(e) => &e.flow_version,
            ExecRef::Generated(g, _) => &g.flow_version,
        }
    }

    pub fn errors(&self) -> &'a [NodeError] {
        match self {
            ExecRef::Explicit(e) => &e.errors,
            ExecRef::Generated(g, _) => &g.errors,
        }
    }

    pub fn not_found_for(&self) -> Duration {
        match self {
            ExecRef::Explicit(e) => e.not_found_for,
            ExecRef::Generated(..) => Duration::ZERO,
        }
    }

    pub fn access_denied(&self) -> bool {
        matches!(self, ExecRef::Explicit(e) if e.access_denied)
    }

    pub fn invalid(&self) -> bool {
        matches!(self, ExecRef::Explicit(e) if e.invalid)
    }

    /// Every step in order: the explicit timeline, or the template plus the end.
    fn steps(&self) -> impl Iterator<Item = (Duration, &'a str)> + 'a {
        let (template, end): (&'a [Step], Option<(Duration, &'a str)>) = match *self {
            ExecRef::Explicit(e) => (&e.timeline, None),
            ExecRef::Generated(g, n) => {
                let end_ms = g.end_at_ms[(n - 1) as usize];
                (
                    &g.timeline,
                    Some((
                        Duration::from_millis(u64::from(end_ms)),
                        g.end_status.as_str(),
                    )),
                )
            }
        };
        let shift = match *self {
            ExecRef::Generated(g, n) => g
                .start_at_ms
                .get((n - 1) as usize)
                .map_or(Duration::ZERO, |&ms| Duration::from_millis(u64::from(ms))),
            ExecRef::Explicit(_) => Duration::ZERO,
        };
        template
            .iter()
            .map(move |s| (shift + s.at, s.status.as_str()))
            .chain(end)
    }

    /// The execution at `elapsed` since the simulator started; `None` before its
    /// first step (it does not exist yet).
    pub fn snapshot(&self, elapsed: Duration) -> Option<Snapshot<'a>> {
        let mut started_at = None;
        let mut current = None;
        let mut first_terminal = None;
        for (at, status) in self.steps().take_while(|(at, _)| *at <= elapsed) {
            started_at.get_or_insert(at);
            current = Some(status);
            if is_terminal(status) {
                first_terminal.get_or_insert(at);
            }
        }
        let status = current?;
        Some(Snapshot {
            status,
            started_at: started_at.expect("a current status implies a first step"),
            ended_at: if is_terminal(status) {
                first_terminal
            } else {
                None
            },
        })
    }
}

impl Scenario {
    /// Parses scenario TOML; errors name `<scenario>:LINE:COLUMN` and the key.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        super::parse::parse(text, Path::new("<scenario>"))
    }

    /// Reads and parses a scenario file; errors name the file, line, column and key.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            file: path.to_owned(),
            source,
        })?;
        let mut scenario = super::parse::parse(&text, path)?;
        scenario.source = Some(path.to_owned());
        Ok(scenario)
    }

    /// How many executions the scenario knows, explicit and generated.
    pub fn len(&self) -> usize {
        self.executions.len()
            + self
                .generated
                .iter()
                .map(|g| g.count as usize)
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The execution at position `index` in listing order: explicit ones in file
    /// order, then each generated table in order.
    pub fn nth(&self, index: usize) -> Option<ExecRef<'_>> {
        if let Some(e) = self.executions.get(index) {
            return Some(ExecRef::Explicit(e));
        }
        let mut rest = index - self.executions.len();
        for g in &self.generated {
            if rest < g.count as usize {
                return Some(ExecRef::Generated(g, rest as u32 + 1));
            }
            rest -= g.count as usize;
        }
        None
    }

    /// The execution at position `index` in ListFlowExecutions order: `nth`,
    /// or with `list_order = "shuffled"` through the seeded permutation.
    pub fn listed_nth(&self, index: usize) -> Option<ExecRef<'_>> {
        if self.list_order.is_empty() {
            return self.nth(index);
        }
        self.nth(*self.list_order.get(index)? as usize)
    }

    /// The execution named by (flow id, alias id, execution id); the first match
    /// wins, explicit executions before generated ones.
    pub fn find(&self, flow: &str, alias: &str, id: &str) -> Option<ExecRef<'_>> {
        if let Some(e) = self
            .executions
            .iter()
            .find(|e| e.id == id && e.flow == flow && e.alias == alias)
        {
            return Some(ExecRef::Explicit(e));
        }
        self.generated
            .iter()
            .filter(|g| g.flow == flow && g.alias == alias)
            .find_map(|g| g.number(id).map(|n| ExecRef::Generated(g, n)))
    }

    /// `arn:aws:bedrock:REGION:ACCOUNT:flow/F/alias/A/execution/E`.
    pub fn execution_arn(&self, e: &ExecRef<'_>) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:flow/{}/alias/{}/execution/{}",
            self.server.region,
            self.server.account,
            e.flow(),
            e.alias(),
            e.id()
        )
    }

    /// A rough count of the heap bytes the executions take (benchmarks check
    /// that generated executions stay small).
    pub fn heap_bytes(&self) -> usize {
        let steps = |t: &[Step]| {
            t.iter()
                .map(|s| std::mem::size_of::<Step>() + s.status.len())
                .sum::<usize>()
        };
        let errors = |t: &[NodeError]| {
            t.iter()
                .map(|e| {
                    std::mem::size_of::<NodeError>()
                        + e.message.len()
                        + e.error.as_ref().map_or(0, String::len)
                        + e.node.as_ref().map_or(0, String::len)
                })
                .sum::<usize>()
        };
        let explicit: usize = self
            .executions
            .iter()
            .map(|e| {
                std::mem::size_of::<Execution>()
                    + e.flow.len()
                    + e.alias.len()
                    + e.id.len()
                    + e.flow_version.len()
                    + steps(&e.timeline)
                    + errors(&e.errors)
            })
            .sum();
        let generated: usize = self
            .generated
            .iter()
            .map(|g| {
                std::mem::size_of::<Generated>()
                    + g.id_prefix.len()
                    + g.flow.len()
                    + g.alias.len()
                    + g.flow_version.len()
                    + g.end_status.len()
                    + steps(&g.timeline)
                    + errors(&g.errors)
                    + g.end_at_ms.capacity() * std::mem::size_of::<u32>()
                    + g.start_at_ms.capacity() * std::mem::size_of::<u32>()
            })
            .sum();
        explicit + generated + self.list_order.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn step(at: u64, status: &str) -> Step {
        Step {
            at: ms(at),
            status: status.to_owned(),
        }
    }

    fn execution(timeline: Vec<Step>) -> Execution {
        Execution {
            flow: "FLOW123456".into(),
            alias: "ALIAS12345".into(),
            id: "run-1".into(),
            flow_version: "1".into(),
            timeline,
            errors: vec![],
            not_found_for: Duration::ZERO,
            access_denied: false,
            invalid: false,
        }
    }

    #[test]
    fn an_execution_does_not_exist_before_its_first_step() {
        let e = execution(vec![step(100, "Running")]);
        assert_eq!(ExecRef::Explicit(&e).snapshot(ms(99)), None);
        assert_eq!(
            ExecRef::Explicit(&e).snapshot(ms(100)).map(|s| s.status),
            Some("Running")
        );
    }

    #[test]
    fn ended_at_is_set_only_while_the_status_is_terminal() {
        let e = execution(vec![
            step(0, "Running"),
            step(200, "Succeeded"),
            step(300, "Running"),
            step(400, "Succeeded"),
        ]);
        let at = |t| ExecRef::Explicit(&e).snapshot(ms(t)).unwrap();
        assert_eq!(at(100).ended_at, None);
        assert_eq!(at(250).ended_at, Some(ms(200)));
        assert_eq!((at(350).status, at(350).ended_at), ("Running", None));
        assert_eq!(at(500).ended_at, Some(ms(200)), "the first end is the end");
    }

    #[test]
    fn generated_ids_are_numbered_from_one_and_zero_padded() {
        let g = Generated {
            id_prefix: "bench-".into(),
            count: 120,
            flow: "FLOW123456".into(),
            alias: "ALIAS12345".into(),
            flow_version: "1".into(),
            timeline: vec![step(0, "Running")],
            end_status: "Succeeded".into(),
            errors: vec![],
            end_at_ms: (0..120).map(|n| 1000 + n).collect(),
            start_at_ms: vec![],
        };
        let scenario = Scenario {
            generated: vec![g],
            ..Scenario::default()
        };
        let found = scenario
            .find("FLOW123456", "ALIAS12345", "bench-007")
            .unwrap();
        assert_eq!(found.id(), "bench-007");
        assert_eq!(found.snapshot(ms(1006)).unwrap().status, "Succeeded");
        assert_eq!(found.snapshot(ms(1005)).unwrap().status, "Running");
        for missing in ["bench-7", "bench-000", "bench-121", "bench-0070"] {
            assert!(
                scenario.find("FLOW123456", "ALIAS12345", missing).is_none(),
                "{missing}"
            );
        }
        assert!(scenario.find("FLOW123456", "OTHER", "bench-007").is_none());
        assert_eq!(scenario.nth(119).unwrap().id(), "bench-120");
        assert!(scenario.nth(120).is_none());
    }
}
