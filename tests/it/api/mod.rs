//! The waiter service (issue 10) over real HTTP: the real binary with
//! `[http]`, the simulator in-process, a raw HTTP/1.1 client. Watches added,
//! listed, read, deleted; validation; persistence; long polls; the event
//! stream; the token; the limits; and `flowwatch wait`.

mod demo;
mod stream;
mod wait;
mod watches;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use flowwatch::simulate::Simulator;

use crate::support::{self, Spawned};

/// Generous limit for anything that should take about a second.
const SOON: Duration = Duration::from_secs(10);

const FLOW: &str = "FLOW123456";
const ALIAS: &str = "ALIAS12345";

pub(crate) fn arn(execution: &str) -> String {
    format!(
        "arn:aws:bedrock:us-east-1:123456789012:flow/{FLOW}/alias/{ALIAS}/execution/{execution}"
    )
}

/// The ARN as one URL path segment.
pub(crate) fn encoded(text: &str) -> String {
    text.replace(':', "%3A").replace('/', "%2F")
}

/// A scenario execution: `Running`, then `end` at `end_at` (`None`: for ever).
fn execution(id: &str, end: Option<(&str, &str)>) -> String {
    let mut text = format!(
        "[[execution]]\nflow = \"{FLOW}\"\nalias = \"{ALIAS}\"\nid = \"{id}\"\ntimeline = [{{ at = \"0s\", status = \"Running\" }}"
    );
    if let Some((end_at, status)) = end {
        text.push_str(&format!(", {{ at = \"{end_at}\", status = \"{status}\" }}"));
    }
    text.push_str("]\n");
    text
}

pub(crate) fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    probe.local_addr().unwrap()
}

/// A daemon with `[http]` (plus `http_extra` keys) and `body` (more tables
/// or watches), in `dir`.
struct Daemon {
    child: Spawned,
    addr: SocketAddr,
}

struct Setup {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    text: String,
}

impl Setup {
    fn new(sim: &Simulator, http_extra: &str, body: &str) -> Setup {
        let dir = tempfile::tempdir().expect("a temp dir");
        let addr = free_addr();
        let text = format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n{}\n[http]\nlisten = \"{addr}\"\n{http_extra}\n{body}",
            sim.endpoint_url(),
            support::fast_poll()
        );
        Setup { dir, addr, text }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn with_state(mut self) -> Setup {
        self.text.push_str(&format!(
            "\n[state]\npath = \"{}\"\n",
            self.path("state.json").display()
        ));
        self
    }

    async fn start(&self) -> Daemon {
        let config = self.path("flowwatch.toml");
        std::fs::write(&config, &self.text).unwrap();
        let child = Spawned::start(support::flowwatch(&config, &["run"]));
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            if let Some(answer) = try_request(self.addr, "GET", "/readyz", &[], None).await
                && answer.status == 200
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the daemon never got ready; stderr:\n{}",
                child.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Daemon {
            child,
            addr: self.addr,
        }
    }
}

pub(crate) struct Answer {
    pub status: u16,
    pub head: String,
    pub json: Value,
}

pub(crate) async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<Answer> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let body = body.unwrap_or("");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let raw = String::from_utf8(raw).expect("a text response");
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        head: head.to_string(),
        json: serde_json::from_str(body.trim()).unwrap_or(Value::String(body.to_string())),
    })
}

impl Daemon {
    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        try_request(self.addr, method, path, headers, body)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{method} {path} got no answer; stderr:\n{}",
                    self.child.stderr()
                )
            })
    }

    async fn get(&self, path: &str) -> Answer {
        self.request("GET", path, &[], None).await
    }

    async fn post(&self, body: &str) -> Answer {
        self.request("POST", "/v1/watches", &[], Some(body)).await
    }

    async fn add(&self, execution: &str) -> Answer {
        self.post(&format!("{{\"execution_arn\":\"{}\"}}", arn(execution)))
            .await
    }

    /// Polls `GET /v1/watches/{arn}` until `done` holds.
    async fn until(&self, execution: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let answer = self
                .get(&format!("/v1/watches/{}", encoded(&arn(execution))))
                .await;
            if answer.status == 200 && done(&answer.json) {
                return answer.json;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{execution} never got there; last: {} {}",
                answer.status,
                answer.json
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> support::Run {
        self.child.signal("TERM");
        self.child.wait_exit(SOON).await
    }
}
