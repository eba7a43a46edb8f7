//! Broker-assigned group members for front ends in this process: a Server-Sent Events
//! stream of the HTTP gateway, a subscription of the embedded SDK.

use tokio::sync::watch;

use crate::error::{BrokerError, Result};
use crate::groups::local::LocalClient;
use crate::offsets::CommittedOffset;
use crate::Broker;

/// A member of a broker-assigned group. Leaves the group when dropped.
#[derive(Debug)]
pub struct LocalMember {
    broker: Broker,
    group: String,
    id: u64,
    generation: watch::Receiver<u64>,
    left: bool,
}

impl Broker {
    /// Joins `group` as a member the broker assigns partitions of `topics` to. The group
    /// must not be in use by Kafka consumers.
    pub fn join_local_group(
        &self,
        group: &str,
        topics: &[String],
        client: LocalClient,
    ) -> Result<LocalMember> {
        let (id, generation) =
            self.groups()
                .join_local(group, topics, client)
                .map_err(|error| BrokerError::Group {
                    group: group.to_string(),
                    error,
                })?;
        Ok(LocalMember {
            broker: self.clone(),
            group: group.to_string(),
            id,
            generation,
            left: false,
        })
    }

    /// The offset group `group` committed for a partition.
    pub fn committed_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.groups()
            .offsets()
            .fetch(group, topic, partition)
            .map(|c| c.offset)
    }

    /// Durably commits `(topic, partition, next offset)` entries for a group, without the
    /// Kafka protocol's generation checks (for members in this process and tools).
    pub async fn commit_offsets(&self, group: &str, offsets: Vec<(String, i32, i64)>) -> Result<()> {
        let now = rivulet_log::now_ms();
        let entries = offsets
            .into_iter()
            .map(|(topic, partition, offset)| {
                let committed = CommittedOffset {
                    offset,
                    leader_epoch: -1,
                    metadata: None,
                    commit_timestamp_ms: now,
                };
                (topic, partition, committed)
            })
            .collect();
        self.groups().commit(group, entries).await
    }
}

impl LocalMember {
    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// This member's id within the group.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True when membership changed since the last [`LocalMember::assignment`].
    pub fn assignment_changed(&self) -> bool {
        self.generation.has_changed().unwrap_or(true)
    }

    /// A receiver that changes with the group's membership, for waiting alongside data.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }

    /// This member's share of the partitions now, sorted.
    pub fn assignment(&mut self) -> Vec<(String, i32)> {
        self.generation.borrow_and_update();
        let broker = &self.broker;
        let partitions = |t: &str| broker.topic(t).map_or(0, |t| t.partition_count());
        self.broker
            .groups()
            .local_assignment(&self.group, self.id, &partitions)
    }

    /// Starts consuming a partition of this member's share once no other member holds it;
    /// false while its previous holder has not released it yet.
    pub fn claim(&self, topic: &str, partition: i32) -> bool {
        self.broker
            .groups()
            .claim_local(&self.group, self.id, topic, partition)
    }

    /// Gives a partition up (after committing what was consumed of it).
    pub fn release(&self, topic: &str, partition: i32) {
        self.broker
            .groups()
            .release_local(&self.group, self.id, topic, partition);
    }

    /// Durably commits `(topic, partition, next offset)` entries.
    pub async fn commit(&self, offsets: Vec<(String, i32, i64)>) -> Result<()> {
        self.broker.commit_offsets(&self.group, offsets).await
    }

    /// Leaves the group now; the other members take over this member's partitions.
    pub fn leave(mut self) {
        self.leave_once();
    }

    fn leave_once(&mut self) {
        if !self.left {
            self.left = true;
            self.broker.groups().leave_local(&self.group, self.id);
        }
    }
}

impl Drop for LocalMember {
    fn drop(&mut self) {
        self.leave_once();
    }
}
