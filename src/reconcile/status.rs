//! What one reconcile found, turned into status (server-side apply) and into
//! Events when a condition changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error};
use crate::conditions::{self, Cond};
use crate::crd::{EndpointStatus, Phase, RedisCache, RedisCacheStatus, FIELD_MANAGER};
use crate::health::HealthSnapshot;
use crate::provider::{Endpoint, ErrorClass, GroupStatus, ReplicationGroupState};

/// Reasons that deserve a Warning Event.
const WARNING_REASONS: [&str; 9] = [
    "InvalidSpec",
    "Conflict",
    "AwsRejected",
    "InsufficientCapacity",
    "Throttled",
    "AwsUnavailable",
    "CreateFailed",
    "KubernetesError",
    "ImmutableField",
];

/// The status a reconcile is building.
pub struct Report {
    pub status: RedisCacheStatus,
    conds: Vec<Cond>,
    /// The condition of the step running now, set False if it fails.
    step: Option<&'static str>,
    group: Option<GroupStatus>,
    secret_complete: bool,
    /// A change is on its way to AWS (Synced=False, reason Updating).
    updating: Option<String>,
}

impl Report {
    /// Starts from the current status (fields not touched stay as they are).
    pub fn new(cache: &RedisCache) -> Self {
        Self {
            status: cache.status.clone().unwrap_or_default(),
            conds: Vec::new(),
            step: None,
            group: None,
            secret_complete: false,
            updating: None,
        }
    }

    /// Sets a condition.
    pub fn set(&mut self, c: Cond) {
        self.conds.retain(|x| x.type_ != c.type_);
        self.conds.push(c);
    }

    /// The step about to run; its condition turns False if the step fails.
    pub fn step(&mut self, condition: &'static str) {
        self.step = Some(condition);
    }

    /// Records the replication group AWS reports.
    pub fn group(&mut self, g: &ReplicationGroupState) {
        let s = &mut self.status;
        s.arn = g.arn.clone().or(s.arn.take());
        s.endpoint = g.endpoint.as_ref().map(endpoint_status);
        s.reader_endpoint = g.reader_endpoint.as_ref().map(endpoint_status);
        s.engine = g.engine.clone();
        s.engine_version = g.engine_version.clone();
        s.node_type = g.node_type.clone();
        s.shards = Some(g.shards);
        s.replicas_per_shard = Some(g.replicas_per_shard);
        self.group = Some(g.status.clone());
        let (reason, message) = describe(&g.status, &g.id);
        self.set(match g.status {
            GroupStatus::Available => {
                Cond::yes(conditions::REPLICATION_GROUP_READY, reason, message)
            }
            _ => Cond::no(conditions::REPLICATION_GROUP_READY, reason, message),
        });
        self.set(if g.pending_changes.is_empty() {
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
        });
    }

    /// Records that a change is being applied or waits to be sent.
    pub fn updating(&mut self, message: String) {
        self.updating = Some(message);
    }

    /// Records that the Secret holds every key.
    pub fn secret_complete(&mut self, name: &str) {
        self.secret_complete = true;
        self.set(Cond::yes(
            conditions::SECRET_READY,
            "Complete",
            format!("Secret {name} holds the connection URI and AUTH token"),
        ));
    }

    /// Derives Ready, Synced and the phase from what happened.
    pub fn conclude(&mut self, result: Result<(), &Error>, generation: Option<i64>) {
        self.status.observed_generation = generation;
        // A cache being modified still serves clients.
        let serving = matches!(
            self.group,
            Some(GroupStatus::Available | GroupStatus::Modifying | GroupStatus::Snapshotting)
        );
        let ready = serving && self.secret_complete;
        match result {
            Ok(()) => {
                self.set(match &self.updating {
                    Some(message) => Cond::no(conditions::SYNCED, "Updating", message.clone()),
                    None => Cond::yes(conditions::SYNCED, "Synced", "AWS matches the spec"),
                });
                let (reason, message) = match &self.group {
                    Some(g) if !ready => {
                        let id = self.status.replication_group_id.clone().unwrap_or_default();
                        describe(g, &id)
                    }
                    _ => (
                        "Available",
                        "the cache is available and its Secret is complete".into(),
                    ),
                };
                self.set(if ready {
                    Cond::yes(conditions::READY, reason, message)
                } else {
                    Cond::no(conditions::READY, reason, message)
                });
                let changing = self.updating.is_some()
                    || self.group.as_ref().is_some_and(GroupStatus::in_transition);
                self.status.phase = Some(match &self.group {
                    _ if ready && changing => Phase::Updating,
                    _ if ready => Phase::Ready,
                    Some(GroupStatus::Creating) | None => Phase::Provisioning,
                    Some(GroupStatus::Deleting) => Phase::Deleting,
                    Some(GroupStatus::CreateFailed) => Phase::Failed,
                    Some(_) => Phase::Updating,
                });
            }
            Err(e) => {
                let reason = e.reason();
                let message = e.to_string();
                if let Some(step) = self.step.take() {
                    self.set(Cond::no(step, reason, message.clone()));
                }
                self.set(Cond::no(conditions::SYNCED, reason, message.clone()));
                let blocking = matches!(
                    e,
                    Error::InvalidSpec(_) | Error::SecretConflict(_) | Error::ImmutableField(_)
                ) || matches!(e, Error::Provider { source, .. }
                        if matches!(source.class, ErrorClass::Conflict | ErrorClass::Rejected));
                if ready && !matches!(e, Error::ImmutableField(_)) {
                    // The cache still works; Synced says what failed.
                    self.set(Cond::yes(
                        conditions::READY,
                        "Available",
                        "the cache is available; see Synced for a change that failed",
                    ));
                    self.status.phase = Some(Phase::Ready);
                } else if blocking {
                    self.set(Cond::no(conditions::READY, reason, message));
                    self.status.phase = Some(Phase::Failed);
                } else if matches!(e, Error::Provider { source, .. } if source.class == ErrorClass::Capacity)
                {
                    self.set(Cond::no(conditions::READY, reason, message));
                    self.status.phase = Some(Phase::Degraded);
                } else if self.status.phase.is_none() {
                    self.status.phase = Some(Phase::Pending);
                }
            }
        }
    }

    /// Sets `status.health` and the `Reachable` condition from the latest
    /// probe, for a Ready cache only. Reachable never changes Ready: AWS may be
    /// fine while the network path from the operator is not.
    pub fn health(&mut self, snapshot: Option<&HealthSnapshot>) {
        let ready = match self.conds.iter().find(|c| c.type_ == conditions::READY) {
            Some(c) => c.status == "True",
            None => conditions::find(&self.status.conditions, conditions::READY)
                .is_some_and(|c| c.status == "True"),
        };
        if let (true, Some(s)) = (ready, snapshot) {
            self.status.health = Some(s.health.clone());
            self.set(s.condition.clone());
        }
    }

    /// Marks the cache as being deleted.
    pub fn deleting(&mut self, message: String) {
        self.set(Cond::no(conditions::READY, "Deleting", message));
        self.status.phase = Some(Phase::Deleting);
    }

    /// Writes the status if it changed and publishes an Event for every
    /// condition whose status or reason changed.
    pub async fn publish(mut self, cache: &RedisCache, ctx: &Context) -> Result<(), Error> {
        let old = cache.status.clone().unwrap_or_default();
        if let Some(registry) = &ctx.health {
            self.health(registry.snapshot(&cache_key(cache)).as_ref());
        }
        let now = Time(jiff::Timestamp::now());
        self.status.conditions =
            conditions::merge(&old.conditions, &self.conds, cache.metadata.generation, now);
        if let Some(phase) = self.status.phase {
            ctx.metrics.set_phase(&cache_key(cache), Some(phase));
        }
        if self.status == old {
            return Ok(());
        }
        let namespace = cache
            .namespace()
            .ok_or(Error::MissingField("metadata.namespace"))?;
        let api: Api<RedisCache> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({
            "apiVersion": RedisCache::api_version(&()),
            "kind": RedisCache::kind(&()),
            "status": self.status,
        });
        api.patch_status(
            &cache.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        let mut told: Vec<&str> = Vec::new();
        for c in conditions::changed(&old.conditions, &self.status.conditions) {
            let reachable = c.type_ == conditions::REACHABLE;
            if c.type_ != conditions::READY && c.type_ != conditions::SYNCED && !reachable {
                continue;
            }
            // Ready and Synced often change together for one reason: one Event.
            if told.contains(&c.reason.as_str()) {
                continue;
            }
            told.push(&c.reason);
            if (c.type_ == conditions::SYNCED || reachable)
                && c.status == "True"
                && conditions::find(&old.conditions, &c.type_).is_none()
            {
                continue; // nothing to tell on first success
            }
            let warning =
                c.status == "False" && (reachable || WARNING_REASONS.contains(&c.reason.as_str()));
            publish_event(ctx, cache, warning, &c.reason, &c.message).await;
        }
        Ok(())
    }
}

/// Publishes one Event; a failure to do so is logged, never fatal.
pub async fn publish_event(
    ctx: &Context,
    cache: &RedisCache,
    warning: bool,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cache.object_ref(&())).await {
        tracing::warn!(cache = %cache_key(cache), "could not publish Event {reason}: {e}");
    }
}

/// `namespace/name`.
pub fn cache_key(cache: &RedisCache) -> String {
    format!(
        "{}/{}",
        cache.namespace().unwrap_or_default(),
        cache.name_any()
    )
}

fn endpoint_status(e: &Endpoint) -> EndpointStatus {
    EndpointStatus {
        host: e.host.clone(),
        port: e.port,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{HealthStatus, RedisCacheSpec};

    fn snapshot() -> HealthSnapshot {
        HealthSnapshot {
            health: HealthStatus {
                reachable: Some(false),
                ..HealthStatus::default()
            },
            condition: Cond::no(conditions::REACHABLE, "Timeout", "no answer"),
        }
    }

    fn report(ready: bool) -> Report {
        let cache = RedisCache::new("c", RedisCacheSpec::default());
        let mut r = Report::new(&cache);
        r.set(if ready {
            Cond::yes(conditions::READY, "Available", "")
        } else {
            Cond::no(conditions::READY, "Modifying", "")
        });
        r
    }

    #[test]
    fn health_is_reported_for_ready_caches_and_never_touches_ready() {
        let mut r = report(true);
        r.health(Some(&snapshot()));
        assert_eq!(r.status.health, Some(snapshot().health));
        let reachable = r.conds.iter().find(|c| c.type_ == conditions::REACHABLE);
        assert_eq!(
            reachable.map(|c| (c.status, c.reason.as_str())),
            Some(("False", "Timeout"))
        );
        let ready = r.conds.iter().find(|c| c.type_ == conditions::READY);
        assert_eq!(
            ready.map(|c| c.status),
            Some("True"),
            "Reachable=False keeps Ready"
        );

        let mut r = report(false);
        r.health(Some(&snapshot()));
        assert_eq!(
            r.status.health, None,
            "not Ready: not probed, nothing written"
        );
        assert!(r.conds.iter().all(|c| c.type_ != conditions::REACHABLE));

        let mut r = report(true);
        r.health(None);
        assert_eq!(r.status.health, None);
    }
}
