//! Parsing what Redis answers: `INFO` text, `CLUSTER SHARDS` and `CLUSTER NODES`.

use redis::Value;

/// The `INFO` fields the probe reports; `None` when the server did not send one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InfoFields {
    pub used_memory: Option<u64>,
    /// `maxmemory`; 0 means no limit.
    pub maxmemory: Option<u64>,
    pub keyspace_hits: Option<u64>,
    pub keyspace_misses: Option<u64>,
    pub evicted_keys: Option<u64>,
    pub connected_clients: Option<u64>,
}

/// Reads the fields the probe needs from `INFO` output (`key:value` lines in
/// `# Section` blocks); unknown and malformed lines are ignored.
pub fn parse_info(text: &str) -> InfoFields {
    let mut out = InfoFields::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "used_memory" => &mut out.used_memory,
            "maxmemory" => &mut out.maxmemory,
            "keyspace_hits" => &mut out.keyspace_hits,
            "keyspace_misses" => &mut out.keyspace_misses,
            "evicted_keys" => &mut out.evicted_keys,
            "connected_clients" => &mut out.connected_clients,
            _ => continue,
        };
        if let Ok(v) = value.trim().parse() {
            *slot = Some(v);
        }
    }
    out
}

/// Where a shard primary listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

/// The primaries in a `CLUSTER SHARDS` reply (RESP2 flat key/value arrays or
/// RESP3 maps). The host is the node's hostname when it announces one (TLS
/// certificates name hosts, not addresses), else its endpoint, else its IP;
/// the port is `tls-port` when `tls` is set and the node has one.
pub fn parse_cluster_shards(reply: &Value, tls: bool) -> Result<Vec<NodeAddr>, String> {
    let Value::Array(shards) = reply else {
        return Err("CLUSTER SHARDS did not answer with an array".into());
    };
    let mut primaries = Vec::new();
    for shard in shards {
        let shard = pairs(shard).ok_or("a CLUSTER SHARDS entry is not a map")?;
        let Some(Value::Array(nodes)) = field(&shard, "nodes") else {
            return Err("a CLUSTER SHARDS entry has no nodes".into());
        };
        for node in nodes {
            let node = pairs(node).ok_or("a CLUSTER SHARDS node is not a map")?;
            let role = field(&node, "role").and_then(text).unwrap_or_default();
            if role != "master" && role != "primary" {
                continue;
            }
            let host = ["hostname", "endpoint", "ip"]
                .iter()
                .filter_map(|k| field(&node, k).and_then(text))
                .find(|h| !h.is_empty() && h != "?")
                .ok_or("a shard primary has no hostname, endpoint or ip")?;
            let port = if tls { field(&node, "tls-port") } else { None }
                .or_else(|| field(&node, "port"))
                .and_then(int)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("shard primary {host} has no port"))?;
            primaries.push(NodeAddr { host, port });
        }
    }
    Ok(primaries)
}

/// The primaries in `CLUSTER NODES` output (for servers before Redis 7).
/// `fallback_host` stands in for a node that does not know its own address.
pub fn parse_cluster_nodes(text: &str, fallback_host: &str) -> Vec<NodeAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        let primary = flags.iter().any(|f| *f == "master" || *f == "primary");
        if !primary || flags.contains(&"noaddr") {
            continue;
        }
        // `ip:port@cport[,hostname]`
        let (addr, hostname) = match addr.split_once(',') {
            Some((a, h)) => (a, h),
            None => (*addr, ""),
        };
        let addr = addr.split('@').next().unwrap_or(addr);
        let Some((ip, port)) = addr.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let host = [hostname, ip]
            .into_iter()
            .find(|h| !h.is_empty())
            .unwrap_or(fallback_host);
        out.push(NodeAddr {
            host: host.to_string(),
            port,
        });
    }
    out
}

/// A RESP2 flat `[k1, v1, k2, v2, ...]` array or a RESP3 map, as pairs.
fn pairs(v: &Value) -> Option<Vec<(&Value, &Value)>> {
    match v {
        Value::Array(items) if items.len() % 2 == 0 => {
            Some(items.chunks(2).map(|c| (&c[0], &c[1])).collect())
        }
        Value::Map(items) => Some(items.iter().map(|(k, v)| (k, v)).collect()),
        _ => None,
    }
}

fn field<'a>(pairs: &[(&'a Value, &'a Value)], name: &str) -> Option<&'a Value> {
    pairs
        .iter()
        .find(|(k, _)| text(k).as_deref() == Some(name))
        .map(|(_, v)| *v)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str =
        "# Server\r\nredis_version:7.0.15\r\n\r\n# Clients\r\nconnected_clients:3\r\n\
        \r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:104857600\r\n\
        \r\n# Stats\r\nkeyspace_hits:93\r\nkeyspace_misses:7\r\nevicted_keys:12\r\n\
        \r\n# Keyspace\r\ndb0:keys=10,expires=0,avg_ttl=0\r\n";

    #[test]
    fn info_fields_are_read() {
        let f = parse_info(INFO);
        assert_eq!(
            f,
            InfoFields {
                used_memory: Some(1_048_576),
                maxmemory: Some(104_857_600),
                keyspace_hits: Some(93),
                keyspace_misses: Some(7),
                evicted_keys: Some(12),
                connected_clients: Some(3),
            }
        );
    }

    #[test]
    fn missing_or_malformed_info_fields_are_none() {
        let f = parse_info("used_memory:abc\nconnected_clients:5\nnonsense\n");
        assert_eq!(f.used_memory, None);
        assert_eq!(f.connected_clients, Some(5));
        assert_eq!(f.maxmemory, None);
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn node(role: &str, hostname: &str, ip: &str, port: i64, tls_port: Option<i64>) -> Value {
        let mut v = vec![bulk("id"), bulk("abc"), bulk("port"), Value::Int(port)];
        if let Some(t) = tls_port {
            v.extend([bulk("tls-port"), Value::Int(t)]);
        }
        v.extend([
            bulk("ip"),
            bulk(ip),
            bulk("endpoint"),
            bulk(ip),
            bulk("hostname"),
            bulk(hostname),
            bulk("role"),
            bulk(role),
            bulk("replication-offset"),
            Value::Int(72156),
            bulk("health"),
            bulk("online"),
        ]);
        Value::Array(v)
    }

    fn shard(nodes: Vec<Value>) -> Value {
        Value::Array(vec![
            bulk("slots"),
            Value::Array(vec![Value::Int(0), Value::Int(8191)]),
            bulk("nodes"),
            Value::Array(nodes),
        ])
    }

    #[test]
    fn cluster_shards_yield_primaries_by_hostname_and_tls_port() {
        let reply = Value::Array(vec![
            shard(vec![
                node(
                    "master",
                    "a-0001-001.x.cache.amazonaws.com",
                    "10.0.0.1",
                    0,
                    Some(6379),
                ),
                node(
                    "replica",
                    "a-0001-002.x.cache.amazonaws.com",
                    "10.0.0.2",
                    0,
                    Some(6379),
                ),
            ]),
            shard(vec![
                node("replica", "", "10.0.1.2", 6380, None),
                node("master", "", "10.0.1.1", 6380, None),
            ]),
        ]);
        let primaries = parse_cluster_shards(&reply, true).expect("parses");
        assert_eq!(
            primaries,
            vec![
                NodeAddr {
                    host: "a-0001-001.x.cache.amazonaws.com".into(),
                    port: 6379
                },
                NodeAddr {
                    host: "10.0.1.1".into(),
                    port: 6380
                },
            ]
        );
    }

    #[test]
    fn cluster_shards_as_resp3_maps() {
        let map = |pairs: Vec<(&str, Value)>| {
            Value::Map(pairs.into_iter().map(|(k, v)| (bulk(k), v)).collect())
        };
        let reply = Value::Array(vec![map(vec![
            ("slots", Value::Array(vec![])),
            (
                "nodes",
                Value::Array(vec![map(vec![
                    ("port", Value::Int(7000)),
                    ("hostname", bulk("node-1")),
                    ("role", bulk("primary")),
                ])]),
            ),
        ])]);
        assert_eq!(
            parse_cluster_shards(&reply, false).expect("parses"),
            vec![NodeAddr {
                host: "node-1".into(),
                port: 7000
            }]
        );
    }

    #[test]
    fn malformed_cluster_shards_is_an_error() {
        assert!(parse_cluster_shards(&bulk("nope"), true).is_err());
        let no_port = Value::Array(vec![shard(vec![Value::Array(vec![
            bulk("hostname"),
            bulk("h"),
            bulk("role"),
            bulk("master"),
        ])])]);
        assert!(parse_cluster_shards(&no_port, true).is_err());
    }

    #[test]
    fn cluster_nodes_yield_primaries() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 10.0.0.2:6379@16379,a-0001-002.example replica e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 10.0.0.1:6379@16379,a-0001-001.example myself,master - 0 0 1 connected 0-5460
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 10.0.1.1:6380@16380 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f :6381@16381 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 10.0.1.9:6379@16379 master,fail,noaddr - 0 0 5 disconnected
";
        assert_eq!(
            parse_cluster_nodes(text, "config.example"),
            vec![
                NodeAddr {
                    host: "a-0001-001.example".into(),
                    port: 6379
                },
                NodeAddr {
                    host: "10.0.1.1".into(),
                    port: 6380
                },
                NodeAddr {
                    host: "config.example".into(),
                    port: 6381
                },
            ]
        );
    }
}
