//! The fleet poller: one task pages through `DescribeReplicationGroups`
//! (100 per page) and keeps a snapshot that reconciles read instead of each
//! describing its own group, so steady state costs about one call per 100
//! caches per interval. It polls fast while any group the operator follows
//! is in transition and slowly when all are settled. Creates, modifies and
//! deletes put what AWS answered into the snapshot at once, so a reconcile
//! never reads a state older than its own last call. A followed group whose
//! status a refresh finds changed (say `creating` → `available`) is named
//! on the [`Wakeups`], so its cache is reconciled at once, ahead of caches
//! that merely wait for their next poll.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use aws_sdk_elasticache::types::{NodeGroup, NodeGroupMember, ReplicationGroup};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::clients::Api;
use super::errors::AwsError;
use super::operations::Operation;
use crate::backends::elasticache::api::GroupStatus;
use crate::backends::wakeups::Wakeups;

/// AWS's largest page for `DescribeReplicationGroups`.
pub const PAGE_SIZE: i32 = 100;

/// How often the poller reads the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollIntervals {
    /// While a group the operator follows is being created, modified or deleted.
    pub in_transition: Duration,
    /// When every followed group is settled (drift detection).
    pub settled: Duration,
}

impl Default for PollIntervals {
    fn default() -> Self {
        Self {
            in_transition: Duration::from_secs(15),
            settled: Duration::from_secs(300),
        }
    }
}

/// A replication group as the snapshot keeps it ([`kept`]), shared with
/// the reconciles that read it.
pub type Group = Arc<ReplicationGroup>;

/// What the operator reads of a replication group; the rest (description,
/// member node details, log delivery, user groups, …) is dropped, so that a
/// thousand groups in the snapshot cost little memory. Every field
/// `replication_group::map_group` and the backend read is kept (tested).
pub fn kept(g: ReplicationGroup) -> Group {
    let node_groups = g.node_groups.map(|groups| {
        groups
            .into_iter()
            .map(|n| {
                // Only how many members a shard has is read.
                let members = n.node_group_members.map(|m| {
                    m.iter()
                        .map(|_| NodeGroupMember::builder().build())
                        .collect()
                });
                NodeGroup::builder()
                    .set_node_group_id(n.node_group_id)
                    .set_primary_endpoint(n.primary_endpoint)
                    .set_reader_endpoint(n.reader_endpoint)
                    .set_node_group_members(members)
                    .build()
            })
            .collect()
    });
    Arc::new(
        ReplicationGroup::builder()
            .set_replication_group_id(g.replication_group_id)
            .set_arn(g.arn)
            .set_status(g.status)
            .set_engine(g.engine)
            .set_cache_node_type(g.cache_node_type)
            .set_cluster_mode(g.cluster_mode)
            .set_cluster_enabled(g.cluster_enabled)
            .set_configuration_endpoint(g.configuration_endpoint)
            .set_node_groups(node_groups)
            .set_member_clusters(g.member_clusters)
            .set_pending_modified_values(g.pending_modified_values)
            .set_multi_az(g.multi_az)
            .set_automatic_failover(g.automatic_failover)
            .set_at_rest_encryption_enabled(g.at_rest_encryption_enabled)
            .set_transit_encryption_enabled(g.transit_encryption_enabled)
            .set_auth_token_enabled(g.auth_token_enabled)
            .set_auth_token_last_modified_date(g.auth_token_last_modified_date)
            .set_kms_key_id(g.kms_key_id)
            .set_snapshot_retention_limit(g.snapshot_retention_limit)
            .set_snapshot_window(g.snapshot_window)
            .build(),
    )
}

#[derive(Clone, Debug)]
struct Entry {
    group: Group,
    /// When this entry's data was read from AWS (the page's refresh start,
    /// or the time of our own call).
    read_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    groups: HashMap<String, Entry>,
    /// Start of the last complete refresh.
    taken_at: Option<Instant>,
    /// Start of the last refresh attempt, complete or not.
    attempted_at: Option<Instant>,
    /// Groups reconciles asked about: the ones whose transitions matter.
    followed: HashSet<String>,
}

/// The shared snapshot of every replication group in the account and region.
#[derive(Debug)]
pub struct Fleet {
    api: Api,
    intervals: PollIntervals,
    state: Mutex<State>,
    /// One refresh at a time; a reconcile that finds no snapshot waits for
    /// the one in flight instead of starting its own.
    refreshing: tokio::sync::Mutex<()>,
    wake: Arc<Notify>,
    /// Where status changes are announced (set once by the operator).
    wakeups: std::sync::OnceLock<Wakeups>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Lets the poller task notice the fleet is gone and end.
        self.wake.notify_one();
    }
}

impl Fleet {
    /// A fleet with no snapshot yet.
    pub fn new(api: Api, intervals: PollIntervals) -> Arc<Self> {
        Arc::new(Self {
            api,
            intervals,
            state: Mutex::new(State::default()),
            refreshing: tokio::sync::Mutex::new(()),
            wake: Arc::new(Notify::new()),
            wakeups: std::sync::OnceLock::new(),
        })
    }

    /// Announces followed groups whose status changed on `wakeups`.
    pub fn announce_on(&self, wakeups: Wakeups) {
        let _ = self.wakeups.set(wakeups);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the poller task; it ends when the fleet is dropped.
    pub fn spawn_poller(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let wake = self.wake.clone();
        tokio::spawn(poll(weak, wake))
    }

    /// Reads every page of `DescribeReplicationGroups` into the snapshot.
    /// Returns how many groups AWS reported.
    pub async fn refresh(&self) -> Result<usize, AwsError> {
        let _one = self.refreshing.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<usize, AwsError> {
        let started = Instant::now();
        self.lock().attempted_at = Some(started);
        let mut fetched = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .api
                .call(
                    Operation::DescribeReplicationGroups,
                    self.api
                        .elasticache
                        .describe_replication_groups()
                        .max_records(PAGE_SIZE)
                        .set_marker(marker.clone())
                        .send(),
                )
                .await?;
            let page: Vec<Group> = out
                .replication_groups
                .unwrap_or_default()
                .into_iter()
                .map(kept)
                .collect();
            self.announce_page(&page, started);
            fetched.extend(page);
            match out.marker {
                Some(m) if !m.is_empty() => marker = Some(m),
                _ => break,
            }
        }
        let count = fetched.len();
        let mut s = self.lock();
        let mut groups: HashMap<String, Entry> = fetched
            .into_iter()
            .filter_map(|g| {
                let id = g.replication_group_id()?.to_string();
                Some((
                    id,
                    Entry {
                        group: g,
                        read_at: started,
                    },
                ))
            })
            .collect();
        let status = |e: &Entry| e.group.status().map(str::to_string);
        let mut changed = Vec::new();
        // What our own calls learned while the pages were read is newer.
        let st = &mut *s;
        for (id, entry) in st.groups.drain() {
            if entry.read_at > started {
                groups.insert(id, entry);
            } else if st.followed.contains(&id)
                && groups.get(&id).map(status) != Some(status(&entry))
            {
                changed.push(id);
            }
        }
        s.groups = groups;
        s.taken_at = Some(started);
        drop(s);
        if let Some(w) = self.wakeups.get() {
            for id in &changed {
                w.wake(id);
            }
        }
        Ok(count)
    }

    /// Puts each followed group of `page` whose status changed into the
    /// snapshot and announces it at once, before the other pages are read:
    /// a cache AWS has just made available waits for its own page only.
    fn announce_page(&self, page: &[Group], started: Instant) {
        let mut woken = Vec::new();
        {
            let mut s = self.lock();
            for g in page {
                let Some(id) = g.replication_group_id() else {
                    continue;
                };
                if !s.followed.contains(id) {
                    continue;
                }
                if let Some(e) = s.groups.get_mut(id) {
                    if e.read_at <= started && e.group.status() != g.status() {
                        *e = Entry {
                            group: g.clone(),
                            read_at: started,
                        };
                        woken.push(id.to_string());
                    }
                }
            }
        }
        if let Some(w) = self.wakeups.get() {
            for id in &woken {
                w.wake(id);
            }
        }
    }

    /// The group `id` from the snapshot (taking the first snapshot if there
    /// is none yet); `None` when the snapshot does not have it.
    pub async fn lookup(&self, id: &str) -> Result<Option<Group>, AwsError> {
        let first = {
            let mut s = self.lock();
            let newly = s.followed.insert(id.to_string());
            if newly && s.taken_at.is_some() {
                // A newly followed group may be in transition: let the
                // poller pick its interval again.
                self.wake.notify_one();
            }
            s.taken_at.is_none()
        };
        if first {
            let _one = self.refreshing.lock().await;
            if self.lock().taken_at.is_none() {
                self.refresh_locked().await?;
            }
        }
        Ok(self.lock().groups.get(id).map(|e| e.group.clone()))
    }

    /// The group `id` as the snapshot has it, without reading anything.
    pub fn peek(&self, id: &str) -> Option<Group> {
        self.lock().groups.get(id).map(|e| e.group.clone())
    }

    /// Records what one of our own calls returned about a group; returns
    /// it as the snapshot keeps it.
    pub fn put(&self, group: ReplicationGroup) -> Group {
        let group = kept(group);
        let Some(id) = group.replication_group_id().map(str::to_string) else {
            return group;
        };
        let mut s = self.lock();
        s.followed.insert(id.clone());
        s.groups.insert(
            id,
            Entry {
                group: group.clone(),
                read_at: Instant::now(),
            },
        );
        drop(s);
        self.wake.notify_one();
        group
    }

    /// Forgets a group that is gone; returns what the snapshot had.
    pub fn remove(&self, id: &str) -> Option<Group> {
        let mut s = self.lock();
        s.followed.remove(id);
        s.groups.remove(id).map(|e| e.group)
    }

    /// Whether a followed group is being created, modified or deleted.
    pub fn in_transition(&self) -> bool {
        let s = self.lock();
        s.followed.iter().any(|id| {
            s.groups.get(id).is_some_and(|e| {
                GroupStatus::parse(e.group.status().unwrap_or_default()).in_transition()
            })
        })
    }

    /// The interval in effect now.
    pub fn interval(&self) -> Duration {
        if self.in_transition() {
            self.intervals.in_transition
        } else {
            self.intervals.settled
        }
    }

    fn next_refresh_at(&self) -> Instant {
        let interval = self.interval();
        match self.lock().attempted_at {
            Some(at) => at + interval,
            None => Instant::now(),
        }
    }

    /// Number of groups in the snapshot.
    pub fn len(&self) -> usize {
        self.lock().groups.len()
    }

    /// Whether the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The poller loop: refresh when the interval is up; a wake-up (a group
/// created or modified, a new group followed) only re-reads the interval.
async fn poll(fleet: Weak<Fleet>, wake: Arc<Notify>) {
    loop {
        let deadline = match fleet.upgrade() {
            Some(f) => f.next_refresh_at(),
            None => return,
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                let Some(f) = fleet.upgrade() else { return };
                match f.refresh().await {
                    Ok(n) => tracing::debug!(groups = n, "fleet snapshot refreshed"),
                    Err(e) => tracing::warn!(error = %e, "reading the replication groups failed; keeping the last snapshot"),
                }
            }
            () = wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use aws_sdk_elasticache::types::{
        AutomaticFailoverStatus, ClusterMode, Endpoint, MultiAzStatus, NodeGroup, NodeGroupMember,
        ReplicationGroup, ReplicationGroupPendingModifiedValues,
    };
    use aws_smithy_types::DateTime;

    use super::super::replication_group::{map_group, MemberFacts};
    use super::kept;

    fn endpoint(host: &str) -> Endpoint {
        Endpoint::builder().address(host).port(6380).build()
    }

    /// A group with every field the SDK describes set, the ones the
    /// operator does not read included.
    fn full_group() -> ReplicationGroup {
        let member = |n: u8| {
            NodeGroupMember::builder()
                .cache_cluster_id(format!("g-00{n}"))
                .cache_node_id("0001")
                .read_endpoint(endpoint(&format!("g-00{n}.cache.amazonaws.com")))
                .preferred_availability_zone("us-east-1a")
                .current_role(if n == 1 { "primary" } else { "replica" })
                .build()
        };
        ReplicationGroup::builder()
            .replication_group_id("g")
            .description("redis-cache-operator: RedisCache shop/sessions")
            .arn("arn:aws:elasticache:us-east-1:123456789012:replicationgroup:g")
            .status("available")
            .engine("valkey")
            .cache_node_type("cache.t4g.small")
            .cluster_mode(ClusterMode::Disabled)
            .cluster_enabled(false)
            .node_groups(
                NodeGroup::builder()
                    .node_group_id("0001")
                    .status("available")
                    .primary_endpoint(endpoint("master.g.cache.amazonaws.com"))
                    .reader_endpoint(endpoint("replica.g.cache.amazonaws.com"))
                    .slots("0-16383")
                    .node_group_members(member(1))
                    .node_group_members(member(2))
                    .node_group_members(member(3))
                    .build(),
            )
            .member_clusters("g-001")
            .member_clusters("g-002")
            .member_clusters("g-003")
            .pending_modified_values(
                ReplicationGroupPendingModifiedValues::builder()
                    .automatic_failover_status("disabled".into())
                    .build(),
            )
            .multi_az(MultiAzStatus::Enabled)
            .automatic_failover(AutomaticFailoverStatus::Enabled)
            .at_rest_encryption_enabled(true)
            .transit_encryption_enabled(true)
            .auth_token_enabled(true)
            .auth_token_last_modified_date(DateTime::from_secs(1_790_000_000))
            .kms_key_id("alias/cache")
            .snapshot_retention_limit(7)
            .snapshot_window("03:00-04:00")
            .replication_group_create_time(DateTime::from_secs(1_780_000_000))
            .user_group_ids("ug-1")
            .auto_minor_version_upgrade(true)
            .build()
    }

    #[test]
    fn the_kept_group_maps_to_the_same_state_and_drops_the_rest() {
        let full = full_group();
        let facts = MemberFacts::default();
        let tags = BTreeMap::from([("owner".to_string(), "x".to_string())]);
        let small = kept(full.clone());
        assert_eq!(
            map_group(&small, &facts, tags.clone()),
            map_group(&full, &facts, tags)
        );
        assert_eq!(small.description(), None);
        assert!(small.user_group_ids().is_empty());
        let members = small.node_groups()[0].node_group_members();
        assert_eq!(members.len(), 3);
        assert!(members.iter().all(|m| m.read_endpoint().is_none()));
    }
}
