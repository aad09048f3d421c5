//! The parameter group `R-params`: created with its family and tags,
//! parameters brought to the spec (set in batches of 20, removed ones reset).
//! The group comes from the shared listing ([`Inventory`]); what its user
//! layer holds is known from our own writes and read back from AWS on the
//! inventory's slow schedule, which corrects drift made in the console.

use std::collections::BTreeMap;

use aws_sdk_elasticache::types::{CacheParameterGroup, ParameterNameValue};

use super::clients::Api;
use super::errors::AwsError;
use super::inventory::Inventory;
use super::operations::Operation;
use super::tags::{self, TagCache};
use crate::backends::elasticache::api::ParameterGroupState;
use crate::backends::elasticache::desired::DesiredParameterGroup;
use crate::backends::BackendError;
use crate::backends::Ownership;
use crate::backends::{Deletion, ErrorClass};

/// ElastiCache takes at most 20 parameters per Modify/Reset call.
pub const BATCH: usize = 20;

const WHAT: &str = "parameter group";

/// Creates the group if absent (refusing a foreign one) and syncs parameters.
pub async fn ensure(
    api: &Api,
    inventory: &Inventory,
    tag_cache: &TagCache,
    owner: &Ownership,
    desired: &DesiredParameterGroup,
    tags: &BTreeMap<String, String>,
) -> Result<ParameterGroupState, BackendError> {
    let name = &desired.name;
    let group = match inventory.parameter_group(name).await? {
        Some(group) => {
            check_owner(api, tag_cache, owner, &group, name).await?;
            group
        }
        None => match create(api, desired, tags).await {
            Ok(group) => {
                if let Some(arn) = group.arn() {
                    tag_cache.remember(arn, tags.clone());
                }
                inventory.parameter_groups.put(name, group.clone());
                // A new group's user layer is empty.
                inventory.remember_parameters(name, BTreeMap::new());
                group
            }
            // Created by us before a crash, or by someone else meanwhile.
            Err(e) if e.is_already_exists() => {
                let group = describe(api, name)
                    .await?
                    .ok_or_else(|| BackendError::from(e))?;
                // It exists, whoever owns it: the listing knows now.
                inventory.parameter_groups.put(name, group.clone());
                check_owner(api, tag_cache, owner, &group, name).await?;
                group
            }
            Err(e) => return Err(e.into()),
        },
    };
    if let Some(arn) = group.arn() {
        tag_cache.sync(api, arn, tags).await?;
    }
    let family = group.cache_parameter_group_family().unwrap_or_default();
    if family != desired.family {
        return Err(BackendError::new(
            ErrorClass::Rejected,
            None,
            format!(
                "parameter group {name} has family {family} but the spec needs {}; the operator keeps one parameter group per family (R-params-<family>) and never changes a group's family",
                desired.family
            ),
        ));
    }
    sync_parameters(api, inventory, name, &desired.parameters).await?;
    Ok(ParameterGroupState {
        name: name.clone(),
        family: desired.family.clone(),
    })
}

async fn check_owner(
    api: &Api,
    tag_cache: &TagCache,
    owner: &Ownership,
    group: &CacheParameterGroup,
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

/// The group `name`, `None` when it does not exist.
async fn describe(api: &Api, name: &str) -> Result<Option<CacheParameterGroup>, AwsError> {
    let result = api
        .call(
            Operation::DescribeCacheParameterGroups,
            api.elasticache
                .describe_cache_parameter_groups()
                .cache_parameter_group_name(name)
                .send(),
        )
        .await;
    Ok(super::errors::found(result)?.and_then(|out| {
        out.cache_parameter_groups()
            .iter()
            .find(|g| g.cache_parameter_group_name() == Some(name))
            .cloned()
    }))
}

async fn create(
    api: &Api,
    desired: &DesiredParameterGroup,
    tags: &BTreeMap<String, String>,
) -> Result<CacheParameterGroup, AwsError> {
    let out = api
        .call(
            Operation::CreateCacheParameterGroup,
            api.elasticache
                .create_cache_parameter_group()
                .cache_parameter_group_name(&desired.name)
                .cache_parameter_group_family(&desired.family)
                .description(&desired.description)
                .set_tags(Some(tags::to_elasticache(tags)))
                .send(),
        )
        .await?;
    Ok(out.cache_parameter_group().cloned().unwrap_or_else(|| {
        CacheParameterGroup::builder()
            .cache_parameter_group_name(&desired.name)
            .cache_parameter_group_family(&desired.family)
            .build()
    }))
}

/// The parameters set in the group's user layer (`Source=user`).
pub async fn user_parameters(api: &Api, name: &str) -> Result<BTreeMap<String, String>, AwsError> {
    let mut params = BTreeMap::new();
    let mut marker: Option<String> = None;
    loop {
        let out = api
            .call(
                Operation::DescribeCacheParameters,
                api.elasticache
                    .describe_cache_parameters()
                    .cache_parameter_group_name(name)
                    .source("user")
                    .max_records(100)
                    .set_marker(marker.clone())
                    .send(),
            )
            .await?;
        for p in out.parameters() {
            if let Some(n) = p.parameter_name() {
                params.insert(
                    n.to_string(),
                    p.parameter_value().unwrap_or_default().to_string(),
                );
            }
        }
        match out.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(params),
        }
    }
}

/// What to set and what to reset to go from `current` to `desired`.
pub fn parameter_diff(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> (Vec<(String, String)>, Vec<String>) {
    let set = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let reset = current
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .cloned()
        .collect();
    (set, reset)
}

async fn sync_parameters(
    api: &Api,
    inventory: &Inventory,
    name: &str,
    desired: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let current = match inventory.parameters(name) {
        Some(known) => known,
        None => {
            let read = user_parameters(api, name).await?;
            inventory.remember_parameters(name, read.clone());
            read
        }
    };
    let (set, reset) = parameter_diff(&current, desired);
    for batch in set.chunks(BATCH) {
        let values = batch
            .iter()
            .map(|(k, v)| {
                ParameterNameValue::builder()
                    .parameter_name(k)
                    .parameter_value(v)
                    .build()
            })
            .collect();
        api.call(
            Operation::ModifyCacheParameterGroup,
            api.elasticache
                .modify_cache_parameter_group()
                .cache_parameter_group_name(name)
                .set_parameter_name_values(Some(values))
                .send(),
        )
        .await?;
    }
    for batch in reset.chunks(BATCH) {
        let names = batch
            .iter()
            .map(|k| ParameterNameValue::builder().parameter_name(k).build())
            .collect();
        api.call(
            Operation::ResetCacheParameterGroup,
            api.elasticache
                .reset_cache_parameter_group()
                .cache_parameter_group_name(name)
                .reset_all_parameters(false)
                .set_parameter_name_values(Some(names))
                .send(),
        )
        .await?;
    }
    if !set.is_empty() || !reset.is_empty() {
        // AWS took every batch: the user layer is now the spec.
        inventory.remember_parameters(name, desired.clone());
        tracing::info!(
            parameter_group = name,
            set = set.len(),
            reset = reset.len(),
            "parameters brought to the spec"
        );
    }
    Ok(())
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
    let Some(group) = inventory.parameter_group_for_delete(name).await? else {
        return Ok(Deletion::Gone);
    };
    let arn = group.arn().ok_or_else(|| missing_arn(name))?;
    let delete = api.call(
        Operation::DeleteCacheParameterGroup,
        api.elasticache
            .delete_cache_parameter_group()
            .cache_parameter_group_name(name)
            .send(),
    );
    let deleted = tag_cache.delete_if_owned(api, owner, arn, delete).await?;
    if deleted == Deletion::Gone {
        inventory.forget_parameter_group(name);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_sets_changed_and_resets_removed() {
        let current = BTreeMap::from([
            ("maxmemory-policy".to_string(), "volatile-lru".to_string()),
            ("timeout".to_string(), "0".to_string()),
            ("notify-keyspace-events".to_string(), "Ex".to_string()),
        ]);
        let desired = BTreeMap::from([
            ("maxmemory-policy".to_string(), "allkeys-lru".to_string()),
            ("timeout".to_string(), "0".to_string()),
            ("cluster-enabled".to_string(), "no".to_string()),
        ]);
        let (set, reset) = parameter_diff(&current, &desired);
        assert_eq!(
            set,
            vec![
                ("cluster-enabled".to_string(), "no".to_string()),
                ("maxmemory-policy".to_string(), "allkeys-lru".to_string()),
            ]
        );
        assert_eq!(reset, vec!["notify-keyspace-events".to_string()]);
        assert_eq!(parameter_diff(&desired, &desired), (vec![], vec![]));
    }
}
