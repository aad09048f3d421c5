//! Where caches live. The reconciler talks to a [`Backend`] in domain terms
//! (validate, plan, converge one step, rotate a credential, delete) and never
//! names one; each backend is a folder behind this trait, built per
//! RedisCacheClass by the [`Registry`].
//!
//! Types here are the vocabulary both sides share: classified errors
//! ([`BackendError`]), credentials that never print ([`Credential`]),
//! endpoints, what a converge step observed ([`Converged`]) and how a delete
//! is going ([`Deletion`]).

pub mod azure;
pub mod elasticache;
#[cfg(feature = "fake")]
pub mod fake;
pub mod identity;
pub mod kubernetes;
pub mod ratelimit;
pub mod redact;
pub mod registry;
pub mod turns;
pub mod upstash;
pub mod wakeups;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::api::conditions::Cond;
use crate::api::validation::{PortableSpec, ValidationErrors};
use crate::api::{BackendDetails, ClusterMode, DeletionPolicy, ProviderKind, RedisCache};

pub use registry::{BackendFactory, Registry};

/// How the operator reacts to an error (DESIGN §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorClass {
    /// Rate limited: retry with jittered backoff.
    Throttled,
    /// 5xx, timeouts, resource in a transitional state: retry with capped backoff.
    Transient,
    /// The request cannot succeed as it is: wait for a spec change.
    Rejected,
    /// Capacity or quota: degraded, retry slowly.
    Capacity,
    /// The resource does not exist.
    NotFound,
    /// The resource exists but belongs to someone else: never touched.
    Conflict,
    /// The backend refused the class's credentials (401/403, expired keys).
    CredentialsInvalid,
    /// The spec changes a setting the backend cannot change on a running cache.
    Immutable,
}

impl ErrorClass {
    /// Short label for metrics, Events and condition reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Throttled => "Throttled",
            ErrorClass::Transient => "BackendUnavailable",
            ErrorClass::Rejected => "BackendRejected",
            ErrorClass::Capacity => "InsufficientCapacity",
            ErrorClass::NotFound => "NotFound",
            ErrorClass::Conflict => "Conflict",
            ErrorClass::CredentialsInvalid => "CredentialsInvalid",
            ErrorClass::Immutable => "ImmutableField",
        }
    }
}

/// A classified backend error. The message is safe to show: every known
/// credential value is redacted when it is built ([`redact::redact`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct BackendError {
    pub class: ErrorClass,
    /// Wire error code, e.g. `InvalidParameterValue`, when there is one.
    pub code: Option<String>,
    pub message: String,
    /// How long the backend asked us to wait (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
    /// Condition reason when the backend names its own (e.g. `AwsRejected`).
    pub reason: Option<&'static str>,
    /// Not sent: the cache waits in line for the operator's own rate limit
    /// ([`turns`]). Shown on the status, never as an Event: at a thousand
    /// caches that would be a thousand Events saying nothing happened.
    pub queued: bool,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl BackendError {
    /// An error of `class` with an optional wire code.
    pub fn new(class: ErrorClass, code: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            class,
            code: code.map(str::to_string),
            message: redact::redact(&message.into()),
            retry_after: None,
            reason: None,
            queued: false,
        }
    }

    /// A resource that exists with another owner.
    pub fn conflict(what: &str, name: &str, owner: Option<&str>) -> Self {
        let owner = owner.unwrap_or("an owner outside this operator");
        Self::new(
            ErrorClass::Conflict,
            None,
            format!("{what} {name} already exists and belongs to {owner}; it is left untouched. Delete or rename it, or give this RedisCache another name"),
        )
    }

    /// The condition reason: the backend's own, else the class's.
    pub fn reason(&self) -> &'static str {
        self.reason.unwrap_or(self.class.as_str())
    }
}

/// A credential (AUTH token, password, access key). Its `Debug` never shows
/// the value, it has no `Display`, and every value made is registered with
/// [`redact`] so no error message can carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// Wraps a credential value (and remembers it for redaction).
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        redact::remember(&value);
        Self(value)
    }
    /// The value, for the Secret and the backend request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// Where a backend's HTTP client plugs in the rate limiter and the call
/// metrics: every call passes through it.
#[async_trait]
pub trait CallGate: Send + Sync {
    /// Waits until the call may be sent (client-side rate limit).
    async fn acquire(&self);
    /// The call went through.
    fn on_success(&self);
    /// The backend throttled the call: slow down.
    fn on_throttled(&self);
    /// Records the call's outcome (`success` or an error class label).
    fn record(&self, operation: &'static str, outcome: &'static str);
}

/// A host and port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub host: String,
    pub port: i32,
}

/// Who owns a cache's backend objects: checked before anything is touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ownership {
    /// uid of the RedisCache.
    pub owner_uid: String,
    /// `namespace/name` of the RedisCache.
    pub resource: String,
    /// `--cluster-name` of the operator.
    pub cluster: String,
}

/// Label naming the RedisCache on the Kubernetes objects a backend makes
/// for it in the cluster (the controller watches objects with this label).
pub const CACHE_LABEL: &str = "rediscache.dev/cache";
/// Tag (or label) with the uid of the owning RedisCache.
pub const TAG_OWNER_UID: &str = "rediscache.dev/owner-uid";
/// Tag with `namespace/name` of the owning RedisCache.
pub const TAG_RESOURCE: &str = "rediscache.dev/resource";
/// Tag with the operator's `--cluster-name`.
pub const TAG_CLUSTER: &str = "rediscache.dev/cluster";

impl Ownership {
    /// The ownership marks every backend object carries.
    pub fn tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TAG_OWNER_UID.to_string(), self.owner_uid.clone()),
            (TAG_RESOURCE.to_string(), self.resource.clone()),
            (TAG_CLUSTER.to_string(), self.cluster.clone()),
        ])
    }

    /// Whether an object with these tags is ours.
    pub fn owns(&self, tags: &BTreeMap<String, String>) -> bool {
        tags.get(TAG_OWNER_UID) == Some(&self.owner_uid)
    }
}

/// How clients reach a cache, once the backend serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub endpoint: Endpoint,
    pub reader: Option<Endpoint>,
    pub cluster_mode: ClusterMode,
    /// The Secret's `provider` value, e.g. `aws-elasticache`.
    pub provider: &'static str,
    /// User name in the URI: empty for AUTH-token servers (`rediss://:pw@`),
    /// `default` for ACL servers.
    pub username: &'static str,
    /// Backend keys beside the common ones (e.g. `ca.crt`, `restUrl`).
    pub extra: BTreeMap<String, String>,
}

/// Where a cache is in its life, as the backend reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Being created; not serving yet.
    Creating,
    /// Serving, nothing in flight.
    Serving,
    /// Serving while a change is applied.
    Changing,
    /// Being deleted.
    Deleting,
    /// The backend gave up (e.g. a create that failed); waits for the user.
    Failed,
    /// In a state the operator does not know; not serving, looked at often.
    Unavailable,
}

impl Lifecycle {
    /// Whether clients can use the cache.
    pub fn serving(self) -> bool {
        matches!(self, Lifecycle::Serving | Lifecycle::Changing)
    }
    /// Whether the backend is still working (poll fast).
    pub fn in_transition(self) -> bool {
        matches!(
            self,
            Lifecycle::Creating
                | Lifecycle::Changing
                | Lifecycle::Deleting
                | Lifecycle::Unavailable
        )
    }
}

/// What the backend reports about a cache.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub lifecycle: Lifecycle,
    /// Condition reason and message for the lifecycle (e.g. `Creating`).
    pub reason: &'static str,
    pub message: String,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    /// Usable memory as a quantity (`1Gi`), when the backend knows it.
    pub memory: Option<String>,
    /// Node type, SKU or plan.
    pub size: Option<String>,
    pub shards: Option<i32>,
    pub replicas_per_shard: Option<i32>,
    pub endpoint: Option<Endpoint>,
    pub reader_endpoint: Option<Endpoint>,
    /// The backend cannot take a credential change now.
    pub busy: bool,
    /// When the backend last changed the cache's credentials.
    pub credential_changed_at: Option<jiff::Timestamp>,
}

/// An Event the backend asks the core to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    /// A Normal Event.
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason,
            message: message.into(),
        }
    }
    /// A Warning Event.
    pub fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason,
            message: message.into(),
        }
    }
}

/// When to look at the cache again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The backend is working (or a step was just sent): look again soon.
    Soon,
    /// Nothing in flight; look again after this long at the latest.
    Within(Option<Duration>),
}

/// The result of one converge step.
#[derive(Clone, Debug, PartialEq)]
pub struct Converged {
    pub observed: Observed,
    /// Set once the cache serves and its endpoint is known.
    pub connection: Option<Connection>,
    /// The backend's component conditions (e.g. `NetworkReady`).
    pub conditions: Vec<Cond>,
    /// Backend facts kept in status.
    pub details: BackendDetails,
    pub notes: Vec<Note>,
    /// A change on its way (Synced=False, reason Updating).
    pub updating: Option<String>,
    pub next: Next,
    /// A Day-2 step that failed after the cache was observed: the Secret is
    /// still written, then this is reported.
    pub failure: Option<StepFailure>,
    /// The credential the backend holds now, when it makes them
    /// ([`CredentialOrigin::Backend`]); the Secret follows it.
    pub credential: Option<Credential>,
    /// The backend's identity of the cache, when this step learned it (a
    /// create); stored in status at once.
    pub backend_id: Option<String>,
}

/// A converge step that failed: the condition it sets False and why.
#[derive(Clone, Debug, PartialEq)]
pub struct StepFailure {
    /// The condition of the failed step (e.g. `NetworkReady`).
    pub condition: &'static str,
    /// What failed, e.g. `network`.
    pub step: &'static str,
    pub error: BackendError,
    /// Conditions set before the failure.
    pub conditions: Vec<Cond>,
    pub details: Option<BackendDetails>,
}

/// One cache, as the core hands it to a backend.
#[derive(Clone, Copy, Debug)]
pub struct CacheRequest<'a> {
    pub cache: &'a RedisCache,
    pub spec: &'a PortableSpec,
    /// The backend identity `R`, fixed in status.
    pub backend_id: &'a str,
    pub owner: &'a Ownership,
    /// The credential in the connection Secret (none yet when the backend
    /// makes it and has not been asked).
    pub credential: Option<&'a Credential>,
    /// Whether the backend matched this generation of the spec before, so a
    /// difference found now was made outside the operator (drift).
    pub synced_before: bool,
}

/// A step of the credential rotation protocol (the core keeps the record).
#[derive(Clone, Copy, Debug)]
pub enum RotationStep<'a> {
    /// Make `new` work beside the current credential.
    Add { new: &'a Credential },
    /// Make `keep` the only credential that works.
    Retire { keep: &'a Credential },
    /// Replace the credential at once with one the backend makes
    /// ([`RotationStyle::CutOver`]); the new one is returned.
    Reset,
}

/// Who makes a cache's credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialOrigin {
    /// The operator generates it and stores it in the Secret before the
    /// backend hears of it (ElastiCache, in-cluster).
    Operator,
    /// The backend generates it; the core writes it to the Secret in the
    /// reconcile that first reads it ([`Converged::credential`]).
    Backend,
}

/// How a backend rotates a credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationStyle {
    /// Old and new both work for `rotationGracePeriod`: Add, promote, Retire.
    Overlapping,
    /// The old one stops working at once: Reset, and the Secret follows in
    /// the same reconcile.
    CutOver,
    /// Two keys the backend makes, both working at all times
    /// ([`Backend::access_keys`]): the key the Secret does not hold is
    /// regenerated ([`Backend::regenerate_key`]), the Secret moves to it,
    /// and after `rotationGracePeriod` the other one is regenerated.
    AlternateKeys,
}

/// One of the two access keys of a backend with [`RotationStyle::AlternateKeys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySlot {
    /// The primary key.
    Primary,
    /// The secondary key.
    Secondary,
}

impl KeySlot {
    /// The other key.
    pub fn other(self) -> Self {
        match self {
            KeySlot::Primary => KeySlot::Secondary,
            KeySlot::Secondary => KeySlot::Primary,
        }
    }
    /// `Primary` or `Secondary` (`status.auth.activeKey`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeySlot::Primary => "Primary",
            KeySlot::Secondary => "Secondary",
        }
    }
    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Primary" => Some(KeySlot::Primary),
            "Secondary" => Some(KeySlot::Secondary),
            _ => None,
        }
    }
}

/// Both access keys as the backend holds them now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPair {
    /// The primary key.
    pub primary: Credential,
    /// The secondary key.
    pub secondary: Credential,
}

impl KeyPair {
    /// The key in `slot`.
    pub fn get(&self, slot: KeySlot) -> &Credential {
        match slot {
            KeySlot::Primary => &self.primary,
            KeySlot::Secondary => &self.secondary,
        }
    }
    /// The slot holding `key`, if either does.
    pub fn slot_of(&self, key: &Credential) -> Option<KeySlot> {
        if &self.primary == key {
            Some(KeySlot::Primary)
        } else if &self.secondary == key {
            Some(KeySlot::Secondary)
        } else {
            None
        }
    }
}

/// How a delete is going.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Confirmed gone.
    Gone,
    /// The backend is deleting it; ask again later.
    InProgress,
    /// It exists but is not ours: left alone, nothing more to do for us.
    NotOwned,
}

/// The outcome of one delete step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// Everything is gone (or was not ours); `summary` says what was done.
    Done { summary: String, notes: Vec<Note> },
    /// Still deleting `what`; ask again later.
    InProgress { what: String, notes: Vec<Note> },
}

/// What a backend would create, for `plan`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Planned {
    /// One line per object, e.g. `replication group k8s-shop-x-1a2b (valkey 8.0, cache.t4g.small)`.
    pub objects: Vec<String>,
    /// The same, in detail, for `-o json`.
    pub detail: serde_json::Value,
    /// Notes for the reader (placeholders used, approximations).
    pub notes: Vec<String>,
}

/// A place caches live: one instance per RedisCacheClass.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Which provider this is.
    fn provider(&self) -> ProviderKind;

    /// The identity `R` of `namespace/name` within the backend's name rules.
    fn identity(&self, cluster: &str, namespace: &str, name: &str) -> String;

    /// What the identity names, for messages: `replication group R`.
    fn describe(&self, backend_id: &str) -> String;

    /// Refuses, by field path, every portable field this backend cannot honour.
    fn validate(&self, cache: &RedisCache, spec: &PortableSpec) -> Result<(), ValidationErrors>;

    /// What would be created (pure; for `plan`).
    fn plan(
        &self,
        cache: &RedisCache,
        spec: &PortableSpec,
        backend_id: &str,
        owner: &Ownership,
    ) -> Result<Planned, ValidationErrors>;

    /// One bounded step toward the spec.
    async fn converge(&self, req: &CacheRequest<'_>) -> Result<Converged, StepFailure>;

    /// Who makes the credential.
    fn credential_origin(&self) -> CredentialOrigin {
        CredentialOrigin::Operator
    }

    /// How the credential is rotated.
    fn rotation_style(&self) -> RotationStyle {
        RotationStyle::Overlapping
    }

    /// Sends one step of the rotation protocol. For Add and Retire, whether
    /// it took effect shows in a later [`Observed::credential_changed_at`];
    /// Reset returns the new credential.
    async fn rotate_credentials(
        &self,
        req: &CacheRequest<'_>,
        step: RotationStep<'_>,
    ) -> Result<Option<Credential>, BackendError>;

    /// Both access keys ([`RotationStyle::AlternateKeys`] backends only).
    async fn access_keys(&self, _req: &CacheRequest<'_>) -> Result<KeyPair, BackendError> {
        Err(BackendError::new(
            ErrorClass::Rejected,
            None,
            "this backend has no access keys to list",
        ))
    }

    /// Regenerates the access key in `slot` ([`RotationStyle::AlternateKeys`]
    /// backends only). Whether it took effect shows in a later
    /// [`Backend::access_keys`] (the key in that slot changed).
    async fn regenerate_key(
        &self,
        _req: &CacheRequest<'_>,
        _slot: KeySlot,
    ) -> Result<(), BackendError> {
        Err(BackendError::new(
            ErrorClass::Rejected,
            None,
            "this backend has no access keys to regenerate",
        ))
    }

    /// One step of deleting the cache by `policy` (never `Retain`, which the
    /// core handles without the backend). Done only once the backend confirms.
    async fn delete(
        &self,
        cache: &RedisCache,
        backend_id: &str,
        owner: &Ownership,
        policy: DeletionPolicy,
    ) -> Result<Deleted, BackendError>;

    /// One cheap read that shows the class's credentials and endpoint work;
    /// `Ok` says what was checked.
    async fn check(&self) -> Result<String, BackendError>;
}
