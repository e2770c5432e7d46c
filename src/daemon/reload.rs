//! Reload: re-read the config, tell a real change from an echo, and apply the
//! difference to the running loop. A bad config keeps the old one in force.
//!
//! Applied live: the watch list, every `[poll]` key and `[log] level`.
//! `[aws]`, `[state]`, `[http]` and `[log] format` (and a `request_timeout`
//! above the one the SDK client was built with) take a restart, and the
//! warning names each such key (issue 7.2).

use std::time::Duration;

use tokio::time::Instant;

use super::book::with_labels;
use super::{Daemon, DaemonError};
use crate::config::{self, AwsSettings, Config, HttpSettings, LogFormat, StateSettings};
use crate::error::error_chain;
use crate::event::{self, Event};
use crate::poll::{Fetch, Lister};

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// SIGHUP (or `systemctl reload`): always re-read and reported.
    Signal,
    /// A change to the config or an include file.
    Files,
}

/// What the process was started with that only a restart changes.
pub(super) struct Launch {
    aws: AwsSettings,
    state: Option<StateSettings>,
    http: Option<HttpSettings>,
    log_format: LogFormat,
    /// The SDK client's own per-attempt timeout.
    pub request_timeout: Duration,
}

impl Launch {
    pub fn of(config: &Config) -> Launch {
        Launch {
            aws: config.aws.clone(),
            state: config.state.clone(),
            http: config.http.clone(),
            log_format: config.log.format,
            request_timeout: config.poll.request_timeout,
        }
    }

    /// The keys of `new` that differ from what runs and need a restart.
    fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut differs = |key, differs: bool| {
            if differs {
                keys.push(key);
            }
        };
        differs("aws.region", self.aws.region != new.aws.region);
        differs("aws.profile", self.aws.profile != new.aws.profile);
        differs(
            "aws.endpoint_url",
            self.aws.endpoint_url != new.aws.endpoint_url,
        );
        differs("state.path", self.state != new.state);
        differs("http.listen", self.http != new.http);
        differs("log.format", self.log_format != new.log.format);
        differs(
            "poll.request_timeout",
            new.poll.request_timeout > self.request_timeout,
        );
        keys
    }
}

/// Every settings key whose value differs between two configs, as
/// `table.key`, in file order.
pub(super) fn changed_settings(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut differs = |key, differs: bool| {
        if differs {
            keys.push(key);
        }
    };
    let (a, b) = (&old.aws, &new.aws);
    differs("aws.region", a.region != b.region);
    differs("aws.profile", a.profile != b.profile);
    differs("aws.endpoint_url", a.endpoint_url != b.endpoint_url);
    let (a, b) = (&old.poll, &new.poll);
    differs(
        "poll.interval_initial",
        a.interval_initial != b.interval_initial,
    );
    differs("poll.interval_max", a.interval_max != b.interval_max);
    differs("poll.multiplier", a.multiplier != b.multiplier);
    differs("poll.jitter", a.jitter != b.jitter);
    differs("poll.rate_limit", a.rate_limit != b.rate_limit);
    differs("poll.max_in_flight", a.max_in_flight != b.max_in_flight);
    differs(
        "poll.request_timeout",
        a.request_timeout != b.request_timeout,
    );
    differs("poll.max_watch", a.max_watch != b.max_watch);
    differs(
        "poll.not_found_grace",
        a.not_found_grace != b.not_found_grace,
    );
    differs(
        "poll.failure_details",
        a.failure_details != b.failure_details,
    );
    differs(
        "poll.failure_details_max_pages",
        a.failure_details_max_pages != b.failure_details_max_pages,
    );
    differs("log.format", old.log.format != new.log.format);
    differs("log.level", old.log.level != new.log.level);
    differs("state.path", old.state != new.state);
    differs("http.listen", old.http != new.http);
    keys
}

impl<F: Fetch + Lister> Daemon<F> {
    /// Re-reads the config and applies the new watch set; a bad config keeps
    /// the old one in force. A file change that reads the same as the last
    /// attempt (the echo of an edit already reloaded by SIGHUP, or an
    /// editor's second write) is no news and changes nothing.
    pub(super) fn reload(&mut self, trigger: Reload, now: Instant) {
        let loaded = config::load(&self.config.path)
            .map_err(DaemonError::from)
            .and_then(|mut new| {
                let mut watches = std::mem::take(&mut new.watches);
                self.resolve_regions(&mut watches)?;
                new.watches = watches;
                Ok(new)
            })
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
        if let Some(files) = &self.edges.files {
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

    /// Applies a validated config: settings that apply live, then watches
    /// removed, added, and kept (kept ones keep status, backoff and counts;
    /// their labels may change).
    fn apply(&mut self, new: Config, now: Instant) {
        let changed = changed_settings(&self.config, &new);
        if new.poll != self.config.poll {
            self.scheduler.set_policy(&new.poll, now);
        }
        if new.log.level != self.config.log.level
            && let Some(log_level) = &self.log_level
        {
            log_level.set(new.log.level);
        }
        let restart = self.launch.restart_needed(&new);
        if !restart.is_empty() {
            let keys = restart.join(", ");
            tracing::warn!(
                keys = %keys,
                "changes to {keys} take effect on restart; the rest of the reload is applied"
            );
        }
        let diff = self.config.watches.diff(&new.watches);
        for key in &diff.removed {
            if self.book.keeper_of(key).is_some() {
                // A spelling merged into another watch: nothing runs for it.
                self.book.forget_alias(key);
                continue;
            }
            let heir = self
                .book
                .aliases()
                .find(|(alias, keeper)| *keeper == key && new.watches.get(alias).is_some())
                .map(|(alias, _)| alias.clone());
            if let Some(heir) = heir {
                // Still watched under another spelling the config keeps.
                let watch = new.watches.get(&heir).expect("checked above").clone();
                self.book.rekey(key, &heir, watch);
                if let Some(state) = &self.edges.state {
                    state.forget(key.as_str());
                    if let Some(tracked) = self.book.get(&heir) {
                        state.mark(heir.as_str(), tracked.tracker.record());
                    }
                }
                continue;
            }
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
        // A merged spelling's labels stay on the watch it merged into.
        let merged: Vec<_> = self
            .book
            .aliases()
            .filter_map(|(alias, keeper)| Some((keeper.clone(), new.watches.get(alias)?.clone())))
            .collect();
        for (keeper, alias) in merged {
            if let Some(tracked) = self.book.get_mut(&keeper) {
                tracked.watch = with_labels(&tracked.watch, &alias.labels);
            }
        }
        event::emit(&Event::Reloaded {
            added: diff.added.len(),
            removed: diff.removed.len(),
            watches: self.book.len(),
            changed: &changed,
        });
        let flows = new.flows.clone();
        // The config as last read: the next reload compares with it (what
        // needs a restart is compared with `launch`).
        self.config = new;
        self.set_flows(&flows, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        let watch = "[[watch]]\nexecution_arn = \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-1\"\n";
        config::parse_str(&format!("{text}\n{watch}"), Path::new("flowwatch.toml"))
            .expect("a valid test config")
    }

    #[test]
    fn changed_settings_name_each_key_that_differs() {
        let old = parse("[poll]\nrate_limit = 10.0\n[log]\nlevel = \"info\"");
        let new = parse("[poll]\nrate_limit = 2.0\n[log]\nlevel = \"debug\"\n[http]\n");
        assert_eq!(
            changed_settings(&old, &new),
            ["poll.rate_limit", "log.level", "http.listen"]
        );
        assert!(changed_settings(&old, &old).is_empty());
    }

    #[test]
    fn only_aws_state_http_log_format_and_a_longer_timeout_need_a_restart() {
        let old = parse("[poll]\nrequest_timeout = \"10s\"");
        let launch = Launch::of(&old);
        let live =
            parse("[poll]\nrequest_timeout = \"5s\"\nrate_limit = 1.0\n[log]\nlevel = \"warn\"");
        assert!(launch.restart_needed(&live).is_empty());
        let restart = parse(
            "[aws]\nregion = \"eu-west-1\"\n[poll]\nrequest_timeout = \"20s\"\n[log]\nformat = \"text\"\n[state]\n",
        );
        assert_eq!(
            launch.restart_needed(&restart),
            [
                "aws.region",
                "state.path",
                "log.format",
                "poll.request_timeout"
            ]
        );
    }
}
