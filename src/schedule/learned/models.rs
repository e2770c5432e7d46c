//! Every (region, flow, alias) model, and the cold-start fallback between
//! them (issue 11). In: endings and censored ages by key. Out: the
//! distribution a key's watches are polled by, and the level it came from.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DurationModel, Estimate, Exponential, MIN_OBSERVATIONS};

/// Which model: one (region, flow, alias).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModelKey {
    pub region: String,
    pub flow: String,
    pub alias: String,
}

/// Every model, with the cold-start fallbacks. Serializes as a list of
/// `{region, flow, alias, model}` entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<SavedEntry>", into = "Vec<SavedEntry>")]
pub struct Models {
    models: BTreeMap<ModelKey, DurationModel>,
}

#[derive(Serialize, Deserialize)]
struct SavedEntry {
    #[serde(flatten)]
    key: ModelKey,
    model: DurationModel,
}

impl From<Vec<SavedEntry>> for Models {
    fn from(entries: Vec<SavedEntry>) -> Models {
        Models {
            models: entries.into_iter().map(|e| (e.key, e.model)).collect(),
        }
    }
}

impl From<Models> for Vec<SavedEntry> {
    fn from(m: Models) -> Vec<SavedEntry> {
        m.models
            .into_iter()
            .map(|(key, model)| SavedEntry { key, model })
            .collect()
    }
}

/// Which level of the cold-start fallback an estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Alias,
    Flow,
    Region,
}

impl Models {
    /// Records a terminal answer of `key`'s execution that took `duration`.
    pub fn observe_ended(&mut self, key: &ModelKey, duration: Duration) {
        self.models
            .entry(key.clone())
            .or_default()
            .observe_ended(duration);
    }

    /// Records `key`'s watch that stopped at `age` without an end.
    pub fn observe_censored(&mut self, key: &ModelKey, age: Duration) {
        self.models
            .entry(key.clone())
            .or_default()
            .observe_censored(age);
    }

    /// `key`'s own model, if it has seen anything.
    pub fn get(&self, key: &ModelKey) -> Option<&DurationModel> {
        self.models.get(key)
    }

    /// The distribution for `key`, and the level it came from: its own model
    /// once it has `MIN_OBSERVATIONS` endings, else the flow's aliases in the
    /// region pooled, else every flow in the region pooled (any ending at
    /// all), else `None`: keep the exponential schedule. `running` are the
    /// ages of `key`'s watches still running (censored).
    pub fn estimate(&self, key: &ModelKey, running: &[Duration]) -> Option<(Estimate, Level)> {
        if let Some(own) = self.models.get(key)
            && own.weight() >= MIN_OBSERVATIONS
        {
            return Some((Estimate::new(&[own], running), Level::Alias));
        }
        let in_region = || self.models.iter().filter(|(k, _)| k.region == key.region);
        let flow: Vec<&DurationModel> = in_region()
            .filter(|(k, _)| k.flow == key.flow)
            .map(|(_, m)| m)
            .collect();
        if flow.iter().map(|m| m.weight()).sum::<f64>() >= MIN_OBSERVATIONS {
            return Some((Estimate::new(&flow, running), Level::Flow));
        }
        let region: Vec<&DurationModel> = in_region().map(|(_, m)| m).collect();
        if region.iter().map(|m| m.weight()).sum::<f64>() > 0.0 {
            return Some((Estimate::new(&region, running), Level::Region));
        }
        None
    }

    /// The delay after a poll of `key`'s watch at `age`; `None` with nothing
    /// learned (use the exponential schedule unchanged).
    pub fn next_delay(
        &self,
        key: &ModelKey,
        age: Duration,
        running: &[Duration],
        policy: &Exponential,
        budget: Option<f64>,
    ) -> Option<Duration> {
        let (estimate, _) = self.estimate(key, running)?;
        Some(estimate.schedule(policy, budget).next_delay(age))
    }
}
