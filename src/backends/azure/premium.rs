//! Azure Cache for Redis Premium (`Microsoft.Cache/redis` 2024-11-01): a
//! cache `R` with SKU P1–P5 from `memory`, TLS on port 6380 only. A PUT
//! replaces a whole cache, so it is sent once, after a GET found nothing,
//! with `If-None-Match: *`; every change is a PATCH of one field group
//! (SKU, shard count, replicas, configuration, tags), only while the cache
//! is `Succeeded`. Firewall rules (public access only) and the patch
//! schedule are synchronous child resources.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::arm::{
    ArmClient, FirewallRuleProperties, RedisProperties, RedisResource, RedisSku, RedisUpdate,
    ScheduleEntry,
};
use super::managed::{not_serving, waiting};
use super::{config, fail, key_pair, persistence, sku, user_parameters, AzureBackend, CACHE_READY};
use crate::api::conditions::{self, Cond};
use crate::api::validation::{window_minutes, Persistence, PortableSpec};
use crate::api::{BackendDetails, ClusterMode};
use crate::backends::{
    BackendError, CacheRequest, Connection, Converged, Credential, Endpoint, ErrorClass, Lifecycle,
    Next, Note, Observed, StepFailure, TAG_RESOURCE,
};

/// Memory of a cache that sets none.
const DEFAULT_MEMORY: u64 = 6_000_000_000;
/// The TLS port of every Premium cache.
pub const PREMIUM_PORT: i32 = 6380;
/// Prefix of the firewall rules the operator manages (Azure allows
/// letters, digits and `_` in rule names).
const RULE_PREFIX: &str = "rediscache_";
/// Configuration keys the operator sets and compares.
const MANAGED_KEYS: &[&str] = &[
    "maxmemory-policy",
    "notify-keyspace-events",
    "rdb-backup-enabled",
    "rdb-backup-frequency",
    "aof-backup-enabled",
    "maxmemory-reserved",
    "maxfragmentationmemory-reserved",
    "maxmemory-delta",
];

fn shards(spec: &PortableSpec) -> u32 {
    u32::try_from(spec.shards.max(1)).unwrap_or(1)
}

fn chosen_sku(spec: &PortableSpec) -> sku::PremiumSku {
    sku::premium_sku_for(spec.memory.unwrap_or(DEFAULT_MEMORY), shards(spec))
        .unwrap_or(sku::PREMIUM_SKUS[sku::PREMIUM_SKUS.len() - 1])
}

fn redis_sku(spec: &PortableSpec) -> RedisSku {
    RedisSku {
        name: "Premium".into(),
        family: "P".into(),
        capacity: i32::from(chosen_sku(spec).capacity),
    }
}

/// The patch schedule of `maintenanceWindow` (`sun:05:00-sun:06:00`, UTC).
pub(super) fn schedule(window: &str) -> Result<ScheduleEntry, String> {
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    let minutes = window_minutes(window, true)?;
    let start = window.split('-').next().unwrap_or_default();
    let mut parts = start.split(':');
    let (day, hour, minute) = (parts.next(), parts.next(), parts.next());
    let day = day
        .and_then(|d| {
            DAYS.iter()
                .find(|x| x[..3].eq_ignore_ascii_case(d))
                .copied()
        })
        .ok_or_else(|| format!("{window:?} does not start with a day"))?;
    let hour: i32 = hour.and_then(|h| h.parse().ok()).unwrap_or(0);
    if minute != Some("00") {
        return Err(format!(
            "{window:?}: Premium patch windows start on the hour (e.g. sun:05:00-sun:10:00)"
        ));
    }
    if minutes < 300 {
        return Err(format!(
            "{window:?}: a Premium patch window lasts at least 5 hours"
        ));
    }
    Ok(ScheduleEntry {
        day_of_week: day.to_string(),
        start_hour_utc: hour,
        maintenance_window: Some(
            format!("PT{}H{}M", minutes / 60, minutes % 60).replace("H0M", "H"),
        ),
    })
}

/// `a.b.c.d/n` as the first and last address of the block.
fn cidr_range(cidr: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let start = u32::from(addr) & mask;
    Some((Ipv4Addr::from(start), Ipv4Addr::from(start | !mask)))
}

/// The firewall rules `allowedCidrs` asks for, by name.
fn desired_rules(spec: &PortableSpec) -> BTreeMap<String, FirewallRuleProperties> {
    spec.allowed_cidrs
        .iter()
        .flatten()
        .filter_map(|c| cidr_range(c))
        .enumerate()
        .map(|(i, (start, end))| {
            (
                format!("{RULE_PREFIX}{i}"),
                FirewallRuleProperties {
                    start_ip: start.to_string(),
                    end_ip: end.to_string(),
                },
            )
        })
        .collect()
}

/// The `redisConfiguration` the spec asks for (strings only), without the
/// storage connection strings.
fn desired_configuration(
    spec: &PortableSpec,
) -> Result<(BTreeMap<String, String>, Option<config::Snapped>), BackendError> {
    let params = user_parameters(spec);
    let (mut map, snapped) = config::premium_redis_configuration(&config::PremiumConfigInput {
        maxmemory_policy: Some(spec.eviction_policy.as_str().to_string()),
        notify_keyspace_events: Some(
            params
                .get("notify-keyspace-events")
                .cloned()
                .unwrap_or_default(),
        ),
        persistence: persistence(spec),
    })
    .map_err(|e| BackendError::new(ErrorClass::Rejected, Some("InvalidSpec"), e.to_string()))?;
    for k in [
        "maxmemory-reserved",
        "maxfragmentationmemory-reserved",
        "maxmemory-delta",
    ] {
        if let Some(v) = params.get(k) {
            map.insert(k.to_string(), v.clone());
        }
    }
    Ok((map, snapped))
}

/// Adds the storage connection string persistence needs.
fn with_storage(
    mut map: BTreeMap<String, String>,
    spec: &PortableSpec,
    storage: Option<&Credential>,
) -> BTreeMap<String, String> {
    if let Some(s) = storage {
        match spec.persistence {
            Persistence::Snapshot { .. } => {
                map.insert(
                    "rdb-storage-connection-string".into(),
                    s.expose().to_string(),
                );
            }
            Persistence::AppendOnly => {
                map.insert(
                    "aof-storage-connection-string-0".into(),
                    s.expose().to_string(),
                );
            }
            Persistence::None => {}
        }
    }
    map
}

/// What `plan` prints for a Premium cache; the first line gets the id.
pub(super) fn plan(spec: &PortableSpec, public: bool) -> Vec<String> {
    let sku = chosen_sku(spec);
    let mut lines = vec![format!(
        "Azure Cache for Redis Premium {} ({} shard(s), {} replica(s) per primary, TLS 1.2 on 6380, non-TLS port off)",
        sku.label(),
        shards(spec),
        spec.replicas_per_shard
    )];
    if let Ok((config, _)) = desired_configuration(spec) {
        lines.push(format!(
            "  redisConfiguration {}",
            config
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if public {
        for (name, r) in desired_rules(spec) {
            lines.push(format!(
                "  firewall rule {name} {}-{}",
                r.start_ip, r.end_ip
            ));
        }
    }
    lines
}

fn desired_cache(
    b: &AzureBackend,
    req: &CacheRequest<'_>,
    storage: Option<&Credential>,
) -> Result<RedisResource, BackendError> {
    let spec = req.spec;
    let (config, _) = desired_configuration(spec)?;
    Ok(RedisResource {
        location: b.class.location.clone(),
        zones: b.class.zones.clone(),
        tags: b.tags(spec, req.owner),
        properties: RedisProperties {
            sku: Some(redis_sku(spec)),
            redis_configuration: Some(with_storage(config, spec, storage)),
            shard_count: (spec.cluster_mode == ClusterMode::Enabled)
                .then(|| i32::try_from(shards(spec)).unwrap_or(1)),
            replicas_per_primary: Some(spec.replicas_per_shard),
            subnet_id: b.class.subnet_id.clone(),
            minimum_tls_version: Some("1.2".into()),
            enable_non_ssl_port: Some(false),
            public_network_access: Some(if b.public() { "Enabled" } else { "Disabled" }.into()),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// One converge step of a Premium cache.
pub(super) async fn converge(
    b: &AzureBackend,
    arm: &ArmClient,
    req: &CacheRequest<'_>,
) -> Result<Converged, StepFailure> {
    let id = b.resource_id(req.backend_id);
    let name = id.rsplit('/').next().unwrap_or_default().to_string();
    let learned = (req.backend_id != id).then(|| id.clone());
    let what = format!("Azure Cache for Redis {name}");
    let mut notes = Vec::new();
    let storage = b
        .storage_connection_string()
        .await
        .map_err(|e| fail(CACHE_READY, "storage", e))?;
    if req.spec.persistence != Persistence::None && storage.is_none() {
        return Err(fail(
            CACHE_READY,
            "storage",
            BackendError::new(
                ErrorClass::Rejected,
                Some("ClassInvalid"),
                "the Secret of the class's azure.persistenceStorageSecretRef needs the key connectionString",
            ),
        ));
    }
    let found = b
        .find_cache(arm, req, &id)
        .await
        .map_err(|e| fail(CACHE_READY, "read", e))?;
    let Some(cache) = found else {
        let body =
            desired_cache(b, req, storage.as_ref()).map_err(|e| fail(CACHE_READY, "create", e))?;
        // The only PUT of this cache: refused by Azure if it exists.
        arm.create_redis(&id, &body)
            .await
            .map_err(|e| fail(CACHE_READY, "create", e))?;
        b.changed();
        if learned.is_none() {
            notes.push(Note::warning(
                "Recreated",
                format!("{what} was deleted outside the operator; creating it again"),
            ));
        }
        notes.push(Note::normal(
            "CreatingCache",
            format!("creating {what} ({})", chosen_sku(req.spec).label()),
        ));
        return Ok(waiting(
            Lifecycle::Creating,
            "Creating",
            format!("{what} is being created"),
            notes,
            learned.or(Some(id)),
        ));
    };
    if !req.owner.owns(&cache.tags) {
        return Err(fail(
            CACHE_READY,
            "ownership",
            BackendError::conflict(
                "Azure Cache for Redis",
                &name,
                cache.tags.get(TAG_RESOURCE).map(String::as_str),
            ),
        ));
    }
    let state = cache
        .properties
        .provisioning_state
        .clone()
        .unwrap_or_default();
    if let Some(w) = not_serving(&state, &what, learned.clone()) {
        return Ok(w);
    }
    // Azure is applying a change: the cache serves, nothing more is sent.
    let settled = state == "Succeeded";
    let keys = arm
        .list_redis_keys(&id)
        .await
        .and_then(key_pair)
        .map_err(|e| fail(CACHE_READY, "listKeys", e))?;
    let credential = super::active_key(&keys, req);
    let changes = if settled {
        day2(b, arm, req, &id, &cache, storage.as_ref()).await
    } else {
        Ok(None)
    };
    let (updating, failure) = match changes {
        Ok(Some(change)) => {
            b.changed();
            if req.synced_before {
                notes.push(Note::warning(
                    "DriftDetected",
                    format!("{change}: Azure differed from the spec without a spec change; correcting it"),
                ));
            }
            (Some(change), None)
        }
        Ok(None) => (None, None),
        Err(e) => (None, Some(fail(CACHE_READY, "change", e))),
    };
    let p = &cache.properties;
    let capacity = p.sku.as_ref().map(|s| s.capacity).unwrap_or_default();
    let shard_count = p.shard_count.unwrap_or(1).max(1);
    let memory = sku::PREMIUM_SKUS
        .iter()
        .find(|s| i32::from(s.capacity) == capacity)
        .map(|s| {
            crate::api::quantity::format_bytes(
                s.memory_bytes
                    .saturating_mul(u64::try_from(shard_count).unwrap_or(1)),
            )
        });
    let endpoint = p.host_name.clone().map(|host| Endpoint {
        host,
        port: p.ssl_port.unwrap_or(PREMIUM_PORT),
    });
    let snapped = desired_configuration(req.spec).ok().and_then(|(_, s)| s);
    let conds = vec![
        Cond::yes(
            CACHE_READY,
            "Succeeded",
            format!("{what} (P{capacity}) is provisioned"),
        ),
        match snapped.filter(|s| s.changed) {
            Some(s) => Cond::yes(
                conditions::SPEC_APPROXIMATED,
                "SnapshotIntervalApproximated",
                format!(
                    "spec.persistence.snapshotInterval: Premium snapshots every 15, 30, 60, 360, 720 or 1440 minutes; snapshots are taken every {} minutes",
                    s.minutes
                ),
            ),
            None => Cond::no(
                conditions::SPEC_APPROXIMATED,
                "Exact",
                "the spec maps to Azure Cache for Redis Premium exactly",
            ),
        },
    ];
    let changing = updating.is_some() || !settled;
    Ok(Converged {
        observed: Observed {
            lifecycle: if changing {
                Lifecycle::Changing
            } else {
                Lifecycle::Serving
            },
            reason: if changing { "Updating" } else { "Available" },
            message: format!(
                "{what} is {}",
                if changing { "being changed" } else { "running" }
            ),
            engine: Some("redis".into()),
            engine_version: None,
            memory,
            size: Some(format!("P{capacity}")),
            shards: Some(shard_count),
            replicas_per_shard: p.replicas_per_primary,
            endpoint: endpoint.clone(),
            reader_endpoint: None,
            busy: changing,
            credential_changed_at: None,
        },
        connection: endpoint.map(|endpoint| Connection {
            endpoint,
            reader: None,
            cluster_mode: req.spec.cluster_mode,
            provider: "azure-cache-premium",
            username: "",
            extra: BTreeMap::new(),
        }),
        conditions: conds,
        details: BackendDetails::default(),
        notes,
        updating,
        next: if changing {
            Next::Soon
        } else {
            Next::Within(None)
        },
        failure,
        credential: Some(credential),
        backend_id: learned,
    })
}

/// At most one PATCH of one field group, in a fixed order; then the
/// synchronous firewall rules and patch schedule. Returns what was sent.
async fn day2(
    b: &AzureBackend,
    arm: &ArmClient,
    req: &CacheRequest<'_>,
    id: &str,
    cache: &RedisResource,
    storage: Option<&Credential>,
) -> Result<Option<String>, BackendError> {
    let spec = req.spec;
    let name = id.rsplit('/').next().unwrap_or_default();
    let have = &cache.properties;
    let patch = |properties: RedisProperties| RedisUpdate {
        tags: None,
        properties: Some(properties),
    };
    let want_sku = redis_sku(spec);
    if have.sku.as_ref().map(|s| s.capacity) != Some(want_sku.capacity) {
        arm.patch_redis(
            id,
            &patch(RedisProperties {
                sku: Some(want_sku.clone()),
                ..Default::default()
            }),
        )
        .await?;
        return Ok(Some(format!(
            "scaling Azure Cache for Redis {name} to P{}",
            want_sku.capacity
        )));
    }
    if spec.cluster_mode == ClusterMode::Enabled {
        let want = i32::try_from(shards(spec)).unwrap_or(1);
        if have.shard_count.unwrap_or(1) != want {
            arm.patch_redis(
                id,
                &patch(RedisProperties {
                    shard_count: Some(want),
                    ..Default::default()
                }),
            )
            .await?;
            return Ok(Some(format!("setting {name} to {want} shards")));
        }
    }
    if have.replicas_per_primary.unwrap_or(1) != spec.replicas_per_shard {
        arm.patch_redis(
            id,
            &patch(RedisProperties {
                replicas_per_primary: Some(spec.replicas_per_shard),
                ..Default::default()
            }),
        )
        .await?;
        return Ok(Some(format!(
            "setting {name} to {} replicas per primary",
            spec.replicas_per_shard
        )));
    }
    let (want_config, _) = desired_configuration(spec)?;
    let current = have.redis_configuration.clone().unwrap_or_default();
    let differs = MANAGED_KEYS.iter().any(|k| {
        let want = want_config.get(*k).map(String::as_str).unwrap_or("");
        let have = current.get(*k).map(String::as_str).unwrap_or("");
        // Keys we do not set are Azure's to default.
        want_config.contains_key(*k) && want != have
    });
    if differs {
        arm.patch_redis(
            id,
            &patch(RedisProperties {
                redis_configuration: Some(with_storage(want_config, spec, storage)),
                ..Default::default()
            }),
        )
        .await?;
        return Ok(Some(format!("updating the configuration of {name}")));
    }
    let want_tags = b.tags(spec, req.owner);
    if cache.tags != want_tags {
        arm.patch_redis(
            id,
            &RedisUpdate {
                tags: Some(want_tags),
                properties: None,
            },
        )
        .await?;
        return Ok(Some(format!("setting the tags of {name}")));
    }
    if b.public() {
        let rules = arm.list_firewall_rules(id).await?;
        let want = desired_rules(spec);
        let mut changed = false;
        for rule in &rules {
            let rule_name = rule
                .name
                .as_deref()
                .unwrap_or_default()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            if rule_name.starts_with(RULE_PREFIX) && !want.contains_key(&rule_name) {
                arm.delete_firewall_rule(id, &rule_name).await?;
                changed = true;
            }
        }
        for (rule_name, props) in &want {
            let current = rules.iter().find(|r| {
                r.name
                    .as_deref()
                    .is_some_and(|n| n.rsplit('/').next() == Some(rule_name.as_str()))
            });
            if current.map(|r| &r.properties) != Some(props) {
                arm.put_firewall_rule(id, rule_name, props).await?;
                changed = true;
            }
        }
        if changed && req.synced_before {
            // Rules are synchronous: nothing to wait for; say it happened.
            tracing::debug!(cache = name, "firewall rules corrected");
        }
    }
    let want_schedule = req
        .cache
        .spec
        .maintenance_window
        .as_deref()
        .map(schedule)
        .transpose()
        .map_err(|m| BackendError::new(ErrorClass::Rejected, Some("InvalidSpec"), m))?;
    let have_schedule = arm
        .get_patch_schedule(id)
        .await?
        .map(|s| s.properties.schedule_entries);
    match (want_schedule, have_schedule) {
        (Some(want), have) if have.as_deref() != Some(std::slice::from_ref(&want)) => {
            arm.put_patch_schedule(id, &[want]).await?;
        }
        (None, Some(_)) => {
            arm.delete_patch_schedule(id).await?;
        }
        _ => {}
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_become_address_ranges() {
        assert_eq!(
            cidr_range("10.1.2.3/16"),
            Some((Ipv4Addr::new(10, 1, 0, 0), Ipv4Addr::new(10, 1, 255, 255)))
        );
        assert_eq!(
            cidr_range("192.168.0.7/32"),
            Some((Ipv4Addr::new(192, 168, 0, 7), Ipv4Addr::new(192, 168, 0, 7)))
        );
        assert_eq!(cidr_range("10.0.0.0/33"), None);
        assert_eq!(cidr_range("fd00::/8"), None);
    }

    #[test]
    fn maintenance_windows_become_patch_schedules() {
        let s = schedule("sun:05:00-sun:10:00").expect("schedule");
        assert_eq!(s.day_of_week, "Sunday");
        assert_eq!(s.start_hour_utc, 5);
        assert_eq!(s.maintenance_window.as_deref(), Some("PT5H"));
        let s = schedule("sat:22:00-sun:04:30").expect("across days");
        assert_eq!(s.day_of_week, "Saturday");
        assert_eq!(s.maintenance_window.as_deref(), Some("PT6H30M"));
        assert!(schedule("sun:05:30-sun:11:00")
            .expect_err("not on the hour")
            .contains("on the hour"));
        assert!(schedule("sun:05:00-sun:06:00")
            .expect_err("too short")
            .contains("5 hours"));
        assert!(schedule("someday").is_err());
    }
}
