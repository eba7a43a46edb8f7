//! fdatasync, the durable offset, and the high watermark readers see.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::error;

use super::{lock, now_ms, Log, State, Visible};
use crate::config::FsyncPolicy;
use crate::error::{LogError, Result};
use crate::storage::StorageFile;

/// What one sync covers, captured under the state lock.
struct SyncPlan {
    file: Arc<dyn StorageFile>,
    target: i64,
    segment_base: i64,
    position: u64,
    path: std::path::PathBuf,
    dir_unsynced: bool,
}

impl Log {
    /// Offset below which everything is on disk.
    pub fn durable_offset(&self) -> i64 {
        self.shared.durability.offset()
    }

    /// fdatasync calls made so far (group commit makes this far smaller than the number of
    /// appends under concurrency).
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Total time spent in those fdatasync calls.
    pub fn fsync_time(&self) -> Duration {
        Duration::from_nanos(self.shared.fsync_nanos.load(Ordering::Relaxed))
    }

    /// Forces everything written so far to disk, whatever the policy.
    pub fn flush(&self) -> Result<()> {
        let end = self.log_end_offset();
        self.sync_to(end)?;
        lock(&self.shared.state).last_flush_ms = now_ms();
        Ok(())
    }

    /// The sync path: the only writer of the durable offset. Makes every offset below
    /// `next_offset` (and whatever else was written before the sync started) durable.
    pub(crate) fn sync_to(&self, next_offset: i64) -> Result<()> {
        let _sync = lock(&self.shared.sync_lock);
        if self.durable_offset() >= next_offset {
            return Ok(());
        }
        self.sync_locked()
    }

    /// Syncs the active segment even when every offset is already durable (through the
    /// journal): a journal checkpoint needs the records in the segment itself on disk.
    pub(crate) fn sync_segment(&self) -> Result<()> {
        let _sync = lock(&self.shared.sync_lock);
        self.sync_locked()
    }

    /// One fdatasync of the active segment (and its directory when a roll created it);
    /// the caller holds the sync lock.
    fn sync_locked(&self) -> Result<()> {
        let plan = self.plan_sync()?;
        let started = Instant::now();
        // A segment created by a roll since the last sync has its directory entry synced
        // here, off the append path, before any of its records is reported durable.
        let synced = plan.file.sync_data().and_then(|()| {
            if plan.dir_unsynced {
                self.shared.storage.sync_dir(&self.shared.dir)
            } else {
                Ok(())
            }
        });
        self.count_sync(started.elapsed());
        if let Err(e) = synced {
            return Err(self.sync_failed(plan.path, e));
        }
        // Readers may see the data before its writers hear it is durable, never after.
        if self.config().fsync == FsyncPolicy::Always {
            let mut st = lock(&self.shared.state);
            if plan.target > st.visible.offset {
                st.visible = Visible {
                    offset: plan.target,
                    segment_base: plan.segment_base,
                    position: plan.position,
                };
                self.publish_hwm(plan.target);
            }
        }
        self.shared.durability.mark_durable(plan.target);
        Ok(())
    }

    fn plan_sync(&self) -> Result<SyncPlan> {
        let mut st = lock(&self.shared.state);
        if let Some(reason) = &st.poisoned {
            return Err(LogError::Io {
                op: "fsync (log needs reopening after an earlier failure)",
                path: self.shared.dir.clone(),
                source: std::io::Error::other(reason.clone()),
            });
        }
        let storage = self.shared.storage.clone();
        let target = st.next_offset;
        let dir_unsynced = std::mem::take(&mut st.dir_unsynced);
        let active = st
            .segments
            .values_mut()
            .next_back()
            .ok_or_else(|| LogError::Config("log has no segment".into()))?;
        Ok(SyncPlan {
            file: active.file(storage.as_ref())?,
            target,
            segment_base: active.base_offset,
            position: active.size(),
            path: active.log_path.clone(),
            dir_unsynced,
        })
    }

    fn count_sync(&self, elapsed: Duration) {
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.shared
            .fsync_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.shared.pool.observe(elapsed);
    }

    /// After a failed fsync the page cache may have dropped the dirty pages: the only safe
    /// state is to refuse more work until the log is reopened and re-scanned.
    fn sync_failed(&self, path: std::path::PathBuf, e: std::io::Error) -> LogError {
        error!(segment = %path.display(), error = %e, "fdatasync failed; log refuses writes until reopened");
        let reason = format!("fdatasync failed: {e}");
        lock(&self.shared.state).poisoned = Some(reason.clone());
        self.shared.durability.fail(reason);
        LogError::Io {
            op: "fdatasync",
            path,
            source: e,
        }
    }

    /// Makes everything written visible to readers (policies other than `always`, where
    /// readers may see what is not yet durable).
    pub(super) fn publish_end(&self, st: &mut State) {
        if let Some(active) = st.segments.values().next_back() {
            st.visible = Visible {
                offset: st.next_offset,
                segment_base: active.base_offset,
                position: active.size(),
            };
            self.publish_hwm(st.next_offset);
        }
    }
}
