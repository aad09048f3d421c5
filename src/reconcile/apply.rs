//! Apply, for every backend: class → validate → identity → credential →
//! one backend step → rotation → Secret → status.

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::status::{publish_event, Report};
use super::{class, credential, rotation, Context, Error};
use crate::api::conditions::{self, Cond};
use crate::api::validation::{self, PortableSpec};
use crate::api::{Phase, RedisCache, RedisCacheClass, FIELD_MANAGER};
use crate::backends::{
    turns, Backend, CacheRequest, Converged, ErrorClass, Lifecycle, Next, Ownership,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// How long after its first status a new cache's full reconcile comes.
pub const FIRST_STATUS_HEADSTART: std::time::Duration = std::time::Duration::from_secs(2);

/// Brings the backend and the Secret to the spec, then reports status.
pub async fn apply(cache: Arc<RedisCache>, ctx: Arc<Context>) -> Result<Action, Error> {
    if introduce(&cache, &ctx).await {
        // The full reconcile follows shortly, so that the first statuses of
        // caches applied together are not queued behind full reconciles.
        return Ok(Action::requeue(FIRST_STATUS_HEADSTART));
    }
    let mut report = Report::new(&cache);
    let result = provision(&cache, &ctx, &mut report).await;
    report.conclude(result.as_ref().map(|_| ()), cache.metadata.generation);
    report.publish(&cache, &ctx).await?;
    match result {
        Ok(Next::Soon) => Ok(Action::requeue(ctx.polling.in_transition)),
        Ok(Next::Within(None)) => Ok(Action::requeue(ctx.polling.settled)),
        Ok(Next::Within(Some(wake))) => Ok(Action::requeue(wake.min(ctx.polling.settled))),
        // Nothing changes until the spec (or the class) does: both wake us.
        Err(Error::InvalidSpec(_)) => Ok(Action::await_change()),
        Err(Error::Backend { source, .. })
            if matches!(source.class, ErrorClass::Rejected | ErrorClass::Immutable) =>
        {
            Ok(Action::await_change())
        }
        // Someone else's resource may go away; look again now and then.
        Err(e @ (Error::SecretConflict(_) | Error::Backend { .. })) if e.reason() == "Conflict" => {
            Ok(Action::requeue(ctx.polling.settled))
        }
        Err(e) => Err(e),
    }
}

/// The first reconcile of a new cache only fixes its identity and writes
/// its first status (`Pending`, what it waits for), so that caches applied
/// together get one without each waiting for the full reconciles (Secret,
/// backend calls) queued before it (docs/performance.md has what that buys
/// and what it does not yet). True when it did; any failure is left to the
/// full reconcile, which reports it.
async fn introduce(cache: &RedisCache, ctx: &Context) -> bool {
    let new = cache.status.as_ref().is_none_or(|s| s.phase.is_none());
    let Some(uid) = cache.uid().filter(|_| new) else {
        return false;
    };
    if !ctx.introduce_once(&uid) {
        return false;
    }
    let Ok(class) = class::for_cache(cache, ctx).await else {
        return false;
    };
    let Ok(backend) = ctx.backends.for_class(&class).await else {
        return false;
    };
    let Ok(spec) = validate(cache, &class, backend.as_ref()) else {
        return false;
    };
    let mut report = Report::new(cache);
    persist_identity(cache, ctx, &class, backend.as_ref(), &spec, &mut report)
        .await
        .is_ok()
}

/// The whole flow of one reconcile; each step is a named function.
async fn provision(cache: &RedisCache, ctx: &Context, report: &mut Report) -> Result<Next, Error> {
    let class = class::for_cache(cache, ctx).await?;
    let backend = ctx
        .backends
        .for_class(&class)
        .await
        .map_err(|source| Error::Backend {
            step: "class",
            source,
        })?;
    let spec = validate(cache, &class, backend.as_ref())?;
    let owner = ownership(cache, ctx)?;
    let backend_id = persist_identity(cache, ctx, &class, backend.as_ref(), &spec, report).await?;
    let (stored, stored_secret) =
        credential::ensure(cache, ctx, &spec, &owner, backend.credential_origin()).await?;
    let req = CacheRequest {
        cache,
        spec: &spec,
        backend_id: &backend_id,
        owner: &owner,
        credential: stored.as_ref(),
        synced_before: synced_before(cache),
    };

    report.step(conditions::SYNCED);
    // One pass: a turn at the backend's rate limit, once taken, covers all
    // of this converge's changes (crate::backends::turns).
    let converged = match turns::pass(&backend_id, backend.converge(&req)).await {
        Ok(c) => c,
        Err(failed) => return Err(report.failed_step(failed)),
    };
    if let Some(id) = &converged.backend_id {
        // Known only once the backend created the cache: stored at once.
        persist_backend_id(cache, ctx, id).await?;
        report.status.backend_id = Some(id.clone());
    }
    for note in &converged.notes {
        publish_event(ctx, cache, note.warning, note.reason, &note.message).await;
    }
    // A credential the backend makes follows the backend.
    let mut credential = converged.credential.clone().or_else(|| stored.clone());
    // A rotation failure must not keep the Secret and status from being written.
    let rotated = rotate_if_due(cache, ctx, backend.as_ref(), &req, &converged).await;
    let mut wake = None;
    if let Ok(Some(outcome)) = &rotated {
        report.status.auth = Some(outcome.status.clone());
        if let Some(promoted) = &outcome.promoted {
            credential = Some(promoted.clone());
        }
        wake = if outcome.acted {
            Some(ctx.polling.in_transition)
        } else {
            outcome.wake_in
        };
    }

    report.step(conditions::SECRET_READY);
    if let Some(credential) = &credential {
        credential::write_secret(
            cache,
            ctx,
            &spec,
            credential,
            converged.connection.as_ref(),
            stored_secret.as_ref(),
        )
        .await?;
    }
    report.step(conditions::SYNCED);
    let next = match converged.next {
        Next::Within(None) => Next::Within(wake),
        n => n,
    };
    report.converged(converged, &spec.secret_name)?;
    rotated?;
    Ok(next)
}

/// One step of the credential rotation, when the backend serves and has
/// nothing in flight.
async fn rotate_if_due(
    cache: &RedisCache,
    ctx: &Context,
    backend: &dyn Backend,
    req: &CacheRequest<'_>,
    converged: &Converged,
) -> Result<Option<rotation::Outcome>, Error> {
    if converged.next == Next::Soon || converged.observed.lifecycle != Lifecycle::Serving {
        return Ok(None);
    }
    let connection = converged.connection.as_ref();
    rotation::advance(cache, ctx, backend, req, &converged.observed, connection)
        .await
        .map(Some)
}

/// Stores the backend identity learned at create (a separate field manager,
/// like the first identity write).
async fn persist_backend_id(cache: &RedisCache, ctx: &Context, id: &str) -> Result<(), Error> {
    let api: Api<RedisCache> =
        Api::namespaced(ctx.client.clone(), &cache.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": RedisCache::api_version(&()),
        "kind": RedisCache::kind(&()),
        "status": {"backendId": id},
    });
    api.patch_status(
        &cache.name_any(),
        &PatchParams::apply(&format!("{FIELD_MANAGER}-identity")).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// The portable rules, then the backend's; no backend call on failure.
fn validate(
    cache: &RedisCache,
    class: &RedisCacheClass,
    backend: &dyn Backend,
) -> Result<PortableSpec, Error> {
    let spec = validation::resolve(cache, class).map_err(Error::InvalidSpec)?;
    backend.validate(cache, &spec).map_err(Error::InvalidSpec)?;
    Ok(spec)
}

/// The owner marks for this cache's backend objects.
pub(super) fn ownership(cache: &RedisCache, ctx: &Context) -> Result<Ownership, Error> {
    Ok(Ownership {
        owner_uid: cache.uid().ok_or(Error::MissingField("metadata.uid"))?,
        resource: format!(
            "{}/{}",
            cache.namespace().unwrap_or_default(),
            cache.name_any()
        ),
        cluster: ctx.cluster_name.clone(),
    })
}

/// Whether the backend matched this generation of the spec before: a
/// difference found now was made outside the operator.
fn synced_before(cache: &RedisCache) -> bool {
    let Some(status) = &cache.status else {
        return false;
    };
    let synced = conditions::find(&status.conditions, conditions::SYNCED)
        .is_some_and(|c| c.status == "True");
    synced
        && status.observed_generation.is_some()
        && status.observed_generation == cache.metadata.generation
}

/// Fixes the class, the provider and the backend identity in status before
/// anything exists on the backend, so a crash after a create still leaves
/// cleanup knowing what to delete (and the cache never moves class).
async fn persist_identity(
    cache: &RedisCache,
    ctx: &Context,
    class: &RedisCacheClass,
    backend: &dyn Backend,
    spec: &PortableSpec,
    report: &mut Report,
) -> Result<String, Error> {
    let status = cache.status.clone().unwrap_or_default();
    let id = status.backend_id().map(str::to_string).unwrap_or_else(|| {
        backend.identity(
            &ctx.cluster_name,
            &cache.namespace().unwrap_or_default(),
            &cache.name_any(),
        )
    });
    report.status.backend_id = Some(id.clone());
    report.status.class_name = Some(class.name_any());
    report.status.provider = Some(class.spec.provider);
    report.status.connection_secret = Some(spec.secret_name.clone());
    let fixed =
        status.backend_id.is_some() && status.class_name.is_some() && status.provider.is_some();
    if fixed {
        return Ok(id);
    }
    let api: Api<RedisCache> =
        Api::namespaced(ctx.client.clone(), &cache.namespace().unwrap_or_default());
    let mut status_patch = json!({
        "backendId": id,
        "className": class.name_any(),
        "provider": class.spec.provider,
    });
    if status.phase.is_none() {
        // A status from the first second: what the cache waits for, before
        // the first backend call (which may wait for a rate limit).
        let ready = Cond::no(
            conditions::READY,
            "WaitingForBackend",
            format!(
                "class {} ({}): asking the backend for {}",
                class.name_any(),
                class.spec.provider,
                backend.describe(&id)
            ),
        );
        let now = Time(jiff::Timestamp::now());
        status_patch["phase"] = json!(Phase::Pending);
        status_patch["conditions"] = json!(conditions::merge(
            &[],
            &[ready],
            cache.metadata.generation,
            now
        ));
    }
    let patch = json!({
        "apiVersion": RedisCache::api_version(&()),
        "kind": RedisCache::kind(&()),
        "status": status_patch,
    });
    // A separate field manager: the main status apply must not drop these.
    api.patch_status(
        &cache.name_any(),
        &PatchParams::apply(&format!("{FIELD_MANAGER}-identity")).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(id)
}
