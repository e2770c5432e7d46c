//! One GetFlowExecution attempt: `client` makes the SDK call and classifies
//! the result into the plain data of `outcome`.

pub mod client;
pub mod outcome;

pub use client::{Fetch, SdkFetcher, Target};
pub use outcome::{FailureKind, NodeError, Observation, PollOutcome, Status};
