//! The API: the `RedisCache` and `RedisCacheClass` custom resources
//! (`rediscache.dev/v1alpha1`), their conditions, and the validation of the
//! portable fields. Nothing here knows a backend or a client.

mod cache;
mod class;
pub mod conditions;
pub mod quantity;
pub mod validation;

pub use cache::*;
pub use class::*;

/// The CRDs as one YAML stream, exactly as `redis-cache-operator crd` prints it.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    use kube::CustomResourceExt;
    let cache = serde_yaml_ng::to_string(&RedisCache::crd())?;
    let class = serde_yaml_ng::to_string(&RedisCacheClass::crd())?;
    Ok(format!("{cache}---\n{class}"))
}
