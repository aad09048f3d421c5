//! The binary as a user runs it: `crd`, `plan`, `rbac`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn operator(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_redis-cache-operator"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("binary finishes")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The platform team's class every example is planned with.
const CLASS: &str = "examples/classes/elasticache.yaml";

#[test]
fn crd_prints_the_committed_crd() {
    let out = operator(&["crd"], None);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}---\n{}",
            include_str!("../crds/rediscache.dev_rediscaches.yaml"),
            include_str!("../crds/rediscache.dev_rediscacheclasses.yaml")
        )
    );
}

#[test]
fn every_example_passes_plan() {
    for file in [
        "examples/dev.yaml",
        "examples/staging.yaml",
        "examples/production.yaml",
        "examples/app-deployment.yaml",
        "examples/upstash-vercel.yaml",
        "examples/azure-managed.yaml",
    ] {
        let out = operator(&["plan", "-f", CLASS, "-f", file], None);
        assert!(
            out.status.success(),
            "{file}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        assert!(stdout.contains("would create"), "{stdout}");
        assert!(stdout.contains("Secret "), "{stdout}");
    }
    let out = operator(
        &["plan", "-f", CLASS, "-f", "examples/production.yaml"],
        None,
    );
    let stdout = text(&out.stdout);
    for expected in [
        "cache.r5.large",
        "cluster mode Enabled, 2 shard(s) x 1 replica(s), Multi-AZ",
        "KMS key arn:aws:kms:",
        "keep 5 day(s), window 03:00-04:00",
        "notify-keyspace-events = Exe",
        "maxmemory-policy = allkeys-lru",
        "ingress tcp/6379 from 10.20.0.0/16",
        "final snapshot",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
}

#[test]
fn plan_skips_other_kinds_with_a_note_on_stderr() {
    let out = operator(
        &["plan", "-f", "examples/app-deployment.yaml", "-o", "json"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "note: examples/app-deployment.yaml: document 2 (apps/v1 Deployment catalog) \
         is not a RedisCache or RedisCacheClass; skipped\n"
    );
    let plans: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(plans.as_array().map(Vec::len), Some(1));
    assert_eq!(plans[0]["resource"], "RedisCache shop/catalog");
    assert_eq!(plans[0]["secret"]["name"], "catalog-redis");
    // A file of other kinds only is still refused.
    let out = operator(
        &["plan", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no RedisCache or RedisCacheClass in this input"),
        "{stderr}"
    );
}

#[test]
fn plan_json_is_machine_readable_and_never_holds_a_token() {
    let out = operator(
        &[
            "plan",
            "-f",
            CLASS,
            "-f",
            "examples/staging.yaml",
            "-o",
            "json",
        ],
        None,
    );
    assert!(out.status.success());
    let plans: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let plan = &plans[0];
    assert_eq!(plan["resource"], "RedisCache staging/sessions");
    assert_eq!(plan["class"], "aws-eu");
    assert_eq!(plan["provider"], "ElastiCache");
    let detail = &plan["planned"]["detail"];
    assert_eq!(detail["replicationGroup"]["shards"], 2);
    assert_eq!(detail["parameterGroup"]["family"], "valkey8");
    let keys = plan["secret"]["keys"].as_array().expect("keys");
    assert!(
        keys.contains(&serde_json::json!("password"))
            && keys.contains(&serde_json::json!("SPRING_DATA_REDIS_URL"))
    );
    assert!(plan["secret"].get("data").is_none());
}

#[test]
fn bad_manifests_are_refused_naming_the_field() {
    let cases = [
        ("shards: 3\n  clusterMode: Disabled", "spec.shards"),
        (
            "network: {allowedCidrs: [0.0.0.0/0]}",
            "spec.network.allowedCidrs[0]",
        ),
        ("replicasPerShard: 9", "spec.replicasPerShard"),
        ("nodeTyp: cache.t4g.small", "spec.nodeTyp"),
        ("deletionPolicy: Destroy", "spec.deletionPolicy"),
        ("nodeType: cache.t4g.small", "spec.nodeType"),
    ];
    for (spec, field) in cases {
        let manifest = format!("apiVersion: rediscache.dev/v1alpha1\nkind: RedisCache\nmetadata: {{name: bad}}\nspec:\n  {spec}\n");
        let out = operator(&["plan", "-f", "-"], Some(&manifest));
        assert_eq!(out.status.code(), Some(1), "{spec}");
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(&format!("✗ {field}:")),
            "{spec} -> {stdout}"
        );
    }
}

#[test]
fn append_only_is_refused_on_elasticache() {
    let manifest = "apiVersion: rediscache.dev/v1alpha1\nkind: RedisCache\nmetadata: {name: bad}\nspec:\n  persistence: {mode: AppendOnly}\n";
    let out = operator(&["plan", "-f", CLASS, "-f", "-"], Some(manifest));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("✗ spec.persistence.mode:"));
}

#[test]
fn unreadable_input_is_an_error() {
    let out = operator(&["plan", "-f", "does-not-exist.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does-not-exist.yaml"));
}

#[test]
fn rbac_lists_only_what_the_operator_uses() {
    let out = operator(&["rbac"], None);
    assert!(out.status.success());
    let rules: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    for rule in &rules {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(
                !rule[field]
                    .as_array()
                    .expect("list")
                    .contains(&serde_json::json!("*")),
                "no wildcards: {rule}"
            );
        }
    }
    let secrets = rules
        .iter()
        .find(|r| r["resources"] == serde_json::json!(["secrets"]))
        .expect("secrets rule");
    assert!(
        !secrets["verbs"]
            .as_array()
            .expect("verbs")
            .contains(&serde_json::json!("delete")),
        "Secrets are deleted by GC, not by us"
    );
}

#[test]
fn plan_shows_the_azure_sku_and_no_reader_keys() {
    let out = operator(&["plan", "-f", "examples/azure-managed.yaml"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "Azure Managed Redis cluster (Balanced_B5, high availability Enabled, TLS 1.2)",
        "/resourceGroups/rg-caches-weu/providers/Microsoft.Cache/redisEnterprise/",
        "port 10000, EnterpriseCluster, eviction allkeys-lru, access keys on",
        "AOF every second",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
    assert!(!stdout.contains("readerHost"), "{stdout}");
}
