//! The Kubernetes objects of one cache: ConfigMap, Secrets, the data
//! StatefulSet and its Services, the Sentinel StatefulSet, the
//! PodDisruptionBudgets and the NetworkPolicy. Pure: the caller applies them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, ExecAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Service, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use super::acl::{self, AclError, AclUsers};
use super::config::{self, ConfigError, SENTINEL_REPLICAS};
use super::input::{CacheInput, SENTINEL_PORT};
use super::tls::{self, CaMaterial, ServerMaterial};

/// Label naming the RedisCache on every object.
pub use crate::backends::CACHE_LABEL;
/// Label the operator puts on the data pod Sentinel reports as primary
/// ([`ROLE_PRIMARY`]) and on the others ([`ROLE_REPLICA`]).
pub const ROLE_LABEL: &str = "rediscache.dev/role";
/// Value of [`ROLE_LABEL`] on the primary.
pub const ROLE_PRIMARY: &str = "primary";
/// Value of [`ROLE_LABEL`] on replicas.
pub const ROLE_REPLICA: &str = "replica";
/// `app.kubernetes.io/managed-by`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "redis-cache-operator";
/// `app.kubernetes.io/component`: `server` or `sentinel`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Pod annotation with [`CacheInput::config_hash`].
pub const CONFIG_HASH_ANNOTATION: &str = "rediscache.dev/config-hash";
/// Port of the redis_exporter sidecar.
pub const EXPORTER_PORT: u16 = 9121;
/// UID and GID of the official images' `redis`/`valkey` user.
pub const RUN_AS: i64 = 999;
const MIB: u64 = 1024 * 1024;
/// Smallest headroom above `maxmemory`.
const MIN_HEADROOM: u64 = 64 * MIB;

/// Rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The server configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The ACL content was refused.
    #[error(transparent)]
    Acl(#[from] AclError),
}

/// Container memory limit (bytes) for a server with `maxmemory` = `input.memory_bytes`.
///
/// `maxmemory` counts only the dataset; the process also holds client and
/// replication buffers, the allocator's fragmentation and Lua. Headroom for
/// that is 25% of `maxmemory`, at least 64 MiB (small caches have fixed
/// overheads). A `fork()` (BGSAVE, AOF rewrite, and a full sync to a replica
/// even without persistence) duplicates every page written while the child
/// runs; with persistence or replicas a further 50% covers that copy-on-write
/// under a heavy write load. Rounded up to a whole MiB. The request equals the
/// limit so the pod is never the first evicted under memory pressure.
pub fn memory_limit_bytes(input: &CacheInput) -> u64 {
    let m = input.memory_bytes;
    let headroom = (m / 4).max(MIN_HEADROOM);
    let fork = if input.persistence.is_on() || input.replicas > 0 {
        m / 2
    } else {
        0
    };
    (m + headroom + fork).div_ceil(MIB) * MIB
}

/// The URI in the connection Secret. `default` is spelled out because
/// `redis-cli` sends `AUTH "" <pw>` for an empty username, which fails.
pub fn connection_uri(host: &str, port: u16, password: &acl::Password) -> String {
    format!("rediss://default:{}@{host}:{port}", password.expose())
}

/// Labels on every object of the cache.
pub fn common_labels(input: &CacheInput) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CACHE_LABEL.to_string(), input.name.clone()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (
            "app.kubernetes.io/name".to_string(),
            match input.engine {
                super::input::Engine::Redis => "redis",
                super::input::Engine::Valkey => "valkey",
            }
            .to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), input.name.clone()),
    ])
}

/// Selector of the data pods (`component` = `server`) or the Sentinels.
pub fn component_selector(input: &CacheInput, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CACHE_LABEL.to_string(), input.name.clone()),
        (COMPONENT_LABEL.to_string(), component.to_string()),
    ])
}

fn meta(input: &CacheInput, name: String, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(input.namespace.clone()),
        labels: Some(common_labels(input)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

fn quantity(bytes: u64) -> Quantity {
    Quantity(format!("{}Mi", bytes.div_ceil(MIB)))
}

fn secret_data(pairs: Vec<(&str, String)>) -> BTreeMap<String, ByteString> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
        .collect()
}

/// The ConfigMap: server config, Sentinel template, and the scripts.
pub fn config_map(input: &CacheInput, owner: &OwnerReference) -> Result<ConfigMap, RenderError> {
    let mut data = BTreeMap::from([
        (
            config::SERVER_CONFIG_KEY.to_string(),
            config::render_server_config(input)?,
        ),
        (
            config::START_SERVER_KEY.to_string(),
            config::render_start_server_script(input),
        ),
        (
            config::READINESS_KEY.to_string(),
            config::render_readiness_script(input),
        ),
        (
            config::LIVENESS_KEY.to_string(),
            config::render_liveness_script(input),
        ),
    ]);
    if input.has_sentinel() {
        data.insert(
            config::SENTINEL_CONFIG_KEY.to_string(),
            config::render_sentinel_config(input),
        );
        data.insert(
            config::START_SENTINEL_KEY.to_string(),
            config::render_start_sentinel_script(input),
        );
        data.insert(
            config::SENTINEL_PROBE_KEY.to_string(),
            config::render_sentinel_probe_script(input),
        );
    }
    Ok(ConfigMap {
        metadata: meta(input, input.config_map_name(), owner),
        data: Some(data),
        ..ConfigMap::default()
    })
}

/// Secret `<name>-redis-tls`, mounted by every pod.
pub fn tls_secret(input: &CacheInput, m: &ServerMaterial, owner: &OwnerReference) -> Secret {
    Secret {
        metadata: meta(input, input.tls_secret_name(), owner),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(secret_data(vec![
            (tls::CA_CERT_KEY, m.ca_pem.clone()),
            (tls::TLS_CERT_KEY, m.cert_pem.clone()),
            (tls::TLS_KEY_KEY, m.key_pem.clone()),
        ])),
        ..Secret::default()
    }
}

/// Secret `<name>-redis-ca` with the CA key; no pod mounts it.
pub fn ca_secret(input: &CacheInput, ca: &CaMaterial, owner: &OwnerReference) -> Secret {
    Secret {
        metadata: meta(input, input.ca_secret_name(), owner),
        type_: Some("Opaque".into()),
        data: Some(secret_data(vec![
            (tls::CA_CERT_KEY, ca.cert_pem.clone()),
            (tls::CA_KEY_KEY, ca.key_pem.clone()),
        ])),
        ..Secret::default()
    }
}

/// Secret `<name>-redis-acl`: ACL file, `masterauth` include, Sentinel auth
/// fragment and the bare replication password (for the probes' env var).
pub fn acl_secret(
    input: &CacheInput,
    users: &AclUsers,
    owner: &OwnerReference,
) -> Result<Secret, RenderError> {
    Ok(Secret {
        metadata: meta(input, input.acl_secret_name(), owner),
        type_: Some("Opaque".into()),
        data: Some(secret_data(vec![
            (acl::ACL_FILE_KEY, acl::render_acl_file(users)?),
            (
                acl::MASTERAUTH_KEY,
                acl::render_masterauth(&users.replication),
            ),
            (
                acl::SENTINEL_AUTH_KEY,
                acl::render_sentinel_auth(&input.master_set_name(), &users.replication),
            ),
            (
                acl::REPLICATION_PASSWORD_KEY,
                users.replication.expose().to_string(),
            ),
        ])),
        ..Secret::default()
    })
}

fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

fn restricted_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        // Makes the mounted Secrets and the PVC readable/writable by the server.
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn exec_probe(script: &str, period: i32, timeout: i32, failures: i32, delay: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "sh".into(),
                format!("{}/{script}", config::CONFIG_DIR),
            ]),
        }),
        initial_delay_seconds: Some(delay),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn env_pod_name() -> EnvVar {
    EnvVar {
        name: "POD_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env_value(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    }
}

fn env_secret(name: &str, secret: String, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret,
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn config_volume(input: &CacheInput) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: input.config_map_name(),
            default_mode: Some(0o444),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn secret_volume(name: &str, secret: String) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            // Group-readable: the files belong to root:fsGroup.
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// The server container's resources: requests = limits for memory (see
/// [`memory_limit_bytes`]), a CPU request and no CPU limit (throttling a
/// single-threaded server only adds latency); the class override wins per key.
pub fn server_resources(input: &CacheInput) -> ResourceRequirements {
    let memory = quantity(memory_limit_bytes(input));
    let mut requests = BTreeMap::from([
        ("cpu".to_string(), Quantity("100m".into())),
        ("memory".to_string(), memory.clone()),
    ]);
    let mut limits = BTreeMap::from([("memory".to_string(), memory)]);
    if let Some(o) = &input.resources {
        requests.extend(o.requests.clone().unwrap_or_default());
        limits.extend(o.limits.clone().unwrap_or_default());
    }
    ResourceRequirements {
        requests: Some(requests),
        limits: Some(limits),
        ..ResourceRequirements::default()
    }
}

fn small_resources(memory: &str, cpu: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity(memory.into()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn spread(input: &CacheInput, component: &str) -> Option<Vec<TopologySpreadConstraint>> {
    if !input.multi_az {
        return None;
    }
    let selector = LabelSelector {
        match_labels: Some(component_selector(input, component)),
        ..LabelSelector::default()
    };
    Some(vec![
        // multiAZ is a promise: a pod stays Pending rather than share a zone.
        TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "DoNotSchedule".into(),
            label_selector: Some(selector.clone()),
            ..TopologySpreadConstraint::default()
        },
        // Nodes within a zone: preferred only, small clusters must still work.
        TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(selector),
            ..TopologySpreadConstraint::default()
        },
    ])
}

fn pod_labels(input: &CacheInput, component: &str) -> BTreeMap<String, String> {
    let mut labels = common_labels(input);
    labels.extend(component_selector(input, component));
    labels
}

fn non_empty<K: Ord, V>(m: &BTreeMap<K, V>) -> Option<BTreeMap<K, V>>
where
    BTreeMap<K, V>: Clone,
{
    (!m.is_empty()).then(|| m.clone())
}

/// The data StatefulSet `<name>-redis`.
///
/// `podManagementPolicy: Parallel`: a pod does not need its lower ordinals
/// (the startup script finds the primary through Sentinel or the peers), and
/// OrderedReady would keep pod 1 from starting while pod 0 waits for a
/// failover, or make a scale-up wait for every pod in turn. `OnDelete`: the
/// operator restarts pods itself, replicas first, then a Sentinel failover,
/// then the old primary; the StatefulSet controller does not know roles.
pub fn statefulset(input: &CacheInput, owner: &OwnerReference) -> StatefulSet {
    let cli_auth = env_secret(
        "REDISCLI_AUTH",
        input.acl_secret_name(),
        acl::REPLICATION_PASSWORD_KEY,
    );
    let env = vec![
        env_pod_name(),
        env_value(
            "ANNOUNCE_HOST",
            format!(
                "$(POD_NAME).{}.{}.svc.cluster.local",
                input.headless_service_name(),
                input.namespace
            ),
        ),
        cli_auth,
    ];
    let mut mounts = vec![
        mount("config", config::CONFIG_DIR, true),
        mount("tls", config::TLS_DIR, true),
        mount("acl", config::ACL_DIR, true),
        mount("tmp", config::RUN_DIR, false),
        mount("data", config::DATA_DIR, false),
    ];
    mounts.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
    let server = Container {
        name: "server".into(),
        image: Some(input.image.clone()),
        command: Some(vec![
            "sh".into(),
            format!("{}/{}", config::CONFIG_DIR, config::START_SERVER_KEY),
        ]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("redis".into()),
            container_port: i32::from(input.port),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(exec_probe(config::READINESS_KEY, 5, 12, 3, 5)),
        // Long timeout and several failures: a busy server (big KEYS, a Lua
        // script) must not be killed, which would lose its dataset.
        liveness_probe: Some(exec_probe(config::LIVENESS_KEY, 15, 25, 4, 30)),
        resources: Some(server_resources(input)),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let mut containers = vec![server];
    if let Some(image) = &input.exporter {
        containers.push(exporter_container(input, image));
    }
    let mut volumes = vec![
        config_volume(input),
        secret_volume("tls", input.tls_secret_name()),
        secret_volume("acl", input.acl_secret_name()),
        empty_dir("tmp"),
    ];
    let claims = if input.persistence.is_on() {
        Some(vec![data_claim(input)])
    } else {
        volumes.push(empty_dir("data"));
        None
    };
    StatefulSet {
        metadata: meta(input, input.server_name(), owner),
        spec: StatefulSetSpec {
            replicas: Some(i32::from(input.pod_count())),
            service_name: Some(input.headless_service_name()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(component_selector(input, "server")),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(input, "server")),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        input.config_hash.clone(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    volumes: Some(volumes),
                    security_context: Some(restricted_pod_security()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    node_selector: non_empty(&input.node_selector),
                    tolerations: (!input.tolerations.is_empty()).then(|| input.tolerations.clone()),
                    topology_spread_constraints: spread(input, "server"),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

fn data_claim(input: &CacheInput) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(common_labels(input)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: input.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(input.storage_size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// redis_exporter sidecar. It authenticates as `default` from the connection
/// Secret, because it needs more than the replication user may run.
fn exporter_container(input: &CacheInput, image: &str) -> Container {
    Container {
        name: "exporter".into(),
        image: Some(image.to_string()),
        env: Some(vec![
            env_value("REDIS_ADDR", format!("rediss://localhost:{}", input.port)),
            env_value("REDIS_USER", "default".into()),
            env_secret("REDIS_PASSWORD", input.server_name(), "password"),
            env_value(
                "REDIS_EXPORTER_TLS_CA_CERT_FILE",
                format!("{}/{}", config::TLS_DIR, tls::CA_CERT_KEY),
            ),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: i32::from(EXPORTER_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        resources: Some(small_resources("64Mi", "10m")),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![mount("tls", config::TLS_DIR, true)]),
        ..Container::default()
    }
}

fn service(
    input: &CacheInput,
    name: String,
    owner: &OwnerReference,
    selector: BTreeMap<String, String>,
    headless: bool,
    port: u16,
) -> Service {
    Service {
        metadata: meta(input, name, owner),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            cluster_ip: headless.then(|| "None".to_string()),
            // Peers must resolve each other before they are ready (a replica
            // syncing from a primary that is itself not ready yet).
            publish_not_ready_addresses: headless.then_some(true),
            ports: Some(vec![ServicePort {
                name: Some(
                    if port == SENTINEL_PORT {
                        "sentinel"
                    } else {
                        "redis"
                    }
                    .into(),
                ),
                port: i32::from(port),
                target_port: Some(IntOrString::Int(i32::from(port))),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `<name>-redis` (the pod labelled primary), `<name>-redis-replicas` when
/// there are replicas, `<name>-redis-headless` (every data pod), and the
/// Sentinels' headless `<name>-redis-sentinel` when Sentinel runs.
pub fn services(input: &CacheInput, owner: &OwnerReference) -> Vec<Service> {
    let with_role = |role: &str| {
        let mut s = component_selector(input, "server");
        s.insert(ROLE_LABEL.to_string(), role.to_string());
        s
    };
    let mut out = vec![
        service(
            input,
            input.server_name(),
            owner,
            with_role(ROLE_PRIMARY),
            false,
            input.port,
        ),
        service(
            input,
            input.headless_service_name(),
            owner,
            component_selector(input, "server"),
            true,
            input.port,
        ),
    ];
    if input.replicas > 0 {
        out.push(service(
            input,
            input.replicas_service_name(),
            owner,
            with_role(ROLE_REPLICA),
            false,
            input.port,
        ));
    }
    if input.has_sentinel() {
        out.push(service(
            input,
            input.sentinel_name(),
            owner,
            component_selector(input, "sentinel"),
            true,
            SENTINEL_PORT,
        ));
    }
    out
}

/// PodDisruptionBudgets (`maxUnavailable: 1`) for the data pods and, with
/// Sentinel, for the Sentinels (losing two would lose the quorum).
pub fn disruption_budgets(input: &CacheInput, owner: &OwnerReference) -> Vec<PodDisruptionBudget> {
    let pdb = |name: String, component: &str| PodDisruptionBudget {
        metadata: meta(input, name, owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(component_selector(input, component)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };
    let mut out = vec![pdb(input.server_name(), "server")];
    if input.has_sentinel() {
        out.push(pdb(input.sentinel_name(), "sentinel"));
    }
    out
}

/// The Sentinel StatefulSet `<name>-redis-sentinel` (3 pods), only with replicas.
pub fn sentinel_statefulset(input: &CacheInput, owner: &OwnerReference) -> Option<StatefulSet> {
    if !input.has_sentinel() {
        return None;
    }
    let container = Container {
        name: "sentinel".into(),
        image: Some(input.image.clone()),
        command: Some(vec![
            "sh".into(),
            format!("{}/{}", config::CONFIG_DIR, config::START_SENTINEL_KEY),
        ]),
        env: Some(vec![
            env_pod_name(),
            env_value(
                "ANNOUNCE_HOST",
                format!(
                    "$(POD_NAME).{}.{}.svc.cluster.local",
                    input.sentinel_name(),
                    input.namespace
                ),
            ),
            env_secret(
                "REDISCLI_AUTH",
                input.acl_secret_name(),
                acl::REPLICATION_PASSWORD_KEY,
            ),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("sentinel".into()),
            container_port: i32::from(SENTINEL_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(exec_probe(config::SENTINEL_PROBE_KEY, 5, 6, 3, 5)),
        liveness_probe: Some(exec_probe(config::SENTINEL_PROBE_KEY, 15, 10, 4, 30)),
        resources: Some(small_resources("64Mi", "50m")),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![
            mount("acl", config::ACL_DIR, true),
            mount("config", config::CONFIG_DIR, true),
            mount("tls", config::TLS_DIR, true),
            mount("tmp", config::RUN_DIR, false),
        ]),
        ..Container::default()
    };
    Some(StatefulSet {
        metadata: meta(input, input.sentinel_name(), owner),
        spec: StatefulSetSpec {
            replicas: Some(i32::from(SENTINEL_REPLICAS)),
            service_name: Some(input.sentinel_name()),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(component_selector(input, "sentinel")),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(input, "sentinel")),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        input.config_hash.clone(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![
                        config_volume(input),
                        secret_volume("tls", input.tls_secret_name()),
                        secret_volume("acl", input.acl_secret_name()),
                        empty_dir("tmp"),
                    ]),
                    security_context: Some(restricted_pod_security()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    node_selector: non_empty(&input.node_selector),
                    tolerations: (!input.tolerations.is_empty()).then(|| input.tolerations.clone()),
                    topology_spread_constraints: spread(input, "sentinel"),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    })
}

fn port(p: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(p))),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

/// Ingress to every pod of the cache: the client port from
/// `network.allowedCidrs`; client and Sentinel ports from pods of the same
/// namespace (applications, the peers themselves); all ports, the exporter's
/// too, from the operator's namespace (probes, failover queries, scraping).
pub fn network_policy(input: &CacheInput, owner: &OwnerReference) -> NetworkPolicy {
    let mut internal = vec![port(input.port)];
    if input.has_sentinel() {
        internal.push(port(SENTINEL_PORT));
    }
    let mut operator_ports = internal.clone();
    if input.exporter.is_some() {
        operator_ports.push(port(EXPORTER_PORT));
    }
    let mut rules = Vec::new();
    if !input.allowed_cidrs.is_empty() {
        rules.push(NetworkPolicyIngressRule {
            from: Some(
                input
                    .allowed_cidrs
                    .iter()
                    .map(|cidr| NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: cidr.clone(),
                            except: None,
                        }),
                        ..NetworkPolicyPeer::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![port(input.port)]),
        });
    }
    rules.push(NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(internal),
    });
    rules.push(NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_string(),
                    input.operator_namespace.clone(),
                )])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(operator_ports),
    });
    NetworkPolicy {
        metadata: meta(input, input.server_name(), owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    CACHE_LABEL.to_string(),
                    input.name.clone(),
                )])),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// Every object that does not hold generated secrets.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// Config and scripts.
    pub config_map: ConfigMap,
    /// The data pods.
    pub statefulset: StatefulSet,
    /// See [`services`].
    pub services: Vec<Service>,
    /// See [`disruption_budgets`].
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    /// The Sentinels, with replicas only.
    pub sentinel: Option<StatefulSet>,
    /// See [`network_policy`].
    pub network_policy: NetworkPolicy,
}

/// Renders every non-secret object of the cache.
pub fn render(input: &CacheInput, owner: &OwnerReference) -> Result<Rendered, RenderError> {
    Ok(Rendered {
        config_map: config_map(input, owner)?,
        statefulset: statefulset(input, owner),
        services: services(input, owner),
        disruption_budgets: disruption_budgets(input, owner),
        sentinel: sentinel_statefulset(input, owner),
        network_policy: network_policy(input, owner),
    })
}

#[cfg(test)]
mod tests {
    use super::super::input::{test_input, Persistence};
    use super::*;

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "rediscache.dev/v1alpha1".into(),
            kind: "RedisCache".into(),
            name: "a".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn dev() -> CacheInput {
        test_input(0, Persistence::None)
    }

    fn prod() -> CacheInput {
        let mut i = test_input(2, Persistence::AppendOnly);
        i.exporter = Some("oliver006/redis_exporter:v1.67.0".into());
        i
    }

    fn pod_spec(s: &StatefulSet) -> &PodSpec {
        s.spec.template.spec.as_ref().expect("pod spec")
    }

    fn selector(s: &Service) -> BTreeMap<String, String> {
        s.spec
            .as_ref()
            .and_then(|x| x.selector.clone())
            .expect("selector")
    }

    #[test]
    fn every_object_is_labelled_and_owned() {
        let r = render(&prod(), &owner()).expect("renders");
        let mut metas = vec![
            &r.config_map.metadata,
            &r.statefulset.metadata,
            &r.network_policy.metadata,
        ];
        metas.extend(r.services.iter().map(|s| &s.metadata));
        metas.extend(r.disruption_budgets.iter().map(|s| &s.metadata));
        metas.extend(r.sentinel.iter().map(|s| &s.metadata));
        for m in metas {
            let labels = m.labels.as_ref().expect("labels");
            assert_eq!(labels[CACHE_LABEL], "a");
            assert_eq!(labels[MANAGED_BY_LABEL], "redis-cache-operator");
            assert_eq!(m.owner_references.as_deref(), Some(&[owner()][..]));
            assert_eq!(m.namespace.as_deref(), Some("team"));
        }
    }

    #[test]
    fn pods_run_restricted() {
        for input in [dev(), prod()] {
            let r = render(&input, &owner()).expect("renders");
            for sts in std::iter::once(&r.statefulset).chain(r.sentinel.iter()) {
                let spec = pod_spec(sts);
                let psc = spec.security_context.as_ref().expect("pod security");
                assert_eq!(psc.run_as_non_root, Some(true));
                assert_eq!(psc.run_as_user, Some(999));
                assert_eq!(
                    psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
                    Some("RuntimeDefault")
                );
                for c in &spec.containers {
                    let sc = c.security_context.as_ref().expect("container security");
                    assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
                    assert_eq!(sc.allow_privilege_escalation, Some(false));
                    assert_eq!(sc.run_as_non_root, Some(true));
                    assert_eq!(
                        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
                        Some(vec!["ALL".to_string()])
                    );
                }
                let tmp = spec
                    .volumes
                    .as_ref()
                    .and_then(|v| v.iter().find(|v| v.name == "tmp"))
                    .expect("tmp volume");
                assert!(tmp.empty_dir.is_some());
            }
        }
    }

    #[test]
    fn probes_are_tls_scripts() {
        let r = render(&prod(), &owner()).expect("renders");
        let server = &pod_spec(&r.statefulset).containers[0];
        let exec = |p: &Option<Probe>| {
            p.as_ref()
                .and_then(|p| p.exec.as_ref())
                .and_then(|e| e.command.clone())
                .expect("exec probe")
        };
        assert_eq!(
            exec(&server.readiness_probe),
            ["sh", "/etc/redis/conf/readiness.sh"]
        );
        assert_eq!(
            exec(&server.liveness_probe),
            ["sh", "/etc/redis/conf/liveness.sh"]
        );
        assert!(
            server
                .liveness_probe
                .as_ref()
                .and_then(|p| p.timeout_seconds)
                >= Some(20)
        );
        let env = server.env.as_ref().expect("env");
        let auth = env
            .iter()
            .find(|e| e.name == "REDISCLI_AUTH")
            .expect("REDISCLI_AUTH");
        let key = auth
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("from a Secret");
        assert_eq!(
            (key.name.as_str(), key.key.as_str()),
            ("a-redis-acl", "replication-password")
        );
        assert!(env
            .iter()
            .all(|e| e.value.as_deref().is_none_or(|v| !v.contains("PW"))));
        let data = r.config_map.data.as_ref().expect("data");
        let readiness = &data[config::READINESS_KEY];
        assert!(readiness.contains("--tls --cacert"));
        assert!(readiness.contains("master_link_status:up"));
    }

    #[test]
    fn memory_limit_rule() {
        let mib = 1024 * 1024;
        // 256Mi, no persistence, no replicas: + max(64Mi, 25%) = 320Mi.
        assert_eq!(memory_limit_bytes(&dev()), 320 * mib);
        // 256Mi with AOF and replicas: + 64Mi + 50% for fork = 448Mi.
        assert_eq!(memory_limit_bytes(&prod()), 448 * mib);
        let mut big = dev();
        big.memory_bytes = 4096 * mib;
        assert_eq!(memory_limit_bytes(&big), 5120 * mib);
        let sts = statefulset(&prod(), &owner());
        let server = &pod_spec(&sts).containers[0];
        let res = server.resources.as_ref().expect("resources");
        let limit = &res.limits.as_ref().expect("limits")["memory"];
        assert_eq!(limit, &Quantity("448Mi".into()));
        assert_eq!(&res.requests.as_ref().expect("requests")["memory"], limit);
        assert!(!res.limits.as_ref().expect("limits").contains_key("cpu"));
    }

    #[test]
    fn class_resources_override_per_key() {
        let mut input = dev();
        input.resources = Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".to_string(), Quantity("2".into()))])),
            ..ResourceRequirements::default()
        });
        let r = server_resources(&input);
        let req = r.requests.expect("requests");
        assert_eq!(req["cpu"], Quantity("2".into()));
        assert_eq!(req["memory"], Quantity("320Mi".into()));
    }

    #[test]
    fn pvcs_only_with_persistence() {
        let dev_sts = statefulset(&dev(), &owner());
        assert!(dev_sts.spec.volume_claim_templates.is_none());
        let data = pod_spec(&dev_sts)
            .volumes
            .as_ref()
            .and_then(|v| v.iter().find(|v| v.name == "data").cloned())
            .expect("data volume");
        assert!(data.empty_dir.is_some());

        let prod_sts = statefulset(&prod(), &owner());
        let claims = prod_sts
            .spec
            .volume_claim_templates
            .as_ref()
            .expect("claims");
        assert_eq!(claims.len(), 1);
        let spec = claims[0].spec.as_ref().expect("pvc spec");
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert!(!pod_spec(&prod_sts)
            .volumes
            .as_ref()
            .expect("volumes")
            .iter()
            .any(|v| v.name == "data"));
    }

    #[test]
    fn statefulset_shape() {
        let s = statefulset(&prod(), &owner());
        assert_eq!(s.spec.replicas, Some(3));
        assert_eq!(s.spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(
            s.spec
                .update_strategy
                .as_ref()
                .and_then(|u| u.type_.as_deref()),
            Some("OnDelete")
        );
        assert_eq!(s.spec.service_name.as_deref(), Some("a-redis-headless"));
        let spec = pod_spec(&s);
        let spread = spec.topology_spread_constraints.as_ref().expect("spread");
        assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
        assert_eq!(spec.containers.len(), 2, "server + exporter");
        assert!(pod_spec(&statefulset(&dev(), &owner()))
            .topology_spread_constraints
            .is_none());
        assert_eq!(statefulset(&dev(), &owner()).spec.replicas, Some(1));
    }

    #[test]
    fn no_sentinel_without_replicas() {
        let r = render(&dev(), &owner()).expect("renders");
        assert!(r.sentinel.is_none());
        assert_eq!(r.disruption_budgets.len(), 1);
        let names: Vec<_> = r
            .services
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        assert_eq!(names, ["a-redis", "a-redis-headless"]);
        assert!(!r
            .config_map
            .data
            .as_ref()
            .expect("data")
            .contains_key(config::SENTINEL_CONFIG_KEY));

        let p = render(&prod(), &owner()).expect("renders");
        let sentinel = p.sentinel.as_ref().expect("sentinel");
        assert_eq!(sentinel.spec.replicas, Some(3));
        assert_eq!(
            sentinel.spec.service_name.as_deref(),
            Some("a-redis-sentinel")
        );
    }

    #[test]
    fn service_selectors() {
        let r = render(&prod(), &owner()).expect("renders");
        let by_name = |n: &str| {
            r.services
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(n))
                .expect("service")
        };
        let primary = selector(by_name("a-redis"));
        assert_eq!(primary[ROLE_LABEL], "primary");
        assert_eq!(primary[COMPONENT_LABEL], "server");
        assert_eq!(selector(by_name("a-redis-replicas"))[ROLE_LABEL], "replica");
        let headless = by_name("a-redis-headless").spec.as_ref().expect("spec");
        assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
        assert_eq!(headless.publish_not_ready_addresses, Some(true));
        assert!(!headless
            .selector
            .as_ref()
            .expect("sel")
            .contains_key(ROLE_LABEL));
        let sentinel = by_name("a-redis-sentinel").spec.as_ref().expect("spec");
        assert_eq!(
            sentinel.selector.as_ref().expect("sel")[COMPONENT_LABEL],
            "sentinel"
        );
        assert_eq!(sentinel.ports.as_ref().expect("ports")[0].port, 26379);
        // The StatefulSet's selector must not include the role, which the operator changes.
        let sts = statefulset(&prod(), &owner());
        assert!(!sts
            .spec
            .selector
            .match_labels
            .as_ref()
            .expect("labels")
            .contains_key(ROLE_LABEL));
    }

    #[test]
    fn network_policy_rules() {
        let np = network_policy(&prod(), &owner());
        let rules = np
            .spec
            .as_ref()
            .and_then(|s| s.ingress.clone())
            .expect("rules");
        assert_eq!(rules.len(), 3);
        let cidr = rules[0].from.as_ref().expect("from")[0]
            .ip_block
            .as_ref()
            .expect("ipBlock");
        assert_eq!(cidr.cidr, "10.0.0.0/8");
        assert_eq!(rules[0].ports.as_ref().expect("ports").len(), 1);
        assert!(rules[1].from.as_ref().expect("from")[0]
            .pod_selector
            .is_some());
        let ns = rules[2].from.as_ref().expect("from")[0]
            .namespace_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .expect("ns selector");
        assert_eq!(ns["kubernetes.io/metadata.name"], "redis-cache-operator");
        assert_eq!(rules[2].ports.as_ref().expect("ports").len(), 3);
    }

    #[test]
    fn secrets_hold_what_pods_mount() {
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().expect("ts");
        let ca = tls::new_ca(&prod(), now).expect("ca");
        let server = tls::issue_server(&prod(), &ca, now).expect("server");
        let t = tls_secret(&prod(), &server, &owner());
        let keys: Vec<_> = t.data.as_ref().expect("data").keys().cloned().collect();
        assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
        let users = AclUsers {
            default: vec![acl::Password::new("appPW").expect("pw")],
            replication: acl::Password::new("replPW").expect("pw"),
        };
        let a = acl_secret(&prod(), &users, &owner()).expect("acl");
        let data = a.data.as_ref().expect("data");
        assert_eq!(data["masterauth.conf"].0, b"masterauth replPW\n");
        assert!(!ca_secret(&prod(), &ca, &owner())
            .data
            .expect("data")
            .is_empty());
        assert_eq!(
            connection_uri("localhost", 6379, &users.default[0]),
            "rediss://default:appPW@localhost:6379"
        );
    }
}
