//! The partition log: segments, appends with group commit, reads, recovery, retention.
//!
//! - `open`: opening and crash recovery.
//! - `append`: validating and writing batches.
//! - `sync`: fdatasync, durability and visibility.
//! - `read`: reading batches back, lookups by timestamp.
//! - `maintain`: segment rolls, retention, compaction hooks, interval flushes.

mod append;
mod maintain;
mod open;
mod read;
mod sync;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;

use crate::config::{FsyncPolicy, LogConfig};
use crate::durable::{Durability, Durable};
use crate::error::{LogError, Result};
use crate::flusher::FlushPool;
use crate::producer::ProducerState;
use crate::segment::Segment;
use crate::storage::{FsStorage, Storage, StorageFile};

pub use append::WRITEBACK_BYTES;

/// Where an append landed, and the handle to wait for its durability.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    /// Offset of the first appended record.
    pub base_offset: i64,
    /// Offset of the last appended record.
    pub last_offset: i64,
    /// Broker timestamp for LogAppendTime topics; -1 (CreateTime) otherwise.
    pub log_append_time_ms: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// Records appended (or found to be already present).
    pub record_count: i64,
    /// True when an idempotent producer's retry matched batches already in the log; the
    /// offsets are the original ones and nothing was written.
    pub duplicate: bool,
    /// Resolves once the records are on disk under the log's fsync policy. The sync is
    /// already requested: a writer that does not wait (Kafka `acks=0` or `acks=1`) may
    /// drop it, and its records still become durable and visible.
    pub durable: Durable,
}

/// Whole batches read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Concatenated RecordBatch v2 bytes; empty when nothing is available yet.
    pub records: Bytes,
    /// Offset after the last record readers may see.
    pub high_watermark: i64,
    /// First offset still in the log.
    pub log_start_offset: i64,
}

/// First offset whose record carries a timestamp at or after a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The offset found.
    pub offset: i64,
    /// The record's timestamp.
    pub timestamp_ms: i64,
}

/// What a log is opened with besides its directory and settings: the storage its files live
/// on and the flush pool that syncs them.
#[derive(Debug, Clone)]
pub struct LogContext {
    /// The file system (or a fault-injecting wrapper).
    pub storage: Arc<dyn Storage>,
    /// Flusher threads shared with other logs.
    pub pool: FlushPool,
}

impl Default for LogContext {
    /// The real file system and the process-wide flush pool.
    fn default() -> Self {
        LogContext {
            storage: Arc::new(FsStorage),
            pool: FlushPool::global(),
        }
    }
}

/// The visible end of the log (high watermark) and where it falls in the segments.
#[derive(Debug, Clone, Copy)]
struct Visible {
    offset: i64,
    segment_base: i64,
    position: u64,
}

#[derive(Debug)]
struct State {
    segments: BTreeMap<i64, Segment>,
    next_offset: i64,
    log_start_offset: i64,
    visible: Visible,
    producers: ProducerState,
    last_flush_ms: i64,
    tick: u64,
    closed: bool,
    /// Set when a write or fsync failed in a way that leaves the file's state unknown.
    poisoned: Option<String>,
    /// A segment was created since the directory was last synced: the next sync that makes
    /// its records durable must sync the directory too.
    dir_unsynced: bool,
    /// Bytes appended under `FsyncPolicy::None` since the flusher was last asked to write
    /// them back (see [`WRITEBACK_BYTES`]).
    unflushed_bytes: u64,
}

/// The state behind every clone of one [`Log`].
#[derive(Debug)]
pub(crate) struct Shared {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    config: RwLock<LogConfig>,
    state: Mutex<State>,
    /// Serialises fdatasync calls; waiters that find their offset durable skip the sync.
    sync_lock: Mutex<()>,
    /// Serialises retention and compaction.
    cleaner_lock: Mutex<()>,
    /// How far the log is on disk; written only by the sync path.
    durability: Durability,
    pool: FlushPool,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    hwm_tx: watch::Sender<i64>,
}

/// `(base offset, file, path, valid bytes)` of a sealed segment.
pub(crate) type SealedSegment = (i64, Arc<dyn StorageFile>, PathBuf, u64);

/// One partition's log. Cheap to clone; all clones share the same log.
#[derive(Debug, Clone)]
pub struct Log {
    shared: Arc<Shared>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Log {
    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The current settings.
    pub fn config(&self) -> LogConfig {
        self.shared
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the settings; they apply to the next append, read and maintenance pass.
    pub fn set_config(&self, config: LogConfig) -> Result<()> {
        config.validate()?;
        let was_always = self.config().fsync == FsyncPolicy::Always;
        *self.shared.config.write().unwrap_or_else(|p| p.into_inner()) = config.clone();
        if was_always && config.fsync != FsyncPolicy::Always {
            // Data written but not yet synced becomes visible under the new policy.
            let mut st = lock(&self.shared.state);
            self.publish_end(&mut st);
        }
        Ok(())
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        lock(&self.shared.state).log_start_offset
    }

    /// Offset after the last record readers may see. With `FsyncPolicy::Always` only
    /// durable records are visible.
    pub fn high_watermark(&self) -> i64 {
        lock(&self.shared.state).visible.offset
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        lock(&self.shared.state).next_offset
    }

    /// A receiver that changes whenever the high watermark moves, for readers that wait for
    /// new data without polling.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.shared.hwm_tx.subscribe()
    }

    /// Bytes held by the log's segments.
    pub fn size_bytes(&self) -> u64 {
        lock(&self.shared.state)
            .segments
            .values()
            .map(Segment::size)
            .sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        lock(&self.shared.state).segments.len()
    }

    /// Flushes, writes the active segment's index and refuses further appends.
    pub fn close(&self) -> Result<()> {
        self.flush()?;
        self.sync_dir_if_needed()?;
        let mut st = lock(&self.shared.state);
        if st.closed {
            return Ok(());
        }
        st.closed = true;
        if let Some(active) = st.segments.values().next_back() {
            active
                .index
                .store(self.shared.storage.as_ref(), &active.index_path)?;
        }
        Ok(())
    }

    /// Refuses further appends without syncing or removing anything: for a log whose
    /// directory its owner is about to move away and delete (see [`crate::retire_dir`]).
    pub fn mark_deleted(&self) {
        lock(&self.shared.state).closed = true;
    }

    /// Closes the log and removes its directory.
    pub fn delete(&self) -> Result<()> {
        lock(&self.shared.state).closed = true;
        self.shared
            .storage
            .remove_dir_all(&self.shared.dir)
            .map_err(LogError::io("delete log directory", &self.shared.dir))
    }

    pub(crate) fn durability(&self) -> &Durability {
        &self.shared.durability
    }

    pub(crate) fn downgrade(&self) -> Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    pub(crate) fn upgrade(weak: &Weak<Shared>) -> Option<Log> {
        weak.upgrade().map(|shared| Log { shared })
    }
}
