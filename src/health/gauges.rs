//! Per-cache Prometheus gauges, labelled by namespace and name. They follow
//! every probe (fresher than status) and go away with the cache.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::probe::{HealthSample, ProbeError};

/// Labels of every per-cache gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub namespace: String,
    pub name: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The `redis_cache_*` gauges.
#[derive(Clone, Debug, Default)]
pub struct HealthGauges {
    up: Family<CacheLabels, Gauge>,
    latency: Family<CacheLabels, FloatGauge>,
    used_memory: Family<CacheLabels, Gauge>,
    max_memory: Family<CacheLabels, Gauge>,
    hit_ratio: Family<CacheLabels, FloatGauge>,
    evicted_keys: Family<CacheLabels, Gauge>,
    connected_clients: Family<CacheLabels, Gauge>,
}

impl HealthGauges {
    /// Registers the gauges in `registry` (which should have no prefix, so
    /// the names stay `redis_cache_*`).
    pub fn register(registry: &mut Registry) -> Self {
        let g = Self::default();
        registry.register(
            "redis_cache_up",
            "1 when the cache answered PING over TLS with its AUTH token at the last probe",
            g.up.clone(),
        );
        registry.register(
            "redis_cache_latency_seconds",
            "PING round trip at the last probe (slowest shard primary)",
            g.latency.clone(),
        );
        registry.register(
            "redis_cache_used_memory_bytes",
            "used_memory from INFO (summed over shard primaries)",
            g.used_memory.clone(),
        );
        registry.register(
            "redis_cache_max_memory_bytes",
            "maxmemory from INFO (summed over shard primaries); 0 means no limit",
            g.max_memory.clone(),
        );
        registry.register(
            "redis_cache_hit_ratio",
            "keyspace_hits / (keyspace_hits + keyspace_misses) since the server started",
            g.hit_ratio.clone(),
        );
        registry.register(
            "redis_cache_evicted_keys",
            "evicted_keys from INFO since the server started (summed over shard primaries)",
            g.evicted_keys.clone(),
        );
        registry.register(
            "redis_cache_connected_clients",
            "connected_clients from INFO (summed over shard primaries)",
            g.connected_clients.clone(),
        );
        g
    }

    /// Records one probe of `namespace/name`. A failed probe sets `up` to 0
    /// and drops the value gauges rather than leaving stale values.
    pub fn observe(&self, labels: &CacheLabels, result: &Result<HealthSample, ProbeError>) {
        match result {
            Ok(s) => {
                self.up.get_or_create(labels).set(1);
                self.latency
                    .get_or_create(labels)
                    .set(s.latency.as_secs_f64());
                set(&self.used_memory, labels, s.used_memory_bytes);
                set(&self.max_memory, labels, s.max_memory_bytes);
                set(&self.evicted_keys, labels, s.evicted_keys);
                set(&self.connected_clients, labels, s.connected_clients);
                match s.hit_ratio() {
                    Some(r) => {
                        self.hit_ratio.get_or_create(labels).set(r);
                    }
                    None => {
                        self.hit_ratio.remove(labels);
                    }
                }
            }
            Err(_) => {
                self.up.get_or_create(labels).set(0);
                self.remove_values(labels);
            }
        }
    }

    /// Removes every gauge of one cache.
    pub fn remove(&self, labels: &CacheLabels) {
        self.up.remove(labels);
        self.remove_values(labels);
    }

    fn remove_values(&self, labels: &CacheLabels) {
        self.latency.remove(labels);
        self.used_memory.remove(labels);
        self.max_memory.remove(labels);
        self.hit_ratio.remove(labels);
        self.evicted_keys.remove(labels);
        self.connected_clients.remove(labels);
    }
}

fn set(family: &Family<CacheLabels, Gauge>, labels: &CacheLabels, value: Option<u64>) {
    match value {
        Some(v) => {
            family
                .get_or_create(labels)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        }
        None => {
            family.remove(labels);
        }
    }
}
