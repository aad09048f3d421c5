//! Day 2: what separates a running replication group from the spec, as an
//! ordered list of steps. Pure: no I/O, so every rule is unit-tested here.
//!
//! Order (DESIGN §4): replica count → shard count → one
//! `ModifyReplicationGroup` with only the settings that differ → tags. The
//! reconciler sends the first step only, and only while the group is
//! `available`; the next poll plans again from what AWS then reports.
//!
//! Values AWS fills in or spells its own way never count as a difference:
//! `7.1` vs `7.1.0`, `Redis` vs `redis`, upper- vs lowercase node types and
//! windows, and settings the spec leaves to AWS (windows when unset, values
//! AWS does not report).

use std::collections::{BTreeMap, BTreeSet};

use crate::api::validation::{parse_major_minor, FieldError};
use crate::api::ClusterMode;
use crate::backends::elasticache::api::{ReplicationGroupChange, ReplicationGroupState, TagChange};
use crate::backends::elasticache::desired::DesiredReplicationGroup;

/// Tags AWS manages itself; never removed.
const AWS_TAG_PREFIX: &str = "aws:";

/// Everything the replication group should be, with its companions' names.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub group: &'a DesiredReplicationGroup,
    /// The parameter group for the spec's engine family.
    pub parameter_group: &'a str,
    /// The managed security group first, then the extra ones.
    pub security_group_ids: &'a [String],
    /// The subnet group the spec asks for.
    pub subnet_group: &'a str,
    /// User tags plus ownership tags.
    pub tags: &'a BTreeMap<String, String>,
}

/// One mutating call.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `IncreaseReplicaCount` / `DecreaseReplicaCount`.
    ReplicaCount { from: i32, to: i32 },
    /// `ModifyReplicationGroupShardConfiguration`; `remove` on a decrease.
    ShardCount {
        from: i32,
        to: i32,
        remove: Vec<String>,
    },
    /// `ModifyReplicationGroup` with only the settings that differ.
    Modify(ReplicationGroupChange),
    /// `AddTagsToResource` / `RemoveTagsFromResource`.
    Tags(TagChange),
}

impl Step {
    /// What the step does, for Events and logs (never a secret).
    pub fn describe(&self) -> String {
        match self {
            Step::ReplicaCount { from, to } => {
                format!("replicas per shard {from} → {to}")
            }
            Step::ShardCount { from, to, remove } if remove.is_empty() => {
                format!("shards {from} → {to}")
            }
            Step::ShardCount { from, to, remove } => {
                format!("shards {from} → {to} (removing {})", remove.join(", "))
            }
            Step::Modify(c) => format!("modify {}", c.fields().join(", ")),
            Step::Tags(t) => {
                let mut keys: Vec<&str> = t.add.keys().map(String::as_str).collect();
                keys.extend(t.remove.iter().map(String::as_str));
                format!("tags {}", keys.join(", "))
            }
        }
    }
}

/// The difference between spec and AWS.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Every step still needed, in the order they are sent; the reconciler
    /// sends the first.
    pub steps: Vec<Step>,
    /// Spec fields whose AWS value differs and that a step will change.
    pub differences: Vec<&'static str>,
    /// Spec fields AWS has accepted and will apply in the maintenance window.
    pub waiting: Vec<&'static str>,
}

impl Plan {
    /// The step to send now, if any.
    pub fn next(&self) -> Option<&Step> {
        self.steps.first()
    }
}

/// Refuses spec changes that no AWS call can make, naming the field. Checked
/// before any step is planned, so such a change never reaches AWS.
pub fn check_immutable(t: &Target<'_>, observed: &ReplicationGroupState) -> Result<(), FieldError> {
    let g = t.group;
    let refuse = |field: &str, what: String| {
        Err(FieldError {
            field: field.to_string(),
            message: format!(
                "{what}; ElastiCache cannot change this on a running cache. Restore the previous value, or create a new RedisCache and move the data"
            ),
        })
    };
    if let Some(mode) = observed.cluster_mode {
        if mode != g.cluster_mode {
            return refuse(
                "spec.clusterMode",
                format!(
                    "the cache runs with cluster mode {mode:?}, the spec asks for {:?}",
                    g.cluster_mode
                ),
            );
        }
    }
    if let Some(port) = observed.port {
        if port != g.port {
            return refuse(
                "spec.port",
                format!(
                    "the cache listens on port {port}, the spec asks for {}",
                    g.port
                ),
            );
        }
    }
    if observed.at_rest_encryption != g.at_rest_encryption {
        return refuse(
            "spec.encryption.atRest",
            format!(
                "at-rest encryption is {} on the cache, the spec asks for {}",
                on_off(observed.at_rest_encryption),
                on_off(g.at_rest_encryption)
            ),
        );
    }
    if let Some(wanted) = &g.kms_key_id {
        let same = observed
            .kms_key_id
            .as_deref()
            .is_some_and(|have| same_kms_key(have, wanted));
        if !same {
            return refuse(
                "spec.encryption.kmsKeyId",
                format!(
                    "the cache is encrypted with {}, the spec names {wanted}",
                    observed
                        .kms_key_id
                        .as_deref()
                        .unwrap_or("the AWS-managed key")
                ),
            );
        }
    }
    if let Some(subnets) = &observed.subnet_group {
        if !subnets.eq_ignore_ascii_case(t.subnet_group) {
            return refuse(
                "spec.network",
                format!(
                    "the cache's nodes live in subnet group {subnets}, the spec asks for {}",
                    t.subnet_group
                ),
            );
        }
    }
    if let (Some(have), Some(want)) = (
        observed.engine_version.as_deref().and_then(major_minor),
        parse_major_minor(&g.engine_version),
    ) {
        if want < have && same_engine(observed, g) {
            return Err(FieldError {
                field: "spec.engineVersion".into(),
                message: format!(
                    "the cache runs {}.{}, the spec asks for {}: ElastiCache cannot downgrade an engine. Set spec.engineVersion to {}.{} or later",
                    have.0, have.1, g.engine_version, have.0, have.1
                ),
            });
        }
    }
    Ok(())
}

/// The steps that bring `observed` to the target. Call only once
/// [`check_immutable`] passed.
pub fn plan(t: &Target<'_>, observed: &ReplicationGroupState) -> Plan {
    let g = t.group;
    let mut plan = Plan::default();

    // Multi-AZ needs a replica: switch it off before the last replica goes.
    let dropping_all_replicas = g.replicas_per_shard == 0 && observed.replicas_per_shard > 0;
    let failover_differs =
        observed.multi_az != g.multi_az || observed.automatic_failover != g.automatic_failover;
    if dropping_all_replicas && failover_differs {
        plan.steps.push(Step::Modify(ReplicationGroupChange {
            multi_az: Some(g.multi_az),
            automatic_failover: Some(g.automatic_failover),
            apply_immediately: true,
            ..Default::default()
        }));
    }
    if observed.replicas_per_shard != g.replicas_per_shard {
        plan.differences.push("replicasPerShard");
        plan.steps.push(Step::ReplicaCount {
            from: observed.replicas_per_shard,
            to: g.replicas_per_shard,
        });
    }
    if g.cluster_mode == ClusterMode::Enabled && observed.shards != g.shards {
        plan.differences.push("shards");
        let remove = if g.shards < observed.shards {
            let mut ids = observed.node_group_ids.clone();
            ids.sort();
            let drop = usize::try_from(observed.shards - g.shards).unwrap_or(0);
            ids.split_off(ids.len().saturating_sub(drop))
        } else {
            Vec::new()
        };
        plan.steps.push(Step::ShardCount {
            from: observed.shards,
            to: g.shards,
            remove,
        });
    }

    let modify = modification(t, observed, &mut plan, dropping_all_replicas);
    if !modify.is_empty() {
        plan.steps.push(Step::Modify(modify));
    }

    let tags = tag_change(t.tags, &observed.tags);
    if !tags.add.is_empty() || !tags.remove.is_empty() {
        plan.differences.push("tags");
        plan.steps.push(Step::Tags(tags));
    }
    plan
}

/// The `ModifyReplicationGroup` settings that differ.
fn modification(
    t: &Target<'_>,
    o: &ReplicationGroupState,
    plan: &mut Plan,
    failover_planned: bool,
) -> ReplicationGroupChange {
    let g = t.group;
    let mut c = ReplicationGroupChange {
        apply_immediately: g.apply_immediately,
        ..Default::default()
    };
    // A setting AWS already holds for the maintenance window is not sent
    // again, unless the spec now asks for it to be applied at once.
    let differs = |field: &'static str, pending_as: Option<&str>, plan: &mut Plan| {
        if pending_as.is_some_and(|p| o.is_pending(p)) && !g.apply_immediately {
            plan.waiting.push(field);
            return false;
        }
        plan.differences.push(field);
        true
    };

    let engine_differs = o
        .engine
        .as_deref()
        .is_some_and(|e| !e.eq_ignore_ascii_case(g.engine.as_str()));
    if engine_differs && differs("engine", None, plan) {
        c.engine = Some(g.engine.as_str().to_string());
    }
    let version_differs = o
        .engine_version
        .as_deref()
        .is_some_and(|v| major_minor(v) != parse_major_minor(&g.engine_version));
    if (version_differs || engine_differs) && differs("engineVersion", Some("engineVersion"), plan)
    {
        c.engine_version = Some(g.engine_version.clone());
    }
    if o.node_type
        .as_deref()
        .is_some_and(|n| !n.eq_ignore_ascii_case(&g.node_type))
        && differs("nodeType", Some("nodeType"), plan)
    {
        c.node_type = Some(g.node_type.clone());
    }
    if o.parameter_group
        .as_deref()
        .is_some_and(|p| p != t.parameter_group)
        && differs("parameters", Some("parameterGroup"), plan)
    {
        c.parameter_group = Some(t.parameter_group.to_string());
    }
    if !o.security_group_ids.is_empty() {
        let have: BTreeSet<&String> = o.security_group_ids.iter().collect();
        let want: BTreeSet<&String> = t.security_group_ids.iter().collect();
        if have != want && differs("network.securityGroupIds", None, plan) {
            c.security_group_ids = Some(t.security_group_ids.to_vec());
        }
    }
    if o.snapshot_retention_days
        .is_some_and(|d| d != g.snapshot_retention_days)
        && differs("backup.retentionDays", None, plan)
    {
        c.snapshot_retention_days = Some(g.snapshot_retention_days);
    }
    if window_differs(g.snapshot_window.as_deref(), o.snapshot_window.as_deref())
        && differs("backup.window", None, plan)
    {
        c.snapshot_window = g.snapshot_window.clone();
    }
    if window_differs(
        g.maintenance_window.as_deref(),
        o.maintenance_window.as_deref(),
    ) && differs("maintenanceWindow", None, plan)
    {
        c.maintenance_window = g.maintenance_window.clone();
    }
    let failover_pending = o.is_pending("automaticFailover");
    if (o.multi_az != g.multi_az || o.automatic_failover != g.automatic_failover)
        && !failover_pending
        && !failover_planned
    {
        plan.differences.push("multiAZ");
        c.multi_az = Some(g.multi_az);
        c.automatic_failover = Some(g.automatic_failover);
    }
    c
}

/// Tags to add and remove so the group carries exactly `want` (plus AWS's own).
pub fn tag_change(want: &BTreeMap<String, String>, have: &BTreeMap<String, String>) -> TagChange {
    TagChange {
        add: want
            .iter()
            .filter(|(k, v)| have.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        remove: have
            .keys()
            .filter(|k| !want.contains_key(*k) && !k.starts_with(AWS_TAG_PREFIX))
            .cloned()
            .collect(),
    }
}

/// `major.minor` of a version AWS reports (`7.1.0` → `(7, 1)`).
pub fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

/// A window in the spec differs from AWS's only when the spec sets one.
fn window_differs(want: Option<&str>, have: Option<&str>) -> bool {
    match (want, have) {
        (Some(w), Some(h)) => !w.trim().eq_ignore_ascii_case(h.trim()),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn same_engine(o: &ReplicationGroupState, g: &DesiredReplicationGroup) -> bool {
    o.engine
        .as_deref()
        .is_none_or(|e| e.eq_ignore_ascii_case(g.engine.as_str()))
}

/// AWS reports the key's ARN; the spec may name the ARN, the key id or an
/// alias. An alias cannot be compared with a key ARN offline, so it counts
/// as the same key (admission already refuses changing the field).
fn same_kms_key(have: &str, wanted: &str) -> bool {
    let alias = wanted.starts_with("alias/") || wanted.contains(":alias/");
    alias
        || have == wanted
        || have.ends_with(&format!("/{wanted}"))
        || have.ends_with(&format!(":{wanted}"))
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Engine;

    type Edit = Box<dyn Fn(&mut DesiredReplicationGroup)>;

    fn desired() -> DesiredReplicationGroup {
        DesiredReplicationGroup {
            id: "k8s-shop-cart-1a2b3c4d".into(),
            description: "d".into(),
            engine: Engine::Redis,
            engine_version: "7.1".into(),
            node_type: "cache.t4g.small".into(),
            cluster_mode: ClusterMode::Disabled,
            shards: 1,
            replicas_per_shard: 1,
            multi_az: true,
            automatic_failover: true,
            port: 6379,
            transit_encryption: true,
            at_rest_encryption: true,
            kms_key_id: None,
            snapshot_retention_days: 7,
            snapshot_window: Some("03:00-04:00".into()),
            maintenance_window: Some("sun:05:00-sun:06:00".into()),
            apply_immediately: true,
        }
    }

    fn tags() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("rediscache.dev/owner-uid".to_string(), "u1".to_string()),
            ("team".to_string(), "shop".to_string()),
        ])
    }

    const PG: &str = "k8s-shop-cart-1a2b3c4d-params-redis7";

    fn sgs() -> Vec<String> {
        vec!["sg-0001".to_string()]
    }

    /// What AWS reports for a group created from `desired()`, in AWS's spelling.
    fn observed() -> ReplicationGroupState {
        ReplicationGroupState {
            engine: Some("Redis".into()),
            engine_version: Some("7.1.0".into()),
            node_type: Some("CACHE.T4G.SMALL".into()),
            cluster_mode: Some(ClusterMode::Disabled),
            replicas_per_shard: 1,
            multi_az: true,
            automatic_failover: true,
            port: Some(6379),
            at_rest_encryption: true,
            transit_encryption: true,
            auth_token_enabled: true,
            parameter_group: Some(PG.into()),
            node_group_ids: vec!["0001".into()],
            security_group_ids: sgs(),
            subnet_group: Some("K8S-SHOP-CART-1A2B3C4D".into()),
            snapshot_retention_days: Some(7),
            snapshot_window: Some("03:00-04:00".into()),
            maintenance_window: Some("Sun:05:00-Sun:06:00".into()),
            tags: tags(),
            ..ReplicationGroupState::available("k8s-shop-cart-1a2b3c4d")
        }
    }

    fn plan_for(g: &DesiredReplicationGroup, o: &ReplicationGroupState) -> Plan {
        let (sg, t) = (sgs(), tags());
        let target = Target {
            group: g,
            parameter_group: PG,
            security_group_ids: &sg,
            subnet_group: "k8s-shop-cart-1a2b3c4d",
            tags: &t,
        };
        check_immutable(&target, o).expect("no immutable change");
        plan(&target, o)
    }

    fn only_modify(p: &Plan) -> &ReplicationGroupChange {
        assert_eq!(p.steps.len(), 1, "{p:?}");
        match &p.steps[0] {
            Step::Modify(c) => c,
            other => panic!("expected a Modify, got {other:?}"),
        }
    }

    #[test]
    fn server_side_spellings_and_defaults_are_no_difference() {
        let p = plan_for(&desired(), &observed());
        assert_eq!(p, Plan::default());
        // Settings the spec leaves to AWS are AWS's to choose.
        let mut g = desired();
        g.snapshot_window = None;
        g.maintenance_window = None;
        let mut o = observed();
        o.snapshot_window = Some("07:30-08:30".into());
        o.snapshot_retention_days = None;
        o.security_group_ids.clear();
        o.parameter_group = None;
        o.tags
            .insert("aws:cloudformation:stack-name".into(), "x".into());
        assert_eq!(plan_for(&g, &o), Plan::default());
    }

    #[test]
    fn each_setting_produces_a_modify_with_only_that_field() {
        let cases: Vec<(&str, Edit, ReplicationGroupChange)> = vec![
            (
                "nodeType",
                Box::new(|g| g.node_type = "cache.r7g.large".into()),
                ReplicationGroupChange {
                    node_type: Some("cache.r7g.large".into()),
                    ..Default::default()
                },
            ),
            (
                "engineVersion",
                Box::new(|g| g.engine_version = "7.2".into()),
                ReplicationGroupChange {
                    engine_version: Some("7.2".into()),
                    ..Default::default()
                },
            ),
            (
                "backup.retentionDays",
                Box::new(|g| g.snapshot_retention_days = 3),
                ReplicationGroupChange {
                    snapshot_retention_days: Some(3),
                    ..Default::default()
                },
            ),
            (
                "backup.window",
                Box::new(|g| g.snapshot_window = Some("01:00-02:00".into())),
                ReplicationGroupChange {
                    snapshot_window: Some("01:00-02:00".into()),
                    ..Default::default()
                },
            ),
            (
                "maintenanceWindow",
                Box::new(|g| g.maintenance_window = Some("mon:01:00-mon:02:00".into())),
                ReplicationGroupChange {
                    maintenance_window: Some("mon:01:00-mon:02:00".into()),
                    ..Default::default()
                },
            ),
            (
                "multiAZ",
                Box::new(|g| {
                    g.multi_az = false;
                    g.automatic_failover = false;
                }),
                ReplicationGroupChange {
                    multi_az: Some(false),
                    automatic_failover: Some(false),
                    ..Default::default()
                },
            ),
        ];
        for (field, change, mut expected) in cases {
            let mut g = desired();
            change(&mut g);
            let p = plan_for(&g, &observed());
            expected.apply_immediately = true;
            assert_eq!(only_modify(&p), &expected, "{field}");
            assert_eq!(p.differences, vec![field]);
        }
    }

    #[test]
    fn parameter_group_and_security_groups_follow_the_target() {
        let mut o = observed();
        o.parameter_group = Some("k8s-shop-cart-1a2b3c4d-params-valkey7".into());
        o.security_group_ids = vec!["sg-0001".into(), "sg-9999".into()];
        let c = only_modify(&plan_for(&desired(), &o)).clone();
        assert_eq!(c.parameter_group.as_deref(), Some(PG));
        assert_eq!(c.security_group_ids, Some(sgs()));
        assert_eq!(c.fields(), vec!["parameterGroup", "securityGroups"]);
    }

    #[test]
    fn an_engine_upgrade_sends_engine_version_and_parameter_group_together() {
        let mut g = desired();
        g.engine = Engine::Valkey;
        g.engine_version = "8.0".into();
        let mut o = observed();
        o.parameter_group = Some("k8s-shop-cart-1a2b3c4d-params-redis6".into());
        let c = only_modify(&plan_for(&g, &o)).clone();
        assert_eq!(c.engine.as_deref(), Some("valkey"));
        assert_eq!(c.engine_version.as_deref(), Some("8.0"));
        assert_eq!(c.parameter_group.as_deref(), Some(PG));
    }

    #[test]
    fn combined_change_is_ordered_replicas_shards_modify_tags() {
        let mut g = desired();
        g.cluster_mode = ClusterMode::Enabled;
        g.shards = 3;
        g.replicas_per_shard = 2;
        g.node_type = "cache.r7g.large".into();
        let mut o = observed();
        o.cluster_mode = Some(ClusterMode::Enabled);
        o.tags.remove("team");
        let p = plan_for(&g, &o);
        assert_eq!(
            p.steps.iter().map(Step::describe).collect::<Vec<_>>(),
            vec![
                "replicas per shard 1 → 2",
                "shards 1 → 3",
                "modify nodeType",
                "tags team"
            ]
        );
        assert_eq!(
            p.differences,
            vec!["replicasPerShard", "shards", "nodeType", "tags"]
        );
    }

    #[test]
    fn shard_decrease_names_the_highest_node_groups() {
        let mut g = desired();
        g.cluster_mode = ClusterMode::Enabled;
        g.shards = 2;
        let mut o = observed();
        o.cluster_mode = Some(ClusterMode::Enabled);
        o.shards = 4;
        o.node_group_ids = vec!["0003".into(), "0001".into(), "0004".into(), "0002".into()];
        let p = plan_for(&g, &o);
        assert_eq!(
            p.next(),
            Some(&Step::ShardCount {
                from: 4,
                to: 2,
                remove: vec!["0003".into(), "0004".into()]
            })
        );
    }

    #[test]
    fn multi_az_goes_off_before_the_last_replica() {
        let mut g = desired();
        g.replicas_per_shard = 0;
        g.multi_az = false;
        g.automatic_failover = false;
        let p = plan_for(&g, &observed());
        assert_eq!(
            p.steps,
            vec![
                Step::Modify(ReplicationGroupChange {
                    multi_az: Some(false),
                    automatic_failover: Some(false),
                    apply_immediately: true,
                    ..Default::default()
                }),
                Step::ReplicaCount { from: 1, to: 0 },
            ]
        );
    }

    #[test]
    fn apply_later_is_sent_once_then_waits_for_the_window() {
        let mut g = desired();
        g.apply_immediately = false;
        g.node_type = "cache.r7g.large".into();
        let c = only_modify(&plan_for(&g, &observed())).clone();
        assert!(!c.apply_immediately);
        assert_eq!(c.node_type.as_deref(), Some("cache.r7g.large"));
        // AWS now lists it as pending: nothing is sent again.
        let mut o = observed();
        o.pending_changes = vec!["nodeType".into()];
        let p = plan_for(&g, &o);
        assert!(p.steps.is_empty(), "{p:?}");
        assert_eq!(p.waiting, vec!["nodeType"]);
        // Switching to applyImmediately sends it again, to apply it now.
        g.apply_immediately = true;
        let c = only_modify(&plan_for(&g, &o)).clone();
        assert!(c.apply_immediately);
    }

    #[test]
    fn tags_follow_the_spec_and_keep_aws_and_ownership_tags() {
        let want = tags();
        let have = BTreeMap::from([
            ("rediscache.dev/owner-uid".to_string(), "u1".to_string()),
            ("team".to_string(), "old".to_string()),
            ("cost-center".to_string(), "42".to_string()),
            ("aws:createdBy".to_string(), "x".to_string()),
        ]);
        let c = tag_change(&want, &have);
        assert_eq!(c.add, BTreeMap::from([("team".into(), "shop".into())]));
        assert_eq!(c.remove, vec!["cost-center".to_string()]);
    }

    #[test]
    fn immutable_changes_are_refused_naming_the_field() {
        let cases: Vec<(&str, Edit)> = vec![
            (
                "spec.clusterMode",
                Box::new(|g| {
                    g.cluster_mode = ClusterMode::Enabled;
                }),
            ),
            ("spec.port", Box::new(|g| g.port = 6380)),
            (
                "spec.encryption.atRest",
                Box::new(|g| g.at_rest_encryption = false),
            ),
            (
                "spec.encryption.kmsKeyId",
                Box::new(|g| g.kms_key_id = Some("key-1".into())),
            ),
            (
                "spec.engineVersion",
                Box::new(|g| g.engine_version = "7.0".into()),
            ),
        ];
        let (sg, t) = (sgs(), tags());
        for (field, change) in cases {
            let mut g = desired();
            change(&mut g);
            let target = Target {
                group: &g,
                parameter_group: PG,
                security_group_ids: &sg,
                subnet_group: "k8s-shop-cart-1a2b3c4d",
                tags: &t,
            };
            let err = check_immutable(&target, &observed()).expect_err(field);
            assert_eq!(err.field, field);
        }
        let g = desired();
        let target = Target {
            group: &g,
            parameter_group: PG,
            security_group_ids: &sg,
            subnet_group: "existing-subnets",
            tags: &t,
        };
        let err = check_immutable(&target, &observed()).expect_err("subnets");
        assert_eq!(err.field, "spec.network");
    }

    #[test]
    fn kms_keys_match_by_arn_id_or_alias() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd";
        assert!(same_kms_key(arn, arn));
        assert!(same_kms_key(arn, "1234abcd"));
        assert!(
            same_kms_key(arn, "alias/cache-key"),
            "aliases are not refused"
        );
        assert!(!same_kms_key(arn, "ffff"));
    }

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert_eq!(major_minor("7.1.0"), Some((7, 1)));
        assert_eq!(major_minor("8.0"), Some((8, 0)));
        assert_eq!(major_minor("7"), Some((7, 0)));
        assert_eq!(major_minor("x"), None);
    }
}
