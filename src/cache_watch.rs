//! The RedisCache watch, robust to an object that does not parse (a CRD
//! installed without its schema, a version skew): such an object is kept out
//! of the controller — one bad object never stops the watch for the others —
//! and gets `Ready=False, reason=InvalidSpec` naming the field path, e.g.
//! `spec.deletionPolicy: unknown variant "Destroy", expected one of …`.

use futures::{future, Stream, StreamExt};

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::store::Writer;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::conditions::{self, Cond};
use crate::api::{Phase, RedisCache, FIELD_MANAGER};

/// RedisCaches of `namespace` (all when `None`) as the controller's trigger,
/// reflected into `writer`; objects that do not parse are reported instead.
pub fn caches(
    client: Client,
    namespace: Option<&str>,
    writer: Writer<RedisCache>,
) -> impl Stream<Item = Result<RedisCache, watcher::Error>> + Send + 'static {
    let resource = ApiResource::erase::<RedisCache>(&());
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| {
            future::ready(match event {
                Ok(e) => typed(e, &client).map(Ok),
                Err(e) => Some(Err(e)),
            })
        })
        .reflect(writer)
        .applied_objects()
}

/// One watch event with its objects parsed; an object that does not parse
/// is reported and left out (or, when it was known, forgotten).
fn typed(
    event: watcher::Event<DynamicObject>,
    client: &Client,
) -> Option<watcher::Event<RedisCache>> {
    use watcher::Event;
    let parse = |obj: DynamicObject| match parse(&obj) {
        Ok(cache) => Some(stored(cache)),
        Err(message) => {
            report(client.clone(), obj, message);
            None
        }
    };
    Some(match event {
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
        Event::InitApply(obj) => Event::InitApply(parse(obj)?),
        Event::Apply(obj) => {
            let meta = obj.metadata.clone();
            match parse(obj) {
                Some(cache) => Event::Apply(cache),
                // It no longer parses: the controller must stop acting on
                // the last version that did.
                None => Event::Delete(RedisCache {
                    metadata: meta,
                    spec: Default::default(),
                    status: None,
                }),
            }
        }
        Event::Delete(obj) => Event::Delete(RedisCache {
            metadata: obj.metadata,
            spec: Default::default(),
            status: None,
        }),
    })
}

/// The cache as the store keeps it: without `managedFields`, which nothing
/// here reads and which, at a thousand caches, are much of the store's memory.
fn stored(mut cache: RedisCache) -> RedisCache {
    cache.metadata.managed_fields = None;
    cache
}

/// The object as a RedisCache, or `path: what is wrong`.
pub fn parse(obj: &DynamicObject) -> Result<RedisCache, String> {
    let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize::<_, RedisCache>(value)
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

/// Writes `Ready=False, reason=InvalidSpec` on the object, unless it says
/// so already (the write itself is a watch event).
fn report(client: Client, obj: DynamicObject, message: String) {
    let message = format!("the object does not parse: {message}; fix that field");
    let ready = obj.data["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == conditions::READY));
    if ready.is_some_and(|c| c["reason"] == "InvalidSpec" && c["message"] == json!(message)) {
        return;
    }
    let name = obj.name_any();
    let namespace = obj.namespace().unwrap_or_default();
    tracing::warn!(cache = %format!("{namespace}/{name}"), reason = "InvalidSpec", "{message}");
    tokio::spawn(async move {
        let resource = ApiResource::erase::<RedisCache>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
        let old: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> =
            serde_json::from_value(obj.data["status"]["conditions"].clone()).unwrap_or_default();
        let conds = conditions::merge(
            &old,
            &[Cond::no(conditions::READY, "InvalidSpec", message)],
            obj.metadata.generation,
            now,
        );
        let patch = json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "status": {"phase": Phase::Failed, "conditions": conds},
        });
        if let Err(e) = api
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            tracing::warn!(cache = %format!("{namespace}/{name}"), "could not report the invalid object: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_keeps_no_managed_fields() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rediscache.dev/v1alpha1",
            "kind": "RedisCache",
            "metadata": {
                "name": "sessions",
                "namespace": "shop",
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {},
        }))
        .expect("an object");
        let cache = parse(&obj).map(stored).expect("parses");
        assert_eq!(cache.metadata.managed_fields, None);
        assert_eq!(cache.metadata.name.as_deref(), Some("sessions"));
    }
}
