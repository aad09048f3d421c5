//! The AWS calls counter on `/metrics`: by service, operation and outcome.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::operations::Operation;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    region: String,
    endpoint: String,
    /// `reads` or `changes`: each has its own token bucket.
    calls: &'static str,
}

/// Counts AWS calls and shows each account's client-side rate. Clones
/// share the counters.
#[derive(Clone, Debug, Default)]
pub struct AwsCallMetrics {
    calls: Family<CallLabels, Counter>,
    rate_limit: Family<AccountLabels, Gauge<f64, AtomicU64>>,
}

impl AwsCallMetrics {
    /// Counters not yet registered anywhere (tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters registered as `aws_calls_total` in `registry`.
    pub fn registered(registry: &mut Registry) -> Self {
        let m = Self::new();
        registry.register(
            "aws_calls",
            "AWS API calls by service, operation and outcome",
            m.calls.clone(),
        );
        registry.register(
            "aws_rate_limit",
            "Client-side AWS call rate in effect (calls per second) per account, for reads and for changes; below the configured rate while recovering from throttling",
            m.rate_limit.clone(),
        );
        m
    }

    /// The rate gauge of the account in `region` behind `endpoint` (empty:
    /// AWS) for `calls`, `reads` or `changes`.
    pub fn rate_gauge(
        &self,
        region: &str,
        endpoint: &str,
        calls: &'static str,
    ) -> Gauge<f64, AtomicU64> {
        self.rate_limit
            .get_or_create(&AccountLabels {
                region: region.to_string(),
                endpoint: endpoint.to_string(),
                calls,
            })
            .clone()
    }

    /// Counts one call of `op` with `outcome` (`success` or an error class).
    pub fn record(&self, op: Operation, outcome: &'static str) {
        self.calls
            .get_or_create(&CallLabels {
                service: op.service().label(),
                operation: op.name(),
                outcome,
            })
            .inc();
    }

    /// Calls of `op` with `outcome` so far.
    pub fn count(&self, op: Operation, outcome: &'static str) -> u64 {
        self.calls
            .get(&CallLabels {
                service: op.service().label(),
                operation: op.name(),
                outcome,
            })
            .map(|c| c.get())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_exported_with_their_labels() {
        let mut registry = Registry::with_prefix("redis_cache_operator");
        let m = AwsCallMetrics::registered(&mut registry);
        m.record(Operation::DescribeReplicationGroups, "success");
        m.record(Operation::DescribeReplicationGroups, "success");
        m.record(Operation::CreateSecurityGroup, "throttled");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        assert!(out.contains(r#"redis_cache_operator_aws_calls_total{service="elasticache",operation="DescribeReplicationGroups",outcome="success"} 2"#), "{out}");
        assert!(out.contains(r#"redis_cache_operator_aws_calls_total{service="ec2",operation="CreateSecurityGroup",outcome="throttled"} 1"#), "{out}");
        assert_eq!(m.count(Operation::CreateSecurityGroup, "throttled"), 1);
    }
}
