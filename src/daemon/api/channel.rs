//! The channel between the HTTP handlers and the loop (issue 10): the
//! requests and answers, the handle each side holds, and, under `[ha]`, the
//! relay that carries one process-long inbox into each term's loop.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::watch::request::{FieldError, WatchRequest};

/// Requests queued for the loop at most; a handler waits for room.
const QUEUE: usize = 256;

/// One question from an HTTP handler, with where to send the answer.
pub enum ApiRequest {
    Add {
        request: WatchRequest,
        reply: oneshot::Sender<Result<Added, ApiError>>,
    },
    List {
        reply: oneshot::Sender<Vec<WatchView>>,
    },
    Get {
        id: String,
        reply: oneshot::Sender<Option<WatchView>>,
    },
    Remove {
        id: String,
        reply: oneshot::Sender<Result<WatchView, ApiError>>,
    },
}

/// What `Add` did: `created` is false when the watch already existed.
#[derive(Debug)]
pub struct Added {
    pub created: bool,
    pub view: WatchView,
}

/// Why the loop refused a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("at most {limit} api watches at once ([http] max_api_watches)")]
    Full { limit: usize },
    #[error("no such watch")]
    NotFound,
    #[error("this watch comes from the {from}, not the api: remove it there")]
    NotApi { from: &'static str },
}

/// One watch as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchView {
    /// The key `GET /v1/watches/{id}` takes: the execution ARN when known,
    /// else `region/flow/alias/execution`.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    pub flow: String,
    pub alias: String,
    pub execution: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    /// `config`, `api` or `discovery`.
    pub source: &'static str,
    /// The last status seen; `null` before the first answer.
    pub status: Option<String>,
    pub terminal: bool,
    pub polls: u64,
    /// When this daemon last saw the status change (RFC 3339); `null` when
    /// it has not since it started.
    pub last_transition_at: Option<String>,
    /// `null` while polled, else `succeeded`, `failed` or `abandoned`.
    pub ended: Option<&'static str>,
    /// Why an abandoned watch was abandoned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The HTTP side's handle: send requests, wait for changes.
#[derive(Clone)]
pub struct ApiClient {
    requests: mpsc::Sender<ApiRequest>,
    changes: watch::Receiver<u64>,
}

/// The loop's side, handed to `Daemon::with_api`.
pub struct ApiInbox {
    pub(super) requests: mpsc::Receiver<ApiRequest>,
    pub(super) changes: watch::Sender<u64>,
}

/// A connected pair.
pub fn channel() -> (ApiClient, ApiInbox) {
    let (requests_tx, requests) = mpsc::channel(QUEUE);
    let (changes, changes_rx) = watch::channel(0);
    (
        ApiClient {
            requests: requests_tx,
            changes: changes_rx,
        },
        ApiInbox { requests, changes },
    )
}

impl ApiInbox {
    /// Under `[ha]` the HTTP side outlives each term's loop: hands this
    /// inbox's requests to a term's `client` and carries its changes back,
    /// until `stop` or the term's loop is gone.
    pub async fn relay(&mut self, term: ApiClient, stop: CancellationToken) {
        let mut changes = term.changes.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                got = self.requests.recv() => match got {
                    Some(request) => {
                        if term.requests.send(request).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                Ok(()) = changes.changed() => self.changes.send_modify(|n| *n += 1),
            }
        }
    }

    /// A standby's answer to a request that raced the end of a term: it is
    /// dropped, so its caller hears 503 at once instead of waiting a term.
    /// `false` once no request can come any more.
    pub async fn refuse_next(&mut self) -> bool {
        self.requests.recv().await.is_some()
    }
}

/// The loop is gone (stopping): the handler answers 503.
#[derive(Debug, thiserror::Error)]
#[error("the daemon is stopping")]
pub struct Gone;

impl ApiClient {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> ApiRequest) -> Result<T, Gone> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(make(reply)).await.map_err(|_| Gone)?;
        answer.await.map_err(|_| Gone)
    }

    pub async fn add(&self, request: WatchRequest) -> Result<Result<Added, ApiError>, Gone> {
        self.ask(|reply| ApiRequest::Add { request, reply }).await
    }

    pub async fn list(&self) -> Result<Vec<WatchView>, Gone> {
        self.ask(|reply| ApiRequest::List { reply }).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<WatchView>, Gone> {
        let id = id.to_string();
        self.ask(|reply| ApiRequest::Get { id, reply }).await
    }

    pub async fn remove(&self, id: &str) -> Result<Result<WatchView, ApiError>, Gone> {
        let id = id.to_string();
        self.ask(|reply| ApiRequest::Remove { id, reply }).await
    }

    /// A receiver that wakes whenever some watch's status or ending changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}
