//! The watch set: what to watch, with identity and dedup. A watch is
//! identified by its execution ARN when one is known, else by (region, flow,
//! alias, execution); the same execution listed twice is one watch.
//! In: `Watch` values from the config, each with where it was listed. Out: a
//! `WatchSet` in key order, and the `WatchDiff` between two sets on reload.

pub mod ids;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
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

impl fmt::Display for WatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A watch's labels: name -> value.
pub type Labels = BTreeMap<String, String>;

/// One execution to watch, as the config gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub target: ExecutionRef,
    /// Copied onto every event of this watch; watches with the same labels
    /// share one copy.
    pub labels: Arc<Labels>,
    /// The file that listed it (the `source` of `watch.added`); shared by
    /// every watch of that file.
    pub source: Arc<Path>,
}

impl Watch {
    /// The execution ARN when known (sharing the target's copy), else
    /// `region/flow/alias/execution` with region `-` when none is known yet.
    pub fn key(&self) -> WatchKey {
        let t = &self.target;
        match &t.arn {
            Some(arn) => WatchKey(arn.clone()),
            None => WatchKey(
                format!(
                    "{}/{}/{}/{}",
                    t.region.as_deref().unwrap_or("-"),
                    t.flow,
                    t.alias,
                    t.execution
                )
                .into(),
            ),
        }
    }
}

/// Where a watch was listed: its file, and the line of its `[[watch]]` table
/// when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<Path>,
    pub line: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// The same execution listed twice with different values for one label:
/// merging would have to drop one, so the config is refused instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "duplicate watch {key} conflicts with {first}: label {label} is {first_value:?} there and {value:?} here"
)]
pub struct DuplicateConflict {
    pub key: WatchKey,
    /// Where the watch was first listed.
    pub first: Origin,
    pub label: String,
    pub first_value: String,
    pub value: String,
}

/// What a reload changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchDiff {
    pub added: Vec<WatchKey>,
    pub removed: Vec<WatchKey>,
}

/// Every watch, by key, in key order. Two sets are equal when they hold the
/// same watches, wherever those were listed.
#[derive(Debug, Default, Clone)]
pub struct WatchSet {
    by_key: BTreeMap<WatchKey, Arc<Watch>>,
    /// Where each watch was first listed, for duplicate-conflict messages.
    origins: BTreeMap<WatchKey, Origin>,
    /// How many listings were merged into an earlier one.
    merged: usize,
}

impl PartialEq for WatchSet {
    fn eq(&self, other: &Self) -> bool {
        self.by_key == other.by_key
    }
}

impl Eq for WatchSet {}

impl WatchSet {
    /// Builds a set from watches listed nowhere in particular (tests, the
    /// demo); duplicates merge as in `insert`.
    pub fn from_watches(
        watches: impl IntoIterator<Item = Watch>,
    ) -> Result<WatchSet, Box<DuplicateConflict>> {
        let mut set = WatchSet::default();
        for watch in watches {
            let at = Origin {
                file: watch.source.clone(),
                line: None,
            };
            set.insert(watch, at)?;
        }
        Ok(set)
    }

    /// Adds a watch listed at `at`. A watch whose key is already here merges
    /// into the first one: labels are united and the first `source` stays.
    /// A label with a different value on each is a `DuplicateConflict`, and
    /// the set is left as it was.
    pub fn insert(&mut self, watch: Watch, at: Origin) -> Result<(), Box<DuplicateConflict>> {
        let key = watch.key();
        let Some(existing) = self.by_key.get_mut(&key) else {
            self.origins.insert(key.clone(), at);
            self.by_key.insert(key, Arc::new(watch));
            return Ok(());
        };
        for (label, value) in watch.labels.iter() {
            if let Some(first_value) = existing.labels.get(label)
                && first_value != value
            {
                let first = self.origins.get(&key).cloned().unwrap_or_else(|| Origin {
                    file: existing.source.clone(),
                    line: None,
                });
                return Err(Box::new(DuplicateConflict {
                    key,
                    first,
                    label: label.clone(),
                    first_value: first_value.clone(),
                    value: value.clone(),
                }));
            }
        }
        let merged = Arc::make_mut(&mut Arc::make_mut(existing).labels);
        merged.extend(watch.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.merged += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
    pub fn get(&self, key: &WatchKey) -> Option<&Arc<Watch>> {
        self.by_key.get(key)
    }
    pub fn contains(&self, key: &WatchKey) -> bool {
        self.by_key.contains_key(key)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&WatchKey, &Arc<Watch>)> {
        self.by_key.iter()
    }
    /// Where the watch with this key was first listed.
    pub fn origin(&self, key: &WatchKey) -> Option<&Origin> {
        self.origins.get(key)
    }
    /// How many listings were merged into an earlier listing of the same watch.
    pub fn merged(&self) -> usize {
        self.merged
    }

    /// Keys in `newer` but not here, and here but not in `newer`, each sorted.
    /// A watch whose labels changed is in neither: read its labels from `newer`.
    pub fn diff(&self, newer: &WatchSet) -> WatchDiff {
        WatchDiff {
            added: newer
                .by_key
                .keys()
                .filter(|k| !self.by_key.contains_key(*k))
                .cloned()
                .collect(),
            removed: self
                .by_key
                .keys()
                .filter(|k| !newer.by_key.contains_key(*k))
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(execution: &str, labels: &[(&str, &str)], source: &str) -> Watch {
        Watch {
            target: ExecutionRef::parse_parts("FLOW123456", "ALIAS12345", execution, None).unwrap(),
            labels: Arc::new(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            source: Path::new(source).into(),
        }
    }

    fn at(file: &str, line: usize) -> Origin {
        Origin {
            file: Path::new(file).into(),
            line: Some(line),
        }
    }

    fn keys(keys: &[&str]) -> Vec<WatchKey> {
        keys.iter().map(|k| WatchKey((*k).into())).collect()
    }

    #[test]
    fn a_watch_with_an_arn_is_keyed_by_it() {
        let arn = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-1";
        let w = Watch {
            target: ExecutionRef::parse_arn(arn).unwrap(),
            labels: Arc::default(),
            source: Path::new("a.toml").into(),
        };
        assert_eq!(w.key().as_str(), arn);
    }

    #[test]
    fn a_watch_without_region_or_arn_is_keyed_with_a_dash() {
        assert_eq!(
            watch("run-1", &[], "a.toml").key().as_str(),
            "-/FLOW123456/ALIAS12345/run-1"
        );
        let mut w = watch("run-1", &[], "a.toml");
        w.target.region = Some("eu-west-1".into());
        assert_eq!(w.key().as_str(), "eu-west-1/FLOW123456/ALIAS12345/run-1");
    }

    #[test]
    fn the_same_execution_twice_merges_labels_and_keeps_the_first_source() {
        let mut set = WatchSet::default();
        set.insert(
            watch("run-1", &[("team", "search")], "a.toml"),
            at("a.toml", 3),
        )
        .unwrap();
        set.insert(
            watch("run-1", &[("tier", "gold")], "b.toml"),
            at("b.toml", 1),
        )
        .unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.merged(), 1);
        let (key, merged) = set.iter().next().unwrap();
        assert_eq!(&*merged.source, Path::new("a.toml"));
        assert_eq!(set.origin(key), Some(&at("a.toml", 3)));
        let labels: Vec<_> = merged.labels.iter().collect();
        assert_eq!(
            labels,
            [
                (&"team".to_string(), &"search".to_string()),
                (&"tier".to_string(), &"gold".to_string())
            ]
        );
    }

    #[test]
    fn the_same_execution_with_a_different_label_value_is_a_conflict() {
        let mut set = WatchSet::default();
        set.insert(
            watch("run-1", &[("team", "search")], "a.toml"),
            at("a.toml", 3),
        )
        .unwrap();
        let err = set
            .insert(
                watch("run-1", &[("team", "ads")], "b.toml"),
                at("b.toml", 7),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "duplicate watch -/FLOW123456/ALIAS12345/run-1 conflicts with a.toml:3: label team is \"search\" there and \"ads\" here"
        );
        assert_eq!(set.get(&err.key).unwrap().labels["team"], "search");
        assert_eq!(set.merged(), 0);
    }

    #[test]
    fn diff_lists_added_and_removed_keys_in_order() {
        let old = WatchSet::from_watches(["run-3", "run-1", "run-2"].map(|e| watch(e, &[], "a")))
            .unwrap();
        let new = WatchSet::from_watches(["run-4", "run-2", "run-0"].map(|e| watch(e, &[], "a")))
            .unwrap();
        let diff = old.diff(&new);
        assert_eq!(
            diff.added,
            keys(&[
                "-/FLOW123456/ALIAS12345/run-0",
                "-/FLOW123456/ALIAS12345/run-4"
            ])
        );
        assert_eq!(
            diff.removed,
            keys(&[
                "-/FLOW123456/ALIAS12345/run-1",
                "-/FLOW123456/ALIAS12345/run-3"
            ])
        );
        assert_eq!(new.diff(&new), WatchDiff::default());
    }

    #[test]
    fn sets_with_the_same_watches_are_equal_wherever_they_were_listed() {
        let mut a = WatchSet::default();
        a.insert(watch("run-1", &[], "x"), at("x", 1)).unwrap();
        let mut b = WatchSet::default();
        b.insert(watch("run-1", &[], "x"), at("x", 9)).unwrap();
        assert_eq!(a, b);
        b.insert(watch("run-2", &[], "x"), at("x", 10)).unwrap();
        assert_ne!(a, b);
    }
}
