//! Reconcile tests: one reconcile at a time against a scripted mock API
//! server (tower-test) and the in-memory provider. Every Kubernetes request
//! and every provider call lands on one timeline, so the tests can check
//! order (the token Secret is written before the replication group is
//! created) as well as content.

#[path = "support/classes.rs"]
mod classes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use redis_cache_operator::api::RedisCache;
use redis_cache_operator::backends::elasticache::naming;
use redis_cache_operator::backends::fake::{FakeElastiCache, Op};
use redis_cache_operator::backends::*;
use redis_cache_operator::metrics::Metrics;
use redis_cache_operator::reconcile::{error_policy, reconcile, Context, Error, Polling};
use serde_json::{json, Value};

const UID: &str = "0b7d6c1e-1111-4222-8333-944455556666";

/// One entry per Kubernetes request (`k8s METHOD path`) or provider call (`aws Op`).
type Timeline = Arc<Mutex<Vec<String>>>;

/// What the mock API server holds: one RedisCache and any Secrets.
#[derive(Default)]
struct Cluster {
    cache: Value,
    secrets: BTreeMap<String, Value>,
    /// Bodies of every request, by `METHOD path`.
    bodies: Vec<(String, Value)>,
}

struct Harness {
    ctx: Arc<Context>,
    fake: Arc<FakeElastiCache>,
    cluster: Arc<Mutex<Cluster>>,
    timeline: Timeline,
}

impl Harness {
    fn new(cache: Value, transition_polls: u32) -> Self {
        let timeline: Timeline = Arc::default();
        let cluster = Arc::new(Mutex::new(Cluster {
            cache,
            ..Cluster::default()
        }));
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (c, t) = (cluster.clone(), timeline.clone());
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = serve(&c, &t, request).await;
                send.send_response(response);
            }
        });
        let client = Client::new(service, "default");
        let fake = Arc::new(FakeElastiCache::new(transition_polls).with_timeline(timeline.clone()));
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "redis-cache-operator".into(),
                instance: None,
            },
        );
        let ctx = Arc::new(Context::new(
            client,
            classes::registry(fake.clone()),
            classes::store(vec![classes::elasticache("aws")]),
            "test".into(),
            recorder,
            Arc::new(Metrics::new()),
            Polling::default(),
        ));
        Self {
            ctx,
            fake,
            cluster,
            timeline,
        }
    }

    async fn reconcile(&self) -> Result<Action, Error> {
        let cache: RedisCache =
            serde_json::from_value(self.cluster.lock().expect("lock").cache.clone())
                .expect("stored cache parses");
        let result = reconcile(Arc::new(cache), self.ctx.clone()).await;
        // Let the Event requests finish before the test looks at the timeline.
        tokio::time::sleep(Duration::from_millis(20)).await;
        result
    }

    /// The first reconcile of a new cache: only its first status.
    async fn introduce(&self) {
        let action = self.reconcile().await.expect("first status");
        assert_eq!(
            action,
            Action::requeue(redis_cache_operator::reconcile::FIRST_STATUS_HEADSTART),
            "the full reconcile follows"
        );
        let status = &self.cache()["status"];
        assert_eq!(status["phase"], "Pending", "{status:#}");
        let ready = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "WaitingForBackend");
        assert!(status["backendId"].is_string());
        assert!(
            self.fake.calls().is_empty(),
            "no backend call for the first status"
        );
    }

    fn cache(&self) -> Value {
        self.cluster.lock().expect("lock").cache.clone()
    }

    fn secret(&self, name: &str) -> Option<Value> {
        self.cluster
            .lock()
            .expect("lock")
            .secrets
            .get(name)
            .cloned()
    }

    fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        let secret = self.secret(name)?;
        let b64 = secret["data"][key].as_str()?.to_string();
        String::from_utf8(base64_decode(&b64)).ok()
    }

    fn timeline(&self) -> Vec<String> {
        self.timeline.lock().expect("lock").clone()
    }

    fn position(&self, entry: &str) -> usize {
        self.timeline()
            .iter()
            .position(|e| e.starts_with(entry))
            .unwrap_or_else(|| panic!("{entry} not in {:#?}", self.timeline()))
    }

    fn bodies(&self, prefix: &str) -> Vec<Value> {
        let c = self.cluster.lock().expect("lock");
        c.bodies
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn condition(&self, type_: &str) -> Value {
        let cache = self.cache();
        cache["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
            .unwrap_or_else(|| panic!("no {type_} condition in {:#}", cache["status"]))
    }

    fn events(&self) -> Vec<(String, String)> {
        self.bodies("POST /apis/events.k8s.io")
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").into(),
                    e["reason"].as_str().unwrap_or("").into(),
                )
            })
            .collect()
    }

    fn id(&self) -> String {
        naming::replication_group_id("test", "shop", "sessions")
    }
}

/// The mock API server: enough of Kubernetes for one reconcile.
async fn serve(
    cluster: &Mutex<Cluster>,
    timeline: &Timeline,
    request: Request<Body>,
) -> Response<Body> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .expect("request body");
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    timeline
        .lock()
        .expect("lock")
        .push(format!("k8s {method} {path}"));
    let mut c = cluster.lock().expect("lock");
    c.bodies
        .push((format!("{method} {path}?{query}"), body.clone()));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ok = |v: &Value| {
        Response::builder()
            .status(StatusCode::OK)
            .body(Body::from(serde_json::to_vec(v).expect("json")))
            .expect("response")
    };
    let not_found = || {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from(status.to_string().into_bytes()))
            .expect("response")
    };
    match (method.as_str(), segments.as_slice()) {
        (
            "PATCH",
            ["apis", "rediscache.dev", "v1alpha1", "namespaces", _, "rediscaches", _, "status"],
        ) => {
            assert!(
                query.contains("fieldManager=redis-cache-operator"),
                "status is applied with our field manager: {query}"
            );
            merge(&mut c.cache["status"], &body["status"]);
            ok(&c.cache)
        }
        ("PATCH", ["apis", "rediscache.dev", "v1alpha1", "namespaces", _, "rediscaches", _]) => {
            let patch: json_patch::Patch =
                serde_json::from_value(body).expect("finalizer uses a JSON patch");
            // The API server reads a missing list as null for a `test` op.
            if c.cache["metadata"].get("finalizers").is_none() {
                c.cache["metadata"]["finalizers"] = Value::Null;
            }
            json_patch::patch(&mut c.cache, &patch).expect("JSON patch applies");
            ok(&c.cache)
        }
        ("GET", ["api", "v1", "namespaces", _, "secrets", name]) => match c.secrets.get(*name) {
            Some(s) => ok(s),
            None => not_found(),
        },
        ("PATCH", ["api", "v1", "namespaces", _, "secrets", name]) => {
            assert!(
                query.contains("fieldManager=redis-cache-operator"),
                "{query}"
            );
            // Server-side apply by our single field manager: the applied object is the result.
            let name = name.to_string();
            c.secrets.insert(name.clone(), body);
            ok(&c.secrets[&name])
        }
        ("POST", ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]) => ok(&body),
        // A repeated Event becomes a series update.
        ("PATCH", ["apis", "events.k8s.io", "v1", "namespaces", _, "events", _]) => ok(&body),
        other => panic!("unexpected request {other:?}"),
    }
}

/// JSON merge of `patch` into `target` (objects merge, everything else replaces).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let bytes: k8s_openapi::ByteString = serde_json::from_value(json!(s)).expect("base64");
    bytes.0
}

/// A RedisCache `shop/sessions` as the API server would hand it out.
fn cache_json(spec: Value, finalized: bool) -> Value {
    let mut meta = json!({"name": "sessions", "namespace": "shop", "uid": UID, "generation": 1, "resourceVersion": "1"});
    if finalized {
        meta["finalizers"] = json!(["rediscache.dev/cleanup"]);
    }
    json!({"apiVersion": "rediscache.dev/v1alpha1", "kind": "RedisCache", "metadata": meta, "spec": spec})
}

/// Reconciles until the cache is Ready (bounded).
async fn until_ready(h: &Harness) {
    for _ in 0..10 {
        h.reconcile().await.expect("reconcile succeeds");
        if h.cache()["status"]["phase"] == "Ready" {
            return;
        }
    }
    panic!("not Ready after 10 reconciles: {:#}", h.cache()["status"]);
}

#[tokio::test]
async fn first_reconcile_only_adds_the_finalizer() {
    let h = Harness::new(cache_json(json!({}), false), 0);
    let action = h.reconcile().await.expect("reconcile");
    assert_eq!(action, Action::await_change());
    assert_eq!(
        h.cache()["metadata"]["finalizers"],
        json!(["rediscache.dev/cleanup"])
    );
    assert!(
        h.fake.calls().is_empty(),
        "nothing on AWS before the finalizer is in place"
    );
}

#[tokio::test]
async fn token_is_persisted_in_the_secret_before_the_group_is_created() {
    let h = Harness::new(cache_json(json!({"engine": "valkey"}), true), 2);
    h.introduce().await;
    assert!(
        h.secret("sessions-redis").is_none(),
        "the Secret comes with the full reconcile"
    );
    let action = h.reconcile().await.expect("reconcile");
    assert_eq!(
        action,
        Action::requeue(Polling::default().in_transition),
        "fast poll while creating"
    );

    let secret_write = h.position("k8s PATCH /api/v1/namespaces/shop/secrets/sessions-redis");
    let create = h.position("aws CreateReplicationGroup");
    let identity = h.position(
        "k8s PATCH /apis/rediscache.dev/v1alpha1/namespaces/shop/rediscaches/sessions/status",
    );
    assert!(
        identity < secret_write && secret_write < create,
        "{:#?}",
        h.timeline()
    );
    // The identity write already says what the cache waits for.
    let first_status = h
        .bodies("PATCH /apis/rediscache.dev/v1alpha1/namespaces/shop/rediscaches/sessions/status")
        .first()
        .cloned()
        .expect("a status write");
    assert_eq!(first_status["status"]["phase"], "Pending");
    assert_eq!(first_status["status"]["className"], "aws");
    assert_eq!(first_status["status"]["provider"], "ElastiCache");
    let ready = &first_status["status"]["conditions"][0];
    assert_eq!(
        (
            ready["type"].as_str(),
            ready["status"].as_str(),
            ready["reason"].as_str()
        ),
        (Some("Ready"), Some("False"), Some("WaitingForBackend"))
    );

    let group = h.fake.group(&h.id()).expect("group created");
    let token = h
        .secret_value("sessions-redis", "password")
        .expect("token in Secret");
    assert_eq!(token.len(), 64);
    assert_eq!(
        group.auth_token.expose(),
        token,
        "AWS got the token the Secret holds"
    );

    let secret = h.secret("sessions-redis").expect("secret");
    assert_eq!(
        secret["metadata"]["labels"]["rediscache.dev/managed-by"],
        "redis-cache-operator"
    );
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], UID);
    assert_eq!(secret["metadata"]["ownerReferences"][0]["controller"], true);
    assert!(
        secret["data"].get("uri").is_none(),
        "no URI before the cache is available"
    );

    let status = h.cache()["status"].clone();
    assert_eq!(status["phase"], "Provisioning");
    assert_eq!(status["replicationGroupId"], h.id());
    assert_eq!(status["connectionSecret"], "sessions-redis");
    assert_eq!(h.condition("Ready")["reason"], "Creating");
    assert_eq!(h.condition("SecretReady")["reason"], "WaitingForEndpoint");
    let leaks: Vec<String> = {
        let c = h.cluster.lock().expect("lock");
        c.bodies
            .iter()
            .filter(|(k, b)| !k.contains("/secrets/") && b.to_string().contains(&token))
            .map(|(k, _)| k.clone())
            .collect()
    };
    assert!(
        leaks.is_empty(),
        "only Secret writes may carry the token: {leaks:?}"
    );
}

#[tokio::test]
async fn available_group_completes_the_secret_and_status() {
    let h = Harness::new(
        cache_json(
            json!({"connectionSecret": {"extraKeys": {"REDIS_URL": "{uri}"}}}),
            true,
        ),
        1,
    );
    until_ready(&h).await;
    let token = h.secret_value("sessions-redis", "password").expect("token");
    let host = h.secret_value("sessions-redis", "host").expect("host");
    assert_eq!(
        h.secret_value("sessions-redis", "uri").as_deref(),
        Some(format!("rediss://:{token}@{host}:6379").as_str())
    );
    for key in [
        "type",
        "provider",
        "port",
        "tls",
        "readerHost",
        "readerUri",
        "clusterMode",
        "REDIS_URL",
    ] {
        assert!(
            h.secret_value("sessions-redis", key).is_some(),
            "Secret lacks {key}"
        );
    }
    assert_eq!(h.condition("Ready")["status"], "True");
    assert_eq!(h.condition("Synced")["status"], "True");
    assert_eq!(h.condition("SecretReady")["status"], "True");
    assert_eq!(h.condition("ParameterGroupReady")["status"], "True");
    assert_eq!(h.condition("NetworkReady")["status"], "True");
    assert_eq!(h.condition("PendingChanges")["status"], "False");
    let status = h.cache()["status"].clone();
    assert_eq!(status["endpoint"]["host"], json!(host));
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["engine"], "redis");
    assert_eq!(
        status["parameterGroupName"],
        format!("{}-params-redis7", h.id())
    );
    assert!(
        !status.to_string().contains(&token),
        "the token never reaches status"
    );

    // Settled: the next reconcile writes nothing, reads the Secret once,
    // makes no AWS call beyond the (fleet-backed) observe — the companions
    // checked by the last reconcile are not read again — and polls slowly.
    let writes = h.bodies("PATCH").len();
    let ready_since = h.condition("Ready")["lastTransitionTime"].clone();
    let seen = h.timeline().len();
    let action = h.reconcile().await.expect("reconcile");
    let this_reconcile = h.timeline()[seen..].to_vec();
    assert_eq!(
        this_reconcile
            .iter()
            .filter(|e| e.starts_with("k8s GET") && e.contains("/secrets/"))
            .count(),
        1,
        "{this_reconcile:#?}"
    );
    assert_eq!(
        this_reconcile
            .iter()
            .filter(|e| e.starts_with("aws "))
            .collect::<Vec<_>>(),
        ["aws ObserveReplicationGroup"]
    );
    assert_eq!(action, Action::requeue(Polling::default().settled));
    assert_eq!(
        h.bodies("PATCH").len(),
        writes,
        "no write when nothing changed"
    );
    assert_eq!(h.condition("Ready")["lastTransitionTime"], ready_since);
    assert_eq!(h.fake.count(Op::CreateReplicationGroup), 1, "created once");
    assert!(
        h.events().contains(&("Normal".into(), "Available".into())),
        "{:?}",
        h.events()
    );
}

#[tokio::test]
async fn an_existing_token_is_reused_never_regenerated() {
    let h = Harness::new(cache_json(json!({}), true), 0);
    h.cluster.lock().expect("lock").secrets.insert(
        "sessions-redis".into(),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "sessions-redis", "namespace": "shop",
                            "labels": {"rediscache.dev/managed-by": "redis-cache-operator", "rediscache.dev/owner-uid": UID}},
               "data": {"password": "c3Vydml2b3I="}}),
    );
    until_ready(&h).await;
    assert_eq!(
        h.secret_value("sessions-redis", "password").as_deref(),
        Some("survivor")
    );
    assert_eq!(
        h.fake.group(&h.id()).expect("group").auth_token.expose(),
        "survivor"
    );
}

#[tokio::test]
async fn invalid_spec_is_reported_and_nothing_reaches_aws() {
    let h = Harness::new(
        cache_json(json!({"shards": 3, "clusterMode": "Disabled"}), true),
        0,
    );
    let action = h
        .reconcile()
        .await
        .expect("invalid spec is not a reconcile error");
    assert_eq!(action, Action::await_change());
    assert!(h.fake.calls().is_empty());
    let ready = h.condition("Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or("")
            .contains("spec.shards"),
        "{ready}"
    );
    assert_eq!(h.cache()["status"]["phase"], "Failed");
    assert!(h
        .events()
        .contains(&("Warning".into(), "InvalidSpec".into())));
    assert!(
        h.secret("sessions-redis").is_none(),
        "no token for a spec that cannot work"
    );

    // The same invalid spec again: no new Event.
    let events = h.events().len();
    h.reconcile().await.expect("reconcile");
    assert_eq!(h.events().len(), events);
}

#[tokio::test]
async fn a_group_owned_by_someone_else_is_a_conflict_and_untouched() {
    let h = Harness::new(cache_json(json!({}), true), 0);
    h.fake.put_foreign_group(&h.id(), "someone-else");
    h.introduce().await;
    let action = h
        .reconcile()
        .await
        .expect("conflict is reported, not retried fast");
    assert_eq!(action, Action::requeue(Polling::default().settled));
    let ready = h.condition("Ready");
    assert_eq!(ready["reason"], "Conflict");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or("")
            .contains("other/cache"),
        "{ready}"
    );
    assert_eq!(h.fake.count(Op::CreateReplicationGroup), 0);
    assert_eq!(h.fake.count(Op::ModifyReplicationGroup), 0);
    assert_eq!(h.fake.count(Op::DeleteReplicationGroup), 0);
    assert_eq!(
        h.fake
            .group(&h.id())
            .expect("still there")
            .auth_token
            .expose(),
        "foreign"
    );
}

#[tokio::test]
async fn a_secret_not_written_by_us_is_a_conflict() {
    let h = Harness::new(cache_json(json!({}), true), 0);
    h.introduce().await;
    h.cluster.lock().expect("lock").secrets.insert(
        "sessions-redis".into(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sessions-redis", "namespace": "shop"}, "data": {"password": "dXNlcg=="}}),
    );
    h.reconcile().await.expect("reported in status");
    assert_eq!(h.condition("Ready")["reason"], "Conflict");
    assert!(h.condition("Ready")["message"]
        .as_str()
        .unwrap_or("")
        .contains("spec.connectionSecret.name"));
    assert!(h.fake.calls().is_empty(), "nothing created on AWS");
    assert_eq!(
        h.secret_value("sessions-redis", "password").as_deref(),
        Some("user"),
        "user's Secret untouched"
    );
}

#[tokio::test]
async fn aws_rejection_waits_for_a_spec_change_and_transient_errors_back_off() {
    let h = Harness::new(cache_json(json!({}), true), 0);
    h.introduce().await;
    h.fake.fail_next(
        Op::CreateReplicationGroup,
        ErrorClass::Rejected,
        "InvalidParameterCombination",
    );
    assert_eq!(
        h.reconcile().await.expect("reported"),
        Action::await_change()
    );
    assert_eq!(h.condition("Ready")["reason"], "AwsRejected");
    assert_eq!(
        h.condition("ReplicationGroupReady")["reason"],
        "AwsRejected"
    );
    assert!(h.condition("Synced")["message"]
        .as_str()
        .unwrap_or("")
        .contains("InvalidParameterCombination"));
    assert!(h
        .events()
        .contains(&("Warning".into(), "AwsRejected".into())));

    h.fake
        .fail_next(Op::EnsureNetwork, ErrorClass::Transient, "InternalFailure");
    let err = h
        .reconcile()
        .await
        .expect_err("transient errors are retried");
    assert_eq!(err.reason(), "AwsUnavailable");
    assert_eq!(h.condition("NetworkReady")["status"], "False");
    let cache: Arc<RedisCache> = Arc::new(serde_json::from_value(h.cache()).expect("cache"));
    let waits: Vec<f64> = (0..3)
        .map(|_| requeue_secs(&error_policy(cache.clone(), &err, h.ctx.clone())))
        .collect();
    assert!(
        (4.0..=6.0).contains(&waits[0]),
        "first retry after ~5s: {waits:?}"
    );
    assert!(
        waits[0] < waits[1] && waits[1] < waits[2],
        "capped exponential backoff grows: {waits:?}"
    );
    // Fixed by a later reconcile.
    until_ready(&h).await;
}

#[tokio::test]
async fn a_cache_waiting_in_line_shows_it_on_ready_without_an_event() {
    let h = Harness::new(cache_json(json!({}), true), 0);
    h.introduce().await;
    h.fake.queue_next(Op::EnsureParameterGroup, 12);
    let err = h.reconcile().await.expect_err("not sent yet");
    assert_eq!(h.condition("Ready")["status"], "False");
    assert_eq!(h.condition("Ready")["reason"], "Throttled");
    assert!(h.condition("Ready")["message"]
        .as_str()
        .unwrap_or("")
        .contains("12 caches ahead"));
    assert_eq!(h.cache()["status"]["phase"], "Pending");
    assert!(
        h.events().iter().all(|(_, reason)| reason != "Throttled"),
        "waiting is not an Event: {:?}",
        h.events()
    );
    // It comes back when the backend said, not after a backoff.
    let cache: Arc<RedisCache> = Arc::new(serde_json::from_value(h.cache()).expect("cache"));
    let wait = requeue_secs(&error_policy(cache, &err, h.ctx.clone()));
    assert!((6.0..=8.0).contains(&wait), "{wait}");
    until_ready(&h).await;
}

/// Seconds of a requeue (Action has no getter; its Debug shows the Duration).
fn requeue_secs(a: &Action) -> f64 {
    let text = format!("{a:?}");
    let start = text.find("Some(").expect("a requeue") + 5;
    let rest = &text[start..];
    let end = rest.find("s)").expect("seconds");
    rest[..end].parse().expect("a number of seconds")
}

/// Deletes `shop/sessions` the way the API server does with a finalizer.
fn mark_deleted(h: &Harness, policy: &str) {
    let mut c = h.cluster.lock().expect("lock");
    c.cache["metadata"]["deletionTimestamp"] = json!("2026-11-22T04:00:00Z");
    c.cache["spec"]["deletionPolicy"] = json!(policy);
}

#[tokio::test]
async fn delete_policy_waits_for_aws_then_removes_companions_in_order() {
    let h = Harness::new(cache_json(json!({}), true), 2);
    until_ready(&h).await;
    mark_deleted(&h, "Delete");
    let mut rounds = 0;
    loop {
        rounds += 1;
        match h.reconcile().await {
            Err(Error::DeletionInProgress(_)) => {
                assert_eq!(
                    h.cache()["metadata"]["finalizers"],
                    json!(["rediscache.dev/cleanup"]),
                    "finalizer kept while AWS deletes"
                );
                assert_eq!(h.cache()["status"]["phase"], "Deleting");
            }
            Ok(_) => break,
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(rounds < 10, "deletion never finished");
    }
    assert!(rounds > 1, "the group takes a few polls to go");
    assert_eq!(
        h.cache()["metadata"]["finalizers"],
        json!([]),
        "finalizer released"
    );
    assert!(h.fake.is_empty(), "everything gone on AWS");
    let first_call: Vec<usize> = [
        "DeleteReplicationGroup",
        "DeleteSecurityGroup",
        "DeleteParameterGroup",
        "DeleteSubnetGroup",
    ]
    .iter()
    .map(|op| h.position(&format!("aws {op}")))
    .collect();
    assert!(
        first_call.windows(2).all(|w| w[0] < w[1]),
        "delete order: {:#?}",
        h.timeline()
    );
    assert_eq!(
        h.fake.count(Op::DeleteSecurityGroup),
        1,
        "companions only after the group is gone"
    );
    assert!(h.events().contains(&("Normal".into(), "Deleted".into())));
}

#[tokio::test]
async fn snapshot_policy_names_a_final_snapshot() {
    let h = Harness::new(cache_json(json!({}), true), 3);
    until_ready(&h).await;
    mark_deleted(&h, "Snapshot");
    let _ = h.reconcile().await;
    let group = h.fake.group(&h.id()).expect("deleting");
    let snapshot = group.final_snapshot.expect("final snapshot requested");
    assert!(
        snapshot.starts_with(&format!("{}-final-", h.id())),
        "{snapshot}"
    );
    assert!(snapshot.ends_with('Z'));
}

#[tokio::test]
async fn retain_policy_keeps_aws_and_releases_the_secret() {
    let h = Harness::new(cache_json(json!({}), true), 0);
    until_ready(&h).await;
    let token = h.secret_value("sessions-redis", "password").expect("token");
    mark_deleted(&h, "Retain");
    h.reconcile().await.expect("retain finishes at once");
    assert_eq!(h.cache()["metadata"]["finalizers"], json!([]));
    for op in [
        Op::DeleteReplicationGroup,
        Op::DeleteSecurityGroup,
        Op::DeleteParameterGroup,
        Op::DeleteSubnetGroup,
    ] {
        assert_eq!(h.fake.count(op), 0, "{op:?} must not be called");
    }
    assert!(h.fake.group(&h.id()).is_some());
    let secret = h.secret("sessions-redis").expect("secret kept");
    assert!(
        secret["metadata"]
            .get("ownerReferences")
            .is_none_or(|r| r.is_null()),
        "owner reference removed: {secret:#}"
    );
    assert_eq!(
        h.secret_value("sessions-redis", "password"),
        Some(token),
        "token survives"
    );
    assert!(
        h.secret_value("sessions-redis", "uri").is_some(),
        "every key survives"
    );
    let release = h
        .timeline()
        .iter()
        .rposition(|e| e.contains("/secrets/"))
        .expect("secret write");
    let unfinalize = h
        .timeline()
        .iter()
        .rposition(|e| e.ends_with("/rediscaches/sessions"))
        .expect("finalizer patch");
    assert!(
        release < unfinalize,
        "the Secret is released before the finalizer goes"
    );
}
