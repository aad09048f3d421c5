//! Redaction of credentials from messages shown to users (conditions,
//! Events, logs). Values the operator knows (every [`super::Credential`]
//! made: tokens in Secrets, pending rotation tokens, class credentials) are
//! replaced wherever they appear. A fallback catches only what looks like a
//! credential the operator generates (64 alphanumerics), so a backend's own
//! words, such as the operation name `ListAllowedNodeTypeModifications`,
//! reach the user intact.

use std::collections::HashSet;
use std::sync::{OnceLock, RwLock};

/// What a redacted value becomes.
pub const REDACTED: &str = "[redacted]";
/// Shorter values are never registered: they would redact ordinary words.
const MIN_KNOWN_LEN: usize = 8;
/// Length of the credentials the operator generates.
const GENERATED_LEN: usize = 64;
/// The registry stops growing here (a credential per cache and rotation).
const MAX_KNOWN: usize = 200_000;

fn known() -> &'static RwLock<HashSet<String>> {
    static KNOWN: OnceLock<RwLock<HashSet<String>>> = OnceLock::new();
    KNOWN.get_or_init(|| RwLock::new(HashSet::new()))
}

/// Remembers `value` so that [`redact`] removes it from every message.
pub fn remember(value: &str) {
    if value.len() < MIN_KNOWN_LEN {
        return;
    }
    let mut set = known().write().unwrap_or_else(|e| e.into_inner());
    if set.len() < MAX_KNOWN && !set.contains(value) {
        set.insert(value.to_string());
    }
}

/// `message` with every known credential, and every run of exactly 64
/// alphanumerics (the shape of a generated one), replaced by `[redacted]`.
pub fn redact(message: &str) -> String {
    let mut out = message.to_string();
    {
        let set = known().read().unwrap_or_else(|e| e.into_inner());
        for value in set.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
    }
    redact_generated_shape(&out)
}

fn redact_generated_shape(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() == GENERATED_LEN {
            out.push_str(REDACTED);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in message.chars() {
        if c.is_ascii_alphanumeric() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_are_redacted_and_backend_words_are_kept() {
        let secret = "Zq9-known_secret.value";
        remember(secret);
        let m = redact(&format!(
            "ListAllowedNodeTypeModifications failed for {secret}"
        ));
        assert_eq!(m, "ListAllowedNodeTypeModifications failed for [redacted]");
    }

    #[test]
    fn generated_shape_is_redacted_even_when_unknown() {
        let token = "b".repeat(64);
        assert_eq!(
            redact(&format!("Invalid AuthToken {token} for group k8s-shop-x")),
            "Invalid AuthToken [redacted] for group k8s-shop-x"
        );
        let long_word = "a".repeat(40);
        assert_eq!(redact(&long_word), long_word, "not the generated shape");
    }

    #[test]
    fn short_values_are_not_registered() {
        remember("abc");
        assert_eq!(redact("abc def"), "abc def");
    }
}
