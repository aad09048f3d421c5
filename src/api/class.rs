//! The `RedisCacheClass` custom resource (cluster-scoped): the platform
//! team's half. Which backend, where, with which credentials and defaults;
//! a RedisCache names a class (or gets the default one) the way a
//! PersistentVolumeClaim names a StorageClass.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::core::{Selector, SelectorExt};
use kube::{CustomResource, KubeSchema, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DeletionPolicy, Engine, EvictionPolicy, RedisCache};

/// Annotation that marks the class used by caches that name none.
pub const DEFAULT_CLASS_ANNOTATION: &str = "rediscache.dev/is-default-class";

/// Where caches of a class live, and the defaults they get. Exactly one provider block, the one matching `provider`, must be set.
// clippy reads the repeated `type_ = ...` of each printcolumn as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "rediscache.dev",
    version = "v1alpha1",
    kind = "RedisCacheClass",
    plural = "rediscacheclasses",
    singular = "rediscacheclass",
    shortname = "rcclass",
    category = "redis",
    status = "RedisCacheClassStatus",
    derive = "PartialEq",
    doc = "Where RedisCaches of this class live (ElastiCache, Kubernetes, Upstash, Azure), with which credentials and defaults.",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(
        name = "Default",
        type_ = "string",
        json_path = ".metadata.annotations.rediscache\\.dev/is-default-class"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Caches", type_ = "integer", json_path = ".status.caches"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.elastiCache) == (self.provider == 'ElastiCache') && has(self.kubernetes) == (self.provider == 'Kubernetes') && has(self.upstash) == (self.provider == 'Upstash') && has(self.azure) == (self.provider == 'Azure')")
        .message("set exactly one provider block, the one spec.provider names (elastiCache, kubernetes, upstash or azure)"),
    validation = Rule::new("self.provider == oldSelf.provider")
        .message("spec.provider is immutable: caches of this class never move; create a new class")
        .field_path(".provider")
)]
#[serde(rename_all = "camelCase")]
pub struct RedisCacheClassSpec {
    /// The backend: `ElastiCache`, `Kubernetes`, `Upstash` or `Azure`. Immutable.
    pub provider: ProviderKind,

    /// Defaults for caches of this class that leave a field unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ClassDefaults>,

    /// Namespaces whose caches may use this class, by name. A namespace listed here or matching `allowedNamespaceSelector` may use the class; with both unset every namespace may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 63)))]
    pub allowed_namespaces: Vec<String>,

    /// Namespaces whose caches may use this class, by the namespace's labels (e.g. `matchLabels: {team: payments}`), besides those listed in `allowedNamespaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespace_selector: Option<LabelSelector>,

    /// ElastiCache: region, network placement and node family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasti_cache: Option<ElastiCacheClass>,

    /// Kubernetes: TLS Valkey/Redis StatefulSets in the cache's namespace (images, storage, scheduling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesClass>,

    /// Upstash: the account's credentials, the regions and the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstash: Option<UpstashClass>,

    /// Azure: subscription, resource group, region, tier (Azure Managed Redis or Azure Cache for Redis Premium) and credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureClass>,
}

/// A backend.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ProviderKind {
    /// AWS ElastiCache replication groups.
    ElastiCache,
    /// TLS StatefulSets inside the cluster.
    Kubernetes,
    /// Upstash serverless databases.
    Upstash,
    /// Azure Managed Redis or Azure Cache for Redis Premium.
    Azure,
}

impl ProviderKind {
    /// Name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::ElastiCache => "ElastiCache",
            ProviderKind::Kubernetes => "Kubernetes",
            ProviderKind::Upstash => "Upstash",
            ProviderKind::Azure => "Azure",
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Defaults for caches of a class.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClassDefaults {
    /// Engine for caches that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// Memory for caches that set neither `memory` nor (ElastiCache) `nodeType`, e.g. `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"),
        length(max = 32)
    )]
    pub memory: Option<String>,
    /// Deletion policy for caches that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Eviction policy for caches that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_policy: Option<EvictionPolicy>,
}

/// Where ElastiCache caches of a class go.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.subnetGroupName) && has(self.subnetIds))").message("set either subnetGroupName or subnetIds, not both"))]
pub struct ElastiCacheClass {
    /// AWS region, e.g. `eu-west-1`.
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"), length(max = 32))]
    pub region: String,
    /// Endpoint URL for every AWS service of this class (an emulator or a VPC endpoint). Empty: the public regional endpoints. The operator's `--aws-endpoint-url` wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub endpoint_url: Option<String>,
    /// IAM role to assume for this class's calls (another account, say); the operator's own identity (IRSA, Pod Identity) assumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"),
        length(max = 2048)
    )]
    pub role_arn: Option<String>,
    /// Existing ElastiCache subnet group for the caches (never modified). Set this or `subnetIds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9-]+$"), length(min = 1, max = 255))]
    pub subnet_group_name: Option<String>,
    /// Subnet ids for the subnet group the operator creates per cache, usually the cluster's private subnets, one per AZ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(regex(pattern = r"^subnet-[0-9a-f]+$")))]
    pub subnet_ids: Vec<String>,
    /// CIDR blocks allowed to connect when a cache sets none, usually the cluster's node or pod subnets. Never `/0`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, !c.endsWith('/0'))").message("allowedCidrs must not contain a /0 block"))]
    pub allowed_cidrs: Vec<String>,
    /// Security groups allowed to connect to every cache, e.g. the EKS node security group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(regex(pattern = r"^sg-[0-9a-f]+$")))]
    pub allowed_security_group_ids: Vec<String>,
    /// Extra security groups attached to every cache as they are (not managed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4), inner(regex(pattern = r"^sg-[0-9a-f]+$")))]
    pub security_group_ids: Vec<String>,
    /// Node family `memory` is mapped in, e.g. `t4g`, `m7g`, `r7g`. Defaults to `t4g` up to its largest size, then `r7g`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9]*$"), length(max = 16))]
    pub node_family: Option<String>,
    /// Node type for caches that set neither `nodeType` nor `memory`, e.g. `cache.t4g.micro`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^cache\.[a-z0-9]+\.[a-z0-9]+$"), length(max = 64))]
    pub node_type: Option<String>,
    /// KMS key for at-rest encryption of caches that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub kms_key_id: Option<String>,
    /// Tags added to every AWS resource of the class's caches (a cache's own tags win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    pub tags: BTreeMap<String, String>,
}

/// How in-cluster caches of a class run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesClass {
    /// Image for `engine: valkey`. Defaults to the official `valkey/valkey` image at the tag this release pins (see the README); point it at a mirror with e.g. `registry.example.com/mirror/valkey:8.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub valkey_image: Option<String>,
    /// Image for `engine: redis`. Defaults to the official `redis` image at the tag this release pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub redis_image: Option<String>,
    /// Storage class of the data volumes (caches with persistence); unset = the cluster's default storage class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Resources of the server container. Unset: memory request and limit follow `memory` (maxmemory plus headroom, see the README), CPU request 100m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// Node selector of every pod of the class's caches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of every pod of the class's caches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    /// A redis_exporter sidecar on port 9121 in every data pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter: Option<ExporterSpec>,
    /// A NetworkPolicy per cache: clients only from the cache's namespace, `network.allowedCidrs` and the operator's namespace. Default true; turn off on clusters without a NetworkPolicy implementation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<bool>,
    /// Where the server certificates come from. Unset: a CA per cache generated by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KubernetesTls>,
}

/// Server certificates of in-cluster caches.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesTls {
    /// A cert-manager issuer: each cache gets a cert-manager `Certificate` (secret `<name>-redis-tls`) instead of the operator's own CA. cert-manager must be installed; its `ca.crt` goes to the connection Secret.
    pub issuer_ref: IssuerRef,
}

/// A cert-manager `Issuer` (in the cache's namespace) or `ClusterIssuer`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the issuer.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` (default) or `ClusterIssuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Issuer|ClusterIssuer)$"))]
    pub kind: Option<String>,
    /// API group of the issuer; default `cert-manager.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub group: Option<String>,
}

/// The redis_exporter sidecar.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExporterSpec {
    /// Run the sidecar.
    pub enabled: bool,
    /// Its image; defaults to `oliver006/redis_exporter` at the tag this release pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
}

/// Where Upstash caches of a class go.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstashClass {
    /// Secret with the account's `email` and `apiKey` (a Developer API key); read by the operator only.
    pub credentials_secret_ref: SecretRef,
    /// Base URL of the Upstash Developer API. Defaults to `https://api.upstash.com/v2`; set it for an emulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub api_url: Option<String>,
    /// Primary region of the databases, e.g. `us-east-1` (AWS) or `us-central1` (GCP).
    #[schemars(regex(pattern = r"^[a-z]+(-[a-z]+)*-?[0-9]+$"), length(max = 32))]
    pub primary_region: String,
    /// Read regions: replicas in other regions (changes are applied with update-regions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub read_regions: Vec<String>,
    /// `Fixed` (default): the smallest fixed plan holding `memory`; `PayAsYouGo`: billed by use, up to `budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<UpstashPlan>,
    /// Monthly budget in US dollars for pay-as-you-go databases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub budget: Option<u64>,
}

/// How Upstash databases of a class are billed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UpstashPlan {
    /// The smallest fixed plan that holds `memory`.
    Fixed,
    /// Pay as you go, up to the class's `budget`.
    PayAsYouGo,
}

/// Where Azure caches of a class go, and how the operator signs in to Azure Resource Manager.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureClass {
    /// Subscription id of the caches (a GUID).
    #[schemars(regex(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    pub subscription_id: String,
    /// Resource group the caches are created in (it must exist; the operator never creates or deletes it).
    #[schemars(regex(pattern = r"^[-\w\._\(\)]+$"), length(min = 1, max = 90))]
    pub resource_group: String,
    /// Azure region of the caches, e.g. `westeurope`.
    #[schemars(regex(pattern = r"^[a-z0-9]+$"), length(min = 1, max = 40))]
    pub location: String,
    /// `Managed` (default): Azure Managed Redis (`Microsoft.Cache/redisEnterprise`, Balanced SKUs, port 10000). `Premium`: Azure Cache for Redis Premium (`Microsoft.Cache/redis`, P1-P5, port 6380; retiring 2028-09-30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<AzureTier>,
    /// Availability zones for every cache, e.g. `["1", "2", "3"]`. Empty: Azure's default placement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3), inner(regex(pattern = r"^[1-3]$")))]
    pub zones: Vec<String>,
    /// Premium only: the ARM id of the VNet subnet the caches are injected into (set at create, never changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub subnet_id: Option<String>,
    /// Whether the caches are reachable from public networks: `Disabled` (default; reach them through a private endpoint or VNet injection) or `Enabled` (Premium: only from `allowedCidrs`, through firewall rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<AzurePublicNetworkAccess>,
    /// How the operator gets Azure tokens. Default: workload identity (the AKS webhook's `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<AzureCredentials>,
    /// Azure Resource Manager endpoint. Defaults to `https://management.azure.com`; set it for a sovereign cloud or an emulator. Must be `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https://"), length(max = 2048))]
    pub arm_endpoint: Option<String>,
    /// Microsoft Entra authority host, e.g. `https://login.microsoftonline.com`. Defaults to `AZURE_AUTHORITY_HOST`, then the public cloud. Must be `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https://"), length(max = 2048))]
    pub authority_host: Option<String>,
    /// Secret whose key `ca.crt` holds extra CA certificates (PEM) trusted for the Azure calls of this class, besides the system's: for private endpoints and emulators. Certificate verification is never switched off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_secret_ref: Option<SecretRef>,
    /// Premium only: Secret whose key `connectionString` is the storage account connection string RDB snapshots and AOF files are written to; needed for `persistence` on Premium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_storage_secret_ref: Option<SecretRef>,
    /// Tags added to every Azure resource of the class's caches (a cache's own tags win; the operator's ownership tags win over both).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 15))]
    pub tags: BTreeMap<String, String>,
}

impl AzureClass {
    /// The tier, `Managed` when unset.
    pub fn tier(&self) -> AzureTier {
        self.tier.unwrap_or(AzureTier::Managed)
    }
}

/// Which Azure Redis service a class uses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AzureTier {
    /// Azure Managed Redis (`Microsoft.Cache/redisEnterprise`).
    #[default]
    Managed,
    /// Azure Cache for Redis Premium (`Microsoft.Cache/redis`).
    Premium,
}

/// Public network access of Azure caches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AzurePublicNetworkAccess {
    /// Reachable from public networks (Premium: only from the firewall rules' ranges).
    Enabled,
    /// Reachable only through private endpoints or VNet injection.
    #[default]
    Disabled,
}

/// How the operator signs in to Azure.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.type == 'ClientSecret') == has(self.clientSecretRef)").message("credentials.clientSecretRef is set exactly when credentials.type is ClientSecret"))]
pub struct AzureCredentials {
    /// `WorkloadIdentity` (default; AKS workload identity) or `ClientSecret` (a service principal's secret from `clientSecretRef`).
    #[serde(default, rename = "type")]
    pub type_: AzureCredentialType,
    /// `ClientSecret`: Secret with the keys `tenantId`, `clientId` and `clientSecret` of a service principal; read by the operator only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretRef>,
    /// `WorkloadIdentity`: client id of the managed identity or app registration, when it is not the one in `AZURE_CLIENT_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub client_id: Option<String>,
    /// `WorkloadIdentity`: tenant id, when it is not the one in `AZURE_TENANT_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub tenant_id: Option<String>,
}

/// Where Azure credentials come from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AzureCredentialType {
    /// Microsoft Entra workload identity (a federated credential for the operator's ServiceAccount).
    #[default]
    WorkloadIdentity,
    /// A service principal's client secret from a Secret.
    ClientSecret,
}

/// A Secret by namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SecretRef {
    /// Namespace of the Secret.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Whether a class works, and how many caches use it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisCacheClassStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the credentials are valid and a cheap read call succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// RedisCaches using this class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caches: Option<i64>,
}

impl RedisCacheClass {
    /// Whether the class carries the default-class annotation.
    pub fn is_default(&self) -> bool {
        self.annotations()
            .get(DEFAULT_CLASS_ANNOTATION)
            .is_some_and(|v| v == "true")
    }

    /// Whether caches in `namespace` (with `labels`, when known) may use
    /// the class. Unknown labels (`plan`, offline) pass the selector.
    pub fn allows_namespace(
        &self,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let names = &self.spec.allowed_namespaces;
        let selector = self.spec.allowed_namespace_selector.clone();
        if names.is_empty() && selector.is_none() {
            return true;
        }
        let selected = match (selector, labels) {
            (Some(s), Some(labels)) => Selector::try_from(s).is_ok_and(|s| s.matches(labels)),
            (Some(_), None) => true,
            (None, _) => false,
        };
        selected || names.iter().any(|n| n == namespace)
    }

    /// Whether the class limits namespaces by their labels.
    pub fn selects_namespaces(&self) -> bool {
        self.spec.allowed_namespace_selector.is_some()
    }
}

/// The class `cache` uses among `classes`: the one fixed in its status, else
/// `spec.className`, else the single default class; `Err` says why none
/// (for `spec.className`).
pub fn choose_class<'a, C: AsRef<RedisCacheClass>>(
    cache: &RedisCache,
    classes: &'a [C],
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Result<&'a C, String> {
    let status = cache.status.clone().unwrap_or_default();
    let name = match (&status.class_name, &cache.spec.class_name) {
        (Some(fixed), Some(wanted)) if fixed != wanted => {
            return Err(format!(
                "is immutable: this cache uses class {fixed}; set spec.className back to {fixed:?}, or create a new RedisCache for class {wanted}"
            ))
        }
        (Some(fixed), _) => fixed.clone(),
        (None, Some(wanted)) => wanted.clone(),
        (None, None) => {
            let mut defaults: Vec<String> = classes
                .iter()
                .filter(|c| c.as_ref().is_default())
                .map(|c| c.as_ref().name_any())
                .collect();
            defaults.sort();
            match defaults.as_slice() {
                [one] => one.clone(),
                [] => return Err(format!(
                    "names no class and no RedisCacheClass is annotated {DEFAULT_CLASS_ANNOTATION}: \"true\"; set spec.className, or ask the platform team to mark a default class"
                )),
                several => return Err(format!(
                    "names no class and several RedisCacheClasses are marked default ({}); set spec.className, or keep the {DEFAULT_CLASS_ANNOTATION} annotation on one class only",
                    several.join(", ")
                )),
            }
        }
    };
    let class = classes
        .iter()
        .find(|c| c.as_ref().name_any() == name)
        .ok_or_else(|| {
            format!("RedisCacheClass {name} does not exist; list the classes with `kubectl get rediscacheclasses`")
        })?;
    let c = class.as_ref();
    let namespace = cache.namespace().unwrap_or_else(|| "default".into());
    if !c.allows_namespace(&namespace, namespace_labels) {
        let selector = c
            .spec
            .allowed_namespace_selector
            .clone()
            .and_then(|s| Selector::try_from(s).ok())
            .map(|s| format!(", or labels matching {s}"))
            .unwrap_or_default();
        return Err(format!(
            "RedisCacheClass {name} does not allow namespace {namespace} (its allowedNamespaces: {}{selector}); ask the platform team, or use another class",
            c.spec.allowed_namespaces.join(", ")
        ));
    }
    if let Some(was) = status.provider.or(status.legacy_provider()) {
        if was != c.spec.provider {
            return Err(format!(
                "this cache runs on {was}, but class {name} is {}; a cache never moves backend: set spec.className to a {was} class",
                c.spec.provider
            ));
        }
    }
    Ok(class)
}

impl AsRef<RedisCacheClass> for RedisCacheClass {
    fn as_ref(&self) -> &RedisCacheClass {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, default: bool, namespaces: &[&str]) -> RedisCacheClass {
        let mut c = RedisCacheClass::new(
            name,
            RedisCacheClassSpec {
                provider: ProviderKind::ElastiCache,
                defaults: None,
                allowed_namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
                allowed_namespace_selector: None,
                elasti_cache: Some(ElastiCacheClass::default()),
                kubernetes: None,
                upstash: None,
                azure: None,
            },
        );
        if default {
            c.metadata.annotations =
                Some([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into());
        }
        c
    }

    fn cache(ns: &str, class_name: Option<&str>) -> RedisCache {
        let mut c = RedisCache::new("a", serde_json::from_str("{}").expect("spec"));
        c.metadata.namespace = Some(ns.into());
        c.spec.class_name = class_name.map(String::from);
        c
    }

    #[test]
    fn allowed_namespaces_limit_who_may_use_a_class() {
        let classes = [class("team", true, &["shop"])];
        assert!(choose_class(&cache("shop", None), &classes, None).is_ok());
        let e = choose_class(&cache("blog", None), &classes, None).expect_err("refused");
        assert!(e.contains("does not allow namespace blog"), "{e}");
        assert!(e.contains("shop"), "names the allowed namespaces: {e}");
    }

    #[test]
    fn a_namespace_selector_allows_namespaces_by_label() {
        let mut team = class("team", true, &["shop"]);
        team.spec.allowed_namespace_selector = Some(LabelSelector {
            match_labels: Some([("team".to_string(), "payments".to_string())].into()),
            ..LabelSelector::default()
        });
        let classes = [team];
        let payments = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        let other = BTreeMap::from([("team".to_string(), "blog".to_string())]);
        assert!(choose_class(&cache("pay", None), &classes, Some(&payments)).is_ok());
        assert!(
            choose_class(&cache("shop", None), &classes, Some(&other)).is_ok(),
            "listed by name"
        );
        let e = choose_class(&cache("blog", None), &classes, Some(&other)).expect_err("refused");
        assert!(e.contains("team=payments"), "names the selector: {e}");
        assert!(
            choose_class(&cache("blog", None), &classes, None).is_ok(),
            "offline (plan): labels unknown, the selector is not checked"
        );
    }

    #[test]
    fn the_fixed_class_wins_and_a_missing_class_is_named() {
        let classes = [class("a", true, &[]), class("b", false, &[])];
        let mut c = cache("shop", Some("b"));
        assert_eq!(
            choose_class(&c, &classes, None).map(|c| c.name_any()),
            Ok("b".into())
        );
        c.status = Some(crate::api::RedisCacheStatus {
            class_name: Some("a".into()),
            ..Default::default()
        });
        let e = choose_class(&c, &classes, None).expect_err("immutable");
        assert!(e.contains("is immutable: this cache uses class a"), "{e}");
        let e = choose_class(&cache("shop", Some("zzz")), &classes, None).expect_err("missing");
        assert!(e.contains("RedisCacheClass zzz does not exist"), "{e}");
    }

    #[test]
    fn a_cache_from_before_classes_never_moves_provider() {
        let mut k8s = class("k8s", true, &[]);
        k8s.spec.provider = ProviderKind::Kubernetes;
        let mut c = cache("shop", None);
        c.status = Some(crate::api::RedisCacheStatus {
            replication_group_id: Some("k8s-shop-a-1a2b3c4d".into()),
            ..Default::default()
        });
        let e = choose_class(&c, &[k8s], None).expect_err("refused");
        assert!(e.contains("runs on ElastiCache"), "{e}");
        assert!(choose_class(&c, &[class("aws", true, &[])], None).is_ok());
    }
}
