//! The cache subnet group: `R` created from the spec's subnets and kept to
//! them, or a named existing group that is only checked to exist. Either way
//! its VPC is where the security group goes. Groups come from the shared
//! listing ([`Inventory`]) and subnets' VPCs from its cache.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticache::types::CacheSubnetGroup;

use super::clients::Api;
use super::errors::AwsError;
use super::inventory::Inventory;
use super::operations::Operation;
use super::tags::{self, TagCache};
use crate::backends::BackendError;
use crate::backends::Ownership;
use crate::backends::{Deletion, ErrorClass};

const WHAT: &str = "subnet group";

/// Creates or checks the managed subnet group `name` and returns its VPC.
#[allow(clippy::too_many_arguments)]
pub async fn ensure_managed(
    api: &Api,
    inventory: &Inventory,
    tag_cache: &TagCache,
    owner: &Ownership,
    name: &str,
    subnet_ids: &[String],
    description: &str,
    tags: &BTreeMap<String, String>,
) -> Result<String, BackendError> {
    let group = match inventory.subnet_group(name).await? {
        Some(group) => {
            check_owner(api, tag_cache, owner, &group, name).await?;
            let current: BTreeSet<&str> = group
                .subnets()
                .iter()
                .filter_map(|s| s.subnet_identifier())
                .collect();
            let wanted: BTreeSet<&str> = subnet_ids.iter().map(String::as_str).collect();
            if current == wanted {
                group
            } else {
                vpc_of_subnets(inventory, subnet_ids).await?;
                let modified = modify(api, name, subnet_ids).await?.unwrap_or(group);
                inventory.subnet_groups.put(name, modified.clone());
                modified
            }
        }
        None => {
            vpc_of_subnets(inventory, subnet_ids).await?;
            match create(api, name, subnet_ids, description, tags).await {
                Ok(group) => {
                    if let Some(arn) = group.arn() {
                        tag_cache.remember(arn, tags.clone());
                    }
                    inventory.subnet_groups.put(name, group.clone());
                    group
                }
                Err(e) if e.is_already_exists() => {
                    let group = describe(api, name)
                        .await?
                        .ok_or_else(|| BackendError::from(e))?;
                    // It exists, whoever owns it: the listing knows now.
                    inventory.subnet_groups.put(name, group.clone());
                    check_owner(api, tag_cache, owner, &group, name).await?;
                    group
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    if let Some(arn) = group.arn() {
        tag_cache.sync(api, arn, tags).await?;
    }
    match group.vpc_id() {
        Some(vpc) if !vpc.is_empty() => Ok(vpc.to_string()),
        _ => vpc_of_subnets(inventory, subnet_ids).await,
    }
}

/// Checks that the existing group `name` (not ours, never modified) exists
/// and returns its VPC.
pub async fn check_existing(
    api: &Api,
    inventory: &Inventory,
    name: &str,
) -> Result<String, BackendError> {
    // Not ours, so possibly made since the listing: absence is asked of AWS.
    let group = match inventory.subnet_group(name).await? {
        Some(g) => Some(g),
        None => {
            let described = describe(api, name).await?;
            if let Some(g) = &described {
                inventory.subnet_groups.put(name, g.clone());
            }
            described
        }
    };
    let Some(group) = group else {
        return Err(BackendError::new(
            ErrorClass::Rejected,
            Some("CacheSubnetGroupNotFoundFault"),
            format!("subnet group {name} named in spec.network.subnetGroupName does not exist; create it or use spec.network.subnetIds"),
        ));
    };
    match group.vpc_id() {
        Some(vpc) if !vpc.is_empty() => Ok(vpc.to_string()),
        _ => {
            let ids: Vec<String> = group
                .subnets()
                .iter()
                .filter_map(|s| s.subnet_identifier().map(str::to_string))
                .collect();
            vpc_of_subnets(inventory, &ids).await
        }
    }
}

async fn check_owner(
    api: &Api,
    tag_cache: &TagCache,
    owner: &Ownership,
    group: &CacheSubnetGroup,
    name: &str,
) -> Result<(), BackendError> {
    let arn = group.arn().ok_or_else(|| missing_arn(name))?;
    tag_cache.check_owner(api, WHAT, name, arn, owner).await
}

fn missing_arn(name: &str) -> BackendError {
    BackendError::new(
        ErrorClass::Transient,
        None,
        format!("AWS described {WHAT} {name} without an ARN; cannot check its owner"),
    )
}

/// The VPC all of `subnet_ids` are in; `Rejected` when they span several
/// or do not exist.
pub async fn vpc_of_subnets(
    inventory: &Inventory,
    subnet_ids: &[String],
) -> Result<String, BackendError> {
    if subnet_ids.is_empty() {
        return Err(BackendError::new(
            ErrorClass::Rejected,
            None,
            "no subnets: set spec.network.subnetIds or the operator's default subnets",
        ));
    }
    let found = inventory.subnet_vpcs(subnet_ids).await?;
    let vpcs: BTreeSet<&str> = found.values().map(String::as_str).collect();
    let mut iter = vpcs.iter();
    match (iter.next(), iter.next()) {
        (Some(vpc), None) => Ok((*vpc).to_string()),
        (None, _) => Err(BackendError::new(
            ErrorClass::Rejected,
            None,
            format!("subnets {} were not found", subnet_ids.join(", ")),
        )),
        (Some(_), Some(_)) => Err(BackendError::new(
            ErrorClass::Rejected,
            None,
            format!(
                "subnets {} are in different VPCs ({}); a cache's subnets must share one VPC",
                subnet_ids.join(", "),
                vpcs.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// One page of at most 20 subnet groups: the cheapest read that shows the
/// credentials work (a class's `Ready`).
pub async fn probe(api: &Api) -> Result<(), BackendError> {
    api.call(
        Operation::DescribeCacheSubnetGroups,
        api.elasticache
            .describe_cache_subnet_groups()
            .max_records(20)
            .send(),
    )
    .await?;
    Ok(())
}

/// The group `name`, `None` when it does not exist.
async fn describe(api: &Api, name: &str) -> Result<Option<CacheSubnetGroup>, AwsError> {
    let result = api
        .call(
            Operation::DescribeCacheSubnetGroups,
            api.elasticache
                .describe_cache_subnet_groups()
                .cache_subnet_group_name(name)
                .send(),
        )
        .await;
    Ok(super::errors::found(result)?.and_then(|out| {
        out.cache_subnet_groups()
            .iter()
            .find(|g| g.cache_subnet_group_name() == Some(name))
            .cloned()
    }))
}

async fn create(
    api: &Api,
    name: &str,
    subnet_ids: &[String],
    description: &str,
    tags: &BTreeMap<String, String>,
) -> Result<CacheSubnetGroup, AwsError> {
    let out = api
        .call(
            Operation::CreateCacheSubnetGroup,
            api.elasticache
                .create_cache_subnet_group()
                .cache_subnet_group_name(name)
                .cache_subnet_group_description(description)
                .set_subnet_ids(Some(subnet_ids.to_vec()))
                .set_tags(Some(tags::to_elasticache(tags)))
                .send(),
        )
        .await?;
    Ok(out.cache_subnet_group().cloned().unwrap_or_else(|| {
        CacheSubnetGroup::builder()
            .cache_subnet_group_name(name)
            .build()
    }))
}

async fn modify(
    api: &Api,
    name: &str,
    subnet_ids: &[String],
) -> Result<Option<CacheSubnetGroup>, AwsError> {
    let out = api
        .call(
            Operation::ModifyCacheSubnetGroup,
            api.elasticache
                .modify_cache_subnet_group()
                .cache_subnet_group_name(name)
                .set_subnet_ids(Some(subnet_ids.to_vec()))
                .send(),
        )
        .await?;
    tracing::info!(subnet_group = name, "subnets brought to the spec");
    Ok(out.cache_subnet_group().cloned())
}

/// Deletes the group if it is ours.
pub async fn delete(
    api: &Api,
    inventory: &Inventory,
    tag_cache: &TagCache,
    owner: &Ownership,
    name: &str,
) -> Result<Deletion, BackendError> {
    // Gone when a listing at most a minute old does not have it.
    let Some(group) = inventory.subnet_group_for_delete(name).await? else {
        return Ok(Deletion::Gone);
    };
    let arn = group.arn().ok_or_else(|| missing_arn(name))?;
    let delete = api.call(
        Operation::DeleteCacheSubnetGroup,
        api.elasticache
            .delete_cache_subnet_group()
            .cache_subnet_group_name(name)
            .send(),
    );
    let deleted = tag_cache.delete_if_owned(api, owner, arn, delete).await?;
    if deleted == Deletion::Gone {
        inventory.subnet_groups.remove(name);
    }
    Ok(deleted)
}
