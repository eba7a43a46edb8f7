//! Reading partitions: stored batches as they are, or decoded into records.

use rivulet_log::{
    batch, Isolation, ReadResult, Records, SliceRead, StoredRecord, TimestampOffset, UndecodableBatch,
};

use crate::error::{BrokerError, Result};
use crate::{Broker, Topic};

/// How many bytes a read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// Up to this many bytes, but always the whole first batch, so a reader can make
    /// progress past a batch larger than its budget.
    AtLeastOneBatch(usize),
    /// Up to this many bytes; nothing when the first batch alone is larger.
    Within(usize),
}

impl ReadLimit {
    /// The byte budget, whichever the rule.
    pub fn bytes(self) -> usize {
        match self {
            ReadLimit::AtLeastOneBatch(n) | ReadLimit::Within(n) => n,
        }
    }
}

/// Records read from one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsRead {
    /// Records in offset order (control records left out).
    pub records: Vec<StoredRecord>,
    /// Where the next read continues: past the last record returned, and past batches
    /// that held nothing to return.
    pub next_offset: i64,
    /// Offset after the last record readers may see.
    pub high_watermark: i64,
    /// First offset still stored.
    pub log_start_offset: i64,
    /// Batches that did not decode (corrupt compressed data from a producer) and were
    /// skipped.
    pub skipped: Vec<UndecodableBatch>,
}

/// Passes of [`Broker::read_records`] over batches that hold nothing to return (control
/// batches, compacted gaps) before it answers with what it has.
const EMPTY_PASSES_MAX: usize = 64;

impl Broker {
    /// Reads whole stored batches from the one containing `offset`. Every batch has passed
    /// its CRC check again; bytes are as the producer wrote them, with only the base offset
    /// set. Unknown topics and partitions are errors; nothing is created.
    pub fn read(&self, topic: &str, partition: i32, offset: i64, limit: ReadLimit) -> Result<ReadResult> {
        let t = self.existing_topic(topic)?;
        self.read_topic(&t, partition, offset, limit)
    }

    /// [`Broker::read`] of a topic already looked up (a reader of many partitions looks each
    /// topic up once).
    pub fn read_topic(
        &self,
        topic: &Topic,
        partition: i32,
        offset: i64,
        limit: ReadLimit,
    ) -> Result<ReadResult> {
        let max_bytes = limit.bytes();
        let log = partition_of(topic, partition)?;
        let mut read = log.read(offset, max_bytes)?;
        if matches!(limit, ReadLimit::Within(_)) && read.records.len() > max_bytes {
            read.records = bytes::Bytes::new();
        }
        if !read.records.is_empty() {
            let records = batch::count_records_from(&read.records, offset);
            self.metrics()
                .record_fetched(topic.name(), records, read.records.len() as u64);
        }
        Ok(read)
    }

    /// [`Broker::read_topic`] without reading: where the batches lie in a segment file, for
    /// a front end that sends them to a socket without copying them (Kafka Fetch). The
    /// batches' CRCs are not checked again.
    ///
    /// A read_committed reader gets batches below the last stable offset only, and the
    /// aborted transactions among them.
    pub fn read_topic_slice(
        &self,
        topic: &Topic,
        partition: i32,
        offset: i64,
        limit: ReadLimit,
        isolation: Isolation,
    ) -> Result<SliceRead> {
        let max_bytes = limit.bytes();
        let log = partition_of(topic, partition)?;
        let mut read = log.read_slice_isolated(offset, max_bytes, isolation)?;
        let len = read.slice.as_ref().map_or(0, |s| s.len());
        if matches!(limit, ReadLimit::Within(_)) && len > max_bytes as u64 {
            read.slice = None;
            read.next_offset = offset;
        }
        if let Some(slice) = &read.slice {
            // Offsets covered, not decoded records: compacted gaps count too.
            let records = u64::try_from(read.next_offset - offset).unwrap_or(0);
            self.metrics().record_fetched(topic.name(), records, slice.len());
        }
        Ok(read)
    }

    /// Reads committed records from `offset`: at most `records_max`, from about `max_bytes`
    /// of stored batches (at least one batch). Reading stops at the last stable offset and
    /// leaves out the records of aborted transactions. An offset below the log start is an
    /// `OffsetOutOfRange` error carrying the log start.
    pub fn read_records(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        records_max: usize,
    ) -> Result<RecordsRead> {
        let mut out = RecordsRead {
            records: Vec::new(),
            next_offset: offset,
            high_watermark: 0,
            log_start_offset: 0,
            skipped: Vec::new(),
        };
        let mut bytes_read = 0u64;
        for _ in 0..EMPTY_PASSES_MAX {
            let log = self.log_of(topic, partition)?;
            let (read, aborted) = log.read_isolated(out.next_offset, max_bytes, Isolation::ReadCommitted)?;
            out.high_watermark = read.high_watermark;
            out.log_start_offset = read.log_start_offset;
            if read.records.is_empty() {
                break;
            }
            bytes_read += read.records.len() as u64;
            let mut records = Records::committed(read.records, out.next_offset, aborted);
            for item in records.by_ref() {
                match item {
                    Ok(record) => out.records.push(record),
                    Err(bad) => {
                        tracing::warn!(topic, partition, error = %bad, "Skipping a stored batch that does not decode");
                        out.skipped.push(bad);
                    }
                }
                if out.records.len() >= records_max {
                    break;
                }
            }
            let moved = records.next_offset() > out.next_offset;
            out.next_offset = out.next_offset.max(records.next_offset());
            if !out.records.is_empty() || !moved {
                break;
            }
        }
        if bytes_read > 0 {
            self.metrics()
                .record_fetched(topic, out.records.len() as u64, bytes_read);
        }
        Ok(out)
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`; `None` when
    /// every visible record is older.
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampOffset>> {
        Ok(self
            .log_of(topic, partition)?
            .offset_for_timestamp(timestamp_ms)?)
    }

    /// The visible record with the largest timestamp; `None` for an empty partition.
    pub fn max_timestamp_offset(&self, topic: &str, partition: i32) -> Result<Option<TimestampOffset>> {
        Ok(self.log_of(topic, partition)?.max_timestamp_offset()?)
    }

    pub(super) fn log_of(&self, topic: &str, partition: i32) -> Result<rivulet_log::Log> {
        let t = self.existing_topic(topic)?;
        t.partition(partition)
            .cloned()
            .ok_or_else(|| BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                count: t.partition_count(),
            })
    }

    /// A read that no metric counts (the broker's own lookups: lag, replay).
    pub(crate) fn read_unmetered(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadResult> {
        Ok(self.log_of(topic, partition)?.read(offset, max_bytes)?)
    }
}

/// Partition `partition` of `topic`, or `UnknownPartition`.
fn partition_of(topic: &Topic, partition: i32) -> Result<&rivulet_log::Log> {
    topic
        .partition(partition)
        .ok_or_else(|| BrokerError::UnknownPartition {
            topic: topic.name().to_string(),
            partition,
            count: topic.partition_count(),
        })
}
