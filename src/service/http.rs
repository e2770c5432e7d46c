//! The health and metrics endpoint: `GET /healthz` (is the loop still
//! turning), `GET /readyz` (is start-up done) and `GET /metrics` (Prometheus
//! scrape, OpenMetrics text). In: the shared `Health` the loop beats and the
//! daemon's `Metrics`; out: HTTP answers on `[http] listen`. Anything else
//! is 404. Stops gracefully when the shutdown token is cancelled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::{CONTENT_TYPE, Metrics};

/// How long the loop may go without a beat before `/healthz` says 503.
pub const DEFAULT_MAX_SILENCE: Duration = Duration::from_secs(30);

/// Liveness and readiness, shared between the loop (writer) and the HTTP
/// handlers (readers). Lock-free: a beat is one atomic store.
#[derive(Debug)]
pub struct Health {
    /// Beats are stored as signed milliseconds from here, so a beat may lie
    /// before it (tests inject old beats).
    origin: Instant,
    last_beat_ms: AtomicI64,
    ready: AtomicBool,
    max_silence: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// Alive (creation counts as the first beat) but not ready; `/healthz`
    /// tolerates [`DEFAULT_MAX_SILENCE`] without a beat.
    pub fn new() -> Health {
        Health::with_max_silence(DEFAULT_MAX_SILENCE)
    }

    /// Like `new`, but `/healthz` fails once the loop has been silent for
    /// longer than `max_silence`.
    pub fn with_max_silence(max_silence: Duration) -> Health {
        Health {
            origin: Instant::now(),
            last_beat_ms: AtomicI64::new(0),
            ready: AtomicBool::new(false),
            max_silence,
        }
    }

    /// The loop is turning: called from the loop itself, never from a
    /// separate task, so a stuck loop stops the beats.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    /// `beat` with an explicit time (tests inject old beats this way).
    pub fn beat_at(&self, now: Instant) {
        self.last_beat_ms
            .store(self.offset_ms(now), Ordering::Relaxed);
    }

    /// Start-up is done (config loaded, first watches scheduled).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Whether the last beat is at most `max_silence` old. `/healthz` asks
    /// this with [`Health::max_silence`].
    pub fn is_alive(&self, max_silence: Duration) -> bool {
        let silence_ms = self
            .offset_ms(Instant::now())
            .saturating_sub(self.last_beat_ms.load(Ordering::Relaxed));
        i128::from(silence_ms) <= i128::try_from(max_silence.as_millis()).unwrap_or(i128::MAX)
    }

    /// Whether `set_ready` was called.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The silence `/healthz` tolerates.
    pub fn max_silence(&self) -> Duration {
        self.max_silence
    }

    fn offset_ms(&self, at: Instant) -> i64 {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        if at >= self.origin {
            millis(at - self.origin)
        } else {
            -millis(self.origin - at)
        }
    }
}

#[derive(Clone)]
struct Shared {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// Binds `listen` now, so a bad or busy address fails at start-up, then
/// serves in a spawned task until `shutdown` is cancelled. Returns the bound
/// address (useful with port 0) and the task, which ends once in-flight
/// requests are answered.
pub async fn serve(
    listen: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Shared { health, metrics });
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, listen = %bound, "health and metrics endpoint failed");
        }
    });
    tracing::debug!(listen = %bound, "health and metrics endpoint listening");
    Ok((bound, task))
}

async fn healthz(State(shared): State<Shared>) -> Response {
    let health = &shared.health;
    if health.is_alive(health.max_silence()) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "main loop stalled\n").into_response()
    }
}

async fn readyz(State(shared): State<Shared>) -> Response {
    if shared.health.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn metrics_text(State(shared): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        shared.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// One raw HTTP/1.1 request over a real loopback connection.
    async fn get(addr: SocketAddr, path: &str) -> Answer {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        let raw = String::from_utf8(raw).expect("a text response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {raw:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        Answer {
            status,
            headers,
            body: body.to_string(),
        }
    }

    async fn start(
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
        let shutdown = CancellationToken::new();
        let listen = "127.0.0.1:0".parse().expect("a loopback address");
        let (addr, task) = serve(listen, health, metrics, shutdown.clone())
            .await
            .expect("bind loopback");
        (addr, shutdown, task)
    }

    #[test]
    fn health_is_alive_within_the_silence_and_dead_after_it() {
        let health = Health::with_max_silence(Duration::from_secs(30));
        let now = Instant::now();
        health.beat_at(now);
        assert!(health.is_alive(Duration::from_secs(30)));
        health.beat_at(now - Duration::from_secs(31));
        assert!(!health.is_alive(Duration::from_secs(30)));
        assert!(health.is_alive(Duration::from_secs(3600)));
    }

    #[tokio::test]
    async fn healthz_is_ok_while_the_loop_beats_and_503_once_it_is_silent() {
        let health = Arc::new(Health::with_max_silence(Duration::from_secs(30)));
        let (addr, shutdown, task) = start(health.clone(), Arc::new(Metrics::new())).await;

        health.beat_at(Instant::now());
        let fresh = get(addr, "/healthz").await;
        assert_eq!((fresh.status, fresh.body.as_str()), (200, "ok\n"));

        health.beat_at(Instant::now() - Duration::from_secs(31));
        let stale = get(addr, "/healthz").await;
        assert_eq!(stale.status, 503, "body: {}", stale.body);

        health.beat_at(Instant::now());
        assert_eq!(get(addr, "/healthz").await.status, 200);

        shutdown.cancel();
        task.await.expect("the server task ends");
    }

    #[tokio::test]
    async fn readyz_is_503_until_start_up_is_done() {
        let health = Arc::new(Health::default());
        let (addr, shutdown, task) = start(health.clone(), Arc::new(Metrics::new())).await;

        assert_eq!(get(addr, "/readyz").await.status, 503);
        health.set_ready();
        let ready = get(addr, "/readyz").await;
        assert_eq!(ready.status, 200, "body: {}", ready.body);

        shutdown.cancel();
        task.await.expect("the server task ends");
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics_text() {
        let metrics = Arc::new(Metrics::new());
        metrics.transition("Succeeded");
        let (addr, shutdown, task) = start(Arc::new(Health::default()), metrics).await;

        let answer = get(addr, "/metrics").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("content-type"), Some(CONTENT_TYPE));
        assert!(
            answer
                .body
                .contains("flowwatch_transitions_total{to=\"Succeeded\"} 1\n"),
            "{}",
            answer.body
        );
        assert!(answer.body.ends_with("# EOF\n"), "{}", answer.body);

        shutdown.cancel();
        task.await.expect("the server task ends");
    }

    #[tokio::test]
    async fn unknown_paths_are_404() {
        let (addr, shutdown, task) =
            start(Arc::new(Health::default()), Arc::new(Metrics::new())).await;
        assert_eq!(get(addr, "/").await.status, 404);
        assert_eq!(get(addr, "/metrics/extra").await.status, 404);
        shutdown.cancel();
        task.await.expect("the server task ends");
    }

    #[tokio::test]
    async fn a_busy_address_is_an_error_at_start_up() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = taken.local_addr().expect("bound address");
        let result = serve(
            addr,
            Arc::new(Health::default()),
            Arc::new(Metrics::new()),
            CancellationToken::new(),
        )
        .await;
        assert!(result.is_err(), "serving on a taken port succeeded");
    }
}
