//! The two listing reads of issue 9, one page per call with the SDK's own
//! retries off: `ListFlowExecutions` (discovery) and
//! `ListFlowExecutionEvents` (failure details).
//!
//! In: an `ExecutionsRequest` / `EventsRequest`. Out: a page of plain data
//! (`poll::pages`) or a `ReadFailure`, never an error: as for
//! GetFlowExecution, every failure the service or the network can produce is
//! data, and the daemon owns retries and the budget, so one call is exactly
//! one request. `convert` (in listing/convert.rs) is the pure half; failures
//! go through the same `classify` as GetFlowExecution's.

use std::future::Future;

use aws_sdk_bedrockagentruntime::types::FlowExecutionEventType;

use super::client::SdkFetcher;
use super::pages::{
    EventKind, EventsPage, EventsRequest, ExecutionsPage, ExecutionsRequest, ReadFailure,
};

mod convert;
#[cfg(test)]
mod wire_tests;

pub use convert::{events_page, executions_page};

/// Reads one page. The daemon will be generic over this, as over `Fetch`, so
/// its loop can be tested on a paused clock with a scripted lister; the real
/// one is `SdkFetcher`, sharing its per-region clients with `Fetch`.
pub trait Lister: Clone + Send + Sync + 'static {
    /// One `ListFlowExecutions` page.
    fn list_executions(
        &self,
        request: &ExecutionsRequest,
    ) -> impl Future<Output = Result<ExecutionsPage, ReadFailure>> + Send;

    /// One `ListFlowExecutionEvents` page.
    fn list_events(
        &self,
        request: &EventsRequest,
    ) -> impl Future<Output = Result<EventsPage, ReadFailure>> + Send;
}

impl Lister for SdkFetcher {
    fn list_executions(
        &self,
        request: &ExecutionsRequest,
    ) -> impl Future<Output = Result<ExecutionsPage, ReadFailure>> + Send {
        let call = self
            .client(&request.region)
            .list_flow_executions()
            .flow_identifier(&*request.flow)
            .set_flow_alias_identifier(request.alias.as_deref().map(str::to_string))
            .set_next_token(request.next_token.clone())
            .set_max_results(request.page_size.map(page_size));
        async move { executions_page(call.send().await) }
    }

    fn list_events(
        &self,
        request: &EventsRequest,
    ) -> impl Future<Output = Result<EventsPage, ReadFailure>> + Send {
        let event_type = match request.kind {
            EventKind::Node => FlowExecutionEventType::Node,
            EventKind::Flow => FlowExecutionEventType::Flow,
        };
        let call = self
            .client(&request.region)
            .list_flow_execution_events()
            .flow_identifier(&*request.flow)
            .flow_alias_identifier(&*request.alias)
            .execution_identifier(&*request.execution)
            .event_type(event_type)
            .set_next_token(request.next_token.clone())
            .set_max_results(request.page_size.map(page_size));
        async move { events_page(call.send().await) }
    }
}

/// `maxResults` is an `i32` on the wire; the API allows 1..=1000.
fn page_size(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
