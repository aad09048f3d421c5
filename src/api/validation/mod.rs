//! Validation of the portable fields of a RedisCache, with its class's
//! defaults applied. Pure functions: no client, no backend. Each concern is
//! its own function (engine, topology, memory and eviction, persistence,
//! auth, network, parameters, Secret), so each rule reads on its own; a
//! backend then refuses what it cannot honour ([`crate::backends::Backend::validate`]).
//!
//! The API server enforces most rules at admission already; the operator
//! checks them again because it also sees the class and because a CRD
//! installed without its CEL rules must not lead to a failed backend call.

mod fields;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use kube::ResourceExt;

pub use fields::{closest, unknown_fields};

use super::quantity::parse_bytes;
use super::{
    ClusterMode, DeletionPolicy, Engine, EvictionPolicy, PersistenceMode, RedisCache,
    RedisCacheClass, RedisCacheSpec,
};

/// Parameters every cache gets unless the spec overrides them.
pub const DEFAULT_PARAMETERS: [(&str, &str); 2] = [("tcp-keepalive", "300"), ("timeout", "0")];

const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(3600);
/// Placeholders every backend fills in `connectionSecret.extraKeys`.
pub const PLACEHOLDERS: [&str; 9] = [
    "uri",
    "host",
    "port",
    "password",
    "readerHost",
    "readerUri",
    "caCert",
    "restUrl",
    "restToken",
];
/// Keys the operator writes itself; `extraKeys` may not reuse them.
pub const RESERVED_KEYS: [&str; 14] = [
    "type",
    "provider",
    "host",
    "port",
    "password",
    "tls",
    "uri",
    "readerHost",
    "readerUri",
    "clusterMode",
    "ca.crt",
    "restUrl",
    "restToken",
    "readOnlyRestToken",
];

/// One rule a spec breaks: the field, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.network.allowedCidrs[1]`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every rule a spec breaks (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// One error.
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError::new(field, message)])
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

/// Collects errors while each concern is checked.
#[derive(Default)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    /// Records that `field` breaks a rule.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn finish<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ValidationErrors(self.0))
        }
    }
}

/// How the dataset is persisted, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persistence {
    None,
    Snapshot {
        interval: Option<Duration>,
        retention: Option<Duration>,
    },
    AppendOnly,
}

/// The portable fields of a spec with the class's defaults applied and
/// every portable rule checked. Backend-only fields (`nodeType`,
/// `network.subnetIds`, `backup`, …) are read by the backend from the spec.
#[derive(Clone, Debug, PartialEq)]
pub struct PortableSpec {
    pub engine: Engine,
    /// `major.minor` when the spec sets one; the backend picks its newest otherwise.
    pub engine_version: Option<String>,
    /// `maxmemory` in bytes, from the spec or the class's default.
    pub memory: Option<u64>,
    /// Where `memory` came from, for messages (`spec.memory`, a class default).
    pub memory_field: &'static str,
    pub eviction_policy: EvictionPolicy,
    pub persistence: Persistence,
    pub cluster_mode: ClusterMode,
    pub shards: i32,
    pub replicas_per_shard: i32,
    pub multi_az: bool,
    pub port: i32,
    pub at_rest_encryption: bool,
    pub kms_key_id: Option<String>,
    pub rotation_period: Option<Duration>,
    pub rotation_grace_period: Duration,
    /// User parameters merged over [`DEFAULT_PARAMETERS`].
    pub parameters: BTreeMap<String, String>,
    /// `spec.network.allowedCidrs`, when the spec sets it.
    pub allowed_cidrs: Option<Vec<String>>,
    pub maintenance_window: Option<String>,
    pub apply_immediately: bool,
    pub deletion_policy: DeletionPolicy,
    pub secret_name: String,
    pub extra_keys: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// Checks the portable fields of `cache` and applies `class`'s defaults.
pub fn resolve(
    cache: &RedisCache,
    class: &RedisCacheClass,
) -> Result<PortableSpec, ValidationErrors> {
    let spec = &cache.spec;
    let defaults = class.spec.defaults.clone().unwrap_or_default();
    let mut errs = Errors::default();
    let engine = spec
        .engine
        .or(defaults.engine)
        .or_else(|| running_engine(cache))
        .unwrap_or(Engine::Valkey);
    let engine_version = check_engine_version(spec, &mut errs);
    let (memory, memory_field) = check_memory(spec, defaults.memory.as_deref(), &mut errs);
    let (cluster_mode, multi_az) = check_topology(spec, &mut errs);
    let (at_rest_encryption, kms_key_id) = check_encryption(spec, &mut errs);
    let (rotation_period, rotation_grace_period) = check_auth(spec, &mut errs);
    let persistence = check_persistence(spec, &mut errs);
    let parameters = check_parameters(spec, &mut errs);
    let allowed_cidrs = check_allowed_cidrs(spec, &mut errs);
    if let Some(w) = &spec.maintenance_window {
        if let Err(m) = window_minutes(w, true).and_then(|m| at_least_an_hour(m, w)) {
            errs.add("spec.maintenanceWindow", m);
        }
    }
    let (secret_name, extra_keys) = check_secret(&cache.name_any(), spec, &mut errs);
    check_tags(spec, &mut errs);
    errs.finish(PortableSpec {
        engine,
        engine_version,
        memory,
        memory_field,
        eviction_policy: spec
            .eviction_policy
            .or(defaults.eviction_policy)
            .unwrap_or(EvictionPolicy::AllKeysLru),
        persistence,
        cluster_mode,
        shards: spec.shards,
        replicas_per_shard: spec.replicas_per_shard,
        multi_az,
        port: spec.port,
        at_rest_encryption,
        kms_key_id,
        rotation_period,
        rotation_grace_period,
        parameters,
        allowed_cidrs,
        maintenance_window: spec.maintenance_window.clone(),
        apply_immediately: spec.apply_immediately,
        deletion_policy: spec
            .deletion_policy
            .or(defaults.deletion_policy)
            .unwrap_or(DeletionPolicy::Delete),
        secret_name,
        extra_keys,
        tags: spec.tags.clone(),
    })
}

/// The engine a cache already runs: an unset `spec.engine` never switches it.
fn running_engine(cache: &RedisCache) -> Option<Engine> {
    cache.status.as_ref()?.engine.as_deref()?.parse().ok()
}

fn check_engine_version(spec: &RedisCacheSpec, errs: &mut Errors) -> Option<String> {
    let v = spec.engine_version.clone()?;
    if parse_major_minor(&v).is_none() {
        errs.add(
            "spec.engineVersion",
            format!("{v:?} is not a major.minor version; write it like \"7.1\""),
        );
    }
    Some(v)
}

/// Memory from the spec, else the class's default; far outside what any
/// backend offers is refused here.
fn check_memory(
    spec: &RedisCacheSpec,
    class_default: Option<&str>,
    errs: &mut Errors,
) -> (Option<u64>, &'static str) {
    const MIN: u64 = 32 << 20;
    const MAX: u64 = 4 << 40;
    let (value, field) = match (&spec.memory, class_default) {
        (Some(m), _) => (m.as_str(), "spec.memory"),
        (None, Some(m)) => (m, "the class's defaults.memory"),
        (None, None) => return (None, "spec.memory"),
    };
    match parse_bytes(value) {
        Ok(b) if (MIN..=MAX).contains(&b) => (Some(b), field),
        Ok(_) => {
            errs.add(field, format!("{value:?} is out of range; use 32Mi to 4Ti"));
            (None, field)
        }
        Err(m) => {
            errs.add(field, m);
            (None, field)
        }
    }
}

fn check_topology(spec: &RedisCacheSpec, errs: &mut Errors) -> (ClusterMode, bool) {
    if !(1..=90).contains(&spec.shards) {
        errs.add(
            "spec.shards",
            format!("{} is out of range; use 1 to 90 shards", spec.shards),
        );
    }
    let cluster_mode = spec.cluster_mode.unwrap_or(if spec.shards > 1 {
        ClusterMode::Enabled
    } else {
        ClusterMode::Disabled
    });
    if cluster_mode == ClusterMode::Disabled && spec.shards != 1 {
        errs.add(
            "spec.shards",
            format!(
                "{} shards need cluster mode; set spec.clusterMode: Enabled or spec.shards: 1",
                spec.shards
            ),
        );
    }
    if !(0..=5).contains(&spec.replicas_per_shard) {
        errs.add(
            "spec.replicasPerShard",
            format!(
                "{} is out of range; use 0 to 5 replicas per shard",
                spec.replicas_per_shard
            ),
        );
    }
    let multi_az = spec.multi_az.unwrap_or(spec.replicas_per_shard >= 1);
    if multi_az && spec.replicas_per_shard < 1 {
        errs.add(
            "spec.multiAZ",
            "Multi-AZ needs a replica to fail over to; set spec.replicasPerShard >= 1 or spec.multiAZ: false",
        );
    }
    if !(1024..=65535).contains(&spec.port) {
        errs.add(
            "spec.port",
            format!(
                "{} is out of range; use a port from 1024 to 65535",
                spec.port
            ),
        );
    }
    (cluster_mode, multi_az)
}

fn check_encryption(spec: &RedisCacheSpec, errs: &mut Errors) -> (bool, Option<String>) {
    let (at_rest, kms) = match &spec.encryption {
        Some(e) => (e.at_rest, e.kms_key_id.clone()),
        None => (true, None),
    };
    if kms.is_some() && !at_rest {
        errs.add(
            "spec.encryption.kmsKeyId",
            "a KMS key needs at-rest encryption; set spec.encryption.atRest: true or remove kmsKeyId",
        );
    }
    (at_rest, kms)
}

fn check_auth(spec: &RedisCacheSpec, errs: &mut Errors) -> (Option<Duration>, Duration) {
    let auth = spec.auth.clone().unwrap_or(super::AuthSpec {
        rotation_period: None,
        rotation_grace_period: None,
    });
    let period = match auth.rotation_period.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) if d >= Duration::from_secs(3600) => Some(d),
        Some(Ok(_)) => {
            errs.add(
                "spec.auth.rotationPeriod",
                "must be at least 1h; rotating more often gives clients no time to pick up the new token",
            );
            None
        }
        Some(Err(e)) => {
            errs.add("spec.auth.rotationPeriod", e);
            None
        }
    };
    let grace = match auth.rotation_grace_period.as_deref().map(parse_duration) {
        None => DEFAULT_GRACE_PERIOD,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            errs.add("spec.auth.rotationGracePeriod", e);
            DEFAULT_GRACE_PERIOD
        }
    };
    if period.is_some_and(|p| grace >= p) {
        errs.add(
            "spec.auth.rotationGracePeriod",
            "must be shorter than spec.auth.rotationPeriod",
        );
    }
    (period, grace)
}

fn check_persistence(spec: &RedisCacheSpec, errs: &mut Errors) -> Persistence {
    let Some(p) = &spec.persistence else {
        return Persistence::None;
    };
    let mut duration = |field: &str, v: &Option<String>| match v.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) if !d.is_zero() => Some(d),
        Some(Ok(_)) => {
            errs.add(field, "must be longer than zero");
            None
        }
        Some(Err(e)) => {
            errs.add(field, e);
            None
        }
    };
    let interval = duration("spec.persistence.snapshotInterval", &p.snapshot_interval);
    let retention = duration("spec.persistence.retention", &p.retention);
    match p.mode {
        PersistenceMode::None | PersistenceMode::AppendOnly
            if interval.is_some() || retention.is_some() =>
        {
            errs.add(
                "spec.persistence",
                "snapshotInterval and retention apply to mode Snapshot only",
            );
            Persistence::None
        }
        PersistenceMode::None => Persistence::None,
        PersistenceMode::AppendOnly => Persistence::AppendOnly,
        PersistenceMode::Snapshot => Persistence::Snapshot {
            interval,
            retention,
        },
    }
}

fn check_parameters(spec: &RedisCacheSpec, errs: &mut Errors) -> BTreeMap<String, String> {
    let mut parameters: BTreeMap<String, String> = DEFAULT_PARAMETERS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (key, value) in &spec.parameters {
        let field = format!("spec.parameters[{key}]");
        if key == "cluster-enabled" {
            errs.add(
                field,
                "is set by the operator from spec.clusterMode; remove it",
            );
        } else if key == "maxmemory-policy" {
            errs.add(
                field,
                format!("is spec.evictionPolicy now; remove it and set evictionPolicy: {value}"),
            );
        } else if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            errs.add(
                field,
                "is not a Redis parameter name; use lowercase letters, digits and '-'",
            );
        } else if value.is_empty() {
            errs.add(field, "needs a value; remove the key to use the default");
        } else {
            parameters.insert(key.clone(), value.clone());
        }
    }
    parameters
}

fn check_allowed_cidrs(spec: &RedisCacheSpec, errs: &mut Errors) -> Option<Vec<String>> {
    let cidrs = spec.network.as_ref()?.allowed_cidrs.clone()?;
    for (i, cidr) in cidrs.iter().enumerate() {
        if let Err(message) = check_cidr(cidr) {
            errs.add(format!("spec.network.allowedCidrs[{i}]"), message);
        }
    }
    Some(cidrs)
}

fn check_secret(
    name: &str,
    spec: &RedisCacheSpec,
    errs: &mut Errors,
) -> (String, BTreeMap<String, String>) {
    let secret_spec = spec.connection_secret.clone().unwrap_or_default();
    let secret_name = secret_spec
        .name
        .clone()
        .unwrap_or_else(|| format!("{name}-redis"));
    if !is_dns_subdomain(&secret_name) {
        errs.add(
            "spec.connectionSecret.name",
            format!("{secret_name:?} is not a valid Secret name; use lowercase letters, digits, '-' and '.'"),
        );
    }
    for (key, template) in &secret_spec.extra_keys {
        let field = format!("spec.connectionSecret.extraKeys[{key}]");
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            errs.add(
                &field,
                "is not a valid Secret key; use letters, digits, '-', '_' and '.'",
            );
        }
        if RESERVED_KEYS.contains(&key.as_str()) {
            errs.add(
                &field,
                "is a key the operator writes itself; choose another name",
            );
        }
        if let Err(unknown) = check_template(template) {
            errs.add(
                &field,
                format!(
                    "unknown placeholder {{{unknown}}}; use {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
                ),
            );
        }
    }
    (secret_name, secret_spec.extra_keys)
}

fn check_tags(spec: &RedisCacheSpec, errs: &mut Errors) {
    for key in spec.tags.keys() {
        if key.starts_with("rediscache.dev/") || key.starts_with("aws:") {
            errs.add(
                format!("spec.tags[{key}]"),
                "keys starting with rediscache.dev/ or aws: are reserved",
            );
        }
    }
}

/// `"7.1"` → `(7, 1)`.
pub fn parse_major_minor(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    let all_digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !all_digits(major) || !all_digits(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Parses a Kubernetes duration such as `720h` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: kube::core::Duration = s
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write it like \"720h\" or \"1h30m\""))?;
    if d.is_negative() {
        return Err(format!("{s:?} is negative; durations must be positive"));
    }
    Ok(d.into())
}

/// Checks one allowed CIDR block.
pub fn check_cidr(cidr: &str) -> Result<(), String> {
    let Some((addr, len)) = cidr.split_once('/') else {
        return Err(format!(
            "{cidr:?} is not a CIDR block; write it like \"10.0.0.0/16\""
        ));
    };
    let (Ok(addr), Ok(len)) = (addr.parse::<IpAddr>(), len.parse::<u8>()) else {
        return Err(format!(
            "{cidr:?} is not a CIDR block; write it like \"10.0.0.0/16\""
        ));
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("{cidr:?} has a prefix longer than {max}"));
    }
    if len == 0 {
        return Err(format!(
            "{cidr:?} would open the cache to every address; list the cluster's subnets (e.g. \"10.0.0.0/16\") instead"
        ));
    }
    Ok(())
}

/// Minutes covered by a window `hh24:mi-hh24:mi` (daily) or
/// `ddd:hh24:mi-ddd:hh24:mi` (weekly).
pub fn window_minutes(w: &str, weekly: bool) -> Result<u32, String> {
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let example = if weekly {
        "\"sun:05:00-sun:06:00\""
    } else {
        "\"03:00-04:00\""
    };
    let bad = || format!("{w:?} is not a window; write it like {example} (UTC)");
    let point = |p: &str| -> Option<u32> {
        let (day, time) = if weekly {
            let (d, t) = p.split_once(':')?;
            let day = DAYS.iter().position(|x| x.eq_ignore_ascii_case(d))? as u32;
            (day, t)
        } else {
            (0, p)
        };
        let (h, m) = time.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(day * 1440 + h * 60 + m)
    };
    let (start, end) = w.split_once('-').ok_or_else(bad)?;
    let (start, end) = (point(start).ok_or_else(bad)?, point(end).ok_or_else(bad)?);
    let period = if weekly { 7 * 1440 } else { 1440 };
    Ok((end + period - start) % period)
}

/// Ok when a window of `minutes` lasts an hour or more.
pub fn at_least_an_hour(minutes: u32, w: &str) -> Result<u32, String> {
    if minutes < 60 {
        Err(format!(
            "{w:?} is {minutes} minutes long; it must last at least 60"
        ))
    } else {
        Ok(minutes)
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Ok, or the first unknown placeholder in a template.
fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Ok(());
        };
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(name.to_string());
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests;
