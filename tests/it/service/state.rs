//! `[state]` over the real binary: nothing replayed for a finished
//! execution, nothing lost across `kill -9`, a corrupt file set aside.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use super::*;

fn state_table(dir: &Dir) -> String {
    format!("[state]\npath = \"{}\"\n", dir.path("state.json").display())
}

/// The saved status of the watch whose key names `execution`, if any.
fn saved_status(dir: &Dir, execution: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.path("state.json")).ok()?;
    let state: Value = serde_json::from_str(&text).ok()?;
    let (_, saved) = state["watches"]
        .as_object()?
        .iter()
        .find(|(key, _)| key.ends_with(&format!("/{execution}")))?;
    saved["status"].as_str().map(str::to_string)
}

#[tokio::test]
async fn a_second_once_run_neither_re_reports_nor_re_polls_a_finished_execution() {
    let sim = support::simulator(&execution("run-s", Some(("200ms", "Succeeded")))).await;
    let dir = Dir::new();
    let body = format!("{}{}", state_table(&dir), watch("run-s"));
    dir.write("flowwatch.toml", &config_text(&sim, "", &body));

    let first = support::run_once(&dir.config()).await;
    assert_eq!(first.exit_code, 0, "{}\n{}", first.events, first.stderr);
    // `Running` too, unless start-up took longer than its 200 ms.
    assert_eq!(
        first
            .events
            .transitions_of("run-s")
            .last()
            .map(String::as_str),
        Some("Succeeded"),
        "{}",
        first.events
    );
    let metadata = std::fs::metadata(dir.path("state.json")).expect("the state file exists");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert_eq!(saved_status(&dir, "run-s").as_deref(), Some("Succeeded"));
    let requests = requests_for(&sim, "run-s");

    let second = support::run_once(&dir.config()).await;
    assert_eq!(second.exit_code, 0, "{}\n{}", second.events, second.stderr);
    assert!(
        second.events.named("execution.transition").is_empty(),
        "{}",
        second.events
    );
    assert_eq!(
        requests_for(&sim, "run-s"),
        requests,
        "run-s was polled again: {}",
        second.events
    );
    assert_eq!(
        second.events.named("daemon.started").len(),
        1,
        "{}",
        second.events
    );
}

#[tokio::test]
async fn after_kill_9_no_terminal_transition_is_lost_and_a_running_one_resumes() {
    // One simulator for both runs: the executions' timelines go on.
    let sim = support::simulator(&format!(
        "{}{}",
        execution("run-a", Some(("200ms", "Succeeded"))),
        execution("run-b", Some(("3s", "Succeeded"))),
    ))
    .await;
    let dir = Dir::new();
    let body = format!("{}{}{}", state_table(&dir), watch("run-a"), watch("run-b"));
    dir.write("flowwatch.toml", &config_text(&sim, "", &body));

    let first = start(&dir.config());
    let before = first
        .wait_for("run-a done, run-b running", SOON, |e| {
            reached(e, "run-a", "Succeeded") && reached(e, "run-b", "Running")
        })
        .await;
    // Writes are coalesced to one a second: wait until both are on disk.
    until("both statuses saved", SOON, || {
        (saved_status(&dir, "run-a").as_deref() == Some("Succeeded")
            && saved_status(&dir, "run-b").as_deref() == Some("Running"))
        .then_some(())
    })
    .await;
    first.signal("KILL");
    let killed = first.wait_exit(SOON).await;
    assert_eq!(
        killed.events.transitions_of("run-b"),
        ["Running"],
        "{}",
        killed.events
    );
    assert!(
        killed.events.named("daemon.stopping").is_empty(),
        "{}",
        killed.events
    );
    let a_done = before.one("execution.transition", |e| {
        e["execution"] == "run-a" && e["to"] == "Succeeded"
    });

    let second = start(&dir.config());
    second
        .wait_for("run-b to succeed", SOON, |e| {
            reached(e, "run-b", "Succeeded")
        })
        .await;
    let after = stop(second).await;

    // run-a: at least once overall; if replayed, with the same id.
    for replay in after.named("execution.transition") {
        if replay["execution"] == "run-a" {
            assert_eq!(replay["transition_id"], a_done["transition_id"], "{after}");
        }
    }
    // run-b: resumed from the saved `Running`, no new first observation.
    let b = after.one("execution.transition", |e| e["execution"] == "run-b");
    assert_eq!(b["to"], "Succeeded", "{after}");
    assert_eq!(b["from"], "Running", "{after}");
    assert_eq!(saved_status(&dir, "run-b").as_deref(), Some("Succeeded"));
}

#[tokio::test]
async fn a_corrupt_state_file_is_set_aside_and_the_daemon_starts_fresh() {
    let sim = support::simulator(&execution("run-c", Some(("300ms", "Succeeded")))).await;
    let dir = Dir::new();
    let garbage: &[u8] = b"\x00\xff{\"version\":1,\"watches\":{ not json";
    std::fs::write(dir.path("state.json"), garbage).unwrap();
    let body = format!("{}{}", state_table(&dir), watch("run-c"));
    dir.write("flowwatch.toml", &config_text(&sim, "", &body));

    let daemon = start(&dir.config());
    let events = daemon
        .wait_for("run-c to succeed", SOON, |e| {
            reached(e, "run-c", "Succeeded")
        })
        .await;
    let aside = events.one("state.set_aside", |_| true);
    assert_eq!(aside["level"], "ERROR", "{aside}");
    assert_eq!(
        aside["path"],
        dir.path("state.json").display().to_string(),
        "{aside}"
    );
    let moved_to = PathBuf::from(aside["moved_to"].as_str().expect("moved_to names the file"));
    assert_eq!(
        std::fs::read(&moved_to).expect("the set-aside file exists"),
        garbage
    );
    assert_eq!(
        events.transitions_of("run-c").last().map(String::as_str),
        Some("Succeeded"),
        "{events}"
    );
    stop(daemon).await;
    assert_eq!(saved_status(&dir, "run-c").as_deref(), Some("Succeeded"));
}

#[tokio::test]
async fn a_second_daemon_on_the_same_state_file_exits_1_naming_the_file_and_the_holder() {
    let sim = support::simulator(&execution("run-l", None)).await;
    let dir = Dir::new();
    let body = format!("{}{}", state_table(&dir), watch("run-l"));
    dir.write("flowwatch.toml", &config_text(&sim, "", &body));

    let first = start(&dir.config());
    first
        .wait_for("the first daemon to see run-l", SOON, |e| {
            reached(e, "run-l", "Running")
        })
        .await;
    let second = support::run_once(&dir.config()).await;
    assert_eq!(second.exit_code, 1, "{}\n{}", second.events, second.stderr);
    let state_file = dir.path("state.json").display().to_string();
    assert!(
        second.stderr.contains(&state_file) && second.stderr.contains("in use"),
        "stderr: {}",
        second.stderr
    );
    assert!(
        second.stderr.contains(&format!("(pid {})", first.pid())),
        "stderr: {}",
        second.stderr
    );
    assert!(
        second.events.named("execution.transition").is_empty(),
        "{}",
        second.events
    );
    // The first one is untouched and still owns its file.
    stop(first).await;
    assert_eq!(saved_status(&dir, "run-l").as_deref(), Some("Running"));
}

#[tokio::test]
async fn a_directory_where_the_state_file_should_be_is_a_start_up_error_and_stays() {
    let sim = support::simulator(&execution("run-d", None)).await;
    let dir = Dir::new();
    std::fs::create_dir(dir.path("state.json")).unwrap();
    let body = format!("{}{}", state_table(&dir), watch("run-d"));
    dir.write("flowwatch.toml", &config_text(&sim, "", &body));

    let run = support::run_once(&dir.config()).await;
    assert_eq!(run.exit_code, 1, "{}\n{}", run.events, run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "cannot read state file {}",
            dir.path("state.json").display()
        )),
        "stderr: {}",
        run.stderr
    );
    assert!(
        run.events.named("state.set_aside").is_empty(),
        "{}",
        run.events
    );
    assert!(dir.path("state.json").is_dir(), "the directory was moved");
}
