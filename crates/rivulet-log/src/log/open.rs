//! Opening a log and recovering it after a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use tracing::{info, warn};

use super::{now_ms, CompactionMark, Log, LogContext, Shared, State, Visible};
use crate::batch::HEADER_BYTES;
use crate::config::LogConfig;
use crate::durable::Durability;
use crate::error::{LogError, Result};
use crate::journal::Link;
use crate::producer::ProducerState;
use crate::reaper::DELETED_SUFFIX;
use crate::segment::{Segment, CLEANED_SUFFIX, LOG_SUFFIX};
use crate::storage::Storage;
use crate::txn::{Marker, TxnIndex};

impl Log {
    /// Opens (or creates) the log in `dir` on the real file system, recovering after a crash.
    /// Its syncs run on the process-wide flush pool.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log> {
        Log::open_with(&LogContext::default(), dir, config)
    }

    /// Opens the log on the given storage, with the process-wide flush pool.
    pub fn open_with_storage(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        config: LogConfig,
    ) -> Result<Log> {
        let context = LogContext {
            storage,
            ..LogContext::default()
        };
        Log::open_with(&context, dir, config)
    }

    /// Opens the log on `context`'s storage, synced by its flush pool.
    ///
    /// Recovery: every segment whose index file is missing, fails its CRC or does not match
    /// the segment's length is scanned batch by batch (length, magic, CRC, increasing
    /// offsets) and its index rebuilt; the last segment's torn tail is truncated. Producer
    /// state for idempotent producers is rebuilt from the batch headers.
    pub fn open_with(context: &LogContext, dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log> {
        Log::open_in(context, dir.into(), config, None)
    }

    /// [`Log::open_with`] for a log whose appends go through `context`'s journal (when it
    /// has one) under `key`, after appending what the journal holds for that key and the
    /// segments lack (records acknowledged before a crash whose segment writes were lost).
    ///
    /// The key names the log in the journal: it must stay the same across restarts and must
    /// never name a later log that replaces this one (a deleted and re-created topic), or a
    /// restart would replay the old log's records into the new one.
    pub fn open_journaled(
        context: &LogContext,
        dir: impl Into<PathBuf>,
        config: LogConfig,
        key: &[u8],
    ) -> Result<Log> {
        if key.len() > crate::journal::KEY_BYTES_MAX {
            return Err(LogError::Config(format!(
                "journal key of {} bytes (at most {})",
                key.len(),
                crate::journal::KEY_BYTES_MAX
            )));
        }
        let log = Log::open_in(context, dir.into(), config, Some(key))?;
        if let Some(link) = &log.shared.journal {
            let entries = link.journal.take_recovered(key)?;
            log.replay(entries)?;
        }
        Ok(log)
    }

    fn open_in(context: &LogContext, dir: PathBuf, config: LogConfig, key: Option<&[u8]>) -> Result<Log> {
        config.validate()?;
        let storage = context.storage.clone();
        storage
            .create_dir_all(&dir)
            .map_err(LogError::io("create log directory", &dir))?;
        let now = now_ms();
        let bases = segment_bases(storage.as_ref(), &dir)?;
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let interval = config.index_interval_bytes;
            let segment = Segment::open(storage.as_ref(), &dir, base, is_last, interval, now)?;
            segments.insert(base, segment);
        }
        check_segment_order(&dir, &segments)?;
        if segments.is_empty() {
            segments.insert(0, Segment::create(storage.as_ref(), &dir, 0, now)?);
        }
        let mut state = initial_state(segments, now)?;
        if let Some(stored) = super::start::read_start(storage.as_ref(), &dir)? {
            state.log_start_offset = state.log_start_offset.max(stored.min(state.next_offset));
        }
        rebuild_producers(storage.as_ref(), &mut state)?;
        // What recovery kept is what readers may see: make it durable first.
        if let Some(active) = state.segments.values_mut().next_back() {
            let file = active.file(storage.as_ref())?;
            file.sync_data()
                .map_err(LogError::io("sync segment", &active.log_path))?;
        }
        let next_offset = state.next_offset;
        let log_start_offset = state.log_start_offset;
        let first_open_txn = state.txns.first_open().unwrap_or(i64::MAX);
        info!(
            dir = %dir.display(),
            segments = state.segments.len(),
            log_start_offset = state.log_start_offset,
            log_end_offset = next_offset,
            "Opened log"
        );
        Ok(Log {
            shared: Arc::new(Shared {
                dir,
                storage,
                config: RwLock::new(config),
                state: Mutex::new(state),
                sync_lock: Mutex::new(()),
                cleaner_lock: Mutex::new(()),
                durability: Durability::new(next_offset),
                pool: context.pool.clone(),
                fsyncs: AtomicU64::new(0),
                fsync_nanos: AtomicU64::new(0),
                hwm_tx: watch::channel(next_offset).0,
                hwm: AtomicI64::new(next_offset),
                log_start: AtomicI64::new(log_start_offset),
                first_open_txn: AtomicI64::new(first_open_txn),
                activity: context.activity.clone(),
                maintenance_due_ms: AtomicI64::new(0),
                compaction: Mutex::new(CompactionMark::default()),
                journal: context.journal.clone().zip(key).map(|(journal, key)| Link {
                    journal,
                    key: key.into(),
                    dirty: AtomicBool::new(false),
                }),
            }),
        })
    }
}

/// Base offsets of the segment files in `dir`, sorted; removes leftovers of retention and
/// of interrupted compactions on the way.
fn segment_bases(storage: &dyn Storage, dir: &Path) -> Result<Vec<i64>> {
    let names = storage
        .list_dir(dir)
        .map_err(LogError::io("list log directory", dir))?;
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
    Ok(bases)
}

fn initial_state(segments: BTreeMap<i64, Segment>, now: i64) -> Result<State> {
    let log_start_offset = segments.values().next().map_or(0, |s| s.base_offset);
    let active = segments
        .values()
        .next_back()
        .ok_or_else(|| LogError::Config("no segment".into()))?;
    let next_offset = active.index.next_offset;
    let visible = Visible {
        offset: next_offset,
        segment_base: active.base_offset,
        position: active.size(),
    };
    Ok(State {
        segments,
        next_offset,
        log_start_offset,
        visible,
        producers: ProducerState::default(),
        txns: TxnIndex::default(),
        last_flush_ms: now,
        tick: 0,
        closed: false,
        poisoned: None,
        dir_unsynced: false,
        unflushed_bytes: 0,
        journaled_to: next_offset,
        writeback_started: (visible.segment_base, visible.position),
    })
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

/// Rebuilds idempotent producer state and the transaction index from the batch headers of
/// every segment (control batches are read whole for their marker).
fn rebuild_producers(storage: &dyn Storage, st: &mut State) -> Result<()> {
    let mut producers = ProducerState::default();
    let mut txns = TxnIndex::default();
    for segment in st.segments.values_mut() {
        let end = segment.corrupt_from.unwrap_or(segment.size());
        let file = segment.file(storage)?;
        let mut position = 0u64;
        while position + HEADER_BYTES as u64 <= end {
            let header = super::read::read_header(file.as_ref(), &segment.log_path, position)?;
            if header.producer_id >= 0 {
                producers.record(&header, header.max_timestamp);
                let marker = match header.is_control() {
                    true => read_marker(file.as_ref(), &segment.log_path, position, &header)?,
                    false => None,
                };
                txns.note(&header, marker);
            }
            position += header.total_bytes() as u64;
        }
    }
    txns.trim(st.log_start_offset);
    st.producers = producers;
    st.txns = txns;
    Ok(())
}

/// Largest control batch read for its marker; a marker batch is under 100 bytes.
const CONTROL_BATCH_BYTES_MAX: usize = 4096;

/// The marker of the control batch at `position`.
fn read_marker(
    file: &dyn crate::storage::StorageFile,
    path: &Path,
    position: u64,
    header: &crate::batch::BatchHeader,
) -> Result<Option<Marker>> {
    let total = header.total_bytes();
    if total > CONTROL_BATCH_BYTES_MAX {
        return Ok(None);
    }
    let mut buf = vec![0u8; total];
    file.read_exact_at(&mut buf, position)
        .map_err(LogError::io("read segment", path))?;
    Ok(crate::txn::parse_marker(&buf))
}
