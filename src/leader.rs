//! Leader election on a `coordination.k8s.io` Lease, written so that a
//! leader that cannot renew stops acting *before* its lease can expire for
//! the others (no split brain), says so (an `ERROR` line, the
//! `redis_cache_operator_leader{state}` gauge, `/readyz` false) and then
//! competes again; and so that a leader shutting down releases the Lease and
//! a standby takes over at once.
//!
//! A standby decides that a lease expired from its own monotonic clock (how
//! long it has seen the same record unchanged), like client-go, so clock
//! skew between nodes cannot make it take over early.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where a replica stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderState {
    /// Another replica leads (or none yet); this one waits.
    Standby,
    /// This replica holds the Lease and acts.
    Leading,
    /// This replica led but could not renew in time; it stopped acting and
    /// competes again once the API server answers.
    Lost,
}

impl LeaderState {
    /// Every state, for the gauge.
    pub const ALL: [LeaderState; 3] = [
        LeaderState::Standby,
        LeaderState::Leading,
        LeaderState::Lost,
    ];

    /// The gauge's `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaderState::Standby => "standby",
            LeaderState::Leading => "leading",
            LeaderState::Lost => "lost",
        }
    }
}

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// Time between renewals (and between attempts of a standby); the
    /// leader steps down when `duration - renew_every` has passed since its
    /// last renewal, so it is never acting when a standby may take over.
    pub renew_every: Duration,
}

/// What one attempt found.
enum Attempt {
    Holding,
    HeldByOther,
}

/// The elector's memory between attempts.
struct Observed {
    /// The record last seen (holder and renew time) and when it was seen.
    record: Option<(String, Option<MicroTime>)>,
    since: Instant,
}

/// Runs the election until `shutdown`; publishes the state on the returned
/// channel. On shutdown it waits for `released` to be cancelled (the
/// controllers have finished), then gives the Lease up.
pub fn spawn(
    client: Client,
    config: LeaseConfig,
    shutdown: CancellationToken,
    release_when: CancellationToken,
) -> (watch::Receiver<LeaderState>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(LeaderState::Standby);
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let task = tokio::spawn(run(api, config, tx, shutdown, release_when));
    (rx, task)
}

async fn run(
    api: Api<Lease>,
    cfg: LeaseConfig,
    tx: watch::Sender<LeaderState>,
    shutdown: CancellationToken,
    release_when: CancellationToken,
) {
    let mut observed = Observed {
        record: None,
        since: Instant::now(),
    };
    let mut last_renewal: Option<Instant> = None;
    let step_down_after = cfg.duration.saturating_sub(cfg.renew_every);
    loop {
        let leading = *tx.borrow() == LeaderState::Leading;
        // A leader's attempt may not outlast its own deadline.
        let budget = match (leading, last_renewal) {
            (true, Some(t)) => step_down_after.saturating_sub(t.elapsed()),
            _ => cfg.renew_every,
        }
        .max(Duration::from_millis(10));
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = tokio::time::timeout(budget, attempt(&api, &cfg, &mut observed)) => r,
        };
        match attempt {
            Ok(Ok(Attempt::Holding)) => {
                last_renewal = Some(Instant::now());
                if !leading {
                    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                    let _ = tx.send(LeaderState::Leading);
                }
            }
            Ok(Ok(Attempt::HeldByOther)) => {
                if leading {
                    tracing::warn!(lease = %cfg.name, "another replica holds the Lease now; standing by");
                }
                if *tx.borrow() != LeaderState::Standby {
                    let _ = tx.send(LeaderState::Standby);
                }
            }
            Ok(Err(e)) => failed(
                &tx,
                &cfg,
                leading,
                last_renewal,
                step_down_after,
                &e.to_string(),
            ),
            Err(_) => failed(
                &tx,
                &cfg,
                leading,
                last_renewal,
                step_down_after,
                "no answer in time",
            ),
        }
        let pause = match *tx.borrow() {
            LeaderState::Leading => cfg.renew_every,
            // Try again soon: the deadline is what matters, not the period.
            _ => cfg.renew_every / 2,
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    if *tx.borrow() == LeaderState::Leading {
        // In-flight reconciles finish first; then the standby may take over.
        release_when.cancelled().await;
        match release(&api, &cfg).await {
            Ok(()) => tracing::info!(lease = %cfg.name, "released the leader Lease"),
            Err(e) => {
                tracing::warn!(lease = %cfg.name, "releasing the leader Lease: {e}; the standby takes over when it expires")
            }
        }
    }
    let _ = tx.send(LeaderState::Standby);
}

/// A failed attempt: a leader past its deadline steps down at once.
fn failed(
    tx: &watch::Sender<LeaderState>,
    cfg: &LeaseConfig,
    leading: bool,
    last_renewal: Option<Instant>,
    step_down_after: Duration,
    error: &str,
) {
    let overdue = last_renewal.is_none_or(|t| t.elapsed() >= step_down_after);
    if leading && overdue {
        tracing::error!(
            lease = %cfg.name,
            "lost leadership: the Lease could not be renewed for {:?} ({error}); stopped acting before it can expire, competing again",
            last_renewal.map(|t| t.elapsed()).unwrap_or_default()
        );
        let _ = tx.send(LeaderState::Lost);
    } else if leading {
        tracing::warn!(lease = %cfg.name, "renewing the leader Lease failed ({error}); retrying");
    } else {
        tracing::debug!(lease = %cfg.name, "leader election attempt failed: {error}");
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// One acquire-or-renew.
async fn attempt(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observed: &mut Observed,
) -> Result<Attempt, kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(seconds(cfg.duration)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Holding),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let record = (holder.clone(), spec.renew_time.clone());
    if observed.record.as_ref() != Some(&record) {
        observed.record = Some(record);
        observed.since = Instant::now();
    }
    let held_for = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(cfg.duration);
    let mine = holder == cfg.identity;
    let free = holder.is_empty() || observed.since.elapsed() > held_for;
    if !mine && !free {
        return Ok(Attempt::HeldByOther);
    }
    let mut next = spec;
    if !mine {
        next.acquire_time = Some(now());
        next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
    }
    next.holder_identity = Some(cfg.identity.clone());
    next.lease_duration_seconds = Some(seconds(cfg.duration));
    next.renew_time = Some(now());
    lease.spec = Some(next);
    // The resourceVersion makes this a compare-and-swap: one winner.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Attempt::Holding),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up: no holder, so a standby takes it at its next attempt.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        return Ok(());
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(1);
    lease.spec = Some(spec);
    api.replace(&cfg.name, &PostParams::default(), &lease)
        .await?;
    Ok(())
}
