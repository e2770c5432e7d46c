//! The Lease rules, client-go's way, as pure functions of (the Lease as
//! read, this instance, now): whether a campaign may take it, and the spec
//! each write sends. Nothing here does I/O.
//!
//! Expiry is judged by this instance's own clock: a Lease is expired when
//! its resourceVersion has not changed for its `leaseDurationSeconds` since
//! this instance first saw that version. No timestamp written by another
//! host is compared with ours, so the rule holds while clocks run at the
//! same rate, however far apart they are set.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use tokio::time::Instant;

/// A Lease version and when this instance first saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub version: String,
    pub at: Instant,
}

/// What a campaign may do with the Lease as read.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Free, expired, or ours already: write ourselves in.
    Take,
    /// Another instance holds it and it is live.
    Held { leader: String },
}

/// Whether a campaign may take the Lease read at `version`, and remembers
/// when this version was first seen (in `observed`).
pub fn claim(
    spec: &LeaseSpec,
    version: &str,
    me: &str,
    observed: &mut Option<Observed>,
    now: Instant,
) -> Claim {
    let first_seen = match observed {
        Some(seen) if seen.version == version => seen.at,
        _ => {
            *observed = Some(Observed {
                version: version.to_string(),
                at: now,
            });
            now
        }
    };
    let Some(leader) = holder(spec) else {
        return Claim::Take;
    };
    if leader == me {
        return Claim::Take;
    }
    let lasts =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    if now >= first_seen + lasts {
        return Claim::Take;
    }
    Claim::Held {
        leader: leader.to_string(),
    }
}

/// The holder, if any (an empty identity is none: a released Lease).
pub fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// The spec that takes the Lease (`previous` is `None` when creating it): a
/// new `acquireTime` names the term; the transition count goes up when the
/// holder changes.
pub fn taken(previous: Option<&LeaseSpec>, me: &str, lease_secs: i32, now: MicroTime) -> LeaseSpec {
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    let changed = previous.and_then(holder) != Some(me);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(lease_secs),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(transitions + i32::from(changed && previous.is_some())),
        ..LeaseSpec::default()
    }
}

/// The spec of a renewal: only `renewTime` moves.
pub fn renewed(spec: &LeaseSpec, now: MicroTime) -> LeaseSpec {
    LeaseSpec {
        renew_time: Some(now),
        ..spec.clone()
    }
}

/// The spec of a resignation (client-go's release): no holder and a
/// one-second duration, so a standby takes it at its next look.
pub fn released(spec: &LeaseSpec, now: MicroTime) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: None,
        renew_time: Some(now),
        ..spec.clone()
    }
}

/// Whether the Lease read is still the term this instance acquired at
/// `acquired`: the fence on every state write.
pub fn is_term(spec: &LeaseSpec, me: &str, acquired: Option<&MicroTime>) -> bool {
    holder(spec) == Some(me) && spec.acquire_time.as_ref() == acquired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap())
    }

    fn held_by(who: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.to_string()),
            lease_duration_seconds: Some(secs),
            acquire_time: Some(at(0)),
            renew_time: Some(at(0)),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_live_lease_of_another_is_held_until_unchanged_for_its_duration() {
        let t0 = Instant::now();
        let mut seen = None;
        let spec = held_by("a", 15);
        let claim_at = |seen: &mut Option<Observed>, secs| {
            claim(&spec, "7", "b", seen, t0 + Duration::from_secs(secs))
        };
        assert_eq!(claim_at(&mut seen, 0), Claim::Held { leader: "a".into() });
        assert_eq!(claim_at(&mut seen, 14), Claim::Held { leader: "a".into() });
        assert_eq!(claim_at(&mut seen, 15), Claim::Take);
    }

    #[test]
    fn a_renewal_seen_restarts_the_expiry_clock() {
        let t0 = Instant::now();
        let mut seen = None;
        let spec = held_by("a", 15);
        claim(&spec, "7", "b", &mut seen, t0);
        claim(&spec, "8", "b", &mut seen, t0 + Duration::from_secs(10));
        assert_eq!(
            claim(&spec, "8", "b", &mut seen, t0 + Duration::from_secs(20)),
            Claim::Held { leader: "a".into() }
        );
        assert_eq!(
            claim(&spec, "8", "b", &mut seen, t0 + Duration::from_secs(25)),
            Claim::Take
        );
    }

    #[test]
    fn a_free_or_own_lease_is_taken_at_once() {
        let t0 = Instant::now();
        let released = released(&held_by("a", 15), at(5));
        assert_eq!(claim(&released, "9", "b", &mut None, t0), Claim::Take);
        assert_eq!(
            claim(&held_by("b", 15), "9", "b", &mut None, t0),
            Claim::Take
        );
        let empty = LeaseSpec {
            holder_identity: Some(String::new()),
            ..held_by("a", 15)
        };
        assert_eq!(claim(&empty, "9", "b", &mut None, t0), Claim::Take);
    }

    #[test]
    fn taking_counts_a_transition_only_when_the_holder_changes() {
        let spec = taken(Some(&held_by("a", 15)), "b", 15, at(9));
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(at(9)));
        assert_eq!(spec.renew_time, Some(at(9)));
        let again = taken(Some(&held_by("b", 15)), "b", 15, at(9));
        assert_eq!(again.lease_transitions, Some(3));
        assert_eq!(taken(None, "b", 15, at(9)).lease_transitions, Some(0));
    }

    #[test]
    fn a_renewal_moves_only_the_renew_time() {
        let spec = held_by("a", 15);
        let renewed = renewed(&spec, at(2));
        assert_eq!(renewed.renew_time, Some(at(2)));
        assert_eq!(
            LeaseSpec {
                renew_time: Some(at(0)),
                ..renewed
            },
            spec
        );
    }

    #[test]
    fn the_fence_passes_only_the_same_holder_in_the_same_term() {
        let spec = held_by("a", 15);
        assert!(is_term(&spec, "a", Some(&at(0))));
        assert!(!is_term(&spec, "a", Some(&at(1))), "a later term of a");
        assert!(!is_term(&spec, "b", Some(&at(0))));
        assert!(!is_term(&released(&spec, at(3)), "a", Some(&at(0))));
    }
}
