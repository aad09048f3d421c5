//! A small typed Azure Resource Manager client on `reqwest` (rustls).
//!
//! Field names follow the REST specs in Azure/azure-rest-api-specs:
//! - `Microsoft.Cache/redisEnterprise` 2026-08-01:
//!   specification/redisenterprise/resource-manager/Microsoft.Cache/RedisEnterprise/stable/2026-08-01/redisenterprise.json
//! - `Microsoft.Cache/redis` 2024-11-01:
//!   specification/redis/resource-manager/Microsoft.Cache/Redis/stable/2024-11-01/redis.json
//! - `Microsoft.Resources/resourceGroups` 2021-04-01:
//!   specification/resources/resource-manager/Microsoft.Resources/stable/2021-04-01/resources.json
//!
//! Long-running operations are not awaited: a mutating call returns
//! [`Outcome::InProgress`] with a [`PendingOperation`] the reconciler stores
//! and polls on a later pass with [`ArmClient::poll_once`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::identity::TokenProvider;

use crate::backends::{BackendError, CallGate, Credential, ErrorClass};

/// The public-cloud ARM endpoint.
pub const MANAGEMENT_ENDPOINT: &str = "https://management.azure.com";
/// `Microsoft.Cache/redis` (Azure Cache for Redis Premium).
pub const API_VERSION_REDIS: &str = "2024-11-01";
/// `Microsoft.Cache/redisEnterprise` (Azure Managed Redis): the newest stable
/// version in the specs repo (stable/2026-08-01).
pub const API_VERSION_REDIS_ENTERPRISE: &str = "2026-08-01";
/// `Microsoft.Resources/resourceGroups`.
pub const API_VERSION_RESOURCE_GROUPS: &str = "2021-04-01";

/// Error codes Azure answers with a 409 while a previous operation on the
/// resource is still running. The Redis RP says `Conflict` ("...is busy
/// processing a previous update request... Please try again later", treated
/// as retryable by Azure/azure-service-operator#2008); ARM's generic one is
/// `AnotherOperationInProgress`.
const BUSY_CODES: &[&str] = &["Conflict", "AnotherOperationInProgress"];

/// Codes that mean quota or capacity, whatever the status.
const CAPACITY_CODES: &[&str] = &[
    "QuotaExceeded",
    "ResourceQuotaExceeded",
    "SkuNotAvailable",
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OperationNotAllowed",
];

/// Longest message kept from Azure: it ends up in a Kubernetes condition.
const MAX_MESSAGE_CHARS: usize = 1024;

/// The `api-version` pinned for the resource type an ARM id (or URL path)
/// names; `None` for types this client does not know.
pub fn api_version_for(id: &str) -> Option<&'static str> {
    let lower = id.to_ascii_lowercase();
    if lower.contains("/providers/microsoft.cache/redisenterprise") {
        Some(API_VERSION_REDIS_ENTERPRISE)
    } else if lower.contains("/providers/microsoft.cache/redis") {
        Some(API_VERSION_REDIS)
    } else if lower.contains("/resourcegroups/") || lower.ends_with("/resourcegroups") {
        Some(API_VERSION_RESOURCE_GROUPS)
    } else {
        None
    }
}

/// `/subscriptions/{s}/resourceGroups/{rg}`
pub fn resource_group_id(subscription: &str, resource_group: &str) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/{resource_group}")
}

/// `.../providers/Microsoft.Cache/redis/{name}`
pub fn redis_id(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Cache/redis/{name}",
        resource_group_id(subscription, resource_group)
    )
}

/// `.../providers/Microsoft.Cache/redisEnterprise/{name}`
pub fn redis_enterprise_id(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Cache/redisEnterprise/{name}",
        resource_group_id(subscription, resource_group)
    )
}

/// `{cluster_id}/databases/{name}`
pub fn database_id(cluster_id: &str, name: &str) -> String {
    format!("{cluster_id}/databases/{name}")
}

/// `{cache_id}/firewallRules/{name}`
pub fn firewall_rule_id(cache_id: &str, name: &str) -> String {
    format!("{cache_id}/firewallRules/{name}")
}

/// `{cache_id}/patchSchedules/default` (the only name Azure accepts).
pub fn patch_schedule_id(cache_id: &str) -> String {
    format!("{cache_id}/patchSchedules/default")
}

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

/// Serde for optional secrets, so access keys are `Credential`s.
mod secret_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::backends::Credential;

    pub fn serialize<S: Serializer>(v: &Option<Credential>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(c) => s.serialize_some(c.expose()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Credential>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Credential::new))
    }
}

/// `AccessKeys` / `RedisAccessKeys`: same shape in both specs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeys {
    /// The primary key.
    #[serde(
        default,
        with = "secret_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub primary_key: Option<Credential>,
    /// The secondary key.
    #[serde(
        default,
        with = "secret_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub secondary_key: Option<Credential>,
}

/// `AccessKeyType` / `RedisKeyType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    /// The primary key.
    Primary,
    /// The secondary key.
    Secondary,
}

/// `RegenerateKeyParameters` / `RedisRegenerateKeyParameters`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegenerateKeyParameters {
    /// Which key to regenerate.
    pub key_type: KeyType,
}

/// `ErrorResponse` from common-types: `{"error":{"code","message"}}`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ErrorEnvelope {
    /// The error detail.
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// `ErrorDetail`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code.
    #[serde(default)]
    pub code: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
}

/// A page of a list operation.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items.
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    /// The next page, if any.
    #[serde(default)]
    pub next_link: Option<String>,
}

/// A resource group (`ResourceGroup`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGroup {
    /// ARM id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Region.
    pub location: String,
    /// Tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// `Sku` of `Microsoft.Cache/redisEnterprise`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnterpriseSku {
    /// e.g. `Balanced_B5`.
    pub name: String,
    /// Only for the retired Enterprise/EnterpriseFlash SKUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<i32>,
}

/// `ClusterProperties` (+ `publicNetworkAccess` of the create/update form).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterProperties {
    /// `Enabled` (default) or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_availability: Option<String>,
    /// `1.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_tls_version: Option<String>,
    /// `Enabled` or `Disabled`; required on create since 2025-07-01.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<String>,
    /// Read-only: DNS name of the endpoint.
    #[serde(default, skip_serializing)]
    pub host_name: Option<String>,
    /// Read-only: `Succeeded`, `Creating`, `Updating`, `Deleting`, `Failed`, `Canceled`.
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
    /// Read-only: `Running`, `Creating`, `Scaling`, ...
    #[serde(default, skip_serializing)]
    pub resource_state: Option<String>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub redis_version: Option<String>,
}

/// `Cluster` (`Microsoft.Cache/redisEnterprise`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// Read-only ARM id.
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// Read-only name.
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    /// Region.
    pub location: String,
    /// SKU.
    pub sku: EnterpriseSku,
    /// Availability zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Properties.
    #[serde(default)]
    pub properties: ClusterProperties,
}

/// `ClusterUpdate` (PATCH body).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterUpdate {
    /// New SKU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<EnterpriseSku>,
    /// New tags (replaces all tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Changed properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<ClusterProperties>,
}

/// `Persistence` of a redisEnterprise database. At most one of AOF or RDB.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Persistence {
    /// AOF on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aof_enabled: Option<bool>,
    /// RDB on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdb_enabled: Option<bool>,
    /// `1s` or `always` (deprecated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aof_frequency: Option<String>,
    /// `1h`, `6h` or `12h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdb_frequency: Option<String>,
}

/// `Module` (we create none; kept so a GET of a foreign database parses).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Module {
    /// Module name.
    pub name: String,
    /// Module arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
}

/// `DatabaseProperties` (+ `accessKeysAuthentication`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseProperties {
    /// `Encrypted` or `Plaintext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_protocol: Option<String>,
    /// Port, create-only (we use 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// `EnterpriseCluster`, `OSSCluster` or `NoCluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clustering_policy: Option<String>,
    /// `AllKeysLRU`, ... (see `config::managed_eviction_policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_policy: Option<String>,
    /// Persistence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,
    /// Modules, create-only; we send an empty list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<Vec<Module>>,
    /// `Enabled` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_keys_authentication: Option<String>,
    /// Keyspace notifications, e.g. `Ex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_keyspace_events: Option<String>,
    /// Read-only provisioning state.
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
    /// Read-only resource state.
    #[serde(default, skip_serializing)]
    pub resource_state: Option<String>,
}

/// `Database` of a redisEnterprise cluster (PUT and PATCH use the same
/// `properties` shape).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Database {
    /// Read-only ARM id.
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// Read-only name (`cluster/db`).
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    /// Properties.
    #[serde(default)]
    pub properties: DatabaseProperties,
}

/// `Sku` of `Microsoft.Cache/redis`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisSku {
    /// `Premium`.
    pub name: String,
    /// `P`.
    pub family: String,
    /// 1..=5.
    pub capacity: i32,
}

/// `RedisCommonProperties` + `RedisCreateProperties` + `RedisProperties`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisProperties {
    /// SKU (required on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<RedisSku>,
    /// All values are strings (`maxmemory-policy`, `rdb-backup-enabled`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_configuration: Option<BTreeMap<String, String>>,
    /// Shards of a clustered Premium cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_count: Option<i32>,
    /// Replicas per primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_per_primary: Option<i32>,
    /// VNet subnet (create-only in practice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// `1.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_tls_version: Option<String>,
    /// Port 6379 open; we always send `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_non_ssl_port: Option<bool>,
    /// `Enabled` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<String>,
    /// Read-only provisioning state (`Creating`, `Scaling`, `Succeeded`, ...).
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
    /// Read-only host name.
    #[serde(default, skip_serializing)]
    pub host_name: Option<String>,
    /// Read-only TLS port (6380).
    #[serde(default, skip_serializing)]
    pub ssl_port: Option<i32>,
    /// Read-only; only in the answer to create or update.
    #[serde(default, skip_serializing)]
    pub access_keys: Option<AccessKeys>,
}

/// `RedisResource` / `RedisCreateParameters` (PUT body).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisResource {
    /// Read-only ARM id.
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// Read-only name.
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    /// Region.
    pub location: String,
    /// Availability zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Properties.
    #[serde(default)]
    pub properties: RedisProperties,
}

/// `RedisUpdateParameters` (PATCH body).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisUpdate {
    /// New tags (replaces all tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Changed properties only: Azure refuses one PATCH that changes the
    /// SKU and the shard count together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<RedisProperties>,
}

/// `RedisFirewallRuleProperties`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRuleProperties {
    /// Lowest address.
    #[serde(rename = "startIP")]
    pub start_ip: String,
    /// Highest address.
    #[serde(rename = "endIP")]
    pub end_ip: String,
}

/// `RedisFirewallRule`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRule {
    /// Read-only ARM id.
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// Read-only name (`cache/rule`).
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    /// The range.
    pub properties: FirewallRuleProperties,
}

/// `ScheduleEntry`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleEntry {
    /// `Monday`..`Sunday`, `Everyday`, `Weekend`.
    pub day_of_week: String,
    /// Start hour, UTC.
    pub start_hour_utc: i32,
    /// ISO 8601 duration, e.g. `PT5H`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<String>,
}

/// `ScheduleEntries`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleEntries {
    /// The entries.
    pub schedule_entries: Vec<ScheduleEntry>,
}

/// `RedisPatchSchedule`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchSchedule {
    /// Read-only ARM id.
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// The schedule.
    pub properties: ScheduleEntries,
}

// ---------------------------------------------------------------------------
// Long-running operations
// ---------------------------------------------------------------------------

/// Which header a pending operation is polled through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollVia {
    /// `Azure-AsyncOperation`: a status document `{"status": ...}`.
    AsyncOperation,
    /// `Location`: 202 while running, then the final result.
    Location,
}

/// An accepted operation still running. Plain data, so the reconciler can
/// keep it between passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOperation {
    /// The operation's name, for metrics.
    pub operation: &'static str,
    /// The resource it changes.
    pub resource_id: String,
    /// The monitor URL Azure gave.
    pub url: Url,
    /// Which protocol the URL speaks.
    pub via: PollVia,
    /// How long Azure asked us to wait before the next poll.
    pub retry_after: Option<Duration>,
}

/// What a mutating call achieved.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<T> {
    /// Finished (synchronously); the response body when there was one.
    Done(Option<T>),
    /// Accepted; the body Azure returned with the acceptance, if any.
    InProgress(PendingOperation, Option<T>),
}

impl<T> Outcome<T> {
    /// The pending operation, if the call is still running.
    pub fn pending(&self) -> Option<&PendingOperation> {
        match self {
            Outcome::Done(_) => None,
            Outcome::InProgress(op, _) => Some(op),
        }
    }
}

/// The result of one poll.
#[derive(Clone, Debug, PartialEq)]
pub enum PollStatus {
    /// Still running; poll again after `retry_after`.
    InProgress(PendingOperation),
    /// Finished; the final body when the monitor returned one.
    Succeeded(Option<Value>),
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// Gives bearer tokens; implemented by [`TokenProvider`] and test doubles.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    /// A valid ARM bearer token.
    async fn token(&self) -> Result<Credential, BackendError>;
}

#[async_trait::async_trait]
impl TokenSource for TokenProvider {
    async fn token(&self) -> Result<Credential, BackendError> {
        TokenProvider::token(self).await
    }
}

/// A gate that lets everything through and records nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenGate;

#[async_trait::async_trait]
impl CallGate for OpenGate {
    async fn acquire(&self) {}
    fn on_success(&self) {}
    fn on_throttled(&self) {}
    fn record(&self, _operation: &'static str, _outcome: &'static str) {}
}

/// A raw answer: status, LRO headers, body.
struct RawResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The ARM client. Cheap to clone.
#[derive(Clone)]
pub struct ArmClient {
    http: reqwest::Client,
    endpoint: Url,
    tokens: Arc<dyn TokenSource>,
    gate: Arc<dyn CallGate>,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl ArmClient {
    /// A client for `endpoint` (normally [`MANAGEMENT_ENDPOINT`]); `http`
    /// comes from `identity::http_client`.
    pub fn new(
        http: reqwest::Client,
        endpoint: Url,
        tokens: Arc<dyn TokenSource>,
        gate: Arc<dyn CallGate>,
    ) -> Self {
        Self {
            http,
            endpoint,
            tokens,
            gate,
        }
    }

    // -- generic verbs ------------------------------------------------------

    /// GET a resource.
    pub async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        id: &str,
    ) -> Result<T, BackendError> {
        let rsp = self.send(operation, Method::GET, id, None, &[]).await?;
        parse(&rsp.body)
    }

    /// GET a resource; "not found" is `None`.
    pub async fn get_opt<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        id: &str,
    ) -> Result<Option<T>, BackendError> {
        match self.get(operation, id).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.class == ErrorClass::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GET every page of a list.
    pub async fn list<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
    ) -> Result<Vec<T>, BackendError> {
        let mut items = Vec::new();
        let mut page: Page<T> = self.get(operation, path).await?;
        // Bounded: a broken nextLink loop must not spin forever.
        for _ in 0..100 {
            items.append(&mut page.value);
            let Some(next) = page.next_link.take() else {
                return Ok(items);
            };
            let url = self.same_origin(&next)?;
            let rsp = self
                .send_url(operation, Method::GET, url, None, &[])
                .await?;
            page = parse(&rsp.body)?;
        }
        Err(BackendError::new(
            ErrorClass::Transient,
            None,
            format!("{operation}: more than 100 pages"),
        ))
    }

    /// PUT a resource (create or replace).
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        id: &str,
        body: &B,
        headers: &[(&'static str, &'static str)],
    ) -> Result<Outcome<T>, BackendError> {
        let body = to_json(body)?;
        let rsp = self
            .send(operation, Method::PUT, id, Some(body), headers)
            .await?;
        outcome(operation, id, rsp)
    }

    /// PATCH a resource.
    pub async fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        id: &str,
        body: &B,
    ) -> Result<Outcome<T>, BackendError> {
        let body = to_json(body)?;
        let rsp = self
            .send(operation, Method::PATCH, id, Some(body), &[])
            .await?;
        outcome(operation, id, rsp)
    }

    /// DELETE a resource. Gone already counts as done.
    pub async fn delete(
        &self,
        operation: &'static str,
        id: &str,
    ) -> Result<Outcome<()>, BackendError> {
        match self.send(operation, Method::DELETE, id, None, &[]).await {
            Ok(rsp) => match pending(operation, id, &rsp) {
                Some(op) => Ok(Outcome::InProgress(op, None)),
                None => Ok(Outcome::Done(None)),
            },
            Err(e) if e.class == ErrorClass::NotFound => Ok(Outcome::Done(None)),
            Err(e) => Err(e),
        }
    }

    /// POST an action (`{id}/{action}`), e.g. `listKeys`.
    pub async fn action<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        id: &str,
        action: &str,
        body: Option<&B>,
    ) -> Result<Outcome<T>, BackendError> {
        let body = body.map(to_json).transpose()?;
        let path = format!("{id}/{action}");
        let rsp = self.send(operation, Method::POST, &path, body, &[]).await?;
        outcome(operation, id, rsp)
    }

    /// Polls a pending operation once. A failed or canceled operation is an
    /// error classified by the code in the status document.
    pub async fn poll_once(&self, op: &PendingOperation) -> Result<PollStatus, BackendError> {
        let url = self.same_origin(op.url.as_str())?;
        let rsp = self
            .send_url("poll", Method::GET, url, None, &[])
            .await
            .map_err(|e| BackendError {
                message: format!("{}: {}", op.operation, e.message),
                ..e
            })?;
        let retry_after = retry_after(&rsp.headers).or(op.retry_after);
        let again = |op: &PendingOperation| {
            PollStatus::InProgress(PendingOperation {
                retry_after,
                ..op.clone()
            })
        };
        match op.via {
            PollVia::AsyncOperation => {
                let status: Value = parse(&rsp.body)?;
                match status.get("status").and_then(Value::as_str).unwrap_or("") {
                    "Succeeded" => Ok(PollStatus::Succeeded(None)),
                    s if s.eq_ignore_ascii_case("failed") || s.eq_ignore_ascii_case("canceled") => {
                        let detail: ErrorEnvelope =
                            serde_json::from_value(status.clone()).unwrap_or_default();
                        let detail = detail.error.unwrap_or_default();
                        let code = detail.code;
                        let class = classify(StatusCode::BAD_REQUEST, code.as_deref());
                        Err(BackendError {
                            class: if code.is_none() {
                                ErrorClass::Transient
                            } else {
                                class
                            },
                            code,
                            message: crate::backends::redact::redact(&format!(
                                "{} {s}: {}",
                                op.operation,
                                clean_message(detail.message.as_deref().unwrap_or("no message"))
                            )),
                            retry_after: None,
                            reason: None,
                            queued: false,
                        })
                    }
                    // InProgress, Accepted, Creating, Updating, ...
                    _ => Ok(again(op)),
                }
            }
            PollVia::Location => {
                if rsp.status == StatusCode::ACCEPTED {
                    Ok(again(op))
                } else if rsp.body.is_empty() {
                    Ok(PollStatus::Succeeded(None))
                } else {
                    Ok(PollStatus::Succeeded(Some(parse(&rsp.body)?)))
                }
            }
        }
    }

    // -- typed calls: resource groups ---------------------------------------

    /// GET a resource group; `None` if absent.
    pub async fn get_resource_group(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Option<ResourceGroup>, BackendError> {
        self.get_opt(
            "get_resource_group",
            &resource_group_id(subscription, resource_group),
        )
        .await
    }

    // -- typed calls: Managed (redisEnterprise) -----------------------------

    /// GET a cluster; `None` if absent.
    pub async fn get_cluster(&self, id: &str) -> Result<Option<Cluster>, BackendError> {
        self.get_opt("get_cluster", id).await
    }

    /// PUT a cluster (201 + `Azure-AsyncOperation`).
    pub async fn put_cluster(
        &self,
        id: &str,
        cluster: &Cluster,
    ) -> Result<Outcome<Cluster>, BackendError> {
        self.put("put_cluster", id, cluster, &[]).await
    }

    /// PATCH a cluster.
    pub async fn patch_cluster(
        &self,
        id: &str,
        update: &ClusterUpdate,
    ) -> Result<Outcome<Cluster>, BackendError> {
        self.patch("patch_cluster", id, update).await
    }

    /// GET a database; `None` if absent.
    pub async fn get_database(&self, id: &str) -> Result<Option<Database>, BackendError> {
        self.get_opt("get_database", id).await
    }

    /// PUT a database.
    pub async fn put_database(
        &self,
        id: &str,
        database: &Database,
    ) -> Result<Outcome<Database>, BackendError> {
        self.put("put_database", id, database, &[]).await
    }

    /// PATCH a database (`DatabaseUpdate` has the same shape).
    pub async fn patch_database(
        &self,
        id: &str,
        database: &Database,
    ) -> Result<Outcome<Database>, BackendError> {
        self.patch("patch_database", id, database).await
    }

    /// `listKeys` of a database.
    pub async fn list_database_keys(&self, id: &str) -> Result<AccessKeys, BackendError> {
        done_body(
            self.action::<Value, AccessKeys>("list_keys", id, "listKeys", None)
                .await?,
        )
    }

    /// `regenerateKey` of a database: long-running on Managed; call
    /// [`Self::list_database_keys`] once it succeeded.
    pub async fn regenerate_database_key(
        &self,
        id: &str,
        key_type: KeyType,
    ) -> Result<Outcome<AccessKeys>, BackendError> {
        self.action(
            "regenerate_key",
            id,
            "regenerateKey",
            Some(&RegenerateKeyParameters { key_type }),
        )
        .await
    }

    /// Clusters of a resource group.
    pub async fn list_clusters(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Vec<Cluster>, BackendError> {
        let path = format!(
            "{}/providers/Microsoft.Cache/redisEnterprise",
            resource_group_id(subscription, resource_group)
        );
        self.list("list_clusters", &path).await
    }

    // -- typed calls: Premium (redis) ---------------------------------------

    /// GET a Premium cache; `None` if absent.
    pub async fn get_redis(&self, id: &str) -> Result<Option<RedisResource>, BackendError> {
        self.get_opt("get_redis", id).await
    }

    /// Creates a Premium cache. A PUT replaces an existing cache, so this
    /// sends `If-None-Match: *`: on a cache that exists, a server honouring
    /// it answers 412 (classified `Conflict`) instead of replacing it. Call
    /// it only after a GET found nothing; change existing caches with
    /// [`Self::patch_redis`].
    pub async fn create_redis(
        &self,
        id: &str,
        cache: &RedisResource,
    ) -> Result<Outcome<RedisResource>, BackendError> {
        self.put("create_redis", id, cache, &[("if-none-match", "*")])
            .await
    }

    /// PATCH a Premium cache. Send one field group per call (SKU, shard
    /// count, replicas): Azure refuses several at once.
    pub async fn patch_redis(
        &self,
        id: &str,
        update: &RedisUpdate,
    ) -> Result<Outcome<RedisResource>, BackendError> {
        self.patch("patch_redis", id, update).await
    }

    /// `listKeys` of a Premium cache.
    pub async fn list_redis_keys(&self, id: &str) -> Result<AccessKeys, BackendError> {
        done_body(
            self.action::<Value, AccessKeys>("list_keys", id, "listKeys", None)
                .await?,
        )
    }

    /// `regenerateKey` of a Premium cache (synchronous): the new keys.
    pub async fn regenerate_redis_key(
        &self,
        id: &str,
        key_type: KeyType,
    ) -> Result<AccessKeys, BackendError> {
        done_body(
            self.action(
                "regenerate_key",
                id,
                "regenerateKey",
                Some(&RegenerateKeyParameters { key_type }),
            )
            .await?,
        )
    }

    /// Premium caches of a resource group.
    pub async fn list_redis(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Vec<RedisResource>, BackendError> {
        let path = format!(
            "{}/providers/Microsoft.Cache/redis",
            resource_group_id(subscription, resource_group)
        );
        self.list("list_redis", &path).await
    }

    /// Firewall rules of a Premium cache.
    pub async fn list_firewall_rules(
        &self,
        cache_id: &str,
    ) -> Result<Vec<FirewallRule>, BackendError> {
        self.list("list_firewall_rules", &format!("{cache_id}/firewallRules"))
            .await
    }

    /// Creates or replaces one firewall rule.
    pub async fn put_firewall_rule(
        &self,
        cache_id: &str,
        name: &str,
        rule: &FirewallRuleProperties,
    ) -> Result<Outcome<FirewallRule>, BackendError> {
        let body = FirewallRule {
            id: None,
            name: None,
            properties: rule.clone(),
        };
        self.put(
            "put_firewall_rule",
            &firewall_rule_id(cache_id, name),
            &body,
            &[],
        )
        .await
    }

    /// Deletes one firewall rule.
    pub async fn delete_firewall_rule(
        &self,
        cache_id: &str,
        name: &str,
    ) -> Result<Outcome<()>, BackendError> {
        self.delete("delete_firewall_rule", &firewall_rule_id(cache_id, name))
            .await
    }

    /// The patch schedule; `None` when none is set.
    pub async fn get_patch_schedule(
        &self,
        cache_id: &str,
    ) -> Result<Option<PatchSchedule>, BackendError> {
        self.get_opt("get_patch_schedule", &patch_schedule_id(cache_id))
            .await
    }

    /// Sets the patch schedule.
    pub async fn put_patch_schedule(
        &self,
        cache_id: &str,
        entries: &[ScheduleEntry],
    ) -> Result<Outcome<PatchSchedule>, BackendError> {
        let body = PatchSchedule {
            id: None,
            properties: ScheduleEntries {
                schedule_entries: entries.to_vec(),
            },
        };
        self.put(
            "put_patch_schedule",
            &patch_schedule_id(cache_id),
            &body,
            &[],
        )
        .await
    }

    /// Removes the patch schedule.
    pub async fn delete_patch_schedule(&self, cache_id: &str) -> Result<Outcome<()>, BackendError> {
        self.delete("delete_patch_schedule", &patch_schedule_id(cache_id))
            .await
    }

    // -- transport ----------------------------------------------------------

    /// Sends to `{endpoint}{path}?api-version=...`.
    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&'static str, &'static str)],
    ) -> Result<RawResponse, BackendError> {
        let api_version = api_version_for(path).ok_or_else(|| {
            BackendError::new(
                ErrorClass::Rejected,
                None,
                format!("{operation}: no api-version pinned for {path}"),
            )
        })?;
        if !path.starts_with('/') || path.contains("..") || path.contains('?') {
            return Err(BackendError::new(
                ErrorClass::Rejected,
                None,
                format!("{operation}: not a resource id: {path}"),
            ));
        }
        let mut url = self.endpoint.clone();
        url.set_path(path);
        url.query_pairs_mut()
            .clear()
            .append_pair("api-version", api_version);
        self.send_url(operation, method, url, body, headers).await
    }

    /// Sends to a full URL (already checked to be on the endpoint's origin).
    async fn send_url(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        headers: &[(&'static str, &'static str)],
    ) -> Result<RawResponse, BackendError> {
        let token = match self.tokens.token().await {
            Ok(t) => t,
            Err(e) => {
                self.gate.record(operation, outcome_label(e.class));
                return Err(e);
            }
        };
        self.gate.acquire().await;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                BackendError::new(
                    ErrorClass::CredentialsInvalid,
                    None,
                    "the access token is not a valid header value",
                )
            })?;
        auth.set_sensitive(true);
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .header(AUTHORIZATION, auth);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let result = req.send().await;
        let rsp = match result {
            Ok(rsp) => rsp,
            Err(e) => {
                self.gate.record(operation, "transient");
                // reqwest's Display names the URL, which holds no secret.
                return Err(BackendError::new(
                    ErrorClass::Transient,
                    None,
                    format!("{operation}: request failed: {}", error_chain(&e)),
                ));
            }
        };
        let status = rsp.status();
        let headers = rsp.headers().clone();
        let body = match rsp.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => {
                self.gate.record(operation, "transient");
                return Err(BackendError::new(
                    ErrorClass::Transient,
                    None,
                    format!("{operation}: reading the answer failed: {e}"),
                ));
            }
        };
        if status.is_success() {
            self.gate.on_success();
            self.gate.record(operation, "success");
            tracing::debug!(operation, %method, path = url.path(), status = status.as_u16(), "ARM call");
            return Ok(RawResponse {
                status,
                headers,
                body,
            });
        }
        let err = error_from(operation, status, &headers, &body, token.expose());
        if err.class == ErrorClass::Throttled {
            self.gate.on_throttled();
        }
        self.gate.record(operation, outcome_label(err.class));
        tracing::debug!(operation, %method, path = url.path(), status = status.as_u16(), code = err.code.as_deref(), "ARM call failed");
        Err(err)
    }

    /// Parses a URL Azure gave us (nextLink, monitor) and refuses any other
    /// origin than the endpoint's, so the bearer token never goes elsewhere.
    fn same_origin(&self, raw: &str) -> Result<Url, BackendError> {
        let url = Url::parse(raw).map_err(|e| {
            BackendError::new(
                ErrorClass::Transient,
                None,
                format!("Azure returned an invalid URL: {e}"),
            )
        })?;
        if url.origin() != self.endpoint.origin() {
            return Err(BackendError::new(
                ErrorClass::Rejected,
                None,
                format!(
                    "Azure pointed to {}, which is not the ARM endpoint {}",
                    url.origin().ascii_serialization(),
                    self.endpoint.origin().ascii_serialization()
                ),
            ));
        }
        Ok(url)
    }
}

/// Maps HTTP status + ARM error code to a class (DESIGN §5: by code, never by
/// message text).
pub fn classify(status: StatusCode, code: Option<&str>) -> ErrorClass {
    let code = code.unwrap_or("");
    if CAPACITY_CODES.contains(&code) {
        return ErrorClass::Capacity;
    }
    match status.as_u16() {
        429 => ErrorClass::Throttled,
        401 | 403 => ErrorClass::CredentialsInvalid,
        404 => ErrorClass::NotFound,
        409 if BUSY_CODES.contains(&code) => ErrorClass::Transient,
        409 | 412 => ErrorClass::Conflict,
        408 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Rejected,
    }
}

/// The metrics label of a class.
pub fn outcome_label(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Throttled => "throttled",
        ErrorClass::Transient => "transient",
        ErrorClass::Rejected => "rejected",
        ErrorClass::Capacity => "capacity",
        ErrorClass::NotFound => "not_found",
        ErrorClass::Conflict => "conflict",
        ErrorClass::CredentialsInvalid => "credentials_invalid",
        ErrorClass::Immutable => "immutable",
    }
}

/// `Retry-After` in seconds (the form ARM uses); HTTP dates are ignored.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// Builds the error of a non-2xx answer.
fn error_from(
    operation: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    token: &str,
) -> BackendError {
    let envelope: ErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
    let detail = envelope.error.unwrap_or_default();
    let code = detail.code.filter(|c| !c.is_empty());
    let class = classify(status, code.as_deref());
    let message = match detail.message {
        Some(m) if !m.is_empty() => clean_message(&m.replace(token, "<redacted>")),
        _ => format!("HTTP {} without an ARM error message", status.as_u16()),
    };
    BackendError {
        class,
        code,
        message: crate::backends::redact::redact(&format!("{operation}: {message}")),
        retry_after: retry_after(headers),
        reason: None,
        queued: false,
    }
}

/// Bounds a message and strips storage account keys Azure may echo from a
/// connection string.
fn clean_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS));
    let mut rest = message;
    while let Some(pos) = rest.find("AccountKey=") {
        out.push_str(&rest[..pos + "AccountKey=".len()]);
        out.push_str("<redacted>");
        rest = &rest[pos + "AccountKey=".len()..];
        rest = rest.find(';').map_or("", |end| &rest[end..]);
    }
    out.push_str(rest);
    out.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// reqwest's error with its sources (the TLS reason is in a source).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// The pending operation an accepted answer names, if any.
fn pending(operation: &'static str, id: &str, rsp: &RawResponse) -> Option<PendingOperation> {
    let header = |name: &str| {
        rsp.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Url::parse(v).ok())
    };
    // Azure-AsyncOperation first: its status document says Failed
    // explicitly, while a Location monitor of some RPs only ever says 202.
    let (url, via) = if let Some(url) = header("azure-asyncoperation") {
        (url, PollVia::AsyncOperation)
    } else if let Some(url) = header("location") {
        (url, PollVia::Location)
    } else {
        return None;
    };
    // A 200 with a monitor is done only if nothing is still running; ARM
    // returns monitors with 201 and 202.
    if rsp.status == StatusCode::OK || rsp.status == StatusCode::NO_CONTENT {
        return None;
    }
    Some(PendingOperation {
        operation,
        resource_id: id.to_string(),
        url,
        via,
        retry_after: retry_after(&rsp.headers),
    })
}

fn outcome<T: DeserializeOwned>(
    operation: &'static str,
    id: &str,
    rsp: RawResponse,
) -> Result<Outcome<T>, BackendError> {
    let body = if rsp.body.is_empty() {
        None
    } else {
        Some(parse(&rsp.body)?)
    };
    Ok(match pending(operation, id, &rsp) {
        Some(op) => Outcome::InProgress(op, body),
        None => Outcome::Done(body),
    })
}

/// The body of a call that must answer synchronously.
fn done_body<T>(outcome: Outcome<T>) -> Result<T, BackendError> {
    match outcome {
        Outcome::Done(Some(body)) => Ok(body),
        Outcome::Done(None) => Err(BackendError::new(
            ErrorClass::Transient,
            None,
            "Azure answered without a body",
        )),
        Outcome::InProgress(op, _) => Err(BackendError::new(
            ErrorClass::Transient,
            None,
            format!(
                "{} unexpectedly became a long-running operation",
                op.operation
            ),
        )),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, BackendError> {
    // serde_json's error names a position, never the content.
    serde_json::from_slice(body).map_err(|e| {
        BackendError::new(
            ErrorClass::Transient,
            None,
            format!("unexpected answer from Azure: {e}"),
        )
    })
}

fn to_json<B: Serialize + ?Sized>(body: &B) -> Result<Vec<u8>, BackendError> {
    serde_json::to_vec(body).map_err(|e| {
        BackendError::new(
            ErrorClass::Rejected,
            None,
            format!("cannot encode the request: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_per_type() {
        let sub = "00000000-0000-0000-0000-000000000000";
        assert_eq!(
            api_version_for(&redis_id(sub, "rg", "c")),
            Some(API_VERSION_REDIS)
        );
        assert_eq!(
            api_version_for(&firewall_rule_id(&redis_id(sub, "rg", "c"), "r")),
            Some(API_VERSION_REDIS)
        );
        let cluster = redis_enterprise_id(sub, "rg", "c");
        assert_eq!(
            api_version_for(&database_id(&cluster, "default")),
            Some(API_VERSION_REDIS_ENTERPRISE)
        );
        assert_eq!(
            api_version_for(&resource_group_id(sub, "rg")),
            Some(API_VERSION_RESOURCE_GROUPS)
        );
        assert_eq!(api_version_for("/subscriptions/x/providers/Other"), None);
    }

    #[test]
    fn classification_table() {
        use ErrorClass::*;
        let c = |s: u16, code: &str| classify(StatusCode::from_u16(s).expect("status"), Some(code));
        assert_eq!(c(429, "TooManyRequests"), Throttled);
        assert_eq!(c(409, "Conflict"), Transient);
        assert_eq!(c(409, "AnotherOperationInProgress"), Transient);
        assert_eq!(c(409, "NameNotAvailable"), Conflict);
        assert_eq!(c(412, "PreconditionFailed"), Conflict);
        assert_eq!(c(500, "InternalServerError"), Transient);
        assert_eq!(c(504, "GatewayTimeout"), Transient);
        assert_eq!(c(400, "BadRequest"), Rejected);
        assert_eq!(c(400, "QuotaExceeded"), Capacity);
        assert_eq!(c(409, "SkuNotAvailable"), Capacity);
        assert_eq!(c(401, "InvalidAuthenticationToken"), CredentialsInvalid);
        assert_eq!(c(403, "AuthorizationFailed"), CredentialsInvalid);
        assert_eq!(c(404, "ResourceNotFound"), NotFound);
        assert_eq!(classify(StatusCode::BAD_GATEWAY, None), Transient);
    }

    #[test]
    fn error_envelope_and_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("17"));
        let body = br#"{"error":{"code":"TooManyRequests","message":"slow down tok3n"}}"#;
        let err = error_from(
            "get",
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            body,
            "tok3n",
        );
        assert_eq!(err.class, ErrorClass::Throttled);
        assert_eq!(err.code.as_deref(), Some("TooManyRequests"));
        assert_eq!(err.retry_after, Some(Duration::from_secs(17)));
        assert!(!err.message.contains("tok3n"), "{}", err.message);
        let err = error_from(
            "get",
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>",
            "t",
        );
        assert_eq!(err.class, ErrorClass::Transient);
        assert_eq!(err.code, None);
    }

    #[test]
    fn known_credentials_in_arm_messages_are_redacted() {
        let key = Credential::new("Kx9-known-access-key-value=");
        let body = format!(
            r#"{{"error":{{"code":"BadRequest","message":"key {} is not valid"}}}}"#,
            key.expose()
        );
        let err = error_from(
            "regenerate_key",
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            body.as_bytes(),
            "t",
        );
        assert!(!err.message.contains(key.expose()), "{}", err.message);
        assert_eq!(err.class, ErrorClass::Rejected);
        assert_eq!(err.code.as_deref(), Some("BadRequest"));
    }

    #[test]
    fn storage_keys_are_redacted() {
        let m = clean_message(
            "bad DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc123==;EndpointSuffix=x",
        );
        assert!(!m.contains("abc123"), "{m}");
        assert!(m.contains("EndpointSuffix=x"));
    }

    #[test]
    fn access_keys_round_trip_and_hide() {
        let keys: AccessKeys =
            serde_json::from_str(r#"{"primaryKey":"p-secret","secondaryKey":"s-secret"}"#)
                .expect("keys");
        assert_eq!(
            keys.primary_key.as_ref().map(Credential::expose),
            Some("p-secret")
        );
        let debug = format!("{keys:?}");
        assert!(!debug.contains("secret"), "{debug}");
        let back = serde_json::to_string(&keys).expect("json");
        assert!(back.contains("p-secret"));
    }

    #[test]
    fn read_only_fields_are_not_sent() {
        let mut cache = RedisResource {
            location: "westeurope".into(),
            ..Default::default()
        };
        cache.properties.provisioning_state = Some("Succeeded".into());
        cache.properties.host_name = Some("h".into());
        let json = serde_json::to_string(&cache).expect("json");
        assert!(!json.contains("provisioningState"), "{json}");
        assert!(!json.contains("hostName"), "{json}");
        let rule = FirewallRuleProperties {
            start_ip: "10.0.0.1".into(),
            end_ip: "10.0.0.9".into(),
        };
        let json = serde_json::to_string(&rule).expect("json");
        assert_eq!(json, r#"{"startIP":"10.0.0.1","endIP":"10.0.0.9"}"#);
    }
}
