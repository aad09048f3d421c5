//! The one list of AWS operations the provider calls. Every call names its
//! operation here, so the metrics labels, the rate limiter and the IAM policy
//! test (`examples/iam-policy.json`) all agree on what the operator does.

/// The AWS service an operation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    ElastiCache,
    Ec2,
}

impl Service {
    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Service::ElastiCache => "elasticache",
            Service::Ec2 => "ec2",
        }
    }

    /// Prefix of the service's IAM actions.
    pub fn iam_prefix(self) -> &'static str {
        match self {
            Service::ElastiCache => "elasticache",
            Service::Ec2 => "ec2",
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
    Ec2::DescribeSubnets,
    Ec2::DescribeSecurityGroups,
    Ec2::CreateSecurityGroup,
    Ec2::AuthorizeSecurityGroupIngress,
    Ec2::RevokeSecurityGroupIngress,
    Ec2::DeleteSecurityGroup,
}

impl Operation {
    /// The IAM action that allows it, e.g. `elasticache:CreateReplicationGroup`.
    pub fn iam_action(self) -> String {
        format!("{}:{}", self.service().iam_prefix(), self.name())
    }
}

/// IAM actions AWS checks on top of the operations themselves: tagging on
/// create needs the tagging permission, a final snapshot needs
/// `CreateSnapshot`, and the first cache in an account creates ElastiCache's
/// service-linked role.
pub const IMPLIED_IAM_ACTIONS: &[&str] = &[
    "elasticache:AddTagsToResource",
    "elasticache:CreateSnapshot",
    "ec2:CreateTags",
    "iam:CreateServiceLinkedRole",
];

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
        assert_eq!(Operation::ALL.len(), 22);
    }
}
