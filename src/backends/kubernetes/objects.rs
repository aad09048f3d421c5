//! The Kubernetes API side of the in-cluster backend: the cache's objects
//! applied with server-side apply (never touching one with another owner),
//! the generated TLS and ACL Secrets, pod labels, the rolling update, the
//! live password changes and deletion.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use rustls::ClientConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::acl::{self, AclUsers, Password};
use super::input::CacheInput;
use super::primary::{self, Credentials, Endpoint as PodEndpoint, PodFacts};
use super::render::{self, Rendered, CACHE_LABEL, COMPONENT_LABEL, ROLE_LABEL};
use super::tls::{self, CaMaterial, ServerMaterial};
use super::{ordinal, rejected, CHANGED_AT, POD_TIMEOUT};
use crate::api::{IssuerRef, RedisCache, FIELD_MANAGER};
use crate::backends::{BackendError, ErrorClass};

const NOT_BEFORE: &str = "rediscache.dev/not-before";
const NOT_AFTER: &str = "rediscache.dev/not-after";
const SANS: &str = "rediscache.dev/sans";
/// On the ACL Secret: `LASTSAVE` of the primary after the final snapshot.
const FINAL_SNAPSHOT: &str = "rediscache.dev/final-snapshot";
/// Set by the StatefulSet controller on each pod: the revision it runs.
const REVISION_LABEL: &str = "controller-revision-hash";

/// How the final snapshot of a `Snapshot` deletion stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshot {
    Started,
    Running,
    Done,
}

/// One cache's objects, through the operator's client.
pub struct Objects {
    client: kube::Client,
    namespace: String,
    name: String,
    uid: String,
    owner: OwnerReference,
}

fn kube_error(what: &str, e: kube::Error) -> BackendError {
    let class = match &e {
        kube::Error::Api(s) if s.code == 409 => ErrorClass::Transient,
        kube::Error::Api(s) if s.code == 403 => ErrorClass::Rejected,
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => ErrorClass::Rejected,
        _ => ErrorClass::Transient,
    };
    let code = match &e {
        kube::Error::Api(s) => Some(s.reason.clone()),
        _ => None,
    };
    BackendError::new(class, code.as_deref(), format!("{what}: {e}"))
}

/// A Certificate call failed; 404 means the cert-manager CRD is missing.
fn cert_manager_error(name: &str, e: kube::Error) -> BackendError {
    if is_not_found(&e) {
        let mut e = rejected(
            "CertManagerMissing",
            "the class's kubernetes.tls.issuerRef needs cert-manager (no Certificate resource in the cluster): install cert-manager, or remove tls.issuerRef to have the operator make the certificates",
        );
        e.reason = Some("CertManagerMissing");
        return e;
    }
    kube_error(&format!("applying Certificate {name}"), e)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn secret_text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

fn sans_hash(input: &CacheInput) -> String {
    let mut h = Sha256::new();
    for s in tls::server_sans(input) {
        h.update(s.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Objects {
    /// The objects of `cache`.
    pub fn new(client: kube::Client, cache: &RedisCache) -> Result<Self, BackendError> {
        let owner = cache
            .controller_owner_ref(&())
            .ok_or_else(|| rejected("NoOwner", "the RedisCache has no uid yet"))?;
        Ok(Self {
            client,
            namespace: cache.namespace().unwrap_or_default(),
            name: cache.name_any(),
            uid: cache.uid().unwrap_or_default(),
            owner,
        })
    }

    /// The owner reference every object carries.
    pub fn owner(&self) -> OwnerReference {
        self.owner.clone()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn owned<K: Resource>(&self, obj: &K) -> bool {
        obj.meta()
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|r| r.uid == self.uid))
    }

    async fn get<K>(&self, name: &str) -> Result<Option<K>, BackendError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .map_err(|e| kube_error(&format!("reading {} {name}", K::kind(&())), e))
    }

    /// Server-side applies `obj`, unless an object of that name belongs to someone else.
    async fn apply<K>(&self, obj: &K) -> Result<(), BackendError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let kind = K::kind(&()).to_string();
        if let Some(existing) = self.get::<K>(&name).await? {
            if !self.owned(&existing) {
                let owner = existing
                    .meta()
                    .owner_references
                    .as_ref()
                    .and_then(|o| o.first())
                    .map(|o| format!("{} {}", o.kind, o.name));
                return Err(BackendError::conflict(&kind, &name, owner.as_deref()));
            }
        }
        self.api::<K>()
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await
            .map_err(|e| kube_error(&format!("applying {kind} {name}"), e))?;
        Ok(())
    }

    /// The server certificate: from cert-manager when the class names an
    /// issuer, else the operator's own (see [`Self::ensure_own_tls`]).
    /// `true` when the operator issued a certificate.
    pub async fn ensure_tls(
        &self,
        input: &CacheInput,
        now: Timestamp,
        issuer: Option<&IssuerRef>,
    ) -> Result<(ServerMaterial, bool), BackendError> {
        match issuer {
            Some(issuer) => self
                .ensure_certificate(input, issuer)
                .await
                .map(|m| (m, false)),
            None => self.ensure_own_tls(input, now).await,
        }
    }

    /// A cert-manager `Certificate` for the cache's names, written by
    /// cert-manager to Secret `<name>-redis-tls`; the material once it is there.
    async fn ensure_certificate(
        &self,
        input: &CacheInput,
        issuer: &IssuerRef,
    ) -> Result<ServerMaterial, BackendError> {
        let ar = ApiResource {
            group: "cert-manager.io".into(),
            version: "v1".into(),
            api_version: "cert-manager.io/v1".into(),
            kind: "Certificate".into(),
            plural: "certificates".into(),
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar);
        let name = input.server_name();
        let sans = tls::server_sans(input);
        let (ips, dns): (Vec<String>, Vec<String>) = sans
            .into_iter()
            .partition(|s| s.parse::<std::net::IpAddr>().is_ok());
        let mut cert = DynamicObject::new(&name, &ar).within(&self.namespace);
        cert.metadata.labels = Some(render::common_labels(input));
        cert.metadata.owner_references = Some(vec![self.owner.clone()]);
        cert.data = serde_json::json!({"spec": {
            "secretName": input.tls_secret_name(),
            "dnsNames": dns,
            "ipAddresses": ips,
            "duration": "8760h",
            "renewBefore": "2920h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
            "issuerRef": {
                "name": issuer.name,
                "kind": issuer.kind.clone().unwrap_or_else(|| "Issuer".into()),
                "group": issuer.group.clone().unwrap_or_else(|| "cert-manager.io".into()),
            },
        }});
        if let Some(existing) = api
            .get_opt(&name)
            .await
            .map_err(|e| cert_manager_error(&name, e))?
        {
            if !self.owned(&existing) {
                return Err(BackendError::conflict("Certificate", &name, None));
            }
        }
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&cert),
            )
            .await
            .map_err(|e| cert_manager_error(&name, e))?;
        let time = |k: &str| {
            applied.data["status"][k]
                .as_str()
                .and_then(|v| v.parse::<Timestamp>().ok())
        };
        let waiting = || {
            BackendError::new(
                ErrorClass::Transient,
                Some("WaitingForCertificate"),
                format!(
                    "waiting for cert-manager to issue Certificate {name} into Secret {}",
                    input.tls_secret_name()
                ),
            )
        };
        // cert-manager owns this Secret (no owner reference of ours).
        let secret = self
            .get::<Secret>(&input.tls_secret_name())
            .await?
            .ok_or_else(waiting)?;
        match (
            secret_text(&secret, tls::CA_CERT_KEY),
            secret_text(&secret, tls::TLS_CERT_KEY),
            secret_text(&secret, tls::TLS_KEY_KEY),
        ) {
            (Some(ca_pem), Some(cert_pem), Some(key_pem)) if !ca_pem.is_empty() => {
                Ok(ServerMaterial {
                    ca_pem,
                    cert_pem,
                    key_pem,
                    not_before: time("notBefore").unwrap_or_default(),
                    not_after: time("notAfter").unwrap_or_default(),
                })
            }
            _ => Err(waiting()),
        }
    }

    /// The CA (made once) and the server certificate (issued again when a
    /// third of its lifetime is left or the names it must cover changed).
    /// `true` when a certificate was issued.
    async fn ensure_own_tls(
        &self,
        input: &CacheInput,
        now: Timestamp,
    ) -> Result<(ServerMaterial, bool), BackendError> {
        let tls_err = |e: tls::TlsError| rejected("CertificateFailed", e.to_string());
        let ca = match self.get::<Secret>(&input.ca_secret_name()).await? {
            Some(s) => match (
                secret_text(&s, tls::CA_CERT_KEY),
                secret_text(&s, tls::CA_KEY_KEY),
            ) {
                (Some(cert_pem), Some(key_pem)) if self.owned(&s) => {
                    CaMaterial { cert_pem, key_pem }
                }
                _ if !self.owned(&s) => {
                    return Err(BackendError::conflict(
                        "Secret",
                        &input.ca_secret_name(),
                        None,
                    ))
                }
                _ => tls::new_ca(input, now).map_err(tls_err)?,
            },
            None => tls::new_ca(input, now).map_err(tls_err)?,
        };
        self.apply(&render::ca_secret(input, &ca, &self.owner))
            .await?;
        let current = self.tls_material_opt(input).await?;
        let sans = sans_hash(input);
        if let Some((m, their_sans)) = &current {
            if m.ca_pem == ca.cert_pem
                && their_sans.as_deref() == Some(sans.as_str())
                && !tls::needs_renewal(m.not_before, m.not_after, now)
            {
                return Ok((m.clone(), false));
            }
        }
        let m = tls::issue_server(input, &ca, now).map_err(tls_err)?;
        let mut secret = render::tls_secret(input, &m, &self.owner);
        secret.metadata.annotations = Some(BTreeMap::from([
            (NOT_BEFORE.to_string(), m.not_before.to_string()),
            (NOT_AFTER.to_string(), m.not_after.to_string()),
            (SANS.to_string(), sans),
        ]));
        self.apply(&secret).await?;
        Ok((m, true))
    }

    async fn tls_material_opt(
        &self,
        input: &CacheInput,
    ) -> Result<Option<(ServerMaterial, Option<String>)>, BackendError> {
        let Some(s) = self.get::<Secret>(&input.tls_secret_name()).await? else {
            return Ok(None);
        };
        if !self.owned(&s) {
            return Err(BackendError::conflict(
                "Secret",
                &input.tls_secret_name(),
                None,
            ));
        }
        let ann = s.annotations();
        let time = |k: &str| ann.get(k).and_then(|v| v.parse::<Timestamp>().ok());
        Ok(
            match (
                secret_text(&s, tls::CA_CERT_KEY),
                secret_text(&s, tls::TLS_CERT_KEY),
                secret_text(&s, tls::TLS_KEY_KEY),
                time(NOT_BEFORE),
                time(NOT_AFTER),
            ) {
                (
                    Some(ca_pem),
                    Some(cert_pem),
                    Some(key_pem),
                    Some(not_before),
                    Some(not_after),
                ) => Some((
                    ServerMaterial {
                        ca_pem,
                        cert_pem,
                        key_pem,
                        not_before,
                        not_after,
                    },
                    ann.get(SANS).cloned(),
                )),
                _ => None,
            },
        )
    }

    /// The CA the servers' certificate chains to (the TLS Secret's `ca.crt`,
    /// the operator's or cert-manager's).
    pub async fn ca_pem(&self, input: &CacheInput) -> Result<String, BackendError> {
        self.get::<Secret>(&input.tls_secret_name())
            .await?
            .and_then(|s| secret_text(&s, tls::CA_CERT_KEY))
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                BackendError::new(
                    ErrorClass::Transient,
                    Some("NoCertificate"),
                    format!("Secret {} has no certificate yet", input.tls_secret_name()),
                )
            })
    }

    async fn acl_secret(&self, input: &CacheInput) -> Result<Option<Secret>, BackendError> {
        let s = self.get::<Secret>(&input.acl_secret_name()).await?;
        if let Some(s) = &s {
            if !self.owned(s) {
                return Err(BackendError::conflict(
                    "Secret",
                    &input.acl_secret_name(),
                    None,
                ));
            }
        }
        Ok(s)
    }

    async fn write_acl(
        &self,
        input: &CacheInput,
        users: &AclUsers,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), BackendError> {
        let mut secret = render::acl_secret(input, users, &self.owner)
            .map_err(|e| rejected("AclFailed", e.to_string()))?;
        secret.metadata.annotations = Some(annotations);
        self.apply(&secret).await
    }

    /// The ACL Secret with `credential` among the passwords of `default`
    /// (other passwords, a rotation's, are kept) and a replication password.
    pub async fn ensure_acl(
        &self,
        input: &CacheInput,
        credential: &Password,
    ) -> Result<AclUsers, BackendError> {
        let existing = self.acl_secret(input).await?;
        let annotations = existing
            .as_ref()
            .map(|s| s.annotations().clone())
            .unwrap_or_default();
        let parsed = existing
            .as_ref()
            .and_then(|s| secret_text(s, acl::ACL_FILE_KEY))
            .and_then(|t| acl::parse_acl_file(&t));
        let users = match parsed {
            Some(mut u) => {
                if !u.default.contains(credential) {
                    u.default.push(credential.clone());
                }
                u
            }
            None => AclUsers {
                default: vec![credential.clone()],
                replication: super::new_password()?,
            },
        };
        self.write_acl(input, &users, annotations).await?;
        Ok(users)
    }

    /// When the passwords of `default` last changed on every server.
    pub async fn credentials_changed_at(
        &self,
        input: &CacheInput,
    ) -> Result<Option<Timestamp>, BackendError> {
        Ok(self
            .acl_secret(input)
            .await?
            .and_then(|s| s.annotations().get(CHANGED_AT).cloned())
            .and_then(|v| v.parse().ok()))
    }

    /// Makes `keep` (plus `add`) the passwords of `default`: first in the
    /// ACL Secret (so a restarting pod gets them), then live on every data
    /// pod with `ACL SETUSER` (no restart); records the time once every pod
    /// took it. Resent as a whole after a crash: each step is idempotent.
    pub async fn change_passwords(
        &self,
        input: &CacheInput,
        keep: Vec<Password>,
        add: Option<Password>,
        tls: &Arc<ClientConfig>,
        creds: &Credentials,
    ) -> Result<(), BackendError> {
        let existing = self.acl_secret(input).await?.ok_or_else(|| {
            BackendError::new(
                ErrorClass::Transient,
                Some("NoAcl"),
                format!("Secret {} does not exist yet", input.acl_secret_name()),
            )
        })?;
        let mut annotations = existing.annotations().clone();
        let mut users = secret_text(&existing, acl::ACL_FILE_KEY)
            .and_then(|t| acl::parse_acl_file(&t))
            .ok_or_else(|| {
                rejected(
                    "AclUnreadable",
                    format!(
                        "Secret {} has no readable ACL file",
                        input.acl_secret_name()
                    ),
                )
            })?;
        let mut rule = Vec::new();
        if let Some(new) = &add {
            if !users.default.contains(new) {
                users.default.push(new.clone());
            }
            rule.push(format!(">{}", new.expose()));
        } else {
            users.default = keep.clone();
            rule.push("resetpass".to_string());
            rule.extend(keep.iter().map(|p| format!(">{}", p.expose())));
        }
        self.write_acl(input, &users, annotations.clone()).await?;
        let pods = self.server_pods(input).await?;
        for p in &pods {
            let (Some(ip), Some(ord)) = (
                p.status.as_ref().and_then(|s| s.pod_ip.clone()),
                ordinal(&p.name_any()),
            ) else {
                continue;
            };
            let endpoint = PodEndpoint {
                host: ip,
                port: input.port,
                server_name: input.pod_fqdn(ord),
            };
            // The current credential may be the one being retired: either works.
            let mut conn = match primary::connect(&endpoint, tls, creds, POD_TIMEOUT).await {
                Ok(c) => c,
                Err(_) => {
                    let fallback = Credentials {
                        user: "default".into(),
                        password: users
                            .default
                            .first()
                            .cloned()
                            .unwrap_or(creds.password.clone()),
                    };
                    primary::connect(&endpoint, tls, &fallback, POD_TIMEOUT)
                        .await
                        .map_err(|e| {
                            transient(
                                "PodUnreachable",
                                format!("changing the password on pod {}: {e}", p.name_any()),
                            )
                        })?
                }
            };
            let mut cmd = redis::cmd("ACL");
            cmd.arg("SETUSER").arg("default");
            for r in &rule {
                cmd.arg(r);
            }
            conn.query::<()>(&cmd).await.map_err(|e| {
                transient(
                    "AclSetUserFailed",
                    format!(
                        "ACL SETUSER default on pod {}: {}",
                        p.name_any(),
                        crate::backends::redact::redact(&e.to_string())
                    ),
                )
            })?;
        }
        annotations.insert(CHANGED_AT.to_string(), Timestamp::now().to_string());
        self.write_acl(input, &users, annotations).await
    }

    /// Applies every rendered object (the NetworkPolicy when enabled).
    pub async fn apply_all(
        &self,
        input: &CacheInput,
        r: &Rendered,
        network_policy: bool,
    ) -> Result<(), BackendError> {
        self.apply::<ConfigMap>(&r.config_map).await?;
        for s in &r.services {
            self.apply::<Service>(s).await?;
        }
        if let Some(s) = &r.sentinel {
            self.apply::<StatefulSet>(s).await?;
        }
        self.apply::<StatefulSet>(&r.statefulset).await?;
        for p in &r.disruption_budgets {
            self.apply::<PodDisruptionBudget>(p).await?;
        }
        if network_policy {
            self.apply::<NetworkPolicy>(&r.network_policy).await?;
        }
        // Fewer replicas: the Sentinels and reader Service of before go.
        if r.sentinel.is_none() {
            self.delete_owned::<StatefulSet>(&input.sentinel_name())
                .await?;
            self.delete_owned::<Service>(&input.sentinel_name()).await?;
            self.delete_owned::<Service>(&input.replicas_service_name())
                .await?;
            self.delete_owned::<PodDisruptionBudget>(&input.sentinel_name())
                .await?;
        }
        if !network_policy {
            self.delete_owned::<NetworkPolicy>(&input.server_name())
                .await?;
        }
        Ok(())
    }

    async fn delete_owned<K>(&self, name: &str) -> Result<bool, BackendError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        match self.get::<K>(name).await? {
            Some(o) if self.owned(&o) => {
                match self
                    .api::<K>()
                    .delete(name, &DeleteParams::background())
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if is_not_found(&e) => Ok(false),
                    Err(e) => Err(kube_error(&format!("deleting {} {name}", K::kind(&())), e)),
                }
            }
            _ => Ok(false),
        }
    }

    async fn pods(&self, component: &str) -> Result<Vec<Pod>, BackendError> {
        let selector = format!("{CACHE_LABEL}={},{COMPONENT_LABEL}={component}", self.name);
        let mut pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| kube_error("listing pods", e))?
            .items;
        pods.retain(|p| p.metadata.deletion_timestamp.is_none());
        pods.sort_by_key(|p| ordinal(&p.name_any()));
        Ok(pods)
    }

    /// The data pods, by ordinal.
    pub async fn server_pods(&self, _input: &CacheInput) -> Result<Vec<Pod>, BackendError> {
        self.pods("server").await
    }

    /// The Sentinel pods, by ordinal.
    pub async fn sentinel_pods(&self, _input: &CacheInput) -> Result<Vec<Pod>, BackendError> {
        self.pods("sentinel").await
    }

    /// Sets the role label of a data pod (what Service `<name>-redis` selects).
    pub async fn label_pod(&self, pod: &str, role: &str) -> Result<(), BackendError> {
        let patch = serde_json::json!({"metadata": {"labels": {ROLE_LABEL: role}}});
        self.api::<Pod>()
            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| kube_error(&format!("labelling pod {pod}"), e))?;
        Ok(())
    }

    /// One step of the rolling update of an `OnDelete` StatefulSet:
    /// replicas first, then a Sentinel failover, then the old primary; one
    /// pod at a time, only when every pod is ready. `Some` says what is
    /// under way; `None` when every pod runs the current revision.
    pub async fn roll_out_one(
        &self,
        input: &CacheInput,
        pods: &[Pod],
        facts: &[PodFacts],
        primary_pod: Option<&str>,
        tls: &Arc<ClientConfig>,
        creds: &Credentials,
    ) -> Result<Option<String>, BackendError> {
        let Some(sts) = self.get::<StatefulSet>(&input.server_name()).await? else {
            return Ok(None);
        };
        let status = sts.status.clone().unwrap_or_default();
        let Some(revision) = status.update_revision.clone() else {
            return Ok(None);
        };
        if status.observed_generation < sts.metadata.generation {
            return Ok(Some(
                "the StatefulSet controller has not seen the change yet".into(),
            ));
        }
        let outdated: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.labels().get(REVISION_LABEL) != Some(&revision))
            .collect();
        if outdated.is_empty() {
            return Ok(None);
        }
        if facts.iter().any(|f| !f.ready) || pods.len() < usize::from(input.pod_count()) {
            return Ok(Some(format!(
                "{} pod(s) to update; waiting for every pod to be ready first",
                outdated.len()
            )));
        }
        let replica = outdated
            .iter()
            .find(|p| Some(p.name_any().as_str()) != primary_pod);
        let target = match (replica, primary_pod) {
            (Some(p), _) => p.name_any(),
            (None, Some(primary)) if input.has_sentinel() => {
                self.failover(input, tls, creds).await?;
                return Ok(Some(format!(
                    "asked Sentinel to fail over from {primary}, the last pod to update"
                )));
            }
            (None, _) => outdated[0].name_any(),
        };
        match self
            .api::<Pod>()
            .delete(&target, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(kube_error(&format!("restarting pod {target}"), e)),
        }
        Ok(Some(format!(
            "restarting pod {target} with the new configuration ({} left)",
            outdated.len() - 1
        )))
    }

    async fn failover(
        &self,
        input: &CacheInput,
        tls: &Arc<ClientConfig>,
        creds: &Credentials,
    ) -> Result<(), BackendError> {
        for p in self.sentinel_pods(input).await? {
            let (Some(ip), Some(ord)) = (
                p.status.as_ref().and_then(|s| s.pod_ip.clone()),
                ordinal(&p.name_any()),
            ) else {
                continue;
            };
            let endpoint = PodEndpoint {
                host: ip,
                port: super::input::SENTINEL_PORT,
                server_name: input.sentinel_pod_fqdn(ord),
            };
            if let Ok(mut c) = primary::connect(&endpoint, tls, creds, POD_TIMEOUT).await {
                if c.query::<()>(
                    redis::cmd("SENTINEL")
                        .arg("FAILOVER")
                        .arg(input.master_set_name()),
                )
                .await
                .is_ok()
                {
                    return Ok(());
                }
            }
        }
        Err(transient(
            "FailoverFailed",
            "no Sentinel accepted SENTINEL FAILOVER; retrying",
        ))
    }

    /// `BGSAVE` on the primary for a `Snapshot` deletion, then waits until
    /// `LASTSAVE` moves past the time it was asked.
    pub async fn final_snapshot(&self) -> Result<Snapshot, BackendError> {
        let acl_name = format!("{}-redis-acl", self.name);
        let Some(acl_secret) = self.get::<Secret>(&acl_name).await? else {
            return Ok(Snapshot::Done);
        };
        let ann = acl_secret.annotations().clone();
        if ann
            .get(FINAL_SNAPSHOT)
            .is_some_and(|v| v.starts_with("done"))
        {
            return Ok(Snapshot::Done);
        }
        let users =
            secret_text(&acl_secret, acl::ACL_FILE_KEY).and_then(|t| acl::parse_acl_file(&t));
        let tls_secret = self
            .get::<Secret>(&format!("{}-redis-tls", self.name))
            .await?;
        let ca = tls_secret
            .as_ref()
            .and_then(|s| secret_text(s, tls::CA_CERT_KEY));
        let pods = self.pods("server").await?;
        let primary_pod = pods
            .iter()
            .find(|p| p.labels().get(ROLE_LABEL).map(String::as_str) == Some(render::ROLE_PRIMARY));
        let (Some(users), Some(ca), Some(pod)) = (users, ca, primary_pod) else {
            // Nothing running to snapshot: the volumes hold what was last written.
            return Ok(Snapshot::Done);
        };
        let port = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.ports.as_ref())
            .and_then(|p| p.first())
            .and_then(|p| u16::try_from(p.container_port).ok())
            .unwrap_or(super::input::DEFAULT_PORT);
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            return Ok(Snapshot::Done);
        };
        let endpoint = PodEndpoint {
            host: ip,
            port,
            server_name: format!(
                "{}.{}-redis-headless.{}.svc.cluster.local",
                pod.name_any(),
                self.name,
                self.namespace
            ),
        };
        let tls =
            primary::client_config(&ca).map_err(|e| rejected("BadCertificate", e.to_string()))?;
        let creds = Credentials {
            user: "default".into(),
            password: users
                .default
                .last()
                .cloned()
                .ok_or_else(|| rejected("AclUnreadable", "no password"))?,
        };
        let mut conn = primary::connect(&endpoint, &tls, &creds, POD_TIMEOUT)
            .await
            .map_err(|e| transient("PodUnreachable", format!("final snapshot: {e}")))?;
        // `rdb_saves` counts finished snapshots since the server started
        // (LASTSAVE has a one-second resolution and cannot tell a save in
        // the same second apart).
        let info: String = conn
            .query(redis::cmd("INFO").arg("persistence"))
            .await
            .map_err(|e| transient("SnapshotFailed", format!("INFO persistence: {e}")))?;
        let field = |name: &str| {
            info.lines().find_map(|l| {
                l.trim_end()
                    .strip_prefix(&format!("{name}:"))
                    .map(str::to_string)
            })
        };
        let saves: i64 = field("rdb_saves").and_then(|v| v.parse().ok()).unwrap_or(0);
        let in_progress = field("rdb_bgsave_in_progress").as_deref() == Some("1");
        let mut annotations = ann.clone();
        match ann
            .get(FINAL_SNAPSHOT)
            .and_then(|v| v.strip_prefix("asked:"))
            .and_then(|v| v.parse::<i64>().ok())
        {
            Some(before) if saves > before && !in_progress => {
                annotations.insert(FINAL_SNAPSHOT.into(), format!("done:{saves}"));
                self.annotate_acl(&acl_name, annotations).await?;
                Ok(Snapshot::Done)
            }
            Some(before) if in_progress || saves > before => Ok(Snapshot::Running),
            Some(_) if field("rdb_last_bgsave_status").as_deref() == Some("err") => {
                // Forget the request: the next reconcile asks again.
                annotations.insert(FINAL_SNAPSHOT.into(), "retry".into());
                self.annotate_acl(&acl_name, annotations).await?;
                Err(transient(
                    "SnapshotFailed",
                    format!(
                        "the final BGSAVE on pod {} failed (see its log; a full volume?); it is asked again",
                        pod.name_any()
                    ),
                ))
            }
            // Asked before, but the server restarted or never began: ask again.
            Some(_) | None => {
                conn.query::<redis::Value>(&redis::cmd("BGSAVE"))
                    .await
                    .map_err(|e| transient("SnapshotFailed", format!("BGSAVE: {e}")))?;
                annotations.insert(FINAL_SNAPSHOT.into(), format!("asked:{saves}"));
                self.annotate_acl(&acl_name, annotations).await?;
                Ok(Snapshot::Started)
            }
        }
    }

    async fn annotate_acl(
        &self,
        name: &str,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), BackendError> {
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        self.api::<Secret>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| kube_error(&format!("annotating Secret {name}"), e))?;
        Ok(())
    }

    /// Deletes every object of the cache that is ours (and its data
    /// volumes unless `keep_volumes`); returns how many StatefulSets and
    /// pods still exist (0 = done).
    pub async fn delete_all(&self, name: &str, keep_volumes: bool) -> Result<usize, BackendError> {
        let server = format!("{name}-redis");
        let sentinel = format!("{name}-redis-sentinel");
        self.delete_owned::<StatefulSet>(&server).await?;
        self.delete_owned::<StatefulSet>(&sentinel).await?;
        for s in [
            server.clone(),
            format!("{name}-redis-replicas"),
            format!("{name}-redis-headless"),
            sentinel.clone(),
        ] {
            self.delete_owned::<Service>(&s).await?;
        }
        self.delete_owned::<ConfigMap>(&format!("{name}-redis-config"))
            .await?;
        self.delete_owned::<NetworkPolicy>(&server).await?;
        self.delete_owned::<PodDisruptionBudget>(&server).await?;
        self.delete_owned::<PodDisruptionBudget>(&sentinel).await?;
        let mut remaining = 0;
        for sts in [&server, &sentinel] {
            if self.get::<StatefulSet>(sts).await?.is_some() {
                remaining += 1;
            }
        }
        remaining += self.pods("server").await?.len() + self.pods("sentinel").await?.len();
        if remaining > 0 {
            return Ok(remaining);
        }
        // The pods are gone: the volumes and the generated Secrets can go.
        if !keep_volumes {
            let selector = format!("{CACHE_LABEL}={name}");
            let claims = self
                .api::<PersistentVolumeClaim>()
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| kube_error("listing PersistentVolumeClaims", e))?;
            for c in claims {
                match self
                    .api::<PersistentVolumeClaim>()
                    .delete(&c.name_any(), &DeleteParams::background())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(kube_error("deleting a data volume", e)),
                }
            }
        }
        // The TLS and ACL Secrets go with the RedisCache (garbage collection).
        Ok(0)
    }
}

fn transient(code: &'static str, message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorClass::Transient, Some(code), message)
}
