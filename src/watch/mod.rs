//! The watch set: what to watch, with identity and dedup. A watch is
//! identified by (region, flow, alias, execution) however the config spelled
//! it (ids, flow or alias ARNs, an execution ARN): the same execution listed
//! twice is one watch. In: `Watch` values from the config, each with where it
//! was listed. Out: a `WatchSet` in key order, and the `WatchDiff` between two
//! sets on reload.

pub mod ids;
pub mod request;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

pub use ids::{ExecutionRef, IdError};

/// A watch's identity: `region/flow/alias/execution` (region `-` while the
/// default chain has not decided it), the same for every spelling of one
/// execution (issue 7.1). Equality, order and hash use only that.
///
/// The account an execution ARN names is not part of it: a by-parts watch
/// knows no account, and the daemon runs with one set of credentials, so it
/// reaches one account per region. The ARN is kept (in the watch's target,
/// and as the key's name) for requests and events.
///
/// One shared string, 16 bytes: the name (the execution ARN when known, the
/// same `Arc` as the target's, else the identity itself). The identity is
/// read from it when compared: every ARN here was built from checked ids, so
/// its region and ids sit between fixed separators (see `parts`).
#[derive(Debug, Clone)]
pub struct WatchKey(Arc<str>);

impl WatchKey {
    /// The key of an execution however it was named; its name is the ARN
    /// when the reference knows one.
    pub fn of(target: &ExecutionRef) -> WatchKey {
        match &target.arn {
            Some(arn) => WatchKey(arn.clone()),
            None => WatchKey(
                format!(
                    "{}/{}/{}/{}",
                    target.region.as_deref().unwrap_or("-"),
                    target.flow,
                    target.alias,
                    target.execution
                )
                .into(),
            ),
        }
    }

    /// The key of an execution ARN (as the HTTP API names a watch).
    pub fn from_arn(arn: &str) -> Result<WatchKey, IdError> {
        ExecutionRef::parse_arn(arn).map(|target| WatchKey::of(&target))
    }

    /// The name: the execution ARN when known, else `region/flow/alias/execution`.
    /// This is what the state file is keyed by.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `region/flow/alias/execution`, whatever the spelling.
    pub fn identity(&self) -> String {
        self.parts().join("/")
    }

    /// Whether `identity` is this key's `region/flow/alias/execution`
    /// (without building the string).
    pub fn has_identity(&self, identity: &str) -> bool {
        let mut given = identity.splitn(4, '/');
        self.parts().iter().all(|part| given.next() == Some(part))
    }

    /// The identity's parts: region, flow, alias, execution. A name is
    /// either an ARN built by `ExecutionRef` (`arn:P:bedrock:R:A:flow/F/alias/A/execution/E`)
    /// or the identity itself; no id or region holds a `:` or a `/`.
    fn parts(&self) -> [&str; 4] {
        let name = &*self.0;
        let Some((scope, resource)) = split_arn(name) else {
            let mut parts = name.splitn(4, '/');
            return std::array::from_fn(|_| parts.next().unwrap_or(""));
        };
        // arn:P:bedrock:R:A: and flow/F/alias/A/execution/E
        let region = scope.rsplit(':').nth(2).unwrap_or("");
        let mut resource = resource.split('/');
        let flow = resource.nth(1).unwrap_or("");
        let alias = resource.nth(1).unwrap_or("");
        let execution = resource.nth(1).unwrap_or("");
        [region, flow, alias, execution]
    }
}

/// An ARN name's scope (`arn:P:bedrock:R:A:`, with its last colon) and
/// resource; `None` for a name that is an identity.
fn split_arn(name: &str) -> Option<(&str, &str)> {
    if !name.starts_with("arn:") {
        return None;
    }
    // No id holds a colon: the last one ends the scope.
    let end = name.rfind(':')? + 1;
    Some(name.split_at(end))
}

/// Orders two identities as their `/`-joined strings would, without joining.
fn cmp_joined(a: [&str; 4], b: [&str; 4]) -> Ordering {
    let last = a.len() - 1;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let (x, y) = (x.as_bytes(), y.as_bytes());
        let n = x.len().min(y.len());
        match x[..n].cmp(&y[..n]) {
            Ordering::Equal if x.len() == y.len() => continue,
            Ordering::Equal => {}
            unequal => return unequal,
        }
        // One is a prefix of the other: the shorter goes on with `/`, or
        // ends at the last part.
        let (next_x, next_y) = match x.len() < y.len() {
            true if i == last => return Ordering::Less,
            false if i == last => return Ordering::Greater,
            true => (b'/', y[n]),
            false => (x[n], b'/'),
        };
        return next_x.cmp(&next_y);
    }
    Ordering::Equal
}

impl PartialEq for WatchKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0 || self.parts() == other.parts()
    }
}

impl Eq for WatchKey {}

impl Hash for WatchKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for part in self.parts() {
            state.write(part.as_bytes());
            state.write_u8(b'/');
        }
    }
}

impl PartialOrd for WatchKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WatchKey {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&*self.0, &*other.0);
        // Fast paths that give the identities' order (a config's watches
        // mostly share one scope, and sorting them must stay cheap): two
        // identities order as themselves; two ARNs of one scope order as
        // their resources, whose fixed words stand at the same places, and
        // whose ids all end in `/` (or the end) in either spelling.
        match (split_arn(a), b.starts_with("arn:")) {
            (None, false) => return a.cmp(b),
            // `b` starts with `a`'s scope: it is `b`'s scope too (the
            // resource holds no colon).
            (Some((scope, _)), true) if b.as_bytes().starts_with(scope.as_bytes()) => {
                return a.cmp(b);
            }
            _ => {}
        }
        cmp_joined(self.parts(), other.parts())
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
    /// Its identity, named by the execution ARN when known: see `WatchKey`.
    pub fn key(&self) -> WatchKey {
        WatchKey::of(&self.target)
    }
}

/// Where a watch was listed: its file, and the line of its `[[watch]]` table
/// when known. One per watch (24 bytes; `u32` lines: no config has 4 billion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<Path>,
    pub line: Option<u32>,
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
    /// into the first one: labels are united and the first `source` stays; an
    /// execution ARN either spelling gives is kept (and names the key). A
    /// label with a different value on each is a `DuplicateConflict`, and the
    /// set is left as it was.
    pub fn insert(&mut self, watch: Watch, at: Origin) -> Result<(), Box<DuplicateConflict>> {
        let key = watch.key();
        // One search for a new watch (the common case): a config of 100,000
        // is 100,000 of them.
        if let std::collections::btree_map::Entry::Vacant(slot) = self.by_key.entry(key.clone()) {
            slot.insert(Arc::new(watch));
            self.origins.insert(key, at);
            return Ok(());
        }
        let existing = self.by_key.get_mut(&key).expect("occupied above");
        for (label, value) in watch.labels.iter() {
            if let Some(first_value) = existing.labels.get(label)
                && first_value != value
            {
                let first = self.origins.get(&key).cloned().unwrap_or_else(|| Origin {
                    file: existing.source.clone(),
                    line: None,
                });
                // Named by the ARN when either spelling gives one.
                let key = match existing.target.arn {
                    Some(_) => existing.key(),
                    None => key,
                };
                return Err(Box::new(DuplicateConflict {
                    key,
                    first,
                    label: label.clone(),
                    first_value: first_value.clone(),
                    value: value.clone(),
                }));
            }
        }
        let first = Arc::make_mut(existing);
        if first.target.arn.is_none() && watch.target.arn.is_some() {
            // The by-parts listing came first: the ARN the other spelling
            // gives now names the watch, in events and in the state file.
            first.target.arn = watch.target.arn.clone();
            let named = first.key();
            if let Some(origin) = self.origins.remove(&key) {
                self.origins.insert(named.clone(), origin);
            }
            if let Some(value) = self.by_key.remove(&key) {
                self.by_key.insert(named, value);
            }
        }
        if let Some(existing) = self.by_key.get_mut(&key) {
            let merged = Arc::make_mut(&mut Arc::make_mut(existing).labels);
            merged.extend(watch.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        self.merged += 1;
        Ok(())
    }

    /// Gives every watch whose region the default chain decides (key region
    /// `-`) the region it decided, and merges it into a watch of the same
    /// execution already here (as `insert` does). The daemon calls this once
    /// it knows the default region, at start and on every reload before the
    /// diff, so that both sides of a diff see the same identities. On a
    /// `DuplicateConflict` the set is left as it was.
    pub fn resolve_default_region(&mut self, region: &str) -> Result<(), Box<DuplicateConflict>> {
        let unresolved: Vec<WatchKey> = self
            .by_key
            .iter()
            .filter(|(_, w)| w.target.region.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if unresolved.is_empty() {
            return Ok(());
        }
        let mut next = self.clone();
        let region: Arc<str> = region.into();
        for key in unresolved {
            let (Some(watch), Some(origin)) = (next.by_key.remove(&key), next.origins.remove(&key))
            else {
                continue;
            };
            let mut watch = Arc::unwrap_or_clone(watch);
            watch.target.region = Some(region.clone());
            next.insert(watch, origin)?;
        }
        *self = next;
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

    fn at(file: &str, line: u32) -> Origin {
        Origin {
            file: Path::new(file).into(),
            line: Some(line),
        }
    }

    fn names(keys: &[WatchKey]) -> Vec<&str> {
        keys.iter().map(WatchKey::as_str).collect()
    }

    const ARN: &str =
        "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-1";

    fn by_arn(arn: &str, labels: &[(&str, &str)], source: &str) -> Watch {
        Watch {
            target: ExecutionRef::parse_arn(arn).unwrap(),
            ..watch("unused", labels, source)
        }
    }

    fn in_region(region: &str, mut w: Watch) -> Watch {
        w.target.region = Some(region.into());
        w
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
            names(&diff.added),
            [
                "-/FLOW123456/ALIAS12345/run-0",
                "-/FLOW123456/ALIAS12345/run-4"
            ]
        );
        assert_eq!(
            names(&diff.removed),
            [
                "-/FLOW123456/ALIAS12345/run-1",
                "-/FLOW123456/ALIAS12345/run-3"
            ]
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

    #[test]
    fn an_arn_and_the_same_execution_by_parts_have_one_identity() {
        let by_parts = in_region("us-east-1", watch("run-1", &[], "a"));
        let arn = by_arn(ARN, &[], "a");
        assert_eq!(by_parts.key(), arn.key());
        assert_eq!(
            arn.key().identity(),
            "us-east-1/FLOW123456/ALIAS12345/run-1"
        );
        // The name stays the ARN where one is known: the state file's keys.
        assert_eq!(arn.key().as_str(), ARN);
        assert_eq!(
            by_parts.key().as_str(),
            "us-east-1/FLOW123456/ALIAS12345/run-1"
        );
        let other_account = by_arn(&ARN.replace("123456789012", "210987654321"), &[], "a");
        assert_eq!(other_account.key(), arn.key());
        let other_region = in_region("eu-west-1", watch("run-1", &[], "a"));
        assert_ne!(other_region.key(), arn.key());
        assert_eq!(WatchKey::from_arn(ARN).unwrap(), by_parts.key());
    }

    #[test]
    fn an_arn_after_the_same_execution_by_parts_merges_and_names_the_watch() {
        let mut set = WatchSet::default();
        let by_parts = in_region("us-east-1", watch("run-1", &[("team", "search")], "a.toml"));
        set.insert(by_parts, at("a.toml", 1)).unwrap();
        set.insert(by_arn(ARN, &[("tier", "gold")], "b.toml"), at("b.toml", 4))
            .unwrap();
        assert_eq!((set.len(), set.merged()), (1, 1));
        let (key, merged) = set.iter().next().unwrap();
        assert_eq!(key.as_str(), ARN);
        assert_eq!(merged.target.arn.as_deref(), Some(ARN));
        assert_eq!(&*merged.source, Path::new("a.toml"));
        assert_eq!(set.origin(key), Some(&at("a.toml", 1)));
        assert_eq!(merged.labels.len(), 2);
    }

    #[test]
    fn by_parts_after_an_arn_merges_and_keeps_the_arn() {
        let mut set = WatchSet::default();
        set.insert(by_arn(ARN, &[], "a.toml"), at("a.toml", 1))
            .unwrap();
        let by_parts = in_region("us-east-1", watch("run-1", &[("team", "ads")], "b.toml"));
        set.insert(by_parts, at("b.toml", 2)).unwrap();
        assert_eq!(set.len(), 1);
        let (key, merged) = set.iter().next().unwrap();
        assert_eq!(key.as_str(), ARN);
        assert_eq!(merged.labels["team"], "ads");
    }

    #[test]
    fn a_conflicting_label_across_spellings_names_the_first_place() {
        let mut set = WatchSet::default();
        set.insert(
            by_arn(ARN, &[("team", "search")], "a.toml"),
            at("a.toml", 3),
        )
        .unwrap();
        let by_parts = in_region("us-east-1", watch("run-1", &[("team", "ads")], "b.toml"));
        let err = set.insert(by_parts, at("b.toml", 7)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "duplicate watch {ARN} conflicts with a.toml:3: label team is \"search\" there and \"ads\" here"
            )
        );
    }

    #[test]
    fn a_key_is_one_shared_string() {
        // Several per watch (the set, the daemon's maps): each costs 16 bytes
        // and the ARN the target already holds, nothing more.
        assert_eq!(std::mem::size_of::<WatchKey>(), 16);
        assert_eq!(std::mem::size_of::<Origin>(), 24);
        let arn = by_arn(ARN, &[], "a");
        let key = arn.key();
        assert!(std::ptr::eq(
            key.as_str().as_ptr(),
            arn.target.arn.as_deref().unwrap().as_ptr()
        ));
    }

    #[test]
    fn keys_order_as_their_identities_and_hash_alike_when_equal() {
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        let parts = |region: &str, alias: &str, execution: &str| {
            in_region(
                region,
                Watch {
                    target: ExecutionRef::parse_parts("FLOW123456", alias, execution, None)
                        .unwrap(),
                    ..watch("unused", &[], "a")
                },
            )
            .key()
        };
        let arn = |region: &str, alias: &str, execution: &str| {
            let arn = format!(
                "arn:aws:bedrock:{region}:123456789012:flow/FLOW123456/alias/{alias}/execution/{execution}"
            );
            by_arn(&arn, &[], "a").key()
        };
        // Prefixes of each part, and '-' (which sorts before '/').
        let spellings = [
            ("us-east-1", "A", "run"),
            ("us-east-1", "A", "run-1"),
            ("us-east-1", "A", "run1"),
            ("us-east-1", "A1", "run"),
            ("us-east-10", "A", "run"),
            ("us-east", "A", "run"),
            ("us-east-1-x", "A", "run"),
            ("us-east-1", "AB", "r"),
        ];
        let mut keys = Vec::new();
        for (region, alias, execution) in spellings {
            keys.push(parts(region, alias, execution));
            keys.push(arn(region, alias, execution));
        }
        for a in &keys {
            for b in &keys {
                assert_eq!(a.cmp(b), a.identity().cmp(&b.identity()), "{a} vs {b}");
                if a == b {
                    assert_eq!(hasher.hash_one(a), hasher.hash_one(b), "{a} vs {b}");
                }
            }
        }
        let key = arn("us-east-1", "A", "run-1");
        assert_eq!(key.identity(), "us-east-1/FLOW123456/A/run-1");
        assert!(key.has_identity("us-east-1/FLOW123456/A/run-1"));
        assert!(!key.has_identity("us-east-1/FLOW123456/A/run-1/x"));
        assert!(!key.has_identity("us-east-1/FLOW123456/A"));
    }

    #[test]
    fn a_reload_that_respells_a_watch_changes_nothing() {
        let old = WatchSet::from_watches([by_arn(ARN, &[], "a")]).unwrap();
        let new =
            WatchSet::from_watches([in_region("us-east-1", watch("run-1", &[], "a"))]).unwrap();
        assert_eq!(old.diff(&new), WatchDiff::default());
    }

    #[test]
    fn resolving_the_default_region_rekeys_and_merges() {
        let mut set = WatchSet::from_watches([
            by_arn(ARN, &[("team", "search")], "a"),
            watch("run-1", &[("tier", "gold")], "b"),
            watch("run-2", &[], "b"),
        ])
        .unwrap();
        assert_eq!(set.len(), 3);
        set.resolve_default_region("us-east-1").unwrap();
        let keys: Vec<&str> = set.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [ARN, "us-east-1/FLOW123456/ALIAS12345/run-2"]);
        assert_eq!(set.merged(), 1);
        let merged = set.get(&WatchKey::from_arn(ARN).unwrap()).unwrap();
        assert_eq!(merged.labels.len(), 2);
        assert_eq!(&*merged.source, Path::new("a"));
        assert!(
            set.iter()
                .all(|(_, w)| w.target.region.as_deref() == Some("us-east-1"))
        );
    }

    #[test]
    fn resolving_into_a_watch_in_another_region_merges_nothing() {
        let mut set =
            WatchSet::from_watches([by_arn(ARN, &[], "a"), watch("run-1", &[], "b")]).unwrap();
        set.resolve_default_region("eu-west-1").unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.merged(), 0);
    }

    #[test]
    fn a_conflict_found_by_resolving_leaves_the_set_as_it_was() {
        let mut set = WatchSet::from_watches([
            by_arn(ARN, &[("team", "search")], "a"),
            watch("run-1", &[("team", "ads")], "b"),
        ])
        .unwrap();
        let before = set.clone();
        let err = set.resolve_default_region("us-east-1").unwrap_err();
        assert_eq!(err.label, "team");
        assert_eq!(set, before);
        assert_eq!(set.len(), 2);
    }
}
