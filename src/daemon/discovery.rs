//! Flow discovery (issue 9), the loop's side: one `discover::Walk` per
//! `[[watch_flow]]` table. Each `ListFlowExecutions` page waits for a token
//! of its region's budget and an in-flight slot (polls go first), and the
//! walk spaces its pages so all walks of a region use at most
//! `discovery_share` of its rate. What a page lists becomes watches
//! (`watch.added`, `source = "discovery"`) or observations; a discovered
//! watch that ended (terminal transition and details out) leaves memory and
//! state, and its walk keeps a seen record so it is not found again; the
//! records are saved in `[state]` (the walk's set itself, shared with the
//! writer), so a restart does not find them again either.
//!
//! In: the tables (`set_flows`), finished pages (`list_joined`), `now`.
//! Out: watches added and retired, events, scheduler tokens, the walk
//! duration metric.
//!
//! Why one file of this size: a discovered watch's life in the loop (found,
//! added, observed from summaries, restored, retired into a seen record)
//! is one story told against one `Discovery`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::task::{self, JoinError, JoinSet};
use tokio::time::Instant;

use super::Daemon;
use crate::config::FlowWatch;
use crate::discover::{self, Decision, Known, Walk};
use crate::poll::{ExecutionsPage, ExecutionsRequest, Fetch, Lister, Observation, ReadFailure};
use crate::schedule;
use crate::state::SavedDiscovery;
use crate::watch::ids::ExecutionRef;
use crate::watch::{Watch, WatchKey};

/// The `source` of every discovered watch.
pub(super) const SOURCE: &str = "discovery";

/// One table and its walk.
pub(super) struct Table {
    pub flow: FlowWatch,
    /// `flow.key()`.
    pub key: String,
    pub region: Arc<str>,
    pub walk: Walk,
}

/// A watch discovery added: which table found it, and when the execution
/// was created (its seen record once it is retired).
#[derive(Debug, Clone)]
pub(super) struct Discovered {
    pub table: String,
    pub created_at: SystemTime,
}

/// Every table's walk, the list requests in flight, the watches found.
pub(super) struct Discovery {
    pub tables: Vec<Table>,
    pub tasks: JoinSet<ListDone>,
    running: HashMap<task::Id, (String, Arc<str>, Instant)>,
    pub found: HashMap<WatchKey, Discovered>,
    /// When the daemon started: the default `since`.
    pub started: SystemTime,
    source: Arc<Path>,
}

pub(super) struct ListDone {
    table: String,
    region: Arc<str>,
    sent_at: Instant,
    answer: Result<ExecutionsPage, ReadFailure>,
}

impl Discovery {
    pub fn new(started: SystemTime) -> Discovery {
        Discovery {
            tables: Vec::new(),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            found: HashMap::new(),
            started,
            source: Arc::from(Path::new(SOURCE)),
        }
    }

    /// Every table has finished at least one walk and no page is out
    /// (`--once` waits for that before it may stop).
    pub fn is_idle(&self) -> bool {
        self.tasks.is_empty() && self.tables.iter().all(|t| t.walk.last_walk().is_some())
    }

    pub fn abort(&mut self) {
        self.tasks.abort_all();
    }

    /// The status line's part: the longest last walk, e.g. `walk 3.2s`.
    pub fn longest_walk(&self) -> Option<std::time::Duration> {
        self.tables
            .iter()
            .filter_map(|t| t.walk.last_walk().map(|w| w.duration))
            .max()
    }
}

impl<F: Fetch + Lister> Daemon<F> {
    /// Makes the tables those of `flows`: new tables start walking at once,
    /// kept ones go on (with the new labels for watches found from now on),
    /// and a dropped table's watches are removed (`watch.removed`).
    pub(super) fn set_flows(&mut self, flows: &[FlowWatch], now: Instant) {
        let keep: Vec<String> = flows.iter().map(FlowWatch::key).collect();
        let dropped: Vec<String> = self
            .discovery
            .tables
            .iter()
            .filter(|t| !keep.contains(&t.key))
            .map(|t| t.key.clone())
            .collect();
        for table in &dropped {
            if let Some(state) = &self.edges.state {
                state.forget_seen(table);
            }
            let gone: Vec<WatchKey> = self
                .discovery
                .found
                .iter()
                .filter(|(_, d)| d.table == *table)
                .map(|(key, _)| key.clone())
                .collect();
            for key in gone {
                self.discovery.found.remove(&key);
                if self.config.watches.get(&key).is_none() {
                    self.remove(&key);
                }
            }
        }
        self.discovery.tables.retain(|t| keep.contains(&t.key));
        for flow in flows {
            let key = flow.key();
            if let Some(table) = self.discovery.tables.iter_mut().find(|t| t.key == key) {
                table.flow = flow.clone();
                continue;
            }
            let Some(region) = flow
                .region
                .clone()
                .or_else(|| self.edges.default_region.clone())
            else {
                tracing::error!(flow = %key, "no region for this [[watch_flow]]; it is not walked");
                continue;
            };
            let since = flow.since.resolve(self.discovery.started);
            // Saved before a restart: what ended then is not found again.
            let seen = self.edges.restored.seen.remove(&key).unwrap_or_default();
            let walk = Walk::new(since, self.config.poll.list_interval, seen, now);
            if let Some(state) = &self.edges.state {
                state.share_seen(&key, walk.shared_seen());
            }
            self.discovery.tables.push(Table {
                flow: flow.clone(),
                key,
                region: Arc::from(region),
                walk,
            });
        }
    }

    /// This walk's request rate now: its slice of the region's share.
    fn walk_budget(&self, region: &str) -> f64 {
        let walks = self
            .discovery
            .tables
            .iter()
            .filter(|t| &*t.region == region)
            .count();
        discover::walk_budget(
            self.scheduler.rate(region),
            self.config.poll.discovery_share,
            walks,
        )
    }

    /// When a list page could start next; `None` when none is waiting or
    /// every in-flight slot is taken.
    pub(super) fn discovery_wakeup(&self) -> Option<Instant> {
        self.discovery
            .tables
            .iter()
            .filter_map(|t| self.scheduler.token_wakeup(&t.region, t.walk.due_at()?))
            .min()
    }

    /// Sends every list page that is due and affordable now, before the
    /// polls: a walk spaces its pages to its slice of `discovery_share`, so
    /// going first takes the polls no more than that share.
    pub(super) fn start_walks(&mut self, now: Instant) {
        let wall = SystemTime::now();
        let limit = self.poll_limit();
        for index in 0..self.discovery.tables.len() {
            let table = &mut self.discovery.tables[index];
            if table.walk.due_at().is_none_or(|at| at > now) {
                continue;
            }
            match self.scheduler.take_token(&table.region, now) {
                Ok(()) => {}
                Err(None) => break,
                Err(Some(_)) => continue,
            }
            let page = table.walk.take_page(now, wall);
            if table.walk.take_pruned()
                && let Some(state) = &self.edges.state
            {
                state.seen_changed();
            }
            let Some(page) = page else {
                self.scheduler
                    .token_done(&table.region, &schedule::Outcome::Unchanged, now, now);
                continue;
            };
            let request = ExecutionsRequest {
                region: table.region.clone(),
                flow: table.flow.flow.as_str().into(),
                alias: table.flow.alias.as_deref().map(Arc::from),
                next_token: page.next_token,
                page_size: Some(discover::PAGE_SIZE),
            };
            let lister = self.fetch.clone();
            let (key, region) = (table.key.clone(), table.region.clone());
            let (task_key, task_region) = (key.clone(), region.clone());
            let task = self.discovery.tasks.spawn(async move {
                let answer =
                    match tokio::time::timeout(limit, lister.list_executions(&request)).await {
                        Ok(answer) => answer,
                        Err(_) => Err(ReadFailure::timed_out(limit)),
                    };
                ListDone {
                    table: task_key,
                    region: task_region,
                    sent_at: now,
                    answer,
                }
            });
            self.discovery.running.insert(task.id(), (key, region, now));
        }
    }

    /// A list page came back: its token is accounted for, each summary
    /// decided, new executions added as watches, news observed.
    pub(super) fn list_joined(
        &mut self,
        joined: Result<(task::Id, ListDone), JoinError>,
        now: Instant,
    ) {
        let done = match joined {
            Ok((task, done)) => {
                self.discovery.running.remove(&task);
                done
            }
            Err(error) => {
                let Some((table, region, sent_at)) = self.discovery.running.remove(&error.id())
                else {
                    return;
                };
                tracing::error!("a discovery task panicked; this is a bug");
                ListDone {
                    table,
                    region,
                    sent_at,
                    answer: Err(ReadFailure::panicked()),
                }
            }
        };
        self.token_answered(&done.region, done.answer.as_ref().err(), done.sent_at, now);
        let budget = self.walk_budget(&done.region);
        let Some(index) = self
            .discovery
            .tables
            .iter()
            .position(|t| t.key == done.table)
        else {
            return; // a reload dropped the table meanwhile
        };
        let (report, found) = match done.answer {
            Err(failure) => {
                tracing::debug!(flow = %done.table, %failure, "a discovery page failed");
                let table = &mut self.discovery.tables[index];
                (table.walk.on_failure(&failure, now, budget), Vec::new())
            }
            Ok(page) => {
                let book = &self.book;
                let table = &mut self.discovery.tables[index];
                let result = table.walk.on_page(
                    page,
                    |summary| match summary
                        .execution
                        .arn
                        .as_deref()
                        .and_then(|arn| known_by_arn(book, arn))
                    {
                        Some(key) => {
                            Known::Watched(book.get(&key).and_then(|t| t.tracker.last().cloned()))
                        }
                        None => Known::Unwatched,
                    },
                    now,
                    budget,
                );
                (result.finished, result.found)
            }
        };
        if let Some(report) = report {
            let seconds = report.duration.as_secs_f64();
            self.edges.metrics.set_walk(&done.table, seconds);
            tracing::debug!(
                flow = %done.table,
                pages = report.pages,
                listed = report.listed,
                added = report.added,
                observed = report.observed,
                walk_ms = report.duration.as_millis() as u64,
                end = ?report.end,
                "discovery walk finished"
            );
        }
        for found in found {
            let summary = found.summary;
            match found.decision {
                Decision::Add { .. } => {
                    let table = &self.discovery.tables[index];
                    let watch = Arc::new(Watch {
                        target: summary.execution.clone(),
                        labels: table.flow.labels.clone(),
                        source: self.discovery.source.clone(),
                    });
                    let key = watch.key();
                    self.discovery.found.insert(
                        key.clone(),
                        Discovered {
                            table: done.table.clone(),
                            created_at: summary.created_at,
                        },
                    );
                    self.add(key.clone(), watch, now);
                    // Saved as discovered: a restart restores it while its
                    // table is configured.
                    if let Some(tracked) = self.book.get_mut(&key) {
                        tracked.tracker.set_discovered(SavedDiscovery {
                            flow_table: done.table.clone(),
                            created_unix_ms: unix_ms(summary.created_at),
                        });
                        if let Some(state) = &self.edges.state {
                            state.mark(key.as_str(), tracked.tracker.record());
                        }
                    }
                }
                Decision::Observe => {
                    let Some(key) = summary
                        .execution
                        .arn
                        .as_deref()
                        .and_then(|arn| known_by_arn(&self.book, arn))
                    else {
                        continue;
                    };
                    self.observe_summary(&key, &summary, now);
                }
                Decision::Ignore(_) => {}
            }
        }
    }

    /// Restores the discovered watches the state file holds whose table is
    /// still configured (call after `set_flows`, before the leftovers of the
    /// state are forgotten); one that already ended leaves again at once.
    pub(super) fn restore_discovered(&mut self, now: Instant) {
        let saved: Vec<(String, SavedDiscovery)> = self
            .edges
            .restored
            .watches
            .iter()
            .filter_map(|(name, saved)| Some((name.clone(), saved.discovered.clone()?)))
            .collect();
        for (name, discovered) in saved {
            let Some(table) = self
                .discovery
                .tables
                .iter()
                .find(|t| t.key == discovered.flow_table)
            else {
                continue;
            };
            let Ok(target) = ExecutionRef::parse_arn(&name) else {
                continue;
            };
            let watch = Arc::new(Watch {
                target,
                labels: table.flow.labels.clone(),
                source: self.discovery.source.clone(),
            });
            let key = watch.key();
            if key.as_str() != name || self.book.get(&key).is_some() {
                continue;
            }
            self.discovery.found.insert(
                key.clone(),
                Discovered {
                    table: discovered.flow_table.clone(),
                    created_at: SystemTime::UNIX_EPOCH
                        + std::time::Duration::from_millis(discovered.created_unix_ms),
                },
            );
            self.add(key.clone(), watch, now);
            self.retire_if_done(&key);
        }
    }

    /// A listed summary shows a watched execution's new status: a
    /// non-terminal one is its transition at no cost; a terminal one is
    /// confirmed with one GetFlowExecution at once (for `errors`).
    fn observe_summary(
        &mut self,
        key: &WatchKey,
        summary: &crate::poll::ExecutionSummary,
        now: Instant,
    ) {
        let Some(id) = self.book.get(key).and_then(|t| t.id) else {
            return; // ended, or a request for it is being set up
        };
        if summary.status.is_terminal() {
            self.scheduler.due_now(id, now);
            return;
        }
        let observation = Observation {
            status: summary.status.clone(),
            execution_arn: summary.execution.arn.as_deref().map(str::to_string),
            flow_version: summary.flow_version.clone(),
            started_at: Some(summary.created_at),
            ended_at: summary.ended_at,
            errors: Vec::new(),
        };
        self.observe(key, &observation);
    }

    /// Drops a discovered watch that ended (terminal transition and details
    /// out, or abandoned) from memory and state; its walk keeps a seen
    /// record. Config watches and watches still fetching details stay.
    pub(super) fn retire_if_done(&mut self, key: &WatchKey) {
        let Some(found) = self.discovery.found.get(key) else {
            return;
        };
        let ended = self.book.get(key).is_some_and(|t| t.ended.is_some());
        if !ended || self.details.is_fetching(key) || self.config.watches.get(key).is_some() {
            return;
        }
        let found = found.clone();
        self.discovery.found.remove(key);
        let Some(tracked) = self.book.retire(key) else {
            return;
        };
        let arn = tracked
            .watch
            .target
            .arn
            .as_deref()
            .or(tracked.tracker.learned_arn());
        if let (Some(arn), Some(table)) = (
            arn,
            self.discovery
                .tables
                .iter_mut()
                .find(|t| t.key == found.table),
        ) {
            table.walk.retire(arn, found.created_at);
        }
        // The record before the watch goes: a state write in between keeps
        // both (harmless), never neither.
        if let Some(state) = &self.edges.state {
            state.seen_changed();
            state.forget(key.as_str());
        }
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The watch that names execution `arn`: by its key, or one that learned it.
fn known_by_arn(book: &super::book::Book, arn: &str) -> Option<WatchKey> {
    match WatchKey::from_arn(arn) {
        Ok(key) if book.get(&key).is_some() => Some(key),
        _ => book.learned_by(arn),
    }
}
