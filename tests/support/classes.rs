//! RedisCacheClasses for tests: the ElastiCache class every test cache uses
//! by default, a registry on the in-memory fake, and a class store.
//!
//! Include it with `#[path = "support/classes.rs"] mod classes;`.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;

use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use redis_cache_operator::api::{
    ClassDefaults, ElastiCacheClass, Engine, ProviderKind, RedisCacheClass, RedisCacheClassSpec,
    DEFAULT_CLASS_ANNOTATION,
};
use redis_cache_operator::backends::fake::{FakeElastiCache, FakeFactory};
use redis_cache_operator::backends::Registry;

/// An ElastiCache class with two subnets and one CIDR, marked default, with
/// `redis` as its default engine (what an install from before classes gets
/// in docs/upgrading.md).
pub fn elasticache(name: &str) -> RedisCacheClass {
    let mut class = RedisCacheClass::new(
        name,
        RedisCacheClassSpec {
            provider: ProviderKind::ElastiCache,
            defaults: Some(ClassDefaults {
                engine: Some(Engine::Redis),
                ..ClassDefaults::default()
            }),
            allowed_namespaces: Vec::new(),
            allowed_namespace_selector: None,
            elasti_cache: Some(ElastiCacheClass {
                region: "eu-west-1".into(),
                subnet_ids: vec!["subnet-0a".into(), "subnet-0b".into()],
                allowed_cidrs: vec!["10.0.0.0/16".into()],
                ..ElastiCacheClass::default()
            }),
            kubernetes: None,
            upstash: None,
            azure: None,
        },
    );
    class.metadata.annotations =
        Some([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into());
    class
}

/// Backends on `fake` for every ElastiCache class.
pub fn registry(fake: Arc<FakeElastiCache>) -> Arc<Registry> {
    Arc::new(Registry::empty().with(Arc::new(FakeFactory { fake })))
}

/// A ready class store holding `classes`.
pub fn store(classes: Vec<RedisCacheClass>) -> Store<RedisCacheClass> {
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for c in classes {
        writer.apply_watcher_event(&watcher::Event::InitApply(c));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    // The reader stays valid after the writer is dropped.
    std::mem::forget(writer);
    reader
}

/// Creates `class` on the API server behind `client`.
pub async fn install(client: &kube::Client, class: RedisCacheClass) {
    let api: kube::Api<RedisCacheClass> = kube::Api::all(client.clone());
    api.create(&kube::api::PostParams::default(), &class)
        .await
        .expect("create RedisCacheClass");
}
