//! Leadership and shared state on etcd (issue 12), through `etcd-client`.
//!
//! Keys, under the `election` prefix: `{election}/leader` holds the leader's
//! identity and is bound to its lease, so it vanishes when the lease does;
//! `{election}/state` holds the `[state]` snapshot. A campaign creates the
//! leader key in a transaction that requires it absent (`create_revision ==
//! 0`); the key's create revision then names the term, and every state write
//! is a transaction that compares it, so a deposed leader cannot overwrite
//! its successor's state.

use std::io;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::time::Instant;

use crate::state::Store;

/// One etcd connection and this instance's place in the election.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    leader_key: String,
    state_key: String,
    identity: String,
    lease_secs: i64,
    /// Every call gives up after this long (`retry`): an unreachable etcd
    /// must not hold up stepping down or standing by.
    call_limit: Duration,
}

/// What a campaign found.
pub enum Campaign {
    /// This instance leads.
    Won(Box<Term>),
    /// Another does (`leader`, when its key could be read); its key was
    /// created at `revision`.
    Lost {
        leader: Option<String>,
        revision: i64,
    },
}

/// One spell of leadership.
pub struct Term {
    pub lease: i64,
    /// The leader key's create revision: the fencing token.
    pub revision: i64,
    /// When the lease grant was sent: the lease cannot end before this +
    /// `lease`, so the term is safe until this + `renew_deadline`.
    pub granted_at: Instant,
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
}

/// Why an etcd call failed, for logs.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(transparent)]
    Client(#[from] etcd_client::Error),
    #[error("etcd did not answer within {}ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the lease has expired")]
    LeaseGone,
}

impl Etcd {
    /// Connects to `endpoints`; keys go under `election`.
    pub async fn connect(
        endpoints: &[String],
        election: &str,
        identity: &str,
        lease: Duration,
        call_limit: Duration,
    ) -> Result<Etcd, EtcdError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(call_limit)
            .with_timeout(call_limit)
            .with_keep_alive(call_limit, call_limit);
        let client = limit(call_limit, Client::connect(endpoints, Some(options))).await?;
        Ok(Etcd {
            client,
            leader_key: format!("{election}/leader"),
            state_key: format!("{election}/state"),
            identity: identity.to_string(),
            lease_secs: i64::try_from(lease.as_secs()).unwrap_or(i64::MAX).max(1),
            call_limit,
        })
    }

    /// Grants a lease and tries to create the leader key on it.
    pub async fn campaign(&mut self) -> Result<Campaign, EtcdError> {
        let granted_at = Instant::now();
        let lease = limit(
            self.call_limit,
            self.client.lease_grant(self.lease_secs, None),
        )
        .await?
        .id();
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.leader_key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(
                self.leader_key.as_str(),
                self.identity.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(self.leader_key.as_str(), None)]);
        let answer = match limit(self.call_limit, self.client.txn(txn)).await {
            Ok(answer) => answer,
            Err(error) => {
                self.revoke(lease).await;
                return Err(error);
            }
        };
        if answer.succeeded() {
            let revision = answer.header().map_or(0, |h| h.revision());
            let (keeper, answers) =
                match limit(self.call_limit, self.client.lease_keep_alive(lease)).await {
                    Ok(pair) => pair,
                    Err(error) => {
                        self.revoke(lease).await;
                        return Err(error);
                    }
                };
            return Ok(Campaign::Won(Box::new(Term {
                lease,
                revision,
                granted_at,
                keeper,
                answers,
            })));
        }
        // Not ours: the unused lease goes at once rather than at its TTL.
        self.revoke(lease).await;
        let holder = answer.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| {
                (
                    kv.value_str().ok().map(str::to_string),
                    kv.create_revision(),
                )
            }),
            _ => None,
        });
        Ok(match holder {
            Some((leader, revision)) => Campaign::Lost { leader, revision },
            // Gone between the compare and the read: try again at once.
            None => Campaign::Lost {
                leader: None,
                revision: 0,
            },
        })
    }

    /// Returns when the leader key created at `revision` is deleted (its
    /// lease ended or was revoked), or after `wait`, whichever is first.
    pub async fn wait_for_vacancy(&mut self, revision: i64, wait: Duration) {
        if revision == 0 {
            return;
        }
        let deadline = Instant::now() + wait;
        let watched = async {
            let options = WatchOptions::new().with_start_revision(revision + 1);
            let mut stream = self
                .client
                .watch(self.leader_key.as_str(), Some(options))
                .await?;
            while let Some(answer) = stream.message().await? {
                if answer
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    break;
                }
            }
            Ok::<(), etcd_client::Error>(())
        };
        match tokio::time::timeout_at(deadline, watched).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot watch the leader key; waiting instead");
                tokio::time::sleep_until(deadline).await;
            }
        }
    }

    /// Renews the term's lease. `Ok` means etcd extended it to a full
    /// `lease` from some moment after this call began.
    pub async fn renew(&self, term: &mut Term) -> Result<(), EtcdError> {
        let call = async {
            term.keeper.keep_alive().await?;
            match term.answers.message().await? {
                Some(answer) if answer.ttl() > 0 => Ok(()),
                _ => Err(EtcdError::LeaseGone),
            }
        };
        match tokio::time::timeout(self.call_limit, call).await {
            Ok(result) => result,
            Err(_) => Err(EtcdError::Timeout(self.call_limit)),
        }
    }

    /// Gives the leadership up at once: the leader key goes with the lease,
    /// so a standby's watch sees the delete.
    pub async fn revoke(&mut self, lease: i64) {
        if let Err(error) = limit(self.call_limit, self.client.lease_revoke(lease)).await {
            tracing::debug!(%error, lease, "cannot revoke the lease; it ends with its ttl");
        }
    }

    /// The saved snapshot's bytes, if any.
    pub async fn load_state(&mut self) -> Result<Option<Vec<u8>>, EtcdError> {
        let answer = limit(
            self.call_limit,
            self.client.get(self.state_key.as_str(), None),
        )
        .await?;
        Ok(answer.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Where the term's `StateWriter` saves: fenced by the term's revision.
    pub fn store(&self, term: &Term) -> EtcdStore {
        EtcdStore {
            etcd: self.clone(),
            revision: term.revision,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The key the snapshot lives under, for log lines.
    pub fn state_key(&self) -> &str {
        &self.state_key
    }
}

/// Saves snapshots to `{election}/state`, only while the leader key is still
/// the one created at `revision`.
pub struct EtcdStore {
    etcd: Etcd,
    revision: i64,
    runtime: tokio::runtime::Handle,
}

impl Store for EtcdStore {
    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        let mut etcd = self.etcd.clone();
        let txn = Txn::new()
            .when([Compare::create_revision(
                etcd.leader_key.as_str(),
                CompareOp::Equal,
                self.revision,
            )])
            .and_then([TxnOp::put(etcd.state_key.as_str(), bytes.to_vec(), None)]);
        // Called on a blocking thread (the writer's `spawn_blocking`).
        let answer = self
            .runtime
            .block_on(limit(etcd.call_limit, etcd.client.txn(txn)))
            .map_err(io::Error::other)?;
        if answer.succeeded() {
            Ok(())
        } else {
            Err(io::Error::other(
                "deposed: another instance leads, the state is its to write",
            ))
        }
    }
}

async fn limit<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(EtcdError::Timeout(limit)),
    }
}
