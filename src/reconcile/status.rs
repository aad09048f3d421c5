//! What one reconcile found, turned into status (server-side apply) and into
//! Events when a condition changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error};
use crate::api::conditions::{self, Cond};
use crate::api::{EndpointStatus, Phase, RedisCache, RedisCacheStatus, FIELD_MANAGER};
use crate::backends::redact::redact;
use crate::backends::{Converged, Endpoint, ErrorClass, Lifecycle, StepFailure};
use crate::health::HealthSnapshot;

/// Reasons that deserve a Warning Event.
const WARNING_REASONS: [&str; 14] = [
    "InvalidSpec",
    "Conflict",
    "AwsRejected",
    "BackendRejected",
    "InsufficientCapacity",
    "Throttled",
    "AwsUnavailable",
    "BackendUnavailable",
    "CredentialsInvalid",
    "ProviderNotAvailable",
    "CreateFailed",
    "KubernetesError",
    "ImmutableField",
    "NotFound",
];

/// The status a reconcile is building.
pub struct Report {
    pub status: RedisCacheStatus,
    conds: Vec<Cond>,
    /// The condition of the step running now, set False if it fails.
    step: Option<&'static str>,
    /// What the backend reported: its lifecycle, reason and message.
    lifecycle: Option<(Lifecycle, &'static str, String)>,
    secret_complete: bool,
    /// A change is on its way to the backend (Synced=False, reason Updating).
    updating: Option<String>,
    /// The failure was only a wait in the rate limit's line: no Event.
    queued: bool,
}

impl Report {
    /// Starts from the current status (fields not touched stay as they are).
    pub fn new(cache: &RedisCache) -> Self {
        Self {
            status: cache.status.clone().unwrap_or_default(),
            conds: Vec::new(),
            step: None,
            lifecycle: None,
            secret_complete: false,
            updating: None,
            queued: false,
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

    /// Records one backend step: what it observed, its conditions, and the
    /// Secret's state; a Day-2 failure after that comes back as the error.
    pub fn converged(&mut self, c: Converged, secret_name: &str) -> Result<(), Error> {
        let o = &c.observed;
        let s = &mut self.status;
        s.set_details(c.details);
        s.endpoint = o.endpoint.as_ref().map(endpoint_status);
        s.reader_endpoint = o.reader_endpoint.as_ref().map(endpoint_status);
        s.engine = o.engine.clone();
        s.engine_version = o.engine_version.clone();
        s.memory = o.memory.clone();
        s.node_type = o.size.clone();
        s.shards = o.shards;
        s.replicas_per_shard = o.replicas_per_shard;
        self.lifecycle = Some((o.lifecycle, o.reason, o.message.clone()));
        for cond in c.conditions {
            self.set(cond);
        }
        if let Some(message) = c.updating {
            self.updating = Some(message);
        }
        if c.connection.is_some() {
            self.secret_complete(secret_name);
        } else {
            self.set(Cond::no(
                conditions::SECRET_READY,
                "WaitingForEndpoint",
                format!(
                    "Secret {secret_name} holds the AUTH token; host and URI follow once the cache is available"
                ),
            ));
        }
        match c.failure {
            None => Ok(()),
            Some(f) => Err(self.failed_step(f)),
        }
    }

    /// Records a failed backend step and turns it into the reconcile's error.
    pub fn failed_step(&mut self, f: StepFailure) -> Error {
        for cond in f.conditions {
            self.set(cond);
        }
        if let Some(d) = f.details {
            self.status.set_details(d);
        }
        self.step = Some(f.condition);
        Error::Backend {
            step: f.step,
            source: f.error,
        }
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
        let lifecycle = self.lifecycle.as_ref().map(|(l, _, _)| *l);
        let serving = lifecycle.is_some_and(Lifecycle::serving);
        let ready = serving && self.secret_complete;
        match result {
            Ok(()) => {
                self.set(match &self.updating {
                    Some(message) => Cond::no(conditions::SYNCED, "Updating", message.clone()),
                    None => Cond::yes(conditions::SYNCED, "Synced", "the backend matches the spec"),
                });
                let (reason, message) = match &self.lifecycle {
                    Some((_, reason, message)) if !ready => (*reason, message.clone()),
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
                let changing =
                    self.updating.is_some() || lifecycle.is_some_and(Lifecycle::in_transition);
                self.status.phase = Some(match lifecycle {
                    _ if ready && changing => Phase::Updating,
                    _ if ready => Phase::Ready,
                    Some(Lifecycle::Creating) | None => Phase::Provisioning,
                    Some(Lifecycle::Deleting) => Phase::Deleting,
                    Some(Lifecycle::Failed) => Phase::Failed,
                    Some(_) => Phase::Updating,
                });
            }
            Err(e) => {
                let reason = e.reason();
                let message = redact(&e.to_string());
                self.queued = matches!(e, Error::Backend { source, .. } if source.queued);
                if let Some(step) = self.step.take() {
                    self.set(Cond::no(step, reason, message.clone()));
                }
                self.set(Cond::no(conditions::SYNCED, reason, message.clone()));
                let class = e.backend_class();
                let immutable = class == Some(ErrorClass::Immutable);
                let blocking = matches!(e, Error::InvalidSpec(_) | Error::SecretConflict(_))
                    || matches!(
                        class,
                        Some(
                            ErrorClass::Conflict
                                | ErrorClass::Rejected
                                | ErrorClass::Immutable
                                | ErrorClass::CredentialsInvalid
                        )
                    );
                if ready && !immutable {
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
                } else if class == Some(ErrorClass::Capacity) {
                    self.set(Cond::no(conditions::READY, reason, message));
                    self.status.phase = Some(Phase::Degraded);
                } else if class == Some(ErrorClass::Throttled) {
                    // What it waits for, e.g. its place in line at the rate limit.
                    self.set(Cond::no(conditions::READY, reason, message));
                    self.status.phase.get_or_insert(Phase::Pending);
                } else if self.status.phase.is_none() {
                    self.status.phase = Some(Phase::Pending);
                }
            }
        }
    }

    /// Sets `status.health` and the `Reachable` condition from the latest
    /// probe, for a Ready cache only. Reachable never changes Ready: the backend may be
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
            ctx.metrics.set_phase(
                &cache_key(cache),
                Some(crate::metrics::CachePhase {
                    phase,
                    class: self.status.class_name.clone().unwrap_or_default(),
                    provider: self
                        .status
                        .provider
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default(),
                }),
            );
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
            if told.contains(&c.reason.as_str()) || (self.queued && c.status == "False") {
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
        note: Some(redact(note).chars().take(1000).collect()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{HealthStatus, RedisCacheSpec};

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

    #[test]
    fn a_cache_waiting_in_line_says_so_on_ready() {
        let cache = RedisCache::new("c", RedisCacheSpec::default());
        let mut r = Report::new(&cache);
        r.set(Cond::no(
            conditions::READY,
            "WaitingForBackend",
            "first status",
        ));
        let waiting = Error::Backend {
            step: "backend",
            source: crate::backends::BackendError::new(
                ErrorClass::Throttled,
                None,
                "waiting for the AWS rate limit, about 40 calls queued (10 caches ahead, about 8 s)",
            ),
        };
        r.conclude(Err(&waiting), Some(1));
        let ready = r.conds.iter().find(|c| c.type_ == conditions::READY);
        assert_eq!(
            ready.map(|c| (c.status, c.reason.as_str())),
            Some(("False", "Throttled"))
        );
        assert!(ready.is_some_and(|c| c.message.contains("10 caches ahead")));
        assert_eq!(r.status.phase, Some(Phase::Pending));
    }
}
