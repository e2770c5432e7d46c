//! Process wiring for `flowwatch run` (and the demo): the SDK client, the
//! state file, the HTTP listener, systemd, signals and file watching, set up
//! around the loop, which then runs to the end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::{Daemon, DaemonError, Edges, Reload, Report};
use crate::error::error_chain;
use crate::event::{self, Event};
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
}

impl StartOptions {
    pub fn new(once: bool) -> StartOptions {
        StartOptions {
            once,
            credentials: None,
            shutdown: CancellationToken::new(),
            live_reload: true,
        }
    }
}

/// Wires the edges (SDK client, state file, HTTP, systemd, signals, file
/// watching) around the loop and runs it to the end.
pub async fn start(config: Config, options: StartOptions) -> Result<Report, DaemonError> {
    let shutdown = options.shutdown;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        stop.cancel();
    });
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
    if let Some(http) = &config.http {
        service::http::serve(
            http.listen,
            health.clone(),
            metrics.clone(),
            shutdown.clone(),
        )
        .await
        .map_err(|source| DaemonError::Http {
            listen: http.listen,
            source,
        })?;
    }
    let (state, restored) = match &config.state {
        None => (None, Snapshot::default()),
        Some(settings) => {
            let restored = match state::load(&settings.path) {
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
            let writer = StateWriter::spawn(settings.path.clone(), restored.clone(), STATE_EVERY);
            (Some(writer), restored)
        }
    };
    let files = if options.live_reload {
        match FileWatcher::spawn(&config.path, &config.include, FILES_QUIET) {
            Ok((watcher, mut changes)) => {
                let reload_tx = reload_tx.clone();
                tokio::spawn(async move {
                    while changes.recv().await.is_some() {
                        let _ = reload_tx.try_send(Reload::Files); // one pending is enough
                    }
                });
                Some(watcher)
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "config files are not watched; SIGHUP still reloads");
                None
            }
        }
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
    let daemon = Daemon::new(config, fetch, edges, Instant::now())?;
    Ok(daemon.run(reload_rx, shutdown).await)
}

/// State writes are coalesced to at most one per this period.
const STATE_EVERY: Duration = Duration::from_secs(1);
/// A changed file is re-read once it has been quiet this long, so a file
/// being written is not read half-way.
const FILES_QUIET: Duration = Duration::from_millis(300);

/// Returns on SIGTERM or SIGINT.
pub async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM can be handled on unix");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT can be handled on unix");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn spawn_reload_on_sighup(reload_tx: mpsc::Sender<Reload>) {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered before READY: SIGHUP's default action would end the process.
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP can be handled on unix");
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = reload_tx.try_send(Reload::Signal);
        }
    });
}
