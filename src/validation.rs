//! Validation of a RedisCache spec against every rule of the API, with the
//! operator defaults applied. Pure functions: no client, no AWS.
//!
//! The API server enforces most rules at admission already; the operator checks
//! them again because it also sees the defaults (an empty default subnet list,
//! say) and because a CRD installed without its CEL rules must not lead to a
//! failed AWS call.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::config::OperatorDefaults;
use crate::crd::{ClusterMode, DeletionPolicy, Engine, RedisCacheSpec};

/// Parameters every cache gets unless the spec overrides them.
pub const DEFAULT_PARAMETERS: [(&str, &str); 3] = [
    ("maxmemory-policy", "allkeys-lru"),
    ("tcp-keepalive", "300"),
    ("timeout", "0"),
];

/// Engine/version combinations and their parameter group family.
pub const SUPPORTED_FAMILIES: [(Engine, u32, &str); 3] = [
    (Engine::Redis, 7, "redis7"),
    (Engine::Valkey, 7, "valkey7"),
    (Engine::Valkey, 8, "valkey8"),
];

const MAX_USER_TAGS: usize = 40;
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(3600);
const PLACEHOLDERS: [&str; 6] = ["uri", "host", "port", "password", "readerHost", "readerUri"];

/// One rule a spec breaks: the field, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.network.allowedCidrs[1]`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every rule a spec breaks (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

/// Where the cache nodes go.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SubnetPlacement {
    /// A subnet group the operator creates from these subnets.
    Subnets(Vec<String>),
    /// An existing subnet group, used as it is.
    ExistingGroup(String),
}

/// A spec with every default applied and every rule checked.
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
    pub rotation_period: Option<Duration>,
    pub rotation_grace_period: Duration,
    /// User parameters merged over [`DEFAULT_PARAMETERS`].
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
    pub secret_name: String,
    pub extra_keys: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// Checks `spec` of the RedisCache `name` and applies the operator defaults.
pub fn resolve(
    name: &str,
    spec: &RedisCacheSpec,
    defaults: &OperatorDefaults,
) -> Result<ResolvedSpec, ValidationErrors> {
    let mut errs = Vec::new();
    let mut err = |field: &str, message: String| {
        errs.push(FieldError {
            field: field.to_string(),
            message,
        })
    };

    let engine = spec.engine.unwrap_or(defaults.default_engine);
    let engine_version = spec.engine_version.clone().unwrap_or_else(|| {
        match engine {
            Engine::Redis => "7.1",
            Engine::Valkey => "8.0",
        }
        .to_string()
    });
    let family = match parse_major_minor(&engine_version) {
        None => {
            err(
                "spec.engineVersion",
                format!("{engine_version:?} is not a major.minor version; write it like \"7.1\""),
            );
            ""
        }
        Some((major, _)) => match family_for(engine, major) {
            Some(f) => f,
            None => {
                err(
                    "spec.engineVersion",
                    format!(
                        "{engine} {engine_version} is not supported; supported: {}",
                        supported_versions()
                    ),
                );
                ""
            }
        },
    };

    let node_type = spec
        .node_type
        .clone()
        .unwrap_or_else(|| defaults.default_node_type.clone());
    if !is_node_type(&node_type) {
        let field = if spec.node_type.is_some() {
            "spec.nodeType"
        } else {
            "--default-node-type"
        };
        err(
            field,
            format!(
                "{node_type:?} is not an ElastiCache node type; write it like \"cache.t4g.small\""
            ),
        );
    }

    if !(1..=90).contains(&spec.shards) {
        err(
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
        err(
            "spec.shards",
            format!(
                "{} shards need cluster mode; set spec.clusterMode: Enabled or spec.shards: 1",
                spec.shards
            ),
        );
    }
    if !(0..=5).contains(&spec.replicas_per_shard) {
        err(
            "spec.replicasPerShard",
            format!(
                "{} is out of range; use 0 to 5 replicas per shard",
                spec.replicas_per_shard
            ),
        );
    }
    let multi_az = spec.multi_az.unwrap_or(spec.replicas_per_shard >= 1);
    if multi_az && spec.replicas_per_shard < 1 {
        err(
            "spec.multiAZ",
            "Multi-AZ needs a replica to fail over to; set spec.replicasPerShard >= 1 or spec.multiAZ: false".into(),
        );
    }
    if !(1024..=65535).contains(&spec.port) {
        err(
            "spec.port",
            format!(
                "{} is out of range; use a port from 1024 to 65535",
                spec.port
            ),
        );
    }

    let (at_rest_encryption, kms_key_id) = match &spec.encryption {
        Some(e) => (e.at_rest, e.kms_key_id.clone()),
        None => (true, None),
    };
    if kms_key_id.is_some() && !at_rest_encryption {
        err(
            "spec.encryption.kmsKeyId",
            "a KMS key needs at-rest encryption; set spec.encryption.atRest: true or remove kmsKeyId".into(),
        );
    }

    let auth = spec.auth.clone().unwrap_or(crate::crd::AuthSpec {
        rotation_period: None,
        rotation_grace_period: None,
    });
    let rotation_period = match auth.rotation_period.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) if d >= Duration::from_secs(3600) => Some(d),
        Some(Ok(_)) => {
            err(
                "spec.auth.rotationPeriod",
                "must be at least 1h; rotating more often gives clients no time to pick up the new token".into(),
            );
            None
        }
        Some(Err(e)) => {
            err("spec.auth.rotationPeriod", e);
            None
        }
    };
    let rotation_grace_period = match auth.rotation_grace_period.as_deref().map(parse_duration) {
        None => DEFAULT_GRACE_PERIOD,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            err("spec.auth.rotationGracePeriod", e);
            DEFAULT_GRACE_PERIOD
        }
    };
    if let Some(period) = rotation_period {
        if rotation_grace_period >= period {
            err(
                "spec.auth.rotationGracePeriod",
                "must be shorter than spec.auth.rotationPeriod".into(),
            );
        }
    }

    let mut parameters: BTreeMap<String, String> = DEFAULT_PARAMETERS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (key, value) in &spec.parameters {
        let field = format!("spec.parameters[{key}]");
        if key == "cluster-enabled" {
            err(
                &field,
                "is set by the operator from spec.clusterMode; remove it".into(),
            );
        } else if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            err(
                &field,
                "is not a Redis parameter name; use lowercase letters, digits and '-'".into(),
            );
        } else if value.is_empty() {
            err(
                &field,
                "needs a value; remove the key to use the default".into(),
            );
        }
        parameters.insert(key.clone(), value.clone());
    }

    let network = spec.network.clone().unwrap_or_default();
    let placement = match (&network.subnet_group_name, &network.subnet_ids) {
        (Some(_), Some(_)) => {
            err(
                "spec.network",
                "set either subnetGroupName or subnetIds, not both".into(),
            );
            SubnetPlacement::Subnets(Vec::new())
        }
        (Some(group), None) => SubnetPlacement::ExistingGroup(group.clone()),
        (None, Some(ids)) => {
            check_ids(&mut err, "spec.network.subnetIds", ids, "subnet-");
            if ids.is_empty() {
                err(
                    "spec.network.subnetIds",
                    "is empty; list at least one subnet id or remove the field to use the operator default".into(),
                );
            }
            SubnetPlacement::Subnets(ids.clone())
        }
        (None, None) => {
            let ids = non_empty(&defaults.default_subnet_ids);
            match &defaults.default_subnet_group_name {
                Some(group) if !group.is_empty() => SubnetPlacement::ExistingGroup(group.clone()),
                _ if !ids.is_empty() => {
                    check_ids(&mut err, "--default-subnet-ids", &ids, "subnet-");
                    SubnetPlacement::Subnets(ids)
                }
                _ => {
                    err(
                        "spec.network",
                        "no subnets: set spec.network.subnetIds or spec.network.subnetGroupName, or have the operator installed with default subnets".into(),
                    );
                    SubnetPlacement::Subnets(Vec::new())
                }
            }
        }
    };

    let (allowed_cidrs, cidr_field) = match &network.allowed_cidrs {
        Some(c) => (c.clone(), "spec.network.allowedCidrs"),
        None => (
            non_empty(&defaults.default_allowed_cidrs),
            "--default-allowed-cidrs",
        ),
    };
    for (i, cidr) in allowed_cidrs.iter().enumerate() {
        if let Err(message) = check_cidr(cidr) {
            err(&format!("{cidr_field}[{i}]"), message);
        }
    }
    let mut allowed_security_group_ids = non_empty(&defaults.default_allowed_security_group_ids);
    check_ids(
        &mut err,
        "spec.network.allowedSecurityGroupIds",
        &network.allowed_security_group_ids,
        "sg-",
    );
    merge_unique(
        &mut allowed_security_group_ids,
        &network.allowed_security_group_ids,
    );
    let mut security_group_ids = non_empty(&defaults.default_security_group_ids);
    check_ids(
        &mut err,
        "spec.network.securityGroupIds",
        &network.security_group_ids,
        "sg-",
    );
    merge_unique(&mut security_group_ids, &network.security_group_ids);
    if allowed_cidrs.is_empty() && allowed_security_group_ids.is_empty() {
        err(
            "spec.network.allowedCidrs",
            "nobody could connect: list the CIDRs (e.g. the cluster's node subnets) or security groups that may reach the cache".into(),
        );
    }

    let backup = spec.backup.clone().unwrap_or_default();
    if !(0..=35).contains(&backup.retention_days) {
        err(
            "spec.backup.retentionDays",
            format!(
                "{} is out of range; keep snapshots 0 to 35 days",
                backup.retention_days
            ),
        );
    }
    if let Some(w) = &backup.window {
        if let Err(m) = window_minutes(w, false).and_then(|m| at_least_an_hour(m, w)) {
            err("spec.backup.window", m);
        }
    }
    if let Some(w) = &spec.maintenance_window {
        if let Err(m) = window_minutes(w, true).and_then(|m| at_least_an_hour(m, w)) {
            err("spec.maintenanceWindow", m);
        }
    }

    let secret_spec = spec.connection_secret.clone().unwrap_or_default();
    let secret_name = secret_spec
        .name
        .clone()
        .unwrap_or_else(|| format!("{name}-redis"));
    if !is_dns_subdomain(&secret_name) {
        err(
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
            err(
                &field,
                "is not a valid Secret key; use letters, digits, '-', '_' and '.'".into(),
            );
        }
        if crate::secret::RESERVED_KEYS.contains(&key.as_str()) {
            err(
                &field,
                "is a key the operator writes itself; choose another name".into(),
            );
        }
        if let Err(unknown) = check_template(template) {
            err(
                &field,
                format!(
                    "unknown placeholder {{{unknown}}}; use {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
                ),
            );
        }
    }

    if spec.tags.len() > MAX_USER_TAGS {
        err(
            "spec.tags",
            format!(
                "{} tags; at most {MAX_USER_TAGS} are allowed",
                spec.tags.len()
            ),
        );
    }
    for (key, value) in &spec.tags {
        let field = format!("spec.tags[{key}]");
        if key.starts_with("rediscache.dev/") || key.starts_with("aws:") {
            err(
                &field,
                "keys starting with rediscache.dev/ or aws: are reserved".into(),
            );
        } else if key.is_empty() || key.len() > 128 {
            err(&field, "tag keys must be 1 to 128 characters".into());
        } else if value.len() > 256 {
            err(&field, "tag values must be at most 256 characters".into());
        }
    }

    if !errs.is_empty() {
        return Err(ValidationErrors(errs));
    }
    Ok(ResolvedSpec {
        engine,
        engine_version,
        family,
        node_type,
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
        placement,
        allowed_cidrs,
        allowed_security_group_ids,
        security_group_ids,
        snapshot_retention_days: backup.retention_days,
        snapshot_window: backup.window,
        maintenance_window: spec.maintenance_window.clone(),
        apply_immediately: spec.apply_immediately,
        deletion_policy: spec
            .deletion_policy
            .unwrap_or(defaults.default_deletion_policy),
        secret_name,
        extra_keys: secret_spec.extra_keys,
        tags: spec.tags.clone(),
    })
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

/// `"7.1"` → `(7, 1)`.
pub fn parse_major_minor(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    let all_digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !all_digits(major) || !all_digits(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
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

fn check_ids<F: FnMut(&str, String)>(err: &mut F, field: &str, ids: &[String], prefix: &str) {
    for (i, id) in ids.iter().enumerate() {
        let rest = id.strip_prefix(prefix).unwrap_or("");
        if rest.is_empty()
            || !rest
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            err(
                &format!("{field}[{i}]"),
                format!("{id:?} is not an id like \"{prefix}0123abcd\""),
            );
        }
    }
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
fn window_minutes(w: &str, weekly: bool) -> Result<u32, String> {
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

fn at_least_an_hour(minutes: u32, w: &str) -> Result<u32, String> {
    if minutes < 60 {
        Err(format!(
            "{w:?} is {minutes} minutes long; AWS needs at least 60"
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
mod tests {
    use super::*;
    use crate::crd::{EncryptionSpec, NetworkSpec};

    fn defaults() -> OperatorDefaults {
        OperatorDefaults {
            default_subnet_ids: vec!["subnet-0a1".into(), "subnet-0b2".into()],
            default_allowed_cidrs: vec!["10.0.0.0/16".into()],
            ..OperatorDefaults::default()
        }
    }

    fn spec() -> RedisCacheSpec {
        serde_json::from_value(serde_json::json!({})).expect("empty spec deserializes")
    }

    fn fields(r: Result<ResolvedSpec, ValidationErrors>) -> Vec<String> {
        r.expect_err("spec must be refused")
            .0
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn empty_spec_gets_every_default() {
        let r = resolve("sessions", &spec(), &defaults()).expect("valid");
        assert_eq!(r.engine, Engine::Redis);
        assert_eq!(r.engine_version, "7.1");
        assert_eq!(r.family, "redis7");
        assert_eq!(r.node_type, "cache.t4g.micro");
        assert_eq!(r.cluster_mode, ClusterMode::Disabled);
        assert_eq!((r.shards, r.replicas_per_shard, r.port), (1, 1, 6379));
        assert!(r.multi_az, "one replica means Multi-AZ by default");
        assert!(r.at_rest_encryption);
        assert_eq!(r.parameters["maxmemory-policy"], "allkeys-lru");
        assert_eq!(r.parameters["tcp-keepalive"], "300");
        assert_eq!(r.parameters["timeout"], "0");
        assert_eq!(
            r.placement,
            SubnetPlacement::Subnets(vec!["subnet-0a1".into(), "subnet-0b2".into()])
        );
        assert_eq!(r.allowed_cidrs, vec!["10.0.0.0/16".to_string()]);
        assert_eq!(r.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(r.secret_name, "sessions-redis");
        assert_eq!(r.rotation_grace_period, Duration::from_secs(3600));
        assert!(r.apply_immediately);
    }

    #[test]
    fn valkey_defaults_to_8_and_family_follows_version() {
        let mut s = spec();
        s.engine = Some(Engine::Valkey);
        assert_eq!(
            resolve("a", &s, &defaults()).expect("valid").family,
            "valkey8"
        );
        s.engine_version = Some("7.2".into());
        assert_eq!(
            resolve("a", &s, &defaults()).expect("valid").family,
            "valkey7"
        );
        s.engine_version = Some("6.2".into());
        let e = resolve("a", &s, &defaults()).expect_err("unsupported");
        assert_eq!(e.0[0].field, "spec.engineVersion");
        assert!(e.0[0].message.contains("valkey 8.x"), "{}", e.0[0].message);
    }

    #[test]
    fn several_shards_enable_cluster_mode_but_not_when_disabled() {
        let mut s = spec();
        s.shards = 3;
        assert_eq!(
            resolve("a", &s, &defaults()).expect("valid").cluster_mode,
            ClusterMode::Enabled
        );
        s.cluster_mode = Some(ClusterMode::Disabled);
        let e = resolve("a", &s, &defaults()).expect_err("refused");
        assert_eq!(e.0[0].field, "spec.shards");
        assert!(e.0[0].message.contains("clusterMode: Enabled"));
    }

    #[test]
    fn ranges_are_enforced_with_the_field_named() {
        let mut s = spec();
        s.replicas_per_shard = 9;
        s.shards = 91;
        s.port = 80;
        let f = fields(resolve("a", &s, &defaults()));
        assert!(f.contains(&"spec.replicasPerShard".to_string()));
        assert!(f.contains(&"spec.shards".to_string()));
        assert!(f.contains(&"spec.port".to_string()));
    }

    #[test]
    fn multi_az_needs_a_replica() {
        let mut s = spec();
        s.replicas_per_shard = 0;
        assert!(!resolve("a", &s, &defaults()).expect("valid").multi_az);
        s.multi_az = Some(true);
        assert_eq!(fields(resolve("a", &s, &defaults())), vec!["spec.multiAZ"]);
    }

    #[test]
    fn open_world_cidr_is_refused_naming_its_index() {
        let mut s = spec();
        s.network = Some(NetworkSpec {
            allowed_cidrs: Some(vec![
                "10.0.0.0/8".into(),
                "0.0.0.0/0".into(),
                "::/0".into(),
                "10.1.2.3".into(),
            ]),
            ..NetworkSpec::default()
        });
        let e = resolve("a", &s, &defaults()).expect_err("refused");
        let f: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            f,
            vec![
                "spec.network.allowedCidrs[1]",
                "spec.network.allowedCidrs[2]",
                "spec.network.allowedCidrs[3]"
            ]
        );
        assert!(e.0[0].message.contains("every address"));
    }

    #[test]
    fn missing_subnets_and_cidrs_are_explained() {
        let f = fields(resolve("a", &spec(), &OperatorDefaults::default()));
        assert_eq!(f, vec!["spec.network", "spec.network.allowedCidrs"]);
    }

    #[test]
    fn subnet_group_and_ids_are_exclusive_and_ids_are_checked() {
        let mut s = spec();
        s.network = Some(NetworkSpec {
            subnet_group_name: Some("shared".into()),
            subnet_ids: Some(vec!["subnet-1".into()]),
            ..NetworkSpec::default()
        });
        assert_eq!(fields(resolve("a", &s, &defaults())), vec!["spec.network"]);
        s.network = Some(NetworkSpec {
            subnet_ids: Some(vec!["subnet-0a".into(), "sub-1".into()]),
            allowed_security_group_ids: vec!["sg-XYZ".into()],
            ..NetworkSpec::default()
        });
        assert_eq!(
            fields(resolve("a", &s, &defaults())),
            vec![
                "spec.network.subnetIds[1]",
                "spec.network.allowedSecurityGroupIds[0]"
            ]
        );
        s.network = Some(NetworkSpec {
            subnet_group_name: Some("shared".into()),
            ..NetworkSpec::default()
        });
        assert_eq!(
            resolve("a", &s, &defaults()).expect("valid").placement,
            SubnetPlacement::ExistingGroup("shared".into())
        );
    }

    #[test]
    fn parameters_merge_over_defaults_and_cluster_enabled_is_refused() {
        let mut s = spec();
        s.parameters
            .insert("maxmemory-policy".into(), "volatile-lru".into());
        s.parameters
            .insert("notify-keyspace-events".into(), "Exe".into());
        let r = resolve("a", &s, &defaults()).expect("valid");
        assert_eq!(r.parameters["maxmemory-policy"], "volatile-lru");
        assert_eq!(r.parameters["notify-keyspace-events"], "Exe");
        assert_eq!(r.parameters["timeout"], "0");
        s.parameters.insert("cluster-enabled".into(), "yes".into());
        s.parameters.insert("Bad_Key".into(), "1".into());
        assert_eq!(
            fields(resolve("a", &s, &defaults())),
            vec![
                "spec.parameters[Bad_Key]",
                "spec.parameters[cluster-enabled]"
            ]
        );
    }

    #[test]
    fn windows_must_parse_and_last_an_hour() {
        let mut s = spec();
        s.maintenance_window = Some("sun:05:00-sun:05:30".into());
        s.backup = Some(crate::crd::BackupSpec {
            retention_days: 36,
            window: Some("25:00-26:00".into()),
        });
        assert_eq!(
            fields(resolve("a", &s, &defaults())),
            vec![
                "spec.backup.retentionDays",
                "spec.backup.window",
                "spec.maintenanceWindow"
            ]
        );
        s.maintenance_window = Some("sat:23:30-sun:00:30".into());
        s.backup = Some(crate::crd::BackupSpec {
            retention_days: 5,
            window: Some("23:30-00:30".into()),
        });
        assert!(
            resolve("a", &s, &defaults()).is_ok(),
            "windows may wrap around"
        );
    }

    #[test]
    fn auth_durations_are_checked() {
        let mut s = spec();
        s.auth = Some(crate::crd::AuthSpec {
            rotation_period: Some("30m".into()),
            rotation_grace_period: Some("soon".into()),
        });
        assert_eq!(
            fields(resolve("a", &s, &defaults())),
            vec!["spec.auth.rotationPeriod", "spec.auth.rotationGracePeriod"]
        );
        s.auth = Some(crate::crd::AuthSpec {
            rotation_period: Some("720h".into()),
            rotation_grace_period: Some("2h".into()),
        });
        let r = resolve("a", &s, &defaults()).expect("valid");
        assert_eq!(r.rotation_period, Some(Duration::from_secs(720 * 3600)));
        assert_eq!(r.rotation_grace_period, Duration::from_secs(7200));
    }

    #[test]
    fn kms_key_needs_at_rest_encryption() {
        let mut s = spec();
        s.encryption = Some(EncryptionSpec {
            at_rest: false,
            kms_key_id: Some("alias/cache".into()),
        });
        assert_eq!(
            fields(resolve("a", &s, &defaults())),
            vec!["spec.encryption.kmsKeyId"]
        );
    }

    #[test]
    fn extra_keys_and_tags_are_checked() {
        let mut s = spec();
        let mut cs = crate::crd::ConnectionSecretSpec::default();
        cs.extra_keys
            .insert("SPRING_DATA_REDIS_URL".into(), "{uri}".into());
        cs.extra_keys.insert("BAD".into(), "{token}".into());
        cs.extra_keys.insert("password".into(), "{password}".into());
        s.connection_secret = Some(cs);
        s.tags.insert("rediscache.dev/owner-uid".into(), "x".into());
        assert_eq!(
            fields(resolve("a", &s, &defaults())),
            vec![
                "spec.connectionSecret.extraKeys[BAD]",
                "spec.connectionSecret.extraKeys[password]",
                "spec.tags[rediscache.dev/owner-uid]"
            ]
        );
    }
}
