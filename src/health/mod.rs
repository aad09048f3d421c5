//! Health of the caches themselves (DESIGN §3 `status.health`, condition
//! `Reachable`): a TLS+AUTH probe, the registry that decides which changes are
//! worth a status write, per-cache gauges, and the prober loop.

mod gauges;
mod info;
mod probe;
mod prober;
mod registry;

use std::path::PathBuf;
use std::time::Duration;

pub use gauges::{CacheLabels, HealthGauges};
pub use info::{parse_cluster_nodes, parse_cluster_shards, parse_info, InfoFields, NodeAddr};
pub use probe::{
    client_config, probe, root_store, roots_from_pem, FailureKind, HealthSample, ProbeError,
    ProbeTarget, TlsConfigError,
};
pub use prober::{target_from_secret, Prober, SecretReader};
pub use registry::{HealthRegistry, HealthSnapshot};

/// Settings of the health probe (the `--health-*` flags).
#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// Time between probes of one cache.
    pub interval: Duration,
    /// Limit for one probe.
    pub timeout: Duration,
    /// Probes running at once.
    pub concurrency: usize,
    /// PEM bundle of CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Shortest time between two status writes of health values (reachability
    /// changes are written at once).
    pub status_min_interval: Duration,
    /// Finds cache hosts without DNS (None: DNS).
    pub resolver: Option<Resolver>,
}

/// Maps a cache's host name to an address without DNS: for an operator
/// that cannot resolve the cluster's Service names (tests on the API
/// emulator; a run outside the cluster). `None` falls back to DNS.
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct Resolver(pub std::sync::Arc<dyn Fn(&str) -> Option<std::net::IpAddr> + Send + Sync>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}
