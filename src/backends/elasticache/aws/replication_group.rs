//! The replication group `R`: the create request with every setting of
//! DESIGN §4 item 5, the mapping of what AWS describes to the domain state,
//! modifications, and deletion.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use aws_sdk_elasticache::types::{
    AuthTokenUpdateStrategyType, CacheCluster, ClusterMode as SdkClusterMode, ReplicationGroup,
};

use super::clients::Api;
use super::errors::AwsError;
use super::operations::Operation;
use super::tags;
use crate::api::ClusterMode;
use crate::backends::elasticache::api::{
    AuthTokenStrategy, Companions, GroupStatus, ReplicationGroupChange, ReplicationGroupState,
};
use crate::backends::elasticache::desired::DesiredReplicationGroup;
use crate::backends::Credential;
use crate::backends::Endpoint;

/// What only the member clusters report: the group itself does not carry
/// its engine version or parameter group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberFacts {
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub parameter_group: Option<String>,
    /// Pending changes reported on the member cluster.
    pub pending_changes: Vec<String>,
    /// VPC security groups of the member cluster.
    pub security_group_ids: Vec<String>,
    pub subnet_group: Option<String>,
    pub maintenance_window: Option<String>,
}

impl MemberFacts {
    /// Reads the facts from a member cluster.
    pub fn from_cluster(c: &CacheCluster) -> Self {
        let mut pending = Vec::new();
        if let Some(p) = c.pending_modified_values() {
            if p.cache_node_type().is_some() {
                pending.push("nodeType".to_string());
            }
            if p.engine_version().is_some() {
                pending.push("engineVersion".to_string());
            }
            if p.num_cache_nodes().is_some() {
                pending.push("numCacheNodes".to_string());
            }
            if p.auth_token_status().is_some() {
                pending.push("authToken".to_string());
            }
            if p.transit_encryption_enabled().is_some() || p.transit_encryption_mode().is_some() {
                pending.push("transitEncryption".to_string());
            }
        }
        let pg = c.cache_parameter_group();
        if pg.and_then(|p| p.parameter_apply_status()) == Some("pending-reboot") {
            pending.push("parameters (need a reboot)".to_string());
        }
        Self {
            engine: c.engine().map(str::to_string),
            engine_version: c.engine_version().map(str::to_string),
            parameter_group: pg
                .and_then(|p| p.cache_parameter_group_name())
                .map(str::to_string),
            pending_changes: pending,
            security_group_ids: c
                .security_groups()
                .iter()
                .filter_map(|g| g.security_group_id())
                .map(str::to_string)
                .collect(),
            subnet_group: c.cache_subnet_group_name().map(str::to_string),
            maintenance_window: c.preferred_maintenance_window().map(str::to_string),
        }
    }

    /// What the members of a group AWS has just accepted to create will
    /// report once it is available: what the create request asked for. AWS
    /// picks a maintenance window when none was asked for, and may report a
    /// longer engine version ("7.1.0" for "7.1"); the next read has those.
    pub fn requested(desired: &DesiredReplicationGroup, companions: &Companions) -> Self {
        Self {
            engine: Some(desired.engine.as_str().to_string()),
            engine_version: Some(desired.engine_version.clone()),
            parameter_group: Some(companions.parameter_group.clone()),
            pending_changes: Vec::new(),
            security_group_ids: companions.security_group_ids.clone(),
            subnet_group: Some(companions.subnet_group.clone()),
            maintenance_window: desired.maintenance_window.clone(),
        }
    }
}

/// Member facts of one group, and the group status they belong to.
#[derive(Debug)]
struct Known {
    status: String,
    facts: MemberFacts,
    /// Taken from our create request, not read: good for one answer (the
    /// reconcile that finds the new group available makes it Ready without
    /// waiting for a read), then read.
    requested: bool,
}

/// Member facts by group id, read again only when the group's status has
/// changed since (every change of version or parameter group passes through
/// `modifying`) or after one of our own modifications.
#[derive(Debug, Default)]
pub struct MemberFactsCache {
    by_group: Mutex<HashMap<String, Known>>,
}

impl MemberFactsCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.by_group.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the facts of group `id`, just created, for its first
    /// `available` answer (see [`MemberFacts::requested`]).
    pub fn created(&self, id: &str, facts: MemberFacts) {
        let known = Known {
            status: "available".to_string(),
            facts,
            requested: true,
        };
        self.lock().insert(id.to_string(), known);
    }

    /// The facts for `group`, from the cache or from `DescribeCacheClusters`
    /// on its first member.
    pub async fn get(&self, api: &Api, group: &ReplicationGroup) -> Result<MemberFacts, AwsError> {
        let id = group.replication_group_id().unwrap_or_default();
        let status = group.status().unwrap_or_default();
        {
            let mut known = self.lock();
            if let Some(k) = known.get(id).filter(|k| k.status == status) {
                let facts = k.facts.clone();
                if k.requested {
                    known.remove(id);
                }
                return Ok(facts);
            }
        }
        // A group being created has nothing to tell yet (and nothing is
        // changed before it is available): no call until it is.
        if GroupStatus::parse(status) == GroupStatus::Creating {
            return Ok(MemberFacts::default());
        }
        let Some(member) = group.member_clusters().first() else {
            return Ok(MemberFacts::default());
        };
        let result = api
            .call(
                Operation::DescribeCacheClusters,
                api.elasticache
                    .describe_cache_clusters()
                    .cache_cluster_id(member)
                    .show_cache_node_info(false)
                    .send(),
            )
            .await;
        let facts = match result {
            Ok(out) => out
                .cache_clusters()
                .first()
                .map(MemberFacts::from_cluster)
                .unwrap_or_default(),
            // Members come and go while nodes are replaced; the group is
            // still there, only these details are not.
            Err(e) if e.is_not_found() => MemberFacts::default(),
            Err(e) => return Err(e),
        };
        let known = Known {
            status: status.to_string(),
            facts: facts.clone(),
            requested: false,
        };
        self.lock().insert(id.to_string(), known);
        Ok(facts)
    }

    /// Forgets a group's facts (after we modified it, or it is gone).
    pub fn invalidate(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// Maps what AWS describes (plus the member facts and the group's tags) to
/// the domain state.
pub fn map_group(
    g: &ReplicationGroup,
    facts: &MemberFacts,
    tags: BTreeMap<String, String>,
) -> ReplicationGroupState {
    let cluster_mode = match g.cluster_mode() {
        Some(SdkClusterMode::Enabled) => Some(ClusterMode::Enabled),
        Some(SdkClusterMode::Disabled) => Some(ClusterMode::Disabled),
        // `compatible` is a migration state, neither one nor the other.
        Some(_) => None,
        None => g.cluster_enabled().map(|on| {
            if on {
                ClusterMode::Enabled
            } else {
                ClusterMode::Disabled
            }
        }),
    };
    let endpoint_of = |e: &aws_sdk_elasticache::types::Endpoint| {
        e.address().map(|host| Endpoint {
            host: host.to_string(),
            port: e.port().unwrap_or(0),
        })
    };
    let first_group = g.node_groups().first();
    let (endpoint, reader_endpoint) = match (cluster_mode, g.configuration_endpoint()) {
        (Some(ClusterMode::Enabled), cfg) | (None, cfg @ Some(_)) => {
            (cfg.and_then(endpoint_of), None)
        }
        _ => (
            first_group
                .and_then(|n| n.primary_endpoint())
                .and_then(endpoint_of),
            first_group
                .and_then(|n| n.reader_endpoint())
                .and_then(endpoint_of),
        ),
    };
    let shards = i32::try_from(g.node_groups().len()).unwrap_or(i32::MAX);
    let replicas_per_shard = match first_group.map(|n| n.node_group_members().len()) {
        Some(members) if members > 0 => members - 1,
        _ if shards > 0 => (g.member_clusters().len() / shards as usize).saturating_sub(1),
        _ => 0,
    };
    let mut pending: BTreeSet<String> = facts.pending_changes.iter().cloned().collect();
    if let Some(p) = g.pending_modified_values() {
        let names = [
            (p.automatic_failover_status().is_some(), "automaticFailover"),
            (p.resharding().is_some(), "shards"),
            (p.auth_token_status().is_some(), "authToken"),
            (p.primary_cluster_id().is_some(), "primaryCluster"),
            (
                p.transit_encryption_enabled().is_some() || p.transit_encryption_mode().is_some(),
                "transitEncryption",
            ),
            (p.cluster_mode().is_some(), "clusterMode"),
            (p.user_groups().is_some(), "userGroups"),
            (!p.log_delivery_configurations().is_empty(), "logDelivery"),
        ];
        pending.extend(
            names
                .iter()
                .filter(|(set, _)| *set)
                .map(|(_, n)| n.to_string()),
        );
    }
    let enabled = |s: Option<&str>| matches!(s, Some("enabled") | Some("enabling"));
    ReplicationGroupState {
        id: g.replication_group_id().unwrap_or_default().to_string(),
        arn: g.arn().map(str::to_string),
        status: GroupStatus::parse(g.status().unwrap_or_default()),
        engine: g
            .engine()
            .map(str::to_string)
            .or_else(|| facts.engine.clone()),
        engine_version: facts.engine_version.clone(),
        node_type: g.cache_node_type().map(str::to_string),
        cluster_mode,
        shards,
        replicas_per_shard: i32::try_from(replicas_per_shard).unwrap_or(i32::MAX),
        multi_az: enabled(g.multi_az().map(|m| m.as_str())),
        automatic_failover: enabled(g.automatic_failover().map(|a| a.as_str())),
        port: endpoint.as_ref().map(|e| e.port).filter(|p| *p > 0),
        at_rest_encryption: g.at_rest_encryption_enabled().unwrap_or(false),
        transit_encryption: g.transit_encryption_enabled().unwrap_or(false),
        auth_token_enabled: g.auth_token_enabled().unwrap_or(false),
        parameter_group: facts.parameter_group.clone(),
        endpoint,
        reader_endpoint,
        pending_changes: pending.into_iter().collect(),
        node_group_ids: g
            .node_groups()
            .iter()
            .filter_map(|n| n.node_group_id())
            .map(str::to_string)
            .collect(),
        security_group_ids: facts.security_group_ids.clone(),
        subnet_group: facts.subnet_group.clone(),
        kms_key_id: g.kms_key_id().map(str::to_string),
        snapshot_retention_days: g.snapshot_retention_limit(),
        snapshot_window: g.snapshot_window().map(str::to_string),
        maintenance_window: facts.maintenance_window.clone(),
        auth_token_last_modified: g.auth_token_last_modified_date().and_then(|d| {
            jiff::Timestamp::new(d.secs(), i32::try_from(d.subsec_nanos()).unwrap_or(0)).ok()
        }),
        tags,
    }
}

/// Describes the group `id` directly; `None` when AWS says it does not exist.
pub async fn describe(api: &Api, id: &str) -> Result<Option<ReplicationGroup>, AwsError> {
    let result = api
        .call(
            Operation::DescribeReplicationGroups,
            api.elasticache
                .describe_replication_groups()
                .replication_group_id(id)
                .send(),
        )
        .await;
    Ok(super::errors::found(result)?.and_then(|out| {
        out.replication_groups()
            .iter()
            .find(|g| g.replication_group_id() == Some(id))
            .cloned()
    }))
}

/// Sends `CreateReplicationGroup` with every setting of the desired group.
pub async fn create(
    api: &Api,
    desired: &DesiredReplicationGroup,
    companions: &Companions,
    auth_token: &Credential,
    tags: &BTreeMap<String, String>,
) -> Result<ReplicationGroup, AwsError> {
    let cluster_mode = match desired.cluster_mode {
        ClusterMode::Enabled => SdkClusterMode::Enabled,
        ClusterMode::Disabled => SdkClusterMode::Disabled,
    };
    let request = api
        .elasticache
        .create_replication_group()
        .replication_group_id(&desired.id)
        .replication_group_description(&desired.description)
        .engine(desired.engine.as_str())
        .engine_version(&desired.engine_version)
        .cache_node_type(&desired.node_type)
        .cluster_mode(cluster_mode)
        .num_node_groups(desired.shards)
        .replicas_per_node_group(desired.replicas_per_shard)
        .multi_az_enabled(desired.multi_az)
        .automatic_failover_enabled(desired.automatic_failover)
        .transit_encryption_enabled(desired.transit_encryption)
        .at_rest_encryption_enabled(desired.at_rest_encryption)
        .set_kms_key_id(desired.kms_key_id.clone())
        .auth_token(auth_token.expose())
        .cache_parameter_group_name(&companions.parameter_group)
        .cache_subnet_group_name(&companions.subnet_group)
        .set_security_group_ids(Some(companions.security_group_ids.clone()))
        .snapshot_retention_limit(desired.snapshot_retention_days)
        .set_snapshot_window(desired.snapshot_window.clone())
        .set_preferred_maintenance_window(desired.maintenance_window.clone())
        .port(desired.port)
        .set_tags(Some(tags::to_elasticache(tags)));
    let out = api
        .call(Operation::CreateReplicationGroup, request.send())
        .await?;
    Ok(out.replication_group().cloned().unwrap_or_else(|| {
        ReplicationGroup::builder()
            .replication_group_id(&desired.id)
            .status("creating")
            .build()
    }))
}

/// Sends `ModifyReplicationGroup` with only the settings `change` names.
pub async fn modify(
    api: &Api,
    id: &str,
    change: &ReplicationGroupChange,
) -> Result<Option<ReplicationGroup>, AwsError> {
    let request = api
        .elasticache
        .modify_replication_group()
        .replication_group_id(id)
        .apply_immediately(change.apply_immediately)
        .set_engine(change.engine.clone())
        .set_cache_node_type(change.node_type.clone())
        .set_engine_version(change.engine_version.clone())
        .set_cache_parameter_group_name(change.parameter_group.clone())
        .set_security_group_ids(change.security_group_ids.clone())
        .set_snapshot_retention_limit(change.snapshot_retention_days)
        .set_snapshot_window(change.snapshot_window.clone())
        .set_preferred_maintenance_window(change.maintenance_window.clone())
        .set_multi_az_enabled(change.multi_az)
        .set_automatic_failover_enabled(change.automatic_failover);
    let out = api
        .call(Operation::ModifyReplicationGroup, request.send())
        .await?;
    Ok(out.replication_group().cloned())
}

/// Sends `IncreaseReplicaCount` or `DecreaseReplicaCount` (AWS applies
/// both immediately; `ApplyImmediately=false` is not accepted).
pub async fn set_replica_count(
    api: &Api,
    id: &str,
    current: i32,
    replicas: i32,
) -> Result<Option<ReplicationGroup>, AwsError> {
    if replicas > current {
        let out = api
            .call(
                Operation::IncreaseReplicaCount,
                api.elasticache
                    .increase_replica_count()
                    .replication_group_id(id)
                    .new_replica_count(replicas)
                    .apply_immediately(true)
                    .send(),
            )
            .await?;
        Ok(out.replication_group().cloned())
    } else {
        let out = api
            .call(
                Operation::DecreaseReplicaCount,
                api.elasticache
                    .decrease_replica_count()
                    .replication_group_id(id)
                    .new_replica_count(replicas)
                    .apply_immediately(true)
                    .send(),
            )
            .await?;
        Ok(out.replication_group().cloned())
    }
}

/// Sends `ModifyReplicationGroupShardConfiguration`; `remove` names the node
/// groups to drop on a decrease.
pub async fn set_shard_count(
    api: &Api,
    id: &str,
    shards: i32,
    remove: &[String],
) -> Result<Option<ReplicationGroup>, AwsError> {
    let out = api
        .call(
            Operation::ModifyReplicationGroupShardConfiguration,
            api.elasticache
                .modify_replication_group_shard_configuration()
                .replication_group_id(id)
                .node_group_count(shards)
                .apply_immediately(true)
                .set_node_groups_to_remove((!remove.is_empty()).then(|| remove.to_vec()))
                .send(),
        )
        .await?;
    Ok(out.replication_group().cloned())
}

/// Node types the group may be scaled up or down to.
pub async fn allowed_node_types(api: &Api, id: &str) -> Result<Vec<String>, AwsError> {
    let out = api
        .call(
            Operation::ListAllowedNodeTypeModifications,
            api.elasticache
                .list_allowed_node_type_modifications()
                .replication_group_id(id)
                .send(),
        )
        .await?;
    Ok(out
        .scale_up_modifications()
        .iter()
        .chain(out.scale_down_modifications())
        .cloned()
        .collect())
}

/// Sends `ModifyReplicationGroup` with a new AUTH token and `strategy`,
/// applied immediately.
pub async fn update_auth_token(
    api: &Api,
    id: &str,
    token: &Credential,
    strategy: AuthTokenStrategy,
) -> Result<Option<ReplicationGroup>, AwsError> {
    let strategy = match strategy {
        AuthTokenStrategy::Rotate => AuthTokenUpdateStrategyType::Rotate,
        AuthTokenStrategy::Set => AuthTokenUpdateStrategyType::Set,
    };
    let out = api
        .call(
            Operation::ModifyReplicationGroup,
            api.elasticache
                .modify_replication_group()
                .replication_group_id(id)
                .auth_token(token.expose())
                .auth_token_update_strategy(strategy)
                .apply_immediately(true)
                .send(),
        )
        .await?;
    Ok(out.replication_group().cloned())
}

/// Sends `DeleteReplicationGroup`, with a final snapshot when one is named.
pub async fn delete(
    api: &Api,
    id: &str,
    final_snapshot: Option<&str>,
) -> Result<Option<ReplicationGroup>, AwsError> {
    let out = api
        .call(
            Operation::DeleteReplicationGroup,
            api.elasticache
                .delete_replication_group()
                .replication_group_id(id)
                .set_final_snapshot_identifier(final_snapshot.map(str::to_string))
                .send(),
        )
        .await?;
    Ok(out.replication_group().cloned())
}
