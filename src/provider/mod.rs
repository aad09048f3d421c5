//! The boundary between the reconciler and a cloud: a trait in domain terms
//! that returns the project's own types and classified errors, never SDK
//! types. The reconciler is written against [`Provider`]; the AWS adapter and
//! the in-memory [`fake::FakeProvider`] implement it.

pub mod fake;

use std::fmt;

use async_trait::async_trait;
use serde::Serialize;

use crate::crd::ClusterMode;
use crate::desired::{DesiredNetwork, DesiredParameterGroup, DesiredReplicationGroup, Ownership};

/// How the operator reacts to an error (DESIGN §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorClass {
    /// Rate limited: retry with jittered backoff.
    Throttled,
    /// 5xx, timeouts, resource in a transitional state: retry with capped backoff.
    Transient,
    /// The request cannot succeed as it is: wait for a spec change.
    Rejected,
    /// Capacity or quota: degraded, retry slowly.
    Capacity,
    /// The resource does not exist.
    NotFound,
    /// The resource exists but belongs to someone else: never touched.
    Conflict,
}

impl ErrorClass {
    /// Short label for metrics, Events and condition reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Throttled => "Throttled",
            ErrorClass::Transient => "Transient",
            ErrorClass::Rejected => "AwsRejected",
            ErrorClass::Capacity => "InsufficientCapacity",
            ErrorClass::NotFound => "NotFound",
            ErrorClass::Conflict => "Conflict",
        }
    }
}

/// A classified provider error. The message is safe to show: providers strip
/// anything that looks like a token before building one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ProviderError {
    pub class: ErrorClass,
    /// Wire error code, e.g. `InvalidParameterValue`, when there is one.
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl ProviderError {
    /// An error of `class` with an optional wire code.
    pub fn new(class: ErrorClass, code: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            class,
            code: code.map(str::to_string),
            message: redact_secrets(&message.into()),
        }
    }

    /// A resource that exists with another owner.
    pub fn conflict(what: &str, name: &str, owner: Option<&str>) -> Self {
        let owner = owner.unwrap_or("an owner outside this operator");
        Self::new(
            ErrorClass::Conflict,
            None,
            format!("{what} {name} already exists and belongs to {owner}; it is left untouched. Delete or rename it, or give this RedisCache another name"),
        )
    }
}

/// Replaces every run of 32 or more alphanumeric characters (the shape of an
/// AUTH token) so that an AWS message echoing a request never leaks one.
pub fn redact_secrets(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 32 {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in message.chars() {
        if c.is_ascii_alphanumeric() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// An AUTH token. Its `Debug` never shows the value, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(String);

impl AuthToken {
    /// Wraps a token value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for the Secret and the AWS request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

/// A host and port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub host: String,
    pub port: i32,
}

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

/// Progress of a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Confirmed gone.
    Gone,
    /// AWS is deleting it; ask again later.
    InProgress,
    /// It exists but is not ours: left alone, nothing more to do for us.
    NotOwned,
}

/// A cloud that can run caches.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Creates the parameter group if absent (refusing one owned by someone
    /// else) and brings its parameters to `desired`.
    async fn ensure_parameter_group(
        &self,
        owner: &Ownership,
        desired: &DesiredParameterGroup,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<ParameterGroupState, ProviderError>;

    /// Creates or checks the subnet group and the security group, and makes
    /// the ingress rules match `desired`.
    async fn ensure_network(
        &self,
        owner: &Ownership,
        desired: &DesiredNetwork,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<NetworkState, ProviderError>;

    /// The replication group `id`, `None` when it does not exist, `Conflict`
    /// when it exists with another owner.
    async fn observe_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
    ) -> Result<Option<ReplicationGroupState>, ProviderError>;

    /// Creates the replication group with `auth_token` (which the caller has
    /// already persisted).
    async fn create_replication_group(
        &self,
        owner: &Ownership,
        desired: &DesiredReplicationGroup,
        companions: &Companions,
        auth_token: &AuthToken,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<ReplicationGroupState, ProviderError>;

    /// Sends one modification of the replication group.
    async fn modify_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
        change: &ReplicationGroupChange,
    ) -> Result<ReplicationGroupState, ProviderError>;

    /// Sets the replica count of every shard (`IncreaseReplicaCount` or
    /// `DecreaseReplicaCount`, applied immediately).
    async fn modify_replica_count(
        &self,
        owner: &Ownership,
        id: &str,
        replicas_per_shard: i32,
    ) -> Result<ReplicationGroupState, ProviderError>;

    /// Sets the shard count (cluster mode); on a decrease `remove` names the
    /// node groups to drop.
    async fn modify_shard_count(
        &self,
        owner: &Ownership,
        id: &str,
        shards: i32,
        remove: &[String],
    ) -> Result<ReplicationGroupState, ProviderError>;

    /// Node types the group may be scaled to (up or down).
    async fn allowed_node_types(
        &self,
        owner: &Ownership,
        id: &str,
    ) -> Result<Vec<String>, ProviderError>;

    /// Sends a new AUTH token with `strategy`, applied immediately.
    async fn update_auth_token(
        &self,
        owner: &Ownership,
        id: &str,
        token: &AuthToken,
        strategy: AuthTokenStrategy,
    ) -> Result<ReplicationGroupState, ProviderError>;

    /// Adds and removes tags on the replication group.
    async fn update_tags(
        &self,
        owner: &Ownership,
        id: &str,
        change: &TagChange,
    ) -> Result<(), ProviderError>;

    /// Starts or follows the deletion of the replication group, with a final
    /// snapshot when one is named.
    async fn delete_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
        final_snapshot: Option<&str>,
    ) -> Result<Deletion, ProviderError>;

    /// Deletes the security group named `name` if it is ours.
    async fn delete_security_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, ProviderError>;

    /// Deletes the parameter group `name` if it is ours.
    async fn delete_parameter_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, ProviderError>;

    /// Deletes the subnet group `name` if it is ours.
    async fn delete_subnet_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shaped_runs_are_redacted_from_messages() {
        let token = "a".repeat(64);
        let m = redact_secrets(&format!("Invalid AuthToken {token} for group k8s-shop-x"));
        assert_eq!(m, "Invalid AuthToken [redacted] for group k8s-shop-x");
        let e = ProviderError::new(
            ErrorClass::Rejected,
            Some("InvalidParameterValue"),
            format!("bad {token}"),
        );
        assert!(!e.to_string().contains(&token));
    }

    #[test]
    fn auth_token_debug_hides_the_value() {
        let t = AuthToken::new("supersecretvalue");
        assert!(!format!("{t:?}").contains("supersecret"));
        assert_eq!(t.expose(), "supersecretvalue");
    }

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
