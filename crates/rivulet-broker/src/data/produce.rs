//! Appending batches a producer built.

use rivulet_log::AppendOutcome;

use super::Create;
use crate::error::{BrokerError, Result};
use crate::Broker;

impl Broker {
    /// Validates and appends one or more concatenated RecordBatch v2 (one partition of a
    /// Kafka Produce request), creating the topic if `create` and the broker allow it.
    ///
    /// Returns at once: the outcome's `durable` handle resolves when the records are on
    /// disk under the topic's fsync policy. Readers see them no later than that.
    pub fn produce(
        &self,
        topic: &str,
        partition: i32,
        batches: &[u8],
        create: Create,
    ) -> Result<AppendOutcome> {
        let t = self.topic_for(topic, create)?;
        let log = t
            .partition(partition)
            .ok_or_else(|| BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                count: t.partition_count(),
            })?;
        self.check_transactional(topic, partition, batches)?;
        if log.config().cleanup.compact {
            check_keys(batches)?;
        }
        let outcome = log.append(batches).inspect_err(|e| {
            tracing::warn!(topic, partition, error = %e, code = e.code(), "Produce rejected");
        })?;
        if !outcome.duplicate {
            self.metrics()
                .record_produced(topic, outcome.record_count as u64, batches.len() as u64);
        }
        Ok(outcome)
    }

    /// A transactional producer's batches may only go to a partition its open transaction
    /// holds, at its current epoch (a zombie's writes are refused here).
    fn check_transactional(&self, topic: &str, partition: i32, batches: &[u8]) -> Result<()> {
        let Ok(header) = rivulet_log::batch::BatchHeader::parse(batches) else {
            return Ok(()); // the log refuses it with the precise reason
        };
        if !header.is_transactional() || header.is_control() {
            return Ok(());
        }
        self.txns()
            .check_produce(header.producer_id, header.producer_epoch, topic, partition)
            .map_err(|error| {
                tracing::warn!(topic, partition, producer_id = header.producer_id, error = %error, "Transactional produce refused");
                BrokerError::Transaction {
                    transactional_id: String::new(),
                    error,
                }
            })
    }
}

/// Records bound for a compacted topic need a key (compaction keeps the latest record per
/// key; Kafka refuses keyless ones the same way). Compressed batches are decompressed for
/// the check (within the records decoder's bound); batches that do not decode are left to
/// the log, which refuses them with the precise reason.
fn check_keys(batches: &[u8]) -> Result<()> {
    let bytes = bytes::Bytes::copy_from_slice(batches);
    let keyless = rivulet_log::Records::new(bytes, 0)
        .filter_map(std::result::Result::ok)
        .any(|r| r.key.is_none());
    if keyless {
        return Err(BrokerError::InvalidRecord(
            "a compacted topic accepts only records with a key".to_string(),
        ));
    }
    Ok(())
}
