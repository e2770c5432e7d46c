//! flowwatch watches Amazon Bedrock flow executions until each one ends, and
//! emits one structured event per status transition.
//!
//! The modules follow the pipeline, in order:
//!
//! ```text
//! config -> watch set -> schedule -> poll -> transition -> event (+ state)
//!                         \________ daemon: the one loop that wires them ________/
//! ```
//!
//! Decisions (`schedule`, `transition`) are pure functions of state, input and
//! `now`; I/O sits at the edges (`poll::client`, `event`, `state`, `service`,
//! `run`).

pub mod cli; // the command line: clap's types and the config path rule
pub mod config; // the TOML file and its includes, validated into `Config`
pub mod watch; // `WatchSet`: what to watch, identity, dedup, diff on reload
pub mod discover; // pure: flow discovery walks and the seen records (issue 9; run by daemon/discovery.rs)
pub mod schedule; // pure: who is due, the per-region rate budget, backoff
pub mod poll; // one GetFlowExecution call and its classification into `PollOutcome`
pub mod transition; // pure: a watch's memory + an observation -> what to report
pub mod details; // pure: the failure-details fetch plan per ended execution (issue 9; run by daemon/details.rs)
pub mod event; // the contract's event vocabulary and the formatter that writes it
pub mod state; // last-seen statuses on disk, across restarts
pub mod daemon; // the loop: wires the stages, owns shutdown and reload
pub mod run; // process wiring: SDK client, state file, HTTP, signals, file watching
pub mod ha; // active/standby: leadership on etcd or Kubernetes, the poll gate, fenced shared state (issue 12)
pub mod service; // signals, sd_notify, file watching, health and metrics HTTP
pub mod error; // the one error-chain formatter: `what: why: root cause`
pub mod lock; // the one way to take a std Mutex (poison-tolerant)
pub mod simulate; // a local stand-in for the Bedrock Agent Runtime endpoint
pub mod wait; // `flowwatch wait`: the daemon with --once on ARNs, or a daemon's API
pub mod demo; // `flowwatch demo`: simulator and daemon in one process
