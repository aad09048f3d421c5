//! Cache settings → Azure's settings, pure.
//!
//! - Managed (`Microsoft.Cache/redisEnterprise` 2026-08-01): the enums
//!   `EvictionPolicy`, `AofFrequency` (`1s`, `always`), `RdbFrequency`
//!   (`1h`, `6h`, `12h`) and `ClusteringPolicy` of the spec.
//! - Premium (`Microsoft.Cache/redis` 2024-11-01): `redisConfiguration` is a
//!   map of strings; `rdb-backup-frequency` is in minutes, one of 15, 30, 60,
//!   360, 720, 1440 (the spec's description of that key).

use std::collections::BTreeMap;
use std::fmt;

use super::arm::{DatabaseProperties, Persistence as ArmPersistence};

/// Redis's eviction policy names and the Managed spec's enum values.
const EVICTION_POLICIES: &[(&str, &str)] = &[
    ("allkeys-lru", "AllKeysLRU"),
    ("allkeys-lfu", "AllKeysLFU"),
    ("allkeys-random", "AllKeysRandom"),
    ("volatile-lru", "VolatileLRU"),
    ("volatile-lfu", "VolatileLFU"),
    ("volatile-ttl", "VolatileTTL"),
    ("volatile-random", "VolatileRandom"),
    ("noeviction", "NoEviction"),
];

/// RDB intervals Premium accepts, in minutes.
pub const PREMIUM_RDB_MINUTES: &[u32] = &[15, 30, 60, 360, 720, 1440];
/// RDB intervals Managed accepts (`1h`, `6h`, `12h`), in minutes.
pub const MANAGED_RDB_MINUTES: &[u32] = &[60, 360, 720];

/// The port of every Managed database we create.
pub const MANAGED_PORT: i32 = 10000;

/// A setting Azure cannot take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Not a Redis eviction policy.
    EvictionPolicy(String),
    /// RDB more often than Azure can snapshot.
    RdbTooFrequent {
        /// Asked, in minutes.
        requested: u32,
        /// What the tier allows, in minutes.
        allowed: &'static [u32],
    },
    /// A character Redis does not know in `notify-keyspace-events`.
    KeyspaceEvents(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::EvictionPolicy(p) => write!(
                f,
                "eviction policy {p:?} is not one of {}",
                EVICTION_POLICIES
                    .iter()
                    .map(|(r, _)| *r)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ConfigError::RdbTooFrequent { requested, allowed } => write!(
                f,
                "an RDB snapshot every {requested} minutes is more often than Azure allows; \
                 choose one of {} minutes",
                allowed
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ConfigError::KeyspaceEvents(e) => write!(
                f,
                "notify-keyspace-events {e:?} has characters outside \"KEg$lshzxetmdnA\""
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Persistence asked for a cache: Azure allows AOF or RDB, never both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Persistence {
    /// No persistence.
    #[default]
    None,
    /// Append-only file, fsync every second (`1s`).
    Aof,
    /// Snapshots at least every `every_minutes`.
    Rdb {
        /// Longest acceptable interval between snapshots, in minutes.
        every_minutes: u32,
    },
}

/// An RDB interval after snapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapped {
    /// The interval Azure gets, in minutes.
    pub minutes: u32,
    /// Whether it differs from the one asked (worth a warning event).
    pub changed: bool,
}

/// Snaps an RDB interval to the longest allowed one not longer than asked:
/// snapshots then come at least as often as asked. Refuses an interval
/// shorter than the shortest allowed, since Azure cannot meet it.
pub fn snap_rdb_minutes(requested: u32, allowed: &'static [u32]) -> Result<Snapped, ConfigError> {
    allowed
        .iter()
        .rev()
        .find(|m| **m <= requested)
        .map(|m| Snapped {
            minutes: *m,
            changed: *m != requested,
        })
        .ok_or(ConfigError::RdbTooFrequent { requested, allowed })
}

/// The Managed `evictionPolicy` for a Redis policy name (`allkeys-lru` →
/// `AllKeysLRU`).
pub fn managed_eviction_policy(redis_name: &str) -> Result<&'static str, ConfigError> {
    EVICTION_POLICIES
        .iter()
        .find(|(r, _)| *r == redis_name)
        .map(|(_, a)| *a)
        .ok_or_else(|| ConfigError::EvictionPolicy(redis_name.to_string()))
}

/// The Managed `persistence` object, with the snapped RDB interval.
pub fn managed_persistence(
    p: Persistence,
) -> Result<(ArmPersistence, Option<Snapped>), ConfigError> {
    Ok(match p {
        Persistence::None => (
            ArmPersistence {
                aof_enabled: Some(false),
                rdb_enabled: Some(false),
                ..Default::default()
            },
            None,
        ),
        Persistence::Aof => (
            ArmPersistence {
                aof_enabled: Some(true),
                rdb_enabled: Some(false),
                aof_frequency: Some("1s".into()),
                rdb_frequency: None,
            },
            None,
        ),
        Persistence::Rdb { every_minutes } => {
            let snapped = snap_rdb_minutes(every_minutes, MANAGED_RDB_MINUTES)?;
            let frequency = match snapped.minutes {
                60 => "1h",
                360 => "6h",
                _ => "12h",
            };
            (
                ArmPersistence {
                    aof_enabled: Some(false),
                    rdb_enabled: Some(true),
                    aof_frequency: None,
                    rdb_frequency: Some(frequency.into()),
                },
                Some(snapped),
            )
        }
    })
}

/// What a Managed database is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedDatabaseInput {
    /// `clusterMode: Enabled` → `OSSCluster`, else `EnterpriseCluster`.
    pub cluster_mode: bool,
    /// Redis eviction policy name.
    pub eviction_policy: String,
    /// Persistence.
    pub persistence: Persistence,
}

/// The Managed database properties (DESIGN §4.4): TLS, port 10000, access
/// keys on, no modules.
pub fn managed_database(
    input: &ManagedDatabaseInput,
) -> Result<(DatabaseProperties, Option<Snapped>), ConfigError> {
    let (persistence, snapped) = managed_persistence(input.persistence)?;
    Ok((
        DatabaseProperties {
            client_protocol: Some("Encrypted".into()),
            port: Some(MANAGED_PORT),
            clustering_policy: Some(
                if input.cluster_mode {
                    "OSSCluster"
                } else {
                    "EnterpriseCluster"
                }
                .into(),
            ),
            eviction_policy: Some(managed_eviction_policy(&input.eviction_policy)?.into()),
            persistence: Some(persistence),
            modules: Some(Vec::new()),
            access_keys_authentication: Some("Enabled".into()),
            ..Default::default()
        },
        snapped,
    ))
}

/// What a Premium `redisConfiguration` is made of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PremiumConfigInput {
    /// Redis eviction policy name.
    pub maxmemory_policy: Option<String>,
    /// Keyspace notification flags, e.g. `Ex`.
    pub notify_keyspace_events: Option<String>,
    /// Persistence.
    pub persistence: Persistence,
}

/// Renders Premium's `redisConfiguration` (every value a string). Storage
/// for RDB/AOF (`rdb-storage-connection-string` or managed identity) is not
/// rendered here: it is a secret the caller adds.
pub fn premium_redis_configuration(
    input: &PremiumConfigInput,
) -> Result<(BTreeMap<String, String>, Option<Snapped>), ConfigError> {
    let mut map = BTreeMap::new();
    if let Some(policy) = &input.maxmemory_policy {
        // Same names as Redis; validated so a typo fails here, not in Azure.
        managed_eviction_policy(policy)?;
        map.insert("maxmemory-policy".into(), policy.clone());
    }
    if let Some(events) = &input.notify_keyspace_events {
        if !events.chars().all(|c| "KEg$lshzxetmdnA".contains(c)) {
            return Err(ConfigError::KeyspaceEvents(events.clone()));
        }
        map.insert("notify-keyspace-events".into(), events.clone());
    }
    let mut snapped = None;
    let (aof, rdb) = match input.persistence {
        Persistence::None => (false, false),
        Persistence::Aof => (true, false),
        Persistence::Rdb { every_minutes } => {
            let s = snap_rdb_minutes(every_minutes, PREMIUM_RDB_MINUTES)?;
            map.insert("rdb-backup-frequency".into(), s.minutes.to_string());
            snapped = Some(s);
            (false, true)
        }
    };
    map.insert("aof-backup-enabled".into(), aof.to_string());
    map.insert("rdb-backup-enabled".into(), rdb.to_string());
    Ok((map, snapped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_policies_map_to_the_spec_enum() {
        assert_eq!(managed_eviction_policy("allkeys-lru"), Ok("AllKeysLRU"));
        assert_eq!(managed_eviction_policy("volatile-ttl"), Ok("VolatileTTL"));
        assert_eq!(managed_eviction_policy("noeviction"), Ok("NoEviction"));
        assert_eq!(managed_eviction_policy("allkeys-lfu"), Ok("AllKeysLFU"));
        let err =
            managed_eviction_policy("AllKeysLRU").expect_err("azure name is not a redis name");
        assert!(err.to_string().contains("allkeys-lru"), "{err}");
        assert_eq!(EVICTION_POLICIES.len(), 8);
    }

    #[test]
    fn rdb_snapping_boundaries() {
        let p = PREMIUM_RDB_MINUTES;
        assert_eq!(
            snap_rdb_minutes(15, p),
            Ok(Snapped {
                minutes: 15,
                changed: false
            })
        );
        assert_eq!(
            snap_rdb_minutes(29, p),
            Ok(Snapped {
                minutes: 15,
                changed: true
            })
        );
        assert_eq!(
            snap_rdb_minutes(30, p),
            Ok(Snapped {
                minutes: 30,
                changed: false
            })
        );
        assert_eq!(
            snap_rdb_minutes(359, p),
            Ok(Snapped {
                minutes: 60,
                changed: true
            })
        );
        assert_eq!(
            snap_rdb_minutes(1440, p),
            Ok(Snapped {
                minutes: 1440,
                changed: false
            })
        );
        assert_eq!(
            snap_rdb_minutes(10_000, p),
            Ok(Snapped {
                minutes: 1440,
                changed: true
            })
        );
        let err = snap_rdb_minutes(14, p).expect_err("too frequent");
        assert!(
            err.to_string().contains("15, 30, 60, 360, 720, 1440"),
            "{err}"
        );
        assert!(snap_rdb_minutes(0, p).is_err());
        let m = MANAGED_RDB_MINUTES;
        assert!(snap_rdb_minutes(59, m).is_err());
        assert_eq!(snap_rdb_minutes(60, m).map(|s| s.minutes), Ok(60));
        assert_eq!(snap_rdb_minutes(719, m).map(|s| s.minutes), Ok(360));
        assert_eq!(snap_rdb_minutes(1440, m).map(|s| s.minutes), Ok(720));
    }

    #[test]
    fn managed_persistence_is_aof_or_rdb_never_both() {
        let (aof, _) = managed_persistence(Persistence::Aof).expect("aof");
        assert_eq!(aof.aof_enabled, Some(true));
        assert_eq!(aof.rdb_enabled, Some(false));
        assert_eq!(aof.aof_frequency.as_deref(), Some("1s"));
        let (rdb, snapped) =
            managed_persistence(Persistence::Rdb { every_minutes: 400 }).expect("rdb");
        assert_eq!(rdb.aof_enabled, Some(false));
        assert_eq!(rdb.rdb_frequency.as_deref(), Some("6h"));
        assert_eq!(snapped.map(|s| s.changed), Some(true));
        let (rdb, _) = managed_persistence(Persistence::Rdb { every_minutes: 60 }).expect("rdb");
        assert_eq!(rdb.rdb_frequency.as_deref(), Some("1h"));
        let (rdb, _) = managed_persistence(Persistence::Rdb { every_minutes: 720 }).expect("rdb");
        assert_eq!(rdb.rdb_frequency.as_deref(), Some("12h"));
        assert!(managed_persistence(Persistence::Rdb { every_minutes: 15 }).is_err());
        let (none, _) = managed_persistence(Persistence::None).expect("none");
        assert_eq!(
            (none.aof_enabled, none.rdb_enabled),
            (Some(false), Some(false))
        );
    }

    #[test]
    fn managed_database_defaults() {
        let input = ManagedDatabaseInput {
            cluster_mode: false,
            eviction_policy: "allkeys-lru".into(),
            persistence: Persistence::None,
        };
        let (db, _) = managed_database(&input).expect("db");
        assert_eq!(db.clustering_policy.as_deref(), Some("EnterpriseCluster"));
        assert_eq!(db.port, Some(10000));
        assert_eq!(db.access_keys_authentication.as_deref(), Some("Enabled"));
        assert_eq!(db.client_protocol.as_deref(), Some("Encrypted"));
        assert_eq!(db.modules, Some(vec![]));
        let (db, _) = managed_database(&ManagedDatabaseInput {
            cluster_mode: true,
            ..input
        })
        .expect("db");
        assert_eq!(db.clustering_policy.as_deref(), Some("OSSCluster"));
        let json = serde_json::to_value(&db).expect("json");
        assert_eq!(json["evictionPolicy"], "AllKeysLRU");
    }

    #[test]
    fn premium_configuration_is_all_strings() {
        let (map, snapped) = premium_redis_configuration(&PremiumConfigInput {
            maxmemory_policy: Some("volatile-lru".into()),
            notify_keyspace_events: Some("Ex".into()),
            persistence: Persistence::Rdb { every_minutes: 45 },
        })
        .expect("config");
        assert_eq!(map["maxmemory-policy"], "volatile-lru");
        assert_eq!(map["notify-keyspace-events"], "Ex");
        assert_eq!(map["rdb-backup-enabled"], "true");
        assert_eq!(map["rdb-backup-frequency"], "30");
        assert_eq!(map["aof-backup-enabled"], "false");
        assert_eq!(
            snapped,
            Some(Snapped {
                minutes: 30,
                changed: true
            })
        );
        let json = serde_json::to_value(&map).expect("json");
        assert!(json
            .as_object()
            .expect("object")
            .values()
            .all(|v| v.is_string()));

        let (map, _) = premium_redis_configuration(&PremiumConfigInput {
            persistence: Persistence::Aof,
            ..Default::default()
        })
        .expect("config");
        assert_eq!(map["aof-backup-enabled"], "true");
        assert_eq!(map["rdb-backup-enabled"], "false");
        assert!(!map.contains_key("rdb-backup-frequency"));
        assert!(!map.contains_key("maxmemory-policy"));

        assert!(matches!(
            premium_redis_configuration(&PremiumConfigInput {
                notify_keyspace_events: Some("Ex!".into()),
                ..Default::default()
            }),
            Err(ConfigError::KeyspaceEvents(_))
        ));
        assert!(premium_redis_configuration(&PremiumConfigInput {
            maxmemory_policy: Some("lru".into()),
            ..Default::default()
        })
        .is_err());
        assert!(premium_redis_configuration(&PremiumConfigInput {
            persistence: Persistence::Rdb { every_minutes: 5 },
            ..Default::default()
        })
        .is_err());
    }
}
