//! The transport abstraction: what the SDK needs from a broker, implemented over the Kafka
//! protocol (`KafkaTransport`, feature `kafka`) and in process (`EmbeddedTransport`,
//! feature `embedded`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};

use crate::error::Result;
use crate::progress::Progress;

/// A topic and a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// A record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutRecord {
    /// Key; records with the same key go to the same partition (Kafka's murmur2).
    pub key: Option<Vec<u8>>,
    /// Value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Explicit partition, overriding the key.
    pub partition: Option<i32>,
}

/// A record read from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Record timestamp (ms since the epoch).
    pub timestamp_ms: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl InRecord {
    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Where the record sits.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }
}

/// Records read from a topic and the next offset of each partition.
pub type ReadBatch = (Vec<InRecord>, BTreeMap<i32, i64>);

/// Where a published record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// How a topic the SDK creates is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Partition count.
    pub partitions: i32,
    /// Topic config overrides (`cleanup.policy`, `retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
}

/// Settings of a group member.
#[derive(Debug, Clone)]
pub struct MemberSettings {
    /// Most records one poll returns.
    pub poll_records_max: usize,
    /// How long a rebalance waits for in-flight events of revoked partitions before it
    /// commits what finished.
    pub revoke_wait: Duration,
    /// Session timeout (Kafka transport).
    pub session_timeout: Duration,
}

/// What a poll of a group member returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// A record of an assigned partition.
    Record(InRecord),
    /// Partitions newly assigned to this member.
    Assigned(Vec<TopicPartition>),
    /// Partitions taken away from this member (their offsets were committed first).
    Revoked(Vec<TopicPartition>),
}

/// A broker connection: publishing, reading, topic creation and group membership.
///
/// Implementations: `KafkaTransport` (any Kafka-protocol broker) and `EmbeddedTransport`
/// (a Rivulet broker in this process).
pub trait Transport: Send + Sync + 'static {
    /// Publishes records to one topic and resolves when every one is durable (acks=all).
    fn publish<'a>(&'a self, topic: &'a str, records: Vec<OutRecord>)
        -> BoxFuture<'a, Result<Vec<Delivery>>>;

    /// Publishes records to several topics and resolves when every one is durable
    /// (acks=all), without the deliveries' offsets: over the Kafka protocol one wait for the
    /// whole batch instead of a future per record. By default, [`Transport::publish`] per
    /// topic in turn.
    fn publish_many(&self, outputs: Vec<(String, Vec<OutRecord>)>) -> BoxFuture<'_, Result<()>> {
        async move {
            for (topic, records) in outputs {
                self.publish(&topic, records).await?;
            }
            Ok(())
        }
        .boxed()
    }

    /// Creates a topic unless it exists.
    fn ensure_topic<'a>(&'a self, topic: &'a str, spec: TopicSpec) -> BoxFuture<'a, Result<()>>;

    /// The partition count of a topic ([`crate::SdkError::UnknownTopic`] when it does not
    /// exist).
    fn partition_count<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<i32>>;

    /// Reads every partition of a topic from the given offsets (earliest where absent) to
    /// the end it has when called, at most `records_max` records. Returns the records and
    /// the next offset of each partition.
    fn read_to_end<'a>(
        &'a self,
        topic: &'a str,
        from: BTreeMap<i32, i64>,
        records_max: usize,
    ) -> BoxFuture<'a, Result<ReadBatch>>;

    /// The first and next offset (log start, high watermark) of every partition of a topic.
    fn offset_ranges<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<BTreeMap<i32, (i64, i64)>>>;

    /// The offsets a group has committed for a topic.
    fn committed<'a>(&'a self, group: &'a str, topic: &'a str) -> BoxFuture<'a, Result<BTreeMap<i32, i64>>>;

    /// Commits offsets for a group that has no active members (tools such as redrive).
    fn commit_standalone<'a>(
        &'a self,
        group: &'a str,
        offsets: Vec<(TopicPartition, i64)>,
    ) -> BoxFuture<'a, Result<()>>;

    /// Joins a consumer group. `progress` tracks dispatched and finished offsets; the
    /// member commits from it before giving partitions up.
    fn join<'a>(
        &'a self,
        group: &'a str,
        topics: Vec<String>,
        progress: Arc<Progress>,
        settings: MemberSettings,
    ) -> BoxFuture<'a, Result<Box<dyn GroupMember>>>;

    /// Starts a transactional producer for `transactional_id`. Starting it fences every
    /// earlier producer of the id and aborts the transaction such a producer left open.
    fn transactional<'a>(&'a self, transactional_id: &'a str) -> BoxFuture<'a, Result<Box<dyn TxnProducer>>>;
}

/// A transactional producer: publishes records and commits a group member's offsets as one
/// transaction (Kafka transactions, KIP-98): read_committed readers and the group see all
/// of it or none of it.
pub trait TxnProducer: Send {
    /// Publishes `outputs` (records per topic) and commits `offsets` (next offsets to
    /// consume) for `member`'s group in one transaction. On an error the transaction was
    /// aborted, or will be by the broker: nothing of it becomes visible. After an error the
    /// producer may be unusable (fenced); start a new one.
    fn commit<'a>(
        &'a mut self,
        member: &'a mut dyn GroupMember,
        outputs: Vec<(String, Vec<OutRecord>)>,
        offsets: Vec<(TopicPartition, i64)>,
    ) -> BoxFuture<'a, Result<()>>;
}

/// One member of a consumer group.
pub trait GroupMember: Send {
    /// Waits up to `max_wait` for records or assignment changes.
    fn poll(&mut self, max_wait: Duration) -> BoxFuture<'_, Result<Vec<Polled>>>;

    /// Commits offsets (the next offset to consume) of assigned partitions.
    fn commit(&mut self, offsets: Vec<(TopicPartition, i64)>) -> BoxFuture<'_, Result<()>>;

    /// Stops fetching a partition and moves its position back to `offset`, so the record
    /// at `offset` is delivered again after [`GroupMember::resume`].
    fn pause(&mut self, tp: &TopicPartition, offset: i64) -> Result<()>;

    /// Resumes fetching a paused partition.
    fn resume(&mut self, tp: &TopicPartition) -> Result<()>;

    /// Commits `offsets` and leaves the group.
    fn close(&mut self, offsets: Vec<(TopicPartition, i64)>) -> BoxFuture<'_, Result<()>>;

    /// The member as `Any`, for the transport's own [`TxnProducer`] (which needs the
    /// member's group details to commit its offsets in a transaction).
    fn as_any(&self) -> &dyn std::any::Any;

    /// The group this member belongs to.
    fn group(&self) -> &str;
}
