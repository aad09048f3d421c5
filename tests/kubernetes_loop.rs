//! The in-cluster backend end to end: the real `run` code path against the
//! project's Kubernetes API emulator, with a test kubelet that starts a real
//! `redis-server` for each pod of the StatefulSet from the objects the
//! operator wrote. The README quickstart: the chart's default class,
//! `examples/dev.yaml` → Ready → a Secret whose URI answers PING over TLS
//! with the Secret's CA → health probe Reachable → rotation with two
//! passwords → delete.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/kubelet.rs"]
mod kubelet;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use apiserver::{ApiServer, Snapshotter};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use redis_cache_operator::api::{RedisCache, RedisCacheClass, ROTATE_ANNOTATION};
use redis_cache_operator::backends::kubernetes::acl::Password;
use redis_cache_operator::backends::kubernetes::primary::{self, Credentials, Endpoint};
use redis_cache_operator::backends::kubernetes::KubernetesFactory;
use redis_cache_operator::backends::Registry;
use redis_cache_operator::controller::{run, LeaderElection, RunConfig};
use redis_cache_operator::health::{HealthConfig, Resolver};
use redis_cache_operator::metrics::Metrics;
use redis_cache_operator::reconcile::Polling;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const NS: &str = "default";

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

/// Cluster DNS for the probe: `<service>.<namespace>.svc` → the IP of a
/// ready pod the Service selects (what kube-proxy would route to).
fn service_dns(store: Snapshotter) -> Resolver {
    Resolver(Arc::new(move |host: &str| -> Option<IpAddr> {
        let mut parts = host.split('.');
        let (svc, ns) = (parts.next()?, parts.next()?);
        let service = store.get("", "services", ns, svc)?;
        let selector = service["spec"]["selector"].as_object()?.clone();
        store
            .list("", "pods")
            .into_iter()
            .filter(|p| p["metadata"]["namespace"] == ns)
            .filter(|p| {
                selector
                    .iter()
                    .all(|(k, v)| &p["metadata"]["labels"][k] == v)
            })
            .filter(|p| p["status"]["conditions"][0]["status"] == "True")
            .find_map(|p| p["status"]["podIP"].as_str()?.parse().ok())
    }))
}

fn config(http: SocketAddr, store: Snapshotter) -> RunConfig {
    RunConfig {
        cluster_name: "kind".into(),
        watch_namespaces: Vec::new(),
        concurrency: 4,
        polling: Polling {
            in_transition: Duration::from_millis(200),
            settled: Duration::from_secs(2),
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(1),
        },
        leader_election: Some(LeaderElection {
            lease_name: "redis-cache-operator".into(),
            lease_namespace: "operators".into(),
            identity: "kind-a".into(),
            lease_duration: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
        }),
        http_addr: Some(http),
        instance: "kind-a".into(),
        health: Some(HealthConfig {
            interval: Duration::from_millis(300),
            timeout: Duration::from_secs(2),
            concurrency: 4,
            ca_file: None,
            status_min_interval: Duration::from_millis(300),
            resolver: Some(service_dns(store)),
        }),
        shutdown_timeout: Duration::from_secs(5),
    }
}

async fn eventually<T>(what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..secs * 10 {
        if let Some(v) = check() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

fn cache_json(server: &ApiServer, name: &str) -> Option<Value> {
    server.get("rediscache.dev", "v1alpha1", "rediscaches", Some(NS), name)
}

fn condition(server: &ApiServer, name: &str, ty: &str) -> Value {
    cache_json(server, name)
        .and_then(|c| {
            c["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|x| x["type"] == ty)
                .cloned()
        })
        .unwrap_or(Value::Null)
}

fn secret_key(server: &ApiServer, name: &str, key: &str) -> Option<String> {
    let s = server.get("", "v1", "secrets", Some(NS), name)?;
    let bytes: k8s_openapi::ByteString = serde_json::from_value(s["data"][key].clone()).ok()?;
    String::from_utf8(bytes.0).ok()
}

/// The manifest the README's quickstart applies.
fn example_dev() -> RedisCache {
    let text = std::fs::read_to_string("examples/dev.yaml").expect("examples/dev.yaml");
    let mut cache: RedisCache = serde_yaml_ng::from_str(&text).expect("a RedisCache");
    cache.metadata.namespace = Some(NS.into()); // kubectl apply: the current namespace
    cache
}

/// The class the chart installs with its default values (charts/…/values.yaml `defaultClass`).
fn chart_default_class() -> RedisCacheClass {
    serde_yaml_ng::from_str(
        "apiVersion: rediscache.dev/v1alpha1\nkind: RedisCacheClass\nmetadata:\n  name: default\n  annotations: {rediscache.dev/is-default-class: \"true\"}\nspec:\n  provider: Kubernetes\n  defaults: {deletionPolicy: Delete, engine: valkey}\n  kubernetes: {}\n",
    )
    .expect("class")
}

/// PING over TLS, verified against `ca` for the Secret's `host`, at the
/// address the Service routes to; authenticated as `default`.
async fn ping(
    addr: IpAddr,
    host: &str,
    port: u16,
    ca: &str,
    password: &str,
) -> Result<String, String> {
    let tls = primary::client_config(ca).map_err(|e| e.to_string())?;
    let creds = Credentials {
        user: "default".into(),
        password: Password::new(password).map_err(|e| e.to_string())?,
    };
    let endpoint = Endpoint {
        host: addr.to_string(),
        port,
        server_name: host.to_string(),
    };
    let mut c = primary::connect(&endpoint, &tls, &creds, Duration::from_secs(3))
        .await
        .map_err(|e| e.to_string())?;
    c.query::<String>(&redis::cmd("PING"))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_dev_cache_is_ready_reachable_rotates_and_deletes() {
    let logs = logs();
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let kubelet = kubelet::Kubelet::start(&server);
    let client = server.client();
    Api::<RedisCacheClass>::all(client.clone())
        .create(&PostParams::default(), &chart_default_class())
        .await
        .expect("class");
    let backends = Arc::new(Registry::empty().with(Arc::new(KubernetesFactory::new(
        client.clone(),
        "operators".into(),
    ))));
    let shutdown = CancellationToken::new();
    let http = free_port();
    let operator = tokio::spawn(run(
        client.clone(),
        config(http, server.snapshotter()),
        backends,
        Arc::new(Metrics::new()),
        shutdown.clone(),
    ));

    let caches: Api<RedisCache> = Api::namespaced(client.clone(), NS);
    caches
        .create(&PostParams::default(), &example_dev())
        .await
        .expect("kubectl apply -f examples/dev.yaml");

    // Ready, with a complete Secret.
    for i in 0.. {
        if cache_json(&server, "dev").is_some_and(|c| c["status"]["phase"] == "Ready") {
            break;
        }
        assert!(
            i < 600,
            "not Ready after 60 s: {:#}\nlog of dev-redis-0: {}\npods: {:#?}",
            cache_json(&server, "dev").unwrap_or_default()["status"],
            kubelet.log("default/dev-redis-0"),
            server
                .list("", "v1", "pods")
                .iter()
                .map(|p| (p["metadata"]["name"].clone(), p["status"].clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let host = secret_key(&server, "dev-redis", "host").expect("host");
    assert_eq!(host, "dev-redis.default.svc");
    let port: u16 = secret_key(&server, "dev-redis", "port")
        .expect("port")
        .parse()
        .expect("a port");
    let password = secret_key(&server, "dev-redis", "password").expect("password");
    let ca = secret_key(&server, "dev-redis", "ca.crt").expect("ca.crt");
    assert!(
        secret_key(&server, "dev-redis", "uri")
            == Some(format!("rediss://default:{password}@{host}:{port}")),
        "uri is rediss://default:<password>@{host}:{port}"
    );
    assert_eq!(
        secret_key(&server, "dev-redis", "provider").as_deref(),
        Some("kubernetes")
    );
    let primary_ip = kubelet.pod_ip("default/dev-redis-0").expect("pod running");
    assert_eq!(
        ping(primary_ip, &host, port, &ca, &password).await,
        Ok("PONG".to_string())
    );
    assert!(ping(primary_ip, &host, port, &ca, "wrongPassword123")
        .await
        .is_err());
    // Plain TCP is refused (port 0: TLS only): a plaintext PING gets no PONG.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect((primary_ip, port))
            .await
            .expect("tcp");
        let _ = tcp.write_all(b"PING\r\n").await;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        assert!(!String::from_utf8_lossy(&buf[..n]).contains("PONG"));
    }
    // The primary is labelled, so Service dev-redis selects it.
    let pod = server
        .get("", "v1", "pods", Some(NS), "dev-redis-0")
        .expect("pod");
    assert_eq!(pod["metadata"]["labels"]["rediscache.dev/role"], "primary");

    // The health probe reaches it through the Service name, with the Secret's CA.
    eventually("Reachable=True", 30, || {
        (condition(&server, "dev", "Reachable")["status"] == "True").then_some(())
    })
    .await;

    // An edited object is repaired: the StatefulSet comes back as rendered.
    let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(client.clone(), NS);
    sts.patch(
        "dev-redis",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await
    .expect("edit");
    eventually("the StatefulSet repaired", 30, || {
        let s = server.get("apps", "v1", "statefulsets", Some(NS), "dev-redis")?;
        (s["spec"]["replicas"] == 1).then_some(())
    })
    .await;

    // Rotation: two passwords on `default`, the Secret promoted, then the old one retired.
    caches
        .patch(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {ROTATE_ANNOTATION: "now"}},
                "spec": {"auth": {"rotationGracePeriod": "2s"}},
            })),
        )
        .await
        .expect("ask for a rotation");
    let new = eventually("the Secret holds a new password", 60, || {
        secret_key(&server, "dev-redis", "password").filter(|p| *p != password)
    })
    .await;
    // At promotion both work (the grace period); afterwards only the new one.
    assert_eq!(
        ping(primary_ip, &host, port, &ca, &new).await,
        Ok("PONG".into())
    );
    let mut old_refused = false;
    for _ in 0..100 {
        if ping(primary_ip, &host, port, &ca, &password).await.is_err() {
            old_refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        old_refused,
        "the old password is retired after the grace period"
    );
    assert_eq!(
        ping(primary_ip, &host, port, &ca, &new).await,
        Ok("PONG".into())
    );

    // No credential in status, Events or any log line.
    let everything = format!(
        "{}{:?}{}",
        cache_json(&server, "dev").unwrap_or_default(),
        server.list("events.k8s.io", "v1", "events"),
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())),
    );
    for secret in [&password, &new] {
        assert!(!everything.contains(secret.as_str()), "a password leaked");
    }

    // Delete: everything goes, the server stops.
    caches
        .delete("dev", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the cache is gone", 60, || {
        cache_json(&server, "dev").is_none().then_some(())
    })
    .await;
    for (group, plural, name) in [
        ("apps", "statefulsets", "dev-redis"),
        ("", "services", "dev-redis"),
        ("", "configmaps", "dev-redis-config"),
        ("", "secrets", "dev-redis-acl"),
    ] {
        assert!(
            server.get(group, "v1", plural, Some(NS), name).is_none(),
            "{plural}/{name} deleted"
        );
    }
    eventually("the server stopped", 30, || {
        kubelet
            .pod_ip("default/dev-redis-0")
            .is_none()
            .then_some(())
    })
    .await;
    shutdown.cancel();
    let _ = operator.await;
}

fn start_operator(
    client: &kube::Client,
    http: SocketAddr,
    store: Snapshotter,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let backends = Arc::new(Registry::empty().with(Arc::new(KubernetesFactory::new(
        client.clone(),
        "operators".into(),
    ))));
    tokio::spawn(run(
        client.clone(),
        config(http, store),
        backends,
        Arc::new(Metrics::new()),
        CancellationToken::new(),
    ))
}

/// What the `default` user's password in the Secret does against the pod now.
async fn secret_password_works(server: &ApiServer, kubelet: &kubelet::Kubelet) -> bool {
    let (Some(ip), Some(host), Some(ca), Some(pw)) = (
        kubelet.pod_ip("default/dev-redis-0"),
        secret_key(server, "dev-redis", "host"),
        secret_key(server, "dev-redis", "ca.crt"),
        secret_key(server, "dev-redis", "password"),
    ) else {
        return false;
    };
    ping(ip, &host, 6379, &ca, &pw).await == Ok("PONG".into())
}

/// Day 2 and crashes: a memory change restarts the pod with the new
/// maxmemory; then the operator is killed (its task aborted mid-step) over
/// and over while it rotates the password, and the password in the Secret
/// works after every crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_rolls_out_and_crashes_during_rotation_lose_nothing() {
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let kubelet = kubelet::Kubelet::start(&server);
    let client = server.client();
    Api::<RedisCacheClass>::all(client.clone())
        .create(&PostParams::default(), &chart_default_class())
        .await
        .expect("class");
    let http = free_port();
    let mut operator = start_operator(&client, http, server.snapshotter());
    let caches: Api<RedisCache> = Api::namespaced(client.clone(), NS);
    caches
        .create(&PostParams::default(), &example_dev())
        .await
        .expect("create");
    eventually("phase Ready", 60, || {
        (cache_json(&server, "dev")?["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    let first_uid = server
        .get("", "v1", "pods", Some(NS), "dev-redis-0")
        .map(|p| p["metadata"]["uid"].clone())
        .expect("pod");

    // Day 2: memory → the pod restarts with the new maxmemory.
    caches
        .patch(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"memory": "512Mi"}})),
        )
        .await
        .expect("memory");
    eventually("the pod restarted", 60, || {
        let p = server.get("", "v1", "pods", Some(NS), "dev-redis-0")?;
        (p["metadata"]["uid"] != first_uid && p["status"]["conditions"][0]["status"] == "True")
            .then_some(())
    })
    .await;
    let maxmemory = {
        let ip = kubelet.pod_ip("default/dev-redis-0").expect("running");
        let ca = secret_key(&server, "dev-redis", "ca.crt").expect("ca");
        let pw = secret_key(&server, "dev-redis", "password").expect("pw");
        let tls = primary::client_config(&ca).expect("tls");
        let creds = Credentials {
            user: "default".into(),
            password: Password::new(pw).expect("pw"),
        };
        let endpoint = Endpoint {
            host: ip.to_string(),
            port: 6379,
            server_name: "dev-redis.default.svc".into(),
        };
        let mut c = primary::connect(&endpoint, &tls, &creds, Duration::from_secs(3))
            .await
            .expect("connect");
        c.query::<Vec<String>>(redis::cmd("CONFIG").arg("GET").arg("maxmemory"))
            .await
            .expect("CONFIG GET")
    };
    assert_eq!(maxmemory, ["maxmemory", "536870912"]);
    eventually("Ready after the change", 60, || {
        (cache_json(&server, "dev")?["status"]["phase"] == "Ready").then_some(())
    })
    .await;

    // A certificate near its end is issued again and the pod restarts with it.
    let cert_before = secret_key(&server, "dev-redis-tls", "tls.crt").expect("tls.crt");
    let uid_before = server
        .get("", "v1", "pods", Some(NS), "dev-redis-0")
        .map(|p| p["metadata"]["uid"].clone())
        .expect("pod");
    let now = jiff::Timestamp::now();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), NS)
        .patch(
            "dev-redis-tls",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "rediscache.dev/not-before": (now - jiff::SignedDuration::from_hours(24 * 300)).to_string(),
                "rediscache.dev/not-after": (now + jiff::SignedDuration::from_hours(24)).to_string(),
            }}})),
        )
        .await
        .expect("age the certificate");
    eventually("a new certificate and a restarted pod", 60, || {
        let p = server.get("", "v1", "pods", Some(NS), "dev-redis-0")?;
        (secret_key(&server, "dev-redis-tls", "tls.crt")? != cert_before
            && p["metadata"]["uid"] != uid_before
            && p["status"]["conditions"][0]["status"] == "True")
            .then_some(())
    })
    .await;
    assert!(
        server
            .list("events.k8s.io", "v1", "events")
            .iter()
            .any(|e| e["reason"] == "CertificateIssued"),
        "an Event says the certificate was issued"
    );
    let mut renewed_ok = false;
    for _ in 0..50 {
        if secret_password_works(&server, &kubelet).await {
            renewed_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        renewed_ok,
        "TLS with the Secret's CA works after the renewal"
    );

    // Rotation with the operator killed again and again.
    let old = secret_key(&server, "dev-redis", "password").expect("pw");
    caches
        .patch(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {ROTATE_ANNOTATION: "crash-test"}},
                "spec": {"auth": {"rotationGracePeriod": "1s"}},
            })),
        )
        .await
        .expect("rotate");
    let mut crashes = 0;
    let mut pause = 150;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        pause = 100 + (pause * 7) % 400;
        operator.abort();
        let _ = operator.await;
        crashes += 1;
        assert!(
            secret_password_works(&server, &kubelet).await,
            "the Secret's password works after crash {crashes}"
        );
        operator = start_operator(&client, http, server.snapshotter());
        let done = cache_json(&server, "dev")
            .is_some_and(|c| c["status"]["auth"]["state"] == "Active")
            && secret_key(&server, "dev-redis", "password").is_some_and(|p| p != old);
        if done {
            break;
        }
    }
    eventually("the rotation finished", 60, || {
        let c = cache_json(&server, "dev")?;
        (c["status"]["auth"]["state"] == "Active"
            && secret_key(&server, "dev-redis", "password").is_some_and(|p| p != old))
        .then_some(())
    })
    .await;
    assert!(crashes >= 2, "the operator crashed during the rotation");
    assert!(secret_password_works(&server, &kubelet).await);
    let ip = kubelet.pod_ip("default/dev-redis-0").expect("running");
    let ca = secret_key(&server, "dev-redis", "ca.crt").expect("ca");
    let mut retired = false;
    for _ in 0..100 {
        if ping(ip, "dev-redis.default.svc", 6379, &ca, &old)
            .await
            .is_err()
        {
            retired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(retired, "the old password is retired");
    operator.abort();
}

/// With replicas: three Sentinels, the pod Sentinel names is labelled
/// primary and the Secret's host reaches it; the primary's pod is deleted
/// (a node failure): Sentinel promotes a replica, the operator moves the
/// label, the data written before is still there, and the old primary comes
/// back empty as a replica and is never promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_fail_over_without_losing_data() {
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let kubelet = kubelet::Kubelet::start(&server);
    let client = server.client();
    Api::<RedisCacheClass>::all(client.clone())
        .create(&PostParams::default(), &chart_default_class())
        .await
        .expect("class");
    let operator = start_operator(&client, free_port(), server.snapshotter());
    let mut cache = example_dev();
    cache.metadata.name = Some("ha".into());
    cache.spec.replicas_per_shard = 2;
    let caches: Api<RedisCache> = Api::namespaced(client.clone(), NS);
    caches
        .create(&PostParams::default(), &cache)
        .await
        .expect("create");
    for i in 0.. {
        if cache_json(&server, "ha").is_some_and(|c| c["status"]["phase"] == "Ready") {
            break;
        }
        assert!(
            i < 900,
            "not Ready after 90 s: {:#}\nlog of ha-redis-1: {}\nlog of ha-redis-sentinel-0: {}",
            cache_json(&server, "ha").unwrap_or_default()["status"],
            kubelet.log("default/ha-redis-1"),
            kubelet.log("default/ha-redis-sentinel-0"),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let role = |pod: &str| {
        server
            .get("", "v1", "pods", Some(NS), pod)
            .map(|p| p["metadata"]["labels"]["rediscache.dev/role"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(role("ha-redis-0"), "primary");
    assert_eq!(role("ha-redis-1"), "replica");
    assert_eq!(
        secret_key(&server, "ha-redis", "readerHost").as_deref(),
        Some("ha-redis-replicas.default.svc")
    );
    let ca = secret_key(&server, "ha-redis", "ca.crt").expect("ca");
    let password = secret_key(&server, "ha-redis", "password").expect("password");
    let dns = service_dns(server.snapshotter());
    let conn = |host: &'static str| {
        let (ca, password, dns) = (ca.clone(), password.clone(), dns.clone());
        async move {
            let ip = (dns.0)(host).ok_or("no ready pod behind the Service")?;
            let tls = primary::client_config(&ca).map_err(|e| e.to_string())?;
            let creds = Credentials {
                user: "default".into(),
                password: Password::new(password).map_err(|e| e.to_string())?,
            };
            let endpoint = Endpoint {
                host: ip.to_string(),
                port: 6379,
                server_name: host.to_string(),
            };
            primary::connect(&endpoint, &tls, &creds, Duration::from_secs(3))
                .await
                .map_err(|e| e.to_string())
        }
    };
    let mut primary_conn = conn("ha-redis.default.svc").await.expect("primary");
    primary_conn
        .query::<()>(redis::cmd("SET").arg("order:1").arg("paid"))
        .await
        .expect("SET");
    // The replicas have it before the failure.
    // The first full sync waits repl-diskless-sync-delay (5 s) for more replicas.
    let mut synced = 0;
    for _ in 0..100 {
        synced = primary_conn
            .query::<i64>(redis::cmd("WAIT").arg(2).arg(200))
            .await
            .expect("WAIT");
        if synced == 2 {
            break;
        }
    }
    assert_eq!(
        synced,
        2,
        "both replicas acknowledged the write; ha-redis-1: {}",
        kubelet.log("default/ha-redis-1")
    );
    drop(primary_conn);

    // The primary's pod goes (its data with it: no persistence).
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), NS)
        .delete("ha-redis-0", &DeleteParams::default())
        .await
        .expect("delete the primary's pod");
    let promoted = eventually("a replica labelled primary", 90, || {
        ["ha-redis-1", "ha-redis-2"]
            .into_iter()
            .find(|p| role(p) == "primary")
    })
    .await;
    let mut got = None;
    for _ in 0..100 {
        if let Ok(mut c) = conn("ha-redis.default.svc").await {
            if let Ok(v) = c
                .query::<Option<String>>(redis::cmd("GET").arg("order:1"))
                .await
            {
                got = v;
                if got.is_some() {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        got.as_deref(),
        Some("paid"),
        "the data survived the failover to {promoted}"
    );
    // The old primary comes back empty, as a replica, and is never promoted.
    eventually("ha-redis-0 back as a replica", 90, || {
        (role("ha-redis-0") == "replica"
            && server
                .get("", "v1", "pods", Some(NS), "ha-redis-0")
                .is_some_and(|p| p["status"]["conditions"][0]["status"] == "True"))
        .then_some(())
    })
    .await;
    assert_eq!(role(promoted), "primary");
    eventually("Ready again", 60, || {
        (cache_json(&server, "ha")?["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    operator.abort();
}

/// A tiny cert-manager for the emulator: for each Certificate, a leaf for
/// its dnsNames and ipAddresses signed by one CA, written to its secretName
/// with `ca.crt`, and `status.notAfter`.
fn fake_cert_manager(server: &ApiServer) -> (String, tokio::task::JoinHandle<()>) {
    server.register_status_subresource("cert-manager.io", "v1", "certificates");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fake cert-manager CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let ca_pem = ca_cert.pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let store = server.snapshotter();
    let client = server.client();
    let pem = ca_pem.clone();
    let task = tokio::spawn(async move {
        let ar = kube::api::ApiResource {
            group: "cert-manager.io".into(),
            version: "v1".into(),
            api_version: "cert-manager.io/v1".into(),
            kind: "Certificate".into(),
            plural: "certificates".into(),
        };
        loop {
            for c in store.list("cert-manager.io", "certificates") {
                let ns = c["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let secret_name = c["spec"]["secretName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if store.get("", "secrets", &ns, &secret_name).is_some() {
                    continue;
                }
                let names: Vec<String> = c["spec"]["dnsNames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(c["spec"]["ipAddresses"].as_array().into_iter().flatten())
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                let key = rcgen::KeyPair::generate().expect("key");
                let leaf = rcgen::CertificateParams::new(names)
                    .expect("params")
                    .signed_by(&key, &issuer)
                    .expect("leaf");
                let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": secret_name, "namespace": ns},
                    "type": "kubernetes.io/tls",
                    "stringData": {"ca.crt": pem, "tls.crt": leaf.pem(), "tls.key": key.serialize_pem()},
                }))
                .expect("secret");
                // stringData is what a client sends; the emulator stores data.
                let mut secret = secret;
                secret.data = secret.string_data.take().map(|d| {
                    d.into_iter()
                        .map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes())))
                        .collect()
                });
                let _ = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
                    .create(&PostParams::default(), &secret)
                    .await;
                let name = c["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let status = serde_json::json!({"status": {
                    "notAfter": (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 90)).to_string(),
                    "conditions": [{"type": "Ready", "status": "True"}],
                }});
                let _ = Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), &ns, &ar)
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (ca_pem, task)
}

/// A class naming a cert-manager issuer: the operator applies a
/// Certificate for the cache's names instead of making its own CA, and the
/// Secret's `ca.crt` is cert-manager's; without cert-manager the cache says
/// so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cert_manager_issuer_signs_the_servers() {
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let kubelet = kubelet::Kubelet::start(&server);
    let (ca, cert_manager) = fake_cert_manager(&server);
    let client = server.client();
    let mut class = chart_default_class();
    class.spec.kubernetes = Some(
        serde_json::from_value(serde_json::json!({
            "tls": {"issuerRef": {"name": "team-ca", "kind": "ClusterIssuer"}}
        }))
        .expect("block"),
    );
    Api::<RedisCacheClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .expect("class");
    let operator = start_operator(&client, free_port(), server.snapshotter());
    Api::<RedisCache>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &example_dev())
        .await
        .expect("create");
    eventually("phase Ready", 60, || {
        (cache_json(&server, "dev")?["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    let cert = server
        .get(
            "cert-manager.io",
            "v1",
            "certificates",
            Some(NS),
            "dev-redis",
        )
        .expect("a Certificate");
    assert_eq!(cert["spec"]["issuerRef"]["name"], "team-ca");
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert!(cert["spec"]["dnsNames"]
        .as_array()
        .is_some_and(|d| d.iter().any(|n| n == "dev-redis.default.svc")));
    assert_eq!(
        secret_key(&server, "dev-redis", "ca.crt").as_deref(),
        Some(ca.as_str())
    );
    assert!(
        server
            .get("", "v1", "secrets", Some(NS), "dev-redis-ca")
            .is_none(),
        "no CA of the operator's own"
    );
    assert!(secret_password_works(&server, &kubelet).await);
    operator.abort();
    cert_manager.abort();

    // Without cert-manager's CRD: a clear reason on the cache.
    let bare = ApiServer::start().await;
    bare.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    bare.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    bare.refuse_resource("cert-manager.io", "certificates");
    let client = bare.client();
    Api::<RedisCacheClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .expect("class");
    let operator = start_operator(&client, free_port(), bare.snapshotter());
    Api::<RedisCache>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &example_dev())
        .await
        .expect("create");
    let ready = eventually("CertManagerMissing", 30, || {
        let c = bare.get("rediscache.dev", "v1alpha1", "rediscaches", Some(NS), "dev")?;
        let ready = c["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|x| x["type"] == "Ready")?
            .clone();
        (ready["reason"] == "CertManagerMissing").then_some(ready)
    })
    .await;
    assert!(ready["message"]
        .as_str()
        .is_some_and(|m| m.contains("install cert-manager")));
    operator.abort();
}

/// `deletionPolicy: Snapshot` with persistence: a final BGSAVE on the
/// primary (Event `Snapshotting`), then the pods go and the data volumes
/// stay; `Delete` removes the volumes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_deletion_keeps_the_volumes_and_delete_removes_them() {
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let _kubelet = kubelet::Kubelet::start(&server);
    let client = server.client();
    Api::<RedisCacheClass>::all(client.clone())
        .create(&PostParams::default(), &chart_default_class())
        .await
        .expect("class");
    let operator = start_operator(&client, free_port(), server.snapshotter());
    let caches: Api<RedisCache> = Api::namespaced(client.clone(), NS);
    for (name, policy) in [("kept", "Snapshot"), ("gone", "Delete")] {
        let mut cache = example_dev();
        cache.metadata.name = Some(name.into());
        cache.spec.persistence = Some(
            serde_json::from_value(serde_json::json!({"mode": "Snapshot"})).expect("persistence"),
        );
        cache.spec.deletion_policy =
            serde_json::from_value(serde_json::json!(policy)).expect("policy");
        caches
            .create(&PostParams::default(), &cache)
            .await
            .expect("create");
    }
    for name in ["kept", "gone"] {
        eventually("phase Ready", 60, || {
            (cache_json(&server, name)?["status"]["phase"] == "Ready").then_some(())
        })
        .await;
        assert!(
            server
                .get(
                    "",
                    "v1",
                    "persistentvolumeclaims",
                    Some(NS),
                    &format!("data-{name}-redis-0")
                )
                .is_some(),
            "a data volume for {name}"
        );
        caches
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    for name in ["kept", "gone"] {
        eventually("the cache is gone", 60, || {
            cache_json(&server, name).is_none().then_some(())
        })
        .await;
        assert!(server
            .get(
                "apps",
                "v1",
                "statefulsets",
                Some(NS),
                &format!("{name}-redis")
            )
            .is_none());
    }
    let events = server.list("events.k8s.io", "v1", "events");
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "Snapshotting" && e["regarding"]["name"] == "kept"),
        "a final snapshot was taken: {events:#?}"
    );
    assert!(
        server
            .get(
                "",
                "v1",
                "persistentvolumeclaims",
                Some(NS),
                "data-kept-redis-0"
            )
            .is_some(),
        "Snapshot keeps the data volume"
    );
    assert!(
        server
            .get(
                "",
                "v1",
                "persistentvolumeclaims",
                Some(NS),
                "data-gone-redis-0"
            )
            .is_none(),
        "Delete removes the data volume"
    );
    operator.abort();
}
