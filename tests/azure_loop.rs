//! The Azure backend through the real controller loop: the project's
//! Kubernetes API emulator, the project's ARM + token emulator (HTTPS with
//! a test CA the class trusts through `azure.caBundleSecretRef`), and the
//! operator's `run`. Managed: create → Ready with the Secret → scale → A/B
//! key rotation (the Secret's key is one Azure accepts at every moment,
//! also across operator restarts) → delete. Premium: create with PUT once,
//! change with PATCH only, firewall rules, rotation, delete.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/azure.rs"]
mod azure;

use std::sync::Arc;
use std::time::Duration;

use apiserver::ApiServer;
use azure::{ArmEmulator, Fault};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use redis_cache_operator::api::{
    AzureClass, AzureCredentialType, AzureCredentials, AzurePublicNetworkAccess, AzureTier,
    ProviderKind, RedisCache, RedisCacheClass, RedisCacheClassSpec, SecretRef,
    DEFAULT_CLASS_ANNOTATION,
};
use redis_cache_operator::backends::azure::{AzureFactory, LimitedGate};
use redis_cache_operator::backends::Registry;
use redis_cache_operator::controller::{run, RunConfig};
use redis_cache_operator::metrics::Metrics;
use redis_cache_operator::reconcile::Polling;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
const RG: &str = "caches";
/// A storage connection string: its key must never show anywhere.
const STORAGE: &str = "DefaultEndpointsProtocol=https;AccountName=snaps;AccountKey=c3RvcmFnZS1rZXktbmV2ZXItc2hvd24=;EndpointSuffix=core.windows.net";

fn config() -> RunConfig {
    RunConfig {
        cluster_name: "loop".into(),
        watch_namespaces: Vec::new(),
        concurrency: 4,
        polling: Polling {
            in_transition: Duration::from_millis(100),
            settled: Duration::from_millis(500),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
        },
        leader_election: None,
        http_addr: None,
        instance: "test".into(),
        health: None,
        shutdown_timeout: Duration::from_secs(2),
    }
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(v) = check() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    let mut s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "operators"},
    }))
    .expect("secret");
    s.data = Some(
        data.iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    k8s_openapi::ByteString(v.as_bytes().to_vec()),
                )
            })
            .collect(),
    );
    s
}

struct Setup {
    server: ApiServer,
    arm: ArmEmulator,
    shutdown: CancellationToken,
    operator: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Setup {
    /// Starts the operator (again, after [`Self::crash`]).
    fn start_operator(&mut self) {
        let client = self.server.client();
        let registry = Arc::new(Registry::empty().with(Arc::new(AzureFactory::new(
            client.clone(),
            Arc::new(LimitedGate::new(200.0, 50, |_, _| {})),
        ))));
        self.shutdown = CancellationToken::new();
        self.operator = Some(tokio::spawn(run(
            client,
            config(),
            registry,
            Arc::new(Metrics::new()),
            self.shutdown.clone(),
        )));
    }

    /// Stops the operator at once, wherever it is.
    async fn crash(&mut self) {
        if let Some(op) = self.operator.take() {
            op.abort();
            let _ = op.await;
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(op) = self.operator.take() {
            let _ = op.await;
        }
    }
}

async fn setup(tier: AzureTier, client_secret: &str) -> Setup {
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let arm = ArmEmulator::start().await;
    arm.register_client("operator-app", "the-right-secret");
    arm.create_resource_group(SUB, RG);
    let client = server.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "operators");
    for s in [
        secret(
            "azure-sp",
            &[
                ("tenantId", "tenant-1"),
                ("clientId", "operator-app"),
                ("clientSecret", client_secret),
            ],
        ),
        secret("azure-ca", &[("ca.crt", arm.ca_pem())]),
        secret("azure-storage", &[("connectionString", STORAGE)]),
    ] {
        secrets
            .create(&PostParams::default(), &s)
            .await
            .expect("class Secret");
    }
    let mut class = RedisCacheClass::new(
        "azure",
        RedisCacheClassSpec {
            provider: ProviderKind::Azure,
            defaults: None,
            allowed_namespaces: Vec::new(),
            allowed_namespace_selector: None,
            elasti_cache: None,
            kubernetes: None,
            upstash: None,
            azure: Some(AzureClass {
                subscription_id: SUB.into(),
                resource_group: RG.into(),
                location: "westeurope".into(),
                tier: Some(tier),
                zones: vec!["1".into(), "2".into()],
                public_network_access: Some(AzurePublicNetworkAccess::Enabled),
                credentials: Some(AzureCredentials {
                    type_: AzureCredentialType::ClientSecret,
                    client_secret_ref: Some(SecretRef {
                        namespace: "operators".into(),
                        name: "azure-sp".into(),
                    }),
                    ..Default::default()
                }),
                arm_endpoint: Some(arm.url()),
                authority_host: Some(arm.url()),
                ca_bundle_secret_ref: Some(SecretRef {
                    namespace: "operators".into(),
                    name: "azure-ca".into(),
                }),
                tags: [("team".to_string(), "shop".to_string())].into(),
                persistence_storage_secret_ref: (tier == AzureTier::Premium).then(|| SecretRef {
                    namespace: "operators".into(),
                    name: "azure-storage".into(),
                }),
                ..Default::default()
            }),
        },
    );
    class.metadata.annotations =
        Some([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into());
    Api::<RedisCacheClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .expect("class");
    let mut s = Setup {
        server,
        arm,
        shutdown: CancellationToken::new(),
        operator: None,
    };
    s.start_operator();
    s
}

fn cache_manifest(name: &str, extra: Value) -> RedisCache {
    let mut spec = json!({
        "memory": "1Gi",
        "replicasPerShard": 1,
        "auth": {"rotationGracePeriod": "1s"},
        "connectionSecret": {"extraKeys": {"REDIS_URL": "{uri}"}}
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "rediscache.dev/v1alpha1",
        "kind": "RedisCache",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
    }))
    .expect("cache")
}

fn cache(s: &Setup, name: &str) -> Value {
    s.server
        .get(
            "rediscache.dev",
            "v1alpha1",
            "rediscaches",
            Some("shop"),
            name,
        )
        .unwrap_or_default()
}

fn condition(s: &Setup, name: &str, type_: &str) -> Value {
    cache(s, name)["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or_default()
}

fn secret_key(s: &Setup, name: &str, key: &str) -> Option<String> {
    let secret = s.server.get("", "v1", "secrets", Some("shop"), name)?;
    let bytes: k8s_openapi::ByteString =
        serde_json::from_value(secret["data"][key].clone()).ok()?;
    String::from_utf8(bytes.0).ok()
}

/// Which of the resource's current keys the Secret holds (never printed).
fn secret_slot(s: &Setup, secret: &str, keys_of: &str) -> Option<usize> {
    let password = secret_key(s, secret, "password")?;
    let keys = s.arm.keys(keys_of)?;
    keys.iter().position(|k| *k == password)
}

async fn annotate_rotation(s: &Setup, name: &str, value: &str) {
    Api::<RedisCache>::namespaced(s.server.client(), "shop")
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"rediscache.dev/rotate-auth-token": value}}}),
            ),
        )
        .await
        .expect("annotate");
}

/// Watches a rotation until `activeKey` is `want` and the state `Active`
/// again: at every observation the Secret holds a key the resource accepts.
/// With `crash_each_phase`, the operator is killed and restarted whenever
/// the rotation's state changes.
async fn rotate_and_watch(
    s: &mut Setup,
    name: &str,
    keys_of: &str,
    want: &str,
    crash_each_phase: bool,
) -> Vec<String> {
    let secret = format!("{name}-redis");
    let mut states: Vec<String> = Vec::new();
    for _ in 0..600 {
        let slot = secret_slot(s, &secret, keys_of);
        assert!(
            slot.is_some(),
            "the Secret's password is neither current key of {keys_of} (after states {states:?})"
        );
        let auth = cache(s, name)["status"]["auth"].clone();
        let state = auth["state"].as_str().unwrap_or_default().to_string();
        if states.last() != Some(&state) {
            states.push(state.clone());
            if crash_each_phase && states.len() > 1 {
                s.crash().await;
                s.start_operator();
            }
        }
        if state == "Active" && auth["activeKey"] == want && states.len() > 1 {
            let expected = if want == "Primary" { 0 } else { 1 };
            assert_eq!(slot, Some(expected), "the Secret holds the {want} key");
            return states;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("rotation to {want} did not finish; states seen: {states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_cache_lives_its_whole_life() {
    let mut s = setup(AzureTier::Managed, "the-right-secret").await;
    // Azure throttles the first read and fails the first create with a 503:
    // both are retried, and the cluster is still created once.
    s.arm.inject(Fault::throttle("/redisenterprise/", 1));
    let mut unavailable = Fault::server_error("/redisenterprise/", 503, "ServiceUnavailable");
    unavailable.method = Some(http::Method::PUT);
    s.arm.inject(unavailable);
    let caches: Api<RedisCache> = Api::namespaced(s.server.client(), "shop");
    caches
        .create(
            &PostParams::default(),
            &cache_manifest("sessions", json!({})),
        )
        .await
        .expect("create");
    eventually("Ready", || {
        (cache(&s, "sessions")["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    eventually(
        "the class is Ready (a token, and the resource group read)",
        || {
            let class = s.server.get(
                "rediscache.dev",
                "v1alpha1",
                "rediscacheclasses",
                None,
                "azure",
            )?;
            let ready = class["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?
                .clone();
            (ready["status"] == "True").then_some(())
        },
    )
    .await;
    let clusters = s.arm.ids("cluster");
    assert_eq!(clusters.len(), 1, "one cluster: {clusters:?}");
    let id = clusters[0].clone();
    let name = redis_cache_operator::backends::identity::derive("loop", "shop", "sessions");
    assert!(id.ends_with(&format!("/redisEnterprise/{name}")), "{id}");
    assert_eq!(cache(&s, "sessions")["status"]["backendId"], json!(id));
    let cluster = s.arm.resource(&id).expect("cluster");
    assert_eq!(
        cluster["sku"]["name"], "Balanced_B3",
        "1Gi is more than B1's 1 GB"
    );
    assert_eq!(cluster["zones"], json!(["1", "2"]));
    assert_eq!(cluster["properties"]["highAvailability"], "Enabled");
    assert_eq!(cluster["properties"]["minimumTlsVersion"], "1.2");
    assert_eq!(cluster["tags"]["team"], "shop");
    assert_eq!(cluster["tags"]["rediscache.dev/resource"], "shop/sessions");
    let db_id = format!("{id}/databases/default");
    let db = s.arm.resource(&db_id).expect("database");
    let p = &db["properties"];
    assert_eq!(p["clusteringPolicy"], "EnterpriseCluster");
    assert_eq!(p["clientProtocol"], "Encrypted");
    assert_eq!(p["port"], 10000);
    assert_eq!(p["evictionPolicy"], "AllKeysLRU");
    assert_eq!(p["accessKeysAuthentication"], "Enabled");

    let host = secret_key(&s, "sessions-redis", "host").expect("host");
    assert_eq!(host, format!("{name}.westeurope.redis.azure.net"));
    assert_eq!(
        secret_key(&s, "sessions-redis", "port").as_deref(),
        Some("10000")
    );
    assert_eq!(
        secret_slot(&s, "sessions-redis", &db_id),
        Some(0),
        "the Secret holds the primary key"
    );
    let password = secret_key(&s, "sessions-redis", "password").expect("password");
    let uri = secret_key(&s, "sessions-redis", "uri").expect("uri");
    assert!(
        uri == format!("rediss://:{password}@{host}:10000"),
        "uri is rediss://:<key>@host:10000"
    );
    assert!(secret_key(&s, "sessions-redis", "REDIS_URL") == Some(uri.clone()));
    assert_eq!(
        secret_key(&s, "sessions-redis", "provider").as_deref(),
        Some("azure-managed-redis")
    );
    assert_eq!(
        secret_key(&s, "sessions-redis", "tls").as_deref(),
        Some("true")
    );
    assert_eq!(
        secret_key(&s, "sessions-redis", "clusterMode").as_deref(),
        Some("Disabled")
    );
    eventually("status.auth.activeKey Primary", || {
        (cache(&s, "sessions")["status"]["auth"]["activeKey"] == "Primary").then_some(())
    })
    .await;
    let status = cache(&s, "sessions")["status"].clone();
    assert!(!status.to_string().contains(&password), "no key in status");
    assert_eq!(
        condition(&s, "sessions", "AzureCacheReady")["status"],
        "True"
    );
    assert_eq!(
        s.arm.count("PUT", &format!("/redisEnterprise/{name}")),
        2,
        "the create refused with 503 and the one that went through, nothing more"
    );

    // Day 2: more memory is a bigger SKU, by PATCH.
    caches
        .patch(
            "sessions",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"memory": "4Gi", "evictionPolicy": "volatile-ttl"}})),
        )
        .await
        .expect("patch");
    eventually("Balanced_B5 and VolatileTTL", || {
        let c = s.arm.resource(&id)?;
        let d = s.arm.resource(&db_id)?;
        (c["sku"]["name"] == "Balanced_B5"
            && d["properties"]["evictionPolicy"] == "VolatileTTL"
            && c["properties"]["provisioningState"] == "Succeeded")
            .then_some(())
    })
    .await;
    assert_eq!(
        s.arm.count("PUT", &format!("/redisEnterprise/{name}")),
        2,
        "changed by PATCH only"
    );
    assert!(s.arm.count("PATCH", &format!("/redisEnterprise/{name}")) >= 1);

    // clusterMode cannot change on a database: ImmutableField, nothing sent.
    caches
        .patch(
            "sessions",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterMode": "Enabled"}})),
        )
        .await
        .expect("patch");
    eventually("ImmutableField", || {
        let ready = condition(&s, "sessions", "Ready");
        (ready["reason"] == "ImmutableField"
            && ready["message"].as_str()?.contains("spec.clusterMode"))
        .then_some(())
    })
    .await;
    caches
        .patch(
            "sessions",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterMode": "Disabled"}})),
        )
        .await
        .expect("patch");
    eventually("Ready again", || {
        (condition(&s, "sessions", "Ready")["status"] == "True").then_some(())
    })
    .await;

    // A/B rotation: secondary regenerated, the Secret moves to it, then the
    // primary is regenerated; the Secret's key works all along.
    let before = s.arm.keys(&db_id).expect("keys");
    annotate_rotation(&s, "sessions", "1").await;
    let states = rotate_and_watch(&mut s, "sessions", &db_id, "Secondary", false).await;
    assert!(states.iter().any(|x| x == "GracePeriod"), "{states:?}");
    let after = s.arm.keys(&db_id).expect("keys");
    assert!(
        after[0] != before[0] && after[1] != before[1],
        "both keys regenerated"
    );
    assert_eq!(
        s.arm.count("POST", "/regenerateKey"),
        2,
        "one regeneration per key"
    );
    let auth = cache(&s, "sessions")["status"]["auth"].clone();
    assert!(auth["lastRotationTime"].is_string());

    // Again, with the operator killed and restarted at every step.
    annotate_rotation(&s, "sessions", "2").await;
    rotate_and_watch(&mut s, "sessions", &db_id, "Primary", true).await;
    let last = s.arm.keys(&db_id).expect("keys");
    assert!(
        last[0] != after[0] && last[1] != after[1],
        "both keys regenerated again"
    );

    caches
        .delete("sessions", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the cluster is gone", || {
        s.arm.ids("cluster").is_empty().then_some(())
    })
    .await;
    eventually("the RedisCache is gone", || {
        s.server
            .get(
                "rediscache.dev",
                "v1alpha1",
                "rediscaches",
                Some("shop"),
                "sessions",
            )
            .is_none()
            .then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_azure_credentials_show_on_the_class_and_the_cache() {
    let s = setup(AzureTier::Managed, "a-wrong-secret").await;
    Api::<RedisCache>::namespaced(s.server.client(), "shop")
        .create(
            &PostParams::default(),
            &cache_manifest("sessions", json!({})),
        )
        .await
        .expect("create");
    eventually("the cache says CredentialsInvalid", || {
        (condition(&s, "sessions", "Ready")["reason"] == "CredentialsInvalid").then_some(())
    })
    .await;
    eventually("the class says CredentialsInvalid", || {
        let class = s.server.get(
            "rediscache.dev",
            "v1alpha1",
            "rediscacheclasses",
            None,
            "azure",
        )?;
        let ready = class["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        (ready["reason"] == "CredentialsInvalid").then_some(())
    })
    .await;
    let message = condition(&s, "sessions", "Ready")["message"].to_string();
    assert!(
        !message.contains("a-wrong-secret"),
        "the secret is not shown"
    );
    assert!(s.arm.ids("cluster").is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_premium_cache_is_created_once_and_changed_by_patch_only() {
    let mut s = setup(AzureTier::Premium, "the-right-secret").await;
    let caches: Api<RedisCache> = Api::namespaced(s.server.client(), "shop");
    caches
        .create(
            &PostParams::default(),
            &cache_manifest(
                "jobs",
                json!({
                    "network": {"allowedCidrs": ["10.0.0.0/16"]},
                    "maintenanceWindow": "sun:05:00-sun:10:00",
                    "persistence": {"mode": "Snapshot", "snapshotInterval": "45m"},
                    "parameters": {"notify-keyspace-events": "Ex"}
                }),
            ),
        )
        .await
        .expect("create");
    eventually("Ready", || {
        (cache(&s, "jobs")["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    let name = redis_cache_operator::backends::identity::derive("loop", "shop", "jobs");
    let ids = s.arm.ids("redis");
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0].clone();
    assert!(
        id.ends_with(&format!("/Microsoft.Cache/redis/{name}")),
        "{id}"
    );
    let c = s.arm.resource(&id).expect("cache");
    let p = &c["properties"];
    assert_eq!(
        p["sku"],
        json!({"name": "Premium", "family": "P", "capacity": 1})
    );
    assert_eq!(p["replicasPerPrimary"], 1);
    assert_eq!(p["enableNonSslPort"], false);
    assert_eq!(p["minimumTlsVersion"], "1.2");
    assert_eq!(p["publicNetworkAccess"], "Enabled");
    let config = &p["redisConfiguration"];
    assert_eq!(config["maxmemory-policy"], "allkeys-lru");
    assert_eq!(config["notify-keyspace-events"], "Ex");
    assert_eq!(config["rdb-backup-enabled"], "true");
    assert_eq!(config["rdb-backup-frequency"], "30", "45m snaps to 30");
    assert!(
        config["rdb-storage-connection-string"] == STORAGE,
        "storage from the class's Secret"
    );
    assert_eq!(
        condition(&s, "jobs", "SpecApproximated")["reason"],
        "SnapshotIntervalApproximated"
    );
    let rule = s
        .arm
        .resource(&format!("{id}/firewallRules/rediscache_0"))
        .expect("firewall rule");
    assert_eq!(
        rule["properties"],
        json!({"startIP": "10.0.0.0", "endIP": "10.0.255.255"})
    );
    let schedule = s
        .arm
        .resource(&format!("{id}/patchSchedules/default"))
        .expect("patch schedule");
    assert_eq!(
        schedule["properties"]["scheduleEntries"],
        json!([{"dayOfWeek": "Sunday", "startHourUtc": 5, "maintenanceWindow": "PT5H"}])
    );
    assert_eq!(
        secret_key(&s, "jobs-redis", "host"),
        Some(format!("{name}.redis.cache.windows.net"))
    );
    assert_eq!(
        secret_key(&s, "jobs-redis", "port").as_deref(),
        Some("6380")
    );
    assert_eq!(
        secret_key(&s, "jobs-redis", "provider").as_deref(),
        Some("azure-cache-premium")
    );
    assert_eq!(secret_slot(&s, "jobs-redis", &id), Some(0));

    // Day 2: a bigger SKU and another replica are two PATCHes (Azure
    // refuses both in one); the firewall rule follows allowedCidrs.
    caches
        .patch(
            "jobs",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "memory": "20Gi",
                "replicasPerShard": 2,
                "network": {"allowedCidrs": ["10.1.0.0/24", "192.168.7.7/32"]}
            }})),
        )
        .await
        .expect("patch");
    eventually("P3 with 2 replicas and the new rules", || {
        let p = s.arm.resource(&id)?["properties"].clone();
        let r0 = s
            .arm
            .resource(&format!("{id}/firewallRules/rediscache_0"))?;
        let r1 = s
            .arm
            .resource(&format!("{id}/firewallRules/rediscache_1"))?;
        (p["sku"]["capacity"] == 3
            && p["replicasPerPrimary"] == 2
            && p["provisioningState"] == "Succeeded"
            && r0["properties"]["endIP"] == "10.1.0.255"
            && r1["properties"]["startIP"] == "192.168.7.7")
            .then_some(())
    })
    .await;
    eventually("Ready after the change", || {
        (cache(&s, "jobs")["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    assert_eq!(cache(&s, "jobs")["status"]["nodeType"], "P3");

    // A/B rotation, synchronous regenerateKey on Premium.
    annotate_rotation(&s, "jobs", "1").await;
    rotate_and_watch(&mut s, "jobs", &id, "Secondary", true).await;

    // The Event is written after the status that shows the promotion.
    eventually("the rotation's steps are Events", || {
        s.server
            .list("events.k8s.io", "v1", "events")
            .iter()
            .any(|e| e["reason"] == "AccessKeyPromoted")
            .then_some(())
    })
    .await;
    let events = s.server.list("events.k8s.io", "v1", "events");
    let everything = format!("{} {:?}", cache(&s, "jobs"), events);
    assert!(
        !everything.contains("c3RvcmFnZS1rZXktbmV2ZXItc2hvd24="),
        "no storage key in status or Events"
    );
    for key in s.arm.keys(&id).expect("keys") {
        assert!(
            !everything.contains(&key),
            "no access key in status or Events"
        );
    }
    assert_eq!(
        s.arm.premium_replacements(),
        0,
        "no PUT ever replaced the cache"
    );
    assert_eq!(
        s.arm.count("PUT", &format!("/redis/{name}")),
        1,
        "the cache was PUT once, at create"
    );

    caches
        .delete("jobs", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the cache is gone", || {
        s.arm.ids("redis").is_empty().then_some(())
    })
    .await;
    eventually("the RedisCache is gone", || {
        s.server
            .get(
                "rediscache.dev",
                "v1alpha1",
                "rediscaches",
                Some("shop"),
                "jobs",
            )
            .is_none()
            .then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settled_poll_lists_the_resource_group_once_and_corrects_drift() {
    let s = setup(AzureTier::Managed, "the-right-secret").await;
    let caches: Api<RedisCache> = Api::namespaced(s.server.client(), "shop");
    for name in ["a", "b"] {
        caches
            .create(&PostParams::default(), &cache_manifest(name, json!({})))
            .await
            .expect("create");
    }
    for name in ["a", "b"] {
        eventually("Ready and Synced", || {
            (condition(&s, name, "Synced")["status"] == "True"
                && cache(&s, name)["status"]["phase"] == "Ready")
                .then_some(())
        })
        .await;
    }
    let a = redis_cache_operator::backends::identity::derive("loop", "shop", "a");
    let b = redis_cache_operator::backends::identity::derive("loop", "shop", "b");
    // Let a settled poll pass (500 ms), then count over a few more.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let gets = |n: &str| s.arm.count("GET", &format!("/redisEnterprise/{n}"));
    let lists = || {
        s.arm
            .count("GET", "/providers/Microsoft.Cache/redisEnterprise")
    };
    let (ga, gb, l) = (gets(&a), gets(&b), lists());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(gets(&a), ga, "no GET of cluster a on the settled poll");
    assert_eq!(gets(&b), gb, "no GET of cluster b on the settled poll");
    let more = lists() - l;
    assert!(
        l >= 1 && more <= 1,
        "{more} lists in 2 s for two caches polled every 500 ms: one list serves both for 5 s"
    );

    // Someone scales cluster a down outside the operator: the settled poll
    // sees it in the list and scales it back.
    let id = s
        .arm
        .ids("cluster")
        .into_iter()
        .find(|i| i.ends_with(&a))
        .expect("a");
    s.arm
        .tamper(&id, |c| c["sku"]["name"] = json!("Balanced_B1"));
    eventually("Balanced_B3 again", || {
        (s.arm.resource(&id)?["sku"]["name"] == "Balanced_B3").then_some(())
    })
    .await;
    eventually("a DriftDetected Event", || {
        s.server
            .list("events.k8s.io", "v1", "events")
            .iter()
            .any(|e| e["reason"] == "DriftDetected")
            .then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_the_same_name_and_another_owner_is_never_touched() {
    let s = setup(AzureTier::Managed, "the-right-secret").await;
    let name = redis_cache_operator::backends::identity::derive("loop", "shop", "sessions");
    let id = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Cache/redisEnterprise/{name}"
    );
    s.arm.insert_cluster(&id, json!({"owner": "another-team"}));
    let caches: Api<RedisCache> = Api::namespaced(s.server.client(), "shop");
    caches
        .create(
            &PostParams::default(),
            &cache_manifest("sessions", json!({})),
        )
        .await
        .expect("create");
    eventually("Ready=False Conflict", || {
        let ready = condition(&s, "sessions", "Ready");
        (ready["reason"] == "Conflict" && ready["status"] == "False").then_some(())
    })
    .await;
    caches
        .delete("sessions", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the RedisCache is gone", || {
        s.server
            .get(
                "rediscache.dev",
                "v1alpha1",
                "rediscaches",
                Some("shop"),
                "sessions",
            )
            .is_none()
            .then_some(())
    })
    .await;
    for method in ["PUT", "PATCH", "DELETE"] {
        assert_eq!(
            s.arm.count(method, &format!("/redisEnterprise/{name}")),
            0,
            "{method} sent to a cluster the operator does not own"
        );
    }
    let cluster = s.arm.resource(&id).expect("the cluster is still there");
    assert_eq!(cluster["tags"], json!({"owner": "another-team"}));
    assert!(s.arm.resource(&format!("{id}/databases/default")).is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_created_before_a_crash_is_adopted_not_created_again() {
    let mut s = setup(AzureTier::Managed, "the-right-secret").await;
    // Every create takes long enough to crash in the middle of it.
    s.arm.set_polls_to_complete(20);
    let caches: Api<RedisCache> = Api::namespaced(s.server.client(), "shop");
    caches
        .create(
            &PostParams::default(),
            &cache_manifest("sessions", json!({})),
        )
        .await
        .expect("create");
    let name = redis_cache_operator::backends::identity::derive("loop", "shop", "sessions");
    eventually("the cluster PUT", || {
        (s.arm.count("PUT", &format!("/redisEnterprise/{name}")) == 1).then_some(())
    })
    .await;
    // The process dies before the ARM id reached status: what is stored is
    // only the name it derived before creating.
    s.crash().await;
    caches
        .patch_status(
            "sessions",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"backendId": name}})),
        )
        .await
        .expect("status");
    s.arm.set_polls_to_complete(2);
    s.start_operator();
    eventually("Ready", || {
        (cache(&s, "sessions")["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    assert_eq!(
        s.arm.count("PUT", &format!("/redisEnterprise/{name}")),
        1,
        "adopted by name, never created twice"
    );
    let id = s.arm.ids("cluster").pop().expect("the cluster");
    assert_eq!(cache(&s, "sessions")["status"]["backendId"], json!(id));
    s.stop().await;
}
