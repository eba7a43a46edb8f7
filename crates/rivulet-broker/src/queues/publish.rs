//! Routing and appending published messages, storing settlement state, and restoring
//! queues at start.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::args::{Limits, Overflow};
use super::error::Result;
use super::queue::Total;
use super::{definitions, Queue, StoredState};
use crate::data::{Appended, Create, NewRecord};
use crate::error::BrokerError;
use crate::offsets::CommittedOffset;
use crate::routing::Headers;
use crate::Broker;

/// Key of a queue's entry in the state log (with the queue's name as the group).
const STATE_TOPIC_KEY: &str = "";

/// What appending to a queue did.
#[derive(Debug, Default)]
pub struct QueueAppend {
    /// The append of the messages taken; `None` when the queue took none.
    pub appended: Option<Appended>,
    /// Offset of the first message taken.
    pub first_offset: i64,
    /// Indexes, into the messages given, of those a reject-publish queue refused.
    pub rejected: Vec<usize>,
    /// Offsets a drop-head queue dropped from its head to stay within its limits (to be
    /// dead-lettered).
    pub dropped: Vec<i64>,
}

impl QueueAppend {
    fn appended(appended: Appended) -> QueueAppend {
        let first_offset = appended.positions.first().map_or(0, |p| p.offset);
        QueueAppend {
            appended: Some(appended),
            first_offset,
            ..QueueAppend::default()
        }
    }
}

/// A message's body bytes, as length limits count them.
fn body_size(record: &NewRecord) -> u32 {
    record
        .value
        .as_ref()
        .map_or(0, |v| u32::try_from(v.len()).unwrap_or(u32::MAX))
}

impl Broker {
    /// The queues a message published to `exchange` with `key` and `headers` goes to;
    /// names of queues that do not exist are left out.
    pub fn route(&self, exchange: &str, key: &str, headers: &Headers) -> Result<BTreeSet<String>> {
        let registry = self.inner.queues.lock();
        let mut targets = registry.topology.route(exchange, key, headers)?;
        targets.retain(|q| registry.queues.contains_key(q));
        Ok(targets)
    }

    /// Appends one message to each queue in `targets` and wakes their consumers. The
    /// returned handles resolve once the copies are durable by their topics' policies.
    /// Messages a full queue refuses, or drops from its head, go nowhere else (this is how
    /// dead letters are published; dropping them avoids dead-letter cycles).
    pub fn publish(&self, targets: &BTreeSet<String>, record: &NewRecord) -> Result<Vec<Appended>> {
        let mut out = Vec::with_capacity(targets.len());
        for name in targets {
            let done = self.queue_append(name, vec![record.clone()])?;
            if !done.rejected.is_empty() || !done.dropped.is_empty() {
                tracing::debug!(queue = %name, "A republished message overflowed its queue");
            }
            out.extend(done.appended);
        }
        Ok(out)
    }

    /// Appends messages to one queue (its topic, when no queue has that name) under the
    /// queue's length limits, and wakes its consumers.
    pub fn queue_append(
        &self,
        name: &str,
        records: Vec<NewRecord>,
    ) -> std::result::Result<QueueAppend, BrokerError> {
        let queue = self.inner.queues.get(name);
        let Some(queue) = queue else {
            let appended = self.append_records(name, records, Create::Never)?;
            return Ok(QueueAppend::appended(appended));
        };
        let rejecting = queue.limits().filter(|l| l.overflow != Overflow::DropHead);
        let _admitting = rejecting.map(|_| queue.admit.lock().unwrap_or_else(|p| p.into_inner()));
        let (records, rejected) = match rejecting {
            Some(limits) => self.admit(&queue, limits, records),
            None => (records, Vec::new()),
        };
        if records.is_empty() {
            return Ok(QueueAppend {
                rejected,
                ..QueueAppend::default()
            });
        }
        let sizes: Vec<u32> = records.iter().map(body_size).collect();
        let appended = self.append_records(name, records, Create::Never)?;
        let first = appended.positions.first().map_or(0, |p| p.offset);
        queue.note_sizes(first, &sizes);
        queue.count(Total::Published, sizes.len() as u64);
        let dropped = self.queue_trim_to_max_length(&queue);
        queue.wake();
        Ok(QueueAppend {
            appended: Some(appended),
            first_offset: first,
            rejected,
            dropped,
        })
    }

    /// Splits `records` into those a reject-publish queue takes, in order, and the indexes
    /// of those it refuses.
    fn admit(&self, queue: &Queue, limits: Limits, records: Vec<NewRecord>) -> (Vec<NewRecord>, Vec<usize>) {
        let (mut ready, mut bytes) = queue.ready_and_bytes(self.queue_end(queue.name()));
        let mut taken = Vec::with_capacity(records.len());
        let mut rejected = Vec::new();
        for (i, record) in records.into_iter().enumerate() {
            let size = u64::from(body_size(&record));
            if limits.within(ready + 1, bytes + size) {
                ready += 1;
                bytes += size;
                taken.push(record);
            } else {
                rejected.push(i);
            }
        }
        (taken, rejected)
    }

    /// Stores a durable queue's settlement state when it changed (not waiting for the
    /// disk: a crash of the process keeps what the OS has; the log syncs every
    /// [`super::STATE_SYNC_INTERVAL`]).
    pub fn store_queue_state(&self, queue: &Queue) {
        if !queue.spec().durable || queue.is_stream() {
            return;
        }
        let Some(state) = queue.state_to_store() else {
            return;
        };
        let entry = CommittedOffset {
            offset: state.floor,
            leader_epoch: -1,
            metadata: Some(state.encode()),
            commit_timestamp_ms: rivulet_log::now_ms(),
        };
        let entries = vec![(STATE_TOPIC_KEY.to_string(), 0, entry)];
        if let Err(e) = self
            .inner
            .queues
            .state_log()
            .commit_durable(queue.name(), entries)
        {
            tracing::error!(queue = %queue.name(), error = %e, "Storing queue state failed");
        }
    }

    pub(super) fn forget_queue_state(&self, name: &str) {
        // Tombstones need not be waited for: a restart without the queue ignores its state.
        let entries = [(STATE_TOPIC_KEY.to_string(), 0)];
        if let Err(e) = self.inner.queues.state_log().forget(name, &entries) {
            tracing::warn!(queue = %name, error = %e, "Removing queue state failed");
        }
    }

    /// Frees whole segments below each queue's ack floor (log maintenance calls this):
    /// acknowledged messages in the segment being written stay readable as Kafka records
    /// until it rolls.
    pub(crate) fn free_acknowledged(&self) {
        for queue in self.inner.queues.list().into_iter().filter(|q| !q.is_stream()) {
            let Ok(log) = self.partition_log(queue.name(), 0) else {
                continue;
            };
            let base = log.segment_base_of(queue.floor());
            if base > log.log_start_offset() {
                if let Err(e) = log.delete_records_before(base) {
                    tracing::warn!(queue = %queue.name(), error = %e, "Freeing acknowledged messages failed");
                }
            }
        }
    }

    /// Restores durable queues, exchanges and bindings; removes the topics of transient
    /// and exclusive queues (they vanish with the broker, as in RabbitMQ).
    pub(crate) fn recover_queues(&self) -> std::result::Result<(), BrokerError> {
        let queues = &self.inner.queues;
        let defs = definitions::load(self.inner.context.storage.as_ref(), &queues.definitions)?;
        let mut registry = queues.lock();
        for e in &defs.exchanges {
            match e.exchange() {
                Some(x) => {
                    let _ = registry.topology.declare(&e.name, x, false);
                }
                None => {
                    tracing::warn!(exchange = %e.name, kind = %e.kind, "Skipping a stored exchange of unknown kind")
                }
            }
        }
        for q in &defs.queues {
            if !q.survives() {
                if !q.owns_topic {
                    continue;
                }
                match self.delete_topic(&q.name) {
                    Ok(()) | Err(BrokerError::UnknownTopic(_)) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            let Some(topic) = self.topic(&q.name) else {
                tracing::warn!(queue = %q.name, "The topic of a durable queue is gone; dropping the queue");
                continue;
            };
            let (log_start, _) = topic.offsets(0).unwrap_or((0, 0));
            let stored = queues
                .state_log()
                .fetch(&q.name, STATE_TOPIC_KEY, 0)
                .and_then(|c| StoredState::decode(c.offset, c.metadata.as_deref().unwrap_or("")))
                .unwrap_or_default();
            let queue =
                Arc::new(Queue::new(&q.name, q.spec(), None, stored).over_existing_topic(!q.owns_topic));
            queue.skip_to(log_start);
            registry.queues.insert(q.name.clone(), queue);
        }
        for b in &defs.bindings {
            if registry.queues.contains_key(&b.queue) {
                let _ = registry.topology.bind(&b.exchange, b.binding());
            }
        }
        for b in &defs.exchange_bindings {
            if let Err(e) = registry.topology.bind_exchange(&b.source, b.binding()) {
                tracing::warn!(source = %b.source, destination = %b.destination, error = %e, "Skipping a stored exchange binding");
            }
        }
        if !defs.queues.is_empty() {
            tracing::info!(queues = registry.queues.len(), "Restored queues");
        }
        let defs = definitions::snapshot(&registry);
        definitions::save(self.inner.context.storage.as_ref(), &queues.definitions, &defs)
    }
}
