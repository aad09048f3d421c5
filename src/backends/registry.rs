//! Backends per RedisCacheClass: each provider has a factory, and a class's
//! backend is built the first time a cache of that class is reconciled (so
//! a cluster with only in-cluster caches never looks for AWS credentials),
//! then kept until the class's spec changes.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use kube::ResourceExt;
use tokio::sync::Mutex;

use super::{azure, elasticache, kubernetes, upstash, Backend, BackendError, ErrorClass};
use crate::api::{ProviderKind, RedisCacheClass};

/// What the process flags say about the backends' clients.
#[derive(Clone, Debug, Default)]
pub struct ClientSettings {
    /// Rate limit, burst and polling of every AWS account.
    pub aws: elasticache::aws::AwsSettings,
    /// `--aws-endpoint-url`: wins over every class's endpoint (emulators).
    pub aws_endpoint_url: Option<String>,
    /// The operator's namespace (let through each in-cluster cache's NetworkPolicy).
    pub operator_namespace: String,
}

/// Builds the backend of one class of its provider.
#[async_trait]
pub trait BackendFactory: Send + Sync + 'static {
    /// The provider it builds for.
    fn provider(&self) -> ProviderKind;
    /// The backend for `class` (its provider block is there: CEL and
    /// [`block_missing`] see to it).
    async fn build(&self, class: &RedisCacheClass) -> Result<Arc<dyn Backend>, BackendError>;
}

struct Built {
    /// The class spec it was built from, as JSON.
    spec: String,
    backend: Arc<dyn Backend>,
}

/// Every provider's factory and the backends built so far.
#[derive(Default)]
pub struct Registry {
    factories: HashMap<ProviderKind, Arc<dyn BackendFactory>>,
    built: Mutex<HashMap<String, Built>>,
    /// Backends announce caches to reconcile now (see [`super::wakeups`]).
    wakeups: super::wakeups::Wakeups,
}

impl Registry {
    /// A registry with no provider.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every provider this release has, one line each; their call counters
    /// are registered in `metrics`.
    pub fn production(
        settings: ClientSettings,
        metrics: &mut prometheus_client::registry::Registry,
        client: kube::Client,
    ) -> Self {
        let calls = BackendCalls::registered(metrics);
        let upstash_calls = calls.clone();
        let upstash_gate = upstash::LimitedGate::new(
            settings.aws.rate_limit,
            settings.aws.burst,
            move |op, outcome| upstash_calls.record("upstash", op, outcome),
        );
        let azure_calls = calls.clone();
        let azure_gate = azure::LimitedGate::new(
            settings.aws.rate_limit,
            settings.aws.burst,
            move |op, outcome| azure_calls.record("azure", op, outcome),
        );
        let wakeups = super::wakeups::Wakeups::default();
        Self {
            wakeups: wakeups.clone(),
            ..Self::empty()
        }
        .with(Arc::new(azure::AzureFactory::new(
            client.clone(),
            Arc::new(azure_gate),
        )))
        .with(Arc::new(
            elasticache::AwsFactory::new(
                settings.aws,
                settings.aws_endpoint_url,
                elasticache::aws::metrics::AwsCallMetrics::registered(metrics),
            )
            .waking(wakeups),
        ))
        .with(Arc::new(upstash::UpstashFactory::new(
            client.clone(),
            Arc::new(upstash_gate),
        )))
        .with(Arc::new(kubernetes::KubernetesFactory::new(
            client,
            settings.operator_namespace,
        )))
    }

    /// Where backends announce caches to reconcile now; a factory given
    /// to [`Registry::with`] announces on it when it was built with it.
    pub fn wakeups(&self) -> &super::wakeups::Wakeups {
        &self.wakeups
    }

    /// Adds (or replaces) a provider's factory.
    pub fn with(mut self, factory: Arc<dyn BackendFactory>) -> Self {
        self.factories.insert(factory.provider(), factory);
        self
    }

    /// The backend of `class`, built on first use and again after the
    /// class's spec changed.
    pub async fn for_class(
        &self,
        class: &RedisCacheClass,
    ) -> Result<Arc<dyn Backend>, BackendError> {
        let provider = class.spec.provider;
        let Some(factory) = self.factories.get(&provider) else {
            return Err(not_available(provider));
        };
        if let Some(m) = block_missing(class) {
            return Err(BackendError::new(
                ErrorClass::Rejected,
                Some("ClassInvalid"),
                m,
            ));
        }
        let spec = serde_json::to_string(&class.spec).unwrap_or_default();
        let mut built = self.built.lock().await;
        if let Some(b) = built.get(&class.name_any()) {
            if b.spec == spec {
                return Ok(b.backend.clone());
            }
        }
        let backend = factory.build(class).await?;
        built.insert(
            class.name_any(),
            Built {
                spec,
                backend: backend.clone(),
            },
        );
        Ok(backend)
    }
}

/// A backend of `class` that makes no calls: for `plan` (validate and plan only).
pub fn offline(class: &RedisCacheClass) -> Result<Arc<dyn Backend>, BackendError> {
    if let Some(m) = block_missing(class) {
        return Err(BackendError::new(
            ErrorClass::Rejected,
            Some("ClassInvalid"),
            m,
        ));
    }
    let s = &class.spec;
    match s.provider {
        ProviderKind::ElastiCache => s
            .elasti_cache
            .clone()
            .map(|b| Arc::new(elasticache::ElastiCacheBackend::offline(b)) as Arc<dyn Backend>),
        ProviderKind::Kubernetes => s
            .kubernetes
            .clone()
            .map(|b| Arc::new(kubernetes::KubernetesBackend::offline(b)) as Arc<dyn Backend>),
        ProviderKind::Upstash => s
            .upstash
            .clone()
            .map(|b| Arc::new(upstash::UpstashBackend::offline(b)) as Arc<dyn Backend>),
        ProviderKind::Azure => s
            .azure
            .clone()
            .map(|b| Arc::new(azure::AzureBackend::offline(b)) as Arc<dyn Backend>),
    }
    .ok_or_else(|| not_available(s.provider))
}

/// Why the class's provider block does not match its provider, if it does not.
pub fn block_missing(class: &RedisCacheClass) -> Option<String> {
    let s = &class.spec;
    let blocks = [
        (
            ProviderKind::ElastiCache,
            "elastiCache",
            s.elasti_cache.is_some(),
        ),
        (
            ProviderKind::Kubernetes,
            "kubernetes",
            s.kubernetes.is_some(),
        ),
        (ProviderKind::Upstash, "upstash", s.upstash.is_some()),
        (ProviderKind::Azure, "azure", s.azure.is_some()),
    ];
    let wrong: Vec<&str> = blocks
        .iter()
        .filter(|(p, _, set)| (*p == s.provider) != *set)
        .map(|(_, name, _)| *name)
        .collect();
    (!wrong.is_empty()).then(|| {
        format!(
            "RedisCacheClass {} must set exactly the spec.{} block for provider {} (check: {})",
            class.name_any(),
            blocks
                .iter()
                .find(|(p, _, _)| *p == s.provider)
                .map(|(_, n, _)| *n)
                .unwrap_or_default(),
            s.provider,
            wrong.join(", ")
        )
    })
}

fn not_available(provider: ProviderKind) -> BackendError {
    let mut e = BackendError::new(
        ErrorClass::Rejected,
        Some("ProviderNotAvailable"),
        format!(
            "provider {provider} is not available in this release of redis-cache-operator; use a class with provider ElastiCache, Kubernetes, Upstash or Azure"
        ),
    );
    e.reason = Some("ProviderNotAvailable");
    e
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct CallLabels {
    backend: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

/// `backend_calls_total{backend,operation,outcome}` for the HTTP backends
/// (ElastiCache keeps its own `aws_calls_total`).
#[derive(Clone, Debug, Default)]
pub struct BackendCalls {
    calls: prometheus_client::metrics::family::Family<
        CallLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl BackendCalls {
    /// Counters registered in `registry`.
    pub fn registered(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self::default();
        registry.register(
            "backend_calls",
            "Backend API calls by backend, operation and outcome",
            m.calls.clone(),
        );
        m
    }

    /// Counts one call.
    pub fn record(&self, backend: &'static str, operation: &'static str, outcome: &'static str) {
        self.calls
            .get_or_create(&CallLabels {
                backend,
                operation,
                outcome,
            })
            .inc();
    }
}
