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

use super::engine::{Campaign, Engine, EngineError, RenewError};
use crate::state::Store;

/// One etcd connection (made by the first campaign, dropped after a failed
/// one) and this instance's place in the election.
#[derive(Clone)]
pub struct Etcd {
    endpoints: Vec<String>,
    client: Option<Client>,
    leader_key: String,
    state_key: String,
    identity: String,
    lease_secs: i64,
    /// Every call gives up after this long (`retry`): an unreachable etcd
    /// must not hold up stepping down or standing by.
    call_limit: Duration,
}

/// One spell of leadership.
pub struct Term {
    lease: i64,
    /// The leader key's create revision: the fencing token.
    revision: i64,
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
    #[error("not connected to etcd")]
    NotConnected,
}

impl Etcd {
    /// Aims at `endpoints`; keys go under `election`. Connects on the first
    /// campaign.
    pub fn new(
        endpoints: &[String],
        election: &str,
        identity: &str,
        lease: Duration,
        call_limit: Duration,
    ) -> Etcd {
        Etcd {
            endpoints: endpoints.to_vec(),
            client: None,
            leader_key: format!("{election}/leader"),
            state_key: format!("{election}/state"),
            identity: identity.to_string(),
            lease_secs: i64::try_from(lease.as_secs()).unwrap_or(i64::MAX).max(1),
            call_limit,
        }
    }

    async fn connected(&mut self) -> Result<Client, EtcdError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(self.call_limit)
            .with_timeout(self.call_limit)
            .with_keep_alive(self.call_limit, self.call_limit);
        let client = limit(
            self.call_limit,
            Client::connect(&self.endpoints, Some(options)),
        )
        .await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    fn client(&self) -> Result<Client, EtcdError> {
        self.client.clone().ok_or(EtcdError::NotConnected)
    }
}

impl Engine for Etcd {
    type Term = Term;
    /// The leader key's create revision.
    type Seen = i64;

    fn state_name(&self) -> String {
        format!("etcd:{}", self.state_key)
    }

    /// Grants a lease and tries to create the leader key on it; a failure
    /// drops the connection, so the next campaign connects afresh.
    async fn campaign(&mut self) -> Result<Campaign<Term, i64>, EngineError> {
        let result = self.try_campaign().await;
        if result.is_err() {
            self.client = None;
        }
        Ok(result?)
    }

    async fn wait_for_vacancy(&mut self, revision: i64, wait: Duration) {
        let Ok(mut client) = self.client() else {
            return tokio::time::sleep(wait).await;
        };
        if revision == 0 {
            return;
        }
        let deadline = Instant::now() + wait;
        let watched = async {
            let options = WatchOptions::new().with_start_revision(revision + 1);
            let mut stream = client
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

    async fn renew(&self, term: &mut Term) -> Result<(), RenewError> {
        let call = async {
            term.keeper
                .keep_alive()
                .await
                .map_err(|e| RenewError::Failed(e.into()))?;
            match term.answers.message().await {
                Ok(Some(answer)) if answer.ttl() > 0 => Ok(()),
                Ok(_) => Err(RenewError::Lost("etcd says the lease has expired".into())),
                Err(error) => Err(RenewError::Failed(error.into())),
            }
        };
        match tokio::time::timeout(self.call_limit, call).await {
            Ok(result) => result,
            Err(_) => Err(RenewError::Failed(
                EtcdError::Timeout(self.call_limit).into(),
            )),
        }
    }

    /// Revokes the lease: the leader key goes with it, so a standby's watch
    /// sees the delete.
    async fn resign(&mut self, term: Term) {
        self.revoke(term.lease).await;
    }

    async fn load_state(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        let mut client = self.client()?;
        let answer = limit(self.call_limit, client.get(self.state_key.as_str(), None)).await?;
        Ok(answer.kvs().first().map(|kv| kv.value().to_vec()))
    }

    fn store(&self, term: &Term) -> Box<dyn Store> {
        Box::new(EtcdStore {
            etcd: self.clone(),
            revision: term.revision,
            runtime: tokio::runtime::Handle::current(),
        })
    }
}

impl Etcd {
    async fn try_campaign(&mut self) -> Result<Campaign<Term, i64>, EtcdError> {
        let mut client = self.connected().await?;
        let granted_at = Instant::now();
        let lease = limit(self.call_limit, client.lease_grant(self.lease_secs, None))
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
        let answer = match limit(self.call_limit, client.txn(txn)).await {
            Ok(answer) => answer,
            Err(error) => {
                self.revoke(lease).await;
                return Err(error);
            }
        };
        if answer.succeeded() {
            let revision = answer.header().map_or(0, |h| h.revision());
            let (keeper, answers) =
                match limit(self.call_limit, client.lease_keep_alive(lease)).await {
                    Ok(pair) => pair,
                    Err(error) => {
                        self.revoke(lease).await;
                        return Err(error);
                    }
                };
            return Ok(Campaign::Won {
                term: Term {
                    lease,
                    revision,
                    keeper,
                    answers,
                },
                granted_at,
            });
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
            Some((leader, revision)) => Campaign::Lost {
                leader,
                seen: revision,
            },
            // Gone between the compare and the read: try again at once.
            None => Campaign::Lost {
                leader: None,
                seen: 0,
            },
        })
    }

    async fn revoke(&mut self, lease: i64) {
        let Ok(mut client) = self.client() else {
            return;
        };
        if let Err(error) = limit(self.call_limit, client.lease_revoke(lease)).await {
            tracing::debug!(%error, lease, "cannot revoke the lease; it ends with its ttl");
        }
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
        let etcd = &self.etcd;
        let mut client = etcd.client().map_err(io::Error::other)?;
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
            .block_on(limit(etcd.call_limit, client.txn(txn)))
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
