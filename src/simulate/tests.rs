//! The unmodified aws-sdk-bedrockagentruntime client against the simulator,
//! over real loopback HTTP on the real clock: every answer must parse into the
//! SDK's own types and error variants.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::config::retry::RetryConfig;
use aws_sdk_bedrockagentruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockagentruntime::error::SdkError;
use aws_sdk_bedrockagentruntime::operation::get_flow_execution::{
    GetFlowExecutionError, GetFlowExecutionOutput,
};
use aws_sdk_bedrockagentruntime::types::{
    FlowExecutionEvent, FlowExecutionEventType, FlowExecutionStatus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Answer, Scenario, ScenarioError, Simulator};

const FLOW: &str = "FLOW123456";
const ALIAS: &str = "ALIAS12345";

async fn simulator(toml: &str) -> Simulator {
    let scenario = Scenario::parse(toml).expect("test scenario parses");
    Simulator::spawn(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("loopback bind")
}

fn client(sim: &Simulator) -> Client {
    let config = aws_sdk_bedrockagentruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .endpoint_url(sim.endpoint_url())
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

type GetResult = Result<
    GetFlowExecutionOutput,
    SdkError<GetFlowExecutionError, aws_smithy_runtime_api::http::Response>,
>;

async fn get(client: &Client, execution: &str) -> GetResult {
    client
        .get_flow_execution()
        .flow_identifier(FLOW)
        .flow_alias_identifier(ALIAS)
        .execution_identifier(execution)
        .send()
        .await
}

fn execution(id: &str, rest: &str) -> String {
    format!("[[execution]]\nflow = \"{FLOW}\"\nalias = \"{ALIAS}\"\nid = \"{id}\"\n{rest}\n")
}

fn manifest_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

#[tokio::test]
async fn a_timeline_moves_from_running_to_succeeded() {
    let sim = simulator(&execution(
        "run-0001",
        r#"flow_version = "7"
timeline = [{ at = "0s", status = "Running" }, { at = "700ms", status = "Succeeded" }]"#,
    ))
    .await;
    let client = client(&sim);
    let first = get(&client, "run-0001").await.expect("first poll");
    assert_eq!(first.status(), &FlowExecutionStatus::Running, "{first:?}");
    assert_eq!(first.ended_at(), None);
    assert_eq!(first.flow_version(), "7");
    assert_eq!(
        first.execution_arn(),
        "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001"
    );
    let mut seen = vec![first.status().clone()];
    let last = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = get(&client, "run-0001").await.expect("poll");
        if seen.last() != Some(out.status()) {
            seen.push(out.status().clone());
        }
        if out.status() == &FlowExecutionStatus::Succeeded {
            break out;
        }
        assert!(
            seen.len() < 3 && sim.stats().total() < 100,
            "seen: {seen:?}"
        );
    };
    assert_eq!(
        seen,
        [FlowExecutionStatus::Running, FlowExecutionStatus::Succeeded]
    );
    let ended = last.ended_at().expect("terminal answers carry endedAt");
    let ended_ms = ended.to_millis().unwrap() - last.started_at().to_millis().unwrap();
    assert_eq!(ended_ms, 700, "endedAt is the step's offset from startedAt");
    assert!(last.errors().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_failed_execution_returns_its_node_errors() {
    let scenario = Scenario::load(&manifest_path("config/scenarios/one-failure.toml")).unwrap();
    let sim = Simulator::spawn(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = client(&sim);
    let running = get(&client, "run-0001").await.unwrap();
    assert_eq!(running.status(), &FlowExecutionStatus::Running);
    assert!(
        running.errors().is_empty(),
        "errors come only once terminal"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let failed = get(&client, "run-0001").await.unwrap();
    assert_eq!(failed.status(), &FlowExecutionStatus::Failed);
    let errors: Vec<_> = failed
        .errors()
        .iter()
        .map(|e| (e.node_name(), e.error().map(|x| x.as_str()), e.message()))
        .collect();
    assert_eq!(
        errors,
        [
            (
                Some("Prompt_1"),
                Some("NodeExecutionFailed"),
                Some("model invocation failed: input too long")
            ),
            (
                Some("KnowledgeBase_1"),
                Some("NodeExecutionFailed"),
                Some("knowledge base not available")
            ),
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn every_error_kind_maps_to_the_sdks_matching_variant() {
    let toml = format!(
        "{}{}{}",
        execution("forbidden", "access_denied = true"),
        execution("invalid", "invalid = true"),
        execution("ok", ""),
    );
    let sim = simulator(&toml).await;
    let c = client(&sim);
    let variant = |r: GetResult| match r {
        Ok(out) => format!("Ok({})", out.status()),
        Err(e) => {
            let service = e.into_service_error();
            let name = match &service {
                GetFlowExecutionError::ThrottlingException(_) => "Throttling",
                GetFlowExecutionError::ResourceNotFoundException(_) => "ResourceNotFound",
                GetFlowExecutionError::ValidationException(_) => "Validation",
                GetFlowExecutionError::AccessDeniedException(_) => "AccessDenied",
                GetFlowExecutionError::InternalServerException(_) => "InternalServer",
                _ => "other",
            };
            assert!(
                service.meta().message().is_some_and(|m| !m.is_empty()),
                "{service:?}"
            );
            name.to_owned()
        }
    };
    assert_eq!(variant(get(&c, "ok").await), "Ok(Running)");
    assert_eq!(variant(get(&c, "no-such-run").await), "ResourceNotFound");
    assert_eq!(variant(get(&c, "forbidden").await), "AccessDenied");
    assert_eq!(variant(get(&c, "invalid").await), "Validation");
    assert_eq!(
        variant(get(&c, "bad_id!").await),
        "Validation",
        "pattern check"
    );
    sim.shutdown().await;

    let sim = simulator(&format!("error_rate = 1.0\n{}", execution("ok", ""))).await;
    let err = get(&client(&sim), "ok").await.unwrap_err();
    assert!(
        err.raw_response()
            .is_some_and(|r| r.status().as_u16() == 500)
    );
    let request_id = err
        .raw_response()
        .and_then(|r| r.headers().get("x-amzn-RequestId").map(str::to_owned));
    assert!(request_id.is_some(), "every response carries a request id");
    assert_eq!(variant(Err(err)), "InternalServer");
    sim.shutdown().await;

    let sim = simulator(&format!(
        "quota = 1.0\nretry_after = \"1500ms\"\n{}",
        execution("ok", "")
    ))
    .await;
    let c = client(&sim);
    assert_eq!(variant(get(&c, "ok").await), "Ok(Running)");
    let err = get(&c, "ok").await.unwrap_err();
    let headers = err.raw_response().map(|r| r.headers().clone()).unwrap();
    assert_eq!(headers.get("retry-after"), Some("2"));
    assert_eq!(headers.get("x-amz-retry-after"), Some("1500"));
    assert_eq!(variant(Err(err)), "Throttling");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_quota_throttles_requests_beyond_its_rate() {
    let sim = simulator(&format!("quota = 5.0\n{}", execution("ok", ""))).await;
    let client = client(&sim);
    let started = std::time::Instant::now();
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(get(&client, "ok").await.is_ok());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let served = answers.iter().filter(|ok| **ok).count() as f64;
    let stats = sim.stats();
    assert_eq!(stats.count(Answer::Ok) as f64, served);
    assert_eq!(stats.count(Answer::Throttled) as f64, 20.0 - served);
    assert!(served >= 5.0, "the burst is served: {answers:?}");
    // At most the burst plus what the rate refilled while the requests ran.
    assert!(
        served <= 5.0 + 5.0 * elapsed + 1.0,
        "served {served} in {elapsed:.3}s: {answers:?}"
    );
    assert!(stats.count(Answer::Throttled) > 0, "{answers:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_request_without_authorization_is_refused() {
    let sim = simulator(&execution("ok", "")).await;
    let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let request = format!(
        "GET /flows/{FLOW}/aliases/{ALIAS}/executions/ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let lower = response.to_ascii_lowercase();
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        lower.contains("x-amzn-errortype: missingauthenticationtokenexception"),
        "{response}"
    );
    assert!(lower.contains("x-amzn-requestid: "), "{response}");
    assert!(
        response.contains(r#"{"message":"Missing Authentication Token"}"#),
        "{response}"
    );

    // A header that is not SigV4 is refused the same way.
    let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let request = request.replace("Host:", "Authorization: Bearer x\r\nHost:");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    let stats = sim.stats();
    assert_eq!(stats.count(Answer::Unauthenticated), 2);
    assert_eq!(stats.log[0].execution, "ok");
    assert_eq!(stats.log[0].status, 403);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_sdk_paginator_gets_pages_of_10_whatever_max_results_says() {
    let toml = format!(
        "list_order = \"shuffled\"\n[[generate]]\ncount = 25\nid_prefix = \"g-\"\nflow = \"{FLOW}\"\nalias = \"{ALIAS}\"\nend_between = [\"1h\", \"2h\"]\n"
    );
    let sim = simulator(&toml).await;
    let pages: Vec<_> = client(&sim)
        .list_flow_executions()
        .flow_identifier(FLOW)
        .max_results(1000)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("every page parses");
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p.flow_execution_summaries().len())
        .collect();
    assert_eq!(sizes, [10, 10, 5]);
    let mut ids: Vec<String> = pages
        .iter()
        .flat_map(|p| p.flow_execution_summaries().iter())
        .map(|s| s.execution_arn().rsplit('/').next().unwrap().to_owned())
        .collect();
    let listed = ids.clone();
    ids.sort();
    assert_ne!(listed, ids, "shuffled");
    ids.dedup();
    assert_eq!(ids.len(), 25, "each once: {listed:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn list_flow_executions_paginates_through_every_execution() {
    let mut toml = String::new();
    for n in 1..=5 {
        toml.push_str(&execution(&format!("run-{n}"), ""));
    }
    toml.push_str(
        "[[execution]]\nflow = \"OTHERFLOW1\"\nalias = \"ALIAS12345\"\nid = \"elsewhere\"\n",
    );
    let sim = simulator(&toml).await;
    let client = client(&sim);
    let pages: Vec<_> = client
        .list_flow_executions()
        .flow_identifier(FLOW)
        .max_results(2)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("every page parses");
    let ids: Vec<Vec<String>> = pages
        .iter()
        .map(|p| {
            p.flow_execution_summaries()
                .iter()
                .map(|s| s.execution_arn().rsplit('/').next().unwrap().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(
        ids,
        [
            vec!["run-1", "run-2"],
            vec!["run-3", "run-4"],
            vec!["run-5"]
        ]
    );
    let s = &pages[0].flow_execution_summaries()[0];
    assert_eq!(
        (s.status(), s.flow_identifier()),
        (&FlowExecutionStatus::Running, FLOW)
    );

    let unknown = client
        .list_flow_executions()
        .flow_identifier("NOSUCHFLOW")
        .send()
        .await;
    assert!(
        unknown
            .unwrap_err()
            .into_service_error()
            .is_resource_not_found_exception()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn list_flow_execution_events_parse_into_sdk_events() {
    let sim = simulator(&execution(
        "run-0001",
        r#"timeline = [{ at = "0s", status = "Running" }, { at = "0s", status = "Failed" }]
errors = [
  { node = "Prompt_1", message = "first" },
  { node = "Prompt_2", error = "BAD_GATEWAY", message = "second" },
]"#,
    ))
    .await;
    let client = client(&sim);
    let events = |kind: FlowExecutionEventType| {
        client
            .list_flow_execution_events()
            .flow_identifier(FLOW)
            .flow_alias_identifier(ALIAS)
            .execution_identifier("run-0001")
            .event_type(kind)
            .max_results(1)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
    };
    let flow = events(FlowExecutionEventType::Flow)
        .await
        .expect("flow events parse");
    assert!(
        matches!(flow[0], FlowExecutionEvent::FlowInputEvent(_)),
        "{flow:?}"
    );
    let FlowExecutionEvent::FlowFailureEvent(failure) = &flow[1] else {
        panic!("{flow:?}");
    };
    assert_eq!(failure.error_message(), "first");
    assert_eq!(flow.len(), 2);
    let nodes = events(FlowExecutionEventType::Node)
        .await
        .expect("node events parse");
    let failures: Vec<_> = nodes
        .iter()
        .map(|e| match e {
            FlowExecutionEvent::NodeFailureEvent(f) => {
                (f.node_name().to_owned(), f.error_code().as_str().to_owned())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        failures,
        [
            ("Prompt_1".to_owned(), "INTERNAL_SERVER".to_owned()),
            ("Prompt_2".to_owned(), "BAD_GATEWAY".to_owned())
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unknown_status_comes_through_as_the_raw_string() {
    let sim = simulator(&execution(
        "odd",
        r#"timeline = [{ at = "0s", status = "InProgress" }]"#,
    ))
    .await;
    let out = get(&client(&sim), "odd").await.unwrap();
    let known = matches!(
        out.status(),
        FlowExecutionStatus::Running
            | FlowExecutionStatus::Succeeded
            | FlowExecutionStatus::Failed
            | FlowExecutionStatus::TimedOut
            | FlowExecutionStatus::Aborted
    );
    assert!(!known, "{:?}", out.status());
    assert_eq!(out.status().as_str(), "InProgress");
    assert_eq!(out.ended_at(), None, "an unknown status is not terminal");
    sim.shutdown().await;
}

#[tokio::test]
async fn url_encoded_arns_name_the_same_execution_as_ids() {
    let sim = simulator(&execution("run-0001", "")).await;
    let arn = format!("arn:aws:bedrock:us-east-1:123456789012:flow/{FLOW}/alias/{ALIAS}");
    let out = client(&sim)
        .get_flow_execution()
        .flow_identifier(format!(
            "arn:aws:bedrock:us-east-1:123456789012:flow/{FLOW}"
        ))
        .flow_alias_identifier(&arn)
        .execution_identifier(format!("{arn}/execution/run-0001"))
        .send()
        .await
        .expect("ARNs are accepted");
    assert_eq!(out.flow_identifier(), FLOW);
    assert!(
        sim.stats().log[0]
            .execution
            .ends_with("/execution/run-0001")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_stale_read_is_served_as_scripted() {
    let sim = simulator(&execution(
        "stale",
        r#"timeline = [{ at = "0s", status = "Succeeded" }, { at = "300ms", status = "Running" }]"#,
    ))
    .await;
    let client = client(&sim);
    let before = get(&client, "stale").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = get(&client, "stale").await.unwrap();
    assert_eq!(
        (before.status(), after.status()),
        (
            &FlowExecutionStatus::Succeeded,
            &FlowExecutionStatus::Running
        )
    );
    assert!(before.ended_at().is_some() && after.ended_at().is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_100k_generate_scenario_is_small_and_answers() {
    let scenario = Scenario::load(&manifest_path("config/scenarios/bench-100k.toml")).unwrap();
    assert_eq!(scenario.len(), 100_000);
    // The template once plus four bytes per execution.
    assert!(
        scenario.heap_bytes() < 100_000 * 5,
        "{} bytes",
        scenario.heap_bytes()
    );
    let sim = Simulator::spawn(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let c = client(&sim);
    let out = c
        .get_flow_execution()
        .flow_identifier("FLOWBENCH1")
        .flow_alias_identifier("ALIASBENCH")
        .execution_identifier("bench-100000")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.status(),
        &FlowExecutionStatus::Running,
        "ends no sooner than 30 s"
    );
    let missing = c
        .get_flow_execution()
        .flow_identifier("FLOWBENCH1")
        .flow_alias_identifier("ALIASBENCH")
        .execution_identifier("bench-100001")
        .send()
        .await;
    assert!(
        missing
            .unwrap_err()
            .into_service_error()
            .is_resource_not_found_exception()
    );
    sim.shutdown().await;
}

#[test]
fn every_example_scenario_parses() {
    let dir = manifest_path("config/scenarios");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    for path in &names {
        if let Err(e) = Scenario::load(path) {
            panic!("{e}");
        }
    }
    assert!(names.len() >= 5, "{names:?}");
}

#[test]
fn a_scenario_error_names_file_line_column_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(
        &path,
        "quota = 5.0\n\n[[execution]]\nflow = \"FLOW123456\"\n  aliass = \"A\"\n",
    )
    .unwrap();
    let err = Scenario::load(&path).unwrap_err();
    assert!(matches!(err, ScenarioError::Invalid { .. }));
    assert_eq!(
        err.to_string(),
        format!("{}:5:3: execution[0].aliass: unknown key", path.display())
    );
}

#[tokio::test]
async fn run_serves_until_cancelled_and_reports_a_bad_scenario() {
    let missing = manifest_path("config/scenarios/no-such-file.toml");
    let token = tokio_util::sync::CancellationToken::new();
    let err = super::run(
        "127.0.0.1:0".parse().unwrap(),
        Some(&missing),
        token.clone(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            super::SimulateError::Scenario(ScenarioError::Read { .. })
        ),
        "{err}"
    );

    let scenario = manifest_path("config/scenarios/one-success.toml");
    let stop = token.clone();
    let running = tokio::spawn(async move {
        super::run("127.0.0.1:0".parse().unwrap(), Some(&scenario), stop).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!running.is_finished(), "serves until cancelled");
    token.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops once cancelled")
        .expect("no panic");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn injected_faults_repeat_with_the_same_seed() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sim = simulator(&format!(
            "seed = 9\nerror_rate = 0.5\n{}",
            execution("ok", "")
        ))
        .await;
        let c = client(&sim);
        for _ in 0..20 {
            let _ = get(&c, "ok").await;
        }
        let statuses: Vec<u16> = sim.stats().log.iter().map(|r| r.status).collect();
        sim.shutdown().await;
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&200) && runs[0].contains(&500),
        "{:?}",
        runs[0]
    );
}
