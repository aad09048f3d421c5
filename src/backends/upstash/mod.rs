//! The Upstash backend (DESIGN §4.3): a global TLS database named `R`
//! through the Developer API v2, with the account's credentials from the
//! Secret the class names. Upstash makes the password, so the Secret gets
//! it in the reconcile that first reads it; create is not idempotent, so a
//! database named `R` is adopted before anything is created; rotation is a
//! cut-over (reset-password); `memory` maps to the smallest fixed plan.

pub mod client;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use self::client::{CreateDatabaseRequest, Database, UpstashClient, DEFAULT_BASE_URL};
pub use super::ratelimit::LimitedGate;
use super::{
    Backend, BackendError, BackendFactory, CacheRequest, CallGate, ClusterMode, Connection,
    Converged, Credential, CredentialOrigin, Deleted, Endpoint, ErrorClass, Lifecycle, Next, Note,
    Observed, Ownership, Planned, RotationStep, RotationStyle, StepFailure,
};
use crate::api::conditions::{self, Cond};
use crate::api::validation::{Persistence, PortableSpec, ValidationErrors};
use crate::api::{
    BackendDetails, DeletionPolicy, EvictionPolicy, ProviderKind, RedisCache, RedisCacheClass,
    UpstashClass, UpstashPlan,
};

/// Builds Upstash backends; each reads its class's credentials Secret.
pub struct UpstashFactory {
    client: kube::Client,
    gate: Arc<dyn CallGate>,
}

impl UpstashFactory {
    /// A factory reading credentials Secrets through `client`; every API
    /// call passes `gate`.
    pub fn new(client: kube::Client, gate: Arc<dyn CallGate>) -> Self {
        Self { client, gate }
    }
}

#[async_trait]
impl BackendFactory for UpstashFactory {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Upstash
    }

    async fn build(&self, class: &RedisCacheClass) -> Result<Arc<dyn Backend>, BackendError> {
        let block = class.spec.upstash.clone().ok_or_else(|| {
            BackendError::new(
                ErrorClass::Rejected,
                Some("ClassInvalid"),
                "the class has no upstash block",
            )
        })?;
        Ok(Arc::new(UpstashBackend {
            class: block,
            kube: Some(self.client.clone()),
            gate: self.gate.clone(),
            listed: Default::default(),
        }))
    }
}

/// Caches of one Upstash class.
pub struct UpstashBackend {
    class: UpstashClass,
    /// `None` for `plan`, which validates and plans only.
    kube: Option<kube::Client>,
    gate: Arc<dyn CallGate>,
    /// The account's databases as last listed, shared by every cache of the
    /// class: one list call serves them all for [`LIST_TTL`].
    listed: std::sync::Mutex<Option<(std::time::Instant, Vec<Database>)>>,
}

/// How long one list of the account's databases serves every cache.
const LIST_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl UpstashBackend {
    /// A backend that validates and plans but makes no call.
    pub fn offline(class: UpstashClass) -> Self {
        Self {
            class,
            kube: None,
            gate: Arc::new(LimitedGate::new(1.0, 1, |_, _| {})),
            listed: Default::default(),
        }
    }

    /// The account's databases: the shared list while it is fresh.
    async fn databases(&self, api: &UpstashClient) -> Result<Vec<Database>, BackendError> {
        if let Some((at, dbs)) = self
            .listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if at.elapsed() < LIST_TTL {
                return Ok(dbs.clone());
            }
        }
        let dbs = api.list_databases().await?;
        *self.listed.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), dbs.clone()));
        Ok(dbs)
    }

    /// After a change: the next reconcile lists again.
    fn changed(&self) {
        *self.listed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// An API client with the class's credentials, read from its Secret now
    /// (so a rotated API key is picked up at once).
    async fn api(&self) -> Result<UpstashClient, BackendError> {
        let kube = self.kube.clone().ok_or_else(|| {
            BackendError::new(
                ErrorClass::Rejected,
                None,
                "this Upstash backend is offline (plan only)",
            )
        })?;
        let r = &self.class.credentials_secret_ref;
        let secret = Api::<Secret>::namespaced(kube, &r.namespace)
            .get_opt(&r.name)
            .await
            .map_err(|e| {
                BackendError::new(
                    ErrorClass::Transient,
                    None,
                    format!("reading Secret {}/{}: {e}", r.namespace, r.name),
                )
            })?;
        let key = |k: &str| {
            secret
                .as_ref()
                .and_then(|s| s.data.as_ref())
                .and_then(|d| d.get(k))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .filter(|v| !v.is_empty())
        };
        let (Some(email), Some(api_key)) = (key("email"), key("apiKey")) else {
            return Err(BackendError::new(
                ErrorClass::CredentialsInvalid,
                Some("CredentialsMissing"),
                format!(
                    "Secret {}/{} (the class's upstash.credentialsSecretRef) needs the keys email and apiKey",
                    r.namespace, r.name
                ),
            ));
        };
        let url = self
            .class
            .api_url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        UpstashClient::with_base_url(url, email, Credential::new(api_key), self.gate.clone())
    }

    fn pay_as_you_go(&self) -> bool {
        self.class.plan == Some(UpstashPlan::PayAsYouGo)
    }

    fn database_name(&self, req: &CacheRequest<'_>) -> String {
        self.identity(
            &req.owner.cluster,
            &req.cache.namespace().unwrap_or_default(),
            &req.cache.name_any(),
        )
    }
}

/// The condition reason of an Upstash error.
fn fail(step: &'static str, error: BackendError) -> StepFailure {
    StepFailure {
        condition: conditions::DATABASE_READY,
        step,
        error,
        conditions: Vec::new(),
        details: None,
    }
}

fn evicts(p: EvictionPolicy) -> bool {
    p != EvictionPolicy::NoEviction
}

#[async_trait]
impl Backend for UpstashBackend {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Upstash
    }

    fn identity(&self, cluster: &str, namespace: &str, name: &str) -> String {
        super::identity::derive(cluster, namespace, name)
    }

    fn describe(&self, backend_id: &str) -> String {
        format!("Upstash database {backend_id}")
    }

    fn credential_origin(&self) -> CredentialOrigin {
        CredentialOrigin::Backend
    }

    fn rotation_style(&self) -> RotationStyle {
        RotationStyle::CutOver
    }

    fn validate(&self, cache: &RedisCache, spec: &PortableSpec) -> Result<(), ValidationErrors> {
        let mut errs = crate::api::validation::Errors::default();
        let s = &cache.spec;
        let how = "Upstash fixes it";
        if s.engine.is_some() {
            errs.add(
                "spec.engine",
                format!("{how}: Upstash runs its own Redis-compatible engine; remove spec.engine"),
            );
        }
        if s.engine_version.is_some() {
            errs.add(
                "spec.engineVersion",
                format!("{how}: remove spec.engineVersion"),
            );
        }
        if s.node_type.is_some() {
            errs.add(
                "spec.nodeType",
                "is ElastiCache only; use spec.memory (mapped to an Upstash plan)",
            );
        }
        if spec.replicas_per_shard != 0 {
            errs.add("spec.replicasPerShard", "Upstash replicates by region: set 0, and ask for read regions in the class (upstash.readRegions)");
        }
        if spec.shards != 1 || spec.cluster_mode == ClusterMode::Enabled {
            errs.add(
                "spec.shards",
                "Upstash databases are not sharded: use 1 shard, or an ElastiCache or Azure class",
            );
        }
        if spec.port != 6379 {
            errs.add("spec.port", "Upstash serves on 6379 only");
        }
        if s.auth
            .as_ref()
            .is_some_and(|a| a.rotation_grace_period.is_some())
        {
            errs.add("spec.auth.rotationGracePeriod", "Upstash resets the password at once (clients must reload the Secret); there is no grace period to set");
        }
        if spec.persistence != Persistence::None {
            errs.add(
                "spec.persistence",
                "Upstash keeps the data durably on its own; remove spec.persistence",
            );
        }
        if spec.deletion_policy == DeletionPolicy::Snapshot {
            errs.add(
                "spec.deletionPolicy",
                "Upstash deletes a database's backups with it: use Retain to keep the data",
            );
        }
        if let Some(n) = &s.network {
            if n.subnet_group_name.is_some()
                || n.subnet_ids.is_some()
                || !n.security_group_ids.is_empty()
                || !n.allowed_security_group_ids.is_empty()
            {
                errs.add("spec.network", "only allowedCidrs applies on Upstash (subnets and security groups are ElastiCache only)");
            }
        }
        if s.encryption
            .as_ref()
            .is_some_and(|e| e.kms_key_id.is_some())
        {
            errs.add(
                "spec.encryption.kmsKeyId",
                "Upstash manages its own encryption keys",
            );
        }
        if s.backup.is_some() || s.maintenance_window.is_some() {
            errs.add(
                "spec.backup",
                "backup and maintenanceWindow are ElastiCache only",
            );
        }
        if !spec.tags.is_empty() {
            errs.add("spec.tags", "Upstash databases have no tags");
        }
        if let Some(bytes) = spec.memory {
            if plan::choose_plan(bytes, self.pay_as_you_go()).is_none() {
                errs.add(
                    spec.memory_field,
                    "more than the largest Upstash plan holds (500 GB fixed, 100 GB pay as you go)",
                );
            }
        }
        errs.finish(())
    }

    fn plan(
        &self,
        cache: &RedisCache,
        spec: &PortableSpec,
        backend_id: &str,
        _owner: &Ownership,
    ) -> Result<Planned, ValidationErrors> {
        self.validate(cache, spec)?;
        let plan = desired_plan(spec, self.pay_as_you_go());
        let mut objects = vec![format!(
            "Upstash database {backend_id} (global, primary {}, TLS, plan {})",
            self.class.primary_region,
            plan.api_name()
        )];
        if !self.class.read_regions.is_empty() {
            objects.push(format!(
                "  read regions     {}",
                self.class.read_regions.join(", ")
            ));
        }
        objects.push(format!(
            "  eviction         {} (Upstash evicts by its own algorithm, not {})",
            if evicts(spec.eviction_policy) {
                "on"
            } else {
                "off"
            },
            spec.eviction_policy.as_str()
        ));
        if let Some(c) = &spec.allowed_cidrs {
            objects.push(format!("  allowlist        {}", c.join(", ")));
        }
        Ok(Planned {
            objects,
            detail: serde_json::json!({"name": backend_id, "plan": plan.api_name(), "primaryRegion": self.class.primary_region, "readRegions": self.class.read_regions}),
            notes: Vec::new(),
        })
    }

    async fn converge(&self, req: &CacheRequest<'_>) -> Result<Converged, StepFailure> {
        let api = self.api().await.map_err(|e| fail("credentials", e))?;
        let name = self.database_name(req);
        let databases = self.databases(&api).await.map_err(|e| fail("list", e))?;
        let known_id = (req.backend_id != name).then_some(req.backend_id);
        let found = databases.into_iter().find(|d| match known_id {
            Some(id) => d.database_id == id,
            None => d.database_name == name,
        });
        let mut notes = Vec::new();
        let Some(db) = found else {
            self.changed();
            let db = self.create(&api, req, &name).await?;
            if known_id.is_some() {
                notes.push(Note::warning(
                    "Recreated",
                    format!("Upstash database {name} was deleted outside the operator; created it again"),
                ));
            }
            notes.push(Note::normal(
                "CreatingDatabase",
                format!("created Upstash database {name}"),
            ));
            return Ok(self.converged(
                &db,
                req,
                notes,
                Next::Soon,
                Some(db.database_id.clone()),
                None,
            ));
        };
        let mut backend_id = None;
        if known_id.is_none() {
            // A create that succeeded before the operator could record it.
            notes.push(Note::normal(
                "Adopted",
                format!(
                    "adopted the existing Upstash database {name} ({})",
                    db.database_id
                ),
            ));
            backend_id = Some(db.database_id.clone());
        }
        let (next, updating) = self
            .day2(&api, req, &db, &mut notes)
            .await
            .map_err(|e| fail("change", e))?;
        if updating.is_some() {
            self.changed();
        }
        Ok(self.converged(&db, req, notes, next, backend_id, updating))
    }

    async fn rotate_credentials(
        &self,
        req: &CacheRequest<'_>,
        step: RotationStep<'_>,
    ) -> Result<Option<Credential>, BackendError> {
        if !matches!(step, RotationStep::Reset) {
            return Err(BackendError::new(
                ErrorClass::Rejected,
                None,
                "Upstash rotates by reset only",
            ));
        }
        let db = self.api().await?.reset_password(req.backend_id).await?;
        self.changed();
        Ok(db.password)
    }

    async fn delete(
        &self,
        cache: &RedisCache,
        backend_id: &str,
        owner: &Ownership,
        _policy: DeletionPolicy,
    ) -> Result<Deleted, BackendError> {
        let api = self.api().await?;
        let name = self.identity(
            &owner.cluster,
            &cache.namespace().unwrap_or_default(),
            &cache.name_any(),
        );
        self.changed();
        let databases = api.list_databases().await?;
        let target = databases.iter().find(|d| {
            if backend_id == name {
                d.database_name == name
            } else {
                d.database_id == backend_id
            }
        });
        let Some(db) = target else {
            return Ok(Deleted::Done {
                summary: format!("Upstash database {name} is gone"),
                notes: Vec::new(),
            });
        };
        match api.delete_database(&db.database_id).await {
            Ok(())
            | Err(BackendError {
                class: ErrorClass::NotFound,
                ..
            }) => Ok(Deleted::Done {
                summary: format!("deleted Upstash database {name} ({})", db.database_id),
                notes: Vec::new(),
            }),
            Err(e) => Err(e),
        }
    }

    async fn check(&self) -> Result<String, BackendError> {
        let n = self.api().await?.list_databases().await?.len();
        Ok(format!(
            "the class's Upstash credentials list the account's databases ({n})"
        ))
    }
}

fn desired_plan(spec: &PortableSpec, pay_as_you_go: bool) -> plan::Plan {
    let bytes = spec.memory.unwrap_or(256 << 20);
    plan::choose_plan(bytes, pay_as_you_go).unwrap_or(plan::Plan::Fixed500Gb)
}

impl UpstashBackend {
    async fn create(
        &self,
        api: &UpstashClient,
        req: &CacheRequest<'_>,
        name: &str,
    ) -> Result<Database, StepFailure> {
        let mut create = CreateDatabaseRequest::global(name, self.class.primary_region.clone());
        create.read_regions = self.class.read_regions.clone();
        create.plan = Some(
            desired_plan(req.spec, self.pay_as_you_go())
                .api_name()
                .to_string(),
        );
        create.budget = self.class.budget;
        create.eviction = Some(evicts(req.spec.eviction_policy));
        let db = api
            .create_database(&create)
            .await
            .map_err(|e| fail("create", e))?;
        if let Some(cidrs) = &req.spec.allowed_cidrs {
            api.update_allowlist(&db.database_id, cidrs)
                .await
                .map_err(|e| fail("allowlist", e))?;
        }
        Ok(db)
    }

    /// One correction per reconcile: eviction, then read regions.
    async fn day2(
        &self,
        api: &UpstashClient,
        req: &CacheRequest<'_>,
        db: &Database,
        notes: &mut Vec<Note>,
    ) -> Result<(Next, Option<String>), BackendError> {
        let id = &db.database_id;
        let want_eviction = evicts(req.spec.eviction_policy);
        if db.eviction != want_eviction {
            if want_eviction {
                api.enable_eviction(id).await?;
            } else {
                api.disable_eviction(id).await?;
            }
            if req.synced_before {
                notes.push(Note::warning("DriftDetected", format!("eviction on Upstash database {id} was changed outside the operator; correcting it")));
            }
            return Ok((
                Next::Soon,
                Some(format!(
                    "setting eviction {} on Upstash database {id}",
                    if want_eviction { "on" } else { "off" }
                )),
            ));
        }
        let plan = desired_plan(req.spec, self.pay_as_you_go());
        let fixed_size_differs = plan != plan::Plan::PayAsYouGo
            && db
                .db_memory_threshold
                .is_some_and(|t| t != plan.max_bytes());
        if fixed_size_differs {
            api.change_plan(id, plan.api_name()).await?;
            return Ok((
                Next::Soon,
                Some(format!(
                    "changing Upstash database {id} to plan {}",
                    plan.api_name()
                )),
            ));
        }
        // The API tells whether an allowlist is set, not which: it is sent
        // again whenever the spec changed, and when its presence drifted.
        let cidrs = req.spec.allowed_cidrs.clone().unwrap_or_default();
        let wanted_set = !cidrs.is_empty();
        if !req.synced_before || db.security_addons.ip_allowlist != wanted_set {
            api.update_allowlist(id, &cidrs).await?;
        }
        if plan == plan::Plan::PayAsYouGo
            && self.class.budget.is_some()
            && db.budget != self.class.budget
        {
            if let Some(budget) = self.class.budget {
                api.update_budget(id, budget).await?;
                return Ok((
                    Next::Soon,
                    Some(format!("setting the budget of Upstash database {id}")),
                ));
            }
        }
        let mut want: Vec<String> = self.class.read_regions.clone();
        let mut have = db.read_regions.clone();
        want.sort();
        have.sort();
        if want != have {
            api.update_regions(id, &self.class.read_regions).await?;
            return Ok((
                Next::Soon,
                Some(format!("setting the read regions of Upstash database {id}")),
            ));
        }
        Ok((Next::Within(None), None))
    }

    fn converged(
        &self,
        db: &Database,
        req: &CacheRequest<'_>,
        notes: Vec<Note>,
        next: Next,
        backend_id: Option<String>,
        updating: Option<String>,
    ) -> Converged {
        let active = db.is_active();
        let host = plan::normalize_endpoint(&db.endpoint);
        let port = i32::from(db.port);
        let mut extra = BTreeMap::new();
        let rest = plan::connection_values(
            &db.endpoint,
            db.port,
            db.password
                .as_ref()
                .unwrap_or(&Credential::new(String::new())),
            db.rest_token
                .as_ref()
                .unwrap_or(&Credential::new(String::new())),
            db.read_only_rest_token
                .as_ref()
                .unwrap_or(&Credential::new(String::new())),
        );
        extra.insert("restUrl".to_string(), rest.rest_url.clone());
        if let Some(t) = &db.rest_token {
            extra.insert("restToken".to_string(), t.expose().to_string());
        }
        if let Some(t) = &db.read_only_rest_token {
            extra.insert("readOnlyRestToken".to_string(), t.expose().to_string());
        }
        let endpoint = Endpoint { host, port };
        let mut conds = vec![if active {
            Cond::yes(
                conditions::DATABASE_READY,
                "Active",
                format!("Upstash database {} is active", db.database_name),
            )
        } else {
            Cond::no(
                conditions::DATABASE_READY,
                "NotActive",
                format!(
                    "Upstash database {} is {}",
                    db.database_name,
                    db.state.as_deref().unwrap_or("?")
                ),
            )
        }];
        conds.push(if req.spec.eviction_policy == EvictionPolicy::NoEviction {
            Cond::no(conditions::SPEC_APPROXIMATED, "Exact", "the spec maps to Upstash exactly")
        } else {
            Cond::yes(
                conditions::SPEC_APPROXIMATED,
                "EvictionApproximated",
                format!(
                    "spec.evictionPolicy {}: Upstash has eviction on or off only and evicts with its own algorithm (an approximation of allkeys-random/LRU), so eviction is on",
                    req.spec.eviction_policy.as_str()
                ),
            )
        });
        Converged {
            observed: Observed {
                lifecycle: if active {
                    Lifecycle::Serving
                } else {
                    Lifecycle::Creating
                },
                reason: if active { "Available" } else { "Creating" },
                message: format!(
                    "Upstash database {} is {}",
                    db.database_name,
                    db.state.as_deref().unwrap_or("being created")
                ),
                engine: Some("redis".into()),
                engine_version: None,
                memory: db
                    .db_memory_threshold
                    .map(crate::api::quantity::format_bytes),
                size: db.database_type.clone(),
                shards: Some(1),
                replicas_per_shard: Some(0),
                endpoint: Some(endpoint.clone()),
                reader_endpoint: None,
                busy: db.modifying_state.as_deref().is_some_and(|m| !m.is_empty()),
                credential_changed_at: None,
            },
            connection: (active && db.password.is_some()).then_some(Connection {
                endpoint,
                reader: None,
                cluster_mode: ClusterMode::Disabled,
                provider: "upstash",
                username: "default",
                extra,
            }),
            conditions: conds,
            details: BackendDetails::default(),
            notes,
            updating,
            next,
            failure: None,
            credential: db.password.clone(),
            backend_id,
        }
    }
}
