//! The partition log: segments, appends with group commit, reads, recovery, retention.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::time::Instant;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::batch::{self, BatchHeader, HEADER_BYTES};
use crate::config::{FsyncPolicy, LogConfig};
use crate::error::{LogError, Result};
use crate::producer::{Check, ProducerState};
use crate::reaper::{self, Retired, DELETED_SUFFIX};
use crate::record;
use crate::segment::{Segment, CLEANED_SUFFIX, LOG_SUFFIX};
use crate::storage::{FsStorage, Storage, StorageFile};

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Under `FsyncPolicy::None`, the flusher thread syncs a partition in the background once
/// this many bytes were appended since its last sync, without anyone waiting for it. This
/// keeps each partition's dirty pages bounded: left to itself the kernel lets gigabytes
/// accumulate, then writes them back all at once and throttles every writer meanwhile, and
/// a segment roll would fdatasync up to a whole segment under the partition's lock.
pub const WRITEBACK_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    config: RwLock<LogConfig>,
    state: Mutex<State>,
    /// Serialises fdatasync calls; waiters that find their offset durable skip the sync.
    sync_lock: Mutex<()>,
    /// Serialises retention and compaction.
    cleaner_lock: Mutex<()>,
    durable_offset: AtomicI64,
    flusher: Arc<Flusher>,
    /// `(durable offset, failed)`: wakes async waiters of group commit.
    durable_tx: watch::Sender<(i64, bool)>,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    fsync_observer: ObserverSlot,
    hwm_tx: watch::Sender<i64>,
}

/// The group-commit flusher: one thread per log, started on the first durable wait, runs
/// fdatasync whenever some appender waits for data that is not yet durable. Every sync
/// covers everything written before it started, so all appenders that queued during the
/// previous sync share the next one.
#[derive(Debug, Default)]
struct Flusher {
    state: Mutex<FlushState>,
    wake: Condvar,
    done: Condvar,
}

#[derive(Debug, Default)]
struct FlushState {
    requested: i64,
    durable: i64,
    started: bool,
    stop: bool,
    failed: Option<String>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        lock(&self.flusher.state).stop = true;
        self.flusher.wake.notify_all();
    }
}

fn flusher_loop(shared: Weak<Shared>, flusher: Arc<Flusher>) {
    loop {
        {
            let mut st = lock(&flusher.state);
            while !st.stop && st.requested <= st.durable {
                st = flusher.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.stop {
                return;
            }
        }
        let Some(shared) = shared.upgrade() else { return };
        let log = Log { shared };
        let end = log.log_end_offset();
        let result = log.sync_to(end);
        drop(log);
        if let Err(e) = result {
            let mut st = lock(&flusher.state);
            st.failed = Some(e.to_string());
            flusher.done.notify_all();
            return;
        }
    }
}

/// `(base offset, file, path, valid bytes)` of a sealed segment.
pub(crate) type SealedSegment = (i64, Arc<dyn StorageFile>, PathBuf, u64);

/// Called with the duration of every fdatasync the log makes (for metrics).
pub type FsyncObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

struct ObserverSlot(RwLock<Option<FsyncObserver>>);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FsyncObserver")
    }
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
    /// Opens (or creates) the log in `dir` on the real file system, recovering after a crash.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log> {
        Log::open_with_storage(Arc::new(FsStorage), dir, config)
    }

    /// Opens the log on the given storage.
    ///
    /// Recovery: every segment whose index file is missing, fails its CRC or does not match
    /// the segment's length is scanned batch by batch (length, magic, CRC, increasing
    /// offsets) and its index rebuilt; the last segment's torn tail is truncated. Producer
    /// state for idempotent producers is rebuilt from the batch headers.
    pub fn open_with_storage(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        config: LogConfig,
    ) -> Result<Log> {
        config.validate()?;
        let dir = dir.into();
        storage
            .create_dir_all(&dir)
            .map_err(LogError::io("create log directory", &dir))?;
        let now = now_ms();
        let names = storage
            .list_dir(&dir)
            .map_err(LogError::io("list log directory", &dir))?;
        let mut bases = Vec::new();
        for name in &names {
            if name.ends_with(DELETED_SUFFIX) {
                let path = dir.join(name);
                // The reaper of this process may be deleting it at the same moment.
                match storage.remove_file(&path) {
                    Ok(()) => warn!(file = %path.display(), "Removed a segment retention had retired"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(LogError::io("remove retired segment", &path)(e)),
                }
            } else if name.ends_with(CLEANED_SUFFIX) || name.ends_with(".tmp") {
                let path = dir.join(name);
                warn!(file = %path.display(), "Removing leftover of an interrupted compaction");
                storage
                    .remove_file(&path)
                    .map_err(LogError::io("remove leftover", &path))?;
            } else if let Some(base) = name.strip_suffix(LOG_SUFFIX) {
                match base.parse::<i64>() {
                    Ok(b) if b >= 0 => bases.push(b),
                    _ => warn!(file = name.as_str(), "Ignoring a file that is not a segment"),
                }
            }
        }
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let segment = Segment::open(
                storage.as_ref(),
                &dir,
                base,
                is_last,
                config.index_interval_bytes,
                now,
            )?;
            segments.insert(base, segment);
        }
        check_segment_order(&dir, &segments)?;
        if segments.is_empty() {
            let segment = Segment::create(storage.as_ref(), &dir, 0, now)?;
            segments.insert(0, segment);
        }
        let (log_start_offset, next_offset, active_base, active_size) = {
            let first = segments.values().next().map_or(0, |s| s.base_offset);
            let active = segments
                .values()
                .next_back()
                .ok_or_else(|| LogError::Config("no segment".into()))?;
            (first, active.index.next_offset, active.base_offset, active.size())
        };
        let mut log_state = State {
            segments,
            next_offset,
            log_start_offset,
            visible: Visible {
                offset: next_offset,
                segment_base: active_base,
                position: active_size,
            },
            producers: ProducerState::default(),
            last_flush_ms: now,
            tick: 0,
            closed: false,
            poisoned: None,
            dir_unsynced: false,
            unflushed_bytes: 0,
        };
        rebuild_producers(storage.as_ref(), &mut log_state)?;
        // What recovery kept is what readers may see: make it durable first.
        if let Some(active) = log_state.segments.values_mut().next_back() {
            let file = active.file(storage.as_ref())?;
            file.sync_data()
                .map_err(LogError::io("sync segment", &active.log_path))?;
        }
        info!(
            dir = %dir.display(),
            segments = log_state.segments.len(),
            log_start_offset,
            log_end_offset = next_offset,
            "Opened log"
        );
        let (hwm_tx, _) = watch::channel(next_offset);
        Ok(Log {
            shared: Arc::new(Shared {
                dir,
                storage,
                config: RwLock::new(config),
                state: Mutex::new(log_state),
                sync_lock: Mutex::new(()),
                cleaner_lock: Mutex::new(()),
                durable_offset: AtomicI64::new(next_offset),
                flusher: Arc::new(Flusher {
                    state: Mutex::new(FlushState {
                        requested: next_offset,
                        durable: next_offset,
                        ..FlushState::default()
                    }),
                    ..Flusher::default()
                }),
                durable_tx: watch::channel((next_offset, false)).0,
                fsyncs: AtomicU64::new(0),
                fsync_nanos: AtomicU64::new(0),
                fsync_observer: ObserverSlot(RwLock::new(None)),
                hwm_tx,
            }),
        })
    }

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

    /// Appends one or more concatenated RecordBatch v2 (a Produce request's records for one
    /// partition). Each batch is validated, checked against the idempotent producer state,
    /// given offsets by rewriting its baseOffset and written to the page cache. This does not
    /// wait for the disk: see [`Log::wait_durable`] and [`Log::append_durable`].
    pub fn append(&self, records: &[u8]) -> Result<AppendOutcome> {
        let config = self.config();
        let batches = split_batches(records, config.max_batch_bytes)?;
        let mut st = lock(&self.shared.state);
        if st.closed {
            return Err(LogError::Closed {
                path: self.shared.dir.clone(),
            });
        }
        if let Some(reason) = &st.poisoned {
            return Err(LogError::Io {
                op: "append (log needs reopening after an earlier failure)",
                path: self.shared.dir.clone(),
                source: std::io::Error::other(reason.clone()),
            });
        }
        let mut first: Option<i64> = None;
        let mut last = -1i64;
        let mut all_duplicate = true;
        let mut count = 0i64;
        let now = now_ms();
        for (header, bytes) in batches {
            match st.producers.check(&header)? {
                Check::Duplicate(meta) => {
                    debug!(
                        producer_id = header.producer_id,
                        base_sequence = header.base_sequence,
                        "Duplicate batch"
                    );
                    first.get_or_insert(meta.base_offset);
                    last = meta.last_offset;
                    count += meta.last_offset - meta.base_offset + 1;
                    continue;
                }
                Check::Append => {}
            }
            all_duplicate = false;
            let header = self.write_batch(&mut st, &config, header, bytes, now)?;
            st.producers.record(&header, now);
            first.get_or_insert(header.base_offset);
            last = header.last_offset();
            count += i64::from(header.record_count);
        }
        if !all_duplicate && config.fsync != FsyncPolicy::Always {
            self.publish_end(&mut st);
        }
        let base_offset = first.ok_or(LogError::InvalidBatch(crate::BatchError::TooShort {
            len_bytes: 0,
        }))?;
        let mut writeback = None;
        if config.fsync == FsyncPolicy::None && !all_duplicate {
            st.unflushed_bytes += records.len() as u64;
            if st.unflushed_bytes >= WRITEBACK_BYTES {
                st.unflushed_bytes = 0;
                writeback = Some(st.next_offset);
            }
        }
        let outcome = AppendOutcome {
            base_offset,
            last_offset: last,
            log_append_time_ms: -1,
            log_start_offset: st.log_start_offset,
            record_count: count,
            duplicate: all_duplicate,
        };
        drop(st);
        if let Some(next_offset) = writeback {
            self.request_durable(next_offset);
        }
        Ok(outcome)
    }

    /// Waits until every offset below `next_offset` is durable under the fsync policy.
    ///
    /// With `FsyncPolicy::Always` the log's flusher thread runs one fdatasync covering
    /// everything written before it starts; appends that arrive meanwhile are covered by the
    /// next one, so concurrent appends share syncs (group commit). Other policies return at
    /// once.
    pub async fn wait_durable(&self, next_offset: i64) -> Result<()> {
        if self.config().fsync != FsyncPolicy::Always || self.durable_offset() >= next_offset {
            return Ok(());
        }
        let mut rx = self.shared.durable_tx.subscribe();
        self.request_durable(next_offset);
        let seen = *rx
            .wait_for(|(durable, failed)| *durable >= next_offset || *failed)
            .await
            .map_err(|_| LogError::Closed {
                path: self.shared.dir.clone(),
            })?;
        if seen.0 >= next_offset {
            Ok(())
        } else {
            Err(self.flush_failure())
        }
    }

    fn flush_failure(&self) -> LogError {
        let reason = lock(&self.shared.flusher.state)
            .failed
            .clone()
            .unwrap_or_else(|| "fdatasync failed".to_string());
        LogError::Io {
            op: "group commit",
            path: self.shared.dir.clone(),
            source: std::io::Error::other(reason),
        }
    }

    /// Asks the flusher to make every offset below `next_offset` durable without waiting for
    /// it. Under `FsyncPolicy::Always` the high watermark only moves with a sync, so a writer
    /// that does not wait (Kafka `acks=0` or `acks=1`) calls this to make its records
    /// readable. Other policies need nothing and return at once.
    pub fn request_sync(&self, next_offset: i64) {
        if self.config().fsync == FsyncPolicy::Always && self.durable_offset() < next_offset {
            self.request_durable(next_offset);
        }
    }

    fn request_durable(&self, next_offset: i64) {
        let flusher = &self.shared.flusher;
        let mut st = lock(&flusher.state);
        st.requested = st.requested.max(next_offset);
        if !st.started {
            st.started = true;
            let weak = Arc::downgrade(&self.shared);
            let ctl = flusher.clone();
            let spawned = std::thread::Builder::new()
                .name("rivulet-fsync".into())
                .spawn(move || flusher_loop(weak, ctl));
            if let Err(e) = spawned {
                st.started = false;
                st.failed = Some(format!("cannot start the flusher thread: {e}"));
                flusher.done.notify_all();
                drop(st);
                let _ = self.shared.durable_tx.send_replace((self.durable_offset(), true));
                return;
            }
        }
        flusher.wake.notify_one();
    }

    /// [`Log::append`] followed by [`Log::wait_durable`].
    pub async fn append_durable(&self, records: &[u8]) -> Result<AppendOutcome> {
        let outcome = self.append(records)?;
        self.wait_durable(outcome.last_offset + 1).await?;
        Ok(outcome)
    }

    /// Blocking form of [`Log::wait_durable`] for threads outside an async runtime.
    pub fn wait_durable_blocking(&self, next_offset: i64) -> Result<()> {
        if self.config().fsync != FsyncPolicy::Always || self.durable_offset() >= next_offset {
            return Ok(());
        }
        self.request_durable(next_offset);
        let flusher = &self.shared.flusher;
        let mut st = lock(&flusher.state);
        loop {
            if st.durable >= next_offset {
                return Ok(());
            }
            if st.failed.is_some() {
                drop(st);
                return Err(self.flush_failure());
            }
            st = flusher.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Offset below which everything is on disk.
    pub fn durable_offset(&self) -> i64 {
        self.shared.durable_offset.load(Ordering::Acquire)
    }

    /// fdatasync calls made for appends so far (group commit makes this far smaller than
    /// the number of appends under concurrency).
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Total time spent in those fdatasync calls.
    pub fn fsync_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.shared.fsync_nanos.load(Ordering::Relaxed))
    }

    /// Sets a function called with the duration of every fdatasync.
    pub fn set_fsync_observer(&self, observer: Option<FsyncObserver>) {
        *self
            .shared
            .fsync_observer
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner()) = observer;
    }

    /// Forces everything written so far to disk, whatever the policy.
    pub fn flush(&self) -> Result<()> {
        let end = self.log_end_offset();
        self.sync_to(end)?;
        lock(&self.shared.state).last_flush_ms = now_ms();
        Ok(())
    }

    fn sync_to(&self, next_offset: i64) -> Result<()> {
        let _sync = lock(&self.shared.sync_lock);
        if self.durable_offset() >= next_offset {
            return Ok(());
        }
        let (file, target, segment_base, position, path, dir_unsynced) = {
            let mut st = lock(&self.shared.state);
            if let Some(reason) = &st.poisoned {
                return Err(LogError::Io {
                    op: "fsync (log needs reopening after an earlier failure)",
                    path: self.shared.dir.clone(),
                    source: std::io::Error::other(reason.clone()),
                });
            }
            let storage = self.shared.storage.clone();
            let next = st.next_offset;
            let active = st
                .segments
                .values_mut()
                .next_back()
                .ok_or_else(|| LogError::Config("log has no segment".into()))?;
            let synced = (
                active.file(storage.as_ref())?,
                next,
                active.base_offset,
                active.size(),
                active.log_path.clone(),
                st.dir_unsynced,
            );
            st.dir_unsynced = false;
            synced
        };
        let started = Instant::now();
        // A segment created by a roll since the last sync has its directory entry synced
        // here, off the append path, before any of its records is reported durable.
        let synced = file.sync_data().and_then(|()| {
            if dir_unsynced {
                self.shared.storage.sync_dir(&self.shared.dir)
            } else {
                Ok(())
            }
        });
        let elapsed = started.elapsed();
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.shared
            .fsync_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        if let Some(observe) = self
            .shared
            .fsync_observer
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            observe(elapsed);
        }
        if let Err(e) = synced {
            // After a failed fsync the page cache may have dropped the dirty pages: the only
            // safe state is to refuse more work until the log is reopened and re-scanned.
            error!(segment = %path.display(), error = %e, "fdatasync failed; log refuses writes until reopened");
            lock(&self.shared.state).poisoned = Some(format!("fdatasync failed: {e}"));
            {
                let mut fs = lock(&self.shared.flusher.state);
                fs.failed = Some(format!("fdatasync failed: {e}"));
                self.shared.flusher.done.notify_all();
            }
            self.shared.durable_tx.send_modify(|v| v.1 = true);
            return Err(LogError::Io {
                op: "fdatasync",
                path,
                source: e,
            });
        }
        // Readers may see the data before its writers hear it is durable, never after.
        if self.config().fsync == FsyncPolicy::Always {
            let mut st = lock(&self.shared.state);
            if target > st.visible.offset {
                st.visible = Visible {
                    offset: target,
                    segment_base,
                    position,
                };
                self.shared.hwm_tx.send_replace(target);
            }
        }
        self.mark_durable(target);
        Ok(())
    }

    fn mark_durable(&self, target: i64) {
        self.shared.durable_offset.fetch_max(target, Ordering::AcqRel);
        let flusher = &self.shared.flusher;
        let mut st = lock(&flusher.state);
        st.durable = st.durable.max(target);
        let durable = st.durable;
        flusher.done.notify_all();
        drop(st);
        self.shared.durable_tx.send_if_modified(|v| {
            let changed = v.0 < durable;
            v.0 = v.0.max(durable);
            changed
        });
    }

    fn publish_end(&self, st: &mut State) {
        if let Some(active) = st.segments.values().next_back() {
            st.visible = Visible {
                offset: st.next_offset,
                segment_base: active.base_offset,
                position: active.size(),
            };
            self.shared.hwm_tx.send_replace(st.next_offset);
        }
    }

    /// Writes one validated batch at the end of the active segment, rolling first if needed.
    fn write_batch(
        &self,
        st: &mut State,
        config: &LogConfig,
        header: BatchHeader,
        bytes: &[u8],
        now: i64,
    ) -> Result<BatchHeader> {
        let needs_roll = {
            let active = st
                .segments
                .values()
                .next_back()
                .ok_or_else(|| LogError::Config("no segment".into()))?;
            active.size() > 0
                && (active.size() + bytes.len() as u64 > config.segment_bytes
                    || config
                        .segment_ms
                        .is_some_and(|ms| now - active.created_ms >= ms as i64)
                    || st.next_offset - active.base_offset + i64::from(header.last_offset_delta)
                        >= i64::from(u32::MAX))
        };
        if needs_roll {
            self.roll(st, now)?;
        }
        let storage = self.shared.storage.clone();
        let base_offset = st.next_offset;
        let head = base_offset.to_be_bytes();
        let active = st
            .segments
            .values_mut()
            .next_back()
            .ok_or_else(|| LogError::Config("no segment".into()))?;
        let position = active.size();
        let file = active.file(storage.as_ref())?;
        // Two writes instead of copying the batch to patch its first 8 bytes. A crash between
        // them leaves a batch whose offset does not follow its predecessor: recovery cuts it.
        let written = file
            .write_all_at(&head, position)
            .and_then(|()| file.write_all_at(&bytes[8..], position + 8));
        if let Err(e) = written {
            // Remove whatever part of the batch reached the file so no torn batch stays behind.
            if let Err(e2) = file.set_len(position) {
                error!(segment = %active.log_path.display(), error = %e2, "Could not cut a failed write");
                st.poisoned = Some(format!("write failed and could not be undone: {e2}"));
            }
            warn!(segment = %active.log_path.display(), error = %e, "Append failed");
            return Err(LogError::Io {
                op: "append",
                path: active.log_path.clone(),
                source: e,
            });
        }
        if position == 0 {
            active.created_ms = now;
        }
        let mut header = header;
        header.base_offset = base_offset;
        active.note_batch(&header, position, config.index_interval_bytes);
        st.next_offset = header.next_offset();
        debug_assert_eq!(active.size(), position + bytes.len() as u64);
        Ok(header)
    }

    /// Seals the active segment (fdatasync, index file) and starts a new one.
    ///
    /// This runs under the state lock, so every append to the partition waits for it: it
    /// makes one fdatasync (of the sealed segment's last unsynced bytes, which under
    /// `fsync=always` the flusher has mostly synced already). The index file is written as a
    /// cache without an fsync, and the new segment's directory entry is synced by the next
    /// sync that covers its records (the flusher, the interval flush or `maintain`).
    fn roll(&self, st: &mut State, now: i64) -> Result<()> {
        let storage = self.shared.storage.clone();
        let next = st.next_offset;
        let active = st
            .segments
            .values_mut()
            .next_back()
            .ok_or_else(|| LogError::Config("no segment".into()))?;
        let file = active.file(storage.as_ref())?;
        file.sync_data()
            .map_err(LogError::io("sync segment", &active.log_path))?;
        active.index.store_cached(storage.as_ref(), &active.index_path)?;
        active.sealed = true;
        let sealed_base = active.base_offset;
        if st.dir_unsynced {
            // The sealed segment's own name is not durable yet (no sync ran while it was
            // active): its records are about to be reported durable.
            storage
                .sync_dir(&self.shared.dir)
                .map_err(LogError::io("sync directory", &self.shared.dir))?;
            st.dir_unsynced = false;
        }
        let segment = Segment::create_unsynced(storage.as_ref(), &self.shared.dir, next, now)?;
        st.segments.insert(next, segment);
        st.dir_unsynced = true;
        self.mark_durable(next);
        st.visible = Visible {
            offset: next,
            segment_base: next,
            position: 0,
        };
        self.shared.hwm_tx.send_replace(next);
        debug!(dir = %self.shared.dir.display(), sealed_base, new_base = next, "Rolled segment");
        self.close_idle_handles(st);
        Ok(())
    }

    fn close_idle_handles(&self, st: &mut State) {
        let max_open = self.config().max_open_sealed_segments;
        let mut open: Vec<(u64, i64)> = st
            .segments
            .values()
            .filter(|s| s.sealed && s.file.is_some())
            .map(|s| (s.last_used, s.base_offset))
            .collect();
        if open.len() <= max_open {
            return;
        }
        open.sort_unstable();
        for &(_, base) in &open[..open.len() - max_open] {
            if let Some(s) = st.segments.get_mut(&base) {
                s.file = None;
            }
        }
    }

    /// Number of sealed segments whose files are open.
    pub fn open_sealed_segments(&self) -> usize {
        lock(&self.shared.state)
            .segments
            .values()
            .filter(|s| s.sealed && s.file.is_some())
            .count()
    }

    /// Reads whole batches starting with the one that contains `offset`, up to `max_bytes`
    /// but always at least that one batch. Every batch returned has passed its CRC check.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let mut offset = offset;
        // Each pass moves to a later segment; bounded by the number of segments.
        for _ in 0..=self.segment_count() {
            let plan = {
                let mut st = lock(&self.shared.state);
                if offset < st.log_start_offset || offset > st.next_offset {
                    return Err(LogError::OffsetOutOfRange {
                        offset,
                        log_start_offset: st.log_start_offset,
                        log_end_offset: st.next_offset,
                    });
                }
                let visible = st.visible;
                let log_start_offset = st.log_start_offset;
                if offset >= visible.offset {
                    return Ok(ReadResult {
                        records: Bytes::new(),
                        high_watermark: visible.offset,
                        log_start_offset,
                    });
                }
                st.tick += 1;
                let tick = st.tick;
                let storage = self.shared.storage.clone();
                let Some((_, segment)) = st.segments.range_mut(..=offset).next_back() else {
                    return Err(LogError::OffsetOutOfRange {
                        offset,
                        log_start_offset,
                        log_end_offset: visible.offset,
                    });
                };
                let end = if segment.base_offset == visible.segment_base {
                    visible.position
                } else {
                    segment.size()
                };
                let end = segment.corrupt_from.map_or(end, |c| end.min(c));
                let corrupt = segment.corrupt_from.is_some() && offset >= segment.index.next_offset;
                let rel = u32::try_from(offset - segment.base_offset).unwrap_or(u32::MAX);
                let segment_base = segment.base_offset;
                segment.last_used = tick;
                let plan = (
                    segment.file(storage.as_ref())?,
                    segment.log_path.clone(),
                    segment.index.position_for(rel),
                    end,
                    segment.index.next_offset,
                    corrupt,
                    visible.offset,
                    log_start_offset,
                    st.segments
                        .range(segment_base + 1..)
                        .next()
                        .map_or(visible.offset, |(base, _)| *base),
                );
                self.close_idle_handles(&mut st);
                plan
            };
            let (file, path, start, end, segment_next, corrupt, hwm, log_start_offset, next_base) = plan;
            if corrupt {
                return Err(LogError::Corrupt {
                    path,
                    position: end,
                    reason: format!("offset {offset} lies in bytes that failed validation at open"),
                });
            }
            match read_from(file.as_ref(), &path, offset, start, end, max_bytes)? {
                Some(records) => {
                    return Ok(ReadResult {
                        records,
                        high_watermark: hwm,
                        log_start_offset,
                    })
                }
                // The offset is past this segment's last batch (end of a sealed segment, or a
                // gap left by compaction): continue in the next segment.
                None => offset = offset.max(segment_next).max(next_base),
            }
        }
        Ok(ReadResult {
            records: Bytes::new(),
            high_watermark: self.high_watermark(),
            log_start_offset: self.log_start_offset(),
        })
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`, among visible
    /// records; `None` when every record is older.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<TimestampOffset>> {
        let candidates: Vec<(Arc<dyn StorageFile>, PathBuf, u64, u64)> = {
            let mut st = lock(&self.shared.state);
            let visible = st.visible;
            let storage = self.shared.storage.clone();
            let mut out = Vec::new();
            for segment in st.segments.values_mut() {
                if segment.index.max_timestamp < timestamp_ms || segment.base_offset > visible.offset {
                    continue;
                }
                let end = if segment.base_offset == visible.segment_base {
                    visible.position
                } else {
                    segment.size()
                };
                let end = segment.corrupt_from.map_or(end, |c| end.min(c));
                let rel = segment.index.offset_for_time(timestamp_ms);
                let start = u64::from(segment.index.position_for(rel));
                out.push((
                    segment.file(storage.as_ref())?,
                    segment.log_path.clone(),
                    start,
                    end,
                ));
                if out.len() >= 2 {
                    break;
                }
            }
            out
        };
        for (file, path, start, end) in candidates {
            let mut position = start;
            let mut buf = Vec::new();
            while position + HEADER_BYTES as u64 <= end {
                let header = read_header(file.as_ref(), &path, position)?;
                if header.max_timestamp >= timestamp_ms {
                    buf.resize(header.total_bytes(), 0);
                    file.read_exact_at(&mut buf, position)
                        .map_err(LogError::io("read segment", &path))?;
                    batch::validate_framing(&buf).map_err(|e| corrupt(&path, position, e.to_string()))?;
                    if header.compression() == 0 {
                        let records = record::decode_all(&buf[HEADER_BYTES..], header.record_count)
                            .map_err(|e| corrupt(&path, position, e.to_string()))?;
                        for r in records {
                            let ts = header.base_timestamp + r.timestamp_delta;
                            if ts >= timestamp_ms {
                                return Ok(Some(TimestampOffset {
                                    offset: header.base_offset + i64::from(r.offset_delta),
                                    timestamp_ms: ts,
                                }));
                            }
                        }
                    }
                    return Ok(Some(TimestampOffset {
                        offset: header.base_offset,
                        timestamp_ms: header.max_timestamp,
                    }));
                }
                position += header.total_bytes() as u64;
            }
        }
        Ok(None)
    }

    /// Periodic work: the interval flush, rolling an aged segment, retention and compaction.
    /// Blocking; call it from a background thread or `spawn_blocking`.
    pub fn maintain(&self, now_ms: i64) -> Result<()> {
        let config = self.config();
        if let FsyncPolicy::Interval(every) = config.fsync {
            let due = now_ms - lock(&self.shared.state).last_flush_ms >= every.as_millis() as i64;
            if due {
                self.flush()?;
            }
        }
        if let Some(segment_ms) = config.segment_ms {
            let mut st = lock(&self.shared.state);
            let aged = st
                .segments
                .values()
                .next_back()
                .is_some_and(|a| a.size() > 0 && now_ms - a.created_ms >= segment_ms as i64);
            if aged && !st.closed && st.poisoned.is_none() {
                self.roll(&mut st, now_ms)?;
            }
        }
        self.sync_dir_if_needed()?;
        if config.cleanup.delete {
            self.enforce_retention(now_ms)?;
        }
        if config.cleanup.compact {
            self.compact(now_ms)?;
        }
        Ok(())
    }

    /// Deletes whole sealed segments beyond `retention.ms` and `retention.bytes`. Returns
    /// the number of segments deleted. The active segment is never deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        let _cleaner = lock(&self.shared.cleaner_lock);
        let config = self.config();
        let mut doomed = Vec::new();
        {
            let mut st = lock(&self.shared.state);
            let mut total: u64 = st.segments.values().map(Segment::size).sum();
            let sealed: Vec<i64> = st
                .segments
                .values()
                .filter(|s| s.sealed)
                .map(|s| s.base_offset)
                .collect();
            for base in sealed {
                let Some(segment) = st.segments.get(&base) else {
                    break;
                };
                let too_old = config
                    .retention_ms
                    .is_some_and(|ms| segment.index.max_timestamp < now_ms - ms as i64);
                let too_big = config
                    .retention_bytes
                    .is_some_and(|limit| total.saturating_sub(segment.size()) >= limit);
                if !too_old && !too_big {
                    break;
                }
                total -= segment.size();
                if let Some(segment) = st.segments.remove(&base) {
                    doomed.push(segment);
                }
            }
            if !doomed.is_empty() {
                st.log_start_offset = st.segments.keys().next().copied().unwrap_or(st.next_offset);
            }
        }
        // Rename, sync the directory (from here on the segment is gone, crash or not), then
        // let the reaper free the blocks gradually: see `reaper`.
        let storage = &self.shared.storage;
        let mut retired = Vec::with_capacity(doomed.len());
        for segment in &doomed {
            info!(segment = %segment.log_path.display(), "Deleting segment past retention");
            let mut name = segment.log_path.clone().into_os_string();
            name.push(DELETED_SUFFIX);
            let deleted = PathBuf::from(name);
            storage
                .rename(&segment.log_path, &deleted)
                .map_err(LogError::io("retire segment", &segment.log_path))?;
            retired.push(deleted);
            if storage.exists(&segment.index_path) {
                storage
                    .remove_file(&segment.index_path)
                    .map_err(LogError::io("delete index", &segment.index_path))?;
            }
        }
        if !doomed.is_empty() {
            storage
                .sync_dir(&self.shared.dir)
                .map_err(LogError::io("sync directory", &self.shared.dir))?;
        }
        for path in retired {
            reaper::retire(Retired {
                storage: storage.clone(),
                path,
            });
        }
        Ok(doomed.len())
    }

    /// Compacts sealed segments: keeps the latest record per key, and tombstones until they
    /// are older than `delete.retention.ms`. Returns the number of records removed.
    pub fn compact(&self, now_ms: i64) -> Result<u64> {
        crate::compact::compact(self, now_ms)
    }

    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.shared.storage
    }

    pub(crate) fn cleaner_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.shared.cleaner_lock)
    }

    /// Sealed segments as `(base offset, file, path, valid bytes)`, oldest first.
    pub(crate) fn sealed_segments(&self) -> Result<Vec<SealedSegment>> {
        let mut st = lock(&self.shared.state);
        let storage = self.shared.storage.clone();
        let mut out = Vec::new();
        for s in st
            .segments
            .values_mut()
            .filter(|s| s.sealed && s.corrupt_from.is_none())
        {
            out.push((
                s.base_offset,
                s.file(storage.as_ref())?,
                s.log_path.clone(),
                s.size(),
            ));
        }
        Ok(out)
    }

    /// Swaps in a compacted segment that was written to `<base>.log.cleaned`.
    pub(crate) fn replace_segment(&self, base: i64, cleaned: &Path) -> Result<()> {
        let storage = self.shared.storage.clone();
        let dir = self.shared.dir.clone();
        let interval = self.config().index_interval_bytes;
        let mut st = lock(&self.shared.state);
        let Some(old) = st.segments.get(&base) else {
            // Deleted by retention meanwhile.
            storage
                .remove_file(cleaned)
                .map_err(LogError::io("remove cleaned", cleaned))?;
            return Ok(());
        };
        let log_path = old.log_path.clone();
        let old_next = old.index.next_offset;
        storage
            .rename(cleaned, &log_path)
            .map_err(LogError::io("install compacted segment", &log_path))?;
        if storage.exists(&old.index_path) {
            storage
                .remove_file(&old.index_path)
                .map_err(LogError::io("remove index", &old.index_path))?;
        }
        storage
            .sync_dir(&dir)
            .map_err(LogError::io("sync directory", &dir))?;
        let mut segment = Segment::open(storage.as_ref(), &dir, base, false, interval, now_ms())?;
        // Compaction may have removed the last batches; the segment still spans its offsets.
        if segment.index.next_offset < old_next {
            segment.index.next_offset = old_next;
            segment.index.store(storage.as_ref(), &segment.index_path)?;
        }
        st.segments.insert(base, segment);
        Ok(())
    }

    /// Syncs the directory if a roll created a segment since it was last synced. Under
    /// `fsync=always` the flusher does this before acknowledging the new segment's records;
    /// this covers the other policies and a segment that received no records yet.
    fn sync_dir_if_needed(&self) -> Result<()> {
        // Checked first without the sync lock: maintenance runs for every partition on every
        // tick and must not queue behind a flusher's fdatasync when there is nothing to do.
        if !lock(&self.shared.state).dir_unsynced {
            return Ok(());
        }
        let _sync = lock(&self.shared.sync_lock);
        let due = std::mem::take(&mut lock(&self.shared.state).dir_unsynced);
        if due {
            let synced = self.shared.storage.sync_dir(&self.shared.dir);
            if let Err(e) = synced {
                lock(&self.shared.state).dir_unsynced = true;
                return Err(LogError::Io {
                    op: "sync directory",
                    path: self.shared.dir.clone(),
                    source: e,
                });
            }
        }
        Ok(())
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
        {
            let mut st = lock(&self.shared.state);
            st.closed = true;
        }
        self.shared
            .storage
            .remove_dir_all(&self.shared.dir)
            .map_err(LogError::io("delete log directory", &self.shared.dir))
    }
}

fn corrupt(path: &Path, position: u64, reason: String) -> LogError {
    LogError::Corrupt {
        path: path.to_path_buf(),
        position,
        reason,
    }
}

fn read_header(file: &dyn StorageFile, path: &Path, position: u64) -> Result<BatchHeader> {
    let mut head = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut head, position)
        .map_err(LogError::io("read segment", path))?;
    let header = BatchHeader::parse(&head).map_err(|e| corrupt(path, position, e.to_string()))?;
    if header.batch_length < (HEADER_BYTES - batch::LOG_OVERHEAD_BYTES) as i32 || header.magic != 2 {
        return Err(corrupt(path, position, format!("bad batch header {header:?}")));
    }
    Ok(header)
}

/// Reads batches from one segment; `None` when no batch in `[start, end)` reaches `offset`.
fn read_from(
    file: &dyn StorageFile,
    path: &Path,
    offset: i64,
    start: u32,
    end: u64,
    max_bytes: usize,
) -> Result<Option<Bytes>> {
    // Find the batch containing `offset`: at most one index interval of headers to skip.
    let mut position = u64::from(start);
    let first = loop {
        if position + HEADER_BYTES as u64 > end {
            return Ok(None);
        }
        let header = read_header(file, path, position)?;
        if header.next_offset() > offset {
            break header;
        }
        position += header.total_bytes() as u64;
    };
    let available = end - position;
    let first_bytes = first.total_bytes() as u64;
    if first_bytes > available {
        return Err(corrupt(path, position, "batch runs past the valid end".into()));
    }
    let want = available.min((max_bytes as u64).max(first_bytes));
    let mut buf = BytesMut::zeroed(want as usize);
    file.read_exact_at(&mut buf, position)
        .map_err(LogError::io("read segment", path))?;
    // Keep whole, valid batches only.
    let mut at = 0usize;
    while at + HEADER_BYTES <= buf.len() {
        let header =
            BatchHeader::parse(&buf[at..]).map_err(|e| corrupt(path, position + at as u64, e.to_string()))?;
        let total = header.total_bytes();
        if at + total > buf.len() {
            break;
        }
        batch::validate_framing(&buf[at..at + total])
            .map_err(|e| corrupt(path, position + at as u64, e.to_string()))?;
        at += total;
    }
    assert!(
        at >= first.total_bytes(),
        "the first batch is always returned whole"
    );
    buf.truncate(at);
    Ok(Some(buf.freeze()))
}

/// Splits concatenated batches and validates each one.
fn split_batches(records: &[u8], max_batch_bytes: usize) -> Result<Vec<(BatchHeader, &[u8])>> {
    let mut out = Vec::new();
    let mut rest = records;
    if rest.is_empty() {
        return Err(LogError::InvalidBatch(crate::BatchError::TooShort {
            len_bytes: 0,
        }));
    }
    // A produce request is bounded by its size limit; so is this loop.
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest)?;
        let total = header.total_bytes();
        if header.batch_length < 0 || total > rest.len() {
            return Err(LogError::InvalidBatch(crate::BatchError::LengthMismatch {
                declared_bytes: i64::from(header.batch_length),
                actual_bytes: rest.len().saturating_sub(batch::LOG_OVERHEAD_BYTES),
            }));
        }
        let (one, tail) = rest.split_at(total);
        let header = batch::validate(one, max_batch_bytes)?;
        out.push((header, one));
        rest = tail;
    }
    Ok(out)
}

fn check_segment_order(dir: &Path, segments: &BTreeMap<i64, Segment>) -> Result<()> {
    let mut prev_next = i64::MIN;
    for s in segments.values() {
        if s.base_offset < prev_next {
            return Err(LogError::Corrupt {
                path: dir.to_path_buf(),
                position: 0,
                reason: format!(
                    "segment {} overlaps the previous one (ends at {prev_next})",
                    s.base_offset
                ),
            });
        }
        prev_next = s.index.next_offset;
    }
    Ok(())
}

/// Rebuilds idempotent producer state from the batch headers of every segment.
fn rebuild_producers(storage: &dyn Storage, st: &mut State) -> Result<()> {
    let mut producers = ProducerState::default();
    for segment in st.segments.values_mut() {
        let end = segment.corrupt_from.unwrap_or(segment.size());
        let file = segment.file(storage)?;
        let mut position = 0u64;
        while position + HEADER_BYTES as u64 <= end {
            let header = read_header(file.as_ref(), &segment.log_path, position)?;
            if header.producer_id >= 0 {
                producers.record(&header, header.max_timestamp);
            }
            position += header.total_bytes() as u64;
        }
    }
    st.producers = producers;
    Ok(())
}
