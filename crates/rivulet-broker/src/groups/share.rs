//! Share groups (KIP-932, "queues for Kafka"): every member may consume every partition of
//! the topics it subscribes to, and each record goes to one member at a time, acquired
//! for a limited time and then accepted, released or rejected ([`crate::settle`]).
//!
//! Membership is simple: a member heartbeats its subscription and receives every partition
//! of the subscribed topics; the group epoch moves with joins, leaves and subscription or
//! partition-count changes. A member that leaves or goes silent gives its acquired records
//! back at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::assignor::Assignment;
use super::types::{GroupError, GroupLimits, GroupState, HeartbeatOutcome};
use crate::settle::{AcquiredRange, Settle, SettleLimits, SharedPartition};

/// A ShareGroupHeartbeat, protocol-neutral (topics by name).
#[derive(Debug, Clone, Default)]
pub struct ShareHeartbeat {
    /// Group id.
    pub group_id: String,
    /// Member id (clients make their own; empty: the broker makes one).
    pub member_id: String,
    /// 0 to join, -1 to leave, else the member's epoch.
    pub member_epoch: i32,
    /// Subscribed topics; `None` when unchanged.
    pub subscribed_topics: Option<Vec<String>>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
}

/// A start offset that moved and must be stored: `(topic, partition, start)`.
pub type StartMove = (String, i32, i64);

#[derive(Debug)]
struct Member {
    owner: Arc<str>,
    epoch: i32,
    subscribed: BTreeSet<String>,
    last_seen: Instant,
    client_id: String,
    client_host: String,
    sent: Option<Assignment>,
}

/// One share group.
#[derive(Debug, Default)]
pub(super) struct ShareGroup {
    epoch: i32,
    members: BTreeMap<String, Member>,
    partitions: HashMap<(String, i32), SharedPartition>,
}

/// A share group as ShareGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupDetail {
    /// `Empty` or `Stable`.
    pub state: GroupState,
    /// The group epoch.
    pub epoch: i32,
    /// `(member id, epoch, client id, client host, subscribed topics, assignment)`.
    pub members: Vec<ShareMemberDetail>,
}

/// One member of a share group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMemberDetail {
    /// Member id.
    pub member_id: String,
    /// The member's epoch.
    pub member_epoch: i32,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Subscribed topics.
    pub subscribed_topics: Vec<String>,
    /// Its partitions.
    pub assignment: Assignment,
}

impl ShareGroup {
    pub(super) fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// The topics its members subscribe to.
    pub(super) fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect()
    }

    pub(super) fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        }
    }

    /// Handles one heartbeat; the start offsets that moved (a leaving member's releases)
    /// come back for storing.
    pub(super) fn heartbeat(
        &mut self,
        req: &ShareHeartbeat,
        limits: &GroupLimits,
        now: Instant,
        partitions: &dyn Fn(&str) -> usize,
    ) -> (HeartbeatOutcome, Vec<StartMove>) {
        let refused = |e| HeartbeatOutcome::refused(e, &req.member_id, req.member_epoch);
        let member_id = match req.member_epoch {
            -1 => {
                let moves = self.remove_member(&req.member_id);
                return (HeartbeatOutcome::left(&req.member_id, -1), moves);
            }
            0 => match self.join(req, limits, now) {
                Ok(id) => id,
                Err(e) => return (refused(e), Vec::new()),
            },
            e => match self.members.get_mut(&req.member_id) {
                None => return (refused(GroupError::UnknownMemberId), Vec::new()),
                Some(m) if m.epoch != e => return (refused(GroupError::FencedMemberEpoch), Vec::new()),
                Some(m) => {
                    m.last_seen = now;
                    if let Some(topics) = &req.subscribed_topics {
                        let topics: BTreeSet<String> = topics.iter().cloned().collect();
                        if topics != m.subscribed {
                            m.subscribed = topics;
                            self.epoch += 1;
                        }
                    }
                    req.member_id.clone()
                }
            },
        };
        let epoch = self.epoch;
        let Some(m) = self.members.get_mut(&member_id) else {
            return (refused(GroupError::UnknownMemberId), Vec::new());
        };
        m.epoch = epoch;
        let assignment: Assignment = m
            .subscribed
            .iter()
            .filter_map(|t| {
                let n = i32::try_from(partitions(t)).unwrap_or(i32::MAX);
                (n > 0).then(|| (t.clone(), (0..n).collect()))
            })
            .collect();
        let changed = m.sent.as_ref() != Some(&assignment);
        if changed {
            m.sent = Some(assignment.clone());
        }
        let outcome = HeartbeatOutcome {
            error: None,
            member_id,
            member_epoch: epoch,
            heartbeat_interval_ms: i32::try_from(limits.share_heartbeat_interval_ms).unwrap_or(i32::MAX),
            assignment: changed.then_some(assignment),
        };
        (outcome, Vec::new())
    }

    fn join(
        &mut self,
        req: &ShareHeartbeat,
        limits: &GroupLimits,
        now: Instant,
    ) -> Result<String, GroupError> {
        let Some(topics) = &req.subscribed_topics else {
            return Err(GroupError::InvalidRequest);
        };
        let id = if req.member_id.is_empty() {
            format!("{:032x}", crate::topics::random_u128())
        } else {
            req.member_id.clone()
        };
        if !self.members.contains_key(&id) && self.members.len() >= limits.members_per_group_max {
            return Err(GroupError::GroupMaxSizeReached);
        }
        tracing::info!(group = %req.group_id, member = %id, client = %req.client_id, "Share group member joined");
        self.members.insert(
            id.clone(),
            Member {
                owner: Arc::from(id.as_str()),
                epoch: 0,
                subscribed: topics.iter().cloned().collect(),
                last_seen: now,
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                sent: None,
            },
        );
        self.epoch += 1;
        Ok(id)
    }

    /// Removes a member and releases what it holds.
    pub(super) fn remove_member(&mut self, member_id: &str) -> Vec<StartMove> {
        if self.members.remove(member_id).is_none() {
            return Vec::new();
        }
        self.epoch += 1;
        let mut moves = Vec::new();
        for ((topic, partition), p) in self.partitions.iter_mut() {
            if p.release_owner(member_id) {
                moves.push((topic.clone(), *partition, p.start()));
            }
        }
        moves
    }

    /// The owner handle of a member that may fetch now.
    pub(super) fn owner(&mut self, member_id: &str, now: Instant) -> Result<Arc<str>, GroupError> {
        let m = self
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        m.last_seen = now;
        Ok(m.owner.clone())
    }

    /// The partition's settlement state, created at `start` the first time.
    pub(super) fn partition(
        &mut self,
        topic: &str,
        partition: i32,
        start: impl FnOnce() -> i64,
        limits: SettleLimits,
    ) -> (&mut SharedPartition, bool) {
        let key = (topic.to_string(), partition);
        let created = !self.partitions.contains_key(&key);
        let p = self
            .partitions
            .entry(key)
            .or_insert_with(|| SharedPartition::new(start().max(0), limits));
        (p, created)
    }

    /// Acquires up to `max` records of one partition for a member.
    pub(super) fn acquire(
        &mut self,
        owner: &Arc<str>,
        key: (&str, i32),
        (log_start, available_end): (i64, i64),
        max: usize,
        now: Instant,
    ) -> Vec<AcquiredRange> {
        match self.partitions.get_mut(&(key.0.to_string(), key.1)) {
            Some(p) => {
                p.skip_to(log_start);
                p.acquire(owner, available_end, max, now)
            }
            None => Vec::new(),
        }
    }

    /// Settles ranges of one partition for a member; the new start when it moved.
    pub(super) fn settle(
        &mut self,
        member_id: &str,
        key: (&str, i32),
        batches: &[(i64, i64, Settle)],
    ) -> Result<Option<i64>, GroupError> {
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        let p = self
            .partitions
            .get_mut(&(key.0.to_string(), key.1))
            .ok_or(GroupError::InvalidRecordState)?;
        let mut moved = false;
        for &(first, last, how) in batches {
            moved |= p
                .settle(member_id, first, last, how)
                .map_err(|_| GroupError::InvalidRecordState)?;
        }
        Ok(moved.then(|| p.start()))
    }

    /// Releases what a member holds on some partitions (its session forgot them or closed).
    pub(super) fn release(&mut self, member_id: &str, keys: &[(String, i32)]) -> Vec<StartMove> {
        let mut moves = Vec::new();
        for key in keys {
            if let Some(p) = self.partitions.get_mut(key) {
                if p.release_range(member_id, p.start(), p.end()) {
                    moves.push((key.0.clone(), key.1, p.start()));
                }
            }
        }
        moves
    }

    /// Gives back acquired records that were never delivered.
    pub(super) fn unacquire(&mut self, member_id: &str, key: (&str, i32), first: i64, last: i64) {
        if let Some(p) = self.partitions.get_mut(&(key.0.to_string(), key.1)) {
            p.unacquire(member_id, first, last);
        }
    }

    /// Expires silent members and passed locks; the start offsets that moved.
    pub(super) fn tick(&mut self, group_id: &str, session: Duration, now: Instant) -> Vec<StartMove> {
        let silent: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.last_seen) > session)
            .map(|(id, _)| id.clone())
            .collect();
        let mut moves = Vec::new();
        for id in silent {
            tracing::info!(group = %group_id, member = %id, "Share group member session expired");
            moves.extend(self.remove_member(&id));
        }
        for ((topic, partition), p) in self.partitions.iter_mut() {
            if p.expire(now) {
                moves.push((topic.clone(), *partition, p.start()));
            }
        }
        moves
    }

    pub(super) fn detail(&self) -> ShareGroupDetail {
        ShareGroupDetail {
            state: self.state(),
            epoch: self.epoch,
            members: self
                .members
                .iter()
                .map(|(id, m)| ShareMemberDetail {
                    member_id: id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topics: m.subscribed.iter().cloned().collect(),
                    assignment: m.sent.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }
}
