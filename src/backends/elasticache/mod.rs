//! The ElastiCache backend (DESIGN §4.1): parameter group `R-params-<family>`,
//! subnet group `R`, security group `R` and replication group `R` with TLS,
//! an AUTH token, Multi-AZ and at-rest encryption; Day 2 as the smallest
//! ordered set of calls, one mutating call per reconcile; token rotation
//! ROTATE → promote → SET; deletion in order.
//!
//! [`ElastiCacheBackend`] implements [`Backend`] on an [`ElastiCacheApi`]:
//! the AWS SDK adapter ([`aws::AwsElastiCache`]) in production, the
//! in-memory fake in tests.

pub mod api;
pub mod aws;
mod day2;
pub mod desired;
pub mod diff;
mod factory;
pub mod naming;
pub mod node_types;
mod plan;
pub mod spec;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use self::api::{Companions, ElastiCacheApi, GroupStatus, ReplicationGroupState};
use self::desired::DesiredCache;
use self::naming::ResourceNames;
use self::spec::ResolvedSpec;
use super::{
    Backend, BackendError, CacheRequest, Connection, Converged, Credential, Deleted, Deletion,
    ErrorClass, Lifecycle, Next, Note, Observed, Ownership, Planned, RotationStep, StepFailure,
};
use crate::api::conditions::{self, Cond};
use crate::api::validation::{PortableSpec, ValidationErrors};
use crate::api::{BackendDetails, DeletionPolicy, ElastiCacheClass, ProviderKind, RedisCache};

pub use factory::AwsFactory;

const GROUP: &str = "replication group";

/// Caches of one ElastiCache class.
pub struct ElastiCacheBackend {
    /// `None` for `plan`, which validates and plans only.
    api: Option<Arc<dyn ElastiCacheApi>>,
    class: ElastiCacheClass,
    /// Companions (parameter group, subnet group, security group) checked
    /// against AWS, per replication group: a settled reconcile checks none
    /// of them again until the desired state changes, the provider read its
    /// companion listings again ([`ElastiCacheApi::companions_epoch`]), or
    /// [`COMPANION_RECHECK`] has passed, so drift is seen within one listing
    /// refresh.
    verified: Mutex<HashMap<String, VerifiedCompanions>>,
}

/// How long a companion check is trusted: drift of a parameter group,
/// subnet group or security group is corrected within this long.
pub const COMPANION_RECHECK: Duration = Duration::from_secs(30 * 60);

#[derive(Clone)]
struct VerifiedCompanions {
    /// The desired companions they were checked against, as JSON.
    desired: String,
    at: Instant,
    /// The provider's companion epoch at the check.
    epoch: u64,
    companions: Companions,
    conditions: Vec<Cond>,
    details: BackendDetails,
}

impl ElastiCacheBackend {
    /// The backend of a class whose block is `class`, calling AWS through `api`.
    pub fn new(api: Arc<dyn ElastiCacheApi>, class: ElastiCacheClass) -> Self {
        Self {
            api: Some(api),
            class,
            verified: Mutex::default(),
        }
    }

    /// A backend that validates and plans but makes no call.
    pub fn offline(class: ElastiCacheClass) -> Self {
        Self {
            api: None,
            class,
            verified: Mutex::default(),
        }
    }

    /// The companions, from the last check when it still holds, else
    /// checked (and created or corrected) now.
    async fn companions(
        &self,
        api: &dyn ElastiCacheApi,
        desired: &DesiredCache,
        steps: &mut Steps,
    ) -> Result<Companions, StepFailure> {
        let id = desired.names.replication_group_id.clone();
        let key =
            serde_json::to_string(&(&desired.parameter_group, &desired.network, &desired.tags))
                .unwrap_or_default();
        let epoch = api.companions_epoch();
        let fresh = self
            .verified
            .lock()
            .ok()
            .and_then(|v| v.get(&id).cloned())
            .filter(|v| v.desired == key && v.epoch == epoch && v.at.elapsed() < COMPANION_RECHECK);
        if let Some(v) = fresh {
            steps.conditions.extend(v.conditions);
            if steps.details.parameter_group_name.is_none() {
                steps.details.parameter_group_name = v.details.parameter_group_name;
            }
            steps.details.subnet_group_name = v.details.subnet_group_name;
            steps.details.security_group_id = v.details.security_group_id;
            return Ok(v.companions);
        }
        let before = steps.conditions.len();
        let companions = ensure_companions(api, desired, steps).await?;
        if let Ok(mut v) = self.verified.lock() {
            v.insert(
                id,
                VerifiedCompanions {
                    desired: key,
                    at: Instant::now(),
                    // After the check, which read any stale listing first.
                    epoch: api.companions_epoch(),
                    companions: companions.clone(),
                    conditions: steps.conditions[before..].to_vec(),
                    details: steps.details.clone(),
                },
            );
        }
        Ok(companions)
    }

    fn forget(&self, id: &str) {
        if let Ok(mut v) = self.verified.lock() {
            v.remove(id);
        }
    }

    fn api(&self) -> Result<&dyn ElastiCacheApi, BackendError> {
        self.api.as_deref().ok_or_else(|| {
            BackendError::new(
                ErrorClass::Rejected,
                None,
                "this ElastiCache backend is offline (plan only)",
            )
        })
    }

    fn resolve(
        &self,
        cache: &RedisCache,
        p: &PortableSpec,
    ) -> Result<ResolvedSpec, ValidationErrors> {
        spec::resolve(cache, p, &self.class)
    }
}

/// The condition reasons ElastiCache errors have always had.
fn aws_reason(mut e: BackendError) -> BackendError {
    e.reason = match e.class {
        ErrorClass::Rejected => Some("AwsRejected"),
        ErrorClass::Transient | ErrorClass::NotFound => Some("AwsUnavailable"),
        _ => e.reason,
    };
    e
}

/// A failed step of the create path.
struct Steps {
    conditions: Vec<Cond>,
    details: BackendDetails,
}

impl Steps {
    fn fail(&self, condition: &'static str, step: &'static str, e: BackendError) -> StepFailure {
        StepFailure {
            condition,
            step,
            error: aws_reason(e),
            conditions: self.conditions.clone(),
            details: Some(self.details.clone()),
        }
    }
}

#[async_trait]
impl Backend for ElastiCacheBackend {
    fn provider(&self) -> ProviderKind {
        ProviderKind::ElastiCache
    }

    fn identity(&self, cluster: &str, namespace: &str, name: &str) -> String {
        naming::replication_group_id(cluster, namespace, name)
    }

    fn describe(&self, backend_id: &str) -> String {
        format!("{GROUP} {backend_id}")
    }

    fn validate(&self, cache: &RedisCache, spec: &PortableSpec) -> Result<(), ValidationErrors> {
        self.resolve(cache, spec).map(|_| ())
    }

    fn plan(
        &self,
        cache: &RedisCache,
        spec: &PortableSpec,
        backend_id: &str,
        owner: &Ownership,
    ) -> Result<Planned, ValidationErrors> {
        let resolved = self.resolve(cache, spec)?;
        let desired =
            DesiredCache::build(&resolved, ResourceNames::for_id(backend_id), owner.clone());
        Ok(plan::render(&desired))
    }

    async fn converge(&self, req: &CacheRequest<'_>) -> Result<Converged, StepFailure> {
        let previous = req.cache.status.clone().unwrap_or_default().details();
        let mut steps = Steps {
            conditions: Vec::new(),
            details: previous.clone(),
        };
        let spec = self.resolve(req.cache, req.spec).map_err(|e| {
            steps.fail(
                conditions::SYNCED,
                "validation",
                BackendError::new(ErrorClass::Rejected, Some("InvalidSpec"), e.to_string()),
            )
        })?;
        let desired = DesiredCache::build(
            &spec,
            ResourceNames::for_id(req.backend_id),
            req.owner.clone(),
        );
        let api = self
            .api()
            .map_err(|e| steps.fail(conditions::SYNCED, "AWS", e))?;
        steps.details.replication_group_id = Some(req.backend_id.to_string());
        let companions = self.companions(api, &desired, &mut steps).await?;
        let mut notes = Vec::new();
        let (mut group, existed) =
            match ensure_group(api, req, &desired, &companions, &steps, &mut notes).await {
                Ok(g) => g,
                Err(f) => {
                    // The companions may be why: check them again next time.
                    self.forget(req.backend_id);
                    return Err(f);
                }
            };
        steps.details.arn = group.arn.clone().or(steps.details.arn.take());

        let mut out = day2::Out {
            notes,
            updating: None,
        };
        let (next, failure) = if existed {
            match day2::converge(
                api,
                req,
                &desired,
                &companions,
                &mut group,
                &mut steps.details,
                &mut out,
            )
            .await
            {
                Ok(next) => (next, None),
                Err(e) => {
                    self.forget(req.backend_id);
                    (
                        Next::Soon,
                        Some(steps.fail(conditions::SYNCED, "change", e)),
                    )
                }
            }
        } else {
            (Next::Soon, None)
        };
        let next = match next {
            _ if group.status.in_transition() => Next::Soon,
            n => n,
        };
        steps.conditions.extend(group_conditions(&group));
        Ok(Converged {
            observed: observed_of(&group),
            connection: connection_of(&group, &desired),
            conditions: steps.conditions,
            details: steps.details,
            notes: out.notes,
            updating: out.updating,
            next,
            failure,
            credential: None,
            backend_id: None,
        })
    }

    async fn rotate_credentials(
        &self,
        req: &CacheRequest<'_>,
        step: RotationStep<'_>,
    ) -> Result<Option<Credential>, BackendError> {
        let (token, strategy) = match step {
            RotationStep::Add { new } => (new, api::AuthTokenStrategy::Rotate),
            RotationStep::Retire { keep } => (keep, api::AuthTokenStrategy::Set),
            RotationStep::Reset => {
                return Err(BackendError::new(
                    ErrorClass::Rejected,
                    None,
                    "ElastiCache rotates with overlapping tokens, not by reset",
                ))
            }
        };
        self.api()?
            .update_auth_token(req.owner, req.backend_id, token, strategy)
            .await
            .map(|_| None)
            .map_err(aws_reason)
    }

    async fn delete(
        &self,
        cache: &RedisCache,
        backend_id: &str,
        owner: &Ownership,
        policy: DeletionPolicy,
    ) -> Result<Deleted, BackendError> {
        let names = ResourceNames::for_id(backend_id);
        let snapshot = (policy == DeletionPolicy::Snapshot)
            .then(|| names.final_snapshot(jiff::Timestamp::now()));
        let previous = cache
            .status
            .as_ref()
            .and_then(|s| s.parameter_group_name.clone());
        let mut notes = Vec::new();
        let p = self.api()?;
        let rg = &names.replication_group_id;
        self.forget(rg);
        let mut steps: Vec<(&'static str, String)> = vec![
            (GROUP, rg.clone()),
            ("security group", names.security_group.clone()),
        ];
        // One group per engine family; a previous family's may still exist.
        let mut parameter_groups = names.all_parameter_groups();
        if let Some(in_status) = previous {
            if !parameter_groups.contains(&in_status) {
                parameter_groups.push(in_status);
            }
        }
        steps.extend(
            parameter_groups
                .into_iter()
                .map(|pg| ("parameter group", pg)),
        );
        steps.push(("subnet group", names.subnet_group.clone()));
        for (what, name) in steps {
            let d = match what {
                GROUP => {
                    p.delete_replication_group(owner, &name, snapshot.as_deref())
                        .await
                }
                "security group" => p.delete_security_group(owner, &name).await,
                "parameter group" => p.delete_parameter_group(owner, &name).await,
                _ => p.delete_subnet_group(owner, &name).await,
            }
            .map_err(aws_reason)?;
            match d {
                Deletion::Gone => {}
                Deletion::InProgress => {
                    return Ok(Deleted::InProgress {
                        what: format!("{what} {name}"),
                        notes,
                    })
                }
                Deletion::NotOwned => notes.push(Note::warning(
                    "NotOwned",
                    format!("{what} {name} belongs to someone else and was left untouched"),
                )),
            }
        }
        let summary = match &snapshot {
            Some(s) => format!("deleted replication group {rg} after final snapshot {s}"),
            None => format!("deleted replication group {rg} and its companions"),
        };
        Ok(Deleted::Done { summary, notes })
    }

    async fn check(&self) -> Result<String, BackendError> {
        self.api()?.check_access().await.map_err(aws_reason)?;
        Ok(format!(
            "the operator's AWS credentials can read ElastiCache in {}",
            self.class.region
        ))
    }
}

/// The parameter group, then the subnet and security groups.
async fn ensure_companions(
    api: &dyn ElastiCacheApi,
    desired: &DesiredCache,
    steps: &mut Steps,
) -> Result<Companions, StepFailure> {
    let pg = api
        .ensure_parameter_group(&desired.owner, &desired.parameter_group, &desired.tags)
        .await
        .map_err(|e| steps.fail(conditions::PARAMETER_GROUP_READY, "parameter group", e))?;
    // Kept until a previous family's group is retired (see day2).
    if steps.details.parameter_group_name.is_none() {
        steps.details.parameter_group_name = Some(pg.name.clone());
    }
    steps.conditions.push(Cond::yes(
        conditions::PARAMETER_GROUP_READY,
        "Ready",
        format!(
            "parameter group {} ({}) matches the spec",
            pg.name, pg.family
        ),
    ));
    let net = api
        .ensure_network(&desired.owner, &desired.network, &desired.tags)
        .await
        .map_err(|e| steps.fail(conditions::NETWORK_READY, "network", e))?;
    steps.details.subnet_group_name = Some(net.subnet_group_name.clone());
    steps.details.security_group_id = Some(net.security_group_id.clone());
    steps.conditions.push(Cond::yes(
        conditions::NETWORK_READY,
        "Ready",
        format!(
            "subnet group {} and security group {} match the spec",
            net.subnet_group_name, net.security_group_id
        ),
    ));
    let mut security_group_ids = vec![net.security_group_id];
    security_group_ids.extend(desired.network.extra_security_group_ids.iter().cloned());
    Ok(Companions {
        parameter_group: pg.name,
        subnet_group: net.subnet_group_name,
        security_group_ids,
    })
}

/// The replication group as AWS has it, created (with the Secret's token)
/// when it does not exist; true when it existed before.
async fn ensure_group(
    api: &dyn ElastiCacheApi,
    req: &CacheRequest<'_>,
    desired: &DesiredCache,
    companions: &Companions,
    steps: &Steps,
    notes: &mut Vec<Note>,
) -> Result<(ReplicationGroupState, bool), StepFailure> {
    let id = &desired.names.replication_group_id;
    let fail = |e| steps.fail(conditions::REPLICATION_GROUP_READY, GROUP, e);
    if let Some(g) = api
        .observe_replication_group(&desired.owner, id)
        .await
        .map_err(fail)?
    {
        return Ok((g, true));
    }
    // The core stored the token in the Secret before this call.
    let token = req.credential.ok_or_else(|| {
        fail(BackendError::new(
            ErrorClass::Transient,
            None,
            "no AUTH token in the connection Secret yet",
        ))
    })?;
    let g = api
        .create_replication_group(
            &desired.owner,
            &desired.replication_group,
            companions,
            token,
            &desired.tags,
        )
        .await
        .map_err(fail)?;
    notes.push(Note::normal(
        "CreatingReplicationGroup",
        format!("asked AWS to create replication group {id}"),
    ));
    Ok((g, false))
}

/// The generic view of a replication group.
fn observed_of(g: &ReplicationGroupState) -> Observed {
    let lifecycle = match &g.status {
        GroupStatus::Creating => Lifecycle::Creating,
        GroupStatus::Available => Lifecycle::Serving,
        GroupStatus::Modifying | GroupStatus::Snapshotting => Lifecycle::Changing,
        GroupStatus::Deleting => Lifecycle::Deleting,
        GroupStatus::CreateFailed => Lifecycle::Failed,
        GroupStatus::Other(_) => Lifecycle::Unavailable,
    };
    let (reason, message) = describe(&g.status, &g.id);
    Observed {
        lifecycle,
        reason,
        message,
        engine: g.engine.clone(),
        engine_version: g.engine_version.clone(),
        memory: g
            .node_type
            .as_deref()
            .and_then(node_types::memory_mib)
            .map(|m| crate::api::quantity::format_bytes(m << 20)),
        size: g.node_type.clone(),
        shards: Some(g.shards),
        replicas_per_shard: Some(g.replicas_per_shard),
        endpoint: g.endpoint.clone(),
        reader_endpoint: g.reader_endpoint.clone(),
        busy: g.status != GroupStatus::Available || g.is_pending("authToken"),
        credential_changed_at: g.auth_token_last_modified,
    }
}

/// `ReplicationGroupReady` and `PendingChanges`.
fn group_conditions(g: &ReplicationGroupState) -> Vec<Cond> {
    let (reason, message) = describe(&g.status, &g.id);
    vec![
        if g.status == GroupStatus::Available {
            Cond::yes(conditions::REPLICATION_GROUP_READY, reason, message)
        } else {
            Cond::no(conditions::REPLICATION_GROUP_READY, reason, message)
        },
        if g.pending_changes.is_empty() {
            Cond::no(
                conditions::PENDING_CHANGES,
                "None",
                "no changes are waiting for the maintenance window",
            )
        } else {
            Cond::yes(
                conditions::PENDING_CHANGES,
                "WaitingForMaintenanceWindow",
                format!(
                    "AWS applies in the maintenance window: {}",
                    g.pending_changes.join(", ")
                ),
            )
        },
    ]
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
            provider: "aws-elasticache",
            username: "",
            extra: Default::default(),
        }),
        _ => None,
    }
}

/// Condition reason and message for a replication group status.
fn describe(status: &GroupStatus, id: &str) -> (&'static str, String) {
    match status {
        GroupStatus::Available => ("Available", format!("replication group {id} is available")),
        GroupStatus::Creating => ("Creating", format!("AWS is creating replication group {id}; this takes 10-20 minutes")),
        GroupStatus::Modifying => ("Modifying", format!("AWS is applying a change to replication group {id}")),
        GroupStatus::Snapshotting => ("Snapshotting", format!("AWS is taking a snapshot of replication group {id}")),
        GroupStatus::Deleting => ("Deleting", format!("AWS is deleting replication group {id}")),
        GroupStatus::CreateFailed => (
            "CreateFailed",
            format!("AWS could not create replication group {id}; see its events in the AWS console, fix the spec, or delete this RedisCache"),
        ),
        GroupStatus::Other(s) => ("InTransition", format!("replication group {id} is {s}")),
    }
}
