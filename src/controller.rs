//! The `run` subcommand: a RedisCache controller per watched namespace
//! (owned Secrets watched metadata-only, class changes re-queue their
//! caches), the RedisCacheClass controller, Lease-based leader election,
//! admin server, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{future, FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{controller, watcher, Controller, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{RedisCache, RedisCacheClass};
use crate::backends::{Registry, CACHE_LABEL};
use crate::cache_watch;
use crate::health::{self, HealthConfig, HealthRegistry, Prober};
use crate::http::{self, AdminState};
use crate::leader::{self, LeaderState, LeaseConfig};
use crate::metrics::Metrics;
use crate::reconcile::class::{self as classes, ClassContext};
use crate::reconcile::secret::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::reconcile::{self, Context, Polling};

/// Everything `run` needs besides the clients.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// `--cluster-name`: part of every backend identity.
    pub cluster_name: String,
    /// Namespaces to watch; empty means all.
    pub watch_namespaces: Vec<String>,
    /// Reconciles running at once (per namespace controller).
    pub concurrency: u16,
    pub polling: Polling,
    pub leader_election: Option<LeaderElection>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served; `None` for no server.
    pub http_addr: Option<SocketAddr>,
    /// Name reported on Events (the pod name in a cluster).
    pub instance: String,
    /// The cache health probe; `None` when it is off.
    pub health: Option<HealthConfig>,
    /// How long in-flight reconciles may take to finish on shutdown before
    /// the Lease is released anyway (shorter than the pod's grace period).
    pub shutdown_timeout: Duration,
}

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub lease_namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    /// Time between renewals; the leader stops acting once
    /// `lease_duration - renew_every` passed without one.
    pub renew_every: Duration,
}

/// Runs the operator until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    config: RunConfig,
    backends: Arc<Registry>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ready = Arc::new(AtomicBool::new(false));
    let admin = config.http_addr.map(|addr| {
        let state = AdminState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        };
        tokio::spawn(http::serve(addr, state, shutdown.clone()))
    });
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "redis-cache-operator".into(),
            instance: Some(config.instance.clone()),
        },
    );
    let prober = config
        .health
        .as_ref()
        .map(|h| prober(h, &metrics))
        .transpose()?;
    let classes = watch_classes(&client, shutdown.clone());
    let (may_act, fence) = watch::channel(config.leader_election.is_none());
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            backends,
            classes,
            config.cluster_name.clone(),
            recorder,
            metrics.clone(),
            config.polling.clone(),
        )
        .with_health(prober.as_ref().map(|p| p.registry.clone()))
        .with_fence(fence),
    );
    let prober = prober.as_ref();

    match &config.leader_election {
        None => {
            metrics.set_leader_state(LeaderState::Leading);
            ready.store(true, Ordering::Relaxed);
            run_controllers(&client, &config, ctx, prober, shutdown.clone()).await;
        }
        Some(le) => {
            let released = CancellationToken::new();
            let (state, lease_task) = leader::spawn(
                client.clone(),
                LeaseConfig {
                    name: le.lease_name.clone(),
                    namespace: le.lease_namespace.clone(),
                    identity: le.identity.clone(),
                    duration: le.lease_duration,
                    renew_every: le.renew_every,
                },
                shutdown.clone(),
                released.clone(),
            );
            tokio::spawn(publish_leader_state(
                state.clone(),
                may_act,
                ready.clone(),
                metrics.clone(),
            ));
            lead_while_elected(&client, &config, ctx, prober, state, shutdown.clone()).await;
            // In-flight reconciles are done (or out of time): hand over now.
            released.cancel();
            if let Err(e) = lease_task.await {
                tracing::warn!("leader election task: {e}");
            }
        }
    }
    shutdown.cancel();
    if let Some(admin) = admin {
        admin.await??;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Mirrors the election into the reconcile fence, `/readyz` (false only
/// after a lost lease, until the API server answers again) and the gauge.
async fn publish_leader_state(
    mut state: watch::Receiver<LeaderState>,
    may_act: watch::Sender<bool>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) {
    loop {
        let s = *state.borrow_and_update();
        let _ = may_act.send(s == LeaderState::Leading);
        ready.store(s != LeaderState::Lost, Ordering::Relaxed);
        metrics.set_leader_state(s);
        if state.changed().await.is_err() {
            let _ = may_act.send(false);
            return;
        }
    }
}

/// Runs the controllers while this replica holds the Lease; stands by
/// otherwise. On shutdown, in-flight reconciles get `shutdown_timeout`.
async fn lead_while_elected(
    client: &Client,
    config: &RunConfig,
    ctx: Arc<Context>,
    prober: Option<&Prober>,
    mut state: watch::Receiver<LeaderState>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = state.wait_for(|s| *s == LeaderState::Leading) => if r.is_err() {
                tracing::error!("leader election stopped; shutting down");
                return;
            },
        }
        tracing::info!("starting controllers");
        let stop = shutdown.child_token();
        let mut lost = state.clone();
        let stop_on_loss = stop.clone();
        let watch_loss = tokio::spawn(async move {
            let _ = lost.wait_for(|s| *s != LeaderState::Leading).await;
            stop_on_loss.cancel();
        });
        let out_of_time = async {
            stop.cancelled().await;
            tokio::time::sleep(config.shutdown_timeout).await;
        };
        tokio::select! {
            _ = run_controllers(client, config, ctx.clone(), prober, stop.clone()) => {}
            _ = out_of_time => tracing::warn!(
                "in-flight reconciles did not finish within {:?}; stopping anyway (they resume on the next leader)",
                config.shutdown_timeout
            ),
        }
        watch_loss.abort();
        if shutdown.is_cancelled() {
            return;
        }
        tracing::warn!("not leading; controllers stopped, standing by");
    }
}

/// Every RedisCacheClass, kept for the life of the process (standbys too,
/// so a new leader resolves classes at once).
fn watch_classes(client: &Client, stop: CancellationToken) -> Store<RedisCacheClass> {
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(
            Api::<RedisCacheClass>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects()
    .take_until(stop.cancelled_owned());
    tokio::spawn(stream.for_each(|r| {
        if let Err(e) = r {
            tracing::warn!("RedisCacheClass watch: {e}");
        }
        future::ready(())
    }));
    reader
}

/// Metadata of `K` in `ns` (all namespaces for `None`).
fn scoped<K>(client: &Client, ns: &Option<String>) -> Api<PartialObjectMeta<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The health prober and its registry, with the TLS trust the flags ask for.
fn prober(h: &HealthConfig, metrics: &Metrics) -> anyhow::Result<Prober> {
    let roots = health::root_store(h.ca_file.as_deref())?;
    Ok(Prober {
        registry: Arc::new(HealthRegistry::new(
            metrics.health_gauges().clone(),
            h.status_min_interval,
        )),
        tls: health::client_config(roots)?,
        interval: h.interval,
        timeout: h.timeout,
        concurrency: h.concurrency,
        resolver: h.resolver.clone(),
    })
}

/// One controller per watched namespace (or one for all), until `stop`, each
/// with a health prober beside it when the probe is on.
async fn run_controllers(
    client: &Client,
    config: &RunConfig,
    ctx: Arc<Context>,
    prober: Option<&Prober>,
    stop: CancellationToken,
) {
    let scopes: Vec<Option<String>> = if config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        config.watch_namespaces.iter().cloned().map(Some).collect()
    };
    let stop_probing = stop.child_token();
    let mut probers = Vec::new();
    let mut stores = Vec::new();
    let controllers: Vec<_> = scopes
        .into_iter()
        .map(|ns| {
            let secrets: Api<PartialObjectMeta<Secret>> = match &ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            // Metadata only: the operator never needs other Secrets' data in memory.
            let owned_secrets = watcher(
                secrets,
                watcher::Config::default()
                    .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
            )
            .default_backoff()
            .touched_objects();
            // The in-cluster backend's StatefulSets, Services and ConfigMaps:
            // an edited or deleted one is repaired, a pod change (the
            // StatefulSet's status) looked at. Metadata only, by label.
            let by_label = || watcher::Config::default().labels(CACHE_LABEL);
            let owned_statefulsets = watcher(scoped::<StatefulSet>(client, &ns), by_label())
                .default_backoff()
                .touched_objects();
            let owned_services = watcher(scoped::<Service>(client, &ns), by_label())
                .default_backoff()
                .touched_objects();
            let owned_config_maps = watcher(scoped::<ConfigMap>(client, &ns), by_label())
                .default_backoff()
                .touched_objects();
            // A RedisCache that does not parse is reported, not fatal.
            let (store, writer) = reflector::store();
            let caches = cache_watch::caches(client.clone(), ns.as_deref(), writer);
            let controller = Controller::for_stream(caches, store.clone());
            stores.push(store.clone());
            let mut controller = controller
                .owns_stream(owned_secrets)
                .owns_stream(owned_statefulsets)
                .owns_stream(owned_services)
                .owns_stream(owned_config_maps)
                // A class change re-queues the caches that use it.
                .watches(
                    Api::<RedisCacheClass>::all(client.clone()),
                    watcher::Config::default(),
                    move |class| classes::caches_of(&class, &store),
                )
                .with_config(controller::Config::default().concurrency(config.concurrency))
                .graceful_shutdown_on(stop.clone().cancelled_owned());
            // A backend that sees a cache's state change by itself (the
            // fleet poller: a group became available) has it reconciled now.
            {
                let (trigger, woken) = mpsc::channel(1024);
                controller = controller.reconcile_on(woken);
                let store = controller.store();
                let wakeups = ctx.backends.wakeups().subscribe();
                tokio::spawn(forward_wakeups(wakeups, store, trigger, stop.clone()));
            }
            // The prober reads the controller's cache store and asks for a
            // reconcile when health changes; the reconciler writes status.
            if let Some(p) = prober {
                let (trigger, changed) = mpsc::channel(1024);
                controller = controller.reconcile_on(changed);
                let store = controller.store();
                let secrets: Arc<dyn health::SecretReader> = Arc::new(client.clone());
                let (p, stop) = (p.clone(), stop_probing.clone());
                probers.push(tokio::spawn(async move {
                    p.run(store, secrets, ns, trigger, stop).await
                }));
            }
            controller
                .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
                .for_each(|result| {
                    if let Err(e) = result {
                        log_controller_error(&e);
                    }
                    future::ready(())
                })
                .boxed()
        })
        .collect();
    future::join(
        future::join_all(controllers),
        class_controller(client, config, ctx.clone(), stores, stop.clone()),
    )
    .await;
    stop_probing.cancel();
    for p in probers {
        if let Err(e) = p.await {
            tracing::warn!("health prober: {e}");
        }
    }
    // A replica that stops leading stops probing: no stale per-cache gauges.
    if let Some(p) = prober {
        p.registry.clear();
    }
}

/// Turns backend identities from the backends' wake-ups into reconciles of
/// the caches in `store` that have them, until `stop`.
async fn forward_wakeups(
    mut wakeups: tokio::sync::broadcast::Receiver<String>,
    store: Store<RedisCache>,
    mut trigger: mpsc::Sender<reflector::ObjectRef<RedisCache>>,
    stop: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let id = tokio::select! {
            () = stop.cancelled() => return,
            got = wakeups.recv() => match got {
                Ok(id) => id,
                // Missed ones are seen at their next poll.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
        };
        let woken = store.state().into_iter().filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.backend_id())
                .is_some_and(|b| b == id)
        });
        for cache in woken {
            let _ = trigger.try_send(reflector::ObjectRef::from_obj(cache.as_ref()));
        }
    }
}

/// The RedisCacheClass controller: `Ready` and `caches` per class.
async fn class_controller(
    client: &Client,
    config: &RunConfig,
    ctx: Arc<Context>,
    caches: Vec<Store<RedisCache>>,
    stop: CancellationToken,
) {
    let class_ctx = Arc::new(ClassContext {
        client: client.clone(),
        backends: ctx.backends.clone(),
        caches,
        interval: config.polling.settled,
    });
    let run = Controller::new(
        Api::<RedisCacheClass>::all(client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(stop.cancelled_owned())
    .run(
        classes::reconcile_class,
        classes::class_error_policy,
        class_ctx,
    )
    .for_each(|r| {
        if let Err(e) = r {
            match e {
                controller::Error::ReconcilerFailed(..) => {}
                other => tracing::warn!("class controller: {other}"),
            }
        }
        future::ready(())
    });
    run.await;
}

fn log_controller_error(e: &controller::Error<reconcile::Error, watcher::Error>) {
    match e {
        // Reconcile failures are logged by error_policy already.
        controller::Error::ReconcilerFailed(..) => {}
        other => tracing::warn!("controller: {other}"),
    }
}
