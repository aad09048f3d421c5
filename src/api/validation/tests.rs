use super::*;
use crate::api::{
    ClassDefaults, EncryptionSpec, NetworkSpec, PersistenceSpec, ProviderKind, RedisCacheClassSpec,
};

fn class(defaults: Option<ClassDefaults>) -> RedisCacheClass {
    RedisCacheClass::new(
        "c",
        RedisCacheClassSpec {
            provider: ProviderKind::ElastiCache,
            defaults,
            allowed_namespaces: Vec::new(),
            allowed_namespace_selector: None,
            elasti_cache: None,
            kubernetes: None,
            upstash: None,
            azure: None,
        },
    )
}

fn cache(spec: serde_json::Value) -> RedisCache {
    RedisCache::new(
        "sessions",
        serde_json::from_value(spec).expect("spec deserializes"),
    )
}

fn fields(r: Result<PortableSpec, ValidationErrors>) -> Vec<String> {
    r.expect_err("spec must be refused")
        .0
        .into_iter()
        .map(|e| e.field)
        .collect()
}

#[test]
fn empty_spec_gets_every_portable_default() {
    let r = resolve(&cache(serde_json::json!({})), &class(None)).expect("valid");
    assert_eq!(r.engine, Engine::Valkey);
    assert_eq!(r.engine_version, None);
    assert_eq!(r.memory, None);
    assert_eq!(r.eviction_policy, EvictionPolicy::AllKeysLru);
    assert_eq!(r.persistence, Persistence::None);
    assert_eq!(r.cluster_mode, ClusterMode::Disabled);
    assert_eq!((r.shards, r.replicas_per_shard, r.port), (1, 1, 6379));
    assert!(r.multi_az, "one replica means Multi-AZ by default");
    assert!(r.at_rest_encryption);
    assert_eq!(r.parameters["tcp-keepalive"], "300");
    assert_eq!(r.parameters["timeout"], "0");
    assert!(!r.parameters.contains_key("maxmemory-policy"));
    assert_eq!(r.deletion_policy, DeletionPolicy::Delete);
    assert_eq!(r.secret_name, "sessions-redis");
    assert_eq!(r.rotation_grace_period, Duration::from_secs(3600));
    assert!(r.apply_immediately);
}

#[test]
fn class_defaults_apply_and_the_spec_wins() {
    let c = class(Some(ClassDefaults {
        engine: Some(Engine::Redis),
        memory: Some("1Gi".into()),
        deletion_policy: Some(DeletionPolicy::Snapshot),
        eviction_policy: Some(EvictionPolicy::AllKeysLfu),
    }));
    let r = resolve(&cache(serde_json::json!({})), &c).expect("valid");
    assert_eq!(r.engine, Engine::Redis);
    assert_eq!(r.memory, Some(1 << 30));
    assert_eq!(r.memory_field, "the class's defaults.memory");
    assert_eq!(r.deletion_policy, DeletionPolicy::Snapshot);
    assert_eq!(r.eviction_policy, EvictionPolicy::AllKeysLfu);
    let r = resolve(
        &cache(serde_json::json!({"engine": "valkey", "memory": "512Mi", "evictionPolicy": "volatile-ttl"})),
        &c,
    )
    .expect("valid");
    assert_eq!(r.engine, Engine::Valkey);
    assert_eq!(r.memory, Some(512 << 20));
    assert_eq!(r.memory_field, "spec.memory");
    assert_eq!(r.eviction_policy, EvictionPolicy::VolatileTtl);
}

#[test]
fn an_unset_engine_keeps_the_engine_the_cache_runs() {
    let mut c = cache(serde_json::json!({}));
    c.status = Some(crate::api::RedisCacheStatus {
        engine: Some("redis".into()),
        ..Default::default()
    });
    assert_eq!(
        resolve(&c, &class(None)).expect("valid").engine,
        Engine::Redis
    );
}

#[test]
fn maxmemory_policy_in_parameters_points_to_eviction_policy() {
    let e = resolve(
        &cache(serde_json::json!({"parameters": {"maxmemory-policy": "volatile-lru", "cluster-enabled": "yes", "Bad_Key": "1"}})),
        &class(None),
    )
    .expect_err("refused");
    let f: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        f,
        vec![
            "spec.parameters[Bad_Key]",
            "spec.parameters[cluster-enabled]",
            "spec.parameters[maxmemory-policy]"
        ]
    );
    assert!(
        e.0[2].message.contains("evictionPolicy: volatile-lru"),
        "{}",
        e.0[2].message
    );
}

#[test]
fn memory_must_parse_and_be_in_range() {
    assert_eq!(
        fields(resolve(
            &cache(serde_json::json!({"memory": "1GB"})),
            &class(None)
        )),
        vec!["spec.memory"]
    );
    assert_eq!(
        fields(resolve(
            &cache(serde_json::json!({"memory": "1Mi"})),
            &class(None)
        )),
        vec!["spec.memory"]
    );
}

#[test]
fn persistence_options_belong_to_snapshot() {
    let r = resolve(
        &cache(serde_json::json!({"persistence": {"mode": "Snapshot", "retention": "72h"}})),
        &class(None),
    )
    .expect("valid");
    assert_eq!(
        r.persistence,
        Persistence::Snapshot {
            interval: None,
            retention: Some(Duration::from_secs(72 * 3600))
        }
    );
    let mut c = cache(serde_json::json!({}));
    c.spec.persistence = Some(PersistenceSpec {
        mode: PersistenceMode::AppendOnly,
        snapshot_interval: Some("1h".into()),
        retention: None,
    });
    assert_eq!(fields(resolve(&c, &class(None))), vec!["spec.persistence"]);
}

#[test]
fn ranges_are_enforced_with_the_field_named() {
    let f = fields(resolve(
        &cache(serde_json::json!({"replicasPerShard": 9, "shards": 91, "port": 80})),
        &class(None),
    ));
    assert!(f.contains(&"spec.replicasPerShard".to_string()));
    assert!(f.contains(&"spec.shards".to_string()));
    assert!(f.contains(&"spec.port".to_string()));
}

#[test]
fn several_shards_enable_cluster_mode_but_not_when_disabled() {
    let r = resolve(&cache(serde_json::json!({"shards": 3})), &class(None)).expect("valid");
    assert_eq!(r.cluster_mode, ClusterMode::Enabled);
    let e = resolve(
        &cache(serde_json::json!({"shards": 3, "clusterMode": "Disabled"})),
        &class(None),
    )
    .expect_err("refused");
    assert_eq!(e.0[0].field, "spec.shards");
    assert!(e.0[0].message.contains("clusterMode: Enabled"));
}

#[test]
fn multi_az_needs_a_replica() {
    let r = resolve(
        &cache(serde_json::json!({"replicasPerShard": 0})),
        &class(None),
    )
    .expect("valid");
    assert!(!r.multi_az);
    assert_eq!(
        fields(resolve(
            &cache(serde_json::json!({"replicasPerShard": 0, "multiAZ": true})),
            &class(None)
        )),
        vec!["spec.multiAZ"]
    );
}

#[test]
fn open_world_cidr_is_refused_naming_its_index() {
    let mut c = cache(serde_json::json!({}));
    c.spec.network = Some(NetworkSpec {
        allowed_cidrs: Some(vec![
            "10.0.0.0/8".into(),
            "0.0.0.0/0".into(),
            "::/0".into(),
            "10.1.2.3".into(),
        ]),
        ..NetworkSpec::default()
    });
    let e = resolve(&c, &class(None)).expect_err("refused");
    let f: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        f,
        vec![
            "spec.network.allowedCidrs[1]",
            "spec.network.allowedCidrs[2]",
            "spec.network.allowedCidrs[3]"
        ]
    );
    assert!(e.0[0].message.contains("every address"));
}

#[test]
fn auth_durations_are_checked() {
    let c = cache(
        serde_json::json!({"auth": {"rotationPeriod": "30m", "rotationGracePeriod": "soon"}}),
    );
    assert_eq!(
        fields(resolve(&c, &class(None))),
        vec!["spec.auth.rotationPeriod", "spec.auth.rotationGracePeriod"]
    );
    let c =
        cache(serde_json::json!({"auth": {"rotationPeriod": "720h", "rotationGracePeriod": "2h"}}));
    let r = resolve(&c, &class(None)).expect("valid");
    assert_eq!(r.rotation_period, Some(Duration::from_secs(720 * 3600)));
    assert_eq!(r.rotation_grace_period, Duration::from_secs(7200));
}

#[test]
fn kms_key_needs_at_rest_encryption() {
    let mut c = cache(serde_json::json!({}));
    c.spec.encryption = Some(EncryptionSpec {
        at_rest: false,
        kms_key_id: Some("alias/cache".into()),
    });
    assert_eq!(
        fields(resolve(&c, &class(None))),
        vec!["spec.encryption.kmsKeyId"]
    );
}

#[test]
fn windows_must_parse_and_last_an_hour() {
    let c = cache(serde_json::json!({"maintenanceWindow": "sun:05:00-sun:05:30"}));
    assert_eq!(
        fields(resolve(&c, &class(None))),
        vec!["spec.maintenanceWindow"]
    );
    let c = cache(serde_json::json!({"maintenanceWindow": "sat:23:30-sun:00:30"}));
    assert!(resolve(&c, &class(None)).is_ok(), "windows may wrap around");
}

#[test]
fn extra_keys_and_tags_are_checked() {
    let c = cache(serde_json::json!({
        "connectionSecret": {"extraKeys": {
            "SPRING_DATA_REDIS_URL": "{uri}",
            "BAD": "{token}",
            "password": "{password}",
            "CA": "{caCert}"
        }},
        "tags": {"rediscache.dev/owner-uid": "x"}
    }));
    assert_eq!(
        fields(resolve(&c, &class(None))),
        vec![
            "spec.connectionSecret.extraKeys[BAD]",
            "spec.connectionSecret.extraKeys[password]",
            "spec.tags[rediscache.dev/owner-uid]"
        ]
    );
}
