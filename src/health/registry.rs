//! The latest health of every probed cache, and the rule for when it is worth
//! a status write: a reachability flip or a new failure reason at once; other
//! changes only when visible after rounding, and at most once per
//! `min_interval` per cache. `checkedAt` changes only when a snapshot is
//! republished, so status does not churn every probe.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use super::gauges::{CacheLabels, HealthGauges};
use super::probe::{HealthSample, ProbeError};
use crate::api::conditions::{self, Cond};
use crate::api::HealthStatus;

/// What status should say about a cache's health: `status.health` and the
/// `Reachable` condition.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthSnapshot {
    pub health: HealthStatus,
    pub condition: Cond,
}

impl HealthSnapshot {
    /// The rounded snapshot of one probe, checked at `now`.
    pub fn of(result: &Result<HealthSample, ProbeError>, now: Timestamp) -> Self {
        let checked_at = Some(Time(now));
        match result {
            Ok(s) => Self {
                health: HealthStatus {
                    reachable: Some(true),
                    latency_ms: Some(latency_bucket_ms(s.latency)),
                    used_memory_bytes: s.used_memory_bytes.map(|v| round_significant(v, 2)),
                    // A limit is configuration, not a measurement: exact; 0 is "none".
                    max_memory_bytes: s.max_memory_bytes.filter(|v| *v > 0).map(to_i64),
                    hit_ratio: s.hit_ratio().map(|r| format!("{r:.2}")),
                    evicted_keys: s.evicted_keys.map(|v| round_significant(v, 2)),
                    connected_clients: s.connected_clients.map(|v| round_significant(v, 2)),
                    checked_at,
                },
                condition: Cond::yes(
                    conditions::REACHABLE,
                    "Pong",
                    if s.nodes > 1 {
                        format!(
                            "all {} shard primaries answer PING over TLS with the AUTH token from the connection Secret",
                            s.nodes
                        )
                    } else {
                        "the cache answers PING over TLS with the AUTH token from the connection Secret"
                            .to_string()
                    },
                ),
            },
            Err(e) => Self {
                health: HealthStatus {
                    reachable: Some(false),
                    checked_at,
                    ..HealthStatus::default()
                },
                condition: Cond::no(conditions::REACHABLE, e.kind.reason(), e.message.clone()),
            },
        }
    }

    fn reachable(&self) -> bool {
        self.health.reachable == Some(true)
    }

    /// Equal apart from `checkedAt`.
    fn same_values(&self, other: &Self) -> bool {
        let strip = |h: &HealthStatus| HealthStatus {
            checked_at: None,
            ..h.clone()
        };
        strip(&self.health) == strip(&other.health) && self.condition == other.condition
    }
}

struct Entry {
    published: HealthSnapshot,
    published_at: Instant,
}

/// Latest health per `namespace/name`, shared by the prober (writer) and the
/// reconciler (reader, the one status writer), plus the per-cache gauges.
pub struct HealthRegistry {
    entries: Mutex<HashMap<String, Entry>>,
    gauges: HealthGauges,
    min_interval: Duration,
}

impl std::fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRegistry")
            .field("caches", &self.entries().len())
            .field("min_interval", &self.min_interval)
            .finish()
    }
}

impl HealthRegistry {
    /// An empty registry updating `gauges`; value-only changes reach status at
    /// most once per `min_interval` per cache.
    pub fn new(gauges: HealthGauges, min_interval: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            gauges,
            min_interval,
        }
    }

    /// Records a probe of `key` (`namespace/name`) now. Returns true when the
    /// snapshot changed meaningfully and status should be written.
    pub fn record(&self, key: &str, result: &Result<HealthSample, ProbeError>) -> bool {
        self.record_at(key, result, Timestamp::now(), Instant::now())
    }

    /// [`record`](Self::record) with explicit wall and monotonic clocks.
    pub fn record_at(
        &self,
        key: &str,
        result: &Result<HealthSample, ProbeError>,
        now: Timestamp,
        mono: Instant,
    ) -> bool {
        self.gauges.observe(&labels(key), result);
        let candidate = HealthSnapshot::of(result, now);
        let mut entries = self.entries();
        let publish = match entries.get(key) {
            None => true,
            Some(e) if e.published.reachable() != candidate.reachable() => true,
            Some(e) if e.published.condition.reason != candidate.condition.reason => true,
            Some(e) if e.published.same_values(&candidate) => false,
            Some(e) => mono.saturating_duration_since(e.published_at) >= self.min_interval,
        };
        if publish {
            entries.insert(
                key.to_string(),
                Entry {
                    published: candidate,
                    published_at: mono,
                },
            );
        }
        publish
    }

    /// What status should say about `key`, if it was probed.
    pub fn snapshot(&self, key: &str) -> Option<HealthSnapshot> {
        self.entries().get(key).map(|e| e.published.clone())
    }

    /// Forgets `key` and removes its gauges.
    pub fn remove(&self, key: &str) {
        self.entries().remove(key);
        self.gauges.remove(&labels(key));
    }

    /// Keeps only the caches for which `keep` is true.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .entries()
            .keys()
            .filter(|k| !keep(k))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key);
        }
    }

    /// Forgets every cache (when this replica stops leading).
    pub fn clear(&self) {
        self.retain(|_| false);
    }

    /// The caches known, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.entries().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn labels(key: &str) -> CacheLabels {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    CacheLabels {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `v` rounded to `digits` significant digits (123456 → 120000 for 2).
fn round_significant(v: u64, digits: u32) -> i64 {
    let len = v.checked_ilog10().map_or(1, |l| l + 1);
    if len <= digits {
        return to_i64(v);
    }
    let unit = 10u64.pow(len - digits);
    let rounded = (v / unit).saturating_add(u64::from(v % unit >= unit / 2));
    to_i64(rounded.saturating_mul(unit))
}

/// Latency rounded up to a 1-2-5 bucket in milliseconds, so jitter does not
/// change status.
fn latency_bucket_ms(d: Duration) -> i64 {
    const BUCKETS: [i64; 13] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
    let ms = to_i64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    BUCKETS.into_iter().find(|b| ms <= *b).unwrap_or(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::FailureKind;
    use prometheus_client::registry::Registry;

    fn sample(used: u64, hits: u64, latency_ms: u64) -> Result<HealthSample, ProbeError> {
        Ok(HealthSample {
            latency: Duration::from_millis(latency_ms),
            used_memory_bytes: Some(used),
            max_memory_bytes: Some(1_000_000_000),
            keyspace_hits: Some(hits),
            keyspace_misses: Some(100 - hits),
            evicted_keys: Some(0),
            connected_clients: Some(4),
            nodes: 1,
        })
    }

    fn failed(kind: FailureKind) -> Result<HealthSample, ProbeError> {
        Err(ProbeError {
            kind,
            message: "m".into(),
        })
    }

    fn registry() -> HealthRegistry {
        HealthRegistry::new(HealthGauges::default(), Duration::from_secs(300))
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("timestamp")
    }

    #[test]
    fn rounding() {
        assert_eq!(round_significant(7, 2), 7);
        assert_eq!(round_significant(99, 2), 99);
        assert_eq!(round_significant(123_456, 2), 120_000);
        assert_eq!(round_significant(125_000, 2), 130_000);
        assert_eq!(round_significant(0, 2), 0);
        assert_eq!(round_significant(u64::MAX, 2), i64::MAX);
        assert_eq!(latency_bucket_ms(Duration::from_micros(300)), 1);
        assert_eq!(latency_bucket_ms(Duration::from_millis(3)), 5);
        assert_eq!(latency_bucket_ms(Duration::from_millis(5)), 5);
        assert_eq!(latency_bucket_ms(Duration::from_millis(60_000)), 60_000);
    }

    #[test]
    fn first_probe_publishes_and_tiny_changes_do_not() {
        let r = registry();
        let t0 = Instant::now();
        assert!(r.record_at("ns/a", &sample(50_000_000, 93, 2), ts(0), t0));
        let first = r.snapshot("ns/a").expect("recorded");
        assert_eq!(first.health.used_memory_bytes, Some(50_000_000));
        assert_eq!(first.health.hit_ratio.as_deref(), Some("0.93"));
        assert_eq!(first.health.latency_ms, Some(2));
        assert_eq!(first.condition.status, "True");

        // 0.2 % more memory, latency within its bucket, much later: nothing to write.
        let later = t0 + Duration::from_secs(3600);
        assert!(!r.record_at("ns/a", &sample(50_100_000, 93, 2), ts(3600), later));
        assert_eq!(
            r.snapshot("ns/a").expect("kept").health.checked_at,
            first.health.checked_at,
            "checkedAt only changes when the snapshot is republished"
        );
    }

    #[test]
    fn value_changes_are_rate_limited() {
        let r = registry();
        let t0 = Instant::now();
        assert!(r.record_at("ns/a", &sample(50_000_000, 93, 2), ts(0), t0));
        // Hit ratio moved, but only 60 s after the last write.
        let t1 = t0 + Duration::from_secs(60);
        assert!(!r.record_at("ns/a", &sample(50_000_000, 80, 2), ts(60), t1));
        // After the interval the next probe that still differs is written.
        let t2 = t0 + Duration::from_secs(301);
        assert!(r.record_at("ns/a", &sample(50_000_000, 80, 2), ts(301), t2));
        let s = r.snapshot("ns/a").expect("recorded");
        assert_eq!(s.health.hit_ratio.as_deref(), Some("0.80"));
        assert_eq!(s.health.checked_at, Some(Time(ts(301))));
    }

    #[test]
    fn reachability_flips_and_new_reasons_publish_at_once() {
        let r = registry();
        let t0 = Instant::now();
        assert!(r.record_at("ns/a", &sample(1, 93, 2), ts(0), t0));
        let t1 = t0 + Duration::from_secs(1);
        assert!(r.record_at("ns/a", &failed(FailureKind::Timeout), ts(1), t1));
        let s = r.snapshot("ns/a").expect("recorded");
        assert_eq!(s.health.reachable, Some(false));
        assert_eq!(s.condition.status, "False");
        assert_eq!(s.condition.reason, "Timeout");
        assert!(!r.record_at("ns/a", &failed(FailureKind::Timeout), ts(2), t1));
        assert!(r.record_at("ns/a", &failed(FailureKind::AuthFailed), ts(3), t1));
        assert!(r.record_at("ns/a", &sample(1, 93, 2), ts(4), t1));
        assert_eq!(
            r.snapshot("ns/a").expect("recorded").condition.reason,
            "Pong"
        );
    }

    #[test]
    fn gauges_follow_probes_and_go_with_the_cache() {
        let mut prom = Registry::default();
        let gauges = HealthGauges::register(&mut prom);
        let r = HealthRegistry::new(gauges, Duration::from_secs(300));
        let text = || {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, &prom).expect("encodes");
            s
        };
        r.record("ns/a", &sample(50_000_000, 93, 2));
        r.record("ns/b", &failed(FailureKind::ConnectionRefused));
        let t = text();
        assert!(
            t.contains(r#"redis_cache_up{namespace="ns",name="a"} 1"#),
            "{t}"
        );
        assert!(
            t.contains(r#"redis_cache_up{namespace="ns",name="b"} 0"#),
            "{t}"
        );
        assert!(
            t.contains(r#"redis_cache_used_memory_bytes{namespace="ns",name="a"} 50000000"#),
            "{t}"
        );
        assert!(
            t.contains(r#"redis_cache_hit_ratio{namespace="ns",name="a"} 0.93"#),
            "{t}"
        );
        assert!(
            !t.contains(r#"redis_cache_used_memory_bytes{namespace="ns",name="b"}"#),
            "{t}"
        );
        r.retain(|k| k != "ns/a");
        let t = text();
        assert!(!t.contains(r#"name="a""#), "{t}");
        assert!(t.contains(r#"name="b""#), "{t}");
        r.clear();
        assert!(!text().contains(r#"name="b""#));
        assert!(r.keys().is_empty());
    }
}
