//! The connection Secret: credential generation and the keys applications
//! read, the same on every backend (plus the backend's own keys).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use rand::distr::{Alphanumeric, SampleString};

use crate::backends::{Connection, Credential, Endpoint};

/// Label on every Secret this operator writes (the controller watches by it).
pub const MANAGED_BY_LABEL: &str = "rediscache.dev/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "redis-cache-operator";
/// Label with the uid of the RedisCache a Secret belongs to; it survives
/// `deletionPolicy: Retain`, which drops the owner reference.
pub const OWNER_UID_LABEL: &str = "rediscache.dev/owner-uid";
/// Key holding the AUTH token.
pub const PASSWORD_KEY: &str = "password";
/// Keys the operator writes itself; `extraKeys` may not reuse them.
pub use crate::api::validation::RESERVED_KEYS;
const TOKEN_LEN: usize = 64;

/// A new AUTH token: 64 alphanumeric characters from the OS-seeded CSPRNG.
pub fn generate_token() -> Credential {
    Credential::new(Alphanumeric.sample_string(&mut rand::rng(), TOKEN_LEN))
}

/// The Secret's data: only the token before the cache is available, every key after.
pub fn render_data(
    token: &Credential,
    connection: Option<&Connection>,
    extra_keys: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([(PASSWORD_KEY.to_string(), token.expose().to_string())]);
    let Some(c) = connection else {
        return data;
    };
    let uri = |e: &Endpoint| {
        format!(
            "rediss://{}:{}@{}:{}",
            c.username,
            token.expose(),
            e.host,
            e.port
        )
    };
    let mut values = BTreeMap::from([
        ("uri", uri(&c.endpoint)),
        ("host", c.endpoint.host.clone()),
        ("port", c.endpoint.port.to_string()),
        ("password", token.expose().to_string()),
    ]);
    if let Some(r) = &c.reader {
        values.insert("readerHost", r.host.clone());
        values.insert("readerUri", uri(r));
    }
    if let Some(ca) = c.extra.get("ca.crt") {
        values.insert("caCert", ca.clone());
    }
    for (k, v) in &values {
        if *k != "caCert" {
            data.insert(k.to_string(), v.clone());
        }
    }
    for (k, v) in &c.extra {
        data.insert(k.clone(), v.clone());
        if matches!(k.as_str(), "restUrl" | "restToken") {
            values.insert(k.as_str(), v.clone());
        }
    }
    data.insert("type".into(), "redis".into());
    data.insert("provider".into(), c.provider.into());
    data.insert("tls".into(), "true".into());
    data.insert("clusterMode".into(), c.cluster_mode.as_str().into());
    for (key, template) in extra_keys {
        data.insert(key.clone(), fill(template, &values));
    }
    data
}

/// Replaces `{name}` placeholders; unknown ones (refused by validation) stay as they are.
fn fill(template: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    // Placeholders without a value on this backend become empty.
    for name in ["readerHost", "readerUri", "caCert", "restUrl", "restToken"] {
        out = out.replace(&format!("{{{name}}}"), "");
    }
    out
}

/// The Secret object to server-side apply.
pub fn build(
    name: &str,
    namespace: &str,
    owner: Option<OwnerReference>,
    owner_uid: &str,
    data: BTreeMap<String, String>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
                (OWNER_UID_LABEL.to_string(), owner_uid.to_string()),
            ])),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The token stored in a Secret, if any.
pub fn token_of(secret: &Secret) -> Option<Credential> {
    let bytes = secret.data.as_ref()?.get(PASSWORD_KEY)?;
    let value = String::from_utf8(bytes.0.clone()).ok()?;
    (!value.is_empty()).then(|| Credential::new(value))
}

/// Whether a Secret was written by this operator for the RedisCache `owner_uid`.
pub fn belongs_to(secret: &Secret, owner_uid: &str) -> bool {
    let labels = secret.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    label(MANAGED_BY_LABEL) == Some(MANAGED_BY_VALUE) && label(OWNER_UID_LABEL) == Some(owner_uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(reader: bool) -> Connection {
        Connection {
            endpoint: Endpoint {
                host: "primary.cache.example".into(),
                port: 6379,
            },
            reader: reader.then(|| Endpoint {
                host: "reader.cache.example".into(),
                port: 6379,
            }),
            cluster_mode: crate::api::ClusterMode::Disabled,
            provider: "example-backend",
            username: "",
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn tokens_are_64_alphanumerics_and_differ() {
        let a = generate_token();
        let b = generate_token();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn before_the_cache_is_available_only_the_token_is_written() {
        let t = Credential::new("t0k3n");
        let data = render_data(&t, None, &BTreeMap::new());
        assert_eq!(
            data,
            BTreeMap::from([("password".to_string(), "t0k3n".to_string())])
        );
    }

    #[test]
    fn complete_secret_has_every_key() {
        let t = Credential::new("t0k3n");
        let extra = BTreeMap::from([
            ("SPRING_DATA_REDIS_URL".to_string(), "{uri}".to_string()),
            ("READ".to_string(), "{readerUri}".to_string()),
            ("HOSTPORT".to_string(), "{host}:{port}".to_string()),
        ]);
        let data = render_data(&t, Some(&connection(true)), &extra);
        assert_eq!(data["type"], "redis");
        assert_eq!(data["provider"], "example-backend");
        assert_eq!(data["host"], "primary.cache.example");
        assert_eq!(data["port"], "6379");
        assert_eq!(data["password"], "t0k3n");
        assert_eq!(data["tls"], "true");
        assert_eq!(data["uri"], "rediss://:t0k3n@primary.cache.example:6379");
        assert_eq!(data["readerHost"], "reader.cache.example");
        assert_eq!(
            data["readerUri"],
            "rediss://:t0k3n@reader.cache.example:6379"
        );
        assert_eq!(data["clusterMode"], "Disabled");
        assert!(
            data["SPRING_DATA_REDIS_URL"] == data["uri"],
            "extra key renders {{uri}}"
        );
        assert_eq!(data["READ"], data["readerUri"]);
        assert_eq!(data["HOSTPORT"], "primary.cache.example:6379");
    }

    #[test]
    fn reader_keys_only_with_a_reader_endpoint() {
        let t = Credential::new("t");
        let extra = BTreeMap::from([("R".to_string(), "{readerHost}".to_string())]);
        let data = render_data(&t, Some(&connection(false)), &extra);
        assert!(!data.contains_key("readerHost"));
        assert!(!data.contains_key("readerUri"));
        assert_eq!(data["R"], "");
    }

    #[test]
    fn ownership_and_token_are_read_back() {
        let s = build(
            "a-redis",
            "ns",
            None,
            "uid-1",
            BTreeMap::from([("password".into(), "x".into())]),
        );
        assert!(belongs_to(&s, "uid-1"));
        assert!(!belongs_to(&s, "uid-2"));
        assert_eq!(
            token_of(&s).map(|t| t.expose().to_string()),
            Some("x".into())
        );
        assert!(!belongs_to(&Secret::default(), "uid-1"));
    }
}
