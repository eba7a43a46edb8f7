//! Dead letters: events a handler kept rejecting, parked in `<topic>.dlq` with headers
//! naming where they came from and why they failed, and redriven back on request.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::transport::{InRecord, OutRecord, TopicPartition, Transport};

/// Suffix of dead-letter topics.
pub const DLQ_SUFFIX: &str = ".dlq";
/// Header: the topic the event was read from.
pub const ORIGINAL_TOPIC: &str = "dlq.original.topic";
/// Header: its partition (decimal).
pub const ORIGINAL_PARTITION: &str = "dlq.original.partition";
/// Header: its offset (decimal).
pub const ORIGINAL_OFFSET: &str = "dlq.original.offset";
/// Header: the last error.
pub const ERROR: &str = "dlq.error";
/// Header: how many times the handler was tried (decimal).
pub const ATTEMPTS: &str = "dlq.attempts";
/// Header: the consumer group whose handler failed.
pub const GROUP: &str = "dlq.group";
/// Prefix of every dead-letter header.
pub const HEADER_PREFIX: &str = "dlq.";
/// Consumer group that remembers how far a dead-letter topic has been redriven.
pub const REDRIVE_GROUP_SUFFIX: &str = ".redrive";
/// Most dead letters read at once.
pub const READ_RECORDS_MAX: usize = 100_000;

/// The dead-letter topic of a topic.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

/// A record for the dead-letter topic: the original key, value and headers plus the
/// dead-letter headers.
pub fn dead_letter_record(record: &InRecord, group: &str, error: &str, attempts: u32) -> OutRecord {
    let mut headers: Vec<(String, Vec<u8>)> = record
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with(HEADER_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    headers.push((ORIGINAL_TOPIC.into(), record.topic.clone().into_bytes()));
    headers.push((
        ORIGINAL_PARTITION.into(),
        record.partition.to_string().into_bytes(),
    ));
    headers.push((ORIGINAL_OFFSET.into(), record.offset.to_string().into_bytes()));
    headers.push((ERROR.into(), error.as_bytes().to_vec()));
    headers.push((ATTEMPTS.into(), attempts.to_string().into_bytes()));
    headers.push((GROUP.into(), group.as_bytes().to_vec()));
    OutRecord {
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
        partition: None,
    }
}

/// A dead letter as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead-letter record.
    pub record: InRecord,
    /// Topic it came from.
    pub original_topic: Option<String>,
    /// Partition it came from.
    pub original_partition: Option<i32>,
    /// Offset it had there.
    pub original_offset: Option<i64>,
    /// The last error.
    pub error: Option<String>,
    /// Handler attempts.
    pub attempts: Option<u32>,
    /// The event id (`ce_id`), if any.
    pub event_id: Option<String>,
}

impl DeadLetter {
    /// Reads the dead-letter headers of a record.
    pub fn from_record(record: InRecord) -> DeadLetter {
        let text = |name: &str| {
            record
                .header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        DeadLetter {
            original_topic: text(ORIGINAL_TOPIC),
            original_partition: text(ORIGINAL_PARTITION).and_then(|v| v.parse().ok()),
            original_offset: text(ORIGINAL_OFFSET).and_then(|v| v.parse().ok()),
            error: text(ERROR),
            attempts: text(ATTEMPTS).and_then(|v| v.parse().ok()),
            event_id: text(crate::event::CE_ID),
            record,
        }
    }
}

/// Reads every dead letter in a dead-letter topic.
pub async fn list(transport: &dyn Transport, dlq: &str) -> Result<Vec<DeadLetter>> {
    let (records, _) = transport
        .read_to_end(dlq, BTreeMap::new(), READ_RECORDS_MAX)
        .await?;
    Ok(records.into_iter().map(DeadLetter::from_record).collect())
}

/// Publishes the dead letters not yet redriven back to their original topics and partitions
/// (keys and event headers kept, dead-letter headers removed) and remembers how far it got in the
/// group `<dlq>.redrive`. Returns how many were redriven.
pub async fn redrive(transport: &dyn Transport, dlq: &str) -> Result<usize> {
    let group = format!("{dlq}{REDRIVE_GROUP_SUFFIX}");
    let from = transport.committed(&group, dlq).await?;
    let (records, next) = transport.read_to_end(dlq, from, READ_RECORDS_MAX).await?;
    let mut by_topic: BTreeMap<String, Vec<OutRecord>> = BTreeMap::new();
    let fallback = dlq.strip_suffix(DLQ_SUFFIX).unwrap_or(dlq).to_string();
    for r in &records {
        let letter = DeadLetter::from_record(r.clone());
        // Back to the partition it came from, so it lines up with its key's other events
        // whatever partitioner their producer used.
        let partition = letter
            .original_partition
            .filter(|_| letter.original_topic.is_some());
        let topic = letter.original_topic.unwrap_or_else(|| fallback.clone());
        by_topic.entry(topic).or_default().push(OutRecord {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(HEADER_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
                .collect(),
            partition,
        });
    }
    for (topic, recs) in by_topic {
        transport.publish(&topic, recs).await?;
    }
    let offsets = next
        .into_iter()
        .map(|(p, o)| (TopicPartition::new(dlq, p), o))
        .collect();
    transport.commit_standalone(&group, offsets).await?;
    Ok(records.len())
}
