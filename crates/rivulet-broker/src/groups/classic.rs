//! One group under Kafka's classic protocol: members, generations and the rebalance state
//! machine. The coordinator ([`super::GroupCoordinator`]) holds these under one lock and
//! passes the time in, so every transition is a plain function of state and clock.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::types::{
    GroupDescription, GroupError, GroupLimits, GroupState, JoinOutcome, JoinRequest, JoinedMember,
    MemberDescription, SyncOutcome,
};
use crate::topics::random_u128;

/// A member of a classic group.
pub(super) struct Member {
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
    /// When a waiting SyncGroup gives up on the leader's assignment.
    sync_deadline: Option<Instant>,
}

/// A group under the classic protocol.
pub(super) struct ClassicGroup {
    pub(super) state: GroupState,
    pub(super) generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until their first real join.
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group completes no earlier than this
    /// (`group.initial.rebalance.delay.ms`), so consumers started together share it.
    initial_delay_until: Option<Instant>,
    next_join_seq: u64,
}

/// What a JoinGroup does next: answer now, or wait for the rebalance to complete.
pub(super) enum Joined {
    Now(JoinOutcome),
    Wait(oneshot::Receiver<JoinOutcome>, String),
}

/// What a SyncGroup does next.
pub(super) enum Synced {
    Now(SyncOutcome),
    Wait(oneshot::Receiver<SyncOutcome>),
}

impl ClassicGroup {
    pub(super) fn new() -> ClassicGroup {
        ClassicGroup {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            next_join_seq: 0,
        }
    }

    /// True when nothing is left to remember about the group.
    pub(super) fn is_idle(&self) -> bool {
        self.state == GroupState::Empty && self.members.is_empty() && self.pending.is_empty()
    }

    /// Handles a JoinGroup whose group id and session timeout were already checked.
    pub(super) fn join(&mut self, req: &JoinRequest, limits: &GroupLimits, now: Instant) -> Joined {
        if !self.protocols_fit(req) {
            return Joined::Now(JoinOutcome::error(
                GroupError::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        let member_id = match self.accept_member_id(req, limits, now) {
            Ok(id) => id,
            Err((error, member_id)) => return Joined::Now(JoinOutcome::error(error, &member_id)),
        };
        if let Some(outcome) = self.rejoin_unchanged(&member_id, req, now) {
            return Joined::Now(outcome);
        }
        if let Some(instance) = &req.group_instance_id {
            self.replace_static(instance, &member_id, now);
        }
        let (tx, rx) = oneshot::channel();
        let was_empty = self.state == GroupState::Empty;
        self.upsert_member(&member_id, req, now, tx);
        self.prepare_rebalance(now);
        self.delay_initial_rebalance(was_empty, limits, now);
        self.maybe_complete_join(now);
        Joined::Wait(rx, member_id)
    }

    /// The request's protocol type and protocols fit the members already there.
    fn protocols_fit(&self, req: &JoinRequest) -> bool {
        if req.protocols.is_empty() || req.protocol_type.is_empty() {
            return false;
        }
        let others = || self.members.iter().filter(|(id, _)| **id != req.member_id);
        if self
            .members
            .values()
            .any(|m| m.protocol_type != req.protocol_type)
        {
            return false;
        }
        self.members.is_empty()
            || req
                .protocols
                .iter()
                .any(|(name, _)| others().all(|(_, m)| m.protocols.iter().any(|(n, _)| n == name)))
    }

    /// The member id this join proceeds with, or the error (and member id) that ends it.
    fn accept_member_id(
        &mut self,
        req: &JoinRequest,
        limits: &GroupLimits,
        now: Instant,
    ) -> Result<String, (GroupError, String)> {
        let member_id = if req.member_id.is_empty() {
            let client: String = req.client_id.chars().take(64).collect();
            let id = format!("{client}-{:032x}", random_u128());
            // A static member's join is its new incarnation at once (KIP-345): no
            // member-id round trip, it replaces the instance's holder.
            if req.require_known_member_id && req.group_instance_id.as_deref().is_none_or(str::is_empty) {
                if self.pending.len() >= limits.members_per_group_max {
                    tracing::warn!(group = %req.group_id, limit = limits.members_per_group_max, "Refusing a join: too many pending member ids");
                    return Err((GroupError::GroupMaxSizeReached, String::new()));
                }
                let session = Duration::from_millis(req.session_timeout_ms as u64);
                self.pending.insert(id.clone(), now + session);
                return Err((GroupError::MemberIdRequired, id));
            }
            id
        } else {
            if !self.members.contains_key(&req.member_id) && self.pending.remove(&req.member_id).is_none() {
                return Err((GroupError::UnknownMemberId, req.member_id.clone()));
            }
            req.member_id.clone()
        };
        if !self.members.contains_key(&member_id) && self.members.len() >= limits.members_per_group_max {
            return Err((GroupError::GroupMaxSizeReached, member_id));
        }
        Ok(member_id)
    }

    /// A known non-leader member rejoining a stable group unchanged gets the current
    /// generation back without a rebalance.
    fn rejoin_unchanged(&mut self, member_id: &str, req: &JoinRequest, now: Instant) -> Option<JoinOutcome> {
        if self.state != GroupState::Stable || self.leader.as_deref() == Some(member_id) {
            return None;
        }
        let member = self.members.get_mut(member_id)?;
        if member.protocols != req.protocols {
            return None;
        }
        member.last_seen = now;
        Some(JoinOutcome {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        })
    }

    /// The member id holding static instance `instance`, if any.
    pub(super) fn static_member(&self, instance: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, m)| m.group_instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id.as_str())
    }

    /// A static member (group.instance.id) that restarts comes back with a new member id:
    /// it replaces its previous incarnation instead of waiting for it to expire.
    fn replace_static(&mut self, instance: &str, member_id: &str, now: Instant) {
        let previous: Vec<String> = self
            .members
            .iter()
            .filter(|(id, m)| *id != member_id && m.group_instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id.clone())
            .collect();
        for id in previous {
            tracing::info!(member = %id, instance = %instance, "Static member replaced by a new incarnation");
            self.remove_member(&id, now);
        }
    }

    fn upsert_member(
        &mut self,
        member_id: &str,
        req: &JoinRequest,
        now: Instant,
        tx: oneshot::Sender<JoinOutcome>,
    ) {
        let join_seq = self.next_join_seq;
        self.next_join_seq += 1;
        let member = self
            .members
            .entry(member_id.to_string())
            .or_insert_with(|| Member {
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
                sync_deadline: None,
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
    }

    /// Handles a SyncGroup: the leader's assignments complete the rebalance; followers wait
    /// for them.
    pub(super) fn sync(
        &mut self,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Synced {
        if !self.members.contains_key(member_id) {
            return Synced::Now(SyncOutcome::error(GroupError::UnknownMemberId));
        }
        if generation != self.generation {
            return Synced::Now(SyncOutcome::error(GroupError::IllegalGeneration));
        }
        match self.state {
            GroupState::Empty => return Synced::Now(SyncOutcome::error(GroupError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                return Synced::Now(SyncOutcome::error(GroupError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let assignment = self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                return Synced::Now(self.sync_ok(assignment));
            }
            GroupState::CompletingRebalance => {}
            // Consumer-protocol states; a classic group never has them.
            GroupState::Assigning | GroupState::Reconciling => {
                return Synced::Now(SyncOutcome::error(GroupError::RebalanceInProgress))
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            return Synced::Now(self.complete_sync(member_id, assignments, now));
        }
        let (tx, rx) = oneshot::channel();
        let Some(member) = self.members.get_mut(member_id) else {
            return Synced::Now(SyncOutcome::error(GroupError::UnknownMemberId));
        };
        member.last_seen = now;
        member.sync_waiter = Some(tx);
        member.sync_deadline = Some(now + member.rebalance_timeout.max(member.session_timeout));
        Synced::Wait(rx)
    }

    fn sync_ok(&self, assignment: Bytes) -> SyncOutcome {
        SyncOutcome {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    /// The leader's SyncGroup: store every member's assignment and wake the followers.
    fn complete_sync(
        &mut self,
        leader: &str,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> SyncOutcome {
        let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
        self.state = GroupState::Stable;
        let mut own = Bytes::new();
        let mut replies = Vec::new();
        for (id, member) in self.members.iter_mut() {
            member.assignment = by_member.remove(id).unwrap_or_default();
            member.last_seen = now;
            member.sync_deadline = None;
            if id == leader {
                own = member.assignment.clone();
            } else if let Some(tx) = member.sync_waiter.take() {
                replies.push((tx, member.assignment.clone()));
            }
        }
        for (tx, assignment) in replies {
            let _ = tx.send(self.sync_ok(assignment));
        }
        self.sync_ok(own)
    }

    /// Handles a Heartbeat.
    pub(super) fn heartbeat(&mut self, generation: i32, member_id: &str, now: Instant) -> Option<GroupError> {
        let state = self.state;
        let current = self.generation;
        let Some(member) = self.members.get_mut(member_id) else {
            return Some(GroupError::UnknownMemberId);
        };
        member.last_seen = now;
        match state {
            GroupState::Empty => Some(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => Some(GroupError::RebalanceInProgress),
            _ if generation != current => Some(GroupError::IllegalGeneration),
            _ => None,
        }
    }

    /// Checks an OffsetCommit of a member (generation >= 0).
    pub(super) fn validate_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        now: Instant,
    ) -> Option<GroupError> {
        let state = self.state;
        let current = self.generation;
        let Some(member) = self.members.get_mut(member_id) else {
            return Some(GroupError::UnknownMemberId);
        };
        member.last_seen = now;
        if generation != current {
            return Some(GroupError::IllegalGeneration);
        }
        if state == GroupState::CompletingRebalance {
            return Some(GroupError::RebalanceInProgress);
        }
        None
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                member.sync_deadline = None;
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

    /// Starts (for an empty group) or extends (for each member joining meanwhile) the
    /// initial delay, within the rebalance deadline.
    fn delay_initial_rebalance(&mut self, was_empty: bool, limits: &GroupLimits, now: Instant) {
        let delay = Duration::from_millis(limits.initial_rebalance_delay_ms);
        if delay.is_zero() || !(was_empty || self.initial_delay_until.is_some()) {
            return;
        }
        let until = now + delay;
        self.initial_delay_until = Some(self.rebalance_deadline.map_or(until, |d| until.min(d)));
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.initial_delay_until.is_some_and(|d| now < d) {
            return;
        }
        if self.state == GroupState::PreparingRebalance
            && self.members.values().all(|m| m.join_waiter.is_some())
        {
            self.complete_join();
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped, a leader and protocol
    /// are chosen and every waiting JoinGroup is answered.
    fn complete_join(&mut self) {
        self.members.retain(|_, m| m.join_waiter.is_some());
        self.generation = self.generation.wrapping_add(1).max(1);
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
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
        self.protocol_name = protocol;
        self.leader = Some(leader.clone());
        self.state = GroupState::CompletingRebalance;
        self.answer_joins(&leader);
        tracing::info!(generation = self.generation, members = self.members.len(), leader = %leader, "Group rebalanced");
    }

    fn answer_joins(&mut self, leader: &str) {
        let protocol = self.protocol_name.clone();
        let all: Vec<JoinedMember> = self
            .members
            .iter()
            .map(|(id, m)| JoinedMember {
                member_id: id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata_for(protocol.as_deref()),
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
                    leader: leader.to_string(),
                    member_id: id.clone(),
                    members: if id == leader { all.clone() } else { Vec::new() },
                });
            }
        }
    }

    /// Removes a member (leave, expiry, replacement); the others rebalance.
    pub(super) fn remove_member(&mut self, member_id: &str, now: Instant) -> bool {
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
            self.maybe_complete_join(now);
        }
        true
    }

    /// Time-driven transitions: expired pending ids and sessions, SyncGroups that waited too
    /// long, and a rebalance that outlived its timeout.
    pub(super) fn tick(&mut self, group_id: &str, now: Instant) {
        self.pending.retain(|_, deadline| *deadline > now);
        for member in self.members.values_mut() {
            if member.sync_deadline.is_some_and(|d| now >= d) {
                member.sync_deadline = None;
                if let Some(tx) = member.sync_waiter.take() {
                    let _ = tx.send(SyncOutcome::error(GroupError::RebalanceInProgress));
                }
            }
        }
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.join_waiter.is_none()
                    && m.sync_waiter.is_none()
                    && now.saturating_duration_since(m.last_seen) > m.session_timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %group_id, member = %id, "Member session expired");
            self.remove_member(&id, now);
        }
        if self.initial_delay_until.is_some_and(|d| now >= d) {
            self.initial_delay_until = None;
            self.maybe_complete_join(now);
        }
        if self.state == GroupState::PreparingRebalance && self.rebalance_deadline.is_some_and(|d| now >= d) {
            tracing::info!(group = %group_id, "Rebalance timed out; dropping members that did not rejoin");
            self.complete_join();
        }
    }

    pub(super) fn describe(&self) -> GroupDescription {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(Some(&protocol)),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub(super) fn protocol_type(&self) -> String {
        self.protocol_type
            .clone()
            .unwrap_or_else(|| "consumer".to_string())
    }
}

impl ClassicGroup {
    /// The topics the members subscribe to, read from their consumer-protocol metadata;
    /// `None` when a member's metadata cannot be read that way (another protocol type).
    pub(super) fn subscribed_topics(&self) -> Option<std::collections::BTreeSet<String>> {
        let mut out = std::collections::BTreeSet::new();
        if self.protocol_type.as_deref().is_some_and(|t| t != "consumer") {
            return None;
        }
        for m in self.members.values() {
            let metadata = m.metadata_for(self.protocol_name.as_deref());
            out.extend(super::protocol::subscribed_topics(&metadata)?);
        }
        Some(out)
    }
}

impl Member {
    fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| Some(n.as_str()) == protocol)
            .map(|(_, md)| md.clone())
            .unwrap_or_default()
    }
}
