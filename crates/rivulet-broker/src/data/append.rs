//! Appending records the broker puts into batches itself, for front ends that receive
//! records rather than batches (the HTTP gateway, the embedded SDK).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use rivulet_log::batch;
use rivulet_log::record::Record;
use rivulet_log::Durable;

use super::Create;
use crate::error::{BrokerError, Result};
use crate::partitioner::partition_for_key;
use crate::Broker;

/// Records per batch the broker builds.
pub const BATCH_RECORDS_MAX: usize = 500;

/// Bytes a record adds to a batch beyond its key, value and headers (at most: length,
/// attributes, timestamp and offset deltas, key and value lengths, header count).
const RECORD_OVERHEAD_BYTES: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;

/// A record to append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// Key; records with the same key go to the same partition (Kafka's murmur2).
    pub key: Option<Vec<u8>>,
    /// Value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in order; names may repeat.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Explicit partition, overriding the key.
    pub partition: Option<i32>,
    /// Record timestamp in ms since the epoch; now when absent.
    pub timestamp_ms: Option<i64>,
}

impl NewRecord {
    fn size_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 10)
            .sum();
        RECORD_OVERHEAD_BYTES
            + self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + headers
    }
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The timestamp stored.
    pub timestamp_ms: i64,
}

/// The records of one append, in request order, and their durability.
#[derive(Debug)]
#[must_use = "records are durable only once `durable` resolved"]
pub struct Appended {
    /// Each record's position, in the order the records were given.
    pub positions: Vec<RecordPosition>,
    durable: Vec<Durable>,
}

impl Appended {
    /// The handles [`Appended::durable`] waits for, one per partition written.
    pub fn durables(&self) -> &[Durable] {
        &self.durable
    }

    /// Waits until every record is on disk (the partitions sync in parallel), then returns
    /// the positions.
    pub async fn durable(self) -> Result<Vec<RecordPosition>> {
        Durable::wait_all(self.durable).await?;
        Ok(self.positions)
    }
}

impl Broker {
    /// Appends records to a topic, creating it if `create` and the broker allow. Records
    /// for one partition are appended together, in order, in batches of at most
    /// [`BATCH_RECORDS_MAX`] records and the topic's `max.message.bytes`.
    ///
    /// Nothing is written when a record is invalid (a partition out of range, a negative
    /// timestamp); a record larger than `max.message.bytes` fails its partition's append.
    pub fn append_records(&self, topic: &str, records: Vec<NewRecord>, create: Create) -> Result<Appended> {
        let t = self.topic_for(topic, create)?;
        let count = t.partition_count();
        let now = rivulet_log::now_ms();
        let mut by_partition: BTreeMap<i32, Vec<(usize, NewRecord)>> = BTreeMap::new();
        let total = records.len();
        for (index, record) in records.into_iter().enumerate() {
            if let Some(ts) = record.timestamp_ms.filter(|ts| *ts < 0) {
                return Err(BrokerError::InvalidRecord(format!(
                    "record {index}: timestamp {ts} is negative; give milliseconds since the Unix epoch"
                )));
            }
            let partition = self.pick_partition(topic, count, &record)?;
            by_partition.entry(partition).or_default().push((index, record));
        }
        let config = t.partition(0).map(|log| log.config());
        if config.as_ref().is_some_and(|c| c.cleanup.compact) {
            if let Some((_, group)) = by_partition
                .iter()
                .find(|(_, g)| g.iter().any(|(_, r)| r.key.is_none()))
            {
                let index = group.iter().find(|(_, r)| r.key.is_none()).map_or(0, |(i, _)| *i);
                return Err(BrokerError::InvalidRecord(format!(
                    "record {index}: a compacted topic accepts only records with a key"
                )));
            }
        }
        let max_batch_bytes = config.map_or(1 << 20, |c| c.max_batch_bytes);
        let mut positions = vec![None; total];
        let mut durable = Vec::with_capacity(by_partition.len());
        for (partition, group) in by_partition {
            let log = t
                .partition(partition)
                .ok_or_else(|| BrokerError::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                    count,
                })?;
            let bytes = build_batches(&group, now, max_batch_bytes, None);
            let outcome = log.append(&bytes)?;
            self.metrics()
                .record_produced(topic, group.len() as u64, bytes.len() as u64);
            for (k, (index, record)) in group.iter().enumerate() {
                positions[*index] = Some(RecordPosition {
                    partition,
                    offset: outcome.base_offset + k as i64,
                    timestamp_ms: record.timestamp_ms.unwrap_or(now),
                });
            }
            durable.push(outcome.durable);
        }
        let positions: Vec<RecordPosition> = positions.into_iter().flatten().collect();
        assert_eq!(positions.len(), total, "every record was placed");
        Ok(Appended { positions, durable })
    }

    /// Appends `records` to one partition as one batch: every record or none, at
    /// consecutive offsets, in the order given. Refused, with nothing written, when the
    /// batch would exceed the topic's `max.message.bytes` or a record is invalid. The event
    /// store's multi-event and multi-stream appends rest on this.
    pub fn append_atomic(&self, topic: &str, partition: i32, records: Vec<NewRecord>) -> Result<Appended> {
        let t = self.existing_topic(topic)?;
        let count = t.partition_count();
        let log = t
            .partition(partition)
            .ok_or_else(|| BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                count,
            })?;
        if records.is_empty() {
            return Err(BrokerError::InvalidRecord(
                "an atomic append needs at least one record".into(),
            ));
        }
        if let Some(ts) = records.iter().filter_map(|r| r.timestamp_ms).find(|ts| *ts < 0) {
            return Err(BrokerError::InvalidRecord(format!("timestamp {ts} is negative")));
        }
        let now = rivulet_log::now_ms();
        let group: Vec<(usize, NewRecord)> = records.into_iter().enumerate().collect();
        let bytes = build_one(&group, now, None);
        let max_batch_bytes = log.config().max_batch_bytes;
        if bytes.len() > max_batch_bytes {
            return Err(BrokerError::InvalidRecord(format!(
                "{} records take {} bytes in one batch; the topic takes at most {max_batch_bytes} (max.message.bytes)",
                group.len(),
                bytes.len()
            )));
        }
        let outcome = log.append(&bytes)?;
        self.metrics()
            .record_produced(topic, group.len() as u64, bytes.len() as u64);
        let positions = group
            .iter()
            .enumerate()
            .map(|(k, (_, record))| RecordPosition {
                partition,
                offset: outcome.base_offset + k as i64,
                timestamp_ms: record.timestamp_ms.unwrap_or(now),
            })
            .collect();
        Ok(Appended {
            positions,
            durable: vec![outcome.durable],
        })
    }

    pub(crate) fn pick_partition(&self, topic: &str, count: usize, record: &NewRecord) -> Result<i32> {
        match (record.partition, &record.key) {
            (Some(p), _) if p >= 0 && (p as usize) < count => Ok(p),
            (Some(p), _) => Err(BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition: p,
                count,
            }),
            (None, Some(key)) => Ok(partition_for_key(key, count)),
            (None, None) => {
                Ok((self.inner.round_robin.fetch_add(1, Ordering::Relaxed) % count.max(1)) as i32)
            }
        }
    }
}

/// A transactional producer's id, epoch and next sequence in one partition, for batches
/// the broker builds on its behalf.
pub(crate) struct TxnSequence<'a> {
    pub producer_id: i64,
    pub epoch: i16,
    pub next_sequence: &'a mut i32,
}

/// Concatenated batches of `records` (in order), each within the record and byte limits
/// where a single record allows; transactional batches of `txn`'s producer when given.
pub(crate) fn build_batches(
    records: &[(usize, NewRecord)],
    now: i64,
    max_batch_bytes: usize,
    mut txn: Option<TxnSequence<'_>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    // Each pass takes at least one record.
    while start < records.len() {
        let mut end = start;
        let mut bytes = batch::HEADER_BYTES;
        while end < records.len() && end - start < BATCH_RECORDS_MAX {
            let size = records[end].1.size_bytes();
            if end > start && bytes + size > max_batch_bytes {
                break;
            }
            bytes += size;
            end += 1;
        }
        let mut one = build_one(&records[start..end], now, txn.as_ref());
        if let Some(t) = txn.as_mut() {
            batch::set_transactional(&mut one);
            *t.next_sequence = t.next_sequence.wrapping_add((end - start) as i32) & i32::MAX;
        }
        out.extend_from_slice(&one);
        start = end;
    }
    out
}

fn build_one(records: &[(usize, NewRecord)], now: i64, txn: Option<&TxnSequence<'_>>) -> Vec<u8> {
    let base_ts = records[0].1.timestamp_ms.unwrap_or(now);
    let recs: Vec<Record> = records
        .iter()
        .map(|(_, r)| Record {
            timestamp_delta: r.timestamp_ms.unwrap_or(now) - base_ts,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            ..Record::default()
        })
        .collect();
    let producer = txn.map(|t| (t.producer_id, t.epoch, *t.next_sequence));
    batch::build(0, base_ts, producer, &recs)
}
