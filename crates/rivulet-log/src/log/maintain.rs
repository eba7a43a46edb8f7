//! Periodic work: segment rolls, interval flushes, retention and compaction.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use tracing::{debug, info};

use super::{lock, now_ms, CompactionMark, Log, SealedSegment, State, Visible};
use crate::config::FsyncPolicy;
use crate::error::{LogError, Result};
use crate::reaper::{self, Retired, DELETED_SUFFIX};
use crate::segment::Segment;
use crate::storage::Storage;

impl Log {
    /// Seals the active segment (fdatasync, index file) and starts a new one.
    ///
    /// This runs under the state lock, so every append to the partition waits for it: it
    /// makes one fdatasync (of the sealed segment's last unsynced bytes, which under
    /// `fsync=always` the flusher has mostly synced already). The index file is written as a
    /// cache without an fsync, and the new segment's directory entry is synced by the next
    /// sync that covers its records (the flusher, the interval flush or `maintain`).
    pub(super) fn roll(&self, st: &mut State, now: i64) -> Result<()> {
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
        self.shared.durability.mark_durable(next);
        st.visible = Visible {
            offset: next,
            segment_base: next,
            position: 0,
        };
        self.publish_hwm(next);
        debug!(dir = %self.shared.dir.display(), sealed_base, new_base = next, "Rolled segment");
        self.close_idle_handles(st);
        Ok(())
    }

    /// Periodic work: the interval flush, rolling an aged segment, retention and compaction.
    /// Returns at once (one atomic load) while nothing can be due: an idle partition costs
    /// nothing per pass. Blocking; call it from a background thread or `spawn_blocking`.
    pub fn maintain(&self, now_ms: i64) -> Result<()> {
        let due = &self.shared.maintenance_due_ms;
        if now_ms < due.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Claimed for this pass; an append meanwhile stores 0, which the end keeps.
        due.store(i64::MAX, Ordering::Relaxed);
        match self.maintain_pass(now_ms) {
            Ok(next) => {
                let _ = due.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| Some(d.min(next)));
                Ok(())
            }
            Err(e) => {
                due.store(0, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// One maintenance pass; returns when the next one can have work.
    fn maintain_pass(&self, now_ms: i64) -> Result<i64> {
        let config = self.config();
        if let FsyncPolicy::Interval(every) = config.fsync {
            let due = now_ms - lock(&self.shared.state).last_flush_ms >= every.as_millis() as i64;
            if due {
                self.flush()?;
            }
        }
        {
            let mut st = lock(&self.shared.state);
            let aged = st.segments.values().next_back().is_some_and(|a| {
                let roll_after = config.roll_after_ms(a.base_offset);
                a.size() > 0 && roll_after.is_some_and(|ms| now_ms - a.created_ms >= ms as i64)
            });
            if aged && !st.closed && st.poisoned.is_none() {
                self.roll(&mut st, now_ms)?;
            }
        }
        self.sync_dir_if_needed()?;
        if config.cleanup.delete {
            self.enforce_retention(now_ms)?;
        }
        if config.cleanup.compact && self.compaction_due(now_ms) {
            self.compact(now_ms)?;
        }
        Ok(self.next_maintenance_ms(&config, now_ms))
    }

    /// The earliest time maintenance can have work, absent appends: an interval flush, an
    /// aged active segment, the oldest sealed segment passing `retention.ms`, a tombstone
    /// becoming removable; now while a directory sync is pending.
    fn next_maintenance_ms(&self, config: &crate::LogConfig, now_ms: i64) -> i64 {
        let st = lock(&self.shared.state);
        if st.dir_unsynced {
            return now_ms;
        }
        let mut next = i64::MAX;
        if let FsyncPolicy::Interval(every) = config.fsync {
            next = next.min(st.last_flush_ms + every.as_millis() as i64);
        }
        if let Some(active) = st.segments.values().next_back() {
            if let (true, Some(ms)) = (active.size() > 0, config.roll_after_ms(active.base_offset)) {
                next = next.min(active.created_ms.saturating_add(ms as i64));
            }
        }
        if let (true, Some(retention_ms)) = (config.cleanup.delete, config.retention_ms) {
            if let Some(oldest) = st.segments.values().find(|s| s.sealed) {
                next = next.min(oldest.index.max_timestamp.saturating_add(retention_ms as i64 + 1));
            }
        }
        if config.cleanup.compact && config.min_compaction_lag_ms > 0 {
            // The first sealed segment still inside the lag becomes compactable then.
            let lag_ms = config.min_compaction_lag_ms.min(i64::MAX as u64) as i64;
            if let Some(young) = st
                .segments
                .values()
                .filter(|s| s.sealed)
                .find(|s| !lag_passed(s.index.max_timestamp, config.min_compaction_lag_ms, now_ms))
            {
                next = next.min(young.index.max_timestamp.saturating_add(lag_ms));
            }
        }
        drop(st);
        if config.cleanup.compact {
            if let Some(due) = lock(&self.shared.compaction).tombstones_due_ms {
                next = next.min(due);
            }
        }
        next
    }

    /// True when a compaction pass can remove something: a segment became compactable
    /// (sealed, and past `min.compaction.lag.ms`) since the last pass, or a tombstone the
    /// last pass kept is old enough to go.
    fn compaction_due(&self, now_ms: i64) -> bool {
        let min_lag_ms = self.config().min_compaction_lag_ms;
        let newest_sealed = lock(&self.shared.state)
            .segments
            .values()
            .filter(|s| s.sealed)
            .take_while(|s| lag_passed(s.index.max_timestamp, min_lag_ms, now_ms))
            .map(|s| s.base_offset)
            .last();
        let mark = *lock(&self.shared.compaction);
        newest_sealed.is_some()
            && (mark.last_sealed_base != newest_sealed
                || mark.tombstones_due_ms.is_some_and(|due| now_ms >= due))
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
                // A start moved by DeleteRecords may lie past the first segment left.
                let first = st.segments.keys().next().copied().unwrap_or(st.next_offset);
                st.log_start_offset = st.log_start_offset.max(first);
                let start = st.log_start_offset;
                st.txns.trim(start);
                self.shared
                    .log_start
                    .store(st.log_start_offset, Ordering::Release);
            }
        }
        let count = doomed.len();
        self.retire_segments(doomed)?;
        Ok(count)
    }

    /// Removes segments already taken out of the state: rename, sync the directory (from
    /// here on each segment is gone, crash or not), then the reaper frees the blocks
    /// gradually (see `reaper`).
    pub(super) fn retire_segments(&self, doomed: Vec<Segment>) -> Result<()> {
        let storage = &self.shared.storage;
        let mut retired = Vec::with_capacity(doomed.len());
        for segment in &doomed {
            info!(segment = %segment.log_path.display(), "Deleting segment");
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
        Ok(())
    }

    /// Compacts sealed segments: keeps the latest record per key, and tombstones until they
    /// are older than `delete.retention.ms`. Returns the number of records removed.
    pub fn compact(&self, now_ms: i64) -> Result<u64> {
        let pass = crate::compact::compact(self, now_ms)?;
        *lock(&self.shared.compaction) = CompactionMark {
            last_sealed_base: pass.last_sealed_base,
            tombstones_due_ms: pass
                .oldest_tombstone_ms
                .map(|ts| ts.saturating_add(self.config().delete_retention_ms as i64 + 1)),
        };
        Ok(pass.removed)
    }

    /// Rewrites every sealed segment without the records `keep` refuses; kept records keep
    /// their offsets and control batches stay. For stores on the log that know which
    /// records no reader may see any more (the event store's deleted and truncated
    /// streams). Returns the number of records removed.
    pub fn scavenge(&self, keep: &mut dyn FnMut(&crate::StoredRecord) -> bool) -> Result<u64> {
        crate::compact::scavenge(self, keep)
    }

    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.shared.storage
    }

    pub(crate) fn cleaner_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.shared.cleaner_lock)
    }

    /// The sealed segments compaction may rewrite now, oldest first: those before the first
    /// one holding a record younger than `min.compaction.lag.ms`.
    pub(crate) fn compactable_segments(&self, now_ms: i64) -> Result<Vec<SealedSegment>> {
        let min_lag_ms = self.config().min_compaction_lag_ms;
        self.sealed_segments_while(|max_timestamp| lag_passed(max_timestamp, min_lag_ms, now_ms))
    }

    /// Every sealed segment, oldest first.
    pub(crate) fn sealed_segments(&self) -> Result<Vec<SealedSegment>> {
        self.sealed_segments_while(|_| true)
    }

    /// Sealed segments, oldest first, until the first whose newest timestamp `take` refuses.
    fn sealed_segments_while(&self, take: impl Fn(i64) -> bool) -> Result<Vec<SealedSegment>> {
        let mut st = lock(&self.shared.state);
        let storage = self.shared.storage.clone();
        let mut out = Vec::new();
        for s in st
            .segments
            .values_mut()
            .filter(|s| s.sealed && s.corrupt_from.is_none())
        {
            if !take(s.index.max_timestamp) {
                break;
            }
            out.push(SealedSegment {
                base: s.base_offset,
                file: s.file(storage.as_ref())?,
                path: s.log_path.clone(),
                len: s.size(),
            });
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
    pub(super) fn sync_dir_if_needed(&self) -> Result<()> {
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
}

/// True when a segment whose newest record is `max_timestamp_ms` is older than
/// `min_lag_ms` (always, without a lag: records stamped in the future do not hold
/// compaction back).
fn lag_passed(max_timestamp_ms: i64, min_lag_ms: u64, now_ms: i64) -> bool {
    min_lag_ms == 0 || max_timestamp_ms <= now_ms.saturating_sub(min_lag_ms.min(i64::MAX as u64) as i64)
}
