//! Prometheus metrics served on `/metrics`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::Phase;
use crate::health::HealthGauges;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
    class: String,
    provider: String,
}

/// Where one cache stands, for the `caches` gauge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachePhase {
    pub phase: Phase,
    /// Its RedisCacheClass (empty before one is resolved).
    pub class: String,
    pub provider: String,
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    duration: Histogram,
    caches: Family<PhaseLabels, Gauge>,
    leader: Family<StateLabels, Gauge>,
    phases: Mutex<HashMap<String, CachePhase>>,
    /// Per-cache metrics, named `redis_cache_*` (no operator prefix).
    cache_registry: Registry,
    health: HealthGauges,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Sets the leader election state gauge.
    pub fn set_leader_state(&self, state: crate::leader::LeaderState) {
        for s in crate::leader::LeaderState::ALL {
            self.leader
                .get_or_create(&StateLabels {
                    state: s.as_str().into(),
                })
                .set(i64::from(s == state));
        }
    }

    /// Registers every metric under the `redis_cache_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("redis_cache_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result (success or the failure reason)",
            reconciles.clone(),
        );
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        let caches = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "caches",
            "RedisCaches by phase, class and provider",
            caches.clone(),
        );
        let leader = Family::<StateLabels, Gauge>::default();
        registry.register(
            "leader",
            "1 for this replica's leader election state (leading, standby, lost), else 0",
            leader.clone(),
        );
        let mut cache_registry = Registry::default();
        let health = HealthGauges::register(&mut cache_registry);
        Self {
            registry,
            reconciles,
            duration,
            caches,
            leader,
            phases: Mutex::new(HashMap::new()),
            cache_registry,
            health,
        }
    }

    /// The registry, for components that add their own metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The per-cache health gauges.
    pub fn health_gauges(&self) -> &HealthGauges {
        &self.health
    }

    /// Starts timing a reconcile; call [`ReconcileTimer::finish`] with its result.
    pub fn start_reconcile(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Records where `key` (`namespace/name`) stands; `None` when it is gone.
    /// Every phase of every class with a cache is exported, zeros included.
    pub fn set_phase(&self, key: &str, phase: Option<CachePhase>) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        match phase {
            Some(p) => phases.insert(key.to_string(), p),
            None => phases.remove(key),
        };
        let mut classes: Vec<(String, String)> = phases
            .values()
            .map(|c| (c.class.clone(), c.provider.clone()))
            .collect();
        classes.sort();
        classes.dedup();
        // A class whose last cache went away is no longer exported.
        self.caches.clear();
        for (class, provider) in classes {
            for p in Phase::ALL {
                let n = phases
                    .values()
                    .filter(|x| x.phase == p && x.class == class && x.provider == provider)
                    .count();
                self.caches
                    .get_or_create(&PhaseLabels {
                        phase: p.as_str().into(),
                        class: class.clone(),
                        provider: provider.clone(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        let encoded = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &self.cache_registry))
            .and_then(|()| encode_eof(&mut out));
        if let Err(e) = encoded {
            tracing::error!("encoding metrics: {e}");
        }
        out
    }
}

/// Times one reconcile.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl ReconcileTimer<'_> {
    /// Records the duration and the result.
    pub fn finish(self, result: &str) {
        self.metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics
            .reconciles
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_and_phases_are_exported() {
        let m = Metrics::new();
        m.start_reconcile().finish("success");
        m.start_reconcile().finish("AwsRejected");
        let at = |phase| {
            Some(CachePhase {
                phase,
                class: "aws".into(),
                provider: "ElastiCache".into(),
            })
        };
        m.set_phase("a/x", at(Phase::Ready));
        m.set_phase("a/y", at(Phase::Ready));
        m.set_phase("a/z", at(Phase::Provisioning));
        m.set_phase("a/y", None);
        let text = m.encode();
        assert!(
            text.contains(r#"redis_cache_operator_reconciles_total{result="success"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"redis_cache_operator_reconciles_total{result="AwsRejected"} 1"#));
        let caches = |phase: &str| {
            format!(
                r#"redis_cache_operator_caches{{phase="{phase}",class="aws",provider="ElastiCache"}}"#
            )
        };
        assert!(text.contains(&format!("{} 1", caches("Ready"))), "{text}");
        assert!(text.contains(&format!("{} 1", caches("Provisioning"))));
        assert!(text.contains(&format!("{} 0", caches("Failed"))));
        assert!(text.contains("redis_cache_operator_reconcile_duration_seconds_count 2"));
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");

        let up = crate::health::CacheLabels {
            namespace: "a".into(),
            name: "x".into(),
        };
        m.health_gauges().observe(
            &up,
            &Ok(crate::health::HealthSample {
                nodes: 1,
                ..Default::default()
            }),
        );
        let text = m.encode();
        assert!(
            text.contains(r#"redis_cache_up{namespace="a",name="x"} 1"#),
            "{text}"
        );
        m.health_gauges().remove(&up);
        assert!(!m.encode().contains("redis_cache_up{"));
    }
}
