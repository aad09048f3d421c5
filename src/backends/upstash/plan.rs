//! Pure mapping from a cache's spec to Upstash terms: `memory` → plan,
//! endpoint normalisation, and the connection values for the Secret
//! (DESIGN §4.3).

use crate::backends::Credential;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// An Upstash Redis plan, by the names the Developer API uses.
///
/// Source: the `plan_name` enum of "Change Database Plan"
/// (https://upstash.com/docs/devops/developer-api/redis/change_plan):
/// `free, payg, fixed_250mb, fixed_1gb, fixed_5gb, fixed_10gb, fixed_50gb,
/// fixed_100gb, fixed_500gb`. The same names are accepted by "Create a Redis
/// Database" (`plan`). `free` is deliberately absent: an operator-managed cache
/// is never put on the free tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plan {
    /// Fixed 250 MB.
    Fixed250Mb,
    /// Fixed 1 GB.
    Fixed1Gb,
    /// Fixed 5 GB.
    Fixed5Gb,
    /// Fixed 10 GB.
    Fixed10Gb,
    /// Fixed 50 GB.
    Fixed50Gb,
    /// Fixed 100 GB.
    Fixed100Gb,
    /// Fixed 500 GB.
    Fixed500Gb,
    /// Pay-as-you-go, billed per command, capped by the class's budget.
    PayAsYouGo,
}

/// Fixed plans, smallest first, with their data size in bytes.
///
/// Sizes from the plan names and the pricing page
/// (https://upstash.com/pricing/redis: "Fixed 250MB $10/month", "Fixed 1GB
/// $20/month", …). Upstash counts in powers of two — its `db_memory_threshold`
/// is 1073741824 for a 1 GB database (get_database example) — and so does a
/// Kubernetes `memory: 1Gi`, so `1Gi` must land on `fixed_1gb`, not `fixed_5gb`.
pub const FIXED_PLANS: [(Plan, u64); 7] = [
    (Plan::Fixed250Mb, 250 * MIB),
    (Plan::Fixed1Gb, GIB),
    (Plan::Fixed5Gb, 5 * GIB),
    (Plan::Fixed10Gb, 10 * GIB),
    (Plan::Fixed50Gb, 50 * GIB),
    (Plan::Fixed100Gb, 100 * GIB),
    (Plan::Fixed500Gb, 500 * GIB),
];

/// Largest data size of pay-as-you-go: "Max data size 100 GB"
/// (https://upstash.com/docs/redis/overall/billing, Pay-As-You-Go table).
pub const PAY_AS_YOU_GO_MAX_BYTES: u64 = 100 * GIB;

/// Upstash's public DNS zone for database endpoints.
pub const ENDPOINT_DOMAIN: &str = "upstash.io";

impl Plan {
    /// The name the API takes in `plan` / `plan_name`.
    pub fn api_name(self) -> &'static str {
        match self {
            Plan::Fixed250Mb => "fixed_250mb",
            Plan::Fixed1Gb => "fixed_1gb",
            Plan::Fixed5Gb => "fixed_5gb",
            Plan::Fixed10Gb => "fixed_10gb",
            Plan::Fixed50Gb => "fixed_50gb",
            Plan::Fixed100Gb => "fixed_100gb",
            Plan::Fixed500Gb => "fixed_500gb",
            Plan::PayAsYouGo => "payg",
        }
    }

    /// The plan for an API name; `None` for names we do not manage (`free`, …).
    pub fn from_api_name(name: &str) -> Option<Plan> {
        FIXED_PLANS
            .iter()
            .map(|(p, _)| *p)
            .chain(std::iter::once(Plan::PayAsYouGo))
            .find(|p| p.api_name() == name)
    }

    /// The plan's data size limit in bytes.
    pub fn max_bytes(self) -> u64 {
        match self {
            Plan::PayAsYouGo => PAY_AS_YOU_GO_MAX_BYTES,
            fixed => FIXED_PLANS
                .iter()
                .find(|(p, _)| *p == fixed)
                .map_or(0, |(_, size)| *size),
        }
    }
}

/// The smallest fixed plan whose data size is at least `memory` bytes, or
/// `None` when `memory` is bigger than every fixed plan.
pub fn smallest_fixed_plan(memory: u64) -> Option<Plan> {
    FIXED_PLANS
        .iter()
        .find(|(_, size)| *size >= memory)
        .map(|(plan, _)| *plan)
}

/// The plan for a cache: pay-as-you-go when the class asks for it (if
/// `memory` fits its 100 GB cap), else the smallest fixed plan.
pub fn choose_plan(memory: u64, pay_as_you_go: bool) -> Option<Plan> {
    if pay_as_you_go {
        (memory <= PAY_AS_YOU_GO_MAX_BYTES).then_some(Plan::PayAsYouGo)
    } else {
        smallest_fixed_plan(memory)
    }
}

/// The database's host. Newer API answers give a bare slug
/// (`"endpoint": "beloved-stallion-58500"`), older ones the full host
/// (`"eu2-sought-mollusk-30143.upstash.io"`); clients need the full host.
/// Anything with a dot is taken as a host already and kept as it is.
pub fn normalize_endpoint(endpoint: &str) -> String {
    let e = endpoint.trim().trim_end_matches('.');
    if e.is_empty() || e.contains('.') {
        e.to_string()
    } else {
        format!("{e}.{ENDPOINT_DOMAIN}")
    }
}

/// What the connection Secret gets for an Upstash cache (DESIGN §4.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionValues {
    /// Full host name.
    pub host: String,
    /// TLS port.
    pub port: u16,
    /// The Redis password (for the Secret's `password` key).
    pub password: Credential,
    /// `rediss://default:<password>@host:port`.
    pub uri: Credential,
    /// `https://host`: what `UPSTASH_REDIS_REST_URL` expects.
    pub rest_url: String,
    /// Read-write REST token (`UPSTASH_REDIS_REST_TOKEN`).
    pub rest_token: Credential,
    /// Read-only REST token.
    pub read_only_rest_token: Credential,
}

impl ConnectionValues {
    /// The Secret's keys and values for Upstash (`host`, `port`, `password`,
    /// `uri`, `restUrl`, `restToken`, `readOnlyRestToken`). The common keys
    /// (`type`, `provider`, `tls`, …) are the caller's.
    pub fn secret_entries(&self) -> Vec<(&'static str, String)> {
        vec![
            ("host", self.host.clone()),
            ("port", self.port.to_string()),
            ("password", self.password.expose().to_string()),
            ("uri", self.uri.expose().to_string()),
            ("restUrl", self.rest_url.clone()),
            ("restToken", self.rest_token.expose().to_string()),
            (
                "readOnlyRestToken",
                self.read_only_rest_token.expose().to_string(),
            ),
        ]
    }
}

/// The connection values for a database's endpoint (slug or host), port and
/// credentials.
pub fn connection_values(
    endpoint: &str,
    port: u16,
    password: &Credential,
    rest_token: &Credential,
    read_only_rest_token: &Credential,
) -> ConnectionValues {
    let host = normalize_endpoint(endpoint);
    let uri = Credential::new(format!(
        "rediss://default:{}@{host}:{port}",
        encode_userinfo(password.expose())
    ));
    ConnectionValues {
        rest_url: format!("https://{host}"),
        host,
        port,
        password: password.clone(),
        uri,
        rest_token: rest_token.clone(),
        read_only_rest_token: read_only_rest_token.clone(),
    }
}

/// Percent-encodes a URI userinfo part. Upstash passwords are hex today, but
/// a `@`, `:` or `/` would otherwise break every client's URI parser.
fn encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_plan_boundaries() {
        assert_eq!(smallest_fixed_plan(0), Some(Plan::Fixed250Mb));
        assert_eq!(smallest_fixed_plan(1), Some(Plan::Fixed250Mb));
        assert_eq!(smallest_fixed_plan(250 * MIB), Some(Plan::Fixed250Mb));
        assert_eq!(smallest_fixed_plan(250 * MIB + 1), Some(Plan::Fixed1Gb));
        assert_eq!(smallest_fixed_plan(GIB), Some(Plan::Fixed1Gb));
        assert_eq!(smallest_fixed_plan(GIB + 1), Some(Plan::Fixed5Gb));
        assert_eq!(smallest_fixed_plan(5 * GIB), Some(Plan::Fixed5Gb));
        assert_eq!(smallest_fixed_plan(5 * GIB + 1), Some(Plan::Fixed10Gb));
        assert_eq!(smallest_fixed_plan(10 * GIB), Some(Plan::Fixed10Gb));
        assert_eq!(smallest_fixed_plan(10 * GIB + 1), Some(Plan::Fixed50Gb));
        assert_eq!(smallest_fixed_plan(50 * GIB), Some(Plan::Fixed50Gb));
        assert_eq!(smallest_fixed_plan(50 * GIB + 1), Some(Plan::Fixed100Gb));
        assert_eq!(smallest_fixed_plan(100 * GIB), Some(Plan::Fixed100Gb));
        assert_eq!(smallest_fixed_plan(100 * GIB + 1), Some(Plan::Fixed500Gb));
        assert_eq!(smallest_fixed_plan(500 * GIB), Some(Plan::Fixed500Gb));
        assert_eq!(smallest_fixed_plan(500 * GIB + 1), None);
        assert_eq!(smallest_fixed_plan(u64::MAX), None);
    }

    #[test]
    fn decimal_sizes_round_up_sensibly() {
        // `memory: 1G` (10^9) fits the 1 GiB plan; `256Mi` does not fit 250 MiB.
        assert_eq!(smallest_fixed_plan(1_000_000_000), Some(Plan::Fixed1Gb));
        assert_eq!(smallest_fixed_plan(256 * MIB), Some(Plan::Fixed1Gb));
    }

    #[test]
    fn pay_as_you_go_when_asked() {
        assert_eq!(choose_plan(GIB, true), Some(Plan::PayAsYouGo));
        assert_eq!(choose_plan(100 * GIB, true), Some(Plan::PayAsYouGo));
        assert_eq!(choose_plan(100 * GIB + 1, true), None);
        assert_eq!(choose_plan(100 * GIB + 1, false), Some(Plan::Fixed500Gb));
        assert_eq!(choose_plan(GIB, false), Some(Plan::Fixed1Gb));
    }

    #[test]
    fn api_names_round_trip() {
        for (plan, _) in FIXED_PLANS {
            assert_eq!(Plan::from_api_name(plan.api_name()), Some(plan));
            assert!(plan.api_name().starts_with("fixed_"));
        }
        assert_eq!(Plan::from_api_name("payg"), Some(Plan::PayAsYouGo));
        assert_eq!(Plan::from_api_name("free"), None);
        assert_eq!(Plan::Fixed500Gb.max_bytes(), 500 * GIB);
        assert_eq!(Plan::PayAsYouGo.max_bytes(), 100 * GIB);
    }

    #[test]
    fn plans_are_sorted_by_size() {
        assert!(FIXED_PLANS.windows(2).all(|w| w[0].1 < w[1].1));
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            normalize_endpoint("us1-fancy-cat-12345"),
            "us1-fancy-cat-12345.upstash.io"
        );
        assert_eq!(
            normalize_endpoint("eu2-sought-mollusk-30143.upstash.io"),
            "eu2-sought-mollusk-30143.upstash.io"
        );
        assert_eq!(
            normalize_endpoint(" beloved-stallion-58500 "),
            "beloved-stallion-58500.upstash.io"
        );
        assert_eq!(
            normalize_endpoint("db.example.internal."),
            "db.example.internal"
        );
        assert_eq!(normalize_endpoint(""), "");
    }

    #[test]
    fn connection() {
        let v = connection_values(
            "us1-fancy-cat-12345",
            6379,
            &Credential::new("pa55"),
            &Credential::new("AX-rw"),
            &Credential::new("An-ro"),
        );
        assert_eq!(v.host, "us1-fancy-cat-12345.upstash.io");
        assert_eq!(v.port, 6379);
        assert_eq!(
            v.uri.expose(),
            "rediss://default:pa55@us1-fancy-cat-12345.upstash.io:6379"
        );
        assert_eq!(v.rest_url, "https://us1-fancy-cat-12345.upstash.io");
        assert_eq!(v.rest_token.expose(), "AX-rw");
        assert_eq!(v.read_only_rest_token.expose(), "An-ro");
        let keys: Vec<_> = v.secret_entries().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "host",
                "port",
                "password",
                "uri",
                "restUrl",
                "restToken",
                "readOnlyRestToken"
            ]
        );
        let debug = format!("{v:?}");
        assert!(
            !debug.contains("pa55") && !debug.contains("AX-rw"),
            "{debug}"
        );
    }

    #[test]
    fn uri_password_is_encoded() {
        let v = connection_values(
            "h.upstash.io",
            1,
            &Credential::new("a@b:c/d"),
            &Credential::new("t"),
            &Credential::new("r"),
        );
        assert_eq!(
            v.uri.expose(),
            "rediss://default:a%40b%3Ac%2Fd@h.upstash.io:1"
        );
    }
}
