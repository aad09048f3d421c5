//! Credential rotation (DESIGN §4), the same protocol on every backend and
//! crash-safe at every step:
//!
//! 1. **Start** — a new token is written to the rotation record (a Secret
//!    `<connection secret>-rotation`, owned by the RedisCache) *before* the
//!    backend hears of it, then [`RotationStep::Add`] (e.g. an AUTH token ROTATE):
//!    the old and the new token both work.
//! 2. **Promote** — once the backend reports the credentials changed after
//!    the start, the connection Secret gets the new token.
//! 3. **Set** — after `auth.rotationGracePeriod`, [`RotationStep::Retire`]
//!    (e.g. an AUTH token SET) makes the new token the only one.
//! 4. **Finish** — once the backend reports that, the record drops the
//!    token and keeps the time and the request it handled.
//!
//! Backends with two access keys ([`RotationStyle::AlternateKeys`]) follow
//! the same record with their own steps: **Start** stores which key is
//! regenerated and a fingerprint of its current value, then asks for the
//! regeneration; **Promote** once that key's value differs from the
//! fingerprint (the Secret moves to it); after the grace period **Set**
//! regenerates the other key (fingerprinted first); **Finish** once it
//! changed. The Secret's key is never the one being regenerated.
//!
//! Every decision is made from what is stored (the record, the connection
//! Secret, and what the backend reports: when it last changed the
//! credentials, and whether it is busy), never from memory, so a crash after
//! any step resumes at the right place, and the connection Secret only ever
//! holds a token the backend accepts.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Resource, ResourceExt};

use super::credential::{apply_secret, apply_secret_annotated};
use super::secret;
use super::status::publish_event;
use super::{Context, Error};
use crate::api::{AuthStatus, RedisCache, ROTATE_ANNOTATION};
use crate::backends::{
    Backend, BackendError, CacheRequest, Connection, Credential, ErrorClass, KeyPair, KeySlot,
    Observed, RotationStep, RotationStyle,
};

const PENDING_KEY: &str = "pendingToken";
const PHASE: &str = "rediscache.dev/rotation-phase";
const REQUEST: &str = "rediscache.dev/rotation-request";
const STARTED: &str = "rediscache.dev/rotation-started";
const PROMOTED: &str = "rediscache.dev/rotation-promoted";
const SET_SENT: &str = "rediscache.dev/rotation-set";
const LAST: &str = "rediscache.dev/last-rotation";
const SLOT: &str = "rediscache.dev/rotation-key";
const REPLACED: &str = "rediscache.dev/rotation-replaced";
const ACTIVE: &str = "rediscache.dev/active-key";

/// Where a rotation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The new token was sent; the Secret still holds the old one.
    Rotating,
    /// The Secret holds the new token; both work until the grace period ends.
    Promoted,
    /// Retiring the old token was asked for.
    Setting,
    /// No rotation running.
    Done,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Rotating => "Rotating",
            Phase::Promoted => "Promoted",
            Phase::Setting => "Setting",
            Phase::Done => "Done",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "Rotating" => Phase::Rotating,
            "Promoted" => Phase::Promoted,
            "Setting" => Phase::Setting,
            _ => Phase::Done,
        }
    }

    /// `status.auth.state`.
    pub fn state(self) -> &'static str {
        match self {
            Phase::Rotating => "Rotating",
            Phase::Promoted => "GracePeriod",
            Phase::Setting => "Finalizing",
            Phase::Done => "Active",
        }
    }
}

/// The stored rotation record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub phase: Phase,
    pub pending: Option<Credential>,
    /// Annotation value this rotation answered (empty for a periodic one).
    pub request: String,
    pub started: Option<Timestamp>,
    pub promoted: Option<Timestamp>,
    pub set_sent: Option<Timestamp>,
    pub last_rotation: Option<Timestamp>,
    /// Alternate keys: the key being regenerated.
    pub slot: Option<KeySlot>,
    /// Alternate keys: fingerprint of that key's value before the
    /// regeneration was asked for (never the value itself).
    pub replaced: Option<String>,
    /// Alternate keys: the key the Secret holds.
    pub active: Option<KeySlot>,
}

impl Record {
    fn empty() -> Self {
        Self {
            phase: Phase::Done,
            pending: None,
            request: String::new(),
            started: None,
            promoted: None,
            set_sent: None,
            last_rotation: None,
            slot: None,
            replaced: None,
            active: None,
        }
    }

    fn from_secret(s: &Secret) -> Self {
        let ann = s.metadata.annotations.clone().unwrap_or_default();
        let time = |k: &str| ann.get(k).and_then(|v| v.parse::<Timestamp>().ok());
        let pending = s
            .data
            .as_ref()
            .and_then(|d| d.get(PENDING_KEY))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|v| !v.is_empty())
            .map(Credential::new);
        Self {
            phase: ann.get(PHASE).map_or(Phase::Done, |p| Phase::parse(p)),
            pending,
            request: ann.get(REQUEST).cloned().unwrap_or_default(),
            started: time(STARTED),
            promoted: time(PROMOTED),
            set_sent: time(SET_SENT),
            last_rotation: time(LAST),
            slot: ann.get(SLOT).and_then(|v| KeySlot::parse(v)),
            replaced: ann.get(REPLACED).cloned().filter(|v| !v.is_empty()),
            active: ann.get(ACTIVE).and_then(|v| KeySlot::parse(v)),
        }
    }

    fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::from([
            (PHASE.to_string(), self.phase.as_str().to_string()),
            (REQUEST.to_string(), self.request.clone()),
        ]);
        for (k, v) in [
            (STARTED, self.started),
            (PROMOTED, self.promoted),
            (SET_SENT, self.set_sent),
            (LAST, self.last_rotation),
        ] {
            if let Some(t) = v {
                a.insert(k.to_string(), t.to_string());
            }
        }
        for (k, v) in [(SLOT, self.slot), (ACTIVE, self.active)] {
            if let Some(v) = v {
                a.insert(k.to_string(), v.as_str().to_string());
            }
        }
        if let Some(f) = &self.replaced {
            a.insert(REPLACED.to_string(), f.clone());
        }
        a
    }
}

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing to do.
    Idle,
    /// The backend is busy; look again later.
    Wait,
    /// Begin a rotation answering `request` (the annotation value handled
    /// after it), because of the annotation or, when `periodic`, the period.
    Start { request: String, periodic: bool },
    /// (Re)send the pending token.
    SendRotate,
    /// Put the pending token into the connection Secret.
    Promote,
    /// (Re)send the retirement of the old token.
    SendSet,
    /// Record the rotation as complete.
    Finish,
}

/// The inputs of a decision.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub record: Option<&'a Record>,
    /// The backend cannot take a credential change now.
    pub busy: bool,
    /// When the backend last changed the credentials.
    pub changed_at: Option<Timestamp>,
    /// The token in the connection Secret.
    pub secret_token: &'a Credential,
    /// Value of the rotate annotation, if set.
    pub requested: Option<&'a str>,
    pub period: Option<Duration>,
    pub grace: Duration,
    /// When the RedisCache was created (the first token's age).
    pub created: Option<Timestamp>,
    pub now: Timestamp,
}

/// Decides the next rotation step from stored facts alone.
pub fn decide(f: &Facts<'_>) -> Action {
    let busy = f.busy;
    let applied_since = |t: Option<Timestamp>| match (f.changed_at, t) {
        (Some(changed), Some(t)) => changed >= t,
        _ => false,
    };
    let phase = f.record.map_or(Phase::Done, |r| r.phase);
    let pending = f.record.and_then(|r| r.pending.as_ref());
    match (phase, pending) {
        (Phase::Done, _) | (_, None) => {
            if busy {
                return Action::Idle;
            }
            let handled = f.record.map(|r| r.request.as_str()).unwrap_or_default();
            if let Some(req) = f.requested.filter(|r| !r.is_empty() && *r != handled) {
                return Action::Start {
                    request: req.to_string(),
                    periodic: false,
                };
            }
            let since = f.record.and_then(|r| r.last_rotation).or(f.created);
            match (f.period, since) {
                (Some(p), Some(since)) if elapsed(since, f.now) >= p => Action::Start {
                    request: handled.to_string(),
                    periodic: true,
                },
                _ => Action::Idle,
            }
        }
        _ if busy => Action::Wait,
        (Phase::Rotating, Some(_)) => {
            if applied_since(f.record.and_then(|r| r.started)) {
                Action::Promote
            } else {
                Action::SendRotate
            }
        }
        (Phase::Promoted, Some(token)) => {
            if token != f.secret_token {
                return Action::Promote;
            }
            let since = f.record.and_then(|r| r.promoted).unwrap_or(f.now);
            if elapsed(since, f.now) >= f.grace {
                Action::SendSet
            } else {
                Action::Wait
            }
        }
        (Phase::Setting, Some(_)) => {
            if applied_since(f.record.and_then(|r| r.set_sent)) {
                Action::Finish
            } else {
                Action::SendSet
            }
        }
    }
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    let secs = now.as_second().saturating_sub(since.as_second());
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// What a rotation step did.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Whether a backend call or a Secret write was made.
    pub acted: bool,
    /// `status.auth`.
    pub status: AuthStatus,
    /// When to look again while waiting out the grace period.
    pub wake_in: Option<Duration>,
    /// The token now in the connection Secret, when this step promoted it.
    pub promoted: Option<Credential>,
}

/// Runs one rotation step; `req.credential` is the connection Secret's token.
pub async fn advance(
    cache: &RedisCache,
    ctx: &Context,
    backend: &dyn Backend,
    req: &CacheRequest<'_>,
    observed: &Observed,
    connection: Option<&Connection>,
) -> Result<Outcome, Error> {
    let spec = req.spec;
    let owner = req.owner;
    let name = record_name(&spec.secret_name);
    let requested = cache
        .annotations()
        .get(ROTATE_ANNOTATION)
        .map(String::as_str);
    let current = cache.status.as_ref().and_then(|s| s.auth.clone());
    // Nothing can be due: no request, no period, and no rotation running.
    if requested.is_none()
        && spec.rotation_period.is_none()
        && current.as_ref().and_then(|a| a.state.as_deref()) == Some(Phase::Done.state())
    {
        return Ok(Outcome {
            acted: false,
            status: current.unwrap_or_default(),
            wake_in: None,
            promoted: None,
        });
    }
    let Some(secret_token) = req.credential else {
        // The backend has not given a credential yet: nothing to rotate.
        return Ok(Outcome {
            acted: false,
            status: current.unwrap_or_default(),
            wake_in: None,
            promoted: None,
        });
    };
    let stored = read_record(cache, ctx, &name, &owner.owner_uid).await?;
    let now = Timestamp::now();
    let created = cache.meta().creation_timestamp.as_ref().map(|t| t.0);
    if backend.rotation_style() == RotationStyle::CutOver {
        let facts = Facts {
            record: stored.as_ref(),
            busy: observed.busy,
            changed_at: None,
            secret_token,
            requested,
            period: spec.rotation_period,
            grace: spec.rotation_grace_period,
            created,
            now,
        };
        return cut_over(cache, ctx, backend, req, &facts, &name, connection).await;
    }
    if backend.rotation_style() == RotationStyle::AlternateKeys {
        let facts = Facts {
            record: stored.as_ref(),
            busy: observed.busy,
            changed_at: None,
            secret_token,
            requested,
            period: spec.rotation_period,
            grace: spec.rotation_grace_period,
            created,
            now,
        };
        let remembered = current
            .as_ref()
            .and_then(|a| a.active_key.as_deref())
            .and_then(KeySlot::parse);
        return alternate(
            cache, ctx, backend, req, &facts, remembered, &name, connection,
        )
        .await;
    }
    let action = decide(&Facts {
        record: stored.as_ref(),
        busy: observed.busy,
        changed_at: observed.credential_changed_at,
        secret_token,
        requested,
        period: spec.rotation_period,
        grace: spec.rotation_grace_period,
        created,
        now,
    });
    let sent = |source| Error::Backend {
        step: "AUTH token rotation",
        source,
    };
    let mut record = stored.clone().unwrap_or(Record::empty());
    let what = backend.describe(req.backend_id);
    let mut acted = true;
    let mut promoted = None;
    match &action {
        Action::Idle | Action::Wait => acted = false,
        Action::Start { request, periodic } => {
            record = Record {
                phase: Phase::Rotating,
                pending: Some(secret::generate_token()),
                request: request.clone(),
                started: Some(now),
                last_rotation: record.last_rotation,
                ..Record::empty()
            };
            // Stored before the backend hears of it, exactly as at create.
            write_record(cache, ctx, &name, &record).await?;
            if let Some(new) = &record.pending {
                backend
                    .rotate_credentials(req, RotationStep::Add { new })
                    .await
                    .map_err(sent)?;
            }
            let why = if *periodic {
                "auth.rotationPeriod elapsed".to_string()
            } else {
                format!("annotation {ROTATE_ANNOTATION}={request}")
            };
            publish_event(ctx, cache, false, "AuthTokenRotationStarted", &format!(
                "asked the backend to add a new AUTH token to {what} ({why}); the current token keeps working"
            )).await;
        }
        Action::SendRotate => {
            if let Some(new) = &record.pending {
                backend
                    .rotate_credentials(req, RotationStep::Add { new })
                    .await
                    .map_err(sent)?;
            }
        }
        Action::Promote => {
            if let Some(new) = record.pending.clone() {
                let data = secret::render_data(&new, connection, &spec.extra_keys);
                apply_secret(cache, ctx, &spec.secret_name, data, true).await?;
                promoted = Some(new);
                record.phase = Phase::Promoted;
                record.promoted = Some(now);
                write_record(cache, ctx, &name, &record).await?;
                publish_event(ctx, cache, false, "AuthTokenPromoted", &format!(
                    "Secret {} now holds the new AUTH token; the previous token stops working after {}",
                    spec.secret_name,
                    humantime(spec.rotation_grace_period)
                )).await;
            }
        }
        Action::SendSet => {
            if record.phase != Phase::Setting {
                record.phase = Phase::Setting;
                record.set_sent = Some(now);
                write_record(cache, ctx, &name, &record).await?;
            }
            if let Some(new) = &record.pending {
                backend
                    .rotate_credentials(req, RotationStep::Retire { keep: new })
                    .await
                    .map_err(sent)?;
            }
            publish_event(
                ctx,
                cache,
                false,
                "AuthTokenFinalizing",
                &format!("asked the backend to retire the previous AUTH token of {what}"),
            )
            .await;
        }
        Action::Finish => {
            record.phase = Phase::Done;
            record.pending = None;
            record.last_rotation = Some(now);
            write_record(cache, ctx, &name, &record).await?;
            publish_event(
                ctx,
                cache,
                false,
                "AuthTokenRotated",
                &format!(
                    "AUTH token rotated: only the token in Secret {} works now",
                    spec.secret_name
                ),
            )
            .await;
        }
    }
    let wake_in = match (record.phase, record.promoted) {
        (Phase::Promoted, Some(p)) => Some(
            spec.rotation_grace_period
                .saturating_sub(elapsed(p, now))
                .max(Duration::from_secs(1)),
        ),
        _ => None,
    };
    Ok(Outcome {
        acted,
        status: AuthStatus {
            last_rotation_time: record
                .last_rotation
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
            state: Some(record.phase.state().to_string()),
            active_key: None,
        },
        wake_in,
        promoted,
    })
}

/// Rotation on a backend that resets the credential ([`RotationStyle::CutOver`]):
/// the record is written before the reset, the Secret gets the new
/// credential in the same reconcile, and a Warning Event says clients must
/// reload it. After a crash between the reset and the Secret write, the
/// backend's next converge hands the new credential over and the record is
/// only finished here.
async fn cut_over(
    cache: &RedisCache,
    ctx: &Context,
    backend: &dyn Backend,
    req: &CacheRequest<'_>,
    facts: &Facts<'_>,
    name: &str,
    connection: Option<&Connection>,
) -> Result<Outcome, Error> {
    let now = facts.now;
    let mut record = facts.record.cloned().unwrap_or(Record::empty());
    let status = |r: &Record| AuthStatus {
        last_rotation_time: r
            .last_rotation
            .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
        state: Some(r.phase.state().to_string()),
        active_key: None,
    };
    if record.phase == Phase::Rotating {
        record.phase = Phase::Done;
        record.last_rotation = Some(now);
        write_record(cache, ctx, name, &record).await?;
        return Ok(Outcome {
            acted: true,
            status: status(&record),
            wake_in: None,
            promoted: None,
        });
    }
    let decided = decide(&Facts {
        record: Some(&record),
        ..facts.clone()
    });
    let Action::Start { request, periodic } = decided else {
        return Ok(Outcome {
            acted: false,
            status: status(&record),
            wake_in: None,
            promoted: None,
        });
    };
    record.phase = Phase::Rotating;
    record.request = request.clone();
    record.started = Some(now);
    write_record(cache, ctx, name, &record).await?;
    let new = backend
        .rotate_credentials(req, RotationStep::Reset)
        .await
        .map_err(|source| Error::Backend {
            step: "credential reset",
            source,
        })?
        .ok_or(Error::Starting(
            "the backend reset the credential but returned none",
        ))?;
    let data = secret::render_data(&new, connection, &req.spec.extra_keys);
    apply_secret(cache, ctx, &req.spec.secret_name, data, true).await?;
    record.phase = Phase::Done;
    record.last_rotation = Some(now);
    write_record(cache, ctx, name, &record).await?;
    let why = if periodic {
        "auth.rotationPeriod elapsed".to_string()
    } else {
        format!("annotation {ROTATE_ANNOTATION}={request}")
    };
    publish_event(
        ctx,
        cache,
        true,
        "CredentialReset",
        &format!(
            "reset the password of {} ({why}); Secret {} holds the new one and the old one no longer works: clients must reload the Secret",
            backend.describe(req.backend_id),
            req.spec.secret_name
        ),
    )
    .await;
    Ok(Outcome {
        acted: true,
        status: status(&record),
        wake_in: None,
        promoted: Some(new),
    })
}

/// What to do next on a backend with two access keys.
#[derive(Clone, Debug, PartialEq)]
pub enum AltAction {
    /// Nothing to do.
    Idle,
    /// The backend is busy, or the grace period runs; look again later.
    Wait,
    /// Begin a rotation: regenerate the key the Secret does not hold.
    Start { request: String, periodic: bool },
    /// Ask again for the regeneration of this key (not applied yet).
    Regenerate(KeySlot),
    /// Move the Secret to this (regenerated) key.
    Promote(KeySlot),
    /// The grace period is over: regenerate this key (the one the Secret left).
    Retire(KeySlot),
    /// Record the rotation as complete.
    Finish,
}

/// A short fingerprint of a key (the first 16 hex characters of its
/// SHA-256): tells whether a key changed without storing it.
pub fn fingerprint(key: &Credential) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(key.expose().as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key the Secret holds: the slot whose key it is, else the one
/// remembered (the Secret then follows the backend's key in that slot).
pub fn active_slot(keys: &KeyPair, secret: &Credential, remembered: Option<KeySlot>) -> KeySlot {
    keys.slot_of(secret)
        .or(remembered)
        .unwrap_or(KeySlot::Primary)
}

/// Decides the next step of an alternate-keys rotation from stored facts
/// (the record, the Secret's key) and the backend's two keys alone.
pub fn decide_alternate(f: &Facts<'_>, keys: &KeyPair) -> AltAction {
    let record = f.record.cloned().unwrap_or_else(Record::empty);
    let changed = |slot: KeySlot| record.replaced.as_deref() != Some(&fingerprint(keys.get(slot)));
    match (record.phase, record.slot) {
        (Phase::Done, _) | (_, None) => match decide(&Facts {
            record: Some(&Record {
                phase: Phase::Done,
                pending: None,
                ..record.clone()
            }),
            ..f.clone()
        }) {
            Action::Start { request, periodic } => AltAction::Start { request, periodic },
            _ => AltAction::Idle,
        },
        _ if f.busy => AltAction::Wait,
        (Phase::Rotating, Some(slot)) => {
            if changed(slot) {
                AltAction::Promote(slot)
            } else {
                AltAction::Regenerate(slot)
            }
        }
        (Phase::Promoted, Some(slot)) => {
            if keys.get(slot) != f.secret_token {
                return AltAction::Promote(slot);
            }
            let since = record.promoted.unwrap_or(f.now);
            if elapsed(since, f.now) >= f.grace {
                AltAction::Retire(slot.other())
            } else {
                AltAction::Wait
            }
        }
        (Phase::Setting, Some(slot)) => {
            if changed(slot.other()) {
                AltAction::Finish
            } else {
                AltAction::Retire(slot.other())
            }
        }
    }
}

/// A regeneration asked for again (the first one may still be running):
/// the backend being busy or throttling is no failure, the next look
/// decides again from the keys.
fn resend(result: Result<(), BackendError>) -> Result<(), BackendError> {
    match result {
        Err(e) if matches!(e.class, ErrorClass::Transient | ErrorClass::Throttled) => {
            tracing::debug!(reason = e.reason(), "key regeneration not taken yet: {e}");
            Ok(())
        }
        other => other,
    }
}

/// Rotation on a backend with two access keys ([`RotationStyle::AlternateKeys`]).
#[allow(clippy::too_many_arguments)]
async fn alternate(
    cache: &RedisCache,
    ctx: &Context,
    backend: &dyn Backend,
    req: &CacheRequest<'_>,
    facts: &Facts<'_>,
    remembered: Option<KeySlot>,
    name: &str,
    connection: Option<&Connection>,
) -> Result<Outcome, Error> {
    let sent = |source| Error::Backend {
        step: "access key rotation",
        source,
    };
    let now = facts.now;
    let keys = backend.access_keys(req).await.map_err(sent)?;
    let mut record = facts.record.cloned().unwrap_or_else(Record::empty);
    let active = active_slot(&keys, facts.secret_token, record.active.or(remembered));
    let action = decide_alternate(facts, &keys);
    let what = backend.describe(req.backend_id);
    let grace = humantime(req.spec.rotation_grace_period);
    let mut acted = true;
    let mut promoted = None;
    match &action {
        AltAction::Idle | AltAction::Wait => {
            acted = false;
            if record.phase == Phase::Done {
                record.active = Some(active);
            }
        }
        AltAction::Start { request, periodic } => {
            let standby = active.other();
            record = Record {
                phase: Phase::Rotating,
                request: request.clone(),
                started: Some(now),
                last_rotation: record.last_rotation,
                slot: Some(standby),
                replaced: Some(fingerprint(keys.get(standby))),
                active: Some(active),
                ..Record::empty()
            };
            // Stored before the backend hears of it: a crash after the
            // regeneration still knows which key changed.
            write_record(cache, ctx, name, &record).await?;
            backend.regenerate_key(req, standby).await.map_err(sent)?;
            let why = if *periodic {
                "auth.rotationPeriod elapsed".to_string()
            } else {
                format!("annotation {ROTATE_ANNOTATION}={request}")
            };
            publish_event(ctx, cache, false, "AccessKeyRegenerating", &format!(
                "regenerating the {} access key of {what} ({why}); Secret {} keeps the {} key, which keeps working",
                standby.as_str().to_lowercase(), req.spec.secret_name, active.as_str().to_lowercase()
            )).await;
        }
        AltAction::Regenerate(slot) => {
            resend(backend.regenerate_key(req, *slot).await).map_err(sent)?;
        }
        AltAction::Promote(slot) => {
            let new = keys.get(*slot).clone();
            let data = secret::render_data(&new, connection, &req.spec.extra_keys);
            apply_secret(cache, ctx, &req.spec.secret_name, data, true).await?;
            promoted = Some(new);
            if record.phase != Phase::Promoted {
                record.phase = Phase::Promoted;
                record.promoted = Some(now);
            }
            record.active = Some(*slot);
            record.replaced = None;
            write_record(cache, ctx, name, &record).await?;
            publish_event(ctx, cache, false, "AccessKeyPromoted", &format!(
                "Secret {} now holds the new {} access key; the {} key is regenerated after {grace}",
                req.spec.secret_name, slot.as_str().to_lowercase(), slot.other().as_str().to_lowercase()
            )).await;
        }
        AltAction::Retire(old) => {
            if record.phase != Phase::Setting {
                record.phase = Phase::Setting;
                record.set_sent = Some(now);
                record.replaced = Some(fingerprint(keys.get(*old)));
                write_record(cache, ctx, name, &record).await?;
                publish_event(ctx, cache, false, "AccessKeyRetiring", &format!(
                    "grace period over: regenerating the {} access key of {what}, which the Secret no longer holds",
                    old.as_str().to_lowercase()
                )).await;
            }
            let asked = backend.regenerate_key(req, *old).await;
            if record.set_sent == Some(now) {
                asked.map_err(sent)?;
            } else {
                resend(asked).map_err(sent)?;
            }
        }
        AltAction::Finish => {
            record.phase = Phase::Done;
            record.last_rotation = Some(now);
            record.replaced = None;
            record.slot = None;
            write_record(cache, ctx, name, &record).await?;
            publish_event(
                ctx,
                cache,
                false,
                "AccessKeyRotated",
                &format!(
                "access keys rotated: Secret {} holds the {} key; the previous key no longer works",
                req.spec.secret_name,
                record.active.unwrap_or(active).as_str().to_lowercase()
            ),
            )
            .await;
        }
    }
    let wake_in = match (record.phase, record.promoted) {
        (Phase::Promoted, Some(p)) => Some(
            req.spec
                .rotation_grace_period
                .saturating_sub(elapsed(p, now))
                .max(Duration::from_secs(1)),
        ),
        _ => None,
    };
    Ok(Outcome {
        acted,
        status: AuthStatus {
            last_rotation_time: record
                .last_rotation
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
            state: Some(record.phase.state().to_string()),
            active_key: Some(
                promoted
                    .as_ref()
                    .and(record.active)
                    .unwrap_or(active)
                    .as_str()
                    .to_string(),
            ),
        },
        wake_in,
        promoted,
    })
}

/// Name of the rotation record of connection Secret `secret`.
pub fn record_name(secret: &str) -> String {
    format!("{secret}-rotation")
}

async fn read_record(
    cache: &RedisCache,
    ctx: &Context,
    name: &str,
    owner_uid: &str,
) -> Result<Option<Record>, Error> {
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &cache.namespace().unwrap_or_default());
    match api.get_opt(name).await? {
        Some(s) if !secret::belongs_to(&s, owner_uid) => Err(Error::SecretConflict(name.into())),
        Some(s) => Ok(Some(Record::from_secret(&s))),
        None => Ok(None),
    }
}

async fn write_record(
    cache: &RedisCache,
    ctx: &Context,
    name: &str,
    record: &Record,
) -> Result<(), Error> {
    let data = record
        .pending
        .iter()
        .map(|t| (PENDING_KEY.to_string(), t.expose().to_string()))
        .collect();
    apply_secret_annotated(cache, ctx, name, data, true, record.annotations()).await
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the backend reports: busy, and when it last changed credentials.
    #[derive(Clone, Copy)]
    struct Group {
        busy: bool,
        changed_at: Option<Timestamp>,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum GroupStatus {
        Available,
        Modifying,
    }

    fn group(status: GroupStatus, modified: Option<Timestamp>) -> Group {
        Group {
            busy: status != GroupStatus::Available,
            changed_at: modified,
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("valid")
    }

    fn record(phase: Phase, pending: Option<&str>) -> Record {
        Record {
            phase,
            pending: pending.map(Credential::new),
            request: "1".into(),
            started: Some(t(100)),
            promoted: Some(t(200)),
            set_sent: Some(t(300)),
            last_rotation: Some(t(0)),
            slot: None,
            replaced: None,
            active: None,
        }
    }

    fn decide_with(r: Option<&Record>, g: &Group, req: Option<&str>, now: i64) -> Action {
        let old = Credential::new("old");
        decide(&Facts {
            record: r,
            busy: g.busy,
            changed_at: g.changed_at,
            secret_token: &old,
            requested: req,
            period: Some(Duration::from_secs(1000)),
            grace: Duration::from_secs(50),
            created: Some(t(0)),
            now: t(now),
        })
    }

    #[test]
    fn annotation_or_period_starts_a_rotation_once() {
        let g = group(GroupStatus::Available, None);
        assert_eq!(decide_with(None, &g, None, 10), Action::Idle);
        assert_eq!(
            decide_with(None, &g, Some("now"), 10),
            Action::Start {
                request: "now".into(),
                periodic: false
            }
        );
        let done = record(Phase::Done, None);
        assert_eq!(
            decide_with(Some(&done), &g, Some("1"), 10),
            Action::Idle,
            "handled"
        );
        assert_eq!(
            decide_with(Some(&done), &g, Some("1"), 1000),
            Action::Start {
                request: "1".into(),
                periodic: true
            },
            "period elapsed"
        );
        let busy = group(GroupStatus::Modifying, None);
        assert_eq!(decide_with(None, &busy, Some("now"), 10), Action::Idle);
    }

    #[test]
    fn rotating_promotes_only_after_the_backend_applied_the_token() {
        let r = record(Phase::Rotating, Some("new"));
        // Crash before the backend got it (or has not applied it): send again.
        let g = group(GroupStatus::Available, Some(t(50)));
        assert_eq!(decide_with(Some(&r), &g, None, 150), Action::SendRotate);
        let g = group(GroupStatus::Modifying, Some(t(50)));
        assert_eq!(decide_with(Some(&r), &g, None, 150), Action::Wait);
        let mut g = group(GroupStatus::Available, Some(t(120)));
        assert_eq!(decide_with(Some(&r), &g, None, 150), Action::Promote);
        g.busy = true; // e.g. the backend still applies a credential change
        assert_eq!(decide_with(Some(&r), &g, None, 150), Action::Wait);
    }

    #[test]
    fn set_waits_for_the_grace_period_and_the_promoted_secret() {
        let g = group(GroupStatus::Available, Some(t(120)));
        let r = record(Phase::Promoted, Some("new"));
        // The Secret still holds the old token (crash between the writes).
        assert_eq!(decide_with(Some(&r), &g, None, 210), Action::Promote);
        let new = Credential::new("new");
        let facts = |now| Facts {
            record: Some(&r),
            busy: g.busy,
            changed_at: g.changed_at,
            secret_token: &new,
            requested: None,
            period: None,
            grace: Duration::from_secs(50),
            created: None,
            now: t(now),
        };
        assert_eq!(decide(&facts(210)), Action::Wait);
        assert_eq!(decide(&facts(250)), Action::SendSet);
    }

    #[test]
    fn setting_finishes_once_the_backend_applied_the_retirement() {
        let r = record(Phase::Setting, Some("new"));
        let g = group(GroupStatus::Available, Some(t(120)));
        assert_eq!(decide_with(Some(&r), &g, None, 400), Action::SendSet);
        let g = group(GroupStatus::Available, Some(t(310)));
        assert_eq!(decide_with(Some(&r), &g, None, 400), Action::Finish);
    }

    fn keys(p: &str, s: &str) -> KeyPair {
        KeyPair {
            primary: Credential::new(p),
            secondary: Credential::new(s),
        }
    }

    fn alt_facts<'a>(
        r: Option<&'a Record>,
        secret: &'a Credential,
        busy: bool,
        now: i64,
    ) -> Facts<'a> {
        Facts {
            record: r,
            busy,
            changed_at: None,
            secret_token: secret,
            requested: Some("2"),
            period: None,
            grace: Duration::from_secs(50),
            created: Some(t(0)),
            now: t(now),
        }
    }

    fn alt_record(phase: Phase, slot: KeySlot, replaced: &Credential) -> Record {
        Record {
            phase,
            slot: Some(slot),
            replaced: Some(fingerprint(replaced)),
            active: Some(slot.other()),
            ..record(phase, None)
        }
    }

    #[test]
    fn alternate_keys_start_by_regenerating_the_key_the_secret_does_not_hold() {
        let k = keys("primary-1", "secondary-1");
        let done = record(Phase::Done, None);
        assert_eq!(
            decide_alternate(&alt_facts(Some(&done), &k.primary, false, 10), &k),
            AltAction::Start {
                request: "2".into(),
                periodic: false
            }
        );
        assert_eq!(
            active_slot(&k, &k.primary, Some(KeySlot::Secondary)),
            KeySlot::Primary,
            "the Secret's key decides, not memory"
        );
        assert_eq!(
            active_slot(&k, &Credential::new("unknown"), Some(KeySlot::Secondary)),
            KeySlot::Secondary
        );
        assert_eq!(
            decide_alternate(&alt_facts(Some(&done), &k.primary, true, 10), &k),
            AltAction::Idle,
            "busy: no start"
        );
    }

    #[test]
    fn alternate_keys_promote_only_once_the_standby_key_changed() {
        let old = keys("primary-1", "secondary-1");
        let r = alt_record(Phase::Rotating, KeySlot::Secondary, &old.secondary);
        // The regeneration has not happened (or was lost in a crash): ask again.
        assert_eq!(
            decide_alternate(&alt_facts(Some(&r), &old.primary, false, 150), &old),
            AltAction::Regenerate(KeySlot::Secondary)
        );
        assert_eq!(
            decide_alternate(&alt_facts(Some(&r), &old.primary, true, 150), &old),
            AltAction::Wait
        );
        let new = keys("primary-1", "secondary-2");
        assert_eq!(
            decide_alternate(&alt_facts(Some(&r), &old.primary, false, 150), &new),
            AltAction::Promote(KeySlot::Secondary)
        );
    }

    #[test]
    fn alternate_keys_retire_the_old_key_after_the_grace_period_only() {
        let k = keys("primary-1", "secondary-2");
        let mut r = alt_record(Phase::Promoted, KeySlot::Secondary, &k.secondary);
        r.replaced = None;
        // Crash between the record and the Secret write: promote again.
        assert_eq!(
            decide_alternate(&alt_facts(Some(&r), &k.primary, false, 210), &k),
            AltAction::Promote(KeySlot::Secondary)
        );
        assert_eq!(
            decide_alternate(&alt_facts(Some(&r), &k.secondary, false, 210), &k),
            AltAction::Wait,
            "grace period runs"
        );
        assert_eq!(
            decide_alternate(&alt_facts(Some(&r), &k.secondary, false, 250), &k),
            AltAction::Retire(KeySlot::Primary)
        );
        let s = alt_record(Phase::Setting, KeySlot::Secondary, &k.primary);
        assert_eq!(
            decide_alternate(&alt_facts(Some(&s), &k.secondary, false, 300), &k),
            AltAction::Retire(KeySlot::Primary),
            "not applied yet: sent again"
        );
        let retired = keys("primary-3", "secondary-2");
        assert_eq!(
            decide_alternate(&alt_facts(Some(&s), &k.secondary, false, 300), &retired),
            AltAction::Finish
        );
    }

    #[test]
    fn fingerprints_differ_per_key_and_do_not_contain_it() {
        let a = Credential::new("key-value-aaaaaaaa");
        let b = Credential::new("key-value-bbbbbbbb");
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
        assert!(!fingerprint(&a).contains("key-value"));
    }

    #[test]
    fn alternate_record_round_trips_through_a_secret() {
        let r = alt_record(
            Phase::Setting,
            KeySlot::Secondary,
            &Credential::new("old-key-1234"),
        );
        let mut s = secret::build("x-rotation", "ns", None, "uid", BTreeMap::new());
        s.metadata.annotations = Some(r.annotations());
        assert_eq!(Record::from_secret(&s), r);
    }

    #[test]
    fn record_round_trips_through_a_secret() {
        let r = record(Phase::Promoted, Some("tok"));
        let mut data = BTreeMap::new();
        data.insert(PENDING_KEY.to_string(), "tok".to_string());
        let mut s = secret::build("x-rotation", "ns", None, "uid", data);
        s.metadata.annotations = Some(r.annotations());
        assert_eq!(Record::from_secret(&s), r);
        assert!(
            !format!("{:?}", r).contains("tok\""),
            "Debug hides the token"
        );
    }
}
