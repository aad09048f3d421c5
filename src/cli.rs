//! Command-line interface: `run`, `crd`, `plan`. Every flag of `run` also
//! reads an environment variable, so Helm values map onto them directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Kubernetes operator for production-grade Redis/Valkey caches on the backend each RedisCacheClass names.
#[derive(Parser, Debug)]
#[command(name = "redis-cache-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `info,redis_cache_operator=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Subcommands.
// Parsed once at startup; boxing `run`'s flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator.
    Run(RunArgs),
    /// Print the RedisCache and RedisCacheClass CustomResourceDefinitions as YAML.
    Crd,
    /// Validate RedisCache and RedisCacheClass manifests offline and print what each backend would create.
    Plan(PlanArgs),
    /// Print the Kubernetes RBAC rules the operator needs, as JSON.
    Rbac,
}

/// Flags of `run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Name of this Kubernetes cluster; part of every backend resource name and the `rediscache.dev/cluster` tag, so several clusters can share one cloud account. Set it once and never change it.
    #[arg(long, env = "CLUSTER_NAME", default_value = "k8s")]
    pub cluster_name: String,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Namespaces to watch (comma-separated); all namespaces when empty.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Reconciles running at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// How often to look at a cache while its backend is changing it.
    #[arg(long, env = "POLL_INTERVAL_TRANSITION", default_value = "15s", value_parser = parse_duration)]
    pub poll_interval_transition: Duration,
    /// How often to look at a settled cache (drift detection) and to check each class's credentials.
    #[arg(long, env = "POLL_INTERVAL_SETTLED", default_value = "5m", value_parser = parse_duration)]
    pub poll_interval_settled: Duration,
    /// Elect a leader through a Lease so several replicas are safe.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "redis-cache-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Identity of this replica (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// On SIGTERM, how long in-flight reconciles may take to finish before the leader Lease is released anyway; keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    pub health: HealthArgs,
}

/// Health probe flags.
#[derive(Args, Debug, Clone)]
pub struct HealthArgs {
    /// Probe every Ready cache over TLS with its AUTH token (status.health,
    /// condition Reachable, redis_cache_* metrics). Turn off when the operator
    /// cannot reach the caches' network.
    #[arg(long, env = "HEALTH_PROBE", default_value_t = true, action = clap::ArgAction::Set)]
    pub health_probe: bool,
    /// Time between probes of one cache.
    #[arg(long, env = "HEALTH_INTERVAL", default_value = "60s", value_parser = parse_positive_duration)]
    pub health_interval: Duration,
    /// Limit for one probe (connect, TLS, AUTH, PING, INFO; all shard primaries).
    #[arg(long, env = "HEALTH_TIMEOUT", default_value = "5s", value_parser = parse_positive_duration)]
    pub health_timeout: Duration,
    /// Probes running at once.
    #[arg(long, env = "HEALTH_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub health_concurrency: u16,
    /// PEM file of CA certificates to trust instead of the system's (private CAs).
    #[arg(long, env = "HEALTH_CA_FILE")]
    pub health_ca_file: Option<PathBuf>,
    /// Shortest time between two status writes of health values for one cache;
    /// reachability changes are written at once, metrics follow every probe.
    #[arg(long, env = "HEALTH_STATUS_MIN_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub health_status_min_interval: Duration,
}

impl HealthArgs {
    /// The probe settings, `None` when the probe is off.
    pub fn config(&self) -> Option<crate::health::HealthConfig> {
        self.health_probe.then(|| crate::health::HealthConfig {
            interval: self.health_interval,
            timeout: self.health_timeout,
            concurrency: usize::from(self.health_concurrency),
            ca_file: self.health_ca_file.clone(),
            status_min_interval: self.health_status_min_interval,
            resolver: None,
        })
    }
}

/// AWS flags. The region and the network come from each ElastiCache class.
#[derive(Args, Debug, Clone)]
pub struct AwsArgs {
    /// Endpoint URL for every AWS service of every class, e.g. an emulator; wins over a class's elastiCache.endpointUrl.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// AWS API calls per second per account, for reads and for changes each
    /// (two client-side token buckets, so many caches cannot trip AWS's
    /// throttling); changes are made in turns by at most half the workers.
    #[arg(long, env = "AWS_RATE_LIMIT", default_value_t = 5.0)]
    pub aws_rate_limit: f64,
    /// AWS API calls that may go at once before the rate limit applies (per bucket).
    #[arg(long, env = "AWS_BURST", default_value_t = 10)]
    pub aws_burst: u32,
    /// How long the shared listings of parameter groups, subnet groups and
    /// security groups, and the tags read in bulk, are trusted before they
    /// are read again: changes made outside the operator are corrected
    /// within this long.
    #[arg(long, env = "AWS_COMPANION_REFRESH", default_value = "25m", value_parser = parse_positive_duration)]
    pub aws_companion_refresh: Duration,
    /// How long a parameter group's values are trusted on average before
    /// they are read again (one call per group; AWS has no batch read).
    #[arg(long, env = "AWS_PARAMETER_RECHECK", default_value = "12h", value_parser = parse_positive_duration)]
    pub aws_parameter_recheck: Duration,
}

/// Flags of `plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Manifest files (YAML, several documents allowed); `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = PlanOutput::Text)]
    pub output: PlanOutput,
    /// Cluster name the identities are derived with (as `run --cluster-name`).
    #[arg(long, env = "CLUSTER_NAME", default_value = "k8s")]
    pub cluster_name: String,
}

/// Output of `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanOutput {
    Text,
    Json,
}

/// The tracing filter for `--log-level`: the user's directives, then caps
/// for the AWS SDK's runtime (at `trace` it logs whole request bodies, and
/// `CreateReplicationGroup` and token rotation carry the AUTH token) and for
/// hyper. Below `debug` the SDK logs its warnings only (its debug lines were
/// 99 % of the volume); at `debug`/`trace` it is capped at `debug`. The caps
/// come last, so they win over the user's directives for the same targets.
pub fn log_directives(level: &str) -> String {
    let base = level
        .split(',')
        .map(str::trim)
        .find(|d| !d.contains('='))
        .unwrap_or("info")
        .to_ascii_lowercase();
    let (sdk, http) = match base.as_str() {
        "trace" | "debug" => ("debug", "info"),
        _ => ("warn", "warn"),
    };
    format!(
        "{level},aws_smithy_runtime={sdk},aws_smithy_runtime_api={sdk},aws_config={sdk},hyper={http},hyper_util={http}"
    )
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::api::validation::parse_duration(s)
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!(
            "{s:?} is zero; give a positive duration like \"30s\""
        )),
        d => Ok(d),
    }
}
