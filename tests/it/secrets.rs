//! Secrets and noise in output (issue 7.9): what the service says goes into
//! events, so a message quoting the credentials in use is redacted, and a
//! long one is capped, at every log level. The endpoint is a raw
//! `TcpListener` here: the simulator's error messages are fixed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support;

/// The session token the daemon runs with; it must never be printed.
const MARKER: &str = "MARKERsessionTOKEN/7f3a+Zq9=";
/// The secret key `support::flowwatch` sets.
const SECRET_KEY: &str = "flowwatch-test-secret";

/// One error answer: status, `x-amzn-ErrorType` code, message.
type Answer = (u16, &'static str, String);

/// Answers the n-th request with `answers[n]` (the last one from then on),
/// one request per connection.
async fn endpoint(answers: Vec<Answer>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let answers = Arc::new(answers);
    let served = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = served.fetch_add(1, Ordering::SeqCst);
            let (status, code, message) = answers[n.min(answers.len() - 1)].clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buf[..read]),
                    }
                }
                let body = serde_json::json!({ "message": message }).to_string();
                let response = format!(
                    "HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\nx-amzn-ErrorType: {code}:http://internal.amazon.com/coral/com.amazon.bedrock/\r\nx-amzn-RequestId: r-{n}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_session_token_and_secret_key_never_appear_in_output_and_messages_are_capped() {
    let signature = format!(
        "The request signature we calculated does not match the signature you provided. The Canonical String for this request should have been 'GET\n/flows/FLOW123456/aliases/ALIAS12345/executions/run-0001\n\nhost:127.0.0.1\nx-amz-security-token:{MARKER}\n' and the secret was {SECRET_KEY}"
    );
    let long = format!("{MARKER} {}", "overloaded ".repeat(400));
    let addr = endpoint(vec![
        (403, "InvalidSignatureException", signature),
        (500, "InternalServerException", long),
        (400, "ValidationException", format!("bad token {MARKER}")),
    ])
    .await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("flowwatch.toml");
    let text = format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://{addr}\"\n\n[log]\nformat = \"json\"\nlevel = \"trace\"\n{}\n[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-0001\"\n",
        support::fast_poll()
    );
    std::fs::write(&config, text).unwrap();
    let mut command = support::flowwatch(&config, &["run", "--once"]);
    command.env("AWS_SESSION_TOKEN", MARKER);
    let run = support::run_to_end(command).await;

    let everything = format!("{}\n{}", run.events, run.stderr);
    for secret in [MARKER, "MARKERsession", SECRET_KEY] {
        assert!(
            !everything.contains(secret),
            "{secret} printed:\n{everything}"
        );
    }
    // The answers did arrive, redacted: the run is not clean by accident.
    assert_eq!(run.exit_code, 3, "{everything}");
    let messages: Vec<&str> = run
        .events
        .named("poll.failed")
        .iter()
        .filter_map(|e| e["error_message"].as_str())
        .collect();
    let denied = messages
        .iter()
        .find(|m| m.starts_with("The request signature"))
        .unwrap_or_else(|| panic!("no signature error in:\n{everything}"));
    assert!(
        denied.contains("x-amz-security-token:[redacted]")
            && denied.contains("the secret was [redacted]"),
        "{denied}"
    );
    let capped = messages
        .iter()
        .find(|m| m.starts_with("[redacted] overloaded"))
        .unwrap_or_else(|| panic!("no server error in:\n{everything}"));
    assert_eq!(capped.chars().count(), 512, "{capped}");
    assert!(capped.ends_with('…'), "{capped}");
}
