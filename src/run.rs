//! Process wiring for `flowwatch run` (and the demo): the SDK client, the
//! state file, the HTTP listener, systemd, signals and file watching, set up
//! around the loop, which then runs to the end.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::api::{self, ApiInbox};
use crate::daemon::{Daemon, DaemonError, Edges, Reload, Report};
use crate::error::error_chain;
use crate::event::{self, Event, LevelHandle};
use crate::poll::SdkFetcher;
use crate::service;
use crate::service::files::FileWatcher;
use crate::service::http::Health;
use crate::service::metrics::Metrics;
use crate::service::notify::Notifier;
use crate::state::{self, Loaded, Snapshot, StateWriter};

/// How `start` runs the loop.
pub struct StartOptions {
    /// `--once`: stop when every watch is terminal or abandoned.
    pub once: bool,
    /// Credentials that replace the standard chain (the demo's static ones).
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    /// Cancelled by SIGTERM/SIGINT; callers may cancel it too.
    pub shutdown: CancellationToken,
    /// Reload on SIGHUP and on changes to the config and include files.
    pub live_reload: bool,
    /// Sets `[log] level` when a reload changes it (`event::init`'s handle).
    pub log_level: Option<LevelHandle>,
}

impl StartOptions {
    pub fn new(once: bool) -> StartOptions {
        StartOptions {
            once,
            credentials: None,
            shutdown: CancellationToken::new(),
            live_reload: true,
            log_level: None,
        }
    }
}

/// Wires the edges (SDK client, state file, HTTP, systemd, signals, file
/// watching) around the loop and runs it to the end.
pub async fn start(config: Config, options: StartOptions) -> Result<Report, DaemonError> {
    if config.ha.is_some() {
        return crate::ha::start(config, options).await;
    }
    // Signal handlers first, before anything that can block (the SDK's
    // region chain, binding HTTP, reading state): a stop during start-up is
    // not lost, and a second one is not fatal (issue 7.8).
    let shutdown = options.shutdown;
    let hurry = CancellationToken::new();
    spawn_stop_on_signals(StopSignals::install(), shutdown.clone(), hurry.clone());
    let (reload_tx, reload_rx) = mpsc::channel(2);
    if options.live_reload {
        spawn_reload_on_sighup(reload_tx.clone());
    }
    let fetch = SdkFetcher::new(
        &config.aws,
        config.poll.request_timeout,
        options.credentials,
    )
    .await;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    let api_inbox = serve_http(&config, &health, &metrics, &shutdown).await?;
    let (state, restored) = match &config.state {
        None => (None, Snapshot::default()),
        Some(settings) => {
            let lock = state::lock(&settings.path)?;
            let restored = match state::load(&settings.path)? {
                Loaded::Fresh => Snapshot::default(),
                Loaded::Restored(snapshot) => snapshot,
                Loaded::SetAside { moved_to, error } => {
                    event::emit(&Event::StateSetAside {
                        path: &settings.path,
                        moved_to: &moved_to,
                        error: &error,
                    });
                    Snapshot::default()
                }
            };
            let writer = StateWriter::spawn(lock, restored.clone(), STATE_EVERY);
            (Some(writer), restored)
        }
    };
    let files = if options.live_reload {
        watch_files(&config, reload_tx.clone())
    } else {
        None
    };
    let edges = Edges {
        default_region: fetch.default_region(),
        state,
        restored,
        metrics,
        health,
        notifier: Notifier::from_env(),
        files,
        once: options.once,
    };
    let mut daemon = Daemon::new(config, fetch, edges, Instant::now())?.with_hurry(hurry);
    if let Some(inbox) = api_inbox {
        daemon = daemon.with_api(inbox);
    }
    if let Some(log_level) = options.log_level {
        daemon = daemon.with_log_level(log_level);
    }
    Ok(daemon.run(reload_rx, shutdown).await)
}

/// Serves `[http]` (health, metrics and the `/v1` API) when configured;
/// the inbox is where the API's requests reach the loop.
pub(crate) async fn serve_http(
    config: &Config,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<Option<ApiInbox>, DaemonError> {
    let Some(http) = &config.http else {
        return Ok(None);
    };
    let failed = |source| DaemonError::Http {
        listen: http.listen,
        source,
    };
    // The watch API (issue 10) answers from the loop through a channel.
    let token = match &http.token_file {
        Some(path) => Some(service::api::read_token(path).map_err(failed)?),
        None => None,
    };
    let (client, inbox) = api::channel();
    let routes = service::api::router(http, client, token, health.clone(), shutdown.clone());
    service::http::serve_routes(
        http.listen,
        service::http::limits_for(http),
        health.clone(),
        metrics.clone(),
        routes,
        shutdown.clone(),
    )
    .await
    .map_err(failed)?;
    Ok(Some(inbox))
}

/// Watches the config and include files, asking for a reload when they
/// change; `None` (with a warning) when they cannot be watched.
pub(crate) fn watch_files(
    config: &Config,
    reload_tx: mpsc::Sender<Reload>,
) -> Option<Arc<FileWatcher>> {
    match FileWatcher::spawn(&config.path, &config.include, FILES_QUIET) {
        Ok((watcher, mut changes)) => {
            tokio::spawn(async move {
                while changes.recv().await.is_some() {
                    let _ = reload_tx.try_send(Reload::Files); // one pending is enough
                }
            });
            Some(Arc::new(watcher))
        }
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "config files are not watched; SIGHUP still reloads");
            None
        }
    }
}

/// State writes are coalesced to at most one per this period.
pub(crate) const STATE_EVERY: Duration = Duration::from_secs(1);
/// A changed file is re-read once it has been quiet this long, so a file
/// being written is not read half-way.
const FILES_QUIET: Duration = Duration::from_millis(300);

/// SIGTERM and SIGINT, handled from the moment `install` returns.
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    pub fn install() -> StopSignals {
        StopSignals {
            term: signal(SignalKind::terminate()).expect("SIGTERM can be handled on unix"),
            int: signal(SignalKind::interrupt()).expect("SIGINT can be handled on unix"),
        }
    }

    /// Returns on the next SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Returns on SIGTERM or SIGINT.
pub async fn wait_for_stop_signal() {
    StopSignals::install().recv().await;
}

/// The first stop signal cancels `shutdown` (graceful), the second `hurry`
/// (stop waiting for in-flight polls).
pub(crate) fn spawn_stop_on_signals(
    mut signals: StopSignals,
    shutdown: CancellationToken,
    hurry: CancellationToken,
) {
    tokio::spawn(async move {
        signals.recv().await;
        shutdown.cancel();
        signals.recv().await;
        hurry.cancel();
    });
}

pub(crate) fn spawn_reload_on_sighup(reload_tx: mpsc::Sender<Reload>) {
    // Registered before READY: SIGHUP's default action would end the process.
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP can be handled on unix");
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = reload_tx.try_send(Reload::Signal);
        }
    });
}
