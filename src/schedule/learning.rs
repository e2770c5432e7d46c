//! Learned polling (issue 11) in the scheduler: which model each watch
//! follows and when its execution started, the models, and the schedule
//! each model places. The model itself is `learned.rs`; this file wires it.
//!
//! In: a watch's flow (`Scheduler::set_flow`), its execution's start
//! (`Scheduler::started`), terminal durations (`Scheduler::observe`), saved
//! models (`Scheduler::restore_models`). Out: the learned delay after a
//! no-change poll (`Learning::next_delay`), `None` when the exponential one
//! stands.
//!
//! Per watch this is 20 bytes inside the scheduler's `Watch` (its `model`,
//! `started_at` and `running_at`, read as a `PerWatch`), not a map beside
//! it: every
//! watch told its flow has them whatever the policy, so a reload to
//! `learned` finds them.

use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

use super::learned::{self, Exponential, ModelKey, Models};
use super::ticks::{Epoch, MaybeTick, Tick};
use super::{Scheduler, WatchId};
use crate::config::{PollSettings, SchedulePolicy};

/// What learned polling keeps for all watches: the policy, the models,
/// and one schedule per model in use.
#[derive(Debug, Default)]
pub(super) struct Learning {
    pub policy: SchedulePolicy,
    pub exponential: Option<Exponential>,
    pub models: Models,
    keys: Vec<ModelKey>,
    key_index: HashMap<ModelKey, u32>,
    /// A schedule per model key and when it was built; dropped when a model
    /// changes, rebuilt after `interval_initial` so the censored ages of the
    /// running watches stay fresh without a scan per poll.
    pub schedules: HashMap<u32, (Instant, Option<learned::Schedule>)>,
}

/// One watch's part, as its `Watch` holds it (separate fields, so that
/// they share its padding): its model, once an answer said, when its
/// execution started, and when an answer last said it was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PerWatch {
    /// An index into `Learning::keys`; `NO_MODEL` until its flow is told.
    pub model: u32,
    pub started_at: MaybeTick,
    pub running_at: MaybeTick,
}

/// The `model` of a watch whose flow is not told yet.
pub(super) const NO_MODEL: u32 = u32::MAX;

impl PerWatch {
    /// Its model and its execution's start, once both are known.
    fn known(self) -> Option<(u32, Tick)> {
        (self.model != NO_MODEL).then_some((self.model, self.started_at.get()?))
    }
}

impl Learning {
    pub fn new(policy: &PollSettings) -> Learning {
        Learning {
            policy: policy.schedule,
            exponential: Some(Exponential::from_settings(policy)),
            ..Learning::default()
        }
    }

    /// Takes the `schedule` of a new `[poll]` policy (a reload); models are
    /// kept, schedules rebuilt.
    pub fn set_policy(&mut self, policy: &PollSettings) {
        self.policy = policy.schedule;
        self.exponential = Some(Exponential::from_settings(policy));
        self.schedules.clear();
    }

    fn key(&mut self, key: ModelKey) -> u32 {
        if let Some(&index) = self.key_index.get(&key) {
            return index;
        }
        let index = self.keys.len() as u32;
        self.keys.push(key.clone());
        self.key_index.insert(key, index);
        index
    }

    /// The learned delay after a no-change poll of a watch (`this`) at
    /// `now`; `None` under the exponential policy, for a watch whose flow
    /// or start is not known, or with nothing learned. `all` is every
    /// watch's part: the running ones of the same model count as censored.
    /// `region` gives the region's rate and watch count, asked only when
    /// the schedule is rebuilt (issue 11: spend no more than the region's
    /// share).
    pub fn next_delay(
        &mut self,
        this: PerWatch,
        all: impl Iterator<Item = PerWatch>,
        epoch: Epoch,
        now: Instant,
        region: impl FnOnce() -> (f64, usize),
    ) -> Option<Duration> {
        if self.policy != SchedulePolicy::Learned {
            return None;
        }
        let (key, started_at) = this.known()?;
        let policy = self.exponential?;
        let fresh = |(built_at, _): &(Instant, _)| {
            now.saturating_duration_since(*built_at) < policy.initial
        };
        let now_tick = epoch.tick(now);
        if !self.schedules.get(&key).is_some_and(fresh) {
            let running: Vec<Duration> = all
                .filter_map(PerWatch::known)
                .filter(|(k, _)| *k == key)
                .map(|(_, started)| now_tick.since(started))
                .collect();
            let schedule = self
                .models
                .estimate(&self.keys[key as usize], &running)
                .map(|(estimate, _)| {
                    let (rate, watches) = region();
                    let share = estimate.share(rate, watches);
                    estimate.schedule(&policy, Some(share))
                });
            self.schedules.insert(key, (now, schedule));
        }
        let (_, schedule) = self.schedules.get(&key).expect("built above");
        Some(schedule.as_ref()?.next_delay(now_tick.since(started_at)))
    }
}

impl Scheduler {
    /// Tells learned polling which (flow, alias) `id` watches; its model is
    /// (its region, `flow`, `alias`). Unknown ids are ignored.
    pub fn set_flow(&mut self, id: WatchId, flow: &str, alias: &str) {
        let Some(watch) = self.watches.get(&id) else {
            return;
        };
        let region = self
            .region_index
            .iter()
            .find(|(_, i)| **i == watch.region)
            .map(|(name, _)| name.clone())
            .expect("every watch's region is indexed");
        let model = self.learning.key(ModelKey {
            region,
            flow: flow.to_string(),
            alias: alias.to_string(),
        });
        let watch = self.watches.get_mut(&id).expect("looked up above");
        watch.model = model;
        watch.started_at = MaybeTick::NONE;
        watch.running_at = MaybeTick::NONE;
    }

    /// Tells learned polling when `id`'s execution started (its
    /// `startedAt`, on the scheduler's clock); its age is counted from here.
    /// Ignored for a watch whose flow was not told.
    pub fn started(&mut self, id: WatchId, started_at: Instant) {
        let tick = self.epoch.tick(started_at);
        if let Some(watch) = self.watches.get_mut(&id)
            && watch.model != NO_MODEL
        {
            watch.started_at = tick.into();
        }
    }

    /// Learns from a terminal answer: an execution of (`region`, `flow`,
    /// `alias`) took `duration` (`endedAt − startedAt`).
    pub fn observe(&mut self, region: &str, flow: &str, alias: &str, duration: Duration) {
        let key = ModelKey {
            region: region.to_string(),
            flow: flow.to_string(),
            alias: alias.to_string(),
        };
        self.learning.models.observe_ended(&key, duration);
        // Borrowing (flow, region) levels may change too: rebuild them all.
        self.learning.schedules.clear();
    }

    /// Every duration model learned so far (for `[state]`).
    pub fn models(&self) -> &Models {
        &self.learning.models
    }

    /// Starts from models saved earlier (replacing any learned so far).
    pub fn restore_models(&mut self, models: Models) {
        self.learning.models = models;
        self.learning.schedules.clear();
    }

    /// The learned delay for `id` after a no-change poll at `now`, if any;
    /// notes that an answer said it was running at `now`.
    pub(super) fn learned_delay(&mut self, id: WatchId, now: Instant) -> Option<Duration> {
        let tick = self.epoch.tick(now);
        let watch = self.watches.get_mut(&id)?;
        watch.running_at = tick.into();
        let (this, region) = (watch.learning(), watch.region);
        let rate = self.regions[region as usize].budget.rate();
        let watches = &self.watches;
        let all = watches.values().map(super::Watch::learning);
        self.learning.next_delay(this, all, self.epoch, now, || {
            let count = watches
                .values()
                .filter(|w| w.region == region && !w.removed);
            (rate, count.count())
        })
    }

    /// Drops `id`. A watch that stopped without an end (abandoned,
    /// removed; not `ended`) ran at least until its last running answer:
    /// its model learns that as a censored age, not as an ending.
    pub(super) fn forget(&mut self, id: WatchId, ended: bool) {
        let Some(watch) = self.watches.remove(&id) else {
            return;
        };
        let part = watch.learning();
        if let (false, Some((key, started)), Some(seen)) =
            (ended, part.known(), part.running_at.get())
        {
            let age = seen.since(started);
            let key = &self.learning.keys[key as usize];
            self.learning.models.observe_censored(key, age);
            self.learning.schedules.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_told_before_the_flow_is_ignored() {
        let settings = PollSettings::default();
        let mut s = Scheduler::new(&settings);
        let t0 = Instant::now();
        let id = s.insert("r", t0, Duration::ZERO);
        s.started(id, t0);
        assert_eq!(s.watches[&id].learning().known(), None);
        s.set_flow(id, "F", "A");
        s.started(id, t0);
        assert_eq!(
            s.watches[&id].learning().known(),
            Some((0, s.epoch.tick(t0)))
        );
        s.set_flow(id, "F", "B");
        assert_eq!(
            s.watches[&id].learning().known(),
            None,
            "a new flow forgets the start"
        );
    }
}
