//! The real `run` code path (controllers, owned Secret watch, finalizer,
//! server-side apply status, Events, Lease, admin server) against the
//! project's Kubernetes API emulator and the in-memory provider.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/classes.rs"]
mod classes;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis.rs"]
mod redis_support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use apiserver::ApiServer;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use redis_cache_operator::api::{Phase, RedisCache, RedisCacheSpec};
use redis_cache_operator::backends::fake::FakeElastiCache;
use redis_cache_operator::controller::{run, LeaderElection, RunConfig};
use redis_cache_operator::health::HealthConfig;
use redis_cache_operator::metrics::Metrics;
use redis_cache_operator::reconcile::Polling;
use redis_support::{Pki, RedisServer};
use tokio_util::sync::CancellationToken;

/// Every log line of this test binary, to check that no token is ever logged.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn config(identity: &str, http_addr: Option<SocketAddr>) -> RunConfig {
    RunConfig {
        cluster_name: "loop".into(),
        watch_namespaces: Vec::new(),
        concurrency: 4,
        polling: Polling {
            in_transition: Duration::from_millis(100),
            settled: Duration::from_secs(2),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
        },
        leader_election: Some(LeaderElection {
            lease_name: "redis-cache-operator".into(),
            lease_namespace: "operators".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
        }),
        http_addr,
        instance: identity.into(),
        health: None,
        shutdown_timeout: Duration::from_secs(5),
    }
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = check() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn new_cache(name: &str) -> RedisCache {
    let mut spec: RedisCacheSpec = serde_json::from_str("{}").expect("defaults");
    spec.replicas_per_shard = 1;
    let mut cache = RedisCache::new(name, spec);
    cache.metadata.namespace = Some("shop".into());
    cache
}

fn phase(server: &ApiServer, name: &str) -> Option<String> {
    let c = server.get(
        "rediscache.dev",
        "v1alpha1",
        "rediscaches",
        Some("shop"),
        name,
    )?;
    c["status"]["phase"].as_str().map(str::to_string)
}

fn class_json(server: &ApiServer, name: &str) -> Option<serde_json::Value> {
    server.get(
        "rediscache.dev",
        "v1alpha1",
        "rediscacheclasses",
        None,
        name,
    )
}

/// Status and reason of a class's `Ready` condition.
fn class_ready(server: &ApiServer, name: &str) -> Option<(String, String)> {
    let class = class_json(server, name)?;
    let ready = class["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    Some((
        ready["status"].as_str()?.to_string(),
        ready["reason"].as_str()?.to_string(),
    ))
}

fn secret_key(server: &ApiServer, name: &str, key: &str) -> Option<String> {
    let s = server.get("", "v1", "secrets", Some("shop"), name)?;
    let b64 = s["data"][key].as_str()?.to_string();
    let bytes: k8s_openapi::ByteString = serde_json::from_value(serde_json::json!(b64)).ok()?;
    String::from_utf8(bytes.0).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_becomes_ready_with_a_complete_secret_and_is_deleted_cleanly() {
    let logs = logs().clone();
    let server = emulator().await;
    let client = server.client();
    let fake = Arc::new(FakeElastiCache::new(2));
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let http = free_port();
    let operator = tokio::spawn(run(
        client.clone(),
        config("replica-a", Some(http)),
        classes::registry(fake.clone()),
        metrics.clone(),
        shutdown.clone(),
    ));

    let caches: Api<RedisCache> = Api::namespaced(client.clone(), "shop");
    caches
        .create(&PostParams::default(), &new_cache("sessions"))
        .await
        .expect("create");
    eventually("Ready", || {
        (phase(&server, "sessions").as_deref() == Some(Phase::Ready.as_str())).then_some(())
    })
    .await;

    // The class controller: the class works (one cheap read) and counts the cache.
    eventually("the class's Ready=True and caches=1", || {
        let (ready, _) = class_ready(&server, "aws")?;
        let caches = class_json(&server, "aws")?["status"]["caches"].clone();
        (ready == "True" && caches == 1).then_some(())
    })
    .await;
    let cache = server
        .get(
            "rediscache.dev",
            "v1alpha1",
            "rediscaches",
            Some("shop"),
            "sessions",
        )
        .expect("cache");
    assert_eq!(cache["status"]["className"], "aws");
    assert_eq!(cache["status"]["provider"], "ElastiCache");
    assert!(cache["status"]["backendId"]
        .as_str()
        .is_some_and(|id| id.starts_with("loop-shop-sessions-")));

    // The Secret is complete, and AWS got the very token it holds.
    let token = secret_key(&server, "sessions-redis", "password").expect("password");
    let host = secret_key(&server, "sessions-redis", "host").expect("host");
    // Compared without printing: the URI carries the token.
    assert!(
        secret_key(&server, "sessions-redis", "uri")
            == Some(format!("rediss://:{token}@{host}:6379")),
        "uri is rediss://:<token>@{host}:6379"
    );
    for key in [
        "type",
        "provider",
        "port",
        "tls",
        "readerHost",
        "readerUri",
        "clusterMode",
    ] {
        assert!(
            secret_key(&server, "sessions-redis", key).is_some(),
            "Secret lacks {key}"
        );
    }
    let id = server
        .get(
            "rediscache.dev",
            "v1alpha1",
            "rediscaches",
            Some("shop"),
            "sessions",
        )
        .and_then(|c| {
            c["status"]["replicationGroupId"]
                .as_str()
                .map(str::to_string)
        })
        .expect("id in status");
    assert!(
        fake.group(&id).expect("group").auth_token.expose() == token,
        "AWS got the token in the Secret"
    );

    // Leader election, Events and the admin endpoints are live.
    let lease = server
        .get(
            "coordination.k8s.io",
            "v1",
            "leases",
            Some("operators"),
            "redis-cache-operator",
        )
        .expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");
    // The Event is posted after the status write that made the cache Ready.
    eventually("the Available event", || {
        server
            .list("events.k8s.io", "v1", "events")
            .iter()
            .any(|e| e["reason"] == "Available")
            .then_some(())
    })
    .await;
    let ready_gauge =
        r#"redis_cache_operator_caches{phase="Ready",class="aws",provider="ElastiCache"} 1"#;
    let mut body = http_get(http, "/metrics").await;
    for _ in 0..100 {
        if body.contains(ready_gauge) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        body = http_get(http, "/metrics").await;
    }
    assert!(body.contains(ready_gauge), "{body}");
    assert!(
        body.contains("redis_cache_operator_reconciles_total{result=\"success\"}"),
        "{body}"
    );
    assert_eq!(http_get(http, "/healthz").await, "ok");
    assert_eq!(http_get(http, "/readyz").await, "ready");

    // A Secret edited by hand is put back (owned-Secret watch).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "shop");
    let patch = serde_json::json!({"data": {"uri": null}});
    secrets
        .patch(
            "sessions-redis",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("edit secret");
    eventually("uri restored", || {
        secret_key(&server, "sessions-redis", "uri")
    })
    .await;

    // Delete: the finalizer holds until the fake says everything is gone.
    caches
        .delete("sessions", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("RedisCache gone", || {
        server
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
    assert!(
        fake.is_empty(),
        "AWS resources deleted before the finalizer went"
    );
    eventually("Secret garbage-collected", || {
        server
            .get("", "v1", "secrets", Some("shop"), "sessions-redis")
            .is_none()
            .then_some(())
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), operator)
        .await
        .expect("graceful shutdown")
        .expect("task")
        .expect("run returns Ok");

    let text = String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())).to_string();
    assert!(text.contains("became leader"), "logs were captured");
    assert!(
        !text.contains(&token),
        "the AUTH token appeared in a log line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_when_the_leader_stops() {
    let _ = logs();
    let server = emulator().await;
    let fake = Arc::new(FakeElastiCache::new(1));
    let start = |identity: &'static str| {
        let shutdown = CancellationToken::new();
        let task = start(
            server.client(),
            identity,
            fake.clone(),
            Arc::new(Metrics::new()),
            shutdown.clone(),
        );
        (shutdown, task)
    };
    let (stop_a, task_a) = start("replica-a");
    let holder = || {
        server
            .get(
                "coordination.k8s.io",
                "v1",
                "leases",
                Some("operators"),
                "redis-cache-operator",
            )
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    eventually("replica-a leads", || {
        (holder().as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let (stop_b, task_b) = start("replica-b");

    let caches: Api<RedisCache> = Api::namespaced(server.client(), "shop");
    caches
        .create(&PostParams::default(), &new_cache("one"))
        .await
        .expect("create");
    eventually("one Ready", || {
        (phase(&server, "one").as_deref() == Some("Ready")).then_some(())
    })
    .await;
    assert_eq!(
        holder().as_deref(),
        Some("replica-a"),
        "the standby did not steal the lease"
    );

    let stopping = std::time::Instant::now();
    stop_a.cancel();
    task_a
        .await
        .expect("task")
        .expect("replica-a stops cleanly");
    eventually("replica-b leads", || {
        (holder().as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    // Released, not expired: the hand-over is quicker than the 3s lease.
    let handover = stopping.elapsed();
    assert!(
        handover < Duration::from_secs(3),
        "hand-over took {handover:?}"
    );
    caches
        .create(&PostParams::default(), &new_cache("two"))
        .await
        .expect("create");
    eventually("two Ready under the new leader", || {
        (phase(&server, "two").as_deref() == Some("Ready")).then_some(())
    })
    .await;
    assert_eq!(fake.group_ids().len(), 2, "each cache created exactly once");

    stop_b.cancel();
    task_b
        .await
        .expect("task")
        .expect("replica-b stops cleanly");
}

fn cache_json(server: &ApiServer, name: &str) -> serde_json::Value {
    server
        .get(
            "rediscache.dev",
            "v1alpha1",
            "rediscaches",
            Some("shop"),
            name,
        )
        .unwrap_or_default()
}

fn condition(server: &ApiServer, name: &str, type_: &str) -> serde_json::Value {
    cache_json(server, name)["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or_default()
}

/// The health probe end to end: the operator probes a real TLS
/// redis-server with the token from the Secret, the reconciler writes
/// `status.health` and `Reachable`, a stopped server turns `Reachable`
/// False with an Event while `Ready` stays True, and the per-cache gauges go
/// away with the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probe_reports_through_status_events_and_metrics() {
    let logs = logs().clone();
    let pki = Pki::new();
    let mut redis = RedisServer::start(&pki, "");
    let server = emulator().await;
    let client = server.client();
    let fake = Arc::new(FakeElastiCache::new(1));
    fake.serve_endpoints_at("localhost", i32::from(redis.port));
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let http = free_port();
    let mut cfg = config("replica-h", Some(http));
    cfg.leader_election = None;
    cfg.health = Some(HealthConfig {
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(2),
        concurrency: 4,
        ca_file: Some(pki.path("ca.crt")),
        status_min_interval: Duration::from_millis(200),
        resolver: None,
    });
    let operator = tokio::spawn(run(
        client.clone(),
        cfg,
        classes::registry(fake.clone()),
        metrics.clone(),
        shutdown.clone(),
    ));
    let caches: Api<RedisCache> = Api::namespaced(client.clone(), "shop");
    caches
        .create(&PostParams::default(), &new_cache("probed"))
        .await
        .expect("create");
    eventually("Ready", || {
        (phase(&server, "probed").as_deref() == Some(Phase::Ready.as_str())).then_some(())
    })
    .await;
    assert_eq!(
        secret_key(&server, "probed-redis", "host").as_deref(),
        Some("localhost")
    );

    // The server takes the token the operator generated.
    let token = secret_key(&server, "probed-redis", "password").expect("password");
    redis.set_password(&pki.client(), &token).await;
    eventually("Reachable=True", || {
        (condition(&server, "probed", "Reachable")["status"] == "True").then_some(())
    })
    .await;
    let health = cache_json(&server, "probed")["status"]["health"].clone();
    assert_eq!(health["reachable"], true, "{health}");
    assert!(health["latencyMs"].is_i64(), "{health}");
    assert!(
        health["usedMemoryBytes"].as_i64().is_some_and(|m| m > 0),
        "{health}"
    );
    assert!(health["checkedAt"].is_string(), "{health}");
    let scrape = http_get(http, "/metrics").await;
    assert!(
        scrape.contains(r#"redis_cache_up{namespace="shop",name="probed"} 1"#),
        "{scrape}"
    );

    // The server goes away: Reachable turns False, Ready does not.
    redis.stop();
    eventually("Reachable=False", || {
        let c = condition(&server, "probed", "Reachable");
        (c["status"] == "False").then_some(())
    })
    .await;
    let reachable = condition(&server, "probed", "Reachable");
    assert!(
        ["ConnectionRefused", "Timeout"]
            .contains(&reachable["reason"].as_str().unwrap_or_default()),
        "{reachable}"
    );
    assert_eq!(condition(&server, "probed", "Ready")["status"], "True");
    eventually("a Warning event for the unreachable cache", || {
        server
            .list("events.k8s.io", "v1", "events")
            .iter()
            .any(|e| e["type"] == "Warning" && e["reason"] == reachable["reason"])
            .then_some(())
    })
    .await;

    // Deleted: the per-cache gauges go with it.
    caches
        .delete("probed", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("cache gone", || {
        server
            .get(
                "rediscache.dev",
                "v1alpha1",
                "rediscaches",
                Some("shop"),
                "probed",
            )
            .is_none()
            .then_some(())
    })
    .await;
    for _ in 0..100 {
        if !http_get(http, "/metrics")
            .await
            .contains(r#"name="probed""#)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scrape = http_get(http, "/metrics").await;
    assert!(!scrape.contains(r#"name="probed""#), "{scrape}");

    shutdown.cancel();
    operator.await.expect("join").expect("clean stop");
    let logged =
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    assert!(!logged.contains(&token), "a token was logged");
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin server");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_status_shows_refused_credentials_then_recovers() {
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let fake = Arc::new(FakeElastiCache::new(1));
    // Two refusals: the class may be checked twice at start (its creation
    // and its own first status write), and the test must see the refusal.
    for _ in 0..2 {
        fake.fail_next(
            redis_cache_operator::backends::fake::Op::CheckAccess,
            redis_cache_operator::backends::ErrorClass::CredentialsInvalid,
            "InvalidClientTokenId",
        );
    }
    classes::install(&server.client(), classes::elasticache("aws")).await;
    let shutdown = CancellationToken::new();
    let operator = start(
        server.client(),
        "replica-a",
        fake.clone(),
        Arc::new(Metrics::new()),
        shutdown.clone(),
    );
    let ready = |server: &ApiServer| class_ready(server, "aws");
    eventually("Ready=False CredentialsInvalid", || {
        let (status, reason) = ready(&server)?;
        (status == "False" && reason == "CredentialsInvalid").then_some(())
    })
    .await;
    // The next check (after the settled interval) succeeds.
    eventually("Ready=True", || (ready(&server)?.0 == "True").then_some(())).await;
    shutdown.cancel();
    operator
        .await
        .expect("join")
        .expect("operator stops cleanly");
}

/// The emulator with the status subresources and the default `aws` class.
async fn emulator() -> ApiServer {
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    classes::install(&server.client(), classes::elasticache("aws")).await;
    server
}

/// Runs replica `identity` (no admin server) on `fake` until `stop`.
fn start(
    client: kube::Client,
    identity: &str,
    fake: Arc<FakeElastiCache>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(run(
        client,
        config(identity, None),
        classes::registry(fake),
        metrics,
        stop,
    ))
}

/// The lease holder on `server`.
fn lease_holder(server: &ApiServer) -> Option<String> {
    server
        .get(
            "coordination.k8s.io",
            "v1",
            "leases",
            Some("operators"),
            "redis-cache-operator",
        )
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// Whether `metrics` say this replica is in election `state`.
fn leader_state_is(metrics: &Metrics, state: &str) -> bool {
    metrics.encode().contains(&format!(
        "redis_cache_operator_leader{{state=\"{state}\"}} 1"
    ))
}

/// A client of `url` (the proxy in front of the emulator).
fn client_of(url: &str) -> kube::Client {
    let uri: http::Uri = url.parse().expect("proxy url");
    kube::Client::try_from(kube::Config::new(uri)).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_acting_before_its_lease_expires_and_the_standby_takes_over() {
    let _ = logs();
    let server = emulator().await;
    let proxy = proxy::Proxy::start(server.addr()).await;
    let (fake_a, fake_b) = (
        Arc::new(FakeElastiCache::new(1)),
        Arc::new(FakeElastiCache::new(1)),
    );
    let (metrics_a, metrics_b) = (Arc::new(Metrics::new()), Arc::new(Metrics::new()));
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let task_a = start(
        client_of(&proxy.url()),
        "replica-a",
        fake_a.clone(),
        metrics_a.clone(),
        stop_a.clone(),
    );
    eventually("replica-a leads", || {
        (lease_holder(&server).as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let caches: Api<RedisCache> = Api::namespaced(server.client(), "shop");
    caches
        .create(&PostParams::default(), &new_cache("one"))
        .await
        .expect("create");
    eventually("one Ready", || {
        (phase(&server, "one").as_deref() == Some("Ready")).then_some(())
    })
    .await;
    let task_b = start(
        server.client(),
        "replica-b",
        fake_b.clone(),
        metrics_b.clone(),
        stop_b.clone(),
    );
    eventually("replica-b stands by", || {
        leader_state_is(&metrics_b, "standby").then_some(())
    })
    .await;

    // Only replica-a is cut off from the API server.
    proxy.set_cut(true);
    let cut = std::time::Instant::now();
    eventually("replica-a steps down", || {
        leader_state_is(&metrics_a, "lost").then_some(())
    })
    .await;
    let stepped_down = cut.elapsed();
    let calls_when_stepped_down = fake_a.calls().len();
    // The lease is 3s: replica-a stopped acting before anyone could take over.
    assert!(
        stepped_down < Duration::from_secs(3),
        "stepped down after {stepped_down:?}"
    );
    assert_eq!(
        lease_holder(&server).as_deref(),
        Some("replica-a"),
        "nobody took over before replica-a stepped down"
    );
    eventually("replica-b takes over", || {
        (lease_holder(&server).as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    eventually("replica-b leads", || {
        leader_state_is(&metrics_b, "leading").then_some(())
    })
    .await;
    assert_eq!(
        fake_a.calls().len(),
        calls_when_stepped_down,
        "replica-a made no backend call after stepping down"
    );

    // The partition heals: replica-a competes again and finds a leader.
    proxy.set_cut(false);
    eventually("replica-a stands by", || {
        leader_state_is(&metrics_a, "standby").then_some(())
    })
    .await;
    assert_eq!(lease_holder(&server).as_deref(), Some("replica-b"));
    stop_a.cancel();
    stop_b.cancel();
    let _ = task_a.await;
    task_b
        .await
        .expect("task")
        .expect("replica-b stops cleanly");
    let logs = String::from_utf8_lossy(&logs().lock().expect("logs")).to_string();
    assert!(
        logs.contains("ERROR") && logs.contains("lost leadership"),
        "the step-down is logged as an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blip_shorter_than_the_lease_hands_nothing_over() {
    let server = emulator().await;
    let proxy = proxy::Proxy::start(server.addr()).await;
    let fake = Arc::new(FakeElastiCache::new(1));
    let (metrics_a, metrics_b) = (Arc::new(Metrics::new()), Arc::new(Metrics::new()));
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let task_a = start(
        client_of(&proxy.url()),
        "replica-a",
        fake.clone(),
        metrics_a.clone(),
        stop_a.clone(),
    );
    eventually("replica-a leads", || {
        leader_state_is(&metrics_a, "leading").then_some(())
    })
    .await;
    let task_b = start(
        server.client(),
        "replica-b",
        fake.clone(),
        metrics_b.clone(),
        stop_b.clone(),
    );
    eventually("replica-b stands by", || {
        leader_state_is(&metrics_b, "standby").then_some(())
    })
    .await;
    // Shorter than renew_every: one renewal may fail, none is missed for long.
    proxy.set_cut(true);
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.set_cut(false);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        leader_state_is(&metrics_a, "leading"),
        "replica-a still leads"
    );
    assert!(
        leader_state_is(&metrics_b, "standby"),
        "replica-b still stands by"
    );
    assert_eq!(lease_holder(&server).as_deref(), Some("replica-a"));
    stop_a.cancel();
    stop_b.cancel();
    task_a
        .await
        .expect("task")
        .expect("replica-a stops cleanly");
    task_b
        .await
        .expect("task")
        .expect("replica-b stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_admits_namespaces_by_label_and_refuses_others_by_name() {
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let client = server.client();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for (name, team) in [("shop", "blog"), ("pay", "payments")] {
        let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"team": team}}
        }))
        .expect("namespace");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
    }
    let mut class = classes::elasticache("payments");
    class.spec.allowed_namespace_selector = serde_json::from_value(serde_json::json!({
        "matchLabels": {"team": "payments"}
    }))
    .expect("selector");
    classes::install(&client, class).await;
    let shutdown = CancellationToken::new();
    let operator = start(
        client.clone(),
        "replica-a",
        Arc::new(FakeElastiCache::new(1)),
        Arc::new(Metrics::new()),
        shutdown.clone(),
    );
    let mut paid = new_cache("paid");
    paid.metadata.namespace = Some("pay".into());
    Api::<RedisCache>::namespaced(client.clone(), "pay")
        .create(&PostParams::default(), &paid)
        .await
        .expect("create");
    Api::<RedisCache>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &new_cache("refused"))
        .await
        .expect("create");
    eventually("the refused cache says why", || {
        let ready = condition(&server, "refused", "Ready");
        (ready["reason"] == "InvalidSpec").then_some(ready)
    })
    .await;
    let message = condition(&server, "refused", "Ready")["message"].to_string();
    assert!(
        message.contains("does not allow namespace shop") && message.contains("team=payments"),
        "{message}"
    );
    eventually("the cache in a selected namespace gets Ready", || {
        let c = server.get(
            "rediscache.dev",
            "v1alpha1",
            "rediscaches",
            Some("pay"),
            "paid",
        )?;
        (c["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    shutdown.cancel();
    operator
        .await
        .expect("join")
        .expect("operator stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_does_not_parse_is_reported_and_stops_nothing_else() {
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let client = server.client();
    classes::install(&client, classes::elasticache("aws")).await;
    // The emulator validates nothing, like a CRD installed without its schema.
    let resource = kube::api::ApiResource::erase::<RedisCache>(&());
    let raw: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), "shop", &resource);
    let bad: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "rediscache.dev/v1alpha1",
        "kind": "RedisCache",
        "metadata": {"name": "bad", "namespace": "shop"},
        "spec": {"deletionPolicy": "Destroy"}
    }))
    .expect("object");
    raw.create(&PostParams::default(), &bad)
        .await
        .expect("create");
    let shutdown = CancellationToken::new();
    let operator = start(
        client.clone(),
        "replica-a",
        Arc::new(FakeElastiCache::new(1)),
        Arc::new(Metrics::new()),
        shutdown.clone(),
    );
    Api::<RedisCache>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &new_cache("good"))
        .await
        .expect("create");
    eventually("the good cache gets Ready", || {
        (phase(&server, "good").as_deref() == Some("Ready")).then_some(())
    })
    .await;
    let ready = eventually("the bad one is reported", || {
        let ready = condition(&server, "bad", "Ready");
        (ready["reason"] == "InvalidSpec").then_some(ready)
    })
    .await;
    let message = ready["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.contains("spec.deletionPolicy") && message.contains("Destroy"),
        "{message}"
    );
    assert_eq!(phase(&server, "bad").as_deref(), Some("Failed"));
    shutdown.cancel();
    operator
        .await
        .expect("join")
        .expect("operator stops cleanly");
}

/// The binary as a cluster without any cloud runs it: `run` with an empty
/// environment (no AWS region, credentials or endpoint) and only a
/// Kubernetes class starts, leads, serves /readyz, creates the cache's
/// StatefulSet, and never builds an AWS client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_needs_no_cloud_configuration_with_a_kubernetes_class() {
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let mut class = classes::elasticache("in-cluster");
    class.spec.provider = redis_cache_operator::api::ProviderKind::Kubernetes;
    class.spec.elasti_cache = None;
    class.spec.kubernetes = Some(Default::default());
    classes::install(&server.client(), class).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: e, cluster: {{server: \"{}\"}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: e, user: u, namespace: operators}}}}]\ncurrent-context: c\n",
            server.url()
        ),
    )
    .expect("kubeconfig");
    let http = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_redis-cache-operator"))
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "run",
            "--http-addr",
            &http.to_string(),
            "--lease-namespace",
            "operators",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the operator");
    let mut cache = new_cache("dev");
    cache.spec.replicas_per_shard = 0;
    Api::<RedisCache>::namespaced(server.client(), "shop")
        .create(&PostParams::default(), &cache)
        .await
        .expect("create");
    let ready = eventually("the cache waits for its pods", || {
        let ready = condition(&server, "dev", "Ready");
        (ready["reason"] == "Creating").then_some(ready)
    })
    .await;
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("dev-redis")),
        "{ready}"
    );
    assert!(
        server
            .get("apps", "v1", "statefulsets", Some("shop"), "dev-redis")
            .is_some(),
        "the StatefulSet exists"
    );
    assert_eq!(http_get(http, "/readyz").await, "ready");
    let metrics = http_get(http, "/metrics").await;
    assert!(metrics.contains(r#"redis_cache_operator_leader{state="leading"} 1"#));
    assert!(
        !metrics.contains("aws_calls_total{"),
        "no AWS call was made"
    );
    let _ = child.kill();
    let output = child.wait_with_output().expect("operator output");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        !log.contains("AWS account ready"),
        "no AWS client was built"
    );
    assert!(!log.contains("region"), "nothing asked for a region");
}
