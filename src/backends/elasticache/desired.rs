//! The AWS state one RedisCache should have, derived purely from its resolved
//! spec, its names and its owner. The backend hands this to the AWS calls;
//! `plan` prints it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::naming::ResourceNames;
use super::spec::{ResolvedSpec, SubnetPlacement};
use crate::api::{ClusterMode, DeletionPolicy, Engine};
use crate::backends::Ownership;

/// Everything one RedisCache should be on AWS.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredCache {
    pub names: ResourceNames,
    pub owner: Ownership,
    /// User tags plus ownership tags, on every resource.
    pub tags: BTreeMap<String, String>,
    pub parameter_group: DesiredParameterGroup,
    pub network: DesiredNetwork,
    pub replication_group: DesiredReplicationGroup,
    pub deletion_policy: DeletionPolicy,
}

/// The parameter group `R-params-<family>`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredParameterGroup {
    pub name: String,
    pub family: String,
    pub description: String,
    /// Every user-set parameter, including `cluster-enabled`.
    pub parameters: BTreeMap<String, String>,
}

/// Subnet group and security group.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredNetwork {
    pub subnet_group: DesiredSubnetGroup,
    pub security_group: DesiredSecurityGroup,
    /// Extra security groups attached as they are.
    pub extra_security_group_ids: Vec<String>,
}

/// Where the nodes go.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum DesiredSubnetGroup {
    /// A subnet group `R` the operator creates and owns.
    Managed {
        name: String,
        subnet_ids: Vec<String>,
        description: String,
    },
    /// An existing subnet group, used as it is and never modified.
    Existing { name: String },
}

impl DesiredSubnetGroup {
    /// Name of the subnet group either way.
    pub fn name(&self) -> &str {
        match self {
            DesiredSubnetGroup::Managed { name, .. } | DesiredSubnetGroup::Existing { name } => {
                name
            }
        }
    }
}

/// The security group `R` and its ingress rules.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredSecurityGroup {
    pub name: String,
    pub description: String,
    /// Ingress is on this TCP port only.
    pub port: i32,
    pub allowed_cidrs: Vec<String>,
    pub allowed_security_group_ids: Vec<String>,
}

/// The replication group `R`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredReplicationGroup {
    pub id: String,
    pub description: String,
    pub engine: Engine,
    pub engine_version: String,
    pub node_type: String,
    pub cluster_mode: ClusterMode,
    pub shards: i32,
    pub replicas_per_shard: i32,
    pub multi_az: bool,
    pub automatic_failover: bool,
    pub port: i32,
    pub transit_encryption: bool,
    pub at_rest_encryption: bool,
    pub kms_key_id: Option<String>,
    pub snapshot_retention_days: i32,
    pub snapshot_window: Option<String>,
    pub maintenance_window: Option<String>,
    pub apply_immediately: bool,
}

impl DesiredCache {
    /// Derives the desired AWS state of RedisCache `namespace/name`.
    pub fn build(spec: &ResolvedSpec, names: ResourceNames, owner: Ownership) -> Self {
        let mut tags = spec.tags.clone();
        tags.extend(owner.tags());
        let described = format!("redis-cache-operator: RedisCache {}", owner.resource);

        let mut parameters = spec.parameters.clone();
        let cluster_enabled = match spec.cluster_mode {
            ClusterMode::Enabled => "yes",
            ClusterMode::Disabled => "no",
        };
        parameters.insert("cluster-enabled".into(), cluster_enabled.into());

        let subnet_group = match &spec.placement {
            SubnetPlacement::Subnets(ids) => DesiredSubnetGroup::Managed {
                name: names.subnet_group.clone(),
                subnet_ids: ids.clone(),
                description: described.clone(),
            },
            SubnetPlacement::ExistingGroup(name) => {
                DesiredSubnetGroup::Existing { name: name.clone() }
            }
        };

        Self {
            parameter_group: DesiredParameterGroup {
                name: names.parameter_group(spec.family),
                family: spec.family.to_string(),
                description: described.clone(),
                parameters,
            },
            network: DesiredNetwork {
                subnet_group,
                security_group: DesiredSecurityGroup {
                    name: names.security_group.clone(),
                    description: described.clone(),
                    port: spec.port,
                    allowed_cidrs: spec.allowed_cidrs.clone(),
                    allowed_security_group_ids: spec.allowed_security_group_ids.clone(),
                },
                extra_security_group_ids: spec.security_group_ids.clone(),
            },
            replication_group: DesiredReplicationGroup {
                id: names.replication_group_id.clone(),
                description: described,
                engine: spec.engine,
                engine_version: spec.engine_version.clone(),
                node_type: spec.node_type.clone(),
                cluster_mode: spec.cluster_mode,
                shards: spec.shards,
                replicas_per_shard: spec.replicas_per_shard,
                multi_az: spec.multi_az,
                automatic_failover: spec.multi_az || spec.cluster_mode == ClusterMode::Enabled,
                port: spec.port,
                transit_encryption: true,
                at_rest_encryption: spec.at_rest_encryption,
                kms_key_id: spec.kms_key_id.clone(),
                snapshot_retention_days: spec.snapshot_retention_days,
                snapshot_window: spec.snapshot_window.clone(),
                maintenance_window: spec.maintenance_window.clone(),
                apply_immediately: spec.apply_immediately,
            },
            deletion_policy: spec.deletion_policy,
            names,
            tags,
            owner,
        }
    }
}
