//! Pure half of the listing reads: one SDK result into a page of plain data
//! or a `ReadFailure`.
//!
//! Failures reuse GetFlowExecution's `classify`, rules and all: the three
//! operations share their error shapes (the same five modeled exceptions), so
//! a listing error is restated as the `GetFlowExecutionError` it would be and
//! classified once, in one place.

use std::error::Error as StdError;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_bedrockagentruntime::error::SdkError;
use aws_sdk_bedrockagentruntime::operation::get_flow_execution::GetFlowExecutionError;
use aws_sdk_bedrockagentruntime::operation::list_flow_execution_events::{
    ListFlowExecutionEventsError, ListFlowExecutionEventsOutput,
};
use aws_sdk_bedrockagentruntime::operation::list_flow_executions::{
    ListFlowExecutionsError, ListFlowExecutionsOutput,
};
use aws_sdk_bedrockagentruntime::types::{FlowExecutionEvent, FlowExecutionSummary};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::DateTime;
use aws_smithy_types::error::ErrorMetadata;

use crate::poll::client::describe;

use crate::poll::client::classify;
use crate::poll::outcome::Status;
use crate::poll::pages::{
    EventsPage, ExecutionSummary, ExecutionsPage, FlowFailure, NodeFailure, ReadFailure,
};
use crate::watch::ids::ExecutionRef;

/// What the SDK fills in for a missing required enum field (status, error
/// code): it defaults missing fields instead of failing.
const VALUE_MISSING: &str = "no value was set";

/// One `ListFlowExecutions` result. Summaries that cannot be watched (no
/// parsable `executionArn`, no `status`, no `createdAt`) are counted in
/// `skipped`, not fatal: the rest of the page is still good.
pub fn executions_page(
    result: Result<ListFlowExecutionsOutput, SdkError<ListFlowExecutionsError, HttpResponse>>,
) -> Result<ExecutionsPage, ReadFailure> {
    let output = result.map_err(|e| failure(e.map_service_error(restate_list)))?;
    let mut page = ExecutionsPage {
        next_token: token(output.next_token()),
        ..ExecutionsPage::default()
    };
    for s in output.flow_execution_summaries() {
        match summary(s) {
            Some(summary) => page.summaries.push(summary),
            None => page.skipped += 1,
        }
    }
    Ok(page)
}

/// One `ListFlowExecutionEvents` result: node and flow failure events;
/// every other kind, `Unknown` included, is counted in `skipped`.
pub fn events_page(
    result: Result<
        ListFlowExecutionEventsOutput,
        SdkError<ListFlowExecutionEventsError, HttpResponse>,
    >,
) -> Result<EventsPage, ReadFailure> {
    let output = result.map_err(|e| failure(e.map_service_error(restate_events)))?;
    let mut page = EventsPage {
        next_token: token(output.next_token()),
        ..EventsPage::default()
    };
    for event in output.flow_execution_events() {
        match event {
            FlowExecutionEvent::NodeFailureEvent(e) => page.node_failures.push(NodeFailure {
                node: e.node_name().to_string(),
                error_code: code(e.error_code().as_str()),
                error_message: e.error_message().to_string(),
                event_time: time(e.timestamp()),
            }),
            FlowExecutionEvent::FlowFailureEvent(e) => page.flow_failures.push(FlowFailure {
                error_code: code(e.error_code().as_str()),
                error_message: e.error_message().to_string(),
                event_time: time(e.timestamp()),
            }),
            _ => page.skipped += 1,
        }
    }
    Ok(page)
}

fn summary(s: &FlowExecutionSummary) -> Option<ExecutionSummary> {
    let status = s.status().as_str();
    if status.is_empty() || status == VALUE_MISSING {
        return None;
    }
    Some(ExecutionSummary {
        execution: ExecutionRef::parse_arn(s.execution_arn()).ok()?,
        status: Status::parse(status),
        flow_version: Some(s.flow_version())
            .filter(|v| !v.is_empty())
            .map(str::to_string),
        created_at: time(s.created_at())?,
        ended_at: s.ended_at().and_then(time),
    })
}

/// The SDK puts the epoch in place of a missing timestamp.
fn time(t: &DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*t).ok().filter(|t| *t != UNIX_EPOCH)
}

fn code(raw: &str) -> String {
    if raw == VALUE_MISSING {
        String::new()
    } else {
        raw.to_string()
    }
}

/// An empty token would restart the listing: treat it as the last page.
fn token(t: Option<&str>) -> Option<String> {
    t.filter(|t| !t.is_empty()).map(str::to_string)
}

fn failure(err: SdkError<GetFlowExecutionError, HttpResponse>) -> ReadFailure {
    ReadFailure::from_outcome(classify(Err(err)))
        .expect("classify turns an error into a failure, never an observation")
}

fn restate_list(err: ListFlowExecutionsError) -> GetFlowExecutionError {
    use GetFlowExecutionError as G;
    use ListFlowExecutionsError as L;
    match err {
        L::AccessDeniedException(e) => G::AccessDeniedException(e),
        L::InternalServerException(e) => G::InternalServerException(e),
        L::ResourceNotFoundException(e) => G::ResourceNotFoundException(e),
        L::ThrottlingException(e) => G::ThrottlingException(e),
        L::ValidationException(e) => G::ValidationException(e),
        other => unhandled(other.meta(), &other),
    }
}

fn restate_events(err: ListFlowExecutionEventsError) -> GetFlowExecutionError {
    use GetFlowExecutionError as G;
    use ListFlowExecutionEventsError as L;
    match err {
        L::AccessDeniedException(e) => G::AccessDeniedException(e),
        L::InternalServerException(e) => G::InternalServerException(e),
        L::ResourceNotFoundException(e) => G::ResourceNotFoundException(e),
        L::ThrottlingException(e) => G::ThrottlingException(e),
        L::ValidationException(e) => G::ValidationException(e),
        other => unhandled(other.meta(), &other),
    }
}

/// An error no modeled exception covers: its metadata (code, message) when
/// it has any, else what its causes say (a body that does not parse).
fn unhandled(meta: &ErrorMetadata, err: &dyn StdError) -> GetFlowExecutionError {
    if meta.code().is_some() || meta.message().is_some() {
        return GetFlowExecutionError::generic(meta.clone());
    }
    GetFlowExecutionError::unhandled(describe(err, &err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::outcome::FailureKind;
    use aws_sdk_bedrockagentruntime::types::error::{AccessDeniedException, ThrottlingException};
    use aws_sdk_bedrockagentruntime::types::{
        FlowErrorCode, FlowExecutionInputEvent, FlowExecutionStatus, FlowFailureEvent,
        NodeErrorCode, NodeFailureEvent,
    };
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use std::time::Duration;

    const ARN: &str =
        "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-1";

    fn response(status: u16, headers: &[(&'static str, &'static str)]) -> HttpResponse {
        let mut r = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        for (name, value) in headers {
            r.headers_mut().insert(*name, *value);
        }
        r
    }

    fn list_error(err: ListFlowExecutionsError, raw: HttpResponse) -> ReadFailure {
        executions_page(Err(SdkError::service_error(err, raw))).unwrap_err()
    }

    fn events_error(err: ListFlowExecutionEventsError, raw: HttpResponse) -> ReadFailure {
        events_page(Err(SdkError::service_error(err, raw))).unwrap_err()
    }

    fn summary_with(arn: &str, status: &str, created: i64) -> FlowExecutionSummary {
        FlowExecutionSummary::builder()
            .execution_arn(arn)
            .flow_alias_identifier("ALIAS12345")
            .flow_identifier("FLOW123456")
            .flow_version("2")
            .status(FlowExecutionStatus::from(status))
            .created_at(DateTime::from_secs(created))
            .build()
            .unwrap()
    }

    #[test]
    fn modeled_list_errors_classify_as_get_flow_execution_errors_do() {
        let throttled = ListFlowExecutionsError::ThrottlingException(
            ThrottlingException::builder().message("slow").build(),
        );
        assert_eq!(
            list_error(throttled, response(429, &[("x-amz-retry-after", "300")])),
            ReadFailure::Throttled {
                retry_after: Some(Duration::from_millis(300))
            }
        );
        let denied = ListFlowExecutionEventsError::AccessDeniedException(
            AccessDeniedException::builder().message("no").build(),
        );
        assert_eq!(
            events_error(denied, response(403, &[])),
            ReadFailure::AccessDenied {
                code: "AccessDeniedException".into(),
                message: "no".into()
            }
        );
    }

    #[test]
    fn an_unmodeled_error_keeps_its_code_and_status() {
        let err = ListFlowExecutionsError::generic(
            ErrorMetadata::builder()
                .code("ServiceUnavailableException")
                .message("later")
                .build(),
        );
        assert_eq!(
            list_error(err, response(503, &[])),
            ReadFailure::Failed {
                kind: FailureKind::Server,
                code: Some("ServiceUnavailableException".into()),
                message: "later".into(),
                retry_after: None
            }
        );
    }

    #[test]
    fn a_body_that_does_not_parse_is_unparsable_and_says_why() {
        let err = ListFlowExecutionEventsError::unhandled("expected object at 1");
        match events_error(err, response(200, &[])) {
            ReadFailure::Failed {
                kind: FailureKind::Unparsable,
                code: None,
                message,
                ..
            } => assert!(message.contains("expected object at 1"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_failure_events_are_skipped_and_failures_kept_in_order() {
        // `Unknown` cannot be built outside the SDK: wire_tests sends one.
        let input = FlowExecutionInputEvent::builder()
            .node_name("FlowInputNode")
            .timestamp(DateTime::from_secs(1_700_000_000))
            .set_fields(Some(Vec::new()))
            .build()
            .unwrap();
        let node = NodeFailureEvent::builder()
            .node_name("Prompt_1")
            .timestamp(DateTime::from_secs(1_700_000_000))
            .error_code(NodeErrorCode::BadGateway)
            .error_message("model down")
            .build()
            .unwrap();
        let flow = FlowFailureEvent::builder()
            .timestamp(DateTime::from_secs(0))
            .error_code(FlowErrorCode::from(VALUE_MISSING))
            .error_message("failed")
            .build()
            .unwrap();
        let output = ListFlowExecutionEventsOutput::builder()
            .flow_execution_events(FlowExecutionEvent::FlowInputEvent(input))
            .flow_execution_events(FlowExecutionEvent::NodeFailureEvent(node))
            .flow_execution_events(FlowExecutionEvent::FlowFailureEvent(flow))
            .next_token("")
            .build()
            .unwrap();
        let page = events_page(Ok(output)).unwrap();
        assert_eq!(
            page,
            EventsPage {
                node_failures: vec![NodeFailure {
                    node: "Prompt_1".into(),
                    error_code: "BAD_GATEWAY".into(),
                    error_message: "model down".into(),
                    event_time: time(&DateTime::from_secs(1_700_000_000)),
                }],
                // A missing code and timestamp read as empty and `None`, not as
                // the SDK's placeholders.
                flow_failures: vec![FlowFailure {
                    error_code: String::new(),
                    error_message: "failed".into(),
                    event_time: None,
                }],
                skipped: 1,
                // An empty token would restart the listing: it ends it.
                next_token: None,
            }
        );
    }

    #[test]
    fn summaries_that_cannot_be_watched_are_skipped_not_fatal() {
        let output = ListFlowExecutionsOutput::builder()
            .flow_execution_summaries(summary_with(ARN, "Succeeded", 1_700_000_000))
            .flow_execution_summaries(summary_with("not-an-arn", "Running", 1_700_000_000))
            .flow_execution_summaries(summary_with(ARN, VALUE_MISSING, 1_700_000_000))
            .flow_execution_summaries(summary_with(ARN, "Running", 0))
            .next_token("2")
            .build()
            .unwrap();
        let page = executions_page(Ok(output)).unwrap();
        assert_eq!((page.summaries.len(), page.skipped), (1, 3), "{page:?}");
        let s = &page.summaries[0];
        assert_eq!(s.execution.arn.as_deref(), Some(ARN));
        assert_eq!(s.execution.execution, "run-1");
        assert_eq!(s.status, Status::Succeeded);
        assert_eq!(s.flow_version.as_deref(), Some("2"));
        assert_eq!(s.ended_at, None);
        assert_eq!(page.next_token.as_deref(), Some("2"));
    }
}
