//! `[ha]` over a real etcd and the real binary (issue 12): two instances,
//! each aimed at its own simulator (same scenario, started together) so a
//! simulator's request log says which instance sent what.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flowwatch::simulate::Simulator;

use crate::api;
use crate::support::{self, Events, Spawned, etcd::Etcd};

/// Short leases so takeovers happen in seconds.
pub const LEASE: Duration = Duration::from_secs(3);
pub const SOON: Duration = Duration::from_secs(20);

pub fn scenario(executions: &[(&str, &str, &str)]) -> String {
    executions
        .iter()
        .map(|(id, at, end)| {
            format!(
                "[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"{id}\"\ntimeline = [{{ at = \"0s\", status = \"Running\" }}, {{ at = \"{at}\", status = \"{end}\" }}]\n"
            )
        })
        .collect()
}

pub struct Instance {
    _dir: tempfile::TempDir,
    config: PathBuf,
    /// `KUBECONFIG` for the child (the Kubernetes tests' fake API).
    kubeconfig: Option<PathBuf>,
}

impl Instance {
    fn new(sim: &Simulator, etcd: &Etcd, identity: &str, election: &str, ids: &[&str]) -> Instance {
        let ha = format!(
            "backend = \"etcd\"\nendpoints = [\"{}\"]\nelection = \"{election}\"\nlease = \"{}s\"\nrenew_deadline = \"2s\"\nretry = \"500ms\"\nidentity = \"{identity}\"\n",
            etcd.endpoint,
            LEASE.as_secs(),
        );
        Instance::with_ha(sim, &ha, ids)
    }

    /// An instance watching `ids` on `sim`, with `ha` as its `[ha]` table.
    pub fn with_ha(sim: &Simulator, ha: &str, ids: &[&str]) -> Instance {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = dir.path().join("flowwatch.toml");
        let watches: String = ids
            .iter()
            .map(|id| {
                format!("[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"{id}\"\n")
            })
            .collect();
        let text = format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n{}\n[ha]\n{ha}\n{watches}",
            sim.endpoint_url(),
            support::fast_poll(),
        );
        std::fs::write(&config, text).expect("write the config");
        Instance {
            _dir: dir,
            config,
            kubeconfig: None,
        }
    }

    /// Adds `[http]` on `addr` (the `/v1` API with it).
    fn with_http(self, addr: std::net::SocketAddr) -> Instance {
        self.append(&format!("\n[http]\nlisten = \"{addr}\"\n"));
        self
    }

    fn append(&self, text: &str) {
        let mut config = std::fs::read_to_string(&self.config).expect("read the config");
        config.push_str(text);
        std::fs::write(&self.config, config).expect("write the config");
    }

    pub fn with_kubeconfig(mut self, path: PathBuf) -> Instance {
        self.kubeconfig = Some(path);
        self
    }

    pub fn start(&self) -> Spawned {
        let mut command = support::flowwatch(&self.config, &["run"]);
        if let Some(path) = &self.kubeconfig {
            command.env("KUBECONFIG", path);
        }
        Spawned::start(command)
    }
}

pub fn leading(events: &Events) -> bool {
    !events.named("ha.leading").is_empty()
}

pub fn standing_by(events: &Events) -> bool {
    !events.named("ha.standby").is_empty()
}

/// Terminal transitions as (execution, to).
pub fn terminals(events: &Events) -> Vec<(String, String)> {
    events
        .named("execution.transition")
        .iter()
        .filter(|e| e["terminal"] == true)
        .map(|e| {
            (
                e["execution"].as_str().unwrap_or_default().to_string(),
                e["to"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Every execution event of a standby comes after its `ha.leading`.
pub fn polled_only_while_leading(events: &Events) -> bool {
    let names = events.names();
    let first_lead = names.iter().position(|n| *n == "ha.leading");
    let first_exec = names.iter().position(|n| n.starts_with("execution."));
    match (first_lead, first_exec) {
        (_, None) => true,
        (Some(lead), Some(exec)) => lead < exec,
        (None, Some(_)) => false,
    }
}

/// The last request's arrival, in the simulator's own clock.
pub fn last_request(sim: &Simulator) -> Option<Duration> {
    sim.stats().log.iter().map(|r| r.at).max()
}

pub fn first_request(sim: &Simulator) -> Option<Duration> {
    sim.stats().log.iter().map(|r| r.at).min()
}

#[tokio::test]
async fn killed_leaders_are_replaced_within_two_leases_and_no_terminal_transition_is_lost() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let ends = [
        ("run-1", "1s", "Succeeded"),
        ("run-2", "8s", "Failed"),
        ("run-3", "15s", "Succeeded"),
        ("run-4", "18s", "TimedOut"),
    ];
    let ids: Vec<&str> = ends.iter().map(|(id, _, _)| *id).collect();
    let (sim_a, sim_b) = (
        support::simulator(&scenario(&ends)).await,
        support::simulator(&scenario(&ends)).await,
    );
    let a = Instance::new(&sim_a, &etcd, "a", "kill9", &ids);
    let b = Instance::new(&sim_b, &etcd, "b", "kill9", &ids);
    let (first, second) = start_pair(&a, &b).await;
    let a_events = kill_after_reporting(first, "run-1", &etcd).await;
    let killed_at = Instant::now();
    let events = second
        .wait_for("b to lead after the kill", 2 * LEASE, leading)
        .await;
    eprintln!("takeover after kill -9 of a: {:?}", killed_at.elapsed());
    // The state in etcd carried run-1's end: b does not replay it.
    assert!(
        !terminals(&events).iter().any(|(id, _)| id == "run-1"),
        "b replayed run-1:\n{events}"
    );
    // The killed instance restarts as a standby.
    let third = a.start();
    third.wait_for("a to stand by", SOON, standing_by).await;
    // Never both at once: every request a sent arrived before b's first.
    let a_last = last_request(&sim_a).expect("a polled");
    let b_first = first_request(&sim_b).expect("b polled");
    assert!(
        a_last < b_first,
        "a's last request {a_last:?}, b's first {b_first:?}"
    );

    let b_events = kill_after_reporting(second, "run-2", &etcd).await;
    let killed_at = Instant::now();
    let events = third
        .wait_for("the restarted a to lead after b's kill", 2 * LEASE, leading)
        .await;
    eprintln!("takeover after kill -9 of b: {:?}", killed_at.elapsed());
    assert!(
        !terminals(&events).iter().any(|(id, _)| id == "run-2"),
        "the restarted a replayed run-2:\n{events}"
    );
    let b_last = last_request(&sim_b).expect("b polled");
    // The new leader's first request follows its `ha.leading` shortly.
    let since = Instant::now();
    let a_again = loop {
        let first = sim_a
            .stats()
            .log
            .iter()
            .map(|r| r.at)
            .filter(|at| *at > a_last)
            .min();
        if first.is_some() || since.elapsed() > SOON {
            break first;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        a_again.is_some_and(|at| b_last < at),
        "b's last request {b_last:?}, the restarted a's first {a_again:?}"
    );
    assert!(
        polled_only_while_leading(&b_events),
        "b polled on standby:\n{b_events}"
    );

    let c_events = third
        .wait_for(
            "the restarted a to report every end",
            Duration::from_secs(30),
            |e| {
                ["run-3", "run-4"]
                    .iter()
                    .all(|id| terminals(e).iter().any(|(seen, _)| seen == id))
            },
        )
        .await;
    assert!(
        polled_only_while_leading(&c_events),
        "the restarted a polled on standby:\n{c_events}"
    );
    let mut reported = terminals(&a_events);
    reported.extend(terminals(&b_events));
    reported.extend(terminals(&c_events));
    for (id, _, end) in ends {
        assert!(
            reported.iter().any(|(seen, to)| seen == id && to == end),
            "{id} never reported {end}; a:\n{a_events}\nb:\n{b_events}\na again:\n{c_events}"
        );
    }
}

/// Waits until `leader` reported `execution`'s end and the shared state in
/// etcd holds it, then kills it with SIGKILL; returns what it printed.
async fn kill_after_reporting(leader: Spawned, execution: &str, etcd: &Etcd) -> Events {
    leader
        .wait_for(
            &format!("the leader to report {execution}'s end"),
            SOON,
            |e| terminals(e).iter().any(|(id, _)| id == execution),
        )
        .await;
    let since = Instant::now();
    while !saved_as_terminal(etcd, execution).await {
        assert!(
            since.elapsed() < SOON,
            "{execution}'s end never reached etcd"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    leader.signal("KILL");
    leader.wait_exit(SOON).await.events
}

/// Whether `kill9/state` in etcd saves `execution` as terminal.
async fn saved_as_terminal(etcd: &Etcd, execution: &str) -> bool {
    let Ok(mut client) = etcd_client::Client::connect([&etcd.endpoint], None).await else {
        return false;
    };
    let Ok(answer) = client.get("kill9/state", None).await else {
        return false;
    };
    let Some(kv) = answer.kvs().first() else {
        return false;
    };
    let Ok(state) = serde_json::from_slice::<serde_json::Value>(kv.value()) else {
        return false;
    };
    state["watches"].as_object().is_some_and(|watches| {
        watches.iter().any(|(key, saved)| {
            key.ends_with(&format!("/{execution}")) && saved["terminal"] == true
        })
    })
}
#[tokio::test]
async fn sigterm_on_the_leader_hands_over_before_the_lease_could_expire() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let ends = [("run-t", "60s", "Succeeded")];
    let (sim_a, sim_b) = (
        support::simulator(&scenario(&ends)).await,
        support::simulator(&scenario(&ends)).await,
    );
    let a = Instance::new(&sim_a, &etcd, "a", "term", &["run-t"]);
    let b = Instance::new(&sim_b, &etcd, "b", "term", &["run-t"]);
    let (first, second) = start_pair(&a, &b).await;
    first.signal("TERM");
    let termed_at = Instant::now();
    second
        .wait_for("b to lead after the SIGTERM", LEASE, leading)
        .await;
    let handover = termed_at.elapsed();
    eprintln!("handover after SIGTERM: {handover:?}");
    let run = first.wait_exit(SOON).await;
    assert_eq!(run.exit_code, 0, "stderr: {}", run.stderr);
    assert_no_replay_after_two_polls(&sim_b, &second).await;
}

/// Starts `a` until it leads and `b` until it stands by, then waits for
/// `a`'s first transition: a pair at work.
pub async fn start_pair(a: &Instance, b: &Instance) -> (Spawned, Spawned) {
    let (first, second) = lead_and_stand_by(a, b).await;
    first
        .wait_for("a to poll", SOON, |e| {
            !e.named("execution.transition").is_empty()
        })
        .await;
    (first, second)
}

/// Starts `a` until it leads, then `b` until it stands by naming `a`.
pub async fn lead_and_stand_by(a: &Instance, b: &Instance) -> (Spawned, Spawned) {
    let first = a.start();
    first.wait_for("a to lead", SOON, leading).await;
    let second = b.start();
    second
        .wait_for("b to stand by, naming a", SOON, |e| {
            e.named("ha.standby").iter().any(|s| s["leader"] == "a")
        })
        .await;
    (first, second)
}

/// Once the new leader has polled twice: the old one's flushed state
/// carried the execution's `Running`, so the new one does not report it
/// again.
pub async fn assert_no_replay_after_two_polls(sim: &Simulator, leader: &Spawned) {
    while sim.stats().total() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        leader.events().named("execution.transition").is_empty(),
        "the new leader replayed what the old one saved:\n{}",
        leader.events()
    );
}

#[tokio::test]
async fn a_leader_frozen_past_its_lease_sends_nothing_after_it_resumes() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let ends = [("run-f", "60s", "Succeeded")];
    let (sim_a, sim_b) = (
        support::simulator(&scenario(&ends)).await,
        support::simulator(&scenario(&ends)).await,
    );
    let a = Instance::new(&sim_a, &etcd, "a", "freeze", &["run-f"]);
    let b = Instance::new(&sim_b, &etcd, "b", "freeze", &["run-f"]);
    let (first, second) = start_pair(&a, &b).await;
    first.signal("STOP");
    second
        .wait_for("b to lead while a is frozen", SOON, leading)
        .await;
    // b is polling: wait until it has, then wake a.
    while sim_b.stats().total() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_before = sim_a.stats().total();
    first.signal("CONT");
    first
        .wait_for("a to step down", SOON, |e| {
            e.names().iter().filter(|n| **n == "ha.standby").count() >= 1
                && e.names().last().is_some()
                && e.names().iter().rposition(|n| *n == "ha.standby")
                    > e.names().iter().rposition(|n| *n == "ha.leading")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sim_a.stats().total(),
        sent_before,
        "a sent requests after it resumed:\n{}",
        first.events()
    );
}

#[tokio::test]
async fn the_api_and_the_watched_files_follow_the_leader() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let sim = support::simulator(&scenario(&[
        ("run-c", "600s", "Succeeded"),
        ("run-api", "600s", "Succeeded"),
        ("run-file", "600s", "Succeeded"),
    ]))
    .await;
    let (addr_a, addr_b) = (api::free_addr(), api::free_addr());
    let a = Instance::new(&sim, &etcd, "a", "api", &["run-c"]).with_http(addr_a);
    let b = Instance::new(&sim, &etcd, "b", "api", &["run-c"]).with_http(addr_b);
    let (first, second) = lead_and_stand_by(&a, &b).await;

    // A standby's API refuses, naming the leader.
    let refused = request(addr_b, "GET", "/v1/watches", None).await;
    assert_eq!(refused.status, 503, "{}", refused.json);
    assert_eq!(refused.json["error"], "standby", "{}", refused.json);
    assert_eq!(refused.json["leader"], "a", "{}", refused.json);

    // The leader's API adds a watch; the leader's files are watched.
    let body = format!("{{\"execution_arn\":\"{}\"}}", api::arn("run-api"));
    let added = request(addr_a, "POST", "/v1/watches", Some(&body)).await;
    assert_eq!(added.status, 201, "{}", added.json);
    a.append(
        "\n[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-file\"\n",
    );
    first
        .wait_for("a to add run-file from its changed file", SOON, |e| {
            e.named("watch.added")
                .iter()
                .any(|w| w["execution"] == "run-file")
        })
        .await;
    first
        .wait_for("a to see run-api running", SOON, |e| {
            e.transitions_of("run-api").iter().any(|to| to == "Running")
        })
        .await;

    // After a handover the API watch lives on the new leader.
    first.signal("TERM");
    second.wait_for("b to lead", LEASE, leading).await;
    let path = format!("/v1/watches/{}", api::encoded(&api::arn("run-api")));
    let since = Instant::now();
    let moved = loop {
        let answer = request(addr_b, "GET", &path, None).await;
        if answer.status == 200 || since.elapsed() > SOON {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(moved.status, 200, "{}", moved.json);
    assert_eq!(moved.json["source"], "api", "{}", moved.json);
    assert_eq!(moved.json["status"], "Running", "{}", moved.json);
    let stopped = request(addr_a, "GET", "/v1/watches", None).await;
    assert_ne!(stopped.status, 200, "a still answers after it stopped");
}

async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> api::Answer {
    match api::try_request(addr, method, path, &[], body).await {
        Some(answer) => answer,
        None => api::Answer {
            status: 0,
            head: String::new(),
            json: serde_json::Value::Null,
        },
    }
}
