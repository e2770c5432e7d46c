//! The scheduler's rules, one test each, on explicit instants; the last ones
//! drive many watches against a simulated server quota.

use super::*;
use crate::config::SchedulePolicy;
use std::collections::VecDeque;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// 2 s growing ×2 to 60 s, no jitter, and a budget too large to matter.
fn policy() -> PollSettings {
    PollSettings {
        interval_initial: secs(2),
        interval_max: secs(60),
        multiplier: 2.0,
        jitter: 0.0,
        rate_limit: 1000.0,
        max_in_flight: 16,
        request_timeout: secs(10),
        max_watch: secs(25 * 3600),
        not_found_grace: secs(30),
        ..PollSettings::default()
    }
}

/// Starts the poll of `id` at `now` (it must be the one handed out) and
/// records its outcome at the same instant.
fn poll(s: &mut Scheduler, id: WatchId, outcome: Outcome, now: Instant) -> Next {
    assert_eq!(s.take_ready(now), Some(id), "expected {id:?} to be ready");
    s.record(id, &outcome, now)
}

/// Polls `id` each time it comes due with the next outcome; returns each
/// `Next` as seconds after `t0` (or the end).
fn run(s: &mut Scheduler, id: WatchId, t0: Instant, outcomes: &[Outcome]) -> Vec<Next> {
    let mut now = t0;
    let mut seen = Vec::new();
    for outcome in outcomes {
        let next = poll(s, id, outcome.clone(), now);
        seen.push(next);
        match next {
            Next::PollAt(at) => now = at,
            _ => break,
        }
    }
    seen
}

fn at(t0: Instant, offsets_secs: &[u64]) -> Vec<Next> {
    offsets_secs
        .iter()
        .map(|&s| Next::PollAt(t0 + secs(s)))
        .collect()
}

fn throttled() -> Outcome {
    Outcome::Throttled { retry_after: None }
}

fn failed() -> Outcome {
    Outcome::Failed { retry_after: None }
}

#[test]
fn a_new_watch_is_due_at_once() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    assert_eq!(s.next_wakeup(), Some(t0));
    assert_eq!(s.take_ready(t0), Some(id));
}

#[test]
fn a_watch_is_not_handed_out_before_it_is_due() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    poll(&mut s, id, Outcome::Unchanged, t0);
    assert_eq!(s.take_ready(t0 + ms(1999)), None);
    assert_eq!(s.next_wakeup(), Some(t0 + secs(2)));
    assert_eq!(s.take_ready(t0 + secs(2)), Some(id));
}

#[test]
fn unchanged_status_grows_the_delay_by_the_multiplier_up_to_the_cap() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        interval_max: secs(8),
        ..policy()
    });
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let seen = run(&mut s, id, t0, &[const { Outcome::Unchanged }; 5]);
    assert_eq!(seen, at(t0, &[2, 6, 14, 22, 30]));
}

#[test]
fn a_transition_resets_the_no_change_delay() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    use Outcome::{Changed, Unchanged};
    let seen = run(
        &mut s,
        id,
        t0,
        &[Unchanged, Unchanged, Unchanged, Changed, Unchanged],
    );
    // delays 2, 4, 8, then 2 after the change and 2 again.
    assert_eq!(seen, at(t0, &[2, 6, 14, 16, 18]));
}

#[test]
fn a_failure_neither_resets_nor_advances_the_no_change_delay() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    use Outcome::Unchanged;
    let seen = run(&mut s, id, t0, &[Unchanged, Unchanged, failed(), Unchanged]);
    // delays 2, 4, then the error delay 2, then the no-change delay 8.
    assert_eq!(seen, at(t0, &[2, 6, 8, 16]));
}

#[test]
fn throttled_and_failed_attempts_share_one_doubling_error_backoff() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        interval_max: secs(10),
        ..policy()
    });
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let seen = run(
        &mut s,
        id,
        t0,
        &[throttled(), failed(), throttled(), failed(), failed()],
    );
    // delays 2, 4, 8, 10, 10.
    assert_eq!(seen, at(t0, &[2, 6, 14, 24, 34]));
}

#[test]
fn a_success_resets_the_error_backoff() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let seen = run(
        &mut s,
        id,
        t0,
        &[failed(), failed(), Outcome::Changed, failed()],
    );
    // error delays 2, 4; the change 2; the error delay starts over at 2.
    assert_eq!(seen, at(t0, &[2, 6, 8, 10]));
}

#[test]
fn a_retry_after_hint_longer_than_the_backoff_is_honoured() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let hint = Outcome::Throttled {
        retry_after: Some(secs(30)),
    };
    assert_eq!(poll(&mut s, id, hint, t0), Next::PollAt(t0 + secs(30)));
}

#[test]
fn a_retry_after_hint_shorter_than_the_backoff_does_not_shorten_it() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let hint = Outcome::Failed {
        retry_after: Some(ms(100)),
    };
    assert_eq!(poll(&mut s, id, hint, t0), Next::PollAt(t0 + secs(2)));
}

#[test]
fn an_overdue_watch_keeps_its_place_in_line_when_retried() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let first = s.insert("us-east-1", t0, Duration::ZERO);
    assert_eq!(
        poll(&mut s, first, Outcome::Unchanged, t0),
        Next::PollAt(t0 + secs(2))
    );
    let later = s.insert("us-east-1", t0 + secs(3), Duration::ZERO);
    assert_eq!(
        poll(&mut s, later, Outcome::Unchanged, t0 + secs(3)),
        Next::PollAt(t0 + secs(5))
    );
    // Served 8 s late (a short budget), then throttled: due again 2 s after
    // the answer, and then still ahead of `later`, which came due after it.
    let now = t0 + secs(10);
    assert_eq!(s.take_ready(now), Some(first));
    assert_eq!(
        s.record(first, &throttled(), now),
        Next::PollAt(now + secs(2))
    );
    let order: Vec<_> = std::iter::from_fn(|| s.take_ready(now + secs(2))).collect();
    assert_eq!(order, [first, later]);
}

#[test]
fn an_overdue_throttled_watch_is_retried_after_its_backoff_not_at_once() {
    // Issue 7.6: due at t0, served 10 s late, throttled. Today's retry was
    // due at once (`retry_in_ms = 0`).
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let now = t0 + secs(10);
    assert_eq!(
        poll(&mut s, id, throttled(), now),
        Next::PollAt(now + secs(2))
    );
    assert_eq!(s.take_ready(now + ms(1999)), None, "not before the backoff");
    assert_eq!(s.next_wakeup(), Some(now + secs(2)));
    assert_eq!(s.take_ready(now + secs(2)), Some(id));
}

#[test]
fn a_retry_counts_its_backoff_from_when_the_answer_came() {
    // Issue 7.6: a request that timed out after request_timeout = 10 s, with
    // a 2 s backoff, then 4 s, then 8 s: never retried at once.
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let mut sent = t0;
    let mut retries = Vec::new();
    for _ in 0..3 {
        assert_eq!(s.take_ready(sent), Some(id));
        let answered = sent + secs(10);
        let Next::PollAt(due) = s.record(id, &failed(), answered) else {
            panic!("a failure is retried");
        };
        assert_eq!(s.take_ready(due - ms(1)), None, "not before the backoff");
        retries.push(due - answered);
        sent = due;
    }
    assert_eq!(retries, [secs(2), secs(4), secs(8)]);
}

#[test]
fn a_throttle_is_never_retried_in_less_than_a_millisecond_whatever_the_jitter() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        interval_initial: ms(1),
        interval_max: ms(1),
        jitter: 1.0,
        ..policy()
    });
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let mut now = t0;
    for _ in 0..100 {
        now = s.next_wakeup().expect("the watch waits").max(now);
        assert_eq!(s.take_ready(now), Some(id));
        let Next::PollAt(due) = s.record(id, &throttled(), now) else {
            panic!("a throttle is retried");
        };
        assert!(due - now >= ms(1), "retry in {:?}", due - now);
    }
}

#[test]
fn a_due_watch_never_polled_goes_first() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let answered = s.insert("us-east-1", t0, Duration::ZERO);
    assert_eq!(
        poll(&mut s, answered, Outcome::Changed, t0),
        Next::PollAt(t0 + secs(2))
    );
    let fresh = s.insert("us-east-1", t0 + secs(3), Duration::ZERO);
    // The new one goes first, although the other came due a second earlier:
    // a short budget covers every execution once before it polls any twice.
    let now = t0 + secs(3);
    assert_eq!(s.take_ready(now), Some(fresh));
    assert_eq!(s.take_ready(now), Some(answered));
}

#[test]
fn a_watch_polled_but_never_answered_waits_by_due_time() {
    // Issue 7.12: once a request was sent, an unanswered watch no longer
    // goes before the ones due longer.
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let answered = s.insert("us-east-1", t0, Duration::ZERO);
    assert_eq!(
        poll(&mut s, answered, Outcome::Changed, t0),
        Next::PollAt(t0 + secs(2))
    );
    let failed_once = s.insert("us-east-1", t0 + secs(1), Duration::ZERO);
    assert_eq!(
        poll(&mut s, failed_once, failed(), t0 + secs(1)),
        Next::PollAt(t0 + secs(3))
    );
    let now = t0 + secs(3);
    assert_eq!(s.take_ready(now), Some(answered));
    assert_eq!(s.take_ready(now), Some(failed_once));
}

#[test]
fn watches_always_denied_access_do_not_starve_an_answered_one() {
    longest_wait_of_an_answered_watch_among_120(Outcome::AccessDenied);
}

#[test]
fn watches_that_always_fail_do_not_starve_an_answered_one() {
    longest_wait_of_an_answered_watch_among_120(failed());
}

fn longest_wait_of_an_answered_watch_among_120(outcome_of_the_others: Outcome) {
    // Issue 7.12: rate_limit 1; 120 watches answered AccessDeniedException,
    // each retried every interval_max = 60 s (2 requests a second of
    // demand), and one answered `Running` watch.
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        rate_limit: 1.0,
        interval_max: secs(60),
        ..policy()
    });
    let running = s.insert("us-east-1", t0, Duration::ZERO);
    let denied: std::collections::HashSet<_> = (0..120)
        .map(|_| s.insert("us-east-1", t0, Duration::ZERO))
        .collect();
    let end = t0 + secs(3600);
    let mut polls = vec![t0];
    assert_eq!(
        poll(&mut s, running, Outcome::Unchanged, t0),
        Next::PollAt(t0 + secs(2))
    );
    while let Some(now) = s.next_wakeup().filter(|&at| at <= end) {
        while let Some(id) = s.take_ready(now) {
            let outcome = if denied.contains(&id) {
                outcome_of_the_others.clone()
            } else {
                polls.push(now);
                Outcome::Unchanged
            };
            assert!(matches!(s.record(id, &outcome, now), Next::PollAt(_)));
        }
    }
    polls.push(end);
    let gaps: Vec<_> = polls.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().max().expect("two instants at least");
    // 121 watches sharing 1 request a second: each waits about 121 s.
    assert!(
        *longest <= secs(2 * 121),
        "the answered watch waited {longest:?}; polled {} times",
        polls.len() - 2
    );
}

#[test]
fn a_watch_served_a_little_late_backs_off_from_the_answer() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let now = t0 + secs(1);
    assert_eq!(poll(&mut s, id, failed(), now), Next::PollAt(now + secs(2)));
}

#[test]
fn a_watch_served_on_time_backs_off_from_now() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let seen = run(&mut s, id, t0, &[throttled(), throttled(), failed()]);
    assert_eq!(seen, at(t0, &[2, 6, 14]));
}

#[test]
fn not_found_is_retried_until_the_grace_period_ends_then_abandoned() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        not_found_grace: secs(20),
        ..policy()
    });
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let seen = run(&mut s, id, t0, &[const { Outcome::NotFound }; 6]);
    // error delays 2, 4, 8, then 16 clamped to the grace's end at 20 s.
    let mut expected = at(t0, &[2, 6, 14, 20]);
    expected.push(Next::Abandon(Reason::NotFound));
    assert_eq!(seen, expected);
    assert!(s.is_empty());
}

#[test]
fn a_success_ends_a_not_found_streak() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        not_found_grace: secs(5),
        interval_initial: secs(4),
        ..policy()
    });
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    use Outcome::{NotFound, Unchanged};
    let seen = run(&mut s, id, t0, &[NotFound, Unchanged, NotFound, NotFound]);
    // 0 s: a streak starts; 4 s: a success ends it; 8 s: a new streak
    // (8 s after the first NotFound, but only 0 s into this streak);
    // 12 s: still within 5 s of 8 s, retry at the grace's end, 13 s.
    assert_eq!(seen, at(t0, &[4, 8, 12, 13]));
}

#[test]
fn a_throttle_or_failure_does_not_end_a_not_found_streak() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        not_found_grace: secs(5),
        interval_initial: secs(4),
        ..policy()
    });
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let seen = run(
        &mut s,
        id,
        t0,
        &[Outcome::NotFound, failed(), Outcome::NotFound],
    );
    assert_eq!(seen[2], Next::Abandon(Reason::NotFound), "seen {seen:?}");
}

#[test]
fn invalid_abandons_at_once() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    assert_eq!(
        poll(&mut s, id, Outcome::Invalid, t0),
        Next::Abandon(Reason::Invalid)
    );
    assert_eq!((s.len(), s.next_wakeup()), (0, None));
}

#[test]
fn access_denied_is_retried_at_the_maximum_interval_each_time() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let seen = run(&mut s, id, t0, &[const { Outcome::AccessDenied }; 3]);
    assert_eq!(seen, at(t0, &[60, 120, 180]));
}

#[test]
fn a_terminal_status_is_done_and_the_watch_is_forgotten() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    assert_eq!(poll(&mut s, id, Outcome::Terminal, t0), Next::Done);
    assert_eq!((s.len(), s.in_flight(), s.next_wakeup()), (0, 0, None));
}

fn short_watch() -> PollSettings {
    PollSettings {
        interval_initial: secs(4),
        max_watch: secs(10),
        ..policy()
    }
}

#[test]
fn a_next_poll_past_max_watch_is_clamped_to_the_deadline() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&short_watch());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    let seen = run(&mut s, id, t0, &[const { Outcome::Unchanged }; 2]);
    assert_eq!(seen, at(t0, &[4, 10])); // 4 + 8 = 12, clamped to 10
}

#[test]
fn time_already_watched_counts_toward_max_watch() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&short_watch());
    let id = s.insert("us-east-1", t0, secs(7));
    assert_eq!(
        poll(&mut s, id, Outcome::Unchanged, t0),
        Next::PollAt(t0 + secs(3))
    );
}

#[test]
fn a_poll_just_before_the_deadline_still_schedules_one_at_it() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&short_watch());
    let id = s.insert("us-east-1", t0, secs(10) - ms(1));
    assert_eq!(
        poll(&mut s, id, Outcome::AccessDenied, t0),
        Next::PollAt(t0 + ms(1))
    );
}

#[test]
fn a_poll_at_the_deadline_abandons_the_watch_for_max_watch() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&short_watch());
    let id = s.insert("us-east-1", t0, secs(10));
    assert_eq!(
        poll(&mut s, id, failed(), t0),
        Next::Abandon(Reason::MaxWatch)
    );
    assert!(s.is_empty());
}

#[test]
fn a_watch_last_denied_access_at_the_deadline_is_abandoned_for_access_denied() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&short_watch());
    let id = s.insert("us-east-1", t0, secs(10));
    assert_eq!(
        poll(&mut s, id, Outcome::AccessDenied, t0),
        Next::Abandon(Reason::AccessDenied)
    );
}

#[test]
fn a_terminal_status_at_the_deadline_is_still_done() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&short_watch());
    let id = s.insert("us-east-1", t0, secs(20));
    assert_eq!(poll(&mut s, id, Outcome::Terminal, t0), Next::Done);
}

#[test]
fn no_request_starts_while_max_in_flight_are_running() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        max_in_flight: 2,
        ..policy()
    });
    let ids: Vec<_> = (0..3)
        .map(|_| s.insert("us-east-1", t0, Duration::ZERO))
        .collect();
    let first = s.take_ready(t0).expect("a slot is free");
    assert!(s.take_ready(t0).is_some());
    assert_eq!(
        (s.take_ready(t0), s.next_wakeup(), s.in_flight()),
        (None, None, 2)
    );
    s.record(first, &Outcome::Unchanged, t0 + ms(5));
    assert_eq!(s.take_ready(t0 + ms(5)), Some(ids[2]));
}

#[test]
fn a_watch_in_flight_is_not_handed_out_again() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    assert_eq!(s.take_ready(t0), Some(id));
    assert_eq!(
        (s.take_ready(t0 + secs(600)), s.next_wakeup()),
        (None, None)
    );
}

#[test]
fn ready_watches_are_served_earliest_due_first_across_regions() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let c = s.insert("eu-west-1", t0 + ms(2), Duration::ZERO);
    let a = s.insert("eu-west-1", t0, Duration::ZERO);
    let b = s.insert("us-east-1", t0 + ms(1), Duration::ZERO);
    let now = t0 + ms(10);
    let order: Vec<_> = std::iter::from_fn(|| s.take_ready(now)).collect();
    assert_eq!(order, [a, b, c]);
}

#[test]
fn an_empty_budget_holds_back_only_its_own_region() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        rate_limit: 1.0, // a burst of 1
        ..policy()
    });
    let east: Vec<_> = (0..2)
        .map(|_| s.insert("us-east-1", t0, Duration::ZERO))
        .collect();
    let west = s.insert("eu-west-1", t0 + ms(1), Duration::ZERO);
    let now = t0 + ms(1);
    let order: Vec<_> = std::iter::from_fn(|| s.take_ready(now)).collect();
    assert_eq!(order, [east[0], west]);
    // The second eastern watch waits for the next token, 1 s later.
    assert_eq!(s.next_wakeup(), Some(now + secs(1)));
    assert_eq!(s.take_ready(now + ms(999)), None);
    assert_eq!(s.take_ready(now + secs(1)), Some(east[1]));
}

#[test]
fn a_throttle_lowers_the_rate_of_its_own_region_only() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        rate_limit: 10.0,
        ..policy()
    });
    let east = s.insert("us-east-1", t0, Duration::ZERO);
    s.insert("eu-west-1", t0 + ms(1), Duration::ZERO);
    poll(&mut s, east, throttled(), t0);
    assert!(s.rate("us-east-1") < 10.0, "rate {}", s.rate("us-east-1"));
    assert_eq!((s.rate("eu-west-1"), s.rate("ap-south-1")), (10.0, 10.0));
}

#[test]
fn a_removed_watch_is_never_handed_out() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let gone = s.insert("us-east-1", t0, Duration::ZERO);
    let kept = s.insert("us-east-1", t0, Duration::ZERO);
    s.remove(gone);
    assert_eq!(s.len(), 1);
    assert_eq!(s.take_ready(t0), Some(kept));
    assert_eq!(s.take_ready(t0), None);
}

#[test]
fn a_watch_removed_in_flight_is_forgotten_when_its_result_comes() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    assert_eq!(s.take_ready(t0), Some(id));
    s.remove(id);
    s.remove(id); // twice is harmless
    assert_eq!((s.len(), s.in_flight()), (0, 1));
    assert_eq!(s.record(id, &Outcome::Unchanged, t0 + ms(5)), Next::Done);
    assert_eq!((s.len(), s.in_flight(), s.next_wakeup()), (0, 0, None));
}

#[test]
fn a_result_for_an_unknown_watch_is_done_and_changes_nothing() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    s.take_ready(t0);
    assert_eq!(s.record(WatchId(999), &Outcome::Terminal, t0), Next::Done);
    s.remove(WatchId(999));
    assert_eq!((s.len(), s.in_flight()), (1, 1));
    assert_eq!(s.record(id, &Outcome::Terminal, t0), Next::Done);
}

#[test]
fn a_result_for_a_watch_not_in_flight_changes_nothing() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    assert_eq!(s.record(id, &Outcome::Terminal, t0), Next::PollAt(t0));
    assert_eq!((s.len(), s.in_flight(), s.take_ready(t0)), (1, 0, Some(id)));
}

#[test]
fn ids_are_never_reused() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let first = s.insert("us-east-1", t0, Duration::ZERO);
    s.remove(first);
    let second = s.insert("us-east-1", t0, Duration::ZERO);
    assert_ne!(first, second);
}

#[test]
fn a_watch_costs_well_under_200_bytes() {
    // Per watch: the map entry (id + Watch + a control byte, at most 8/7
    // of it for the load factor) and the waiting set's (Instant, id).
    let entry = std::mem::size_of::<(WatchId, Watch)>() + 1;
    let waiting = std::mem::size_of::<(Instant, WatchId)>();
    let estimate = entry * 8 / 7 + waiting * 3 / 2;
    eprintln!("about {estimate} bytes per watch");
    assert!(estimate < 160, "about {estimate} bytes per watch");
}

#[test]
fn a_hundred_thousand_watches_are_each_polled_once_in_due_order() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        rate_limit: 100_000.0,
        interval_initial: secs(3600),
        max_in_flight: 64,
        ..policy()
    });
    let ids: Vec<_> = (0..100_000)
        .map(|k| s.insert(if k % 2 == 0 { "a" } else { "b" }, t0, Duration::ZERO))
        .collect();
    let mut seen = Vec::with_capacity(ids.len());
    while let Some(now) = s.next_wakeup().filter(|&at| at < t0 + secs(60)) {
        while let Some(id) = s.take_ready(now) {
            s.record(id, &Outcome::Unchanged, now);
            seen.push(id);
        }
    }
    assert_eq!(s.len(), 100_000);
    assert_eq!(seen, ids);
}

/// A server quota: a token bucket of `rate` per second holding `burst`.
struct Quota {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Quota {
    fn new(rate: f64, burst: f64, now: Instant) -> Quota {
        Quota {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn admit(&mut self, now: Instant) -> bool {
        let elapsed = (now - self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Share of throttled requests and successes per second among requests
/// sent in [from, to) seconds after start.
fn stats(log: &[(f64, bool)], from: f64, to: f64) -> (f64, f64) {
    let sent: Vec<_> = log.iter().filter(|(t, _)| *t >= from && *t < to).collect();
    let ok = sent.iter().filter(|(_, ok)| *ok).count();
    let throttled = sent.len() - ok;
    (
        throttled as f64 / sent.len().max(1) as f64,
        ok as f64 / (to - from),
    )
}

/// Drives 200 never-changing watches, polled as fast as the budget
/// allows, against a server `Quota` of `quota_rate` req/s (burst: 1 s of
/// it) for `end_secs` virtual seconds; every answer takes `latency`.
/// Returns each request's start (seconds) and whether it got through.
fn against_quota(
    quota_rate: f64,
    rate_limit: f64,
    latency: Duration,
    end_secs: f64,
) -> Vec<(f64, bool)> {
    against_quotas(&[(0.0, quota_rate)], rate_limit, latency, end_secs)
}

/// `against_quota` with a quota that changes: from each (seconds after the
/// start, req/s) on, the server grants that rate (burst: 1 s of it, and
/// what it had stored is cut to that).
fn against_quotas(
    quotas: &[(f64, f64)],
    rate_limit: f64,
    latency: Duration,
    end_secs: f64,
) -> Vec<(f64, bool)> {
    let quota_rate = quotas[0].1;
    let mut changes = quotas[1..].iter().peekable();
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        interval_initial: ms(10),
        interval_max: ms(10),
        rate_limit,
        ..policy()
    });
    for _ in 0..200 {
        s.insert("us-east-1", t0, Duration::ZERO);
    }
    let mut server = Quota::new(quota_rate, quota_rate.max(1.0), t0);
    let mut answers: VecDeque<(Instant, WatchId, bool)> = VecDeque::new();
    let mut log = Vec::new();
    let mut now = t0;
    loop {
        while let Some(&(done_at, id, ok)) = answers.front() {
            if done_at > now {
                break;
            }
            answers.pop_front();
            let outcome = if ok { Outcome::Unchanged } else { throttled() };
            assert!(matches!(s.record(id, &outcome, done_at), Next::PollAt(_)));
        }
        while let Some(id) = s.take_ready(now) {
            if let Some(&(_, rate)) = changes.next_if(|(at, _)| (now - t0).as_secs_f64() >= *at) {
                server.rate = rate;
                server.burst = rate.max(1.0);
                server.tokens = server.tokens.min(server.burst);
            }
            let ok = server.admit(now);
            log.push(((now - t0).as_secs_f64(), ok));
            answers.push_back((now + latency, id, ok));
        }
        let wake = [answers.front().map(|a| a.0), s.next_wakeup()]
            .into_iter()
            .flatten()
            .min()
            .expect("something is always pending");
        assert!(wake > now, "no progress at {:?}", now - t0);
        if (wake - t0).as_secs_f64() >= end_secs {
            return log;
        }
        now = wake;
    }
}

#[test]
fn against_a_lower_server_quota_the_rate_settles_just_under_it() {
    // rate_limit 50 against a server granting 10 req/s (burst 10).
    let quota_rate = 10.0;
    let end = 600.0;
    let log = against_quota(quota_rate, 50.0, ms(50), end);
    let (throttled_share, goodput) = stats(&log, 30.0, end);
    let (first_share, _) = stats(&log, 0.0, 5.0);
    let (last_share, _) = stats(&log, end - 60.0, end);
    let (overall_share, overall_goodput) = stats(&log, 0.0, end);
    eprintln!(
        "quota {quota_rate}/s, after 30 s: throttled {:.2} %, goodput {goodput:.3}/s \
         ({:.1} % of quota); first 5 s throttled {:.1} %, last 60 s {:.2} %; \
         overall throttled {:.2} %, goodput {overall_goodput:.3}/s",
        throttled_share * 100.0,
        goodput / quota_rate * 100.0,
        first_share * 100.0,
        last_share * 100.0,
        overall_share * 100.0,
    );
    assert!(throttled_share < 0.013, "throttled {throttled_share}");
    assert!(goodput >= 0.95 * quota_rate, "goodput {goodput}");
    assert!(
        last_share < first_share / 5.0,
        "last 60 s {last_share} vs first 5 s {first_share}"
    );
}

#[test]
fn starting_far_above_the_quota_costs_only_a_few_throttles() {
    // rate_limit 5 × the quota: the server's start-up burst must not
    // make the budget believe in a rate it never sustains.
    for quota_rate in [5.0, 20.0, 100.0] {
        let log = against_quota(quota_rate, 5.0 * quota_rate, ms(5), 30.0);
        let throttled = log.iter().filter(|(t, ok)| *t < 5.0 && !ok).count();
        let (_, goodput) = stats(&log, 5.0, 30.0);
        assert!(
            throttled <= 6,
            "quota {quota_rate}: {throttled} throttled in the first 5 s"
        );
        assert!(
            goodput >= 0.95 * quota_rate,
            "quota {quota_rate}: goodput {goodput}"
        );
    }
}

#[test]
fn a_short_budget_still_polls_every_watch_in_turn() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        interval_initial: secs(1),
        interval_max: secs(1),
        rate_limit: 10.0,
        ..policy()
    });
    let ids: Vec<_> = (0..30)
        .map(|_| s.insert("us-east-1", t0, Duration::ZERO))
        .collect();
    let mut polls: HashMap<WatchId, Vec<Instant>> = HashMap::new();
    let mut order = Vec::new();
    let end = t0 + secs(60);
    while let Some(now) = s.next_wakeup().filter(|&at| at <= end) {
        while let Some(id) = s.take_ready(now) {
            s.record(id, &Outcome::Unchanged, now);
            polls.entry(id).or_default().push(now);
            order.push(id);
        }
    }
    let first: std::collections::HashSet<_> = order.iter().take(30).collect();
    assert_eq!(first.len(), 30, "first polls: {:?}", &order[..30]);
    let limit = Duration::from_secs_f64(1.5 * 30.0 / 10.0);
    for id in ids {
        let times = &polls[&id];
        let mut gaps: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.push(times[0] - t0);
        gaps.push(end - times[times.len() - 1]);
        let longest = gaps.iter().max().expect("at least two gaps");
        assert!(*longest <= limit, "{id:?} waited {longest:?}: {times:?}");
    }
}

#[test]
fn no_one_second_window_exceeds_the_rate_limit_by_more_than_the_burst() {
    for limit in [1.0, 10.0, 100.0, 500.0] {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&PollSettings {
            // every watch comes due again long after the first round:
            // an idle spell of over 60 s between the rounds.
            interval_initial: secs(100),
            interval_max: secs(100),
            rate_limit: limit,
            ..policy()
        });
        let watches = (limit as usize * 5).max(20);
        for _ in 0..watches {
            s.insert("us-east-1", t0, Duration::ZERO);
        }
        let mut sent = Vec::new();
        while let Some(now) = s.next_wakeup().filter(|&at| at < t0 + secs(190)) {
            while let Some(id) = s.take_ready(now) {
                s.record(id, &Outcome::Unchanged, now);
                sent.push(now);
            }
        }
        let allowed = (limit + (0.1 * limit).max(2.0)).floor() as usize;
        let mut busiest = 0;
        let mut oldest = 0;
        for (k, &t) in sent.iter().enumerate() {
            while sent[oldest] + secs(1) <= t {
                oldest += 1;
            }
            busiest = busiest.max(k + 1 - oldest);
        }
        let idle = sent.windows(2).map(|w| w[1] - w[0]).max();
        assert_eq!(sent.len(), 2 * watches, "limit {limit}");
        assert!(idle >= Some(secs(60)), "limit {limit}: no idle spell");
        assert!(busiest <= allowed, "limit {limit}: {busiest} in 1 s");
        assert!(busiest >= limit as usize, "limit {limit}: budget unused");
    }
}

#[test]
fn a_five_fold_quota_drop_costs_under_10_percent_throttled_in_the_next_5_s() {
    // Issue 7.11: the quota falls five-fold mid-run, at three points of the
    // cubic's cycle. (quota, answer latency, rate_limit / quota): the last
    // row is the bench's (`cargo bench --bench throttle -- --drop-at`):
    // at 20 -> 4 the 5 s after the drop hold only ~23 requests, so no
    // more than 2 throttles fit under 10 %. Before the burst cut the rows
    // gave 8 %, 6-7 %, 4-5 % and 24-27 %.
    let end = 400.0;
    let mut failures = Vec::new();
    for (quota, latency, factor) in [
        (50.0, 50, 2.5),
        (100.0, 50, 2.5),
        (100.0, 5, 2.5),
        (20.0, 5, 5.0),
    ] {
        for drop in [120.0, 124.3, 128.7] {
            let after_quota = quota / 5.0;
            let quotas = [(0.0, quota), (drop, after_quota)];
            let log = against_quotas(&quotas, factor * quota, ms(latency), end);
            let (_, before) = stats(&log, 30.0, drop);
            let (share, _) = stats(&log, drop, drop + 5.0);
            let (_, after) = stats(&log, drop + 30.0, end);
            let row = format!(
                "quota {quota} -> {after_quota}/s at {drop} s, {latency} ms answers, rate_limit \
                 {}: goodput before {:.3} of quota, throttled in the 5 s after {:.1} %, \
                 goodput after 30 s {:.3} of quota",
                factor * quota,
                before / quota,
                share * 100.0,
                after / after_quota
            );
            eprintln!("{row}");
            if share >= 0.10 || before < 0.98 * quota || after < 0.98 * after_quota {
                failures.push(row);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_new_policy_lowers_the_rate_and_moves_deadlines_at_once() {
    let t0 = Instant::now();
    let mut policy = PollSettings {
        rate_limit: 100.0,
        max_watch: Duration::from_secs(60),
        ..PollSettings::default()
    };
    let mut s = Scheduler::new(&policy);
    let id = s.insert("r", t0, Duration::ZERO);
    assert_eq!(s.rate("r"), 100.0);
    policy.rate_limit = 2.0;
    policy.max_watch = Duration::from_secs(30);
    s.set_policy(&policy, t0);
    assert_eq!(s.rate("r"), 2.0);
    assert_eq!(s.take_ready(t0), Some(id));
    let later = t0 + Duration::from_secs(31);
    assert_eq!(
        s.record(id, &Outcome::Unchanged, later),
        Next::Abandon(Reason::MaxWatch)
    );
}

#[test]
fn other_requests_share_the_region_budget_and_the_in_flight_cap() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        rate_limit: 1.0,
        max_in_flight: 2,
        ..policy()
    });
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    // The burst is small: drain it with polls and tokens alike.
    let mut granted = 0;
    while s.take_token("us-east-1", t0).is_ok() {
        granted += 1;
        s.token_done("us-east-1", &Outcome::Unchanged, t0, t0);
    }
    assert!(granted >= 1, "a fresh budget grants a token");
    assert_eq!(s.take_ready(t0), None, "the tokens spent the poll's budget");
    let Err(Some(ready)) = s.take_token("us-east-1", t0) else {
        panic!("an empty budget says when to come back");
    };
    assert_eq!(s.token_wakeup("us-east-1", t0), Some(ready));
    assert_eq!(s.take_ready(ready), Some(id));
    let t1 = ready + Duration::from_secs(5);
    assert_eq!(s.take_token("us-east-1", t1), Ok(()));
    assert_eq!(s.in_flight(), 2);
    assert_eq!(
        s.take_token("eu-west-1", t1),
        Err(None),
        "max_in_flight holds"
    );
    assert_eq!(s.token_wakeup("eu-west-1", t1), None);
    s.token_done("us-east-1", &Outcome::Unchanged, t1, t1);
    assert_eq!(s.in_flight(), 1);
}

#[test]
fn a_throttled_token_lowers_the_shared_rate() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&PollSettings {
        rate_limit: 10.0,
        ..policy()
    });
    assert_eq!(s.take_token("us-east-1", t0), Ok(()));
    let throttled = Outcome::Throttled { retry_after: None };
    s.token_done("us-east-1", &throttled, t0, t0);
    assert!(s.rate("us-east-1") < 10.0, "rate {}", s.rate("us-east-1"));
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn due_now_moves_a_waiting_watch_to_the_front_and_leaves_one_in_flight_alone() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&policy());
    let id = s.insert("us-east-1", t0, Duration::ZERO);
    assert_eq!(
        poll(&mut s, id, Outcome::Unchanged, t0),
        Next::PollAt(t0 + secs(2))
    );
    let t1 = t0 + ms(500);
    assert_eq!(s.take_ready(t1), None, "not due yet");
    s.due_now(id, t1);
    assert_eq!(s.take_ready(t1), Some(id));
    s.due_now(id, t1); // in flight: nothing changes
    assert_eq!(s.in_flight(), 1);
}

/// Polls of one watch of flow F, alias A, started at `t0` and polled first
/// at `t0`, until its execution (taking `ends`) would be seen ended: the
/// ages of every poll, in seconds.
fn ages_until_seen(s: &mut Scheduler, t0: Instant, ends: Duration) -> Vec<f64> {
    let id = s.insert("r", t0, Duration::ZERO);
    s.set_flow(id, "F", "A");
    let mut now = t0;
    let mut ages = Vec::new();
    let mut outcome = Outcome::Changed;
    loop {
        assert_eq!(s.take_ready(now), Some(id));
        ages.push((now - t0).as_secs_f64());
        s.started(id, t0);
        if now - t0 >= ends {
            assert_eq!(s.record(id, &Outcome::Terminal, now), Next::Done);
            return ages;
        }
        match s.record(id, &outcome, now) {
            Next::PollAt(at) => now = at,
            other => panic!("unexpected {other:?}"),
        }
        outcome = Outcome::Unchanged;
    }
}

fn learned_policy() -> PollSettings {
    PollSettings {
        schedule: SchedulePolicy::Learned,
        ..policy()
    }
}

#[test]
fn a_learned_flow_of_50_s_runs_is_polled_near_50_s() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&learned_policy());
    for _ in 0..40 {
        s.observe("r", "F", "A", secs(50));
    }
    let ages = ages_until_seen(&mut s, t0, secs(50));
    let seen = *ages.last().expect("at least one poll");
    // Exponential (the first answer is a transition): 0, 2, 4, 8, 16, 32,
    // 64: seen 14 s late, in 7 polls. Learned: nothing between the first
    // poll and the learned bins (43.6 s on, 9 % wide, smoothed), then polls
    // a second or so apart: seen within 1.2 s, for about as many polls.
    assert!((50.0..51.2).contains(&seen), "seen at {seen} s: {ages:?}");
    assert!(ages[1] > 40.0, "wasted early polls: {ages:?}");
    assert!(ages.len() <= 8, "{} polls: {ages:?}", ages.len());
}

#[test]
fn with_nothing_learned_or_the_exponential_policy_delays_stay_exponential() {
    // The first answer is a transition: the delay resets to 2 s, twice.
    let expected = vec![0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
    let t0 = Instant::now();
    let mut s = Scheduler::new(&learned_policy());
    assert_eq!(ages_until_seen(&mut s, t0, secs(50)), expected);
    let mut s = Scheduler::new(&policy());
    for _ in 0..40 {
        s.observe("r", "F", "A", secs(50));
    }
    assert_eq!(ages_until_seen(&mut s, t0, secs(50)), expected);
    // A reload to learned uses what was learned meanwhile.
    let t1 = t0 + secs(100);
    s.set_policy(&learned_policy(), t1);
    assert!(*ages_until_seen(&mut s, t1, secs(50)).last().unwrap() < 51.2);
}

#[test]
fn a_learned_watch_without_a_known_start_stays_exponential() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&learned_policy());
    for _ in 0..40 {
        s.observe("r", "F", "A", secs(50));
    }
    let id = s.insert("r", t0, Duration::ZERO);
    s.set_flow(id, "F", "A");
    let seen = run(
        &mut s,
        id,
        t0,
        &[Outcome::Changed, Outcome::Unchanged, Outcome::Unchanged],
    );
    assert_eq!(seen, at(t0, &[2, 4, 8]));
}

#[test]
fn models_are_kept_across_a_restore() {
    let mut s = Scheduler::new(&learned_policy());
    s.observe("r", "F", "A", secs(50));
    let saved = s.models().clone();
    let mut other = Scheduler::new(&learned_policy());
    other.restore_models(saved.clone());
    assert_eq!(other.models(), &saved);
    assert!(
        saved
            .get(&learned::ModelKey {
                region: "r".into(),
                flow: "F".into(),
                alias: "A".into()
            })
            .is_some()
    );
}

fn model_key() -> learned::ModelKey {
    learned::ModelKey {
        region: "r".into(),
        flow: "F".into(),
        alias: "A".into(),
    }
}

/// A watch of flow F seen running at age 10 s (started 10 s before `t0`).
fn watch_seen_at_10_s(s: &mut Scheduler, t0: Instant) -> WatchId {
    let id = s.insert("r", t0, Duration::ZERO);
    s.set_flow(id, "F", "A");
    assert_eq!(s.take_ready(t0), Some(id));
    s.started(id, t0 - secs(10));
    assert!(matches!(
        s.record(id, &Outcome::Changed, t0),
        Next::PollAt(_)
    ));
    id
}

#[test]
fn a_removed_watch_teaches_a_censored_age_not_an_ending() {
    let t0 = Instant::now() + secs(60);
    let mut s = Scheduler::new(&learned_policy());
    let id = watch_seen_at_10_s(&mut s, t0);
    s.remove(id);
    let model = s.models().get(&model_key()).expect("the flow has a model");
    assert_eq!((model.weight(), model.stopped()), (0.0, 1.0));
}

#[test]
fn an_abandoned_watch_teaches_a_censored_age_and_a_terminal_one_none() {
    let t0 = Instant::now() + secs(60);
    let mut s = Scheduler::new(&learned_policy());
    let id = watch_seen_at_10_s(&mut s, t0);
    let t1 = t0 + secs(2);
    assert_eq!(
        poll(&mut s, id, Outcome::Invalid, t1),
        Next::Abandon(Reason::Invalid)
    );
    let stopped = |s: &Scheduler| s.models().get(&model_key()).map(|m| m.stopped());
    assert_eq!(stopped(&s), Some(1.0));
    let id = watch_seen_at_10_s(&mut s, t1);
    assert_eq!(
        poll(&mut s, id, Outcome::Terminal, t1 + secs(2)),
        Next::Done
    );
    assert_eq!(
        stopped(&s),
        Some(1.0),
        "an ending is the daemon's `observe`"
    );
}

#[test]
fn a_short_region_budget_caps_the_learned_spend() {
    let t0 = Instant::now() + secs(60);
    let mut s = Scheduler::new(&learned_policy());
    for _ in 0..40 {
        s.observe("r", "F", "A", secs(50));
    }
    let id = watch_seen_at_10_s(&mut s, t0);
    // Polls after age 10 s until 50 s, with the region's rate and watches.
    let mut polls = |region: (f64, usize)| {
        s.learning.schedules.clear();
        let mut age = secs(10);
        let mut count = 0;
        while age < secs(50) {
            let this = s.watches[&id].learning();
            let all: Vec<_> = s.watches.values().map(|w| w.learning()).collect();
            let now = t0 - secs(10) + age;
            let delay = s
                .learning
                .next_delay(this, all.into_iter(), s.epoch, now, || region);
            age += delay.expect("learned");
            count += 1;
        }
        count
    };
    let free = polls((1000.0, 1));
    // 0.1 request/s for 100 watches of 50 s: 0.05 per execution, so only
    // interval_max's pace is left.
    let short = polls((0.1, 100));
    assert!(free >= 4 && short == 1, "free {free}, short {short}");
}
