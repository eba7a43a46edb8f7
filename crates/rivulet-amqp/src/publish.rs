//! Publishing in batches: messages that arrive back to back (already in the read buffer)
//! are appended to each queue together, as one record batch per queue, and confirmed
//! together. A batch is flushed before the connection waits for more bytes, before any
//! other method is applied, when it is full, and before a message that goes nowhere is
//! returned or confirmed, so every channel's effects keep their order.

use std::collections::{BTreeMap, BTreeSet};

use rivulet_broker::queues::args::Overflow;
use rivulet_broker::queues::QueueAppend;
use rivulet_broker::{BrokerError, Durable, NewRecord};

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

    /// Appends the batch: one append per target queue, then each channel's confirms (a
    /// message a full reject-publish queue refused is nacked, as in RabbitMQ, though the
    /// other queues it was routed to keep it).
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
            shares.entry(e.channel).or_default();
        }
        let mut refused = vec![false; entries.len()];
        for (queue, indexes) in by_queue {
            let records: Vec<NewRecord> = indexes.iter().map(|i| entries[*i].record.clone()).collect();
            let channels: BTreeSet<u16> = indexes.iter().map(|i| entries[*i].channel).collect();
            match self.broker.queue_append(queue, records) {
                Ok(done) => {
                    for ch in channels {
                        let share = shares.entry(ch).or_default();
                        if let Some(appended) = &done.appended {
                            share.durables.extend(appended.durables().iter().cloned());
                        }
                    }
                    for k in &done.rejected {
                        refused[indexes[*k]] = true;
                    }
                    self.dead_letter_overflow(queue, &done, &indexes, &entries);
                }
                // Deleted between routing and appending: as if routed a moment later.
                Err(BrokerError::UnknownTopic(_)) => {}
                Err(e) => {
                    tracing::error!(queue, error = %e, "AMQP: appending published messages failed");
                    for ch in channels {
                        shares.entry(ch).or_default().failed = true;
                    }
                }
            }
        }
        for (ch, share) in shares.iter_mut() {
            // A committing transaction waits for its appends itself (no confirms).
            if let Some(tx) = self.channels.get_mut(ch).and_then(|c| c.tx.as_mut()) {
                tx.durables.append(&mut share.durables);
                tx.failed |= share.failed;
                continue;
            }
            let runs = runs_of(&entries, &refused, *ch, share.failed);
            let Some(confirms) = self.channels.get_mut(ch).and_then(|c| c.confirms.as_mut()) else {
                continue;
            };
            for (count, failed) in runs {
                let durables = if failed {
                    Vec::new()
                } else {
                    share.durables.clone()
                };
                confirms.push(count, durables, failed).await;
            }
        }
        Ok(())
    }

    /// Dead-letters what a queue's limits pushed out: messages dropped from its head
    /// (`drop-head`; from the batch when they were in it, else read back) and messages it
    /// refused under `reject-publish-dlx`; both with reason `maxlen`.
    fn dead_letter_overflow(&self, name: &str, done: &QueueAppend, indexes: &[usize], entries: &[Entry]) {
        let Some(queue) = self.broker.queues().get(name) else {
            return;
        };
        let refusing_dlx = queue
            .limits()
            .is_some_and(|l| l.overflow == Overflow::RejectPublishDlx);
        if refusing_dlx {
            for k in &done.rejected {
                let message = message::from_new_record(&entries[indexes[*k]].record, name);
                deadletter::dead_letter_message(&self.broker, &queue, message, "maxlen");
            }
        }
        for offset in &done.dropped {
            let taken = usize::try_from(offset - done.first_offset)
                .ok()
                .filter(|_| done.appended.is_some())
                .and_then(|i| indexes.get(i));
            match taken {
                Some(i) => {
                    let message = message::from_new_record(&entries[*i].record, name);
                    deadletter::dead_letter_message(&self.broker, &queue, message, "maxlen");
                }
                None => deadletter::dead_letter(&self.broker, &queue, *offset, "maxlen"),
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

/// A channel's messages in a flushed batch as runs to confirm, in publish order: each run
/// a count and whether it is nacked (refused by a full queue, or its append failed).
fn runs_of(entries: &[Entry], refused: &[bool], channel: u16, failed: bool) -> Vec<(u64, bool)> {
    let mut runs: Vec<(u64, bool)> = Vec::new();
    for (e, refused) in entries.iter().zip(refused) {
        if e.channel != channel {
            continue;
        }
        let nack = failed || *refused;
        match runs.last_mut() {
            Some((count, last)) if *last == nack => *count += 1,
            _ => runs.push((1, nack)),
        }
    }
    runs
}
