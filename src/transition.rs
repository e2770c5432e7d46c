//! The transition stage: one watch's memory (last status, polls, when
//! watching began, the ARN the service revealed) plus a new observation gives
//! what to report. Pure: the caller passes the wall-clock `now` in and emits
//! what comes back; nothing here logs or writes.
//!
//! A terminal status is final (contract): a later answer that disagrees is a
//! stale read, reported as `Change::Stale` and never as a transition.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::event::{Event, Subject};
use crate::poll::{NodeError, Observation, Status};
use crate::state::{SavedDiscovery, SavedWatch};
use crate::watch::WatchKey;

/// What one successful poll means for the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Same status as last time.
    Unchanged,
    /// A new status (or the first one seen): report it.
    Transition {
        from: Option<Status>,
        to: Status,
        terminal: bool,
    },
    /// The watch already ended with `terminal`; this answer said `seen`.
    Stale { terminal: Status, seen: Status },
}

/// Compares what we last saw with what the service says now.
pub fn observe(last: Option<&Status>, now: &Status) -> Change {
    match last {
        Some(last) if last == now => Change::Unchanged,
        Some(last) if last.is_terminal() => Change::Stale {
            terminal: last.clone(),
            seen: now.clone(),
        },
        _ => Change::Transition {
            from: last.cloned(),
            to: now.clone(),
            terminal: now.is_terminal(),
        },
    }
}

/// The deterministic id of (execution, `to`): the same on every replay, so
/// consumers can drop the duplicates an at-least-once restart may bring.
/// `execution` is the execution ARN, or the watch's key when none is known.
pub fn transition_id(execution: &str, to: &Status) -> String {
    let mut hash = Sha256::new();
    hash.update(execution.as_bytes());
    hash.update([0]); // a separator no id or status contains
    hash.update(to.as_str().as_bytes());
    let digest = hash.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// One watch's memory between polls, 96 bytes (one per watch: see
/// `a_tracker_stays_96_bytes`); what few watches have is boxed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    /// The watch's key when it was added: its name (the execution ARN the
    /// config gave, else the identity) names the execution in
    /// `transition_id` until the service names it. A clone of the key's
    /// shared string, not a copy.
    fallback_id: WatchKey,
    /// The config gave the execution ARN: nothing to learn.
    arn_given: bool,
    /// The execution ARN the service answered with, for a watch the config
    /// gave by parts (events carry `execution_arn` once it is known).
    learned_arn: Option<Box<str>>,
    last: Option<Status>,
    polls: u64,
    /// When watching began, for `watched_ms` and `max_watch` (restored
    /// watches started earlier).
    since: SystemTime,
    /// Its failure details were reported (issue 9).
    details_reported: bool,
    /// Flow discovery added it (issue 9).
    discovered: Option<Box<SavedDiscovery>>,
}

/// What one observation meant, with everything its events need.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Unchanged,
    /// An answer after a terminal status: logged, never a transition.
    Stale {
        terminal: Status,
        seen: Status,
    },
    Transition(Box<Transition>),
}

/// A status transition, ready to be emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub transition_id: String,
    pub from: Option<Status>,
    pub to: Status,
    pub terminal: bool,
    pub flow_version: Option<String>,
    /// RFC 3339, UTC.
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Terminal only, when `ended_at` is set: now − ended_at.
    pub detect_lag_ms: Option<u64>,
    pub polls: u64,
    pub watched_ms: u64,
    /// The response's node errors: terminal transitions only.
    pub errors: Vec<NodeError>,
    /// What the state file should now hold for this watch.
    pub record: SavedWatch,
}

impl Tracker {
    /// A watch not seen before: no status yet, watched from `now`. `key`
    /// is the watch's key, named by the execution ARN when `arn_given`
    /// (`WatchKey::of`).
    pub fn new(key: &WatchKey, arn_given: bool, now: SystemTime) -> Tracker {
        Tracker {
            fallback_id: key.clone(),
            arn_given,
            learned_arn: None,
            last: None,
            polls: 0,
            since: now,
            details_reported: false,
            discovered: None,
        }
    }

    /// A watch resumed from the state file. A `since` in the future (a clock
    /// that went back) counts from `now`; an empty status is a watch saved
    /// before its first answer (it keeps its `since` for `max_watch`).
    pub fn restore(
        key: &WatchKey,
        arn_given: bool,
        saved: &SavedWatch,
        now: SystemTime,
    ) -> Tracker {
        let since = SystemTime::UNIX_EPOCH + Duration::from_millis(saved.watched_since_unix_ms);
        Tracker {
            last: (!saved.status.is_empty()).then(|| Status::parse(&saved.status)),
            polls: saved.polls,
            since: if since <= now { since } else { now },
            details_reported: saved.details_reported,
            discovered: saved.discovered.clone().map(Box::new),
            ..Tracker::new(key, arn_given, now)
        }
    }

    /// Counts a request sent for this watch.
    pub fn polled(&mut self) {
        self.polls += 1;
    }

    pub fn last(&self) -> Option<&Status> {
        self.last.as_ref()
    }

    pub fn is_terminal(&self) -> bool {
        self.last.as_ref().is_some_and(Status::is_terminal)
    }

    pub fn polls(&self) -> u64 {
        self.polls
    }

    /// How long this watch has been watched at `now`.
    pub fn watched_for(&self, now: SystemTime) -> Duration {
        now.duration_since(self.since).unwrap_or_default()
    }

    /// The execution ARN the service revealed, for a watch given by parts.
    pub fn learned_arn(&self) -> Option<&str> {
        self.learned_arn.as_deref()
    }

    /// The ARN an observation would teach this watch, if it has none yet.
    pub fn would_learn<'a>(&self, observation: &'a Observation) -> Option<&'a str> {
        if self.arn_given || self.learned_arn.is_some() {
            return None;
        }
        observation.execution_arn.as_deref()
    }

    /// What the state file holds for this watch now (an empty status before
    /// the first answer: the record keeps `since` across restarts).
    pub fn record(&self) -> SavedWatch {
        SavedWatch {
            status: self.last.as_ref().map_or("", Status::as_str).to_string(),
            terminal: self.is_terminal(),
            polls: self.polls,
            watched_since_unix_ms: self
                .since
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            details_reported: self.details_reported,
            discovered: self.discovered.as_deref().cloned(),
        }
    }

    /// Flow discovery added it: `record` says so from now on.
    pub fn set_discovered(&mut self, discovered: SavedDiscovery) {
        self.discovered = Some(Box::new(discovered));
    }

    /// Whether its failure details were reported (or found unavailable).
    pub fn details_reported(&self) -> bool {
        self.details_reported
    }

    /// Its failure details are out: `record` says so from now on.
    pub fn report_details(&mut self) {
        self.details_reported = true;
    }

    /// Takes in one successful poll's answer at wall-clock `now`.
    pub fn observe(&mut self, observation: &Observation, now: SystemTime) -> Observed {
        if let Some(arn) = self.would_learn(observation) {
            // A watch given by parts learns its ARN from the first answer.
            self.learned_arn = Some(arn.into());
        }
        let (from, to, terminal) = match observe(self.last.as_ref(), &observation.status) {
            Change::Unchanged => return Observed::Unchanged,
            Change::Stale { terminal, seen } => return Observed::Stale { terminal, seen },
            Change::Transition { from, to, terminal } => (from, to, terminal),
        };
        // The execution as the service names it, so the id is the same
        // however the config spelled the watch.
        let execution = observation
            .execution_arn
            .as_deref()
            .unwrap_or(self.fallback_id.as_str());
        let transition_id = transition_id(execution, &to);
        let detect_lag_ms = match (terminal, observation.ended_at) {
            (true, Some(ended)) => Some(millis(now.duration_since(ended).unwrap_or_default())),
            _ => None,
        };
        self.last = Some(to.clone());
        Observed::Transition(Box::new(Transition {
            transition_id,
            from,
            to,
            terminal,
            flow_version: observation.flow_version.clone(),
            started_at: observation.started_at.map(rfc3339),
            ended_at: observation.ended_at.map(rfc3339),
            detect_lag_ms,
            polls: self.polls,
            watched_ms: millis(self.watched_for(now)),
            errors: if terminal {
                observation.errors.clone()
            } else {
                Vec::new()
            },
            record: self.record(),
        }))
    }
}

impl Transition {
    /// `execution.transition`, then one `execution.error` per node error.
    pub fn events<'a>(&'a self, subject: Subject<'a>) -> Vec<Event<'a>> {
        let mut events = vec![Event::Transition {
            subject,
            transition_id: &self.transition_id,
            from: self.from.as_ref().map(Status::as_str),
            to: self.to.as_str(),
            terminal: self.terminal,
            flow_version: self.flow_version.as_deref(),
            started_at: self.started_at.as_deref(),
            ended_at: self.ended_at.as_deref(),
            detect_lag_ms: self.detect_lag_ms,
            polls: self.polls,
            watched_ms: self.watched_ms,
        }];
        events.extend(self.errors.iter().map(|error| Event::ExecutionError {
            subject,
            error: &error.error,
            error_message: &error.message,
            node: error.node.as_deref(),
        }));
        events
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str =
        "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-1";

    fn by_arn() -> WatchKey {
        WatchKey::from_arn(ARN).unwrap()
    }

    fn by_parts() -> WatchKey {
        let target = crate::watch::ExecutionRef::parse_parts(
            "FLOW123456",
            "ALIAS12345",
            "run-1",
            Some("us-east-1"),
        );
        WatchKey::of(&target.unwrap())
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn answer(status: &str, arn: Option<&str>) -> Observation {
        Observation {
            status: Status::parse(status),
            execution_arn: arn.map(str::to_string),
            flow_version: Some("3".into()),
            started_at: Some(at(0)),
            ended_at: Status::parse(status).is_terminal().then(|| at(50)),
            errors: vec![NodeError {
                error: "Boom".into(),
                message: "it broke".into(),
                node: Some("Node1".into()),
            }],
        }
    }

    fn transition(observed: Observed) -> Transition {
        match observed {
            Observed::Transition(t) => *t,
            other => panic!("expected a transition, got {other:?}"),
        }
    }

    #[test]
    fn a_terminal_transition_carries_lag_watched_time_and_node_errors() {
        let mut tracker = Tracker::new(&by_arn(), true, at(10));
        tracker.polled();
        let first = transition(tracker.observe(&answer("Running", None), at(20)));
        assert_eq!((first.from, first.terminal), (None, false));
        assert!(first.errors.is_empty(), "node errors on terminal only");
        assert_eq!(first.detect_lag_ms, None);
        tracker.polled();
        let last = transition(tracker.observe(&answer("Failed", None), at(60)));
        assert_eq!(last.from, Some(Status::Running));
        assert_eq!(last.detect_lag_ms, Some(10_000));
        assert_eq!(last.watched_ms, 50_000);
        assert_eq!(last.polls, 2);
        assert_eq!(last.errors.len(), 1);
        assert_eq!(last.transition_id, transition_id(ARN, &Status::Failed));
        assert_eq!(last.record.status, "Failed");
        assert!(last.record.terminal);
        assert_eq!(
            tracker.observe(&answer("Running", None), at(70)),
            Observed::Stale {
                terminal: Status::Failed,
                seen: Status::Running
            }
        );
    }

    #[test]
    fn a_watch_by_parts_learns_its_arn_once_and_names_transitions_by_it() {
        let mut tracker = Tracker::new(&by_parts(), false, at(0));
        assert_eq!(
            tracker.would_learn(&answer("Running", Some(ARN))),
            Some(ARN)
        );
        let first = transition(tracker.observe(&answer("Running", Some(ARN)), at(1)));
        assert_eq!(tracker.learned_arn(), Some(ARN));
        assert_eq!(first.transition_id, transition_id(ARN, &Status::Running));
        assert_eq!(
            tracker.would_learn(&answer("Running", Some("arn:other"))),
            None
        );
        let given = Tracker::new(&by_arn(), true, at(0));
        assert_eq!(given.would_learn(&answer("Running", Some(ARN))), None);
    }

    #[test]
    fn a_record_saved_before_the_first_answer_restores_its_start_without_a_status() {
        let mut tracker = Tracker::new(&by_parts(), false, at(5));
        tracker.polled();
        let saved = tracker.record();
        assert_eq!(saved.status, "");
        let restored = Tracker::restore(&by_parts(), false, &saved, at(100));
        assert_eq!(restored.last(), None);
        assert_eq!(restored.watched_for(at(100)), Duration::from_secs(95));
        assert_eq!(restored.polls(), 1);
    }

    #[test]
    fn a_restored_start_in_the_future_counts_from_now() {
        let mut saved = Tracker::new(&by_parts(), false, at(500)).record();
        saved.status = "Running".into();
        let restored = Tracker::restore(&by_parts(), false, &saved, at(100));
        assert_eq!(restored.watched_for(at(100)), Duration::ZERO);
        assert_eq!(restored.last(), Some(&Status::Running));
    }

    #[test]
    fn a_tracker_stays_96_bytes() {
        // One per watch (100,000 in docs/benchmarks.md's memory bench):
        // growing it costs every watch.
        assert_eq!(std::mem::size_of::<Tracker>(), 96);
    }

    #[test]
    fn the_transition_id_falls_back_to_the_key_name_without_an_answered_arn() {
        let mut tracker = Tracker::new(&by_parts(), false, at(0));
        let first = transition(tracker.observe(&answer("Running", None), at(1)));
        assert_eq!(
            first.transition_id,
            transition_id("us-east-1/FLOW123456/ALIAS12345/run-1", &Status::Running)
        );
        let mut given = Tracker::new(&by_arn(), true, at(0));
        let first = transition(given.observe(&answer("Running", None), at(1)));
        assert_eq!(first.transition_id, transition_id(ARN, &Status::Running));
    }

    #[test]
    fn the_first_observation_is_a_transition_without_from() {
        let change = observe(None, &Status::Running);
        assert_eq!(
            change,
            Change::Transition {
                from: None,
                to: Status::Running,
                terminal: false
            }
        );
    }

    #[test]
    fn the_same_status_again_is_no_change() {
        assert_eq!(
            observe(Some(&Status::Running), &Status::Running),
            Change::Unchanged
        );
    }

    #[test]
    fn a_new_terminal_status_is_a_terminal_transition() {
        let change = observe(Some(&Status::Running), &Status::Failed);
        assert_eq!(
            change,
            Change::Transition {
                from: Some(Status::Running),
                to: Status::Failed,
                terminal: true
            }
        );
    }

    #[test]
    fn an_answer_after_a_terminal_status_is_stale_not_a_transition() {
        let change = observe(Some(&Status::Succeeded), &Status::Running);
        assert_eq!(
            change,
            Change::Stale {
                terminal: Status::Succeeded,
                seen: Status::Running
            }
        );
    }

    #[test]
    fn an_unknown_status_is_carried_raw_and_is_not_terminal() {
        let raw = Status::parse("InProgress");
        assert_eq!(raw.as_str(), "InProgress");
        let change = observe(Some(&Status::Running), &raw);
        assert_eq!(
            change,
            Change::Transition {
                from: Some(Status::Running),
                to: raw.clone(),
                terminal: false
            }
        );
        // ...and a known status after it is an ordinary transition.
        assert!(matches!(
            observe(Some(&raw), &Status::Succeeded),
            Change::Transition { terminal: true, .. }
        ));
    }

    #[test]
    fn transition_ids_are_stable_and_differ_by_execution_and_status() {
        let a = transition_id(
            "arn:aws:bedrock:us-east-1:1:flow/F/alias/A/execution/e1",
            &Status::Succeeded,
        );
        let again = transition_id(
            "arn:aws:bedrock:us-east-1:1:flow/F/alias/A/execution/e1",
            &Status::Succeeded,
        );
        let other_status = transition_id(
            "arn:aws:bedrock:us-east-1:1:flow/F/alias/A/execution/e1",
            &Status::Failed,
        );
        let other_execution = transition_id(
            "arn:aws:bedrock:us-east-1:1:flow/F/alias/A/execution/e2",
            &Status::Succeeded,
        );
        assert_eq!(a, again);
        assert_eq!(a.len(), 32, "{a}");
        assert_ne!(a, other_status);
        assert_ne!(a, other_execution);
    }
}
