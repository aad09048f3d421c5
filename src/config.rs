//! Operator-wide defaults set once by the platform team (flags or environment,
//! usually from Helm values), so application teams never need VPC details.

use clap::Args;

use crate::crd::{DeletionPolicy, Engine};

/// Defaults applied to every RedisCache that leaves a field unset.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct OperatorDefaults {
    /// Name of this Kubernetes cluster; part of every AWS resource name and the `rediscache.dev/cluster` tag, so several clusters can share one AWS account.
    #[arg(long, env = "CLUSTER_NAME", default_value = "k8s")]
    pub cluster_name: String,

    /// Engine for caches that do not set spec.engine.
    #[arg(long, env = "DEFAULT_ENGINE", default_value = "redis")]
    pub default_engine: Engine,

    /// Node type for caches that do not set spec.nodeType.
    #[arg(long, env = "DEFAULT_NODE_TYPE", default_value = "cache.t4g.micro")]
    pub default_node_type: String,

    /// Existing ElastiCache subnet group for caches that set no network placement.
    #[arg(long, env = "DEFAULT_SUBNET_GROUP_NAME")]
    pub default_subnet_group_name: Option<String>,

    /// Subnet ids (comma-separated) for caches that set no network placement.
    #[arg(long, env = "DEFAULT_SUBNET_IDS", value_delimiter = ',')]
    pub default_subnet_ids: Vec<String>,

    /// CIDR blocks (comma-separated) allowed to connect when spec.network.allowedCidrs is unset; usually the cluster's node subnets.
    #[arg(long, env = "DEFAULT_ALLOWED_CIDRS", value_delimiter = ',')]
    pub default_allowed_cidrs: Vec<String>,

    /// Security groups (comma-separated) allowed to connect to every cache, e.g. the EKS node security group.
    #[arg(
        long,
        env = "DEFAULT_ALLOWED_SECURITY_GROUP_IDS",
        value_delimiter = ','
    )]
    pub default_allowed_security_group_ids: Vec<String>,

    /// Extra security groups (comma-separated) attached to every cache as they are.
    #[arg(long, env = "DEFAULT_SECURITY_GROUP_IDS", value_delimiter = ',')]
    pub default_security_group_ids: Vec<String>,

    /// Deletion policy for caches that do not set spec.deletionPolicy: Delete, Snapshot or Retain.
    #[arg(long, env = "DEFAULT_DELETION_POLICY", default_value = "Delete")]
    pub default_deletion_policy: DeletionPolicy,
}

impl Default for OperatorDefaults {
    fn default() -> Self {
        Self {
            cluster_name: "k8s".into(),
            default_engine: Engine::Redis,
            default_node_type: "cache.t4g.micro".into(),
            default_subnet_group_name: None,
            default_subnet_ids: Vec::new(),
            default_allowed_cidrs: Vec::new(),
            default_allowed_security_group_ids: Vec::new(),
            default_security_group_ids: Vec::new(),
            default_deletion_policy: DeletionPolicy::Delete,
        }
    }
}
