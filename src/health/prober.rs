//! The prober loop: every interval, probe every `Ready` cache (bounded
//! concurrency, per-probe timeout), record the result, and ask the controller
//! to reconcile a cache whose health changed meaningfully so the reconciler,
//! the one status writer, publishes it. It runs beside the controllers and
//! never holds them up.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use rustls::ClientConfig;
use tokio_util::sync::CancellationToken;

use super::probe::{probe, ProbeTarget};
use super::registry::HealthRegistry;
use crate::api::conditions;
use crate::api::RedisCache;
use crate::backends::Credential;
use crate::reconcile::secret::PASSWORD_KEY;

/// Reads connection Secrets (the Kubernetes API in production).
#[async_trait::async_trait]
pub trait SecretReader: Send + Sync {
    /// The Secret `namespace/name`, `None` when it does not exist.
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Secret>, kube::Error>;
}

#[async_trait::async_trait]
impl SecretReader for Client {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Secret>, kube::Error> {
        Api::<Secret>::namespaced(self.clone(), namespace)
            .get_opt(name)
            .await
    }
}

/// How the prober probes.
#[derive(Clone)]
pub struct Prober {
    pub registry: Arc<HealthRegistry>,
    pub tls: Arc<ClientConfig>,
    /// Time between rounds.
    pub interval: Duration,
    /// Limit for one probe (all shard primaries).
    pub timeout: Duration,
    /// Probes running at once.
    pub concurrency: usize,
    /// Finds cache hosts without DNS, when set.
    pub resolver: Option<super::Resolver>,
}

impl Prober {
    /// Probes the caches in `store` every interval until `stop`. `scope` is the
    /// namespace the store watches (`None` for all); caches of that scope gone
    /// from the store are forgotten. Changes are sent to `trigger`.
    pub async fn run(
        &self,
        store: Store<RedisCache>,
        secrets: Arc<dyn SecretReader>,
        scope: Option<String>,
        trigger: mpsc::Sender<ObjectRef<RedisCache>>,
        stop: CancellationToken,
    ) {
        // Give the controller's first list a moment; an empty or partial
        // store only means fewer probes this round.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::timeout(self.interval, store.wait_until_ready()) => {}
        }
        tracing::debug!(scope = scope.as_deref().unwrap_or("*"), interval = ?self.interval, "health prober running");
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut trigger = trigger;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let caches = store.state();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.round(&caches, secrets.as_ref(), scope.as_deref(), &mut trigger) => {}
            }
        }
    }

    /// One round over `caches` (everything the store holds for `scope`).
    pub async fn round(
        &self,
        caches: &[Arc<RedisCache>],
        secrets: &dyn SecretReader,
        scope: Option<&str>,
        trigger: &mut mpsc::Sender<ObjectRef<RedisCache>>,
    ) {
        let present: HashSet<String> = caches.iter().map(|c| key(c)).collect();
        self.registry.retain(|k| {
            let in_scope = scope.is_none_or(|ns| k.split_once('/').map(|(n, _)| n) == Some(ns));
            !in_scope || present.contains(k)
        });
        let mut probes = Vec::new();
        for cache in caches {
            if is_ready(cache) {
                probes.push(self.probe_one(cache.clone(), secrets));
            }
        }
        let mut results = futures::stream::iter(probes).buffer_unordered(self.concurrency.max(1));
        while let Some((cache, result)) = results.next().await {
            let Some(result) = result else { continue };
            let k = key(&cache);
            let changed = self.registry.record(&k, &result);
            match &result {
                Ok(s) => tracing::debug!(cache = %k, latency = ?s.latency, "health probe answered"),
                Err(e) if changed => {
                    tracing::warn!(cache = %k, reason = e.kind.reason(), "health probe failed: {}", e.message)
                }
                Err(e) => {
                    tracing::debug!(cache = %k, reason = e.kind.reason(), "health probe failed: {}", e.message)
                }
            }
            if changed {
                // A full channel means reconciles are queued already; the next
                // one reads the registry anyway.
                let _ = trigger.try_send(ObjectRef::from_obj(cache.as_ref()));
            }
        }
    }
}

impl Prober {
    /// Probes one cache; `None` when its Secret gives no target.
    async fn probe_one(
        &self,
        cache: Arc<RedisCache>,
        secrets: &dyn SecretReader,
    ) -> (
        Arc<RedisCache>,
        Option<Result<super::HealthSample, super::ProbeError>>,
    ) {
        let Some(mut target) = target_of(&cache, secrets).await else {
            return (cache, None);
        };
        if let Some(r) = &self.resolver {
            target.connect_to =
                (r.0)(&target.host).map(|ip| std::net::SocketAddr::new(ip, target.port));
        }
        // A cache with its own CA (the Secret's ca.crt) is verified against it.
        let tls = match target
            .ca_pem
            .as_deref()
            .map(|pem| super::roots_from_pem(pem.as_bytes()).and_then(super::client_config))
        {
            Some(Ok(tls)) => tls,
            Some(Err(e)) => {
                tracing::debug!(cache = %key(&cache), "not probing: the Secret's ca.crt is unusable: {e}");
                return (cache, None);
            }
            None => self.tls.clone(),
        };
        let result = Some(probe(&target, &tls, self.timeout).await);
        (cache, result)
    }
}

fn key(cache: &RedisCache) -> String {
    format!(
        "{}/{}",
        cache.namespace().unwrap_or_default(),
        cache.name_any()
    )
}

/// `Ready=True` and not being deleted.
fn is_ready(cache: &RedisCache) -> bool {
    cache.metadata.deletion_timestamp.is_none()
        && cache
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, conditions::READY))
            .is_some_and(|c| c.status == "True")
}

/// The endpoint and token from the cache's connection Secret; `None` (logged)
/// when they cannot be read, which is the reconciler's business to report.
async fn target_of(cache: &RedisCache, secrets: &dyn SecretReader) -> Option<ProbeTarget> {
    let k = key(cache);
    let namespace = cache.namespace()?;
    let name = cache.status.as_ref()?.connection_secret.clone()?;
    let secret = match secrets.get(&namespace, &name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            tracing::debug!(cache = %k, "not probing: Secret {name} does not exist");
            return None;
        }
        Err(e) => {
            tracing::debug!(cache = %k, "not probing: reading Secret {name}: {e}");
            return None;
        }
    };
    let target = target_from_secret(&secret);
    if target.is_none() {
        tracing::debug!(cache = %k, "not probing: Secret {name} has no host or port");
    }
    target
}

/// The probe target described by a connection Secret's `host`, `port`,
/// `password`, `tls` and `clusterMode` keys.
pub fn target_from_secret(secret: &Secret) -> Option<ProbeTarget> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    let host = text("host").filter(|h| !h.is_empty())?;
    let port = text("port")?.parse().ok()?;
    Some(ProbeTarget {
        host,
        port,
        tls: text("tls").is_none_or(|t| t != "false"),
        token: text(PASSWORD_KEY)
            .filter(|t| !t.is_empty())
            .map(Credential::new),
        cluster: text("clusterMode").is_some_and(|m| m == "Enabled"),
        ca_pem: text("ca.crt").filter(|c| !c.is_empty()),
        connect_to: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    #[test]
    fn targets_come_from_the_secret_keys() {
        let secret = |pairs: &[(&str, &str)]| Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        };
        let t = target_from_secret(&secret(&[
            ("host", "c.example"),
            ("port", "6379"),
            ("password", "tok"),
            ("tls", "true"),
            ("clusterMode", "Enabled"),
        ]))
        .expect("complete");
        assert_eq!(
            (t.host.as_str(), t.port, t.tls, t.cluster),
            ("c.example", 6379, true, true)
        );
        assert_eq!(t.token.as_ref().map(Credential::expose), Some("tok"));
        assert!(!format!("{t:?}").contains("tok\""), "token never in Debug");
        assert!(target_from_secret(&secret(&[("password", "tok")])).is_none());
        assert!(target_from_secret(&secret(&[("host", "h"), ("port", "x")])).is_none());
    }
}
