//! The per-cache CA and server certificate (rcgen), and when to renew them.
//!
//! The CA key lives in its own Secret that no pod mounts; the TLS Secret the
//! pods mount holds only `ca.crt`, `tls.crt` and `tls.key`. Renewal signs a
//! new server certificate with the same CA, so clients that trust `ca.crt`
//! from the connection Secret keep working.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::config::SENTINEL_REPLICAS;
use super::input::CacheInput;

/// Lifetime of a server certificate.
pub const SERVER_CERT_VALIDITY: SignedDuration = SignedDuration::from_hours(365 * 24);
/// Lifetime of the per-cache CA.
pub const CA_VALIDITY: SignedDuration = SignedDuration::from_hours(10 * 365 * 24);
/// Backdating, so a node whose clock is a little behind accepts a fresh certificate.
const CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// Key of the CA certificate in the TLS Secret (and the connection Secret).
pub const CA_CERT_KEY: &str = "ca.crt";
/// Key of the server certificate in the TLS Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Key of the server key in the TLS Secret.
pub const TLS_KEY_KEY: &str = "tls.key";
/// Key of the CA key in the CA Secret.
pub const CA_KEY_KEY: &str = "ca.key";

/// Creating or parsing certificates failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused the parameters or a key.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A time outside what X.509 can hold.
    #[error("certificate validity: {0}")]
    Time(String),
}

/// A CA: certificate and key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CaMaterial {
    /// `ca.crt`.
    pub cert_pem: String,
    /// `ca.key`; never logged.
    pub key_pem: String,
}

impl fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaMaterial")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What the TLS Secret holds.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerMaterial {
    /// `ca.crt`.
    pub ca_pem: String,
    /// `tls.crt`.
    pub cert_pem: String,
    /// `tls.key`; never logged.
    pub key_pem: String,
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
}

impl fmt::Debug for ServerMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMaterial")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Every name a client, a replica or a Sentinel may use to reach a pod of
/// this cache: the three data Services and the Sentinel Service in each DNS
/// form, every data and Sentinel pod through its headless Service, and
/// loopback for the probes.
pub fn server_sans(input: &CacheInput) -> Vec<String> {
    let ns = &input.namespace;
    let mut sans = Vec::new();
    for service in [
        input.server_name(),
        input.replicas_service_name(),
        input.headless_service_name(),
        input.sentinel_name(),
    ] {
        sans.push(service.clone());
        sans.push(format!("{service}.{ns}"));
        sans.push(format!("{service}.{ns}.svc"));
        sans.push(format!("{service}.{ns}.svc.cluster.local"));
    }
    let pods = (0..input.pod_count()).map(|i| {
        (
            format!("{}-{i}", input.server_name()),
            input.headless_service_name(),
        )
    });
    let sentinels = (0..SENTINEL_REPLICAS).map(|i| {
        (
            format!("{}-{i}", input.sentinel_name()),
            input.sentinel_name(),
        )
    });
    for (pod, service) in pods.chain(sentinels) {
        sans.push(format!("{pod}.{service}.{ns}.svc"));
        sans.push(format!("{pod}.{service}.{ns}.svc.cluster.local"));
    }
    sans.push("localhost".into());
    sans.push("127.0.0.1".into());
    sans
}

fn to_offset(t: Timestamp) -> Result<time::OffsetDateTime, TlsError> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second())
        .map_err(|e| TlsError::Time(e.to_string()))
}

/// The CA's parameters. Deterministic, so the CA can sign again later from
/// its stored key alone (the issuer name and key identifier are derived from
/// these and the key).
fn ca_params(input: &CacheInput) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("{}/{} redis-cache CA", input.namespace, input.name),
    );
    dn.push(DnType::OrganizationName, "redis-cache-operator");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// A new CA for `input`, valid [`CA_VALIDITY`] from `now`.
pub fn new_ca(input: &CacheInput, now: Timestamp) -> Result<CaMaterial, TlsError> {
    let mut params = ca_params(input)?;
    params.not_before = to_offset(now - CLOCK_SKEW)?;
    params.not_after = to_offset(now + CA_VALIDITY)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(CaMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new server certificate and key for every name in [`server_sans`],
/// signed by `ca`, valid [`SERVER_CERT_VALIDITY`] from `now`.
pub fn issue_server(
    input: &CacheInput,
    ca: &CaMaterial,
    now: Timestamp,
) -> Result<ServerMaterial, TlsError> {
    let issuer = Issuer::new(ca_params(input)?, KeyPair::from_pem(&ca.key_pem)?);
    let mut params = CertificateParams::new(server_sans(input))?;
    params
        .distinguished_name
        .push(DnType::CommonName, input.server_name());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // Server and client: replicas and Sentinels present it when they connect out.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let not_before = now - CLOCK_SKEW;
    let not_after = now + SERVER_CERT_VALIDITY;
    params.not_before = to_offset(not_before)?;
    params.not_after = to_offset(not_after)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ServerMaterial {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_before,
        not_after,
    })
}

/// Whether a certificate valid from `not_before` to `not_after` should be
/// replaced at `now`: less than a third of its lifetime left (as cert-manager
/// does), or already expired, or a validity that makes no sense.
pub fn needs_renewal(not_before: Timestamp, not_after: Timestamp, now: Timestamp) -> bool {
    let lifetime = not_after.as_second() - not_before.as_second();
    if lifetime <= 0 {
        return true;
    }
    let left = not_after.as_second() - now.as_second();
    left * 3 < lifetime
}

#[cfg(test)]
mod tests {
    use super::super::input::{test_input, Persistence};
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn sans_cover_services_pods_sentinels_and_loopback() {
        let sans = server_sans(&test_input(2, Persistence::AppendOnly));
        for want in [
            "a-redis",
            "a-redis.team",
            "a-redis.team.svc",
            "a-redis.team.svc.cluster.local",
            "a-redis-replicas.team.svc.cluster.local",
            "a-redis-headless.team.svc",
            "a-redis-0.a-redis-headless.team.svc",
            "a-redis-2.a-redis-headless.team.svc.cluster.local",
            "a-redis-sentinel.team.svc.cluster.local",
            "a-redis-sentinel-2.a-redis-sentinel.team.svc.cluster.local",
            "localhost",
            "127.0.0.1",
        ] {
            assert!(sans.iter().any(|s| s == want), "missing SAN {want}");
        }
        assert!(!sans.iter().any(|s| s.starts_with("a-redis-3.")));
    }

    #[test]
    fn issued_certificate_chains_to_the_ca_and_renewal_reuses_it() {
        let input = test_input(1, Persistence::None);
        let now = ts("2026-12-01T00:00:00Z");
        let ca = new_ca(&input, now).expect("ca");
        let first = issue_server(&input, &ca, now).expect("server");
        let second =
            issue_server(&input, &ca, now + SignedDuration::from_hours(24)).expect("renewed");
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_ne!(first.key_pem, second.key_pem);
        assert!(first.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(first.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            first.not_after.duration_since(first.not_before),
            SERVER_CERT_VALIDITY + CLOCK_SKEW
        );
        assert!(!format!("{first:?} {ca:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn renewal_when_a_third_is_left() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = ts("2026-01-31T00:00:00Z"); // 30 days
        assert!(!needs_renewal(nb, na, ts("2026-01-02T00:00:00Z")));
        assert!(!needs_renewal(nb, na, ts("2026-01-20T23:00:00Z"))); // 10d 1h left
        assert!(needs_renewal(nb, na, ts("2026-01-21T01:00:00Z"))); // < 10 days left
        assert!(needs_renewal(nb, na, ts("2026-02-05T00:00:00Z"))); // expired
        assert!(needs_renewal(na, nb, ts("2026-01-02T00:00:00Z"))); // nonsense validity
    }
}
