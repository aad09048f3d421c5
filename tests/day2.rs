//! Day 2 against the in-memory fake and the in-process Kubernetes API
//! emulator: spec changes become one AWS call per reconcile in a fixed
//! order, nothing is sent while the group is busy, `applyImmediately: false`
//! leaves changes pending, drift is reported and corrected, immutable
//! changes and AWS rejections are reported without breaking the cache, an
//! engine-family upgrade swaps parameter groups, and AUTH token rotation
//! keeps the Secret's token working through a crash at every step.
//!
//! Each reconcile is called directly with the latest object from the
//! emulator, so "a crash" is simply a call that fails: the next reconcile
//! starts from what is stored, as a restarted operator would.

#[path = "support/apiserver.rs"]
mod apiserver;

#[path = "support/classes.rs"]
mod classes;

use std::sync::Arc;
use std::time::Duration;

use apiserver::ApiServer;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::Api;
use redis_cache_operator::api::RedisCache;
use redis_cache_operator::backends::elasticache::api::GroupStatus;
use redis_cache_operator::backends::fake::{FakeElastiCache, FakeGroup, Op};
use redis_cache_operator::backends::ErrorClass;
use redis_cache_operator::metrics::Metrics;
use redis_cache_operator::reconcile::{reconcile, Context, Polling};
use serde_json::{json, Value};

/// Operations that change a replication group.
const MUTATING: [Op; 6] = [
    Op::CreateReplicationGroup,
    Op::ModifyReplicationGroup,
    Op::ModifyReplicaCount,
    Op::ModifyShardCount,
    Op::UpdateAuthToken,
    Op::UpdateTags,
];

struct Harness {
    server: ApiServer,
    fake: Arc<FakeElastiCache>,
    ctx: Arc<Context>,
    api: Api<RedisCache>,
}

impl Harness {
    async fn new(spec: Value) -> Self {
        let server = ApiServer::start().await;
        server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
        let client = server.client();
        let fake = Arc::new(FakeElastiCache::new(1));
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "redis-cache-operator".into(),
                instance: None,
            },
        );
        let ctx = Arc::new(Context::new(
            client.clone(),
            classes::registry(fake.clone()),
            classes::store(vec![classes::elasticache("aws")]),
            "day2".into(),
            recorder,
            Arc::new(Metrics::new()),
            Polling::default(),
        ));
        let api: Api<RedisCache> = Api::namespaced(client, "shop");
        let cache: RedisCache = serde_json::from_value(json!({
            "apiVersion": "rediscache.dev/v1alpha1",
            "kind": "RedisCache",
            "metadata": {"name": "cart", "namespace": "shop"},
            "spec": spec,
        }))
        .expect("valid RedisCache");
        api.create(&PostParams::default(), &cache)
            .await
            .expect("create RedisCache");
        Self {
            server,
            fake,
            ctx,
            api,
        }
    }

    /// One reconcile of the stored object; returns how many mutating AWS
    /// calls it made (never more than one).
    async fn reconcile(&self) -> usize {
        let before = self.mutations().len();
        let cache = self.api.get("cart").await.expect("get RedisCache");
        // Failures are part of several tests; the status says what happened.
        let _ = reconcile(Arc::new(cache), self.ctx.clone()).await;
        let made = self.mutations().len() - before;
        assert!(
            made <= 1,
            "one reconcile made {made} mutating calls: {:?}",
            &self.mutations()[before..]
        );
        made
    }

    /// Reconciles until Ready and Synced (bounded).
    async fn settle(&self) {
        for _ in 0..40 {
            self.reconcile().await;
            if self.condition("Ready")["status"] == "True"
                && self.condition("Synced")["status"] == "True"
                && self.cache()["status"]["phase"] == "Ready"
            {
                return;
            }
        }
        panic!("never settled: {:#}", self.cache()["status"]);
    }

    fn cache(&self) -> Value {
        self.server
            .get(
                "rediscache.dev",
                "v1alpha1",
                "rediscaches",
                Some("shop"),
                "cart",
            )
            .expect("cache stored")
    }

    fn condition(&self, type_: &str) -> Value {
        self.cache()["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
            .unwrap_or(Value::Null)
    }

    fn id(&self) -> String {
        self.cache()["status"]["replicationGroupId"]
            .as_str()
            .expect("id in status")
            .to_string()
    }

    fn group(&self) -> FakeGroup {
        self.fake.group(&self.id()).expect("group exists")
    }

    fn mutations(&self) -> Vec<Op> {
        self.fake
            .calls()
            .into_iter()
            .filter(|op| MUTATING.contains(op))
            .collect()
    }

    fn events(&self, reason: &str) -> Vec<String> {
        self.server
            .list("events.k8s.io", "v1", "events")
            .into_iter()
            .filter(|e| e["reason"] == reason)
            .map(|e| e["note"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn secret_token(&self) -> String {
        let s = self
            .server
            .get("", "v1", "secrets", Some("shop"), "cart-redis")
            .expect("Secret");
        let b64 = s["data"]["password"]
            .as_str()
            .expect("password")
            .to_string();
        let bytes: k8s_openapi::ByteString = serde_json::from_value(json!(b64)).expect("base64");
        String::from_utf8(bytes.0).expect("utf8")
    }

    async fn patch(&self, patch: Value) {
        self.api
            .patch("cart", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch RedisCache");
    }

    /// The Secret's token must work on AWS, whatever happened.
    fn assert_secret_token_works(&self, when: &str) {
        let token = self.secret_token();
        assert!(
            self.group().accepts(&token),
            "{when}: the Secret holds a token AWS does not accept"
        );
    }
}

fn base_spec() -> Value {
    json!({
        "engine": "redis",
        "engineVersion": "7.1",
        "nodeType": "cache.t4g.small",
        "replicasPerShard": 1,
        "backup": {"retentionDays": 1, "window": "03:00-04:00"},
        "maintenanceWindow": "sun:05:00-sun:06:00",
        "tags": {"team": "shop"},
    })
}

#[tokio::test]
async fn settled_cache_with_server_side_spellings_makes_no_calls() {
    let h = Harness::new(base_spec()).await;
    h.settle().await;
    // AWS reports `7.1.0`, and windows in its own case: no difference.
    assert_eq!(h.group().state.engine_version.as_deref(), Some("7.1"));
    h.fake.edit_group(&h.id(), |g| {
        g.engine_version = Some("7.1.0".into());
        g.engine = Some("Redis".into());
        g.node_type = Some("CACHE.T4G.SMALL".into());
        g.maintenance_window = Some("Sun:05:00-Sun:06:00".into());
    });
    let before = h.mutations().len();
    for _ in 0..5 {
        assert_eq!(h.reconcile().await, 0);
    }
    assert_eq!(h.mutations().len(), before);
    assert_eq!(h.condition("Synced")["status"], "True");
    assert!(h.events("DriftDetected").is_empty());
}

/// A settled reconcile reads no companion (parameter group, subnet group,
/// security group) from AWS again; a change to what they should be does.
#[tokio::test]
async fn settled_reconciles_do_not_read_the_companions_again() {
    let h = Harness::new(base_spec()).await;
    h.settle().await;
    let companion_calls = |h: &Harness| {
        h.fake
            .calls()
            .into_iter()
            .filter(|op| matches!(op, Op::EnsureParameterGroup | Op::EnsureNetwork))
            .count()
    };
    let before = companion_calls(&h);
    for _ in 0..5 {
        h.reconcile().await;
    }
    assert_eq!(companion_calls(&h), before, "settled: no companion reads");
    assert_eq!(h.condition("NetworkReady")["status"], "True");
    assert_eq!(h.condition("ParameterGroupReady")["status"], "True");
    // A new allowed CIDR changes the security group: checked at once.
    h.patch(json!({"spec": {"network": {"allowedCidrs": ["10.9.0.0/16"]}}}))
        .await;
    h.reconcile().await;
    assert!(companion_calls(&h) > before, "a changed network is checked");
}

#[tokio::test]
async fn combined_change_is_sent_as_one_call_per_reconcile_in_order() {
    let mut spec = base_spec();
    spec["clusterMode"] = json!("Enabled");
    spec["shards"] = json!(2);
    let h = Harness::new(spec).await;
    h.settle().await;
    let start = h.mutations().len();

    h.patch(json!({"spec": {
        "replicasPerShard": 2,
        "shards": 3,
        "nodeType": "cache.r7g.large",
        "backup": {"retentionDays": 5, "window": "03:00-04:00"},
        "tags": {"team": "checkout"},
    }}))
    .await;
    let mut saw_waiting = false;
    for _ in 0..40 {
        h.reconcile().await;
        let synced = h.condition("Synced");
        if synced["reason"] == "Updating" {
            // While a step runs, the cache keeps serving.
            assert_eq!(h.condition("Ready")["status"], "True");
            assert_eq!(h.cache()["status"]["phase"], "Updating");
            saw_waiting |= synced["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("waiting for replication group");
        }
        if synced["status"] == "True" {
            break;
        }
    }
    assert!(
        saw_waiting,
        "no reconcile waited for the group to be available"
    );
    assert_eq!(
        h.mutations()[start..],
        [
            Op::ModifyReplicaCount,
            Op::ModifyShardCount,
            Op::ModifyReplicationGroup,
            Op::UpdateTags
        ]
    );
    let g = h.group();
    assert_eq!(g.state.replicas_per_shard, 2);
    assert_eq!(g.state.shards, 3);
    assert_eq!(g.state.node_type.as_deref(), Some("cache.r7g.large"));
    assert_eq!(g.state.snapshot_retention_days, Some(5));
    assert_eq!(g.tags["team"], "checkout");
    assert_eq!(
        g.tags["rediscache.dev/owner-uid"],
        h.cache()["metadata"]["uid"].as_str().expect("uid")
    );
    // The node type was checked against what AWS allows before the Modify.
    assert!(h.fake.count(Op::AllowedNodeTypes) >= 1);
    assert_eq!(h.cache()["status"]["phase"], "Ready");
    assert_eq!(h.cache()["status"]["shards"], 3);
    assert!(!h.events("ChangeSent").is_empty());
}

#[tokio::test]
async fn nothing_is_sent_while_the_group_is_not_available() {
    let h = Harness::new(base_spec()).await;
    h.settle().await;
    h.fake
        .edit_group(&h.id(), |g| g.status = GroupStatus::Snapshotting);
    h.patch(json!({"spec": {"nodeType": "cache.t4g.medium"}}))
        .await;
    let before = h.mutations().len();
    for _ in 0..3 {
        assert_eq!(h.reconcile().await, 0);
    }
    assert_eq!(h.mutations().len(), before);
    let synced = h.condition("Synced");
    assert_eq!(synced["reason"], "Updating");
    assert!(synced["message"]
        .as_str()
        .unwrap_or_default()
        .contains("nodeType"));
    h.fake
        .edit_group(&h.id(), |g| g.status = GroupStatus::Available);
    h.settle().await;
    assert_eq!(
        h.group().state.node_type.as_deref(),
        Some("cache.t4g.medium")
    );
}

#[tokio::test]
async fn apply_later_changes_wait_for_the_maintenance_window() {
    let mut spec = base_spec();
    spec["applyImmediately"] = json!(false);
    let h = Harness::new(spec).await;
    h.settle().await;
    let before = h.mutations().len();
    h.patch(json!({"spec": {"nodeType": "cache.t4g.medium"}}))
        .await;
    for _ in 0..5 {
        h.reconcile().await;
    }
    assert_eq!(
        h.mutations()[before..],
        [Op::ModifyReplicationGroup],
        "sent once, not again while pending"
    );
    let pending = h.condition("PendingChanges");
    assert_eq!(pending["status"], "True");
    assert!(pending["message"]
        .as_str()
        .unwrap_or_default()
        .contains("nodeType"));
    assert_eq!(h.condition("Ready")["status"], "True");
    assert_eq!(
        h.group().state.node_type.as_deref(),
        Some("cache.t4g.small")
    );

    h.fake.run_maintenance(&h.id());
    h.reconcile().await;
    assert_eq!(h.condition("PendingChanges")["status"], "False");
    assert_eq!(
        h.group().state.node_type.as_deref(),
        Some("cache.t4g.medium")
    );
    assert_eq!(h.condition("Synced")["status"], "True");
}

#[tokio::test]
async fn drift_is_reported_and_corrected() {
    let h = Harness::new(base_spec()).await;
    h.settle().await;
    // Someone changes the group in the AWS console.
    h.fake.edit_group(&h.id(), |g| {
        g.node_type = Some("cache.t4g.medium".into());
        g.snapshot_retention_days = Some(0);
    });
    h.settle().await;
    let drift = h.events("DriftDetected");
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(drift[0].contains("nodeType") && drift[0].contains("backup.retentionDays"));
    let g = h.group();
    assert_eq!(g.state.node_type.as_deref(), Some("cache.t4g.small"));
    assert_eq!(g.state.snapshot_retention_days, Some(1));
}

#[tokio::test]
async fn immutable_change_is_refused_by_the_operator_without_an_aws_call() {
    let h = Harness::new(base_spec()).await;
    h.settle().await;
    let before = h.mutations().len();
    // Admission would refuse this (CEL); the operator must too.
    h.patch(json!({"spec": {"port": 6380}})).await;
    h.reconcile().await;
    assert_eq!(h.mutations().len(), before);
    let ready = h.condition("Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ImmutableField");
    assert!(ready["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("spec.port"));
    assert_eq!(h.events("ImmutableField").len(), 1);
    // Restoring the value clears it.
    h.patch(json!({"spec": {"port": 6379}})).await;
    h.settle().await;
}

#[tokio::test]
async fn aws_rejection_keeps_the_cache_ready_until_the_spec_is_fixed() {
    let h = Harness::new(base_spec()).await;
    h.settle().await;
    h.fake
        .set_allowed_node_types(&["cache.t4g.small", "cache.t4g.medium"]);
    let before = h.mutations().len();
    h.patch(json!({"spec": {"nodeType": "cache.r7g.16xlarge"}}))
        .await;
    h.reconcile().await;
    assert_eq!(h.mutations().len(), before, "refused before any Modify");
    let synced = h.condition("Synced");
    assert_eq!(synced["status"], "False");
    assert_eq!(synced["reason"], "AwsRejected");
    assert!(synced["message"]
        .as_str()
        .unwrap_or_default()
        .contains("cache.t4g.medium"));
    assert_eq!(h.condition("Ready")["status"], "True");
    assert_eq!(h.cache()["status"]["phase"], "Ready");

    // An InvalidParameterCombination from the Modify itself is the same.
    h.patch(json!({"spec": {"nodeType": "cache.t4g.medium"}}))
        .await;
    h.fake.fail_next(
        Op::ModifyReplicationGroup,
        ErrorClass::Rejected,
        "InvalidParameterCombination",
    );
    h.reconcile().await;
    assert_eq!(h.condition("Synced")["reason"], "AwsRejected");
    assert_eq!(h.condition("Ready")["status"], "True");
    h.settle().await;
    assert_eq!(
        h.group().state.node_type.as_deref(),
        Some("cache.t4g.medium")
    );
}

#[tokio::test]
async fn engine_family_upgrade_switches_parameter_groups_in_one_modify() {
    let mut spec = base_spec();
    spec["engine"] = json!("valkey");
    spec["engineVersion"] = json!("7.2");
    spec["evictionPolicy"] = json!("volatile-lru");
    let h = Harness::new(spec).await;
    h.settle().await;
    let id = h.id();
    let old = format!("{id}-params-valkey7");
    let new = format!("{id}-params-valkey8");
    assert!(h.fake.parameter_group(&old).is_some());

    h.patch(json!({"spec": {"engineVersion": "8.0"}})).await;
    h.settle().await;
    // The new group carries the user's parameters; the old one is gone.
    let pg = h.fake.parameter_group(&new).expect("new parameter group");
    assert_eq!(pg.content["maxmemory-policy"], "volatile-lru");
    assert_eq!(pg.content["family"], "valkey8");
    for _ in 0..3 {
        h.reconcile().await;
    }
    assert!(h.fake.parameter_group(&old).is_none(), "old group retired");
    let g = h.group();
    assert_eq!(g.state.parameter_group.as_deref(), Some(new.as_str()));
    assert_eq!(g.state.engine_version.as_deref(), Some("8.0.0"));
    assert_eq!(h.cache()["status"]["parameterGroupName"], json!(new));
    assert_eq!(h.events("ParameterGroupRetired").len(), 1);
    let upgrade = h
        .fake
        .modifications()
        .into_iter()
        .find(|c| c.engine_version.is_some())
        .expect("an engine upgrade");
    assert_eq!(upgrade.engine_version.as_deref(), Some("8.0"));
    assert_eq!(
        upgrade.parameter_group.as_deref(),
        Some(new.as_str()),
        "same Modify"
    );

    // Parameter changes go to the group in place, without a Modify.
    let before = h.mutations().len();
    h.patch(json!({"spec": {"evictionPolicy": "allkeys-lfu"}}))
        .await;
    h.settle().await;
    assert_eq!(h.mutations().len(), before);
    let pg = h.fake.parameter_group(&new).expect("parameter group");
    assert_eq!(pg.content["maxmemory-policy"], "allkeys-lfu");
}

/// Requests a rotation and reconciles until it is done, checking after
/// every reconcile that the Secret's token works on AWS.
async fn rotate(h: &Harness, request: &str) {
    h.patch(json!({"metadata": {"annotations": {"rediscache.dev/rotate-auth-token": request}}}))
        .await;
    for _ in 0..60 {
        h.reconcile().await;
        h.assert_secret_token_works("during rotation");
        let auth = &h.cache()["status"]["auth"];
        if auth["state"] == "Active" && auth["lastRotationTime"].is_string() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rotation never finished: {:#}", h.cache()["status"]);
}

fn rotation_spec() -> Value {
    let mut spec = base_spec();
    spec["auth"] = json!({"rotationGracePeriod": "1s"});
    spec
}

#[tokio::test]
async fn annotation_rotates_the_token_rotate_then_secret_then_set() {
    let h = Harness::new(rotation_spec()).await;
    h.settle().await;
    let old = h.secret_token();
    let before = h.fake.count(Op::UpdateAuthToken);
    let mut states = Vec::new();
    h.patch(
        json!({"metadata": {"annotations": {"rediscache.dev/rotate-auth-token": "2026-11-22"}}}),
    )
    .await;
    for _ in 0..60 {
        h.reconcile().await;
        h.assert_secret_token_works("during rotation");
        let state = h.cache()["status"]["auth"]["state"].clone();
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if state == "Active" && h.cache()["status"]["auth"]["lastRotationTime"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        states,
        [
            json!("Rotating"),
            json!("GracePeriod"),
            json!("Finalizing"),
            json!("Active")
        ]
    );
    let new = h.secret_token();
    assert!(new != old, "a new token");
    let g = h.group();
    assert!(g.accepts(&new));
    assert!(!g.accepts(&old), "SET retired the old token");
    assert_eq!(
        h.fake.count(Op::UpdateAuthToken) - before,
        2,
        "one ROTATE, one SET"
    );
    for reason in [
        "AuthTokenRotationStarted",
        "AuthTokenPromoted",
        "AuthTokenFinalizing",
        "AuthTokenRotated",
    ] {
        assert_eq!(h.events(reason).len(), 1, "{reason}");
    }
    // No token in status or Events.
    let everything = format!(
        "{}{:?}",
        h.cache(),
        h.server.list("events.k8s.io", "v1", "events")
    );
    assert!(!everything.contains(&new) && !everything.contains(&old));
    // The same annotation value does not rotate again; a new one does.
    for _ in 0..3 {
        h.reconcile().await;
    }
    assert_eq!(h.fake.count(Op::UpdateAuthToken) - before, 2);
    rotate(&h, "again").await;
    assert!(h.secret_token() != new, "rotated again");
}

#[tokio::test]
async fn rotation_survives_a_crash_after_every_step() {
    // Each entry makes one call of the sequence fail, as if the operator
    // died right there; the next reconciles must finish the rotation and
    // the Secret's token must work at every point.
    type Crash = Box<dyn Fn(&Harness)>;
    let crashes: Vec<(&str, Crash)> = vec![
        (
            "after storing the pending token, before ROTATE",
            Box::new(|h: &Harness| {
                h.fake.fail_next(
                    Op::UpdateAuthToken,
                    ErrorClass::Transient,
                    "InternalFailure",
                )
            }),
        ),
        (
            "after ROTATE, before the Secret gets the token",
            Box::new(|h: &Harness| h.server.fail_next("PATCH", "/secrets/cart-redis?")),
        ),
        (
            "after the Secret got the token, before the record says so",
            Box::new(|h: &Harness| h.server.fail_next("PATCH", "/secrets/cart-redis-rotation?")),
        ),
        (
            "status write after a step",
            Box::new(|h: &Harness| h.server.fail_next("PATCH", "/rediscaches/cart/status")),
        ),
    ];
    for (when, crash) in crashes {
        let h = Harness::new(rotation_spec()).await;
        h.settle().await;
        let old = h.secret_token();
        // Arm the crash once the rotation has been requested, then again
        // for the SET half, so both halves see it.
        crash(&h);
        rotate(&h, "crash").await;
        assert_eq!(
            h.server.pending_faults() + h.fake.pending_faults(),
            0,
            "{when}: the crash happened"
        );
        let new = h.secret_token();
        assert!(new != old, "{when}: rotated");
        assert!(h.group().accepts(&new), "{when}");
        assert!(!h.group().accepts(&old), "{when}: old token retired");
    }
    // A failed SET is retried with the same token.
    let h = Harness::new(rotation_spec()).await;
    h.settle().await;
    h.patch(json!({"metadata": {"annotations": {"rediscache.dev/rotate-auth-token": "x"}}}))
        .await;
    for _ in 0..40 {
        h.reconcile().await;
        if h.cache()["status"]["auth"]["state"] == "GracePeriod" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.fake.fail_next(
        Op::UpdateAuthToken,
        ErrorClass::Transient,
        "InternalFailure",
    );
    rotate(&h, "x").await;
    assert_eq!(h.fake.pending_faults(), 0, "the SET failed once");
    assert_eq!(h.group().valid_tokens.len(), 1);
    h.assert_secret_token_works("after a failed SET");
}

#[tokio::test]
async fn a_group_aws_failed_to_create_is_not_polled_fast_nor_changed() {
    let h = Harness::new(base_spec()).await;
    for _ in 0..3 {
        h.reconcile().await;
    }
    h.fake
        .edit_group(&h.id(), |g| g.status = GroupStatus::CreateFailed);
    h.patch(json!({"spec": {"nodeType": "cache.t4g.medium"}}))
        .await;
    let before = h.mutations().len();
    let cache = h.api.get("cart").await.expect("get");
    let action = reconcile(Arc::new(cache), h.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        h.mutations().len(),
        before,
        "nothing sent to a failed group"
    );
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Polling::default().settled)
    );
    assert_eq!(h.cache()["status"]["phase"], "Failed");
    assert_eq!(h.condition("Ready")["reason"], "CreateFailed");
}
