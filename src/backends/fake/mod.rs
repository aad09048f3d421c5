//! An in-memory [`ElastiCacheApi`] with a realistic lifecycle (creating → available
//! after a number of observations, modifying → available with the new values,
//! deleting → gone), changes deferred to the maintenance window, AUTH token
//! rotation (ROTATE keeps both tokens, SET keeps one), node-type limits,
//! ownership tags, and fault injection, for tests of the ElastiCache backend,
//! the reconciler and the controller loop. Compiled only with the `fake`
//! feature (the test targets and the benchmark).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::api::ClusterMode;
use crate::backends::elasticache::api::{
    AuthTokenStrategy, Companions, ElastiCacheApi, GroupStatus, NetworkState, ParameterGroupState,
    ReplicationGroupChange, ReplicationGroupState, TagChange,
};
use crate::backends::elasticache::desired::{
    DesiredNetwork, DesiredParameterGroup, DesiredReplicationGroup, DesiredSubnetGroup,
};
use crate::backends::{
    BackendError, Credential, Deletion, Endpoint, ErrorClass, Ownership, TAG_OWNER_UID,
    TAG_RESOURCE,
};

/// Names of the fake's operations, for fault injection and call logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    CheckAccess,
    EnsureParameterGroup,
    EnsureNetwork,
    ObserveReplicationGroup,
    CreateReplicationGroup,
    ModifyReplicationGroup,
    DeleteReplicationGroup,
    DeleteSecurityGroup,
    DeleteParameterGroup,
    DeleteSubnetGroup,
    ModifyReplicaCount,
    ModifyShardCount,
    AllowedNodeTypes,
    UpdateAuthToken,
    UpdateTags,
}

/// Node types the fake allows scaling to unless a test says otherwise.
pub const DEFAULT_ALLOWED_NODE_TYPES: [&str; 6] = [
    "cache.t4g.micro",
    "cache.t4g.small",
    "cache.t4g.medium",
    "cache.r7g.large",
    "cache.r7g.xlarge",
    "cache.m7g.large",
];

/// A replication group as the fake keeps it.
#[derive(Clone, Debug)]
pub struct FakeGroup {
    pub state: ReplicationGroupState,
    pub tags: BTreeMap<String, String>,
    /// The newest token AWS accepted (tests compare it with the Secret).
    pub auth_token: Credential,
    /// Every token that works now: one, or two between ROTATE and SET.
    pub valid_tokens: Vec<Credential>,
    /// Observations left before the current transition completes.
    pub polls_left: u32,
    pub final_snapshot: Option<String>,
    /// What the group becomes when the running transition completes.
    pub on_completion: Option<ReplicationGroupState>,
    /// Tokens after the running transition completes.
    pub tokens_on_completion: Option<Vec<Credential>>,
    /// Settings held for the maintenance window (`applyImmediately: false`).
    pub deferred: ReplicationGroupChange,
}

impl FakeGroup {
    /// Whether `token` works with the group now.
    pub fn accepts(&self, token: &str) -> bool {
        self.valid_tokens.iter().any(|t| t.expose() == token)
    }
}

/// A companion resource as the fake keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeCompanion {
    pub id: String,
    pub tags: BTreeMap<String, String>,
    /// Parameters, subnet ids or ingress rules, depending on the kind.
    pub content: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    groups: HashMap<String, FakeGroup>,
    parameter_groups: HashMap<String, FakeCompanion>,
    subnet_groups: HashMap<String, FakeCompanion>,
    security_groups: HashMap<String, FakeCompanion>,
    faults: HashMap<Op, VecDeque<BackendError>>,
    calls: Vec<Op>,
    modifications: Vec<ReplicationGroupChange>,
    next_sg: u32,
    allowed_node_types: Option<Vec<String>>,
    endpoint_override: Option<Endpoint>,
}

/// The in-memory provider.
pub struct FakeElastiCache {
    state: Mutex<State>,
    /// A log shared with the test (e.g. with its Kubernetes requests), one
    /// `aws <Op>` line per call.
    timeline: Option<std::sync::Arc<Mutex<Vec<String>>>>,
    /// Observations a group spends in `creating`/`modifying`/`deleting`.
    transition_polls: u32,
}

impl Default for FakeElastiCache {
    fn default() -> Self {
        Self::new(2)
    }
}

impl FakeElastiCache {
    /// A fake whose groups spend `transition_polls` observations in each transition.
    pub fn new(transition_polls: u32) -> Self {
        Self {
            state: Mutex::new(State::default()),
            timeline: None,
            transition_polls,
        }
    }

    /// Also logs every call as `aws <Op>` on `timeline`.
    pub fn with_timeline(mut self, timeline: std::sync::Arc<Mutex<Vec<String>>>) -> Self {
        self.timeline = Some(timeline);
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this test's result.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next call of `op` fails with an error of `class`.
    pub fn fail_next(&self, op: Op, class: ErrorClass, code: &str) {
        let err = BackendError::new(class, Some(code), format!("injected {code}"));
        self.lock().faults.entry(op).or_default().push_back(err);
    }

    /// The next call of `op` is not made: the cache waits in line for the
    /// operator's rate limit, `ahead` other caches before it.
    pub fn queue_next(&self, op: Op, ahead: usize) {
        let mut err = BackendError::new(
            ErrorClass::Throttled,
            None,
            format!("waiting for the AWS rate limit ({ahead} caches ahead)"),
        );
        err.queued = true;
        err.retry_after = Some(std::time::Duration::from_secs(7));
        self.lock().faults.entry(op).or_default().push_back(err);
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<Op> {
        self.lock().calls.clone()
    }

    /// Every `ModifyReplicationGroup` request AWS accepted, in order.
    pub fn modifications(&self) -> Vec<ReplicationGroupChange> {
        self.lock().modifications.clone()
    }

    /// Injected faults not yet triggered.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.values().map(VecDeque::len).sum()
    }

    /// How many times `op` was called.
    pub fn count(&self, op: Op) -> usize {
        self.lock().calls.iter().filter(|c| **c == op).count()
    }

    /// The replication group `id`, if it exists.
    pub fn group(&self, id: &str) -> Option<FakeGroup> {
        self.lock().groups.get(id).cloned()
    }

    /// Ids of every replication group.
    pub fn group_ids(&self) -> Vec<String> {
        self.lock().groups.keys().cloned().collect()
    }

    /// The parameter group `name`, if it exists.
    pub fn parameter_group(&self, name: &str) -> Option<FakeCompanion> {
        self.lock().parameter_groups.get(name).cloned()
    }

    /// The subnet group `name`, if it exists.
    pub fn subnet_group(&self, name: &str) -> Option<FakeCompanion> {
        self.lock().subnet_groups.get(name).cloned()
    }

    /// The security group named `name`, if it exists.
    pub fn security_group(&self, name: &str) -> Option<FakeCompanion> {
        self.lock().security_groups.get(name).cloned()
    }

    /// Whether nothing at all exists any more.
    pub fn is_empty(&self) -> bool {
        let s = self.lock();
        s.groups.is_empty()
            && s.parameter_groups.is_empty()
            && s.subnet_groups.is_empty()
            && s.security_groups.is_empty()
    }

    /// Puts a replication group owned by someone else under `id`.
    pub fn put_foreign_group(&self, id: &str, owner_uid: &str) {
        let tags = BTreeMap::from([
            (TAG_OWNER_UID.to_string(), owner_uid.to_string()),
            (TAG_RESOURCE.to_string(), "other/cache".to_string()),
        ]);
        let state = ReplicationGroupState {
            engine: Some("redis".into()),
            engine_version: Some("7.1".into()),
            node_type: Some("cache.t4g.micro".into()),
            cluster_mode: Some(ClusterMode::Disabled),
            port: Some(6379),
            at_rest_encryption: true,
            transit_encryption: true,
            auth_token_enabled: true,
            node_group_ids: vec!["0001".into()],
            snapshot_retention_days: Some(0),
            tags: tags.clone(),
            ..ReplicationGroupState::available(id)
        };
        self.lock().groups.insert(
            id.to_string(),
            FakeGroup::new(state, tags, Credential::new("foreign"), 0),
        );
    }

    /// Changes the group as someone in the AWS console would (drift).
    pub fn edit_group(&self, id: &str, edit: impl FnOnce(&mut ReplicationGroupState)) {
        if let Some(g) = self.lock().groups.get_mut(id) {
            edit(&mut g.state);
        }
    }

    /// Groups created from now on report `host:port` as their endpoint (e.g.
    /// a local redis-server for the health probe).
    pub fn serve_endpoints_at(&self, host: &str, port: i32) {
        self.lock().endpoint_override = Some(Endpoint {
            host: host.to_string(),
            port,
        });
    }

    /// Limits the node types `allowed_node_types` reports.
    pub fn set_allowed_node_types(&self, types: &[&str]) {
        self.lock().allowed_node_types = Some(types.iter().map(|t| t.to_string()).collect());
    }

    /// The maintenance window arrives: deferred settings are applied.
    pub fn run_maintenance(&self, id: &str) {
        if let Some(g) = self.lock().groups.get_mut(id) {
            let deferred = std::mem::take(&mut g.deferred);
            apply_change(&mut g.state, &deferred);
            g.state.pending_changes.clear();
        }
    }

    /// Records the call and returns the injected fault, if any.
    fn enter(&self, s: &mut State, op: Op) -> Result<(), BackendError> {
        s.calls.push(op);
        if let Some(t) = &self.timeline {
            t.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("aws {op:?}"));
        }
        match s.faults.get_mut(&op).and_then(VecDeque::pop_front) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl FakeGroup {
    fn new(
        state: ReplicationGroupState,
        tags: BTreeMap<String, String>,
        token: Credential,
        polls: u32,
    ) -> Self {
        Self {
            state,
            tags,
            valid_tokens: vec![token.clone()],
            auth_token: token,
            polls_left: polls,
            final_snapshot: None,
            on_completion: None,
            tokens_on_completion: None,
            deferred: ReplicationGroupChange::default(),
        }
    }

    /// Starts a transition to `next` (AWS reports the old values until done).
    fn transition(&mut self, next: ReplicationGroupState, polls: u32) {
        self.state.status = GroupStatus::Modifying;
        self.on_completion = Some(next);
        self.polls_left = polls;
    }

    /// Refuses a change unless the group is `available`, as AWS does.
    fn require_available(&self, id: &str) -> Result<(), BackendError> {
        if self.state.status == GroupStatus::Available {
            Ok(())
        } else {
            Err(BackendError::new(
                ErrorClass::Transient,
                Some("InvalidReplicationGroupState"),
                format!("replication group {id} is {}", self.state.status.as_str()),
            ))
        }
    }
}

/// Applies the settings `change` names to `st`.
fn apply_change(st: &mut ReplicationGroupState, change: &ReplicationGroupChange) {
    if let Some(v) = &change.engine {
        st.engine = Some(v.clone());
    }
    if let Some(v) = &change.node_type {
        st.node_type = Some(v.clone());
    }
    if let Some(v) = &change.engine_version {
        st.engine_version = Some(format!("{v}.0"));
    }
    if let Some(v) = &change.parameter_group {
        st.parameter_group = Some(v.clone());
    }
    if let Some(v) = &change.security_group_ids {
        st.security_group_ids = v.clone();
    }
    if let Some(v) = change.snapshot_retention_days {
        st.snapshot_retention_days = Some(v);
    }
    if let Some(v) = &change.snapshot_window {
        st.snapshot_window = Some(v.clone());
    }
    if let Some(v) = &change.maintenance_window {
        st.maintenance_window = Some(v.clone());
    }
    if let Some(v) = change.multi_az {
        st.multi_az = v;
    }
    if let Some(v) = change.automatic_failover {
        st.automatic_failover = v;
    }
}

fn rejected(code: &str, message: String) -> BackendError {
    BackendError::new(ErrorClass::Rejected, Some(code), message)
}

fn not_found(id: &str) -> BackendError {
    BackendError::new(
        ErrorClass::NotFound,
        Some("ReplicationGroupNotFoundFault"),
        format!("replication group {id} not found"),
    )
}

fn check_owner(
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

/// Creates or checks a companion and sets its content.
fn ensure_companion(
    map: &mut HashMap<String, FakeCompanion>,
    what: &str,
    name: &str,
    id: impl FnOnce() -> String,
    owner: &Ownership,
    tags: &BTreeMap<String, String>,
    content: BTreeMap<String, String>,
) -> Result<String, BackendError> {
    match map.get_mut(name) {
        Some(existing) => {
            check_owner(what, name, owner, &existing.tags)?;
            existing.content = content;
            existing.tags = tags.clone();
            Ok(existing.id.clone())
        }
        None => {
            let id = id();
            map.insert(
                name.to_string(),
                FakeCompanion {
                    id: id.clone(),
                    tags: tags.clone(),
                    content,
                },
            );
            Ok(id)
        }
    }
}

fn delete_companion(
    map: &mut HashMap<String, FakeCompanion>,
    name: &str,
    owner: &Ownership,
) -> Deletion {
    match map.get(name) {
        None => Deletion::Gone,
        Some(c) if !owner.owns(&c.tags) => Deletion::NotOwned,
        Some(_) => {
            map.remove(name);
            Deletion::Gone
        }
    }
}

#[async_trait]
impl ElastiCacheApi for FakeElastiCache {
    async fn check_access(&self) -> Result<(), BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::CheckAccess)
    }

    async fn ensure_parameter_group(
        &self,
        owner: &Ownership,
        desired: &DesiredParameterGroup,
        tags: &BTreeMap<String, String>,
    ) -> Result<ParameterGroupState, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::EnsureParameterGroup)?;
        let mut content = desired.parameters.clone();
        content.insert("family".into(), desired.family.clone());
        ensure_companion(
            &mut s.parameter_groups,
            "parameter group",
            &desired.name,
            || desired.name.clone(),
            owner,
            tags,
            content,
        )?;
        Ok(ParameterGroupState {
            name: desired.name.clone(),
            family: desired.family.clone(),
        })
    }

    async fn ensure_network(
        &self,
        owner: &Ownership,
        desired: &DesiredNetwork,
        tags: &BTreeMap<String, String>,
    ) -> Result<NetworkState, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::EnsureNetwork)?;
        if let DesiredSubnetGroup::Managed {
            name, subnet_ids, ..
        } = &desired.subnet_group
        {
            let content = subnet_ids
                .iter()
                .map(|id| (id.clone(), String::new()))
                .collect();
            ensure_companion(
                &mut s.subnet_groups,
                "subnet group",
                name,
                || name.clone(),
                owner,
                tags,
                content,
            )?;
        }
        let sg = &desired.security_group;
        let rules = sg
            .allowed_cidrs
            .iter()
            .chain(&sg.allowed_security_group_ids)
            .map(|source| (format!("tcp/{}/{source}", sg.port), String::new()))
            .collect();
        s.next_sg += 1;
        let fresh_id = format!("sg-{:08x}", s.next_sg);
        let security_group_id = ensure_companion(
            &mut s.security_groups,
            "security group",
            &sg.name,
            || fresh_id,
            owner,
            tags,
            rules,
        )?;
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
        let mut s = self.lock();
        self.enter(&mut s, Op::ObserveReplicationGroup)?;
        let Some(group) = s.groups.get_mut(id) else {
            return Ok(None);
        };
        check_owner("replication group", id, owner, &group.tags)?;
        if group.polls_left > 0 {
            group.polls_left -= 1;
        } else {
            match group.state.status {
                GroupStatus::Creating | GroupStatus::Modifying => {
                    if let Some(next) = group.on_completion.take() {
                        group.state = next;
                    }
                    if let Some(tokens) = group.tokens_on_completion.take() {
                        group.valid_tokens = tokens;
                        group.state.auth_token_last_modified = Some(jiff::Timestamp::now());
                    }
                    group.state.status = GroupStatus::Available;
                    let deferred = group.deferred.fields();
                    group.state.pending_changes = deferred.iter().map(|f| f.to_string()).collect();
                }
                GroupStatus::Deleting => {
                    s.groups.remove(id);
                    return Ok(None);
                }
                _ => {}
            }
        }
        let mut state = group.state.clone();
        state.tags = group.tags.clone();
        Ok(Some(state))
    }

    async fn create_replication_group(
        &self,
        owner: &Ownership,
        desired: &DesiredReplicationGroup,
        companions: &Companions,
        auth_token: &Credential,
        tags: &BTreeMap<String, String>,
    ) -> Result<ReplicationGroupState, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::CreateReplicationGroup)?;
        if let Some(existing) = s.groups.get(&desired.id) {
            // A create that succeeded before a crash: ours, or a conflict.
            check_owner("replication group", &desired.id, owner, &existing.tags)?;
            return Ok(existing.state.clone());
        }
        if !s.parameter_groups.contains_key(&companions.parameter_group) {
            return Err(BackendError::new(
                ErrorClass::NotFound,
                Some("CacheParameterGroupNotFound"),
                format!("parameter group {} not found", companions.parameter_group),
            ));
        }
        let host = |kind: &str| format!("{kind}.{}.abc123.use1.cache.amazonaws.com", desired.id);
        let (endpoint, reader_endpoint) = match desired.cluster_mode {
            ClusterMode::Enabled => (Some(host("clustercfg")), None),
            ClusterMode::Disabled if desired.replicas_per_shard > 0 => {
                (Some(host("master")), Some(host("replica")))
            }
            ClusterMode::Disabled => (Some(host("master")), None),
        };
        let endpoint_at = |h: Option<String>| {
            h.map(|host| Endpoint {
                host,
                port: desired.port,
            })
        };
        let (endpoint, reader_endpoint) = match &s.endpoint_override {
            Some(e) => (Some(e.clone()), None),
            None => (endpoint_at(endpoint), endpoint_at(reader_endpoint)),
        };
        let state = ReplicationGroupState {
            id: desired.id.clone(),
            arn: Some(format!(
                "arn:aws:elasticache:us-east-1:123456789012:replicationgroup:{}",
                desired.id
            )),
            status: GroupStatus::Creating,
            engine: Some(desired.engine.as_str().to_string()),
            engine_version: Some(desired.engine_version.clone()),
            node_type: Some(desired.node_type.clone()),
            cluster_mode: Some(desired.cluster_mode),
            shards: desired.shards,
            replicas_per_shard: desired.replicas_per_shard,
            multi_az: desired.multi_az,
            automatic_failover: desired.automatic_failover,
            port: Some(desired.port),
            at_rest_encryption: desired.at_rest_encryption,
            transit_encryption: desired.transit_encryption,
            auth_token_enabled: true,
            parameter_group: Some(companions.parameter_group.clone()),
            endpoint,
            reader_endpoint,
            pending_changes: Vec::new(),
            node_group_ids: (1..=desired.shards).map(|n| format!("{n:04}")).collect(),
            security_group_ids: companions.security_group_ids.clone(),
            subnet_group: Some(companions.subnet_group.clone()),
            kms_key_id: desired.kms_key_id.clone(),
            snapshot_retention_days: Some(desired.snapshot_retention_days),
            snapshot_window: desired.snapshot_window.clone(),
            maintenance_window: desired.maintenance_window.clone(),
            auth_token_last_modified: None,
            tags: tags.clone(),
        };
        s.groups.insert(
            desired.id.clone(),
            FakeGroup::new(
                state.clone(),
                tags.clone(),
                auth_token.clone(),
                self.transition_polls,
            ),
        );
        Ok(state)
    }

    async fn modify_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
        change: &ReplicationGroupChange,
    ) -> Result<ReplicationGroupState, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::ModifyReplicationGroup)?;
        let polls = self.transition_polls;
        let group = s.groups.get_mut(id).ok_or_else(|| not_found(id))?;
        check_owner("replication group", id, owner, &group.tags)?;
        group.require_available(id)?;
        if change.is_empty() {
            return Err(rejected(
                "InvalidParameterCombination",
                "No modifications were requested.".into(),
            ));
        }
        if change.multi_az == Some(true) && group.state.replicas_per_shard == 0 {
            return Err(rejected(
                "InvalidParameterCombination",
                "Multi-AZ needs at least one replica".into(),
            ));
        }
        let mut now = change.clone();
        s.modifications.push(change.clone());
        let group = s.groups.get_mut(id).ok_or_else(|| not_found(id))?;
        if !change.apply_immediately {
            // Node type and engine version wait for the maintenance window.
            group.deferred.node_type = now.node_type.take().or(group.deferred.node_type.take());
            group.deferred.engine_version = now
                .engine_version
                .take()
                .or(group.deferred.engine_version.take());
        } else {
            // Applying now also applies what was waiting.
            let deferred = std::mem::take(&mut group.deferred);
            now.node_type = now.node_type.or(deferred.node_type);
            now.engine_version = now.engine_version.or(deferred.engine_version);
        }
        group.state.pending_changes = group
            .deferred
            .fields()
            .iter()
            .map(|f| f.to_string())
            .collect();
        if now.is_empty() {
            return Ok(group.state.clone());
        }
        let mut next = group.state.clone();
        apply_change(&mut next, &now);
        group.transition(next, polls);
        Ok(group.state.clone())
    }

    async fn modify_replica_count(
        &self,
        owner: &Ownership,
        id: &str,
        replicas_per_shard: i32,
    ) -> Result<ReplicationGroupState, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::ModifyReplicaCount)?;
        let polls = self.transition_polls;
        let group = s.groups.get_mut(id).ok_or_else(|| not_found(id))?;
        check_owner("replication group", id, owner, &group.tags)?;
        group.require_available(id)?;
        if replicas_per_shard == 0 && group.state.multi_az {
            return Err(rejected(
                "InvalidParameterCombination",
                "cannot remove every replica while Multi-AZ is enabled".into(),
            ));
        }
        let mut next = group.state.clone();
        next.replicas_per_shard = replicas_per_shard;
        group.transition(next, polls);
        Ok(group.state.clone())
    }

    async fn modify_shard_count(
        &self,
        owner: &Ownership,
        id: &str,
        shards: i32,
        remove: &[String],
    ) -> Result<ReplicationGroupState, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::ModifyShardCount)?;
        let polls = self.transition_polls;
        let group = s.groups.get_mut(id).ok_or_else(|| not_found(id))?;
        check_owner("replication group", id, owner, &group.tags)?;
        group.require_available(id)?;
        let mut next = group.state.clone();
        if shards < next.shards {
            let wanted = usize::try_from(next.shards - shards).unwrap_or(0);
            if remove.len() != wanted || remove.iter().any(|r| !next.node_group_ids.contains(r)) {
                return Err(rejected(
                    "InvalidParameterValue",
                    format!("NodeGroupsToRemove must name {wanted} existing node groups"),
                ));
            }
            next.node_group_ids.retain(|n| !remove.contains(n));
        } else {
            let first = next.node_group_ids.len() + 1;
            let count = usize::try_from(shards).unwrap_or(0);
            next.node_group_ids
                .extend((first..=count).map(|n| format!("{n:04}")));
        }
        next.shards = shards;
        group.transition(next, polls);
        Ok(group.state.clone())
    }

    async fn allowed_node_types(
        &self,
        owner: &Ownership,
        id: &str,
    ) -> Result<Vec<String>, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::AllowedNodeTypes)?;
        let allowed = s.allowed_node_types.clone();
        let group = s.groups.get(id).ok_or_else(|| not_found(id))?;
        check_owner("replication group", id, owner, &group.tags)?;
        Ok(allowed.unwrap_or_else(|| {
            DEFAULT_ALLOWED_NODE_TYPES
                .iter()
                .map(|t| t.to_string())
                .collect()
        }))
    }

    async fn update_auth_token(
        &self,
        owner: &Ownership,
        id: &str,
        token: &Credential,
        strategy: AuthTokenStrategy,
    ) -> Result<ReplicationGroupState, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::UpdateAuthToken)?;
        let polls = self.transition_polls;
        let group = s.groups.get_mut(id).ok_or_else(|| not_found(id))?;
        check_owner("replication group", id, owner, &group.tags)?;
        group.require_available(id)?;
        let tokens = match strategy {
            AuthTokenStrategy::Rotate => {
                let mut t = group.valid_tokens.clone();
                if !t.contains(token) {
                    if t.len() >= 2 {
                        return Err(rejected(
                            "InvalidParameterCombination",
                            "the group already has two AUTH tokens; SET one first".into(),
                        ));
                    }
                    t.push(token.clone());
                }
                t
            }
            AuthTokenStrategy::Set => {
                if !group.valid_tokens.contains(token) {
                    return Err(rejected(
                        "InvalidParameterCombination",
                        "SET is allowed only with a token added by ROTATE".into(),
                    ));
                }
                vec![token.clone()]
            }
        };
        group.auth_token = token.clone();
        let next = group.state.clone();
        group.transition(next, polls);
        group.tokens_on_completion = Some(tokens);
        group.state.pending_changes.push("authToken".into());
        Ok(group.state.clone())
    }

    async fn update_tags(
        &self,
        owner: &Ownership,
        id: &str,
        change: &TagChange,
    ) -> Result<(), BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::UpdateTags)?;
        let group = s.groups.get_mut(id).ok_or_else(|| not_found(id))?;
        check_owner("replication group", id, owner, &group.tags)?;
        group.tags.extend(change.add.clone());
        for k in &change.remove {
            group.tags.remove(k);
        }
        Ok(())
    }

    async fn delete_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
        final_snapshot: Option<&str>,
    ) -> Result<Deletion, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::DeleteReplicationGroup)?;
        let polls = self.transition_polls;
        let Some(group) = s.groups.get_mut(id) else {
            return Ok(Deletion::Gone);
        };
        if !owner.owns(&group.tags) {
            return Ok(Deletion::NotOwned);
        }
        match group.state.status {
            GroupStatus::Deleting => {
                if group.polls_left == 0 {
                    s.groups.remove(id);
                    return Ok(Deletion::Gone);
                }
                group.polls_left -= 1;
            }
            GroupStatus::Available | GroupStatus::CreateFailed => {
                group.state.status = GroupStatus::Deleting;
                group.polls_left = polls;
                group.final_snapshot = final_snapshot.map(str::to_string);
            }
            _ => {
                return Err(BackendError::new(
                    ErrorClass::Transient,
                    Some("InvalidReplicationGroupState"),
                    format!("replication group {id} is {}", group.state.status.as_str()),
                ));
            }
        }
        Ok(Deletion::InProgress)
    }

    async fn delete_security_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::DeleteSecurityGroup)?;
        Ok(delete_companion(&mut s.security_groups, name, owner))
    }

    async fn delete_parameter_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::DeleteParameterGroup)?;
        let in_use = s.groups.values().any(|g| {
            g.state.parameter_group.as_deref() == Some(name)
                || g.on_completion
                    .as_ref()
                    .is_some_and(|n| n.parameter_group.as_deref() == Some(name))
        });
        if in_use && s.parameter_groups.contains_key(name) {
            return Err(BackendError::new(
                ErrorClass::Transient,
                Some("InvalidCacheParameterGroupState"),
                format!("parameter group {name} is in use"),
            ));
        }
        Ok(delete_companion(&mut s.parameter_groups, name, owner))
    }

    async fn delete_subnet_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, BackendError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::DeleteSubnetGroup)?;
        Ok(delete_companion(&mut s.subnet_groups, name, owner))
    }
}

/// Builds ElastiCache backends on one shared fake, for every class.
pub struct FakeFactory {
    pub fake: std::sync::Arc<FakeElastiCache>,
}

#[async_trait]
impl crate::backends::BackendFactory for FakeFactory {
    fn provider(&self) -> crate::api::ProviderKind {
        crate::api::ProviderKind::ElastiCache
    }

    async fn build(
        &self,
        class: &crate::api::RedisCacheClass,
    ) -> Result<std::sync::Arc<dyn crate::backends::Backend>, BackendError> {
        let block = class.spec.elasti_cache.clone().unwrap_or_default();
        Ok(std::sync::Arc::new(
            crate::backends::elasticache::ElastiCacheBackend::new(self.fake.clone(), block),
        ))
    }
}
