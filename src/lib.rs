//! redis-cache-operator: a Kubernetes operator that turns a `RedisCache`
//! resource into a managed Redis/Valkey cache on AWS ElastiCache.

pub mod apidoc;
pub mod aws;
pub mod cli;
pub mod conditions;
pub mod config;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod diff;
pub mod health;
pub mod http;
pub mod metrics;
pub mod naming;
pub mod plan;
pub mod provider;
pub mod rbac;
pub mod reconcile;
pub mod secret;
pub mod validation;

/// Installs the process-wide rustls crypto provider. Both kube and the AWS SDK
/// use rustls; without one installed explicitly rustls panics at first use
/// when more than one provider is linked.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
