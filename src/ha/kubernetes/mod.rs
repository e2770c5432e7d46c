//! Leadership and shared state on Kubernetes (issue 12), through kube-rs.
//!
//! Objects, in `namespace` (default: the pod's own, from the service
//! account; outside a pod, the kubeconfig context's): the
//! `coordination.k8s.io/v1` Lease `lease_name`, and the ConfigMap
//! `{lease_name}-state` whose `state.json` holds the `[state]` snapshot.
//! Every write of the Lease is a PUT carrying the resourceVersion last read
//! or written, so a 409 Conflict means another instance wrote in between:
//! the writer has lost. Every state write first reads the Lease and goes
//! ahead only while it still names this instance's term (holder and
//! `acquireTime`), and sends the ConfigMap's resourceVersion too.
//! The client comes from the standard inference (`KUBECONFIG`,
//! `~/.kube/config`, or the in-cluster service account), which is also how
//! the tests aim it at their recorded fake.

pub mod lease;
mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::TryStreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use tokio::time::Instant;

use super::engine::{Campaign, Engine, EngineError, RenewError};
use crate::config::HaSettings;
use crate::state::Store;
use lease::Claim;
pub use store::KubeStore;

/// The key of the state ConfigMap that holds the snapshot.
pub const STATE_KEY: &str = "state.json";

/// The Lease and state ConfigMap of one election, through one client.
#[derive(Clone)]
pub struct Kube {
    leases: Api<Lease>,
    maps: Api<ConfigMap>,
    lease_name: String,
    map_name: String,
    namespace: String,
    identity: String,
    lease_secs: i32,
    /// Every call gives up after this long (`retry`).
    call_limit: Duration,
    /// The Lease version this instance last saw, and since when.
    observed: Option<lease::Observed>,
    /// The state ConfigMap's resourceVersion as last read or written.
    map_version: Arc<Mutex<Option<String>>>,
}

/// One spell of leadership: the Lease as this instance last wrote it.
pub struct Term {
    lease: Lease,
}

/// Why a Kubernetes call failed, for logs.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(transparent)]
    Client(#[from] kube::Error),
    #[error("cannot find a kubernetes client configuration")]
    Config(#[from] kube::config::InferConfigError),
    #[error("the kubernetes api did not answer within {}ms", .0.as_millis())]
    Timeout(Duration),
    #[error("deposed: the lease is not this instance's term any more")]
    Deposed,
    #[error("the snapshot is not utf-8 text")]
    NotText,
}

impl KubeError {
    /// The API's HTTP status, when it answered with one.
    fn status(&self) -> Option<u16> {
        match self {
            KubeError::Client(kube::Error::Api(status)) => Some(status.code),
            _ => None,
        }
    }
}

impl Kube {
    /// A client from the standard inference, for the Lease `lease_name` in
    /// `namespace` (`None`: the client's default namespace, in a pod its own).
    pub async fn connect(
        lease_name: &str,
        namespace: Option<&str>,
        ha: &HaSettings,
    ) -> Result<Kube, EngineError> {
        let config = kube::Config::infer().await.map_err(KubeError::from)?;
        Ok(Kube::from_config(config, lease_name, namespace, ha)?)
    }

    /// Like `connect`, with the client configuration in hand.
    pub fn from_config(
        config: kube::Config,
        lease_name: &str,
        namespace: Option<&str>,
        ha: &HaSettings,
    ) -> Result<Kube, KubeError> {
        let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_string);
        let client = kube::Client::try_from(config)?;
        Ok(Kube {
            leases: Api::namespaced(client.clone(), &namespace),
            maps: Api::namespaced(client, &namespace),
            lease_name: lease_name.to_string(),
            map_name: format!("{lease_name}-state"),
            namespace,
            identity: ha.identity.clone(),
            lease_secs: i32::try_from(ha.lease.as_secs()).unwrap_or(i32::MAX).max(1),
            call_limit: ha.retry,
            observed: None,
            map_version: Arc::new(Mutex::new(None)),
        })
    }

    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, KubeError> {
        match tokio::time::timeout(self.call_limit, call).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(KubeError::Timeout(self.call_limit)),
        }
    }

    /// PUT the Lease with `spec`, on the resourceVersion of `read`.
    async fn write_lease(&self, read: &Lease, spec: LeaseSpec) -> Result<Lease, KubeError> {
        let next = Lease {
            metadata: read.metadata.clone(),
            spec: Some(spec),
        };
        self.call(
            self.leases
                .replace(&self.lease_name, &PostParams::default(), &next),
        )
        .await
    }

    async fn try_campaign(&mut self) -> Result<Campaign<Term, String>, KubeError> {
        let granted_at = Instant::now();
        let read = self.call(self.leases.get_opt(&self.lease_name)).await?;
        let Some(read) = read else {
            let new = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(lease::taken(None, &self.identity, self.lease_secs, now())),
            };
            let made = self
                .call(self.leases.create(&PostParams::default(), &new))
                .await;
            return won_unless_conflict(made, granted_at);
        };
        let version = read.metadata.resource_version.clone().unwrap_or_default();
        let spec = read.spec.clone().unwrap_or_default();
        match lease::claim(
            &spec,
            &version,
            &self.identity,
            &mut self.observed,
            Instant::now(),
        ) {
            Claim::Held { leader } => Ok(Campaign::Lost {
                leader: Some(leader),
                seen: version,
            }),
            Claim::Take => {
                let spec = lease::taken(Some(&spec), &self.identity, self.lease_secs, now());
                won_unless_conflict(self.write_lease(&read, spec).await, granted_at)
            }
        }
    }

    /// Whether the watch saw the Lease released or deleted.
    async fn watch_for_vacancy(&self, version: &str, wait: Duration) -> Result<bool, KubeError> {
        let params = WatchParams::default()
            .fields(&format!("metadata.name={}", self.lease_name))
            .timeout(u32::try_from(wait.as_secs()).unwrap_or(u32::MAX).max(1));
        let stream = self.call(self.leases.watch(&params, version)).await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.try_next().await? {
            match event {
                WatchEvent::Deleted(_) => return Ok(true),
                WatchEvent::Added(l) | WatchEvent::Modified(l)
                    if l.spec.as_ref().and_then(lease::holder).is_none() =>
                {
                    return Ok(true);
                }
                WatchEvent::Error(status) => return Err(kube::Error::Api(status).into()),
                _ => {}
            }
        }
        Ok(false)
    }

    async fn load_map(&self) -> Result<Option<Vec<u8>>, KubeError> {
        let read = self.call(self.maps.get_opt(&self.map_name)).await?;
        *crate::lock::lock(&self.map_version) = read
            .as_ref()
            .and_then(|m| m.metadata.resource_version.clone());
        Ok(read
            .and_then(|m| m.data)
            .and_then(|mut data| data.remove(STATE_KEY))
            .map(String::into_bytes))
    }

    /// Whether the Lease still names the term acquired at `acquired`.
    async fn fence(&self, acquired: Option<&MicroTime>) -> Result<(), KubeError> {
        let read = self.call(self.leases.get_opt(&self.lease_name)).await?;
        let ours = read
            .and_then(|l| l.spec)
            .is_some_and(|spec| lease::is_term(&spec, &self.identity, acquired));
        if ours {
            Ok(())
        } else {
            Err(KubeError::Deposed)
        }
    }

    /// Writes the snapshot, fenced by the term; a 409 on the ConfigMap (a
    /// write since this instance's last read) re-reads its version and tries
    /// once more, the fence checked again, so the term's holder wins over a
    /// deposed leader's late write.
    async fn save_state(&self, acquired: Option<&MicroTime>, text: &str) -> Result<(), KubeError> {
        let mut tries = 2;
        loop {
            tries -= 1;
            self.fence(acquired).await?;
            let version = crate::lock::lock(&self.map_version).clone();
            let map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(self.map_name.clone()),
                    namespace: Some(self.namespace.clone()),
                    resource_version: version.clone(),
                    ..ObjectMeta::default()
                },
                data: Some(BTreeMap::from([(STATE_KEY.to_string(), text.to_string())])),
                ..ConfigMap::default()
            };
            let pp = PostParams::default();
            let written = match version {
                None => self.call(self.maps.create(&pp, &map)).await,
                Some(_) => {
                    self.call(self.maps.replace(&self.map_name, &pp, &map))
                        .await
                }
            };
            match written {
                Ok(written) => {
                    *crate::lock::lock(&self.map_version) = written.metadata.resource_version;
                    return Ok(());
                }
                Err(error) if error.status() == Some(409) && tries > 0 => {
                    self.load_map().await?;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

fn won_unless_conflict(
    written: Result<Lease, KubeError>,
    granted_at: Instant,
) -> Result<Campaign<Term, String>, KubeError> {
    match written {
        Ok(lease) => Ok(Campaign::Won {
            term: Term { lease },
            granted_at,
        }),
        // Another instance wrote first: it leads; the next look says who.
        Err(error) if error.status() == Some(409) => Ok(Campaign::Lost {
            leader: None,
            seen: String::new(),
        }),
        Err(error) => Err(error),
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Engine for Kube {
    type Term = Term;
    /// The Lease's resourceVersion as read (empty: unknown).
    type Seen = String;

    fn state_name(&self) -> String {
        format!("configmap:{}/{}", self.namespace, self.map_name)
    }

    async fn campaign(&mut self) -> Result<Campaign<Term, String>, EngineError> {
        Ok(self.try_campaign().await?)
    }

    /// Watches the Lease from `version` until it is released or deleted.
    async fn wait_for_vacancy(&mut self, version: String, wait: Duration) {
        if version.is_empty() {
            return;
        }
        let deadline = Instant::now() + wait;
        match tokio::time::timeout_at(deadline, self.watch_for_vacancy(&version, wait)).await {
            Ok(Ok(true)) | Err(_) => {}
            Ok(Ok(false)) => tokio::time::sleep_until(deadline).await,
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot watch the lease; waiting instead");
                tokio::time::sleep_until(deadline).await;
            }
        }
    }

    async fn renew(&self, term: &mut Term) -> Result<(), RenewError> {
        let spec = lease::renewed(&term.lease.spec.clone().unwrap_or_default(), now());
        match self.write_lease(&term.lease, spec).await {
            Ok(written) => {
                term.lease = written;
                Ok(())
            }
            Err(error) if matches!(error.status(), Some(404 | 409)) => Err(RenewError::Lost(
                format!("another instance changed the lease: {error}"),
            )),
            Err(error) => Err(RenewError::Failed(error.into())),
        }
    }

    /// Clears the holder on the version last written: a standby's watch
    /// sees it free at once. A 409 means it is not ours to release.
    async fn resign(&mut self, term: Term) {
        let spec = lease::released(&term.lease.spec.clone().unwrap_or_default(), now());
        if let Err(error) = self.write_lease(&term.lease, spec).await {
            tracing::debug!(%error, "cannot release the lease; it ends with its duration");
        }
    }

    async fn load_state(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.load_map().await?)
    }

    fn store(&self, term: &Term) -> Box<dyn Store> {
        let acquired = term
            .lease
            .spec
            .as_ref()
            .and_then(|s| s.acquire_time.clone());
        Box::new(KubeStore::new(self.clone(), acquired))
    }
}
