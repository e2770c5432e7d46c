//! One integration-test binary: a module per capability, shared support.

mod support;

mod daemon_loop;
mod details;
mod discovery;
mod demo_discovery;
mod lifecycle;
mod wire;
mod cli;
mod config_input;
mod service;
mod secrets;
mod api;
#[cfg(feature = "etcd")]
mod ha;
mod ha_gate;
// It borrows the etcd tests' two-instance harness.
#[cfg(all(feature = "etcd", feature = "kubernetes"))]
mod ha_kube;
mod build_inputs;
mod deploy;
mod shutdown_flush;
