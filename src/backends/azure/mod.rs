//! The Azure backend (DESIGN §4.4): Azure Managed Redis
//! (`Microsoft.Cache/redisEnterprise`, tier `Managed`) or Azure Cache for
//! Redis Premium (`Microsoft.Cache/redis`, tier `Premium`) through Azure
//! Resource Manager, signed in with `azure_identity` (workload identity or a
//! client secret the class names). Azure makes the access keys, so the
//! Secret gets the active one in the reconcile that first reads it; a
//! rotation regenerates the key the Secret does not hold, moves the Secret
//! to it and, after the grace period, regenerates the other
//! ([`RotationStyle::AlternateKeys`]).
//!
//! Every step reads the resource first and mutates only when its
//! `provisioningState` is `Succeeded`, one mutating call per reconcile, so a
//! long-running operation is followed by the next GETs whatever happened to
//! the process in between.

pub mod arm;
pub mod config;
pub mod identity;
mod managed;
mod premium;
pub mod sku;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use sha2::{Digest, Sha256};

use self::arm::ArmClient;
use self::identity::{CredentialSource, IdentityConfig, TokenProvider};
pub use super::ratelimit::LimitedGate;
use super::{
    Backend, BackendError, BackendFactory, CacheRequest, CallGate, Converged, Credential,
    CredentialOrigin, Deleted, ErrorClass, KeyPair, KeySlot, Ownership, Planned, RotationStep,
    RotationStyle, StepFailure,
};
use crate::api::validation::{Persistence, PortableSpec, ValidationErrors, DEFAULT_PARAMETERS};
use crate::api::{
    AzureClass, AzureCredentialType, AzurePublicNetworkAccess, AzureTier, ClusterMode,
    DeletionPolicy, Engine, ProviderKind, RedisCache, RedisCacheClass, SecretRef,
};

/// Condition of the Managed cluster or the Premium cache resource.
pub const CACHE_READY: &str = "AzureCacheReady";
/// Condition of the Managed database `default`.
pub const DATABASE_READY: &str = crate::api::conditions::DATABASE_READY;

/// Builds Azure backends; each reads its class's Secrets through the client.
pub struct AzureFactory {
    client: kube::Client,
    gate: Arc<dyn CallGate>,
}

impl AzureFactory {
    /// A factory reading class Secrets through `client`; every ARM call
    /// passes `gate`.
    pub fn new(client: kube::Client, gate: Arc<dyn CallGate>) -> Self {
        Self { client, gate }
    }
}

#[async_trait]
impl BackendFactory for AzureFactory {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Azure
    }

    async fn build(&self, class: &RedisCacheClass) -> Result<Arc<dyn Backend>, BackendError> {
        let block = class.spec.azure.clone().ok_or_else(|| {
            BackendError::new(
                ErrorClass::Rejected,
                Some("ClassInvalid"),
                "the class has no azure block",
            )
        })?;
        Ok(Arc::new(AzureBackend {
            class: block,
            kube: Some(self.client.clone()),
            gate: self.gate.clone(),
            arm: Default::default(),
            listed: Default::default(),
        }))
    }
}

/// Caches of one Azure class.
pub struct AzureBackend {
    class: AzureClass,
    /// `None` for `plan`, which validates and plans only.
    kube: Option<kube::Client>,
    gate: Arc<dyn CallGate>,
    /// The ARM client, with the fingerprint of the Secrets it was built
    /// from: rebuilt when they change, kept otherwise (its credential
    /// caches the token until close to expiry).
    arm: tokio::sync::Mutex<Option<(String, ArmClient)>>,
    /// The resource group's caches of this tier as last listed, shared by
    /// every cache of the class on its settled poll: one list call serves
    /// them all for [`LIST_TTL`].
    listed: std::sync::Mutex<Option<(std::time::Instant, Listed)>>,
}

/// How long one list of the resource group serves every cache.
const LIST_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// One list of the resource group, by lowercased ARM id.
#[derive(Clone, Default)]
pub(crate) struct Listed {
    clusters: BTreeMap<String, arm::Cluster>,
    caches: BTreeMap<String, arm::RedisResource>,
}

impl AzureBackend {
    /// A backend that validates and plans but makes no call.
    pub fn offline(class: AzureClass) -> Self {
        Self {
            class,
            kube: None,
            gate: Arc::new(LimitedGate::new(1.0, 1, |_, _| {})),
            arm: Default::default(),
            listed: Default::default(),
        }
    }

    /// The resource group's caches: the shared list while it is fresh.
    async fn listed(&self, arm: &ArmClient) -> Result<Listed, BackendError> {
        if let Some((at, l)) = self
            .listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if at.elapsed() < LIST_TTL {
                return Ok(l.clone());
            }
        }
        let (s, rg) = (&self.class.subscription_id, &self.class.resource_group);
        let mut l = Listed::default();
        let id_of = |id: &Option<String>| id.as_deref().unwrap_or_default().to_ascii_lowercase();
        match self.tier() {
            AzureTier::Managed => {
                for c in arm.list_clusters(s, rg).await? {
                    l.clusters.insert(id_of(&c.id), c);
                }
            }
            AzureTier::Premium => {
                for c in arm.list_redis(s, rg).await? {
                    l.caches.insert(id_of(&c.id), c);
                }
            }
        }
        *self.listed.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), l.clone()));
        Ok(l)
    }

    /// After a change: the next settled poll lists again.
    fn changed(&self) {
        *self.listed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The Managed cluster `id`: from the shared list on the settled poll
    /// (drift detection for the whole class in one call), else a GET.
    async fn find_cluster(
        &self,
        arm: &ArmClient,
        req: &CacheRequest<'_>,
        id: &str,
    ) -> Result<Option<arm::Cluster>, BackendError> {
        if req.synced_before {
            let listed = self.listed(arm).await?;
            match listed.clusters.get(&id.to_ascii_lowercase()) {
                Some(c) if c.properties.provisioning_state.as_deref() == Some("Succeeded") => {
                    return Ok(Some(c.clone()));
                }
                // Listed while it changed: list again next time.
                Some(_) => self.changed(),
                None => {}
            }
        }
        arm.get_cluster(id).await
    }

    /// The Premium cache `id`, like [`Self::find_cluster`].
    async fn find_cache(
        &self,
        arm: &ArmClient,
        req: &CacheRequest<'_>,
        id: &str,
    ) -> Result<Option<arm::RedisResource>, BackendError> {
        if req.synced_before {
            let listed = self.listed(arm).await?;
            match listed.caches.get(&id.to_ascii_lowercase()) {
                Some(c) if c.properties.provisioning_state.as_deref() == Some("Succeeded") => {
                    return Ok(Some(c.clone()));
                }
                Some(_) => self.changed(),
                None => {}
            }
        }
        arm.get_redis(id).await
    }

    fn tier(&self) -> AzureTier {
        self.class.tier()
    }

    fn public(&self) -> bool {
        self.class.public_network_access == Some(AzurePublicNetworkAccess::Enabled)
    }

    /// The ARM id of cache `req`: the stored one once known, else derived
    /// from the class (a cache never moves resource group).
    fn resource_id(&self, backend_id: &str) -> String {
        if backend_id.starts_with("/subscriptions/") {
            return backend_id.to_string();
        }
        let (s, rg) = (&self.class.subscription_id, &self.class.resource_group);
        match self.tier() {
            AzureTier::Managed => arm::redis_enterprise_id(s, rg, backend_id),
            AzureTier::Premium => arm::redis_id(s, rg, backend_id),
        }
    }

    /// The key values of Secret `r` (none when it or the key is missing).
    async fn secret_values(
        &self,
        kube: &kube::Client,
        r: &SecretRef,
    ) -> Result<BTreeMap<String, String>, BackendError> {
        let secret = Api::<Secret>::namespaced(kube.clone(), &r.namespace)
            .get_opt(&r.name)
            .await
            .map_err(|e| {
                BackendError::new(
                    ErrorClass::Transient,
                    None,
                    format!("reading Secret {}/{}: {e}", r.namespace, r.name),
                )
            })?;
        Ok(secret
            .and_then(|s| s.data)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v)))
            .filter(|(_, v)| !v.is_empty())
            .collect())
    }

    /// The ARM client of the class, (re)built when its Secrets changed.
    async fn arm(&self) -> Result<ArmClient, BackendError> {
        let kube = self.kube.clone().ok_or_else(|| {
            BackendError::new(
                ErrorClass::Rejected,
                None,
                "this Azure backend is offline (plan only)",
            )
        })?;
        let ca = match &self.class.ca_bundle_secret_ref {
            Some(r) => {
                let values = self.secret_values(&kube, r).await?;
                Some(values.get("ca.crt").cloned().ok_or_else(|| {
                    BackendError::new(
                        ErrorClass::Rejected,
                        Some("ClassInvalid"),
                        format!(
                            "Secret {}/{} (the class's azure.caBundleSecretRef) needs the key ca.crt",
                            r.namespace, r.name
                        ),
                    )
                })?)
            }
            None => None,
        };
        let creds = self.class.credentials.clone().unwrap_or_default();
        let source = match (creds.type_, &creds.client_secret_ref) {
            (AzureCredentialType::ClientSecret, Some(r)) => {
                let v = self.secret_values(&kube, r).await?;
                let get = |k: &str| v.get(k).cloned();
                let (Some(tenant_id), Some(client_id), Some(secret)) = (
                    get("tenantId").or(creds.tenant_id.clone()),
                    get("clientId").or(creds.client_id.clone()),
                    get("clientSecret"),
                ) else {
                    return Err(BackendError::new(
                        ErrorClass::CredentialsInvalid,
                        Some("CredentialsMissing"),
                        format!(
                            "Secret {}/{} (the class's azure.credentials.clientSecretRef) needs the keys tenantId, clientId and clientSecret",
                            r.namespace, r.name
                        ),
                    ));
                };
                CredentialSource::ClientSecret {
                    tenant_id,
                    client_id,
                    secret: Credential::new(secret),
                }
            }
            (AzureCredentialType::ClientSecret, None) => {
                return Err(BackendError::new(
                    ErrorClass::Rejected,
                    Some("ClassInvalid"),
                    "azure.credentials.type ClientSecret needs azure.credentials.clientSecretRef",
                ))
            }
            (AzureCredentialType::WorkloadIdentity, _) => CredentialSource::WorkloadIdentity {
                client_id: creds.client_id.clone(),
                tenant_id: creds.tenant_id.clone(),
                token_file: None,
            },
        };
        let fingerprint = {
            let mut h = Sha256::new();
            h.update(ca.as_deref().unwrap_or_default().as_bytes());
            if let CredentialSource::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } = &source
            {
                for part in [tenant_id.as_str(), client_id.as_str(), secret.expose()] {
                    h.update([0u8]);
                    h.update(part.as_bytes());
                }
            }
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let mut guard = self.arm.lock().await;
        if let Some((f, client)) = guard.as_ref() {
            if *f == fingerprint {
                return Ok(client.clone());
            }
        }
        let http = identity::http_client(ca.as_deref().map(str::as_bytes))?;
        let authority_host = match &self.class.authority_host {
            Some(h) => Some(url::Url::parse(h).map_err(|e| {
                BackendError::new(
                    ErrorClass::Rejected,
                    Some("ClassInvalid"),
                    format!("azure.authorityHost is not a URL: {e}"),
                )
            })?),
            None => None,
        };
        let tokens = TokenProvider::new(
            &IdentityConfig {
                source,
                authority_host,
            },
            http.clone(),
        )?;
        let endpoint = url::Url::parse(
            self.class
                .arm_endpoint
                .as_deref()
                .unwrap_or(arm::MANAGEMENT_ENDPOINT),
        )
        .map_err(|e| {
            BackendError::new(
                ErrorClass::Rejected,
                Some("ClassInvalid"),
                format!("azure.armEndpoint is not a URL: {e}"),
            )
        })?;
        let client = ArmClient::new(http, endpoint, Arc::new(tokens), self.gate.clone());
        *guard = Some((fingerprint, client.clone()));
        Ok(client)
    }

    /// The storage connection string for Premium persistence.
    async fn storage_connection_string(&self) -> Result<Option<Credential>, BackendError> {
        let (Some(kube), Some(r)) = (&self.kube, &self.class.persistence_storage_secret_ref) else {
            return Ok(None);
        };
        let v = self.secret_values(kube, r).await?;
        Ok(v.get("connectionString").cloned().map(Credential::new))
    }

    /// Tags of every resource of a cache: the class's, the cache's, then
    /// the ownership marks.
    fn tags(&self, spec: &PortableSpec, owner: &Ownership) -> BTreeMap<String, String> {
        let mut tags = self.class.tags.clone();
        tags.extend(spec.tags.clone());
        tags.extend(owner.tags());
        tags
    }
}

/// A failed step of an Azure converge.
fn fail(condition: &'static str, step: &'static str, error: BackendError) -> StepFailure {
    StepFailure {
        condition,
        step,
        error,
        conditions: Vec::new(),
        details: None,
    }
}

/// The parameters a user set beyond the defaults every backend gets.
fn user_parameters(spec: &PortableSpec) -> BTreeMap<String, String> {
    spec.parameters
        .iter()
        .filter(|(k, v)| {
            !DEFAULT_PARAMETERS
                .iter()
                .any(|(dk, dv)| dk == &k.as_str() && dv == &v.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The requested persistence in Azure's terms.
fn persistence(spec: &PortableSpec) -> config::Persistence {
    match spec.persistence {
        Persistence::None => config::Persistence::None,
        Persistence::AppendOnly => config::Persistence::Aof,
        Persistence::Snapshot { interval, .. } => config::Persistence::Rdb {
            every_minutes: interval
                .map(|d| u32::try_from(d.as_secs() / 60).unwrap_or(u32::MAX))
                .unwrap_or(60),
        },
    }
}

/// The key the Secret holds, or should hold: the one matching the Secret,
/// else the one `status.auth.activeKey` names, else the primary.
fn active_key(keys: &KeyPair, req: &CacheRequest<'_>) -> Credential {
    let remembered = req
        .cache
        .status
        .as_ref()
        .and_then(|s| s.auth.as_ref())
        .and_then(|a| a.active_key.as_deref())
        .and_then(KeySlot::parse);
    let slot = req
        .credential
        .and_then(|c| keys.slot_of(c))
        .or(remembered)
        .unwrap_or(KeySlot::Primary);
    keys.get(slot).clone()
}

/// `arm::AccessKeys` as a pair, when Azure gave both.
fn key_pair(keys: arm::AccessKeys) -> Result<KeyPair, BackendError> {
    match (keys.primary_key, keys.secondary_key) {
        (Some(primary), Some(secondary)) => Ok(KeyPair { primary, secondary }),
        _ => Err(BackendError::new(
            ErrorClass::Transient,
            None,
            "Azure listed the access keys without both keys",
        )),
    }
}

fn key_type(slot: KeySlot) -> arm::KeyType {
    match slot {
        KeySlot::Primary => arm::KeyType::Primary,
        KeySlot::Secondary => arm::KeyType::Secondary,
    }
}

#[async_trait]
impl Backend for AzureBackend {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Azure
    }

    fn identity(&self, cluster: &str, namespace: &str, name: &str) -> String {
        // At most 40 characters of [a-z0-9-], starting with a letter, no
        // `--`: within the names of both resource types.
        super::identity::derive(cluster, namespace, name)
    }

    fn describe(&self, backend_id: &str) -> String {
        let name = backend_id.rsplit('/').next().unwrap_or(backend_id);
        match self.tier() {
            AzureTier::Managed => format!("Azure Managed Redis cluster {name}"),
            AzureTier::Premium => format!("Azure Cache for Redis {name}"),
        }
    }

    fn credential_origin(&self) -> CredentialOrigin {
        CredentialOrigin::Backend
    }

    fn rotation_style(&self) -> RotationStyle {
        RotationStyle::AlternateKeys
    }

    fn validate(&self, cache: &RedisCache, spec: &PortableSpec) -> Result<(), ValidationErrors> {
        let mut errs = crate::api::validation::Errors::default();
        let s = &cache.spec;
        let tier = self.tier();
        let (tier_name, port) = match tier {
            AzureTier::Managed => ("Azure Managed Redis", 10000),
            AzureTier::Premium => ("Azure Cache for Redis Premium", 6380),
        };
        if s.engine == Some(Engine::Valkey) {
            errs.add(
                "spec.engine",
                format!("{tier_name} runs Redis: set engine redis or remove spec.engine"),
            );
        }
        if s.engine_version.is_some() {
            errs.add(
                "spec.engineVersion",
                format!("{tier_name} picks the Redis version itself: remove spec.engineVersion"),
            );
        }
        if s.node_type.is_some() {
            errs.add(
                "spec.nodeType",
                "is ElastiCache only; use spec.memory (mapped to an Azure SKU)",
            );
        }
        if s.port != 6379 && s.port != port {
            errs.add(
                "spec.port",
                format!("{tier_name} serves TLS on port {port} only: remove spec.port (the Secret names the port)"),
            );
        }
        if spec.deletion_policy == DeletionPolicy::Snapshot {
            errs.add(
                "spec.deletionPolicy",
                format!("{tier_name}: exporting a final snapshot is not supported by this operator; use Retain to keep the cache, or Delete"),
            );
        }
        if let Some(n) = &s.network {
            if n.subnet_group_name.is_some()
                || n.subnet_ids.is_some()
                || !n.security_group_ids.is_empty()
                || !n.allowed_security_group_ids.is_empty()
            {
                errs.add("spec.network", "only allowedCidrs applies on Azure (subnets and security groups are ElastiCache only; the class names the Azure subnet)");
            }
        }
        if s.encryption
            .as_ref()
            .is_some_and(|e| e.kms_key_id.is_some())
        {
            errs.add(
                "spec.encryption.kmsKeyId",
                "customer-managed keys on Azure are not supported by this operator: remove it (Azure encrypts at rest with its own keys)",
            );
        }
        if s.backup.is_some() {
            errs.add("spec.backup", "is ElastiCache only");
        }
        let params = user_parameters(spec);
        let allowed: &[&str] = match tier {
            AzureTier::Managed => &["notify-keyspace-events"],
            AzureTier::Premium => &[
                "notify-keyspace-events",
                "maxmemory-reserved",
                "maxfragmentationmemory-reserved",
                "maxmemory-delta",
            ],
        };
        for k in params.keys() {
            if !allowed.contains(&k.as_str()) {
                errs.add(
                    format!("spec.parameters[{k}]"),
                    format!(
                        "{tier_name} does not let this be set; allowed: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        if let Some(events) = params.get("notify-keyspace-events") {
            if !events.chars().all(|c| "KEg$lshzxetmdnA".contains(c)) {
                errs.add(
                    "spec.parameters[notify-keyspace-events]",
                    "has characters outside \"KEg$lshzxetmdnA\"",
                );
            }
        }
        match persistence(spec) {
            config::Persistence::Rdb { every_minutes } => {
                let allowed = match tier {
                    AzureTier::Managed => config::MANAGED_RDB_MINUTES,
                    AzureTier::Premium => config::PREMIUM_RDB_MINUTES,
                };
                if let Err(e) = config::snap_rdb_minutes(every_minutes, allowed) {
                    errs.add("spec.persistence.snapshotInterval", e.to_string());
                }
            }
            config::Persistence::Aof | config::Persistence::None => {}
        }
        match tier {
            AzureTier::Managed => {
                if spec.shards != 1 {
                    errs.add("spec.shards", "Azure Managed Redis shards by itself within the SKU: use 1, and clusterMode Enabled for the OSS cluster protocol, or a Premium class");
                }
                if spec.replicas_per_shard > 1 {
                    errs.add("spec.replicasPerShard", "Azure Managed Redis has high availability on (1, a replica per shard) or off (0)");
                }
                if spec.allowed_cidrs.is_some() {
                    errs.add("spec.network.allowedCidrs", "Azure Managed Redis has no firewall rules: reach it through a private endpoint (the class's publicNetworkAccess Disabled), or use a Premium class");
                }
                if s.maintenance_window.is_some() {
                    errs.add("spec.maintenanceWindow", "Azure Managed Redis schedules its own maintenance: remove it (Premium classes take a patch schedule)");
                }
                if let Some(bytes) = spec.memory {
                    if let Err(e) = sku::balanced_sku_for(bytes) {
                        errs.add(spec.memory_field, e.to_string());
                    }
                }
            }
            AzureTier::Premium => {
                if !(1..=3).contains(&spec.replicas_per_shard) {
                    errs.add(
                        "spec.replicasPerShard",
                        "Azure Cache for Redis Premium has 1 to 3 replicas per primary",
                    );
                }
                if spec.shards > 1 && spec.cluster_mode != ClusterMode::Enabled {
                    errs.add(
                        "spec.clusterMode",
                        "more than one shard needs clusterMode Enabled",
                    );
                }
                if spec.allowed_cidrs.is_some() && !self.public() {
                    errs.add("spec.network.allowedCidrs", "the class keeps public network access Disabled, so there are no firewall rules to set: remove it, or use a class with publicNetworkAccess Enabled");
                }
                if spec.persistence != Persistence::None
                    && self.class.persistence_storage_secret_ref.is_none()
                {
                    errs.add("spec.persistence", "Premium writes RDB/AOF files to a storage account: the class needs azure.persistenceStorageSecretRef");
                }
                if let Some(bytes) = spec.memory {
                    let shards = u32::try_from(spec.shards.max(1)).unwrap_or(1);
                    if let Err(e) = sku::premium_sku_for(bytes, shards) {
                        errs.add(spec.memory_field, e.to_string());
                    }
                }
                if let Some(w) = &s.maintenance_window {
                    if let Err(e) = premium::schedule(w) {
                        errs.add("spec.maintenanceWindow", e);
                    }
                }
            }
        }
        errs.finish(())
    }

    fn plan(
        &self,
        cache: &RedisCache,
        spec: &PortableSpec,
        backend_id: &str,
        owner: &Ownership,
    ) -> Result<Planned, ValidationErrors> {
        self.validate(cache, spec)?;
        let id = self.resource_id(backend_id);
        let mut objects = match self.tier() {
            AzureTier::Managed => managed::plan(spec),
            AzureTier::Premium => premium::plan(spec, self.public()),
        };
        objects[0] = format!("{} {}", objects[0], id);
        Ok(Planned {
            objects,
            detail: serde_json::json!({
                "id": id,
                "tier": format!("{:?}", self.tier()),
                "location": self.class.location,
                "zones": self.class.zones,
                "tags": self.tags(spec, owner),
            }),
            notes: Vec::new(),
        })
    }

    async fn converge(&self, req: &CacheRequest<'_>) -> Result<Converged, StepFailure> {
        let arm = self
            .arm()
            .await
            .map_err(|e| fail(CACHE_READY, "credentials", e))?;
        match self.tier() {
            AzureTier::Managed => managed::converge(self, &arm, req).await,
            AzureTier::Premium => premium::converge(self, &arm, req).await,
        }
    }

    async fn rotate_credentials(
        &self,
        _req: &CacheRequest<'_>,
        _step: RotationStep<'_>,
    ) -> Result<Option<Credential>, BackendError> {
        Err(BackendError::new(
            ErrorClass::Rejected,
            None,
            "Azure rotates by regenerating its two access keys in turn",
        ))
    }

    async fn access_keys(&self, req: &CacheRequest<'_>) -> Result<KeyPair, BackendError> {
        let arm = self.arm().await?;
        let id = self.resource_id(req.backend_id);
        match self.tier() {
            AzureTier::Managed => {
                key_pair(arm.list_database_keys(&managed::database_id(&id)).await?)
            }
            AzureTier::Premium => key_pair(arm.list_redis_keys(&id).await?),
        }
    }

    async fn regenerate_key(
        &self,
        req: &CacheRequest<'_>,
        slot: KeySlot,
    ) -> Result<(), BackendError> {
        let arm = self.arm().await?;
        let id = self.resource_id(req.backend_id);
        match self.tier() {
            AzureTier::Managed => {
                // Long-running: the next listKeys shows when it is done.
                arm.regenerate_database_key(&managed::database_id(&id), key_type(slot))
                    .await?;
            }
            AzureTier::Premium => {
                arm.regenerate_redis_key(&id, key_type(slot)).await?;
            }
        }
        Ok(())
    }

    async fn delete(
        &self,
        _cache: &RedisCache,
        backend_id: &str,
        owner: &Ownership,
        _policy: DeletionPolicy,
    ) -> Result<Deleted, BackendError> {
        let arm = self.arm().await?;
        let id = self.resource_id(backend_id);
        let what = self.describe(&id);
        let found = match self.tier() {
            AzureTier::Managed => arm
                .get_cluster(&id)
                .await?
                .map(|c| (c.tags, c.properties.provisioning_state)),
            AzureTier::Premium => arm
                .get_redis(&id)
                .await?
                .map(|c| (c.tags, c.properties.provisioning_state)),
        };
        let Some((tags, state)) = found else {
            return Ok(Deleted::Done {
                summary: format!("{what} is gone"),
                notes: Vec::new(),
            });
        };
        if !owner.owns(&tags) {
            return Ok(Deleted::Done {
                summary: format!("{what} belongs to someone else; left untouched"),
                notes: Vec::new(),
            });
        }
        if state.as_deref() != Some("Deleting") {
            arm.delete("delete", &id).await?;
        }
        self.changed();
        Ok(Deleted::InProgress {
            what,
            notes: Vec::new(),
        })
    }

    async fn check(&self) -> Result<String, BackendError> {
        let arm = self.arm().await?;
        let (s, rg) = (&self.class.subscription_id, &self.class.resource_group);
        match arm.get_resource_group(s, rg).await? {
            Some(_) => Ok(format!(
                "the class's Azure credentials read resource group {rg}"
            )),
            None => Err(BackendError::new(
                ErrorClass::Rejected,
                Some("ResourceGroupNotFound"),
                format!("resource group {rg} does not exist in subscription {s}; create it (the operator never creates resource groups)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RedisCacheClassSpec;

    fn class(tier: AzureTier) -> RedisCacheClass {
        RedisCacheClass::new(
            "azure",
            RedisCacheClassSpec {
                provider: ProviderKind::Azure,
                defaults: None,
                allowed_namespaces: Vec::new(),
                allowed_namespace_selector: None,
                elasti_cache: None,
                kubernetes: None,
                upstash: None,
                azure: Some(AzureClass {
                    subscription_id: "00000000-0000-0000-0000-000000000000".into(),
                    resource_group: "rg".into(),
                    location: "westeurope".into(),
                    tier: Some(tier),
                    ..Default::default()
                }),
            },
        )
    }

    /// The field paths `spec` is refused for on `tier`.
    fn refused(tier: AzureTier, spec: serde_json::Value) -> Vec<String> {
        let mut cache = RedisCache::new("c", serde_json::from_value(spec).expect("spec"));
        cache.metadata.namespace = Some("ns".into());
        let class = class(tier);
        let backend = AzureBackend::offline(class.spec.azure.clone().expect("azure"));
        let spec = crate::api::validation::resolve(&cache, &class).expect("portable rules");
        match backend.validate(&cache, &spec) {
            Ok(()) => Vec::new(),
            Err(e) => e.0.into_iter().map(|f| f.field).collect(),
        }
    }

    #[test]
    fn managed_refuses_what_it_cannot_honour_by_field_path() {
        let none: Vec<String> = Vec::new();
        assert_eq!(
            refused(
                AzureTier::Managed,
                serde_json::json!({"memory": "4Gi", "replicasPerShard": 1, "persistence": {"mode": "AppendOnly"}})
            ),
            none
        );
        let fields = refused(
            AzureTier::Managed,
            serde_json::json!({
                "engine": "valkey",
                "shards": 2,
                "clusterMode": "Enabled",
                "replicasPerShard": 2,
                "network": {"allowedCidrs": ["10.0.0.0/16"]},
                "maintenanceWindow": "sun:05:00-sun:06:00",
                "parameters": {"maxmemory-samples": "5"},
                "deletionPolicy": "Snapshot",
                "persistence": {"mode": "Snapshot", "snapshotInterval": "30m"},
                "memory": "2000Gi"
            }),
        );
        for f in [
            "spec.engine",
            "spec.shards",
            "spec.replicasPerShard",
            "spec.network.allowedCidrs",
            "spec.maintenanceWindow",
            "spec.parameters[maxmemory-samples]",
            "spec.deletionPolicy",
            "spec.persistence.snapshotInterval",
            "spec.memory",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
        }
    }

    #[test]
    fn premium_needs_replicas_public_access_for_rules_and_storage_for_persistence() {
        let fields = refused(
            AzureTier::Premium,
            serde_json::json!({
                "replicasPerShard": 0,
                "network": {"allowedCidrs": ["10.0.0.0/16"]},
                "persistence": {"mode": "AppendOnly"},
                "maintenanceWindow": "sun:05:30-sun:11:00",
                "port": 6379
            }),
        );
        for f in [
            "spec.replicasPerShard",
            "spec.network.allowedCidrs",
            "spec.persistence",
            "spec.maintenanceWindow",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
        }
        assert!(
            !fields.iter().any(|x| x == "spec.port"),
            "6379 is the unset default"
        );
        let ok = refused(
            AzureTier::Premium,
            serde_json::json!({"memory": "20Gi", "clusterMode": "Enabled", "shards": 2, "replicasPerShard": 1, "maintenanceWindow": "sun:02:00-sun:07:00"}),
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn the_arm_id_is_derived_once_and_then_kept() {
        let backend = AzureBackend::offline(class(AzureTier::Managed).spec.azure.expect("azure"));
        let id = backend.resource_id("loop-shop-a-12345678");
        assert_eq!(
            id,
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Cache/redisEnterprise/loop-shop-a-12345678"
        );
        let elsewhere =
            "/subscriptions/x/resourceGroups/old/providers/Microsoft.Cache/redisEnterprise/a";
        assert_eq!(
            backend.resource_id(elsewhere),
            elsewhere,
            "a cache never moves group"
        );
        assert_eq!(
            backend.describe(&id),
            "Azure Managed Redis cluster loop-shop-a-12345678"
        );
    }
}
