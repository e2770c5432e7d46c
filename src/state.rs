//! Last-seen statuses on disk, across restarts (contract `[state]`).
//!
//! In: the daemon's per-watch facts (`SavedWatch`, keyed by the watch key's
//! string) as they change, the learned duration models (issue 11), and each
//! `[[watch_flow]]` table's seen records (issue 9). Out: one JSON file,
//! `{"version":1,"watches":{..},"models":[..],"seen":{..}}` (`models` and
//! `seen` optional: an older file without them loads; an entry that does not
//! parse is dropped with a WARN),
//! replaced atomically (temp file, fsync, rename, fsync of the directory) with
//! mode 0600, and read back at start-up by `load`.
//!
//! `StateWriter` coalesces: the daemon marks every change in memory, and a
//! background task writes at most once per period, off the async threads, so
//! 100k watches don't rewrite the file on every poll. `flush` writes at once
//! (shutdown).
//!
//! The file is one daemon's alone (issue 7.7): `lock` takes an exclusive
//! `flock` on `<path>.lock` (holding the holder's pid) for as long as the
//! writer lives, so a second daemon on the same path fails at start-up. A
//! file whose content does not parse is renamed aside, never fatal; one that
//! cannot be read at all (a directory, no permission) is a start-up error,
//! since renaming it would hide an operator's mistake, not corruption.
//!
//! Why one file of this size: the file format, its lock and the coalescing
//! writer are one contract (what is on disk, and when), and their tests share
//! fixtures.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::discover::{SeenSet, SharedSeen};
use crate::schedule::learned::Models;
use crate::watch::request::WatchRequest;

/// The on-disk format this build reads and writes.
pub const VERSION: u32 = 1;

/// What the daemon needs to resume one watch after a restart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SavedWatch {
    /// The last status seen, as the API spells it (`Running`, `Succeeded`, …).
    pub status: String,
    /// A terminal watch is neither re-polled nor re-emitted after a restart.
    pub terminal: bool,
    /// Requests so far for this watch (the `polls` field of events).
    pub polls: u64,
    /// When the daemon first started watching it, in ms since the Unix epoch
    /// (for `watched_ms` and `max_watch` across restarts).
    pub watched_since_unix_ms: u64,
    /// The failure details of this ended execution were reported (or found
    /// unavailable): a restart neither fetches nor emits them again
    /// (issue 9). Absent (false) in files written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub details_reported: bool,
    /// Set for a watch flow discovery added: it is restored as one while
    /// its `[[watch_flow]]` table is configured (issue 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<SavedDiscovery>,
}

/// Which `[[watch_flow]]` table found a watch, and when the execution was
/// created (its seen record once it ends).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SavedDiscovery {
    /// The table's identity, `region/flow/alias` (`*` for every alias).
    pub flow_table: String,
    pub created_unix_ms: u64,
}

/// Every saved watch, by watch key string, and the learned models.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub watches: BTreeMap<String, SavedWatch>,
    /// `None` when the file had none (or was written before issue 11).
    pub models: Option<Models>,
    /// The watches added over the HTTP API (issue 10), by the same key
    /// strings: what was asked for, so a restart resumes them. A file
    /// without this map (older builds) has none.
    pub api: BTreeMap<String, SavedApiWatch>,
    /// Each `[[watch_flow]]` table's seen records, by the table's key
    /// (`region/flow/alias`): the discovered executions that ended and left
    /// memory, so a restart does not report them again (issue 9). A file
    /// without this map (older builds) has none.
    pub seen: BTreeMap<String, SeenSet>,
}

/// One watch added over the HTTP API, as `[state]` keeps it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SavedApiWatch {
    pub request: WatchRequest,
    /// When it ended, in ms since the Unix epoch: it is dropped
    /// `[http] keep_ended` later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_unix_ms: Option<u64>,
}

/// Why the state file cannot be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {} is in use by another flowwatch{}", .path.display(), holder(*.pid))]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error("cannot lock state file {}", .path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read state file {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn holder(pid: Option<u32>) -> String {
    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
}

/// The exclusive hold on one state path; released when dropped (or when
/// the process ends, however it ends).
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
    /// The locked `<path>.lock`; the lock lives as long as this descriptor.
    _file: File,
}

impl StateLock {
    /// The state file this lock guards.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<path>.lock`, next to the state file. Not the state file itself: each
/// write renames a new file over it, which would drop a lock held on it.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive lock for `path` without waiting, creating the parent
/// directory (0700) and the lock file (0600) when missing, and writes this
/// process's pid into it. Another process holding it is `Locked`, with its
/// pid when the lock file names one.
pub fn lock(path: &Path) -> Result<StateLock, StateError> {
    let lock_path = lock_path(path);
    let failed = |source| StateError::Lock {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false) // the holder's pid stays readable until we hold it
        .mode(0o600)
        .open(&lock_path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(StateError::Locked {
                path: path.to_path_buf(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(fs::TryLockError::Error(source)) => return Err(failed(source)),
    }
    // The pid is a courtesy for the next one's message: failing to write
    // it does not make the lock less ours.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(StateLock {
        path: path.to_path_buf(),
        _file: file,
    })
}

/// What `load` found.
#[derive(Debug, PartialEq)]
pub enum Loaded {
    /// No state file yet: start with nothing saved.
    Fresh,
    Restored(Snapshot),
    /// The file's content could not be used; it was renamed to `moved_to` and the daemon
    /// starts fresh (emit `Event::StateSetAside`). When the rename failed too,
    /// `error` says so and nothing exists at `moved_to`.
    SetAside {
        moved_to: PathBuf,
        error: String,
    },
}

/// The file's shape when read: the version decides how to read the rest.
#[derive(Deserialize)]
struct Header {
    version: u32,
}

#[derive(Deserialize)]
struct OnDisk {
    #[allow(dead_code)] // checked through `Header` first
    version: u32,
    watches: BTreeMap<String, SavedWatch>,
    #[serde(default)]
    api: BTreeMap<String, SavedApiWatch>,
    /// Read entry by entry, so one bad model costs only itself.
    #[serde(default)]
    models: Option<Vec<serde_json::Value>>,
    /// Read table by table, likewise.
    #[serde(default)]
    seen: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize)]
struct OnDiskRef<'a> {
    version: u32,
    watches: &'a BTreeMap<String, SavedWatch>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    api: &'a BTreeMap<String, SavedApiWatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<&'a Models>,
    /// One base64 string of 24-byte records per table (32 characters each).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    seen: &'a BTreeMap<String, SeenSet>,
}

/// Reads the state file. Never panics: a missing file is `Fresh`; a corrupt
/// or unknown-version file is renamed to `<name>.corrupt-<unix secs>` (with
/// `-N` added if that name is taken) and reported as `SetAside`. A path
/// that cannot be read (a directory, no permission) is left where it is and
/// is a `StateError::Read`.
pub fn load(path: &Path) -> Result<Loaded, StateError> {
    let problem = match fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Fresh),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(bytes) => match parse(&bytes) {
            Ok(snapshot) => return Ok(Loaded::Restored(snapshot)),
            Err(problem) => format!("{}: {problem}", path.display()),
        },
    };
    let moved_to = aside_path(path, unix_secs_now());
    Ok(match fs::rename(path, &moved_to) {
        Ok(()) => Loaded::SetAside {
            moved_to,
            error: problem,
        },
        Err(e) => Loaded::SetAside {
            error: format!("{problem}; cannot rename it to {}: {e}", moved_to.display()),
            moved_to,
        },
    })
}

/// A snapshot from bytes a `Store` saved; the error is a short phrase.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    parse(bytes)
}

/// Parses the file's bytes; the error is a short phrase for the event.
fn parse(bytes: &[u8]) -> Result<Snapshot, String> {
    let header: Header =
        serde_json::from_slice(bytes).map_err(|e| format!("not a state file: {e}"))?;
    if header.version != VERSION {
        return Err(format!(
            "unsupported state file version {} (this build reads {VERSION})",
            header.version
        ));
    }
    let on_disk: OnDisk =
        serde_json::from_slice(bytes).map_err(|e| format!("corrupt state file: {e}"))?;
    Ok(Snapshot {
        watches: on_disk.watches,
        api: on_disk.api,
        models: on_disk.models.map(models),
        seen: seen(on_disk.seen),
    })
}

/// The tables' seen records that parse; a table whose records do not is
/// dropped with a WARN: at worst its ended executions are reported again
/// (at least once, as after a crash), which beats a failed start.
fn seen(tables: BTreeMap<String, serde_json::Value>) -> BTreeMap<String, SeenSet> {
    tables
        .into_iter()
        .filter_map(
            |(table, records)| match serde_json::from_value::<SeenSet>(records) {
                Ok(set) => Some((table, set)),
                Err(e) => {
                    tracing::warn!(flow = %table, error = %e, "dropped seen records from the state file");
                    None
                }
            },
        )
        .collect()
}

/// The saved models that parse; each one that does not is dropped with a
/// WARN (a learned model is an optimisation, never worth a failed start).
fn models(entries: Vec<serde_json::Value>) -> Models {
    let fine: Vec<serde_json::Value> = entries
        .into_iter()
        .filter(|entry| {
            let one = serde_json::Value::Array(vec![entry.clone()]);
            match serde_json::from_value::<Models>(one) {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "dropped a learned model from the state file");
                    false
                }
            }
        })
        .collect();
    serde_json::from_value(serde_json::Value::Array(fine)).unwrap_or_default()
}

/// `<path>.corrupt-<secs>`, or `<path>.corrupt-<secs>-N` for the first free N,
/// so a second set-aside in the same second never overwrites the first.
fn aside_path(path: &Path, secs: u64) -> PathBuf {
    let base = format!("{}.corrupt-{secs}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while fs::symlink_metadata(&candidate).is_ok() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

fn unix_secs_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The file's bytes for a snapshot.
fn serialize(snapshot: &Snapshot) -> Vec<u8> {
    let on_disk = OnDiskRef {
        version: VERSION,
        watches: &snapshot.watches,
        api: &snapshot.api,
        models: snapshot.models.as_ref(),
        seen: &snapshot.seen,
    };
    serde_json::to_vec(&on_disk).expect("string keys and plain fields always serialize")
}

/// Replaces the file at `path` with `snapshot`, all or nothing. Blocking: call
/// it from `spawn_blocking` in async code. Creates the parent directory (mode
/// 0700) when missing; the file is mode 0600.
pub fn write_atomic(path: &Path, snapshot: &Snapshot) -> io::Result<()> {
    write_bytes_atomic(path, &serialize(snapshot))
}

fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    // Same folder, so the rename never crosses file systems; the pid keeps two
    // daemons pointed at one path from sharing a temp file.
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_then_rename(&temp, path, dir, bytes);
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_then_rename(temp: &Path, path: &Path, dir: &Path, bytes: &[u8]) -> io::Result<()> {
    // A temp file left by a crash of this pid would make `create_new` fail.
    match fs::remove_file(temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temp, path)?;
    // The rename is durable only once the directory entry is.
    File::open(dir)?.sync_all()
}

/// Coalesces changes in memory and writes them at most once per period.
///
/// `mark` and `forget` are cheap (a map update under a short lock) and never
/// touch the disk. A background task writes when something changed since the
/// last write; a failed write is logged and retried on the next period, never
/// fatal. Dropping the writer stops the task without a final write: call
/// `flush` first.
pub struct StateWriter {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// Held for as long as this writer may write (none for a `Store`).
    _lock: Option<StateLock>,
}

/// Somewhere other than the file that a snapshot's bytes go: the HA engine's
/// key, written with a fenced transaction (issue 12). `save` blocks.
pub trait Store: Send + Sync + 'static {
    fn save(&self, bytes: &[u8]) -> io::Result<()>;
}

struct Shared {
    /// The file, or what names the store in log lines.
    path: PathBuf,
    store: Option<Box<dyn Store>>,
    pending: Mutex<Pending>,
    /// Held for a whole write, so writes land on disk in snapshot order.
    writing: Mutex<()>,
    writes: AtomicU64,
}

/// The in-memory copy and whether the disk lags behind it.
#[derive(Default)]
struct Pending {
    /// Everything but the seen records (`saved.seen` stays empty).
    saved: Snapshot,
    /// The seen records, shared with the walks: copied out only to write.
    seen: BTreeMap<String, SharedSeen>,
    dirty: bool,
    /// Whether the last write failed: the first failure is logged at ERROR,
    /// repeats at DEBUG, and the recovery at INFO.
    failing: bool,
}

impl Pending {
    /// The coalescing decision: a copy to write when something changed since
    /// the last write, else nothing. Clears the dirty flag.
    fn take_if_dirty(&mut self) -> Option<Snapshot> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(self.saved.clone())
    }
}

impl StateWriter {
    /// Starts the periodic writer for the path `lock` holds, with what
    /// `load` restored (or an empty snapshot), and keeps the lock until
    /// dropped. Nothing is written until something changes or `flush`.
    /// Must be called inside a tokio runtime.
    pub fn spawn(lock: StateLock, initial: Snapshot, every: Duration) -> StateWriter {
        let path = lock.path().to_path_buf();
        StateWriter::start(path, None, Some(lock), initial, every)
    }

    /// Like `spawn`, but snapshots go to `store` (named `name` in log lines).
    pub fn spawn_to(
        store: Box<dyn Store>,
        name: &str,
        initial: Snapshot,
        every: Duration,
    ) -> StateWriter {
        StateWriter::start(PathBuf::from(name), Some(store), None, initial, every)
    }

    fn start(
        path: PathBuf,
        store: Option<Box<dyn Store>>,
        lock: Option<StateLock>,
        mut initial: Snapshot,
        every: Duration,
    ) -> StateWriter {
        // Kept until the daemon shares its walks' sets in their place.
        let seen = std::mem::take(&mut initial.seen)
            .into_iter()
            .map(|(table, set)| (table, Arc::new(Mutex::new(set))))
            .collect();
        let shared = Arc::new(Shared {
            path,
            store,
            pending: Mutex::new(Pending {
                saved: initial,
                seen,
                ..Pending::default()
            }),
            writing: Mutex::new(()),
            writes: AtomicU64::new(0),
        });
        let task = tokio::spawn(write_periodically(Arc::clone(&shared), every));
        StateWriter {
            shared,
            task,
            _lock: lock,
        }
    }

    /// Records a watch's latest saved facts; written with the next period.
    pub fn mark(&self, key: &str, saved: SavedWatch) {
        let mut pending = self.shared.lock_pending();
        if pending.saved.watches.get(key) != Some(&saved) {
            pending.saved.watches.insert(key.to_owned(), saved);
            pending.dirty = true;
        }
    }

    /// Records what was asked for an API watch (issue 10).
    pub fn mark_api(&self, key: &str, saved: SavedApiWatch) {
        let mut pending = self.shared.lock_pending();
        if pending.saved.api.get(key) != Some(&saved) {
            pending.saved.api.insert(key.to_owned(), saved);
            pending.dirty = true;
        }
    }

    /// Records the learned models (issue 11); written with the next period.
    pub fn set_models(&self, models: &Models) {
        let mut pending = self.shared.lock_pending();
        if pending.saved.models.as_ref() != Some(models) {
            pending.saved.models = Some(models.clone());
            pending.dirty = true;
        }
    }

    /// Saves `table`'s seen records from now on: the walk's own set, not a
    /// copy (it replaces what the file held for the table).
    pub fn share_seen(&self, table: &str, records: SharedSeen) {
        let mut pending = self.shared.lock_pending();
        pending.seen.insert(table.to_owned(), records);
        pending.dirty = true;
    }

    /// A table's seen records changed (a record added, or pruned); written
    /// with the next period.
    pub fn seen_changed(&self) {
        self.shared.lock_pending().dirty = true;
    }

    /// Drops a table's seen records (its `[[watch_flow]]` is gone).
    pub fn forget_seen(&self, table: &str) {
        let mut pending = self.shared.lock_pending();
        if pending.seen.remove(table).is_some() {
            pending.dirty = true;
        }
    }

    /// Drops a watch (a reload removed it); written with the next period.
    pub fn forget(&self, key: &str) {
        let mut pending = self.shared.lock_pending();
        let api = pending.saved.api.remove(key).is_some();
        if pending.saved.watches.remove(key).is_some() || api {
            pending.dirty = true;
        }
    }

    /// Writes everything marked so far, now, and returns once it is on disk
    /// (shutdown). Writes even when nothing changed, so the file exists after
    /// a successful flush.
    pub async fn flush(&self) -> io::Result<()> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || shared.write(true))
            .await
            .map_err(io::Error::other)?
    }

    /// Successful writes so far (periodic and flushes).
    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn write_periodically(shared: Arc<Shared>, every: Duration) {
    let every = every.max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // After a slow write, wait a full period again rather than catching up.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let shared = Arc::clone(&shared);
        // Cloning and serializing 100k entries takes milliseconds: never on
        // the async threads. Errors are logged inside `write`.
        let _ = tokio::task::spawn_blocking(move || shared.write(false)).await;
    }
}

impl Shared {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        crate::lock::lock(&self.pending)
    }

    /// Writes the current map if dirty (or always, when `force`). Blocking.
    fn write(&self, force: bool) -> io::Result<()> {
        let _writing = crate::lock::lock(&self.writing);
        let (mut snapshot, seen) = {
            let mut pending = self.lock_pending();
            let snapshot = match pending.take_if_dirty() {
                Some(snapshot) => snapshot,
                None if force => pending.saved.clone(),
                None => return Ok(()),
            };
            (snapshot, pending.seen.clone())
        };
        // Copied out after the watches: a watch the daemon retired (seen
        // record first, then `forget`) is never missing from both.
        for (table, records) in seen {
            let records = crate::lock::lock(&records).clone();
            snapshot.seen.insert(table, records);
        }
        let bytes = serialize(&snapshot);
        let result = match &self.store {
            Some(store) => store.save(&bytes),
            None => write_bytes_atomic(&self.path, &bytes),
        };
        let mut pending = self.lock_pending();
        match &result {
            Ok(()) => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                if pending.failing {
                    tracing::info!(path = %self.path.display(), "state file written again");
                }
                pending.failing = false;
            }
            Err(e) => {
                // Keep the changes pending so the next period retries them.
                pending.dirty = true;
                if pending.failing {
                    tracing::debug!(path = %self.path.display(), error = %e, "state file write failed again");
                } else {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot write state file; retrying");
                }
                pending.failing = true;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn saved(status: &str, polls: u64) -> SavedWatch {
        SavedWatch {
            status: status.to_owned(),
            terminal: matches!(status, "Succeeded" | "Failed" | "TimedOut" | "Aborted"),
            polls,
            watched_since_unix_ms: 1_700_000_000_000 + polls,
            details_reported: false,
            discovered: None,
        }
    }

    #[test]
    fn details_reported_is_written_only_when_true_and_read_back() {
        let reported = SavedWatch {
            details_reported: true,
            ..saved("Failed", 3)
        };
        let text = serde_json::to_string(&saved("Failed", 3)).unwrap();
        assert!(!text.contains("details_reported"), "{text}");
        let text = serde_json::to_string(&reported).unwrap();
        let back: SavedWatch = serde_json::from_str(&text).unwrap();
        assert_eq!(back, reported);
    }

    fn snapshot(entries: &[(&str, SavedWatch)]) -> Snapshot {
        Snapshot {
            watches: entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            api: BTreeMap::new(),
            models: None,
            seen: BTreeMap::new(),
        }
    }

    #[test]
    fn api_watches_load_back_and_a_file_without_them_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = snapshot(&[("k", saved("Running", 1))]);
        let request = WatchRequest {
            execution_arn: Some("arn".into()),
            ..WatchRequest::default()
        };
        s.api.insert(
            "k".into(),
            SavedApiWatch {
                request,
                ended_unix_ms: Some(5),
            },
        );
        write_atomic(&path, &s).unwrap();
        assert_eq!(restored(&path), s);
        fs::write(&path, r#"{"version":1,"watches":{}}"#).unwrap();
        assert!(restored(&path).api.is_empty());
    }

    fn restored(path: &Path) -> Snapshot {
        match load(path).expect("a readable path") {
            Loaded::Restored(s) => s,
            other => panic!("expected Restored, got {other:?}"),
        }
    }

    #[test]
    fn a_written_snapshot_loads_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let s = snapshot(&[
            (
                "arn:aws:bedrock:us-east-1:1:flow/F/alias/A/execution/r1",
                saved("Running", 3),
            ),
            ("us-east-1/F/A/r2", saved("Succeeded", 9)),
        ]);
        write_atomic(&path, &s).unwrap();
        assert_eq!(restored(&path), s);
    }

    #[test]
    fn the_file_carries_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, &snapshot(&[("k", saved("Running", 1))])).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["version"], 1, "file: {json}");
        assert_eq!(json["watches"]["k"]["status"], "Running", "file: {json}");
    }

    #[test]
    fn a_missing_file_loads_fresh() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&dir.path().join("state.json")).unwrap(), Loaded::Fresh);
    }

    #[test]
    fn the_state_file_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, &Snapshot::default()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }

    #[test]
    fn rewriting_replaces_the_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, &snapshot(&[("a", saved("Running", 1))])).unwrap();
        let second = snapshot(&[("b", saved("Failed", 2))]);
        write_atomic(&path, &second).unwrap();
        assert_eq!(restored(&path), second);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "folder holds {names:?}");
    }

    #[test]
    fn a_missing_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/lib/flowwatch/state.json");
        let s = snapshot(&[("k", saved("Running", 1))]);
        write_atomic(&path, &s).unwrap();
        assert_eq!(restored(&path), s);
    }

    #[test]
    fn a_path_without_a_file_name_is_an_error_not_a_panic() {
        assert!(write_atomic(Path::new("/"), &Snapshot::default()).is_err());
    }

    /// Writes `bytes` as the state file, loads it, and checks it was set aside
    /// with its bytes intact; returns the error text.
    fn assert_set_aside(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, bytes).unwrap();
        match load(&path).expect("a readable file") {
            Loaded::SetAside { moved_to, error } => {
                assert!(!path.exists(), "the bad file is still in place");
                assert_eq!(fs::read(&moved_to).unwrap(), bytes, "moved to {moved_to:?}");
                let name = moved_to.file_name().unwrap().to_string_lossy().into_owned();
                assert!(name.starts_with("state.json.corrupt-"), "moved to {name}");
                assert_eq!(moved_to.parent(), Some(dir.path()));
                error
            }
            other => panic!("expected SetAside, got {other:?}"),
        }
    }

    #[test]
    fn a_garbage_file_is_set_aside_with_its_bytes() {
        let error = assert_set_aside(b"\x00\xffnot json at all");
        assert!(error.contains("not a state file"), "error: {error}");
    }

    #[test]
    fn a_truncated_file_is_set_aside_with_its_bytes() {
        let full = serialize(&snapshot(&[("k", saved("Running", 1))]));
        assert_set_aside(&full[..full.len() / 2]);
    }

    #[test]
    fn an_empty_file_is_set_aside() {
        assert_set_aside(b"");
    }

    #[test]
    fn an_unknown_version_is_set_aside() {
        let error = assert_set_aside(br#"{"version":2,"watches":{}}"#);
        assert!(error.contains("version 2"), "error: {error}");
    }

    #[test]
    fn a_wrongly_shaped_entry_is_set_aside() {
        assert_set_aside(br#"{"version":1,"watches":{"k":{"status":7}}}"#);
    }

    #[test]
    fn a_second_set_aside_in_the_same_second_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let first = aside_path(&path, 42);
        fs::write(&first, b"first").unwrap();
        let second = aside_path(&path, 42);
        assert_ne!(first, second);
        assert!(!second.exists());
    }

    #[test]
    fn a_directory_in_place_of_the_file_is_an_error_and_stays_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::create_dir(&path).unwrap();
        match load(&path) {
            Err(error @ StateError::Read { .. }) => {
                assert!(error.to_string().contains("state.json"), "{error}");
            }
            other => panic!("expected a read error, got {other:?}"),
        }
        assert!(path.is_dir(), "the directory was moved");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "folder holds {names:?}");
    }

    #[test]
    fn a_file_without_read_permission_is_an_error_and_stays_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, br#"{"version":1,"watches":{}}"#).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read(&path).is_ok() {
            return; // running as root: permissions do not stop us
        }
        assert!(matches!(load(&path), Err(StateError::Read { .. })));
        assert!(path.exists(), "the file was moved");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load(&path).unwrap(), Loaded::Restored(Snapshot::default()));
    }

    #[test]
    fn a_second_lock_on_one_path_fails_naming_the_file_and_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let first = lock(&path).expect("the first lock");
        // flock locks belong to an open file: a second open in this very
        // process conflicts just as another daemon would.
        match lock(&path) {
            Err(StateError::Locked { path: named, pid }) => {
                assert_eq!(named, path);
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        let message = lock(&path).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "state file {} is in use by another flowwatch (pid {})",
                path.display(),
                std::process::id()
            )
        );
        drop(first);
        lock(&path).expect("free again once the holder is gone");
    }

    #[test]
    fn the_lock_lives_next_to_the_file_and_its_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/lib/flowwatch/state.json");
        let _held = lock(&path).expect("lock");
        let lock_file = dir.path().join("var/lib/flowwatch/state.json.lock");
        assert_eq!(lock_path(&path), lock_file);
        let text = fs::read_to_string(&lock_file).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        let mode = fs::metadata(&lock_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }

    #[tokio::test]
    async fn the_writer_holds_the_lock_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let writer = StateWriter::spawn(lock(&path).unwrap(), Snapshot::default(), NEVER);
        assert!(matches!(lock(&path), Err(StateError::Locked { .. })));
        drop(writer);
        assert!(lock(&path).is_ok());
    }

    #[test]
    fn a_100k_entry_snapshot_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let watches: BTreeMap<_, _> = (0..100_000u64)
            .map(|i| {
                let key = format!(
                    "arn:aws:bedrock:us-east-1:123456789012:flow/F/alias/A/execution/run-{i}"
                );
                (
                    key,
                    saved(if i % 3 == 0 { "Succeeded" } else { "Running" }, i),
                )
            })
            .collect();
        let s = Snapshot {
            watches,
            api: BTreeMap::new(),
            models: None,
            seen: BTreeMap::new(),
        };
        write_atomic(&path, &s).unwrap();
        let back = restored(&path);
        assert_eq!(back.watches.len(), 100_000);
        assert_eq!(back, s);
    }

    #[test]
    fn many_marks_make_one_pending_write() {
        let mut pending = Pending::default();
        for i in 0..1000 {
            pending
                .saved
                .watches
                .insert(format!("k{i}"), saved("Running", i));
            pending.dirty = true;
        }
        let first = pending.take_if_dirty().expect("dirty after marks");
        assert_eq!(first.watches.len(), 1000);
        assert!(
            pending.take_if_dirty().is_none(),
            "a second write with no change"
        );
    }

    // The writer tests run on the real clock with a period far longer than
    // the test, so the periodic task never fires unless the test says so.
    const NEVER: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn marks_are_not_written_before_the_period_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let writer = StateWriter::spawn(lock(&path).unwrap(), Snapshot::default(), NEVER);
        for i in 0..1000 {
            writer.mark(&format!("k{i}"), saved("Running", i));
        }
        tokio::task::yield_now().await;
        assert_eq!(writer.writes(), 0);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn flush_writes_everything_marked_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let initial = snapshot(&[("old", saved("Running", 1)), ("gone", saved("Running", 2))]);
        let writer = StateWriter::spawn(lock(&path).unwrap(), initial, NEVER);
        writer.mark("old", saved("Succeeded", 5));
        writer.mark("new", saved("Running", 1));
        writer.forget("gone");
        writer.flush().await.unwrap();
        assert_eq!(writer.writes(), 1);
        let expected = snapshot(&[("old", saved("Succeeded", 5)), ("new", saved("Running", 1))]);
        assert_eq!(restored(&path), expected);
    }

    #[tokio::test]
    async fn flush_with_nothing_marked_still_writes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let initial = snapshot(&[("k", saved("Running", 1))]);
        let writer = StateWriter::spawn(lock(&path).unwrap(), initial.clone(), NEVER);
        writer.flush().await.unwrap();
        assert_eq!(restored(&path), initial);
    }

    #[tokio::test]
    async fn the_periodic_task_writes_marks_and_skips_unchanged_periods() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let writer = StateWriter::spawn(
            lock(&path).unwrap(),
            Snapshot::default(),
            Duration::from_millis(20),
        );
        for i in 0..1000 {
            writer.mark(&format!("k{i}"), saved("Running", i));
        }
        // Generous deadline on a loaded machine; the assertion is about
        // content and counts, not speed.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while writer.writes() == 0 {
            assert!(std::time::Instant::now() < deadline, "no periodic write");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(restored(&path).watches.len(), 1000);
        // Nothing changed since: later periods write nothing.
        let after = writer.writes();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(writer.writes(), after, "rewrote an unchanged state");
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_kept_pending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let writer = StateWriter::spawn(lock(&path).unwrap(), Snapshot::default(), NEVER);
        // A non-empty directory in the file's place: the rename fails.
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), b"").unwrap();
        writer.mark("k", saved("Running", 1));
        assert!(writer.flush().await.is_err());
        assert_eq!(writer.writes(), 0);
        assert!(writer.shared.lock_pending().dirty, "the change was dropped");
    }

    #[tokio::test]
    async fn marking_an_unchanged_value_does_not_dirty_the_state() {
        let initial = snapshot(&[("k", saved("Running", 1))]);
        let dir = tempfile::tempdir().unwrap();
        let writer = StateWriter::spawn(lock(&dir.path().join("s.json")).unwrap(), initial, NEVER);
        writer.mark("k", saved("Running", 1));
        writer.forget("absent");
        assert!(!writer.shared.lock_pending().dirty);
    }

    fn models_of(durations: &[(&str, u64)]) -> Models {
        let mut models = Models::default();
        for (flow, secs) in durations {
            let key = crate::schedule::learned::ModelKey {
                region: "us-east-1".into(),
                flow: (*flow).into(),
                alias: "A".into(),
            };
            models.observe_ended(&key, Duration::from_secs(*secs));
        }
        models
    }

    #[test]
    fn models_round_trip_and_a_file_without_them_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = snapshot(&[("w1", saved("Running", 1))]);
        write_atomic(&path, &s).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("models"), "{text}");
        assert_eq!(restored(&path), s);
        s.models = Some(models_of(&[("F1", 50), ("F2", 7)]));
        write_atomic(&path, &s).unwrap();
        assert_eq!(restored(&path), s);
    }

    #[test]
    fn a_model_that_does_not_parse_is_dropped_and_the_rest_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = snapshot(&[("w1", saved("Running", 1))]);
        s.models = Some(models_of(&[("F1", 50), ("F2", 7)]));
        write_atomic(&path, &s).unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        json["models"][1]["model"]["ended"] = serde_json::json!([1.0, 2.0]);
        json["models"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!("junk"));
        fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        let back = restored(&path);
        assert_eq!(back.watches, s.watches);
        assert_eq!(back.models, Some(models_of(&[("F1", 50)])));
    }

    fn seen_of(n: usize) -> SeenSet {
        let mut seen = SeenSet::new();
        for i in 0..n {
            let arn = format!("arn:aws:bedrock:us-east-1:1:flow/F/alias/A/execution/r{i}");
            seen.insert(
                &arn,
                UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64),
            );
        }
        seen
    }

    #[test]
    fn seen_records_round_trip_compactly_and_a_file_without_them_loads_with_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = snapshot(&[("w1", saved("Running", 1))]);
        write_atomic(&path, &s).unwrap();
        assert!(!fs::read_to_string(&path).unwrap().contains("seen"));
        assert!(restored(&path).seen.is_empty());
        s.seen.insert("us-east-1/F/*".into(), seen_of(1_000));
        write_atomic(&path, &s).unwrap();
        assert_eq!(restored(&path), s);
        // One base64 string per table: 32 characters a record.
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            json["seen"]["us-east-1/F/*"].as_str().unwrap().len(),
            32_000
        );
    }

    #[test]
    fn a_table_whose_seen_records_do_not_parse_is_dropped_and_the_rest_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = snapshot(&[("w1", saved("Running", 1))]);
        s.seen.insert("us-east-1/F/*".into(), seen_of(3));
        write_atomic(&path, &s).unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        json["seen"]["us-east-1/G/*"] = serde_json::json!("AAAA");
        fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(restored(&path), s);
    }

    #[tokio::test]
    async fn the_writer_saves_the_walks_own_seen_set_and_forgets_a_dropped_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut initial = Snapshot::default();
        initial.seen.insert("us-east-1/OLD/*".into(), seen_of(2));
        let writer = StateWriter::spawn(lock(&path).unwrap(), initial, NEVER);
        let shared: SharedSeen = Arc::new(Mutex::new(SeenSet::new()));
        writer.share_seen("us-east-1/F/*", Arc::clone(&shared));
        writer.forget_seen("us-east-1/OLD/*");
        // Changed after sharing: the write sees the change, no copy was kept.
        crate::lock::lock(&shared).insert("arn:x", UNIX_EPOCH);
        writer.seen_changed();
        writer.flush().await.unwrap();
        let back = restored(&path).seen;
        assert_eq!(back.keys().collect::<Vec<_>>(), ["us-east-1/F/*"]);
        assert!(back["us-east-1/F/*"].contains("arn:x", UNIX_EPOCH));
    }

    #[tokio::test]
    async fn the_writer_saves_the_models() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let writer = StateWriter::spawn(
            lock(&path).unwrap(),
            Snapshot::default(),
            Duration::from_secs(3600),
        );
        let models = models_of(&[("F1", 50)]);
        writer.set_models(&models);
        writer.flush().await.unwrap();
        assert_eq!(restored(&path).models, Some(models));
    }
}
