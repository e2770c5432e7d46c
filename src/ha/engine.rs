//! What the election loop (`ha/mod.rs`, `ha/term.rs`) needs of a
//! coordination engine, so etcd and Kubernetes share one loop: one campaign,
//! waiting for a vacancy, renewing, resigning, and the fenced snapshot. Each
//! engine's module says how it maps these onto its API; nothing here does I/O.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::state::Store;

/// Why an engine call failed, for logs (each engine has its own error type).
pub type EngineError = Box<dyn std::error::Error + Send + Sync>;

/// What one campaign found.
pub enum Campaign<T, S> {
    /// This instance leads. The lease cannot pass to another before
    /// `granted_at` + `lease`, so the term is safe until `granted_at` +
    /// `renew_deadline`.
    Won { term: T, granted_at: Instant },
    /// Another instance does (`leader`, when known); `seen` is what a wait
    /// for the vacancy starts from.
    Lost { leader: Option<String>, seen: S },
}

/// Why a renewal failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The lease is no longer ours (expired, or taken): stop at once.
    #[error("the lease is lost: {0}")]
    Lost(String),
    /// The engine did not answer as hoped; a retry may still succeed
    /// before `renew_deadline`.
    #[error(transparent)]
    Failed(EngineError),
}

/// One coordination engine. Clones share the connection.
pub trait Engine: Clone + Send + Sync + 'static {
    /// One spell of leadership: what renewals, resigning and the fence need.
    type Term: Send + 'static;
    /// What a lost campaign saw, for `wait_for_vacancy`.
    type Seen: Send;

    /// Where the snapshot lives, for log lines (`etcd:flowwatch/state`).
    fn state_name(&self) -> String;

    /// Tries once to take the lease (connecting first when needed).
    fn campaign(
        &mut self,
    ) -> impl Future<Output = Result<Campaign<Self::Term, Self::Seen>, EngineError>> + Send;

    /// Returns when the lease seen in `seen` is released or ends, or after
    /// `wait`, whichever is first.
    fn wait_for_vacancy(
        &mut self,
        seen: Self::Seen,
        wait: Duration,
    ) -> impl Future<Output = ()> + Send;

    /// Renews the term's lease. `Ok` means the engine extended it to a full
    /// `lease` from some moment after this call began.
    fn renew(&self, term: &mut Self::Term) -> impl Future<Output = Result<(), RenewError>> + Send;

    /// Gives the lease up at once so a standby takes over (best effort: a
    /// lease not released ends with its duration).
    fn resign(&mut self, term: Self::Term) -> impl Future<Output = ()> + Send;

    /// The saved snapshot's bytes, if any.
    fn load_state(&mut self) -> impl Future<Output = Result<Option<Vec<u8>>, EngineError>> + Send;

    /// Where the term's `StateWriter` saves: every write fenced by the term,
    /// so a deposed leader's write fails instead of overwriting its
    /// successor's.
    fn store(&self, term: &Self::Term) -> Box<dyn Store>;
}
