//! One term of leadership, whatever the engine: renewals in the background
//! move the poll gate on, the daemon's loop runs in front with its state in
//! the engine, and the term ends on a lost renewal (the gate has closed
//! already) or a stop signal (then the lease is given up after the final
//! state write, so the standby takes over at once).

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::engine::{Engine, RenewError};
use super::{Ended, Gate, Instance};
use crate::config::{self, HaSettings};
use crate::daemon::api;
use crate::daemon::{Daemon, DaemonError, Edges, Reload, Report, Verdict};
use crate::error::error_chain;
use crate::event::{self, Event};
use crate::poll::SdkFetcher;
use crate::run::STATE_EVERY;
use crate::service::notify::Notifier;
use crate::state::{self, Snapshot, StateWriter};

/// A won campaign: the engine, the term, and when the lease was asked for.
pub(super) struct Leads<E: Engine> {
    pub engine: E,
    pub term: E::Term,
    pub granted_at: Instant,
}

impl Instance {
    /// One term; returns the reload receiver for the next one.
    pub(super) async fn lead<E: Engine>(
        &mut self,
        leads: Leads<E>,
        fetch: SdkFetcher,
        once: bool,
        mut reloads: mpsc::Receiver<Reload>,
        shutdown: &CancellationToken,
        hurry: &CancellationToken,
    ) -> Result<(Ended, mpsc::Receiver<Reload>), DaemonError> {
        let Leads {
            mut engine,
            term,
            granted_at,
        } = leads;
        self.gate.open_until(granted_at + self.ha.renew_deadline);
        let lost = CancellationToken::new();
        let done = CancellationToken::new();
        let store = engine.store(&term);
        let renewals = tokio::spawn(renew(
            engine.clone(),
            term,
            granted_at,
            self.ha.clone(),
            self.gate.clone(),
            lost.clone(),
            done.clone(),
        ));
        // Ends the renewals and gives the lease up (after the final state
        // write, so the successor reads it; after a lost renewal too, best
        // effort, so a slow engine hands over sooner).
        let resign = |mut engine: E| async move {
            done.cancel();
            if let Ok(term) = renewals.await {
                engine.resign(term).await;
            }
        };
        // The snapshot before the first request: replay only what the old
        // leader emitted after its last write.
        let restored = match engine.load_state().await {
            Ok(None) => Some(Snapshot::default()),
            Ok(Some(bytes)) => match state::decode(&bytes) {
                Ok(snapshot) => Some(snapshot),
                Err(error) => {
                    tracing::error!(%error, state = engine.state_name(), "unreadable shared state; starting fresh");
                    Some(Snapshot::default())
                }
            },
            Err(error) => {
                tracing::warn!(error = %error_chain(&*error), "cannot read the shared state; standing by");
                None
            }
        };
        let Some(restored) = restored else {
            self.gate.close();
            resign(engine).await;
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
        let writer =
            StateWriter::spawn_to(store, &engine.state_name(), restored.clone(), STATE_EVERY);
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
                self.gate.close();
                resign(engine).await;
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
        resign(engine).await;
        Ok((Ended { report, stopped }, reloads))
    }
}

/// Renews every `retry` until `done`, then returns the term. Each success
/// moves the gate to (renewal sent + `renew_deadline`); once that passes
/// without one, or the engine says the lease is gone, the gate closes and
/// `lost` is cancelled: the term is over.
async fn renew<E: Engine>(
    engine: E,
    mut term: E::Term,
    granted_at: Instant,
    ha: HaSettings,
    gate: Gate,
    lost: CancellationToken,
    done: CancellationToken,
) -> E::Term {
    let mut valid_until = granted_at + ha.renew_deadline;
    let mut next = granted_at + ha.retry;
    loop {
        tokio::select! {
            () = done.cancelled() => return term,
            () = tokio::time::sleep_until(valid_until) => break,
            () = tokio::time::sleep_until(next) => {}
        }
        let sent = Instant::now();
        if sent >= valid_until {
            break;
        }
        let renewed = tokio::select! {
            () = done.cancelled() => return term,
            renewed = tokio::time::timeout_at(valid_until, engine.renew(&mut term)) => renewed,
        };
        match renewed {
            Ok(Ok(())) => {
                valid_until = sent + ha.renew_deadline;
                gate.open_until(valid_until);
                next = sent + ha.retry;
            }
            Ok(Err(RenewError::Lost(why))) => {
                tracing::warn!(%why, "cannot renew the lease");
                break;
            }
            Ok(Err(RenewError::Failed(error))) => {
                tracing::warn!(error = %error_chain(&*error), "cannot renew the lease");
                // The connection may be broken: try again soon, still
                // before the deadline.
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
    done.cancelled().await;
    term
}
