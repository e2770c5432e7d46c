//! One integration-test binary: a module per capability, shared support.

mod support;

mod daemon_loop;
mod details;
mod discovery;
mod lifecycle;
mod wire;
mod cli;
mod config_input;
mod service;
mod secrets;
mod api;
mod ha;
mod ha_gate;
mod shutdown_flush;
