//! The ElastiCache cloud as the backend sees it: a trait over the AWS calls
//! in the backend's own types, with classified errors and never SDK types.
//! The AWS adapter ([`super::aws::AwsElastiCache`]) and the in-memory fake
//! (`backends::fake`, for tests) implement it.

use async_trait::async_trait;
use serde::Serialize;

use super::desired::{DesiredNetwork, DesiredParameterGroup, DesiredReplicationGroup};
use crate::api::ClusterMode;
use crate::backends::{BackendError, Credential, Deletion, Endpoint, Ownership};

/// The lifecycle status AWS reports for a replication group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum GroupStatus {
    Creating,
    Available,
    Modifying,
    Deleting,
    Snapshotting,
    CreateFailed,
    /// Anything else AWS may say.
    Other(String),
}

impl GroupStatus {
    /// Parses AWS's lowercase status.
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "creating" => GroupStatus::Creating,
            "available" => GroupStatus::Available,
            "modifying" => GroupStatus::Modifying,
            "deleting" => GroupStatus::Deleting,
            "snapshotting" => GroupStatus::Snapshotting,
            "create-failed" => GroupStatus::CreateFailed,
            other => GroupStatus::Other(other.to_string()),
        }
    }

    /// AWS's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            GroupStatus::Creating => "creating",
            GroupStatus::Available => "available",
            GroupStatus::Modifying => "modifying",
            GroupStatus::Deleting => "deleting",
            GroupStatus::Snapshotting => "snapshotting",
            GroupStatus::CreateFailed => "create-failed",
            GroupStatus::Other(s) => s,
        }
    }

    /// Whether AWS is still working on the group (poll fast).
    pub fn in_transition(&self) -> bool {
        !matches!(self, GroupStatus::Available | GroupStatus::CreateFailed)
    }
}

/// What a replication group looks like on AWS now.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationGroupState {
    pub id: String,
    pub arn: Option<String>,
    pub status: GroupStatus,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub node_type: Option<String>,
    pub cluster_mode: Option<ClusterMode>,
    pub shards: i32,
    pub replicas_per_shard: i32,
    pub multi_az: bool,
    pub automatic_failover: bool,
    pub port: Option<i32>,
    pub at_rest_encryption: bool,
    pub transit_encryption: bool,
    pub auth_token_enabled: bool,
    pub parameter_group: Option<String>,
    /// Primary endpoint, or the configuration endpoint in cluster mode.
    pub endpoint: Option<Endpoint>,
    pub reader_endpoint: Option<Endpoint>,
    /// Names of the settings AWS will apply in the maintenance window (or
    /// is applying now), e.g. `nodeType`, `engineVersion`, `authToken`.
    pub pending_changes: Vec<String>,
    /// Node group (shard) ids, e.g. `0001`.
    pub node_group_ids: Vec<String>,
    /// Security groups attached to the nodes; empty when not reported.
    pub security_group_ids: Vec<String>,
    /// Subnet group the nodes live in, when reported.
    pub subnet_group: Option<String>,
    /// KMS key of at-rest encryption, when one was named.
    pub kms_key_id: Option<String>,
    /// Automatic snapshot retention in days, when reported.
    pub snapshot_retention_days: Option<i32>,
    /// Daily snapshot window, when reported.
    pub snapshot_window: Option<String>,
    /// Weekly maintenance window, when reported.
    pub maintenance_window: Option<String>,
    /// When AWS last changed the AUTH token(s).
    pub auth_token_last_modified: Option<jiff::Timestamp>,
    /// Tags on the replication group (ownership tags included).
    pub tags: std::collections::BTreeMap<String, String>,
}

impl ReplicationGroupState {
    /// An `available` group `id` with one shard, no replica, and nothing
    /// else reported: the base the fake and tests fill in.
    pub fn available(id: &str) -> Self {
        Self {
            id: id.to_string(),
            arn: None,
            status: GroupStatus::Available,
            engine: None,
            engine_version: None,
            node_type: None,
            cluster_mode: None,
            shards: 1,
            replicas_per_shard: 0,
            multi_az: false,
            automatic_failover: false,
            port: None,
            at_rest_encryption: false,
            transit_encryption: false,
            auth_token_enabled: false,
            parameter_group: None,
            endpoint: None,
            reader_endpoint: None,
            pending_changes: Vec::new(),
            node_group_ids: Vec::new(),
            security_group_ids: Vec::new(),
            subnet_group: None,
            kms_key_id: None,
            snapshot_retention_days: None,
            snapshot_window: None,
            maintenance_window: None,
            auth_token_last_modified: None,
            tags: std::collections::BTreeMap::new(),
        }
    }

    /// Whether AWS lists `name` among the changes it has not applied yet.
    pub fn is_pending(&self, name: &str) -> bool {
        self.pending_changes.iter().any(|p| p == name)
    }
}

/// The companions the replication group is created with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Companions {
    pub parameter_group: String,
    pub subnet_group: String,
    /// The managed security group first, then the extra ones.
    pub security_group_ids: Vec<String>,
}

/// The parameter group after `ensure`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterGroupState {
    pub name: String,
    pub family: String,
}

/// The network after `ensure`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkState {
    pub subnet_group_name: String,
    pub security_group_id: String,
}

/// Settings of a replication group to change; `None` leaves a setting alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicationGroupChange {
    /// Engine name (`redis` → `valkey` is an upgrade AWS allows).
    pub engine: Option<String>,
    pub node_type: Option<String>,
    pub engine_version: Option<String>,
    pub parameter_group: Option<String>,
    pub security_group_ids: Option<Vec<String>>,
    pub snapshot_retention_days: Option<i32>,
    pub snapshot_window: Option<String>,
    pub maintenance_window: Option<String>,
    pub multi_az: Option<bool>,
    pub automatic_failover: Option<bool>,
    pub apply_immediately: bool,
}

impl ReplicationGroupChange {
    /// Spec names of the settings this change carries, for Events and logs.
    pub fn fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut named = |set: bool, name| {
            if set {
                out.push(name);
            }
        };
        named(self.engine.is_some(), "engine");
        named(self.engine_version.is_some(), "engineVersion");
        named(self.node_type.is_some(), "nodeType");
        named(self.parameter_group.is_some(), "parameterGroup");
        named(self.security_group_ids.is_some(), "securityGroups");
        named(
            self.snapshot_retention_days.is_some(),
            "backup.retentionDays",
        );
        named(self.snapshot_window.is_some(), "backup.window");
        named(self.maintenance_window.is_some(), "maintenanceWindow");
        named(self.multi_az.is_some(), "multiAZ");
        named(self.automatic_failover.is_some(), "automaticFailover");
        out
    }

    /// Whether the change carries no setting at all.
    pub fn is_empty(&self) -> bool {
        self.fields().is_empty()
    }
}

/// How `update_auth_token` treats the token(s) AWS holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthTokenStrategy {
    /// Add the new token; the current one keeps working.
    Rotate,
    /// Make the given token the only one (allowed only after `Rotate`).
    Set,
}

impl AuthTokenStrategy {
    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthTokenStrategy::Rotate => "ROTATE",
            AuthTokenStrategy::Set => "SET",
        }
    }
}

/// Tag changes on the replication group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagChange {
    /// Tags to add or overwrite.
    pub add: std::collections::BTreeMap<String, String>,
    /// Keys to remove (never an ownership tag).
    pub remove: Vec<String>,
}

/// The ElastiCache and EC2 calls the backend makes.
#[async_trait]
pub trait ElastiCacheApi: Send + Sync + 'static {
    /// One cheap read that shows the credentials and endpoint work.
    async fn check_access(&self) -> Result<(), BackendError>;

    /// Changes whenever the provider read its companion listings again: a
    /// companion check made before may be out of date. Constant (the
    /// default) for a provider that reads companions on every ensure.
    fn companions_epoch(&self) -> u64 {
        0
    }

    /// Creates the parameter group if absent (refusing one owned by someone
    /// else) and brings its parameters to `desired`.
    async fn ensure_parameter_group(
        &self,
        owner: &Ownership,
        desired: &DesiredParameterGroup,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<ParameterGroupState, BackendError>;

    /// Creates or checks the subnet group and the security group, and makes
    /// the ingress rules match `desired`.
    async fn ensure_network(
        &self,
        owner: &Ownership,
        desired: &DesiredNetwork,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<NetworkState, BackendError>;

    /// The replication group `id`, `None` when it does not exist, `Conflict`
    /// when it exists with another owner.
    async fn observe_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
    ) -> Result<Option<ReplicationGroupState>, BackendError>;

    /// Creates the replication group with `auth_token` (which the caller has
    /// already persisted).
    async fn create_replication_group(
        &self,
        owner: &Ownership,
        desired: &DesiredReplicationGroup,
        companions: &Companions,
        auth_token: &Credential,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<ReplicationGroupState, BackendError>;

    /// Sends one modification of the replication group.
    async fn modify_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
        change: &ReplicationGroupChange,
    ) -> Result<ReplicationGroupState, BackendError>;

    /// Sets the replica count of every shard (`IncreaseReplicaCount` or
    /// `DecreaseReplicaCount`, applied immediately).
    async fn modify_replica_count(
        &self,
        owner: &Ownership,
        id: &str,
        replicas_per_shard: i32,
    ) -> Result<ReplicationGroupState, BackendError>;

    /// Sets the shard count (cluster mode); on a decrease `remove` names the
    /// node groups to drop.
    async fn modify_shard_count(
        &self,
        owner: &Ownership,
        id: &str,
        shards: i32,
        remove: &[String],
    ) -> Result<ReplicationGroupState, BackendError>;

    /// Node types the group may be scaled to (up or down).
    async fn allowed_node_types(
        &self,
        owner: &Ownership,
        id: &str,
    ) -> Result<Vec<String>, BackendError>;

    /// Sends a new AUTH token with `strategy`, applied immediately.
    async fn update_auth_token(
        &self,
        owner: &Ownership,
        id: &str,
        token: &Credential,
        strategy: AuthTokenStrategy,
    ) -> Result<ReplicationGroupState, BackendError>;

    /// Adds and removes tags on the replication group.
    async fn update_tags(
        &self,
        owner: &Ownership,
        id: &str,
        change: &TagChange,
    ) -> Result<(), BackendError>;

    /// Starts or follows the deletion of the replication group, with a final
    /// snapshot when one is named.
    async fn delete_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
        final_snapshot: Option<&str>,
    ) -> Result<Deletion, BackendError>;

    /// Deletes the security group named `name` if it is ours.
    async fn delete_security_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, BackendError>;

    /// Deletes the parameter group `name` if it is ours.
    async fn delete_parameter_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, BackendError>;

    /// Deletes the subnet group `name` if it is ours.
    async fn delete_subnet_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_and_know_transitions() {
        assert_eq!(GroupStatus::parse("available"), GroupStatus::Available);
        assert!(!GroupStatus::Available.in_transition());
        assert!(GroupStatus::parse("modifying").in_transition());
        assert_eq!(GroupStatus::parse("snapshotting").as_str(), "snapshotting");
        assert_eq!(
            GroupStatus::parse("weird"),
            GroupStatus::Other("weird".into())
        );
    }
}
