//! The ElastiCache side of validation: the portable spec plus the class's
//! `elastiCache` block and the ElastiCache-only fields of the cache, checked
//! against AWS's rules and resolved into what [`super::desired`] builds from.

use std::collections::BTreeMap;
use std::time::Duration;

use super::node_types;
use crate::api::validation::{
    at_least_an_hour, check_cidr, parse_major_minor, window_minutes, Errors, Persistence,
    PortableSpec, ValidationErrors,
};
use crate::api::{ClusterMode, DeletionPolicy, ElastiCacheClass, Engine, RedisCache};

/// Engine/version combinations and their parameter group family.
pub const SUPPORTED_FAMILIES: [(Engine, u32, &str); 3] = [
    (Engine::Redis, 7, "redis7"),
    (Engine::Valkey, 7, "valkey7"),
    (Engine::Valkey, 8, "valkey8"),
];

/// Node type when nothing else names one.
pub const FALLBACK_NODE_TYPE: &str = "cache.t4g.micro";
const MAX_USER_TAGS: usize = 40;
/// ElastiCache keeps automatic snapshots 1 to 35 days.
const MAX_RETENTION_DAYS: i32 = 35;

/// Where the cache nodes go.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SubnetPlacement {
    /// A subnet group the operator creates from these subnets.
    Subnets(Vec<String>),
    /// An existing subnet group, used as it is.
    ExistingGroup(String),
}

/// A spec with every default applied and every ElastiCache rule checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedSpec {
    pub engine: Engine,
    /// `major.minor`.
    pub engine_version: String,
    /// Parameter group family, e.g. `valkey8`.
    pub family: &'static str,
    pub node_type: String,
    pub cluster_mode: ClusterMode,
    pub shards: i32,
    pub replicas_per_shard: i32,
    pub multi_az: bool,
    pub port: i32,
    pub at_rest_encryption: bool,
    pub kms_key_id: Option<String>,
    /// Parameters of the parameter group, `maxmemory-policy` included.
    pub parameters: BTreeMap<String, String>,
    pub placement: SubnetPlacement,
    pub allowed_cidrs: Vec<String>,
    pub allowed_security_group_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub snapshot_retention_days: i32,
    pub snapshot_window: Option<String>,
    pub maintenance_window: Option<String>,
    pub apply_immediately: bool,
    pub deletion_policy: DeletionPolicy,
    pub tags: BTreeMap<String, String>,
}

/// Checks `cache` for ElastiCache with the class's block `class`.
pub fn resolve(
    cache: &RedisCache,
    p: &PortableSpec,
    class: &ElastiCacheClass,
) -> Result<ResolvedSpec, ValidationErrors> {
    let mut errs = Errors::default();
    let (engine_version, family) = engine_family(p, &mut errs);
    let node_type = node_type(cache, p, class, &mut errs);
    let (placement, allowed_cidrs, allowed_security_group_ids, security_group_ids) =
        network(cache, p, class, &mut errs);
    let (snapshot_retention_days, snapshot_window) = snapshots(cache, p, &mut errs);
    let mut parameters = p.parameters.clone();
    parameters.insert(
        "maxmemory-policy".into(),
        p.eviction_policy.as_str().to_string(),
    );
    let tags = tags(p, class, &mut errs);
    errs.finish(ResolvedSpec {
        engine: p.engine,
        engine_version,
        family,
        node_type,
        cluster_mode: p.cluster_mode,
        shards: p.shards,
        replicas_per_shard: p.replicas_per_shard,
        multi_az: p.multi_az,
        port: p.port,
        at_rest_encryption: p.at_rest_encryption,
        kms_key_id: p
            .kms_key_id
            .clone()
            .or_else(|| class.kms_key_id.clone().filter(|_| p.at_rest_encryption)),
        parameters,
        placement,
        allowed_cidrs,
        allowed_security_group_ids,
        security_group_ids,
        snapshot_retention_days,
        snapshot_window,
        maintenance_window: p.maintenance_window.clone(),
        apply_immediately: p.apply_immediately,
        deletion_policy: p.deletion_policy,
        tags,
    })
}

fn engine_family(p: &PortableSpec, errs: &mut Errors) -> (String, &'static str) {
    let version = p.engine_version.clone().unwrap_or_else(|| {
        match p.engine {
            Engine::Redis => "7.1",
            Engine::Valkey => "8.0",
        }
        .to_string()
    });
    let family = match parse_major_minor(&version) {
        None => "",
        Some((major, _)) => match family_for(p.engine, major) {
            Some(f) => f,
            None => {
                errs.add(
                    "spec.engineVersion",
                    format!(
                        "{} {version} is not supported on ElastiCache; supported: {}",
                        p.engine,
                        supported_versions()
                    ),
                );
                ""
            }
        },
    };
    (version, family)
}

/// `spec.nodeType`, else `memory` mapped in the class's family, else the
/// class's node type, else what the cache runs now, else the fallback.
fn node_type(
    cache: &RedisCache,
    p: &PortableSpec,
    class: &ElastiCacheClass,
    errs: &mut Errors,
) -> String {
    let family = class.node_family.as_deref();
    let from_memory = |bytes: u64, field: &str, errs: &mut Errors| {
        node_types::for_memory(bytes, family).unwrap_or_else(|m| {
            errs.add(field, m);
            String::new()
        })
    };
    let chosen = match (&cache.spec.node_type, p.memory, &class.node_type) {
        (Some(t), _, _) => t.clone(),
        (None, Some(bytes), _) if p.memory_field == "spec.memory" => {
            from_memory(bytes, "spec.memory", errs)
        }
        (None, _, Some(t)) => t.clone(),
        (None, Some(bytes), None) => from_memory(bytes, p.memory_field, errs),
        (None, None, None) => cache
            .status
            .as_ref()
            .and_then(|s| s.node_type.clone())
            .unwrap_or_else(|| FALLBACK_NODE_TYPE.to_string()),
    };
    if !chosen.is_empty() && !is_node_type(&chosen) {
        let field = if cache.spec.node_type.is_some() {
            "spec.nodeType"
        } else {
            "the class's elastiCache.nodeType"
        };
        errs.add(
            field,
            format!(
                "{chosen:?} is not an ElastiCache node type; write it like \"cache.t4g.small\""
            ),
        );
    }
    chosen
}

type Network = (SubnetPlacement, Vec<String>, Vec<String>, Vec<String>);

fn network(
    cache: &RedisCache,
    p: &PortableSpec,
    class: &ElastiCacheClass,
    errs: &mut Errors,
) -> Network {
    let network = cache.spec.network.clone().unwrap_or_default();
    let placement = match (&network.subnet_group_name, &network.subnet_ids) {
        (Some(_), Some(_)) => {
            errs.add(
                "spec.network",
                "set either subnetGroupName or subnetIds, not both",
            );
            SubnetPlacement::Subnets(Vec::new())
        }
        (Some(group), None) => SubnetPlacement::ExistingGroup(group.clone()),
        (None, Some(ids)) => {
            check_ids(errs, "spec.network.subnetIds", ids, "subnet-");
            if ids.is_empty() {
                errs.add(
                    "spec.network.subnetIds",
                    "is empty; list at least one subnet id or remove the field to use the class's subnets",
                );
            }
            SubnetPlacement::Subnets(ids.clone())
        }
        (None, None) => match (&class.subnet_group_name, non_empty(&class.subnet_ids)) {
            (Some(group), _) if !group.is_empty() => SubnetPlacement::ExistingGroup(group.clone()),
            (_, ids) if !ids.is_empty() => {
                check_ids(errs, "the class's elastiCache.subnetIds", &ids, "subnet-");
                SubnetPlacement::Subnets(ids)
            }
            _ => {
                errs.add(
                    "spec.network",
                    "no subnets: the class names neither elastiCache.subnetIds nor elastiCache.subnetGroupName; ask the platform team to set them, or set spec.network.subnetIds",
                );
                SubnetPlacement::Subnets(Vec::new())
            }
        },
    };
    let allowed_cidrs = match &p.allowed_cidrs {
        Some(c) => c.clone(),
        None => {
            let c = non_empty(&class.allowed_cidrs);
            for (i, cidr) in c.iter().enumerate() {
                if let Err(m) = check_cidr(cidr) {
                    errs.add(format!("the class's elastiCache.allowedCidrs[{i}]"), m);
                }
            }
            c
        }
    };
    let mut allowed_sgs = non_empty(&class.allowed_security_group_ids);
    check_ids(
        errs,
        "spec.network.allowedSecurityGroupIds",
        &network.allowed_security_group_ids,
        "sg-",
    );
    merge_unique(&mut allowed_sgs, &network.allowed_security_group_ids);
    let mut sgs = non_empty(&class.security_group_ids);
    check_ids(
        errs,
        "spec.network.securityGroupIds",
        &network.security_group_ids,
        "sg-",
    );
    merge_unique(&mut sgs, &network.security_group_ids);
    if allowed_cidrs.is_empty() && allowed_sgs.is_empty() {
        errs.add(
            "spec.network.allowedCidrs",
            "nobody could connect: list the CIDRs (e.g. the cluster's node subnets) or security groups that may reach the cache",
        );
    }
    (placement, allowed_cidrs, allowed_sgs, sgs)
}

/// Automatic snapshots from `persistence` (or the older `backup` block).
fn snapshots(cache: &RedisCache, p: &PortableSpec, errs: &mut Errors) -> (i32, Option<String>) {
    let backup = cache.spec.backup.clone().unwrap_or_default();
    if !(0..=MAX_RETENTION_DAYS).contains(&backup.retention_days) {
        errs.add(
            "spec.backup.retentionDays",
            format!(
                "{} is out of range; keep snapshots 0 to 35 days",
                backup.retention_days
            ),
        );
    }
    if let Some(w) = &backup.window {
        if let Err(m) = window_minutes(w, false).and_then(|m| at_least_an_hour(m, w)) {
            errs.add("spec.backup.window", m);
        }
    }
    let days = match &p.persistence {
        Persistence::None => backup.retention_days,
        Persistence::AppendOnly => {
            errs.add(
                "spec.persistence.mode",
                "AppendOnly is not available on ElastiCache (Redis OSS 7 and Valkey clusters do not support AOF there); use Snapshot for daily backups, or a class of another provider",
            );
            0
        }
        Persistence::Snapshot {
            interval,
            retention,
        } => {
            if interval.is_some_and(|i| i != Duration::from_secs(86_400)) {
                errs.add(
                    "spec.persistence.snapshotInterval",
                    "ElastiCache takes one automatic snapshot a day; remove snapshotInterval or set it to 24h",
                );
            }
            let days = retention.map(|r| r.as_secs().div_ceil(86_400)).unwrap_or(1);
            if !(1..=MAX_RETENTION_DAYS as u64).contains(&days) {
                errs.add(
                    "spec.persistence.retention",
                    format!(
                        "ElastiCache keeps snapshots 1 to 35 days; {days} days is out of range"
                    ),
                );
            }
            if backup.retention_days != 0 && backup.retention_days as u64 != days {
                errs.add(
                    "spec.backup.retentionDays",
                    "conflicts with spec.persistence.retention; remove spec.backup.retentionDays",
                );
            }
            i32::try_from(days).unwrap_or(MAX_RETENTION_DAYS)
        }
    };
    (days, backup.window)
}

fn tags(p: &PortableSpec, class: &ElastiCacheClass, errs: &mut Errors) -> BTreeMap<String, String> {
    let mut tags = class.tags.clone();
    tags.extend(p.tags.clone());
    if tags.len() > MAX_USER_TAGS {
        errs.add(
            "spec.tags",
            format!(
                "{} tags with the class's; at most {MAX_USER_TAGS} are allowed",
                tags.len()
            ),
        );
    }
    for (key, value) in &p.tags {
        let field = format!("spec.tags[{key}]");
        if key.is_empty() || key.len() > 128 {
            errs.add(&field, "tag keys must be 1 to 128 characters");
        } else if value.len() > 256 {
            errs.add(&field, "tag values must be at most 256 characters");
        }
    }
    tags
}

/// Parameter group family for an engine and major version.
pub fn family_for(engine: Engine, major: u32) -> Option<&'static str> {
    SUPPORTED_FAMILIES
        .iter()
        .find(|(e, m, _)| *e == engine && *m == major)
        .map(|(_, _, f)| *f)
}

fn supported_versions() -> String {
    SUPPORTED_FAMILIES
        .iter()
        .map(|(e, m, _)| format!("{e} {m}.x"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_node_type(s: &str) -> bool {
    let mut parts = s.split('.');
    let word = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
    };
    parts.next() == Some("cache")
        && word(parts.next())
        && word(parts.next())
        && parts.next().is_none()
}

fn check_ids(errs: &mut Errors, field: &str, ids: &[String], prefix: &str) {
    for (i, id) in ids.iter().enumerate() {
        let rest = id.strip_prefix(prefix).unwrap_or("");
        if rest.is_empty()
            || !rest
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            errs.add(
                format!("{field}[{i}]"),
                format!("{id:?} is not an id like \"{prefix}0123abcd\""),
            );
        }
    }
}

fn non_empty(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn merge_unique(into: &mut Vec<String>, extra: &[String]) {
    for e in extra {
        if !into.contains(e) {
            into.push(e.clone());
        }
    }
}

#[cfg(test)]
mod tests;
