//! Status conditions: small builders, and a merge that keeps
//! `lastTransitionTime` unless a condition's status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
pub const PARAMETER_GROUP_READY: &str = "ParameterGroupReady";
pub const NETWORK_READY: &str = "NetworkReady";
pub const REPLICATION_GROUP_READY: &str = "ReplicationGroupReady";
pub const SECRET_READY: &str = "SecretReady";
pub const REACHABLE: &str = "Reachable";
pub const PENDING_CHANGES: &str = "PendingChanges";
pub const SPEC_APPROXIMATED: &str = "SpecApproximated";
pub const DATABASE_READY: &str = "DatabaseReady";
/// In-cluster backend: the data pods run and the primary is labelled.
pub const SERVERS_READY: &str = "ServersReady";

/// Order conditions are listed in.
const ORDER: [&str; 11] = [
    READY,
    SYNCED,
    PARAMETER_GROUP_READY,
    NETWORK_READY,
    REPLICATION_GROUP_READY,
    DATABASE_READY,
    SERVERS_READY,
    SECRET_READY,
    REACHABLE,
    PENDING_CHANGES,
    SPEC_APPROXIMATED,
];

/// A condition as the reconciler states it, before times are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl Cond {
    /// A condition that holds.
    pub fn yes(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: "True",
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn no(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: "False",
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition not known yet.
    pub fn unknown(
        type_: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: "Unknown",
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Merges `updates` into `existing`. A condition keeps its
/// `lastTransitionTime` while its status stays the same; conditions not in
/// `updates` are kept as they are (another writer may own them).
pub fn merge(
    existing: &[Condition],
    updates: &[Cond],
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing.to_vec();
    for u in updates {
        let previous = out.iter().position(|c| c.type_ == u.type_);
        let last_transition_time = match previous.map(|i| &out[i]) {
            Some(p) if p.status == u.status => p.last_transition_time.clone(),
            _ => now.clone(),
        };
        let cond = Condition {
            type_: u.type_.to_string(),
            status: u.status.to_string(),
            reason: u.reason.clone(),
            message: u.message.clone(),
            observed_generation: generation,
            last_transition_time,
        };
        match previous {
            Some(i) => out[i] = cond,
            None => out.push(cond),
        }
    }
    out.sort_by_key(|c| {
        ORDER
            .iter()
            .position(|t| *t == c.type_)
            .unwrap_or(ORDER.len())
    });
    out
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Conditions whose status or reason differ between `old` and `new`: the
/// moments worth an Event.
pub fn changed<'a>(old: &[Condition], new: &'a [Condition]) -> Vec<&'a Condition> {
    new.iter()
        .filter(|n| {
            find(old, &n.type_).is_none_or(|o| o.status != n.status || o.reason != n.reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let first = merge(
            &[],
            &[Cond::no(READY, "Creating", "creating")],
            Some(1),
            t("2026-01-01T00:00:00Z"),
        );
        assert_eq!(first[0].last_transition_time, t("2026-01-01T00:00:00Z"));

        let same = merge(
            &first,
            &[Cond::no(READY, "Modifying", "other reason")],
            Some(2),
            t("2026-01-01T00:05:00Z"),
        );
        assert_eq!(
            same[0].last_transition_time,
            t("2026-01-01T00:00:00Z"),
            "no flip"
        );
        assert_eq!(same[0].reason, "Modifying");
        assert_eq!(same[0].observed_generation, Some(2));

        let flipped = merge(
            &same,
            &[Cond::yes(READY, "Available", "ok")],
            Some(2),
            t("2026-01-01T00:10:00Z"),
        );
        assert_eq!(flipped[0].last_transition_time, t("2026-01-01T00:10:00Z"));
    }

    #[test]
    fn conditions_not_updated_are_kept_and_order_is_stable() {
        let a = merge(
            &[],
            &[Cond::yes(REACHABLE, "Pong", "")],
            None,
            t("2026-01-01T00:00:00Z"),
        );
        let b = merge(
            &a,
            &[
                Cond::yes(SECRET_READY, "Complete", ""),
                Cond::yes(READY, "Available", ""),
            ],
            Some(1),
            t("2026-01-01T00:01:00Z"),
        );
        let types: Vec<_> = b.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, vec![READY, SECRET_READY, REACHABLE]);
    }

    #[test]
    fn changes_are_reported_once() {
        let now = t("2026-01-01T00:00:00Z");
        let a = merge(
            &[],
            &[Cond::no(READY, "Creating", "")],
            Some(1),
            now.clone(),
        );
        assert_eq!(changed(&[], &a).len(), 1);
        let b = merge(
            &a,
            &[Cond::no(READY, "Creating", "still")],
            Some(1),
            now.clone(),
        );
        assert!(
            changed(&a, &b).is_empty(),
            "same status and reason: no Event"
        );
        let c = merge(&b, &[Cond::yes(READY, "Available", "")], Some(1), now);
        assert_eq!(changed(&b, &c)[0].reason, "Available");
    }
}
