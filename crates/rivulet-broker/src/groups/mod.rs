//! Consumer groups: one coordinator, one namespace, two kinds of group.
//!
//! - **Kafka groups** ([`classic`]): Kafka's classic group protocol. The broker only relays:
//!   the leader member runs the assignor and sends every member's assignment bytes in
//!   SyncGroup. Waiting requests (JoinGroup until every member rejoined, SyncGroup until the
//!   leader assigned) park on oneshot channels; nothing sleep-polls.
//! - **Broker-assigned groups** ([`local`]): members in this process that do not speak the
//!   group protocol (the HTTP gateway's Server-Sent Events streams, the embedded SDK); the
//!   broker splits the partitions between them.
//!
//! A group id belongs to one kind at a time; both are listed, described and deleted through
//! the same calls, and both commit to the same [`OffsetStore`]. Time comes from a [`Clock`],
//! and [`GroupCoordinator::tick`] (run by the broker's background thread) expires sessions,
//! SyncGroups and rebalances that outlived their timeouts.

pub mod assignor;
mod classic;
pub mod clock;
pub mod configs;
pub mod consumer;
#[cfg(test)]
mod consumer_tests;
pub mod local;
pub(crate) mod protocol;
pub mod share;
mod share_api;
#[cfg(test)]
mod share_tests;
#[cfg(test)]
mod tests;
pub mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;

use crate::error::Result;
use crate::offsets::{CommittedOffset, OffsetStore};
use classic::{ClassicGroup, Joined, Synced};
pub use clock::{Clock, ManualClock, SystemClock};
use consumer::ConsumerGroup;
pub use consumer::{ConsumerGroupDetail, ConsumerHeartbeat, ConsumerMemberDetail};
use local::{LocalClient, LocalGroup};
use share::ShareGroup;
pub use share::{ShareGroupDetail, ShareHeartbeat, ShareMemberDetail};
use share_api::share_description;
pub use share_api::LogBounds;
pub use types::{
    GroupDescription, GroupError, GroupLimits, GroupState, HeartbeatOutcome, JoinOutcome, JoinRequest,
    JoinedMember, MemberDescription, SyncOutcome,
};

/// Every group of the node, under one lock.
#[derive(Default)]
struct Groups {
    classic: HashMap<String, ClassicGroup>,
    local: HashMap<String, LocalGroup>,
    consumer: HashMap<String, ConsumerGroup>,
    share: HashMap<String, ShareGroup>,
}

impl Groups {
    fn len(&self) -> usize {
        self.classic.len() + self.local.len() + self.consumer.len() + self.share.len()
    }

    fn contains(&self, group_id: &str) -> bool {
        self.classic.contains_key(group_id)
            || self.local.contains_key(group_id)
            || self.consumer.contains_key(group_id)
            || self.share.contains_key(group_id)
    }

    /// True when `group_id` has members of a kind other than `kind`'s.
    fn held_by_other_kind(&self, group_id: &str, kind: Kind) -> bool {
        let classic = self.classic.get(group_id).is_some_and(|g| !g.members.is_empty());
        let local = self.local.get(group_id).is_some_and(|g| g.len() > 0);
        let consumer = self
            .consumer
            .get(group_id)
            .is_some_and(ConsumerGroup::has_members);
        let share = self.share.get(group_id).is_some_and(ShareGroup::has_members);
        match kind {
            Kind::Classic => local || consumer || share,
            Kind::Local => classic || consumer || share,
            Kind::Consumer => classic || local || share,
            Kind::Share => classic || local || consumer,
        }
    }

    /// Topics the members of `group_id` subscribe to (empty without members); `None` when a
    /// classic group's member metadata does not tell (a protocol other than `consumer`).
    fn subscribed_topics(&self, group_id: &str) -> Option<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        if let Some(g) = self.classic.get(group_id) {
            out.extend(g.subscribed_topics()?);
        }
        if let Some(g) = self.local.get(group_id) {
            out.extend(g.topics());
        }
        if let Some(g) = self.consumer.get(group_id) {
            out.extend(g.subscribed_topics());
        }
        if let Some(g) = self.share.get(group_id) {
            out.extend(g.subscribed_topics());
        }
        Some(out)
    }

    /// True when `group_id` has members of any kind.
    fn has_members(&self, group_id: &str) -> bool {
        self.held_by_other_kind(group_id, Kind::Share)
            || self.share.get(group_id).is_some_and(ShareGroup::has_members)
    }
}

/// The four kinds of group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Classic,
    Local,
    Consumer,
    Share,
}

/// Coordinates every consumer group of the node and owns their committed offsets.
pub struct GroupCoordinator {
    groups: Mutex<Groups>,
    offsets: OffsetStore,
    limits: GroupLimits,
    clock: Arc<dyn Clock>,
    next_local_member: AtomicU64,
    /// Where share groups' start offsets are stored; `None`: kept in memory only.
    share_state: Option<OffsetStore>,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl GroupCoordinator {
    /// A coordinator over an opened offset store, on the system clock.
    pub fn new(offsets: OffsetStore, limits: GroupLimits) -> GroupCoordinator {
        GroupCoordinator::with_clock(offsets, limits, Arc::new(SystemClock))
    }

    /// A coordinator whose timeouts follow `clock`.
    pub fn with_clock(offsets: OffsetStore, limits: GroupLimits, clock: Arc<dyn Clock>) -> GroupCoordinator {
        GroupCoordinator {
            groups: Mutex::new(Groups::default()),
            offsets,
            limits,
            clock,
            next_local_member: AtomicU64::new(1),
            share_state: None,
        }
    }

    /// Stores share groups' start offsets in `store`, so a restart resumes where they were.
    pub fn with_share_state(mut self, store: OffsetStore) -> GroupCoordinator {
        self.share_state = Some(store);
        self
    }

    /// The store of share groups' start offsets.
    pub fn share_state(&self) -> Option<&OffsetStore> {
        self.share_state.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The groups, with `group_id`'s time-driven transitions (every group's, for `None`)
    /// brought up to now first: what an operator reads or deletes reflects sessions that
    /// expired since the last periodic tick, to the millisecond.
    fn lock_settled(&self, group_id: Option<&str>) -> MutexGuard<'_, Groups> {
        let now = self.clock.now();
        let mut groups = self.lock();
        let session = self.consumer_session();
        match group_id {
            Some(id) => {
                if let Some(group) = groups.classic.get_mut(id) {
                    group.tick(id, now);
                }
                if let Some(group) = groups.consumer.get_mut(id) {
                    group.tick(id, session, now);
                }
                if let Some(group) = groups.share.get_mut(id) {
                    let moves = group.tick(id, self.share_session(), now);
                    self.store_starts(id, moves);
                }
            }
            None => {
                for (id, group) in groups.classic.iter_mut() {
                    group.tick(id, now);
                }
                for (id, group) in groups.consumer.iter_mut() {
                    group.tick(id, session, now);
                }
            }
        }
        groups
    }

    fn consumer_session(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.limits.consumer_session_timeout_ms)
    }

    /// Handles a ConsumerGroupHeartbeat (KIP-848). `partitions` gives a topic's partition
    /// count (0: no such topic), `topics` every topic's name (for subscription patterns).
    pub fn consumer_heartbeat(
        &self,
        req: &ConsumerHeartbeat,
        partitions: &dyn Fn(&str) -> usize,
        topics: &dyn Fn() -> Vec<String>,
    ) -> HeartbeatOutcome {
        let now = self.clock.now();
        let mut groups = self.lock();
        if let Some(error) = self.check_consumer(&groups, req) {
            return HeartbeatOutcome::refused(error, &req.member_id, req.member_epoch);
        }
        groups.classic.remove(&req.group_id);
        let group = groups.consumer.entry(req.group_id.clone()).or_default();
        let outcome = group.heartbeat(req, &self.limits, now, partitions, topics);
        if !group.has_members() && req.member_epoch < 0 {
            groups.consumer.remove(&req.group_id);
        }
        outcome
    }

    fn check_consumer(&self, groups: &Groups, req: &ConsumerHeartbeat) -> Option<GroupError> {
        if req.group_id.is_empty() {
            return Some(GroupError::InvalidGroupId);
        }
        if groups.held_by_other_kind(&req.group_id, Kind::Consumer) {
            tracing::info!(group = %req.group_id, "Refusing a consumer-protocol member: the group has members of another kind");
            return Some(GroupError::GroupIdNotFound);
        }
        if !groups.contains(&req.group_id) && groups.len() >= self.limits.groups_max {
            tracing::warn!(group = %req.group_id, limit = self.limits.groups_max, "Refusing a new group: too many groups");
            return Some(GroupError::GroupMaxSizeReached);
        }
        None
    }

    /// A consumer group (KIP-848) with its epochs, members and their current and target
    /// assignments; `None` when no such group exists.
    pub fn describe_consumer_group(&self, group_id: &str) -> Option<ConsumerGroupDetail> {
        let groups = self.lock_settled(Some(group_id));
        let group = groups.consumer.get(group_id)?;
        let (epoch, assignment_epoch) = group.epochs();
        Some(ConsumerGroupDetail {
            state: group.state(),
            epoch,
            assignment_epoch,
            members: group.members_detail(),
        })
    }

    /// The committed-offset store.
    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// Handles JoinGroup; completes when the rebalance completes.
    pub async fn join(&self, req: JoinRequest) -> JoinOutcome {
        let now = self.clock.now();
        let joined = {
            let mut groups = self.lock();
            if let Some(error) = self.check_join(&groups, &req) {
                return JoinOutcome::error(error, &req.member_id);
            }
            groups.local.remove(&req.group_id);
            groups.consumer.remove(&req.group_id);
            let group = groups
                .classic
                .entry(req.group_id.clone())
                .or_insert_with(ClassicGroup::new);
            group.join(&req, &self.limits, now)
        };
        match joined {
            Joined::Now(outcome) => outcome,
            Joined::Wait(rx, member_id) => match rx.await {
                Ok(outcome) => outcome,
                Err(_) => JoinOutcome::error(GroupError::RebalanceInProgress, &member_id),
            },
        }
    }

    fn check_join(&self, groups: &Groups, req: &JoinRequest) -> Option<GroupError> {
        if req.group_id.is_empty() {
            return Some(GroupError::InvalidGroupId);
        }
        if req.session_timeout_ms < self.limits.session_timeout_ms_min
            || req.session_timeout_ms > self.limits.session_timeout_ms_max
        {
            return Some(GroupError::InvalidSessionTimeout);
        }
        if groups.held_by_other_kind(&req.group_id, Kind::Classic) {
            tracing::info!(group = %req.group_id, "Refusing a classic-protocol member: the group has members of another kind (consumer protocol, SSE or embedded)");
            return Some(GroupError::InconsistentGroupProtocol);
        }
        if !groups.contains(&req.group_id) && groups.len() >= self.limits.groups_max {
            tracing::warn!(group = %req.group_id, limit = self.limits.groups_max, "Refusing a new group: too many groups");
            return Some(GroupError::GroupMaxSizeReached);
        }
        None
    }

    /// Handles SyncGroup; followers wait until the leader has sent the assignments (or the
    /// tick gives up on the leader).
    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let now = self.clock.now();
        let synced = {
            let mut groups = self.lock();
            let Some(group) = groups.classic.get_mut(group_id) else {
                return SyncOutcome::error(GroupError::UnknownMemberId);
            };
            group.sync(generation, member_id, assignments, now)
        };
        match synced {
            Synced::Now(outcome) => outcome,
            Synced::Wait(rx) => rx
                .await
                .unwrap_or_else(|_| SyncOutcome::error(GroupError::RebalanceInProgress)),
        }
    }

    /// `FencedInstanceId` when `member_id` claims static instance `instance` but a newer
    /// member holds it (the older incarnation of a restarted static member). Front ends
    /// check this before a static member's Heartbeat, SyncGroup, OffsetCommit, LeaveGroup
    /// and rejoin.
    pub fn check_static(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
    ) -> Option<GroupError> {
        let instance = instance.filter(|i| !i.is_empty())?;
        let groups = self.lock();
        let group = groups.classic.get(group_id)?;
        let holder = group.static_member(instance)?;
        (holder != member_id).then(|| {
            tracing::info!(group = %group_id, instance, member = %member_id, holder, "Static member fenced");
            GroupError::FencedInstanceId
        })
    }

    /// Handles Heartbeat.
    pub fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str) -> Option<GroupError> {
        let now = self.clock.now();
        match self.lock().classic.get_mut(group_id) {
            Some(group) => group.heartbeat(generation, member_id, now),
            None => Some(GroupError::UnknownMemberId),
        }
    }

    /// Handles LeaveGroup for each member id; returns per-member results.
    pub fn leave(&self, group_id: &str, member_ids: &[String]) -> Vec<Option<GroupError>> {
        let now = self.clock.now();
        let mut groups = self.lock();
        let Some(group) = groups.classic.get_mut(group_id) else {
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

    /// Checks whether a Kafka OffsetCommit may be applied. Generation -1 is a standalone
    /// commit, allowed while the group has no members.
    pub fn validate_commit(&self, group_id: &str, generation: i32, member_id: &str) -> Option<GroupError> {
        if group_id.is_empty() {
            return Some(GroupError::InvalidGroupId);
        }
        let now = self.clock.now();
        let mut groups = self.lock();
        if groups.local.contains_key(group_id) {
            // Broker-assigned members commit in process; a Kafka client may not.
            return Some(GroupError::UnknownMemberId);
        }
        if let Some(group) = groups.consumer.get(group_id) {
            return match group.member_epoch_is(member_id, generation) {
                Some(true) => None,
                Some(false) => Some(GroupError::StaleMemberEpoch),
                None if generation < 0 && !group.has_members() => None,
                None => Some(GroupError::UnknownMemberId),
            };
        }
        let group = groups.classic.get_mut(group_id);
        if generation < 0 {
            return match group {
                Some(g) if !g.members.is_empty() => Some(GroupError::UnknownMemberId),
                _ => None,
            };
        }
        match group {
            Some(group) => group.validate_commit(generation, member_id, now),
            None => Some(GroupError::IllegalGeneration),
        }
    }

    /// Durably commits offsets for a group (Kafka commits after
    /// [`GroupCoordinator::validate_commit`]; broker-assigned members directly).
    pub async fn commit(&self, group_id: &str, entries: Vec<(String, i32, CommittedOffset)>) -> Result<()> {
        self.offsets.commit(group_id, entries).await
    }

    /// Describes a group of either kind; a group known only by its committed offsets is
    /// `Empty`. `partitions` gives a topic's partition count.
    pub fn describe(&self, group_id: &str, partitions: &dyn Fn(&str) -> usize) -> Option<GroupDescription> {
        let groups = self.lock_settled(Some(group_id));
        if let Some(group) = groups.classic.get(group_id) {
            return Some(group.describe());
        }
        if let Some(group) = groups.local.get(group_id) {
            return Some(group.describe(partitions));
        }
        if let Some(group) = groups.consumer.get(group_id) {
            return Some(group.describe());
        }
        if let Some(group) = groups.share.get(group_id) {
            return Some(share_description(group.detail()));
        }
        if self.offsets.group_offsets(group_id).is_empty() {
            return None;
        }
        Some(GroupDescription {
            state: GroupState::Empty,
            protocol_type: "consumer".to_string(),
            protocol_name: String::new(),
            members: Vec::new(),
        })
    }

    /// Lists groups of both kinds and groups with committed offsets:
    /// (group id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let groups = self.lock_settled(None);
        let mut out: BTreeMap<String, (String, GroupState)> = BTreeMap::new();
        for id in self.offsets.groups() {
            out.insert(id, ("consumer".to_string(), GroupState::Empty));
        }
        for (id, g) in &groups.classic {
            out.insert(id.clone(), (g.protocol_type(), g.state));
        }
        for (id, g) in &groups.consumer {
            out.insert(id.clone(), ("consumer".to_string(), g.state()));
        }
        for (id, g) in &groups.share {
            out.insert(id.clone(), ("share".to_string(), g.state()));
        }
        for (id, g) in &groups.local {
            let state = if g.len() > 0 {
                GroupState::Stable
            } else {
                GroupState::Empty
            };
            out.insert(id.clone(), ("consumer".to_string(), state));
        }
        out.into_iter().map(|(id, (pt, st))| (id, pt, st)).collect()
    }

    /// Deletes a group and its committed offsets; refused while it has members.
    pub async fn delete(&self, group_id: &str) -> Option<GroupError> {
        {
            let mut groups = self.lock_settled(Some(group_id));
            if let Some(refused) = self.refuse_deleting(&groups, group_id) {
                return Some(refused);
            }
            groups.classic.remove(group_id);
            groups.local.remove(group_id);
            groups.consumer.remove(group_id);
            groups.share.remove(group_id);
        }
        if let Some(store) = &self.share_state {
            if let Err(e) = store.delete_group(group_id).await {
                return stored(group_id, Err(e));
            }
        }
        stored(group_id, self.offsets.delete_group(group_id).await)
    }

    /// Deletes a group's committed offsets of some partitions (Kafka OffsetDelete), except
    /// those of topics its members subscribe to (they may be consuming them): those topics
    /// come back, their offsets kept. `GroupIdNotFound` for a group with neither members
    /// nor offsets.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<BTreeSet<String>, GroupError> {
        let subscribed = {
            let groups = self.lock_settled(Some(group_id));
            if !groups.contains(group_id) && self.offsets.group_offsets(group_id).is_empty() {
                return Err(GroupError::GroupIdNotFound);
            }
            groups.subscribed_topics(group_id)
        };
        let (kept, deleted): (Vec<_>, Vec<_>) = partitions
            .iter()
            .cloned()
            .partition(|(t, _)| subscribed.as_ref().is_none_or(|s| s.contains(t)));
        if let Some(e) = stored(group_id, self.offsets.delete_partitions(group_id, &deleted).await) {
            return Err(e);
        }
        Ok(kept.into_iter().map(|(t, _)| t).collect())
    }

    /// Why a group's offsets may not be deleted now: it does not exist (neither members nor
    /// offsets), or it has members.
    fn refuse_deleting(&self, groups: &Groups, group_id: &str) -> Option<GroupError> {
        if !groups.contains(group_id) && self.offsets.group_offsets(group_id).is_empty() {
            return Some(GroupError::GroupIdNotFound);
        }
        let busy = groups.has_members(group_id);
        busy.then_some(GroupError::NonEmptyGroup)
    }

    /// Expires members whose session timed out, SyncGroups that waited too long and
    /// rebalances that outlived their timeout. The broker calls this every few hundred
    /// milliseconds.
    pub fn tick(&self) {
        let now = self.clock.now();
        let mut groups = self.lock();
        for (group_id, group) in groups.classic.iter_mut() {
            group.tick(group_id, now);
        }
        groups.classic.retain(|_, g| !g.is_idle());
        let session = self.consumer_session();
        for (group_id, group) in groups.consumer.iter_mut() {
            group.tick(group_id, session, now);
        }
        groups.consumer.retain(|_, g| g.has_members());
        let share_session = self.share_session();
        for (group_id, group) in groups.share.iter_mut() {
            let moves = group.tick(group_id, share_session, now);
            self.store_starts(group_id, moves);
        }
    }

    /// Adds a broker-assigned member to `group_id` (creating the group); refused when the
    /// group is a Kafka group or a limit is reached. Returns the member id and a receiver
    /// that changes whenever the group's membership does.
    pub fn join_local(
        &self,
        group_id: &str,
        topics: &[String],
        client: LocalClient,
    ) -> Result<(u64, watch::Receiver<u64>), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let mut groups = self.lock();
        if groups.held_by_other_kind(group_id, Kind::Local) {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if !groups.contains(group_id) && groups.len() >= self.limits.groups_max {
            return Err(GroupError::GroupMaxSizeReached);
        }
        let group = groups
            .local
            .entry(group_id.to_string())
            .or_insert_with(LocalGroup::new);
        if group.len() >= self.limits.members_per_group_max {
            return Err(GroupError::GroupMaxSizeReached);
        }
        let id = self.next_local_member.fetch_add(1, Ordering::Relaxed);
        tracing::info!(group = %group_id, member = id, client = %client.client_id, "Broker-assigned member joined");
        let rx = group.join(id, topics, client);
        groups.classic.remove(group_id);
        groups.consumer.remove(group_id);
        Ok((id, rx))
    }

    /// Removes a broker-assigned member; its partitions go to the others.
    pub fn leave_local(&self, group_id: &str, member: u64) {
        let mut groups = self.lock();
        let empty = groups.local.get_mut(group_id).is_some_and(|g| g.leave(member));
        if empty {
            groups.local.remove(group_id);
        }
        tracing::info!(group = %group_id, member, "Broker-assigned member left");
    }

    /// A broker-assigned member's share of the partitions.
    pub fn local_assignment(
        &self,
        group_id: &str,
        member: u64,
        partitions: &dyn Fn(&str) -> usize,
    ) -> Vec<(String, i32)> {
        let groups = self.lock();
        groups
            .local
            .get(group_id)
            .and_then(|g| g.assignments(partitions).remove(&member))
            .unwrap_or_default()
    }

    /// Takes a partition for a broker-assigned member once its previous holder released
    /// it; false while another member still holds it.
    pub fn claim_local(&self, group_id: &str, member: u64, topic: &str, partition: i32) -> bool {
        let mut groups = self.lock();
        match groups.local.get_mut(group_id) {
            Some(g) => g.claim(member, (topic.to_string(), partition)),
            None => false,
        }
    }

    /// Gives a partition up.
    pub fn release_local(&self, group_id: &str, member: u64, topic: &str, partition: i32) {
        if let Some(g) = self.lock().local.get_mut(group_id) {
            g.release(member, &(topic.to_string(), partition));
        }
    }
}

/// A deletion of committed offsets as a group answer.
fn stored(group_id: &str, result: Result<()>) -> Option<GroupError> {
    let e = result.err()?;
    tracing::error!(group = %group_id, error = %e, "Deleting committed offsets failed");
    Some(GroupError::StorageFailed)
}
