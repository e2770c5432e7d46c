//! `/v1/watches`: add, list, get, delete, validation, persistence, long
//! polls, the token and the limits.

use super::*;

#[tokio::test]
async fn watches_are_added_idempotently_listed_read_and_deleted() {
    let sim = support::simulator(&format!(
        "{}{}",
        execution("run-a", None),
        execution("run-c", None)
    ))
    .await;
    let setup = Setup::new(
        &sim,
        "",
        &format!("[[watch]]\nflow = \"{FLOW}\"\nalias = \"{ALIAS}\"\nexecution = \"run-c\"\n"),
    );
    let daemon = setup.start().await;

    let first = daemon
        .post(&format!(
            "{{\"execution_arn\":\"{}\",\"labels\":{{\"team\":\"a\"}}}}",
            arn("run-a")
        ))
        .await;
    assert_eq!(first.status, 201, "{}", first.json);
    assert!(
        first
            .head
            .to_lowercase()
            .contains("content-type: application/json"),
        "{}",
        first.head
    );
    assert_eq!(first.json["source"], "api");
    assert_eq!(first.json["labels"]["team"], "a");
    let by_parts = format!(
        "{{\"flow\":\"{FLOW}\",\"alias\":\"{ALIAS}\",\"execution\":\"run-a\",\"region\":\"us-east-1\"}}"
    );
    let again = daemon.post(&by_parts).await;
    assert_eq!(
        again.status, 200,
        "the same execution again: {}",
        again.json
    );
    assert_eq!(again.json["id"], first.json["id"]);

    let running = daemon.until("run-a", |w| w["status"] == "Running").await;
    assert!(running["polls"].as_u64().unwrap() >= 1, "{running}");
    assert!(running["last_transition_at"].is_string(), "{running}");
    assert_eq!(running["ended"], Value::Null);

    let list = daemon.get("/v1/watches").await;
    assert_eq!(list.status, 200);
    let sources: Vec<(&str, &str)> = list.json["watches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["execution"].as_str().unwrap(),
                w["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [("run-a", "api"), ("run-c", "config")],
        "{}",
        list.json
    );

    let config_watch = list.json["watches"][1]["id"].as_str().unwrap().to_string();
    let refused = daemon
        .request(
            "DELETE",
            &format!("/v1/watches/{}", encoded(&config_watch)),
            &[],
            None,
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.json);
    assert_eq!(refused.json["error"], "not_an_api_watch");

    let path = format!("/v1/watches/{}", encoded(&arn("run-a")));
    let deleted = daemon.request("DELETE", &path, &[], None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.json);
    assert_eq!(daemon.get(&path).await.status, 404);
    assert_eq!(daemon.request("DELETE", &path, &[], None).await.status, 404);

    let run = daemon.stop().await;
    let added = run.events.one("watch.added", |e| e["execution"] == "run-a");
    assert_eq!(added["source"], "api");
    assert_eq!(added["labels"]["team"], "a");
    run.events
        .one("watch.removed", |e| e["execution"] == "run-a");
    assert!(
        run.events
            .named("watch.removed")
            .iter()
            .all(|e| e["execution"] != "run-c")
    );
}

#[tokio::test]
async fn bad_input_is_a_400_that_names_the_field() {
    let sim = support::simulator(&execution("run-a", None)).await;
    let setup = Setup::new(&sim, "", ""); // kept: it owns the config folder
    let daemon = setup.start().await;
    let cases = [
        (
            r#"{"execution_arn":"arn:aws:bedrock:us-east-1:1:flow/F"}"#,
            "execution_arn",
        ),
        (
            r#"{"flow":"short","alias":"ALIAS12345","execution":"run-a"}"#,
            "flow",
        ),
        (r#"{"flow":"FLOW123456","alias":"ALIAS12345"}"#, "execution"),
        (
            r#"{"flow":"FLOW123456","alias":"ALIAS12345","execution":"run a"}"#,
            "execution",
        ),
        (
            r#"{"flow":"FLOW123456","alias":"ALIAS12345","execution":"r","region":"Mars"}"#,
            "region",
        ),
        (r#"{"execution_arn":"x","tags":{}}"#, "tags"),
        ("{not json", "body"),
    ];
    for (body, field) in cases {
        let answer = daemon.post(body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.json);
        assert_eq!(answer.json["error"], "invalid", "{body}: {}", answer.json);
        assert_eq!(answer.json["field"], field, "{body}: {}", answer.json);
        assert!(answer.json["message"].is_string());
    }
    let wait = daemon
        .get(&format!("/v1/watches/{}?wait=soon", encoded(&arn("run-a"))))
        .await;
    assert_eq!(wait.status, 400);
    assert_eq!(wait.json["field"], "wait");
    assert_eq!(
        daemon.get("/v1/watches").await.json["watches"],
        serde_json::json!([])
    );
    daemon.stop().await;
}

#[tokio::test]
async fn api_watches_survive_a_restart_with_state() {
    let sim = support::simulator(&execution("run-p", None)).await;
    let setup = Setup::new(&sim, "", "").with_state();
    let daemon = setup.start().await;
    assert_eq!(daemon.add("run-p").await.status, 201);
    daemon.until("run-p", |w| w["status"] == "Running").await;
    let polls_before = daemon.until("run-p", |_| true).await["polls"]
        .as_u64()
        .unwrap();
    let first = daemon.stop().await;
    assert_eq!(first.exit_code, 0, "{}", first.stderr);

    let daemon = setup.start().await;
    let restored = daemon.until("run-p", |w| w["status"] == "Running").await;
    assert_eq!(restored["source"], "api", "{restored}");
    assert!(
        restored["polls"].as_u64().unwrap() >= polls_before,
        "{restored}"
    );
    let second = daemon.stop().await;
    // Resumed, not re-reported: the Running transition was saved.
    assert!(
        second.events.transitions_of("run-p").is_empty(),
        "{}",
        second.events
    );
    second.events.one("watch.added", |e| {
        e["execution"] == "run-p" && e["source"] == "api"
    });
}

#[tokio::test]
async fn a_long_poll_answers_on_a_transition_and_after_its_wait() {
    let sim = support::simulator(&format!(
        "{}{}",
        execution("run-ends", Some(("2s", "Succeeded"))),
        execution("run-on", None)
    ))
    .await;
    let setup = Setup::new(&sim, "", ""); // kept: it owns the config folder
    let daemon = setup.start().await;
    assert_eq!(daemon.add("run-ends").await.status, 201);
    assert_eq!(daemon.add("run-on").await.status, 201);
    daemon.until("run-ends", |w| w["status"].is_string()).await;
    daemon.until("run-on", |w| w["status"] == "Running").await;

    let ends = format!(
        "/v1/watches/{}?wait=60s&since=Running",
        encoded(&arn("run-ends"))
    );
    let answer = daemon.get(&ends).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["status"], "Succeeded", "{}", answer.json);
    assert_eq!(answer.json["ended"], "succeeded");
    // Already different from `since`: at once.
    let again = daemon.get(&ends).await;
    assert_eq!(again.json["status"], "Succeeded");

    let on = format!(
        "/v1/watches/{}?wait=300ms&since=Running",
        encoded(&arn("run-on"))
    );
    let timed_out = daemon.get(&on).await;
    assert_eq!(timed_out.status, 200, "{}", timed_out.json);
    assert_eq!(timed_out.json["status"], "Running");
    assert_eq!(timed_out.json["ended"], Value::Null);
    let missing = daemon
        .get(&format!("/v1/watches/{}?wait=1s", encoded(&arn("nope"))))
        .await;
    assert_eq!(missing.status, 404);
    daemon.stop().await;
}

#[tokio::test]
async fn writes_need_the_bearer_token_when_one_is_set() {
    let sim = support::simulator(&execution("run-t", None)).await;
    let setup = Setup::new(&sim, "token_file = \"token\"", "");
    std::fs::write(setup.path("token"), "s3cret-token\n").unwrap();
    let daemon = setup.start().await;
    let body = format!("{{\"execution_arn\":\"{}\"}}", arn("run-t"));
    let none = daemon
        .request("POST", "/v1/watches", &[], Some(&body))
        .await;
    assert_eq!(none.status, 401, "{}", none.json);
    assert!(
        none.head
            .to_lowercase()
            .contains("www-authenticate: bearer"),
        "{}",
        none.head
    );
    let wrong = daemon
        .request(
            "POST",
            "/v1/watches",
            &[("Authorization", "Bearer s3cret-tokeN")],
            Some(&body),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let right = daemon
        .request(
            "POST",
            "/v1/watches",
            &[("Authorization", "Bearer s3cret-token")],
            Some(&body),
        )
        .await;
    assert_eq!(right.status, 201, "{}", right.json);
    assert_eq!(
        daemon.get("/v1/watches").await.status,
        200,
        "reads stay open"
    );
    let path = format!("/v1/watches/{}", encoded(&arn("run-t")));
    assert_eq!(daemon.request("DELETE", &path, &[], None).await.status, 401);
    let deleted = daemon
        .request(
            "DELETE",
            &path,
            &[("Authorization", "Bearer s3cret-token")],
            None,
        )
        .await;
    assert_eq!(deleted.status, 200);
    daemon.stop().await;
}

#[tokio::test]
async fn full_limits_answer_with_a_clear_json_body() {
    let sim = support::simulator(&format!(
        "{}{}",
        execution("run-1", None),
        execution("run-2", None)
    ))
    .await;
    let limits =
        "max_api_watches = 1\nmax_long_polls = 1\nmax_sse_clients = 1\nmax_body_bytes = 200";
    let setup = Setup::new(&sim, limits, ""); // kept: it owns the config folder
    let daemon = setup.start().await;
    assert_eq!(daemon.add("run-1").await.status, 201);
    let full = daemon.add("run-2").await;
    assert_eq!(full.status, 429, "{}", full.json);
    assert_eq!(full.json["error"], "too_many_watches");
    assert_eq!(
        daemon.add("run-1").await.status,
        200,
        "an existing watch is no new one"
    );
    let big = format!(
        "{{\"execution_arn\":\"{}\",\"labels\":{{\"x\":\"{}\"}}}}",
        arn("run-2"),
        "y".repeat(300)
    );
    let too_big = daemon.post(&big).await;
    assert_eq!(too_big.status, 413, "{}", too_big.json);
    assert_eq!(too_big.json["error"], "body_too_large");
    daemon.until("run-1", |w| w["status"] == "Running").await;

    let addr = daemon.addr;
    let path = format!(
        "/v1/watches/{}?wait=60s&since=Running",
        encoded(&arn("run-1"))
    );
    let holder = tokio::spawn(async move {
        // Retries while a probe below holds the one slot for its 10 ms.
        loop {
            match try_request(addr, "GET", &path, &[], None).await {
                Some(answer) if answer.status == 503 => continue,
                other => return other.map(|a| a.status),
            }
        }
    });
    let probe = format!(
        "/v1/watches/{}?wait=10ms&since=Running",
        encoded(&arn("run-1"))
    );
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let answer = daemon.get(&probe).await;
        if answer.status == 503 {
            assert_eq!(answer.json["error"], "too_many_long_polls");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never full: {}",
            answer.json
        );
    }
    let (_events, _) = stream::open(addr, None).await;
    let refused = daemon.get("/v1/events").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json["error"], "too_many_streams");
    holder.abort();
    daemon.stop().await;
}

#[tokio::test]
async fn an_ended_api_watch_is_dropped_after_keep_ended() {
    let sim = support::simulator(&execution("run-k", Some(("200ms", "Succeeded")))).await;
    let setup = Setup::new(&sim, "keep_ended = \"300ms\"", "").with_state();
    let daemon = setup.start().await;
    assert_eq!(daemon.add("run-k").await.status, 201);
    let ended = daemon.until("run-k", |w| !w["ended"].is_null()).await;
    assert_eq!(ended["ended"], "succeeded", "{ended}");
    let path = format!("/v1/watches/{}", encoded(&arn("run-k")));
    let deadline = tokio::time::Instant::now() + SOON;
    while daemon.get(&path).await.status != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still kept after keep_ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = daemon.stop().await;
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(setup.path("state.json")).unwrap()).unwrap();
    assert!(
        state
            .get("api")
            .is_none_or(|api| api.as_object().unwrap().is_empty()),
        "{state}"
    );
    assert!(state["watches"].as_object().unwrap().is_empty(), "{state}");
    // Dropped quietly: it was not removed by anyone.
    assert!(
        run.events.named("watch.removed").is_empty(),
        "{}",
        run.events
    );
}
