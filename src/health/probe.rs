//! One probe of one cache: DNS, TCP, TLS, AUTH, `PING` (timed) and `INFO`,
//! with every failure classified. In cluster mode the configuration endpoint
//! names the shard primaries and each of them is probed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisConnectionInfo, RedisError, Value};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::info::{parse_cluster_nodes, parse_cluster_shards, parse_info, NodeAddr};
use crate::backends::Credential;

/// What to probe: the endpoint and token from the connection Secret.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    /// Primary endpoint, or the configuration endpoint in cluster mode.
    pub host: String,
    pub port: u16,
    /// Connect over TLS (always on for ElastiCache).
    pub tls: bool,
    /// The AUTH token; its `Debug` is redacted.
    pub token: Option<Credential>,
    /// Cluster mode: probe every shard primary.
    pub cluster: bool,
    /// The CA the server certificate chains to, when it is not a public one
    /// (the Secret's `ca.crt`); trusted instead of the probe's default roots.
    pub ca_pem: Option<String>,
    /// Where `host` is, when known without DNS (see [`super::Resolver`]).
    pub connect_to: Option<std::net::SocketAddr>,
}

/// What a successful probe measured (summed over shard primaries in cluster mode).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthSample {
    /// `PING` round trip (the slowest primary in cluster mode).
    pub latency: Duration,
    pub used_memory_bytes: Option<u64>,
    /// 0 means no limit.
    pub max_memory_bytes: Option<u64>,
    pub keyspace_hits: Option<u64>,
    pub keyspace_misses: Option<u64>,
    pub evicted_keys: Option<u64>,
    pub connected_clients: Option<u64>,
    /// Nodes probed: 1, or the number of shard primaries.
    pub nodes: usize,
}

impl HealthSample {
    /// `hits / (hits + misses)`; `None` before the first lookup.
    pub fn hit_ratio(&self) -> Option<f64> {
        let (h, m) = (self.keyspace_hits?, self.keyspace_misses?);
        let total = h.saturating_add(m);
        (total > 0).then(|| h as f64 / total as f64)
    }
}

/// Why a probe failed; each becomes the `Reachable=False` reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    TlsHandshakeFailed,
    AuthFailed,
    Timeout,
    ConnectionRefused,
    DnsFailed,
    Unreachable,
    ProtocolError,
}

impl FailureKind {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            FailureKind::TlsHandshakeFailed => "TlsHandshakeFailed",
            FailureKind::AuthFailed => "AuthFailed",
            FailureKind::Timeout => "Timeout",
            FailureKind::ConnectionRefused => "ConnectionRefused",
            FailureKind::DnsFailed => "DnsFailed",
            FailureKind::Unreachable => "Unreachable",
            FailureKind::ProtocolError => "ProtocolError",
        }
    }
}

/// A failed probe: its class and a message for people (never the token).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.reason())]
pub struct ProbeError {
    pub kind: FailureKind,
    pub message: String,
}

impl ProbeError {
    fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Building the TLS client configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("reading CA file {path}: {source}")]
    ReadCaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("CA file {0} holds no PEM certificate")]
    NoCertificates(String),
    #[error("CA certificate: {0}")]
    BadCertificate(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The CAs the probe trusts: those in `ca_file` (PEM) when given, else the
/// system's (rustls-native-certs).
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsConfigError> {
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| TlsConfigError::ReadCaFile {
                path: path.display().to_string(),
                source,
            })?;
            let roots = roots_from_pem(&pem)?;
            if roots.is_empty() {
                return Err(TlsConfigError::NoCertificates(path.display().to_string()));
            }
            Ok(roots)
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::warn!("loading system CA certificates: {e}");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            if ignored > 0 {
                tracing::debug!("ignored {ignored} unparsable system CA certificates");
            }
            if added == 0 {
                tracing::warn!(
                    "no system CA certificates found; health probes will fail TLS verification (set --health-ca-file)"
                );
            }
            Ok(roots)
        }
    }
}

/// The certificates in a PEM bundle.
pub fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsConfigError::BadCertificate(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| TlsConfigError::BadCertificate(e.to_string()))?;
    }
    Ok(roots)
}

/// A TLS client configuration trusting `roots`, built with an explicit
/// crypto provider (aws-lc-rs) so it does not depend on a process default.
pub fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Probes `target` within `timeout` (the whole probe, all primaries).
pub async fn probe(
    target: &ProbeTarget,
    tls: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<HealthSample, ProbeError> {
    let deadline = Instant::now() + timeout;
    let node = NodeAddr {
        host: target.host.clone(),
        port: target.port,
    };
    let result = if target.cluster {
        probe_cluster(target, &node, tls, deadline, timeout).await
    } else {
        probe_node(target, &node, tls, deadline, timeout).await
    };
    // The token never reaches a message, but make sure of it.
    result.map_err(|mut e| {
        if let Some(t) = &target.token {
            if !t.expose().is_empty() {
                e.message = e.message.replace(t.expose(), "<redacted>");
            }
        }
        e
    })
}

async fn probe_cluster(
    target: &ProbeTarget,
    entry: &NodeAddr,
    tls: &Arc<ClientConfig>,
    deadline: Instant,
    timeout: Duration,
) -> Result<HealthSample, ProbeError> {
    let mut conn = connect(target, entry, tls, deadline, timeout).await?;
    let shards = within(
        deadline,
        timeout,
        entry,
        "asking for CLUSTER SHARDS",
        redis::cmd("CLUSTER")
            .arg("SHARDS")
            .query_async::<Value>(&mut conn.conn),
    )
    .await?;
    let primaries = match shards {
        Ok(reply) => parse_cluster_shards(&reply, target.tls)
            .map_err(|e| ProbeError::new(FailureKind::ProtocolError, e))?,
        // Before Redis 7 there is no CLUSTER SHARDS.
        Err(e) if e.kind() == ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
            let nodes = within(
                deadline,
                timeout,
                entry,
                "asking for CLUSTER NODES",
                redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async::<String>(&mut conn.conn),
            )
            .await?
            .map_err(|e| classify(e, entry))?;
            parse_cluster_nodes(&nodes, &entry.host)
        }
        Err(e) => return Err(classify(e, entry)),
    };
    drop(conn);
    if primaries.is_empty() {
        return Err(ProbeError::new(
            FailureKind::ProtocolError,
            format!("{entry} reported no shard primaries"),
        ));
    }
    let results = future::join_all(
        primaries
            .iter()
            .map(|p| probe_node(target, p, tls, deadline, timeout)),
    )
    .await;
    let mut total = HealthSample::default();
    for (primary, result) in primaries.iter().zip(results) {
        let s = result.map_err(|e| ProbeError {
            kind: e.kind,
            message: format!("shard primary {primary}: {}", e.message),
        })?;
        total.latency = total.latency.max(s.latency);
        total.used_memory_bytes = add(total.used_memory_bytes, s.used_memory_bytes);
        total.max_memory_bytes = add(total.max_memory_bytes, s.max_memory_bytes);
        total.keyspace_hits = add(total.keyspace_hits, s.keyspace_hits);
        total.keyspace_misses = add(total.keyspace_misses, s.keyspace_misses);
        total.evicted_keys = add(total.evicted_keys, s.evicted_keys);
        total.connected_clients = add(total.connected_clients, s.connected_clients);
        total.nodes += 1;
    }
    Ok(total)
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, b) => a.or(b),
    }
}

async fn probe_node(
    target: &ProbeTarget,
    node: &NodeAddr,
    tls: &Arc<ClientConfig>,
    deadline: Instant,
    timeout: Duration,
) -> Result<HealthSample, ProbeError> {
    let mut conn = connect(target, node, tls, deadline, timeout).await?;
    let start = Instant::now();
    let pong = within(
        deadline,
        timeout,
        node,
        "waiting for PONG",
        redis::cmd("PING").query_async::<String>(&mut conn.conn),
    )
    .await?
    .map_err(|e| classify(e, node))?;
    let latency = start.elapsed();
    if pong != "PONG" {
        return Err(ProbeError::new(
            FailureKind::ProtocolError,
            format!("{node} answered PING with something other than PONG"),
        ));
    }
    let info = within(
        deadline,
        timeout,
        node,
        "reading INFO",
        redis::cmd("INFO").query_async::<String>(&mut conn.conn),
    )
    .await?
    .map_err(|e| classify(e, node))?;
    let f = parse_info(&info);
    Ok(HealthSample {
        latency,
        used_memory_bytes: f.used_memory,
        max_memory_bytes: f.maxmemory,
        keyspace_hits: f.keyspace_hits,
        keyspace_misses: f.keyspace_misses,
        evicted_keys: f.evicted_keys,
        connected_clients: f.connected_clients,
        nodes: 1,
    })
}

/// An authenticated connection; its driver task ends with it.
struct Conn {
    conn: MultiplexedConnection,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn connect(
    target: &ProbeTarget,
    node: &NodeAddr,
    tls: &Arc<ClientConfig>,
    deadline: Instant,
    timeout: Duration,
) -> Result<Conn, ProbeError> {
    let addrs = match target.connect_to {
        Some(addr) if node.host == target.host => vec![addr],
        _ => within(
            deadline,
            timeout,
            node,
            "resolving the host name",
            tokio::net::lookup_host((node.host.as_str(), node.port)),
        )
        .await?
        .map_err(|e| {
            ProbeError::new(
                FailureKind::DnsFailed,
                format!("cannot resolve {}: {e}", node.host),
            )
        })?
        .collect::<Vec<_>>(),
    };
    if addrs.is_empty() {
        return Err(ProbeError::new(
            FailureKind::DnsFailed,
            format!("{} resolves to no address", node.host),
        ));
    }
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match within(
            deadline,
            timeout,
            node,
            "connecting",
            TcpStream::connect(addr),
        )
        .await?
        {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = match (tcp, last) {
        (Some(s), _) => s,
        (None, Some(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(ProbeError::new(
                FailureKind::ConnectionRefused,
                format!("{node} refused the connection (nothing listens on that port, or a firewall rejects it)"),
            ))
        }
        (None, e) => {
            let why = e.map(|e| e.to_string()).unwrap_or_default();
            return Err(ProbeError::new(
                FailureKind::Unreachable,
                format!("cannot connect to {node}: {why}"),
            ));
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut info = RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(token) = &target.token {
        info = info.set_password(token.expose());
    }
    let established = if target.tls {
        let name = ServerName::try_from(node.host.clone()).map_err(|e| {
            ProbeError::new(
                FailureKind::TlsHandshakeFailed,
                format!("{} is not a valid TLS server name: {e}", node.host),
            )
        })?;
        let stream = within(
            deadline,
            timeout,
            node,
            "in the TLS handshake",
            TlsConnector::from(tls.clone()).connect(name, tcp),
        )
        .await?
        .map_err(|e| {
            ProbeError::new(
                FailureKind::TlsHandshakeFailed,
                format!("TLS handshake with {node} failed: {e}"),
            )
        })?;
        within(
            deadline,
            timeout,
            node,
            "authenticating",
            MultiplexedConnection::new_with_config(&info, stream, AsyncConnectionConfig::default()),
        )
        .await?
        .map(|(conn, driver)| (conn, tokio::spawn(driver)))
    } else {
        within(
            deadline,
            timeout,
            node,
            "authenticating",
            MultiplexedConnection::new_with_config(&info, tcp, AsyncConnectionConfig::default()),
        )
        .await?
        .map(|(conn, driver)| (conn, tokio::spawn(driver)))
    };
    let (conn, driver) = established.map_err(|e| classify(e, node))?;
    Ok(Conn { conn, driver })
}

/// Runs `fut` until `deadline`; `Err(Timeout)` names the step that hung.
async fn within<F: std::future::Future>(
    deadline: Instant,
    timeout: Duration,
    node: &NodeAddr,
    step: &str,
    fut: F,
) -> Result<F::Output, ProbeError> {
    tokio::time::timeout_at(deadline, fut).await.map_err(|_| {
        ProbeError::new(
            FailureKind::Timeout,
            format!("no answer from {node} within {timeout:?} ({step})"),
        )
    })
}

/// Classifies an error from the Redis client.
fn classify(e: RedisError, node: &NodeAddr) -> ProbeError {
    let auth = e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
    if auth {
        return ProbeError::new(
            FailureKind::AuthFailed,
            format!("{node} refused the AUTH token from the connection Secret"),
        );
    }
    if e.is_timeout() {
        return ProbeError::new(
            FailureKind::Timeout,
            format!("{node} did not answer in time"),
        );
    }
    if e.is_connection_dropped() || e.is_connection_refusal() {
        return ProbeError::new(
            FailureKind::Unreachable,
            format!("{node} closed the connection: {e}"),
        );
    }
    ProbeError::new(
        FailureKind::ProtocolError,
        format!("unexpected answer from {node}: {e}"),
    )
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_ratio_needs_lookups() {
        let mut s = HealthSample {
            keyspace_hits: Some(0),
            keyspace_misses: Some(0),
            ..HealthSample::default()
        };
        assert_eq!(s.hit_ratio(), None);
        s.keyspace_hits = Some(3);
        s.keyspace_misses = Some(1);
        assert_eq!(s.hit_ratio(), Some(0.75));
    }

    #[test]
    fn sums_keep_known_values() {
        assert_eq!(add(Some(1), Some(2)), Some(3));
        assert_eq!(add(None, Some(2)), Some(2));
        assert_eq!(add(None, None), None);
    }

    #[test]
    fn a_pem_bundle_without_certificates_is_empty() {
        let roots = roots_from_pem(b"not a certificate").expect("no PEM sections is not an error");
        assert!(roots.is_empty());
    }
}
