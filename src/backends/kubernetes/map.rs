//! From a RedisCache (with its class's defaults applied) to what this
//! backend renders: the checks of DESIGN §4.2 and the mapping onto
//! [`CacheInput`]. Pure.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::config::allowed_parameter;
use super::input::{CacheInput, Engine, Persistence, MAX_REPLICAS};
use crate::api::validation::{self, Errors, PortableSpec, ValidationErrors};
use crate::api::{self, ClusterMode, KubernetesClass, RedisCache};
use kube::ResourceExt;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// `maxmemory` when neither the cache nor its class sets `memory`.
pub const DEFAULT_MEMORY: u64 = 256 * MIB;
/// Smallest `memory`: below this the server's own overhead dominates.
pub const MIN_MEMORY: u64 = 32 * MIB;
/// Largest `memory` on one pod; bigger datasets belong on a sharded backend.
pub const MAX_MEMORY: u64 = 64 * GIB;
/// Snapshot interval when `persistence.snapshotInterval` is unset.
pub const DEFAULT_SNAPSHOT_INTERVAL_SECS: u32 = 3600;
/// Default image of the redis_exporter sidecar.
pub const DEFAULT_EXPORTER_IMAGE: &str = "oliver006/redis_exporter:v1.67.0";

/// `major.minor` versions each engine's official image is offered at, newest
/// last (the default). Source: the tags of `valkey/valkey` and `redis` on
/// Docker Hub (the official images' pages list `8.1`, `8.0`, `7.2` and
/// `7.4`, `7.2`, `6.2`).
const VERSIONS: [(Engine, &[&str]); 2] = [
    (Engine::Valkey, &["7.2", "8.0", "8.1"]),
    (Engine::Redis, &["6.2", "7.2", "7.4"]),
];

fn engine(e: api::Engine) -> Engine {
    match e {
        api::Engine::Redis => Engine::Redis,
        api::Engine::Valkey => Engine::Valkey,
    }
}

fn versions(e: Engine) -> &'static [&'static str] {
    VERSIONS
        .iter()
        .find(|(x, _)| *x == e)
        .map_or(&[][..], |(_, v)| *v)
}

/// Refuses, by field path, what this backend cannot honour.
pub fn validate(cache: &RedisCache, spec: &PortableSpec) -> Result<(), ValidationErrors> {
    let mut errs = Errors::default();
    let s = &cache.spec;
    let e = engine(spec.engine);
    if let Some(v) = &spec.engine_version {
        if !versions(e).contains(&v.as_str()) {
            errs.add(
                "spec.engineVersion",
                format!(
                    "{} {v} is not offered by the in-cluster backend; use one of {}",
                    spec.engine.as_str(),
                    versions(e).join(", ")
                ),
            );
        }
    }
    if spec.shards != 1 || spec.cluster_mode == ClusterMode::Enabled {
        errs.add(
            "spec.shards",
            "the in-cluster backend runs one shard (a primary with replicas and Sentinel); for sharding use an ElastiCache or Azure class",
        );
    }
    if spec.replicas_per_shard < 0 || spec.replicas_per_shard > i32::from(MAX_REPLICAS) {
        errs.add(
            "spec.replicasPerShard",
            format!("must be 0 to {MAX_REPLICAS} on the in-cluster backend"),
        );
    }
    if !(1..=65535).contains(&spec.port) || spec.port == 26379 {
        errs.add(
            "spec.port",
            "must be a TCP port other than 26379 (the Sentinel port)",
        );
    }
    if s.node_type.is_some() {
        errs.add(
            "spec.nodeType",
            "is ElastiCache only; use spec.memory (maxmemory of the pods)",
        );
    }
    if let Some(n) = &s.network {
        if n.subnet_group_name.is_some()
            || n.subnet_ids.is_some()
            || !n.security_group_ids.is_empty()
            || !n.allowed_security_group_ids.is_empty()
        {
            errs.add(
                "spec.network",
                "only allowedCidrs applies in-cluster (subnets and security groups are ElastiCache only)",
            );
        }
    }
    if s.encryption
        .as_ref()
        .is_some_and(|e| e.kms_key_id.is_some())
    {
        errs.add(
            "spec.encryption.kmsKeyId",
            "is ElastiCache only; in-cluster data is on the volumes of the class's storage class",
        );
    }
    if s.backup.is_some() {
        errs.add(
            "spec.backup",
            "is ElastiCache only; use spec.persistence (Snapshot or AppendOnly) for data on disk",
        );
    }
    if s.maintenance_window.is_some() {
        errs.add(
            "spec.maintenanceWindow",
            "is ElastiCache and Azure only; in-cluster changes roll out at once, replicas first",
        );
    }
    if !spec.tags.is_empty() {
        errs.add(
            "spec.tags",
            "in-cluster objects carry labels, not tags; remove spec.tags",
        );
    }
    for name in spec.parameters.keys() {
        if !allowed_parameter(name)
            && !validation::DEFAULT_PARAMETERS
                .iter()
                .any(|(k, _)| k == name)
        {
            errs.add(
                format!("spec.parameters.{name}"),
                "is not a setting the in-cluster backend lets a cache change (ports, TLS, memory, persistence, replication and files are managed)",
            );
        }
    }
    if let Some(bytes) = spec.memory {
        if !(MIN_MEMORY..=MAX_MEMORY).contains(&bytes) {
            errs.add(
                spec.memory_field,
                "must be between 32Mi and 64Gi for one in-cluster pod (use a cloud class for more)",
            );
        }
    }
    if let Persistence::Snapshot { interval_seconds } = persistence(spec) {
        if interval_seconds < 60 {
            errs.add(
                "spec.persistence.snapshotInterval",
                "must be at least 1m in-cluster",
            );
        }
    }
    errs.finish(())
}

fn persistence(spec: &PortableSpec) -> Persistence {
    match &spec.persistence {
        validation::Persistence::None => Persistence::None,
        validation::Persistence::AppendOnly => Persistence::AppendOnly,
        validation::Persistence::Snapshot { interval, .. } => Persistence::Snapshot {
            interval_seconds: interval.map_or(DEFAULT_SNAPSHOT_INTERVAL_SECS, |d| {
                u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
            }),
        },
    }
}

/// The cache as this backend renders it (after [`validate`]).
pub fn cache_input(
    cache: &RedisCache,
    spec: &PortableSpec,
    class: &KubernetesClass,
    operator_namespace: &str,
) -> CacheInput {
    let e = engine(spec.engine);
    let version = spec
        .engine_version
        .clone()
        .or_else(|| versions(e).last().map(|v| (*v).to_string()))
        .unwrap_or_default();
    let class_image = match e {
        Engine::Valkey => class.valkey_image.clone(),
        Engine::Redis => class.redis_image.clone(),
    };
    let image = match (class_image, &spec.engine_version) {
        // A mirror named by the class: its tag wins unless the cache asks for a version.
        (Some(img), None) => img,
        (Some(img), Some(v)) => format!("{}:{v}", repository(&img)),
        (None, _) => format!("{}:{version}", repository(e.default_image())),
    };
    let memory = spec.memory.unwrap_or(DEFAULT_MEMORY);
    let persistence = persistence(spec);
    let replicas =
        u8::try_from(spec.replicas_per_shard.clamp(0, i32::from(MAX_REPLICAS))).unwrap_or(0);
    let mut input = CacheInput {
        name: cache.name_any(),
        namespace: cache.namespace().unwrap_or_default(),
        owner_uid: cache.uid().unwrap_or_default(),
        engine: e,
        engine_version: version,
        image,
        memory_bytes: memory,
        replicas,
        multi_az: spec.multi_az && replicas > 0,
        port: u16::try_from(spec.port).unwrap_or(super::input::DEFAULT_PORT),
        eviction_policy: spec.eviction_policy.as_str().to_string(),
        parameters: spec
            .parameters
            .iter()
            .filter(|(k, _)| allowed_parameter(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        persistence,
        storage_class_name: class.storage_class_name.clone(),
        storage_size: storage_size(memory),
        resources: class.resources.clone(),
        node_selector: class.node_selector.clone(),
        tolerations: class.tolerations.clone(),
        exporter: class.exporter.as_ref().filter(|x| x.enabled).map(|x| {
            x.image
                .clone()
                .unwrap_or_else(|| DEFAULT_EXPORTER_IMAGE.into())
        }),
        allowed_cidrs: spec.allowed_cidrs.clone().unwrap_or_default(),
        operator_namespace: operator_namespace.to_string(),
        config_hash: String::new(),
        generation: cache.metadata.generation.unwrap_or_default(),
    };
    input.config_hash = config_hash(&input);
    input
}

/// The image name without its tag (a registry port is not a tag).
fn repository(image: &str) -> &str {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    }
}

/// Data volume size: twice `memory` (an AOF rewrite or a snapshot being
/// written sits beside the current file), at least 1 GiB.
pub fn storage_size(memory: u64) -> String {
    format!("{}Gi", (2 * memory).div_ceil(GIB).max(1))
}

/// The pods' restart hash once the server certificate is known: a renewed
/// certificate changes it, so the pods roll (replicas first, then a
/// failover, then the old primary) and load the new one; Sentinels cannot
/// reload certificates at all.
pub fn with_certificate(config_hash: &str, cert_pem: &str) -> String {
    let mut h = Sha256::new();
    h.update(config_hash.as_bytes());
    h.update(cert_pem.as_bytes());
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Hash of everything a server must restart to apply: the image and the
/// settings rendered into its config file.
fn config_hash(input: &CacheInput) -> String {
    let mut h = Sha256::new();
    h.update(input.image.as_bytes());
    if let Ok(conf) = super::config::render_server_config(input) {
        h.update(conf.as_bytes());
    }
    h.update([input.replicas]);
    let digest = h.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ProviderKind, RedisCacheClass, RedisCacheClassSpec};

    fn class() -> RedisCacheClass {
        RedisCacheClass::new(
            "k",
            RedisCacheClassSpec {
                provider: ProviderKind::Kubernetes,
                defaults: None,
                allowed_namespaces: Vec::new(),
                allowed_namespace_selector: None,
                elasti_cache: None,
                kubernetes: Some(KubernetesClass::default()),
                upstash: None,
                azure: None,
            },
        )
    }

    fn cache(spec: &str) -> RedisCache {
        let mut c = RedisCache::new("a", serde_yaml_ng::from_str(spec).expect("spec"));
        c.metadata.namespace = Some("team".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    /// The field paths `validate` refuses for `spec`.
    fn refused(spec: &str) -> Vec<String> {
        let c = cache(spec);
        let portable = validation::resolve(&c, &class()).expect("portable fields are fine");
        match validate(&c, &portable) {
            Ok(()) => Vec::new(),
            Err(e) => e.0.into_iter().map(|f| f.field).collect(),
        }
    }

    #[test]
    fn sharding_and_cloud_only_fields_are_refused_by_path() {
        assert_eq!(refused("{}"), Vec::<String>::new());
        assert_eq!(
            refused("{shards: 3, clusterMode: Enabled}"),
            ["spec.shards"]
        );
        assert_eq!(refused("{nodeType: cache.t4g.small}"), ["spec.nodeType"]);
        assert_eq!(refused("{port: 26379}"), ["spec.port"]);
        assert_eq!(refused("{memory: 100Gi}"), ["spec.memory"]);
        assert_eq!(
            refused("{engineVersion: '6.2'}"),
            ["spec.engineVersion"],
            "valkey has no 6.2"
        );
        assert_eq!(
            refused("{engine: redis, engineVersion: '6.2'}"),
            Vec::<String>::new()
        );
        assert_eq!(
            refused("{parameters: {appendfsync: always}}"),
            ["spec.parameters.appendfsync"]
        );
        assert_eq!(
            refused("{parameters: {notify-keyspace-events: Ex}}"),
            Vec::<String>::new()
        );
        assert_eq!(refused("{tags: {team: a}}"), ["spec.tags"]);
    }

    #[test]
    fn the_input_follows_the_spec_and_the_class() {
        let c = cache("{engine: redis, memory: 1Gi, replicasPerShard: 2, multiAZ: true, persistence: {mode: Snapshot, snapshotInterval: 30m}, evictionPolicy: allkeys-lfu}");
        let mut k = class();
        k.spec.kubernetes = Some(KubernetesClass {
            redis_image: Some("mirror.local:5000/redis:7.4".into()),
            storage_class_name: Some("fast".into()),
            ..KubernetesClass::default()
        });
        let portable = validation::resolve(&c, &k).expect("fine");
        let block = k.spec.kubernetes.clone().unwrap_or_default();
        let input = cache_input(&c, &portable, &block, "ops");
        assert_eq!(input.image, "mirror.local:5000/redis:7.4");
        assert_eq!(input.memory_bytes, GIB);
        assert_eq!(input.replicas, 2);
        assert!(input.multi_az);
        assert_eq!(
            input.persistence,
            Persistence::Snapshot {
                interval_seconds: 1800
            }
        );
        assert_eq!(input.eviction_policy, "allkeys-lfu");
        assert_eq!(input.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(input.storage_size, "2Gi");
        assert_eq!(input.operator_namespace, "ops");
        // A version asked for keeps the mirror but changes the tag.
        let c = cache("{engine: redis, engineVersion: '7.2'}");
        let portable = validation::resolve(&c, &k).expect("fine");
        assert_eq!(
            cache_input(&c, &portable, &block, "ops").image,
            "mirror.local:5000/redis:7.2"
        );
        // The defaults: the official image at the newest tag, 256 MiB.
        let c = cache("{}");
        let portable = validation::resolve(&c, &class()).expect("fine");
        let input = cache_input(&c, &portable, &KubernetesClass::default(), "ops");
        assert_eq!(input.image, "valkey/valkey:8.1");
        assert_eq!(input.memory_bytes, DEFAULT_MEMORY);
        // Anything a restart must apply changes the hash.
        let c2 = cache("{memory: 512Mi}");
        let p2 = validation::resolve(&c2, &class()).expect("fine");
        assert_ne!(
            cache_input(&c2, &p2, &KubernetesClass::default(), "ops").config_hash,
            input.config_hash
        );
    }

    #[test]
    fn images_follow_the_class_mirror_and_the_version() {
        assert_eq!(repository("valkey/valkey:8.1"), "valkey/valkey");
        assert_eq!(
            repository("registry.local:5000/mirror/redis"),
            "registry.local:5000/mirror/redis"
        );
        assert_eq!(
            repository("registry.local:5000/mirror/redis:7.4"),
            "registry.local:5000/mirror/redis"
        );
    }

    #[test]
    fn storage_is_twice_memory_at_least_one_gib() {
        assert_eq!(storage_size(256 * MIB), "1Gi");
        assert_eq!(storage_size(GIB), "2Gi");
        assert_eq!(storage_size(3 * GIB / 2), "3Gi");
    }
}
