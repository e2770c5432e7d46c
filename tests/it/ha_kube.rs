//! `[ha] backend = "kubernetes"` (issue 12) against a recorded fake of the
//! Kubernetes API (support/kube.rs; no kube-apiserver can be installed
//! here): the real binary for takeovers, the backend in-process for the
//! fence and the request shapes.

use std::time::{Duration, Instant};

use serde_json::Value;

use flowwatch::config::{HaBackend, HaSettings};
use flowwatch::ha::engine::{Campaign, Engine, RenewError};
use flowwatch::ha::kubernetes::Kube;
use flowwatch::state::Store;

use crate::ha::{
    Instance, LEASE, SOON, assert_no_replay_after_two_polls, first_request, last_request, leading,
    polled_only_while_leading, scenario, start_pair, terminals,
};
use crate::support;
use crate::support::kube::{FakeKube, NAMESPACE, Recorded};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/flowwatch-test/leases";
const CONFIGMAPS: &str = "/api/v1/namespaces/flowwatch-test/configmaps";

fn ha_table(identity: &str, lease: Duration, renew_deadline: &str, retry: &str) -> String {
    format!(
        "backend = \"kubernetes\"\nlease_name = \"flowwatch\"\nlease = \"{}s\"\nrenew_deadline = \"{renew_deadline}\"\nretry = \"{retry}\"\nidentity = \"{identity}\"\n",
        lease.as_secs()
    )
}

/// Waits until the state ConfigMap saves `execution` as terminal.
async fn saved_as_terminal(fake: &FakeKube, execution: &str) {
    let since = Instant::now();
    loop {
        let state: Option<Value> = fake
            .config_map("flowwatch-state")
            .and_then(|map| serde_json::from_str(map["data"]["state.json"].as_str()?).ok());
        let saved = state.is_some_and(|state| {
            state["watches"].as_object().is_some_and(|watches| {
                watches.iter().any(|(key, saved)| {
                    key.ends_with(&format!("/{execution}")) && saved["terminal"] == true
                })
            })
        });
        if saved {
            return;
        }
        assert!(
            since.elapsed() < SOON,
            "{execution}'s end never reached the ConfigMap"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn on_kubernetes_one_instance_leads_and_a_killed_leader_is_replaced_within_two_leases() {
    let fake = FakeKube::spawn().await;
    let ends = [("run-1", "1s", "Succeeded"), ("run-2", "12s", "Failed")];
    let ids: Vec<&str> = ends.iter().map(|(id, _, _)| *id).collect();
    let (sim_a, sim_b) = (
        support::simulator(&scenario(&ends)).await,
        support::simulator(&scenario(&ends)).await,
    );
    let start = |sim, identity| {
        Instance::with_ha(sim, &ha_table(identity, LEASE, "2s", "500ms"), &ids)
            .with_kubeconfig(fake.kubeconfig())
    };
    let (a, b) = (start(&sim_a, "a"), start(&sim_b, "b"));
    let (first, second) = start_pair(&a, &b).await;
    first
        .wait_for("a to report run-1's end", SOON, |e| {
            terminals(e).iter().any(|(id, _)| id == "run-1")
        })
        .await;
    saved_as_terminal(&fake, "run-1").await;
    assert!(
        !leading(&second.events()),
        "both lead:\n{}",
        second.events()
    );
    first.signal("KILL");
    let killed_at = Instant::now();
    let a_events = first.wait_exit(SOON).await.events;
    let events = second
        .wait_for("b to lead after the kill", 2 * LEASE, leading)
        .await;
    eprintln!(
        "kubernetes: takeover after kill -9 of the leader: {:?}",
        killed_at.elapsed()
    );
    assert!(
        !terminals(&events).iter().any(|(id, _)| id == "run-1"),
        "b replayed run-1, which a had saved:\n{events}"
    );
    let b_events = second
        .wait_for("b to report run-2's end", SOON, |e| {
            terminals(e)
                .iter()
                .any(|(id, to)| id == "run-2" && to == "Failed")
        })
        .await;
    assert!(
        polled_only_while_leading(&b_events),
        "b polled on standby:\n{b_events}"
    );
    let a_last = last_request(&sim_a).expect("a polled");
    let b_first = first_request(&sim_b).expect("b polled");
    assert!(
        a_last < b_first,
        "a's last request {a_last:?}, b's first {b_first:?}"
    );
    assert!(
        terminals(&a_events)
            .iter()
            .any(|(id, to)| id == "run-1" && to == "Succeeded")
    );
    let lease = fake.lease("flowwatch").expect("the lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
}

#[tokio::test]
async fn on_kubernetes_sigterm_hands_over_in_under_one_retry() {
    let fake = FakeKube::spawn().await;
    let ends = [("run-t", "60s", "Succeeded")];
    let (sim_a, sim_b) = (
        support::simulator(&scenario(&ends)).await,
        support::simulator(&scenario(&ends)).await,
    );
    // A long retry: a standby that only looked every `retry` would take
    // over half a retry late on average; the watch sees the release at once.
    let retry = Duration::from_secs(2);
    let start = |sim, identity| {
        Instance::with_ha(sim, &ha_table(identity, 3 * retry, "4s", "2s"), &["run-t"])
            .with_kubeconfig(fake.kubeconfig())
    };
    let (a, b) = (start(&sim_a, "a"), start(&sim_b, "b"));
    let (first, second) = start_pair(&a, &b).await;
    // b's campaign has settled into its watch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.signal("TERM");
    let termed_at = Instant::now();
    second
        .wait_for(
            "b to lead in under half a retry after the SIGTERM",
            retry / 2,
            leading,
        )
        .await;
    eprintln!(
        "kubernetes: handover after SIGTERM: {:?}",
        termed_at.elapsed()
    );
    let run = first.wait_exit(SOON).await;
    assert_eq!(run.exit_code, 0, "stderr: {}", run.stderr);
    let released = fake
        .requests()
        .into_iter()
        .find(|r| {
            r.method == "PUT"
                && r.path.starts_with(LEASES)
                && r.body
                    .as_ref()
                    .is_some_and(|b| b["spec"]["holderIdentity"].is_null())
        })
        .expect("a released the lease");
    assert_eq!(released.body.unwrap()["spec"]["leaseDurationSeconds"], 1);
    assert_no_replay_after_two_polls(&sim_b, &second).await;
}

#[tokio::test]
async fn on_kubernetes_a_leader_that_cannot_renew_stops_polling_and_stands_by() {
    let fake = FakeKube::spawn().await;
    let ends = [("run-d", "60s", "Succeeded")];
    let sim = support::simulator(&scenario(&ends)).await;
    let a = Instance::with_ha(&sim, &ha_table("a", LEASE, "2s", "500ms"), &["run-d"])
        .with_kubeconfig(fake.kubeconfig());
    let first = a.start();
    first.wait_for("a to lead", SOON, leading).await;
    while sim.stats().total() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.set_down(true);
    let down_at = Instant::now();
    first
        .wait_for("a to stand by once the API is gone", SOON, |e| {
            e.names().iter().rposition(|n| *n == "ha.standby")
                > e.names().iter().rposition(|n| *n == "ha.leading")
        })
        .await;
    eprintln!(
        "kubernetes: stood by {:?} after the API went down",
        down_at.elapsed()
    );
    let sent = sim.stats().total();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sim.stats().total(),
        sent,
        "a polled on standby:\n{}",
        first.events()
    );
    // The API back: a (the holder of record) leads again.
    fake.set_down(false);
    first
        .wait_for("a to lead again", SOON, |e| {
            e.named("ha.leading").len() >= 2
        })
        .await;
}

#[tokio::test]
async fn without_a_kubernetes_client_configuration_run_exits_1_naming_it() {
    let sim = support::simulator(&scenario(&[("run-n", "60s", "Succeeded")])).await;
    let a = Instance::with_ha(&sim, &ha_table("a", LEASE, "2s", "500ms"), &["run-n"]);
    let run = a.start().wait_exit(SOON).await;
    assert_eq!(run.exit_code, 1, "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains(
            "cannot set up the [ha] backend: cannot find a kubernetes client configuration"
        ),
        "stderr: {}",
        run.stderr
    );
}

fn settings(identity: &str) -> HaSettings {
    HaSettings {
        backend: HaBackend::Kubernetes {
            lease_name: "flowwatch".into(),
            namespace: None,
        },
        lease: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry: Duration::from_secs(2),
        identity: identity.into(),
    }
}

async fn engine(fake: &FakeKube, identity: &str) -> Kube {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(fake.kubeconfig()).expect("the kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("the kubeconfig makes a client config");
    Kube::from_config(config, "flowwatch", None, &settings(identity)).expect("a client")
}

async fn save(store: &std::sync::Arc<Box<dyn Store>>, text: &'static str) -> std::io::Result<()> {
    let store = std::sync::Arc::clone(store);
    tokio::task::spawn_blocking(move || store.save(text.as_bytes()))
        .await
        .expect("the save does not panic")
}

fn since(requests: &[Recorded], n: usize) -> Vec<(String, String)> {
    requests[n..]
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_state_write_and_renewal_are_refused() {
    let fake = FakeKube::spawn().await;
    let mut a = engine(&fake, "a").await;
    let Ok(Campaign::Won { mut term, .. }) = a.campaign().await else {
        panic!("a wins an empty election: {:?}", fake.requests());
    };
    assert_eq!(a.load_state().await.expect("the state reads"), None);
    let store = std::sync::Arc::new(a.store(&term));
    save(&store, r#"{"watches":{}}"#)
        .await
        .expect("the leader's write lands");
    fake.take_lease("flowwatch", "intruder");
    let before = fake.requests().len();
    let refused = save(&store, r#"{"watches":{"x":{}}}"#)
        .await
        .expect_err("a deposed write fails");
    assert!(refused.to_string().contains("deposed"), "{refused}");
    assert_eq!(
        since(&fake.requests(), before),
        [("GET".to_string(), format!("{LEASES}/flowwatch"))],
        "a deposed leader only reads the lease"
    );
    assert_eq!(
        fake.config_map("flowwatch-state").unwrap()["data"]["state.json"],
        r#"{"watches":{}}"#
    );
    let renewed = a.renew(&mut term).await;
    assert!(matches!(renewed, Err(RenewError::Lost(_))), "{renewed:?}");
    assert_eq!(fake.requests().last().unwrap().status, 409);
    assert_eq!(
        fake.lease("flowwatch").unwrap()["spec"]["holderIdentity"],
        "intruder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_requests_have_the_api_shapes() {
    let fake = FakeKube::spawn().await;
    let mut a = engine(&fake, "a").await;
    let mut b = engine(&fake, "b").await;
    let Ok(Campaign::Won { mut term, .. }) = a.campaign().await else {
        panic!("a wins: {:?}", fake.requests());
    };
    let Ok(Campaign::Lost { leader, seen }) = b.campaign().await else {
        panic!("b loses: {:?}", fake.requests());
    };
    assert_eq!(leader.as_deref(), Some("a"));
    a.renew(&mut term).await.expect("a renews");
    a.load_state().await.expect("the state reads");
    let store = std::sync::Arc::new(a.store(&term));
    save(&store, "{}")
        .await
        .expect("the first write creates the ConfigMap");
    save(&store, "{\"watches\":{}}")
        .await
        .expect("the second replaces it");
    // b watches from the version it saw; a resigns; the watch ends at once.
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        b.wait_for_vacancy(seen, Duration::from_secs(30)).await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.resign(term).await;
    let waited = tokio::time::timeout(SOON, waiting)
        .await
        .expect("the watch ends")
        .unwrap();
    assert!(
        waited < Duration::from_secs(30),
        "the release did not end the watch"
    );

    let log = fake.requests();
    let shapes: Vec<(String, String, u16)> = log
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.status))
        .collect();
    let lease = format!("{LEASES}/flowwatch");
    let map = format!("{CONFIGMAPS}/flowwatch-state");
    let s = |m: &str, p: &str, c: u16| (m.to_string(), p.to_string(), c);
    assert_eq!(
        shapes,
        [
            s("GET", &lease, 404),
            s("POST", LEASES, 201),
            s("GET", &lease, 200),
            s("PUT", &lease, 200),
            s("GET", &map, 404),
            s("GET", &lease, 200),
            s("POST", CONFIGMAPS, 201),
            s("GET", &lease, 200),
            s("PUT", &map, 200),
            s("GET", LEASES, 200),
            s("PUT", &lease, 200),
        ],
        "{log:#?}"
    );
    let created = log[1].body.as_ref().unwrap();
    assert_eq!(created["apiVersion"], "coordination.k8s.io/v1");
    assert_eq!(created["kind"], "Lease");
    assert_eq!(created["metadata"]["name"], "flowwatch");
    assert_eq!(created["metadata"]["namespace"], NAMESPACE);
    assert_eq!(created["spec"]["holderIdentity"], "a");
    assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(created["spec"]["leaseTransitions"], 0);
    let micro = created["spec"]["renewTime"].as_str().unwrap();
    assert!(
        micro.len() == "2026-12-02T00:00:00.000000Z".len() && micro.ends_with('Z'),
        "{micro}"
    );
    let renewal = log[3].body.as_ref().unwrap();
    assert_eq!(
        renewal["metadata"]["resourceVersion"], "1",
        "a renewal names the version it replaces"
    );
    assert_eq!(
        renewal["spec"]["acquireTime"],
        created["spec"]["acquireTime"]
    );
    let first_write = log[6].body.as_ref().unwrap();
    assert_eq!(first_write["kind"], "ConfigMap");
    assert_eq!(first_write["metadata"]["name"], "flowwatch-state");
    assert_eq!(first_write["data"]["state.json"], "{}");
    let second_write = log[8].body.as_ref().unwrap();
    assert_eq!(second_write["metadata"]["resourceVersion"], "3");
    let watch = &log[9].query;
    for part in [
        "watch=true",
        "fieldSelector=metadata.name%3Dflowwatch",
        "resourceVersion=1",
    ] {
        assert!(watch.contains(part), "{watch}");
    }
    let release = log[10].body.as_ref().unwrap();
    assert!(release["spec"]["holderIdentity"].is_null(), "{release}");
    assert_eq!(release["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(release["metadata"]["resourceVersion"], "2");
}
