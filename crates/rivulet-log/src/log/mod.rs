//! The partition log: segments, appends with group commit, reads, recovery, retention.
//!
//! - `open`: opening and crash recovery.
//! - `append`: validating and writing batches.
//! - `sync`: fdatasync, durability and visibility.
//! - `read`: reading batches back, lookups by timestamp.
//! - `maintain`: segment rolls, retention, compaction hooks, interval flushes.
//! - `journaled`: appends made durable through the shared journal, and replay from it.
//! - `start`: deleting records before an offset (the stored log start offset).

mod append;
mod journaled;
mod maintain;
mod open;
mod read;
mod slice;
mod start;
mod sync;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;

use crate::config::{FsyncPolicy, LogConfig};
use crate::durable::{Durability, Durable};
use crate::error::{LogError, Result};
use crate::flusher::FlushPool;
use crate::journal::{Journal, Link};
use crate::producer::ProducerState;
use crate::segment::Segment;
use crate::storage::{FsStorage, Storage, StorageFile};
use crate::txn::{Marker, TxnIndex};

pub use append::WRITEBACK_BYTES;
pub use slice::{FileSlice, SliceRead};

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
/// on, the flush pool that syncs them and the activity signal readers of many logs wait on.
#[derive(Debug, Clone)]
pub struct LogContext {
    /// The file system (or a fault-injecting wrapper).
    pub storage: Arc<dyn Storage>,
    /// Flusher threads shared with other logs.
    pub pool: FlushPool,
    /// Changes whenever the high watermark of any log of this context moves.
    pub activity: Activity,
    /// The shared journal logs opened with [`Log::open_journaled`] make appends durable
    /// through; `None`: every log syncs its own segments.
    pub journal: Option<Journal>,
}

impl Default for LogContext {
    /// The real file system, the process-wide flush pool and a new activity signal.
    fn default() -> Self {
        LogContext {
            storage: Arc::new(FsStorage),
            pool: FlushPool::global(),
            activity: Activity::default(),
            journal: None,
        }
    }
}

/// A signal that changes whenever the high watermark of any of a set of logs moves: a
/// reader of many partitions waits on it instead of on one channel per partition, and
/// checks its partitions again when it changes.
#[derive(Debug, Clone)]
pub struct Activity {
    tx: Arc<watch::Sender<u64>>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            tx: Arc::new(watch::channel(0).0),
        }
    }
}

impl Activity {
    /// A receiver that changes with the next high-watermark move of any log.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    fn bump(&self) {
        // Only worth the write lock when somebody waits.
        if self.tx.receiver_count() > 0 {
            self.tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// The visible end of the log (high watermark) and where it falls in the segments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Visible {
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
    /// Open and aborted transactions (see [`crate::txn`]).
    txns: TxnIndex,
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
    /// Offset below which every record is durable or in the journal's pending record: an
    /// append may go through the journal only when nothing before it waits for a sync of
    /// the segment (the journal would otherwise report it durable too early).
    journaled_to: i64,
    /// `(segment base, position)` up to which writeback of the active segment was started
    /// (see [`Log::start_writeback`]).
    writeback_started: (i64, u64),
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
    /// Copies of the high watermark and log start offset, readable without the state lock
    /// (a reader of thousands of partitions checks each for new data).
    hwm: AtomicI64,
    log_start: AtomicI64,
    /// First offset of the oldest open transaction (`i64::MAX`: none), readable without the
    /// state lock; the last stable offset is the smaller of it and the high watermark.
    first_open_txn: AtomicI64,
    activity: Activity,
    /// When maintenance next has something to do (ms since the epoch; 0: at once). Appends,
    /// rolls and config changes reset it, so an idle partition costs one atomic load per
    /// maintenance pass.
    maintenance_due_ms: AtomicI64,
    /// What the last compaction pass covered.
    compaction: Mutex<CompactionMark>,
    /// The journal this log's appends go through, when opened with a key.
    journal: Option<Link>,
}

/// What the last compaction pass saw, so a pass runs only when it can remove something.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CompactionMark {
    /// Base offset of the newest sealed segment the last pass covered.
    pub last_sealed_base: Option<i64>,
    /// When the oldest tombstone the last pass kept becomes removable.
    pub tombstones_due_ms: Option<i64>,
}

/// A sealed segment, as compaction reads it.
pub(crate) struct SealedSegment {
    /// Offset of its first record.
    pub base: i64,
    /// Its open file.
    pub file: Arc<dyn StorageFile>,
    /// Its path.
    pub path: PathBuf,
    /// Bytes of valid batches.
    pub len: u64,
}

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
        self.maintenance_now();
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

    /// `(log start offset, high watermark)` without taking the log's lock; a moment old
    /// at most.
    pub fn offsets(&self) -> (i64, i64) {
        (
            self.shared.log_start.load(Ordering::Acquire),
            self.shared.hwm.load(Ordering::Acquire),
        )
    }

    /// Offset below which every transaction is decided (committed or aborted): the end of
    /// what read_committed readers see. Equals the high watermark when no transaction is
    /// open here. Read without the log's lock; a moment old at most.
    pub fn last_stable_offset(&self) -> i64 {
        let hwm = self.shared.hwm.load(Ordering::Acquire);
        hwm.min(self.shared.first_open_txn.load(Ordering::Acquire))
    }

    /// Open transactions in this partition.
    pub fn open_transactions(&self) -> usize {
        lock(&self.shared.state).txns.open_count()
    }

    /// True when `producer_id` has a transaction open in this partition.
    pub fn has_open_transaction(&self, producer_id: i64) -> bool {
        lock(&self.shared.state).txns.is_open(producer_id)
    }

    /// The producers this partition remembers (idempotent and transactional), by id.
    pub fn producers(&self) -> Vec<crate::producer::ProducerSnapshot> {
        let st = lock(&self.shared.state);
        st.producers.snapshot(|pid| st.txns.open_start(pid))
    }

    /// Aborted transactions whose records overlap `[from, to)`.
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<crate::txn::AbortedTxn> {
        lock(&self.shared.state).txns.aborted_in(from, to)
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

    /// Base offset of the segment holding `offset` (the last segment starting at or below
    /// it); the log start when none does.
    pub fn segment_base_of(&self, offset: i64) -> i64 {
        let st = lock(&self.shared.state);
        let base = st.segments.range(..=offset).next_back().map(|(b, _)| *b);
        base.unwrap_or(st.log_start_offset).max(st.log_start_offset)
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

    /// When [`Log::maintain`] next has work (ms since the epoch; 0: at once).
    pub fn maintenance_due_ms(&self) -> i64 {
        self.shared.maintenance_due_ms.load(Ordering::Relaxed)
    }

    /// Announces a new high watermark to this log's readers and to the context's activity.
    pub(crate) fn publish_hwm(&self, offset: i64) {
        self.shared.hwm.store(offset, Ordering::Release);
        self.shared.hwm_tx.send_replace(offset);
        self.shared.activity.bump();
    }

    /// Makes the next maintenance pass look at this log.
    pub(crate) fn maintenance_now(&self) {
        self.shared.maintenance_due_ms.store(0, Ordering::Relaxed);
    }

    /// Records an appended batch in the producer and transaction state (`bytes`: the whole
    /// batch, read for a control batch's marker).
    fn note_batch(&self, st: &mut State, header: &crate::batch::BatchHeader, bytes: &[u8], now: i64) {
        st.producers.record(header, now);
        let marker: Option<Marker> = header
            .is_control()
            .then(|| crate::txn::parse_marker(bytes))
            .flatten();
        st.txns.note(header, marker);
        let first_open = st.txns.first_open().unwrap_or(i64::MAX);
        self.shared.first_open_txn.store(first_open, Ordering::Release);
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
