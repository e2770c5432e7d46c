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
mod ha;
mod ha_gate;
mod ha_kube;
mod deploy;
mod shutdown_flush;
