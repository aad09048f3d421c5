//! End-to-end: a real Kubernetes cluster, the real operator binary, and an
//! AWS endpoint (or, in the Kubernetes, Upstash and Azure tests at the end, an account
//! or subscription; see each). Ignored by default.
//!
//! How to run:
//!
//! ```sh
//! export KUBECONFIG=~/.kube/config          # any cluster you may install a CRD into
//! export AWS_ENDPOINT_URL=http://localhost:4566   # an emulator, or `aws` for real AWS
//! export AWS_REGION=us-east-1               # the class's region; credentials from the standard chain
//! export E2E_SUBNET_IDS=subnet-a,subnet-b   # the class's subnets
//! export E2E_ALLOWED_CIDRS=10.0.0.0/16      # the class's allowed CIDRs
//! cargo test --test e2e -- --ignored --nocapture
//! ```
//!
//! The test installs both CRDs, creates a RedisCacheClass `rcache-e2e-<n>`
//! (provider ElastiCache, from the variables above, allowed only in its fresh
//! namespace), starts `redis-cache-operator run` (leader election off,
//! watching only that namespace), waits for the class's `Ready=True`, applies
//! `examples/dev.yaml` there naming the class, waits for `Ready=True`, checks every key of the
//! connection Secret, rotates the AUTH token with the annotation (grace
//! period shortened to 1m; skip with `E2E_SKIP_ROTATION=1`) and checks the
//! Secret got a new token, deletes the RedisCache, waits until the finalizer is
//! released and checks that the replication group, security group,
//! parameter group and subnet group are gone from AWS. `E2E_TIMEOUT_SECS`
//! (default 3600) bounds each wait: real ElastiCache takes minutes to create
//! and to delete. The operator inherits this process's environment, so every
//! operator flag can be set through its environment variable.
//!
//! moto is not enough here: it keeps a deleted replication group `deleting`
//! forever and lacks parameter groups. Use real AWS or a fuller emulator.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use redis_cache_operator::api::{
    ElastiCacheClass, ProviderKind, RedisCache, RedisCacheClass, RedisCacheClassSpec,
};

const MANAGER: &str = "redis-cache-operator-e2e";

struct Env {
    endpoint: Option<String>,
    timeout: Duration,
    region: String,
    subnet_ids: Vec<String>,
    allowed_cidrs: Vec<String>,
}

fn env() -> Env {
    let missing: Vec<&str> = [
        "KUBECONFIG",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "E2E_SUBNET_IDS",
        "E2E_ALLOWED_CIDRS",
    ]
    .into_iter()
    .filter(|v| std::env::var(v).map(|s| s.is_empty()).unwrap_or(true))
    .collect();
    assert!(
        missing.is_empty(),
        "the e2e test needs {} set: KUBECONFIG for the cluster, AWS_ENDPOINT_URL for the AWS endpoint (`aws` for real AWS), AWS_REGION, E2E_SUBNET_IDS and E2E_ALLOWED_CIDRS for the RedisCacheClass it creates. See the top of tests/e2e.rs.",
        missing.join(" and ")
    );
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let timeout = std::env::var("E2E_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    let list = |v: &str| -> Vec<String> {
        std::env::var(v)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    Env {
        endpoint: (endpoint != "aws").then_some(endpoint),
        timeout: Duration::from_secs(timeout),
        region: std::env::var("AWS_REGION").unwrap_or_default(),
        subnet_ids: list("E2E_SUBNET_IDS"),
        allowed_cidrs: list("E2E_ALLOWED_CIDRS"),
    }
}

/// Deletes the test's class when the test ends.
struct ClassCleanup {
    api: Api<RedisCacheClass>,
    name: String,
}

impl Drop for ClassCleanup {
    fn drop(&mut self) {
        let (api, name) = (self.api.clone(), self.name.clone());
        // Best effort, like the namespace cleanup.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Runtime::new() {
                let _ = rt.block_on(api.delete(&name, &DeleteParams::default()));
            }
        })
        .join();
    }
}

/// The operator process, killed when the test ends however it ends.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Deletes the namespace when the test ends.
struct Cleanup {
    client: Client,
    namespace: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let client = self.client.clone();
        let ns = self.namespace.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async move {
                let api: Api<Namespace> = Api::all(client);
                let _ = api.delete(&ns, &DeleteParams::default()).await;
            });
        })
        .join();
    }
}

/// Applies both CRDs (server-side apply; established checks are the caller's).
async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [RedisCache::crd(), RedisCacheClass::crd()] {
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("install the CRD");
    }
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Shortens the grace period, requests a rotation with the annotation and
/// waits until `status.auth` says it is done; the Secret must then hold a
/// new, complete token.
async fn rotate_token(
    caches: &Api<RedisCache>,
    secrets: &Api<Secret>,
    name: &str,
    secret_name: &str,
    old_password: &str,
    timeout: Duration,
) {
    let patch = serde_json::json!({
        "metadata": {"annotations": {"rediscache.dev/rotate-auth-token": "e2e"}},
        "spec": {"auth": {"rotationGracePeriod": "1m"}},
    });
    caches
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate the RedisCache for a token rotation");
    wait_for("status.auth.state=Active after a rotation", timeout, || {
        let caches = caches.clone();
        let name = name.to_string();
        async move {
            let auth = caches.get(&name).await.ok()?.status?.auth?;
            eprintln!(
                "auth: {:?} (last rotation {:?})",
                auth.state, auth.last_rotation_time
            );
            (auth.state.as_deref() == Some("Active") && auth.last_rotation_time.is_some())
                .then_some(())
        }
    })
    .await;
    let secret = secrets
        .get(secret_name)
        .await
        .expect("the connection Secret");
    let data = secret.data.unwrap_or_default();
    let password = data
        .get("password")
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .expect("password after rotation");
    // Not assert_ne!: a failure must not print tokens.
    assert!(password != old_password, "the rotation changed the token");
    assert_eq!(password.len(), 64);
    let uri = data
        .get("uri")
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .expect("uri after rotation");
    assert!(uri.contains(&password), "uri carries the new token");
}

#[tokio::test]
#[ignore = "needs a cluster (KUBECONFIG) and an AWS endpoint (AWS_ENDPOINT_URL); see the top of the file"]
async fn dev_cache_is_provisioned_and_torn_down() {
    let env = env();
    redis_cache_operator::install_crypto_provider();
    let client = Client::try_default()
        .await
        .expect("a client from KUBECONFIG");

    // Both CRDs, applied and established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [RedisCache::crd(), RedisCacheClass::crd()] {
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("install the CRD");
    }
    for crd_name in [
        RedisCache::crd().name_any(),
        RedisCacheClass::crd().name_any(),
    ] {
        wait_for("the CRD to be established", Duration::from_secs(60), || {
            let crds = crds.clone();
            let name = crd_name.clone();
            async move {
                let crd = crds.get(&name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            }
        })
        .await;
    }

    // A fresh namespace.
    let suffix: u32 = rand::random_range(0..1_000_000);
    let namespace = format!("rcache-e2e-{suffix:06}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.clone());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the namespace");
    let _cleanup = Cleanup {
        client: client.clone(),
        namespace: namespace.clone(),
    };

    // The operator.
    let http_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_redis-cache-operator"));
    command.args([
        "run",
        "--leader-election=false",
        "--watch-namespaces",
        &namespace,
        "--http-addr",
        &format!("127.0.0.1:{http_port}"),
        "--poll-interval-transition",
        "10s",
    ]);
    if env.endpoint.is_none() {
        command.env_remove("AWS_ENDPOINT_URL");
    }
    let _operator = Operator(command.spawn().expect("start the operator"));

    // The class, from the environment, for this namespace only.
    let class_name = namespace.clone();
    let class = RedisCacheClass::new(
        &class_name,
        RedisCacheClassSpec {
            provider: ProviderKind::ElastiCache,
            defaults: None,
            allowed_namespaces: vec![namespace.clone()],
            allowed_namespace_selector: None,
            elasti_cache: Some(ElastiCacheClass {
                region: env.region.clone(),
                subnet_ids: env.subnet_ids.clone(),
                allowed_cidrs: env.allowed_cidrs.clone(),
                ..ElastiCacheClass::default()
            }),
            kubernetes: None,
            upstash: None,
            azure: None,
        },
    );
    let classes: Api<RedisCacheClass> = Api::all(client.clone());
    classes
        .patch(
            &class_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&class),
        )
        .await
        .expect("create the RedisCacheClass");
    let _class_cleanup = ClassCleanup {
        api: classes.clone(),
        name: class_name.clone(),
    };
    wait_for("the class's Ready=True", Duration::from_secs(120), || {
        let classes = classes.clone();
        let name = class_name.clone();
        async move {
            let c = classes.get(&name).await.ok()?;
            let ready = c
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            if ready.status != "True" {
                eprintln!(
                    "class Ready={} {}: {}",
                    ready.status, ready.reason, ready.message
                );
                return None;
            }
            Some(())
        }
    })
    .await;

    // examples/dev.yaml into the namespace.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dev.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut cache: RedisCache =
        serde_yaml_ng::from_str(&text).expect("examples/dev.yaml is a RedisCache");
    cache.metadata.namespace = Some(namespace.clone());
    cache.spec.class_name = Some(class_name.clone());
    let name = cache.name_any();
    let caches: Api<RedisCache> = Api::namespaced(client.clone(), &namespace);
    caches
        .create(&PostParams::default(), &cache)
        .await
        .expect("apply examples/dev.yaml");

    // Ready.
    let ready = wait_for("Ready=True", env.timeout, || {
        let caches = caches.clone();
        let name = name.clone();
        async move {
            let c = caches.get(&name).await.ok()?;
            let status = c.status.clone()?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
            if ready.status != "True" {
                eprintln!("Ready={} {}: {}", ready.status, ready.reason, ready.message);
                return None;
            }
            Some(status)
        }
    })
    .await;
    assert_eq!(ready.class_name.as_deref(), Some(class_name.as_str()));
    assert_eq!(ready.provider, Some(ProviderKind::ElastiCache));
    let group_id = ready.backend_id.clone().expect("status.backendId");
    let security_group = ready
        .security_group_id
        .clone()
        .expect("status.securityGroupId");
    let parameter_group = ready
        .parameter_group_name
        .clone()
        .expect("status.parameterGroupName");
    let subnet_group = ready
        .subnet_group_name
        .clone()
        .expect("status.subnetGroupName");

    // Every key of the Secret.
    let secret_name = ready
        .connection_secret
        .clone()
        .expect("status.connectionSecret");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = secrets
        .get(&secret_name)
        .await
        .expect("the connection Secret");
    let data: BTreeMap<String, String> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("UTF-8")))
        .collect();
    let key = |k: &str| {
        data.get(k)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("Secret {secret_name} lacks {k}; has {:?}", data.keys()))
            .clone()
    };
    assert_eq!(key("type"), "redis");
    assert_eq!(key("provider"), "aws-elasticache");
    assert_eq!(key("tls"), "true");
    assert_eq!(key("clusterMode"), "Disabled");
    let (host, port, password) = (key("host"), key("port"), key("password"));
    assert_eq!(password.len(), 64);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    // Compared without printing: the URI carries the token.
    assert!(
        key("uri") == format!("rediss://:{password}@{host}:{port}"),
        "uri is rediss://:<password>@{host}:{port}"
    );
    let endpoint = ready.endpoint.clone().expect("status.endpoint");
    assert_eq!(host, endpoint.host);
    assert_eq!(port, endpoint.port.to_string());
    assert!(
        !data.contains_key("readerHost") && !data.contains_key("readerUri"),
        "no reader endpoint without replicas"
    );

    // Day 2: rotate the AUTH token by annotation (skip with E2E_SKIP_ROTATION=1).
    if std::env::var("E2E_SKIP_ROTATION")
        .map(|v| v != "1")
        .unwrap_or(true)
    {
        rotate_token(
            &caches,
            &secrets,
            &name,
            &secret_name,
            &password,
            env.timeout,
        )
        .await;
    }

    // Delete; the finalizer is released only once AWS is clean.
    caches
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete the RedisCache");
    wait_for("the finalizer to be released", env.timeout, || {
        let caches = caches.clone();
        let name = name.clone();
        async move { matches!(caches.get_opt(&name).await, Ok(None)).then_some(()) }
    })
    .await;

    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = &env.endpoint {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    let elasticache = aws_sdk_elasticache::Client::new(&config);
    let ec2 = aws_sdk_ec2::Client::new(&config);
    use aws_sdk_elasticache::error::ProvideErrorMetadata;
    let code = elasticache
        .describe_replication_groups()
        .replication_group_id(&group_id)
        .send()
        .await
        .err()
        .and_then(|e| e.code().map(str::to_string));
    assert_eq!(
        code.as_deref(),
        Some("ReplicationGroupNotFoundFault"),
        "replication group {group_id}"
    );
    let code = elasticache
        .describe_cache_parameter_groups()
        .cache_parameter_group_name(&parameter_group)
        .send()
        .await
        .err()
        .and_then(|e| e.code().map(str::to_string));
    assert_eq!(
        code.as_deref(),
        Some("CacheParameterGroupNotFound"),
        "parameter group {parameter_group}"
    );
    let code = elasticache
        .describe_cache_subnet_groups()
        .cache_subnet_group_name(&subnet_group)
        .send()
        .await
        .err()
        .and_then(|e| e.code().map(str::to_string));
    assert_eq!(
        code.as_deref(),
        Some("CacheSubnetGroupNotFoundFault"),
        "subnet group {subnet_group}"
    );
    let code = ec2
        .describe_security_groups()
        .group_ids(&security_group)
        .send()
        .await
        .err()
        .and_then(|e| e.code().map(str::to_string));
    assert_eq!(
        code.as_deref(),
        Some("InvalidGroup.NotFound"),
        "security group {security_group}"
    );
}

#[test]
fn e2e_explains_what_it_needs() {
    // The ignored test's guard must name the variables; run it with them unset.
    if std::env::var_os("KUBECONFIG").is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        return;
    }
    let message = std::panic::catch_unwind(env)
        .err()
        .and_then(|p| p.downcast_ref::<String>().cloned())
        .expect("env() fails without the variables");
    assert!(
        message.contains("KUBECONFIG")
            && message.contains("AWS_ENDPOINT_URL")
            && message.contains("E2E_SUBNET_IDS"),
        "{message}"
    );
}

/// The Upstash path: a real account through its Developer API. Set
/// `KUBECONFIG`, `UPSTASH_EMAIL`, `UPSTASH_API_KEY` and optionally
/// `UPSTASH_REGION` (default `us-east-1`), then
/// `cargo test --test e2e upstash -- --ignored --nocapture`. It creates a
/// credentials Secret, an Upstash class and a cache in a fresh namespace,
/// waits for `Ready`, checks the Secret's keys (never printing them), and
/// deletes the cache, then checks the database is gone from the account.
#[tokio::test]
#[ignore = "needs a cluster (KUBECONFIG) and an Upstash account (UPSTASH_EMAIL, UPSTASH_API_KEY)"]
async fn upstash_cache_is_provisioned_and_torn_down() {
    let var = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let (Some(_), Some(email), Some(api_key)) = (
        var("KUBECONFIG"),
        var("UPSTASH_EMAIL"),
        var("UPSTASH_API_KEY"),
    ) else {
        panic!("the Upstash e2e test needs KUBECONFIG, UPSTASH_EMAIL and UPSTASH_API_KEY set");
    };
    let region = var("UPSTASH_REGION").unwrap_or_else(|| "us-east-1".into());
    redis_cache_operator::install_crypto_provider();
    let client = Client::try_default()
        .await
        .expect("a client from KUBECONFIG");
    install_crds(&client).await;
    let suffix: u32 = rand::random_range(0..1_000_000);
    let namespace = format!("rcache-e2e-up-{suffix:06}");
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.clone());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the namespace");
    let _cleanup = Cleanup {
        client: client.clone(),
        namespace: namespace.clone(),
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut creds = Secret::default();
    creds.metadata.name = Some("upstash-account".into());
    creds.string_data = Some(BTreeMap::from([
        ("email".to_string(), email.clone()),
        ("apiKey".to_string(), api_key.clone()),
    ]));
    secrets
        .create(&PostParams::default(), &creds)
        .await
        .expect("credentials Secret");
    let classes: Api<RedisCacheClass> = Api::all(client.clone());
    let class = RedisCacheClass::new(
        &namespace,
        RedisCacheClassSpec {
            provider: ProviderKind::Upstash,
            defaults: None,
            allowed_namespaces: vec![namespace.clone()],
            allowed_namespace_selector: None,
            elasti_cache: None,
            kubernetes: None,
            upstash: Some(redis_cache_operator::api::UpstashClass {
                credentials_secret_ref: redis_cache_operator::api::SecretRef {
                    namespace: namespace.clone(),
                    name: "upstash-account".into(),
                },
                api_url: None,
                primary_region: region,
                read_regions: Vec::new(),
                plan: None,
                budget: None,
            }),
            azure: None,
        },
    );
    classes
        .patch(
            &namespace,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&class),
        )
        .await
        .expect("create the class");
    let _class_cleanup = ClassCleanup {
        api: classes.clone(),
        name: namespace.clone(),
    };
    let http_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_redis-cache-operator"));
    command.args([
        "run",
        "--leader-election=false",
        "--watch-namespaces",
        &namespace,
        "--http-addr",
        &format!("127.0.0.1:{http_port}"),
        "--health-probe=false",
    ]);
    let _operator = Operator(command.spawn().expect("start the operator"));
    let cache: RedisCache = serde_json::from_value(serde_json::json!({
        "apiVersion": "rediscache.dev/v1alpha1",
        "kind": "RedisCache",
        "metadata": {"name": "edge", "namespace": namespace},
        "spec": {"className": namespace, "memory": "256Mi", "replicasPerShard": 0}
    }))
    .expect("cache");
    let caches: Api<RedisCache> = Api::namespaced(client.clone(), &namespace);
    caches
        .create(&PostParams::default(), &cache)
        .await
        .expect("apply the cache");
    let status = wait_for("Ready=True", Duration::from_secs(600), || {
        let caches = caches.clone();
        async move {
            let s = caches.get("edge").await.ok()?.status?;
            let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
            if ready.status != "True" {
                eprintln!("Ready={} {}: {}", ready.status, ready.reason, ready.message);
                return None;
            }
            Some(s)
        }
    })
    .await;
    let database_id = status.backend_id.clone().expect("status.backendId");
    let secret = secrets
        .get("edge-redis")
        .await
        .expect("the connection Secret");
    let data = secret.data.unwrap_or_default();
    for key in [
        "host",
        "port",
        "password",
        "uri",
        "restUrl",
        "restToken",
        "readOnlyRestToken",
        "tls",
        "provider",
    ] {
        assert!(data.contains_key(key), "the Secret lacks {key}");
    }
    caches
        .delete("edge", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(
        "the RedisCache to be gone",
        Duration::from_secs(300),
        || {
            let caches = caches.clone();
            async move { caches.get_opt("edge").await.ok()?.is_none().then_some(()) }
        },
    )
    .await;
    let api = redis_cache_operator::backends::upstash::client::UpstashClient::new(
        email,
        redis_cache_operator::backends::Credential::new(api_key),
        std::sync::Arc::new(redis_cache_operator::backends::upstash::LimitedGate::new(
            1.0,
            2,
            |_, _| {},
        )),
    )
    .expect("client");
    let left = api.list_databases().await.expect("list");
    assert!(
        left.iter().all(|d| d.database_id != database_id),
        "database {database_id} is still in the account"
    );
}

/// The in-cluster backend on a real cluster (kind, k3d, minikube, any):
/// `examples/dev.yaml` on a Kubernetes class → `Ready` → a pod in the
/// cluster runs `valkey-cli --tls --cacert` with the Secret's URI and CA
/// and must print PONG → delete, and every object of the cache is gone.
///
/// The operator talks to the cache's pods by their IPs. Run it where pod
/// IPs are reachable: set `E2E_OPERATOR_IN_CLUSTER=1` when the operator is
/// already installed in the cluster (`helm install`; the test then only
/// applies manifests), otherwise the test starts the local binary, which
/// works when this machine routes to pod IPs (e.g. inside a pod, or kind
/// on Linux with the node network routed).
///
/// ```sh
/// KUBECONFIG=~/.kube/config cargo test --test e2e kubernetes -- --ignored --nocapture
/// ```
#[tokio::test]
#[ignore = "needs a cluster (KUBECONFIG) whose pods can pull valkey/valkey; see the doc comment"]
async fn kubernetes_cache_is_provisioned_and_torn_down() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Pod;
    let var = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    assert!(
        var("KUBECONFIG").is_some(),
        "the Kubernetes e2e test needs KUBECONFIG set (and E2E_OPERATOR_IN_CLUSTER=1 when the operator runs in the cluster)"
    );
    let timeout = Duration::from_secs(
        var("E2E_TIMEOUT_SECS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    );
    redis_cache_operator::install_crypto_provider();
    let client = Client::try_default()
        .await
        .expect("a client from KUBECONFIG");
    install_crds(&client).await;
    let suffix: u32 = rand::random_range(0..1_000_000);
    let namespace = format!("rcache-e2e-k8s-{suffix:06}");
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.clone());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the namespace");
    let _cleanup = Cleanup {
        client: client.clone(),
        namespace: namespace.clone(),
    };
    let _operator = (var("E2E_OPERATOR_IN_CLUSTER").as_deref() != Some("1")).then(|| {
        let http_port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Operator(
            Command::new(env!("CARGO_BIN_EXE_redis-cache-operator"))
                .args([
                    "run",
                    "--leader-election=false",
                    "--watch-namespaces",
                    &namespace,
                    "--http-addr",
                    &format!("127.0.0.1:{http_port}"),
                ])
                .spawn()
                .expect("start the operator"),
        )
    });
    let classes: Api<RedisCacheClass> = Api::all(client.clone());
    let class = RedisCacheClass::new(
        &namespace,
        RedisCacheClassSpec {
            provider: ProviderKind::Kubernetes,
            defaults: None,
            allowed_namespaces: vec![namespace.clone()],
            allowed_namespace_selector: None,
            elasti_cache: None,
            kubernetes: Some(Default::default()),
            upstash: None,
            azure: None,
        },
    );
    classes
        .patch(
            &namespace,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&class),
        )
        .await
        .expect("create the RedisCacheClass");
    let _class_cleanup = ClassCleanup {
        api: classes.clone(),
        name: namespace.clone(),
    };

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dev.yaml");
    let mut cache: RedisCache =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("examples/dev.yaml"))
            .expect("a RedisCache");
    cache.metadata.namespace = Some(namespace.clone());
    cache.spec.class_name = Some(namespace.clone());
    let name = cache.name_any();
    let caches: Api<RedisCache> = Api::namespaced(client.clone(), &namespace);
    caches
        .create(&PostParams::default(), &cache)
        .await
        .expect("apply examples/dev.yaml");
    wait_for("the cache's Ready=True", timeout, || {
        let caches = caches.clone();
        let name = name.clone();
        async move {
            let c = caches.get(&name).await.ok()?;
            let status = c.status?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
            if ready.status != "True" {
                eprintln!("Ready={} {}: {}", ready.status, ready.reason, ready.message);
                return None;
            }
            Some(())
        }
    })
    .await;

    // A client pod with the Secret: PING over TLS with the Secret's CA.
    let secret_name = format!("{name}-redis");
    let client_pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "e2e-client"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "cli", "image": "valkey/valkey:8.1",
                "command": ["sh", "-c", "valkey-cli --tls --cacert /ca/ca.crt -u \"$REDIS_URL\" PING"],
                "env": [{"name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "uri"}}}],
                "volumeMounts": [{"name": "ca", "mountPath": "/ca"}],
            }],
            "volumes": [{"name": "ca", "secret": {"secretName": secret_name, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}],
        },
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    pods.create(&PostParams::default(), &client_pod)
        .await
        .expect("create the client pod");
    wait_for("the client pod to finish", timeout, || {
        let pods = pods.clone();
        async move {
            let p = pods.get("e2e-client").await.ok()?;
            let phase = p.status?.phase?;
            (phase == "Succeeded" || phase == "Failed").then_some(())
        }
    })
    .await;
    let logs = pods
        .logs("e2e-client", &Default::default())
        .await
        .expect("client pod logs");
    assert!(logs.contains("PONG"), "valkey-cli printed: {logs}");

    caches
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("the finalizer to be released", timeout, || {
        let caches = caches.clone();
        let name = name.clone();
        async move { matches!(caches.get_opt(&name).await, Ok(None)).then_some(()) }
    })
    .await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    assert!(
        sts.get_opt(&format!("{name}-redis"))
            .await
            .expect("read")
            .is_none(),
        "the StatefulSet is gone"
    );
}

/// The Azure path: a real subscription through Azure Resource Manager. Set
/// `KUBECONFIG`, `AZURE_SUBSCRIPTION_ID`, `AZURE_RESOURCE_GROUP` (an existing
/// group), `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` (a
/// service principal with the role of the README's Azure section on the
/// group), optionally `AZURE_LOCATION` (default `westeurope`) and
/// `AZURE_TIER` (`Managed`, the default, or `Premium`), then
/// `cargo test --test e2e azure -- --ignored --nocapture`. It creates the
/// client-secret Secret, an Azure class and a cache in a fresh namespace,
/// waits for `Ready` (Azure takes many minutes; `E2E_TIMEOUT_SECS`, default
/// 3600, bounds each wait), checks the Secret's keys (never printing them),
/// deletes the cache and checks with its own ARM client that the resource
/// answers 404.
#[tokio::test]
#[ignore = "needs a cluster (KUBECONFIG) and an Azure subscription (AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)"]
async fn azure_cache_is_provisioned_and_torn_down() {
    use redis_cache_operator::api::{
        AzureClass, AzureCredentialType, AzureCredentials, AzureTier, SecretRef,
    };
    use redis_cache_operator::backends::azure::{arm, identity};
    let var = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let (Some(_), Some(subscription), Some(group), Some(tenant), Some(client_id), Some(secret)) = (
        var("KUBECONFIG"),
        var("AZURE_SUBSCRIPTION_ID"),
        var("AZURE_RESOURCE_GROUP"),
        var("AZURE_TENANT_ID"),
        var("AZURE_CLIENT_ID"),
        var("AZURE_CLIENT_SECRET"),
    ) else {
        panic!("the Azure e2e test needs KUBECONFIG, AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET set");
    };
    let location = var("AZURE_LOCATION").unwrap_or_else(|| "westeurope".into());
    let tier = match var("AZURE_TIER").as_deref() {
        Some("Premium") => AzureTier::Premium,
        _ => AzureTier::Managed,
    };
    let timeout = Duration::from_secs(
        var("E2E_TIMEOUT_SECS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(3600),
    );
    redis_cache_operator::install_crypto_provider();
    let client = Client::try_default()
        .await
        .expect("a client from KUBECONFIG");
    install_crds(&client).await;
    let suffix: u32 = rand::random_range(0..1_000_000);
    let namespace = format!("rcache-e2e-az-{suffix:06}");
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.clone());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the namespace");
    let _cleanup = Cleanup {
        client: client.clone(),
        namespace: namespace.clone(),
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut creds = Secret::default();
    creds.metadata.name = Some("azure-sp".into());
    creds.string_data = Some(BTreeMap::from([
        ("tenantId".to_string(), tenant.clone()),
        ("clientId".to_string(), client_id.clone()),
        ("clientSecret".to_string(), secret.clone()),
    ]));
    secrets
        .create(&PostParams::default(), &creds)
        .await
        .expect("credentials Secret");
    let classes: Api<RedisCacheClass> = Api::all(client.clone());
    let class = RedisCacheClass::new(
        &namespace,
        RedisCacheClassSpec {
            provider: ProviderKind::Azure,
            defaults: None,
            allowed_namespaces: vec![namespace.clone()],
            allowed_namespace_selector: None,
            elasti_cache: None,
            kubernetes: None,
            upstash: None,
            azure: Some(AzureClass {
                subscription_id: subscription.clone(),
                resource_group: group.clone(),
                location,
                tier: Some(tier),
                credentials: Some(AzureCredentials {
                    type_: AzureCredentialType::ClientSecret,
                    client_secret_ref: Some(SecretRef {
                        namespace: namespace.clone(),
                        name: "azure-sp".into(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        },
    );
    classes
        .patch(
            &namespace,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&class),
        )
        .await
        .expect("create the class");
    let _class_cleanup = ClassCleanup {
        api: classes.clone(),
        name: namespace.clone(),
    };
    let http_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_redis-cache-operator"));
    command.args([
        "run",
        "--leader-election=false",
        "--watch-namespaces",
        &namespace,
        "--http-addr",
        &format!("127.0.0.1:{http_port}"),
        "--health-probe=false",
    ]);
    let _operator = Operator(command.spawn().expect("start the operator"));
    let replicas = if tier == AzureTier::Premium { 1 } else { 0 };
    let cache: RedisCache = serde_json::from_value(serde_json::json!({
        "apiVersion": "rediscache.dev/v1alpha1",
        "kind": "RedisCache",
        "metadata": {"name": "az", "namespace": namespace},
        "spec": {"className": namespace, "memory": "500M", "replicasPerShard": replicas}
    }))
    .expect("cache");
    let caches: Api<RedisCache> = Api::namespaced(client.clone(), &namespace);
    caches
        .create(&PostParams::default(), &cache)
        .await
        .expect("apply the cache");
    let status = wait_for("Ready=True", timeout, || {
        let caches = caches.clone();
        async move {
            let s = caches.get("az").await.ok()?.status?;
            let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
            if ready.status != "True" {
                eprintln!("Ready={} {}: {}", ready.status, ready.reason, ready.message);
                return None;
            }
            Some(s)
        }
    })
    .await;
    let id = status.backend_id.clone().expect("status.backendId");
    assert!(id.starts_with("/subscriptions/"), "an ARM id: {id}");
    let data = secrets
        .get("az-redis")
        .await
        .expect("the connection Secret")
        .data
        .unwrap_or_default();
    for key in [
        "host",
        "port",
        "password",
        "uri",
        "tls",
        "provider",
        "clusterMode",
    ] {
        assert!(data.contains_key(key), "the Secret lacks {key}");
    }
    caches
        .delete("az", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("the RedisCache to be gone", timeout, || {
        let caches = caches.clone();
        async move { caches.get_opt("az").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let http = identity::http_client(None).expect("https client");
    let tokens = identity::TokenProvider::new(
        &identity::IdentityConfig {
            source: identity::CredentialSource::ClientSecret {
                tenant_id: tenant,
                client_id,
                secret: redis_cache_operator::backends::Credential::new(secret),
            },
            authority_host: None,
        },
        http.clone(),
    )
    .expect("credential");
    let api = arm::ArmClient::new(
        http,
        url::Url::parse(arm::MANAGEMENT_ENDPOINT).expect("url"),
        std::sync::Arc::new(tokens),
        std::sync::Arc::new(arm::OpenGate),
    );
    let left = match tier {
        AzureTier::Managed => api.get_cluster(&id).await.expect("GET").is_some(),
        AzureTier::Premium => api.get_redis(&id).await.expect("GET").is_some(),
    };
    assert!(!left, "{id} still exists");
}
