//! Cleanup: tear down by deletion policy. Returns `Ok` (which releases the
//! finalizer) only once the backend confirms everything is gone; until then
//! it returns [`Error::DeletionInProgress`] and is called again.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::apply::ownership;
use super::credential::apply_secret;
use super::status::{publish_event, Report};
use super::{class, secret, Context, Error};
use crate::api::validation::ValidationErrors;
use crate::api::{DeletionPolicy, RedisCache};
use crate::backends::{turns, Deleted};

/// Tears down the cache's backend resources as its deletion policy says.
pub async fn cleanup(cache: Arc<RedisCache>, ctx: Arc<Context>) -> Result<Action, Error> {
    if let Some(uid) = cache.uid() {
        ctx.forget_introduced(&uid);
    }
    let mut report = Report::new(&cache);
    let Some(backend_id) = cache
        .status
        .as_ref()
        .and_then(|s| s.backend_id())
        .map(str::to_string)
    else {
        // The identity is fixed before any backend call: nothing was created.
        publish_event(
            &ctx,
            &cache,
            false,
            "Deleted",
            "nothing was created for this cache",
        )
        .await;
        return Ok(Action::await_change());
    };
    let class = match class::for_cache(&cache, &ctx).await {
        Ok(c) => c,
        // Without its class the backend cannot be reached: keep the
        // finalizer and say why, rather than forget what exists.
        Err(Error::InvalidSpec(v)) => {
            let e = Error::InvalidSpec(ValidationErrors::one(
                "spec.className",
                format!("cannot delete the cache's backend resources: {v}; restore the class, or remove the finalizer rediscache.dev/cleanup by hand once they are gone"),
            ));
            report.deleting(e.to_string());
            report.publish(&cache, &ctx).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let backend = ctx
        .backends
        .for_class(&class)
        .await
        .map_err(|source| Error::Backend {
            step: "class",
            source,
        })?;
    let policy = cache
        .spec
        .deletion_policy
        .or(class.spec.defaults.as_ref().and_then(|d| d.deletion_policy))
        .unwrap_or(DeletionPolicy::Delete);
    let what = backend.describe(&backend_id);
    report.deleting(match policy {
        DeletionPolicy::Retain => format!("keeping {what} and the Secret (deletionPolicy: Retain)"),
        _ => format!("deleting {what} and everything created for it"),
    });
    report.publish(&cache, &ctx).await?;

    if policy == DeletionPolicy::Retain {
        release_secret(&cache, &ctx).await?;
        publish_event(
            &ctx,
            &cache,
            false,
            "Retained",
            &format!("left {what} in place and kept its Secret"),
        )
        .await;
    } else {
        let owner = ownership(&cache, &ctx)?;
        let step = turns::pass(
            &backend_id,
            backend.delete(&cache, &backend_id, &owner, policy),
        )
        .await
        .map_err(|source| Error::Backend {
            step: "delete",
            source,
        })?;
        let (notes, done) = match step {
            Deleted::Done { summary, notes } => (notes, Ok(summary)),
            Deleted::InProgress { what, notes } => (notes, Err(what)),
        };
        for n in &notes {
            publish_event(&ctx, &cache, n.warning, n.reason, &n.message).await;
        }
        let summary = done.map_err(Error::DeletionInProgress)?;
        publish_event(&ctx, &cache, false, "Deleted", &summary).await;
    }
    ctx.metrics
        .set_phase(&super::status::cache_key(&cache), None);
    Ok(Action::await_change())
}

/// Drops the Secret's owner reference so it outlives the RedisCache.
async fn release_secret(cache: &RedisCache, ctx: &Context) -> Result<(), Error> {
    let Some(name) = cache
        .status
        .as_ref()
        .and_then(|s| s.connection_secret.clone())
    else {
        return Ok(());
    };
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &cache.namespace().unwrap_or_default());
    let uid = cache.uid().unwrap_or_default();
    let Some(current) = api.get_opt(&name).await? else {
        return Ok(());
    };
    if !secret::belongs_to(&current, &uid) {
        return Ok(());
    }
    // Re-apply every key we wrote, without the owner reference: server-side
    // apply removes only what our field manager stops applying.
    let data = current
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    apply_secret(cache, ctx, &name, data, false).await
}
