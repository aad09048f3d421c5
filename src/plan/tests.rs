use super::*;

fn plan(yaml: &str) -> Vec<CachePlan> {
    let mut docs = Documents::default();
    docs.read("test.yaml", yaml).expect("parses");
    docs.plan("k8s").expect("plans")
}

const CLASS: &str = r#"
apiVersion: rediscache.dev/v1alpha1
kind: RedisCacheClass
metadata:
  name: aws-eu
  annotations: {rediscache.dev/is-default-class: "true"}
spec:
  provider: ElastiCache
  elastiCache:
    region: eu-west-1
    subnetIds: [subnet-0a]
    allowedCidrs: [10.0.0.0/16]
"#;

#[test]
fn plans_every_cache_document_with_its_class_and_skips_other_kinds() {
    let yaml = format!(
        r#"{CLASS}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: x}}
---
apiVersion: rediscache.dev/v1alpha1
kind: RedisCache
metadata: {{name: sessions, namespace: shop}}
spec: {{engine: valkey, shards: 2, memory: 1Gi}}
---
apiVersion: rediscache.dev/v1alpha1
kind: RedisCache
metadata: {{name: bad}}
spec: {{shards: 3, clusterMode: Disabled}}
"#
    );
    let mut docs = Documents::default();
    docs.read("test.yaml", &yaml).expect("parses");
    assert_eq!(docs.skipped.len(), 1);
    let plans = docs.plan("k8s").expect("plans");
    assert_eq!(plans.len(), 2);
    let ok = &plans[0];
    assert_eq!(ok.resource, "RedisCache shop/sessions");
    assert_eq!(ok.class.as_deref(), Some("aws-eu"));
    assert_eq!(ok.provider, Some(ProviderKind::ElastiCache));
    let keys = &ok.secret.as_ref().expect("secret").keys;
    assert!(keys.contains(&"uri".to_string()));
    let text = render_text(&plans);
    assert!(text.contains("cluster mode Enabled, 2 shard(s)"), "{text}");
    assert!(
        text.contains("on cache.t4g.small"),
        "memory maps to a node type: {text}"
    );
    assert!(
        text.contains("subnet group       k8s-shop-sessions-"),
        "{text}"
    );
    assert!(text.contains("RedisCache default/bad: INVALID"));
    assert!(text.contains("spec.shards"));
}

#[test]
fn without_a_class_the_built_in_default_is_used_and_said() {
    let plans = plan(
        "apiVersion: rediscache.dev/v1alpha1\nkind: RedisCache\nmetadata: {name: a}\nspec: {}\n",
    );
    let text = render_text(&plans);
    assert!(text.contains("the built-in default"), "{text}");
    assert!(text.contains("StatefulSet default/a-redis"), "{text}");
    assert!(plans[0].errors.is_empty());
}

#[test]
fn unknown_fields_and_bad_enums_are_named_by_path() {
    let plans = plan(
        "apiVersion: rediscache.dev/v1alpha1\nkind: RedisCache\nmetadata: {name: a}\nspec: {nodeTyp: cache.t4g.small}\n---\napiVersion: rediscache.dev/v1alpha1\nkind: RedisCache\nmetadata: {name: b}\nspec: {deletionPolicy: Destroy}\n",
    );
    assert_eq!(plans[0].errors[0].field, "spec.nodeTyp");
    assert!(
        plans[0].errors[0]
            .message
            .contains("did you mean spec.nodeType?"),
        "{}",
        plans[0].errors[0].message
    );
    assert_eq!(plans[1].errors[0].field, "spec.deletionPolicy");
    assert!(
        plans[1].errors[0].message.contains("Destroy"),
        "{}",
        plans[1].errors[0].message
    );
}

#[test]
fn class_documents_are_checked_too() {
    let plans = plan(
        "apiVersion: rediscache.dev/v1alpha1\nkind: RedisCacheClass\nmetadata: {name: c}\nspec: {provider: ElastiCache, elastiCache: {region: eu-west-1, subnetId: [subnet-1]}}\n---\napiVersion: rediscache.dev/v1alpha1\nkind: RedisCacheClass\nmetadata: {name: d}\nspec: {provider: Azure}\n",
    );
    assert_eq!(plans[0].resource, "RedisCacheClass c");
    assert_eq!(plans[0].errors[0].field, "spec.elastiCache.subnetId");
    assert!(plans[0].errors[0]
        .message
        .contains("spec.elastiCache.subnetIds"));
    assert_eq!(plans[1].resource, "RedisCacheClass d");
    assert!(
        plans[1].errors[0].message.contains("azure"),
        "{}",
        plans[1].errors[0].message
    );
}

#[test]
fn default_class_resolution_none_one_two() {
    let cache = "apiVersion: rediscache.dev/v1alpha1\nkind: RedisCache\nmetadata: {name: a, namespace: shop}\nspec: {}\n";
    let class = |name: &str, default: bool| {
        format!(
            "apiVersion: rediscache.dev/v1alpha1\nkind: RedisCacheClass\nmetadata: {{name: {name}, annotations: {{rediscache.dev/is-default-class: \"{default}\"}}}}\nspec: {{provider: ElastiCache, elastiCache: {{region: eu-west-1, subnetIds: [subnet-0a], allowedCidrs: [10.0.0.0/16]}}}}\n---\n"
        )
    };
    let none = plan(&format!("{}{cache}", class("x", false)));
    assert!(none[0].errors[0]
        .message
        .contains("no RedisCacheClass is annotated"));
    let one = plan(&format!("{}{}{cache}", class("x", false), class("y", true)));
    assert_eq!(one[0].class.as_deref(), Some("y"));
    let two = plan(&format!("{}{}{cache}", class("x", true), class("y", true)));
    assert!(two[0].errors[0]
        .message
        .contains("several RedisCacheClasses are marked default (x, y)"));
}

#[test]
fn other_kinds_are_skipped_with_a_note() {
    let mut docs = Documents::default();
    docs.read(
        "app.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n---\n---\ndata: {a: b}\n",
    )
    .expect("parses");
    assert_eq!(
        docs.skipped[0].1.note("app.yaml"),
        "note: app.yaml: document 1 (apps/v1 Deployment web) is not a RedisCache or RedisCacheClass; skipped"
    );
    assert_eq!(docs.skipped[1].1.index, 3);
    assert!(matches!(docs.plan("k8s"), Err(PlanInputError::Empty(_))));
}
