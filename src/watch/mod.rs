//! The watch set: what to watch, with identity and dedup. A watch is
//! identified by its execution ARN when one is known, else by (region, flow,
//! alias, execution); the same execution listed twice is one watch.
//! (Skeleton: the config helper fills this in.)

pub mod ids;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use ids::{ExecutionRef, IdError};

/// A watch's identity: the execution ARN, or `region/flow/alias/execution`
/// (region `-` when the default chain will decide it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchKey(pub Arc<str>);

impl WatchKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One execution to watch, as the config gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub target: ExecutionRef,
    /// Copied onto every event of this watch.
    pub labels: BTreeMap<String, String>,
    /// The file that listed it (the `source` of `watch.added`).
    pub source: PathBuf,
}

impl Watch {
    pub fn key(&self) -> WatchKey {
        todo!("config helper")
    }
}

/// What a reload changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchDiff {
    pub added: Vec<WatchKey>,
    pub removed: Vec<WatchKey>,
}

/// Every watch, by key, in key order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchSet {
    by_key: BTreeMap<WatchKey, Arc<Watch>>,
}

impl WatchSet {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
    pub fn get(&self, key: &WatchKey) -> Option<&Arc<Watch>> {
        self.by_key.get(key)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&WatchKey, &Arc<Watch>)> {
        self.by_key.iter()
    }
    /// Keys in `newer` but not here, and here but not in `newer`.
    pub fn diff(&self, newer: &WatchSet) -> WatchDiff {
        let _ = newer;
        todo!("config helper")
    }
}
