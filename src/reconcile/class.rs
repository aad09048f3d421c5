//! RedisCacheClasses: which class a cache uses (fixed in status at the first
//! reconcile; the default class when it names none), and the class
//! controller, which shows whether a class works and how many caches use it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};

use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error};
use crate::api::conditions::{self, Cond};
use crate::api::validation::ValidationErrors;
use crate::api::{choose_class, RedisCache, RedisCacheClass, FIELD_MANAGER};
use crate::backends::Registry;

/// How long a reconcile waits for the class watch's first list.
const STORE_WAIT: Duration = Duration::from_secs(10);

/// The class `cache` uses: the one fixed in status, else `spec.className`,
/// else the single default class ([`choose_class`]).
pub async fn for_cache(cache: &RedisCache, ctx: &Context) -> Result<Arc<RedisCacheClass>, Error> {
    if tokio::time::timeout(STORE_WAIT, ctx.classes.wait_until_ready())
        .await
        .is_err()
    {
        return Err(Error::Starting(
            "the operator's RedisCacheClass watch has not listed the classes yet",
        ));
    }
    let classes = ctx.classes.state();
    let invalid = |m| Error::InvalidSpec(ValidationErrors::one("spec.className", m));
    let class = choose_class(cache, &classes, None).map_err(invalid)?;
    if !class.selects_namespaces() {
        return Ok(class.clone());
    }
    // Only a class that selects namespaces by label costs a read.
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let namespace = namespaces
        .get(&cache.namespace().unwrap_or_default())
        .await?;
    choose_class(cache, &classes, Some(namespace.labels()))
        .cloned()
        .map_err(invalid)
}

/// Caches that use `class` (or would, as the default): re-queued when the class changes.
pub fn caches_of(
    class: &RedisCacheClass,
    caches: &Store<RedisCache>,
) -> Vec<ObjectRef<RedisCache>> {
    let name = class.name_any();
    caches
        .state()
        .iter()
        .filter(|c| {
            let fixed = c.status.as_ref().and_then(|s| s.class_name.as_deref());
            match (fixed, c.spec.class_name.as_deref()) {
                (Some(f), _) => f == name,
                (None, Some(w)) => w == name,
                (None, None) => class.is_default(),
            }
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// What the class controller shares.
pub struct ClassContext {
    pub client: Client,
    pub backends: Arc<Registry>,
    /// The RedisCache controllers' stores, to count a class's caches.
    pub caches: Vec<Store<RedisCache>>,
    /// How often a class's credentials are checked again.
    pub interval: Duration,
}

/// Why a class reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ClassError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Checks a class (one cheap backend read) and writes `Ready` and `caches`.
pub async fn reconcile_class(
    class: Arc<RedisCacheClass>,
    ctx: Arc<ClassContext>,
) -> Result<Action, ClassError> {
    let name = class.name_any();
    let ready = match ctx.backends.for_class(&class).await {
        Err(e) => Cond::no(conditions::READY, e.reason(), e.to_string()),
        Ok(backend) => match backend.check().await {
            Ok(what) => Cond::yes(conditions::READY, "Ready", what),
            Err(e) => Cond::no(conditions::READY, e.reason(), e.to_string()),
        },
    };
    let caches: usize = ctx
        .caches
        .iter()
        .map(|store| {
            store
                .state()
                .iter()
                .filter(|c| {
                    c.status.as_ref().and_then(|s| s.class_name.as_deref()) == Some(name.as_str())
                })
                .count()
        })
        .sum();
    let old = class.status.clone().unwrap_or_default();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    let conds = conditions::merge(&old.conditions, &[ready], class.metadata.generation, now);
    let status = crate::api::RedisCacheClassStatus {
        observed_generation: class.metadata.generation,
        conditions: conds,
        caches: Some(i64::try_from(caches).unwrap_or(i64::MAX)),
    };
    if status != old {
        let api: Api<RedisCacheClass> = Api::all(ctx.client.clone());
        let patch = json!({
            "apiVersion": RedisCacheClass::api_version(&()),
            "kind": RedisCacheClass::kind(&()),
            "status": status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    Ok(Action::requeue(ctx.interval))
}

/// Retries a failed class reconcile soon.
pub fn class_error_policy(
    class: Arc<RedisCacheClass>,
    error: &ClassError,
    _ctx: Arc<ClassContext>,
) -> Action {
    tracing::warn!(class = %class.name_any(), "class reconcile failed: {error}");
    Action::requeue(Duration::from_secs(15))
}
