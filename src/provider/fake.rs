//! An in-memory [`Provider`] with a realistic lifecycle (creating → available
//! after a number of observations, deleting → gone), ownership tags, and fault
//! injection, for tests of the reconciler and the controller loop.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    AuthToken, Companions, Deletion, Endpoint, ErrorClass, GroupStatus, NetworkState,
    ParameterGroupState, Provider, ProviderError, ReplicationGroupChange, ReplicationGroupState,
};
use crate::crd::ClusterMode;
use crate::desired::{
    DesiredNetwork, DesiredParameterGroup, DesiredReplicationGroup, DesiredSubnetGroup, Ownership,
    TAG_OWNER_UID, TAG_RESOURCE,
};

/// Names of the fake's operations, for fault injection and call logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    EnsureParameterGroup,
    EnsureNetwork,
    ObserveReplicationGroup,
    CreateReplicationGroup,
    ModifyReplicationGroup,
    DeleteReplicationGroup,
    DeleteSecurityGroup,
    DeleteParameterGroup,
    DeleteSubnetGroup,
}

/// A replication group as the fake keeps it.
#[derive(Clone, Debug)]
pub struct FakeGroup {
    pub state: ReplicationGroupState,
    pub tags: BTreeMap<String, String>,
    /// The token the group was created with (tests compare it with the Secret).
    pub auth_token: AuthToken,
    /// Observations left before the current transition completes.
    pub polls_left: u32,
    pub final_snapshot: Option<String>,
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
    faults: HashMap<Op, VecDeque<ProviderError>>,
    calls: Vec<Op>,
    next_sg: u32,
}

/// The in-memory provider.
pub struct FakeProvider {
    state: Mutex<State>,
    /// Observations a group spends in `creating`/`modifying`/`deleting`.
    transition_polls: u32,
}

impl Default for FakeProvider {
    fn default() -> Self {
        Self::new(2)
    }
}

impl FakeProvider {
    /// A fake whose groups spend `transition_polls` observations in each transition.
    pub fn new(transition_polls: u32) -> Self {
        Self {
            state: Mutex::new(State::default()),
            transition_polls,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this test's result.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next call of `op` fails with an error of `class`.
    pub fn fail_next(&self, op: Op, class: ErrorClass, code: &str) {
        let err = ProviderError::new(class, Some(code), format!("injected {code}"));
        self.lock().faults.entry(op).or_default().push_back(err);
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<Op> {
        self.lock().calls.clone()
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
            id: id.to_string(),
            arn: None,
            status: GroupStatus::Available,
            engine: Some("redis".into()),
            engine_version: Some("7.1".into()),
            node_type: Some("cache.t4g.micro".into()),
            cluster_mode: Some(ClusterMode::Disabled),
            shards: 1,
            replicas_per_shard: 0,
            multi_az: false,
            automatic_failover: false,
            port: Some(6379),
            at_rest_encryption: true,
            transit_encryption: true,
            auth_token_enabled: true,
            parameter_group: None,
            endpoint: None,
            reader_endpoint: None,
            pending_changes: Vec::new(),
        };
        self.lock().groups.insert(
            id.to_string(),
            FakeGroup {
                state,
                tags,
                auth_token: AuthToken::new("foreign"),
                polls_left: 0,
                final_snapshot: None,
            },
        );
    }

    /// Records the call and returns the injected fault, if any.
    fn enter(&self, s: &mut State, op: Op) -> Result<(), ProviderError> {
        s.calls.push(op);
        match s.faults.get_mut(&op).and_then(VecDeque::pop_front) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

fn check_owner(
    what: &str,
    name: &str,
    owner: &Ownership,
    tags: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    if owner.owns(tags) {
        Ok(())
    } else {
        Err(ProviderError::conflict(
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
) -> Result<String, ProviderError> {
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
impl Provider for FakeProvider {
    async fn ensure_parameter_group(
        &self,
        owner: &Ownership,
        desired: &DesiredParameterGroup,
        tags: &BTreeMap<String, String>,
    ) -> Result<ParameterGroupState, ProviderError> {
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
    ) -> Result<NetworkState, ProviderError> {
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
    ) -> Result<Option<ReplicationGroupState>, ProviderError> {
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
                    group.state.status = GroupStatus::Available;
                    group.state.pending_changes.clear();
                }
                GroupStatus::Deleting => {
                    s.groups.remove(id);
                    return Ok(None);
                }
                _ => {}
            }
        }
        Ok(Some(group.state.clone()))
    }

    async fn create_replication_group(
        &self,
        owner: &Ownership,
        desired: &DesiredReplicationGroup,
        companions: &Companions,
        auth_token: &AuthToken,
        tags: &BTreeMap<String, String>,
    ) -> Result<ReplicationGroupState, ProviderError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::CreateReplicationGroup)?;
        if let Some(existing) = s.groups.get(&desired.id) {
            // A create that succeeded before a crash: ours, or a conflict.
            check_owner("replication group", &desired.id, owner, &existing.tags)?;
            return Ok(existing.state.clone());
        }
        if !s.parameter_groups.contains_key(&companions.parameter_group) {
            return Err(ProviderError::new(
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
            endpoint: endpoint_at(endpoint),
            reader_endpoint: endpoint_at(reader_endpoint),
            pending_changes: Vec::new(),
        };
        s.groups.insert(
            desired.id.clone(),
            FakeGroup {
                state: state.clone(),
                tags: tags.clone(),
                auth_token: auth_token.clone(),
                polls_left: self.transition_polls,
                final_snapshot: None,
            },
        );
        Ok(state)
    }

    async fn modify_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
        change: &ReplicationGroupChange,
    ) -> Result<ReplicationGroupState, ProviderError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::ModifyReplicationGroup)?;
        let polls = self.transition_polls;
        let Some(group) = s.groups.get_mut(id) else {
            return Err(ProviderError::new(
                ErrorClass::NotFound,
                Some("ReplicationGroupNotFoundFault"),
                format!("replication group {id} not found"),
            ));
        };
        check_owner("replication group", id, owner, &group.tags)?;
        if group.state.status != GroupStatus::Available {
            return Err(ProviderError::new(
                ErrorClass::Transient,
                Some("InvalidReplicationGroupState"),
                format!("replication group {id} is {}", group.state.status.as_str()),
            ));
        }
        let st = &mut group.state;
        if let Some(v) = &change.node_type {
            st.node_type = Some(v.clone());
        }
        if let Some(v) = &change.engine_version {
            st.engine_version = Some(v.clone());
        }
        if let Some(v) = &change.parameter_group {
            st.parameter_group = Some(v.clone());
        }
        if let Some(v) = change.multi_az {
            st.multi_az = v;
        }
        if let Some(v) = change.automatic_failover {
            st.automatic_failover = v;
        }
        st.status = GroupStatus::Modifying;
        group.polls_left = polls;
        Ok(group.state.clone())
    }

    async fn delete_replication_group(
        &self,
        owner: &Ownership,
        id: &str,
        final_snapshot: Option<&str>,
    ) -> Result<Deletion, ProviderError> {
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
                return Err(ProviderError::new(
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
    ) -> Result<Deletion, ProviderError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::DeleteSecurityGroup)?;
        Ok(delete_companion(&mut s.security_groups, name, owner))
    }

    async fn delete_parameter_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, ProviderError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::DeleteParameterGroup)?;
        Ok(delete_companion(&mut s.parameter_groups, name, owner))
    }

    async fn delete_subnet_group(
        &self,
        owner: &Ownership,
        name: &str,
    ) -> Result<Deletion, ProviderError> {
        let mut s = self.lock();
        self.enter(&mut s, Op::DeleteSubnetGroup)?;
        Ok(delete_companion(&mut s.subnet_groups, name, owner))
    }
}
