//! The daemon's outside world: health and metrics over HTTP, sd_notify to
//! systemd, and (in `files`) watching the config for changes. Each module is
//! an edge the daemon calls; none of them decides anything.

pub mod http;
pub mod metrics;
pub mod notify;
