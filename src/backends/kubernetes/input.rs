//! What the Kubernetes backend needs to know about one cache, already
//! defaulted and validated. A stand-in: the main crate maps its `RedisCache`
//! and `RedisCacheClass` onto this struct.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};

/// Image used for `engine: valkey` when the class does not override it.
pub const DEFAULT_VALKEY_IMAGE: &str = "valkey/valkey:8.1";
/// Image used for `engine: redis` when the class does not override it.
pub const DEFAULT_REDIS_IMAGE: &str = "redis:7.4";
/// The port clients use unless the spec says otherwise.
pub const DEFAULT_PORT: u16 = 6379;
/// The port every Sentinel listens on (TLS).
pub const SENTINEL_PORT: u16 = 26379;
/// Largest `replicasPerShard` the backend accepts.
pub const MAX_REPLICAS: u8 = 5;

/// The server flavour; decides binary names and the default image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Redis OSS.
    Redis,
    /// Valkey, the Linux Foundation fork.
    Valkey,
}

impl Engine {
    /// The server binary inside the official image.
    pub fn server_binary(self) -> &'static str {
        match self {
            Engine::Redis => "redis-server",
            Engine::Valkey => "valkey-server",
        }
    }
    /// The Sentinel binary inside the official image.
    pub fn sentinel_binary(self) -> &'static str {
        match self {
            Engine::Redis => "redis-sentinel",
            Engine::Valkey => "valkey-sentinel",
        }
    }
    /// The command-line client inside the official image (used by probes and startup).
    pub fn cli_binary(self) -> &'static str {
        match self {
            Engine::Redis => "redis-cli",
            Engine::Valkey => "valkey-cli",
        }
    }
    /// The image used when the class does not name one.
    pub fn default_image(self) -> &'static str {
        match self {
            Engine::Redis => DEFAULT_REDIS_IMAGE,
            Engine::Valkey => DEFAULT_VALKEY_IMAGE,
        }
    }
    /// Name of the config file, as the engine's documentation calls it.
    pub fn config_file_name(self) -> &'static str {
        match self {
            Engine::Redis => "redis.conf",
            Engine::Valkey => "valkey.conf",
        }
    }
}

/// `spec.persistence`, mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Pure cache: nothing written to disk.
    None,
    /// RDB snapshots every `interval_seconds` (when at least one key changed).
    Snapshot {
        /// Seconds between snapshots.
        interval_seconds: u32,
    },
    /// Append-only file, fsync every second.
    AppendOnly,
}

impl Persistence {
    /// Whether a data volume must survive pod restarts.
    pub fn is_on(&self) -> bool {
        !matches!(self, Persistence::None)
    }
}

/// One cache, as the Kubernetes backend renders it.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheInput {
    /// `metadata.name` of the RedisCache.
    pub name: String,
    /// Namespace of the RedisCache; every object lives there.
    pub namespace: String,
    /// `metadata.uid` of the RedisCache.
    pub owner_uid: String,
    /// Server flavour.
    pub engine: Engine,
    /// `major.minor`, for status and Day-2 decisions.
    pub engine_version: String,
    /// The image to run (class override or [`Engine::default_image`]).
    pub image: String,
    /// `maxmemory` in bytes.
    pub memory_bytes: u64,
    /// `replicasPerShard`, 0..=[`MAX_REPLICAS`].
    pub replicas: u8,
    /// Spread pods over zones.
    pub multi_az: bool,
    /// Client port (TLS only).
    pub port: u16,
    /// `maxmemory-policy`.
    pub eviction_policy: String,
    /// Other settings, already allow-listed by the main crate (checked again here).
    pub parameters: BTreeMap<String, String>,
    /// Persistence mode.
    pub persistence: Persistence,
    /// Storage class for the data PVCs; `None` = the cluster default.
    pub storage_class_name: Option<String>,
    /// Size of each data PVC, a Kubernetes quantity such as `2Gi`.
    pub storage_size: String,
    /// Class override of the server container's resources.
    pub resources: Option<ResourceRequirements>,
    /// Class node selector for every pod.
    pub node_selector: BTreeMap<String, String>,
    /// Class tolerations for every pod.
    pub tolerations: Vec<Toleration>,
    /// redis_exporter image, when the class enables the exporter.
    pub exporter: Option<String>,
    /// `network.allowedCidrs`.
    pub allowed_cidrs: Vec<String>,
    /// Namespace the operator runs in (allowed through the NetworkPolicy).
    pub operator_namespace: String,
    /// Hash of everything that needs a restart to apply; a pod annotation, so
    /// the operator sees which pods run an old configuration.
    pub config_hash: String,
    /// `metadata.generation` the objects are rendered from.
    pub generation: i64,
}

impl CacheInput {
    /// StatefulSet of the data pods, also the primary Service.
    pub fn server_name(&self) -> String {
        format!("{}-redis", self.name)
    }
    /// Service selecting the replicas (reader endpoint).
    pub fn replicas_service_name(&self) -> String {
        format!("{}-redis-replicas", self.name)
    }
    /// Headless Service giving each data pod a stable DNS name.
    pub fn headless_service_name(&self) -> String {
        format!("{}-redis-headless", self.name)
    }
    /// Sentinel StatefulSet and its headless Service.
    pub fn sentinel_name(&self) -> String {
        format!("{}-redis-sentinel", self.name)
    }
    /// Secret holding `ca.crt`, `tls.crt`, `tls.key`.
    pub fn tls_secret_name(&self) -> String {
        format!("{}-redis-tls", self.name)
    }
    /// Secret holding the CA key, never mounted into a pod.
    pub fn ca_secret_name(&self) -> String {
        format!("{}-redis-ca", self.name)
    }
    /// Secret holding the ACL file and the replication credential.
    pub fn acl_secret_name(&self) -> String {
        format!("{}-redis-acl", self.name)
    }
    /// ConfigMap with the server/Sentinel configuration and scripts.
    pub fn config_map_name(&self) -> String {
        format!("{}-redis-config", self.name)
    }
    /// Name of the Sentinel master set (also used by clients that speak Sentinel).
    pub fn master_set_name(&self) -> String {
        self.name.clone()
    }
    /// Number of data pods.
    pub fn pod_count(&self) -> u8 {
        1 + self.replicas
    }
    /// Whether Sentinel runs (only with replicas: nothing to fail over to otherwise).
    pub fn has_sentinel(&self) -> bool {
        self.replicas > 0
    }
    /// `svc` DNS suffix of the namespace (without the cluster domain).
    fn ns_svc(&self) -> String {
        format!("{}.svc", self.namespace)
    }
    /// Fully qualified DNS name of data pod `i` (stable through the headless Service).
    pub fn pod_fqdn(&self, i: u8) -> String {
        format!(
            "{}-{i}.{}.{}.cluster.local",
            self.server_name(),
            self.headless_service_name(),
            self.ns_svc()
        )
    }
    /// Fully qualified DNS name of Sentinel pod `i`.
    pub fn sentinel_pod_fqdn(&self, i: u8) -> String {
        format!(
            "{}-{i}.{}.{}.cluster.local",
            self.sentinel_name(),
            self.sentinel_name(),
            self.ns_svc()
        )
    }
    /// Fully qualified DNS name of a Service of this namespace.
    pub fn service_fqdn(&self, service: &str) -> String {
        format!("{service}.{}.cluster.local", self.ns_svc())
    }
}

/// A cache for unit tests: `a` in namespace `team`, 256 MiB, Redis 7.4.
#[cfg(test)]
pub(crate) fn test_input(replicas: u8, persistence: Persistence) -> CacheInput {
    CacheInput {
        name: "a".into(),
        namespace: "team".into(),
        owner_uid: "uid-1".into(),
        engine: Engine::Redis,
        engine_version: "7.4".into(),
        image: DEFAULT_REDIS_IMAGE.into(),
        memory_bytes: 256 * 1024 * 1024,
        replicas,
        multi_az: replicas > 0,
        port: DEFAULT_PORT,
        eviction_policy: "allkeys-lru".into(),
        parameters: BTreeMap::from([
            ("tcp-keepalive".to_string(), "300".to_string()),
            ("timeout".to_string(), "0".to_string()),
        ]),
        persistence,
        storage_class_name: Some("fast".into()),
        storage_size: "2Gi".into(),
        resources: None,
        node_selector: BTreeMap::new(),
        tolerations: Vec::new(),
        exporter: None,
        allowed_cidrs: vec!["10.0.0.0/8".into()],
        operator_namespace: "redis-cache-operator".into(),
        config_hash: "abc123".into(),
        generation: 3,
    }
}
