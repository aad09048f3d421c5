//! ElastiCache backends on the AWS SDK, one per class, sharing an adapter
//! (so one rate limiter and one fleet poller) per AWS account.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{aws, ElastiCacheBackend};
use crate::api::{ProviderKind, RedisCacheClass};
use crate::backends::{Backend, BackendError, BackendFactory, ErrorClass};

/// Builds ElastiCache backends on the AWS SDK; classes with the same
/// account (region, endpoint, role) share one adapter, so one rate limiter
/// and one fleet poller.
pub struct AwsFactory {
    settings: aws::AwsSettings,
    /// `--aws-endpoint-url`: wins over every class's endpoint (emulators).
    endpoint_override: Option<String>,
    metrics: aws::metrics::AwsCallMetrics,
    wakeups: crate::backends::wakeups::Wakeups,
    accounts: tokio::sync::Mutex<HashMap<aws::clients::Account, Arc<aws::AwsElastiCache>>>,
}

impl AwsFactory {
    /// A factory whose adapters count their calls in `metrics`.
    pub fn new(
        settings: aws::AwsSettings,
        endpoint_override: Option<String>,
        metrics: aws::metrics::AwsCallMetrics,
    ) -> Self {
        Self {
            settings,
            endpoint_override: endpoint_override.filter(|u| !u.is_empty()),
            metrics,
            wakeups: Default::default(),
            accounts: Default::default(),
        }
    }

    /// Announces replication groups whose status changed on `wakeups`.
    pub fn waking(mut self, wakeups: crate::backends::wakeups::Wakeups) -> Self {
        self.wakeups = wakeups;
        self
    }
}

#[async_trait]
impl BackendFactory for AwsFactory {
    fn provider(&self) -> ProviderKind {
        ProviderKind::ElastiCache
    }

    async fn build(&self, class: &RedisCacheClass) -> Result<Arc<dyn Backend>, BackendError> {
        let block = class.spec.elasti_cache.clone().ok_or_else(|| {
            BackendError::new(
                ErrorClass::Rejected,
                Some("ClassInvalid"),
                "the class has no elastiCache block",
            )
        })?;
        let account = aws::clients::Account {
            region: block.region.clone(),
            endpoint_url: self
                .endpoint_override
                .clone()
                .or(block.endpoint_url.clone()),
            role_arn: block.role_arn.clone(),
        };
        let mut accounts = self.accounts.lock().await;
        let adapter = match accounts.get(&account) {
            Some(a) => a.clone(),
            None => {
                let a = aws::connect(
                    &account,
                    self.settings,
                    self.metrics.clone(),
                    self.wakeups.clone(),
                )
                .await;
                accounts.insert(account, a.clone());
                a
            }
        };
        Ok(Arc::new(ElastiCacheBackend::new(adapter, block)))
    }
}
