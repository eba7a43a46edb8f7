//! Consumer-group coordinator (Kafka's classic group protocol).
//!
//! The broker only relays: the leader member runs the assignor and sends every member's
//! assignment bytes in SyncGroup. Rivulet stores no assignor logic.
//!
//! Waiting requests (JoinGroup until every member rejoined, SyncGroup until the leader
//! assigned) park on oneshot channels; nothing sleep-polls. A periodic [`GroupCoordinator::tick`]
//! expires members whose session timed out and rebalances that outlived their timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::Result;
use crate::offsets::{CommittedOffset, OffsetStore};
use crate::topics::random_u128;

/// Why a group request was refused. The front end maps these to wire error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The member id is not part of the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The generation does not match the group's current generation.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing; the member must rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// The member's protocol type or protocols do not fit the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// First join without a member id: retry with the returned id.
    #[error("member id required")]
    MemberIdRequired,
    /// The session timeout is outside the accepted range.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// The group does not exist.
    #[error("group id not found")]
    GroupIdNotFound,
    /// The group still has members.
    #[error("group is not empty")]
    NonEmptyGroup,
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The group already has the maximum number of members, or too many groups exist.
    #[error("group max size reached")]
    GroupMaxSizeReached,
    /// Storing offsets failed.
    #[error("coordinator storage failed")]
    StorageFailed,
}

/// State of a group, named as Kafka names it in DescribeGroups/ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// Kafka's name for the state.
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Limits of the coordinator.
#[derive(Debug, Clone)]
pub struct GroupLimits {
    /// Groups kept in memory at once.
    pub groups_max: usize,
    /// Members per group.
    pub members_per_group_max: usize,
    /// Smallest session timeout accepted.
    pub session_timeout_ms_min: i32,
    /// Largest session timeout accepted.
    pub session_timeout_ms_max: i32,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            groups_max: 10_000,
            members_per_group_max: 1_000,
            session_timeout_ms_min: 1_000,
            session_timeout_ms_max: 1_800_000,
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Member id, empty on first join.
    pub member_id: String,
    /// Static membership id (treated like a dynamic member).
    pub group_instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// Supported protocols (assignors) with their opaque metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join without member id gets [`GroupError::MemberIdRequired`].
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    /// Error, if any.
    pub error: Option<GroupError>,
    /// Generation, -1 on error.
    pub generation_id: i32,
    /// Chosen protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// All members (only for the leader).
    pub members: Vec<JoinedMember>,
}

impl JoinOutcome {
    fn error(error: GroupError, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error: Some(error),
            generation_id: -1,
            member_id: member_id.to_string(),
            ..JoinOutcome::default()
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    /// Error, if any.
    pub error: Option<GroupError>,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Protocol name.
    pub protocol_name: Option<String>,
    /// This member's assignment bytes (empty when the leader assigned nothing).
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn error(error: GroupError) -> SyncOutcome {
        SyncOutcome {
            error: Some(error),
            ..SyncOutcome::default()
        }
    }
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
    /// Current assignment.
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// State.
    pub state: GroupState,
    /// Protocol type (empty when none).
    pub protocol_type: String,
    /// Chosen protocol (empty when none).
    pub protocol_name: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

struct Member {
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_seq: u64,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    next_join_seq: u64,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            next_join_seq: 0,
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                if let Some(tx) = member.sync_waiter.take() {
                    let _ = tx.send(SyncOutcome::error(GroupError::RebalanceInProgress));
                }
            }
        }
        if self.state != GroupState::PreparingRebalance {
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or(Duration::from_secs(1));
            self.state = GroupState::PreparingRebalance;
            self.rebalance_deadline = Some(now + timeout);
        }
    }

    fn maybe_complete_join(&mut self) {
        if self.state == GroupState::PreparingRebalance
            && self.members.values().all(|m| m.join_waiter.is_some())
        {
            self.complete_join();
        }
    }

    fn complete_join(&mut self) {
        self.members.retain(|_, m| m.join_waiter.is_some());
        self.generation = self.generation.wrapping_add(1).max(1);
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_type = None;
            self.protocol_name = None;
            self.leader = None;
            return;
        }
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            _ => self
                .members
                .iter()
                .min_by_key(|(_, m)| m.join_seq)
                .map(|(id, _)| id.clone())
                .unwrap_or_default(),
        };
        let protocol = self.members.get(&leader).and_then(|l| {
            l.protocols.iter().map(|(name, _)| name.clone()).find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
        });
        self.protocol_type = self.members.get(&leader).map(|l| l.protocol_type.clone());
        self.protocol_name = protocol.clone();
        self.leader = Some(leader.clone());
        self.state = GroupState::CompletingRebalance;
        let metadata_of = |m: &Member| -> Bytes {
            m.protocols
                .iter()
                .find(|(n, _)| Some(n) == protocol.as_ref())
                .map(|(_, md)| md.clone())
                .unwrap_or_default()
        };
        let all: Vec<JoinedMember> = self
            .members
            .iter()
            .map(|(id, m)| JoinedMember {
                member_id: id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: metadata_of(m),
            })
            .collect();
        for (id, member) in self.members.iter_mut() {
            member.assignment = Bytes::new();
            if let Some(tx) = member.join_waiter.take() {
                let _ = tx.send(JoinOutcome {
                    error: None,
                    generation_id: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader { all.clone() } else { Vec::new() },
                });
            }
        }
        tracing::info!(generation = self.generation, members = self.members.len(), leader = %leader, "Group rebalanced");
    }

    fn remove_member(&mut self, member_id: &str, now: Instant) -> bool {
        let Some(mut member) = self.members.remove(member_id) else {
            return false;
        };
        if let Some(tx) = member.join_waiter.take() {
            let _ = tx.send(JoinOutcome::error(GroupError::UnknownMemberId, member_id));
        }
        if let Some(tx) = member.sync_waiter.take() {
            let _ = tx.send(SyncOutcome::error(GroupError::UnknownMemberId));
        }
        if self.state != GroupState::Empty {
            self.prepare_rebalance(now);
            self.maybe_complete_join();
        }
        true
    }
}

/// Coordinates every consumer group of the node and owns their committed offsets.
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    offsets: OffsetStore,
    limits: GroupLimits,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl GroupCoordinator {
    /// A coordinator over an opened offset store.
    pub fn new(offsets: OffsetStore, limits: GroupLimits) -> GroupCoordinator {
        GroupCoordinator {
            groups: Mutex::new(HashMap::new()),
            offsets,
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        match self.groups.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The committed-offset store.
    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// Handles JoinGroup; completes when the rebalance completes.
    pub async fn join(&self, req: JoinRequest) -> JoinOutcome {
        let now = Instant::now();
        let rx = {
            let mut groups = self.lock();
            if req.group_id.is_empty() {
                return JoinOutcome::error(GroupError::InvalidGroupId, &req.member_id);
            }
            if req.session_timeout_ms < self.limits.session_timeout_ms_min
                || req.session_timeout_ms > self.limits.session_timeout_ms_max
            {
                return JoinOutcome::error(GroupError::InvalidSessionTimeout, &req.member_id);
            }
            if !groups.contains_key(&req.group_id) && groups.len() >= self.limits.groups_max {
                tracing::warn!(group = %req.group_id, limit = self.limits.groups_max, "Refusing a new group: too many groups");
                return JoinOutcome::error(GroupError::GroupMaxSizeReached, &req.member_id);
            }
            let group = groups.entry(req.group_id.clone()).or_insert_with(Group::new);
            if req.protocols.is_empty()
                || req.protocol_type.is_empty()
                || (!group.members.is_empty()
                    && (group
                        .members
                        .values()
                        .any(|m| m.protocol_type != req.protocol_type)
                        || !req.protocols.iter().any(|(name, _)| {
                            group
                                .members
                                .iter()
                                .filter(|(id, _)| **id != req.member_id)
                                .all(|(_, m)| m.protocols.iter().any(|(n, _)| n == name))
                        })))
            {
                return JoinOutcome::error(GroupError::InconsistentGroupProtocol, &req.member_id);
            }
            let member_id = if req.member_id.is_empty() {
                let client: String = req.client_id.chars().take(64).collect();
                let id = format!("{client}-{:032x}", random_u128());
                if req.require_known_member_id {
                    if group.pending.len() >= self.limits.members_per_group_max {
                        tracing::warn!(group = %req.group_id, limit = self.limits.members_per_group_max, "Refusing a join: too many pending member ids");
                        return JoinOutcome::error(GroupError::GroupMaxSizeReached, "");
                    }
                    let session = Duration::from_millis(req.session_timeout_ms as u64);
                    group.pending.insert(id.clone(), now + session);
                    return JoinOutcome::error(GroupError::MemberIdRequired, &id);
                }
                id
            } else {
                if !group.members.contains_key(&req.member_id)
                    && group.pending.remove(&req.member_id).is_none()
                {
                    return JoinOutcome::error(GroupError::UnknownMemberId, &req.member_id);
                }
                req.member_id.clone()
            };
            if !group.members.contains_key(&member_id)
                && group.members.len() >= self.limits.members_per_group_max
            {
                return JoinOutcome::error(GroupError::GroupMaxSizeReached, &member_id);
            }
            // A known non-leader member rejoining a stable group unchanged gets the current
            // generation back without a rebalance.
            if group.state == GroupState::Stable && group.leader.as_deref() != Some(member_id.as_str()) {
                if let Some(m) = group.members.get_mut(&member_id) {
                    if m.protocols == req.protocols {
                        m.last_seen = now;
                        return JoinOutcome {
                            error: None,
                            generation_id: group.generation,
                            protocol_type: group.protocol_type.clone(),
                            protocol_name: group.protocol_name.clone(),
                            leader: group.leader.clone().unwrap_or_default(),
                            member_id,
                            members: Vec::new(),
                        };
                    }
                }
            }
            // A static member (group.instance.id) that restarts comes back with a new member
            // id: it replaces its previous incarnation instead of waiting for it to expire.
            if let Some(instance) = &req.group_instance_id {
                let previous: Vec<String> = group
                    .members
                    .iter()
                    .filter(|(id, m)| **id != member_id && m.group_instance_id.as_ref() == Some(instance))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in previous {
                    tracing::info!(group = %req.group_id, member = %id, instance = %instance, "Static member replaced by a new incarnation");
                    group.remove_member(&id, now);
                }
            }
            let (tx, rx) = oneshot::channel();
            let join_seq = group.next_join_seq;
            group.next_join_seq += 1;
            let member = group.members.entry(member_id.clone()).or_insert_with(|| Member {
                group_instance_id: None,
                client_id: String::new(),
                client_host: String::new(),
                session_timeout: Duration::ZERO,
                rebalance_timeout: Duration::ZERO,
                protocol_type: String::new(),
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_seen: now,
                join_seq,
                join_waiter: None,
                sync_waiter: None,
            });
            member.group_instance_id = req.group_instance_id.clone();
            member.client_id = req.client_id.clone();
            member.client_host = req.client_host.clone();
            member.session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
            member.rebalance_timeout =
                Duration::from_millis(req.rebalance_timeout_ms.max(req.session_timeout_ms) as u64);
            member.protocol_type = req.protocol_type.clone();
            member.protocols = req.protocols.clone();
            member.last_seen = now;
            member.join_waiter = Some(tx);
            group.prepare_rebalance(now);
            group.maybe_complete_join();
            (rx, member_id)
        };
        let (rx, member_id) = rx;
        match rx.await {
            Ok(outcome) => outcome,
            Err(_) => JoinOutcome::error(GroupError::RebalanceInProgress, &member_id),
        }
    }

    /// Handles SyncGroup; followers wait until the leader has sent the assignments.
    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let now = Instant::now();
        let (rx, wait) = {
            let mut groups = self.lock();
            let Some(group) = groups.get_mut(group_id) else {
                return SyncOutcome::error(GroupError::UnknownMemberId);
            };
            if !group.members.contains_key(member_id) {
                return SyncOutcome::error(GroupError::UnknownMemberId);
            }
            if generation != group.generation {
                return SyncOutcome::error(GroupError::IllegalGeneration);
            }
            let ok = |g: &Group, assignment: Bytes| SyncOutcome {
                error: None,
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol_name.clone(),
                assignment,
            };
            match group.state {
                GroupState::Empty => return SyncOutcome::error(GroupError::UnknownMemberId),
                GroupState::PreparingRebalance => return SyncOutcome::error(GroupError::RebalanceInProgress),
                GroupState::Stable => {
                    let assignment = group
                        .members
                        .get(member_id)
                        .map(|m| m.assignment.clone())
                        .unwrap_or_default();
                    return ok(group, assignment);
                }
                GroupState::CompletingRebalance => {}
            }
            if group.leader.as_deref() == Some(member_id) {
                let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                group.state = GroupState::Stable;
                let reply = |g: &Group, a: Bytes| ok(g, a);
                let mut own = Bytes::new();
                let mut replies = Vec::new();
                for (id, member) in group.members.iter_mut() {
                    member.assignment = by_member.remove(id).unwrap_or_default();
                    member.last_seen = now;
                    if id == member_id {
                        own = member.assignment.clone();
                    } else if let Some(tx) = member.sync_waiter.take() {
                        replies.push((tx, member.assignment.clone()));
                    }
                }
                for (tx, assignment) in replies {
                    let _ = tx.send(reply(group, assignment));
                }
                return ok(group, own);
            }
            let (tx, rx) = oneshot::channel();
            let Some(member) = group.members.get_mut(member_id) else {
                return SyncOutcome::error(GroupError::UnknownMemberId);
            };
            member.last_seen = now;
            member.sync_waiter = Some(tx);
            (rx, member.rebalance_timeout.max(member.session_timeout))
        };
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => SyncOutcome::error(GroupError::RebalanceInProgress),
        }
    }

    /// Handles Heartbeat.
    pub fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str) -> Option<GroupError> {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return Some(GroupError::UnknownMemberId);
        };
        let state = group.state;
        let current = group.generation;
        let Some(member) = group.members.get_mut(member_id) else {
            return Some(GroupError::UnknownMemberId);
        };
        member.last_seen = Instant::now();
        match state {
            GroupState::Empty => Some(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => Some(GroupError::RebalanceInProgress),
            _ if generation != current => Some(GroupError::IllegalGeneration),
            _ => None,
        }
    }

    /// Handles LeaveGroup for each member id; returns per-member results.
    pub fn leave(&self, group_id: &str, member_ids: &[String]) -> Vec<Option<GroupError>> {
        let mut groups = self.lock();
        let now = Instant::now();
        let Some(group) = groups.get_mut(group_id) else {
            return member_ids
                .iter()
                .map(|_| Some(GroupError::UnknownMemberId))
                .collect();
        };
        member_ids
            .iter()
            .map(|id| {
                if group.remove_member(id, now) {
                    tracing::info!(group = %group_id, member = %id, "Member left the group");
                    None
                } else {
                    Some(GroupError::UnknownMemberId)
                }
            })
            .collect()
    }

    /// Checks whether an OffsetCommit may be applied. Generation -1 is a standalone commit,
    /// allowed while the group has no members.
    pub fn validate_commit(&self, group_id: &str, generation: i32, member_id: &str) -> Option<GroupError> {
        if group_id.is_empty() {
            return Some(GroupError::InvalidGroupId);
        }
        let mut groups = self.lock();
        let group = groups.get_mut(group_id);
        if generation < 0 {
            return match group {
                Some(g) if !g.members.is_empty() => Some(GroupError::UnknownMemberId),
                _ => None,
            };
        }
        let Some(group) = group else {
            return Some(GroupError::IllegalGeneration);
        };
        let state = group.state;
        let current = group.generation;
        let Some(member) = group.members.get_mut(member_id) else {
            return Some(GroupError::UnknownMemberId);
        };
        member.last_seen = Instant::now();
        if generation != current {
            return Some(GroupError::IllegalGeneration);
        }
        if state == GroupState::CompletingRebalance {
            return Some(GroupError::RebalanceInProgress);
        }
        None
    }

    /// Durably commits offsets for a group (after [`GroupCoordinator::validate_commit`]).
    pub async fn commit(&self, group_id: &str, entries: Vec<(String, i32, CommittedOffset)>) -> Result<()> {
        self.offsets.commit(group_id, entries).await
    }

    /// Describes a group; unknown groups are reported as `Dead`-like empty descriptions.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.lock();
        match groups.get(group_id) {
            Some(group) => {
                let protocol = group.protocol_name.clone().unwrap_or_default();
                Some(GroupDescription {
                    state: group.state,
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    protocol_name: protocol.clone(),
                    members: group
                        .members
                        .iter()
                        .map(|(id, m)| MemberDescription {
                            member_id: id.clone(),
                            group_instance_id: m.group_instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            metadata: m
                                .protocols
                                .iter()
                                .find(|(n, _)| *n == protocol)
                                .map(|(_, md)| md.clone())
                                .unwrap_or_default(),
                            assignment: m.assignment.clone(),
                        })
                        .collect(),
                })
            }
            None if !self.offsets.group_offsets(group_id).is_empty() => Some(GroupDescription {
                state: GroupState::Empty,
                protocol_type: "consumer".to_string(),
                protocol_name: String::new(),
                members: Vec::new(),
            }),
            None => None,
        }
    }

    /// Lists groups: (group id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let groups = self.lock();
        let mut out: BTreeMap<String, (String, GroupState)> = BTreeMap::new();
        for id in self.offsets.groups() {
            out.insert(id, ("consumer".to_string(), GroupState::Empty));
        }
        for (id, g) in groups.iter() {
            out.insert(
                id.clone(),
                (
                    g.protocol_type.clone().unwrap_or_else(|| "consumer".to_string()),
                    g.state,
                ),
            );
        }
        out.into_iter().map(|(id, (pt, st))| (id, pt, st)).collect()
    }

    /// Deletes a group and its committed offsets; refused while it has members.
    pub async fn delete(&self, group_id: &str) -> Option<GroupError> {
        {
            let mut groups = self.lock();
            let known = groups.contains_key(group_id) || !self.offsets.group_offsets(group_id).is_empty();
            if !known {
                return Some(GroupError::GroupIdNotFound);
            }
            if groups.get(group_id).is_some_and(|g| !g.members.is_empty()) {
                return Some(GroupError::NonEmptyGroup);
            }
            groups.remove(group_id);
        }
        match self.offsets.delete_group(group_id).await {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(group = %group_id, error = %e, "Deleting committed offsets failed");
                Some(GroupError::StorageFailed)
            }
        }
    }

    /// Expires members whose session timed out and rebalances that outlived their timeout.
    /// Call periodically (every few hundred milliseconds).
    pub fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.lock();
        for (group_id, group) in groups.iter_mut() {
            group.pending.retain(|_, deadline| *deadline > now);
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none()
                        && m.sync_waiter.is_none()
                        && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %group_id, member = %id, "Member session expired");
                group.remove_member(&id, now);
            }
            if group.state == GroupState::PreparingRebalance
                && group.rebalance_deadline.is_some_and(|d| now >= d)
            {
                tracing::info!(group = %group_id, "Rebalance timed out; dropping members that did not rejoin");
                group.complete_join();
            }
        }
        groups.retain(|_, g| !(g.state == GroupState::Empty && g.members.is_empty() && g.pending.is_empty()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn coordinator(dir: &std::path::Path) -> Arc<GroupCoordinator> {
        let offsets = OffsetStore::open(&dir.join("offsets")).expect("offsets");
        Arc::new(GroupCoordinator::new(offsets, GroupLimits::default()))
    }

    fn join_req(member_id: &str, metadata: &'static [u8]) -> JoinRequest {
        JoinRequest {
            group_id: "g".to_string(),
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: "client".to_string(),
            client_host: "127.0.0.1".to_string(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".to_string(),
            protocols: vec![("range".to_string(), Bytes::from_static(metadata))],
            require_known_member_id: true,
        }
    }

    async fn join_new(c: &GroupCoordinator, metadata: &'static [u8]) -> String {
        let first = c.join(join_req("", metadata)).await;
        assert_eq!(first.error, Some(GroupError::MemberIdRequired));
        assert!(!first.member_id.is_empty());
        first.member_id
    }

    #[tokio::test]
    async fn single_member_joins_syncs_and_heartbeats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = coordinator(dir.path());
        let id = join_new(&c, b"meta-a").await;
        let joined = c.join(join_req(&id, b"meta-a")).await;
        assert_eq!(joined.error, None);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, id);
        assert_eq!(joined.protocol_name.as_deref(), Some("range"));
        assert_eq!(joined.members.len(), 1);
        assert_eq!(&joined.members[0].metadata[..], b"meta-a");

        let synced = c
            .sync("g", 1, &id, vec![(id.clone(), Bytes::from_static(b"assign-a"))])
            .await;
        assert_eq!(synced.error, None);
        assert_eq!(&synced.assignment[..], b"assign-a");
        assert_eq!(c.heartbeat("g", 1, &id), None);
        assert_eq!(c.heartbeat("g", 0, &id), Some(GroupError::IllegalGeneration));
        assert_eq!(c.heartbeat("g", 1, "nobody"), Some(GroupError::UnknownMemberId));
        assert_eq!(c.describe("g").map(|d| d.state), Some(GroupState::Stable));
    }

    #[tokio::test]
    async fn second_member_triggers_a_rebalance_and_every_member_gets_assignment_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = coordinator(dir.path());
        let a = join_new(&c, b"meta-a").await;
        assert_eq!(c.join(join_req(&a, b"meta-a")).await.generation_id, 1);
        assert_eq!(c.sync("g", 1, &a, vec![]).await.error, None);

        let b = join_new(&c, b"meta-b").await;
        let c2 = c.clone();
        let b2 = b.clone();
        let b_join = tokio::spawn(async move { c2.join(join_req(&b2, b"meta-b")).await });
        // A learns about the rebalance from its heartbeat and rejoins.
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.heartbeat("g", 1, &a) != Some(GroupError::RebalanceInProgress) {
            assert!(Instant::now() < deadline, "rebalance never started");
            tokio::task::yield_now().await;
        }
        let a_joined = c.join(join_req(&a, b"meta-a")).await;
        let b_joined = b_join.await.expect("join task");
        assert_eq!(a_joined.generation_id, 2);
        assert_eq!(b_joined.generation_id, 2);
        assert_eq!(a_joined.leader, a, "the previous leader stays leader");
        assert_eq!(a_joined.members.len(), 2, "the leader sees every member");
        assert!(b_joined.members.is_empty(), "followers get no member list");

        // B waits for the leader's assignment; the leader leaves nothing for B explicitly.
        let c3 = c.clone();
        let b3 = b.clone();
        let b_sync = tokio::spawn(async move { c3.sync("g", 2, &b3, vec![]).await });
        tokio::task::yield_now().await;
        let a_sync = c
            .sync("g", 2, &a, vec![(a.clone(), Bytes::from_static(b"assign-a"))])
            .await;
        assert_eq!(&a_sync.assignment[..], b"assign-a");
        let b_sync = b_sync.await.expect("sync task");
        assert_eq!(b_sync.error, None);
        assert!(
            b_sync.assignment.is_empty(),
            "B still gets (empty) assignment bytes"
        );

        // A leaves: B must rejoin alone.
        assert_eq!(c.leave("g", std::slice::from_ref(&a)), vec![None]);
        assert_eq!(c.heartbeat("g", 2, &b), Some(GroupError::RebalanceInProgress));
        let b_alone = c.join(join_req(&b, b"meta-b")).await;
        assert_eq!(b_alone.generation_id, 3);
        assert_eq!(b_alone.leader, b);
    }

    #[tokio::test]
    async fn standalone_commits_need_an_empty_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = coordinator(dir.path());
        assert_eq!(c.validate_commit("g", -1, ""), None);
        assert_eq!(c.validate_commit("", -1, ""), Some(GroupError::InvalidGroupId));
        let id = join_new(&c, b"m").await;
        c.join(join_req(&id, b"m")).await;
        assert_eq!(c.validate_commit("g", -1, ""), Some(GroupError::UnknownMemberId));
        assert_eq!(
            c.validate_commit("g", 1, &id),
            Some(GroupError::RebalanceInProgress),
            "no commits between join and sync"
        );
        c.sync("g", 1, &id, vec![]).await;
        assert_eq!(c.validate_commit("g", 1, &id), None);
        assert_eq!(
            c.validate_commit("g", 7, &id),
            Some(GroupError::IllegalGeneration)
        );
    }

    #[tokio::test]
    async fn a_restarted_static_member_replaces_its_old_incarnation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = coordinator(dir.path());
        let static_req = |id: &str| JoinRequest {
            group_instance_id: Some("instance-1".to_string()),
            ..join_req(id, b"m")
        };
        let old = c.join(static_req("")).await.member_id;
        assert_eq!(c.join(static_req(&old)).await.generation_id, 1);
        c.sync("g", 1, &old, vec![]).await;
        let new = c.join(static_req("")).await.member_id;
        let joined = c.join(static_req(&new)).await;
        assert_eq!(joined.error, None);
        assert_eq!(joined.leader, new, "the old incarnation is gone");
        assert_eq!(joined.members.len(), 1);
        assert_eq!(
            c.heartbeat("g", joined.generation_id, &old),
            Some(GroupError::UnknownMemberId)
        );
    }
}
