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

use aws_sdk_elasticache::types::ReplicationGroup;
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

#[derive(Clone, Debug)]
struct Entry {
    group: ReplicationGroup,
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
            let page = out.replication_groups();
            self.announce_page(page, started);
            fetched.extend(page.iter().cloned());
            match out.marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
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
    fn announce_page(&self, page: &[ReplicationGroup], started: Instant) {
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
    pub async fn lookup(&self, id: &str) -> Result<Option<ReplicationGroup>, AwsError> {
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
    pub fn peek(&self, id: &str) -> Option<ReplicationGroup> {
        self.lock().groups.get(id).map(|e| e.group.clone())
    }

    /// Records what one of our own calls returned about a group.
    pub fn put(&self, group: ReplicationGroup) {
        let Some(id) = group.replication_group_id().map(str::to_string) else {
            return;
        };
        let mut s = self.lock();
        s.followed.insert(id.clone());
        s.groups.insert(
            id,
            Entry {
                group,
                read_at: Instant::now(),
            },
        );
        drop(s);
        self.wake.notify_one();
    }

    /// Forgets a group that is gone; returns what the snapshot had.
    pub fn remove(&self, id: &str) -> Option<ReplicationGroup> {
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
