//! Day 2 on an existing replication group: refuse immutable changes, send the
//! next planned step (one mutating call per reconcile, only while the group
//! is `available`), report drift, rotate the AUTH token, and retire the
//! parameter group of a previous engine family.

use std::time::Duration;

use kube::ResourceExt;

use super::rotation;
use super::status::{publish_event, Report};
use super::{Context, Error};
use crate::conditions;
use crate::crd::RedisCache;
use crate::desired::DesiredCache;
use crate::diff::{self, Step, Target};
use crate::provider::{
    AuthToken, Companions, Deletion, ErrorClass, GroupStatus, ProviderError, ReplicationGroupState,
};
use crate::secret::Connection;
use crate::validation::ResolvedSpec;

/// What converging left to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// AWS is working (or a step was just sent): look again soon.
    Soon,
    /// Nothing in flight; look again after this long at the latest.
    Within(Option<Duration>),
}

/// Brings an existing group to the spec, one step at a time.
#[allow(clippy::too_many_arguments)]
pub async fn converge(
    cache: &RedisCache,
    ctx: &Context,
    spec: &ResolvedSpec,
    desired: &DesiredCache,
    companions: &Companions,
    group: &ReplicationGroupState,
    token: &mut AuthToken,
    connection: Option<&Connection>,
    report: &mut Report,
) -> Result<Next, Error> {
    let target = Target {
        group: &desired.replication_group,
        parameter_group: &companions.parameter_group,
        security_group_ids: &companions.security_group_ids,
        subnet_group: desired.network.subnet_group.name(),
        tags: &desired.tags,
    };
    diff::check_immutable(&target, group).map_err(Error::ImmutableField)?;
    let plan = diff::plan(&target, group);
    let owner = &desired.owner;
    let id = &group.id;

    if let Some(step) = plan.next() {
        let fields = plan.differences.join(", ");
        if spec_unchanged_since_synced(cache) {
            publish_event(
                ctx,
                cache,
                true,
                "DriftDetected",
                &format!(
                    "replication group {id} differs from the spec in: {fields} (changed outside the operator); correcting it"
                ),
            )
            .await;
        }
        if group.status != GroupStatus::Available {
            report.updating(format!(
                "waiting for replication group {id} to be available before changing: {fields}"
            ));
            return Ok(not_available(group));
        }
        let state = send(ctx, owner, id, step, group).await?;
        publish_event(
            ctx,
            cache,
            false,
            "ChangeSent",
            &format!(
                "asked AWS to change replication group {id}: {}",
                step.describe()
            ),
        )
        .await;
        report.group(&state);
        report.updating(format!("applying to replication group {id}: {fields}"));
        return Ok(Next::Soon);
    }

    if group.status != GroupStatus::Available {
        return Ok(not_available(group));
    }
    let outcome = rotation::advance(cache, ctx, spec, owner, group, token, connection).await?;
    report.status.auth = Some(outcome.status);
    if outcome.acted {
        return Ok(Next::Soon);
    }
    retire_old_parameter_group(cache, ctx, desired, companions, group, report).await?;
    Ok(Next::Within(outcome.wake_in))
}

/// Poll fast while AWS works on the group; a group that failed to create
/// waits for the user.
fn not_available(group: &ReplicationGroupState) -> Next {
    if group.status.in_transition() {
        Next::Soon
    } else {
        Next::Within(None)
    }
}

/// Sends one step.
async fn send(
    ctx: &Context,
    owner: &crate::desired::Ownership,
    id: &str,
    step: &Step,
    group: &ReplicationGroupState,
) -> Result<ReplicationGroupState, Error> {
    let p = ctx.provider.as_ref();
    let err = |source| Error::Provider {
        step: "change",
        source,
    };
    match step {
        Step::ReplicaCount { to, .. } => p.modify_replica_count(owner, id, *to).await.map_err(err),
        Step::ShardCount { to, remove, .. } => p
            .modify_shard_count(owner, id, *to, remove)
            .await
            .map_err(err),
        Step::Modify(change) => {
            if let Some(node_type) = &change.node_type {
                let allowed = p.allowed_node_types(owner, id).await.map_err(err)?;
                if !allowed.iter().any(|t| t.eq_ignore_ascii_case(node_type)) {
                    return Err(err(ProviderError::new(
                        ErrorClass::Rejected,
                        Some("NodeTypeNotAllowed"),
                        format!(
                            "spec.nodeType: AWS does not allow replication group {id} to change from {} to {node_type}; allowed: {}",
                            group.node_type.as_deref().unwrap_or("?"),
                            allowed.join(", ")
                        ),
                    )));
                }
            }
            p.modify_replication_group(owner, id, change)
                .await
                .map_err(err)
        }
        Step::Tags(change) => {
            p.update_tags(owner, id, change).await.map_err(err)?;
            let mut state = group.clone();
            state.tags.extend(change.add.clone());
            for k in &change.remove {
                state.tags.remove(k);
            }
            Ok(state)
        }
    }
}

/// Whether AWS matched this generation of the spec before: a difference
/// found now was made outside the operator.
fn spec_unchanged_since_synced(cache: &RedisCache) -> bool {
    let Some(status) = &cache.status else {
        return false;
    };
    let synced = conditions::find(&status.conditions, conditions::SYNCED)
        .is_some_and(|c| c.status == "True");
    synced
        && status.observed_generation.is_some()
        && status.observed_generation == cache.metadata.generation
}

/// After an engine-family upgrade switched the group to the new parameter
/// group, deletes the previous one (ours only; the provider checks).
async fn retire_old_parameter_group(
    cache: &RedisCache,
    ctx: &Context,
    desired: &DesiredCache,
    companions: &Companions,
    group: &ReplicationGroupState,
    report: &mut Report,
) -> Result<(), Error> {
    let current = &companions.parameter_group;
    let previous = cache
        .status
        .as_ref()
        .and_then(|s| s.parameter_group_name.clone());
    let Some(previous) = previous.filter(|p| p != current) else {
        return Ok(());
    };
    if group.parameter_group.as_deref() != Some(current.as_str())
        || !desired.names.all_parameter_groups().contains(&previous)
    {
        return Ok(());
    }
    let d = ctx
        .provider
        .delete_parameter_group(&desired.owner, &previous)
        .await
        .map_err(|source| Error::Provider {
            step: "parameter group",
            source,
        })?;
    if d != Deletion::InProgress {
        report.status.parameter_group_name = Some(current.clone());
        publish_event(
            ctx,
            cache,
            false,
            "ParameterGroupRetired",
            &format!(
                "deleted parameter group {previous} of the previous engine version of {}",
                cache.name_any()
            ),
        )
        .await;
    }
    Ok(())
}
