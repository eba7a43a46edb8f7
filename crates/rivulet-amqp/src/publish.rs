//! Publishing in batches: messages that arrive back to back (already in the read buffer)
//! are appended to each queue together, as one record batch per queue, and confirmed
//! together. A batch is flushed before the connection waits for more bytes, before any
//! other method is applied, when it is full, and before a message that goes nowhere is
//! returned or confirmed, so every channel's effects keep their order.

use std::collections::{BTreeMap, BTreeSet};

use rivulet_broker::queues::Queue;
use rivulet_broker::{BrokerError, Create, Durable, NewRecord};

use crate::connection::Connection;
use crate::fault::{self, Fault};
use crate::{deadletter, message};

/// Messages in one batch at most.
pub const BATCH_MESSAGES_MAX: usize = 512;
/// Body bytes in one batch at most.
pub const BATCH_BYTES_MAX: usize = 1 << 20;

/// One routed message waiting to be appended.
#[derive(Debug)]
struct Entry {
    channel: u16,
    targets: BTreeSet<String>,
    record: NewRecord,
}

/// Routed messages not yet appended.
#[derive(Debug, Default)]
pub struct PublishBatch {
    entries: Vec<Entry>,
    bytes: usize,
}

impl PublishBatch {
    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn full(&self) -> bool {
        self.entries.len() >= BATCH_MESSAGES_MAX || self.bytes >= BATCH_BYTES_MAX
    }
}

/// What one channel's messages in a flushed batch wait for.
#[derive(Debug, Default)]
struct ChannelShare {
    count: u64,
    durables: Vec<Durable>,
    failed: bool,
}

impl Connection {
    /// Adds a routed message to the batch (flushing when it is full).
    pub(crate) async fn batch_publish(
        &mut self,
        channel: u16,
        targets: BTreeSet<String>,
        record: NewRecord,
    ) -> Result<(), Fault> {
        self.batch.bytes += record.value.as_ref().map_or(0, Vec::len);
        self.batch.entries.push(Entry {
            channel,
            targets,
            record,
        });
        if self.batch.full() {
            self.flush_publishes().await?;
        }
        Ok(())
    }

    /// Appends the batch: one append per target queue, then each channel's confirms.
    pub(crate) async fn flush_publishes(&mut self) -> Result<(), Fault> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.batch.entries);
        self.batch.bytes = 0;
        let mut by_queue: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            for q in &e.targets {
                by_queue.entry(q.as_str()).or_default().push(i);
            }
        }
        let mut shares: BTreeMap<u16, ChannelShare> = BTreeMap::new();
        for e in &entries {
            shares.entry(e.channel).or_default().count += 1;
        }
        for (queue, indexes) in by_queue {
            let records: Vec<NewRecord> = indexes.iter().map(|i| entries[*i].record.clone()).collect();
            let channels: BTreeSet<u16> = indexes.iter().map(|i| entries[*i].channel).collect();
            match self.broker.append_records(queue, records, Create::Never) {
                Ok(appended) => {
                    for ch in channels {
                        if let Some(share) = shares.get_mut(&ch) {
                            share.durables.extend(appended.durables().iter().cloned());
                        }
                    }
                    if let Some(q) = self.broker.queues().get(queue) {
                        let first = appended.positions.first().map_or(i64::MAX, |p| p.offset);
                        let batch: Vec<&NewRecord> = indexes.iter().map(|i| &entries[*i].record).collect();
                        self.trim(&q, first, &batch);
                        q.wake();
                    }
                }
                // Deleted between routing and appending: as if routed a moment later.
                Err(BrokerError::UnknownTopic(_)) => {}
                Err(e) => {
                    tracing::error!(queue, error = %e, "AMQP: appending published messages failed");
                    for ch in channels {
                        if let Some(share) = shares.get_mut(&ch) {
                            share.failed = true;
                        }
                    }
                }
            }
        }
        for (ch, share) in shares {
            if let Some(confirms) = self.channels.get_mut(&ch).and_then(|c| c.confirms.as_mut()) {
                confirms.push(share.count, share.durables, share.failed).await;
            }
        }
        Ok(())
    }

    /// Applies the queue's `x-max-length` after an append whose records start at offset
    /// `first`: the dropped ones are dead-lettered (`maxlen`), from `batch` when they were
    /// in it, else read back from the queue.
    fn trim(&self, queue: &Queue, first: i64, batch: &[&NewRecord]) {
        for offset in self.broker.queue_trim_to_max_length(queue) {
            let in_batch = usize::try_from(offset - first).ok().and_then(|i| batch.get(i));
            match in_batch {
                Some(record) => {
                    let message = message::from_new_record(record, queue.name());
                    deadletter::dead_letter_message(&self.broker, queue, message, "maxlen");
                }
                None => deadletter::dead_letter(&self.broker, queue, offset, "maxlen"),
            }
        }
    }

    /// Flushes, turning a failure into a connection error.
    pub(crate) async fn flush_or_fail(&mut self) -> Result<(), Fault> {
        self.flush_publishes()
            .await
            .map_err(|f| Fault::connection(fault::INTERNAL_ERROR, f.text))
    }
}
