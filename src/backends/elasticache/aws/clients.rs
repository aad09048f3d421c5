//! The SDK configuration, loaded once at start-up, and the clients built
//! from it. Every call goes through [`Api::call`], which waits for the rate
//! limiter, classifies the error and counts the call.

use std::future::Future;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_elasticache::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::errors::{AwsError, ElastiCacheThrottlingClassifier, Verdict};
use super::metrics::AwsCallMetrics;
use super::operations::Operation;
use crate::backends::ratelimit::TokenBucket;
use crate::backends::turns::Turns;
use crate::backends::ErrorClass;

/// The SDK behaviour the operator was tested with. Pinned, so an SDK upgrade
/// cannot silently change retries or timeouts.
pub fn behavior_version() -> BehaviorVersion {
    BehaviorVersion::v2026_01_12()
}

/// Where one class's AWS calls go and as whom.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Account {
    pub region: String,
    /// An emulator or a VPC endpoint for every service.
    pub endpoint_url: Option<String>,
    /// A role the operator's own identity assumes for these calls.
    pub role_arn: Option<String>,
}

/// Loads the standard credential chain (IRSA/web identity, Pod Identity,
/// environment, profile) for `account`: the region is given, so nothing
/// asks the instance metadata service for one.
pub async fn load_sdk_config(account: &Account) -> SdkConfig {
    let mut loader =
        aws_config::defaults(behavior_version()).region(Region::new(account.region.clone()));
    if let Some(url) = account.endpoint_url.as_deref().filter(|u| !u.is_empty()) {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    let Some(role) = account.role_arn.as_deref().filter(|r| !r.is_empty()) else {
        return config;
    };
    let assumed = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name("redis-cache-operator")
        .configure(&config)
        .build()
        .await;
    config
        .into_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(assumed),
        )
        .build()
}

/// The two clients' configurations before they are built, so tests (and
/// future options) can add interceptors or overrides to both.
#[derive(Clone, Debug)]
pub struct ClientConfigs {
    pub elasticache: aws_sdk_elasticache::config::Builder,
    pub ec2: aws_sdk_ec2::config::Builder,
    pub tagging: aws_sdk_resourcegroupstagging::config::Builder,
}

impl From<&SdkConfig> for ClientConfigs {
    fn from(config: &SdkConfig) -> Self {
        Self {
            elasticache: aws_sdk_elasticache::config::Builder::from(config)
                .retry_classifier(ElastiCacheThrottlingClassifier),
            ec2: aws_sdk_ec2::config::Builder::from(config),
            tagging: aws_sdk_resourcegroupstagging::config::Builder::from(config),
        }
    }
}

/// What paces one account's calls. AWS throttles each API on its own, and
/// reads far more generously than changes (the EC2 API documents a bucket
/// per action), so reads and changes get a token bucket each, both at the
/// configured rate: the fleet reads never slow a creation down.
#[derive(Clone, Debug)]
pub struct Limits {
    pub reads: Arc<TokenBucket>,
    pub changes: Arc<TokenBucket>,
    /// Which reconciles may make changes now (see [`Turns`]).
    pub turns: Turns,
}

/// The clients, the limits and the counters every AWS call shares.
#[derive(Clone, Debug)]
pub struct Api {
    pub elasticache: aws_sdk_elasticache::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub tagging: aws_sdk_resourcegroupstagging::Client,
    limits: Limits,
    metrics: AwsCallMetrics,
}

impl Api {
    /// Builds the clients.
    pub fn new(configs: ClientConfigs, limits: Limits, metrics: AwsCallMetrics) -> Self {
        Self {
            elasticache: aws_sdk_elasticache::Client::from_conf(configs.elasticache.build()),
            ec2: aws_sdk_ec2::Client::from_conf(configs.ec2.build()),
            tagging: aws_sdk_resourcegroupstagging::Client::from_conf(configs.tagging.build()),
            limits,
            metrics,
        }
    }

    /// The line for changing calls.
    pub fn turns(&self) -> &Turns {
        &self.limits.turns
    }

    /// Runs one AWS call: waits for a token, sends, counts the outcome and
    /// classifies a failure. `request` must be lazy (an un-awaited `send()`).
    ///
    /// A read waits for a read token. A change is made only in a reconcile
    /// pass that holds a turn (or takes a free one): otherwise it is not
    /// sent and fails as [`AwsError::deferred`] (`Throttled`, with the
    /// cache's place in line in the message), so the reconcile releases its
    /// worker and is woken when its turn comes.
    pub async fn call<T, E, F>(&self, op: Operation, request: F) -> Result<T, AwsError>
    where
        F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let bucket = if op.is_read() {
            &self.limits.reads
        } else {
            if let Err(place) = self.limits.turns.enter() {
                tracing::debug!(
                    operation = op.name(),
                    ahead = place.ahead,
                    "AWS change waits for its turn"
                );
                return Err(AwsError::deferred(op, place));
            }
            &self.limits.changes
        };
        bucket.acquire().await;
        match request.await {
            Ok(out) => {
                self.metrics.record(op, "success");
                Ok(out)
            }
            Err(e) => {
                let err = AwsError::from_sdk(op, &e);
                if err.verdict == Verdict::Class(ErrorClass::Throttled) {
                    bucket.on_throttled();
                }
                self.metrics.record(op, err.outcome());
                tracing::debug!(operation = op.name(), error = %err, "AWS call failed");
                Err(err)
            }
        }
    }
}
