//! SIGHUP reloads over the real binary: a new watch set applied while polls
//! are in flight, and a bad config rejected with the old set kept running.

use super::*;

/// The one `daemon.reloaded` that changed something, and where.
fn the_changing_reload(events: &Events) -> Option<(usize, &serde_json::Value)> {
    let changing = changing_reloads(events);
    assert!(
        changing.len() <= 1,
        "more than one changing reload: {events}"
    );
    changing.first().copied()
}

fn position(events: &Events, name: &str, execution: &str) -> Option<usize> {
    events
        .0
        .iter()
        .position(|e| e["event"] == name && e["execution"] == execution)
}

#[tokio::test]
async fn a_reload_with_polls_in_flight_swaps_watches_and_reports_kept_ones_once() {
    let sim = support::simulator(&format!(
        "latency = \"400ms\"\n{}{}{}",
        execution("run-keep", Some(("1800ms", "Succeeded"))),
        execution("run-drop", None),
        execution("run-new", Some(("1800ms", "Succeeded"))),
    ))
    .await;
    let dir = Dir::new();
    let before = format!("{}{}", watch("run-keep"), watch("run-drop"));
    dir.write("flowwatch.toml", &config_text(&sim, "", &before));
    let daemon = start(&dir.config());
    daemon
        .wait_for("both running", SOON, |e| {
            reached(e, "run-keep", "Running") && reached(e, "run-drop", "Running")
        })
        .await;
    // Each answer takes 400 ms and the next poll starts 20 ms after a
    // change: both watches have a poll in flight now.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let after = format!("{}{}", watch("run-keep"), watch("run-new"));
    dir.write("flowwatch.toml", &config_text(&sim, "", &after));
    daemon.signal("HUP");
    daemon
        .wait_for("the reload", SOON, |e| the_changing_reload(e).is_some())
        .await;
    let drop_requests = requests_for(&sim, "run-drop");
    daemon
        .wait_for("kept and new watches to succeed", SOON, |e| {
            reached(e, "run-keep", "Succeeded") && reached(e, "run-new", "Succeeded")
        })
        .await;
    let events = stop(daemon).await;

    let (at, reloaded) = the_changing_reload(&events).expect("seen above");
    assert_eq!(reload_counts(reloaded), [1, 1, 2], "{events}");
    assert_eq!(count(&events, "watch.removed", "run-drop"), 1, "{events}");
    assert_eq!(events.named("watch.removed").len(), 1, "{events}");
    assert_eq!(count(&events, "watch.added", "run-new"), 1, "{events}");
    assert_eq!(count(&events, "watch.added", "run-keep"), 1, "{events}");
    assert!(
        position(&events, "watch.removed", "run-drop") < Some(at),
        "{events}"
    );
    assert!(
        position(&events, "watch.added", "run-new") < Some(at),
        "{events}"
    );
    assert_eq!(
        events.transitions_of("run-keep"),
        ["Running", "Succeeded"],
        "{events}"
    );
    assert_eq!(
        events.transitions_of("run-new"),
        ["Running", "Succeeded"],
        "{events}"
    );
    assert_eq!(events.transitions_of("run-drop"), ["Running"], "{events}");
    let kept_end = events.one("execution.transition", |e| {
        e["execution"] == "run-keep" && e["to"] == "Succeeded"
    });
    assert_eq!(kept_end["from"], "Running", "{events}");
    // Requests are logged on arrival: at most the one already on its way.
    let drop_requests_at_end = requests_for(&sim, "run-drop");
    assert!(
        drop_requests_at_end <= drop_requests + 1,
        "run-drop polled after its removal: {drop_requests} requests at the reload, {drop_requests_at_end} at the end"
    );
}

#[tokio::test]
async fn a_bad_reload_is_rejected_naming_the_key_and_the_old_set_keeps_running() {
    let sim = support::simulator(&format!(
        "{}{}{}",
        execution("run-a", Some(("1500ms", "Succeeded"))),
        execution("run-b", None),
        execution("run-c", None),
    ))
    .await;
    let dir = Dir::new();
    let good = config_text(&sim, "", &format!("{}{}", watch("run-a"), watch("run-b")));
    dir.write("flowwatch.toml", &good);
    let daemon = start(&dir.config());
    daemon
        .wait_for("both running", SOON, |e| {
            reached(e, "run-a", "Running") && reached(e, "run-b", "Running")
        })
        .await;

    // An unknown key on line 1, column 1.
    dir.write("flowwatch.toml", &format!("colour = \"blue\"\n{good}"));
    daemon.signal("HUP");
    let events = daemon
        .wait_for("daemon.reload_failed", SOON, |e| {
            !e.named("daemon.reload_failed").is_empty()
        })
        .await;
    let failed = events.named("daemon.reload_failed")[0];
    assert_eq!(failed["level"], "ERROR", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    let place = format!("{}:1:1", dir.config().display());
    assert!(error.contains(&place), "{error:?} should name {place}");
    assert!(error.contains("colour"), "{error:?} should name the key");

    // The old set carries on: more polls, and run-a still gets reported.
    let requests = sim.stats().total();
    daemon
        .wait_for("run-a to succeed", SOON, |e| {
            reached(e, "run-a", "Succeeded")
        })
        .await;
    until("more polls of run-b", SOON, || {
        (requests_for(&sim, "run-b") > 3 && sim.stats().total() > requests + 3).then_some(())
    })
    .await;

    // Fixed (and one watch more): applied.
    let fixed = config_text(
        &sim,
        "",
        &format!("{}{}{}", watch("run-a"), watch("run-b"), watch("run-c")),
    );
    dir.write("flowwatch.toml", &fixed);
    daemon.signal("HUP");
    daemon
        .wait_for("run-c running", SOON, |e| reached(e, "run-c", "Running"))
        .await;
    let events = stop(daemon).await;

    let (at, reloaded) = the_changing_reload(&events).expect("the fix was applied");
    assert_eq!(reload_counts(reloaded), [1, 0, 3], "{events}");
    let first_failure = events
        .0
        .iter()
        .position(|e| e["event"] == "daemon.reload_failed");
    assert!(first_failure < Some(at), "{events}");
    assert!(events.named("watch.removed").is_empty(), "{events}");
    assert_eq!(
        events.transitions_of("run-a"),
        ["Running", "Succeeded"],
        "{events}"
    );
    assert_eq!(events.transitions_of("run-b"), ["Running"], "{events}");
}
