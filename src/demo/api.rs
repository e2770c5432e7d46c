//! The demo's waiter client (issue 10): once the daemon listens, it opens
//! the event stream (`GET /v1/events`), adds one execution over the API
//! (`POST /v1/watches`), and prints every event about that execution the
//! stream delivers, up to its terminal transition. In: the daemon's `[http]`
//! address. Out: narration on standard error, like the rest of the demo's.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The execution the demo adds over the API; the scenario runs it, the
/// watch list does not name it.
pub const EXECUTION: &str = "api-added";
const ARN: &str =
    "arn:aws:bedrock:us-east-1:123456789012:flow/DEMOFLOW01/alias/DEMOALIAS1/execution/api-added";

/// Subscribes, adds the watch, then follows it to its end. A failure is
/// printed, not returned: the rest of the demo goes on.
pub async fn follow(addr: SocketAddr) {
    if let Err(e) = subscribe_add_and_follow(addr).await {
        eprintln!("flowwatch demo: api client: {e}");
    }
}

async fn subscribe_add_and_follow(addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = connect(addr).await?;
    stream
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: demo\r\nAccept: text/event-stream\r\n\r\n")
        .await?;
    let mut lines = BufReader::new(stream).lines();
    // Subscribed once the stream's first comment arrives: nothing after it
    // is missed.
    while let Some(line) = lines.next_line().await? {
        if line.starts_with(": flowwatch events") {
            break;
        }
    }
    let status = add(addr).await?;
    eprintln!(
        "flowwatch demo: POST /v1/watches {{\"execution_arn\": \"…/{EXECUTION}\"}} → {status}"
    );

    let mut id = String::new();
    while let Some(line) = lines.next_line().await? {
        if let Some(rest) = line.strip_prefix("id: ") {
            id = rest.to_string();
        }
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let event: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        if event["execution"] != EXECUTION {
            continue;
        }
        let what = event["event"].as_str().unwrap_or("?");
        let change = match (event["from"].as_str(), event["to"].as_str()) {
            (Some(from), Some(to)) => format!("  {from} → {to}"),
            (None, Some(to)) => format!("  first seen {to}"),
            _ => String::new(),
        };
        eprintln!("flowwatch demo: SSE client got event {id}: {what} {EXECUTION}{change}");
        if event["event"] == "execution.transition" && event["terminal"] == true {
            return Ok(());
        }
    }
    Err(std::io::Error::other("the event stream ended early"))
}

/// Connects, retrying while the daemon starts its listener.
async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut tries = 0;
    loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) if tries >= 200 => return Err(e),
            Err(_) => tries += 1,
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `POST /v1/watches`; returns the answer's status line after the version
/// (`201 Created`).
async fn add(addr: SocketAddr) -> std::io::Result<String> {
    let body = format!("{{\"execution_arn\":\"{ARN}\",\"labels\":{{\"team\":\"api\"}}}}");
    let request = format!(
        "POST /v1/watches HTTP/1.1\r\nHost: demo\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let status = answer.lines().next().unwrap_or("");
    Ok(status
        .split_once(' ')
        .map_or(status, |(_, s)| s)
        .to_string())
}
