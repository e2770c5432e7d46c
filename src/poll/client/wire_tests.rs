//! `SdkFetcher` against a hand-rolled HTTP/1.1 server on 127.0.0.1:0: the
//! real SDK, real sockets, real clock. Each test scripts one canned raw
//! response (or a closed or silent connection) and reads what the client
//! sent. `retries_stay_off_...` re-runs itself in a child process so it can
//! set AWS_* variables without racing other tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_types::date_time::{DateTime, Format};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{Fetch, SdkFetcher, Target};
use crate::config::AwsSettings;
use crate::poll::outcome::{FailureKind, NodeError, PollOutcome, Status};

/// What the fake server does with every request it reads.
#[derive(Clone)]
enum Reply {
    /// Write these bytes, then close.
    Raw(String),
    /// Close without answering.
    Close,
    /// Keep the connection open and never answer.
    Silent,
}

struct FakeServer {
    endpoint: String,
    /// The head (request line and headers) of every request received.
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeServer {
    async fn start(reply: Reply) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (reply, seen) = (reply.clone(), seen.clone());
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut socket).await else {
                        return;
                    };
                    seen.lock().unwrap().push(head);
                    match reply {
                        Reply::Raw(bytes) => {
                            let _ = socket.write_all(bytes.as_bytes()).await;
                            let _ = socket.shutdown().await;
                        }
                        Reply::Close => drop(socket),
                        Reply::Silent => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            drop(socket);
                        }
                    }
                });
            }
        });
        FakeServer { endpoint, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    async fn fetcher(&self, request_timeout: Duration) -> SdkFetcher {
        let aws = AwsSettings {
            region: Some("us-east-1".into()),
            profile: None,
            endpoint_url: Some(self.endpoint.clone()),
        };
        let credentials = Credentials::new("AKIDFLOWWATCHTEST", "not-a-secret", None, None, "test");
        SdkFetcher::new(
            &aws,
            request_timeout,
            Some(SharedCredentialsProvider::new(credentials)),
        )
        .await
    }

    /// One fetch of execution E of alias A of flow F, with a generous timeout.
    async fn fetch_once(&self) -> PollOutcome {
        self.fetcher(Duration::from_secs(10))
            .await
            .fetch(&target())
            .await
    }
}

/// Reads up to the blank line that ends a request head (GET has no body).
async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn target() -> Target {
    Target {
        region: "us-east-1".into(),
        flow: "F".into(),
        alias: "A".into(),
        execution: "E".into(),
    }
}

/// A complete response with a correct Content-Length.
fn http(status: &str, headers: &[&str], body: &str) -> Reply {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    Reply::Raw(format!("{head}\r\n{body}"))
}

fn json(status: &str, headers: &[&str], body: &str) -> Reply {
    let mut all = vec!["Content-Type: application/json"];
    all.extend_from_slice(headers);
    http(status, &all, body)
}

fn error(status: &str, code: &str, message: &str) -> Reply {
    let header = format!("x-amzn-ErrorType: {code}");
    json(status, &[&header], &format!(r#"{{"message":"{message}"}}"#))
}

fn at(rfc3339: &str) -> SystemTime {
    SystemTime::try_from(DateTime::from_str(rfc3339, Format::DateTime).unwrap()).unwrap()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn a_full_response_becomes_an_observation_with_parsed_times_and_node_errors() {
    let body = r#"{"executionArn":"arn:aws:bedrock:us-east-1:123456789012:flow/F/alias/A/execution/E",
        "status":"Failed","startedAt":"2024-05-01T10:00:00Z","endedAt":"2024-05-01T10:05:30.250Z",
        "errors":[{"nodeName":"Prompt_1","error":"ExecutionTimedOut","message":"node took too long"},
                  {"error":"SomethingNew","message":"no node"}],
        "flowAliasIdentifier":"A","flowIdentifier":"F","flowVersion":"3"}"#;
    let server = FakeServer::start(json("200 OK", &[], body)).await;
    let PollOutcome::Observed(o) = server.fetch_once().await else {
        panic!("not observed")
    };
    assert_eq!(o.status, Status::Failed);
    assert_eq!(
        o.execution_arn.as_deref(),
        Some("arn:aws:bedrock:us-east-1:123456789012:flow/F/alias/A/execution/E")
    );
    assert_eq!(o.flow_version.as_deref(), Some("3"));
    assert_eq!(o.started_at, Some(at("2024-05-01T10:00:00Z")));
    assert_eq!(o.ended_at, Some(at("2024-05-01T10:05:30.250Z")));
    assert_eq!(
        o.errors,
        [
            NodeError {
                error: "ExecutionTimedOut".into(),
                message: "node took too long".into(),
                node: Some("Prompt_1".into())
            },
            NodeError {
                error: "SomethingNew".into(),
                message: "no node".into(),
                node: None
            },
        ]
    );
}

#[tokio::test]
async fn a_status_the_sdk_does_not_know_is_carried_raw_and_not_terminal() {
    let body = r#"{"executionArn":"arn","status":"InProgress","startedAt":"2024-05-01T10:00:00Z",
        "flowAliasIdentifier":"A","flowIdentifier":"F","flowVersion":"1"}"#;
    let server = FakeServer::start(json("200 OK", &[], body)).await;
    let PollOutcome::Observed(o) = server.fetch_once().await else {
        panic!("not observed")
    };
    assert_eq!(o.status, Status::Other("InProgress".into()));
    assert!(!o.status.is_terminal());
    assert_eq!((o.ended_at, o.errors.len()), (None, 0));
}

#[tokio::test]
async fn the_request_is_a_sigv4_signed_get_of_the_plain_ids() {
    let server = FakeServer::start(error(
        "404 Not Found",
        "ResourceNotFoundException",
        "no such execution",
    ))
    .await;
    server.fetch_once().await;
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let head = &requests[0];
    assert_eq!(
        head.lines().next(),
        Some("GET /flows/F/aliases/A/executions/E HTTP/1.1"),
        "{head}"
    );
    let auth = header(head, "authorization").unwrap_or_else(|| panic!("no authorization: {head}"));
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDFLOWWATCHTEST/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
}

#[tokio::test]
async fn a_429_is_throttled_with_or_without_an_error_type_and_keeps_retry_after() {
    let typed = FakeServer::start(json(
        "429 Too Many Requests",
        &["x-amzn-ErrorType: ThrottlingException", "Retry-After: 2"],
        r#"{"message":"Rate exceeded"}"#,
    ))
    .await;
    assert_eq!(
        typed.fetch_once().await,
        PollOutcome::Throttled {
            retry_after: Some(Duration::from_secs(2))
        }
    );

    let bare = FakeServer::start(http(
        "429 Too Many Requests",
        &["x-amz-retry-after: 750"],
        "",
    ))
    .await;
    assert_eq!(
        bare.fetch_once().await,
        PollOutcome::Throttled {
            retry_after: Some(Duration::from_millis(750))
        }
    );

    let html = FakeServer::start(http(
        "429 Too Many Requests",
        &["Content-Type: text/html"],
        "<html>slow down</html>",
    ))
    .await;
    assert_eq!(
        html.fetch_once().await,
        PollOutcome::Throttled { retry_after: None }
    );
}

#[tokio::test]
async fn a_500_is_a_server_failure_and_an_html_502_too() {
    let typed = FakeServer::start(error(
        "500 Internal Server Error",
        "InternalServerException",
        "oops",
    ))
    .await;
    assert_eq!(
        typed.fetch_once().await,
        PollOutcome::Failed {
            kind: FailureKind::Server,
            code: Some("InternalServerException".into()),
            message: "oops".into(),
            retry_after: None,
        }
    );
    let html = FakeServer::start(http(
        "502 Bad Gateway",
        &["Content-Type: text/html"],
        "<html>bad gateway</html>",
    ))
    .await;
    let outcome = html.fetch_once().await;
    assert!(
        matches!(
            outcome,
            PollOutcome::Failed {
                kind: FailureKind::Server,
                code: None,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn service_errors_map_to_not_found_invalid_and_access_denied() {
    let not_found = FakeServer::start(error(
        "404 Not Found",
        "ResourceNotFoundException",
        "no such execution",
    ))
    .await;
    assert_eq!(
        not_found.fetch_once().await,
        PollOutcome::NotFound {
            message: "no such execution".into()
        }
    );

    let invalid =
        FakeServer::start(error("400 Bad Request", "ValidationException", "bad id")).await;
    assert_eq!(
        invalid.fetch_once().await,
        PollOutcome::Invalid {
            message: "bad id".into()
        }
    );

    let denied = FakeServer::start(error(
        "403 Forbidden",
        "AccessDeniedException",
        "not allowed",
    ))
    .await;
    assert_eq!(
        denied.fetch_once().await,
        PollOutcome::AccessDenied {
            code: "AccessDeniedException".into(),
            message: "not allowed".into()
        }
    );

    let token = FakeServer::start(error("403 Forbidden", "ExpiredTokenException", "expired")).await;
    assert_eq!(
        token.fetch_once().await,
        PollOutcome::AccessDenied {
            code: "ExpiredTokenException".into(),
            message: "expired".into()
        }
    );
}

#[tokio::test]
async fn truncated_json_html_and_a_missing_status_are_unparsable() {
    let truncated = FakeServer::start(json(
        "200 OK",
        &[],
        r#"{"executionArn":"arn","status":"Runn"#,
    ))
    .await;
    let html = FakeServer::start(http(
        "200 OK",
        &["Content-Type: text/html"],
        "<html>hello</html>",
    ))
    .await;
    let no_status = FakeServer::start(json(
        "200 OK",
        &[],
        r#"{"executionArn":"arn","flowVersion":"1"}"#,
    ))
    .await;
    for server in [truncated, html, no_status] {
        let outcome = server.fetch_once().await;
        assert!(
            matches!(
                outcome,
                PollOutcome::Failed {
                    kind: FailureKind::Unparsable,
                    code: None,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_body_cut_off_by_the_connection_is_a_connection_failure() {
    // Content-Length promises more than is sent before the close.
    let cut = Reply::Raw(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"status\":\"Run".into(),
    );
    let server = FakeServer::start(cut).await;
    let outcome = server.fetch_once().await;
    assert!(
        matches!(
            outcome,
            PollOutcome::Failed {
                kind: FailureKind::Connection,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_connection_closed_without_a_response_is_a_connection_failure() {
    let server = FakeServer::start(Reply::Close).await;
    let outcome = server.fetch_once().await;
    let PollOutcome::Failed {
        kind: FailureKind::Connection,
        message,
        ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert!(
        !message.is_empty() && message != "service error",
        "{outcome:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_a_connection_failure() {
    // Bind, note the port, and close: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let aws = AwsSettings {
        region: Some("us-east-1".into()),
        profile: None,
        endpoint_url: Some(endpoint),
    };
    let credentials =
        SharedCredentialsProvider::new(Credentials::new("AKID", "secret", None, None, "test"));
    let fetcher = SdkFetcher::new(&aws, Duration::from_secs(10), Some(credentials)).await;
    let outcome = fetcher.fetch(&target()).await;
    assert!(
        matches!(
            outcome,
            PollOutcome::Failed {
                kind: FailureKind::Connection,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_after_the_request_timeout() {
    let server = FakeServer::start(Reply::Silent).await;
    let fetcher = server.fetcher(Duration::from_millis(200)).await;
    // The outer bound only keeps a broken timeout from hanging the suite.
    let outcome = tokio::time::timeout(Duration::from_secs(30), fetcher.fetch(&target()))
        .await
        .expect("fetch returned");
    assert!(
        matches!(
            outcome,
            PollOutcome::Failed {
                kind: FailureKind::Timeout,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn one_client_per_region_serves_every_fetch_and_reports_the_default_region() {
    let server = FakeServer::start(error(
        "500 Internal Server Error",
        "InternalServerException",
        "oops",
    ))
    .await;
    let fetcher = server.fetcher(Duration::from_secs(10)).await;
    assert_eq!(fetcher.default_region().as_deref(), Some("us-east-1"));
    let other = Target {
        region: "eu-west-1".into(),
        ..target()
    };
    for t in [target(), target(), other] {
        fetcher.fetch(&t).await;
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    let scopes: Vec<bool> = requests
        .iter()
        .map(|h| {
            header(h, "authorization")
                .unwrap_or_default()
                .contains("/eu-west-1/bedrock/")
        })
        .collect();
    assert_eq!(scopes, [false, false, true]);
    assert_eq!(fetcher.inner.clients.lock().unwrap().len(), 2);
}

/// Set in the child process that `retries_stay_off_...` starts.
const CHILD_MARKER: &str = "FLOWWATCH_RETRY_ENV_CHILD";
const CHILD_PASSED: &str = "flowwatch-retry-env-child-passed";

#[tokio::test]
async fn retries_stay_off_when_the_environment_asks_for_them() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        return retries_off_in_this_process().await;
    }
    // std::env::set_var is process-wide (and unsafe): set the variables only
    // in a child running this same test, so no other test sees them.
    let exe = std::env::current_exe().unwrap();
    let name = format!(
        "{}::retries_stay_off_when_the_environment_asks_for_them",
        test_module_path()
    );
    for mode in ["adaptive", "standard"] {
        let out = std::process::Command::new(&exe)
            .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_MARKER, "1")
            .env("AWS_MAX_ATTEMPTS", "5")
            .env("AWS_RETRY_MODE", mode)
            .env("AWS_NEW_RETRIES_2026", "true")
            // Keep the user's own profile files and instance metadata out of it.
            .env("AWS_CONFIG_FILE", "/nonexistent/flowwatch-test/config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/flowwatch-test/credentials",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "child ({mode}) failed:\n{stdout}\n{stderr}"
        );
        // A wrong test name would run nothing and still exit 0.
        assert!(
            stdout.contains(CHILD_PASSED),
            "child ({mode}) did not run the check:\n{stdout}\n{stderr}"
        );
    }
}

/// `flowwatch::poll::client::wire_tests` → `poll::client::wire_tests`, as
/// the test harness names tests.
fn test_module_path() -> &'static str {
    module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest)
}

async fn retries_off_in_this_process() {
    // The variables do reach aws-config here: left to itself it would try 5
    // times, with the 2026 retry behaviour.
    let from_env = aws_config::default_provider::retry_config::default_provider()
        .retry_config()
        .await;
    assert_eq!(from_env.max_attempts(), 5);
    assert!(
        from_env.retry_spec().is_some(),
        "AWS_NEW_RETRIES_2026 not seen: {from_env:?}"
    );

    let server_error = FakeServer::start(error(
        "500 Internal Server Error",
        "InternalServerException",
        "oops",
    ))
    .await;
    let throttled = FakeServer::start(json(
        "429 Too Many Requests",
        &["x-amzn-ErrorType: ThrottlingException"],
        r#"{"message":"Rate exceeded"}"#,
    ))
    .await;
    for server in [&server_error, &throttled] {
        let fetcher = server.fetcher(Duration::from_secs(10)).await;
        for attempt in 1..=2 {
            let outcome = fetcher.fetch(&target()).await;
            assert!(!matches!(outcome, PollOutcome::Observed(_)), "{outcome:?}");
            assert_eq!(
                server.requests().len(),
                attempt,
                "after fetch #{attempt}: {outcome:?}"
            );
        }
    }
    println!("{CHILD_PASSED}");
}
