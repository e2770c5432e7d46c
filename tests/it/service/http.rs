//! `[http] listen` over the real binary: health, readiness and the metrics
//! a scraper sees as the daemon works, reloads and stops.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A loopback address nobody listens on right now.
fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    probe.local_addr().unwrap()
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// One raw HTTP/1.1 GET; `None` while nothing accepts connections.
async fn get(addr: SocketAddr, path: &str) -> Option<Answer> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let raw = String::from_utf8(raw).expect("a text response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Some(Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// GETs `path` until `done` holds for the answer.
async fn get_until(addr: SocketAddr, path: &str, done: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = tokio::time::Instant::now() + SOON;
    let mut last = None;
    loop {
        if let Some(answer) = get(addr, path).await {
            if done(&answer) {
                return answer;
            }
            last = Some(format!("{} {}", answer.status, answer.body));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET {path} never answered as expected; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one sample line (`name{labels} value`) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
}

fn at_least(text: &str, series: &str, floor: f64) -> bool {
    sample(text, series).is_some_and(|v| v >= floor)
}

#[tokio::test]
async fn health_readiness_and_metrics_follow_the_daemon() {
    let sim = support::simulator(&format!(
        "{}{}",
        execution("run-done", Some(("300ms", "Succeeded"))),
        execution("run-long", None)
    ))
    .await;
    let dir = Dir::new();
    let addr = free_addr();
    let body = format!(
        "[http]\nlisten = \"{addr}\"\n{}{}",
        watch("run-done"),
        watch("run-long")
    );
    dir.write("flowwatch.toml", &config_text(&sim, "", &body));
    let daemon = start(&dir.config());

    let ready = get_until(addr, "/readyz", |a| a.status == 200).await;
    assert_eq!(ready.body, "ready\n");
    let health = get_until(addr, "/healthz", |_| true).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let missing = get_until(addr, "/nothing-here", |_| true).await;
    assert_eq!(missing.status, 404);

    daemon
        .wait_for("run-done to succeed", SOON, |e| {
            reached(e, "run-done", "Succeeded")
        })
        .await;
    // The gauges follow on the loop's next beat (every second).
    let scrape = get_until(addr, "/metrics", |a| {
        at_least(
            &a.body,
            r#"flowwatch_transitions_total{to="Succeeded"}"#,
            1.0,
        ) && sample(&a.body, r#"flowwatch_watches{status="Succeeded"}"#) == Some(1.0)
    })
    .await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{}",
        scrape.head
    );
    let text = &scrape.body;
    for (series, floor) in [
        (r#"flowwatch_polls_total{outcome="observed"}"#, 3.0),
        (r#"flowwatch_transitions_total{to="Running"}"#, 1.0),
        (r#"flowwatch_watches{status="Running"}"#, 1.0),
        ("flowwatch_request_duration_seconds_count", 3.0),
        (
            r#"flowwatch_request_duration_seconds_bucket{le="+Inf"}"#,
            3.0,
        ),
    ] {
        assert!(
            at_least(text, series, floor),
            "{series} < {floor} in:\n{text}"
        );
    }
    assert!(
        sample(text, "flowwatch_request_duration_seconds_sum").is_some(),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "# TYPE flowwatch_request_duration_seconds histogram"),
        "{text}"
    );
    // Never throttled: the budget stays at `rate_limit` (200/s in fast_poll).
    assert_eq!(
        sample(
            text,
            r#"flowwatch_rate_limit_requests_per_second{region="us-east-1"}"#
        ),
        Some(200.0),
        "{text}"
    );
    assert_eq!(
        sample(text, r#"flowwatch_reloads_total{result="ok"}"#),
        Some(0.0),
        "{text}"
    );
    // Alerts on `rate()` need every counter from the first scrape (issue 7.10).
    assert_eq!(
        sample(text, r#"flowwatch_throttles_total{region="us-east-1"}"#),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(text, r#"flowwatch_transitions_total{to="other"}"#),
        Some(0.0),
        "{text}"
    );

    daemon.signal("HUP");
    daemon
        .wait_for("the reload", SOON, |e| {
            !e.named("daemon.reloaded").is_empty()
        })
        .await;
    let scrape = get_until(addr, "/metrics", |a| {
        at_least(&a.body, r#"flowwatch_reloads_total{result="ok"}"#, 1.0)
    })
    .await;
    assert_eq!(
        sample(&scrape.body, r#"flowwatch_reloads_total{result="failed"}"#),
        Some(0.0),
        "{}",
        scrape.body
    );
    stop(daemon).await;
}
