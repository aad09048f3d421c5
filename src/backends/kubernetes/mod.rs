//! The in-cluster backend (DESIGN §4.2): a TLS Valkey/Redis StatefulSet in
//! the cache's namespace, with Sentinel when it has replicas. Every object is
//! owned by the RedisCache, labelled `rediscache.dev/cache`, and applied with
//! server-side apply; the operator generates the CA, the server certificate
//! and the ACL file, labels the pod Sentinel names as primary (Service
//! `<name>-redis` selects it), rolls changes out replicas first, and rotates
//! the password with two passwords on `default`, live, without a restart.
//!
//! One converge step: TLS → ACL → objects → observe pods (label the
//! primary, roll out one outdated pod) → report. Talking to the servers
//! uses the Redis protocol over TLS to the pod IPs, never `pods/exec`.

pub mod acl;
pub mod config;
pub mod input;
pub mod map;
pub mod primary;
pub mod render;
pub mod tls;

mod objects;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use self::acl::Password;
use self::input::CacheInput;
use self::objects::Objects;
use self::primary::{Credentials, Endpoint as PodEndpoint, Outcome, PodFacts, SentinelView};
use super::{
    Backend, BackendError, BackendFactory, CacheRequest, ClusterMode, Connection, Converged,
    Credential, Deleted, Endpoint, ErrorClass, Lifecycle, Next, Note, Observed, Ownership, Planned,
    RotationStep, StepFailure,
};
use crate::api::conditions::{self, Cond};
use crate::api::validation::{PortableSpec, ValidationErrors};
use crate::api::{
    BackendDetails, DeletionPolicy, KubernetesClass, ProviderKind, RedisCache, RedisCacheClass,
};

/// The Secret's `provider` value.
pub const PROVIDER: &str = "kubernetes";
/// Annotation on the ACL Secret: when the passwords of `default` last
/// changed on every running server (the rotation protocol reads it).
const CHANGED_AT: &str = "rediscache.dev/credentials-changed-at";
/// How long one Redis command to a pod may take.
const POD_TIMEOUT: Duration = Duration::from_secs(3);

/// Builds the in-cluster backend of a class; needs nothing but the
/// operator's own Kubernetes client.
pub struct KubernetesFactory {
    client: kube::Client,
    operator_namespace: String,
}

impl KubernetesFactory {
    /// A factory whose backends act through `client`; `operator_namespace`
    /// is let through each cache's NetworkPolicy (for the health probe).
    pub fn new(client: kube::Client, operator_namespace: String) -> Self {
        Self {
            client,
            operator_namespace,
        }
    }
}

#[async_trait]
impl BackendFactory for KubernetesFactory {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Kubernetes
    }

    async fn build(&self, class: &RedisCacheClass) -> Result<Arc<dyn Backend>, BackendError> {
        let block = class.spec.kubernetes.clone().unwrap_or_default();
        Ok(Arc::new(KubernetesBackend {
            class: block,
            kube: Some(self.client.clone()),
            operator_namespace: self.operator_namespace.clone(),
        }))
    }
}

/// Caches of one `Kubernetes` class.
pub struct KubernetesBackend {
    class: KubernetesClass,
    kube: Option<kube::Client>,
    operator_namespace: String,
}

impl KubernetesBackend {
    /// A backend that only validates and plans (for `plan`).
    pub fn offline(class: KubernetesClass) -> Self {
        Self {
            class,
            kube: None,
            operator_namespace: "redis-cache-operator".into(),
        }
    }

    fn input(&self, cache: &RedisCache, spec: &PortableSpec) -> CacheInput {
        map::cache_input(cache, spec, &self.class, &self.operator_namespace)
    }

    fn objects(&self, cache: &RedisCache) -> Result<Objects, BackendError> {
        let client = self.kube.clone().ok_or_else(|| {
            BackendError::new(
                ErrorClass::Rejected,
                Some("Offline"),
                "this backend was built for plan only",
            )
        })?;
        Objects::new(client, cache)
    }

    fn network_policy(&self) -> bool {
        self.class.network_policy != Some(false)
    }
}

fn fail(condition: &'static str, step: &'static str, error: BackendError) -> StepFailure {
    StepFailure {
        condition,
        step,
        error,
        conditions: Vec::new(),
        details: None,
    }
}

fn rejected(code: &'static str, message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorClass::Rejected, Some(code), message)
}

fn password(c: &Credential) -> Result<Password, BackendError> {
    Password::new(c.expose()).map_err(|_| {
        rejected(
            "BadPassword",
            "the connection Secret's password has whitespace; delete the key to have a new one generated",
        )
    })
}

/// A new password for the replication user: 64 alphanumerics from the OS-seeded CSPRNG.
fn new_password() -> Result<Password, BackendError> {
    use rand::distr::{Alphanumeric, SampleString};
    let value = Alphanumeric.sample_string(&mut rand::rng(), 64);
    let _ = Credential::new(value.clone()); // registered for redaction
    Password::new(value).map_err(|_| rejected("BadPassword", "generated an unusable password"))
}

/// The `host` clients use: the primary Service's name in the namespace.
fn service_host(input: &CacheInput, service: &str) -> String {
    format!("{service}.{}.svc", input.namespace)
}

#[async_trait]
impl Backend for KubernetesBackend {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Kubernetes
    }

    fn identity(&self, _cluster: &str, _namespace: &str, name: &str) -> String {
        // Objects live beside the RedisCache: its name is unique there.
        name.to_string()
    }

    fn describe(&self, backend_id: &str) -> String {
        format!("StatefulSet {backend_id}-redis")
    }

    fn validate(&self, cache: &RedisCache, spec: &PortableSpec) -> Result<(), ValidationErrors> {
        map::validate(cache, spec)
    }

    fn plan(
        &self,
        cache: &RedisCache,
        spec: &PortableSpec,
        _backend_id: &str,
        _owner: &Ownership,
    ) -> Result<Planned, ValidationErrors> {
        self.validate(cache, spec)?;
        let input = self.input(cache, spec);
        let ns = &input.namespace;
        let mut objects = vec![
            format!(
                "StatefulSet {ns}/{} ({} pod(s) of {}, maxmemory {}, memory limit {})",
                input.server_name(),
                input.pod_count(),
                input.image,
                crate::api::quantity::format_bytes(input.memory_bytes),
                crate::api::quantity::format_bytes(render::memory_limit_bytes(&input)),
            ),
            format!(
                "Services {ns}/{} (primary), {}{}",
                input.server_name(),
                input.headless_service_name(),
                if input.replicas > 0 {
                    format!(", {} (readers)", input.replicas_service_name())
                } else {
                    String::new()
                }
            ),
            format!(
                "Secrets {ns}/{} (CA and server certificate), {} (CA key), {} (ACL users)",
                input.tls_secret_name(),
                input.ca_secret_name(),
                input.acl_secret_name()
            ),
            format!("ConfigMap {ns}/{}", input.config_map_name()),
        ];
        if input.has_sentinel() {
            objects.push(format!(
                "StatefulSet {ns}/{} (3 Sentinels, TLS, quorum 2)",
                input.sentinel_name()
            ));
        }
        if input.persistence.is_on() {
            objects.push(format!(
                "  data volumes {} each{}",
                input.storage_size,
                input
                    .storage_class_name
                    .as_ref()
                    .map(|c| format!(", storage class {c}"))
                    .unwrap_or_default()
            ));
        }
        if self.network_policy() {
            objects.push(format!(
                "NetworkPolicy {ns}/{} (namespace {ns}, the operator{})",
                input.server_name(),
                if input.allowed_cidrs.is_empty() {
                    String::new()
                } else {
                    format!(", {}", input.allowed_cidrs.join(", "))
                }
            ));
        }
        Ok(Planned {
            objects,
            detail: serde_json::json!({
                "statefulSet": input.server_name(),
                "image": input.image,
                "pods": input.pod_count(),
                "maxmemoryBytes": input.memory_bytes,
                "memoryLimitBytes": render::memory_limit_bytes(&input),
                "sentinel": input.has_sentinel(),
                "host": service_host(&input, &input.server_name()),
            }),
            notes: Vec::new(),
        })
    }

    async fn converge(&self, req: &CacheRequest<'_>) -> Result<Converged, StepFailure> {
        let step = conditions::SERVERS_READY;
        let mut input = self.input(req.cache, req.spec);
        let objs = self
            .objects(req.cache)
            .map_err(|e| fail(step, "objects", e))?;
        let credential = req.credential.ok_or_else(|| {
            fail(
                step,
                "credential",
                rejected("NoCredential", "no credential in the connection Secret yet"),
            )
        })?;
        let mut notes = Vec::new();

        // TLS: the CA once, the server certificate renewed with a third of its life left.
        let (material, renewed) = objs
            .ensure_tls(
                &input,
                Timestamp::now(),
                self.class.tls.as_ref().map(|t| &t.issuer_ref),
            )
            .await
            .map_err(|e| fail(step, "tls", e))?;
        input.config_hash = map::with_certificate(&input.config_hash, &material.cert_pem);
        if renewed {
            notes.push(Note::normal(
                "CertificateIssued",
                format!(
                    "issued the server certificate in Secret {} (valid until {})",
                    input.tls_secret_name(),
                    material.not_after
                ),
            ));
        }

        // ACL: the Secret's credential always works; other passwords (a
        // rotation in progress) are kept until the rotation retires them.
        objs.ensure_acl(
            &input,
            &password(credential).map_err(|e| fail(step, "acl", e))?,
        )
        .await
        .map_err(|e| fail(step, "acl", e))?;

        let rendered = render::render(&input, &objs.owner())
            .map_err(|e| fail(step, "render", rejected("RenderFailed", e.to_string())))?;
        objs.apply_all(&input, &rendered, self.network_policy())
            .await
            .map_err(|e| fail(step, "apply", e))?;

        // Observe the pods, label the primary, roll out one outdated pod.
        let creds = Credentials {
            user: "default".into(),
            password: password(credential).map_err(|e| fail(step, "observe", e))?,
        };
        let tls = primary::client_config(&material.ca_pem)
            .map_err(|e| fail(step, "observe", rejected("BadCertificate", e.to_string())))?;
        let pods = objs
            .server_pods(&input)
            .await
            .map_err(|e| fail(step, "observe", e))?;
        let facts = pod_facts(&input, &pods, &tls, &creds).await;
        let view = if input.has_sentinel() {
            let sentinels = objs
                .sentinel_pods(&input)
                .await
                .map_err(|e| fail(step, "observe", e))?;
            let endpoints: Vec<PodEndpoint> = sentinels
                .iter()
                .filter_map(|p| {
                    let ip = p.status.as_ref()?.pod_ip.clone()?;
                    let ord = ordinal(&p.name_any())?;
                    Some(PodEndpoint {
                        host: ip,
                        port: input::SENTINEL_PORT,
                        server_name: input.sentinel_pod_fqdn(ord),
                    })
                })
                .collect();
            primary::sentinel_view(
                &endpoints,
                &tls,
                &creds,
                &input.master_set_name(),
                POD_TIMEOUT,
            )
            .await
        } else {
            SentinelView::NotUsed
        };
        let decision = primary::decide(&view, &facts);
        for r in &decision.relabel {
            objs.label_pod(&r.pod, r.role)
                .await
                .map_err(|e| fail(step, "label", e))?;
        }
        let primary_pod = match &decision.outcome {
            Outcome::Primary(p) => Some(p.clone()),
            Outcome::RefusedEmptyPrimary(p) => {
                notes.push(Note::warning(
                    "EmptyPrimaryRefused",
                    format!("pod {p} restarted with an empty dataset while replicas hold the data; it is not used as primary until Sentinel fails over to a replica"),
                ));
                None
            }
            Outcome::Wait(_) => None,
        };
        let ready = facts.iter().filter(|f| f.ready).count();
        let total = usize::from(input.pod_count());
        let rollout = objs
            .roll_out_one(&input, &pods, &facts, primary_pod.as_deref(), &tls, &creds)
            .await
            .map_err(|e| fail(step, "rollout", e))?;
        if let Some(n) = &rollout {
            notes.push(Note::normal("RollingUpdate", n.clone()));
        }
        let serving = primary_pod.as_ref().is_some_and(|p| {
            facts
                .iter()
                .any(|f| &f.name == p && f.ready && f.replication.is_some())
        });
        let settled = serving && ready == total && rollout.is_none() && pods.len() == total;
        // Once the Secret was complete it stays so while a pod restarts:
        // clients keep their URI and reconnect when the pod is back.
        let served_before = req
            .cache
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, conditions::SECRET_READY))
            .is_some_and(|c| c.status == "True");
        let lifecycle = match (serving, settled, served_before) {
            (true, true, _) => Lifecycle::Serving,
            (true, false, _) => Lifecycle::Changing,
            (false, _, false) => Lifecycle::Creating,
            (false, _, true) => Lifecycle::Unavailable,
        };
        let message = match lifecycle {
            Lifecycle::Serving => format!(
                "{total} of {total} pod(s) ready; primary {}",
                primary_pod.clone().unwrap_or_default()
            ),
            Lifecycle::Changing => format!(
                "serving from {}; {ready} of {total} pod(s) ready{}",
                primary_pod.clone().unwrap_or_default(),
                rollout
                    .as_ref()
                    .map(|r| format!("; {r}"))
                    .unwrap_or_default()
            ),
            _ => format!(
                "waiting for the pods of StatefulSet {}: {ready} of {total} ready ({})",
                input.server_name(),
                wait_reason(&decision.outcome)
            ),
        };
        let host = service_host(&input, &input.server_name());
        let endpoint = Endpoint {
            host: host.clone(),
            port: i32::from(input.port),
        };
        let reader = (input.replicas > 0).then(|| Endpoint {
            host: service_host(&input, &input.replicas_service_name()),
            port: i32::from(input.port),
        });
        let changed_at = objs.credentials_changed_at(&input).await.unwrap_or(None);
        let cond = if serving {
            Cond::yes(
                step,
                if settled { "Running" } else { "RollingOut" },
                message.clone(),
            )
        } else {
            Cond::no(step, "Waiting", message.clone())
        };
        Ok(Converged {
            observed: Observed {
                lifecycle,
                reason: match lifecycle {
                    Lifecycle::Serving => "Available",
                    Lifecycle::Changing => "Updating",
                    Lifecycle::Creating => "Creating",
                    _ => "Unavailable",
                },
                message,
                engine: Some(req.spec.engine.as_str().to_string()),
                engine_version: Some(input.engine_version.clone()),
                memory: Some(crate::api::quantity::format_bytes(input.memory_bytes)),
                size: Some(input.image.clone()),
                shards: Some(1),
                replicas_per_shard: Some(i32::from(input.replicas)),
                endpoint: (serving || served_before).then(|| endpoint.clone()),
                reader_endpoint: reader.clone().filter(|_| serving || served_before),
                busy: !settled,
                credential_changed_at: changed_at,
            },
            connection: (serving || served_before).then(|| Connection {
                endpoint,
                reader,
                cluster_mode: ClusterMode::Disabled,
                provider: PROVIDER,
                username: "default",
                extra: [("ca.crt".to_string(), material.ca_pem.clone())].into(),
            }),
            conditions: vec![cond],
            details: BackendDetails::default(),
            notes,
            updating: None,
            next: if settled {
                Next::Within(None)
            } else {
                Next::Soon
            },
            failure: None,
            credential: None,
            backend_id: None,
        })
    }

    async fn rotate_credentials(
        &self,
        req: &CacheRequest<'_>,
        step: RotationStep<'_>,
    ) -> Result<Option<Credential>, BackendError> {
        let input = self.input(req.cache, req.spec);
        let objs = self.objects(req.cache)?;
        let current = req
            .credential
            .ok_or_else(|| rejected("NoCredential", "no credential in the connection Secret"))?;
        let (keep, add): (Vec<Password>, Option<Password>) = match step {
            RotationStep::Add { new } => (Vec::new(), Some(password(new)?)),
            RotationStep::Retire { keep } => (vec![password(keep)?], None),
            RotationStep::Reset => {
                return Err(rejected(
                    "NotSupported",
                    "the in-cluster backend rotates with two passwords, not a reset",
                ))
            }
        };
        let ca = objs.ca_pem(&input).await?;
        let tls =
            primary::client_config(&ca).map_err(|e| rejected("BadCertificate", e.to_string()))?;
        let creds = Credentials {
            user: "default".into(),
            password: password(current)?,
        };
        objs.change_passwords(&input, keep, add, &tls, &creds)
            .await?;
        Ok(None)
    }

    async fn delete(
        &self,
        cache: &RedisCache,
        _backend_id: &str,
        _owner: &Ownership,
        policy: DeletionPolicy,
    ) -> Result<Deleted, BackendError> {
        let objs = self.objects(cache)?;
        let name = cache.name_any();
        let mut notes = Vec::new();
        if policy == DeletionPolicy::Snapshot {
            match objs.final_snapshot().await? {
                objects::Snapshot::Started => {
                    notes.push(Note::normal(
                        "Snapshotting",
                        format!("BGSAVE on the primary of {name} before deleting its pods"),
                    ));
                    return Ok(Deleted::InProgress {
                        what: "the final snapshot (BGSAVE)".into(),
                        notes,
                    });
                }
                objects::Snapshot::Running => {
                    return Ok(Deleted::InProgress {
                        what: "the final snapshot (BGSAVE)".into(),
                        notes,
                    })
                }
                objects::Snapshot::Done => {}
            }
        }
        let keep_volumes = policy != DeletionPolicy::Delete;
        match objs.delete_all(&name, keep_volumes).await? {
            0 => Ok(Deleted::Done {
                summary: if keep_volumes {
                    format!("deleted the pods and objects of {name}; kept its data volumes (PersistentVolumeClaims labelled rediscache.dev/cache={name})")
                } else {
                    format!("deleted every object of {name}, data volumes included")
                },
                notes,
            }),
            n => Ok(Deleted::InProgress {
                what: format!("{n} object(s) of {name}"),
                notes,
            }),
        }
    }

    async fn check(&self) -> Result<String, BackendError> {
        Ok("the in-cluster backend needs no cloud credentials".into())
    }
}

/// The ordinal of a StatefulSet pod name (`x-redis-2` → 2).
fn ordinal(pod: &str) -> Option<u8> {
    pod.rsplit_once('-')?.1.parse().ok()
}

fn wait_reason(o: &Outcome) -> String {
    use primary::WaitReason as W;
    match o {
        Outcome::Wait(W::NoPods) => "no pod yet".into(),
        Outcome::Wait(W::UnknownAddress(a)) => format!("Sentinel names {a}, which no pod has"),
        Outcome::Wait(W::CandidateUnreachable(p)) => format!("{p} does not answer yet"),
        Outcome::Wait(W::CandidateNotPrimaryYet(p)) => format!("failover to {p} in progress"),
        Outcome::Wait(W::NoAuthority) => "no Sentinel answered and no single pod is primary".into(),
        Outcome::RefusedEmptyPrimary(p) => format!("{p} came back empty and is not promoted"),
        Outcome::Primary(p) => format!("primary {p}"),
    }
}

/// What each data pod says about itself (INFO over TLS to its IP).
async fn pod_facts(
    input: &CacheInput,
    pods: &[Pod],
    tls: &Arc<rustls::ClientConfig>,
    creds: &Credentials,
) -> Vec<PodFacts> {
    let mut out = Vec::new();
    for p in pods {
        let name = p.name_any();
        let Some(ord) = ordinal(&name) else { continue };
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let replication = match &ip {
            Some(ip) => primary::replication_info(
                &PodEndpoint {
                    host: ip.clone(),
                    port: input.port,
                    server_name: input.pod_fqdn(ord),
                },
                tls,
                creds,
                POD_TIMEOUT,
            )
            .await
            .ok(),
            None => None,
        };
        out.push(PodFacts {
            name,
            host: input.pod_fqdn(ord),
            ip,
            port: input.port,
            ready,
            role_label: p.labels().get(render::ROLE_LABEL).cloned(),
            replication,
        });
    }
    out
}
