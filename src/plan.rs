//! `plan -f FILE`: validate RedisCache manifests offline and show what the
//! operator would create, with no cluster and no AWS.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::config::OperatorDefaults;
use crate::crd::{ClusterMode, DeletionPolicy, RedisCache};
use crate::desired::{DesiredCache, DesiredSubnetGroup, Ownership};
use crate::naming::{self, ResourceNames};
use crate::secret::RESERVED_KEYS;
use crate::validation::{self, FieldError};

/// The plan for one manifest document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CachePlan {
    /// `namespace/name`.
    pub resource: String,
    /// Set when the spec is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<DesiredCache>,
    /// Set when the spec is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretPlan>,
    /// Every rule the spec breaks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<PlanError>,
}

/// The Secret's name and the keys it will hold (never values).
#[derive(Debug, Serialize)]
pub struct SecretPlan {
    pub name: String,
    pub keys: Vec<String>,
}

/// A field error, as JSON.
#[derive(Debug, Serialize)]
pub struct PlanError {
    pub field: String,
    pub message: String,
}

impl From<FieldError> for PlanError {
    fn from(e: FieldError) -> Self {
        Self {
            field: e.field,
            message: e.message,
        }
    }
}

/// Errors reading the manifests themselves.
#[derive(Debug, thiserror::Error)]
pub enum PlanInputError {
    #[error("{source_name}: document {index}: {message}")]
    Document {
        source_name: String,
        index: usize,
        message: String,
    },
    #[error("{0}: no RedisCache in this input")]
    Empty(String),
}

/// A document of the input that is not a RedisCache (a Deployment next to
/// the cache, say): `plan` skips it and says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedDocument {
    /// Position in the input, from 1.
    pub index: usize,
    /// `apiVersion`, as written (empty when missing).
    pub api_version: String,
    /// `kind`, as written (empty when missing).
    pub kind: String,
    /// `metadata.name`, when set.
    pub name: Option<String>,
}

impl SkippedDocument {
    /// One line for standard error.
    pub fn note(&self, source_name: &str) -> String {
        let kind = match self.api_version.as_str() {
            "" => self.kind.clone(),
            api_version => format!("{api_version} {}", self.kind),
        };
        let what = match (self.kind.as_str(), &self.name) {
            ("", _) => "a document without kind".to_string(),
            (_, Some(name)) => format!("{kind} {name}"),
            (_, None) => kind,
        };
        format!(
            "note: {source_name}: document {} ({what}) is not a RedisCache; skipped",
            self.index
        )
    }
}

/// The plans of one input and the documents it skipped.
#[derive(Debug)]
pub struct PlannedInput {
    /// One plan per RedisCache document, in input order.
    pub plans: Vec<CachePlan>,
    /// Every other non-empty document, in input order.
    pub skipped: Vec<SkippedDocument>,
}

/// Plans every RedisCache document in `yaml` (other kinds are skipped).
pub fn plan_documents(
    source_name: &str,
    yaml: &str,
    defaults: &OperatorDefaults,
) -> Result<Vec<CachePlan>, PlanInputError> {
    plan_input(source_name, yaml, defaults).map(|input| input.plans)
}

/// Plans every RedisCache document in `yaml` and lists the other documents,
/// which are skipped: a manifest may hold an application next to its cache.
pub fn plan_input(
    source_name: &str,
    yaml: &str,
    defaults: &OperatorDefaults,
) -> Result<PlannedInput, PlanInputError> {
    let mut plans = Vec::new();
    let mut skipped = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let index = i + 1;
        let doc_err = |message: String| PlanInputError::Document {
            source_name: source_name.to_string(),
            index,
            message,
        };
        let value = serde_json::Value::deserialize(doc).map_err(|e| doc_err(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        if value.get("kind").and_then(|k| k.as_str()) != Some("RedisCache") {
            skipped.push(SkippedDocument {
                index,
                api_version: text(&value["apiVersion"]),
                kind: text(&value["kind"]),
                name: value["metadata"]["name"].as_str().map(String::from),
            });
            continue;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if api_version != "rediscache.dev/v1alpha1" {
            return Err(doc_err(format!(
                "apiVersion {api_version:?} is not rediscache.dev/v1alpha1"
            )));
        }
        let cache: RedisCache = serde_json::from_value(value)
            .map_err(|e| doc_err(format!("not a valid RedisCache: {e}")))?;
        plans.push(plan_one(&cache, defaults));
    }
    if plans.is_empty() {
        return Err(PlanInputError::Empty(source_name.to_string()));
    }
    Ok(PlannedInput { plans, skipped })
}

/// Plans one RedisCache.
pub fn plan_one(cache: &RedisCache, defaults: &OperatorDefaults) -> CachePlan {
    let name = cache.metadata.name.clone().unwrap_or_default();
    let namespace = cache
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let resource = format!("{namespace}/{name}");
    let mut errors: Vec<PlanError> = Vec::new();
    if name.is_empty() {
        errors.push(PlanError {
            field: "metadata.name".into(),
            message: "is required".into(),
        });
    }
    match validation::resolve(&name, &cache.spec, defaults) {
        Err(e) => errors.extend(e.0.into_iter().map(PlanError::from)),
        Ok(spec) if errors.is_empty() => {
            let id = naming::replication_group_id(&defaults.cluster_name, &namespace, &name);
            let owner = Ownership {
                owner_uid: "<uid of the RedisCache>".into(),
                resource: resource.clone(),
                cluster: defaults.cluster_name.clone(),
            };
            let desired = DesiredCache::build(&spec, ResourceNames::for_id(&id), owner);
            let mut keys: Vec<String> = RESERVED_KEYS
                .iter()
                .filter(|k| spec.cluster_mode == ClusterMode::Disabled || !k.starts_with("reader"))
                .map(|k| k.to_string())
                .collect();
            keys.extend(spec.extra_keys.keys().cloned());
            return CachePlan {
                resource,
                desired: Some(desired),
                secret: Some(SecretPlan {
                    name: spec.secret_name,
                    keys,
                }),
                errors,
            };
        }
        Ok(_) => {}
    }
    CachePlan {
        resource,
        desired: None,
        secret: None,
        errors,
    }
}

/// Human-readable rendering of plans.
pub fn render_text(plans: &[CachePlan]) -> String {
    let mut out = String::new();
    for p in plans {
        let _ = render_one(&mut out, p);
        out.push('\n');
    }
    out
}

fn render_one(out: &mut String, p: &CachePlan) -> std::fmt::Result {
    let (Some(d), Some(secret)) = (&p.desired, &p.secret) else {
        writeln!(out, "RedisCache {}: INVALID", p.resource)?;
        for e in &p.errors {
            writeln!(out, "  ✗ {}: {}", e.field, e.message)?;
        }
        return Ok(());
    };
    let rg = &d.replication_group;
    writeln!(out, "RedisCache {}: would create", p.resource)?;
    writeln!(out, "  replication group  {}", rg.id)?;
    writeln!(
        out,
        "    engine           {} {} on {}",
        rg.engine, rg.engine_version, rg.node_type
    )?;
    let failover = match (rg.multi_az, rg.automatic_failover) {
        (true, _) => "Multi-AZ with automatic failover",
        (false, true) => "automatic failover, single AZ",
        (false, false) => "single AZ, no automatic failover",
    };
    writeln!(
        out,
        "    topology         cluster mode {}, {} shard(s) x {} replica(s), {failover}",
        rg.cluster_mode.as_str(),
        rg.shards,
        rg.replicas_per_shard
    )?;
    let at_rest = match (rg.at_rest_encryption, &rg.kms_key_id) {
        (false, _) => "no at-rest encryption".to_string(),
        (true, None) => "at-rest encryption (AWS-managed key)".to_string(),
        (true, Some(k)) => format!("at-rest encryption (KMS key {k})"),
    };
    writeln!(
        out,
        "    security         port {}, TLS in transit, AUTH token, {at_rest}",
        rg.port
    )?;
    let window = rg.snapshot_window.as_deref().unwrap_or("chosen by AWS");
    writeln!(
        out,
        "    snapshots        keep {} day(s), window {window}",
        rg.snapshot_retention_days
    )?;
    writeln!(
        out,
        "    maintenance      {}, changes applied {}",
        rg.maintenance_window
            .as_deref()
            .unwrap_or("window chosen by AWS"),
        if rg.apply_immediately {
            "immediately"
        } else {
            "in the maintenance window"
        }
    )?;
    let pg = &d.parameter_group;
    writeln!(
        out,
        "  parameter group    {} (family {})",
        pg.name, pg.family
    )?;
    for (k, v) in &pg.parameters {
        writeln!(out, "    {k} = {v}")?;
    }
    match &d.network.subnet_group {
        DesiredSubnetGroup::Managed {
            name, subnet_ids, ..
        } => writeln!(
            out,
            "  subnet group       {name} from {}",
            subnet_ids.join(", ")
        )?,
        DesiredSubnetGroup::Existing { name } => {
            writeln!(out, "  subnet group       {name} (existing, not modified)")?
        }
    }
    let sg = &d.network.security_group;
    writeln!(out, "  security group     {} in the subnets' VPC", sg.name)?;
    for source in sg
        .allowed_cidrs
        .iter()
        .chain(&sg.allowed_security_group_ids)
    {
        writeln!(out, "    ingress tcp/{} from {source}", sg.port)?;
    }
    if !d.network.extra_security_group_ids.is_empty() {
        writeln!(
            out,
            "  also attached      {}",
            d.network.extra_security_group_ids.join(", ")
        )?;
    }
    let tags: Vec<String> = d.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(out, "  tags               {}", tags.join(", "))?;
    writeln!(
        out,
        "  Secret             {}: {}",
        secret.name,
        secret.keys.join(", ")
    )?;
    let on_delete = match d.deletion_policy {
        DeletionPolicy::Delete => "delete everything on AWS".to_string(),
        DeletionPolicy::Snapshot => format!(
            "final snapshot {}-final-<UTC timestamp>, then delete",
            rg.id
        ),
        DeletionPolicy::Retain => "keep the AWS resources and the Secret".to_string(),
    };
    writeln!(out, "  on delete          {on_delete}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> OperatorDefaults {
        OperatorDefaults {
            default_subnet_ids: vec!["subnet-0a".into()],
            default_allowed_cidrs: vec!["10.0.0.0/16".into()],
            ..OperatorDefaults::default()
        }
    }

    #[test]
    fn plans_every_cache_document_and_skips_other_kinds() {
        let yaml = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
---
apiVersion: rediscache.dev/v1alpha1
kind: RedisCache
metadata: {name: sessions, namespace: shop}
spec: {engine: valkey, shards: 2}
---
apiVersion: rediscache.dev/v1alpha1
kind: RedisCache
metadata: {name: bad}
spec: {shards: 3, clusterMode: Disabled}
"#;
        let plans = plan_documents("test.yaml", yaml, &defaults()).expect("parses");
        assert_eq!(plans.len(), 2);
        let ok = &plans[0];
        assert_eq!(ok.resource, "shop/sessions");
        let d = ok.desired.as_ref().expect("valid");
        assert_eq!(d.parameter_group.parameters["cluster-enabled"], "yes");
        let keys = &ok.secret.as_ref().expect("secret").keys;
        assert!(keys.contains(&"uri".to_string()) && !keys.contains(&"readerUri".to_string()));
        let text = render_text(&plans);
        assert!(text.contains("cluster mode Enabled, 2 shard(s)"), "{text}");
        assert!(text.contains("RedisCache default/bad: INVALID"));
        assert!(text.contains("spec.shards"));
    }

    #[test]
    fn other_kinds_are_skipped_with_a_note() {
        let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
---
apiVersion: rediscache.dev/v1alpha1
kind: RedisCache
metadata: {name: sessions, namespace: shop}
spec: {}
---
---
data: {a: b}
"#;
        let input = plan_input("app.yaml", yaml, &defaults()).expect("parses");
        assert_eq!(input.plans.len(), 1);
        assert_eq!(
            input.skipped,
            [
                SkippedDocument {
                    index: 1,
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: Some("web".into()),
                },
                SkippedDocument {
                    index: 4,
                    api_version: String::new(),
                    kind: String::new(),
                    name: None,
                },
            ]
        );
        assert_eq!(
            input.skipped[0].note("app.yaml"),
            "note: app.yaml: document 1 (apps/v1 Deployment web) is not a RedisCache; skipped"
        );
        assert_eq!(
            input.skipped[1].note("app.yaml"),
            "note: app.yaml: document 4 (a document without kind) is not a RedisCache; skipped"
        );
    }

    #[test]
    fn unparseable_input_names_the_document() {
        let e = plan_documents(
            "in.yaml",
            "kind: RedisCache\napiVersion: rediscache.dev/v1alpha1\nspec: {shards: many}\n",
            &defaults(),
        )
        .expect_err("refused");
        assert!(
            e.to_string()
                .starts_with("in.yaml: document 1: not a valid RedisCache"),
            "{e}"
        );
        assert!(matches!(
            plan_documents("e.yaml", "", &defaults()),
            Err(PlanInputError::Empty(_))
        ));
    }
}
