//! redis-cache-operator: a Kubernetes operator that turns a `RedisCache`
//! resource into a production-grade Redis/Valkey cache on the backend its
//! `RedisCacheClass` names, with a Secret holding a ready `rediss://` URI.
//!
//! Dependencies point one way: `main`/[`cli`] → [`controller`] →
//! [`reconcile`] → [`backends`] → [`api`].

pub mod api;
pub mod apidoc;
pub mod backends;
pub mod cache_watch;
pub mod cli;
pub mod controller;
pub mod health;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod rbac;
pub mod reconcile;

/// Installs the process-wide rustls crypto provider. Both kube and the AWS SDK
/// use rustls; without one installed explicitly rustls panics at first use
/// when more than one provider is linked.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
