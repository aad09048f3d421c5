//! The Upstash backend through the real controller loop: the project's
//! Kubernetes API emulator, the project's Upstash API emulator, and the
//! operator's `run`. Create → Ready with every Secret key → eviction change
//! → cut-over rotation → delete; a create the operator could not record is
//! adopted, never repeated; refused credentials show on the class and the
//! cache without a retry storm.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/upstash.rs"]
mod upstash;

use std::sync::Arc;
use std::time::Duration;

use apiserver::ApiServer;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use redis_cache_operator::api::{
    ProviderKind, RedisCache, RedisCacheClass, RedisCacheClassSpec, SecretRef, UpstashClass,
    DEFAULT_CLASS_ANNOTATION,
};
use redis_cache_operator::backends::upstash::{LimitedGate, UpstashFactory};
use redis_cache_operator::backends::Registry;
use redis_cache_operator::controller::{run, RunConfig};
use redis_cache_operator::metrics::Metrics;
use redis_cache_operator::reconcile::Polling;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use upstash::UpstashEmulator;

fn config(settled: Duration) -> RunConfig {
    RunConfig {
        cluster_name: "loop".into(),
        watch_namespaces: Vec::new(),
        concurrency: 4,
        polling: Polling {
            in_transition: Duration::from_millis(100),
            settled,
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
    for _ in 0..200 {
        if let Some(v) = check() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

struct Setup {
    server: ApiServer,
    upstash: UpstashEmulator,
    shutdown: CancellationToken,
    operator: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn setup(api_key: Option<String>, precreated: Option<&str>, settled: Duration) -> Setup {
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let upstash = UpstashEmulator::start().await;
    let client = server.client();
    let key = api_key.unwrap_or_else(|| upstash.api_key());
    let creds: Secret = serde_json::from_value(json!({
        "metadata": {"name": "upstash-account", "namespace": "operators"},
        "stringData": {"email": upstash.email(), "apiKey": key},
    }))
    .expect("secret");
    // The emulator keeps stringData as given; the operator reads data.
    let mut creds = creds;
    creds.data = Some(
        creds
            .string_data
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes())))
            .collect(),
    );
    Api::<Secret>::namespaced(client.clone(), "operators")
        .create(&PostParams::default(), &creds)
        .await
        .expect("credentials Secret");
    let mut class = RedisCacheClass::new(
        "edge",
        RedisCacheClassSpec {
            provider: ProviderKind::Upstash,
            defaults: None,
            allowed_namespaces: Vec::new(),
            allowed_namespace_selector: None,
            elasti_cache: None,
            kubernetes: None,
            upstash: Some(UpstashClass {
                credentials_secret_ref: SecretRef {
                    namespace: "operators".into(),
                    name: "upstash-account".into(),
                },
                api_url: Some(upstash.base_url()),
                primary_region: "us-east-1".into(),
                read_regions: Vec::new(),
                plan: None,
                budget: None,
            }),
            azure: None,
        },
    );
    class.metadata.annotations =
        Some([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into());
    Api::<RedisCacheClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .expect("class");
    if let Some(name) = precreated {
        // A create that succeeded while the operator crashed before status.
        let c = redis_cache_operator::backends::upstash::client::UpstashClient::with_base_url(
            upstash.base_url(),
            upstash.email(),
            redis_cache_operator::backends::Credential::new(upstash.api_key()),
            Arc::new(LimitedGate::new(100.0, 10, |_, _| {})),
        )
        .expect("client");
        c.create_database(
            &redis_cache_operator::backends::upstash::client::CreateDatabaseRequest::global(
                name,
                "us-east-1",
            ),
        )
        .await
        .expect("precreate");
    }
    let registry = Arc::new(Registry::empty().with(Arc::new(UpstashFactory::new(
        client.clone(),
        Arc::new(LimitedGate::new(100.0, 20, |_, _| {})),
    ))));
    let shutdown = CancellationToken::new();
    let operator = tokio::spawn(run(
        client,
        config(settled),
        registry,
        Arc::new(Metrics::new()),
        shutdown.clone(),
    ));
    Setup {
        server,
        upstash,
        shutdown,
        operator,
    }
}

fn cache_manifest(name: &str) -> RedisCache {
    serde_json::from_value(json!({
        "apiVersion": "rediscache.dev/v1alpha1",
        "kind": "RedisCache",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "memory": "1Gi",
            "replicasPerShard": 0,
            "network": {"allowedCidrs": ["10.0.0.0/16"]},
            "connectionSecret": {"extraKeys": {
                "UPSTASH_REDIS_REST_URL": "{restUrl}",
                "UPSTASH_REDIS_REST_TOKEN": "{restToken}",
                "REDIS_URL": "{uri}"
            }}
        }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstash_cache_lives_its_whole_life() {
    let s = setup(None, None, Duration::from_millis(500)).await;
    let caches: Api<RedisCache> = Api::namespaced(s.server.client(), "shop");
    caches
        .create(&PostParams::default(), &cache_manifest("edge"))
        .await
        .expect("create");
    eventually("Ready", || {
        (cache(&s, "edge")["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    let dbs = s.upstash.databases();
    assert_eq!(dbs.len(), 1, "one database");
    let db = &dbs[0];
    assert_eq!(cache(&s, "edge")["status"]["backendId"], json!(db.id));
    assert_eq!(db.plan, "fixed_1gb", "1Gi maps to the 1 GB plan");
    assert!(db.eviction, "allkeys-lru means eviction on");
    assert_eq!(db.allowlist, vec!["10.0.0.0/16".to_string()]);
    let host = secret_key(&s, "edge-redis", "host").expect("host");
    assert!(host.ends_with(".upstash.io"), "a full host: {host}");
    assert!(secret_key(&s, "edge-redis", "password").as_deref() == Some(db.password.as_str()));
    let uri = secret_key(&s, "edge-redis", "uri").expect("uri");
    assert!(
        uri.starts_with("rediss://default:") && uri.ends_with(&format!("@{host}:{}", 6379))
            || uri.contains(&host)
    );
    assert_eq!(
        secret_key(&s, "edge-redis", "restUrl"),
        Some(format!("https://{host}"))
    );
    assert!(secret_key(&s, "edge-redis", "restToken").as_deref() == Some(db.rest_token.as_str()));
    assert!(secret_key(&s, "edge-redis", "readOnlyRestToken").is_some());
    assert_eq!(
        secret_key(&s, "edge-redis", "provider").as_deref(),
        Some("upstash")
    );
    assert!(
        secret_key(&s, "edge-redis", "UPSTASH_REDIS_REST_TOKEN").as_deref()
            == Some(db.rest_token.as_str())
    );
    assert!(secret_key(&s, "edge-redis", "REDIS_URL") == Some(uri.clone()));
    assert_eq!(condition(&s, "edge", "SpecApproximated")["status"], "True");

    // Day 2: evictionPolicy noeviction turns eviction off.
    caches
        .patch(
            "edge",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"evictionPolicy": "noeviction"}})),
        )
        .await
        .expect("patch");
    eventually("eviction off", || {
        (!s.upstash.databases()[0].eviction).then_some(())
    })
    .await;

    // A plan change follows memory.
    caches
        .patch(
            "edge",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"memory": "4Gi", "network": {"allowedCidrs": ["10.1.0.0/16"]}}}),
            ),
        )
        .await
        .expect("patch");
    eventually("plan fixed_5gb and the new allowlist", || {
        let db = &s.upstash.databases()[0];
        (db.plan == "fixed_5gb" && db.allowlist == vec!["10.1.0.0/16".to_string()]).then_some(())
    })
    .await;

    // A reset the operator made just before a crash: the next reconcile reads
    // the new password back and the Secret follows.
    let id = s.upstash.databases()[0].id.clone();
    redis_cache_operator::backends::upstash::client::UpstashClient::with_base_url(
        s.upstash.base_url(),
        s.upstash.email(),
        redis_cache_operator::backends::Credential::new(s.upstash.api_key()),
        Arc::new(LimitedGate::new(100.0, 10, |_, _| {})),
    )
    .expect("client")
    .reset_password(&id)
    .await
    .expect("reset");
    eventually("the Secret follows a reset it did not see", || {
        let now = s.upstash.databases()[0].password.clone();
        (secret_key(&s, "edge-redis", "password").as_deref() == Some(now.as_str())).then_some(())
    })
    .await;

    // Rotation: reset-password, and the Secret gets the new one at once.
    let before = s.upstash.databases()[0].password.clone();
    caches
        .patch(
            "edge",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"rediscache.dev/rotate-auth-token": "now"}}}),
            ),
        )
        .await
        .expect("annotate");
    eventually("the Secret holds the new password", || {
        let now = s.upstash.databases()[0].password.clone();
        (now != before && secret_key(&s, "edge-redis", "password").as_deref() == Some(now.as_str()))
            .then_some(())
    })
    .await;
    assert_eq!(
        s.upstash.count("POST", "/v2/redis/reset-password"),
        2,
        "the test's reset and the rotation's, nothing more"
    );

    caches
        .delete("edge", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the database is gone", || {
        s.upstash.databases().is_empty().then_some(())
    })
    .await;
    eventually("the RedisCache is gone", || {
        s.server
            .get(
                "rediscache.dev",
                "v1alpha1",
                "rediscaches",
                Some("shop"),
                "edge",
            )
            .is_none()
            .then_some(())
    })
    .await;
    s.shutdown.cancel();
    let _ = s.operator.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_created_before_a_crash_is_adopted_not_created_again() {
    let name = redis_cache_operator::backends::identity::derive("loop", "shop", "edge");
    let s = setup(None, Some(&name), Duration::from_millis(500)).await;
    Api::<RedisCache>::namespaced(s.server.client(), "shop")
        .create(&PostParams::default(), &cache_manifest("edge"))
        .await
        .expect("create");
    eventually("Ready", || {
        (cache(&s, "edge")["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    assert_eq!(
        s.upstash.databases().len(),
        1,
        "adopted, never a second database"
    );
    assert_eq!(
        s.upstash.count("POST", "/v2/redis/database"),
        1,
        "only the pre-crash create"
    );
    assert_eq!(
        cache(&s, "edge")["status"]["backendId"],
        json!(s.upstash.databases()[0].id)
    );
    s.shutdown.cancel();
    let _ = s.operator.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_show_on_the_class_and_the_cache_without_a_retry_storm() {
    // Refused credentials are retried at the settled interval, not in a loop.
    let s = setup(Some("wrong-key".into()), None, Duration::from_secs(5)).await;
    Api::<RedisCache>::namespaced(s.server.client(), "shop")
        .create(&PostParams::default(), &cache_manifest("edge"))
        .await
        .expect("create");
    eventually("the cache says CredentialsInvalid", || {
        (condition(&s, "edge", "Ready")["reason"] == "CredentialsInvalid").then_some(())
    })
    .await;
    eventually("the class says CredentialsInvalid", || {
        let class = s.server.get(
            "rediscache.dev",
            "v1alpha1",
            "rediscacheclasses",
            None,
            "edge",
        )?;
        let ready = class["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        (ready["reason"] == "CredentialsInvalid").then_some(())
    })
    .await;
    // Let the re-queue that the class's own status change causes pass, then
    // count: with a 5 s settled interval the cache and the class each retry
    // at most once in 3 s (a storm, backing off from 100 ms, makes dozens).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = s.upstash.requests().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let more = s.upstash.requests().len() - calls;
    assert!(
        more <= 4,
        "{more} calls in 3s with refused credentials: a retry storm"
    );
    assert!(s.upstash.databases().is_empty());
    s.shutdown.cancel();
    let _ = s.operator.await;
}
