//! Transactions of producers inside this process (the embedded SDK): records the broker
//! batches itself, written and committed with input offsets as one Kafka transaction, so
//! read_committed readers and the group's offsets see all of it or none of it.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::Mutex;

use crate::data::{build_batches, Create, NewRecord, TxnSequence};
use crate::error::Result;
use crate::txn::PendingOffset;
use crate::Broker;

/// A transactional producer in this process: its transactional id, producer id and epoch,
/// and the next sequence of each partition it wrote to. Transactions of one producer run
/// one at a time.
#[derive(Debug)]
pub struct LocalTxnProducer {
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
    sequences: Mutex<HashMap<(String, i32), i32>>,
}

impl LocalTxnProducer {
    /// The transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }
}

/// One transaction's work: records per topic, and the offsets of `group` it commits.
#[derive(Debug, Default)]
pub struct LocalTxn {
    /// Records to publish, per topic (partitions picked as by `append_records`).
    pub outputs: Vec<(String, Vec<NewRecord>)>,
    /// The consumer group whose offsets the transaction commits.
    pub group: Option<String>,
    /// `(topic, partition, next offset)` committed for `group`.
    pub offsets: Vec<(String, i32, i64)>,
}

impl Broker {
    /// Starts a transactional producer for `transactional_id`, fencing any earlier one and
    /// aborting what it left open (as InitProducerId does for a Kafka client).
    pub async fn local_txn_producer(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
    ) -> Result<LocalTxnProducer> {
        let (producer_id, epoch) = self
            .init_transactional_producer(transactional_id, timeout_ms)
            .await?;
        Ok(LocalTxnProducer {
            transactional_id: transactional_id.to_string(),
            producer_id,
            epoch,
            sequences: Mutex::new(HashMap::new()),
        })
    }

    /// Runs one transaction of `producer`: appends `txn`'s records, commits its offsets and
    /// commits. On any error the transaction is aborted (best effort; the coordinator's
    /// timeout aborts it otherwise) and the error returned: nothing of it becomes visible.
    pub async fn run_local_txn(&self, producer: &LocalTxnProducer, txn: LocalTxn) -> Result<()> {
        let mut sequences = producer.sequences.lock().await;
        let result = self.local_txn_steps(producer, &mut sequences, txn).await;
        if result.is_err() {
            let (id, pid, epoch) = (&producer.transactional_id, producer.producer_id, producer.epoch);
            if let Err(e) = self.end_txn(id, pid, epoch, false).await {
                tracing::warn!(transactional_id = %id, error = %e, "Aborting a failed local transaction failed");
            }
        }
        result
    }

    async fn local_txn_steps(
        &self,
        p: &LocalTxnProducer,
        sequences: &mut HashMap<(String, i32), i32>,
        txn: LocalTxn,
    ) -> Result<()> {
        let (id, pid, epoch) = (p.transactional_id.as_str(), p.producer_id, p.epoch);
        let mut by_partition: BTreeMap<(String, i32), Vec<(usize, NewRecord)>> = BTreeMap::new();
        for (topic, records) in txn.outputs {
            let t = self.topic_for(&topic, Create::IfAllowed)?;
            for (index, record) in records.into_iter().enumerate() {
                let partition = self.pick_partition(&topic, t.partition_count(), &record)?;
                by_partition
                    .entry((topic.clone(), partition))
                    .or_default()
                    .push((index, record));
            }
        }
        let partitions: Vec<(String, i32)> = by_partition.keys().cloned().collect();
        if !partitions.is_empty() {
            self.add_partitions_to_txn(id, pid, epoch, &partitions).await?;
        }
        let mut durable = Vec::with_capacity(by_partition.len());
        let now = rivulet_log::now_ms();
        for ((topic, partition), records) in by_partition {
            let t = self.existing_topic(&topic)?;
            let max_batch_bytes = t
                .partition(partition)
                .map_or(1 << 20, |l| l.config().max_batch_bytes);
            // The sequence moves on only once the partition took the batches.
            let key = (topic, partition);
            let mut next_sequence = sequences.get(&key).copied().unwrap_or(0);
            let seq = TxnSequence {
                producer_id: pid,
                epoch,
                next_sequence: &mut next_sequence,
            };
            let bytes = build_batches(&records, now, max_batch_bytes, Some(seq));
            durable.push(self.produce(&key.0, partition, &bytes, Create::Never)?.durable);
            sequences.insert(key, next_sequence);
        }
        rivulet_log::Durable::wait_all(durable).await?;
        if let Some(group) = txn.group.filter(|_| !txn.offsets.is_empty()) {
            self.add_offsets_to_txn(id, pid, epoch, &group).await?;
            let offsets = txn
                .offsets
                .into_iter()
                .map(|(topic, partition, offset)| PendingOffset {
                    group: group.clone(),
                    topic,
                    partition,
                    offset,
                    leader_epoch: -1,
                    metadata: None,
                })
                .collect();
            self.txn_offset_commit(id, pid, epoch, offsets).await?;
        }
        self.end_txn(id, pid, epoch, true).await
    }
}
