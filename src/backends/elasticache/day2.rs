//! Day 2 on an existing replication group: refuse immutable changes, send the
//! next planned step (one mutating call per reconcile, only while the group
//! is `available`), report drift, and retire the parameter group of a
//! previous engine family. Token rotation is the core's protocol, driven
//! through [`crate::backends::Backend::rotate_credentials`].

use super::api::{Companions, ElastiCacheApi, GroupStatus, ReplicationGroupState};
use super::desired::DesiredCache;
use super::diff::{self, Step, Target};
use crate::api::BackendDetails;
use crate::backends::{BackendError, CacheRequest, Deletion, ErrorClass, Next, Note, Ownership};

/// What Day 2 has to tell besides when to look again.
pub struct Out {
    pub notes: Vec<Note>,
    /// A change on its way (Synced=False, reason Updating).
    pub updating: Option<String>,
}

/// Brings an existing group to the spec, one step at a time; `group` is
/// replaced by what AWS returns after a step.
pub async fn converge(
    api: &dyn ElastiCacheApi,
    req: &CacheRequest<'_>,
    desired: &DesiredCache,
    companions: &Companions,
    group: &mut ReplicationGroupState,
    details: &mut BackendDetails,
    out: &mut Out,
) -> Result<Next, BackendError> {
    let target = Target {
        group: &desired.replication_group,
        parameter_group: &companions.parameter_group,
        security_group_ids: &companions.security_group_ids,
        subnet_group: desired.network.subnet_group.name(),
        tags: &desired.tags,
    };
    diff::check_immutable(&target, group)
        .map_err(|e| BackendError::new(ErrorClass::Immutable, None, e.to_string()))?;
    let plan = diff::plan(&target, group);
    let owner = &desired.owner;
    let id = group.id.clone();

    if let Some(step) = plan.next() {
        let fields = plan.differences.join(", ");
        if req.synced_before {
            out.notes.push(Note::warning(
                "DriftDetected",
                format!(
                    "replication group {id} differs from the spec in: {fields} (changed outside the operator); correcting it"
                ),
            ));
        }
        if group.status != GroupStatus::Available {
            out.updating = Some(format!(
                "waiting for replication group {id} to be available before changing: {fields}"
            ));
            return Ok(not_available(group));
        }
        let state = send(api, owner, &id, step, group).await?;
        out.notes.push(Note::normal(
            "ChangeSent",
            format!(
                "asked AWS to change replication group {id}: {}",
                step.describe()
            ),
        ));
        *group = state;
        out.updating = Some(format!("applying to replication group {id}: {fields}"));
        return Ok(Next::Soon);
    }

    if group.status != GroupStatus::Available {
        return Ok(not_available(group));
    }
    if retire_old_parameter_group(api, desired, companions, group, details, out).await? {
        return Ok(Next::Soon);
    }
    Ok(Next::Within(None))
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
    api: &dyn ElastiCacheApi,
    owner: &Ownership,
    id: &str,
    step: &Step,
    group: &ReplicationGroupState,
) -> Result<ReplicationGroupState, BackendError> {
    match step {
        Step::ReplicaCount { to, .. } => api.modify_replica_count(owner, id, *to).await,
        Step::ShardCount { to, remove, .. } => api.modify_shard_count(owner, id, *to, remove).await,
        Step::Modify(change) => {
            if let Some(node_type) = &change.node_type {
                let allowed = api.allowed_node_types(owner, id).await?;
                if !allowed.iter().any(|t| t.eq_ignore_ascii_case(node_type)) {
                    return Err(BackendError::new(
                        ErrorClass::Rejected,
                        Some("NodeTypeNotAllowed"),
                        format!(
                            "spec.nodeType: AWS does not allow replication group {id} to change from {} to {node_type}; allowed: {}",
                            group.node_type.as_deref().unwrap_or("?"),
                            allowed.join(", ")
                        ),
                    ));
                }
            }
            api.modify_replication_group(owner, id, change).await
        }
        Step::Tags(change) => {
            api.update_tags(owner, id, change).await?;
            let mut state = group.clone();
            state.tags.extend(change.add.clone());
            for k in &change.remove {
                state.tags.remove(k);
            }
            Ok(state)
        }
    }
}

/// After an engine-family upgrade switched the group to the new parameter
/// group, deletes the previous one (ours only; the API checks). True when a
/// delete was sent.
async fn retire_old_parameter_group(
    api: &dyn ElastiCacheApi,
    desired: &DesiredCache,
    companions: &Companions,
    group: &ReplicationGroupState,
    details: &mut BackendDetails,
    out: &mut Out,
) -> Result<bool, BackendError> {
    let current = &companions.parameter_group;
    let Some(previous) = details
        .parameter_group_name
        .clone()
        .filter(|p| p != current)
    else {
        return Ok(false);
    };
    if group.parameter_group.as_deref() != Some(current.as_str())
        || !desired.names.all_parameter_groups().contains(&previous)
    {
        return Ok(false);
    }
    let d = api
        .delete_parameter_group(&desired.owner, &previous)
        .await?;
    if d != Deletion::InProgress {
        details.parameter_group_name = Some(current.clone());
        out.notes.push(Note::normal(
            "ParameterGroupRetired",
            format!(
                "deleted parameter group {previous} of the previous engine version of {}",
                desired.owner.resource
            ),
        ));
    }
    Ok(true)
}
