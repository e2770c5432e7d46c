//! What the service answers to one request that got past authentication, the
//! quota and the fault dice. In: the scenario, the routed operation and the
//! time since the simulator started. Out: a `Reply`. Pure: the server passes
//! the time in.
//!
//! Order of checks for one execution: identifiers against the API patterns
//! (400), unknown execution (404), `invalid` (400), `access_denied` (403),
//! before its first step or within `not_found_for` (404), then the snapshot.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::ids;
use super::scenario::{ExecRef, Scenario, is_terminal};
use super::wire::{Answer, Operation, Query, Reply, timestamp};

/// Default and largest `maxResults` of the two listing operations (the API's
/// constraint), and the most items a page really holds whatever `maxResults`
/// says, as the service does (issue 9).
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
const PAGE_CAP: usize = 10;

const NODE_ERROR_CODES: [&str; 4] = [
    "VALIDATION",
    "DEPENDENCY_FAILED",
    "BAD_GATEWAY",
    "INTERNAL_SERVER",
];

const FLOW_PATTERN: &str =
    "(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:flow/[0-9a-zA-Z]{10})|([0-9a-zA-Z]{10})";
const ALIAS_PATTERN: &str = "(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:flow/[0-9a-zA-Z]{10}/alias/[0-9a-zA-Z]{10})|(\\bTSTALIASID\\b|[0-9a-zA-Z]+)";
const EXECUTION_PATTERN: &str = "[a-zA-Z0-9-]{1,36}|arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:flow/[0-9a-zA-Z]{10}/alias/[0-9a-zA-Z]{10}/execution/[a-zA-Z0-9-]{1,36}";

/// Answers one operation at `elapsed` after the simulator's start (`origin`).
pub fn answer(scenario: &Scenario, op: &Operation, elapsed: Duration, origin: SystemTime) -> Reply {
    let result = match op {
        Operation::GetFlowExecution {
            flow,
            alias,
            execution,
        } => visible(
            scenario,
            flow,
            alias,
            execution,
            elapsed,
            "GetFlowExecution",
        )
        .map(|(e, snap)| get_flow_execution(scenario, &e, &snap, origin)),
        Operation::ListFlowExecutions { flow, query } => {
            list_flow_executions(scenario, flow, query, elapsed, origin)
        }
        Operation::ListFlowExecutionEvents {
            flow,
            alias,
            execution,
            query,
        } => visible(
            scenario,
            flow,
            alias,
            execution,
            elapsed,
            "ListFlowExecutionEvents",
        )
        .and_then(|(e, snap)| list_events(&e, &snap, query, origin)),
    };
    result.unwrap_or_else(|reply| reply)
}

type Snapshot<'a> = super::scenario::Snapshot<'a>;

/// The execution a request names, as it looks now, or the error reply.
fn visible<'a>(
    scenario: &'a Scenario,
    flow: &str,
    alias: &str,
    execution: &str,
    elapsed: Duration,
    action: &str,
) -> Result<(ExecRef<'a>, Snapshot<'a>), Reply> {
    let flow_id =
        ids::flow(flow).ok_or_else(|| pattern_error(flow, "flowIdentifier", FLOW_PATTERN))?;
    let (alias_flow, alias_id) = ids::alias(alias)
        .ok_or_else(|| pattern_error(alias, "flowAliasIdentifier", ALIAS_PATTERN))?;
    let (exec_parents, exec_id) = ids::execution(execution)
        .ok_or_else(|| pattern_error(execution, "executionIdentifier", EXECUTION_PATTERN))?;
    // ARNs that name another flow or alias than the path point at nothing.
    let consistent = alias_flow.is_none_or(|f| f == flow_id)
        && exec_parents.is_none_or(|(f, a)| f == flow_id && a == alias_id);
    let found = consistent
        .then(|| scenario.find(&flow_id, &alias_id, &exec_id))
        .flatten()
        .ok_or_else(|| not_found(&exec_id))?;
    if found.invalid() {
        return Err(Reply::error(
            Answer::Validation,
            format!("execution {exec_id} cannot be used with flow alias {alias_id}"),
        ));
    }
    if found.access_denied() {
        return Err(Reply::error(
            Answer::AccessDenied,
            format!(
                "User: arn:aws:iam::{}:user/simulator is not authorized to perform: bedrock:{action} on resource: {}",
                scenario.server.account,
                scenario.execution_arn(&found)
            ),
        ));
    }
    match found.snapshot(elapsed) {
        Some(snap) if elapsed >= found.not_found_for() => Ok((found, snap)),
        _ => Err(not_found(&exec_id)),
    }
}

fn get_flow_execution(
    scenario: &Scenario,
    e: &ExecRef<'_>,
    snap: &Snapshot<'_>,
    origin: SystemTime,
) -> Reply {
    let mut body = json!({
        "executionArn": scenario.execution_arn(e),
        "flowIdentifier": e.flow(),
        "flowAliasIdentifier": e.alias(),
        "flowVersion": e.flow_version(),
        "status": snap.status,
        "startedAt": timestamp(origin, snap.started_at),
    });
    if let Some(ended_at) = snap.ended_at {
        body["endedAt"] = json!(timestamp(origin, ended_at));
    }
    if is_terminal(snap.status) && !e.errors().is_empty() {
        let errors: Vec<Value> = e
            .errors()
            .iter()
            .map(|err| {
                let mut v = json!({ "message": err.message });
                if let Some(error) = &err.error {
                    v["error"] = json!(error);
                }
                if let Some(node) = &err.node {
                    v["nodeName"] = json!(node);
                }
                v
            })
            .collect();
        body["errors"] = Value::Array(errors);
    }
    Reply::ok(body)
}

fn list_flow_executions(
    scenario: &Scenario,
    flow: &str,
    query: &Query,
    elapsed: Duration,
    origin: SystemTime,
) -> Result<Reply, Reply> {
    let flow_id =
        ids::flow(flow).ok_or_else(|| pattern_error(flow, "flowIdentifier", FLOW_PATTERN))?;
    let alias_id = match query.get("flowAliasIdentifier") {
        None => None,
        Some(alias) => {
            let (alias_flow, alias_id) = ids::alias(alias)
                .ok_or_else(|| pattern_error(alias, "flowAliasIdentifier", ALIAS_PATTERN))?;
            if alias_flow.is_some_and(|f| f != flow_id) {
                return Err(not_found(&alias_id));
            }
            Some(alias_id)
        }
    };
    let (start, max) = page(query)?;
    let known_flow = (0..scenario.len())
        .filter_map(|i| scenario.nth(i))
        .any(|e| e.flow() == flow_id);
    if !known_flow {
        return Err(not_found(&flow_id));
    }
    let listed = |e: &ExecRef<'_>| {
        e.flow() == flow_id
            && alias_id.as_deref().is_none_or(|a| a == e.alias())
            && elapsed >= e.not_found_for()
            && e.snapshot(elapsed).is_some()
    };
    let (items, next) = paginate(scenario.len(), start, max, |i| {
        scenario.listed_nth(i).filter(|e| listed(e))
    });
    let summaries: Vec<Value> = items
        .iter()
        .map(|e| {
            let snap = e
                .snapshot(elapsed)
                .expect("listed executions have a snapshot");
            let mut v = json!({
                "executionArn": scenario.execution_arn(e),
                "flowIdentifier": e.flow(),
                "flowAliasIdentifier": e.alias(),
                "flowVersion": e.flow_version(),
                "status": snap.status,
                "createdAt": timestamp(origin, snap.started_at),
            });
            if let Some(ended_at) = snap.ended_at {
                v["endedAt"] = json!(timestamp(origin, ended_at));
            }
            v
        })
        .collect();
    let mut body = json!({ "flowExecutionSummaries": summaries });
    if let Some(next) = next {
        body["nextToken"] = json!(next.to_string());
    }
    Ok(Reply::ok(body))
}

/// Flow events: the input at the start, then the output (Succeeded) or a flow
/// failure (other terminal statuses). Node events: one failure per error naming a node.
fn list_events(
    e: &ExecRef<'_>,
    snap: &Snapshot<'_>,
    query: &Query,
    origin: SystemTime,
) -> Result<Reply, Reply> {
    let event_type = query.get("eventType").unwrap_or("");
    let (start, max) = page(query)?;
    let ended_at = snap.ended_at.map(|at| timestamp(origin, at));
    let id = e.id();
    let mut events = Vec::new();
    match event_type {
        "Flow" => {
            events.push(json!({ "flowInputEvent": {
                "nodeName": "FlowInputNode",
                "timestamp": timestamp(origin, snap.started_at),
                "fields": [{ "name": "document", "content": { "document": format!("input of {id}") } }],
            }}));
            if let Some(ended_at) = &ended_at {
                if snap.status == "Succeeded" {
                    events.push(json!({ "flowOutputEvent": {
                        "nodeName": "FlowOutputNode",
                        "timestamp": ended_at,
                        "fields": [{ "name": "document", "content": { "document": format!("output of {id}") } }],
                    }}));
                } else {
                    let (code, message) = match e.errors().first() {
                        Some(err) if err.node.is_some() => {
                            ("NODE_EXECUTION_FAILED", err.message.clone())
                        }
                        Some(err) => ("INTERNAL_SERVER", err.message.clone()),
                        None => (
                            "INTERNAL_SERVER",
                            format!("execution ended {}", snap.status),
                        ),
                    };
                    events.push(json!({ "flowFailureEvent": {
                        "timestamp": ended_at,
                        "errorCode": code,
                        "errorMessage": message,
                    }}));
                }
            }
        }
        "Node" => {
            if let Some(ended_at) = &ended_at {
                for err in e.errors() {
                    let Some(node) = &err.node else { continue };
                    // The SDK's NodeErrorCode values; anything else reads as a server error.
                    let code = err
                        .error
                        .as_deref()
                        .filter(|c| NODE_ERROR_CODES.contains(c))
                        .unwrap_or("INTERNAL_SERVER");
                    events.push(json!({ "nodeFailureEvent": {
                        "nodeName": node,
                        "timestamp": ended_at,
                        "errorCode": code,
                        "errorMessage": err.message,
                    }}));
                }
            }
        }
        other => return Err(pattern_error(other, "eventType", "Node|Flow")),
    }
    let (page_events, next) = paginate(events.len(), start, max, |i| events.get(i).cloned());
    let mut body = json!({ "flowExecutionEvents": page_events });
    if let Some(next) = next {
        body["nextToken"] = json!(next.to_string());
    }
    Ok(Reply::ok(body))
}

/// `nextToken` (a position) and the page size from a listing query:
/// `maxResults` must be 1..=1000, and a page holds at most `PAGE_CAP`.
fn page(query: &Query) -> Result<(usize, usize), Reply> {
    let start = match query.get("nextToken") {
        None => 0,
        Some(token) => token.parse::<usize>().map_err(|_| {
            Reply::error(Answer::Validation, format!("invalid nextToken {token:?}"))
        })?,
    };
    let max = match query.get("maxResults") {
        None => DEFAULT_PAGE,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(Reply::error(
                    Answer::Validation,
                    format!(
                        "1 validation error detected: Value '{m}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and {MAX_PAGE}"
                    ),
                ));
            }
        },
    };
    Ok((start, max.min(PAGE_CAP)))
}

/// Up to `max` items at positions from `start` on, and the position of the next
/// item when more remain (so the last page never comes back empty).
fn paginate<T>(
    len: usize,
    start: usize,
    max: usize,
    item: impl Fn(usize) -> Option<T>,
) -> (Vec<T>, Option<usize>) {
    let mut items = Vec::new();
    for i in start..len {
        if let Some(x) = item(i) {
            if items.len() == max {
                return (items, Some(i));
            }
            items.push(x);
        }
    }
    (items, None)
}

fn pattern_error(value: &str, field: &str, pattern: &str) -> Reply {
    Reply::error(
        Answer::Validation,
        format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
        ),
    )
}

fn not_found(what: &str) -> Reply {
    Reply::error(
        Answer::NotFound,
        format!(
            "The resource {what} was not found. Check the identifier and try your request again."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::wire::route;

    const SCENARIO: &str = r#"
[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "late"
not_found_for = "1s"

[[execution]]
flow = "FLOW123456"
alias = "ALIAS12345"
id = "later"
timeline = [{ at = "2s", status = "Running" }]
"#;

    fn get(scenario: &Scenario, path: &str, elapsed_ms: u64) -> Answer {
        let op = route("GET", path, None).unwrap();
        answer(
            scenario,
            &op,
            Duration::from_millis(elapsed_ms),
            SystemTime::now(),
        )
        .answer
    }

    #[test]
    fn not_found_for_hides_an_execution_until_it_passes() {
        let s = Scenario::parse(SCENARIO).unwrap();
        let path = "/flows/FLOW123456/aliases/ALIAS12345/executions/late";
        assert_eq!(get(&s, path, 999), Answer::NotFound);
        assert_eq!(get(&s, path, 1000), Answer::Ok);
    }

    #[test]
    fn an_execution_is_not_found_before_its_first_step() {
        let s = Scenario::parse(SCENARIO).unwrap();
        let path = "/flows/FLOW123456/aliases/ALIAS12345/executions/later";
        assert_eq!(get(&s, path, 1999), Answer::NotFound);
        assert_eq!(get(&s, path, 2000), Answer::Ok);
    }

    #[test]
    fn an_execution_arn_naming_another_alias_is_not_found() {
        let s = Scenario::parse(SCENARIO).unwrap();
        let arn = "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aflow%2FFLOW123456%2Falias%2FOTHERALIAS%2Fexecution%2Flate";
        let path = format!("/flows/FLOW123456/aliases/ALIAS12345/executions/{arn}");
        assert_eq!(get(&s, &path, 5000), Answer::NotFound);
        let good = arn.replace("OTHERALIAS", "ALIAS12345");
        let path = format!("/flows/FLOW123456/aliases/ALIAS12345/executions/{good}");
        assert_eq!(get(&s, &path, 5000), Answer::Ok);
    }

    #[test]
    fn pagination_never_ends_on_an_empty_page() {
        let (items, next) = paginate(10, 0, 2, |i| (i % 5 == 0).then_some(i));
        assert_eq!((items, next), (vec![0, 5], None));
        let (items, next) = paginate(10, 0, 1, |i| (i % 5 == 0).then_some(i));
        assert_eq!((items, next), (vec![0], Some(5)));
    }

    fn list(scenario: &Scenario, path: &str, query: &str, elapsed_ms: u64) -> Value {
        let op = route("GET", path, Some(query)).unwrap();
        let elapsed = Duration::from_millis(elapsed_ms);
        let reply = answer(scenario, &op, elapsed, SystemTime::now());
        assert_eq!(reply.answer, Answer::Ok, "{}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }

    /// Every id ListFlowExecutions gives, page by page, and the page sizes.
    fn walk(scenario: &Scenario, max_results: &str, elapsed_ms: u64) -> (Vec<String>, Vec<usize>) {
        let (mut ids, mut sizes, mut token) = (Vec::new(), Vec::new(), None::<String>);
        loop {
            let mut query = max_results.to_owned();
            if let Some(t) = &token {
                query.push_str(&format!("&nextToken={t}"));
            }
            let page = list(scenario, "/flows/FLOW123456/executions", &query, elapsed_ms);
            let items = page["flowExecutionSummaries"].as_array().unwrap();
            sizes.push(items.len());
            for item in items {
                let arn = item["executionArn"].as_str().unwrap();
                ids.push(arn.rsplit('/').next().unwrap().to_owned());
            }
            match page["nextToken"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => return (ids, sizes),
            }
        }
    }

    const MANY: &str = r#"
[[generate]]
count = 35
id_prefix = "g-"
flow = "FLOW123456"
alias = "ALIAS12345"
end_between = ["1s", "2s"]
"#;

    #[test]
    fn a_listing_page_holds_at_most_10_whatever_max_results_says() {
        let s = Scenario::parse(MANY).unwrap();
        for query in ["maxResults=1000", "maxResults=100", "maxResults=11", ""] {
            let (ids, sizes) = walk(&s, query, 5000);
            assert_eq!(sizes, [10, 10, 10, 5], "{query}");
            assert_eq!(ids.len(), 35);
        }
        let (_, sizes) = walk(&s, "maxResults=4", 5000);
        assert_eq!(sizes, [4, 4, 4, 4, 4, 4, 4, 4, 3]);
    }

    #[test]
    fn an_events_page_holds_at_most_10_whatever_max_results_says() {
        let errors: Vec<String> = (0..13)
            .map(|i| format!("{{ message = \"m{i}\", node = \"Node_{i}\" }}"))
            .collect();
        let text = format!(
            "[[execution]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nid = \"failed\"\ntimeline = [{{ at = \"0s\", status = \"Failed\" }}]\nerrors = [{}]\n",
            errors.join(", ")
        );
        let s = Scenario::parse(&text).unwrap();
        let path = "/flows/FLOW123456/aliases/ALIAS12345/executions/failed/events";
        let first = list(&s, path, "eventType=Node&maxResults=100", 0);
        assert_eq!(first["flowExecutionEvents"].as_array().unwrap().len(), 10);
        let token = first["nextToken"].as_str().unwrap();
        let second = list(
            &s,
            path,
            &format!("eventType=Node&maxResults=100&nextToken={token}"),
            0,
        );
        assert_eq!(second["flowExecutionEvents"].as_array().unwrap().len(), 3);
        assert!(second.get("nextToken").is_none());
    }

    #[test]
    fn a_shuffled_listing_is_a_seeded_permutation_of_the_scenario_order() {
        let in_order = Scenario::parse(MANY).unwrap();
        let shuffled =
            Scenario::parse(&format!("list_order = \"shuffled\"\nseed = 1\n{MANY}")).unwrap();
        let again =
            Scenario::parse(&format!("list_order = \"shuffled\"\nseed = 1\n{MANY}")).unwrap();
        let other =
            Scenario::parse(&format!("list_order = \"shuffled\"\nseed = 2\n{MANY}")).unwrap();
        let (a, _) = walk(&in_order, "", 5000);
        let (b, _) = walk(&shuffled, "", 5000);
        let expected: Vec<String> = (1..=35).map(|n| format!("g-{n:02}")).collect();
        assert_eq!(a, expected, "scenario order is the default");
        assert_ne!(b, a, "shuffled");
        let mut sorted = b.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "every execution once");
        assert_eq!(walk(&again, "", 5000).0, b, "the same seed, the same order");
        assert_ne!(walk(&other, "", 5000).0, b, "another seed, another order");
        let same_seed = Scenario::parse(&format!("seed = 1\n{MANY}")).unwrap();
        assert_eq!(
            same_seed.generated[0].end_at_ms, shuffled.generated[0].end_at_ms,
            "the order draws from a stream of its own"
        );
    }

    #[test]
    fn an_execution_starting_later_is_listed_only_from_then() {
        let s = Scenario::parse(SCENARIO).unwrap();
        let (ids, _) = walk(&s, "", 1999);
        assert_eq!(ids, ["late"]);
        let (ids, _) = walk(&s, "", 2000);
        assert_eq!(ids, ["late", "later"]);
    }

    #[test]
    fn a_generated_execution_is_unknown_and_unlisted_before_its_start() {
        let text = r#"
[[generate]]
count = 20
id_prefix = "s-"
flow = "FLOW123456"
alias = "ALIAS12345"
start_between = ["10s", "20s"]
end_between = ["5s", "5s"]
"#;
        let s = Scenario::parse(text).unwrap();
        let g = &s.generated[0];
        let (n, start) = g
            .start_at_ms
            .iter()
            .enumerate()
            .min_by_key(|(_, ms)| **ms)
            .unwrap();
        let id = format!("s-{:02}", n + 1);
        let path = format!("/flows/FLOW123456/aliases/ALIAS12345/executions/{id}");
        let start = u64::from(*start);
        assert_eq!(get(&s, &path, start - 1), Answer::NotFound);
        assert_eq!(get(&s, &path, start), Answer::Ok);
        assert!(!walk(&s, "", start - 1).0.contains(&id));
        assert!(walk(&s, "", start).0.contains(&id));
        let body = list(&s, &path.replace("/events", ""), "", start + 5000);
        assert_eq!(body["status"], "Succeeded", "ends 5 s after its own start");
        assert_eq!(walk(&s, "", 30_000).0.len(), 20);
    }
}
