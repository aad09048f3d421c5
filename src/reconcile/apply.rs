//! Apply: validate → derive → persist identity and token → companions →
//! replication group → Secret → status.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::day2;
use super::status::{publish_event, Report};
use super::{Context, Error};
use crate::conditions::{self, Cond};
use crate::crd::{RedisCache, FIELD_MANAGER};
use crate::desired::{DesiredCache, Ownership};
use crate::naming::{self, ResourceNames};
use crate::provider::{AuthToken, Companions, GroupStatus, Provider, ReplicationGroupState};
use crate::secret::{self, Connection};
use crate::validation::{self, ResolvedSpec};

/// Brings AWS and the Secret to the spec, then reports status.
pub async fn apply(cache: Arc<RedisCache>, ctx: Arc<Context>) -> Result<Action, Error> {
    let mut report = Report::new(&cache);
    let result = provision(&cache, &ctx, &mut report).await;
    report.conclude(result.as_ref().map(|_| ()), cache.metadata.generation);
    report.publish(&cache, &ctx).await?;
    match result {
        Ok(Progress::InTransition) => Ok(Action::requeue(ctx.polling.in_transition)),
        Ok(Progress::Settled) => Ok(Action::requeue(ctx.polling.settled)),
        Ok(Progress::After(wake)) => Ok(Action::requeue(wake.min(ctx.polling.settled))),
        // Nothing changes until the spec does (a new generation wakes us).
        Err(Error::InvalidSpec(_) | Error::ImmutableField(_)) => Ok(Action::await_change()),
        Err(Error::Provider { source, .. })
            if source.class == crate::provider::ErrorClass::Rejected =>
        {
            Ok(Action::await_change())
        }
        // Someone else's resource may go away; look again now and then.
        Err(e @ (Error::SecretConflict(_) | Error::Provider { .. }))
            if e.reason() == "Conflict" =>
        {
            Ok(Action::requeue(ctx.polling.settled))
        }
        Err(e) => Err(e),
    }
}

/// Whether AWS is still working.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    InTransition,
    Settled,
    /// Settled, but something is due (e.g. the end of a grace period).
    After(std::time::Duration),
}

async fn provision(
    cache: &RedisCache,
    ctx: &Context,
    report: &mut Report,
) -> Result<Progress, Error> {
    let spec = validate(cache, ctx)?;
    let desired = derive(cache, ctx, &spec)?;
    persist_identity(cache, ctx, &desired, &spec, report).await?;
    let (token, stored_secret) = ensure_token(cache, ctx, &desired, &spec).await?;
    let provider = ctx.provider.as_ref();

    report.step(conditions::PARAMETER_GROUP_READY);
    let pg = provider
        .ensure_parameter_group(&desired.owner, &desired.parameter_group, &desired.tags)
        .await
        .map_err(|source| Error::Provider {
            step: "parameter group",
            source,
        })?;
    // Kept until a previous family's group is retired (see day2).
    if report.status.parameter_group_name.is_none() {
        report.status.parameter_group_name = Some(pg.name.clone());
    }
    report.set(Cond::yes(
        conditions::PARAMETER_GROUP_READY,
        "Ready",
        format!(
            "parameter group {} ({}) matches the spec",
            pg.name, pg.family
        ),
    ));

    report.step(conditions::NETWORK_READY);
    let net = provider
        .ensure_network(&desired.owner, &desired.network, &desired.tags)
        .await
        .map_err(|source| Error::Provider {
            step: "network",
            source,
        })?;
    report.status.subnet_group_name = Some(net.subnet_group_name.clone());
    report.status.security_group_id = Some(net.security_group_id.clone());
    report.set(Cond::yes(
        conditions::NETWORK_READY,
        "Ready",
        format!(
            "subnet group {} and security group {} match the spec",
            net.subnet_group_name, net.security_group_id
        ),
    ));

    report.step(conditions::REPLICATION_GROUP_READY);
    let mut security_group_ids = vec![net.security_group_id];
    security_group_ids.extend(desired.network.extra_security_group_ids.iter().cloned());
    let companions = Companions {
        parameter_group: pg.name,
        subnet_group: net.subnet_group_name,
        security_group_ids,
    };
    let mut token = token;
    let (group, existed) =
        ensure_replication_group(cache, ctx, provider, &desired, &companions, &token).await?;
    report.group(&group);
    let connection = connection_of(&group, &desired);

    // Day 2 runs before the Secret is written (a rotation may hand it a new
    // token), but its failure must not keep the Secret from being complete.
    let day2 = if existed {
        report.step(conditions::SYNCED);
        day2::converge(
            cache,
            ctx,
            &spec,
            &desired,
            &companions,
            &group,
            &mut token,
            connection.as_ref(),
            report,
        )
        .await
    } else {
        Ok(day2::Next::Soon)
    };

    report.step(conditions::SECRET_READY);
    write_secret(
        cache,
        ctx,
        &spec,
        &token,
        connection.as_ref(),
        stored_secret.as_ref(),
    )
    .await?;
    if connection.is_some() {
        report.secret_complete(&spec.secret_name);
    } else {
        report.set(Cond::no(
            conditions::SECRET_READY,
            "WaitingForEndpoint",
            format!(
                "Secret {} holds the AUTH token; host and URI follow once the cache is available",
                spec.secret_name
            ),
        ));
    }
    report.step(conditions::SYNCED);
    Ok(match day2? {
        day2::Next::Soon => Progress::InTransition,
        _ if group.status.in_transition() => Progress::InTransition,
        day2::Next::Within(Some(wake)) => Progress::After(wake),
        day2::Next::Within(None) => Progress::Settled,
    })
}

/// How clients reach the group, once it has an endpoint to give them.
fn connection_of(group: &ReplicationGroupState, desired: &DesiredCache) -> Option<Connection> {
    let serving = matches!(
        group.status,
        GroupStatus::Available | GroupStatus::Modifying | GroupStatus::Snapshotting
    );
    match (&group.endpoint, serving) {
        (Some(endpoint), true) => Some(Connection {
            endpoint: endpoint.clone(),
            reader: group.reader_endpoint.clone(),
            cluster_mode: desired.replication_group.cluster_mode,
        }),
        _ => None,
    }
}

/// Checks the spec with the operator defaults; no AWS call on failure.
fn validate(cache: &RedisCache, ctx: &Context) -> Result<ResolvedSpec, Error> {
    validation::resolve(&cache.name_any(), &cache.spec, &ctx.defaults).map_err(Error::InvalidSpec)
}

/// The desired AWS state; the id comes from status once it is fixed there.
fn derive(cache: &RedisCache, ctx: &Context, spec: &ResolvedSpec) -> Result<DesiredCache, Error> {
    let names = ResourceNames::for_id(&replication_group_id(cache, ctx));
    Ok(DesiredCache::build(spec, names, ownership(cache, ctx)?))
}

/// The replication group id: from status, or derived for the first create.
pub(super) fn replication_group_id(cache: &RedisCache, ctx: &Context) -> String {
    cache
        .status
        .as_ref()
        .and_then(|s| s.replication_group_id.clone())
        .unwrap_or_else(|| {
            naming::replication_group_id(
                &ctx.defaults.cluster_name,
                &cache.namespace().unwrap_or_default(),
                &cache.name_any(),
            )
        })
}

/// The owner tags for this cache.
pub(super) fn ownership(cache: &RedisCache, ctx: &Context) -> Result<Ownership, Error> {
    Ok(Ownership {
        owner_uid: cache.uid().ok_or(Error::MissingField("metadata.uid"))?,
        resource: format!(
            "{}/{}",
            cache.namespace().unwrap_or_default(),
            cache.name_any()
        ),
        cluster: ctx.defaults.cluster_name.clone(),
    })
}

/// Fixes the AWS identity in status before anything exists on AWS, so a
/// crash after a create still leaves cleanup knowing what to delete.
async fn persist_identity(
    cache: &RedisCache,
    ctx: &Context,
    desired: &DesiredCache,
    spec: &ResolvedSpec,
    report: &mut Report,
) -> Result<(), Error> {
    report.status.replication_group_id = Some(desired.names.replication_group_id.clone());
    report.status.connection_secret = Some(spec.secret_name.clone());
    let fixed = cache
        .status
        .as_ref()
        .and_then(|s| s.replication_group_id.as_ref())
        .is_some();
    if fixed {
        return Ok(());
    }
    let api: Api<RedisCache> =
        Api::namespaced(ctx.client.clone(), &cache.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": RedisCache::api_version(&()),
        "kind": RedisCache::kind(&()),
        "status": { "replicationGroupId": desired.names.replication_group_id },
    });
    // A separate field manager: the main status apply must not drop this field.
    api.patch_status(
        &cache.name_any(),
        &PatchParams::apply(&format!("{FIELD_MANAGER}-identity")).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// The AUTH token from the Secret (with the Secret as read), or a new one
/// written to the Secret first.
async fn ensure_token(
    cache: &RedisCache,
    ctx: &Context,
    desired: &DesiredCache,
    spec: &ResolvedSpec,
) -> Result<(AuthToken, Option<Secret>), Error> {
    let existing = own_secret(cache, ctx, &spec.secret_name, &desired.owner.owner_uid).await?;
    if let Some(token) = existing.as_ref().and_then(secret::token_of) {
        return Ok((token, existing));
    }
    let token = secret::generate_token();
    let data = secret::render_data(&token, None, &spec.extra_keys);
    apply_secret(cache, ctx, &spec.secret_name, data, true).await?;
    publish_event(
        ctx,
        cache,
        false,
        "TokenGenerated",
        &format!("stored a new AUTH token in Secret {}", spec.secret_name),
    )
    .await;
    Ok((token, None))
}

/// The connection Secret, if it exists; `SecretConflict` if it is not ours.
async fn own_secret(
    cache: &RedisCache,
    ctx: &Context,
    name: &str,
    owner_uid: &str,
) -> Result<Option<Secret>, Error> {
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &cache.namespace().unwrap_or_default());
    match api.get_opt(name).await? {
        Some(s) if !secret::belongs_to(&s, owner_uid) => {
            Err(Error::SecretConflict(name.to_string()))
        }
        other => Ok(other),
    }
}

/// Observes the replication group and creates it when it does not exist.
async fn ensure_replication_group(
    cache: &RedisCache,
    ctx: &Context,
    provider: &dyn Provider,
    desired: &DesiredCache,
    companions: &Companions,
    token: &AuthToken,
) -> Result<(ReplicationGroupState, bool), Error> {
    let id = &desired.names.replication_group_id;
    let err = |source| Error::Provider {
        step: "replication group",
        source,
    };
    if let Some(group) = provider
        .observe_replication_group(&desired.owner, id)
        .await
        .map_err(err)?
    {
        return Ok((group, true));
    }
    let group = provider
        .create_replication_group(
            &desired.owner,
            &desired.replication_group,
            companions,
            token,
            &desired.tags,
        )
        .await
        .map_err(err)?;
    publish_event(
        ctx,
        cache,
        false,
        "CreatingReplicationGroup",
        &format!("asked AWS to create replication group {id}"),
    )
    .await;
    Ok((group, false))
}

/// Writes the Secret's keys when they differ from `current` (the Secret as
/// read at the start of this reconcile; `None` forces the write).
async fn write_secret(
    cache: &RedisCache,
    ctx: &Context,
    spec: &ResolvedSpec,
    token: &AuthToken,
    connection: Option<&Connection>,
    current: Option<&Secret>,
) -> Result<(), Error> {
    let data = secret::render_data(token, connection, &spec.extra_keys);
    let uid = cache.uid().unwrap_or_default();
    let stored = current
        .as_ref()
        .and_then(|s| s.data.clone())
        .unwrap_or_default();
    let same_data = stored.len() == data.len()
        && data
            .iter()
            .all(|(k, v)| stored.get(k).is_some_and(|b| b.0 == v.as_bytes()));
    let owned = current
        .and_then(|s| s.metadata.owner_references.as_ref())
        .is_some_and(|refs| refs.iter().any(|r| r.uid == uid));
    if same_data && owned {
        return Ok(());
    }
    apply_secret(cache, ctx, &spec.secret_name, data, true).await
}

/// Server-side applies the Secret with `data` (every key we own).
pub(super) async fn apply_secret(
    cache: &RedisCache,
    ctx: &Context,
    name: &str,
    data: std::collections::BTreeMap<String, String>,
    owned: bool,
) -> Result<(), Error> {
    apply_secret_annotated(cache, ctx, name, data, owned, Default::default()).await
}

/// [`apply_secret`] with annotations (e.g. the rotation record's state).
pub(super) async fn apply_secret_annotated(
    cache: &RedisCache,
    ctx: &Context,
    name: &str,
    data: std::collections::BTreeMap<String, String>,
    owned: bool,
    annotations: std::collections::BTreeMap<String, String>,
) -> Result<(), Error> {
    let namespace = cache
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = cache.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let owner = if owned {
        cache.controller_owner_ref(&())
    } else {
        None
    };
    let mut secret = secret::build(name, &namespace, owner, &uid, data);
    if !annotations.is_empty() {
        secret.metadata.annotations = Some(annotations);
    }
    let mut value = serde_json::to_value(&secret)?;
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Secret");
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&value),
    )
    .await?;
    Ok(())
}
