//! The loop's side of the watch API (issue 10): requests from the HTTP
//! handlers arrive on a channel and are answered from the book, so API
//! watches go through the same add/remove paths, events and state as
//! config watches, with `source = "api"`.
//!
//! In: `ApiRequest`s (add, list, get, remove), finished polls (to notice a
//! status change), the heartbeat (to drop ended API watches after
//! `[http] keep_ended`). Out: replies, a change counter long polls wait on,
//! and the API watches' requests in `[state]` so a restart resumes them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::{self, JoinError};
use tokio::time::Instant;

use super::book::{Ending, Tracked};
use super::{Daemon, Done};
use crate::poll::{Fetch, Lister, Status};
use crate::state::SavedApiWatch;
use crate::watch::request::{API_SOURCE, WatchRequest};
use crate::watch::{WatchKey, ids::ExecutionRef};

mod channel;
pub use channel::{Added, ApiClient, ApiError, ApiInbox, ApiRequest, Gone, WatchView, channel};

/// The loop's API state: the inbox, and what the book does not keep.
#[derive(Default)]
pub(super) struct Room {
    inbox: Option<ApiInbox>,
    /// When each watch's status last changed while this daemon ran.
    changed_at: HashMap<WatchKey, SystemTime>,
    /// When each ended API watch ended (dropped `keep_ended` later).
    ended_at: HashMap<WatchKey, SystemTime>,
}

impl Room {
    pub fn attach(&mut self, inbox: ApiInbox) {
        self.inbox = Some(inbox);
    }

    fn bump(&self) {
        if let Some(inbox) = &self.inbox {
            inbox.changes.send_modify(|n| *n += 1);
        }
    }
}

/// The next request, or never without an inbox.
pub(super) async fn next_request(room: &mut Room) -> Option<ApiRequest> {
    match &mut room.inbox {
        Some(inbox) => inbox.requests.recv().await,
        None => std::future::pending().await,
    }
}

fn source_of(tracked: &Tracked) -> &'static str {
    match tracked.watch.source.to_str() {
        Some(API_SOURCE) => "api",
        Some("discovery") => "discovery",
        _ => "config",
    }
}

/// Whether the watch was added over the API.
pub(super) fn is_api(tracked: &Tracked) -> bool {
    source_of(tracked) == "api"
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<F: Fetch + Lister> Daemon<F> {
    /// Takes API requests from `inbox` while the loop runs.
    pub fn with_api(mut self, inbox: ApiInbox) -> Self {
        self.api.attach(inbox);
        self
    }

    fn keep_ended(&self) -> Duration {
        self.config
            .http
            .as_ref()
            .map_or(Duration::from_secs(3600), |http| http.keep_ended)
    }

    /// Resumes the API watches `[state]` saved; ones that ended longer than
    /// `keep_ended` ago are dropped instead. Called once, at start-up.
    pub(super) fn restore_api(&mut self, now: Instant) {
        let saved = std::mem::take(&mut self.edges.restored.api);
        let wall_now = SystemTime::now();
        for (name, saved) in saved {
            let ended_at = saved
                .ended_unix_ms
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
            let expired = ended_at.is_some_and(|at| at + self.keep_ended() <= wall_now);
            let watch = match saved.request.watch(self.edges.default_region.as_deref()) {
                Ok(watch) if !expired => watch,
                Ok(_) => {
                    self.forget_saved(&name);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(watch = %name, %error, "a saved api watch is no longer valid; dropped");
                    self.forget_saved(&name);
                    continue;
                }
            };
            let key = watch.key();
            if self.book.get(&key).is_some() {
                continue; // the config lists it too: the config's watch goes on
            }
            self.add(key.clone(), Arc::new(watch), now);
            let ended = self.book.get(&key).is_some_and(|t| t.ended.is_some());
            if ended {
                // Ended before the restart; without a saved time (a crash
                // before it was written), the clock starts now.
                self.api.ended_at.insert(key, ended_at.unwrap_or(wall_now));
            }
        }
    }

    fn forget_saved(&self, name: &str) {
        if let Some(state) = &self.edges.state {
            state.forget(name);
        }
    }

    /// Answers one request from the HTTP side.
    pub(super) fn answer_api(&mut self, request: ApiRequest, now: Instant) {
        match request {
            ApiRequest::Add { request, reply } => {
                let _ = reply.send(self.api_add(request, now));
            }
            ApiRequest::List { reply } => {
                let mut views: Vec<WatchView> = self.book.iter().map(|t| self.view(t)).collect();
                views.sort_by(|a, b| a.id.cmp(&b.id));
                let _ = reply.send(views);
            }
            ApiRequest::Get { id, reply } => {
                let view = self
                    .find(&id)
                    .and_then(|key| self.book.get(&key))
                    .map(|t| self.view(t));
                let _ = reply.send(view);
            }
            ApiRequest::Remove { id, reply } => {
                let _ = reply.send(self.api_remove(&id));
            }
        }
    }

    fn api_add(&mut self, request: WatchRequest, now: Instant) -> Result<Added, ApiError> {
        let watch = request.watch(self.edges.default_region.as_deref())?;
        let key = watch.key();
        if let Some(existing) = self.resolve(&key) {
            let view = self.view(
                self.book
                    .get(&existing)
                    .expect("resolve finds tracked keys"),
            );
            return Ok(Added {
                created: false,
                view,
            });
        }
        let limit = self
            .config
            .http
            .as_ref()
            .map_or(usize::MAX, |http| http.max_api_watches);
        let api_watches = self.book.iter().filter(|t| source_of(t) == "api").count();
        if api_watches >= limit {
            return Err(ApiError::Full { limit });
        }
        if let Some(state) = &self.edges.state {
            // Before the watch starts: its first transition must not be
            // saved without the request that brings it back.
            state.mark_api(
                key.as_str(),
                SavedApiWatch {
                    request,
                    ended_unix_ms: None,
                },
            );
        }
        self.add(key.clone(), Arc::new(watch), now);
        self.start_ready(now);
        self.api.bump();
        let tracked = self
            .resolve(&key)
            .and_then(|key| self.book.get(&key))
            .expect("a watch just added is tracked");
        Ok(Added {
            created: true,
            view: self.view(tracked),
        })
    }

    fn api_remove(&mut self, id: &str) -> Result<WatchView, ApiError> {
        let key = self.find(id).ok_or(ApiError::NotFound)?;
        let tracked = self.book.get(&key).ok_or(ApiError::NotFound)?;
        let view = self.view(tracked);
        if view.source != "api" {
            return Err(ApiError::NotApi { from: view.source });
        }
        self.remove(&key);
        self.api.changed_at.remove(&key);
        self.api.ended_at.remove(&key);
        self.api.bump();
        Ok(view)
    }

    /// The tracked key for `key`: itself, or the watch it merged into.
    fn resolve(&self, key: &WatchKey) -> Option<WatchKey> {
        if self.book.get(key).is_some() {
            return Some(key.clone());
        }
        if let Some(keeper) = self.book.keeper_of(key) {
            return Some(keeper.clone());
        }
        let arn = ExecutionRef::parse_arn(key.as_str()).ok()?.arn?;
        self.book.learned_by(&arn)
    }

    /// The tracked key an API id names: an execution ARN, or a key's name
    /// or identity as the list shows it.
    fn find(&self, id: &str) -> Option<WatchKey> {
        if let Ok(key) = WatchKey::from_arn(id)
            && let Some(found) = self.resolve(&key)
        {
            return Some(found);
        }
        self.book
            .iter()
            .find(|t| t.key.as_str() == id || t.key.has_identity(id))
            .map(|t| t.key.clone())
    }

    fn view(&self, tracked: &Tracked) -> WatchView {
        let subject = tracked.subject();
        let (ended, reason) = match tracked.ended {
            None => (None, None),
            Some(Ending::Succeeded) => (Some("succeeded"), None),
            Some(Ending::Failed) => (Some("failed"), None),
            Some(Ending::Abandoned(reason)) => (Some("abandoned"), Some(reason.as_str())),
        };
        WatchView {
            id: tracked.key.as_str().to_string(),
            execution_arn: subject.execution_arn.map(str::to_string),
            flow: subject.flow.to_string(),
            alias: subject.alias.to_string(),
            execution: subject.execution.to_string(),
            region: subject.region.to_string(),
            labels: (*tracked.watch.labels).clone(),
            source: source_of(tracked),
            status: tracked.tracker.last().map(|s| s.as_str().to_string()),
            terminal: tracked.tracker.is_terminal(),
            polls: tracked.tracker.polls(),
            last_transition_at: self
                .api
                .changed_at
                .get(&tracked.key)
                .map(|at| humantime::format_rfc3339_millis(*at).to_string()),
            ended,
            reason,
        }
    }

    /// `joined`, noting a change of status or ending for long polls and
    /// `keep_ended`.
    pub(super) fn joined_noting(
        &mut self,
        joined: Result<(task::Id, Done), JoinError>,
        now: Instant,
    ) {
        let key = joined
            .as_ref()
            .ok()
            .and_then(|(_, done)| self.book.key_of(done.id).cloned());
        let seen = |daemon: &Self, key: &WatchKey| -> Option<(Option<Status>, Option<Ending>)> {
            let tracked = daemon.book.get(key)?;
            Some((tracked.tracker.last().cloned(), tracked.ended))
        };
        let before = key.as_ref().and_then(|key| seen(self, key));
        self.joined(joined, now);
        let Some(key) = key else { return };
        let after = seen(self, &key);
        if before == after {
            return;
        }
        let wall_now = SystemTime::now();
        // Only the API reads it: without one, a map entry per watch polled
        // would be memory for nothing.
        if self.api.inbox.is_some() && before.as_ref().map(|b| &b.0) != after.as_ref().map(|a| &a.0)
        {
            self.api.changed_at.insert(key.clone(), wall_now);
        }
        let ended_now = matches!((&before, &after), (Some((_, None)), Some((_, Some(_)))));
        if ended_now
            && let Some(tracked) = self.book.get(&key)
            && source_of(tracked) == "api"
        {
            self.api.ended_at.insert(key.clone(), wall_now);
            self.save_ended(&key, wall_now);
        }
        self.api.bump();
    }

    fn save_ended(&self, key: &WatchKey, at: SystemTime) {
        let (Some(state), Some(tracked)) = (&self.edges.state, self.book.get(key)) else {
            return;
        };
        let target = &tracked.watch.target;
        let request = WatchRequest {
            execution_arn: target.arn.as_deref().map(str::to_string),
            flow: target.arn.is_none().then(|| target.flow.clone()),
            alias: target.arn.is_none().then(|| target.alias.clone()),
            execution: target.arn.is_none().then(|| target.execution.clone()),
            region: if target.arn.is_none() {
                Some(tracked.region().to_string())
            } else {
                None
            },
            labels: (*tracked.watch.labels).clone(),
        };
        state.mark_api(
            key.as_str(),
            SavedApiWatch {
                request,
                ended_unix_ms: Some(unix_ms(at)),
            },
        );
    }

    /// Drops API watches that ended `keep_ended` ago, from memory and state
    /// (issue 10: a long-lived service does not grow). Called each beat.
    pub(super) fn sweep_ended(&mut self) {
        if !self.api.ended_at.is_empty() {
            self.drop_kept_ended();
        }
        // Every watch's last change, API or not: without this, each watch
        // that ever changed and left (a retired discovered one, issue 9)
        // would stay here for good.
        if self.api.changed_at.len() > self.book.len() {
            let book = &self.book;
            self.api.changed_at.retain(|key, _| book.get(key).is_some());
        }
    }

    /// Drops the API watches that ended `keep_ended` ago.
    fn drop_kept_ended(&mut self) {
        let keep = self.keep_ended();
        let wall_now = SystemTime::now();
        let due: Vec<WatchKey> = self
            .api
            .ended_at
            .iter()
            .filter(|(_, at)| **at + keep <= wall_now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            self.api.ended_at.remove(&key);
            self.api.changed_at.remove(&key);
            if self.book.remove(&key).is_some() {
                tracing::debug!(watch = %key.as_str(), "ended api watch dropped after keep_ended");
                if let Some(state) = &self.edges.state {
                    state.forget(key.as_str());
                }
                self.api.bump();
            }
        }
    }
}
