//! The one list of AWS operations the provider calls. Every call names its
//! operation here, so the metrics labels, the rate limiter and the IAM policy
//! test (`examples/iam-policy.json`) all agree on what the operator does.

/// The AWS service an operation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    ElastiCache,
    Ec2,
    /// The Resource Groups Tagging API: every resource's tags in pages.
    Tagging,
}

impl Service {
    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Service::ElastiCache => "elasticache",
            Service::Ec2 => "ec2",
            Service::Tagging => "tagging",
        }
    }

    /// Prefix of the service's IAM actions.
    pub fn iam_prefix(self) -> &'static str {
        match self {
            Service::ElastiCache => "elasticache",
            Service::Ec2 => "ec2",
            Service::Tagging => "tag",
        }
    }
}

macro_rules! operations {
    ($($service:ident :: $name:ident),* $(,)?) => {
        /// An AWS API operation the provider calls.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Operation {
            $($name,)*
        }

        impl Operation {
            /// Every operation the provider calls.
            pub const ALL: &'static [Operation] = &[$(Operation::$name,)*];

            /// The API name, e.g. `CreateReplicationGroup`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$name => stringify!($name),)*
                }
            }

            /// The service it belongs to.
            pub fn service(self) -> Service {
                match self {
                    $(Operation::$name => Service::$service,)*
                }
            }
        }
    };
}

operations! {
    ElastiCache::CreateCacheParameterGroup,
    ElastiCache::DescribeCacheParameterGroups,
    ElastiCache::DescribeCacheParameters,
    ElastiCache::ModifyCacheParameterGroup,
    ElastiCache::ResetCacheParameterGroup,
    ElastiCache::DeleteCacheParameterGroup,
    ElastiCache::CreateCacheSubnetGroup,
    ElastiCache::DescribeCacheSubnetGroups,
    ElastiCache::ModifyCacheSubnetGroup,
    ElastiCache::DeleteCacheSubnetGroup,
    ElastiCache::CreateReplicationGroup,
    ElastiCache::DescribeReplicationGroups,
    ElastiCache::DescribeCacheClusters,
    ElastiCache::ModifyReplicationGroup,
    ElastiCache::DeleteReplicationGroup,
    ElastiCache::ListTagsForResource,
    ElastiCache::AddTagsToResource,
    ElastiCache::RemoveTagsFromResource,
    ElastiCache::IncreaseReplicaCount,
    ElastiCache::DecreaseReplicaCount,
    ElastiCache::ModifyReplicationGroupShardConfiguration,
    ElastiCache::ListAllowedNodeTypeModifications,
    Ec2::DescribeSubnets,
    Ec2::DescribeSecurityGroups,
    Ec2::CreateSecurityGroup,
    Ec2::AuthorizeSecurityGroupIngress,
    Ec2::RevokeSecurityGroupIngress,
    Ec2::DeleteSecurityGroup,
    Ec2::CreateTags,
    Ec2::DeleteTags,
    Tagging::GetResources,
}

impl Operation {
    /// Whether it only reads. Reads are never deferred by the rate limiter
    /// (they are shared fleet reads, or the observe path of a cache AWS is
    /// changing); every other call waits its turn or is deferred.
    pub fn is_read(self) -> bool {
        let name = self.name();
        name.starts_with("Describe") || name.starts_with("List") || name.starts_with("Get")
    }

    /// The IAM action that allows it, e.g. `elasticache:CreateReplicationGroup`.
    pub fn iam_action(self) -> String {
        format!("{}:{}", self.service().iam_prefix(), self.name())
    }
}

/// IAM actions AWS checks on top of the operations themselves: a final snapshot needs
/// `CreateSnapshot`, and the first cache in an account creates ElastiCache's
/// service-linked role.
pub const IMPLIED_IAM_ACTIONS: &[&str] =
    &["elasticache:CreateSnapshot", "iam:CreateServiceLinkedRole"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_api_names() {
        assert_eq!(
            Operation::CreateReplicationGroup.iam_action(),
            "elasticache:CreateReplicationGroup"
        );
        assert_eq!(
            Operation::AuthorizeSecurityGroupIngress.iam_action(),
            "ec2:AuthorizeSecurityGroupIngress"
        );
        assert_eq!(Operation::ALL.len(), 31);
        assert_eq!(Operation::GetResources.iam_action(), "tag:GetResources");
        assert!(Operation::DescribeCacheParameters.is_read());
        assert!(!Operation::CreateTags.is_read());
    }
}

#[cfg(test)]
mod iam_policy {
    use std::collections::BTreeSet;

    use super::*;

    /// Every action the example policy grants.
    fn granted() -> BTreeSet<String> {
        let text = include_str!("../../../../examples/iam-policy.json");
        let policy: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        let mut actions = BTreeSet::new();
        for statement in policy["Statement"].as_array().expect("statements") {
            assert_eq!(statement["Effect"], "Allow");
            match &statement["Action"] {
                serde_json::Value::String(a) => {
                    actions.insert(a.clone());
                }
                serde_json::Value::Array(list) => {
                    for a in list {
                        actions.insert(a.as_str().expect("action").to_string());
                    }
                }
                other => panic!("unexpected Action {other}"),
            }
        }
        actions
    }

    #[test]
    fn the_policy_grants_every_operation_the_provider_calls() {
        let granted = granted();
        for op in Operation::ALL {
            assert!(
                granted.contains(&op.iam_action()),
                "examples/iam-policy.json lacks {}",
                op.iam_action()
            );
        }
        for implied in IMPLIED_IAM_ACTIONS {
            assert!(
                granted.contains(*implied),
                "examples/iam-policy.json lacks {implied}"
            );
        }
    }

    #[test]
    fn the_policy_grants_nothing_the_provider_does_not_need() {
        let needed: BTreeSet<String> = Operation::ALL
            .iter()
            .map(|op| op.iam_action())
            .chain(IMPLIED_IAM_ACTIONS.iter().map(|a| a.to_string()))
            .collect();
        let extra: Vec<String> = granted().difference(&needed).cloned().collect();
        assert!(extra.is_empty(), "least privilege: remove {extra:?}");
        assert!(
            !granted().iter().any(|a| a.contains('*')),
            "no wildcard actions"
        );
    }
}
