//! The reconciler, the same for every backend: `finalizer()` dispatches to
//! [`apply`] (bring the backend and the Secret to the spec) or [`cleanup`]
//! (tear down by deletion policy), and [`error_policy`] decides when to try
//! again. [`class`] runs the RedisCacheClass controller.

mod apply;
pub mod class;
mod cleanup;
mod credential;
pub mod rotation;
pub mod secret;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use rand::RngExt;

use crate::api::validation::ValidationErrors;
use crate::api::{RedisCache, RedisCacheClass, FINALIZER};
use crate::backends::{BackendError, ErrorClass, Registry};
use crate::health::HealthRegistry;
use crate::metrics::Metrics;

pub use apply::{apply, FIRST_STATUS_HEADSTART};
pub use cleanup::cleanup;

/// How often to look again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Polling {
    /// While the backend is creating, modifying or deleting something.
    pub in_transition: Duration,
    /// When everything is settled (drift detection).
    pub settled: Duration,
    /// First retry after a transient error; doubles up to `retry_max`.
    pub retry_base: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Self {
            in_transition: Duration::from_secs(15),
            settled: Duration::from_secs(300),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// The backend of each class.
    pub backends: Arc<Registry>,
    /// Every RedisCacheClass (a reflector kept for the life of the process).
    pub classes: Store<RedisCacheClass>,
    /// `--cluster-name`: part of every backend identity and ownership mark.
    pub cluster_name: String,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub polling: Polling,
    /// Latest probe results, when the health probe is on.
    pub health: Option<Arc<HealthRegistry>>,
    /// True while this replica may act (it holds the Lease); a reconcile
    /// in flight when it turns false is cancelled.
    fence: tokio::sync::watch::Receiver<bool>,
    /// Consecutive failures per `namespace/name`, for capped backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The last outcome logged per `namespace/name`.
    outcomes: Mutex<HashMap<String, &'static str>>,
    /// Caches (by uid) whose first reconcile only wrote their first status.
    introduced: Mutex<std::collections::HashSet<String>>,
}

impl Context {
    /// A context for one operator process.
    pub fn new(
        client: Client,
        backends: Arc<Registry>,
        classes: Store<RedisCacheClass>,
        cluster_name: String,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        polling: Polling,
    ) -> Self {
        Self {
            client,
            backends,
            classes,
            cluster_name,
            recorder,
            metrics,
            polling,
            health: None,
            fence: tokio::sync::watch::channel(true).1,
            failures: Mutex::new(HashMap::new()),
            outcomes: Mutex::new(HashMap::new()),
            introduced: Mutex::default(),
        }
    }

    /// True the first time it is asked about `uid`.
    fn introduce_once(&self, uid: &str) -> bool {
        self.introduced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.to_string())
    }

    /// Forgets a deleted cache.
    fn forget_introduced(&self, uid: &str) {
        self.introduced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    /// Publishes the health probe's results (status.health, `Reachable`).
    pub fn with_health(mut self, health: Option<Arc<HealthRegistry>>) -> Self {
        self.health = health;
        self
    }

    /// Cancels reconciles whenever `fence` says this replica may not act.
    pub fn with_fence(mut self, fence: tokio::sync::watch::Receiver<bool>) -> Self {
        self.fence = fence;
        self
    }

    /// Logs a reconcile's outcome when it differs from the last one of the
    /// same cache: one line per change, not one per reconcile.
    fn log_outcome(&self, key: &str, result: &Result<Action, Error>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        let changed = {
            let mut last = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
            last.insert(key.to_string(), outcome) != Some(outcome)
        };
        match result {
            Ok(_) if changed => tracing::info!(cache = %key, reason = outcome, "reconciled"),
            Err(Error::DeletionInProgress(what)) if changed => {
                tracing::info!(cache = %key, reason = outcome, "waiting for the backend to delete {what}")
            }
            Err(e) if changed => {
                tracing::warn!(cache = %key, reason = outcome, "reconcile failed (retrying): {e}")
            }
            Ok(_) => tracing::debug!(cache = %key, reason = outcome, "reconciled"),
            Err(e) => {
                tracing::debug!(cache = %key, reason = outcome, "reconcile failed again: {e}")
            }
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec (or its class) breaks a rule; nothing is sent to the backend.
    #[error("invalid spec: {0}")]
    InvalidSpec(ValidationErrors),
    /// A backend call failed (the message is already free of secrets). A
    /// refused immutable change names its field first, as validation does.
    #[error("{}", backend_message(step, source))]
    Backend {
        step: &'static str,
        #[source]
        source: BackendError,
    },
    /// The connection Secret exists but was not written for this RedisCache.
    #[error("Secret {0} exists and was not written by redis-cache-operator for this RedisCache; rename spec.connectionSecret.name or delete that Secret")]
    SecretConflict(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The backend is still deleting; the finalizer stays until it is done.
    #[error("waiting for the backend to delete {0}")]
    DeletionInProgress(String),
    /// The object lacks something the API server always sets.
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// An object could not be serialized.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The operator has not finished starting (e.g. the class watch has not
    /// listed the classes yet); retried with backoff.
    #[error("{0}")]
    Starting(&'static str),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

fn backend_message(step: &str, source: &BackendError) -> String {
    match source.class {
        ErrorClass::Immutable => source.to_string(),
        _ => format!("{step}: {source}"),
    }
}

impl Error {
    /// Short label for metrics and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Backend { source, .. } => source.reason(),
            Error::SecretConflict(_) => "Conflict",
            Error::Kube(_) | Error::Finalizer(_) | Error::Serialization(_) => "KubernetesError",
            Error::DeletionInProgress(_) => "Deleting",
            Error::MissingField(_) => "MissingField",
            Error::Starting(_) => "Starting",
        }
    }

    /// The backend error's class, when a backend call failed.
    pub fn backend_class(&self) -> Option<ErrorClass> {
        match self {
            Error::Backend { source, .. } => Some(source.class),
            _ => None,
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::Kube(e),
            other => Error::Finalizer(other.to_string()),
        }
    }
}

/// Entry point for the controller: one reconcile of one RedisCache.
pub async fn reconcile(cache: Arc<RedisCache>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.start_reconcile();
    let namespace = cache
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let key = format!("{namespace}/{}", cache.name_any());
    let api: Api<RedisCache> = Api::namespaced(ctx.client.clone(), &namespace);
    let run = finalizer(&api, FINALIZER, cache, |event| async {
        match event {
            FinalizerEvent::Apply(cache) => apply(cache, ctx.clone()).await,
            FinalizerEvent::Cleanup(cache) => cleanup(cache, ctx.clone()).await,
        }
    });
    // Dropping the reconcile stops it between two calls: every step is
    // safe to repeat, so the next leader resumes from what is stored.
    let result = tokio::select! {
        r = run => r.map_err(Error::from),
        _ = stopped_acting(ctx.fence.clone()) => Err(Error::Starting("this replica stopped leading; the reconcile was cancelled")),
    };
    match &result {
        Ok(_) => {
            ctx.failures().remove(&key);
            timer.finish("success");
        }
        Err(e) => timer.finish(e.reason()),
    }
    ctx.log_outcome(&key, &result);
    result
}

/// Resolves once the fence says this replica may not act (never when the
/// fence's sender is gone without saying so).
async fn stopped_acting(mut fence: tokio::sync::watch::Receiver<bool>) {
    if fence.wait_for(|may_act| !*may_act).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What to do after a failed reconcile (DESIGN §5).
pub fn error_policy(cache: Arc<RedisCache>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!(
        "{}/{}",
        cache.namespace().unwrap_or_default(),
        cache.name_any()
    );
    let p = &ctx.polling;
    let retry_after = match error {
        Error::Backend { source, .. } => source.retry_after,
        _ => None,
    };
    let wait = match (error, error.backend_class()) {
        (Error::DeletionInProgress(_), _) => p.in_transition,
        (_, Some(ErrorClass::Throttled)) => retry_after
            .map(|d| jitter(d, 0.1))
            .unwrap_or_else(|| jitter(p.retry_base * 2, 0.5)),
        (_, Some(ErrorClass::Capacity | ErrorClass::CredentialsInvalid)) => p.settled,
        _ => {
            let mut failures = ctx.failures();
            let n = failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            jitter(backoff(p.retry_base, p.retry_max, *n), 0.2)
        }
    };
    // The outcome itself is logged once per change (Context::log_outcome).
    tracing::debug!(cache = %key, reason = error.reason(), "retrying in {wait:?}");
    Action::requeue(wait)
}

/// `base * 2^(attempt-1)`, at most `max`.
fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    base.saturating_mul(factor).min(max)
}

/// `d` spread by ±`spread` (a fraction), so many caches do not retry in step.
fn jitter(d: Duration, spread: f64) -> Duration {
    let f = 1.0 + rand::rng().random_range(-spread..=spread);
    d.mul_f64(f.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let (b, m) = (Duration::from_secs(5), Duration::from_secs(300));
        assert_eq!(backoff(b, m, 1), Duration::from_secs(5));
        assert_eq!(backoff(b, m, 2), Duration::from_secs(10));
        assert_eq!(backoff(b, m, 4), Duration::from_secs(40));
        assert_eq!(backoff(b, m, 10), m);
        assert_eq!(backoff(b, m, u32::MAX), m);
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(10), 0.2);
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }

    #[test]
    fn errors_map_to_condition_reasons() {
        let p = |class| Error::Backend {
            step: "x",
            source: BackendError::new(class, None, "m"),
        };
        assert_eq!(p(ErrorClass::Rejected).reason(), "BackendRejected");
        assert_eq!(p(ErrorClass::Conflict).reason(), "Conflict");
        assert_eq!(p(ErrorClass::Capacity).reason(), "InsufficientCapacity");
        assert_eq!(p(ErrorClass::Throttled).reason(), "Throttled");
        assert_eq!(p(ErrorClass::Transient).reason(), "BackendUnavailable");
        assert_eq!(
            p(ErrorClass::CredentialsInvalid).reason(),
            "CredentialsInvalid"
        );
        let mut own = BackendError::new(ErrorClass::Rejected, None, "m");
        own.reason = Some("AwsRejected");
        assert_eq!(
            Error::Backend {
                step: "x",
                source: own
            }
            .reason(),
            "AwsRejected"
        );
        assert_eq!(Error::SecretConflict("s".into()).reason(), "Conflict");
    }
}
