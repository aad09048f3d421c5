//! Names of the AWS resources of one RedisCache.
//!
//! The replication group id is derived once, written to status at first create
//! and read back from status afterwards, so a change to this scheme or to
//! `--cluster-name` never orphans a running cache.

/// ElastiCache's limit for replication group ids.
pub const MAX_ID_LEN: usize = crate::backends::identity::MAX_LEN;

/// The names of every AWS resource belonging to one cache.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceNames {
    /// Replication group id `R`.
    pub replication_group_id: String,
    /// Subnet group `R` (when the operator manages it).
    pub subnet_group: String,
    /// Security group name `R`.
    pub security_group: String,
}

impl ResourceNames {
    /// Companion names for a replication group id.
    pub fn for_id(id: &str) -> Self {
        Self {
            replication_group_id: id.to_string(),
            subnet_group: id.to_string(),
            security_group: id.to_string(),
        }
    }

    /// Parameter group `R-params-<family>` (e.g. `…-params-valkey8`): one per
    /// engine family, so an upgrade to a new family can switch to a new group
    /// in one modification and delete the old one afterwards.
    pub fn parameter_group(&self, family: &str) -> String {
        format!("{}-params-{family}", self.replication_group_id)
    }

    /// Every parameter group name this operator uses or used for the group
    /// (for cleanup): one per supported family, and `R-params` of releases
    /// before per-family groups.
    pub fn all_parameter_groups(&self) -> Vec<String> {
        super::spec::SUPPORTED_FAMILIES
            .iter()
            .map(|(_, _, family)| self.parameter_group(family))
            .chain(std::iter::once(format!(
                "{}-params",
                self.replication_group_id
            )))
            .collect()
    }

    /// Name of the final snapshot taken by `deletionPolicy: Snapshot`.
    pub fn final_snapshot(&self, now: jiff::Timestamp) -> String {
        format!(
            "{}-final-{}",
            self.replication_group_id,
            now.strftime("%Y%m%dT%H%M%SZ")
        )
    }
}

/// Derives the replication group id for `namespace/name` in cluster
/// `cluster` ([`crate::backends::identity::derive`], ≤ 40 characters).
pub fn replication_group_id(cluster: &str, namespace: &str, name: &str) -> String {
    crate::backends::identity::derive(cluster, namespace, name)
}

/// Whether `id` is a valid replication group id.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && !id.contains("--")
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_stable_and_readable() {
        let id = replication_group_id("prod-eu", "shop", "sessions");
        assert!(is_valid_id(&id), "{id}");
        assert!(id.starts_with("prod-eu-shop-sessions-"), "{id}");
        assert_eq!(id, replication_group_id("prod-eu", "shop", "sessions"));
    }

    #[test]
    fn ids_differ_across_namespaces_clusters_and_ambiguous_joins() {
        let a = replication_group_id("k8s", "shop", "sessions");
        let b = replication_group_id("k8s", "blog", "sessions");
        let c = replication_group_id("k8s-2", "shop", "sessions");
        let d = replication_group_id("k8s", "a-b", "c");
        let e = replication_group_id("k8s", "a", "b-c");
        let all = [&a, &b, &c, &d, &e];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    #[test]
    fn long_and_odd_names_are_truncated_and_hashed() {
        let long = "a".repeat(63);
        let id = replication_group_id("a-very-long-cluster-name", "team-payments-prod", &long);
        assert!(is_valid_id(&id), "{id}");
        assert_eq!(id.len(), MAX_ID_LEN);
        let other = replication_group_id(
            "a-very-long-cluster-name",
            "team-payments-prod",
            &"a".repeat(62),
        );
        assert_ne!(id, other, "truncation must not merge names");

        for (cluster, ns, name) in [
            ("9lives", "ns", "x"),
            ("--", "--", "--"),
            ("K8S", "Ns", "My.Cache"),
            ("", "", ""),
        ] {
            let id = replication_group_id(cluster, ns, name);
            assert!(is_valid_id(&id), "{cluster}/{ns}/{name} -> {id}");
        }
    }

    #[test]
    fn companions_follow_the_id() {
        let n = ResourceNames::for_id("k8s-shop-sessions-1a2b3c4d");
        assert_eq!(
            n.parameter_group("valkey8"),
            "k8s-shop-sessions-1a2b3c4d-params-valkey8"
        );
        assert_eq!(n.all_parameter_groups().len(), 4);
        assert!(n
            .all_parameter_groups()
            .contains(&"k8s-shop-sessions-1a2b3c4d-params".to_string()));
        assert_eq!(n.subnet_group, "k8s-shop-sessions-1a2b3c4d");
        let ts: jiff::Timestamp = "2026-11-22T04:15:09Z".parse().expect("timestamp");
        assert_eq!(
            n.final_snapshot(ts),
            "k8s-shop-sessions-1a2b3c4d-final-20261122T041509Z"
        );
    }
}
