//! The waiter bench's clients (benches/waiter.rs), in a child process so
//! their memory and CPU are not the daemon's: `--role streams` opens
//! `--count` `GET /v1/events` streams, `--role long-polls` one long poll per
//! ARN on standard input. Plain HTTP/1.1 over `TcpStream`, read as it comes.
//!
//! Out, on standard output: `ready` once every client is connected (a
//! stream got its first comment; a long poll's request is sent), then one
//! `sample EXECUTION TO UNIX_NS` line per transition a client read (a stream:
//! each terminal one, `--expect` of them; a long poll: its answer), and
//! `failed: ...` for a client that failed.

use std::io::{BufRead, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::common::arg;

/// The system clock in nanoseconds since the epoch: the daemon's process
/// and the clients' read the same clock.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One transition one client read, and when.
pub struct Sample {
    pub execution: String,
    pub to: String,
    pub at: u64,
}

impl Sample {
    fn line(&self) -> String {
        format!("sample {} {} {}", self.execution, self.to, self.at)
    }

    pub fn parse(line: &str) -> Option<Sample> {
        let mut words = line.strip_prefix("sample ")?.split(' ');
        Some(Sample {
            execution: words.next()?.to_string(),
            to: words.next()?.to_string(),
            at: words.next()?.parse().ok()?,
        })
    }
}

enum Report {
    Connected,
    Read(Sample),
    Failed(String),
    Done,
}

/// The child process: connects every client, reports, exits when each
/// client is done or failed (or after 5 minutes).
pub fn client_main() {
    let role: String = arg("role", String::new());
    let count: usize = arg("count", 0);
    let addr: String = arg("addr", String::new());
    let expect: usize = arg("expect", 0);
    let arns: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map(|l| l.expect("ARNs on stdin"))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..count {
            let tx = tx.clone();
            let addr = addr.clone();
            let target = arns.get(i % arns.len().max(1)).cloned().unwrap_or_default();
            let streams = role == "streams";
            tokio::spawn(async move {
                let done = if streams {
                    stream(&addr, expect, &tx).await
                } else {
                    long_poll(&addr, &target, &tx).await
                };
                let _ = tx.send(match done {
                    Ok(()) => Report::Done,
                    Err(e) => Report::Failed(e.to_string()),
                });
            });
        }
        drop(tx);
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let (mut connected, mut finished) = (0, 0);
        let deadline = tokio::time::sleep(Duration::from_secs(300));
        tokio::pin!(deadline);
        while finished < count {
            let report = tokio::select! {
                got = rx.recv() => match got { Some(r) => r, None => break },
                () = &mut deadline => { let _ = writeln!(out, "failed: deadline"); break }
            };
            match report {
                Report::Connected => {
                    connected += 1;
                    if connected == count {
                        let _ = writeln!(out, "ready");
                        let _ = out.flush();
                    }
                }
                Report::Read(sample) => {
                    let _ = writeln!(out, "{}", sample.line());
                }
                Report::Failed(why) => {
                    finished += 1;
                    let _ = writeln!(out, "failed: {why}");
                }
                Report::Done => finished += 1,
            }
        }
        let _ = out.flush();
    });
}

type Tx = mpsc::UnboundedSender<Report>;

/// One `GET /v1/events` stream: reads until `expect` terminal transitions.
async fn stream(addr: &str, expect: usize, tx: &Tx) -> std::io::Result<()> {
    let mut socket = TcpStream::connect(addr).await?;
    socket
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let (mut subscribed, mut ended) = (false, 0);
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("the stream ended"));
        }
        let at = now_ns();
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if !subscribed {
                if line.starts_with(b"HTTP/1.1 ") && !line.starts_with(b"HTTP/1.1 200") {
                    return Err(std::io::Error::other(
                        String::from_utf8_lossy(&line).trim().to_string(),
                    ));
                }
                if line.starts_with(b": flowwatch events") {
                    subscribed = true;
                    let _ = tx.send(Report::Connected);
                }
                continue;
            }
            let Some(data) = line.strip_prefix(b"data: ") else {
                continue;
            };
            let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) else {
                continue;
            };
            if event["event"] != "execution.transition" {
                continue;
            }
            let _ = tx.send(Report::Read(Sample {
                execution: event["execution"].as_str().unwrap_or("?").to_string(),
                to: event["to"].as_str().unwrap_or("?").to_string(),
                at,
            }));
            if event["terminal"] == true {
                ended += 1;
                if ended == expect {
                    return Ok(());
                }
            }
        }
    }
}

/// One long poll on `arn` since `Running`: reads the whole answer.
async fn long_poll(addr: &str, arn: &str, tx: &Tx) -> std::io::Result<()> {
    let id: String = arn
        .bytes()
        .map(|b| match b {
            b':' | b'/' => format!("%{b:02X}"),
            _ => (b as char).to_string(),
        })
        .collect();
    let mut socket = TcpStream::connect(addr).await?;
    let request = format!(
        "GET /v1/watches/{id}?wait=5m&since=Running HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await?;
    let _ = tx.send(Report::Connected);
    let (head, body, at) = answer(&mut socket).await?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(
            head.lines().next().unwrap_or("").to_string(),
        ));
    }
    let view: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(std::io::Error::other)?;
    let _ = tx.send(Report::Read(Sample {
        execution: view["execution"].as_str().unwrap_or("?").to_string(),
        to: view["status"].as_str().unwrap_or("?").to_string(),
        at,
    }));
    Ok(())
}

/// One HTTP answer: its head, its body (by `Content-Length`) and when its
/// last byte was read.
async fn answer(socket: &mut TcpStream) -> std::io::Result<(String, String, u64)> {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = socket.read(&mut buf).await?;
        let at = now_ns();
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if n == 0 || length.is_some_and(|len| body.len() >= len) {
                return Ok((head.to_string(), body.to_string(), at));
            }
        } else if n == 0 {
            return Err(std::io::Error::other("the answer ended early"));
        }
    }
}
