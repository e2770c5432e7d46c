//! A scripted `Fetch` for the loop's paused-clock tests: no sockets, each
//! execution answers from its own script, and every call is recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use flowwatch::daemon::Edges;
use flowwatch::poll::{
    EventsPage, EventsRequest, ExecutionsPage, ExecutionsRequest, Fetch, Lister, NodeError,
    Observation, PollOutcome, ReadFailure, Status, Target,
};
use flowwatch::service::http::Health;
use flowwatch::service::metrics::Metrics;
use flowwatch::service::notify::Notifier;
use flowwatch::state::Snapshot;

/// The edges of an in-process loop with nothing attached: no state, no
/// default region, notifications off; tests set what they need on top.
pub fn edges() -> Edges {
    Edges {
        default_region: None,
        state: None,
        restored: Snapshot::default(),
        metrics: std::sync::Arc::new(Metrics::new()),
        health: std::sync::Arc::new(Health::new()),
        notifier: Notifier::disabled(),
        files: None,
        once: false,
    }
}

/// Answers per execution id: the script's entries in turn, the last one
/// repeating; an execution without a script answers `fallback`.
#[derive(Clone)]
pub struct Scripted {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    scripts: HashMap<String, Vec<PollOutcome>>,
    fallback: PollOutcome,
    calls: Vec<(Instant, String)>,
    latency: Duration,
    /// Executions whose first call panics (after its latency).
    panic_first: Vec<String>,
}

impl Scripted {
    pub fn always(outcome: PollOutcome) -> Scripted {
        Scripted {
            inner: Arc::new(Mutex::new(Inner {
                scripts: HashMap::new(),
                fallback: outcome,
                calls: Vec::new(),
                latency: Duration::from_millis(10),
                panic_first: Vec::new(),
            })),
        }
    }

    pub fn script(self, execution: &str, answers: Vec<PollOutcome>) -> Scripted {
        self.inner
            .lock()
            .unwrap()
            .scripts
            .insert(execution.to_string(), answers);
        self
    }

    pub fn latency(self, latency: Duration) -> Scripted {
        self.inner.lock().unwrap().latency = latency;
        self
    }

    /// The first call for `execution` panics instead of answering (its
    /// script still counts that call).
    pub fn panic_first(self, execution: &str) -> Scripted {
        self.inner
            .lock()
            .unwrap()
            .panic_first
            .push(execution.to_string());
        self
    }

    /// Every call so far: when, and for which execution.
    pub fn calls(&self) -> Vec<(Instant, String)> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn calls_for(&self, execution: &str) -> Vec<Instant> {
        self.calls()
            .into_iter()
            .filter(|(_, e)| e == execution)
            .map(|(at, _)| at)
            .collect()
    }
}

impl Fetch for Scripted {
    fn fetch(&self, target: &Target) -> impl Future<Output = PollOutcome> + Send {
        let (answer, latency, panics) = {
            let mut inner = self.inner.lock().unwrap();
            let execution = target.execution.to_string();
            let n = inner.calls.iter().filter(|(_, e)| *e == execution).count();
            inner.calls.push((Instant::now(), execution.clone()));
            let answer = match inner.scripts.get(&execution) {
                Some(script) if !script.is_empty() => script[n.min(script.len() - 1)].clone(),
                _ => inner.fallback.clone(),
            };
            let panics = n == 0 && inner.panic_first.contains(&execution);
            (answer, inner.latency, panics)
        };
        async move {
            tokio::time::sleep(latency).await;
            if panics {
                panic!("scripted panic in a poll");
            }
            answer
        }
    }
}

/// Failure details: every execution's event lists are empty (one page each).
impl Lister for Scripted {
    fn list_executions(
        &self,
        _request: &ExecutionsRequest,
    ) -> impl Future<Output = Result<ExecutionsPage, ReadFailure>> + Send {
        std::future::ready(Ok(ExecutionsPage::default()))
    }

    fn list_events(
        &self,
        _request: &EventsRequest,
    ) -> impl Future<Output = Result<EventsPage, ReadFailure>> + Send {
        std::future::ready(Ok(EventsPage::default()))
    }
}

pub fn observed(status: &str) -> PollOutcome {
    PollOutcome::Observed(Observation {
        status: Status::parse(status),
        execution_arn: None,
        flow_version: Some("1".to_string()),
        started_at: Some(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        ended_at: Status::parse(status)
            .is_terminal()
            .then(|| std::time::SystemTime::now() - Duration::from_secs(2)),
        errors: Vec::new(),
    })
}

/// `observed(status)`, with the execution ARN the service answers with.
pub fn observed_as(status: &str, execution_arn: &str) -> PollOutcome {
    let PollOutcome::Observed(mut observation) = observed(status) else {
        unreachable!("observed() builds an observation")
    };
    observation.execution_arn = Some(execution_arn.to_string());
    PollOutcome::Observed(observation)
}

pub fn failed_with_errors() -> PollOutcome {
    let PollOutcome::Observed(mut observation) = observed("Failed") else {
        unreachable!("observed() builds an observation")
    };
    observation.errors = vec![
        NodeError {
            error: "ExecutionTimedOut".to_string(),
            message: "the node ran too long".to_string(),
            node: Some("Summarize".to_string()),
        },
        NodeError {
            error: "BadGateway".to_string(),
            message: "upstream failed".to_string(),
            node: None,
        },
    ];
    PollOutcome::Observed(observation)
}
