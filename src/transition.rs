//! Transition detection: the last status seen for a watch plus a new
//! observation gives a `Change`. Pure; the daemon owns the last status.
//!
//! A terminal status is final (contract): a later answer that disagrees is a
//! stale read, reported as `Change::Stale` and never as a transition.

use sha2::{Digest, Sha256};

use crate::poll::Status;

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

#[cfg(test)]
mod tests {
    use super::*;

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
