//! The `RedisCache` custom resource (`rediscache.dev/v1alpha1`).
//!
//! The doc comments on spec fields become `kubectl explain` text, so they are
//! written for the people who apply these manifests. Admission-time rules
//! (OpenAPI patterns, ranges, CEL) live here; the operator repeats every rule
//! in [`crate::api::validation`], where the operator defaults are known too.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ProviderKind;

/// API group of every resource this operator serves.
pub const GROUP: &str = "rediscache.dev";
/// Finalizer that holds a RedisCache until its backend resources are cleaned up.
pub const FINALIZER: &str = "rediscache.dev/cleanup";
/// Field manager for every server-side apply this operator makes.
pub const FIELD_MANAGER: &str = "redis-cache-operator";
/// Annotation whose new value requests an AUTH token rotation.
pub const ROTATE_ANNOTATION: &str = "rediscache.dev/rotate-auth-token";

/// A production-grade Redis or Valkey cache on the backend its class names
/// (ElastiCache, in-cluster, Upstash, Azure), and a Secret holding a
/// ready-to-use TLS connection URI.
// clippy reads the repeated `type_ = ...` of each printcolumn as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "rediscache.dev",
    version = "v1alpha1",
    kind = "RedisCache",
    plural = "rediscaches",
    singular = "rediscache",
    shortname = "rcache",
    category = "redis",
    namespaced,
    status = "RedisCacheStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Redis/Valkey cache on the backend of its RedisCacheClass, with a connection Secret.",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Class", type_ = "string", json_path = ".status.className"),
    printcolumn(name = "Provider", type_ = "string", json_path = ".status.provider"),
    printcolumn(name = "Engine", type_ = "string", json_path = ".status.engine"),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.engineVersion"
    ),
    printcolumn(name = "Memory", type_ = "string", json_path = ".status.memory"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicasPerShard"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint.host"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(oldSelf.className) ? (has(self.className) && self.className == oldSelf.className) : true")
        .message("spec.className is immutable: a cache never moves to another class; create a new RedisCache instead")
        .field_path(".className"),
    validation = Rule::new("!has(self.clusterMode) || self.clusterMode == 'Enabled' || self.shards == 1")
        .message("spec.shards must be 1 when spec.clusterMode is Disabled; set clusterMode: Enabled to use several shards")
        .field_path(".shards"),
    validation = Rule::new("!has(self.multiAZ) || !self.multiAZ || self.replicasPerShard >= 1")
        .message("spec.multiAZ needs spec.replicasPerShard >= 1: a failover needs a replica to promote")
        .field_path(".multiAZ"),
    validation = Rule::new("(has(self.clusterMode) ? self.clusterMode : (self.shards > 1 ? 'Enabled' : 'Disabled')) == (has(oldSelf.clusterMode) ? oldSelf.clusterMode : (oldSelf.shards > 1 ? 'Enabled' : 'Disabled'))")
        .message("cluster mode is immutable (it is Enabled when spec.shards > 1 unless spec.clusterMode says otherwise); create a new RedisCache to change it")
        .field_path(".clusterMode"),
    validation = Rule::new("(has(self.encryption) ? self.encryption.atRest : true) == (has(oldSelf.encryption) ? oldSelf.encryption.atRest : true) && (has(self.encryption) && has(self.encryption.kmsKeyId) ? self.encryption.kmsKeyId : '') == (has(oldSelf.encryption) && has(oldSelf.encryption.kmsKeyId) ? oldSelf.encryption.kmsKeyId : '')")
        .message("spec.encryption is immutable; create a new RedisCache to change at-rest encryption or its KMS key")
        .field_path(".encryption"),
    validation = Rule::new("(has(self.network) && has(self.network.subnetGroupName) ? self.network.subnetGroupName : '') == (has(oldSelf.network) && has(oldSelf.network.subnetGroupName) ? oldSelf.network.subnetGroupName : '') && (has(self.network) && has(self.network.subnetIds) ? self.network.subnetIds : []) == (has(oldSelf.network) && has(oldSelf.network.subnetIds) ? oldSelf.network.subnetIds : [])")
        .message("spec.network.subnetGroupName and spec.network.subnetIds are immutable; create a new RedisCache to move it")
        .field_path(".network")
)]
#[serde(rename_all = "camelCase")]
pub struct RedisCacheSpec {
    /// The RedisCacheClass that says where this cache lives (ElastiCache, in the cluster, Upstash, Azure). Defaults to the class annotated `rediscache.dev/is-default-class: "true"`. Immutable: a cache never moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub class_name: Option<String>,

    /// Cache engine: `redis` or `valkey`. Defaults to the class's default, then to the engine the cache already runs, then to `valkey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,

    /// Engine version as `major.minor`, e.g. `7.1` for redis or `8.0` for valkey. Defaults to the newest the backend supports for the engine. Downgrades are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d+\.\d+$"), length(max = 16))]
    pub engine_version: Option<String>,

    /// Usable data memory (`maxmemory`) as a quantity, e.g. `512Mi` or `1Gi`. Each backend maps it: the smallest ElastiCache node type of the class's node family with at least this much memory, a container memory limit, an Upstash plan, an Azure SKU. Defaults to the class's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"),
        length(max = 32)
    )]
    pub memory: Option<String>,

    /// What Redis evicts when memory is full: `allkeys-lru` (default, right for a cache), `allkeys-lfu`, `allkeys-random`, `volatile-lru`, `volatile-lfu`, `volatile-random`, `volatile-ttl` or `noeviction`. Defaults to the class's default, then `allkeys-lru`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_policy: Option<EvictionPolicy>,

    /// Persistence of the dataset: `None` (a pure cache), `Snapshot` (periodic snapshots; on ElastiCache automatic daily backups kept for `retention`) or `AppendOnly` (an append-only file; not on ElastiCache). Defaults to `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<PersistenceSpec>,

    /// ElastiCache only: node type, e.g. `cache.t4g.small` or `cache.r7g.large`; overrides `memory`. Defaults to the node type `memory` maps to, then the class's node type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^cache\.[a-z0-9]+\.[a-z0-9]+$"), length(max = 64))]
    pub node_type: Option<String>,

    /// `Enabled` shards the keyspace over several node groups (clients must speak Redis Cluster); `Disabled` is one primary with replicas. Defaults to `Enabled` when `shards` > 1, else `Disabled`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_mode: Option<ClusterMode>,

    /// Number of shards (node groups), 1-90. Must be 1 when cluster mode is disabled.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 90))]
    pub shards: i32,

    /// Read replicas per shard, 0-5. Replicas give failover and read capacity.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 5))]
    pub replicas_per_shard: i32,

    /// Multi-AZ placement with automatic failover. Defaults to true when `replicasPerShard` >= 1; needs at least one replica.
    #[serde(default, rename = "multiAZ", skip_serializing_if = "Option::is_none")]
    pub multi_az: Option<bool>,

    /// TCP port the cache listens on. Immutable.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1024, max = 65535))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.port is immutable; create a new RedisCache to change it"))]
    pub port: i32,

    /// Encryption at rest. TLS in transit is always on and cannot be turned off. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionSpec>,

    /// AUTH token rotation. The token itself is generated by the operator and kept in the connection Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Redis parameters merged over the cache defaults (`tcp-keepalive: "300"`, `timeout: "0"`). Keys are lowercase parameter names; `cluster-enabled` follows `clusterMode` and `maxmemory-policy` is `evictionPolicy`. Each backend accepts its own list of parameters and refuses others by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 100))]
    #[x_kube(
        validation = Rule::new("self.all(k, k.matches('^[a-z0-9-]+$'))").message("spec.parameters keys must be lowercase Redis parameter names (letters, digits and '-')"),
        validation = Rule::new("!('cluster-enabled' in self)").message("spec.parameters must not set cluster-enabled: it follows spec.clusterMode"),
        validation = Rule::new("!('maxmemory-policy' in self)").message("spec.parameters must not set maxmemory-policy: use spec.evictionPolicy")
    )]
    pub parameters: BTreeMap<String, String>,

    /// Who may connect, and (ElastiCache only) where the nodes live. Defaults come from the class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,

    /// ElastiCache only: automatic snapshots (prefer `persistence: {mode: Snapshot}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// Weekly maintenance window in UTC, `ddd:hh24:mi-ddd:hh24:mi` (e.g. `sun:05:00-sun:06:00`), at least 60 minutes. AWS chooses one when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(sun|mon|tue|wed|thu|fri|sat):([01][0-9]|2[0-3]):[0-5][0-9]-(sun|mon|tue|wed|thu|fri|sat):([01][0-9]|2[0-3]):[0-5][0-9]$"
    ))]
    pub maintenance_window: Option<String>,

    /// Apply modifications at once (true) or in the next maintenance window (false).
    #[serde(default = "default_true")]
    pub apply_immediately: bool,

    /// What happens to the cache when this RedisCache is deleted: `Delete` removes everything, `Snapshot` takes a final snapshot first (where the backend can), `Retain` leaves the cache untouched and keeps the Secret. Defaults to the class's default, then `Delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// The Secret the operator writes the connection details to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret: Option<ConnectionSecretSpec>,

    /// Tags added to every backend resource of this cache (AWS, Azure) (at most 40). Keys starting with `rediscache.dev/` or `aws:` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('rediscache.dev/') && !k.startsWith('aws:'))").message("spec.tags keys starting with rediscache.dev/ or aws: are reserved"))]
    pub tags: BTreeMap<String, String>,
}

fn default_shards() -> i32 {
    1
}
fn default_replicas() -> i32 {
    1
}
fn default_port() -> i32 {
    6379
}
fn default_true() -> bool {
    true
}

/// Cache engine: `redis` or `valkey`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Redis OSS.
    Redis,
    /// Valkey, the open-source fork of Redis.
    Valkey,
}

impl Engine {
    /// The engine name ElastiCache uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Redis => "redis",
            Engine::Valkey => "valkey",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "redis" => Ok(Engine::Redis),
            "valkey" => Ok(Engine::Valkey),
            other => Err(format!("unknown engine {other:?}: use redis or valkey")),
        }
    }
}

/// `Enabled` shards the keyspace over several node groups (clients must speak Redis Cluster); `Disabled` is one primary with replicas. Defaults to `Enabled` when `shards` > 1, else `Disabled`. Immutable.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ClusterMode {
    /// Sharded: several node groups, clients speak the Redis Cluster protocol.
    Enabled,
    /// One primary with replicas.
    Disabled,
}

impl ClusterMode {
    /// The wire value ElastiCache uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterMode::Enabled => "Enabled",
            ClusterMode::Disabled => "Disabled",
        }
    }
}

/// What happens to the cache when this RedisCache is deleted: `Delete` removes everything, `Snapshot` takes a final snapshot first, `Retain` leaves the cache untouched and keeps the Secret.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the cache and everything created for it.
    Delete,
    /// Take a final snapshot, then delete.
    Snapshot,
    /// Leave the cache untouched and keep the connection Secret.
    Retain,
}

impl std::str::FromStr for DeletionPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Delete" => Ok(DeletionPolicy::Delete),
            "Snapshot" => Ok(DeletionPolicy::Snapshot),
            "Retain" => Ok(DeletionPolicy::Retain),
            other => Err(format!(
                "unknown deletion policy {other:?}: use Delete, Snapshot or Retain"
            )),
        }
    }
}

/// What Redis evicts when memory is full.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EvictionPolicy {
    /// Evict the least recently used keys (the right policy for a cache).
    #[serde(rename = "allkeys-lru")]
    AllKeysLru,
    /// Evict the least frequently used keys.
    #[serde(rename = "allkeys-lfu")]
    AllKeysLfu,
    /// Evict random keys.
    #[serde(rename = "allkeys-random")]
    AllKeysRandom,
    /// Evict the least recently used keys that have a TTL.
    #[serde(rename = "volatile-lru")]
    VolatileLru,
    /// Evict the least frequently used keys that have a TTL.
    #[serde(rename = "volatile-lfu")]
    VolatileLfu,
    /// Evict random keys that have a TTL.
    #[serde(rename = "volatile-random")]
    VolatileRandom,
    /// Evict the keys with the shortest TTL.
    #[serde(rename = "volatile-ttl")]
    VolatileTtl,
    /// Evict nothing: writes fail when memory is full.
    #[serde(rename = "noeviction")]
    NoEviction,
}

impl EvictionPolicy {
    /// The `maxmemory-policy` value.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionPolicy::AllKeysLru => "allkeys-lru",
            EvictionPolicy::AllKeysLfu => "allkeys-lfu",
            EvictionPolicy::AllKeysRandom => "allkeys-random",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::VolatileLfu => "volatile-lfu",
            EvictionPolicy::VolatileRandom => "volatile-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
            EvictionPolicy::NoEviction => "noeviction",
        }
    }
}

/// How the dataset is persisted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PersistenceMode {
    /// Nothing is persisted: a pure cache.
    None,
    /// Periodic snapshots (RDB; ElastiCache automatic backups).
    Snapshot,
    /// An append-only file (AOF).
    AppendOnly,
}

/// Persistence of the dataset.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode == 'Snapshot' || (!has(self.snapshotInterval) && !has(self.retention))").message("spec.persistence.snapshotInterval and retention apply to mode Snapshot only"))]
pub struct PersistenceSpec {
    /// `None`, `Snapshot` or `AppendOnly`.
    pub mode: PersistenceMode,
    /// Time between snapshots, as a duration like `1h` (mode `Snapshot`). ElastiCache takes one a day: leave it unset or `24h` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"), length(max = 32))]
    pub snapshot_interval: Option<String>,
    /// How long snapshots are kept, as a duration like `168h` (mode `Snapshot`). ElastiCache keeps whole days, 1 to 35 (rounded up); defaults to `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"), length(max = 32))]
    pub retention: Option<String>,
}

/// Encryption at rest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.kmsKeyId) || self.atRest").message("spec.encryption.kmsKeyId needs spec.encryption.atRest: true"))]
pub struct EncryptionSpec {
    /// Encrypt data at rest (snapshots and swap). Defaults to true.
    #[serde(default = "default_true")]
    pub at_rest: bool,
    /// KMS key id or ARN for at-rest encryption. Defaults to the AWS-managed key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub kms_key_id: Option<String>,
}

/// AUTH token rotation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Rotate the AUTH token this often, as a duration like `720h`; at least `1h`. No automatic rotation when unset. Rotate by hand by setting the annotation `rediscache.dev/rotate-auth-token` to a new value (e.g. the date). A rotation adds the new token on AWS (both work), then writes it to the Secret, then retires the old one after `rotationGracePeriod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1h')").message("spec.auth.rotationPeriod must be at least 1h"))]
    pub rotation_period: Option<String>,
    /// How long the old and the new token both work during a rotation, as a duration like `1h`. Defaults to `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"), length(max = 32))]
    pub rotation_grace_period: Option<String>,
}

/// Network placement and access.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.subnetGroupName) && has(self.subnetIds))").message("set either spec.network.subnetGroupName or spec.network.subnetIds, not both"))]
pub struct NetworkSpec {
    /// Name of an existing ElastiCache subnet group to use (never modified by the operator). Immutable. Mutually exclusive with `subnetIds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9-]+$"), length(min = 1, max = 255))]
    pub subnet_group_name: Option<String>,
    /// VPC subnet ids for a subnet group the operator creates, e.g. `subnet-0abc…`; use subnets in several AZs for Multi-AZ. Immutable. Mutually exclusive with `subnetGroupName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 20),
        inner(regex(pattern = r"^subnet-[0-9a-f]+$"))
    )]
    pub subnet_ids: Option<Vec<String>>,
    /// CIDR blocks allowed to connect on `port`, e.g. the cluster's node subnets. Never `/0`. Defaults to the operator's default CIDRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, !c.endsWith('/0'))").message("spec.network.allowedCidrs must not contain a /0 block: that would open the cache to every address"))]
    pub allowed_cidrs: Option<Vec<String>>,
    /// Security groups whose members may connect on `port`, e.g. the EKS node security group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(regex(pattern = r"^sg-[0-9a-f]+$")))]
    pub allowed_security_group_ids: Vec<String>,
    /// Extra security groups attached to the cache nodes as they are (not managed by the operator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4), inner(regex(pattern = r"^sg-[0-9a-f]+$")))]
    pub security_group_ids: Vec<String>,
}

/// Automatic snapshots.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Days to keep automatic snapshots, 0-35; 0 turns automatic snapshots off.
    #[serde(default)]
    #[schemars(range(min = 0, max = 35))]
    pub retention_days: i32,
    /// Daily snapshot window in UTC, `hh24:mi-hh24:mi` (e.g. `03:00-04:00`). AWS chooses one when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub window: Option<String>,
}

/// The connection Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSecretSpec {
    /// Name of the Secret. Defaults to `<metadata.name>-redis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub name: Option<String>,
    /// Extra keys rendered from templates, e.g. `SPRING_DATA_REDIS_URL: "{uri}"`. Placeholders: `{uri}`, `{host}`, `{port}`, `{password}`, `{readerHost}`, `{readerUri}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 50))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[-._a-zA-Z0-9]+$'))").message("spec.connectionSecret.extraKeys keys must be valid Secret keys (letters, digits, '-', '_' and '.')"))]
    pub extra_keys: BTreeMap<String, String>,
}

/// Observed state of a RedisCache. Conditions are the truth; `phase` is a summary for printer columns.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisCacheStatus {
    /// Summary: Pending, Provisioning, Ready, Updating, Degraded, Failed or Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Synced, SecretReady, Reachable, PendingChanges, SpecApproximated, and the backend's component conditions (ElastiCache: ParameterGroupReady, NetworkReady, ReplicationGroupReady).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The RedisCacheClass this cache uses, fixed at the first reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// The backend of that class (ElastiCache, Kubernetes, Upstash, Azure), fixed at the first reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderKind>,
    /// The backend's identity of the cache (ElastiCache: the replication group id), fixed before the first create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<String>,
    /// ElastiCache: replication group id (the same as backendId; kept for tools that read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_group_id: Option<String>,
    /// ElastiCache: ARN of the replication group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// Primary endpoint, or the configuration endpoint in cluster mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointStatus>,
    /// Reader endpoint (cluster mode disabled with replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_endpoint: Option<EndpointStatus>,
    /// Engine the backend reports (redis or valkey).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Engine version the backend reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// Usable memory the backend provides, as a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Node type, SKU or plan the backend reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    /// Shards the backend reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<i32>,
    /// Replicas per shard the backend reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_per_shard: Option<i32>,
    /// ElastiCache: the managed parameter group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_group_name: Option<String>,
    /// ElastiCache: the subnet group in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_group_name: Option<String>,
    /// ElastiCache: the managed security group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group_id: Option<String>,
    /// Name of the connection Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret: Option<String>,
    /// AUTH token rotation state (never the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthStatus>,
    /// Last health probe of the cache itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
}

/// Backend facts kept in status; the reconciler passes them through
/// without reading them ([`RedisCacheStatus::details`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendDetails {
    pub replication_group_id: Option<String>,
    pub arn: Option<String>,
    pub parameter_group_name: Option<String>,
    pub subnet_group_name: Option<String>,
    pub security_group_id: Option<String>,
}

impl RedisCacheStatus {
    /// The backend facts in this status.
    pub fn details(&self) -> BackendDetails {
        BackendDetails {
            replication_group_id: self.replication_group_id.clone(),
            arn: self.arn.clone(),
            parameter_group_name: self.parameter_group_name.clone(),
            subnet_group_name: self.subnet_group_name.clone(),
            security_group_id: self.security_group_id.clone(),
        }
    }

    /// Replaces the backend facts.
    pub fn set_details(&mut self, d: BackendDetails) {
        self.replication_group_id = d.replication_group_id;
        self.arn = d.arn;
        self.parameter_group_name = d.parameter_group_name;
        self.subnet_group_name = d.subnet_group_name;
        self.security_group_id = d.security_group_id;
    }

    /// The provider of a cache created before classes existed: the
    /// releases that had no classes ran caches on ElastiCache only.
    pub fn legacy_provider(&self) -> Option<ProviderKind> {
        (self.provider.is_none() && self.replication_group_id.is_some())
            .then_some(ProviderKind::ElastiCache)
    }

    /// The backend identity: `backendId`, or the replication group id
    /// written by releases before classes.
    pub fn backend_id(&self) -> Option<&str> {
        self.backend_id
            .as_deref()
            .or(self.replication_group_id.as_deref())
    }
}

/// Summary for printer columns: Pending, Provisioning, Ready, Updating, Degraded, Failed or Deleting. Conditions are the truth.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Accepted, nothing created yet.
    Pending,
    /// The backend is creating the cache.
    Provisioning,
    /// The cache is available and the Secret is complete.
    Ready,
    /// A change is being applied.
    Updating,
    /// Working but not as specified (e.g. capacity or quota problems).
    Degraded,
    /// Cannot proceed without a change (invalid spec, conflict, backend rejected).
    Failed,
    /// Being deleted.
    Deleting,
}

impl Phase {
    /// Every phase, for metrics.
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Provisioning,
        Phase::Ready,
        Phase::Updating,
        Phase::Degraded,
        Phase::Failed,
        Phase::Deleting,
    ];

    /// Name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Updating => "Updating",
            Phase::Degraded => "Degraded",
            Phase::Failed => "Failed",
            Phase::Deleting => "Deleting",
        }
    }
}

/// A host and port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct EndpointStatus {
    /// DNS name.
    pub host: String,
    /// TCP port.
    pub port: i32,
}

/// AUTH token rotation state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    /// When the last rotation completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,
    /// `Active` (one token), `Rotating` (the backend is adding the new token or regenerating the standby key; the Secret still holds the old one), `GracePeriod` (the Secret holds the new token; the old one works until the grace period ends) or `Finalizing` (the backend is retiring the old token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Backends with two access keys (Azure): which one the Secret holds, `Primary` or `Secondary`. A rotation regenerates the other, moves the Secret to it, and after the grace period regenerates this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_key: Option<String>,
}

/// Result of the last health probe.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// Whether the cache answered PING over TLS with the Secret's credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// Round-trip time of PING in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// used_memory from INFO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_memory_bytes: Option<i64>,
    /// maxmemory from INFO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<i64>,
    /// keyspace_hits / (hits + misses), as a decimal string like `0.93`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_ratio: Option<String>,
    /// evicted_keys from INFO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted_keys: Option<i64>,
    /// connected_clients from INFO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_clients: Option<i64>,
    /// When the probe ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Time>,
}
