//! `Lister for SdkFetcher` against the real simulator (and, for an event
//! kind the simulator cannot send, a raw TCP server) over loopback: the real
//! SDK, real sockets, real clock. Each call must be exactly one request.
//! Listing order is not documented, so these compare sets, not sequences.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Lister;
use crate::config::AwsSettings;
use crate::poll::client::SdkFetcher;
use crate::poll::outcome::{FailureKind, Status};
use crate::poll::pages::{
    EventKind, EventsPage, EventsRequest, ExecutionsPage, ExecutionsRequest, ReadFailure,
};
use crate::simulate::{Answer, Scenario, Simulator};

const FLOW: &str = "FLOW123456";
const ALIAS: &str = "ALIAS12345";

const FAILED_RUN: &str = r#"
[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "run-failed"
timeline = [{ at = "0s", status = "Running" }, { at = "0s", status = "Failed" }]
errors = [
  { error = "BAD_GATEWAY", node = "Prompt_1", message = "model unavailable" },
  { error = "VALIDATION", node = "Lambda_2", message = "bad input" },
  { error = "SomethingNew", node = "Kb_3", message = "odd" },
  { message = "flow-level error" },
]

[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "run-denied"
access_denied = true

[[execution]]
flow = "FLOW123456"
alias = "OTHERALIAS"
id = "run-other"
timeline = [{ at = "0s", status = "Running" }]

[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "run-ok"
timeline = [{ at = "0s", status = "Running" }, { at = "0s", status = "Succeeded" }]
"#;

async fn simulator(toml: &str) -> Simulator {
    let scenario = Scenario::parse(toml).expect("test scenario parses");
    Simulator::spawn(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("loopback bind")
}

async fn lister(endpoint_url: String) -> SdkFetcher {
    let aws = AwsSettings {
        region: Some("us-east-1".into()),
        profile: None,
        endpoint_url: Some(endpoint_url),
    };
    let credentials = Credentials::new("AKIDFLOWWATCHTEST", "not-a-secret", None, None, "test");
    SdkFetcher::new(
        &aws,
        Duration::from_secs(10),
        Some(SharedCredentialsProvider::new(credentials)),
    )
    .await
}

fn executions(alias: Option<&str>, page_size: Option<u32>) -> ExecutionsRequest {
    ExecutionsRequest {
        region: "us-east-1".into(),
        flow: FLOW.into(),
        alias: alias.map(Into::into),
        next_token: None,
        page_size,
    }
}

fn events(execution: &str, kind: EventKind, page_size: Option<u32>) -> EventsRequest {
    EventsRequest {
        region: "us-east-1".into(),
        flow: FLOW.into(),
        alias: ALIAS.into(),
        execution: execution.into(),
        kind,
        next_token: None,
        page_size,
    }
}

/// Follows `next_token` to the end, one call per page; returns the pages.
async fn all_event_pages(lister: &SdkFetcher, mut request: EventsRequest) -> Vec<EventsPage> {
    let mut pages = Vec::new();
    loop {
        let page = lister.list_events(&request).await.expect("a page");
        request.next_token = page.next_token.clone();
        pages.push(page);
        if request.next_token.is_none() || pages.len() > 50 {
            return pages;
        }
    }
}

async fn all_execution_pages(
    lister: &SdkFetcher,
    mut request: ExecutionsRequest,
) -> Vec<ExecutionsPage> {
    let mut pages = Vec::new();
    loop {
        let page = lister.list_executions(&request).await.expect("a page");
        request.next_token = page.next_token.clone();
        pages.push(page);
        if request.next_token.is_none() || pages.len() > 50 {
            return pages;
        }
    }
}

#[tokio::test]
async fn a_failed_executions_node_failures_page_one_request_at_a_time() {
    let sim = simulator(FAILED_RUN).await;
    let lister = lister(sim.endpoint_url()).await;
    let pages = all_event_pages(&lister, events("run-failed", EventKind::Node, Some(1))).await;
    // Three errors name a node: three pages of one, each one request.
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(sim.stats().total(), 3);
    let failures: BTreeSet<(String, String, String)> = pages
        .iter()
        .flat_map(|p| &p.node_failures)
        .map(|f| {
            assert!(f.event_time.is_some(), "{f:?}");
            (
                f.node.clone(),
                f.error_code.clone(),
                f.error_message.clone(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        ("Prompt_1", "BAD_GATEWAY", "model unavailable"),
        ("Lambda_2", "VALIDATION", "bad input"),
        ("Kb_3", "INTERNAL_SERVER", "odd"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(failures, expected);
    assert!(
        pages
            .iter()
            .all(|p| p.flow_failures.is_empty() && p.skipped == 0)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn flow_events_keep_the_failure_and_skip_the_input_event() {
    let sim = simulator(FAILED_RUN).await;
    let lister = lister(sim.endpoint_url()).await;
    let pages = all_event_pages(&lister, events("run-failed", EventKind::Flow, Some(1))).await;
    assert_eq!(pages.len(), 2, "{pages:?}");
    let failures: Vec<_> = pages.iter().flat_map(|p| &p.flow_failures).collect();
    assert_eq!(failures.len(), 1, "{pages:?}");
    assert_eq!(failures[0].error_code, "NODE_EXECUTION_FAILED");
    assert_eq!(failures[0].error_message, "model unavailable");
    assert!(failures[0].event_time.is_some());
    // The flowInputEvent is not a failure: skipped, not fatal.
    assert_eq!(pages.iter().map(|p| p.skipped).sum::<usize>(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_succeeded_execution_has_no_failure_events() {
    let sim = simulator(FAILED_RUN).await;
    let lister = lister(sim.endpoint_url()).await;
    let node = all_event_pages(&lister, events("run-ok", EventKind::Node, None)).await;
    let flow = all_event_pages(&lister, events("run-ok", EventKind::Flow, None)).await;
    for page in node.iter().chain(&flow) {
        assert!(
            page.node_failures.is_empty() && page.flow_failures.is_empty(),
            "{page:?}"
        );
    }
    assert_eq!(flow.iter().map(|p| p.skipped).sum::<usize>(), 2, "{flow:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_flows_executions_page_with_summaries_and_an_alias_filters_them() {
    let sim = simulator(FAILED_RUN).await;
    let lister = lister(sim.endpoint_url()).await;
    let pages = all_execution_pages(&lister, executions(None, Some(2))).await;
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert_eq!(sim.stats().total(), 2);
    let listed: BTreeSet<(String, String, String)> = pages
        .iter()
        .flat_map(|p| &p.summaries)
        .map(|s| {
            (
                s.execution.alias.clone(),
                s.execution.execution.clone(),
                s.status.to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        (ALIAS, "run-failed", Status::Failed),
        (ALIAS, "run-denied", Status::Running),
        ("OTHERALIAS", "run-other", Status::Running),
        (ALIAS, "run-ok", Status::Succeeded),
    ]
    .into_iter()
    .map(|(a, e, s)| (a.to_string(), e.to_string(), s.to_string()))
    .collect();
    assert_eq!(listed, expected);
    for s in pages.iter().flat_map(|p| &p.summaries) {
        assert_eq!(s.execution.flow, FLOW);
        assert_eq!(s.execution.region.as_deref(), Some("us-east-1"));
        assert_eq!(s.ended_at.is_some(), s.status.is_terminal(), "{s:?}");
        assert!(s.ended_at.is_none_or(|end| end >= s.created_at), "{s:?}");
    }

    let one_alias = all_execution_pages(&lister, executions(Some("OTHERALIAS"), None)).await;
    let ids: Vec<_> = one_alias
        .iter()
        .flat_map(|p| &p.summaries)
        .map(|s| s.execution.execution.as_str())
        .collect();
    assert_eq!(ids, ["run-other"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn listing_failures_classify_like_poll_outcomes_one_request_each() {
    let sim = simulator(FAILED_RUN).await;
    let lister = lister(sim.endpoint_url()).await;

    let denied = lister
        .list_events(&events("run-denied", EventKind::Node, None))
        .await;
    assert!(
        matches!(&denied, Err(ReadFailure::AccessDenied { code, .. }) if code == "AccessDeniedException"),
        "{denied:?}"
    );
    let unknown_flow = lister
        .list_executions(&ExecutionsRequest {
            flow: "FLOWNOBODY".into(),
            ..executions(None, None)
        })
        .await;
    assert!(
        matches!(unknown_flow, Err(ReadFailure::NotFound { .. })),
        "{unknown_flow:?}"
    );
    let bad_token = lister
        .list_executions(&ExecutionsRequest {
            next_token: Some("not-a-position".into()),
            ..executions(None, None)
        })
        .await;
    assert!(
        matches!(bad_token, Err(ReadFailure::Invalid { .. })),
        "{bad_token:?}"
    );
    assert_eq!(sim.stats().total(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn throttles_and_server_errors_are_retryable_failures_and_never_retried_here() {
    let throttled = simulator(&format!(
        "quota = 1.0\nquota_burst = 1\nretry_after = \"2s\"\n{FAILED_RUN}"
    ))
    .await;
    let lister = lister(throttled.endpoint_url()).await;
    lister
        .list_executions(&executions(None, None))
        .await
        .expect("the burst allows one");
    let second = lister
        .list_events(&events("run-failed", EventKind::Node, None))
        .await;
    assert_eq!(
        second,
        Err(ReadFailure::Throttled {
            retry_after: Some(Duration::from_millis(2000))
        })
    );
    let stats = throttled.stats();
    assert_eq!((stats.total(), stats.count(Answer::Throttled)), (2, 1));
    throttled.shutdown().await;

    let failing = simulator(&format!("error_rate = 1.0\n{FAILED_RUN}")).await;
    let lister = self::lister(failing.endpoint_url()).await;
    let outcome = lister.list_executions(&executions(None, None)).await;
    assert!(
        matches!(
            &outcome,
            Err(ReadFailure::Failed {
                kind: FailureKind::Server,
                code: Some(code),
                ..
            }) if code == "InternalServerException"
        ),
        "{outcome:?}"
    );
    assert_eq!(failing.stats().total(), 1);
    failing.shutdown().await;
}

/// Serves one canned 200 with `body` to every request, then closes.
async fn canned(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    endpoint
}

#[tokio::test]
async fn an_event_kind_the_sdk_does_not_know_is_skipped_not_fatal() {
    // The simulator only sends kinds the SDK knows; a newer service may not.
    let endpoint = canned(
        r#"{"flowExecutionEvents":[
            {"someFutureEvent":{"timestamp":"2024-05-01T10:00:00Z","detail":"new"}},
            {"nodeFailureEvent":{"nodeName":"Prompt_1","timestamp":"2024-05-01T10:00:01Z",
                "errorCode":"SOME_NEW_CODE","errorMessage":"boom"}}],
          "nextToken":"next-page"}"#,
    )
    .await;
    let lister = lister(endpoint).await;
    let page = lister
        .list_events(&events("run-1", EventKind::Node, Some(10)))
        .await
        .expect("a page despite the unknown kind");
    assert_eq!(page.skipped, 1, "{page:?}");
    assert_eq!(page.node_failures.len(), 1, "{page:?}");
    // A code newer than the SDK is carried raw.
    assert_eq!(page.node_failures[0].error_code, "SOME_NEW_CODE");
    assert_eq!(page.next_token.as_deref(), Some("next-page"));
}
