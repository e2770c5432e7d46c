//! Active/standby (issue 12): only the instance that holds the lease polls.
//!
//! In: the validated `Config` with `[ha]`, the process's stop and reload
//! signals. Out: `ha.leading` / `ha.standby` events, `flowwatch_leader`,
//! `/readyz`, and, while leading, the same loop `run.rs` runs alone, with
//! its state in the engine instead of a file.
//!
//! Every instance serves `/healthz` and `/metrics` and keeps its config
//! current. A standby campaigns every `retry` and, between tries, watches
//! the lease so a resignation hands over at once. A term (term.rs) is one
//! run of the loop: it loads the leader's last snapshot before its first
//! request, polls only through the `Gate` (open until last renewal +
//! `renew_deadline`), and ends when the lease cannot be renewed in time (the
//! gate has closed already) or on a stop signal (then the lease is given up
//! after the final state write, so the standby takes over at once). The
//! engines (etcd.rs, kubernetes/) sit behind `engine::Engine`.

// Without an engine (the default build) config::load refuses `[ha]`, so
// nothing instantiates the election loop.
#![cfg_attr(
    not(any(feature = "etcd", feature = "kubernetes")),
    allow(dead_code, unused_imports)
)]

pub mod engine;
#[cfg(feature = "etcd")]
mod etcd;
mod gate;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
mod term;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, HaBackend, HaSettings};
use crate::daemon::api::ApiInbox;
use crate::daemon::{DaemonError, Reload, Report, Verdict};
use crate::error::error_chain;
use crate::event::{self, Event};
use crate::poll::SdkFetcher;
use crate::run::{StartOptions, StopSignals};
use crate::service::files::FileWatcher;
use crate::service::http::Health;
use crate::service::metrics::Metrics;
use crate::service::notify::Notifier;

pub use engine::EngineError;
use engine::{Campaign, Engine};
#[cfg(feature = "etcd")]
use etcd::Etcd;
pub use gate::Gate;

/// Without an engine `config::load` refuses `[ha]` (config/ha.rs,
/// `built_with`), so this is never reached from a loaded config.
#[cfg(not(any(feature = "etcd", feature = "kubernetes")))]
pub async fn start(_config: Config, _options: StartOptions) -> Result<Report, DaemonError> {
    Err(DaemonError::Coordination(
        "built without a standby engine (the `etcd` and `kubernetes` features)".into(),
    ))
}

/// Runs `flowwatch run` with `[ha]`: stands by, leads when elected, and
/// returns the last term's report after a stop signal.
#[cfg(any(feature = "etcd", feature = "kubernetes"))]
pub async fn start(config: Config, options: StartOptions) -> Result<Report, DaemonError> {
    let ha = config.ha.clone().expect("ha::start runs only with [ha]");
    if let Some(state) = &config.state {
        tracing::warn!(
            path = %state.path.display(),
            "[state] is not used with [ha]: the snapshot lives in the engine"
        );
    }
    let shutdown = options.shutdown;
    let hurry = CancellationToken::new();
    crate::run::spawn_stop_on_signals(StopSignals::install(), shutdown.clone(), hurry.clone());
    let (reload_tx, reloads) = mpsc::channel(2);
    let files = if options.live_reload {
        crate::run::spawn_reload_on_sighup(reload_tx.clone());
        crate::run::watch_files(&config, reload_tx)
    } else {
        None
    };
    let fetch = SdkFetcher::new(
        &config.aws,
        config.poll.request_timeout,
        options.credentials,
    )
    .await;
    let metrics = Arc::new(Metrics::new().with_leader());
    let health = Arc::new(Health::new());
    health.set_standby(Some(None));
    let api = crate::run::serve_http(&config, &health, &metrics, &shutdown).await?;
    let me = Instance {
        ha: ha.clone(),
        config,
        health,
        metrics,
        gate: Gate::closed(),
        notifier: Notifier::from_env(),
        files,
        api,
    };
    let session = Session {
        fetch,
        once: options.once,
        reloads,
        shutdown,
        hurry,
    };
    match &ha.backend {
        #[cfg(feature = "etcd")]
        HaBackend::Etcd {
            endpoints,
            election,
        } => {
            let etcd = Etcd::new(endpoints, election, &ha.identity, ha.lease, ha.retry);
            me.run(etcd, session).await
        }
        #[cfg(feature = "kubernetes")]
        HaBackend::Kubernetes {
            lease_name,
            namespace,
        } => {
            let kube = kubernetes::Kube::connect(lease_name, namespace.as_deref(), &ha)
                .await
                .map_err(DaemonError::Coordination)?;
            me.run(kube, session).await
        }
        // config::load has refused it already (config/ha.rs, `built_with`).
        #[allow(unreachable_patterns)]
        _ => Err(DaemonError::Coordination(
            "built without the engine [ha] backend names".into(),
        )),
    }
}

/// What a run of the election needs from the process, whatever the engine.
struct Session {
    fetch: SdkFetcher,
    once: bool,
    reloads: mpsc::Receiver<Reload>,
    shutdown: CancellationToken,
    hurry: CancellationToken,
}

/// This process's side of the election.
pub(super) struct Instance {
    ha: HaSettings,
    /// The config as last loaded (start, reload, or a term's start).
    config: Config,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    gate: Gate,
    /// systemd: READY and the watchdog while standing by (a term's loop
    /// sends its own).
    notifier: Notifier,
    /// The config and include files, watched for the whole process.
    files: Option<Arc<FileWatcher>>,
    /// The `/v1` API's requests: relayed to a term's loop while leading.
    api: Option<ApiInbox>,
}

/// How a term ended.
pub(super) struct Ended {
    report: Report,
    /// By a stop signal (or `--once`), not by losing the lease.
    stopped: bool,
}

impl Instance {
    fn stand_by(&self, leader: Option<&str>) {
        self.gate.close();
        self.metrics.set_leader(false);
        self.health.set_standby(Some(leader.map(str::to_string)));
        self.notifier
            .status(&format!("standby; leader: {}", leader.unwrap_or("unknown")));
        event::emit(&Event::HaStandby {
            identity: &self.ha.identity,
            leader,
        });
    }

    /// Stands by and leads in turn until a stop signal; returns the last
    /// term's report.
    async fn run<E: Engine>(
        mut self,
        mut engine: E,
        session: Session,
    ) -> Result<Report, DaemonError> {
        let Session {
            fetch,
            once,
            mut reloads,
            shutdown,
            hurry,
        } = session;
        self.stand_by(None);
        // A standby is a healthy, started service: systemd must not time it out.
        self.notifier.ready();
        let mut report = Report {
            verdict: Verdict::Success,
            watches: Vec::new(),
        };
        loop {
            let Some((term, granted_at)) =
                self.campaign(&mut engine, &mut reloads, &shutdown).await
            else {
                break;
            };
            let leads = term::Leads {
                engine: engine.clone(),
                term,
                granted_at,
            };
            let (ended, rx) = self
                .lead(leads, fetch.clone(), once, reloads, &shutdown, &hurry)
                .await?;
            reloads = rx;
            report = ended.report;
            if ended.stopped || shutdown.is_cancelled() {
                break;
            }
            self.stand_by(None);
        }
        Ok(report)
    }

    /// Tries every `retry` (or at once when the lease is released) until
    /// this instance leads; `None` after a stop signal. Beats health
    /// meanwhile and keeps the config current on reloads.
    async fn campaign<E: Engine>(
        &mut self,
        engine: &mut E,
        reloads: &mut mpsc::Receiver<Reload>,
        shutdown: &CancellationToken,
    ) -> Option<(E::Term, Instant)> {
        let mut announced: Option<String> = None;
        loop {
            self.health.beat();
            if shutdown.is_cancelled() {
                return None;
            }
            let mut wait_for = None;
            match engine.campaign().await {
                Ok(Campaign::Won { term, granted_at }) => return Some((term, granted_at)),
                Ok(Campaign::Lost { leader, seen }) => {
                    if leader.is_some() && leader != announced {
                        self.stand_by(leader.as_deref());
                        announced = leader;
                    }
                    wait_for = Some(seen);
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&*error), "cannot campaign; retrying");
                }
            }
            let retry = self.ha.retry;
            let mut waiting = engine.clone();
            let pause = async move {
                match wait_for {
                    Some(seen) => waiting.wait_for_vacancy(seen, retry).await,
                    None => tokio::time::sleep(retry).await,
                }
            };
            tokio::pin!(pause);
            let mut beat = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return None,
                    _ = beat.tick() => {
                        self.health.beat();
                        self.notifier.watchdog();
                    }
                    Some(_) = reloads.recv() => self.reload(),
                    true = refuse_next(&mut self.api) => {}
                    () = &mut pause => break,
                }
            }
        }
    }

    /// A standby's reload: the next term runs on the new config; a bad one
    /// is reported and the old one stays.
    fn reload(&mut self) {
        let loaded = config::load(&self.config.path);
        if let Some(files) = &self.files {
            let include = loaded
                .as_ref()
                .map_or(&self.config.include, |new| &new.include);
            files.rewatch(&self.config.path, include);
        }
        match loaded {
            Ok(config) => {
                self.metrics.reload(true);
                self.config = config;
            }
            Err(error) => {
                self.metrics.reload(false);
                event::emit(&Event::ReloadFailed {
                    error: &error_chain(&error),
                });
            }
        }
    }
}

/// The next API request while standing by, dropped (its caller hears 503);
/// never without the API.
async fn refuse_next(api: &mut Option<ApiInbox>) -> bool {
    match api {
        Some(inbox) => inbox.refuse_next().await,
        None => std::future::pending().await,
    }
}
