//! The backend identity `R` of a cache (DESIGN §4): a readable prefix
//! (cluster, namespace, name; lowercased, other characters replaced) plus 8
//! hex characters of a SHA-256 over the exact triple, at most 40 characters,
//! which fits the name rules of ElastiCache and Upstash alike. The hash is
//! always there: without it `a-b/c` and `a/b-c` would collide once joined.

use sha2::{Digest, Sha256};

/// Longest identity.
pub const MAX_LEN: usize = 40;
const HASH_LEN: usize = 8;

/// The identity of `namespace/name` in cluster `cluster`.
///
/// The id is a readable prefix (cluster, namespace, name, lowercased, invalid
/// characters replaced) plus 8 hex characters of a SHA-256 over the exact
/// triple. The hash is always there: without it `a-b/c` and `a/b-c` would
/// collide once joined with `-`.
pub fn derive(cluster: &str, namespace: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{cluster}\0{namespace}\0{name}").as_bytes());
    let hash: String = digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    let readable = sanitize(&format!("{cluster}-{namespace}-{name}"));
    let mut prefix: String = if readable.starts_with(|c: char| c.is_ascii_lowercase()) {
        readable
    } else {
        format!("r{readable}")
    };
    prefix.truncate(MAX_LEN - HASH_LEN - 1);
    let prefix = prefix.trim_end_matches('-');
    format!("{prefix}-{hash}")
}

/// Lowercase, `[a-z0-9-]` only, no `--`, no leading or trailing `-`.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_string()
}
