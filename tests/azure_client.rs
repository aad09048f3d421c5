//! The ARM client and the credential against the HTTPS ARM emulator:
//! tokens over HTTPS with a test CA, long-running operations through
//! `Azure-AsyncOperation` and `Location` with `Retry-After`, 409 while busy,
//! Premium's one-field-group PATCH rule, 429, keys, delete, refused origins.

#[path = "support/azure.rs"]
mod arm;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arm::{ArmEmulator, Fault};
use redis_cache_operator::backends::azure::arm::{
    self as client, ArmClient, Cluster, ClusterProperties, Database, EnterpriseSku,
    FirewallRuleProperties, KeyType, Outcome, PendingOperation, PollStatus, PollVia,
    RedisProperties, RedisResource, RedisSku, RedisUpdate, ScheduleEntry,
};
use redis_cache_operator::backends::azure::config::{
    self, ManagedDatabaseInput, Persistence, PremiumConfigInput,
};
use redis_cache_operator::backends::azure::identity::{
    http_client, CredentialSource, IdentityConfig, TokenProvider,
};
use redis_cache_operator::backends::azure::sku;
use redis_cache_operator::backends::{BackendError, CallGate, Credential, ErrorClass};
use url::Url;

const SUB: &str = "11111111-2222-3333-4444-555555555555";
const RG: &str = "caches";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "operator-app";
const SECRET: &str = "cl13nt-s3cret-Value-0123456789";

/// Counts what passes the gate.
#[derive(Default)]
struct RecordingGate {
    acquired: AtomicU32,
    successes: AtomicU32,
    throttled: AtomicU32,
    records: Mutex<Vec<(&'static str, &'static str)>>,
}

#[async_trait::async_trait]
impl CallGate for RecordingGate {
    async fn acquire(&self) {
        self.acquired.fetch_add(1, Ordering::SeqCst);
    }
    fn on_success(&self) {
        self.successes.fetch_add(1, Ordering::SeqCst);
    }
    fn on_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::SeqCst);
    }
    fn record(&self, operation: &'static str, outcome: &'static str) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((operation, outcome));
    }
}

struct Fixture {
    emu: ArmEmulator,
    client: ArmClient,
    gate: Arc<RecordingGate>,
    tokens: TokenProvider,
}

fn identity_config(emu: &ArmEmulator, secret: &str) -> IdentityConfig {
    IdentityConfig {
        source: CredentialSource::ClientSecret {
            tenant_id: TENANT.into(),
            client_id: CLIENT_ID.into(),
            secret: Credential::new(secret),
        },
        authority_host: Some(Url::parse(&emu.url()).expect("url")),
    }
}

async fn fixture() -> Fixture {
    let emu = ArmEmulator::start().await;
    emu.register_client(CLIENT_ID, SECRET);
    emu.create_resource_group(SUB, RG);
    let http = http_client(Some(emu.ca_pem().as_bytes())).expect("http client");
    let tokens =
        TokenProvider::new(&identity_config(&emu, SECRET), http.clone()).expect("credential");
    let gate = Arc::new(RecordingGate::default());
    let client = ArmClient::new(
        http,
        Url::parse(&emu.url()).expect("url"),
        Arc::new(tokens.clone()),
        gate.clone(),
    );
    Fixture {
        emu,
        client,
        gate,
        tokens,
    }
}

/// Polls until done (the emulator finishes on the second poll).
async fn finish(client: &ArmClient, op: &PendingOperation) -> Option<serde_json::Value> {
    let mut op = op.clone();
    for _ in 0..10 {
        match client.poll_once(&op).await.expect("poll") {
            PollStatus::InProgress(next) => op = next,
            PollStatus::Succeeded(body) => return body,
        }
    }
    panic!("operation {} did not finish", op.operation);
}

fn assert_no_secret(err: &BackendError, secrets: &[&str]) {
    let text = format!("{err} {err:?}");
    for s in secrets {
        assert!(!text.contains(s), "secret leaked in {text}");
    }
}

#[tokio::test]
async fn token_via_client_secret_over_https_with_test_ca() {
    let f = fixture().await;
    let first = f.tokens.token().await.expect("token");
    assert!(first.expose().starts_with("emu-token-"));
    assert_eq!(format!("{first:?}"), "Credential(<redacted>)");
    // azure_identity caches the token: the second call does not reach Entra.
    let second = f.tokens.token().await.expect("token");
    assert_eq!(first, second);
    assert_eq!(f.emu.token_requests(), 1);

    // A wrong secret: credentials invalid, and the secret is nowhere.
    let http = http_client(Some(f.emu.ca_pem().as_bytes())).expect("http");
    let wrong = "wr0ng-s3cret-Value";
    let bad = TokenProvider::new(&identity_config(&f.emu, wrong), http).expect("credential");
    let err = bad.token().await.expect_err("wrong secret");
    assert_eq!(err.class, ErrorClass::CredentialsInvalid, "{err:?}");
    assert_no_secret(&err, &[wrong, SECRET]);

    // Without the test CA the certificate is refused: verification is on.
    let plain = http_client(None).expect("http");
    let untrusting =
        TokenProvider::new(&identity_config(&f.emu, SECRET), plain).expect("credential");
    let err = untrusting.token().await.expect_err("untrusted certificate");
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    assert_no_secret(&err, &[SECRET]);
}

#[tokio::test]
async fn token_via_workload_identity_federated_assertion() {
    let emu = ArmEmulator::start().await;
    let assertion = "eyJhbGciOiJSUzI1NiJ9.service-account-token.sig";
    emu.register_federated("wi-client", assertion);
    let dir = std::env::temp_dir().join(format!("arm-wi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("token");
    std::fs::write(&file, assertion).expect("token file");
    let http = http_client(Some(emu.ca_pem().as_bytes())).expect("http");
    let config = IdentityConfig {
        source: CredentialSource::WorkloadIdentity {
            client_id: Some("wi-client".into()),
            tenant_id: Some(TENANT.into()),
            token_file: Some(file.clone()),
        },
        authority_host: Some(Url::parse(&emu.url()).expect("url")),
    };
    let tokens = TokenProvider::new(&config, http).expect("credential");
    let token = tokens.token().await.expect("token");
    assert!(token.expose().contains("wi-client"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn managed_cluster_and_database_created_through_lro() {
    let f = fixture().await;
    let rg = f
        .client
        .get_resource_group(SUB, RG)
        .await
        .expect("rg")
        .expect("rg exists");
    assert_eq!(rg.name.as_deref(), Some(RG));
    assert!(f
        .client
        .get_resource_group(SUB, "missing")
        .await
        .expect("rg")
        .is_none());

    let cluster_id = client::redis_enterprise_id(SUB, RG, "amr1");
    let sku = sku::balanced_sku_for(5_000_000_000).expect("sku");
    assert_eq!(sku.name, "Balanced_B5");
    let mut tags = BTreeMap::new();
    tags.insert(
        "redis-cache-operator/owner".to_string(),
        "ns/name".to_string(),
    );
    let cluster = Cluster {
        location: "westeurope".into(),
        sku: EnterpriseSku {
            name: sku.name.into(),
            capacity: None,
        },
        zones: vec!["1".into(), "2".into(), "3".into()],
        tags,
        properties: ClusterProperties {
            high_availability: Some("Enabled".into()),
            minimum_tls_version: Some("1.2".into()),
            public_network_access: Some("Enabled".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let outcome = f
        .client
        .put_cluster(&cluster_id, &cluster)
        .await
        .expect("put cluster");
    let Outcome::InProgress(op, Some(body)) = outcome else {
        panic!("expected an LRO");
    };
    assert_eq!(op.via, PollVia::AsyncOperation);
    assert_eq!(op.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(
        body.properties.provisioning_state.as_deref(),
        Some("Creating")
    );

    // A mutation while the create runs: 409 busy, retryable.
    let err = f
        .client
        .patch_cluster(&cluster_id, &Default::default())
        .await
        .expect_err("busy");
    assert_eq!(err.class, ErrorClass::Transient);
    assert_eq!(err.code.as_deref(), Some("Conflict"));

    // One poll: still running; the handle can be kept for a later pass.
    let PollStatus::InProgress(op) = f.client.poll_once(&op).await.expect("poll") else {
        panic!("finished too early");
    };
    finish(&f.client, &op).await;
    let got = f
        .client
        .get_cluster(&cluster_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        got.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    assert_eq!(got.properties.resource_state.as_deref(), Some("Running"));
    assert_eq!(got.sku.name, "Balanced_B5");
    assert_eq!(got.zones.len(), 3);
    assert!(got.properties.host_name.is_some());
    assert_eq!(
        got.tags
            .get("redis-cache-operator/owner")
            .map(String::as_str),
        Some("ns/name")
    );

    let (props, _) = config::managed_database(&ManagedDatabaseInput {
        cluster_mode: false,
        eviction_policy: "allkeys-lru".into(),
        persistence: Persistence::Aof,
    })
    .expect("db props");
    let db_id = client::database_id(&cluster_id, "default");
    let outcome = f
        .client
        .put_database(
            &db_id,
            &Database {
                properties: props,
                ..Default::default()
            },
        )
        .await
        .expect("put db");
    let op = outcome.pending().expect("lro").clone();
    finish(&f.client, &op).await;
    let db = f
        .client
        .get_database(&db_id)
        .await
        .expect("get")
        .expect("db");
    assert_eq!(
        db.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    assert_eq!(db.properties.eviction_policy.as_deref(), Some("AllKeysLRU"));
    assert_eq!(
        db.properties.clustering_policy.as_deref(),
        Some("EnterpriseCluster")
    );
    assert_eq!(db.properties.port, Some(10000));
    assert_eq!(
        db.properties.access_keys_authentication.as_deref(),
        Some("Enabled")
    );
    assert_eq!(
        db.properties
            .persistence
            .and_then(|p| p.aof_frequency)
            .as_deref(),
        Some("1s")
    );

    let clusters = f.client.list_clusters(SUB, RG).await.expect("list");
    assert_eq!(clusters.len(), 1);

    // Every call carried the api-version pinned for its type.
    for r in f.emu.requests() {
        if r.path
            .to_ascii_lowercase()
            .contains("/providers/microsoft.cache/redisenterprise")
        {
            assert_eq!(
                r.api_version.as_deref(),
                Some(client::API_VERSION_REDIS_ENTERPRISE),
                "{r:?}"
            );
        }
    }
    // Every ARM call passed the gate.
    let arm_calls = f
        .emu
        .requests()
        .iter()
        .filter(|r| !r.path.ends_with("/token"))
        .count();
    assert_eq!(f.gate.acquired.load(Ordering::SeqCst) as usize, arm_calls);
}

fn premium_cache() -> RedisResource {
    let size = sku::premium_sku_for(10_000_000_000, 1).expect("sku");
    let (redis_configuration, _) = config::premium_redis_configuration(&PremiumConfigInput {
        maxmemory_policy: Some("allkeys-lru".into()),
        notify_keyspace_events: Some("Ex".into()),
        persistence: Persistence::None,
    })
    .expect("config");
    RedisResource {
        location: "westeurope".into(),
        zones: vec!["1".into()],
        properties: RedisProperties {
            sku: Some(RedisSku {
                name: "Premium".into(),
                family: "P".into(),
                capacity: i32::from(size.capacity),
            }),
            redis_configuration: Some(redis_configuration),
            shard_count: Some(1),
            replicas_per_primary: Some(1),
            minimum_tls_version: Some("1.2".into()),
            enable_non_ssl_port: Some(false),
            public_network_access: Some("Enabled".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn premium_create_patch_conflicts_and_rejections() {
    let f = fixture().await;
    let id = client::redis_id(SUB, RG, "premium1");
    let outcome = f
        .client
        .create_redis(&id, &premium_cache())
        .await
        .expect("create");
    let Outcome::InProgress(op, Some(created)) = outcome else {
        panic!("expected an LRO");
    };
    assert_eq!(created.properties.sku.as_ref().map(|s| s.capacity), Some(2));
    let keys = created
        .properties
        .access_keys
        .clone()
        .expect("keys on create");
    let primary = keys.primary_key.clone().expect("primary");

    // Busy while creating → Transient with the RP's code.
    let update = RedisUpdate {
        tags: Some(BTreeMap::from([("a".to_string(), "b".to_string())])),
        ..Default::default()
    };
    let err = f.client.patch_redis(&id, &update).await.expect_err("busy");
    assert_eq!(err.class, ErrorClass::Transient);
    assert_eq!(err.code.as_deref(), Some("Conflict"));
    assert!(
        err.message.contains("busy processing a previous update"),
        "{}",
        err.message
    );
    finish(&f.client, &op).await;

    let got = f.client.get_redis(&id).await.expect("get").expect("exists");
    assert_eq!(
        got.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    assert_eq!(got.properties.ssl_port, Some(6380));
    assert_eq!(got.properties.access_keys, None);
    let config = got.properties.redis_configuration.clone().expect("config");
    assert_eq!(
        config.get("maxmemory-policy").map(String::as_str),
        Some("allkeys-lru")
    );
    assert_eq!(
        config.get("rdb-backup-enabled").map(String::as_str),
        Some("false")
    );

    // Tags only: synchronous 200.
    let outcome = f
        .client
        .patch_redis(&id, &update)
        .await
        .expect("patch tags");
    assert!(matches!(outcome, Outcome::Done(Some(_))), "{outcome:?}");

    // SKU and shard count together: 400, Rejected with code and message.
    let two = RedisUpdate {
        properties: Some(RedisProperties {
            sku: Some(RedisSku {
                name: "Premium".into(),
                family: "P".into(),
                capacity: 3,
            }),
            shard_count: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = f
        .client
        .patch_redis(&id, &two)
        .await
        .expect_err("two groups");
    assert_eq!(err.class, ErrorClass::Rejected);
    assert_eq!(err.code.as_deref(), Some("BadRequest"));
    assert!(
        err.message.contains("sku and shardCount"),
        "{}",
        err.message
    );

    // One group at a time: 202 + Location, Scaling → Succeeded.
    let one = RedisUpdate {
        properties: Some(RedisProperties {
            sku: two.properties.as_ref().and_then(|p| p.sku.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let outcome = f.client.patch_redis(&id, &one).await.expect("scale");
    let Outcome::InProgress(op, Some(body)) = outcome else {
        panic!("expected an LRO");
    };
    assert_eq!(op.via, PollVia::Location);
    assert_eq!(
        body.properties.provisioning_state.as_deref(),
        Some("Scaling")
    );
    let final_body = finish(&f.client, &op).await.expect("final body");
    assert_eq!(final_body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(final_body["properties"]["sku"]["capacity"], 3);

    // Creating again must not replace the cache.
    let err = f
        .client
        .create_redis(&id, &premium_cache())
        .await
        .expect_err("exists");
    assert_eq!(err.class, ErrorClass::Conflict);
    assert_eq!(f.emu.premium_replacements(), 0);
    assert_eq!(f.emu.count("PUT", "/redis/premium1"), 2);

    // 5xx → Transient.
    f.emu.inject(Fault::server_error(
        "/redis/premium1",
        504,
        "GatewayTimeout",
    ));
    let err = f.client.get_redis(&id).await.expect_err("504");
    assert_eq!(err.class, ErrorClass::Transient);

    // Firewall rules and patch schedule.
    let rule = FirewallRuleProperties {
        start_ip: "10.1.0.0".into(),
        end_ip: "10.1.255.255".into(),
    };
    f.client
        .put_firewall_rule(&id, "cidr0", &rule)
        .await
        .expect("rule");
    let rules = f.client.list_firewall_rules(&id).await.expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].properties, rule);
    f.client
        .delete_firewall_rule(&id, "cidr0")
        .await
        .expect("delete rule");
    assert!(f
        .client
        .list_firewall_rules(&id)
        .await
        .expect("rules")
        .is_empty());

    assert!(f
        .client
        .get_patch_schedule(&id)
        .await
        .expect("get")
        .is_none());
    let entries = vec![ScheduleEntry {
        day_of_week: "Sunday".into(),
        start_hour_utc: 2,
        maintenance_window: Some("PT5H".into()),
    }];
    f.client
        .put_patch_schedule(&id, &entries)
        .await
        .expect("schedule");
    let schedule = f
        .client
        .get_patch_schedule(&id)
        .await
        .expect("get")
        .expect("set");
    assert_eq!(schedule.properties.schedule_entries, entries);
    f.client
        .delete_patch_schedule(&id)
        .await
        .expect("delete schedule");

    let caches = f.client.list_redis(SUB, RG).await.expect("list");
    assert_eq!(caches.len(), 1);

    // No key in any error.
    assert_no_secret(&err, &[primary.expose(), SECRET]);

    for r in f.emu.requests() {
        let lower = r.path.to_ascii_lowercase();
        if lower.contains("/providers/microsoft.cache/redis/") {
            assert_eq!(
                r.api_version.as_deref(),
                Some(client::API_VERSION_REDIS),
                "{r:?}"
            );
        }
    }
}

#[tokio::test]
async fn throttling_is_classified_with_retry_after() {
    let f = fixture().await;
    let id = client::redis_id(SUB, RG, "throttled");
    f.emu.inject(Fault::throttle("/redis/throttled", 7));
    let err = f.client.get_redis(&id).await.expect_err("429");
    assert_eq!(err.class, ErrorClass::Throttled);
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(err.code.as_deref(), Some("TooManyRequests"));
    assert_eq!(f.gate.throttled.load(Ordering::SeqCst), 1);
    // The fault is spent: the next call reaches the (empty) group.
    assert!(f.client.get_redis(&id).await.expect("get").is_none());
    let records = f
        .gate
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(
        records,
        vec![("get_redis", "throttled"), ("get_redis", "not_found")]
    );
}

#[tokio::test]
async fn keys_list_and_regenerate_on_both_tiers() {
    let f = fixture().await;
    // Premium: synchronous regenerate.
    let id = client::redis_id(SUB, RG, "keys1");
    let op = f
        .client
        .create_redis(&id, &premium_cache())
        .await
        .expect("create");
    finish(&f.client, op.pending().expect("lro")).await;
    let before = f.client.list_redis_keys(&id).await.expect("keys");
    let after = f
        .client
        .regenerate_redis_key(&id, KeyType::Secondary)
        .await
        .expect("regen");
    assert_eq!(after.primary_key, before.primary_key);
    assert_ne!(after.secondary_key, before.secondary_key);
    assert!(!format!("{after:?}").contains(after.secondary_key.as_ref().expect("key").expose()));

    // Managed: long-running regenerate.
    let cluster_id = client::redis_enterprise_id(SUB, RG, "keys2");
    let cluster = Cluster {
        location: "westeurope".into(),
        sku: EnterpriseSku {
            name: "Balanced_B0".into(),
            capacity: None,
        },
        properties: ClusterProperties {
            public_network_access: Some("Enabled".into()),
            minimum_tls_version: Some("1.2".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let op = f
        .client
        .put_cluster(&cluster_id, &cluster)
        .await
        .expect("cluster");
    finish(&f.client, op.pending().expect("lro")).await;
    let db_id = client::database_id(&cluster_id, "default");
    let op = f
        .client
        .put_database(&db_id, &Database::default())
        .await
        .expect("db");
    finish(&f.client, op.pending().expect("lro")).await;
    let before = f.client.list_database_keys(&db_id).await.expect("keys");
    let outcome = f
        .client
        .regenerate_database_key(&db_id, KeyType::Primary)
        .await
        .expect("regen");
    let op = outcome
        .pending()
        .expect("regenerate is an LRO on Managed")
        .clone();
    // Busy while regenerating.
    let err = f
        .client
        .regenerate_database_key(&db_id, KeyType::Secondary)
        .await
        .expect_err("busy");
    assert_eq!(err.class, ErrorClass::Transient);
    finish(&f.client, &op).await;
    let after = f.client.list_database_keys(&db_id).await.expect("keys");
    assert_ne!(after.primary_key, before.primary_key);
    assert_eq!(after.secondary_key, before.secondary_key);
}

#[tokio::test]
async fn delete_then_not_found() {
    let f = fixture().await;
    let id = client::redis_id(SUB, RG, "gone1");
    let op = f
        .client
        .create_redis(&id, &premium_cache())
        .await
        .expect("create");
    finish(&f.client, op.pending().expect("lro")).await;
    let outcome = f.client.delete("delete_redis", &id).await.expect("delete");
    let op = outcome.pending().expect("delete is an LRO").clone();
    assert_eq!(op.via, PollVia::Location);
    assert_eq!(finish(&f.client, &op).await, None);
    let err = f
        .client
        .get::<RedisResource>("get_redis", &id)
        .await
        .expect_err("gone");
    assert_eq!(err.class, ErrorClass::NotFound);
    assert_eq!(err.code.as_deref(), Some("ResourceNotFound"));
    assert!(f.client.get_redis(&id).await.expect("get").is_none());
    // Deleting what is gone is done.
    assert!(matches!(
        f.client.delete("delete_redis", &id).await.expect("delete"),
        Outcome::Done(None)
    ));

    // Managed: deleting the cluster takes its database along.
    let cluster_id = client::redis_enterprise_id(SUB, RG, "gone2");
    let cluster = Cluster {
        location: "westeurope".into(),
        sku: EnterpriseSku {
            name: "Balanced_B1".into(),
            capacity: None,
        },
        properties: ClusterProperties {
            public_network_access: Some("Enabled".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let op = f
        .client
        .put_cluster(&cluster_id, &cluster)
        .await
        .expect("cluster");
    finish(&f.client, op.pending().expect("lro")).await;
    let op = f
        .client
        .delete("delete_cluster", &cluster_id)
        .await
        .expect("delete");
    finish(&f.client, op.pending().expect("lro")).await;
    assert!(f
        .client
        .get_cluster(&cluster_id)
        .await
        .expect("get")
        .is_none());
}

#[tokio::test]
async fn revoked_token_is_credentials_invalid_without_leaking_it() {
    let f = fixture().await;
    let token = f.tokens.token().await.expect("token");
    f.emu.revoke_tokens();
    let err = f
        .client
        .get_cluster(&client::redis_enterprise_id(SUB, RG, "x"))
        .await
        .expect_err("401");
    assert_eq!(err.class, ErrorClass::CredentialsInvalid);
    assert_eq!(err.code.as_deref(), Some("InvalidAuthenticationToken"));
    assert_no_secret(&err, &[token.expose(), SECRET]);
    assert!(!format!("{:?}", f.client).contains(token.expose()));
}

#[tokio::test]
async fn a_monitor_on_another_host_is_refused() {
    let f = fixture().await;
    let op = PendingOperation {
        operation: "put_cluster",
        resource_id: "x".into(),
        url: Url::parse("https://attacker.example/status").expect("url"),
        via: PollVia::AsyncOperation,
        retry_after: None,
    };
    let err = f.client.poll_once(&op).await.expect_err("foreign host");
    assert_eq!(err.class, ErrorClass::Rejected);
    assert!(f.emu.requests().is_empty());
}
