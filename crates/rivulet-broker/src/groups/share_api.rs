//! The coordinator's calls for share groups: heartbeats, acquiring records and settling
//! them, with each group's start offsets stored so a restart resumes where it was.

use std::time::Duration;

use bytes::Bytes;

use super::share::{ShareGroupDetail, ShareHeartbeat, StartMove};
use super::{GroupCoordinator, GroupDescription, GroupError, HeartbeatOutcome, Kind, MemberDescription};
use crate::offsets::CommittedOffset;
use crate::settle::{AcquiredRange, Settle, SettleLimits};

/// What a share fetch of one partition needs to know about its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    /// First offset the log holds.
    pub log_start: i64,
    /// End of what readers may see (the last stable offset).
    pub available_end: i64,
}

impl GroupCoordinator {
    pub(super) fn share_session(&self) -> Duration {
        Duration::from_millis(self.limits.share_session_timeout_ms)
    }

    fn settle_limits(&self) -> SettleLimits {
        SettleLimits {
            lock: Duration::from_millis(self.limits.share_record_lock_ms),
            delivery_limit: self.limits.share_delivery_count_limit.max(1),
            window: self.limits.share_partition_records_max.max(1),
        }
    }

    /// How long an acquired record stays with its member, in milliseconds.
    pub fn share_record_lock_ms(&self) -> u64 {
        self.limits.share_record_lock_ms
    }

    /// Stores moved start offsets; the handle resolves once they are on disk.
    pub(super) fn store_starts(&self, group_id: &str, moves: Vec<StartMove>) -> Option<rivulet_log::Durable> {
        let store = self.share_state.as_ref()?;
        let now_ms = rivulet_log::now_ms();
        let entries = moves
            .into_iter()
            .map(|(topic, partition, start)| {
                let c = CommittedOffset {
                    offset: start,
                    leader_epoch: -1,
                    metadata: None,
                    commit_timestamp_ms: now_ms,
                };
                (topic, partition, c)
            })
            .collect();
        match store.commit_durable(group_id, entries) {
            Ok(durable) => durable,
            Err(e) => {
                tracing::error!(group = %group_id, error = %e, "Storing share group start offsets failed");
                None
            }
        }
    }

    /// Handles a ShareGroupHeartbeat. `partitions` gives a topic's partition count.
    pub fn share_heartbeat(
        &self,
        req: &ShareHeartbeat,
        partitions: &dyn Fn(&str) -> usize,
    ) -> HeartbeatOutcome {
        let now = self.clock.now();
        let mut groups = self.lock();
        let refused = |e| HeartbeatOutcome::refused(e, &req.member_id, req.member_epoch);
        if req.group_id.is_empty() {
            return refused(GroupError::InvalidGroupId);
        }
        if groups.held_by_other_kind(&req.group_id, Kind::Share) {
            tracing::info!(group = %req.group_id, "Refusing a share group member: the group has members of another kind");
            return refused(GroupError::GroupIdNotFound);
        }
        if !groups.contains(&req.group_id) && groups.len() >= self.limits.groups_max {
            return refused(GroupError::GroupMaxSizeReached);
        }
        groups.classic.remove(&req.group_id);
        groups.consumer.remove(&req.group_id);
        let group = groups.share.entry(req.group_id.clone()).or_default();
        let (outcome, moves) = group.heartbeat(req, &self.limits, now, partitions);
        drop(groups);
        // A leaving member's records are released; the start only moves when some were
        // archived, and losing that write only means their redelivery after a restart.
        let _ = self.store_starts(&req.group_id, moves);
        outcome
    }

    /// Acquires up to `max` records of one partition for a share group member. The first
    /// fetch of a partition starts where the group stopped before (stored), or at the log's
    /// end (or start, when so configured). The handle, when given, resolves once a new
    /// start is stored: answer after it.
    pub fn share_acquire(
        &self,
        group_id: &str,
        member_id: &str,
        (topic, partition): (&str, i32),
        bounds: LogBounds,
        max: usize,
    ) -> Result<(Vec<AcquiredRange>, Option<rivulet_log::Durable>), GroupError> {
        let now = self.clock.now();
        let limits = self.settle_limits();
        let mut groups = self.lock();
        let group = groups
            .share
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let owner = group.owner(member_id, now)?;
        let mut stored = None;
        // Only a partition the group has not read yet looks its start up.
        let fresh_start = || {
            stored = self
                .share_state
                .as_ref()
                .and_then(|s| s.fetch(group_id, topic, partition))
                .map(|c| c.offset);
            match stored {
                Some(offset) => offset.max(bounds.log_start),
                None if self.share_starts_at_earliest(group_id) => bounds.log_start,
                None => bounds.available_end,
            }
        };
        let (state, created) = group.partition(topic, partition, fresh_start, limits);
        let start = state.start();
        let acquired = group.acquire(
            &owner,
            (topic, partition),
            (bounds.log_start, bounds.available_end),
            max,
            now,
        );
        drop(groups);
        let durable = if created && stored != Some(start) {
            self.store_starts(group_id, vec![(topic.to_string(), partition, start)])
        } else {
            None
        };
        Ok((acquired, durable))
    }

    /// Settles ranges of one partition for a share group member; nothing of a range changes
    /// when one of its offsets is not held by the member. The handle, when given, resolves
    /// once the moved start is stored.
    pub fn share_settle(
        &self,
        group_id: &str,
        member_id: &str,
        (topic, partition): (&str, i32),
        batches: &[(i64, i64, Settle)],
    ) -> Result<Option<rivulet_log::Durable>, GroupError> {
        let moved = {
            let mut groups = self.lock();
            let group = groups
                .share
                .get_mut(group_id)
                .ok_or(GroupError::UnknownMemberId)?;
            group.settle(member_id, (topic, partition), batches)?
        };
        Ok(moved.and_then(|start| self.store_starts(group_id, vec![(topic.to_string(), partition, start)])))
    }

    /// Releases what a share group member holds on some partitions (a fetch session forgot
    /// them or closed).
    pub fn share_release(&self, group_id: &str, member_id: &str, partitions: &[(String, i32)]) {
        let moves = match self.lock().share.get_mut(group_id) {
            Some(group) => group.release(member_id, partitions),
            None => return,
        };
        let _ = self.store_starts(group_id, moves);
    }

    /// Gives back records acquired by a share group member that could not be delivered
    /// (no room in the answer); their delivery is not counted.
    pub fn share_unacquire(&self, group_id: &str, member_id: &str, key: (&str, i32), first: i64, last: i64) {
        if let Some(group) = self.lock().share.get_mut(group_id) {
            group.unacquire(member_id, key, first, last);
        }
    }

    /// A share group's epoch and members; `None` when no such group exists.
    pub fn describe_share_group(&self, group_id: &str) -> Option<ShareGroupDetail> {
        let groups = self.lock_settled(Some(group_id));
        groups.share.get(group_id).map(|g| g.detail())
    }
}

/// A share group as DescribeGroups-style views show it: subscriptions and partitions in the
/// classic consumer protocol's bytes, so tools that decode those show them.
pub(super) fn share_description(d: ShareGroupDetail) -> GroupDescription {
    GroupDescription {
        state: d.state,
        protocol_type: "share".to_string(),
        protocol_name: String::new(),
        members: d
            .members
            .into_iter()
            .map(|m| {
                let partitions: Vec<(String, i32)> = m
                    .assignment
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                    .collect();
                MemberDescription {
                    member_id: m.member_id,
                    group_instance_id: None,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    metadata: Bytes::from(super::protocol::subscription(&m.subscribed_topics)),
                    assignment: Bytes::from(super::protocol::assignment(&partitions)),
                }
            })
            .collect(),
    }
}
