//! Notices, unprompted, that the config file or a file matched by an `include`
//! glob was created, edited, deleted or swapped (a Kubernetes ConfigMap update
//! replaces the `..data` symlink in the mounted folder).
//!
//! In: the config path and the include globs. Out: a `()` on a channel once
//! the files have been quiet for a moment; the daemon then reloads. A reload
//! that changes nothing is cheap, so when in doubt this signals.
//!
//! How: `notify` (inotify) watches the config file's folder and each glob's
//! base folder (the part before the first wildcard), non-recursively unless
//! the glob has wildcards in a folder part. Its callback thread filters events
//! and wakes a tokio task, which debounces and sends. A folder that does not
//! exist yet is covered by watching its nearest existing ancestor; once it
//! appears, the next signal starts watching it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::lock::lock;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// A signal waits at most this many quiet periods, so a file that never stops
/// changing still gets read.
const MAX_DEFER_QUIET_PERIODS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum FileWatchError {
    #[error("cannot start watching files")]
    Start(#[source] notify::Error),
    #[error("cannot watch {}", .path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// Watches the config file and the include globs until dropped.
pub struct FileWatcher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    /// What counts as ours; read by the notify callback thread. Never held
    /// while calling into the watcher, whose calls wait on that thread.
    targets: Arc<Mutex<Targets>>,
    watching: Mutex<Watching>,
}

struct Watching {
    watcher: RecommendedWatcher,
    config_path: PathBuf,
    include_globs: Vec<String>,
    /// Folders watched now, and how.
    active: BTreeMap<PathBuf, RecursiveMode>,
}

impl FileWatcher {
    /// Starts watching. `changes` receives `()` once the watched files have
    /// been quiet for `quiet` after a change (and at the latest after ten
    /// quiet periods of continuous change); signals not yet received merge
    /// into one. Must be called inside a tokio runtime.
    ///
    /// Errors name the folder that cannot be watched (permissions, the
    /// inotify watch limit). A missing include folder is not an error: its
    /// nearest existing ancestor is watched until it appears.
    pub fn spawn(
        config_path: &Path,
        include_globs: &[String],
        quiet: Duration,
    ) -> Result<(FileWatcher, mpsc::Receiver<()>), FileWatchError> {
        let targets = Arc::new(Mutex::new(Targets::new(config_path, include_globs)));
        let wake = Arc::new(Notify::new());
        let watcher = {
            let targets = Arc::clone(&targets);
            let wake = Arc::clone(&wake);
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match &event {
                    Ok(event) => lock(&targets).is_relevant(event),
                    Err(error) => {
                        // We may have missed something: read everything again.
                        tracing::warn!(error = %error, "file watcher reported an error");
                        true
                    }
                };
                if relevant {
                    tracing::trace!(event = ?event, "watched file changed");
                    wake.notify_one();
                }
            })
            .map_err(FileWatchError::Start)?
        };
        let shared = Arc::new(Shared {
            targets,
            watching: Mutex::new(Watching {
                watcher,
                config_path: config_path.to_owned(),
                include_globs: include_globs.to_vec(),
                active: BTreeMap::new(),
            }),
        });
        if let Some(error) = lock(&shared.watching).refresh().into_iter().next() {
            return Err(error);
        }
        let (changes_tx, changes) = mpsc::channel(1);
        let task = tokio::spawn(debounce(Arc::clone(&shared), wake, changes_tx, quiet));
        Ok((FileWatcher { shared, task }, changes))
    }

    /// Watches what a reloaded config names (call after every reload, applied
    /// or rejected): new base folders are added, unused ones dropped. Folders
    /// that cannot be watched are logged at ERROR. Blocks briefly.
    pub fn rewatch(&self, config_path: &Path, include_globs: &[String]) {
        *lock(&self.shared.targets) = Targets::new(config_path, include_globs);
        let mut watching = lock(&self.shared.watching);
        watching.config_path = config_path.to_owned();
        watching.include_globs = include_globs.to_vec();
        log_watch_errors(watching.refresh());
    }
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn log_watch_errors(errors: Vec<FileWatchError>) {
    for error in errors {
        if let FileWatchError::Watch { path, source } = &error {
            tracing::error!(path = %path.display(), error = %source, "cannot watch folder for changes");
        }
    }
}

/// Waits for a relevant event, then for `quiet` without one, then signals.
async fn debounce(
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    changes: mpsc::Sender<()>,
    quiet: Duration,
) {
    loop {
        wake.notified().await;
        let latest = tokio::time::Instant::now() + quiet * MAX_DEFER_QUIET_PERIODS;
        loop {
            let until = (tokio::time::Instant::now() + quiet).min(latest);
            if tokio::time::timeout_at(until, wake.notified())
                .await
                .is_err()
                || tokio::time::Instant::now() >= latest
            {
                break;
            }
        }
        // A folder may have appeared, vanished or been replaced (same path,
        // new inode): watch what exists now, before the daemon reads.
        let refresh = Arc::clone(&shared);
        let errors = tokio::task::spawn_blocking(move || lock(&refresh.watching).refresh()).await;
        log_watch_errors(errors.unwrap_or_default());
        match changes.try_send(()) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
            Err(mpsc::error::TrySendError::Closed(())) => return,
        }
    }
}

impl Watching {
    /// Watches every folder that should be watched now (again, so a folder
    /// replaced under the same name is followed) and drops the others.
    /// Returns one error per folder that could not be watched.
    fn refresh(&mut self) -> Vec<FileWatchError> {
        let desired = folders_to_watch(&self.config_path, &self.include_globs);
        let stale: Vec<PathBuf> = self
            .active
            .iter()
            .filter(|(dir, mode)| desired.get(*dir) != Some(*mode))
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in stale {
            // Fails when the folder is gone, which removed the watch anyway.
            let _ = self.watcher.unwatch(&dir);
            self.active.remove(&dir);
        }
        let mut errors = Vec::new();
        for (dir, mode) in desired {
            match self.watcher.watch(&dir, mode) {
                Ok(()) => {
                    self.active.insert(dir, mode);
                }
                Err(source) => {
                    self.active.remove(&dir);
                    errors.push(FileWatchError::Watch { path: dir, source });
                }
            }
        }
        errors
    }
}

/// The folders to watch for this config: its own folder, the folder of its
/// symlink target (when it is a symlink to elsewhere), and each glob's base.
/// Missing folders are replaced by their nearest existing ancestor; two paths
/// to one folder are watched once (the first), recursively if either asks.
fn folders_to_watch(
    config_path: &Path,
    include_globs: &[String],
) -> BTreeMap<PathBuf, RecursiveMode> {
    let config_path = absolute(config_path);
    let config_dir = parent_dir(&config_path);
    let mut wanted = vec![(config_dir.clone(), RecursiveMode::NonRecursive)];
    if let Ok(target) = std::fs::canonicalize(&config_path) {
        wanted.push((parent_dir(&target), RecursiveMode::NonRecursive));
    }
    for glob in include_globs {
        let glob = config_dir.join(glob); // absolute globs stay as they are
        let (base, rest) = split_glob(&glob);
        let (dir, mode) = match rest.len() {
            // No wildcard: a plain file; watch its folder.
            0 => (parent_dir(&base), RecursiveMode::NonRecursive),
            1 if rest[0] != "**" => (base, RecursiveMode::NonRecursive),
            _ => (base, RecursiveMode::Recursive),
        };
        wanted.push((dir, mode));
    }

    let mut folders: BTreeMap<PathBuf, RecursiveMode> = BTreeMap::new();
    let mut by_inode: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    for (dir, mode) in wanted {
        let (dir, mode) = match nearest_existing(&dir) {
            Some(existing) if existing == dir => (dir, mode),
            // A stand-in ancestor only needs to see the folder appear.
            Some(existing) => (existing, RecursiveMode::NonRecursive),
            None => continue,
        };
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        let dir = by_inode
            .entry((meta.dev(), meta.ino()))
            .or_insert(dir)
            .clone();
        let entry = folders.entry(dir).or_insert(mode);
        if mode == RecursiveMode::Recursive {
            *entry = RecursiveMode::Recursive;
        }
    }
    folders
}

fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf)
}

/// `path` made absolute against the current folder, `.` parts removed, and
/// symlinks left alone (resolving them would hide a ConfigMap's swap).
fn absolute(path: &Path) -> PathBuf {
    let joined = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    joined
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn has_wildcard(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

/// Splits a glob into its wildcard-free leading folders and the remaining
/// parts: `/etc/fw/watches.d/*.toml` → (`/etc/fw/watches.d`, [`*.toml`]).
fn split_glob(glob: &Path) -> (PathBuf, Vec<String>) {
    let mut base = PathBuf::new();
    let mut rest = Vec::new();
    for component in glob.components() {
        let part = component.as_os_str().to_string_lossy();
        if rest.is_empty() && !has_wildcard(&part) {
            base.push(component);
        } else {
            rest.push(part.into_owned());
        }
    }
    (base, rest)
}

/// Which event paths are ours. Pure, so it is tested without a file system.
#[derive(Debug, Clone)]
struct Targets {
    /// File names of the config file and of its symlink target.
    config_names: Vec<OsString>,
    globs: Vec<GlobTarget>,
}

#[derive(Debug, Clone)]
struct GlobTarget {
    /// One pattern per path component, in order.
    parts: Vec<glob::Pattern>,
}

impl Targets {
    fn new(config_path: &Path, include_globs: &[String]) -> Targets {
        let config_path = absolute(config_path);
        let mut config_names: Vec<OsString> = config_path
            .file_name()
            .into_iter()
            .map(Into::into)
            .collect();
        if let Some(name) = std::fs::canonicalize(&config_path)
            .ok()
            .and_then(|t| t.file_name().map(OsString::from))
        {
            config_names.push(name);
        }
        let config_dir = parent_dir(&config_path);
        let globs = include_globs
            .iter()
            .map(|glob| GlobTarget {
                parts: absolute(&config_dir.join(glob))
                    .components()
                    .map(|c| {
                        let part = c.as_os_str().to_string_lossy();
                        // A part that is not a valid pattern is matched literally.
                        glob::Pattern::new(&part).unwrap_or_else(|_| {
                            glob::Pattern::new(&glob::Pattern::escape(&part))
                                .expect("an escaped string is a valid pattern")
                        })
                    })
                    .collect(),
            })
            .collect();
        Targets {
            config_names,
            globs,
        }
    }

    /// Whether an event may change what the config loads. Reads (opens and
    /// closes without writing) never do: the reload itself reads every file.
    fn is_relevant(&self, event: &notify::Event) -> bool {
        if event.need_rescan() {
            return true;
        }
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
            EventKind::Access(_) => return false,
            _ => {}
        }
        event.paths.is_empty() || event.paths.iter().any(|p| self.is_ours(p))
    }

    fn is_ours(&self, path: &Path) -> bool {
        let Some(name) = path.file_name() else {
            return true;
        };
        // A ConfigMap mount's `..data` symlink and `..<timestamp>` folders.
        if name.as_encoded_bytes().starts_with(b"..") {
            return true;
        }
        if self.config_names.iter().any(|n| n == name) {
            return true;
        }
        let name = name.to_string_lossy();
        let path = absolute(path);
        self.globs.iter().any(|g| {
            // Matching the file name alone also catches a folder reached
            // through another path (a symlinked parent).
            g.parts.last().is_some_and(|last| last.matches(&name)) || g.leads_to(&path)
        })
    }
}

impl GlobTarget {
    /// Whether `path` matches this glob or is a folder on the way to a match
    /// (a new `watches.d`, or a new subfolder of a `*/x.toml` glob).
    fn leads_to(&self, path: &Path) -> bool {
        let mut count = 0;
        for (part, component) in self.parts.iter().zip(path.components()) {
            if part.as_str() == "**" {
                return true;
            }
            if !part.matches(&component.as_os_str().to_string_lossy()) {
                return false;
            }
            count += 1;
        }
        count == path.components().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    const QUIET: Duration = Duration::from_millis(100);
    /// Generous: the machine may be loaded. Only the "no signal" checks wait
    /// this long on purpose.
    const SIGNAL_WITHIN: Duration = Duration::from_secs(5);
    const NO_SIGNAL_FOR: Duration = Duration::from_millis(600);

    async fn signalled(changes: &mut mpsc::Receiver<()>) -> bool {
        tokio::time::timeout(SIGNAL_WITHIN, changes.recv())
            .await
            .is_ok()
    }

    async fn silent(changes: &mut mpsc::Receiver<()>) -> bool {
        tokio::time::timeout(NO_SIGNAL_FOR, changes.recv())
            .await
            .is_err()
    }

    fn glob_in(dir: &Path, pattern: &str) -> String {
        dir.join(pattern).to_string_lossy().into_owned()
    }

    /// A config folder with `flowwatch.toml` and `watches.d/a.toml`.
    fn setup() -> (tempfile::TempDir, PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("flowwatch.toml");
        fs::write(&config, "include = [\"watches.d/*.toml\"]\n").unwrap();
        fs::create_dir(dir.path().join("watches.d")).unwrap();
        fs::write(dir.path().join("watches.d/a.toml"), "").unwrap();
        let glob = glob_in(dir.path(), "watches.d/*.toml");
        (dir, config, glob)
    }

    #[tokio::test]
    async fn editing_the_config_file_signals() {
        let (_dir, config, glob) = setup();
        let (_w, mut changes) = FileWatcher::spawn(&config, &[glob], QUIET).unwrap();
        fs::write(&config, "# edited\n").unwrap();
        assert!(signalled(&mut changes).await, "no signal after an edit");
    }

    #[tokio::test]
    async fn a_new_file_in_an_include_folder_signals() {
        let (dir, config, glob) = setup();
        let (_w, mut changes) = FileWatcher::spawn(&config, &[glob], QUIET).unwrap();
        fs::write(dir.path().join("watches.d/b.toml"), "").unwrap();
        assert!(signalled(&mut changes).await, "no signal after a new file");
    }

    #[tokio::test]
    async fn deleting_an_included_file_signals() {
        let (dir, config, glob) = setup();
        let (_w, mut changes) = FileWatcher::spawn(&config, &[glob], QUIET).unwrap();
        fs::remove_file(dir.path().join("watches.d/a.toml")).unwrap();
        assert!(signalled(&mut changes).await, "no signal after a delete");
    }

    #[tokio::test]
    async fn reading_the_files_does_not_signal() {
        let (dir, config, glob) = setup();
        let (_w, mut changes) = FileWatcher::spawn(&config, &[glob], QUIET).unwrap();
        fs::read(&config).unwrap();
        fs::read(dir.path().join("watches.d/a.toml")).unwrap();
        assert!(silent(&mut changes).await, "a read was taken for a change");
    }

    #[tokio::test]
    async fn other_files_in_the_config_folder_do_not_signal() {
        let (dir, config, glob) = setup();
        let (_w, mut changes) = FileWatcher::spawn(&config, &[glob], QUIET).unwrap();
        // e.g. the state file kept next to the config: it changes every second.
        fs::write(dir.path().join("state.json"), "{}").unwrap();
        fs::write(dir.path().join("watches.d/notes.txt"), "").unwrap();
        assert!(silent(&mut changes).await, "an unrelated file signalled");
    }

    #[tokio::test]
    async fn a_configmap_style_symlink_swap_signals() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path();
        fs::create_dir(mount.join("..2026_x")).unwrap();
        fs::write(mount.join("..2026_x/watches.toml"), "# v1\n").unwrap();
        fs::write(mount.join("..2026_x/flowwatch.toml"), "# v1\n").unwrap();
        symlink("..2026_x", mount.join("..data")).unwrap();
        symlink("..data/watches.toml", mount.join("watches.toml")).unwrap();
        symlink("..data/flowwatch.toml", mount.join("flowwatch.toml")).unwrap();
        let config = mount.join("flowwatch.toml");
        let globs = [glob_in(mount, "watches.toml")];
        let (_w, mut changes) = FileWatcher::spawn(&config, &globs, QUIET).unwrap();

        fs::create_dir(mount.join("..2026_y")).unwrap();
        fs::write(mount.join("..2026_y/watches.toml"), "# v2\n").unwrap();
        fs::write(mount.join("..2026_y/flowwatch.toml"), "# v2\n").unwrap();
        symlink("..2026_y", mount.join("..data_tmp")).unwrap();
        fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
        // The swap alone must be noticed; the clean-up comes after it.
        assert!(signalled(&mut changes).await, "no signal after the swap");
        assert_eq!(fs::read_to_string(&config).unwrap(), "# v2\n");
        fs::remove_dir_all(mount.join("..2026_x")).unwrap();
        assert!(
            signalled(&mut changes).await,
            "no signal after the clean-up"
        );
    }

    #[tokio::test]
    async fn a_burst_of_writes_signals_once_or_twice() {
        let (dir, config, glob) = setup();
        // Longer than the gaps below even on a loaded machine.
        let quiet = Duration::from_millis(300);
        let (_w, mut changes) = FileWatcher::spawn(&config, &[glob], quiet).unwrap();
        let file = dir.path().join("watches.d/a.toml");
        // Written on another thread while the receiver waits (never blocking
        // the runtime), so every signal sent is counted rather than merged in
        // the channel.
        let writer = std::thread::spawn(move || {
            for i in 0..20 {
                fs::write(&file, format!("# {i}\n")).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        assert!(signalled(&mut changes).await, "no signal after the burst");
        let mut signals = 1;
        while tokio::time::timeout(quiet * 3, changes.recv())
            .await
            .is_ok()
        {
            signals += 1;
            assert!(signals <= 20, "signals keep coming");
        }
        writer.join().unwrap();
        assert!(signals <= 2, "{signals} signals for one burst");
    }

    #[tokio::test]
    async fn an_include_folder_created_later_is_watched_once_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("flowwatch.toml");
        fs::write(&config, "").unwrap();
        let glob = glob_in(dir.path(), "later/watches.d/*.toml");
        let (_w, mut changes) = FileWatcher::spawn(&config, &[glob], QUIET).unwrap();

        fs::create_dir(dir.path().join("later")).unwrap();
        assert!(
            signalled(&mut changes).await,
            "no signal for the new parent"
        );
        fs::create_dir(dir.path().join("later/watches.d")).unwrap();
        assert!(
            signalled(&mut changes).await,
            "no signal for the new folder"
        );
        fs::write(dir.path().join("later/watches.d/a.toml"), "").unwrap();
        assert!(signalled(&mut changes).await, "no signal for a file in it");
    }

    #[tokio::test]
    async fn rewatch_follows_a_new_include_folder() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("etc/flowwatch.toml");
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        fs::write(&config, "").unwrap();
        let (w, mut changes) = FileWatcher::spawn(&config, &[], QUIET).unwrap();
        fs::write(dir.path().join("elsewhere/a.toml"), "").unwrap();
        assert!(
            silent(&mut changes).await,
            "signalled before the glob existed"
        );

        w.rewatch(&config, &[glob_in(dir.path(), "elsewhere/*.toml")]);
        fs::write(dir.path().join("elsewhere/b.toml"), "").unwrap();
        assert!(signalled(&mut changes).await, "no signal after rewatch");
    }

    #[test]
    fn a_watch_error_names_the_folder() {
        let error = FileWatchError::Watch {
            path: PathBuf::from("/etc/fw/watches.d"),
            source: notify::Error::new(notify::ErrorKind::MaxFilesWatch),
        };
        assert_eq!(error.to_string(), "cannot watch /etc/fw/watches.d");
    }

    #[test]
    fn a_glob_splits_at_its_first_wildcard() {
        let (base, rest) = split_glob(Path::new("/etc/fw/watches.d/*.toml"));
        assert_eq!(base, Path::new("/etc/fw/watches.d"));
        assert_eq!(rest, ["*.toml"]);
        let (base, rest) = split_glob(Path::new("/etc/fw/*/x/*.toml"));
        assert_eq!(base, Path::new("/etc/fw"));
        assert_eq!(rest, ["*", "x", "*.toml"]);
    }

    #[test]
    fn a_glob_with_wildcard_folders_is_watched_recursively() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("flowwatch.toml");
        let folders = folders_to_watch(&config, &[glob_in(dir.path(), "teams/*/watches.toml")]);
        let root = absolute(dir.path());
        assert_eq!(
            folders.get(&root),
            Some(&RecursiveMode::NonRecursive),
            "{folders:?}"
        );
        fs::create_dir(dir.path().join("teams")).unwrap();
        let folders = folders_to_watch(&config, &[glob_in(dir.path(), "teams/*/watches.toml")]);
        assert_eq!(
            folders.get(&root.join("teams")),
            Some(&RecursiveMode::Recursive),
            "{folders:?}"
        );
    }

    #[test]
    fn one_folder_reached_by_two_paths_is_watched_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("flowwatch.toml");
        symlink(dir.path(), dir.path().join("alias")).unwrap();
        let folders = folders_to_watch(&config, &[glob_in(&dir.path().join("alias"), "*.toml")]);
        assert_eq!(folders.len(), 1, "{folders:?}");
    }

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    fn targets() -> Targets {
        Targets::new(
            Path::new("/etc/fw/flowwatch.toml"),
            &[
                "/etc/fw/watches.d/*.toml".to_owned(),
                "/srv/teams/*/w.toml".to_owned(),
            ],
        )
    }

    #[test]
    fn events_on_our_files_are_relevant_and_others_are_not() {
        use notify::event::{CreateKind, ModifyKind, RemoveKind};
        let t = targets();
        let modify = EventKind::Modify(ModifyKind::Any);
        for ours in [
            "/etc/fw/flowwatch.toml",
            "/etc/fw/watches.d/a.toml",
            "/etc/fw/..data",
            "/etc/fw/..2026_05_01_10_00_00.123",
            "/etc/fw/watches.d",
            "/srv/teams/search",
            "/srv/teams/search/w.toml",
        ] {
            assert!(t.is_relevant(&event(modify, ours)), "{ours} not relevant");
        }
        for theirs in [
            "/etc/fw/state.json",
            "/etc/fw/watches.d/a.toml.swp",
            "/srv/teams/search/x.txt",
        ] {
            assert!(!t.is_relevant(&event(modify, theirs)), "{theirs} relevant");
        }
        let created = EventKind::Create(CreateKind::File);
        assert!(t.is_relevant(&event(created, "/etc/fw/watches.d/b.toml")));
        let removed = EventKind::Remove(RemoveKind::File);
        assert!(t.is_relevant(&event(removed, "/etc/fw/watches.d/b.toml")));
    }

    #[test]
    fn reads_are_not_relevant_but_a_closed_write_is() {
        let t = targets();
        let path = "/etc/fw/flowwatch.toml";
        assert!(!t.is_relevant(&event(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            path
        )));
        assert!(!t.is_relevant(&event(
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            path
        )));
        assert!(t.is_relevant(&event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            path
        )));
    }

    #[test]
    fn a_rescan_request_is_relevant() {
        let rescan = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(targets().is_relevant(&rescan));
    }
}
