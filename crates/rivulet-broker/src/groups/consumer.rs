//! Kafka's consumer group protocol (KIP-848): the broker assigns, members reconcile.
//!
//! Every member heartbeats its subscription and owned partitions. A change of members,
//! subscriptions or partition counts bumps the group epoch; the next heartbeat computes a
//! new target assignment ([`super::assignor`]) at that epoch. Each member then moves toward
//! its target on its own, without stopping the others: it is first told to give up the
//! partitions it loses (its epoch stays), and once its heartbeat no longer owns them it
//! moves to the target epoch and receives its new partitions, each as soon as its previous
//! holder has given it up. Nobody waits for a group-wide barrier.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::assignor::{self, Assignment};
use super::protocol;
use super::types::{
    GroupDescription, GroupError, GroupLimits, GroupState, HeartbeatOutcome, MemberDescription,
};

/// A ConsumerGroupHeartbeat, protocol-neutral (topics by name).
#[derive(Debug, Clone, Default)]
pub struct ConsumerHeartbeat {
    /// Group id.
    pub group_id: String,
    /// Member id (clients make their own; empty: the broker makes one).
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member's leave, else the member's epoch.
    pub member_epoch: i32,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// How long the member may take to give partitions up.
    pub rebalance_timeout_ms: i32,
    /// Subscribed topics; `None` when unchanged since the last heartbeat.
    pub subscribed_topics: Option<Vec<String>>,
    /// Subscription pattern: topics whose whole name matches it are subscribed too;
    /// `None` when unchanged, empty to drop it.
    pub subscribed_regex: Option<String>,
    /// Partitions the member owns; `None` when unchanged.
    pub owned: Option<Assignment>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
}

#[derive(Debug)]
struct Member {
    epoch: i32,
    previous_epoch: i32,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    /// Topics subscribed by name.
    names: BTreeSet<String>,
    /// Subscription pattern and its source.
    pattern: Option<(String, regex::Regex)>,
    /// The topics subscribed now: the names and the existing topics the pattern matches.
    subscribed: BTreeSet<String>,
    rebalance_timeout: Duration,
    /// What the member may consume now.
    assigned: Assignment,
    /// What it was told to give up and still owns.
    revoking: Assignment,
    revoking_since: Option<Instant>,
    last_seen: Instant,
    /// The assignment changed since the member last heard it.
    send_assignment: bool,
    /// A static member that left with epoch -2: it keeps its partitions for its session
    /// timeout, for a restart with the same instance id to take over.
    departed: bool,
}

/// One consumer group (KIP-848).
#[derive(Debug, Default)]
pub(super) struct ConsumerGroup {
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    target: HashMap<String, Assignment>,
    /// Partition counts of the subscribed topics the target was computed from.
    partition_counts: BTreeMap<String, usize>,
}

impl ConsumerGroup {
    /// True when the group has members.
    pub(super) fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// The topics its members subscribe to now.
    pub(super) fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect()
    }

    /// True when `epoch` is `member_id`'s current epoch (offset commits are checked so).
    pub(super) fn member_epoch_is(&self, member_id: &str, epoch: i32) -> Option<bool> {
        self.members.get(member_id).map(|m| m.epoch == epoch)
    }

    /// Handles one heartbeat.
    pub(super) fn heartbeat(
        &mut self,
        req: &ConsumerHeartbeat,
        limits: &GroupLimits,
        now: Instant,
        partitions: &dyn Fn(&str) -> usize,
        topics: &dyn Fn() -> Vec<String>,
    ) -> HeartbeatOutcome {
        let member_id = match req.member_epoch {
            -2 | -1 => return self.leave(req, now),
            0 => match self.join(req, limits, now) {
                Ok(id) => id,
                Err(e) => return HeartbeatOutcome::refused(e, &req.member_id, req.member_epoch),
            },
            e if e > 0 => match self.check_member(req, now) {
                Ok(()) => req.member_id.clone(),
                Err(e) => return HeartbeatOutcome::refused(e, &req.member_id, req.member_epoch),
            },
            _ => {
                return HeartbeatOutcome::refused(
                    GroupError::FencedMemberEpoch,
                    &req.member_id,
                    req.member_epoch,
                )
            }
        };
        self.refresh_target(partitions, topics);
        self.reconcile(&member_id, req.owned.as_ref(), now);
        let Some(m) = self.members.get_mut(&member_id) else {
            return HeartbeatOutcome::refused(GroupError::UnknownMemberId, &req.member_id, req.member_epoch);
        };
        let assignment = std::mem::take(&mut m.send_assignment).then(|| m.assigned.clone());
        HeartbeatOutcome {
            error: None,
            member_id,
            member_epoch: m.epoch,
            heartbeat_interval_ms: i32::try_from(limits.consumer_heartbeat_interval_ms).unwrap_or(i32::MAX),
            assignment,
        }
    }

    fn join(
        &mut self,
        req: &ConsumerHeartbeat,
        limits: &GroupLimits,
        now: Instant,
    ) -> Result<String, GroupError> {
        if req.subscribed_topics.is_none() && req.subscribed_regex.as_deref().is_none_or(str::is_empty) {
            return Err(GroupError::InvalidRequest);
        }
        let names: BTreeSet<String> = req.subscribed_topics.iter().flatten().cloned().collect();
        let pattern = compile(req.subscribed_regex.as_deref().unwrap_or_default())?;
        let id = if req.member_id.is_empty() {
            format!("{:032x}", crate::topics::random_u128())
        } else {
            req.member_id.clone()
        };
        if let Some(instance) = req.instance_id.as_deref().filter(|i| !i.is_empty()) {
            let holder = self
                .members
                .iter()
                .find(|(other, m)| **other != id && m.instance_id.as_deref() == Some(instance))
                .map(|(other, m)| (other.clone(), m.departed));
            match holder {
                Some((old, true)) => return Ok(self.take_over(&old, id, req, (names, pattern), now)),
                Some((_, false)) => return Err(GroupError::UnreleasedInstanceId),
                None => {}
            }
        }
        if !self.members.contains_key(&id) && self.members.len() >= limits.members_per_group_max {
            return Err(GroupError::GroupMaxSizeReached);
        }
        let rebalance_timeout = Duration::from_millis(u64::try_from(req.rebalance_timeout_ms).unwrap_or(0));
        let member = Member {
            epoch: 0,
            previous_epoch: 0,
            instance_id: req.instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            subscribed: names.clone(),
            names,
            pattern,
            rebalance_timeout,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            revoking_since: None,
            last_seen: now,
            send_assignment: true,
            departed: false,
        };
        // A member joining again (epoch 0) starts over: its old partitions are given out anew.
        if self.members.insert(id.clone(), member).is_none() {
            tracing::info!(member = %id, client = %req.client_id, "Consumer group member joined");
        }
        self.epoch += 1;
        Ok(id)
    }

    /// A static member restarted: the new incarnation takes the departed one's place, epoch
    /// and partitions, without a new group epoch.
    fn take_over(
        &mut self,
        old: &str,
        id: String,
        req: &ConsumerHeartbeat,
        (names, pattern): (BTreeSet<String>, Option<(String, regex::Regex)>),
        now: Instant,
    ) -> String {
        if let Some(mut m) = self.members.remove(old) {
            // A changed subscription shows when it is resolved, as for any member.
            m.names = names;
            m.pattern = pattern;
            m.departed = false;
            m.last_seen = now;
            m.send_assignment = true;
            m.client_id = req.client_id.clone();
            m.client_host = req.client_host.clone();
            if let Some(target) = self.target.remove(old) {
                self.target.insert(id.clone(), target);
            }
            tracing::info!(member = %id, replaced = %old, "Static consumer group member rejoined");
            self.members.insert(id.clone(), m);
        }
        id
    }

    fn leave(&mut self, req: &ConsumerHeartbeat, now: Instant) -> HeartbeatOutcome {
        let is_static = req.instance_id.as_deref().is_some_and(|i| !i.is_empty());
        match self.members.get_mut(&req.member_id) {
            Some(m) if req.member_epoch == -2 && is_static => {
                m.departed = true;
                m.last_seen = now;
                tracing::info!(group = %req.group_id, member = %req.member_id, "Static consumer group member left for now");
            }
            _ => {
                if self.remove_member(&req.member_id) {
                    tracing::info!(group = %req.group_id, member = %req.member_id, "Consumer group member left");
                }
            }
        }
        HeartbeatOutcome::left(&req.member_id, req.member_epoch)
    }

    /// Removes a member; its partitions go to the others at the next epoch.
    pub(super) fn remove_member(&mut self, member_id: &str) -> bool {
        let removed = self.members.remove(member_id).is_some();
        if removed {
            self.target.remove(member_id);
            self.epoch += 1;
        }
        removed
    }

    /// Checks a known member's epoch and takes its subscription change.
    fn check_member(&mut self, req: &ConsumerHeartbeat, now: Instant) -> Result<(), GroupError> {
        let Some(m) = self.members.get_mut(&req.member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        // The previous epoch is accepted from a member that missed our last answer, as
        // long as it owns nothing it was not given.
        let lost_answer = req.member_epoch == m.previous_epoch
            && req
                .owned
                .as_ref()
                .is_some_and(|owned| is_subset(owned, &m.assigned));
        if req.member_epoch != m.epoch && !lost_answer {
            tracing::info!(group = %req.group_id, member = %req.member_id, sent = req.member_epoch, current = m.epoch, "Fenced a consumer group member");
            return Err(GroupError::FencedMemberEpoch);
        }
        if lost_answer && req.member_epoch != m.epoch {
            m.send_assignment = true;
        }
        if let Some(source) = &req.subscribed_regex {
            if m.pattern.as_ref().map_or("", |(s, _)| s.as_str()) != source.as_str() {
                m.pattern = compile(source)?;
            }
        }
        m.last_seen = now;
        if let Some(topics) = &req.subscribed_topics {
            m.names = topics.iter().cloned().collect();
        }
        // A changed subscription shows when it is resolved (see `refresh_target`).
        Ok(())
    }

    /// Resolves every member's subscription against the existing topics; true when one
    /// changed.
    fn resolve_subscriptions(&mut self, topics: &dyn Fn() -> Vec<String>) -> bool {
        let existing = self
            .members
            .values()
            .any(|m| m.pattern.is_some())
            .then(topics)
            .unwrap_or_default();
        let mut changed = false;
        for m in self.members.values_mut() {
            let mut resolved = m.names.clone();
            if let Some((_, re)) = &m.pattern {
                resolved.extend(existing.iter().filter(|t| re.is_match(t)).cloned());
            }
            if resolved != m.subscribed {
                m.subscribed = resolved;
                changed = true;
            }
        }
        changed
    }

    /// Bumps the epoch when a subscribed topic's partition count changed, and computes the
    /// target assignment when the epoch moved past it.
    fn refresh_target(&mut self, partitions: &dyn Fn(&str) -> usize, topics: &dyn Fn() -> Vec<String>) {
        if self.resolve_subscriptions(topics) && self.epoch <= self.assignment_epoch {
            self.epoch += 1;
        }
        let counts: BTreeMap<String, usize> = self
            .members
            .values()
            .flat_map(|m| m.subscribed.iter())
            .map(|t| (t.clone(), partitions(t)))
            .collect();
        if counts != self.partition_counts {
            self.partition_counts = counts;
            // One new epoch covers every change since the last target.
            if self.epoch <= self.assignment_epoch {
                self.epoch += 1;
            }
        }
        if self.epoch <= self.assignment_epoch {
            return;
        }
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.subscribed.clone()))
            .collect();
        let counts = &self.partition_counts;
        let count_of = |t: &str| counts.get(t).copied().unwrap_or(0);
        self.target = assignor::assign(&subscriptions, &count_of, &self.target);
        self.assignment_epoch = self.epoch;
    }

    /// Moves one member toward its target: first the revocation of what it loses, then the
    /// new epoch, then each new partition once no other member holds it.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held = self.held_by_others(member_id);
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if !m.revoking.is_empty() {
            match owned {
                Some(owned) if !intersects(owned, &m.revoking) => {
                    m.revoking.clear();
                    m.revoking_since = None;
                }
                _ => return,
            }
        }
        if m.epoch < assignment_epoch {
            let losing = difference(&m.assigned, &target);
            if !losing.is_empty() {
                m.assigned = intersection(&m.assigned, &target);
                m.revoking = losing;
                m.revoking_since = Some(now);
                m.send_assignment = true;
                return;
            }
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
            m.send_assignment = true;
        }
        let free = difference(&difference(&target, &m.assigned), &held);
        if !free.is_empty() {
            for (topic, ps) in free {
                m.assigned.entry(topic).or_default().extend(ps);
            }
            m.send_assignment = true;
        }
        if owned.is_some_and(|o| *o != m.assigned) {
            // The member's view differs from ours: tell it again.
            m.send_assignment = true;
        }
    }

    /// Partitions other members hold: assigned, or told to give up but not yet given up.
    fn held_by_others(&self, member_id: &str) -> Assignment {
        let mut out = Assignment::new();
        for (id, m) in &self.members {
            if id == member_id {
                continue;
            }
            for (topic, ps) in m.assigned.iter().chain(m.revoking.iter()) {
                out.entry(topic.clone()).or_default().extend(ps);
            }
        }
        out
    }

    /// Expires members whose session ran out and members that did not give partitions up
    /// within their rebalance timeout.
    pub(super) fn tick(&mut self, group_id: &str, session: Duration, now: Instant) {
        let expired: Vec<(String, &'static str)> = self
            .members
            .iter()
            .filter_map(|(id, m)| {
                if now.saturating_duration_since(m.last_seen) > session {
                    Some((id.clone(), "session expired"))
                } else if m
                    .revoking_since
                    .is_some_and(|since| now.saturating_duration_since(since) > m.rebalance_timeout)
                {
                    Some((
                        id.clone(),
                        "did not revoke partitions within its rebalance timeout",
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in expired {
            tracing::info!(group = %group_id, member = %id, why, "Consumer group member removed");
            self.remove_member(&id);
        }
    }

    /// The group's state, as Kafka names consumer group states.
    pub(super) fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.epoch > self.assignment_epoch {
            GroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || !m.revoking.is_empty())
        {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    /// The group for DescribeGroups-style views: subscriptions and current assignments in
    /// the classic consumer protocol's bytes.
    pub(super) fn describe(&self) -> GroupDescription {
        let members = self
            .members
            .iter()
            .map(|(id, m)| {
                let topics: Vec<String> = m.subscribed.iter().cloned().collect();
                let partitions: Vec<(String, i32)> = m
                    .assigned
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                    .collect();
                MemberDescription {
                    member_id: id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: Bytes::from(protocol::subscription(&topics)),
                    assignment: Bytes::from(protocol::assignment(&partitions)),
                }
            })
            .collect();
        GroupDescription {
            state: self.state(),
            protocol_type: "consumer".to_string(),
            protocol_name: "uniform".to_string(),
            members,
        }
    }

    /// Every member with its epoch, subscription, current and target assignment.
    pub(super) fn members_detail(&self) -> Vec<ConsumerMemberDetail> {
        self.members
            .iter()
            .map(|(id, m)| ConsumerMemberDetail {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                member_epoch: m.epoch,
                subscribed_topics: m.subscribed.iter().cloned().collect(),
                assignment: m.assigned.clone(),
                target_assignment: self.target.get(id).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// `(group epoch, target assignment epoch)`.
    pub(super) fn epochs(&self) -> (i32, i32) {
        (self.epoch, self.assignment_epoch)
    }
}

/// One member of a consumer group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberDetail {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// The member's epoch.
    pub member_epoch: i32,
    /// Subscribed topics.
    pub subscribed_topics: Vec<String>,
    /// What it consumes now.
    pub assignment: Assignment,
    /// What it will consume once reconciled.
    pub target_assignment: Assignment,
}

/// A consumer group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDetail {
    /// Kafka's state name.
    pub state: GroupState,
    /// The group epoch.
    pub epoch: i32,
    /// The epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The members.
    pub members: Vec<ConsumerMemberDetail>,
}

/// Largest compiled subscription pattern, in bytes.
const PATTERN_BYTES_MAX: usize = 1 << 20;

/// A subscription pattern matching whole topic names, as Kafka's do; `None` for an empty
/// source.
fn compile(source: &str) -> Result<Option<(String, regex::Regex)>, GroupError> {
    if source.is_empty() {
        return Ok(None);
    }
    regex::RegexBuilder::new(&format!("^(?:{source})$"))
        .size_limit(PATTERN_BYTES_MAX)
        .build()
        .map(|re| Some((source.to_string(), re)))
        .map_err(|e| {
            tracing::info!(pattern = source, error = %e, "Refusing a subscription pattern");
            GroupError::InvalidRegularExpression
        })
}

fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|bs| ps.is_subset(bs)))
}

fn intersects(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|bs| !ps.is_disjoint(bs)))
}

fn difference(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(t, ps)| {
            let left: BTreeSet<i32> = match b.get(t) {
                Some(bs) => ps.difference(bs).copied().collect(),
                None => ps.clone(),
            };
            (!left.is_empty()).then(|| (t.clone(), left))
        })
        .collect()
}

fn intersection(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(t, ps)| {
            let both: BTreeSet<i32> = ps.intersection(b.get(t)?).copied().collect();
            (!both.is_empty()).then(|| (t.clone(), both))
        })
        .collect()
}
