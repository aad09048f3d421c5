//! The server and Sentinel configuration files and the shell scripts the pods
//! run (startup, readiness, liveness). All of it lands in the ConfigMap; what
//! holds a password comes from the ACL Secret (see `acl.rs`).

use std::fmt::Write as _;

use super::acl::{MASTERAUTH_KEY, REPLICATION_USER, SENTINEL_AUTH_KEY};
use super::input::{CacheInput, Persistence, SENTINEL_PORT};

/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/redis/conf";
/// Where the TLS Secret (`ca.crt`, `tls.crt`, `tls.key`) is mounted.
pub const TLS_DIR: &str = "/etc/redis/tls";
/// Where the ACL Secret is mounted.
pub const ACL_DIR: &str = "/etc/redis/acl";
/// The data directory (PVC or emptyDir).
pub const DATA_DIR: &str = "/data";
/// Writable scratch (emptyDir): the runtime config the server or Sentinel may rewrite.
pub const RUN_DIR: &str = "/tmp";
/// ConfigMap key of the server config.
pub const SERVER_CONFIG_KEY: &str = "server.conf";
/// ConfigMap key of the Sentinel config template.
pub const SENTINEL_CONFIG_KEY: &str = "sentinel.conf";
/// ConfigMap key of the server startup script.
pub const START_SERVER_KEY: &str = "start-server.sh";
/// ConfigMap key of the Sentinel startup script.
pub const START_SENTINEL_KEY: &str = "start-sentinel.sh";
/// ConfigMap key of the server readiness script.
pub const READINESS_KEY: &str = "readiness.sh";
/// ConfigMap key of the server liveness script.
pub const LIVENESS_KEY: &str = "liveness.sh";
/// ConfigMap key of the Sentinel probe script.
pub const SENTINEL_PROBE_KEY: &str = "sentinel-probe.sh";
/// Sentinel quorum: a majority of the 3 Sentinels.
pub const SENTINEL_QUORUM: u8 = 2;
/// Number of Sentinel pods.
pub const SENTINEL_REPLICAS: u8 = 3;
/// How long a primary may not answer before a Sentinel considers it down.
pub const DOWN_AFTER_MS: u32 = 5_000;
/// Sentinel's failover timeout (also the pause between two failovers of the same primary).
pub const FAILOVER_TIMEOUT_MS: u32 = 60_000;

/// Settings `spec.parameters` may set. Everything the operator manages
/// (ports, TLS, memory, persistence, replication, ACLs, files) is absent on
/// purpose, and so is anything that can run code or touch the filesystem.
const ALLOWED_PARAMETERS: &[&str] = &[
    "notify-keyspace-events",
    "timeout",
    "tcp-keepalive",
    "hz",
    "dynamic-hz",
    "maxmemory-samples",
    "maxmemory-eviction-tenacity",
    "lazyfree-lazy-eviction",
    "lazyfree-lazy-expire",
    "lazyfree-lazy-server-del",
    "lazyfree-lazy-user-del",
    "lazyfree-lazy-user-flush",
    "latency-tracking",
    "latency-tracking-info-percentiles",
    "latency-monitor-threshold",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "maxclients",
    "active-expire-effort",
    "activedefrag",
];

/// Whether `spec.parameters` may set `name` on this backend.
pub fn allowed_parameter(name: &str) -> bool {
    ALLOWED_PARAMETERS.contains(&name)
}

/// A configuration the backend refuses to render.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The parameter is not on the allow-list.
    #[error("parameter {0} is not supported by the Kubernetes backend")]
    UnknownParameter(String),
    /// The value cannot be written safely into a config file.
    #[error("parameter {0} has a value with a line break or control character")]
    BadValue(String),
    /// Not a `maxmemory-policy` the engines know.
    #[error("eviction policy {0} is not known")]
    BadEvictionPolicy(String),
}

const EVICTION_POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

/// A config-file value: quoted when it has spaces or is empty, so a value can
/// never add a directive.
fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:,/+*@%".contains(c));
    if plain {
        return value.to_string();
    }
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// The server config (`redis.conf` / `valkey.conf`). Paths are those of the
/// pod; `masterauth` is `include`d from the ACL Secret.
pub fn render_server_config(input: &CacheInput) -> Result<String, ConfigError> {
    if !EVICTION_POLICIES.contains(&input.eviction_policy.as_str()) {
        return Err(ConfigError::BadEvictionPolicy(
            input.eviction_policy.clone(),
        ));
    }
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# {} for RedisCache {}/{}; rendered by redis-cache-operator, do not edit.",
        input.engine.config_file_name(),
        input.namespace,
        input.name
    );
    c.push_str("bind * -::*\n");
    // Plain TCP is off: only TLS clients can connect.
    c.push_str("port 0\n");
    let _ = writeln!(c, "tls-port {}", input.port);
    let _ = writeln!(c, "tls-cert-file {TLS_DIR}/tls.crt");
    let _ = writeln!(c, "tls-key-file {TLS_DIR}/tls.key");
    let _ = writeln!(c, "tls-ca-cert-file {TLS_DIR}/ca.crt");
    c.push_str("tls-replication yes\n");
    // Clients authenticate with a password, not a certificate.
    c.push_str("tls-auth-clients no\n");
    let _ = writeln!(c, "aclfile {ACL_DIR}/{}", super::acl::ACL_FILE_KEY);
    let _ = writeln!(c, "masteruser {REPLICATION_USER}");
    let _ = writeln!(c, "include {ACL_DIR}/{MASTERAUTH_KEY}");
    let _ = writeln!(c, "maxmemory {}", input.memory_bytes);
    let _ = writeln!(c, "maxmemory-policy {}", input.eviction_policy);
    let _ = writeln!(c, "dir {DATA_DIR}");
    match &input.persistence {
        Persistence::None => c.push_str("save \"\"\nappendonly no\n"),
        Persistence::Snapshot { interval_seconds } => {
            let _ = writeln!(c, "save {interval_seconds} 1");
            c.push_str("appendonly no\n");
        }
        Persistence::AppendOnly => {
            c.push_str("save \"\"\nappendonly yes\nappendfsync everysec\n");
        }
    }
    // A full sync streams the RDB over the socket instead of writing it to
    // the primary's disk first (no disk I/O on a cache without persistence).
    c.push_str("repl-diskless-sync yes\n");
    c.push_str("replica-read-only yes\n");
    c.push_str("replica-serve-stale-data yes\n");
    for (name, value) in &input.parameters {
        if !allowed_parameter(name) {
            return Err(ConfigError::UnknownParameter(name.clone()));
        }
        if value.chars().any(|ch| ch.is_control()) {
            return Err(ConfigError::BadValue(name.clone()));
        }
        let _ = writeln!(c, "{name} {}", quote(value));
    }
    Ok(c)
}

/// The Sentinel config template. It monitors pod 0; the startup script
/// replaces that host with the current primary when one is known, and appends
/// the credentials from the ACL Secret and the pod's own hostname.
pub fn render_sentinel_config(input: &CacheInput) -> String {
    let set = input.master_set_name();
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# Sentinel for RedisCache {}/{}; rendered by redis-cache-operator, do not edit.",
        input.namespace, input.name
    );
    c.push_str("bind * -::*\n");
    c.push_str("port 0\n");
    let _ = writeln!(c, "tls-port {SENTINEL_PORT}");
    let _ = writeln!(c, "tls-cert-file {TLS_DIR}/tls.crt");
    let _ = writeln!(c, "tls-key-file {TLS_DIR}/tls.key");
    let _ = writeln!(c, "tls-ca-cert-file {TLS_DIR}/ca.crt");
    // Sentinel uses TLS towards the data pods and its peers only with this.
    c.push_str("tls-replication yes\n");
    c.push_str("tls-auth-clients no\n");
    let _ = writeln!(c, "dir {RUN_DIR}");
    // Pod IPs change on restart; DNS names of the headless Services do not.
    // Must precede `sentinel monitor`, which may name a host.
    c.push_str("sentinel resolve-hostnames yes\n");
    c.push_str("sentinel announce-hostnames yes\n");
    let _ = writeln!(
        c,
        "sentinel monitor {set} {} {} {SENTINEL_QUORUM}",
        input.pod_fqdn(0),
        input.port
    );
    let _ = writeln!(c, "sentinel auth-user {set} {REPLICATION_USER}");
    let _ = writeln!(c, "sentinel sentinel-user {REPLICATION_USER}");
    let _ = writeln!(c, "sentinel down-after-milliseconds {set} {DOWN_AFTER_MS}");
    let _ = writeln!(c, "sentinel failover-timeout {set} {FAILOVER_TIMEOUT_MS}");
    let _ = writeln!(c, "sentinel parallel-syncs {set} 1");
    c
}

/// `host:port` of each Sentinel, as the scripts reach them.
fn sentinel_addresses(input: &CacheInput) -> String {
    if !input.has_sentinel() {
        return String::new();
    }
    (0..SENTINEL_REPLICAS)
        .map(|i| format!("{}:{SENTINEL_PORT}", input.sentinel_pod_fqdn(i)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `host:port` of each data pod.
fn pod_addresses(input: &CacheInput) -> String {
    (0..input.pod_count())
        .map(|i| format!("{}:{}", input.pod_fqdn(i), input.port))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Shell functions shared by the scripts. Every variable can be overridden
/// from the environment, which is how the loopback tests point the very same
/// scripts at local processes; in a pod only `ANNOUNCE_HOST` and
/// `REDISCLI_AUTH` (the replication password) come from the environment.
fn script_prelude(input: &CacheInput) -> String {
    format!(
        r#"#!/bin/sh
# Rendered by redis-cache-operator for RedisCache {ns}/{name}; do not edit.
set -u
CLI="${{CLI:-{cli}}}"
CONFIG_DIR="${{CONFIG_DIR:-{CONFIG_DIR}}}"
TLS_DIR="${{TLS_DIR:-{TLS_DIR}}}"
ACL_DIR="${{ACL_DIR:-{ACL_DIR}}}"
DATA_DIR="${{DATA_DIR:-{DATA_DIR}}}"
RUN_DIR="${{RUN_DIR:-{RUN_DIR}}}"
PORT="${{PORT:-{port}}}"
SENTINEL_PORT="${{SENTINEL_PORT:-{SENTINEL_PORT}}}"
MASTER_SET="{set}"
SENTINELS="${{SENTINELS-{sentinels}}}"
PODS="${{PODS-{pods}}}"
FIRST_POD="${{FIRST_POD:-{first}}}"

# A TLS call authenticated as the replication user (password in REDISCLI_AUTH,
# never on a command line); bounded so a hung peer cannot stall startup.
cli() {{
  timeout 5 "$CLI" --tls --cacert "$TLS_DIR/ca.crt" --user {user} --no-auth-warning "$@" 2>/dev/null
}}

# Prints "host port" of the primary the first reachable Sentinel names.
primary_from_sentinels() {{
  for s in $SENTINELS; do
    h="${{s%:*}}"; p="${{s##*:}}"
    answer=$(cli -h "$h" -p "$p" SENTINEL get-master-addr-by-name "$MASTER_SET") || continue
    set -- $answer
    [ "$#" -eq 2 ] || continue
    case "$2" in ''|*[!0-9]*) continue ;; esac
    echo "$1 $2"; return 0
  done
  return 1
}}

# Succeeds when a reachable Sentinel knows a healthy replica (flags exactly
# "slave"), i.e. a failover can promote a pod that holds the data.
sentinel_knows_live_replica() {{
  for s in $SENTINELS; do
    h="${{s%:*}}"; p="${{s##*:}}"
    cli -h "$h" -p "$p" SENTINEL replicas "$MASTER_SET" \
      | awk 'prev == "flags" && $0 == "slave" {{ found = 1 }} {{ prev = $0 }} END {{ exit !found }}' \
      && return 0
  done
  return 1
}}

# Prints "host port" of a data pod (other than this one) that says it is a primary.
primary_from_pods() {{
  for s in $PODS; do
    h="${{s%:*}}"; p="${{s##*:}}"
    [ "$h:$p" = "$ANNOUNCE_HOST:$PORT" ] && continue
    role=$(cli -h "$h" -p "$p" ROLE | head -n 1) || continue
    if [ "$role" = "master" ]; then echo "$h $p"; return 0; fi
  done
  return 1
}}
"#,
        ns = input.namespace,
        name = input.name,
        cli = input.engine.cli_binary(),
        port = input.port,
        set = input.master_set_name(),
        sentinels = sentinel_addresses(input),
        pods = pod_addresses(input),
        first = format_args!("{}:{}", input.pod_fqdn(0), input.port),
        user = REPLICATION_USER,
    )
}

/// The data pod's entrypoint: decides primary or `replicaof <current primary>`
/// before the server starts, then execs the server with a runtime config that
/// includes the rendered one.
///
/// The rule that protects the data: a pod that comes back without its dataset
/// never starts as a primary while replicas hold the data. It asks the
/// Sentinels first (the authority), then the other pods; it becomes primary
/// only when the Sentinels name it and it has its data, or when nobody else is
/// a primary and it is pod 0 (first creation), or when there are no replicas.
pub fn render_start_server_script(input: &CacheInput) -> String {
    let persistence = if input.persistence.is_on() {
        "on"
    } else {
        "off"
    };
    let mut s = script_prelude(input);
    let _ = write!(
        s,
        r#"SERVER="${{SERVER:-{server}}}"
PERSISTENCE="{persistence}"
: "${{ANNOUNCE_HOST:?ANNOUNCE_HOST must be the pod's DNS name}}"
# How long an empty pod waits for the Sentinels to name another primary.
WAIT_SECONDS="${{WAIT_SECONDS:-120}}"

# Without persistence an RDB left in the data dir is a stale copy from a past
# full sync; serving it, or syncing replicas from it, would bring back old data.
if [ "$PERSISTENCE" = "off" ]; then rm -f "$DATA_DIR/dump.rdb"; fi
empty=yes
if [ -s "$DATA_DIR/dump.rdb" ] || [ -d "$DATA_DIR/appendonlydir" ] || [ -s "$DATA_DIR/appendonly.aof" ]; then
  empty=no
fi

replicaof=""
if [ -n "$SENTINELS" ]; then
  waited=0
  while :; do
    if primary=$(primary_from_sentinels); then
      if [ "$primary" != "$ANNOUNCE_HOST $PORT" ]; then replicaof="$primary"; break; fi
      # Sentinel still names this pod (it restarted before a failover).
      # Starting empty would make the replicas drop their data: wait until
      # the Sentinels fail over to a replica, or give up and let the kubelet retry.
      [ "$empty" = "no" ] && break
      # Nobody can hold data the Sentinels could fail over to (first start).
      sentinel_knows_live_replica || break
      echo "Sentinel names this pod primary but its dataset is empty; waiting for a failover" >&2
    elif primary=$(primary_from_pods); then
      replicaof="$primary"; break
    elif [ "$ANNOUNCE_HOST:$PORT" = "$FIRST_POD" ]; then
      break
    else
      replicaof=$(echo "$FIRST_POD" | sed 's/:\([0-9]*\)$/ \1/'); break
    fi
    waited=$((waited + 2))
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then echo "no other primary appeared; exiting" >&2; exit 1; fi
    sleep 2
  done
fi

conf="$RUN_DIR/server.conf"
{{
  echo "include $CONFIG_DIR/{config_key}"
  echo "replica-announce-ip $ANNOUNCE_HOST"
  if [ -n "$replicaof" ]; then echo "replicaof $replicaof"; fi
}} > "$conf"
if [ -n "$replicaof" ]; then echo "starting as a replica of $replicaof" >&2; else echo "starting as the primary" >&2; fi
exec "$SERVER" "$conf"
"#,
        server = input.engine.server_binary(),
        config_key = SERVER_CONFIG_KEY,
    );
    s
}

/// The Sentinel pod's entrypoint: monitors the primary its peers (or, on a
/// fresh start, the data pods) report, so a restarted Sentinel never points
/// at a replica, which would trigger a needless failover.
pub fn render_start_sentinel_script(input: &CacheInput) -> String {
    let mut s = script_prelude(input);
    let _ = write!(
        s,
        r#"SENTINEL_BIN="${{SENTINEL_BIN:-{bin}}}"
: "${{ANNOUNCE_HOST:?ANNOUNCE_HOST must be the pod's DNS name}}"

peers=""
for s in $SENTINELS; do
  [ "${{s%:*}}:${{s##*:}}" = "$ANNOUNCE_HOST:$SENTINEL_PORT" ] || peers="$peers $s"
done
primary=$(SENTINELS="$peers" primary_from_sentinels) || primary=$(primary_from_pods) || primary=$(echo "$FIRST_POD" | sed 's/:\([0-9]*\)$/ \1/')

conf="$RUN_DIR/sentinel.conf"
sed "s|^sentinel monitor $MASTER_SET .*|sentinel monitor $MASTER_SET $primary {quorum}|" "$CONFIG_DIR/{config_key}" > "$conf"
cat "$ACL_DIR/{auth_key}" >> "$conf"
echo "sentinel announce-ip $ANNOUNCE_HOST" >> "$conf"
echo "monitoring $primary" >&2
exec "$SENTINEL_BIN" "$conf"
"#,
        bin = input.engine.sentinel_binary(),
        quorum = SENTINEL_QUORUM,
        config_key = SENTINEL_CONFIG_KEY,
        auth_key = SENTINEL_AUTH_KEY,
    );
    s
}

/// Readiness of a data pod: a TLS `PING` answered `PONG`; on a replica also
/// `master_link_status:up`, so the reader Service only routes to synced replicas.
pub fn render_readiness_script(input: &CacheInput) -> String {
    let mut s = script_prelude(input);
    s.push_str(
        r#"[ "$(cli -h 127.0.0.1 -p "$PORT" PING)" = "PONG" ] || exit 1
info=$(cli -h 127.0.0.1 -p "$PORT" INFO replication | tr -d '\r') || exit 1
case "$info" in
  *role:slave*) echo "$info" | grep -qx 'master_link_status:up' || exit 1 ;;
esac
exit 0
"#,
    );
    s
}

/// Liveness of a data pod: any answer to `PING`, including `LOADING` while a
/// large dataset loads, counts as alive; only silence restarts the container.
pub fn render_liveness_script(input: &CacheInput) -> String {
    let mut s = script_prelude(input);
    s.push_str(
        r#"out=$(timeout 20 "$CLI" --tls --cacert "$TLS_DIR/ca.crt" --user replication --no-auth-warning -h 127.0.0.1 -p "$PORT" PING 2>&1)
case "$out" in
  *PONG*|*LOADING*|*MASTERDOWN*|*BUSY*) exit 0 ;;
esac
exit 1
"#,
    );
    s
}

/// Readiness and liveness of a Sentinel: a TLS `PING` on the Sentinel port.
pub fn render_sentinel_probe_script(input: &CacheInput) -> String {
    let mut s = script_prelude(input);
    s.push_str(
        r#"[ "$(cli -h 127.0.0.1 -p "$SENTINEL_PORT" PING)" = "PONG" ] || exit 1
exit 0
"#,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::super::input::test_input;
    use super::*;

    fn lines(c: &str) -> Vec<&str> {
        c.lines().collect()
    }

    #[test]
    fn server_config_is_tls_only_with_acl_and_memory() {
        let input = test_input(0, Persistence::None);
        let c = render_server_config(&input).expect("renders");
        let l = lines(&c);
        for want in [
            "port 0",
            "tls-port 6379",
            "tls-cert-file /etc/redis/tls/tls.crt",
            "tls-key-file /etc/redis/tls/tls.key",
            "tls-ca-cert-file /etc/redis/tls/ca.crt",
            "tls-replication yes",
            "tls-auth-clients no",
            "aclfile /etc/redis/acl/users.acl",
            "masteruser replication",
            "include /etc/redis/acl/masterauth.conf",
            "maxmemory 268435456",
            "maxmemory-policy allkeys-lru",
            "save \"\"",
            "appendonly no",
            "dir /data",
            "tcp-keepalive 300",
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{c}");
        }
        assert!(!c.contains("requirepass"));
    }

    #[test]
    fn persistence_modes() {
        let aof = render_server_config(&test_input(2, Persistence::AppendOnly)).expect("aof");
        assert!(lines(&aof).contains(&"appendonly yes"));
        assert!(lines(&aof).contains(&"appendfsync everysec"));
        let rdb = render_server_config(&test_input(
            0,
            Persistence::Snapshot {
                interval_seconds: 900,
            },
        ))
        .expect("rdb");
        assert!(lines(&rdb).contains(&"save 900 1"));
        assert!(lines(&rdb).contains(&"appendonly no"));
    }

    #[test]
    fn parameters_are_allow_listed_and_quoted() {
        let mut input = test_input(0, Persistence::None);
        input
            .parameters
            .insert("notify-keyspace-events".into(), "Ex".into());
        input.parameters.insert(
            "latency-tracking-info-percentiles".into(),
            "50 99 99.9".into(),
        );
        let c = render_server_config(&input).expect("renders");
        assert!(lines(&c).contains(&"notify-keyspace-events Ex"));
        assert!(lines(&c).contains(&"latency-tracking-info-percentiles \"50 99 99.9\""));

        for refused in [
            "requirepass",
            "dir",
            "port",
            "save",
            "rename-command",
            "loadmodule",
        ] {
            assert!(!allowed_parameter(refused), "{refused} must be refused");
            let mut bad = test_input(0, Persistence::None);
            bad.parameters.insert(refused.into(), "x".into());
            assert_eq!(
                render_server_config(&bad),
                Err(ConfigError::UnknownParameter(refused.into()))
            );
        }
        let mut inject = test_input(0, Persistence::None);
        inject
            .parameters
            .insert("timeout".into(), "0\nrequirepass x".into());
        assert_eq!(
            render_server_config(&inject),
            Err(ConfigError::BadValue("timeout".into()))
        );
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn sentinel_config_monitors_pod_zero_over_tls_with_hostnames() {
        let input = test_input(2, Persistence::AppendOnly);
        let c = render_sentinel_config(&input);
        let l = lines(&c);
        let monitor = l
            .iter()
            .position(|x| x.starts_with("sentinel monitor "))
            .expect("monitor line");
        let resolve = l
            .iter()
            .position(|x| *x == "sentinel resolve-hostnames yes")
            .expect("resolve-hostnames");
        assert!(resolve < monitor, "resolve-hostnames must come first");
        assert_eq!(
            l[monitor],
            "sentinel monitor a a-redis-0.a-redis-headless.team.svc.cluster.local 6379 2"
        );
        for want in [
            "port 0",
            "tls-port 26379",
            "tls-replication yes",
            "tls-auth-clients no",
            "sentinel announce-hostnames yes",
            "sentinel auth-user a replication",
            "sentinel down-after-milliseconds a 5000",
            "sentinel failover-timeout a 60000",
        ] {
            assert!(l.contains(&want), "missing {want:?}");
        }
    }

    #[test]
    fn valkey_uses_its_own_binaries() {
        let mut input = test_input(1, Persistence::None);
        input.engine = super::super::input::Engine::Valkey;
        assert!(render_start_server_script(&input).contains("SERVER=\"${SERVER:-valkey-server}\""));
        assert!(render_start_sentinel_script(&input)
            .contains("SENTINEL_BIN=\"${SENTINEL_BIN:-valkey-sentinel}\""));
        assert!(render_readiness_script(&input).contains("CLI=\"${CLI:-valkey-cli}\""));
        assert!(render_server_config(&input)
            .expect("renders")
            .starts_with("# valkey.conf"));
    }

    #[test]
    fn scripts_know_the_peers() {
        let input = test_input(2, Persistence::AppendOnly);
        let s = render_start_server_script(&input);
        assert!(s.contains("a-redis-sentinel-2.a-redis-sentinel.team.svc.cluster.local:26379}\""));
        assert!(s.contains("a-redis-2.a-redis-headless.team.svc.cluster.local:6379}\""));
        assert!(s.contains("PERSISTENCE=\"on\""));
        let dev = render_start_server_script(&test_input(0, Persistence::None));
        assert!(dev.contains("SENTINELS=\"${SENTINELS-}\""));
    }
}
