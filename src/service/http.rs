//! The health and metrics endpoint: `GET /healthz` (is the loop still
//! turning), `GET /readyz` (is start-up done) and `GET /metrics` (Prometheus
//! scrape, OpenMetrics text). In: the shared `Health` the loop beats and the
//! daemon's `Metrics`; out: HTTP/1.1 answers on `[http] listen`. Anything
//! else is 404. Stops gracefully when the shutdown token is cancelled.
//!
//! No client can hold the daemon's resources (issue 7.5): a request's header
//! and body must arrive within their timeouts, both are capped in size, and
//! at most `max_connections` are open at once; a new connection beyond that
//! closes the oldest, so a flood of stalled clients never locks a health
//! probe out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::lock::lock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::{CONTENT_TYPE, Metrics};

/// How long the loop may go without a beat before `/healthz` says 503.
pub const DEFAULT_MAX_SILENCE: Duration = Duration::from_secs(30);

/// What one client may take: time, bytes, connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request's header block must arrive within this, counted from when
    /// the server starts waiting for it (an idle keep-alive connection
    /// included), else the connection is closed.
    pub header_read: Duration,
    /// A request's body must arrive within this once its header is in
    /// (else 408 and the connection is closed).
    pub body_read: Duration,
    /// Connections open at once; one more closes the oldest.
    pub max_connections: usize,
    /// The header block's size cap (hyper closes the connection past it).
    pub max_header_bytes: usize,
    /// The body's size cap (413 past it).
    pub max_body_bytes: usize,
}

/// The daemon's limits: a stalled connection is gone within 10 s (issue 7.5
/// asks for 30 s at most), and 256 connections stay far below the file
/// limit a unit usually has (1024), leaving the rest to polls and state.
pub const LIMITS: Limits = Limits {
    header_read: Duration::from_secs(10),
    body_read: Duration::from_secs(10),
    max_connections: 256,
    max_header_bytes: 16 * 1024,
    max_body_bytes: 1024 * 1024,
};

/// Connections kept free of waiters: probes, scrapes and API writes.
const BESIDES_WAITERS: usize = 64;

/// The daemon's limits for `[http]`: `LIMITS`, with a connection cap that
/// also holds every long poll and stream client `[http]` allows at once and
/// `BESIDES_WAITERS` more, so raising `max_long_polls` or `max_sse_clients`
/// raises the cap too (else the waiters past it would close the oldest).
pub fn limits_for(http: &crate::config::HttpSettings) -> Limits {
    let waiters = http.max_long_polls.saturating_add(http.max_sse_clients);
    Limits {
        max_connections: LIMITS
            .max_connections
            .max(waiters.saturating_add(BESIDES_WAITERS)),
        ..LIMITS
    }
}

/// How long in-flight requests may take to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    /// With `[ha]`, while standing by: the leader, when known (issue 12).
    standby: std::sync::Mutex<Option<Option<String>>>,
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
            standby: std::sync::Mutex::new(None),
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

    /// With `[ha]`: `Some(leader)` while this instance stands by (`/readyz`
    /// answers 503 naming the leader), `None` while it leads.
    pub fn set_standby(&self, standby: Option<Option<String>>) {
        *crate::lock::lock(&self.standby) = standby;
    }

    /// `Some(leader)` while standing by (see `set_standby`).
    pub fn standby(&self) -> Option<Option<String>> {
        crate::lock::lock(&self.standby).clone()
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
/// serves in a spawned task until `shutdown` is cancelled, within [`LIMITS`].
/// Returns the bound address (useful with port 0) and the task, which ends
/// once in-flight requests are answered (or after a short grace).
pub async fn serve(
    listen: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    serve_with(listen, LIMITS, health, metrics, shutdown).await
}

/// `serve` within other `limits` (tests use short timeouts).
pub async fn serve_with(
    listen: SocketAddr,
    limits: Limits,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    serve_routes(listen, limits, health, metrics, Router::new(), shutdown).await
}

/// `serve_with`, also answering `routes` (the `/v1` API, issue 10).
pub async fn serve_routes(
    listen: SocketAddr,
    limits: Limits,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    routes: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Shared { health, metrics })
        .merge(routes)
        .layer(middleware::from_fn_with_state(limits, bounded_body));
    let task = tokio::spawn(accept_loop(listener, app, limits, shutdown));
    tracing::debug!(listen = %bound, "health and metrics endpoint listening");
    Ok((bound, task))
}

/// Open connections by age (ids only grow), each with the token that
/// closes it.
type Open = Arc<Mutex<BTreeMap<u64, CancellationToken>>>;

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let open: Open = Arc::default();
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin; the
                // connections open now will end within their timeouts.
                tracing::debug!(%error, "cannot accept an http connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let closed = CancellationToken::new();
        {
            let mut open = lock(&open);
            while open.len() >= limits.max_connections.max(1) {
                let Some((_, oldest)) = open.pop_first() else {
                    break;
                };
                oldest.cancel();
            }
            open.insert(next_id, closed.clone());
        }
        connections.spawn(serve_connection(
            stream,
            app.clone(),
            limits,
            Closing {
                open: open.clone(),
                id: next_id,
                closed,
                shutdown: shutdown.clone(),
            },
        ));
        next_id += 1;
    }
    // Shutdown: each connection finishes its request (it watches the token
    // too); stalled ones are cut off after the grace.
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        connections.shutdown().await;
    }
}

/// What ends one connection early, and its entry in the open set (removed
/// when the connection ends, whichever way).
struct Closing {
    open: Open,
    id: u64,
    /// Cancelled when a newer connection needs the slot.
    closed: CancellationToken,
    shutdown: CancellationToken,
}

impl Drop for Closing {
    fn drop(&mut self) {
        lock(&self.open).remove(&self.id);
    }
}

async fn serve_connection(stream: TcpStream, app: Router, limits: Limits, closing: Closing) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(limits.max_header_bytes.max(8192)); // hyper's floor
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = closing.closed.cancelled() => return, // dropping it closes it
        () = closing.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                ended = connection.as_mut() => ended,
                () = closing.closed.cancelled() => return,
                () = tokio::time::sleep(SHUTDOWN_GRACE) => return,
            }
        }
    };
    if let Err(error) = ended {
        // Timeouts and broken clients: the client's problem, not ours.
        tracing::debug!(%error, "http connection closed");
    }
}

/// Reads a request's whole body within `body_read` and `max_body_bytes`
/// before any handler sees it, so no handler can be held by a slow body.
async fn bounded_body(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, limits.max_body_bytes);
    let bytes = match tokio::time::timeout(limits.body_read, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or cut short\n",
            )
                .into_response();
        }
        Err(_) => return (StatusCode::REQUEST_TIMEOUT, "request body too slow\n").into_response(),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
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
    if let Some(leader) = shared.health.standby() {
        let leader = leader.as_deref().unwrap_or("unknown");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("standby; leader: {leader}\n"),
        )
            .into_response();
    }
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

    async fn start_with(limits: Limits) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
        let shutdown = CancellationToken::new();
        let listen = "127.0.0.1:0".parse().expect("a loopback address");
        let (addr, task) = serve_with(
            listen,
            limits,
            Arc::new(Health::default()),
            Arc::new(Metrics::new()),
            shutdown.clone(),
        )
        .await
        .expect("bind loopback");
        (addr, shutdown, task)
    }

    /// Far longer than any limit a test sets: only a server that never
    /// closes a connection runs into it.
    const GENEROUS: Duration = Duration::from_secs(20);

    /// Opens `n` connections that each send `sent` and then nothing.
    async fn stalled(addr: SocketAddr, n: usize, sent: &[u8]) -> Vec<tokio::net::TcpStream> {
        let mut streams = Vec::with_capacity(n);
        for _ in 0..n {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.write_all(sent).await.expect("send half a request");
            streams.push(stream);
        }
        streams
    }

    /// Waits until the server closes `stream`; returns what it sent first.
    async fn closed_by_server(mut stream: tokio::net::TcpStream) -> String {
        let mut raw = Vec::new();
        let read = tokio::time::timeout(GENEROUS, stream.read_to_end(&mut raw)).await;
        assert!(read.is_ok(), "the server held a stalled connection open");
        String::from_utf8_lossy(&raw).into_owned()
    }

    #[test]
    fn the_connection_cap_holds_every_waiter_the_http_limits_allow() {
        let mut http = crate::config::HttpSettings::on("127.0.0.1:9464".parse().unwrap());
        assert_eq!(
            limits_for(&http),
            LIMITS,
            "the defaults fit the default cap"
        );
        http.max_long_polls = 1000;
        http.max_sse_clients = 1000;
        let limits = limits_for(&http);
        assert_eq!(limits.max_connections, 2000 + BESIDES_WAITERS);
        assert_eq!(limits.header_read, LIMITS.header_read);
    }

    #[tokio::test]
    async fn half_sent_requests_are_closed_after_the_header_timeout_and_healthz_answers_meanwhile()
    {
        let limits = Limits {
            header_read: Duration::from_millis(300),
            max_connections: 10_000,
            ..LIMITS
        };
        let (addr, shutdown, task) = start_with(limits).await;
        let mut held = stalled(addr, 200, b"GET /healthz HT").await;
        held.extend(stalled(addr, 20, b"").await); // connected, silent
        let answer = get(addr, "/healthz").await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"));
        for stream in held {
            closed_by_server(stream).await;
        }
        assert_eq!(get(addr, "/healthz").await.status, 200);
        shutdown.cancel();
        task.await.expect("the server task ends");
    }

    #[tokio::test]
    async fn past_the_connection_cap_the_oldest_are_closed_and_healthz_still_answers() {
        let limits = Limits {
            header_read: Duration::from_secs(3600),
            max_connections: 16,
            ..LIMITS
        };
        let (addr, shutdown, task) = start_with(limits).await;
        let mut held = stalled(addr, 150, b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        let answer = get(addr, "/healthz").await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"));
        // Everything but the newest 16 (the probe among them) was closed.
        held.truncate(150 - 16);
        for stream in held {
            closed_by_server(stream).await;
        }
        shutdown.cancel();
        task.await.expect("the server task ends");
    }

    #[tokio::test]
    async fn a_stalled_body_gets_408_and_an_oversized_one_413() {
        let limits = Limits {
            body_read: Duration::from_millis(300),
            max_body_bytes: 1000,
            ..LIMITS
        };
        let (addr, shutdown, task) = start_with(limits).await;
        let slow = stalled(
            addr,
            1,
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b",
        )
        .await;
        let answer = closed_by_server(slow.into_iter().next().unwrap()).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");

        let big = stalled(
            addr,
            1,
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
        )
        .await;
        let answer = closed_by_server(big.into_iter().next().unwrap()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");

        let huge_header = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may close before everything is written.
        let _ = stream.write_all(huge_header.as_bytes()).await;
        let answer = closed_by_server(stream).await;
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        shutdown.cancel();
        task.await.expect("the server task ends");
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
    async fn readyz_is_503_naming_the_leader_on_a_standby_and_the_gauge_says_which() {
        let health = Arc::new(Health::default());
        let metrics = Arc::new(Metrics::new().with_leader());
        let (addr, shutdown, task) = start(health.clone(), metrics.clone()).await;
        health.set_ready();

        health.set_standby(Some(Some("host-a:812".to_string())));
        let standby = get(addr, "/readyz").await;
        assert_eq!(standby.status, 503);
        assert_eq!(standby.body, "standby; leader: host-a:812\n");
        assert!(
            get(addr, "/metrics")
                .await
                .body
                .contains("flowwatch_leader 0")
        );

        health.set_standby(None);
        metrics.set_leader(true);
        assert_eq!(get(addr, "/readyz").await.status, 200);
        assert!(
            get(addr, "/metrics")
                .await
                .body
                .contains("flowwatch_leader 1")
        );

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
