//! Cleanup: tear down by deletion policy. Returns `Ok` (which releases the
//! finalizer) only once the provider confirms everything is gone; until then
//! it returns [`Error::DeletionInProgress`] and is called again.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::apply::{apply_secret, ownership, replication_group_id};
use super::status::{publish_event, Report};
use super::{Context, Error};
use crate::crd::{DeletionPolicy, RedisCache};
use crate::desired::Ownership;
use crate::naming::ResourceNames;
use crate::provider::{Deletion, ProviderError};
use crate::secret;

/// Tears down the cache's AWS resources as its deletion policy says.
pub async fn cleanup(cache: Arc<RedisCache>, ctx: Arc<Context>) -> Result<Action, Error> {
    let policy = cache
        .spec
        .deletion_policy
        .unwrap_or(ctx.defaults.default_deletion_policy);
    let names = ResourceNames::for_id(&replication_group_id(&cache, &ctx));
    let mut report = Report::new(&cache);
    report.deleting(match policy {
        DeletionPolicy::Retain => {
            "keeping the AWS resources and the Secret (deletionPolicy: Retain)".to_string()
        }
        _ => format!(
            "deleting replication group {} and its companions",
            names.replication_group_id
        ),
    });
    report.publish(&cache, &ctx).await?;

    match policy {
        DeletionPolicy::Retain => {
            release_secret(&cache, &ctx).await?;
            publish_event(
                &ctx,
                &cache,
                false,
                "Retained",
                &format!(
                    "left replication group {} on AWS and kept its Secret",
                    names.replication_group_id
                ),
            )
            .await;
        }
        DeletionPolicy::Delete | DeletionPolicy::Snapshot => {
            let owner = ownership(&cache, &ctx)?;
            let snapshot = (policy == DeletionPolicy::Snapshot)
                .then(|| names.final_snapshot(jiff::Timestamp::now()));
            delete_aws(&cache, &ctx, &owner, &names, snapshot.as_deref()).await?;
            let what = match &snapshot {
                Some(s) => format!(
                    "deleted replication group {} after final snapshot {s}",
                    names.replication_group_id
                ),
                None => format!(
                    "deleted replication group {} and its companions",
                    names.replication_group_id
                ),
            };
            publish_event(&ctx, &cache, false, "Deleted", &what).await;
        }
    }
    ctx.metrics
        .set_phase(&super::status::cache_key(&cache), None);
    Ok(Action::await_change())
}

/// Deletes the replication group, then its security group, parameter group
/// and subnet group, each only once the one before is gone.
async fn delete_aws(
    cache: &RedisCache,
    ctx: &Context,
    owner: &Ownership,
    names: &ResourceNames,
    snapshot: Option<&str>,
) -> Result<(), Error> {
    let p = ctx.provider.as_ref();
    let err = |what| move |source: ProviderError| Error::Provider { step: what, source };
    let rg = &names.replication_group_id;
    let d = p
        .delete_replication_group(owner, rg, snapshot)
        .await
        .map_err(err("replication group"))?;
    settled(ctx, cache, d, "replication group", rg).await?;
    let sg = &names.security_group;
    let d = p
        .delete_security_group(owner, sg)
        .await
        .map_err(err("security group"))?;
    settled(ctx, cache, d, "security group", sg).await?;
    // One group per engine family; a previous family's may still exist.
    let mut parameter_groups = names.all_parameter_groups();
    if let Some(in_status) = cache
        .status
        .as_ref()
        .and_then(|s| s.parameter_group_name.clone())
    {
        if !parameter_groups.contains(&in_status) {
            parameter_groups.push(in_status);
        }
    }
    for pg in &parameter_groups {
        let d = p
            .delete_parameter_group(owner, pg)
            .await
            .map_err(err("parameter group"))?;
        settled(ctx, cache, d, "parameter group", pg).await?;
    }
    let sn = &names.subnet_group;
    let d = p
        .delete_subnet_group(owner, sn)
        .await
        .map_err(err("subnet group"))?;
    settled(ctx, cache, d, "subnet group", sn).await
}

/// Ok when a resource is gone (or not ours to delete), else keep waiting.
async fn settled(
    ctx: &Context,
    cache: &RedisCache,
    d: Deletion,
    what: &str,
    name: &str,
) -> Result<(), Error> {
    match d {
        Deletion::Gone => Ok(()),
        Deletion::InProgress => Err(Error::DeletionInProgress(format!("{what} {name}"))),
        Deletion::NotOwned => {
            let note = format!("{what} {name} belongs to someone else and was left untouched");
            publish_event(ctx, cache, true, "NotOwned", &note).await;
            Ok(())
        }
    }
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
