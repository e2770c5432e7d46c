//! `Walk` and `decide` with explicit instants: no clock, no I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::*;
use crate::poll::outcome::{FailureKind, Status};
use crate::poll::pages::{ExecutionSummary, ExecutionsPage, ReadFailure};
use crate::watch::ids::ExecutionRef;

/// Wall-clock origin of these tests: 2023-11-14T22:13:20Z.
const EPOCH_SECS: u64 = 1_700_000_000;

fn wall(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(EPOCH_SECS + secs)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn arn(id: &str) -> String {
    format!(
        "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/{id}"
    )
}

fn summary(id: &str, status: Status, created: u64) -> ExecutionSummary {
    ExecutionSummary {
        execution: ExecutionRef::parse_arn(&arn(id)).unwrap(),
        ended_at: status.is_terminal().then(|| wall(created + 5)),
        status,
        flow_version: Some("1".into()),
        created_at: wall(created),
    }
}

fn page(summaries: Vec<ExecutionSummary>, next: Option<&str>) -> ExecutionsPage {
    ExecutionsPage {
        summaries,
        skipped: 0,
        next_token: next.map(str::to_string),
    }
}

fn unwatched(_: &ExecutionSummary) -> Known {
    Known::Unwatched
}

fn throttled(hint: Option<Duration>) -> ReadFailure {
    ReadFailure::Throttled { retry_after: hint }
}

/// Budget 2.5 req/s (rate 10, share 0.25, one table): pages 400 ms apart.
const BUDGET: f64 = 2.5;

fn walk(t0: Instant) -> Walk {
    Walk::new(wall(0), LIST_INTERVAL, SeenSet::new(), t0)
}

#[test]
fn the_budget_is_the_share_of_the_rate_split_between_the_regions_walks() {
    assert_eq!(walk_budget(10.0, 0.25, 1), 2.5);
    assert_eq!(walk_budget(10.0, 0.25, 2), 1.25);
    assert_eq!(walk_budget(10.0, 0.25, 0), 2.5);
    assert_eq!(page_gap(2.5), ms(400));
    assert_eq!(page_gap(0.0), Duration::from_secs(3600));
    assert_eq!(page_gap(f64::NAN), Duration::from_secs(3600));
}

#[test]
fn the_interval_stretches_only_when_a_walk_costs_more_than_the_share() {
    // 10 pages (100 listed) at 2.5 req/s take 4 s: the 30 s interval holds.
    assert_eq!(walk_interval(10, BUDGET, LIST_INTERVAL), secs(30));
    // 1,000 pages (10,000 listed) take 400 s: the interval becomes 400 s.
    assert_eq!(walk_interval(1_000, BUDGET, LIST_INTERVAL), secs(400));
}

#[test]
fn the_first_page_is_due_at_once_and_nothing_more_while_it_is_out() {
    let t0 = Instant::now();
    let mut w = walk(t0);
    assert_eq!(w.due_at(), Some(t0));
    assert_eq!(
        w.take_page(t0, wall(0)),
        Some(PageRequest { next_token: None })
    );
    assert!(w.walking());
    assert_eq!(w.due_at(), None);
    assert_eq!(w.take_page(t0 + secs(60), wall(60)), None);
}

#[test]
fn pages_follow_the_token_spaced_by_the_budget_and_the_next_walk_waits_for_the_interval() {
    let t0 = Instant::now();
    let mut w = walk(t0);
    w.take_page(t0, wall(0)).unwrap();
    let r = w.on_page(page(vec![], Some("p2")), unwatched, t0 + ms(50), BUDGET);
    assert_eq!(r.finished, None);
    assert_eq!(w.due_at(), Some(t0 + ms(400)));
    assert_eq!(w.take_page(t0 + ms(399), wall(0)), None, "not yet");
    assert_eq!(
        w.take_page(t0 + ms(400), wall(0)),
        Some(PageRequest {
            next_token: Some("p2".into())
        })
    );
    let r = w.on_page(page(vec![], None), unwatched, t0 + ms(450), BUDGET);
    let report = r.finished.expect("the last page ends the walk");
    assert_eq!((report.pages, report.end), (2, WalkEnd::Complete));
    assert_eq!(report.duration, ms(450));
    assert!(!w.walking());
    // The next walk starts from the first page, list_interval after this one began.
    assert_eq!(w.due_at(), Some(t0 + secs(30)));
    assert_eq!(
        w.take_page(t0 + secs(30), wall(30)),
        Some(PageRequest { next_token: None })
    );
}

#[test]
fn a_walk_costlier_than_its_share_pushes_the_next_walk_out_by_its_own_cost() {
    let t0 = Instant::now();
    let mut w = walk(t0);
    let mut now = t0;
    let pages = 100u32;
    for n in 1..=pages {
        now = w.due_at().unwrap();
        w.take_page(now, wall(0)).unwrap();
        let next = (n < pages).then_some("more");
        w.on_page(page(vec![], next), unwatched, now + ms(20), BUDGET);
    }
    assert_eq!(now, t0 + ms(400 * 99), "pages paced at the budget");
    assert_eq!(w.last_walk().unwrap().pages, pages);
    // Requests per second over the cycle never exceed the budget.
    assert_eq!(
        w.due_at(),
        Some(t0 + walk_interval(pages, BUDGET, LIST_INTERVAL))
    );
    assert_eq!(w.due_at(), Some(t0 + secs(40)));
}

#[test]
fn new_executions_after_since_are_added_and_a_terminal_one_says_so() {
    let seen = SeenSet::new();
    let since = wall(100);
    let running = summary("run-new", Status::Running, 150);
    let ended = summary("run-done", Status::Failed, 150);
    let old = summary("run-old", Status::Running, 99);
    assert_eq!(
        decide(&running, since, &seen, &Known::Unwatched),
        Decision::Add { terminal: false }
    );
    assert_eq!(
        decide(&ended, since, &seen, &Known::Unwatched),
        Decision::Add { terminal: true }
    );
    assert_eq!(
        decide(&old, since, &seen, &Known::Unwatched),
        Decision::Ignore(Ignored::BeforeSince)
    );
}

#[test]
fn a_watched_execution_is_observed_only_when_its_summary_says_something_new() {
    let seen = SeenSet::new();
    let since = wall(0);
    let done = summary("run-1", Status::Succeeded, 10);
    assert_eq!(
        decide(&done, since, &seen, &Known::Watched(Some(Status::Running))),
        Decision::Observe
    );
    assert_eq!(
        decide(&done, since, &seen, &Known::Watched(None)),
        Decision::Observe
    );
    assert_eq!(
        decide(
            &done,
            since,
            &seen,
            &Known::Watched(Some(Status::Succeeded))
        ),
        Decision::Ignore(Ignored::Unchanged)
    );
    // A reported terminal status is final; a disagreeing summary is stale.
    let stale = summary("run-1", Status::Running, 10);
    assert_eq!(
        decide(&stale, since, &seen, &Known::Watched(Some(Status::Failed))),
        Decision::Ignore(Ignored::Unchanged)
    );
    // Watched executions are observed whatever `since` says: the user listed them.
    let old = summary("run-0", Status::Succeeded, 0);
    assert_eq!(
        decide(
            &old,
            wall(100),
            &seen,
            &Known::Watched(Some(Status::Running))
        ),
        Decision::Observe
    );
}

#[test]
fn a_retired_execution_is_not_found_again_on_the_next_walk() {
    let t0 = Instant::now();
    let mut w = walk(t0);
    let listed = || page(vec![summary("run-1", Status::Succeeded, 10)], None);
    w.take_page(t0, wall(20)).unwrap();
    let r = w.on_page(listed(), unwatched, t0 + ms(10), BUDGET);
    assert_eq!(r.found.len(), 1);
    assert_eq!(r.found[0].decision, Decision::Add { terminal: true });
    // Reported once, then dropped from memory: only the record stays.
    w.retire(&arn("run-1"), wall(10));
    let next = w.due_at().unwrap();
    w.take_page(next, wall(50)).unwrap();
    let r = w.on_page(listed(), unwatched, next + ms(10), BUDGET);
    assert!(r.found.is_empty(), "{r:?}");
    let report = r.finished.unwrap();
    assert_eq!((report.listed, report.added), (1, 0));
}

#[test]
fn a_walks_report_counts_what_it_listed_added_and_observed() {
    let t0 = Instant::now();
    let mut w = walk(t0);
    w.take_page(t0, wall(100)).unwrap();
    let mut p = page(
        vec![
            summary("run-1", Status::Running, 10),
            summary("run-2", Status::Succeeded, 20),
            summary("run-3", Status::Running, 30),
        ],
        None,
    );
    p.skipped = 2;
    let r = w.on_page(
        p,
        |s| match s.execution.execution.as_str() {
            "run-2" => Known::Watched(Some(Status::Running)),
            "run-3" => Known::Watched(Some(Status::Running)),
            _ => Known::Unwatched,
        },
        t0 + ms(30),
        BUDGET,
    );
    let decisions: Vec<_> = r
        .found
        .iter()
        .map(|f| (f.summary.execution.execution.as_str(), f.decision))
        .collect();
    assert_eq!(
        decisions,
        [
            ("run-1", Decision::Add { terminal: false }),
            ("run-2", Decision::Observe)
        ]
    );
    let report = r.finished.unwrap();
    assert_eq!(
        (report.listed, report.skipped, report.added, report.observed),
        (3, 2, 1, 1)
    );
}

#[test]
fn a_throttled_page_is_retried_with_its_token_after_the_hint_and_the_walk_goes_on() {
    let t0 = Instant::now();
    let mut w = walk(t0);
    w.take_page(t0, wall(0)).unwrap();
    w.on_page(page(vec![], Some("p2")), unwatched, t0, BUDGET);
    let sent = w.due_at().unwrap();
    w.take_page(sent, wall(0)).unwrap();
    assert_eq!(
        w.on_failure(&throttled(Some(secs(3))), sent + ms(5), BUDGET),
        None
    );
    // The hint (3 s) is longer than the backoff (2 x 400 ms).
    assert_eq!(w.due_at(), Some(sent + secs(3)));
    let retry = w.take_page(sent + secs(3), wall(3)).unwrap();
    assert_eq!(retry.next_token.as_deref(), Some("p2"));
    assert!(w.walking(), "still the same walk");
    let r = w.on_page(page(vec![], None), unwatched, sent + secs(3), BUDGET);
    assert_eq!(r.finished.unwrap().pages, 2);
}

#[test]
fn retryable_failures_back_off_doubling_and_the_walk_gives_up_after_the_last_attempt() {
    let t0 = Instant::now();
    let mut w = walk(t0);
    let failure = ReadFailure::Failed {
        kind: FailureKind::Server,
        code: Some("InternalServerException".into()),
        message: "oops".into(),
        retry_after: None,
    };
    let mut delays = Vec::new();
    let mut now = t0;
    for _ in 1..MAX_PAGE_ATTEMPTS {
        w.take_page(now, wall(0)).unwrap();
        assert_eq!(w.on_failure(&failure, now, BUDGET), None);
        let due = w.due_at().unwrap();
        delays.push(due - now);
        now = due;
    }
    assert_eq!(delays, [ms(800), ms(1600), ms(3200), ms(6400)]);
    w.take_page(now, wall(0)).unwrap();
    let report = w.on_failure(&failure, now, BUDGET).expect("gave up");
    assert_eq!(report.end, WalkEnd::GaveUp(failure));
    assert!(!w.walking());
    // The next walk starts over from the first page, one interval after this one began.
    assert_eq!(w.due_at(), Some(t0 + LIST_INTERVAL));
    assert_eq!(
        w.take_page(t0 + LIST_INTERVAL, wall(30))
            .unwrap()
            .next_token,
        None
    );
}

#[test]
fn access_denied_ends_the_walk_at_once_and_the_next_comes_one_interval_later() {
    let t0 = Instant::now();
    let mut w = walk(t0);
    w.take_page(t0, wall(0)).unwrap();
    let denied = ReadFailure::AccessDenied {
        code: "AccessDeniedException".into(),
        message: "no".into(),
    };
    let report = w.on_failure(&denied, t0 + ms(5), BUDGET).unwrap();
    assert_eq!(report.end, WalkEnd::GaveUp(denied));
    assert_eq!(report.pages, 0);
    assert_eq!(w.due_at(), Some(t0 + LIST_INTERVAL));
}

#[test]
fn answers_without_a_page_out_change_nothing() {
    let t0 = Instant::now();
    let mut w = walk(t0);
    let r = w.on_page(
        page(vec![summary("run-1", Status::Running, 5)], None),
        unwatched,
        t0,
        BUDGET,
    );
    assert_eq!(r, PageResult::default());
    assert_eq!(w.on_failure(&throttled(None), t0, BUDGET), None);
    assert_eq!(w.due_at(), Some(t0));
    assert!(w.last_walk().is_none());
}

#[test]
fn a_walk_prunes_records_before_since_and_past_the_retention() {
    let t0 = Instant::now();
    let day = 24 * 3600;
    let mut seen = SeenSet::new();
    seen.insert(&arn("before-since"), wall(50));
    seen.insert(&arn("recent"), wall(200 * day));
    seen.insert(&arn("ancient"), wall(100));
    let mut w = Walk::new(wall(60), LIST_INTERVAL, seen, t0);
    // 200 days in: the retention horizon (day 110) is later than `since`.
    w.take_page(t0, wall(200 * day + 10)).unwrap();
    assert_eq!(w.seen().len(), 1);
    assert!(w.seen().contains(&arn("recent"), wall(200 * day)));
    assert_eq!(horizon(wall(60), wall(10)), wall(60));
    assert_eq!(horizon(wall(60), wall(100 * day)), wall(10 * day));
}
