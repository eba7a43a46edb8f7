//! What a persistent subscription group is (its source, start and settings, stored with
//! it) and what it reports (deliveries, statistics).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::filter::FilterSpec;
use crate::model::RecordedEvent;

/// Longest group name, in bytes.
pub const GROUP_NAME_BYTES_MAX: usize = 256;
/// Most events a group holds read but not yet finished (waiting, in flight or parking).
pub const OUTSTANDING_MAX: usize = 10_000;
/// Most events a consumer may hold unacknowledged.
pub const CONSUMER_SLOTS_MAX: u32 = 10_000;
/// Most consumers of one group, whatever its settings say.
pub const CONSUMERS_MAX: usize = 1_000;

/// What a group reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupSource {
    /// One stream (or a `$ce-` / `$et-` projection); positions are revisions.
    Stream(String),
    /// Every event, maybe filtered; positions are log positions.
    All {
        /// Only the events passing this.
        filter: Option<FilterSpec>,
    },
}

impl GroupSource {
    /// The stream name, or `$all`.
    pub fn name(&self) -> &str {
        match self {
            GroupSource::Stream(s) => s,
            GroupSource::All { .. } => "$all",
        }
    }
}

/// Where a new group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The first event.
    Start,
    /// After the last event at the group's creation.
    End,
    /// A revision (stream groups) or a position (`$all` groups).
    At(u64),
}

/// How a group chooses the consumer of each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsumerStrategy {
    /// The first consumer with room, in the order they joined.
    DispatchToSingle,
    /// Each consumer with room in turn.
    RoundRobin,
    /// The same consumer for all events of a stream (while the consumers stay the same).
    Pinned,
    /// The same consumer for all events of a correlation id (`$correlationId` in the
    /// event's metadata), else of a stream.
    PinnedByCorrelation,
}

impl ConsumerStrategy {
    /// The name the KurrentDB API uses.
    pub fn name(self) -> &'static str {
        match self {
            ConsumerStrategy::DispatchToSingle => "DispatchToSingle",
            ConsumerStrategy::RoundRobin => "RoundRobin",
            ConsumerStrategy::Pinned => "Pinned",
            ConsumerStrategy::PinnedByCorrelation => "PinnedByCorrelation",
        }
    }

    /// The strategy of a name, `None` for an unknown one.
    pub fn parse(name: &str) -> Option<ConsumerStrategy> {
        [
            ConsumerStrategy::DispatchToSingle,
            ConsumerStrategy::RoundRobin,
            ConsumerStrategy::Pinned,
            ConsumerStrategy::PinnedByCorrelation,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

/// A group's settings (the KurrentDB set; defaults as KurrentDB's clients send them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Where the group started.
    pub start_from: StartFrom,
    /// Deliver the events links point to (Rivulet's projections always do).
    pub resolve_links: bool,
    /// Kept and reported; Rivulet's statistics do not change with it.
    pub extra_statistics: bool,
    /// An event not acknowledged within this is retried; 0 means never.
    pub message_timeout_ms: u64,
    /// Retries before an event is parked.
    pub max_retry_count: u32,
    /// Shortest time between checkpoints.
    pub checkpoint_after_ms: u64,
    /// Finished events before a checkpoint is written (once `checkpoint_after_ms` passed).
    pub checkpoint_count_min: u32,
    /// Finished events after which a checkpoint is written at once.
    pub checkpoint_count_max: u32,
    /// Most consumers; 0 means no limit but Rivulet's own ([`CONSUMERS_MAX`]).
    pub subscriber_count_max: u32,
    /// Kept and reported.
    pub live_buffer_size: u32,
    /// Events read from the source at a time.
    pub read_batch_size: u32,
    /// Events read ahead of the consumers.
    pub history_buffer_size: u32,
    /// Who gets each event.
    pub strategy: ConsumerStrategy,
}

impl Default for GroupSettings {
    fn default() -> GroupSettings {
        GroupSettings {
            start_from: StartFrom::End,
            resolve_links: false,
            extra_statistics: false,
            message_timeout_ms: 30_000,
            max_retry_count: 10,
            checkpoint_after_ms: 2_000,
            checkpoint_count_min: 10,
            checkpoint_count_max: 1_000,
            subscriber_count_max: 0,
            live_buffer_size: 500,
            read_batch_size: 20,
            history_buffer_size: 500,
            strategy: ConsumerStrategy::RoundRobin,
        }
    }
}

impl GroupSettings {
    /// Events the group reads ahead: the history buffer, at least one read batch, within
    /// [`OUTSTANDING_MAX`].
    pub fn read_ahead(&self) -> usize {
        (self.history_buffer_size.max(self.read_batch_size) as usize).clamp(1, OUTSTANDING_MAX)
    }
}

/// A group: its source, name and settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDefinition {
    /// What it reads.
    pub source: GroupSource,
    /// Its name, unique per source.
    pub group: String,
    /// How it delivers.
    pub settings: GroupSettings,
}

impl GroupDefinition {
    /// `<source>::<group>`, the subscription id the KurrentDB clients expect.
    pub fn id(&self) -> String {
        group_id(self.source.name(), &self.group)
    }
}

/// `<source>::<group>`.
pub fn group_id(source: &str, group: &str) -> String {
    format!("{source}::{group}")
}

/// What a consumer does with an event it did not handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackAction {
    /// Move it to the group's parked-events stream.
    Park,
    /// Deliver it again later (counts towards `max_retry_count`, then parks).
    Retry,
    /// Drop it: finished without handling.
    Skip,
    /// Leave the group; the consumer's events go to the others.
    Stop,
}

/// One event given to a consumer; acknowledge it by its event id.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event.
    pub event: Arc<RecordedEvent>,
    /// How many times it was retried before this delivery.
    pub retry_count: u32,
}

/// Who joins a group.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    /// Most events it holds unacknowledged (1 to [`CONSUMER_SLOTS_MAX`]).
    pub buffer_size: u32,
    /// Its address.
    pub from: String,
    /// Its user, empty when anonymous.
    pub username: String,
    /// The name the client gave its connection.
    pub connection_name: String,
}

/// One connected consumer, as statistics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Its address.
    pub from: String,
    /// Its user.
    pub username: String,
    /// Its connection name.
    pub connection_name: String,
    /// Events delivered to it.
    pub delivered_total: u64,
    /// Events it holds unacknowledged.
    pub in_flight: u32,
    /// Events it could take now.
    pub slots_free: u32,
}

impl GroupInfo {
    /// Revisions (stream groups) or positions (`$all` groups) between the checkpoint and the
    /// source's end: how far behind the group is.
    pub fn lag(&self) -> u64 {
        self.source_end
            .saturating_sub(self.checkpoint.unwrap_or(self.next_read))
    }
}

/// A group's definition and live statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub definition: GroupDefinition,
    /// `Live` (a consumer is connected) or `Idle`.
    pub status: &'static str,
    /// Its consumers.
    pub consumers: Vec<ConsumerInfo>,
    /// Deliveries (first and retried).
    pub delivered_total: u64,
    /// Events finished: acknowledged, skipped or parked.
    pub finished_total: u64,
    /// The last durable checkpoint: where the group resumes after a restart.
    pub checkpoint: Option<u64>,
    /// The next revision or position the group reads.
    pub next_read: u64,
    /// The source's next revision (or `$all`'s next position): what the group would read
    /// next if it were caught up.
    pub source_end: u64,
    /// Read, not finished.
    pub outstanding: usize,
    /// Delivered, not acknowledged.
    pub in_flight: usize,
    /// Waiting for a retry.
    pub retry_waiting: usize,
    /// In the parked-events stream, not yet replayed.
    pub parked: u64,
}
