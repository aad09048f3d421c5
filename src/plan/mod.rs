//! `plan -f FILE...`: validate RedisCaches and RedisCacheClasses offline and
//! show, per cache, its class, its backend and what would be created, with
//! no cluster and no cloud. Unknown fields and bad values are refused with
//! their field path, as the API server's strict validation would.

use std::fmt::Write as _;
use std::sync::Arc;

use kube::CustomResourceExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::validation::{self, unknown_fields, FieldError};
use crate::api::{
    choose_class, ProviderKind, RedisCache, RedisCacheClass, RedisCacheClassSpec,
    DEFAULT_CLASS_ANNOTATION,
};
use crate::backends::{self, Ownership, Planned};
use crate::reconcile::secret::RESERVED_KEYS;

const API_VERSION: &str = "rediscache.dev/v1alpha1";

/// The plan for one manifest document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CachePlan {
    /// `RedisCache namespace/name` or `RedisCacheClass name`.
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderKind>,
    /// What the backend would create; set when the spec is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned: Option<Planned>,
    /// Set when the spec is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretPlan>,
    /// What deleting the RedisCache would do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_delete: Option<String>,
    /// Every rule the document breaks.
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
    #[error("{0}: no RedisCache or RedisCacheClass in this input")]
    Empty(String),
}

/// A document of the input that is neither a RedisCache nor a
/// RedisCacheClass (a Deployment next to the cache, say): skipped.
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
            "note: {source_name}: document {} ({what}) is not a RedisCache or RedisCacheClass; skipped",
            self.index
        )
    }
}

/// The documents of every input file, sorted by kind.
#[derive(Debug, Default)]
pub struct Documents {
    caches: Vec<(String, Value)>,
    classes: Vec<(String, Value)>,
    /// Every other non-empty document, with its input's name.
    pub skipped: Vec<(String, SkippedDocument)>,
}

impl Documents {
    /// Reads every document of `yaml` (named `source_name` in messages).
    pub fn read(&mut self, source_name: &str, yaml: &str) -> Result<(), PlanInputError> {
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let index = i + 1;
            let doc_err = |message: String| PlanInputError::Document {
                source_name: source_name.to_string(),
                index,
                message,
            };
            let value = Value::deserialize(doc).map_err(|e| doc_err(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let kind = value.get("kind").and_then(Value::as_str);
            let list = match kind {
                Some("RedisCache") => &mut self.caches,
                Some("RedisCacheClass") => &mut self.classes,
                _ => {
                    self.skipped.push((
                        source_name.to_string(),
                        SkippedDocument {
                            index,
                            api_version: text(&value["apiVersion"]),
                            kind: text(&value["kind"]),
                            name: value["metadata"]["name"].as_str().map(String::from),
                        },
                    ));
                    continue;
                }
            };
            let api_version = value["apiVersion"].as_str().unwrap_or_default();
            if api_version != API_VERSION {
                return Err(doc_err(format!(
                    "apiVersion {api_version:?} is not {API_VERSION}"
                )));
            }
            list.push((format!("{source_name}: document {index}"), value));
        }
        Ok(())
    }

    /// Plans every cache with the classes of every input (or the built-in
    /// default class when there is none); class documents with errors get a
    /// plan of their own holding the errors.
    pub fn plan(&self, cluster_name: &str) -> Result<Vec<CachePlan>, PlanInputError> {
        if self.caches.is_empty() && self.classes.is_empty() {
            let name = self
                .skipped
                .first()
                .map(|(s, _)| s.clone())
                .unwrap_or_else(|| "the input".into());
            return Err(PlanInputError::Empty(name));
        }
        let mut plans = Vec::new();
        let mut classes: Vec<Arc<RedisCacheClass>> = Vec::new();
        for (_, value) in &self.classes {
            match parse::<RedisCacheClass>(value) {
                Ok(c) => match backends::registry::block_missing(&c) {
                    None => classes.push(Arc::new(c)),
                    Some(m) => plans.push(invalid_class(
                        value,
                        vec![PlanError {
                            field: "spec".into(),
                            message: m,
                        }],
                    )),
                },
                Err(errors) => plans.push(invalid_class(value, errors)),
            }
        }
        let builtin = classes.is_empty();
        if builtin {
            classes.push(Arc::new(builtin_class()));
        }
        for (_, value) in &self.caches {
            plans.push(plan_cache(value, &classes, builtin, cluster_name));
        }
        Ok(plans)
    }
}

/// The class `plan` uses when the input has none: what the Helm chart
/// installs by default, an in-cluster (Kubernetes) class marked default.
pub fn builtin_class() -> RedisCacheClass {
    let mut class = RedisCacheClass::new(
        "built-in-default",
        RedisCacheClassSpec {
            provider: ProviderKind::Kubernetes,
            defaults: None,
            allowed_namespaces: Vec::new(),
            allowed_namespace_selector: None,
            elasti_cache: None,
            kubernetes: Some(Default::default()),
            upstash: None,
            azure: None,
        },
    );
    class.metadata.annotations =
        Some([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into());
    class
}

/// Unknown fields against the CRD's schema, then the typed parse with the
/// path of a bad value (e.g. `spec.deletionPolicy`).
fn parse<K: CustomResourceExt + serde::de::DeserializeOwned>(
    value: &Value,
) -> Result<K, Vec<PlanError>> {
    let crd = serde_json::to_value(K::crd()).unwrap_or_default();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut errors: Vec<PlanError> = unknown_fields(&value["spec"], schema, "spec")
        .into_iter()
        .map(PlanError::from)
        .collect();
    let parsed = serde_path_to_error::deserialize::<_, K>(value.clone());
    match parsed {
        Ok(k) if errors.is_empty() => Ok(k),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push(PlanError {
                field: e.path().to_string(),
                message: e.inner().to_string(),
            });
            Err(errors)
        }
    }
}

fn invalid_class(value: &Value, errors: Vec<PlanError>) -> CachePlan {
    CachePlan {
        resource: format!(
            "RedisCacheClass {}",
            value["metadata"]["name"].as_str().unwrap_or("<no name>")
        ),
        class: None,
        provider: None,
        planned: None,
        secret: None,
        on_delete: None,
        errors,
    }
}

/// Plans one RedisCache document.
fn plan_cache(
    value: &Value,
    classes: &[Arc<RedisCacheClass>],
    builtin: bool,
    cluster: &str,
) -> CachePlan {
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let namespace = value["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let mut plan = CachePlan {
        resource: format!("RedisCache {namespace}/{name}"),
        class: None,
        provider: None,
        planned: None,
        secret: None,
        on_delete: None,
        errors: Vec::new(),
    };
    if name.is_empty() {
        plan.errors.push(PlanError {
            field: "metadata.name".into(),
            message: "is required".into(),
        });
    }
    let mut cache: RedisCache = match parse(value) {
        Ok(c) => c,
        Err(errors) => {
            plan.errors.extend(errors);
            return plan;
        }
    };
    cache.metadata.namespace = Some(namespace.clone());
    // Offline, namespace labels are unknown: allowedNamespaceSelector is not checked.
    let class = match choose_class(&cache, classes, None) {
        Ok(c) => c.clone(),
        Err(m) => {
            plan.errors.push(PlanError {
                field: "spec.className".into(),
                message: m,
            });
            return plan;
        }
    };
    plan.class = Some(if builtin {
        "the built-in default (no RedisCacheClass in the input)".into()
    } else {
        kube::ResourceExt::name_any(class.as_ref())
    });
    plan.provider = Some(class.spec.provider);
    let backend = match backends::registry::offline(&class) {
        Ok(b) => b,
        Err(e) => {
            plan.errors.push(PlanError {
                field: "spec.className".into(),
                message: e.to_string(),
            });
            return plan;
        }
    };
    let spec = match validation::resolve(&cache, &class) {
        Ok(s) => s,
        Err(e) => {
            plan.errors.extend(e.0.into_iter().map(PlanError::from));
            return plan;
        }
    };
    if !plan.errors.is_empty() {
        return plan;
    }
    let id = backend.identity(cluster, &namespace, &name);
    let owner = Ownership {
        owner_uid: "<uid of the RedisCache>".into(),
        resource: format!("{namespace}/{name}"),
        cluster: cluster.to_string(),
    };
    match backend.plan(&cache, &spec, &id, &owner) {
        Err(e) => plan.errors.extend(e.0.into_iter().map(PlanError::from)),
        Ok(mut planned) => {
            if builtin {
                planned.notes.push("no RedisCacheClass in the input: planned with the built-in default class (provider Kubernetes, what the Helm chart installs by default); add your class with another -f".into());
            }
            let upstash = class.spec.provider == ProviderKind::Upstash;
            let own_ca = class.spec.provider == ProviderKind::Kubernetes;
            let mut keys: Vec<String> = RESERVED_KEYS
                .iter()
                .filter(|k| {
                    // Azure caches have no reader endpoint.
                    (spec.replicas_per_shard > 0 && class.spec.provider != ProviderKind::Azure)
                        || !k.starts_with("reader")
                })
                .filter(|k| own_ca || **k != "ca.crt")
                .filter(|k| upstash || !(k.starts_with("rest") || **k == "readOnlyRestToken"))
                .map(|k| k.to_string())
                .collect();
            keys.extend(spec.extra_keys.keys().cloned());
            plan.secret = Some(SecretPlan {
                name: spec.secret_name.clone(),
                keys,
            });
            let what = backend.describe(&id);
            plan.on_delete = Some(match spec.deletion_policy {
                crate::api::DeletionPolicy::Delete => {
                    format!("delete {what} and everything created for it")
                }
                crate::api::DeletionPolicy::Snapshot => {
                    format!("final snapshot of {what}, then delete")
                }
                crate::api::DeletionPolicy::Retain => format!("keep {what} and the Secret"),
            });
            plan.planned = Some(planned);
        }
    }
    plan
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
    let (Some(planned), Some(secret)) = (&p.planned, &p.secret) else {
        writeln!(out, "{}: INVALID", p.resource)?;
        for e in &p.errors {
            writeln!(out, "  ✗ {}: {}", e.field, e.message)?;
        }
        return Ok(());
    };
    writeln!(out, "{}: would create", p.resource)?;
    if let (Some(class), Some(provider)) = (&p.class, p.provider) {
        writeln!(out, "  class              {class} (provider {provider})")?;
    }
    for line in &planned.objects {
        writeln!(out, "  {line}")?;
    }
    writeln!(
        out,
        "  Secret             {}: {}",
        secret.name,
        secret.keys.join(", ")
    )?;
    if let Some(d) = &p.on_delete {
        writeln!(out, "  on delete          {d}")?;
    }
    for n in &planned.notes {
        writeln!(out, "  note: {n}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
