//! Fleet reads of the companions, shared by every reconcile like the
//! replication group snapshot ([`super::fleet`]): all parameter groups
//! (`DescribeCacheParameterGroups`, 100 per page), all subnet groups
//! (`DescribeCacheSubnetGroups`, 100 per page) and the security groups
//! carrying the operator's owner tag (`DescribeSecurityGroups`, 1000 per
//! page). A listing is read again once it is older than its refresh
//! interval, by whichever reconcile needs it first or by the background
//! task; a reconcile of a settled cache reads nothing from AWS.
//!
//! What our own calls create or change is put into the listing at once, so
//! a listing is never older than our last call. A name missing from a
//! listing is trusted to be absent: the create that follows answers
//! "already exists" when it was made since (by us before a crash, or by
//! someone else), and that path describes the one resource and checks its
//! owner.
//!
//! Two per-resource facts have no batch read: a subnet's VPC (kept for
//! good: a subnet never moves) and a parameter group's values
//! (`DescribeCacheParameters`), which are known from our own writes and
//! read again only on a slow schedule ([`DEFAULT_PARAMETER_RECHECK`], spread out
//! per group).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, SecurityGroup};
use aws_sdk_elasticache::types::{CacheParameterGroup, CacheSubnetGroup};
use tokio::time::Instant;

use super::clients::Api;
use super::errors::AwsError;
use super::operations::Operation;
use crate::backends::TAG_OWNER_UID;

/// How long a companion listing is trusted by default: companion drift
/// made outside the operator is seen within this long (plus one settled
/// reconcile).
pub const DEFAULT_COMPANION_REFRESH: Duration = Duration::from_secs(25 * 60);

/// How long a parameter group's values are trusted on average by default;
/// each group gets 75–125 % of it so the reads spread out.
pub const DEFAULT_PARAMETER_RECHECK: Duration = Duration::from_secs(12 * 60 * 60);

/// How old a listing may be for a deletion to trust that a name missing
/// from it does not exist (deletions read it again when it is older).
pub const DELETE_LISTING_AGE: Duration = Duration::from_secs(60);

/// AWS's largest pages.
const ELASTICACHE_PAGE: i32 = 100;
const EC2_PAGE: i32 = 1000;

#[derive(Debug)]
struct ListingState<T> {
    items: HashMap<String, (T, Instant)>,
    /// Start of the last complete read.
    taken_at: Option<Instant>,
}

/// One resource type's listing: name → resource.
#[derive(Debug)]
pub struct Listing<T> {
    state: Mutex<ListingState<T>>,
    /// One read at a time; others wait for it instead of starting their own.
    reading: tokio::sync::Mutex<()>,
}

impl<T: Clone> Default for Listing<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(ListingState {
                items: HashMap::new(),
                taken_at: None,
            }),
            reading: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T: Clone> Listing<T> {
    fn lock(&self) -> MutexGuard<'_, ListingState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_stale(&self, refresh: Duration) -> bool {
        self.lock()
            .taken_at
            .is_none_or(|at| at.elapsed() >= refresh)
    }

    /// Reads every page with `read_all` when the listing is older than
    /// `refresh` (or was never read). Returns whether it read.
    async fn refresh_if_stale<F, Fut>(
        &self,
        refresh: Duration,
        read_all: F,
    ) -> Result<bool, AwsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, T)>, AwsError>>,
    {
        if !self.is_stale(refresh) {
            return Ok(false);
        }
        let _one = self.reading.lock().await;
        if !self.is_stale(refresh) {
            return Ok(false);
        }
        let started = Instant::now();
        let read = read_all().await?;
        let mut s = self.lock();
        let mut items: HashMap<String, (T, Instant)> =
            read.into_iter().map(|(k, v)| (k, (v, started))).collect();
        // What our own calls learned while the pages were read is newer.
        for (k, (v, at)) in s.items.drain() {
            if at > started {
                items.insert(k, (v, at));
            }
        }
        s.items = items;
        s.taken_at = Some(started);
        Ok(true)
    }

    /// The resource `key` as last listed or put (no read).
    pub fn get(&self, key: &str) -> Option<T> {
        self.lock().items.get(key).map(|(v, _)| v.clone())
    }

    /// Resources whose key starts with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> Vec<T> {
        self.lock()
            .items
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, (v, _))| v.clone())
            .collect()
    }

    /// Records what one of our calls returned.
    pub fn put(&self, key: &str, value: T) {
        self.lock()
            .items
            .insert(key.to_string(), (value, Instant::now()));
    }

    /// Forgets a resource that is gone.
    pub fn remove(&self, key: &str) {
        self.lock().items.remove(key);
    }

    /// Number of resources listed.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug)]
struct Parameters {
    values: BTreeMap<String, String>,
    due: Instant,
}

/// The companion listings of one AWS account and region.
#[derive(Debug)]
pub struct Inventory {
    api: Api,
    refresh: Duration,
    parameter_recheck: Duration,
    pub parameter_groups: Listing<CacheParameterGroup>,
    pub subnet_groups: Listing<CacheSubnetGroup>,
    /// Ours only (owner tag present), by `name/vpc`.
    pub security_groups: Listing<SecurityGroup>,
    subnet_vpcs: Mutex<HashMap<String, String>>,
    parameters: Mutex<HashMap<String, Parameters>>,
    /// Counts completed listing reads: a check of the companions made
    /// before the last read may be out of date.
    epoch: AtomicU64,
    /// Set once a reconcile asked: the background task reads nothing for
    /// an account with no caches.
    used: AtomicBool,
}

/// The key of a security group in the listing.
pub fn security_group_key(name: &str, vpc_id: &str) -> String {
    format!("{name}/{vpc_id}")
}

impl Inventory {
    /// Listings that are read again after `refresh`, parameter values after
    /// about `parameter_recheck`.
    pub fn new(api: Api, refresh: Duration, parameter_recheck: Duration) -> Arc<Self> {
        Arc::new(Self {
            api,
            refresh,
            parameter_recheck,
            parameter_groups: Listing::default(),
            subnet_groups: Listing::default(),
            security_groups: Listing::default(),
            subnet_vpcs: Mutex::default(),
            parameters: Mutex::default(),
            epoch: AtomicU64::new(0),
            used: AtomicBool::new(false),
        })
    }

    /// Incremented whenever a listing was read again.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    fn read_done(&self, read: bool) {
        if read {
            self.epoch.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The parameter group `name`, `None` when the listing does not have it.
    pub async fn parameter_group(
        &self,
        name: &str,
    ) -> Result<Option<CacheParameterGroup>, AwsError> {
        self.used.store(true, Ordering::Relaxed);
        self.read_parameter_groups(self.refresh).await?;
        Ok(self.parameter_groups.get(name))
    }

    /// The subnet group `name`, `None` when the listing does not have it.
    pub async fn subnet_group(&self, name: &str) -> Result<Option<CacheSubnetGroup>, AwsError> {
        self.used.store(true, Ordering::Relaxed);
        self.read_subnet_groups(self.refresh).await?;
        Ok(self.subnet_groups.get(name))
    }

    /// For a deletion: the parameter group `name` from a listing at most
    /// [`DELETE_LISTING_AGE`] old, so that its absence means it is gone.
    pub async fn parameter_group_for_delete(
        &self,
        name: &str,
    ) -> Result<Option<CacheParameterGroup>, AwsError> {
        self.read_parameter_groups(DELETE_LISTING_AGE).await?;
        Ok(self.parameter_groups.get(name))
    }

    /// For a deletion: the subnet group `name` from a listing at most
    /// [`DELETE_LISTING_AGE`] old.
    pub async fn subnet_group_for_delete(
        &self,
        name: &str,
    ) -> Result<Option<CacheSubnetGroup>, AwsError> {
        self.read_subnet_groups(DELETE_LISTING_AGE).await?;
        Ok(self.subnet_groups.get(name))
    }

    /// For a deletion: our security groups named `name` in any VPC, from a
    /// listing at most [`DELETE_LISTING_AGE`] old.
    pub async fn security_groups_for_delete(
        &self,
        name: &str,
    ) -> Result<Vec<SecurityGroup>, AwsError> {
        self.read_security_groups(DELETE_LISTING_AGE).await?;
        Ok(self
            .security_groups
            .with_prefix(&format!("{name}/"))
            .into_iter()
            .filter(|g| g.group_name() == Some(name))
            .collect())
    }

    /// Our security group `name` in `vpc_id`, `None` when the listing does
    /// not have it (a group without our owner tag is never listed).
    pub async fn security_group(
        &self,
        name: &str,
        vpc_id: &str,
    ) -> Result<Option<SecurityGroup>, AwsError> {
        self.used.store(true, Ordering::Relaxed);
        self.read_security_groups(self.refresh).await?;
        Ok(self.security_groups.get(&security_group_key(name, vpc_id)))
    }

    /// The VPC of each subnet in `subnet_ids` that AWS knows; asks AWS only
    /// for subnets not seen before.
    pub async fn subnet_vpcs(
        &self,
        subnet_ids: &[String],
    ) -> Result<BTreeMap<String, String>, AwsError> {
        let missing: Vec<String> = {
            let known = self.subnet_vpcs.lock().unwrap_or_else(|e| e.into_inner());
            subnet_ids
                .iter()
                .filter(|s| !known.contains_key(*s))
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            let out = self
                .api
                .call(
                    Operation::DescribeSubnets,
                    self.api
                        .ec2
                        .describe_subnets()
                        .set_subnet_ids(Some(missing))
                        .send(),
                )
                .await?;
            let mut known = self.subnet_vpcs.lock().unwrap_or_else(|e| e.into_inner());
            for s in out.subnets() {
                if let (Some(id), Some(vpc)) = (s.subnet_id(), s.vpc_id()) {
                    known.insert(id.to_string(), vpc.to_string());
                }
            }
        }
        let known = self.subnet_vpcs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(subnet_ids
            .iter()
            .filter_map(|s| known.get(s).map(|v| (s.clone(), v.clone())))
            .collect())
    }

    /// The values in the user layer of parameter group `name`, when known
    /// and not yet due for a re-read.
    pub fn parameters(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let known = self.parameters.lock().unwrap_or_else(|e| e.into_inner());
        known
            .get(name)
            .filter(|p| Instant::now() < p.due)
            .map(|p| p.values.clone())
    }

    /// Records the user layer of `name` as read or as we just wrote it.
    pub fn remember_parameters(&self, name: &str, values: BTreeMap<String, String>) {
        let due = Instant::now() + spread(self.parameter_recheck, name);
        self.parameters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Parameters { values, due });
    }

    /// Forgets a parameter group that is gone.
    pub fn forget_parameter_group(&self, name: &str) {
        self.parameter_groups.remove(name);
        self.parameters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Starts the task that reads stale listings again, so drift is seen
    /// within the refresh interval even when no check asks; it ends when
    /// the inventory is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = self.refresh;
        tokio::spawn(refresher(weak, every))
    }

    async fn refresh_all(&self) -> Result<(), AwsError> {
        self.read_parameter_groups(self.refresh).await?;
        self.read_subnet_groups(self.refresh).await?;
        self.read_security_groups(self.refresh).await
    }

    /// Reads each listing again when it is older than `max_age`.
    async fn read_parameter_groups(&self, max_age: Duration) -> Result<(), AwsError> {
        let read = self
            .parameter_groups
            .refresh_if_stale(max_age, || list_parameter_groups(&self.api))
            .await?;
        self.read_done(read);
        Ok(())
    }

    async fn read_subnet_groups(&self, max_age: Duration) -> Result<(), AwsError> {
        let read = self
            .subnet_groups
            .refresh_if_stale(max_age, || list_subnet_groups(&self.api))
            .await?;
        self.read_done(read);
        Ok(())
    }

    async fn read_security_groups(&self, max_age: Duration) -> Result<(), AwsError> {
        let read = self
            .security_groups
            .refresh_if_stale(max_age, || list_security_groups(&self.api))
            .await?;
        self.read_done(read);
        Ok(())
    }
}

async fn refresher(inventory: Weak<Inventory>, every: Duration) {
    loop {
        // Checks a little more often than the interval so a listing is
        // never more than one check past stale.
        tokio::time::sleep((every / 10).max(Duration::from_secs(1))).await;
        let Some(inv) = inventory.upgrade() else {
            return;
        };
        if !inv.used.load(Ordering::Relaxed) {
            continue;
        }
        if let Err(e) = inv.refresh_all().await {
            tracing::warn!(error = %e, "reading the companion listings failed; keeping the last ones");
        }
    }
}

/// `base` scaled to 75–125 % by a hash of `key`.
fn spread(base: Duration, key: &str) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let fraction = (h.finish() % 1000) as f64 / 1000.0;
    base.mul_f64(0.75 + fraction / 2.0)
}

async fn list_parameter_groups(api: &Api) -> Result<Vec<(String, CacheParameterGroup)>, AwsError> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = api
            .call(
                Operation::DescribeCacheParameterGroups,
                api.elasticache
                    .describe_cache_parameter_groups()
                    .max_records(ELASTICACHE_PAGE)
                    .set_marker(marker.clone())
                    .send(),
            )
            .await?;
        all.extend(
            out.cache_parameter_groups()
                .iter()
                .filter_map(|g| Some((g.cache_parameter_group_name()?.to_string(), g.clone()))),
        );
        match out.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(all),
        }
    }
}

async fn list_subnet_groups(api: &Api) -> Result<Vec<(String, CacheSubnetGroup)>, AwsError> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = api
            .call(
                Operation::DescribeCacheSubnetGroups,
                api.elasticache
                    .describe_cache_subnet_groups()
                    .max_records(ELASTICACHE_PAGE)
                    .set_marker(marker.clone())
                    .send(),
            )
            .await?;
        all.extend(
            out.cache_subnet_groups()
                .iter()
                .filter_map(|g| Some((g.cache_subnet_group_name()?.to_string(), g.clone()))),
        );
        match out.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(all),
        }
    }
}

async fn list_security_groups(api: &Api) -> Result<Vec<(String, SecurityGroup)>, AwsError> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = api
            .call(
                Operation::DescribeSecurityGroups,
                api.ec2
                    .describe_security_groups()
                    .filters(
                        Filter::builder()
                            .name("tag-key")
                            .values(TAG_OWNER_UID)
                            .build(),
                    )
                    .max_results(EC2_PAGE)
                    .set_next_token(token.clone())
                    .send(),
            )
            .await?;
        all.extend(
            out.security_groups().iter().filter_map(|g| {
                Some((security_group_key(g.group_name()?, g.vpc_id()?), g.clone()))
            }),
        );
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recheck_times_spread_between_three_quarters_and_five_quarters() {
        let base = Duration::from_secs(1000);
        let spreads: Vec<Duration> = (0..200).map(|i| spread(base, &format!("g-{i}"))).collect();
        assert!(spreads
            .iter()
            .all(|d| *d >= base.mul_f64(0.75) && *d <= base.mul_f64(1.25)));
        let early = spreads.iter().filter(|d| **d < base).count();
        assert!((60..140).contains(&early), "{early} of 200 before the mean");
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_is_read_once_while_fresh_and_keeps_newer_puts() {
        let listing: Listing<u32> = Listing::default();
        let refresh = Duration::from_secs(60);
        let reads = std::sync::atomic::AtomicU32::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::Relaxed);
            Ok(vec![("a".to_string(), 1), ("b".to_string(), 2)])
        };
        assert!(listing.refresh_if_stale(refresh, read).await.expect("read"));
        assert!(!listing
            .refresh_if_stale(refresh, read)
            .await
            .expect("fresh"));
        assert_eq!(reads.load(Ordering::Relaxed), 1);
        assert_eq!(listing.get("b"), Some(2));
        assert_eq!(listing.get("c"), None);
        tokio::time::advance(refresh).await;
        // A put made while a read is under way is newer than the read.
        let put_during = || async {
            tokio::time::advance(Duration::from_millis(1)).await;
            listing.put("c", 3);
            Ok(vec![("a".to_string(), 10)])
        };
        assert!(listing
            .refresh_if_stale(refresh, put_during)
            .await
            .expect("read"));
        assert_eq!(listing.get("a"), Some(10));
        assert_eq!(listing.get("b"), None, "gone from AWS");
        assert_eq!(listing.get("c"), Some(3), "our own call is kept");
    }
}
