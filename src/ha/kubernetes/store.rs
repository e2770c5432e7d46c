//! The state writer's side of the Kubernetes backend: snapshots go to the
//! state ConfigMap, each write fenced by the term (see `Kube::save_state`).

use std::io;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::Kube;
use crate::state::Store;

/// Saves snapshots while the Lease still names the term acquired at
/// `acquired`; a deposed leader's save fails.
pub struct KubeStore {
    kube: Kube,
    acquired: Option<MicroTime>,
    runtime: tokio::runtime::Handle,
}

impl KubeStore {
    /// On the current runtime (saves block on it from the writer's thread).
    pub fn new(kube: Kube, acquired: Option<MicroTime>) -> KubeStore {
        KubeStore {
            kube,
            acquired,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl Store for KubeStore {
    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| io::Error::other(super::KubeError::NotText))?;
        // Called on a blocking thread (the writer's `spawn_blocking`).
        self.runtime
            .block_on(self.kube.save_state(self.acquired.as_ref(), text))
            .map_err(io::Error::other)
    }
}
