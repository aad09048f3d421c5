//! The CRD: the committed YAML matches the code, and the admission rules
//! (OpenAPI and CEL, evaluated here with kube's CEL validator) refuse what
//! DESIGN §3 says they must.

use kube::core::cel::Validator;
use kube::CustomResourceExt;
use redis_cache_operator::api::{crd_yaml, RedisCache, RedisCacheClass};
use serde::Deserialize;
use serde_json::{json, Value};

const COMMITTED: &str = include_str!("../crds/rediscache.dev_rediscaches.yaml");
const CLASS_COMMITTED: &str = include_str!("../crds/rediscache.dev_rediscacheclasses.yaml");

fn schema() -> Value {
    let crd = serde_json::to_value(RedisCache::crd()).expect("crd serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn cache(spec: Value) -> Value {
    json!({"apiVersion": "rediscache.dev/v1alpha1", "kind": "RedisCache",
           "metadata": {"name": "c", "namespace": "ns"}, "spec": spec})
}

/// Messages of the rules `new` breaks (on update when `old` is given).
fn violations(new: Value, old: Option<Value>) -> Vec<String> {
    let old = old.map(cache);
    match Validator::new().validate(&schema(), &cache(new), old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .as_slice()
            .iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

#[test]
fn committed_crd_matches_the_code() {
    let generated = crd_yaml().expect("crd renders");
    let committed = format!("{COMMITTED}---\n{CLASS_COMMITTED}");
    assert!(
        generated == committed,
        "crds/ is stale: run `scripts/regenerate` (it splits `redis-cache-operator crd` into crds/rediscache.dev_rediscaches.yaml and crds/rediscache.dev_rediscacheclasses.yaml and copies them into the chart)"
    );
}

#[test]
fn crd_has_names_columns_status_and_list_map_conditions() {
    let crd = serde_json::to_value(RedisCache::crd()).expect("crd serializes");
    let names = &crd["spec"]["names"];
    assert_eq!(names["shortNames"], json!(["rcache"]));
    assert_eq!(names["categories"], json!(["redis"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Status", "Class", "Provider", "Engine", "Version", "Memory", "Replicas", "Endpoint",
            "Age"
        ]
    );
    let conditions =
        &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["replicasPerShard"]["maximum"].as_f64(), Some(5.0));
    assert_eq!(spec["shards"]["maximum"].as_f64(), Some(90.0));
    assert_eq!(spec["port"]["default"], 6379);
    assert_eq!(spec["engine"]["enum"], json!(["redis", "valkey"]));
    for field in [
        "className",
        "memory",
        "evictionPolicy",
        "persistence",
        "engine",
        "nodeType",
        "shards",
        "replicasPerShard",
        "multiAZ",
        "parameters",
        "network",
        "deletionPolicy",
    ] {
        let d = spec[field]["description"].as_str().unwrap_or_default();
        assert!(
            d.len() > 20,
            "spec.{field} needs a description for kubectl explain"
        );
    }
}

#[test]
fn examples_pass_admission() {
    for file in [
        "examples/dev.yaml",
        "examples/staging.yaml",
        "examples/production.yaml",
        "examples/app-deployment.yaml",
        "examples/upstash-vercel.yaml",
        "examples/azure-managed.yaml",
    ] {
        let text = std::fs::read_to_string(file).expect("example exists");
        // The RedisCache of the file (app-deployment.yaml has a Deployment too).
        let doc = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).expect("example parses"))
            .find(|d| d["kind"] == "RedisCache")
            .expect("a RedisCache in the example");
        assert_eq!(
            violations(doc["spec"].clone(), None),
            Vec::<String>::new(),
            "{file}"
        );
        // An update that changes nothing passes the transition rules too.
        assert_eq!(
            violations(doc["spec"].clone(), Some(doc["spec"].clone())),
            Vec::<String>::new(),
            "{file}"
        );
    }
}

#[test]
fn cross_field_rules_refuse_impossible_specs() {
    let v = violations(json!({"shards": 3, "clusterMode": "Disabled"}), None);
    assert!(
        v.iter().any(|m| m.contains("spec.shards must be 1")),
        "{v:?}"
    );
    let v = violations(json!({"replicasPerShard": 0, "multiAZ": true}), None);
    assert!(v.iter().any(|m| m.contains("multiAZ")), "{v:?}");
    let v = violations(
        json!({"network": {"allowedCidrs": ["10.0.0.0/8", "0.0.0.0/0"]}}),
        None,
    );
    assert!(v.iter().any(|m| m.contains("/0")), "{v:?}");
    let v = violations(
        json!({"network": {"subnetGroupName": "g", "subnetIds": ["subnet-0a"]}}),
        None,
    );
    assert!(v.iter().any(|m| m.contains("not both")), "{v:?}");
    let v = violations(json!({"parameters": {"cluster-enabled": "yes"}}), None);
    assert!(v.iter().any(|m| m.contains("cluster-enabled")), "{v:?}");
    let v = violations(json!({"auth": {"rotationPeriod": "30m"}}), None);
    assert!(v.iter().any(|m| m.contains("at least 1h")), "{v:?}");
    let v = violations(
        json!({"encryption": {"atRest": false, "kmsKeyId": "alias/x"}}),
        None,
    );
    assert!(v.iter().any(|m| m.contains("kmsKeyId")), "{v:?}");
    let v = violations(json!({"tags": {"rediscache.dev/owner-uid": "x"}}), None);
    assert!(v.iter().any(|m| m.contains("reserved")), "{v:?}");
}

#[test]
fn immutable_fields_cannot_change() {
    let base = json!({"shards": 1, "port": 6379, "network": {"subnetIds": ["subnet-0a"]}});
    let change = |patch: Value| {
        let mut new = base.clone();
        json_patch::merge(&mut new, &patch);
        violations(new, Some(base.clone()))
    };
    assert!(change(json!({"port": 6380}))
        .iter()
        .any(|m| m.contains("spec.port is immutable")));
    // Going from 1 to 2 shards would switch cluster mode on implicitly.
    assert!(change(json!({"shards": 2}))
        .iter()
        .any(|m| m.contains("cluster mode is immutable")));
    assert!(change(json!({"clusterMode": "Enabled"}))
        .iter()
        .any(|m| m.contains("cluster mode is immutable")));
    assert!(change(json!({"encryption": {"atRest": false}}))
        .iter()
        .any(|m| m.contains("encryption is immutable")));
    assert!(change(json!({"network": {"subnetIds": ["subnet-0b"]}}))
        .iter()
        .any(|m| m.contains("immutable")));
    assert!(
        change(json!({"network": {"subnetIds": null, "subnetGroupName": "g"}}))
            .iter()
            .any(|m| m.contains("immutable"))
    );
    // Mutable fields change freely.
    assert_eq!(
        change(json!({"replicasPerShard": 2, "nodeType": "cache.r7g.large"})),
        Vec::<String>::new()
    );
    // Spelling out a default is not a change.
    assert_eq!(
        change(json!({"clusterMode": "Disabled", "encryption": {"atRest": true}})),
        Vec::<String>::new()
    );
}

#[test]
fn class_name_is_immutable_once_set() {
    let base = json!({"className": "aws-eu"});
    assert!(
        violations(json!({"className": "aws-us"}), Some(base.clone()))
            .iter()
            .any(|m| m.contains("spec.className is immutable"))
    );
    assert!(
        violations(json!({}), Some(base.clone()))
            .iter()
            .any(|m| m.contains("spec.className is immutable")),
        "removing it is a change too"
    );
    assert_eq!(violations(base.clone(), Some(base)), Vec::<String>::new());
    assert_eq!(
        violations(json!({"className": "aws-eu"}), Some(json!({}))),
        Vec::<String>::new(),
        "naming a class for the first time is allowed (the operator checks it against status)"
    );
    assert!(violations(
        json!({"parameters": {"maxmemory-policy": "allkeys-lru"}}),
        None
    )
    .iter()
    .any(|m| m.contains("use spec.evictionPolicy")));
}

fn class_violations(new: Value, old: Option<Value>) -> Vec<String> {
    let crd = serde_json::to_value(RedisCacheClass::crd()).expect("crd serializes");
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let wrap = |spec: Value| {
        json!({"apiVersion": "rediscache.dev/v1alpha1", "kind": "RedisCacheClass",
               "metadata": {"name": "c"}, "spec": spec})
    };
    let old = old.map(wrap);
    match Validator::new().validate(&schema, &wrap(new), old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .as_slice()
            .iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

#[test]
fn class_has_one_provider_block_and_its_columns() {
    let ok = json!({"provider": "ElastiCache", "elastiCache": {"region": "eu-west-1"}});
    assert_eq!(class_violations(ok.clone(), None), Vec::<String>::new());
    assert!(class_violations(json!({"provider": "ElastiCache"}), None)
        .iter()
        .any(|m| m.contains("exactly one provider block")));
    assert!(class_violations(
        json!({"provider": "Kubernetes", "elastiCache": {"region": "eu-west-1"}}),
        None
    )
    .iter()
    .any(|m| m.contains("exactly one provider block")));
    assert!(class_violations(
        json!({"provider": "Kubernetes", "kubernetes": {}}),
        Some(ok)
    )
    .iter()
    .any(|m| m.contains("spec.provider is immutable")));
    let crd = serde_json::to_value(RedisCacheClass::crd()).expect("crd serializes");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["rcclass"]));
    let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Provider", "Default", "Ready", "Caches", "Age"]);
}
