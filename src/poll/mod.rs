//! One GetFlowExecution attempt: `client` makes the SDK call and classifies
//! the result into the plain data of `outcome`.
//! `listing`: the two listing reads of issue 9 (ListFlowExecutions and
//! ListFlowExecutionEvents, one page per call), same clients and
//! classification, into the plain data of `pages`.

pub mod client;
pub mod listing;
pub mod outcome;
pub mod pages;

pub use client::{Fetch, SdkFetcher, Target};
pub use listing::Lister;
pub use outcome::{FailureKind, NodeError, Observation, PollOutcome, Status};
pub use pages::{
    EventKind, EventsPage, EventsRequest, ExecutionSummary, ExecutionsPage, ExecutionsRequest,
    FlowFailure, NodeFailure, ReadFailure,
};
