//! Tests of the in-process API server emulator, driven through real kube-rs clients.

#[path = "support/apiserver.rs"]
mod apiserver;

use std::sync::Arc;
use std::time::Duration;

use apiserver::ApiServer;
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "example.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    pub size: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WidgetStatus {
    pub ready: bool,
}

const GROUP: &str = "example.dev";
const VERSION: &str = "v1";
const WIDGETS: &str = "widgets";
const NS: &str = "default";

async fn setup() -> (ApiServer, Client) {
    let server = ApiServer::start().await;
    server.register_status_subresource(GROUP, VERSION, WIDGETS);
    let client = server.client();
    (server, client)
}

fn widget(name: &str, size: i32) -> Widget {
    Widget::new(name, WidgetSpec { size })
}

fn api_code(result: Result<impl std::fmt::Debug, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `check` until it holds, for things that happen asynchronously (controllers, GC).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn next_event<S, T>(stream: &mut S) -> T
where
    S: Stream<Item = Result<T, watcher::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("watch event within 10s")
        .expect("watch stream still open")
        .expect("watch event is not an error")
}

#[tokio::test]
async fn crud_roundtrip_sets_server_metadata() {
    let (server, client) = setup().await;
    let widgets: Api<Widget> = Api::default_namespaced(client);

    let created = widgets
        .create(&PostParams::default(), &widget("w1", 1))
        .await
        .expect("create");
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| !u.is_empty()));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    assert_eq!(meta.namespace.as_deref(), Some(NS));
    let rv1: u64 = created
        .resource_version()
        .expect("rv")
        .parse()
        .expect("numeric rv");

    let fetched = widgets.get("w1").await.expect("get");
    assert_eq!(fetched.metadata.uid, created.metadata.uid);
    assert_eq!(
        widgets
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    let stored = server
        .get(GROUP, VERSION, WIDGETS, Some(NS), "w1")
        .expect("stored");
    assert_eq!(stored["kind"], "Widget");
    assert_eq!(stored["apiVersion"], "example.dev/v1");

    // A spec change bumps generation and resourceVersion.
    let mut changed = fetched.clone();
    changed.spec.size = 2;
    let replaced = widgets
        .replace("w1", &PostParams::default(), &changed)
        .await
        .expect("replace");
    assert_eq!(replaced.metadata.generation, Some(2));
    let rv2: u64 = replaced
        .resource_version()
        .expect("rv")
        .parse()
        .expect("numeric rv");
    assert!(rv2 > rv1);

    // Replacing with the old resourceVersion is a conflict.
    let err = widgets
        .replace("w1", &PostParams::default(), &changed)
        .await;
    assert_eq!(api_code(err), 409);

    // Metadata-only changes keep the generation.
    let labelled = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("label patch");
    assert_eq!(labelled.metadata.generation, Some(2));
    assert_eq!(labelled.labels().get("a").map(String::as_str), Some("b"));

    // A patch that changes nothing keeps the resourceVersion.
    let same = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .expect("no-op patch");
    assert_eq!(same.resource_version(), labelled.resource_version());

    match widgets
        .create(&PostParams::default(), &widget("w1", 1))
        .await
    {
        Err(kube::Error::Api(status)) => assert!(status.is_already_exists(), "{status:?}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }

    let mut generated = widget("", 1);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let generated = widgets
        .create(&PostParams::default(), &generated)
        .await
        .expect("generateName");
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);

    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(widgets.get_opt("w1").await.expect("get_opt").is_none());
    assert_eq!(
        api_code(widgets.delete("w1", &DeleteParams::default()).await),
        404
    );
    assert_eq!(api_code(widgets.get("w1").await), 404);
}

#[tokio::test]
async fn merge_and_json_patches() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("cm".into()),
            ..Default::default()
        },
        data: Some([("a".to_string(), "1".to_string())].into()),
        ..Default::default()
    };
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");

    let merged = cms
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2", "a": null}})),
        )
        .await
        .expect("merge patch");
    let data = merged.data.expect("data");
    assert_eq!(data.get("b").map(String::as_str), Some("2"));
    assert!(!data.contains_key("a"));

    let strategic = cms
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"c": "3"}})),
        )
        .await
        .expect("strategic patch");
    assert_eq!(strategic.data.expect("data").len(), 2);

    let ops = json!([
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/b", "value": "two"},
    ]);
    let patched = cms
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(ops).expect("ops")),
        )
        .await
        .expect("json patch");
    assert_eq!(
        patched.data.expect("data").get("b").map(String::as_str),
        Some("two")
    );

    let failing = json!([
        {"op": "test", "path": "/data/b", "value": "nope"},
        {"op": "remove", "path": "/data/b"},
    ]);
    let result = cms
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(failing).expect("ops")),
        )
        .await;
    assert_eq!(api_code(result), 422);

    // A stale resourceVersion inside a patch body is a conflict.
    let stale =
        json!({"metadata": {"resourceVersion": created.resource_version()}, "data": {"x": "y"}});
    assert_eq!(
        api_code(
            cms.patch("cm", &PatchParams::default(), &Patch::Merge(stale))
                .await
        ),
        409
    );
    assert_eq!(
        api_code(
            cms.patch("missing", &PatchParams::default(), &Patch::Merge(json!({})))
                .await
        ),
        404
    );
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_removes_fields() {
    let (server, client) = setup().await;
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client);
    let owner = widgets
        .create(&PostParams::default(), &widget("owner", 1))
        .await
        .expect("owner");
    let owner_ref = owner.controller_owner_ref(&()).expect("owner ref");
    let pp = PatchParams::apply("test-manager").force();

    let applied = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "ownerReferences": [owner_ref], "labels": {"app": "x"}},
        "data": {"one": "MQ==", "two": "Mg=="},
    });
    let created = secrets
        .patch("s", &pp, &Patch::Apply(&applied))
        .await
        .expect("apply create");
    assert_eq!(created.owner_references().len(), 1);
    assert_eq!(created.data.as_ref().expect("data").len(), 2);

    // Another manager's field must survive this manager's re-apply.
    secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"other": "keep"}}})),
        )
        .await
        .expect("merge patch by another writer");

    let reapplied = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "labels": {"app": "y"}},
        "data": {"one": "MQ=="},
    });
    let updated = secrets
        .patch("s", &pp, &Patch::Apply(&reapplied))
        .await
        .expect("apply update");
    assert!(
        updated.owner_references().is_empty(),
        "ownerReference removed"
    );
    let data = updated.data.clone().expect("data");
    assert!(
        data.contains_key("one") && !data.contains_key("two"),
        "data key removed"
    );
    assert_eq!(updated.labels().get("app").map(String::as_str), Some("y"));
    assert_eq!(
        updated.annotations().get("other").map(String::as_str),
        Some("keep")
    );
    assert_eq!(updated.metadata.uid, created.metadata.uid);

    let stored = server
        .get("", "v1", "secrets", Some(NS), "s")
        .expect("stored");
    assert!(stored["metadata"].get("managedFields").is_none());

    let (_, path, content_type) = server
        .requests()
        .into_iter()
        .find(|(method, _, ct)| method == "PATCH" && ct.contains("apply-patch"))
        .expect("apply request logged");
    assert!(
        path.contains("fieldManager=test-manager") && path.contains("force=true"),
        "{path}"
    );
    assert_eq!(content_type, "application/apply-patch+yaml");

    let result = secrets
        .patch("s", &PatchParams::default(), &Patch::Apply(&reapplied))
        .await;
    assert_eq!(api_code(result), 400, "apply without fieldManager");
}

#[tokio::test]
async fn changes_since_replays_writes_in_order_with_their_times() {
    let (server, client) = setup().await;
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let before = std::time::Instant::now();
    widgets
        .create(&PostParams::default(), &widget("a", 1))
        .await
        .expect("create");
    let (first, rv) = server.changes_since(GROUP, WIDGETS, 0);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1["spec"]["size"], 1);
    assert!(first[0].0 >= before);

    // Another kind's write is not listed; the status write is.
    let maps: Api<ConfigMap> = Api::default_namespaced(client);
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("c".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    maps.create(&PostParams::default(), &map)
        .await
        .expect("configmap");
    let status =
        json!({"apiVersion": "example.dev/v1", "kind": "Widget", "status": {"ready": true}});
    widgets
        .patch_status(
            "a",
            &PatchParams::apply("status-manager").force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("patch_status");
    let (next, _) = server.changes_since(GROUP, WIDGETS, rv);
    assert_eq!(next.len(), 1, "only the widget's status write");
    assert_eq!(next[0].1["status"]["ready"], true);
    assert!(next[0].0 >= first[0].0);
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status() {
    let (server, client) = setup().await;
    let widgets: Api<Widget> = Api::default_namespaced(client);
    let mut w = widget("w", 1);
    w.status = Some(WidgetStatus { ready: true });
    let created = widgets
        .create(&PostParams::default(), &w)
        .await
        .expect("create");
    assert_eq!(created.status, None, "status is ignored on create");

    let pp = PatchParams::apply("status-manager").force();
    let status = json!({"apiVersion": "example.dev/v1", "kind": "Widget", "spec": {"size": 99}, "status": {"ready": true}});
    let patched = widgets
        .patch_status("w", &pp, &Patch::Apply(&status))
        .await
        .expect("patch_status");
    assert_eq!(patched.status, Some(WidgetStatus { ready: true }));
    assert_eq!(patched.spec.size, 1, "spec untouched through /status");
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "status writes keep generation"
    );

    let mut main_write = patched.clone();
    main_write.spec.size = 5;
    main_write.status = Some(WidgetStatus { ready: false });
    let replaced = widgets
        .replace("w", &PostParams::default(), &main_write)
        .await
        .expect("replace");
    assert_eq!(replaced.spec.size, 5);
    assert_eq!(
        replaced.status,
        Some(WidgetStatus { ready: true }),
        "main write keeps status"
    );
    assert_eq!(replaced.metadata.generation, Some(2));

    let merged = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": false}})),
        )
        .await
        .expect("merge on main");
    assert_eq!(merged.status, Some(WidgetStatus { ready: true }));

    let status_merge = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": false}})),
        )
        .await
        .expect("merge on status");
    assert_eq!(status_merge.status, Some(WidgetStatus { ready: false }));
    let stored = server
        .get(GROUP, VERSION, WIDGETS, Some(NS), "w")
        .expect("stored");
    assert_eq!(stored["status"]["ready"], false);
    assert_eq!(stored["spec"]["size"], 5);

    let mut put = status_merge.clone();
    put.spec.size = 7;
    put.status = Some(WidgetStatus { ready: true });
    let replaced = widgets
        .replace_status("w", &PostParams::default(), &put)
        .await
        .expect("replace_status");
    assert_eq!(
        (replaced.spec.size, replaced.status),
        (5, Some(WidgetStatus { ready: true }))
    );
}

#[tokio::test]
async fn selectors_and_metadata_only_requests() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (name, labels) in [
        ("a", json!({"app": "a", "tier": "web"})),
        ("b", json!({"app": "b"})),
        ("c", json!({"app": "c", "tier": "db"})),
    ] {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}});
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(cm).expect("cm"),
        )
        .await
        .expect("create");
    }
    let other_ns: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    other_ns
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "d"}})).expect("cm"),
        )
        .await
        .expect("create in other namespace");

    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
    };
    for (selector, expected) in [
        ("app=a", vec!["a"]),
        ("app==b", vec!["b"]),
        ("app!=a", vec!["b", "c"]),
        ("tier", vec!["a", "c"]),
        ("!tier", vec!["b"]),
        ("app in (a,b)", vec!["a", "b"]),
        ("app notin (a,b),tier", vec!["c"]),
        ("app=a,tier=db", vec![]),
    ] {
        let list = cms
            .list(&ListParams::default().labels(selector))
            .await
            .expect("list");
        assert_eq!(names(list), expected, "selector {selector}");
    }
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .expect("list");
    assert_eq!(names(by_name), vec!["b"]);
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default())
            .await
            .expect("list all")
            .items
            .len(),
        4
    );
    let in_other = all
        .list(&ListParams::default().fields("metadata.namespace=other"))
        .await
        .expect("list");
    assert_eq!(names(in_other), vec!["d"]);

    let meta_list = cms
        .list_metadata(&ListParams::default().labels("tier"))
        .await
        .expect("list_metadata");
    assert_eq!(meta_list.types.kind, "PartialObjectMetadataList");
    assert_eq!(meta_list.items.len(), 2);
    assert_eq!(meta_list.items[0].metadata.name.as_deref(), Some("a"));
    let meta = cms.get_metadata("c").await.expect("get_metadata");
    assert_eq!(
        meta.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    assert_eq!(meta.labels().get("tier").map(String::as_str), Some("db"));

    let deleted = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("tier"),
        )
        .await
        .expect("delete_collection");
    assert_eq!(deleted.left().map(|list| list.items.len()), Some(2));
    let left = cms.list(&ListParams::default()).await.expect("list");
    assert_eq!(names(left), vec!["b"]);

    // Cluster-scoped objects live at paths without a namespace.
    let namespaces: Api<Namespace> = Api::all(client);
    let ns = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("ns"),
        )
        .await
        .expect("create namespace");
    assert_eq!(ns.metadata.namespace, None);
    assert!(namespaces.get("team").await.is_ok());
}

#[tokio::test]
async fn watcher_observes_create_modify_delete() {
    let (_server, client) = setup().await;
    let widgets: Api<Widget> = Api::default_namespaced(client);
    widgets
        .create(&PostParams::default(), &widget("before", 1))
        .await
        .expect("create");

    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut stream = watcher(widgets.clone(), config).boxed();
        assert!(matches!(
            next_event(&mut stream).await,
            watcher::Event::Init
        ));
        match next_event(&mut stream).await {
            watcher::Event::InitApply(w) => assert_eq!(w.name_any(), "before"),
            other => panic!("expected InitApply, got {other:?}"),
        }
        assert!(matches!(
            next_event(&mut stream).await,
            watcher::Event::InitDone
        ));

        widgets
            .create(&PostParams::default(), &widget("live", 1))
            .await
            .expect("create");
        match next_event(&mut stream).await {
            watcher::Event::Apply(w) => {
                assert_eq!((w.name_any().as_str(), w.spec.size), ("live", 1))
            }
            other => panic!("expected Apply, got {other:?}"),
        }
        widgets
            .patch(
                "live",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": 2}})),
            )
            .await
            .expect("patch");
        match next_event(&mut stream).await {
            watcher::Event::Apply(w) => assert_eq!(w.spec.size, 2),
            other => panic!("expected Apply, got {other:?}"),
        }
        widgets
            .delete("live", &DeleteParams::default())
            .await
            .expect("delete");
        match next_event(&mut stream).await {
            watcher::Event::Delete(w) => assert_eq!(w.name_any(), "live"),
            other => panic!("expected Delete, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn metadata_watchers_observe_create_modify_delete() {
    let (server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let config = watcher::Config::default().labels("watched");
    // The deprecated helper and its replacement, `watcher` over `Api<PartialObjectMeta<K>>`.
    #[allow(deprecated)]
    let legacy = kube::runtime::metadata_watcher(cms.clone(), config.clone()).boxed();
    let meta_api: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(client);
    let current = watcher(meta_api, config.streaming_lists()).boxed();

    for (name, mut stream) in [("legacy", legacy), ("current", current)] {
        assert!(matches!(
            next_event(&mut stream).await,
            watcher::Event::Init
        ));
        assert!(matches!(
            next_event(&mut stream).await,
            watcher::Event::InitDone
        ));

        let cm = json!({"metadata": {"name": name, "labels": {"watched": "yes"}}});
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(cm).expect("cm"),
        )
        .await
        .expect("create");
        match next_event(&mut stream).await {
            watcher::Event::Apply(m) => assert_eq!(m.name_any(), name),
            other => panic!("expected Apply, got {other:?}"),
        }
        let annotate = json!({"metadata": {"annotations": {"k": "v"}}});
        cms.patch(name, &PatchParams::default(), &Patch::Merge(annotate))
            .await
            .expect("patch");
        match next_event(&mut stream).await {
            watcher::Event::Apply(m) => {
                assert_eq!(m.annotations().get("k").map(String::as_str), Some("v"));
                assert_eq!(
                    m.types.as_ref().map(|t| t.kind.as_str()),
                    Some("PartialObjectMetadata")
                );
            }
            other => panic!("expected Apply, got {other:?}"),
        }
        cms.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
        assert!(
            matches!(next_event(&mut stream).await, watcher::Event::Delete(m) if m.name_any() == name)
        );
    }

    let watches: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|(_, path, _)| path.contains("watch=true"))
        .collect();
    assert!(
        !watches.is_empty()
            && watches
                .iter()
                .all(|(_, path, _)| path.contains("labelSelector=watched"))
    );
}

#[tokio::test]
async fn finalizers_and_owner_garbage_collection() {
    let (server, client) = setup().await;
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client);

    let mut w = widget("held", 1);
    w.metadata.finalizers = Some(vec!["example.dev/hold".into()]);
    widgets
        .create(&PostParams::default(), &w)
        .await
        .expect("create");
    widgets
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    let deleting = widgets.get("held").await.expect("still present");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    let again = widgets
        .delete("held", &DeleteParams::default())
        .await
        .expect("second delete");
    let again = again.left().expect("object returned");
    assert_eq!(
        again.resource_version(),
        deleting.resource_version(),
        "second delete is a no-op"
    );

    let add = widgets
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.dev/hold", "new"]}})),
        )
        .await;
    assert_eq!(api_code(add), 422, "no new finalizers while deleting");

    widgets
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("remove finalizer");
    assert!(widgets.get_opt("held").await.expect("get_opt").is_none());

    // Owner-reference GC, transitively, honouring the dependents' finalizers.
    let owner = widgets
        .create(&PostParams::default(), &widget("owner", 1))
        .await
        .expect("owner");
    let owner_ref = owner.controller_owner_ref(&()).expect("owner ref");
    let owned = |name: &str, finalizers: Value| {
        serde_json::from_value::<Secret>(json!({"metadata": {"name": name, "ownerReferences": [owner_ref], "finalizers": finalizers}}))
            .expect("secret")
    };
    secrets
        .create(&PostParams::default(), &owned("plain", json!([])))
        .await
        .expect("create");
    secrets
        .create(&PostParams::default(), &owned("guarded", json!(["keep"])))
        .await
        .expect("create");
    widgets
        .delete("owner", &DeleteParams::default())
        .await
        .expect("delete owner");
    assert!(
        secrets.get_opt("plain").await.expect("get_opt").is_none(),
        "dependent collected"
    );
    let guarded = secrets
        .get("guarded")
        .await
        .expect("guarded dependent waits for its finalizer");
    assert!(guarded.metadata.deletion_timestamp.is_some());
    assert!(server.get("", "v1", "secrets", Some(NS), "plain").is_none());
}

/// Reconcile error type for a reconciler that cannot fail.
#[derive(Debug)]
enum Never {}

impl std::fmt::Display for Never {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

impl std::error::Error for Never {}

#[tokio::test]
async fn kube_runtime_finalizer_helper_adds_and_removes_its_finalizer() {
    let (_server, client) = setup().await;
    let widgets: Api<Widget> = Api::default_namespaced(client);
    const FINALIZER: &str = "example.dev/cleanup";

    async fn run(api: &Api<Widget>, name: &str) -> &'static str {
        let obj = Arc::new(api.get(name).await.expect("get"));
        let mut seen = "none";
        finalizer(api, FINALIZER, obj, |event| {
            seen = match event {
                finalizer::Event::Apply(_) => "apply",
                finalizer::Event::Cleanup(_) => "cleanup",
            };
            async { Ok::<_, Never>(Action::await_change()) }
        })
        .await
        .expect("finalizer helper");
        seen
    }

    // First finalizer on an object without any (the JSON patch tests /metadata/finalizers == null).
    widgets
        .create(&PostParams::default(), &widget("w", 1))
        .await
        .expect("create");
    assert_eq!(run(&widgets, "w").await, "none");
    assert_eq!(
        widgets.get("w").await.expect("get").finalizers(),
        [FINALIZER]
    );
    assert_eq!(run(&widgets, "w").await, "apply");

    widgets
        .delete("w", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(run(&widgets, "w").await, "cleanup");
    assert!(widgets.get_opt("w").await.expect("get_opt").is_none());

    // Appending next to someone else's finalizer, then removing only ours.
    let mut other = widget("other", 1);
    other.metadata.finalizers = Some(vec!["someone/else".into()]);
    widgets
        .create(&PostParams::default(), &other)
        .await
        .expect("create");
    run(&widgets, "other").await;
    assert_eq!(
        widgets.get("other").await.expect("get").finalizers(),
        ["someone/else", FINALIZER]
    );
    widgets
        .delete("other", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(run(&widgets, "other").await, "cleanup");
    assert_eq!(
        widgets.get("other").await.expect("get").finalizers(),
        ["someone/else"]
    );
}

async fn reconcile(w: Arc<Widget>, client: Arc<Client>) -> Result<Action, kube::Error> {
    let name = w.name_any();
    let namespace = w.namespace().expect("namespaced");
    let pp = PatchParams::apply("widget-controller").force();
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-config"), "ownerReferences": [w.controller_owner_ref(&())]},
        "data": {"size": w.spec.size.to_string()},
    });
    let cms: Api<ConfigMap> = Api::namespaced((*client).clone(), &namespace);
    cms.patch(&format!("{name}-config"), &pp, &Patch::Apply(&cm))
        .await?;
    let status =
        json!({"apiVersion": "example.dev/v1", "kind": "Widget", "status": {"ready": true}});
    let widgets: Api<Widget> = Api::namespaced((*client).clone(), &namespace);
    widgets
        .patch_status(&name, &pp, &Patch::Apply(&status))
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Widget>, _: &kube::Error, _: Arc<Client>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test]
async fn controller_reconciles_and_owned_objects_are_collected() {
    let (server, client) = setup().await;
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let controller = tokio::spawn(
        Controller::new(widgets.clone(), watcher::Config::default())
            .owns(cms, watcher::Config::default())
            .run(reconcile, error_policy, Arc::new(client))
            .for_each(|_| async {}),
    );

    widgets
        .create(&PostParams::default(), &widget("w", 3))
        .await
        .expect("create");
    let widget_ready = || {
        server
            .get(GROUP, VERSION, WIDGETS, Some(NS), "w")
            .is_some_and(|w| w["status"]["ready"] == true)
    };
    let config_size = |size: &str| {
        server
            .get("", "v1", "configmaps", Some(NS), "w-config")
            .is_some_and(|cm| cm["data"]["size"] == size)
    };
    eventually("status ready", widget_ready).await;
    eventually("owned ConfigMap", || config_size("3")).await;

    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .expect("patch spec");
    eventually("ConfigMap follows the spec", || config_size("4")).await;
    // Re-applying unchanged state is a no-op (no new resourceVersion, no event), so it settles.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let settled = server.requests().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.requests().len(),
        settled,
        "controller keeps reconciling"
    );

    widgets
        .delete("w", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("ConfigMap collected", || {
        server
            .get("", "v1", "configmaps", Some(NS), "w-config")
            .is_none()
    })
    .await;
    controller.abort();
}

#[tokio::test]
async fn events_recorder_publishes() {
    let (server, client) = setup().await;
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let w = widgets
        .create(&PostParams::default(), &widget("w", 1))
        .await
        .expect("create");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "widget-controller".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "Reconciled".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &w.object_ref(&()))
        .await
        .expect("publish");
    recorder
        .publish(&event, &w.object_ref(&()))
        .await
        .expect("publish again (series patch)");

    let events: Api<K8sEvent> = Api::default_namespaced(client);
    let list = events
        .list(&ListParams::default())
        .await
        .expect("list events");
    assert_eq!(list.items.len(), 1);
    let stored = &list.items[0];
    assert_eq!(stored.reason.as_deref(), Some("Reconciled"));
    assert_eq!(
        stored.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("w")
    );
    assert_eq!(stored.series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(server.list("events.k8s.io", "v1", "events").len(), 1);
}

#[tokio::test]
async fn lease_replace_with_stale_resource_version_conflicts() {
    let (_server, client) = setup().await;
    let leases: Api<Lease> = Api::default_namespaced(client);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("leader".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            ..Default::default()
        }),
    };
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create");
    let mut take = created.clone();
    take.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    let taken = leases
        .replace("leader", &PostParams::default(), &take)
        .await
        .expect("replace");
    assert_eq!(
        taken.spec.expect("spec").holder_identity.as_deref(),
        Some("b")
    );

    let mut stale = created;
    stale.spec.as_mut().expect("spec").holder_identity = Some("c".into());
    match leases
        .replace("leader", &PostParams::default(), &stale)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert!(status.is_conflict() && status.code == 409, "{status:?}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_server_ends_watches() {
    let (server, client) = setup().await;
    let widgets: Api<Widget> = Api::default_namespaced(client);
    let mut events = widgets
        .watch(&Default::default(), "0")
        .await
        .expect("watch")
        .boxed();
    drop(server);
    let end = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "watch stream ends when the server stops"
    );
}
