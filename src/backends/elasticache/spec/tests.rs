use super::*;
use crate::api::validation::resolve as portable;
use crate::api::{ProviderKind, RedisCacheClass, RedisCacheClassSpec};

fn ec() -> ElastiCacheClass {
    ElastiCacheClass {
        region: "eu-west-1".into(),
        subnet_ids: vec!["subnet-0a1".into(), "subnet-0b2".into()],
        allowed_cidrs: vec!["10.0.0.0/16".into()],
        ..ElastiCacheClass::default()
    }
}

fn class(ec: ElastiCacheClass) -> RedisCacheClass {
    RedisCacheClass::new(
        "aws",
        RedisCacheClassSpec {
            provider: ProviderKind::ElastiCache,
            defaults: None,
            allowed_namespaces: Vec::new(),
            allowed_namespace_selector: None,
            elasti_cache: Some(ec),
            kubernetes: None,
            upstash: None,
            azure: None,
        },
    )
}

fn resolve_json(
    spec: serde_json::Value,
    ec: ElastiCacheClass,
) -> Result<ResolvedSpec, ValidationErrors> {
    let cache = RedisCache::new("sessions", serde_json::from_value(spec).expect("spec"));
    let c = class(ec.clone());
    let p = portable(&cache, &c)?;
    resolve(&cache, &p, &ec)
}

fn fields(r: Result<ResolvedSpec, ValidationErrors>) -> Vec<String> {
    r.expect_err("refused")
        .0
        .into_iter()
        .map(|e| e.field)
        .collect()
}

#[test]
fn empty_spec_gets_the_class_network_and_elasticache_defaults() {
    let r = resolve_json(serde_json::json!({}), ec()).expect("valid");
    assert_eq!(r.engine, Engine::Valkey);
    assert_eq!(r.engine_version, "8.0");
    assert_eq!(r.family, "valkey8");
    assert_eq!(r.node_type, FALLBACK_NODE_TYPE);
    assert_eq!(r.parameters["maxmemory-policy"], "allkeys-lru");
    assert_eq!(
        r.placement,
        SubnetPlacement::Subnets(vec!["subnet-0a1".into(), "subnet-0b2".into()])
    );
    assert_eq!(r.allowed_cidrs, vec!["10.0.0.0/16".to_string()]);
    assert_eq!(r.snapshot_retention_days, 0);
}

#[test]
fn redis_defaults_to_7_1_and_family_follows_version() {
    let r = resolve_json(serde_json::json!({"engine": "redis"}), ec()).expect("valid");
    assert_eq!((r.engine_version.as_str(), r.family), ("7.1", "redis7"));
    let r = resolve_json(
        serde_json::json!({"engine": "valkey", "engineVersion": "7.2"}),
        ec(),
    )
    .expect("valid");
    assert_eq!(r.family, "valkey7");
    let e = resolve_json(
        serde_json::json!({"engine": "valkey", "engineVersion": "6.2"}),
        ec(),
    )
    .expect_err("unsupported");
    assert_eq!(e.0[0].field, "spec.engineVersion");
    assert!(e.0[0].message.contains("valkey 8.x"), "{}", e.0[0].message);
}

#[test]
fn memory_maps_to_a_node_type_and_node_type_overrides_it() {
    let r = resolve_json(serde_json::json!({"memory": "1Gi"}), ec()).expect("valid");
    assert_eq!(r.node_type, "cache.t4g.small");
    let r = resolve_json(
        serde_json::json!({"memory": "1Gi"}),
        ElastiCacheClass {
            node_family: Some("r7g".into()),
            ..ec()
        },
    )
    .expect("valid");
    assert_eq!(r.node_type, "cache.r7g.large");
    let r = resolve_json(
        serde_json::json!({"memory": "1Gi", "nodeType": "cache.m7g.large"}),
        ec(),
    )
    .expect("valid");
    assert_eq!(r.node_type, "cache.m7g.large");
    let r = resolve_json(
        serde_json::json!({}),
        ElastiCacheClass {
            node_type: Some("cache.t4g.medium".into()),
            ..ec()
        },
    )
    .expect("valid");
    assert_eq!(r.node_type, "cache.t4g.medium");
    assert_eq!(
        fields(resolve_json(
            serde_json::json!({"memory": "8Gi"}),
            ElastiCacheClass {
                node_family: Some("t4g".into()),
                ..ec()
            }
        )),
        vec!["spec.memory"]
    );
}

#[test]
fn persistence_maps_to_backups_and_append_only_is_refused() {
    let r = resolve_json(
        serde_json::json!({"persistence": {"mode": "Snapshot", "retention": "72h"}}),
        ec(),
    )
    .expect("valid");
    assert_eq!(r.snapshot_retention_days, 3);
    let r = resolve_json(
        serde_json::json!({"persistence": {"mode": "Snapshot"}}),
        ec(),
    )
    .expect("valid");
    assert_eq!(r.snapshot_retention_days, 1);
    let e = resolve_json(
        serde_json::json!({"persistence": {"mode": "AppendOnly"}}),
        ec(),
    )
    .expect_err("refused");
    assert_eq!(e.0[0].field, "spec.persistence.mode");
    assert!(e.0[0].message.contains("Snapshot"), "{}", e.0[0].message);
    assert_eq!(
        fields(resolve_json(
            serde_json::json!({"persistence": {"mode": "Snapshot", "snapshotInterval": "1h"}}),
            ec()
        )),
        vec!["spec.persistence.snapshotInterval"]
    );
    let r = resolve_json(serde_json::json!({"backup": {"retentionDays": 5}}), ec()).expect("valid");
    assert_eq!(
        r.snapshot_retention_days, 5,
        "the older backup block still works"
    );
}

#[test]
fn missing_subnets_and_cidrs_are_explained() {
    let f = fields(resolve_json(
        serde_json::json!({}),
        ElastiCacheClass {
            region: "eu-west-1".into(),
            ..ElastiCacheClass::default()
        },
    ));
    assert_eq!(f, vec!["spec.network", "spec.network.allowedCidrs"]);
}

#[test]
fn subnet_group_and_ids_are_exclusive_and_ids_are_checked() {
    assert_eq!(
        fields(resolve_json(
            serde_json::json!({"network": {"subnetGroupName": "shared", "subnetIds": ["subnet-1"]}}),
            ec()
        )),
        vec!["spec.network"]
    );
    assert_eq!(
        fields(resolve_json(
            serde_json::json!({"network": {"subnetIds": ["subnet-0a", "sub-1"], "allowedSecurityGroupIds": ["sg-XYZ"]}}),
            ec()
        )),
        vec![
            "spec.network.subnetIds[1]",
            "spec.network.allowedSecurityGroupIds[0]"
        ]
    );
    let r = resolve_json(
        serde_json::json!({"network": {"subnetGroupName": "shared"}}),
        ec(),
    )
    .expect("valid");
    assert_eq!(r.placement, SubnetPlacement::ExistingGroup("shared".into()));
}

#[test]
fn backup_window_and_class_tags() {
    assert_eq!(
        fields(resolve_json(
            serde_json::json!({"backup": {"retentionDays": 36, "window": "25:00-26:00"}}),
            ec()
        )),
        vec!["spec.backup.retentionDays", "spec.backup.window"]
    );
    let r = resolve_json(
        serde_json::json!({"tags": {"team": "shop"}}),
        ElastiCacheClass {
            tags: BTreeMap::from([
                ("cost-center".into(), "42".into()),
                ("team".into(), "platform".into()),
            ]),
            ..ec()
        },
    )
    .expect("valid");
    assert_eq!(r.tags["cost-center"], "42");
    assert_eq!(r.tags["team"], "shop", "the cache's own tag wins");
}
