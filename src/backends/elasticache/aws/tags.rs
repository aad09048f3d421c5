//! Tags in both SDKs' shapes, and the ownership check every existing
//! resource passes before it is touched.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{ResourceType, TagSpecification};

use super::clients::Api;
use super::errors::AwsError;
use super::operations::Operation;
use crate::backends::elasticache::api::TagChange;
use crate::backends::BackendError;
use crate::backends::Deletion;
use crate::backends::{Ownership, TAG_OWNER_UID, TAG_RESOURCE};

/// Brings the tags of EC2 resource `id` from `current` to `desired`
/// (`CreateTags` / `DeleteTags`; AWS's own `aws:` tags are kept).
pub async fn sync_ec2(
    api: &Api,
    id: &str,
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let change = crate::backends::elasticache::diff::tag_change(desired, current);
    if !change.add.is_empty() {
        let tags = change
            .add
            .iter()
            .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
            .collect();
        api.call(
            Operation::CreateTags,
            api.ec2
                .create_tags()
                .resources(id)
                .set_tags(Some(tags))
                .send(),
        )
        .await?;
    }
    if !change.remove.is_empty() {
        let tags = change
            .remove
            .iter()
            .map(|k| aws_sdk_ec2::types::Tag::builder().key(k).build())
            .collect();
        api.call(
            Operation::DeleteTags,
            api.ec2
                .delete_tags()
                .resources(id)
                .set_tags(Some(tags))
                .send(),
        )
        .await?;
    }
    Ok(())
}

/// Every owner-tagged ElastiCache resource and its tags, in pages of 100.
async fn list_owned(api: &Api) -> Result<Vec<(String, BTreeMap<String, String>)>, AwsError> {
    use aws_sdk_resourcegroupstagging::types::TagFilter;
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = api
            .call(
                Operation::GetResources,
                api.tagging
                    .get_resources()
                    .tag_filters(TagFilter::builder().key(TAG_OWNER_UID).build())
                    .set_resource_type_filters(Some(
                        BULK_TYPES.iter().map(|t| t.to_string()).collect(),
                    ))
                    .resources_per_page(100)
                    .set_pagination_token(token.clone())
                    .send(),
            )
            .await?;
        for mapping in out.resource_tag_mapping_list() {
            let Some(arn) = mapping.resource_arn() else {
                continue;
            };
            let tags = mapping
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            all.push((arn.to_string(), tags));
        }
        match out.pagination_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(all),
        }
    }
}

/// ElastiCache tags.
pub fn to_elasticache(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_elasticache::types::Tag> {
    tags.iter()
        .map(|(k, v)| {
            aws_sdk_elasticache::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect()
}

/// Reads ElastiCache tags into a map.
pub fn from_elasticache(tags: &[aws_sdk_elasticache::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// EC2 tags on create, for a resource of `kind`.
pub fn ec2_tag_specification(
    kind: ResourceType,
    tags: &BTreeMap<String, String>,
) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

/// Reads EC2 tags into a map.
pub fn from_ec2(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// `Conflict` unless the tags carry our owner uid.
pub fn check_owner(
    what: &str,
    name: &str,
    owner: &Ownership,
    tags: &BTreeMap<String, String>,
) -> Result<(), BackendError> {
    if owner.owns(tags) {
        Ok(())
    } else {
        Err(BackendError::conflict(
            what,
            name,
            tags.get(TAG_RESOURCE).map(String::as_str),
        ))
    }
}

/// ElastiCache tags by ARN. The owner tag of a resource does not change
/// while it exists, so the ownership check needs one `ListTagsForResource`
/// per resource; the other tags are read again after `refresh` so that tags
/// changed outside the operator are seen (and corrected). Entries are dropped
/// when the resource is deleted or found missing.
///
/// Tags are read in bulk first: one paged `GetResources` (Resource Groups
/// Tagging API, 100 per page) returns the tags of every ElastiCache
/// resource that carries the owner tag, at most once per `refresh`. Only a
/// resource that read did not cover (another owner's, or one created since)
/// costs its own `ListTagsForResource`. When the bulk read fails (no
/// `tag:GetResources` permission, an emulator without it) every resource is
/// read alone, as before.
#[derive(Debug)]
pub struct TagCache {
    by_arn: Mutex<HashMap<String, Entry>>,
    refresh: Duration,
    /// When the last bulk read started; one at a time.
    bulk: tokio::sync::Mutex<Option<Instant>>,
}

/// Resource types whose tags the bulk read returns.
const BULK_TYPES: &[&str] = &[
    "elasticache:replicationgroup",
    "elasticache:parametergroup",
    "elasticache:subnetgroup",
];

/// When a resource's tags were read, and what they were.
type Entry = (Instant, BTreeMap<String, String>);

/// How long tags read from AWS are trusted by default (as long as the
/// companion listings).
pub const DEFAULT_TAG_REFRESH: Duration = Duration::from_secs(25 * 60);

impl Default for TagCache {
    fn default() -> Self {
        Self::new(DEFAULT_TAG_REFRESH)
    }
}

impl TagCache {
    /// A cache that reads a resource's tags again after `refresh`.
    pub fn new(refresh: Duration) -> Self {
        Self {
            by_arn: Mutex::default(),
            refresh,
            bulk: tokio::sync::Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.by_arn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self, arn: &str) -> Option<BTreeMap<String, String>> {
        self.lock()
            .get(arn)
            .filter(|(read, _)| read.elapsed() < self.refresh)
            .map(|(_, tags)| tags.clone())
    }

    /// The tags of `arn`, from the cache while fresh, else from the bulk
    /// read, else from AWS for this resource alone.
    pub async fn get(&self, api: &Api, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        if let Some(tags) = self.fresh(arn) {
            return Ok(tags);
        }
        self.read_in_bulk(api).await;
        if let Some(tags) = self.fresh(arn) {
            return Ok(tags);
        }
        let out = api
            .call(
                Operation::ListTagsForResource,
                api.elasticache
                    .list_tags_for_resource()
                    .resource_name(arn)
                    .send(),
            )
            .await?;
        let tags = from_elasticache(out.tag_list());
        self.remember(arn, tags.clone());
        Ok(tags)
    }

    /// Reads the tags of every owner-tagged ElastiCache resource, unless
    /// that was done within `refresh`. A failure is logged and leaves each
    /// resource to be read alone.
    async fn read_in_bulk(&self, api: &Api) {
        let mut last = self.bulk.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.refresh) {
            return;
        }
        let started = Instant::now();
        *last = Some(started);
        match list_owned(api).await {
            Ok(all) => {
                let mut by_arn = self.lock();
                for (arn, tags) in all {
                    // What our own calls recorded meanwhile is newer.
                    if by_arn.get(&arn).is_some_and(|(at, _)| *at > started) {
                        continue;
                    }
                    by_arn.insert(arn, (started, tags));
                }
            }
            Err(e) => tracing::debug!(
                error = %e,
                "reading tags in bulk failed; reading each resource's tags alone"
            ),
        }
    }

    /// Records the tags a resource was created with.
    pub fn remember(&self, arn: &str, tags: BTreeMap<String, String>) {
        self.lock().insert(arn.to_string(), (Instant::now(), tags));
    }

    /// Adds and removes tags on an ElastiCache resource, keeping the cache
    /// in step.
    pub async fn update(&self, api: &Api, arn: &str, change: &TagChange) -> Result<(), AwsError> {
        if !change.add.is_empty() {
            api.call(
                Operation::AddTagsToResource,
                api.elasticache
                    .add_tags_to_resource()
                    .resource_name(arn)
                    .set_tags(Some(to_elasticache(&change.add)))
                    .send(),
            )
            .await?;
        }
        if !change.remove.is_empty() {
            api.call(
                Operation::RemoveTagsFromResource,
                api.elasticache
                    .remove_tags_from_resource()
                    .resource_name(arn)
                    .set_tag_keys(Some(change.remove.clone()))
                    .send(),
            )
            .await?;
        }
        let mut lock = self.lock();
        if let Some((_, tags)) = lock.get_mut(arn) {
            tags.extend(change.add.clone());
            for k in &change.remove {
                tags.remove(k);
            }
        }
        Ok(())
    }

    /// Brings the tags of `arn` to `desired` (user tags plus ownership tags;
    /// AWS's own `aws:` tags are kept). No call when they already match.
    pub async fn sync(
        &self,
        api: &Api,
        arn: &str,
        desired: &BTreeMap<String, String>,
    ) -> Result<(), AwsError> {
        let current = self.get(api, arn).await?;
        let change = crate::backends::elasticache::diff::tag_change(desired, &current);
        if change.add.is_empty() && change.remove.is_empty() {
            return Ok(());
        }
        self.update(api, arn, &change).await
    }

    /// Drops a resource that is gone.
    pub fn forget(&self, arn: &str) {
        self.lock().remove(arn);
    }

    /// Keeps only the ARNs for which `keep` says yes.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.lock().retain(|arn, _| keep(arn));
    }

    /// Checks that `arn` is ours.
    pub async fn check_owner(
        &self,
        api: &Api,
        what: &str,
        name: &str,
        arn: &str,
        owner: &Ownership,
    ) -> Result<(), BackendError> {
        let tags = self.get(api, arn).await?;
        check_owner(what, name, owner, &tags)
    }

    /// Sends `delete` (a request future, not yet sent) only when the tags
    /// of `arn` say it is ours; "not found" counts as deleted.
    pub async fn delete_if_owned<T>(
        &self,
        api: &Api,
        owner: &Ownership,
        arn: &str,
        delete: impl std::future::Future<Output = Result<T, AwsError>>,
    ) -> Result<Deletion, BackendError> {
        if !self.owned(api, arn, owner).await? {
            return Ok(Deletion::NotOwned);
        }
        match delete.await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            // Still in use while the replication group goes away
            // (`InvalidCacheParameterGroupState`, `CacheSubnetGroupInUse`): transient.
            Err(e) => return Err(e.into()),
        }
        self.forget(arn);
        Ok(Deletion::Gone)
    }

    /// Whether `arn` is ours.
    pub async fn owned(&self, api: &Api, arn: &str, owner: &Ownership) -> Result<bool, AwsError> {
        Ok(owner.owns(&self.get(api, arn).await?))
    }
}
