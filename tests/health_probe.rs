//! The health probe against a real `redis-server` with TLS (certificates made
//! here with rcgen) and `requirepass`: reachable with latency and INFO values,
//! wrong token, wrong CA, stopped server, a server that never answers, a
//! single-node TLS cluster, the prober round (registry, gauges, reconcile
//! trigger, removal) and that no log line carries the token.
//!
//! Needs `redis-server` on PATH; `./scripts/test` installs it.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::channel::mpsc;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::ByteString;
use redis_cache_operator::api::{RedisCache, RedisCacheSpec, RedisCacheStatus};
use redis_cache_operator::backends::Credential;
use redis_cache_operator::health::{
    client_config, probe, roots_from_pem, FailureKind, HealthRegistry, ProbeTarget, Prober,
    SecretReader,
};
use redis_cache_operator::metrics::Metrics;

#[path = "support/redis.rs"]
mod redis_support;

use redis_support::{ca, free_port, Pki, RedisServer};

const TOKEN: &str = redis_support::TEST_PASSWORD;

/// Every log line of this test binary, to check that no token is ever logged.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buffer
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap_or_else(|e| e.into_inner())).into_owned()
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

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_reachable_cache_reports_latency_and_info_values() {
    logs();
    let pki = Pki::new();
    let server = RedisServer::start(&pki, "");
    let tls = pki.client();
    let mut c = server.client(&tls).await;
    let value = "x".repeat(10_000);
    for i in 0..10 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query_async(&mut c)
            .await
            .expect("SET");
    }
    for i in 0..9 {
        let _: Option<String> = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query_async(&mut c)
            .await
            .expect("GET hit");
    }
    for i in 0..3 {
        let _: Option<String> = redis::cmd("GET")
            .arg(format!("missing{i}"))
            .query_async(&mut c)
            .await
            .expect("GET miss");
    }

    let sample = probe(&server.target(TOKEN), &tls, TIMEOUT)
        .await
        .expect("reachable");
    assert!(
        sample.latency > Duration::ZERO && sample.latency < TIMEOUT,
        "{sample:?}"
    );
    assert!(
        sample.used_memory_bytes.expect("used_memory") > 100_000,
        "{sample:?}"
    );
    assert_eq!(sample.max_memory_bytes, Some(100 * 1024 * 1024));
    assert_eq!(sample.keyspace_hits, Some(9));
    assert_eq!(sample.keyspace_misses, Some(3));
    assert_eq!(sample.hit_ratio(), Some(0.75));
    assert_eq!(sample.evicted_keys, Some(0));
    assert!(
        sample.connected_clients.expect("clients") >= 2,
        "{sample:?}"
    );
    assert_eq!(sample.nodes, 1);

    let registry = HealthRegistry::new(Default::default(), Duration::from_secs(300));
    assert!(registry.record("ns/c", &Ok(sample)));
    let s = registry.snapshot("ns/c").expect("snapshot");
    assert_eq!(s.health.reachable, Some(true));
    assert_eq!(s.health.hit_ratio.as_deref(), Some("0.75"));
    assert_eq!(s.health.max_memory_bytes, Some(100 * 1024 * 1024));
    assert_eq!(s.health.evicted_keys, Some(0));
    assert!(s.health.checked_at.is_some());
    assert_eq!(
        (s.condition.status, s.condition.reason.as_str()),
        ("True", "Pong")
    );
}

#[tokio::test]
async fn a_wrong_token_is_auth_failed() {
    logs();
    let pki = Pki::new();
    let server = RedisServer::start(&pki, "");
    let wrong = "wrongTokenXYZ0123456789";
    let e = probe(&server.target(wrong), &pki.client(), TIMEOUT)
        .await
        .expect_err("refused");
    assert_eq!(e.kind, FailureKind::AuthFailed, "{e}");
    assert!(
        !e.message.contains(wrong) && !e.message.contains(TOKEN),
        "{e}"
    );

    let mut no_token = server.target(TOKEN);
    no_token.token = None;
    let e = probe(&no_token, &pki.client(), TIMEOUT)
        .await
        .expect_err("NOAUTH");
    assert_eq!(e.kind, FailureKind::AuthFailed, "{e}");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_tls_handshake_failed() {
    logs();
    let pki = Pki::new();
    let server = RedisServer::start(&pki, "");
    let (_, other_ca) = ca("some other CA");
    let tls = client_config(roots_from_pem(other_ca.as_bytes()).expect("roots")).expect("config");
    let e = probe(&server.target(TOKEN), &tls, TIMEOUT)
        .await
        .expect_err("untrusted");
    assert_eq!(e.kind, FailureKind::TlsHandshakeFailed, "{e}");
    assert!(e.message.contains("certificate"), "{e}");
}

#[tokio::test]
async fn a_stopped_server_is_connection_refused() {
    logs();
    let pki = Pki::new();
    let mut server = RedisServer::start(&pki, "");
    probe(&server.target(TOKEN), &pki.client(), TIMEOUT)
        .await
        .expect("reachable while running");
    server.stop();
    let e = probe(&server.target(TOKEN), &pki.client(), TIMEOUT)
        .await
        .expect_err("stopped");
    assert_eq!(e.kind, FailureKind::ConnectionRefused, "{e}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    logs();
    let pki = Pki::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts and then says nothing: the TLS handshake never completes.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let target = ProbeTarget {
        host: "localhost".into(),
        port,
        tls: true,
        token: Some(Credential::new(TOKEN)),
        cluster: false,
        ca_pem: None,
        connect_to: None,
    };
    let start = std::time::Instant::now();
    let e = probe(&target, &pki.client(), Duration::from_millis(300))
        .await
        .expect_err("silent");
    assert_eq!(e.kind, FailureKind::Timeout, "{e}");
    assert!(start.elapsed() < Duration::from_secs(3));
    silent.abort();
}

#[tokio::test]
async fn cluster_mode_probes_each_shard_primary() {
    logs();
    let pki = Pki::new();
    let bus = free_port();
    let server = RedisServer::start(
        &pki,
        &format!(
            "cluster-enabled yes\ncluster-port {bus}\ntls-cluster yes\n\
             cluster-announce-hostname localhost\ncluster-preferred-endpoint-type hostname\n\
             cluster-config-file nodes.conf"
        ),
    );
    let tls = pki.client();
    let mut c = server.client(&tls).await;
    let _: () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query_async(&mut c)
        .await
        .expect("assign all slots");
    let mut target = server.target(TOKEN);
    target.cluster = true;
    let sample = probe(&target, &tls, TIMEOUT)
        .await
        .expect("cluster reachable");
    assert_eq!(sample.nodes, 1);
    assert!(sample.used_memory_bytes.is_some());

    let e = probe(&server.target("wrong"), &tls, TIMEOUT)
        .await
        .expect_err("wrong token");
    assert_eq!(e.kind, FailureKind::AuthFailed);
}

/// Secrets from memory.
struct Secrets(BTreeMap<(String, String), Secret>);

#[async_trait::async_trait]
impl SecretReader for Secrets {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Secret>, kube::Error> {
        Ok(self.0.get(&(namespace.into(), name.into())).cloned())
    }
}

fn cache(name: &str, ready: bool) -> Arc<RedisCache> {
    let mut c = RedisCache::new(name, RedisCacheSpec::default());
    c.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some("ns".into()),
        ..ObjectMeta::default()
    };
    c.status = Some(RedisCacheStatus {
        connection_secret: Some(format!("{name}-redis")),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            reason: "Available".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(jiff::Timestamp::now()),
        }],
        ..RedisCacheStatus::default()
    });
    Arc::new(c)
}

fn connection_secret(port: u16, token: &str) -> Secret {
    let data = [
        ("host", "localhost".to_string()),
        ("port", port.to_string()),
        ("password", token.to_string()),
        ("tls", "true".into()),
        ("clusterMode", "Disabled".into()),
    ];
    Secret {
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

#[tokio::test]
async fn the_prober_records_triggers_exports_and_forgets() {
    logs();
    let pki = Pki::new();
    let server = RedisServer::start(&pki, "");
    let metrics = Metrics::new();
    let registry = Arc::new(HealthRegistry::new(
        metrics.health_gauges().clone(),
        Duration::from_secs(300),
    ));
    let prober = Prober {
        registry: registry.clone(),
        tls: pki.client(),
        interval: Duration::from_secs(60),
        timeout: TIMEOUT,
        concurrency: 4,
        resolver: None,
    };
    let wrong = "wrongTokenForTheLogCheck987";
    let secrets = Secrets(BTreeMap::from([
        (
            ("ns".into(), "up-redis".into()),
            connection_secret(server.port, TOKEN),
        ),
        (
            ("ns".into(), "bad-redis".into()),
            connection_secret(server.port, wrong),
        ),
        (
            ("ns".into(), "new-redis".into()),
            connection_secret(server.port, TOKEN),
        ),
    ]));
    let caches = vec![cache("up", true), cache("bad", true), cache("new", false)];
    let (mut trigger, mut changed) = mpsc::channel(16);

    prober
        .round(&caches, &secrets, Some("ns"), &mut trigger)
        .await;
    let mut triggered: Vec<String> = std::iter::from_fn(|| changed.try_recv().ok())
        .map(|r| r.name)
        .collect();
    triggered.sort();
    assert_eq!(triggered, vec!["bad", "up"], "new is not Ready: not probed");
    assert_eq!(registry.keys(), vec!["ns/bad", "ns/up"]);
    let bad = registry.snapshot("ns/bad").expect("bad");
    assert_eq!(bad.condition.reason, "AuthFailed");
    assert_eq!(bad.health.reachable, Some(false));
    let text = metrics.encode();
    for line in [
        r#"redis_cache_up{namespace="ns",name="up"} 1"#,
        r#"redis_cache_up{namespace="ns",name="bad"} 0"#,
        r#"redis_cache_max_memory_bytes{namespace="ns",name="up"} 104857600"#,
        r#"redis_cache_evicted_keys{namespace="ns",name="up"} 0"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    for name in [
        "redis_cache_latency_seconds",
        "redis_cache_used_memory_bytes",
        "redis_cache_connected_clients",
    ] {
        assert!(
            text.contains(&format!(r#"{name}{{namespace="ns",name="up"}}"#)),
            "{name} missing from\n{text}"
        );
    }

    // Nothing changed meaningfully: no reconcile asked for.
    prober
        .round(&caches, &secrets, Some("ns"), &mut trigger)
        .await;
    assert!(changed.try_recv().is_err(), "no trigger without a change");

    // A cache gone from the store is forgotten, with its gauges; caches of
    // other namespaces are not this prober's business.
    registry.record(
        "other/x",
        &Err(redis_cache_operator::health::ProbeError {
            kind: FailureKind::Timeout,
            message: "m".into(),
        }),
    );
    prober
        .round(&caches[1..], &secrets, Some("ns"), &mut trigger)
        .await;
    assert_eq!(registry.keys(), vec!["ns/bad", "other/x"]);
    let text = metrics.encode();
    assert!(!text.contains(r#"name="up""#), "{text}");
    registry.remove("ns/bad");
    assert!(!metrics.encode().contains(r#"name="bad""#));

    let logged = log_text();
    assert!(
        logged.contains("AuthFailed"),
        "the failure is logged:\n{logged}"
    );
    assert!(!logged.contains(wrong), "a token was logged");
    assert!(!logged.contains(TOKEN), "a token was logged");
}

#[test]
fn no_token_in_any_log_line() {
    // Runs with the others in this binary; whatever they logged so far must
    // not hold the token (the prober test checks after its own round too).
    logs();
    assert!(!log_text().contains(TOKEN));
}
