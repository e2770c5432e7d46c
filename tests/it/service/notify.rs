//! sd_notify over a real datagram socket: what systemd hears, and in which
//! order, from start-up to a reload and a stop.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use super::*;

/// The test's end of `NOTIFY_SOCKET`: every datagram heard so far.
struct Heard {
    socket: UnixDatagram,
    messages: Vec<String>,
}

impl Heard {
    fn bind(path: &Path) -> Heard {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        socket.set_nonblocking(true).unwrap();
        Heard {
            socket,
            messages: Vec::new(),
        }
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            let text = String::from_utf8(buf[..n].to_vec()).expect("notifications are text");
            self.messages.push(text);
        }
    }

    /// Waits until `done` holds for the messages so far.
    async fn until(&mut self, what: &str, limit: Duration, done: impl Fn(&[String]) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.drain();
            if done(&self.messages) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {limit:?} for {what}; heard: {:#?}",
                self.messages
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn count(&self, message: &str) -> usize {
        self.messages.iter().filter(|m| *m == message).count()
    }

    fn statuses(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter_map(|m| m.strip_prefix("STATUS="))
            .collect()
    }
}

#[tokio::test]
async fn systemd_hears_ready_status_watchdog_reloading_and_stopping_in_order() {
    let sim = support::simulator(&format!(
        "{}{}",
        execution("run-done", Some(("600ms", "Succeeded"))),
        execution("run-long", None)
    ))
    .await;
    let dir = Dir::new();
    let watches = format!("{}{}", watch("run-done"), watch("run-long"));
    dir.write("flowwatch.toml", &config_text(&sim, "", &watches));
    let socket = dir.path("notify.sock");
    let mut heard = Heard::bind(&socket);
    let mut command = support::flowwatch(&dir.config(), &["run"]);
    // No WATCHDOG_PID: the child's pid is unknown before it starts, and
    // without it the watchdog applies to whoever reads the variable.
    command
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "400000");
    let daemon = Spawned::start(command);

    heard
        .until("READY=1", SOON, |m| m.iter().any(|m| m == "READY=1\n"))
        .await;
    assert_eq!(heard.messages[0], "READY=1\n", "READY comes first");
    // The daemon writes its start-up events before it sends READY.
    let events = daemon
        .wait_for("both watches added", SOON, |e| {
            e.named("watch.added").len() == 2
        })
        .await;
    let names = events.names();
    let started = names.iter().position(|n| *n == "daemon.started");
    let added = names.iter().position(|n| *n == "watch.added");
    assert!(started.is_some() && started < added, "{events}");
    assert_eq!(
        heard.statuses().first(),
        Some(&"watching 2, terminal 0, throttled 0\n"),
        "{:#?}",
        heard.messages
    );

    // Half of WATCHDOG_USEC is 200 ms: a few pings well within 1.5 s.
    heard
        .until("3 watchdog pings", Duration::from_millis(1500), |m| {
            m.iter().filter(|m| *m == "WATCHDOG=1\n").count() >= 3
        })
        .await;

    // The live counts follow the executions.
    daemon
        .wait_for("run-done to succeed", SOON, |e| {
            reached(e, "run-done", "Succeeded")
        })
        .await;
    heard
        .until("a status with one terminal", SOON, |m| {
            m.iter()
                .any(|m| m == "STATUS=watching 1, terminal 1, throttled 0\n")
        })
        .await;

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 straight after.
    let before_reload = heard.messages.len();
    daemon.signal("HUP");
    heard
        .until("READY after RELOADING", SOON, |m| {
            m[before_reload..]
                .iter()
                .skip_while(|m| !m.starts_with("RELOADING=1"))
                .any(|m| m == "READY=1\n")
        })
        .await;
    let after: Vec<&String> = heard.messages[before_reload..]
        .iter()
        .skip_while(|m| !m.starts_with("RELOADING=1"))
        .collect();
    let mut reloading = after[0].lines();
    assert_eq!(reloading.next(), Some("RELOADING=1"), "{after:#?}");
    let usec = reloading
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(usec.is_some_and(|n| n > 0), "{after:#?}");
    assert_eq!(after[1], "READY=1\n", "{after:#?}");
    let events = daemon
        .wait_for("daemon.reloaded", SOON, |e| {
            !e.named("daemon.reloaded").is_empty()
        })
        .await;
    let reloaded = events.named("daemon.reloaded")[0];
    assert_eq!(
        reload_counts(reloaded),
        [0, 0, 2],
        "an unchanged config: {events}"
    );
    // Still alive after the reload.
    let pings = heard.count("WATCHDOG=1\n");
    heard
        .until("a watchdog ping after the reload", SOON, |m| {
            m.iter().filter(|m| *m == "WATCHDOG=1\n").count() > pings
        })
        .await;

    // SIGTERM: STOPPING=1 is the last word, and the exit is clean.
    daemon.signal("TERM");
    let run = daemon.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(run.exit_code, 0, "stderr: {}", run.stderr);
    heard.drain();
    assert_eq!(heard.count("STOPPING=1\n"), 1, "{:#?}", heard.messages);
    assert_eq!(
        heard.messages.last().map(String::as_str),
        Some("STOPPING=1\n"),
        "{:#?}",
        heard.messages
    );
    assert_eq!(heard.count("READY=1\n"), 2, "{:#?}", heard.messages);
}

#[tokio::test]
async fn the_status_line_counts_throttled_answers() {
    // One request a second and three watches: most polls are throttled.
    let sim = support::simulator(&format!(
        "quota = 1.0\nquota_burst = 1.0\n{}{}{}",
        execution("run-1", None),
        execution("run-2", None),
        execution("run-3", None)
    ))
    .await;
    let dir = Dir::new();
    let watches = format!("{}{}{}", watch("run-1"), watch("run-2"), watch("run-3"));
    dir.write("flowwatch.toml", &config_text(&sim, "", &watches));
    let socket = dir.path("notify.sock");
    let mut heard = Heard::bind(&socket);
    let mut command = support::flowwatch(&dir.config(), &["run"]);
    command
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "400000");
    let daemon = Spawned::start(command);

    heard
        .until("a status with throttled answers", SOON, |m| {
            m.iter().any(|m| {
                m.starts_with("STATUS=watching 3, terminal 0, throttled ")
                    && !m.ends_with(" throttled 0\n")
            })
        })
        .await;
    let events = stop(daemon).await;
    heard.drain();
    let most: u64 = heard
        .statuses()
        .iter()
        .filter_map(|s| s.trim_end().rsplit(' ').next()?.parse().ok())
        .max()
        .unwrap_or(0);
    let throttled = events.named("poll.throttled").len() as u64;
    assert!(
        (1..=throttled).contains(&most),
        "status said {most} throttled, {throttled} poll.throttled events"
    );
}
