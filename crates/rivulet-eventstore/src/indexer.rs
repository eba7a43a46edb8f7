//! Keeping the index up with the log: whoever waits for an event to become readable indexes
//! everything durable so far, in log order, so concurrent appenders share one index commit.

use std::time::Duration;

use rivulet_broker::Broker;

use crate::codec::{self, LogEntry};
use crate::error::{EventStoreError, Result};
use crate::index::Index;
use crate::EventStore;

/// Bytes of the log one indexing pass reads.
const INDEX_READ_BYTES: usize = 4 << 20;
/// Records one indexing pass reads.
const INDEX_READ_RECORDS: usize = 8192;
/// Passes one call makes before letting others in (a start-up catch-up calls until done).
const INDEX_PASSES_MAX: usize = 16;
/// How long an appender waits for its durable events to be indexed before giving up.
const INDEX_WAIT_MAX: Duration = Duration::from_secs(30);

/// The indexer's own bookkeeping, under its lock.
#[derive(Debug, Default)]
pub(crate) struct IndexerState {
    /// Index commits since the last durable one.
    pub(crate) commits_since_sync: u64,
}

/// Makes the index durable every `interval` on its own thread, off the appenders' path:
/// the file's dirty pages are written first without any lock held, so the durable commit
/// that follows (which holds the indexer for its fsync) has little left to write. Ends when
/// the store is dropped.
pub(crate) fn spawn_syncer(
    store: std::sync::Weak<crate::Inner>,
    path: std::path::PathBuf,
    interval: Duration,
) {
    let spawned = std::thread::Builder::new()
        .name("rivulet-es-sync".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let Some(inner) = store.upgrade() else {
                return;
            };
            let pending = inner
                .indexer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .commits_since_sync;
            if pending == 0 {
                continue;
            }
            if let Err(e) = std::fs::File::open(&path).and_then(|f| f.sync_data()) {
                tracing::warn!(error = %e, "Event store index: writing back its pages failed");
            }
            let mut state = inner.indexer.lock().unwrap_or_else(|p| p.into_inner());
            match inner.index.sync() {
                Ok(()) => state.commits_since_sync = 0,
                Err(e) => tracing::warn!(error = %e, "Event store index: a durable commit failed; retrying"),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "Event store index: no sync thread; it is made durable at shutdown only");
    }
}

/// Where indexing resumes after a start: the index's own position, unless the log no longer
/// matches it (the topic was deleted, or the log lost a suffix the index had seen, which
/// only a non-syncing fsync policy allows), in which case the index starts over.
pub(crate) fn reconcile(broker: &Broker, topic: &str, index: &Index) -> Result<u64> {
    let next = index.next_position()?;
    let Some(t) = broker.topic(topic) else {
        if next > 0 {
            tracing::warn!(
                topic,
                next,
                "The event store's topic is gone; its index starts over"
            );
            index.clear(0)?;
        }
        return Ok(0);
    };
    if t.partition_count() != 1 {
        return Err(EventStoreError::Invalid(format!(
            "topic '{topic}' has {} partitions; the event store needs a topic of exactly one",
            t.partition_count()
        )));
    }
    let info = t
        .partition_info(0)
        .ok_or_else(|| EventStoreError::Invalid(format!("topic '{topic}' has no partition 0")))?;
    let (start, end) = (info.log_start_offset as u64, info.log_end_offset as u64);
    if next > end {
        tracing::warn!(
            topic,
            next,
            end,
            "The event store's log ends before its index; re-indexing it"
        );
        index.clear(start)?;
        return Ok(start);
    }
    if next < start {
        tracing::warn!(
            topic,
            next,
            start,
            "Events below the log start were deleted before they were indexed"
        );
        return Ok(start);
    }
    Ok(next)
}

impl EventStore {
    /// Indexes everything durable in the log beyond the index. True when anything was.
    pub(crate) fn index_available(&self) -> Result<bool> {
        let inner = &self.inner;
        let topic = inner.config.topic.as_str();
        let Some(t) = inner.broker.topic(topic) else {
            return Ok(false);
        };
        let mut state = inner.indexer.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = *inner.indexed.borrow();
        let mut progressed = false;
        for _ in 0..INDEX_PASSES_MAX {
            let hw = t.offsets(0).map_or(0, |(_, hw)| hw.max(0) as u64);
            if next >= hw {
                break;
            }
            let read =
                inner
                    .broker
                    .read_records(topic, 0, next as i64, INDEX_READ_BYTES, INDEX_READ_RECORDS)?;
            let entries: Vec<LogEntry> = read
                .records
                .iter()
                .filter_map(|r| match codec::decode_record(r) {
                    Ok(entry) => Some(entry),
                    Err(e) => {
                        tracing::warn!(error = %e, "Skipping a record in the event store's topic");
                        None
                    }
                })
                .collect();
            let after = (read.next_offset.max(0) as u64).max(next);
            if after == next {
                break;
            }
            inner.index.apply(&entries, after, false)?;
            let changes = entries
                .iter()
                .filter(|e| matches!(e, LogEntry::Change { .. }))
                .count();
            inner
                .changes_indexed
                .fetch_add(changes as u64, std::sync::atomic::Ordering::Relaxed);
            state.commits_since_sync += 1;
            next = after;
            inner.indexed.send_replace(next);
            progressed = true;
        }
        Ok(progressed)
    }

    /// Waits until the event at `position` is durable and indexed (readable by stream).
    pub(crate) async fn index_through(&self, position: u64) -> Result<()> {
        let deadline = tokio::time::Instant::now() + INDEX_WAIT_MAX;
        let topic = self.inner.config.topic.as_str();
        loop {
            if self.indexed_position() > position {
                return Ok(());
            }
            let mut watch = self.inner.broker.watch([(topic, 0)]);
            self.index_available()?;
            if self.indexed_position() > position {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline || self.inner.broker.is_shutting_down() {
                return Err(EventStoreError::Index(format!(
                    "position {position} did not become readable within {INDEX_WAIT_MAX:?}"
                )));
            }
            watch.wait(deadline).await;
        }
    }
}
