//! `/v1` over HTTP (issue 10): the watch API, long polls and the event
//! stream. In: requests on the `[http]` listener. Out: JSON answers from the
//! loop (through `ApiClient`), and Server-Sent Events from the ring. Nothing
//! here decides about watches: the loop does; this module checks the
//! token, the limits and the request's shape.
//!
//! Limits (`[http]`): body size (413), API watches (429), long polls and
//! stream clients waiting at once (503); each answer is a JSON body
//! `{"error": .., "message": ..}` (with `field` for a 400).
//!
//! With `[ha]`, a standby answers every `/v1` request 503 naming the leader
//! (issue 12): only the leader's loop holds the watches.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::http::Health;
use super::stream::{self, Lost, Ring};
use crate::config::HttpSettings;
use crate::daemon::api::{ApiClient, ApiError, Gone, WatchView};
use crate::watch::request::WatchRequest;

/// The longest long poll: a client wanting more asks again.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// A comment line this often keeps proxies from closing a quiet stream and
/// frees the slot of a client that went away.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Clone)]
struct Api {
    client: ApiClient,
    /// The bearer token writes must carry, when `[http] token_file` is set.
    token: Option<Arc<[u8]>>,
    long_polls: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    max_body_bytes: usize,
    ring: &'static Ring,
    shutdown: CancellationToken,
}

/// Reads `[http] token_file`: its content, without surrounding whitespace.
pub fn read_token(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot read token file {}: {e}", path.display()),
        )
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("token file {} is empty", path.display()),
        ));
    }
    Ok(token)
}

/// The `/v1` routes, answering from `client` within `settings`' limits
/// while `health` says this instance leads (always, without `[ha]`).
pub fn router(
    settings: &HttpSettings,
    client: ApiClient,
    token: Option<String>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Router {
    let api = Api {
        client,
        token: token.map(|t| Arc::from(t.into_bytes())),
        long_polls: Arc::new(Semaphore::new(settings.max_long_polls)),
        streams: Arc::new(Semaphore::new(settings.max_sse_clients)),
        max_body_bytes: settings.max_body_bytes,
        ring: stream::enable(settings.events_buffer),
        shutdown,
    };
    Router::new()
        .route("/v1/watches", get(list).post(add))
        .route("/v1/watches/{id}", get(one).delete(remove))
        .route("/v1/events", get(events))
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(health, unless_standby))
}

/// 503 naming the leader while standing by; else the route's answer.
async fn unless_standby(
    State(health): State<Arc<Health>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match health.standby() {
        None => next.run(request).await,
        Some(leader) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "error": "standby",
                "leader": leader,
                "message": format!(
                    "this instance stands by; the leader is {}",
                    leader.as_deref().unwrap_or("unknown")
                ),
            }),
        ),
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, format!("{body}\n")).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn refusal(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    answer(status, json!({"error": error, "message": message.into()}))
}

fn view(status: StatusCode, view: &WatchView) -> Response {
    answer(
        status,
        serde_json::to_value(view).expect("a view always serializes"),
    )
}

fn stopping(_: Gone) -> Response {
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "stopping",
        "the daemon is stopping",
    )
}

fn api_error(error: ApiError) -> Response {
    let message = error.to_string();
    match error {
        ApiError::Invalid(field) => answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid", "field": field.field, "message": field.problem}),
        ),
        ApiError::Full { .. } => {
            refusal(StatusCode::TOO_MANY_REQUESTS, "too_many_watches", message)
        }
        ApiError::NotFound => refusal(StatusCode::NOT_FOUND, "not_found", message),
        ApiError::NotApi { .. } => refusal(StatusCode::CONFLICT, "not_an_api_watch", message),
    }
}

/// Bytes equal, in time that depends on the length only.
fn same_token(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl Api {
    /// `Err` with the 401 when a token is required and not given.
    #[allow(clippy::result_large_err)] // built once per request, never stored
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Response> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if given.is_some_and(|given| same_token(given.as_bytes(), token)) {
            return Ok(());
        }
        let mut response = refusal(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this request needs Authorization: Bearer TOKEN ([http] token_file)",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Err(response)
    }
}

async fn list(State(api): State<Api>) -> Response {
    match api.client.list().await {
        Ok(views) => answer(StatusCode::OK, json!({ "watches": views })),
        Err(gone) => stopping(gone),
    }
}

async fn add(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = api.authorize(&headers) {
        return refused;
    }
    if body.len() > api.max_body_bytes {
        return refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the body is larger than {} bytes ([http] max_body_bytes)",
                api.max_body_bytes
            ),
        );
    }
    let request = match WatchRequest::from_json(&body) {
        Ok(request) => request,
        Err(field) => return api_error(ApiError::Invalid(field)),
    };
    match api.client.add(request).await {
        Err(gone) => stopping(gone),
        Ok(Err(error)) => api_error(error),
        Ok(Ok(added)) => {
            let status = if added.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            view(status, &added.view)
        }
    }
}

async fn remove(
    State(api): State<Api>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if let Err(refused) = api.authorize(&headers) {
        return refused;
    }
    match api.client.remove(&id).await {
        Err(gone) => stopping(gone),
        Ok(Err(error)) => api_error(error),
        Ok(Ok(removed)) => view(StatusCode::OK, &removed),
    }
}

/// `?wait=DURATION&since=STATUS`, the long poll's terms.
#[derive(Debug, Default, PartialEq, Eq)]
struct Terms {
    wait: Option<Duration>,
    since: Option<String>,
}

#[allow(clippy::result_large_err)] // built once per request, never stored
fn terms(query: Option<&str>) -> Result<Terms, Response> {
    let mut terms = Terms::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "wait" => {
                let wait = humantime::parse_duration(value.trim()).map_err(|e| {
                    answer(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "invalid", "field": "wait", "message": format!("invalid duration {value:?}: {e}")}),
                    )
                })?;
                terms.wait = Some(wait.min(MAX_WAIT));
            }
            "since" => terms.since = Some(value),
            _ => {}
        }
    }
    Ok(terms)
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
            (b'+', ..) => out.push(b' '),
            (byte, ..) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a long poll answers now: the watch ended, or its status is
/// known and differs from `since`.
fn settled(view: &WatchView, since: Option<&str>) -> bool {
    view.ended.is_some()
        || match (&view.status, since) {
            (Some(status), Some(since)) => status != since,
            (Some(_), None) => true,
            (None, _) => false,
        }
}

async fn one(State(api): State<Api>, UrlPath(id): UrlPath<String>, uri: Uri) -> Response {
    let terms = match terms(uri.query()) {
        Ok(terms) => terms,
        Err(refused) => return refused,
    };
    let not_found = || refusal(StatusCode::NOT_FOUND, "not_found", format!("no watch {id}"));
    let Some(wait) = terms.wait else {
        return match api.client.get(&id).await {
            Ok(Some(found)) => view(StatusCode::OK, &found),
            Ok(None) => not_found(),
            Err(gone) => stopping(gone),
        };
    };
    let Ok(_permit) = api.long_polls.clone().try_acquire_owned() else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_long_polls",
            "too many long polls are waiting ([http] max_long_polls); retry later",
        );
    };
    let deadline = Instant::now() + wait;
    let mut changes = api.client.changes();
    changes.borrow_and_update();
    let mut current = match api.client.get(&id).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(gone) => return stopping(gone),
    };
    let since = terms.since.or_else(|| current.status.clone());
    while !settled(&current, since.as_deref()) {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            () = tokio::time::sleep_until(deadline) => break,
            () = api.shutdown.cancelled() => break,
        }
        changes.borrow_and_update();
        current = match api.client.get(&id).await {
            Ok(Some(found)) => found,
            Ok(None) => return not_found(),
            Err(gone) => return stopping(gone),
        };
    }
    view(StatusCode::OK, &current)
}

/// What one stream client still has to be sent.
struct Feed {
    queued: VecDeque<Bytes>,
    live: broadcast::Receiver<stream::Item>,
    keep_alive: tokio::time::Interval,
    shutdown: CancellationToken,
    /// Held while the client is connected.
    _permit: OwnedSemaphorePermit,
}

async fn events(State(api): State<Api>, headers: HeaderMap) -> Response {
    let Ok(permit) = api.streams.clone().try_acquire_owned() else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "too many event stream clients ([http] max_sse_clients); retry later",
        );
    };
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let subscription = api.ring.subscribe(last_seen);
    let mut queued = VecDeque::new();
    // A first line at once: the client knows it is subscribed.
    queued.push_back(Bytes::from_static(b": flowwatch events\n\n"));
    if let Some(lost) = subscription.lost {
        queued.push_back(Bytes::from(stream::gap_frame(lost)));
    }
    queued.extend(
        subscription
            .backlog
            .iter()
            .map(|item| Bytes::from(stream::frame(item))),
    );
    let feed = Feed {
        queued,
        live: subscription.live,
        keep_alive: tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE),
        shutdown: api.shutdown.clone(),
        _permit: permit,
    };
    let body = futures_util::stream::unfold(feed, |mut feed| async move {
        if let Some(next) = feed.queued.pop_front() {
            return Some((Ok::<_, Infallible>(next), feed));
        }
        let next = tokio::select! {
            () = feed.shutdown.cancelled() => return None,
            _ = feed.keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            got = feed.live.recv() => match got {
                Ok(item) => Bytes::from(stream::frame(&item)),
                Err(broadcast::error::RecvError::Lagged(n)) => Bytes::from(stream::gap_frame(Lost::Count(n))),
                Err(broadcast::error::RecvError::Closed) => return None,
            },
        };
        Some((Ok(next), feed))
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_content() {
        assert!(same_token(b"s3cret", b"s3cret"));
        assert!(!same_token(b"s3cres", b"s3cret"));
        assert!(!same_token(b"s3cre", b"s3cret"));
    }

    #[test]
    fn long_poll_terms_parse_and_bad_waits_are_refused() {
        let parsed = terms(Some("wait=30s&since=Running")).ok().unwrap();
        assert_eq!(parsed.wait, Some(Duration::from_secs(30)));
        assert_eq!(parsed.since.as_deref(), Some("Running"));
        assert_eq!(terms(Some("wait=2h")).ok().unwrap().wait, Some(MAX_WAIT));
        assert!(terms(Some("wait=soon")).is_err());
        assert_eq!(percent_decode("a%20b%"), "a b%");
    }
}
