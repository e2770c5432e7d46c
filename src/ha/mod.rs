//! Active/standby (issue 12): only the instance that holds the lease polls.
//!
//! In: the validated `Config` with `[ha]`, the process's stop and reload
//! signals. Out: `ha.leading` / `ha.standby` events, `flowwatch_leader`,
//! `/readyz`, and, while leading, the same loop `run.rs` runs alone, with
//! its state in the engine instead of a file.
//!
//! Every instance serves `/healthz` and `/metrics` and keeps its config
//! current. A standby campaigns every `retry` and, between tries, watches
//! the leader key so a resignation hands over at once. A term is one run of
//! the loop: it loads the leader's last snapshot before its first request,
//! polls only through the `Gate` (open until last renewal + `renew_deadline`),
//! and ends when the lease cannot be renewed in time (the gate has closed
//! already) or on a stop signal (then the lease is revoked after the final
//! state write, so the standby takes over at once).

mod etcd;
mod gate;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, HaBackend, HaSettings};
use crate::daemon::api::{self, ApiInbox};
use crate::daemon::{Daemon, DaemonError, Edges, Reload, Report, Verdict};
use crate::error::error_chain;
use crate::event::{self, Event};
use crate::poll::SdkFetcher;
use crate::run::{STATE_EVERY, StartOptions, StopSignals};
use crate::service::files::FileWatcher;
use crate::service::http::Health;
use crate::service::metrics::Metrics;
use crate::service::notify::Notifier;
use crate::state::{self, Snapshot, StateWriter};

use etcd::{Campaign, Etcd, Term};
pub use gate::Gate;

/// Runs `flowwatch run` with `[ha]`: stands by, leads when elected, and
/// returns the last term's report after a stop signal.
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
    let (reload_tx, mut reloads) = mpsc::channel(2);
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
    let HaBackend::Etcd {
        endpoints,
        election,
    } = &ha.backend
    else {
        return Err(DaemonError::Config(config::ConfigError::File {
            file: config.path.clone(),
            problem: "ha.backend = \"kubernetes\" is not built yet; use \"etcd\"".to_string(),
        }));
    };
    let mut me = Instance {
        ha: ha.clone(),
        config,
        health,
        metrics,
        gate: Gate::closed(),
        etcd: None,
        notifier: Notifier::from_env(),
        files,
        api,
    };
    me.stand_by(None);
    // A standby is a healthy, started service: systemd must not time it out.
    me.notifier.ready();
    let mut report = Report {
        verdict: Verdict::Success,
        watches: Vec::new(),
    };
    loop {
        let Some((etcd, term)) = me
            .campaign(endpoints, election, &mut reloads, &shutdown)
            .await
        else {
            break;
        };
        let (ended, rx) = me
            .lead(
                etcd,
                term,
                fetch.clone(),
                options.once,
                reloads,
                &shutdown,
                &hurry,
            )
            .await?;
        reloads = rx;
        report = ended.report;
        if ended.stopped || shutdown.is_cancelled() {
            break;
        }
        me.stand_by(None);
    }
    Ok(report)
}

/// This process's side of the election.
struct Instance {
    ha: HaSettings,
    /// The config as last loaded (start, reload, or a term's start).
    config: Config,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    gate: Gate,
    etcd: Option<Etcd>,
    /// systemd: READY and the watchdog while standing by (a term's loop
    /// sends its own).
    notifier: Notifier,
    /// The config and include files, watched for the whole process.
    files: Option<Arc<FileWatcher>>,
    /// The `/v1` API's requests: relayed to a term's loop while leading.
    api: Option<ApiInbox>,
}

/// How a term ended.
struct Ended {
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

    /// Tries every `retry` (or at once when the leader key goes) until this
    /// instance leads; `None` after a stop signal. Beats health meanwhile and
    /// keeps the config current on reloads.
    async fn campaign(
        &mut self,
        endpoints: &[String],
        election: &str,
        reloads: &mut mpsc::Receiver<Reload>,
        shutdown: &CancellationToken,
    ) -> Option<(Etcd, Term)> {
        let mut announced: Option<String> = None;
        loop {
            self.health.beat();
            if shutdown.is_cancelled() {
                return None;
            }
            let mut wait_for = None;
            if let Some(mut etcd) = self.connected(endpoints, election).await {
                match etcd.campaign().await {
                    Ok(Campaign::Won(term)) => return Some((etcd, *term)),
                    Ok(Campaign::Lost { leader, revision }) => {
                        if leader.is_some() && leader != announced {
                            self.stand_by(leader.as_deref());
                            announced = leader;
                        }
                        wait_for = Some((etcd, revision));
                    }
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), "cannot campaign on etcd; retrying");
                        self.etcd = None;
                    }
                }
            }
            let retry = self.ha.retry;
            let pause = async {
                match wait_for {
                    Some((mut etcd, revision)) => etcd.wait_for_vacancy(revision, retry).await,
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

    async fn connected(&mut self, endpoints: &[String], election: &str) -> Option<Etcd> {
        if self.etcd.is_none() {
            match Etcd::connect(
                endpoints,
                election,
                &self.ha.identity,
                self.ha.lease,
                self.ha.retry,
            )
            .await
            {
                Ok(etcd) => self.etcd = Some(etcd),
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "cannot reach etcd; retrying")
                }
            }
        }
        self.etcd.clone()
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

    /// One term: renewals in the background, the loop in front; returns
    /// the reload receiver for the next term.
    #[allow(clippy::too_many_arguments)]
    async fn lead(
        &mut self,
        mut etcd: Etcd,
        term: Term,
        fetch: SdkFetcher,
        once: bool,
        mut reloads: mpsc::Receiver<Reload>,
        shutdown: &CancellationToken,
        hurry: &CancellationToken,
    ) -> Result<(Ended, mpsc::Receiver<Reload>), DaemonError> {
        self.gate
            .open_until(term.granted_at + self.ha.renew_deadline);
        let lost = CancellationToken::new();
        let lease = term.lease;
        let store = etcd.store(&term);
        let renewals = tokio::spawn(renew(
            etcd.clone(),
            term,
            self.ha.clone(),
            self.gate.clone(),
            lost.clone(),
        ));
        // The snapshot before the first request: replay only what the old
        // leader emitted after its last write.
        let restored = match etcd.load_state().await {
            Ok(None) => Some(Snapshot::default()),
            Ok(Some(bytes)) => match state::decode(&bytes) {
                Ok(snapshot) => Some(snapshot),
                Err(error) => {
                    tracing::error!(%error, key = etcd.state_key(), "unreadable shared state; starting fresh");
                    Some(Snapshot::default())
                }
            },
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "cannot read the shared state; standing by");
                None
            }
        };
        let Some(restored) = restored else {
            renewals.abort();
            self.gate.close();
            etcd.revoke(lease).await;
            return Ok((
                Ended {
                    report: Report {
                        verdict: Verdict::Success,
                        watches: Vec::new(),
                    },
                    stopped: false,
                },
                reloads,
            ));
        };
        // The file may have changed while standing by without a SIGHUP; a
        // bad one was reported when it was reloaded, or is at the next one.
        if let Ok(config) = config::load(&self.config.path) {
            self.config = config;
        }
        self.metrics.set_leader(true);
        self.health.set_standby(None);
        event::emit(&Event::HaLeading {
            identity: &self.ha.identity,
        });
        let writer = StateWriter::spawn_to(
            Box::new(store),
            &format!("etcd:{}", etcd.state_key()),
            restored.clone(),
            STATE_EVERY,
        );
        let edges = Edges {
            default_region: fetch.default_region(),
            state: Some(writer),
            restored,
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            notifier: Notifier::from_env(),
            files: self.files.clone(),
            once,
        };
        let term_stop = CancellationToken::new();
        let term_hurry = CancellationToken::new();
        let watcher = {
            let (shutdown, hurry, lost) = (shutdown.clone(), hurry.clone(), lost.clone());
            let (term_stop, term_hurry) = (term_stop.clone(), term_hurry.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {
                        term_stop.cancel();
                        tokio::select! {
                            () = hurry.cancelled() => {}
                            () = lost.cancelled() => {}
                        }
                        term_hurry.cancel();
                    }
                    () = lost.cancelled() => {
                        // Polls in flight are abandoned: the successor re-polls.
                        term_hurry.cancel();
                        term_stop.cancel();
                    }
                }
            })
        };
        let (term_tx, term_rx) = mpsc::channel(2);
        let forward = tokio::spawn({
            let term_stop = term_stop.clone();
            async move {
                loop {
                    tokio::select! {
                        () = term_stop.cancelled() => break,
                        got = reloads.recv() => match got {
                            Some(trigger) => { let _ = term_tx.try_send(trigger); }
                            None => break,
                        }
                    }
                }
                reloads
            }
        });
        let (term_api, relay) = match self.api.take() {
            Some(mut inbox) => {
                let (client, term_inbox) = api::channel();
                let term_stop = term_stop.clone();
                let relay = tokio::spawn(async move {
                    inbox.relay(client, term_stop).await;
                    inbox
                });
                (Some(term_inbox), Some(relay))
            }
            None => (None, None),
        };
        let daemon = Daemon::new(self.config.clone(), fetch, edges, Instant::now()).map(|daemon| {
            match term_api {
                Some(inbox) => daemon.with_api(inbox),
                None => daemon,
            }
        });
        let report = match daemon {
            Ok(daemon) => {
                daemon
                    .with_hurry(term_hurry)
                    .with_gate(self.gate.clone())
                    .run(term_rx, term_stop.clone())
                    .await
            }
            Err(error) => {
                renewals.abort();
                self.gate.close();
                etcd.revoke(lease).await;
                return Err(error);
            }
        };
        self.gate.close();
        term_stop.cancel();
        watcher.abort();
        let reloads = forward.await.expect("the reload forwarder does not panic");
        if let Some(relay) = relay {
            self.api = Some(relay.await.expect("the API relay does not panic"));
        }
        let stopped = !lost.is_cancelled();
        renewals.abort();
        // After the final state write, so the successor reads it; after a
        // lost renewal too (best effort), so a slow etcd hands over sooner.
        etcd.revoke(lease).await;
        Ok((Ended { report, stopped }, reloads))
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

/// Renews every `retry`. Each success moves the gate to (renewal sent +
/// `renew_deadline`); once that passes without one, or etcd says the lease
/// is gone, the gate closes and `lost` is cancelled: the term is over.
async fn renew(etcd: Etcd, mut term: Term, ha: HaSettings, gate: Gate, lost: CancellationToken) {
    let mut valid_until = term.granted_at + ha.renew_deadline;
    let mut next = term.granted_at + ha.retry;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(valid_until) => break,
            () = tokio::time::sleep_until(next) => {}
        }
        let sent = Instant::now();
        if sent >= valid_until {
            break;
        }
        match tokio::time::timeout_at(valid_until, etcd.renew(&mut term)).await {
            Ok(Ok(())) => {
                valid_until = sent + ha.renew_deadline;
                gate.open_until(valid_until);
                next = sent + ha.retry;
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error_chain(&error), "cannot renew the lease");
                if matches!(error, etcd::EtcdError::LeaseGone) {
                    break;
                }
                // The keep-alive stream may be broken: try again soon,
                // still before the deadline.
                next = Instant::now() + ha.retry / 4;
            }
            Err(_) => break,
        }
    }
    gate.close();
    tracing::warn!(
        renew_deadline_ms = ha.renew_deadline.as_millis() as u64,
        "leadership lost: no renewal within renew_deadline; stopping polls"
    );
    lost.cancel();
}
