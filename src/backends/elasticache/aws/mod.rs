//! The AWS ElastiCache/EC2 adapter: [`AwsElastiCache`] implements
//! [`ElastiCacheApi`] on the AWS SDK. Every call passes one rate limiter and
//! is counted ([`clients::Api::call`]); errors are classified by wire code
//! ([`errors::classify`]); replication groups are read from the shared fleet
//! snapshot ([`fleet::Fleet`]); nothing that exists is touched before its
//! owner tag says it is ours.

pub mod clients;
pub mod errors;
pub mod fleet;
pub mod inventory;
pub mod metrics;
pub mod operations;
pub mod parameter_group;

pub mod replication_group;
pub mod security_group;
pub mod subnet_group;
pub mod tags;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_elasticache::types::ReplicationGroup;

use self::clients::{Api, ClientConfigs, Limits};
use self::fleet::{Fleet, Group, PollIntervals};
use self::inventory::Inventory;
use self::metrics::AwsCallMetrics;
use self::replication_group::{MemberFacts, MemberFactsCache};
use self::tags::TagCache;
use crate::backends::elasticache::api::{
    AuthTokenStrategy, Companions, ElastiCacheApi, GroupStatus, NetworkState, ParameterGroupState,
    ReplicationGroupChange, ReplicationGroupState, TagChange,
};
use crate::backends::elasticache::desired::{
    DesiredNetwork, DesiredParameterGroup, DesiredReplicationGroup, DesiredSubnetGroup,
};
use crate::backends::ratelimit::TokenBucket;
use crate::backends::turns::Turns;
use crate::backends::Ownership;
use crate::backends::{BackendError, Credential};
use crate::backends::{Deletion, ErrorClass};

fn strategy_label(strategy: AuthTokenStrategy) -> &'static str {
    match strategy {
        AuthTokenStrategy::Rotate => "AUTH token ROTATE",
        AuthTokenStrategy::Set => "AUTH token SET",
    }
}

const GROUP: &str = "replication group";

/// Tuning of the provider.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AwsSettings {
    /// AWS calls per second, for reads and for changes each.
    pub rate_limit: f64,
    /// Calls that may go at once before the rate applies.
    pub burst: u32,
    /// How many reconciles may make changing calls at once (see
    /// [`crate::backends::turns`]); the operator uses half its workers.
    pub turns: usize,
    /// How often the fleet poller reads the replication groups.
    pub poll: PollIntervals,
    /// How long tags read from AWS are trusted before they are read again
    /// (tag drift is seen after at most this long).
    pub tag_refresh: std::time::Duration,
    /// How long the companion listings (parameter, subnet and security
    /// groups) are trusted before they are read again.
    pub companion_refresh: std::time::Duration,
    /// How long a parameter group's values are trusted on average before
    /// `DescribeCacheParameters` reads them again (no batch read exists).
    pub parameter_recheck: std::time::Duration,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            rate_limit: 5.0,
            burst: 10,
            turns: 4,
            poll: PollIntervals::default(),
            tag_refresh: tags::DEFAULT_TAG_REFRESH,
            companion_refresh: inventory::DEFAULT_COMPANION_REFRESH,
            parameter_recheck: inventory::DEFAULT_PARAMETER_RECHECK,
        }
    }
}

/// Connects to `account`, registers nothing (the counters are shared and
/// given) and starts the fleet poller, which stops when the adapter is dropped.
pub async fn connect(
    account: &clients::Account,
    settings: AwsSettings,
    metrics: AwsCallMetrics,
    wakeups: crate::backends::wakeups::Wakeups,
) -> Arc<AwsElastiCache> {
    let config = clients::load_sdk_config(account).await;
    let adapter = Arc::new(AwsElastiCache::new(&config, settings, metrics));
    adapter.api.turns().announce_on(wakeups.clone());
    adapter.fleet().announce_on(wakeups);
    adapter.fleet().spawn_poller();
    adapter.inventory.spawn_refresher();
    tracing::info!(
        region = %account.region,
        endpoint = account.endpoint_url.as_deref().unwrap_or("AWS"),
        role = account.role_arn.as_deref().unwrap_or("the operator's own"),
        rate_limit = settings.rate_limit,
        burst = settings.burst,
        "AWS account ready"
    );
    adapter
}

/// The provider on AWS ElastiCache and EC2.
#[derive(Debug)]
pub struct AwsElastiCache {
    api: Api,
    tag_cache: TagCache,
    fleet: Arc<Fleet>,
    inventory: Arc<Inventory>,
    members: MemberFactsCache,
}

impl AwsElastiCache {
    /// A provider on `config`'s clients. The fleet poller is not started:
    /// call [`Fleet::spawn_poller`] on [`AwsElastiCache::fleet`] (the operator
    /// does; tests drive [`Fleet::refresh`] themselves).
    pub fn new(config: &SdkConfig, settings: AwsSettings, metrics: AwsCallMetrics) -> Self {
        let region = config.region().map(|r| r.as_ref()).unwrap_or_default();
        let endpoint = config.endpoint_url().unwrap_or_default();
        let gauges = [
            metrics.rate_gauge(region, endpoint, "reads"),
            metrics.rate_gauge(region, endpoint, "changes"),
        ];
        Self::build(ClientConfigs::from(config), settings, metrics, Some(gauges))
    }

    /// Like [`AwsElastiCache::new`], with the client configurations given.
    pub fn from_configs(
        configs: ClientConfigs,
        settings: AwsSettings,
        metrics: AwsCallMetrics,
    ) -> Self {
        Self::build(configs, settings, metrics, None)
    }

    fn build(
        configs: ClientConfigs,
        settings: AwsSettings,
        metrics: AwsCallMetrics,
        gauges: Option<
            [prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>; 2],
        >,
    ) -> Self {
        let [reads, changes] = gauges.map_or([None, None], |g| g.map(Some)).map(|gauge| {
            let bucket = TokenBucket::new(settings.rate_limit, settings.burst);
            Arc::new(match gauge {
                Some(g) => bucket.with_gauge(g),
                None => bucket,
            })
        });
        let limits = Limits {
            reads,
            changes,
            turns: Turns::new(settings.turns),
        };
        let api = Api::new(configs, limits, metrics);
        Self {
            fleet: Fleet::new(api.clone(), settings.poll),
            inventory: Inventory::new(
                api.clone(),
                settings.companion_refresh,
                settings.parameter_recheck,
            ),
            api,
            tag_cache: TagCache::new(settings.tag_refresh),
            members: MemberFactsCache::default(),
        }
    }

    /// The shared replication group snapshot.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// The line for changing calls.
    pub fn turns(&self) -> &Turns {
        self.api.turns()
    }

    /// The companion listings.
    pub fn inventory(&self) -> &Arc<Inventory> {
        &self.inventory
    }

    /// The group `id` from the snapshot. Absence is trusted: our creates
    /// are in the snapshot at once, and a create of a group that exists
    /// after all (made before a crash) answers "already exists", which
    /// describes it.
    async fn find_group(&self, id: &str) -> Result<Option<Group>, BackendError> {
        Ok(self.fleet.lookup(id).await?)
    }

    /// The tags of `group`; `None` when AWS says it is gone meanwhile.
    async fn group_tags(
        &self,
        group: &ReplicationGroup,
    ) -> Result<Option<BTreeMap<String, String>>, BackendError> {
        let id = group.replication_group_id().unwrap_or_default();
        let Some(arn) = group.arn() else {
            return Err(BackendError::new(
                ErrorClass::Transient,
                None,
                format!("AWS described {GROUP} {id} without an ARN; cannot check its owner"),
            ));
        };
        match self.tag_cache.get(&self.api, arn).await {
            Ok(tags) => Ok(Some(tags)),
            Err(e) if e.is_not_found() => {
                self.forget_group(id);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn forget_group(&self, id: &str) {
        if let Some(arn) = self.fleet.remove(id).as_ref().and_then(|g| g.arn()) {
            self.tag_cache.forget(arn);
        }
        self.members.invalidate(id);
    }

    async fn state_of(
        &self,
        group: &ReplicationGroup,
        tags: BTreeMap<String, String>,
    ) -> Result<ReplicationGroupState, BackendError> {
        let facts = self.members.get(&self.api, group).await?;
        Ok(replication_group::map_group(group, &facts, tags))
    }

    /// The group `id` with its tags, after checking it is ours.
    async fn owned_group(
        &self,
        owner: &Ownership,
        id: &str,
    ) -> Result<(Group, BTreeMap<String, String>), BackendError> {
        let not_found = || {
            BackendError::new(
                ErrorClass::NotFound,
                Some("ReplicationGroupNotFoundFault"),
                format!("{GROUP} {id} not found"),
            )
        };
        let group = self.find_group(id).await?.ok_or_else(not_found)?;
        let tags = self.group_tags(&group).await?.ok_or_else(not_found)?;
        tags::check_owner(GROUP, id, owner, &tags)?;
        Ok((group, tags))
    }

    /// The state after a change AWS accepted: what it returned, or a fresh
    /// describe; the member facts are read again.
    async fn changed(
        &self,
        id: &str,
        returned: Option<ReplicationGroup>,
        tags: BTreeMap<String, String>,
        what: &str,
    ) -> Result<ReplicationGroupState, BackendError> {
        self.members.invalidate(id);
        let group = match returned {
            Some(g) => g,
            None => replication_group::describe(&self.api, id)
                .await?
                .ok_or_else(|| {
                    BackendError::new(
                        ErrorClass::NotFound,
                        Some("ReplicationGroupNotFoundFault"),
                        format!("{GROUP} {id} not found"),
                    )
                })?,
        };
        let group = self.fleet.put(group);
        tracing::info!(replication_group = %id, "{what} sent");
        self.state_of(&group, tags).await
    }
}

#[async_trait]
impl ElastiCacheApi for AwsElastiCache {
    async fn check_access(&self) -> Result<(), BackendError> {
        subnet_group::probe(&self.api).await
    }

    fn companions_epoch(&self) -> u64 {
        self.inventory.epoch()
    }

    async fn ensure_parameter_group(
        &self,
        owner: &Ownership,
        desired: &DesiredParameterGroup,
        tags: &BTreeMap<String, String>,
    ) -> Result<ParameterGroupState, BackendError> {
        parameter_group::ensure(
            &self.api,
            &self.inventory,
            &self.tag_cache,
            owner,
            desired,
            tags,
        )
        .await
    }

    async fn ensure_network(
        &self,
        owner: &Ownership,
        desired: &DesiredNetwork,
        tags: &BTreeMap<String, String>,
    ) -> Result<NetworkState, BackendError> {
        let vpc_id = match &desired.subnet_group {
            DesiredSubnetGroup::Managed {
                name,
                subnet_ids,
                description,
            } => {
                subnet_group::ensure_managed(
                    &self.api,
                    &self.inventory,
                    &self.tag_cache,
                    owner,
                    name,
                    subnet_ids,
                    description,
                    tags,
                )
                .await?
            }
            DesiredSubnetGroup::Existing { name } => {
                subnet_group::check_existing(&self.api, &self.inventory, name).await?
            }
        };
        let security_group_id = security_group::ensure(
            &self.api,
            &self.inventory,
            owner,
            &desired.security_group,
            &vpc_id,
            tags,
        )
        .await?;
        Ok(NetworkState {
            subnet_group_name: desired.subnet_group.name().to_string(),
            security_group_id,
        })
    }

    async fn observe_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
    ) -> Result<Option<ReplicationGroupState>, BackendError> {
        let Some(group) = self.find_group(id).await? else {
            return Ok(None);
        };
        let Some(tags) = self.group_tags(&group).await? else {
            return Ok(None);
        };
        tags::check_owner(GROUP, id, owner, &tags)?;
        self.state_of(&group, tags).await.map(Some)
    }

    async fn create_replication_group(
        &self,
        owner: &Ownership,
        desired: &DesiredReplicationGroup,
        companions: &Companions,
        auth_token: &Credential,
        tags: &BTreeMap<String, String>,
    ) -> Result<ReplicationGroupState, BackendError> {
        let id = &desired.id;
        match replication_group::create(&self.api, desired, companions, auth_token, tags).await {
            Ok(group) => {
                if let Some(arn) = group.arn() {
                    self.tag_cache.remember(arn, tags.clone());
                }
                let group = self.fleet.put(group);
                self.members
                    .created(id, MemberFacts::requested(desired, companions));
                tracing::info!(replication_group = %id, "replication group creation started");
                self.state_of(&group, tags.clone()).await
            }
            // A create that succeeded before a crash (ours), or a name clash.
            Err(e) if e.is_already_exists() => {
                let group = replication_group::describe(&self.api, id)
                    .await?
                    .ok_or_else(|| BackendError::from(e))?;
                let group = self.fleet.put(group);
                let tags = self.group_tags(&group).await?.ok_or_else(|| {
                    BackendError::new(
                        ErrorClass::Transient,
                        None,
                        format!("{GROUP} {id} vanished while its owner was checked"),
                    )
                })?;
                tags::check_owner(GROUP, id, owner, &tags)?;
                self.state_of(&group, tags).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn modify_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
        change: &ReplicationGroupChange,
    ) -> Result<ReplicationGroupState, BackendError> {
        let (_, tags) = self.owned_group(owner, id).await?;
        let modified = replication_group::modify(&self.api, id, change).await?;
        self.changed(id, modified, tags, "replication group modification")
            .await
    }

    async fn modify_replica_count(
        &self,
        owner: &Ownership,
        id: &str,
        replicas_per_shard: i32,
    ) -> Result<ReplicationGroupState, BackendError> {
        let (group, tags) = self.owned_group(owner, id).await?;
        let current = self
            .state_of(&group, tags.clone())
            .await?
            .replicas_per_shard;
        let changed =
            replication_group::set_replica_count(&self.api, id, current, replicas_per_shard)
                .await?;
        self.changed(id, changed, tags, "replica count change")
            .await
    }

    async fn modify_shard_count(
        &self,
        owner: &Ownership,
        id: &str,
        shards: i32,
        remove: &[String],
    ) -> Result<ReplicationGroupState, BackendError> {
        let (_, tags) = self.owned_group(owner, id).await?;
        let changed = replication_group::set_shard_count(&self.api, id, shards, remove).await?;
        self.changed(id, changed, tags, "shard count change").await
    }

    async fn allowed_node_types(
        &self,
        owner: &Ownership,
        id: &str,
    ) -> Result<Vec<String>, BackendError> {
        self.owned_group(owner, id).await?;
        Ok(replication_group::allowed_node_types(&self.api, id).await?)
    }

    async fn update_auth_token(
        &self,
        owner: &Ownership,
        id: &str,
        token: &Credential,
        strategy: AuthTokenStrategy,
    ) -> Result<ReplicationGroupState, BackendError> {
        let (_, tags) = self.owned_group(owner, id).await?;
        let changed = replication_group::update_auth_token(&self.api, id, token, strategy).await?;
        self.changed(id, changed, tags, strategy_label(strategy))
            .await
    }

    async fn update_tags(
        &self,
        owner: &Ownership,
        id: &str,
        change: &TagChange,
    ) -> Result<(), BackendError> {
        let (group, _) = self.owned_group(owner, id).await?;
        let Some(arn) = group.arn() else {
            return Err(BackendError::new(
                ErrorClass::Transient,
                None,
                format!("AWS described {GROUP} {id} without an ARN"),
            ));
        };
        self.tag_cache.update(&self.api, arn, change).await?;
        Ok(())
    }

    async fn delete_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
        final_snapshot: Option<&str>,
    ) -> Result<Deletion, BackendError> {
        // While the snapshot shows our deletion under way, the fleet poll
        // (fast while a followed group is deleting) says when it ends.
        let deleting = |g: &ReplicationGroup| {
            GroupStatus::parse(g.status().unwrap_or_default()) == GroupStatus::Deleting
        };
        if self.fleet.peek(id).is_some_and(|g| deleting(&g)) {
            return Ok(Deletion::InProgress);
        }
        // Otherwise the snapshot may be minutes old: only AWS itself can
        // say "gone".
        let Some(group) = replication_group::describe(&self.api, id).await? else {
            self.forget_group(id);
            return Ok(Deletion::Gone);
        };
        let group = self.fleet.put(group);
        match self.group_tags(&group).await? {
            None => return Ok(Deletion::Gone),
            Some(tags) if !owner.owns(&tags) => return Ok(Deletion::NotOwned),
            Some(_) => {}
        }
        if deleting(&group) {
            return Ok(Deletion::InProgress);
        }
        match replication_group::delete(&self.api, id, final_snapshot).await {
            Ok(deleted) => {
                if let Some(g) = deleted {
                    let _ = self.fleet.put(g);
                }
                tracing::info!(replication_group = %id, final_snapshot, "replication group deletion started");
                Ok(Deletion::InProgress)
            }
            Err(e) if e.is_not_found() => {
                self.forget_group(id);
                Ok(Deletion::Gone)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_security_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, BackendError> {
        security_group::delete(&self.api, &self.inventory, owner, name).await
    }

    async fn delete_parameter_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, BackendError> {
        parameter_group::delete(&self.api, &self.inventory, &self.tag_cache, owner, name).await
    }

    async fn delete_subnet_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, BackendError> {
        subnet_group::delete(&self.api, &self.inventory, &self.tag_cache, owner, name).await
    }
}
