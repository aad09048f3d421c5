//! Which data pod carries `rediscache.dev/role=primary`, so Service
//! `<name>-redis` always reaches the primary Sentinel reports, and never an
//! empty pod that came back after a restart. Plus the small TLS client that
//! asks a Sentinel and reads `INFO` from the pods.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, Value};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::acl::Password;
use super::render::{ROLE_PRIMARY, ROLE_REPLICA};

/// What a server says it is in `INFO replication`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerRole {
    /// `role:master`.
    Primary,
    /// `role:slave`.
    Replica,
}

/// The facts of `INFO` the decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationInfo {
    /// `role`.
    pub role: ServerRole,
    /// `master_host` (replicas).
    pub master_host: Option<String>,
    /// `master_port` (replicas).
    pub master_port: Option<u16>,
    /// `master_link_status:up` (replicas).
    pub master_link_up: bool,
    /// `master_repl_offset`: how much of the replication stream this node has.
    pub master_repl_offset: u64,
    /// Keys over all databases (`# Keyspace`).
    pub keys: u64,
}

impl ReplicationInfo {
    /// No keys and no replication history: what a pod without persistence
    /// looks like after a restart (and what a brand-new cache looks like).
    pub fn is_empty(&self) -> bool {
        self.keys == 0 && self.master_repl_offset == 0
    }
}

/// Parses the `replication` and `keyspace` sections of `INFO`.
pub fn parse_info(info: &str) -> Option<ReplicationInfo> {
    let mut role = None;
    let mut r = ReplicationInfo {
        role: ServerRole::Primary,
        master_host: None,
        master_port: None,
        master_link_up: false,
        master_repl_offset: 0,
        keys: 0,
    };
    for line in info.lines() {
        let line = line.trim_end_matches('\r');
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k {
            "role" => {
                role = match v {
                    "master" => Some(ServerRole::Primary),
                    "slave" | "replica" => Some(ServerRole::Replica),
                    _ => None,
                }
            }
            "master_host" => r.master_host = Some(v.to_string()),
            "master_port" => r.master_port = v.parse().ok(),
            "master_link_status" => r.master_link_up = v == "up",
            "master_repl_offset" => r.master_repl_offset = v.parse().unwrap_or(0),
            // `db0:keys=3,expires=0,avg_ttl=0`
            db if db.starts_with("db") && db[2..].chars().all(|c| c.is_ascii_digit()) => {
                let keys = v
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("keys="))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                r.keys = r.keys.saturating_add(keys);
            }
            _ => {}
        }
    }
    r.role = role?;
    Some(r)
}

/// What the operator knows about one data pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    /// Pod name.
    pub name: String,
    /// The hostname it announces (its FQDN through the headless Service).
    pub host: String,
    /// Pod IP, when it has one (Sentinel may answer with an IP).
    pub ip: Option<String>,
    /// Client port.
    pub port: u16,
    /// Pod `Ready` condition.
    pub ready: bool,
    /// Current value of `rediscache.dev/role`.
    pub role_label: Option<String>,
    /// `INFO`, or `None` when the pod did not answer.
    pub replication: Option<ReplicationInfo>,
}

/// Sentinel's answer to `SENTINEL get-master-addr-by-name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SentinelView {
    /// The primary's announced address.
    Primary {
        /// Hostname (with `announce-hostnames`) or IP.
        host: String,
        /// Port.
        port: u16,
    },
    /// No Sentinel answered, or none knows the set.
    NoAnswer,
    /// The cache has no replicas, hence no Sentinel.
    NotUsed,
}

/// Why no pod is labelled primary this time; labels stay as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// No pods.
    NoPods,
    /// Sentinel named an address no pod has.
    UnknownAddress(String),
    /// The pod Sentinel named did not answer `INFO`.
    CandidateUnreachable(String),
    /// The pod Sentinel named still says it is a replica (failover in progress).
    CandidateNotPrimaryYet(String),
    /// No Sentinel answered and not exactly one pod says it is primary.
    NoAuthority,
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This pod is the primary.
    Primary(String),
    /// Nothing to decide yet.
    Wait(WaitReason),
    /// The candidate came back empty while other pods hold data: it must not
    /// serve as primary. It is labelled replica so Service `<name>-redis` has
    /// no endpoint (clients fail) rather than an empty one (clients and
    /// replicas lose the data).
    RefusedEmptyPrimary(String),
}

/// A label change to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relabel {
    /// Pod name.
    pub pod: String,
    /// New value of `rediscache.dev/role`.
    pub role: &'static str,
}

/// [`decide`]'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What was decided.
    pub outcome: Outcome,
    /// Only the labels that change.
    pub relabel: Vec<Relabel>,
}

impl Decision {
    fn wait(reason: WaitReason) -> Self {
        Self {
            outcome: Outcome::Wait(reason),
            relabel: Vec::new(),
        }
    }
}

fn matches_address(pod: &PodFacts, host: &str, port: u16) -> bool {
    pod.port == port && (pod.host == host || pod.ip.as_deref() == Some(host))
}

/// Decides the primary label from Sentinel's view and the pods' facts.
///
/// Sentinel is the authority; the operator only follows it, with one
/// exception: a candidate whose dataset is empty while another pod holds
/// data is refused, whatever Sentinel says (it restarted before Sentinel
/// noticed, and would otherwise make every replica drop its copy).
pub fn decide(sentinel: &SentinelView, pods: &[PodFacts]) -> Decision {
    if pods.is_empty() {
        return Decision::wait(WaitReason::NoPods);
    }
    let candidate = match sentinel {
        SentinelView::NotUsed if pods.len() == 1 => &pods[0],
        SentinelView::Primary { host, port } => {
            match pods.iter().find(|p| matches_address(p, host, *port)) {
                Some(p) => p,
                None => {
                    return Decision::wait(WaitReason::UnknownAddress(format!("{host}:{port}")))
                }
            }
        }
        SentinelView::NotUsed | SentinelView::NoAnswer => {
            let primaries: Vec<&PodFacts> = pods
                .iter()
                .filter(|p| {
                    p.replication
                        .as_ref()
                        .is_some_and(|r| r.role == ServerRole::Primary)
                })
                .collect();
            match primaries.as_slice() {
                [one] => *one,
                _ => return Decision::wait(WaitReason::NoAuthority),
            }
        }
    };
    let Some(info) = &candidate.replication else {
        return Decision::wait(WaitReason::CandidateUnreachable(candidate.name.clone()));
    };
    if info.role != ServerRole::Primary {
        return Decision::wait(WaitReason::CandidateNotPrimaryYet(candidate.name.clone()));
    }
    let others_hold_data = pods
        .iter()
        .any(|p| p.name != candidate.name && p.replication.as_ref().is_some_and(|r| !r.is_empty()));
    let relabel_to = |pod: &PodFacts, role: &'static str| {
        (pod.role_label.as_deref() != Some(role)).then(|| Relabel {
            pod: pod.name.clone(),
            role,
        })
    };
    if info.is_empty() && others_hold_data {
        return Decision {
            outcome: Outcome::RefusedEmptyPrimary(candidate.name.clone()),
            relabel: relabel_to(candidate, ROLE_REPLICA).into_iter().collect(),
        };
    }
    let relabel = pods
        .iter()
        .filter_map(|p| {
            let role = if p.name == candidate.name {
                ROLE_PRIMARY
            } else {
                ROLE_REPLICA
            };
            relabel_to(p, role)
        })
        .collect();
    Decision {
        outcome: Outcome::Primary(candidate.name.clone()),
        relabel,
    }
}

/// Talking to a server or Sentinel failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer in time; names the step.
    #[error("{addr}: no answer within {timeout:?} ({step})")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// The step that hung.
        step: &'static str,
        /// The bound.
        timeout: Duration,
    },
    /// TCP or TLS failed.
    #[error("{addr}: {message}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// What failed.
        message: String,
    },
    /// The server refused a command or the credentials.
    #[error("{addr}: {message}")]
    Redis {
        /// `host:port`.
        addr: String,
        /// The server's error (never contains the password).
        message: String,
    },
    /// The answer made no sense.
    #[error("{addr}: unexpected answer: {message}")]
    Protocol {
        /// `host:port`.
        addr: String,
        /// What was wrong.
        message: String,
    },
    /// The CA bundle is unusable.
    #[error("CA certificate: {0}")]
    Ca(String),
}

/// Where to connect and which name to verify in the certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host to connect to.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Name checked against the certificate's SANs (usually `host`).
    pub server_name: String,
}

/// User and password for `AUTH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user.
    pub user: String,
    /// Its password (`Debug` redacted).
    pub password: Password,
}

/// A TLS client configuration trusting only `ca_pem` (the cache's CA); the
/// same builder as the health probe's.
pub fn client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, ClientError> {
    let roots = crate::health::roots_from_pem(ca_pem.as_bytes())
        .map_err(|e| ClientError::Ca(e.to_string()))?;
    crate::health::client_config(roots).map_err(|e| ClientError::Ca(e.to_string()))
}

/// An authenticated connection; its driver task ends with it.
pub struct Connection {
    conn: MultiplexedConnection,
    driver: JoinHandle<()>,
    addr: String,
    timeout: Duration,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn bounded<F: std::future::Future>(
    addr: &str,
    step: &'static str,
    timeout: Duration,
    fut: F,
) -> Result<F::Output, ClientError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ClientError::Timeout {
            addr: addr.to_string(),
            step,
            timeout,
        })
}

/// Connects over TLS and authenticates; every step within `timeout`.
pub async fn connect(
    endpoint: &Endpoint,
    tls: &Arc<ClientConfig>,
    credentials: &Credentials,
    timeout: Duration,
) -> Result<Connection, ClientError> {
    let addr = format!("{}:{}", endpoint.host, endpoint.port);
    let connect_err = |message: String| ClientError::Connect {
        addr: addr.clone(),
        message,
    };
    let tcp = bounded(
        &addr,
        "connecting",
        timeout,
        TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
    )
    .await?
    .map_err(|e| connect_err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(endpoint.server_name.clone())
        .map_err(|e| connect_err(format!("bad TLS server name: {e}")))?;
    let stream = bounded(
        &addr,
        "TLS handshake",
        timeout,
        TlsConnector::from(tls.clone()).connect(name, tcp),
    )
    .await?
    .map_err(|e| connect_err(format!("TLS handshake: {e}")))?;
    let info = RedisConnectionInfo::default()
        .set_skip_set_lib_name()
        .set_username(&credentials.user)
        .set_password(credentials.password.expose());
    let (conn, driver) = bounded(
        &addr,
        "authenticating",
        timeout,
        MultiplexedConnection::new_with_config(&info, stream, AsyncConnectionConfig::default()),
    )
    .await?
    .map_err(|e| ClientError::Redis {
        addr: addr.clone(),
        message: e.to_string(),
    })?;
    Ok(Connection {
        conn,
        driver: tokio::spawn(driver),
        addr,
        timeout,
    })
}

impl Connection {
    /// Runs one command within the connection's timeout.
    pub async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
    ) -> Result<T, ClientError> {
        let addr = self.addr.clone();
        bounded(
            &addr,
            "command",
            self.timeout,
            cmd.query_async::<T>(&mut self.conn),
        )
        .await?
        .map_err(|e| ClientError::Redis {
            addr,
            message: e.to_string(),
        })
    }
}

/// Asks one Sentinel for the primary of `master_set`; `None` when it does not know it.
pub async fn sentinel_primary(
    sentinel: &Endpoint,
    tls: &Arc<ClientConfig>,
    credentials: &Credentials,
    master_set: &str,
    timeout: Duration,
) -> Result<Option<(String, u16)>, ClientError> {
    let mut conn = connect(sentinel, tls, credentials, timeout).await?;
    let reply: Value = conn
        .query(
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master_set),
        )
        .await?;
    let protocol = |message: &str| ClientError::Protocol {
        addr: conn.addr.clone(),
        message: message.into(),
    };
    match reply {
        Value::Nil => Ok(None),
        Value::Array(items) if items.len() == 2 => {
            let host: String = redis::from_redis_value(items[0].clone())
                .map_err(|_| protocol("host is not a string"))?;
            let port: String = redis::from_redis_value(items[1].clone())
                .map_err(|_| protocol("port is not a string"))?;
            let port = port.parse().map_err(|_| protocol("port is not a number"))?;
            Ok(Some((host, port)))
        }
        _ => Err(protocol("expected [host, port] or nil")),
    }
}

/// Asks each Sentinel in turn; the first answer wins.
pub async fn sentinel_view(
    sentinels: &[Endpoint],
    tls: &Arc<ClientConfig>,
    credentials: &Credentials,
    master_set: &str,
    timeout: Duration,
) -> SentinelView {
    for s in sentinels {
        if let Ok(Some((host, port))) =
            sentinel_primary(s, tls, credentials, master_set, timeout).await
        {
            return SentinelView::Primary { host, port };
        }
    }
    SentinelView::NoAnswer
}

/// `INFO` of one data pod, reduced to [`ReplicationInfo`].
pub async fn replication_info(
    server: &Endpoint,
    tls: &Arc<ClientConfig>,
    credentials: &Credentials,
    timeout: Duration,
) -> Result<ReplicationInfo, ClientError> {
    let mut conn = connect(server, tls, credentials, timeout).await?;
    let info: String = conn.query(&redis::cmd("INFO")).await?;
    parse_info(&info).ok_or_else(|| ClientError::Protocol {
        addr: conn.addr.clone(),
        message: "INFO has no role".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(role: ServerRole, offset: u64, keys: u64) -> Option<ReplicationInfo> {
        Some(ReplicationInfo {
            role,
            master_host: None,
            master_port: None,
            master_link_up: role == ServerRole::Replica,
            master_repl_offset: offset,
            keys,
        })
    }

    fn pod(i: u8, label: Option<&str>, r: Option<ReplicationInfo>) -> PodFacts {
        PodFacts {
            name: format!("a-redis-{i}"),
            host: format!("a-redis-{i}.a-redis-headless.team.svc.cluster.local"),
            ip: Some(format!("10.0.0.{i}")),
            port: 6379,
            ready: true,
            role_label: label.map(String::from),
            replication: r,
        }
    }

    fn sentinel_says(i: u8) -> SentinelView {
        SentinelView::Primary {
            host: format!("a-redis-{i}.a-redis-headless.team.svc.cluster.local"),
            port: 6379,
        }
    }

    #[test]
    fn parses_info() {
        let text = "# Replication\r\nrole:slave\r\nmaster_host:a-redis-1.x\r\nmaster_port:6379\r\n\
                    master_link_status:up\r\nmaster_repl_offset:1234\r\n\r\n# Keyspace\r\n\
                    db0:keys=3,expires=1,avg_ttl=0\r\ndb2:keys=4,expires=0,avg_ttl=0\r\n";
        let r = parse_info(text).expect("parses");
        assert_eq!(r.role, ServerRole::Replica);
        assert_eq!(r.master_host.as_deref(), Some("a-redis-1.x"));
        assert_eq!(r.master_port, Some(6379));
        assert!(r.master_link_up);
        assert_eq!(r.master_repl_offset, 1234);
        assert_eq!(r.keys, 7);
        assert!(parse_info("# Server\r\nredis_version:7.0.15\r\n").is_none());
    }

    #[test]
    fn follows_sentinel_after_a_failover() {
        let pods = [
            pod(0, Some("primary"), None),
            pod(1, Some("replica"), info(ServerRole::Primary, 500, 10)),
            pod(2, Some("replica"), info(ServerRole::Replica, 500, 10)),
        ];
        let d = decide(&sentinel_says(1), &pods);
        assert_eq!(d.outcome, Outcome::Primary("a-redis-1".into()));
        assert_eq!(
            d.relabel,
            vec![
                Relabel {
                    pod: "a-redis-0".into(),
                    role: "replica"
                },
                Relabel {
                    pod: "a-redis-1".into(),
                    role: "primary"
                },
            ]
        );
    }

    #[test]
    fn sentinel_may_answer_with_an_ip() {
        let pods = [
            pod(0, None, info(ServerRole::Primary, 0, 0)),
            pod(1, None, info(ServerRole::Replica, 0, 0)),
        ];
        let view = SentinelView::Primary {
            host: "10.0.0.0".into(),
            port: 6379,
        };
        let d = decide(&view, &pods);
        assert_eq!(d.outcome, Outcome::Primary("a-redis-0".into()));
        assert_eq!(d.relabel.len(), 2);
    }

    #[test]
    fn never_chooses_an_empty_restarted_primary() {
        // Sentinel has not noticed yet: it still names pod 0, which came back empty.
        let pods = [
            pod(0, Some("primary"), info(ServerRole::Primary, 0, 0)),
            pod(1, Some("replica"), info(ServerRole::Replica, 9000, 42)),
            pod(2, Some("replica"), info(ServerRole::Replica, 9000, 42)),
        ];
        let d = decide(&sentinel_says(0), &pods);
        assert_eq!(d.outcome, Outcome::RefusedEmptyPrimary("a-redis-0".into()));
        assert_eq!(
            d.relabel,
            vec![Relabel {
                pod: "a-redis-0".into(),
                role: "replica"
            }]
        );
        // Without Sentinel's answer the only self-declared primary is refused too.
        let d = decide(&SentinelView::NoAnswer, &pods);
        assert_eq!(d.outcome, Outcome::RefusedEmptyPrimary("a-redis-0".into()));
    }

    #[test]
    fn a_brand_new_cache_may_start_empty() {
        let pods = [
            pod(0, None, info(ServerRole::Primary, 0, 0)),
            pod(1, None, info(ServerRole::Replica, 0, 0)),
        ];
        let d = decide(&sentinel_says(0), &pods);
        assert_eq!(d.outcome, Outcome::Primary("a-redis-0".into()));
    }

    #[test]
    fn waits_when_unsure() {
        let pods = [
            pod(0, Some("primary"), info(ServerRole::Primary, 10, 1)),
            pod(1, Some("replica"), info(ServerRole::Replica, 10, 1)),
        ];
        let unknown = SentinelView::Primary {
            host: "elsewhere".into(),
            port: 6379,
        };
        assert!(matches!(
            decide(&unknown, &pods).outcome,
            Outcome::Wait(WaitReason::UnknownAddress(_))
        ));
        assert_eq!(
            decide(&sentinel_says(1), &pods).outcome,
            Outcome::Wait(WaitReason::CandidateNotPrimaryYet("a-redis-1".into()))
        );
        let split = [
            pod(0, None, info(ServerRole::Primary, 10, 1)),
            pod(1, None, info(ServerRole::Primary, 10, 1)),
        ];
        assert_eq!(
            decide(&SentinelView::NoAnswer, &split).outcome,
            Outcome::Wait(WaitReason::NoAuthority)
        );
        assert_eq!(
            decide(&SentinelView::NoAnswer, &[]).outcome,
            Outcome::Wait(WaitReason::NoPods)
        );
        let unreachable = [
            pod(0, None, None),
            pod(1, None, info(ServerRole::Replica, 1, 1)),
        ];
        assert_eq!(
            decide(&sentinel_says(0), &unreachable).outcome,
            Outcome::Wait(WaitReason::CandidateUnreachable("a-redis-0".into()))
        );
    }

    #[test]
    fn a_single_pod_is_the_primary_and_stable_labels_do_not_change() {
        let pods = [pod(0, Some("primary"), info(ServerRole::Primary, 0, 0))];
        let d = decide(&SentinelView::NotUsed, &pods);
        assert_eq!(d.outcome, Outcome::Primary("a-redis-0".into()));
        assert!(d.relabel.is_empty());
    }
}
