//! The daemon's outside world: health and metrics over HTTP, sd_notify to
//! systemd, and watching the config and include files for changes. Each
//! module is an edge the daemon calls; none of them decides anything.

pub mod http; // /healthz, /readyz, /metrics
pub mod api; // /v1: the watch API, long polls and the event stream (issue 10)
pub mod stream; // the numbered ring of contract events behind /v1/events
pub mod metrics; // the Prometheus families the daemon updates
pub mod notify; // READY, RELOADING, STOPPING, STATUS, WATCHDOG to systemd
pub mod files; // config and include files: unprompted change detection
