//! Unprompted reloads: include files added, removed, swapped the ConfigMap
//! way, or caught half-written, all without a SIGHUP.

use std::os::unix::fs::symlink;

use super::*;

const INCLUDE: &str = "include = [\"watches.d/*.toml\"]";

fn watches(executions: &[&str]) -> String {
    executions.iter().map(|e| watch(e)).collect()
}

/// Every scenario execution here runs for ever, except `run-new`.
async fn simulator(running: &[&str]) -> Simulator {
    let mut scenario = execution("run-new", Some(("2s", "Succeeded")));
    for id in running {
        scenario.push_str(&execution(id, None));
    }
    support::simulator(&scenario).await
}

#[tokio::test]
async fn a_watch_file_renamed_into_place_is_picked_up_and_its_removal_ends_the_watch() {
    let sim = simulator(&["run-base"]).await;
    let dir = Dir::new();
    dir.write("flowwatch.toml", &config_text(&sim, INCLUDE, ""));
    let base = dir.write("watches.d/base.toml", &watches(&["run-base"]));
    let daemon = start(&dir.config());
    let events = daemon
        .wait_for("run-base running", SOON, |e| {
            reached(e, "run-base", "Running")
        })
        .await;
    let added = events.one("watch.added", |e| e["execution"] == "run-base");
    assert_eq!(added["source"], base.display().to_string(), "{events}");

    let new = dir.write_then_rename("watches.d/new.toml", &watches(&["run-new"]));
    let events = daemon
        .wait_for("run-new to succeed", SOON, |e| {
            reached(e, "run-new", "Succeeded")
        })
        .await;
    let added = events.one("watch.added", |e| e["execution"] == "run-new");
    assert_eq!(added["source"], new.display().to_string(), "{events}");
    assert_eq!(
        events.transitions_of("run-new"),
        ["Running", "Succeeded"],
        "{events}"
    );

    std::fs::remove_file(&new).unwrap();
    daemon
        .wait_for("run-new removed", SOON, |e| {
            count(e, "watch.removed", "run-new") == 1
        })
        .await;
    let events = stop(daemon).await;

    let changing: Vec<[&serde_json::Value; 3]> = changing_reloads(&events)
        .into_iter()
        .map(|(_, e)| reload_counts(e))
        .collect();
    assert_eq!(changing, [[1, 0, 2], [0, 1, 1]], "{events}");
    assert!(events.named("daemon.reload_failed").is_empty(), "{events}");
    assert_eq!(events.named("watch.removed").len(), 1, "{events}");
    assert_eq!(events.transitions_of("run-base"), ["Running"], "{events}");
}

#[tokio::test]
async fn a_configmap_style_symlink_swap_applies_the_new_set() {
    let sim = simulator(&["run-x1", "run-x2", "run-y1"]).await;
    let dir = Dir::new();
    dir.write("flowwatch.toml", &config_text(&sim, INCLUDE, ""));
    // What the kubelet mounts: a timestamped folder, `..data` pointing at it,
    // and each key a symlink through `..data`.
    dir.write(
        "watches.d/..2026_x/watches.toml",
        &watches(&["run-x1", "run-x2"]),
    );
    symlink("..2026_x", dir.path("watches.d/..data")).unwrap();
    symlink("..data/watches.toml", dir.path("watches.d/watches.toml")).unwrap();
    let daemon = start(&dir.config());
    daemon
        .wait_for("the first set running", SOON, |e| {
            reached(e, "run-x1", "Running") && reached(e, "run-x2", "Running")
        })
        .await;

    // The kubelet's update: a new folder, a new link, renamed over `..data`,
    // then the old folder goes.
    dir.write(
        "watches.d/..2026_y/watches.toml",
        &watches(&["run-x2", "run-y1"]),
    );
    symlink("..2026_y", dir.path("watches.d/..data_tmp")).unwrap();
    std::fs::rename(
        dir.path("watches.d/..data_tmp"),
        dir.path("watches.d/..data"),
    )
    .unwrap();
    std::fs::remove_dir_all(dir.path("watches.d/..2026_x")).unwrap();
    daemon
        .wait_for("the new set applied", SOON, |e| {
            reached(e, "run-y1", "Running") && count(e, "watch.removed", "run-x1") == 1
        })
        .await;
    let events = stop(daemon).await;

    let changing = changing_reloads(&events);
    assert_eq!(changing.len(), 1, "{events}");
    assert_eq!(reload_counts(changing[0].1), [1, 1, 2], "{events}");
    assert_eq!(events.named("watch.removed").len(), 1, "{events}");
    assert_eq!(count(&events, "watch.added", "run-x2"), 1, "{events}");
    assert_eq!(events.transitions_of("run-x2"), ["Running"], "{events}");
}

#[tokio::test]
async fn a_half_written_include_file_never_applies_half_a_set() {
    let sim = simulator(&["run-a1", "run-b1", "run-b2"]).await;
    let dir = Dir::new();
    dir.write("flowwatch.toml", &config_text(&sim, INCLUDE, ""));
    dir.write("watches.d/a.toml", &watches(&["run-a1"]));
    let b = dir.write("watches.d/b.toml", &watches(&["run-b1"]));
    let daemon = start(&dir.config());
    daemon
        .wait_for("both running", SOON, |e| {
            reached(e, "run-a1", "Running") && reached(e, "run-b1", "Running")
        })
        .await;

    // Written in place, in two steps: first a table missing `execution`.
    let complete = watches(&["run-b1", "run-b2"]);
    let cut = complete
        .rfind("execution")
        .expect("the last watch names its execution");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&b).unwrap(); // truncates
        file.write_all(&complete.as_bytes()[..cut]).unwrap();
        file.sync_all().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        file.write_all(&complete.as_bytes()[cut..]).unwrap();
    }
    daemon
        .wait_for("run-b2 running", SOON, |e| reached(e, "run-b2", "Running"))
        .await;
    let events = stop(daemon).await;

    assert!(events.named("watch.removed").is_empty(), "{events}");
    let changing = changing_reloads(&events);
    assert_eq!(changing.len(), 1, "{events}");
    assert_eq!(reload_counts(changing[0].1), [1, 0, 3], "{events}");
    for execution in ["run-a1", "run-b1", "run-b2"] {
        assert_eq!(count(&events, "watch.added", execution), 1, "{events}");
        assert_eq!(events.transitions_of(execution), ["Running"], "{events}");
    }
}

#[tokio::test]
async fn an_include_file_left_half_written_is_rejected_until_it_is_complete() {
    let sim = simulator(&["run-a1", "run-b1", "run-b2"]).await;
    let dir = Dir::new();
    dir.write("flowwatch.toml", &config_text(&sim, INCLUDE, ""));
    dir.write("watches.d/a.toml", &watches(&["run-a1"]));
    let b = dir.write("watches.d/b.toml", &watches(&["run-b1"]));
    let daemon = start(&dir.config());
    daemon
        .wait_for("both running", SOON, |e| {
            reached(e, "run-a1", "Running") && reached(e, "run-b1", "Running")
        })
        .await;

    // Left half-written long enough to be read: a table missing `execution`.
    let complete = watches(&["run-b1", "run-b2"]);
    let cut = complete
        .rfind("execution")
        .expect("the last watch names its execution");
    std::fs::write(&b, &complete[..cut]).unwrap();
    let events = daemon
        .wait_for("the reload to fail", SOON, |e| {
            !e.named("daemon.reload_failed").is_empty()
        })
        .await;
    let error = events.named("daemon.reload_failed")[0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains(&b.display().to_string()),
        "{error:?} should name {}",
        b.display()
    );
    assert!(
        error.contains("execution"),
        "{error:?} should name the missing key"
    );
    std::fs::write(&b, &complete).unwrap();
    daemon
        .wait_for("run-b2 running", SOON, |e| reached(e, "run-b2", "Running"))
        .await;
    let events = stop(daemon).await;

    assert!(events.named("watch.removed").is_empty(), "{events}");
    let changing = changing_reloads(&events);
    assert_eq!(changing.len(), 1, "{events}");
    assert_eq!(reload_counts(changing[0].1), [1, 0, 3], "{events}");
    assert_eq!(events.transitions_of("run-a1"), ["Running"], "{events}");
    assert_eq!(events.transitions_of("run-b1"), ["Running"], "{events}");
}

#[tokio::test]
async fn a_later_include_folder_and_main_file_edits_are_picked_up_without_a_signal() {
    let sim = simulator(&["run-main", "run-late", "run-edit"]).await;
    let dir = Dir::new();
    // `watches.d` does not exist yet (a sidecar's folder may appear later).
    dir.write(
        "flowwatch.toml",
        &config_text(&sim, INCLUDE, &watch("run-main")),
    );
    let daemon = start(&dir.config());
    daemon
        .wait_for("run-main running", SOON, |e| {
            reached(e, "run-main", "Running")
        })
        .await;

    let late = dir.write_then_rename("watches.d/late.toml", &watches(&["run-late"]));
    let events = daemon
        .wait_for("run-late running", SOON, |e| {
            reached(e, "run-late", "Running")
        })
        .await;
    let added = events.one("watch.added", |e| e["execution"] == "run-late");
    assert_eq!(added["source"], late.display().to_string(), "{events}");

    // An editor's save: the main file replaced by a rename.
    let main = config_text(&sim, INCLUDE, &watches(&["run-main", "run-edit"]));
    dir.write_then_rename("flowwatch.toml", &main);
    daemon
        .wait_for("run-edit running", SOON, |e| {
            reached(e, "run-edit", "Running")
        })
        .await;
    let events = stop(daemon).await;

    let changing: Vec<[&serde_json::Value; 3]> = changing_reloads(&events)
        .into_iter()
        .map(|(_, e)| reload_counts(e))
        .collect();
    assert_eq!(changing, [[1, 0, 2], [1, 0, 3]], "{events}");
    assert!(events.named("watch.removed").is_empty(), "{events}");
    assert!(events.named("daemon.reload_failed").is_empty(), "{events}");
}
