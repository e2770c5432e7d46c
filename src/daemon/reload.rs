//! Reload: re-read the config, tell a real change from an echo, and apply the
//! difference to the running loop. A bad config keeps the old one in force.

use tokio::time::Instant;

use super::{Daemon, DaemonError};
use crate::config::{self, Config};
use crate::error::error_chain;
use crate::event::{self, Event};
use crate::poll::Fetch;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// SIGHUP (or `systemctl reload`): always re-read and reported.
    Signal,
    /// A change to the config or an include file.
    Files,
}

impl<F: Fetch> Daemon<F> {
    /// Re-reads the config and applies the new watch set; a bad config keeps
    /// the old one in force. A file change that reads the same as the last
    /// attempt (the echo of an edit already reloaded by SIGHUP, or an
    /// editor's second write) is no news and changes nothing.
    pub(super) fn reload(&mut self, trigger: Reload, now: Instant) {
        let loaded = config::load(&self.config.path)
            .map_err(DaemonError::from)
            .and_then(|new| self.check_regions(&new.watches).map(|()| new))
            .map_err(|error| error_chain(&error));
        let echo = match &loaded {
            Ok(new) => self.last_error.is_none() && *new == self.config,
            Err(error) => self.last_error.as_ref() == Some(error),
        };
        if trigger == Reload::Files && echo {
            tracing::debug!("config files changed but read the same; nothing to reload");
            return;
        }
        self.last_error = loaded.as_ref().err().cloned();
        self.edges.notifier.reloading();
        if let Some(files) = &mut self.edges.files {
            // Before applying: the watched folders follow the include globs
            // (and folders created since), whether or not the config is good.
            let include = loaded
                .as_ref()
                .map_or(&self.config.include, |new| &new.include);
            files.rewatch(&self.config.path, include);
        }
        match loaded {
            Err(error) => {
                event::emit(&Event::ReloadFailed { error: &error });
                self.edges.metrics.reload(false);
            }
            Ok(new) => {
                self.apply(new, now);
                self.edges.metrics.reload(true);
                self.start_ready(now);
            }
        }
        self.edges.notifier.ready();
        self.report_status();
    }

    /// Applies a validated config: watches removed, added, and kept (kept
    /// ones keep status, backoff and counts; their labels may change).
    fn apply(&mut self, new: Config, now: Instant) {
        if Config::settings(&new) != Config::settings(&self.config) {
            tracing::warn!(
                "a reload applies the watch list; [aws], [poll], [log], [state] and [http] changes take effect on restart"
            );
        }
        let diff = self.config.watches.diff(&new.watches);
        for key in &diff.removed {
            self.remove(key);
        }
        for key in &diff.added {
            let watch = new
                .watches
                .get(key)
                .expect("diff names keys of the new set");
            self.add(key.clone(), watch.clone(), now);
        }
        for (key, watch) in new.watches.iter() {
            if let Some(tracked) = self.book.get_mut(key) {
                tracked.watch = watch.clone();
            }
        }
        event::emit(&Event::Reloaded {
            added: diff.added.len(),
            removed: diff.removed.len(),
            watches: new.watches.len(),
        });
        // The config as last read: the next reload compares with it
        // (settings beyond the watch list stay as they started).
        self.config = new;
    }
}
