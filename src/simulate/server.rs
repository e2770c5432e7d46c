//! The simulator's HTTP edge: axum on a tokio listener. In: HTTP requests. Out:
//! the service's answers, after the checks the real front end makes first
//! (SigV4 `Authorization` present, known operation, request quota, injected
//! 5xx faults) and the scenario's latency; every request is counted and logged
//! in `Stats`. What an execution looks like is decided in `answer.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::answer::answer;
use super::quota::TokenBucket;
use super::scenario::Scenario;
use super::wire::{self, Answer, Reply};

/// The request log keeps at most this many entries; later ones are only counted.
pub const LOG_CAP: usize = 1_000_000;

/// How long `shutdown` waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Arrival, since the simulator started.
    pub at: Duration,
    /// The execution label from the path as sent (id or ARN); "" for listings
    /// and unknown paths.
    pub execution: String,
    pub status: u16,
    pub answer: Answer,
}

/// Totals by answer kind and the request log, as of the call to `Simulator::stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    counts: [u64; Answer::ALL.len()],
    /// In arrival order, at most [`LOG_CAP`] entries.
    pub log: Vec<RequestRecord>,
    /// Requests not logged because the log was full (still counted).
    pub log_dropped: u64,
}

impl Stats {
    /// Requests answered with this kind.
    pub fn count(&self, answer: Answer) -> u64 {
        self.counts[index(answer)]
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn record(&mut self, record: RequestRecord) {
        self.counts[index(record.answer)] += 1;
        if self.log.len() < LOG_CAP {
            self.log.push(record);
        } else {
            self.log_dropped += 1;
        }
    }
}

fn index(answer: Answer) -> usize {
    Answer::ALL
        .iter()
        .position(|a| *a == answer)
        .expect("ALL lists every answer")
}

/// A running simulator. Dropping it stops the server too, without waiting.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    scenario: Scenario,
    /// The time origin of every timeline offset.
    started_at: Instant,
    /// Wall-clock time at `started_at`, for the timestamps on the wire.
    origin: SystemTime,
    quota: Option<Mutex<TokenBucket>>,
    rng: Mutex<fastrand::Rng>,
    stats: Mutex<Stats>,
    next_request: AtomicU64,
}

impl Simulator {
    /// Binds `listen` (port 0 picks a free one) and serves `scenario` until
    /// [`Simulator::shutdown`]. Timeline offsets count from this call.
    pub async fn spawn(scenario: Scenario, listen: SocketAddr) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let started_at = Instant::now();
        let knobs = &scenario.server;
        let quota = knobs.quota.map(|rate| {
            let burst = knobs.quota_burst.unwrap_or(rate);
            let changes =
                (knobs.quota_schedule.iter()).map(|change| (started_at + change.at, change.quota));
            Mutex::new(TokenBucket::new(rate, burst, started_at).with_changes(changes))
        });
        let shared = Arc::new(Shared {
            rng: Mutex::new(fastrand::Rng::with_seed(knobs.seed)),
            quota,
            scenario,
            started_at,
            origin: SystemTime::now(),
            stats: Mutex::new(Stats::default()),
            next_request: AtomicU64::new(1),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::debug!(%error, "simulator server ended");
            }
        });
        Ok(Simulator {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for the SDK's `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of the totals and the request log so far.
    pub fn stats(&self) -> Stats {
        self.shared
            .stats
            .lock()
            .expect("stats lock is never poisoned")
            .clone()
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then returns.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let arrived = Instant::now();
    let elapsed = arrived.saturating_duration_since(shared.started_at);
    let op = wire::route(
        request.method().as_str(),
        request.uri().path(),
        request.uri().query(),
    );
    let reply = shared.decide(request.headers(), op.as_ref(), elapsed, arrived);
    let execution = op.as_ref().map_or("", |o| o.execution_label()).to_owned();
    shared
        .stats
        .lock()
        .expect("stats lock is never poisoned")
        .record(RequestRecord {
            at: elapsed,
            execution,
            status: reply.answer.status(),
            answer: reply.answer,
        });
    let delay = shared.latency();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let request_id = shared.next_request.fetch_add(1, Ordering::Relaxed);
    respond(reply, request_id)
}

impl Shared {
    /// Front-end checks in the order the real endpoint makes them, then the scenario.
    fn decide(
        &self,
        headers: &HeaderMap,
        op: Option<&wire::Operation>,
        elapsed: Duration,
        now: Instant,
    ) -> Reply {
        let signed = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
        if !signed {
            return Reply::error(Answer::Unauthenticated, "Missing Authentication Token");
        }
        let Some(op) = op else {
            return Reply::error(
                Answer::UnknownOperation,
                "the requested operation does not exist",
            );
        };
        if let Some(quota) = &self.quota
            && !quota
                .lock()
                .expect("quota lock is never poisoned")
                .try_take(now)
        {
            return self.throttled();
        }
        let rate = self.scenario.server.error_rate;
        if rate > 0.0 && self.rng.lock().expect("rng lock is never poisoned").f64() < rate {
            return Reply::error(Answer::Internal, "Internal server error (simulated fault)");
        }
        answer(&self.scenario, op, elapsed, self.origin)
    }

    fn throttled(&self) -> Reply {
        let mut reply = Reply::error(
            Answer::Throttled,
            "Too many requests, please wait before trying again.",
        );
        if let Some(retry_after) = self.scenario.server.retry_after {
            let secs = retry_after.as_millis().div_ceil(1000);
            reply.headers.push(("retry-after", secs.to_string()));
            reply
                .headers
                .push(("x-amz-retry-after", retry_after.as_millis().to_string()));
        }
        reply
    }

    fn latency(&self) -> Duration {
        let knobs = &self.scenario.server;
        if knobs.latency_jitter.is_zero() {
            return knobs.latency;
        }
        let share = self.rng.lock().expect("rng lock is never poisoned").f64();
        knobs.latency + knobs.latency_jitter.mul_f64(share)
    }
}

fn respond(reply: Reply, request_id: u64) -> Response {
    let status = StatusCode::from_u16(reply.answer.status()).expect("answer statuses are valid");
    let mut builder = Response::builder().status(status).header(
        "x-amzn-RequestId",
        format!("00000000-0000-4000-8000-{request_id:012x}"),
    );
    for (name, value) in reply.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Body::from(reply.body))
        .expect("static header names and ASCII values are valid")
}
