//! The loop's book of watches: every watch of the current config, polled or
//! ended, by key and by scheduler id. How watches ended is kept in one place
//! (`Tracked::ended`); the counts, the `--once` verdict and the closing
//! report are all read from it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::Subject;
use crate::poll::Status;
use crate::schedule::{self, WatchId};
use crate::transition::Tracker;
use crate::watch::{Labels, Watch, WatchKey};

/// How the run ended: the verdict, and each watch's last word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub verdict: Verdict,
    /// One per watch, in key order.
    pub watches: Vec<WatchReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchReport {
    pub execution: String,
    /// The last status seen, or `abandoned (REASON)`, or `-` when none yet.
    pub result: String,
    pub polls: u64,
}

/// How a `--once` run ended, and so the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every execution `Succeeded` (or the daemon was stopped by a signal).
    Success,
    /// At least one ended `Failed`, `TimedOut`, `Aborted`, or was abandoned.
    SomeFailed,
}

/// One watched execution, as the loop tracks it.
pub(super) struct Tracked {
    pub key: WatchKey,
    /// Its target always names a region (`Daemon::add` sees to it).
    pub watch: Arc<Watch>,
    /// The scheduler's handle while the watch is polled.
    pub id: Option<WatchId>,
    /// Last status, polls, since, learned ARN: the transition stage's memory.
    pub tracker: Tracker,
    /// How the watch ended, once it is no longer polled.
    pub ended: Option<Ending>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    Succeeded,
    Failed,
    Abandoned(schedule::Reason),
}

impl Ending {
    /// How a watch that reached `status` (terminal) ended.
    pub fn of(status: Option<&Status>) -> Ending {
        match status {
            Some(Status::Succeeded) => Ending::Succeeded,
            _ => Ending::Failed,
        }
    }
}

/// Watches no longer polled, by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub succeeded: usize,
    pub failed: usize,
    pub abandoned: usize,
}

impl Tracked {
    /// The region its requests go to.
    pub fn region(&self) -> &Arc<str> {
        self.watch
            .target
            .region
            .as_ref()
            .expect("a tracked watch names its region")
    }

    /// The watch as events name it.
    pub fn subject(&self) -> Subject<'_> {
        let target = &self.watch.target;
        Subject {
            execution_arn: target.arn.as_deref().or(self.tracker.learned_arn()),
            flow: &target.flow,
            alias: &target.alias,
            execution: &target.execution,
            region: self.region(),
            labels: &self.watch.labels,
        }
    }
}

#[derive(Default)]
pub(super) struct Book {
    tracked: HashMap<WatchKey, Tracked>,
    /// The watches the scheduler still polls.
    polling: HashMap<WatchId, WatchKey>,
    /// Execution ARNs the service revealed, to the watch that learned each.
    learned: HashMap<String, WatchKey>,
    /// Config keys found to name the execution another watch watches
    /// (issue 7.1): alias -> the watch that goes on for both.
    aliases: HashMap<WatchKey, WatchKey>,
    /// Discovered watches that ended and left memory (issue 9): still
    /// counted for the verdict and the status line.
    retired: Counts,
}

impl Book {
    /// Forgets an ended watch but keeps counting how it ended.
    pub fn retire(&mut self, key: &WatchKey) -> Option<Tracked> {
        let tracked = self.remove(key)?;
        match tracked.ended {
            Some(Ending::Succeeded) => self.retired.succeeded += 1,
            Some(Ending::Failed) => self.retired.failed += 1,
            Some(Ending::Abandoned(_)) => self.retired.abandoned += 1,
            None => {}
        }
        Some(tracked)
    }

    /// Tracks a watch; a tracker restored with a terminal status is ended
    /// at once (it is neither re-polled nor re-emitted, issue 4).
    pub fn add(&mut self, tracked: Tracked) -> &mut Tracked {
        let mut tracked = tracked;
        if tracked.tracker.is_terminal() {
            tracked.ended = Some(Ending::of(tracked.tracker.last()));
        }
        if let Some(id) = tracked.id {
            self.polling.insert(id, tracked.key.clone());
        }
        let key = tracked.key.clone();
        self.tracked.entry(key).insert_entry(tracked).into_mut()
    }

    /// Links a tracked watch to the scheduler's id for it.
    pub fn poll_as(&mut self, key: &WatchKey, id: WatchId) {
        if let Some(tracked) = self.tracked.get_mut(key) {
            tracked.id = Some(id);
            self.polling.insert(id, key.clone());
        }
    }

    /// Forgets a watch; the caller tells the scheduler. Aliases of it are
    /// forgotten too.
    pub fn remove(&mut self, key: &WatchKey) -> Option<Tracked> {
        let tracked = self.tracked.remove(key)?;
        if let Some(id) = tracked.id {
            self.polling.remove(&id);
        }
        if let Some(arn) = tracked.tracker.learned_arn() {
            self.learned.remove(arn);
        }
        self.aliases.retain(|_, keeper| keeper != key);
        Some(tracked)
    }

    /// The watch, other than `asking`, that already names execution `arn`:
    /// by its configured ARN (its key) or by one it learned.
    pub fn holder_of(&self, arn: &str, asking: &WatchKey) -> Option<WatchKey> {
        let holder = match WatchKey::from_arn(arn) {
            Ok(by_key) if self.tracked.contains_key(&by_key) => by_key,
            _ => self.learned.get(arn)?.clone(),
        };
        (holder != *asking).then_some(holder)
    }

    /// `key` learned its execution ARN from an answer.
    pub fn learned(&mut self, arn: &str, key: &WatchKey) {
        self.learned.insert(arn.to_string(), key.clone());
    }

    /// `alias` is the execution `keeper` watches: `keeper` takes its labels
    /// (its own win a conflict), `alias` is no longer tracked.
    pub fn merge(&mut self, alias: &WatchKey, keeper: &WatchKey) {
        if let Some(gone) = self.remove(alias) {
            self.alias(alias, &gone.watch.labels, keeper);
        }
    }

    /// Records `alias` (never tracked) as another name of `keeper`, whose
    /// watch takes the labels it lacks.
    pub fn alias(&mut self, alias: &WatchKey, labels: &Labels, keeper: &WatchKey) {
        if let Some(kept) = self.tracked.get_mut(keeper) {
            kept.watch = with_labels(&kept.watch, labels);
        }
        self.aliases.insert(alias.clone(), keeper.clone());
    }

    /// The watch that learned execution ARN `arn` from an answer.
    pub fn learned_by(&self, arn: &str) -> Option<WatchKey> {
        self.learned.get(arn).cloned()
    }

    /// The watch `key` was merged into, if it was.
    pub fn keeper_of(&self, key: &WatchKey) -> Option<&WatchKey> {
        self.aliases.get(key)
    }

    /// Forgets that `alias` was merged (a reload dropped it).
    pub fn forget_alias(&mut self, alias: &WatchKey) {
        self.aliases.remove(alias);
    }

    /// Every (alias, keeper) pair.
    pub fn aliases(&self) -> impl Iterator<Item = (&WatchKey, &WatchKey)> {
        self.aliases.iter()
    }

    /// Moves a watch to another of its keys (a reload dropped the key it
    /// was tracked by but kept an alias): status, counts and polling go on.
    pub fn rekey(&mut self, from: &WatchKey, to: &WatchKey, watch: Arc<Watch>) {
        let Some(mut tracked) = self.tracked.remove(from) else {
            return;
        };
        self.aliases.remove(to);
        for keeper in self.aliases.values_mut() {
            if keeper == from {
                *keeper = to.clone();
            }
        }
        if let Some(arn) = tracked.tracker.learned_arn() {
            self.learned.insert(arn.to_string(), to.clone());
        }
        if let Some(id) = tracked.id {
            self.polling.insert(id, to.clone());
        }
        tracked.key = to.clone();
        tracked.watch = watch;
        self.tracked.insert(to.clone(), tracked);
    }

    /// Watches tracked (an alias is not one).
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    /// Every tracked watch, in no order.
    pub fn iter(&self) -> impl Iterator<Item = &Tracked> {
        self.tracked.values()
    }

    pub fn get(&self, key: &WatchKey) -> Option<&Tracked> {
        self.tracked.get(key)
    }

    pub fn get_mut(&mut self, key: &WatchKey) -> Option<&mut Tracked> {
        self.tracked.get_mut(key)
    }

    /// The key of a polled watch; `None` for an id the loop no longer polls
    /// (removed by a reload while in flight).
    pub fn key_of(&self, id: WatchId) -> Option<&WatchKey> {
        self.polling.get(&id)
    }

    /// The watch the scheduler handed out.
    pub fn polled_mut(&mut self, id: WatchId) -> Option<&mut Tracked> {
        let key = self.polling.get(&id)?;
        self.tracked.get_mut(key)
    }

    /// The watch is no longer polled: it ended this way.
    pub fn end(&mut self, key: &WatchKey, ending: Ending) {
        if let Some(tracked) = self.tracked.get_mut(key) {
            if let Some(id) = tracked.id.take() {
                self.polling.remove(&id);
            }
            tracked.ended = Some(ending);
        }
    }

    pub fn counts(&self) -> Counts {
        let mut counts = self.retired;
        for tracked in self.tracked.values() {
            match tracked.ended {
                Some(Ending::Succeeded) => counts.succeeded += 1,
                Some(Ending::Failed) => counts.failed += 1,
                Some(Ending::Abandoned(_)) => counts.abandoned += 1,
                None => {}
            }
        }
        counts
    }

    /// Watches by last status (`abandoned`, `unknown` before any answer),
    /// for the `flowwatch_watches` gauge.
    pub fn by_status(&self) -> Vec<(&str, i64)> {
        let mut by_status: HashMap<&str, i64> = HashMap::new();
        for tracked in self.tracked.values() {
            let status = match (&tracked.ended, tracked.tracker.last()) {
                (Some(Ending::Abandoned(_)), _) => "abandoned",
                (_, Some(status)) => status.as_str(),
                (_, None) => "unknown",
            };
            *by_status.entry(status).or_default() += 1;
        }
        by_status.into_iter().collect()
    }

    pub fn verdict(&self) -> Verdict {
        let counts = self.counts();
        if counts.failed + counts.abandoned > 0 {
            Verdict::SomeFailed
        } else {
            Verdict::Success
        }
    }

    pub fn report(&self) -> Report {
        let mut watches: Vec<(&WatchKey, WatchReport)> = self
            .tracked
            .iter()
            .map(|(key, tracked)| {
                let result = match (&tracked.ended, tracked.tracker.last()) {
                    (Some(Ending::Abandoned(reason)), _) => {
                        format!("abandoned ({})", reason.as_str())
                    }
                    (_, Some(status)) => status.to_string(),
                    (_, None) => "-".to_string(),
                };
                let report = WatchReport {
                    execution: tracked.watch.target.execution.clone(),
                    result,
                    polls: tracked.tracker.polls(),
                };
                (key, report)
            })
            .collect();
        watches.sort_by(|a, b| a.0.cmp(b.0));
        Report {
            verdict: self.verdict(),
            watches: watches.into_iter().map(|(_, report)| report).collect(),
        }
    }
}

/// `watch` with the labels of `more` it lacks added.
pub(super) fn with_labels(watch: &Arc<Watch>, more: &Labels) -> Arc<Watch> {
    if more.keys().all(|label| watch.labels.contains_key(label)) {
        return watch.clone();
    }
    let mut labels = (*watch.labels).clone();
    for (label, value) in more {
        labels.entry(label.clone()).or_insert_with(|| value.clone());
    }
    Arc::new(Watch {
        labels: Arc::new(labels),
        ..(**watch).clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracked_watch_stays_144_bytes() {
        // One per watch (100,000 in docs/benchmarks.md's memory bench), in a
        // map whose table holds 1.3 entries per watch at that size.
        assert_eq!(std::mem::size_of::<Tracked>(), 144);
    }
}
