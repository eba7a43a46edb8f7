//! The keeper thread: preallocates the ring ahead of the writer and runs checkpoints.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, error, warn};

use super::checkpoint::{self, Checkpoint};
use super::format::Zeros;
use super::{lock, Inner};
use crate::error::{LogError, Result};
use crate::log::Log;

/// Bytes of zeros written per call while preallocating.
const ZERO_CHUNK_BYTES: usize = 1 << 20;
/// How long the keeper waits after a failed checkpoint before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How often the keeper starts writeback of a slice of the dirty partitions.
const SWEEP_TICK: Duration = Duration::from_millis(20);
/// Each dirty partition's writeback is started about this often (or every half
/// checkpoint interval, when that is longer: see [`sweep`]).
const SWEEP_PERIOD_MIN: Duration = Duration::from_millis(500);
/// Appended bytes below which a partition's writeback waits for a later sweep.
const SWEEP_BYTES_MIN: u64 = 4096;

/// What the keeper does next.
enum Task {
    Grow,
    Checkpoint,
    Sweep,
    Stop,
}

/// Runs until the journal stops.
pub(super) fn run(inner: &Inner) {
    let zeros = Zeros::new(ZERO_CHUNK_BYTES);
    // Each pass does one task or waits for one.
    loop {
        match next_task(inner) {
            Task::Stop => return,
            Task::Grow => {
                if let Err(e) = grow(inner, &zeros) {
                    error!(journal = %inner.dir.display(), error = %e, "Cannot preallocate the journal");
                    inner.failed.store(true, Ordering::SeqCst);
                    inner.ring_changed.notify_all();
                    return;
                }
            }
            Task::Sweep => sweep(inner),
            Task::Checkpoint => {
                if let Err(e) = checkpoint(inner) {
                    warn!(journal = %inner.dir.display(), error = %e, "Checkpoint failed; retrying");
                    inner.checkpoint_failed.store(true, Ordering::SeqCst);
                    inner.ring_changed.notify_all();
                    std::thread::sleep(RETRY_AFTER);
                }
            }
        }
    }
}

fn next_task(inner: &Inner) -> Task {
    let mut ring = lock(&inner.ring);
    // Each pass re-checks after a wake-up.
    loop {
        if inner.stopping() {
            return Task::Stop;
        }
        if ring.wants_growth(inner.config.grow_bytes) && !inner.failed.load(Ordering::SeqCst) {
            return Task::Grow;
        }
        if checkpoint_due(inner, &ring) && inner.recovery_done.load(Ordering::SeqCst) {
            return Task::Checkpoint;
        }
        // Sweeps run while commits keep coming; an idle journal leaves the keeper asleep
        // until the next commit wakes it.
        let commits = inner.stats.commits.load(Ordering::Relaxed);
        let active = commits != inner.swept_at_commits.swap(commits, Ordering::Relaxed);
        if !active || lock(&inner.pending).dirty.is_empty() {
            inner.keeper_idle.store(true, Ordering::SeqCst);
            ring = inner.ring_changed.wait(ring).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let (guard, timeout) = inner
            .ring_changed
            .wait_timeout(ring, SWEEP_TICK)
            .unwrap_or_else(|e| e.into_inner());
        ring = guard;
        if timeout.timed_out() {
            return Task::Sweep;
        }
    }
}

/// Starts writeback for the next slice of dirty partitions, so each gets one about every
/// sweep period: their bytes reach the disk at the pace they arrive instead of in one
/// burst at the checkpoint, which the journal's writes would wait behind.
fn sweep(inner: &Inner) {
    let period = SWEEP_PERIOD_MIN.max(Duration::from_millis(
        inner.checkpoint_interval_ms.load(Ordering::Relaxed) / 2,
    ));
    let logs: Vec<Log> = {
        let mut p = lock(&inner.pending);
        let dirty = p.dirty.len();
        if dirty == 0 {
            return;
        }
        let slice = (dirty as u128 * SWEEP_TICK.as_nanos()).div_ceil(period.as_nanos().max(1)) as usize;
        let start = p.sweep_cursor % dirty;
        p.sweep_cursor = start + slice;
        (start..start + slice.min(dirty))
            .filter_map(|i| Log::upgrade(&p.dirty[i % dirty]))
            .collect()
    };
    let n = logs.len();
    for log in logs {
        log.start_writeback(SWEEP_BYTES_MIN);
    }
    tracing::trace!(logs = n, period_ms = period.as_millis() as u64, "Writeback sweep");
}

/// A checkpoint is due once `checkpoint_bytes` were written, but with more dirty logs than
/// are synced one by one only once half the ring is used: syncing the whole file system
/// writes every dirty inode, so for thousands of partitions fewer, larger checkpoints cost
/// the disk far less.
pub(super) fn checkpoint_due(inner: &Inner, ring: &super::ring::Ring) -> bool {
    let used = ring.used();
    if used < inner.config.checkpoint_bytes {
        return false;
    }
    used >= ring.ring_bytes / 2 || lock(&inner.pending).dirty.len() <= inner.config.checkpoint_syncs_max
}

/// Zero-fills the next growth step of the file and makes it durable (with direct writes,
/// so no page-cache copy of the zeros is left to invalidate when the writer overwrites it).
fn grow(inner: &Inner, zeros: &Zeros) -> std::io::Result<()> {
    let (from, ring_bytes) = {
        let ring = lock(&inner.ring);
        (ring.grown, ring.ring_bytes)
    };
    let to = (from + inner.config.grow_bytes).min(ring_bytes);
    let mut at = from;
    // Bounded by the growth step.
    while at < to {
        let n = (to - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        inner.file.write_all_at(zeros.get(n), at)?;
        at += n as u64;
    }
    inner.file.sync_data()?;
    lock(&inner.ring).grown = to;
    inner.ring_changed.notify_all();
    debug!(journal = %inner.dir.display(), bytes = to, "Journal preallocated");
    Ok(())
}

/// Makes everything written before the current head durable in the logs' own segments,
/// then moves the checkpoint there, releasing the ring behind it.
pub(super) fn checkpoint(inner: &Inner) -> Result<()> {
    let started = Instant::now();
    let target = {
        let ring = lock(&inner.ring);
        Checkpoint {
            ring_bytes: ring.ring_bytes,
            position: ring.head,
            lsn: ring.lsn,
        }
    };
    // Taken after the head: every log with an entry before it is in the list.
    let dirty: Vec<Log> = std::mem::take(&mut lock(&inner.pending).dirty)
        .iter()
        .filter_map(Log::upgrade)
        .collect();
    for log in &dirty {
        // Cleared before the sync: an append after this point lists the log again.
        log.clear_journal_dirty();
        log.writeback_covered();
    }
    if let Err(e) = sync_logs(inner, &dirty) {
        // Listed again so the next attempt syncs them too.
        let mut p = lock(&inner.pending);
        for log in &dirty {
            if log.mark_journal_dirty() {
                p.dirty.push(log.downgrade());
            }
        }
        return Err(e);
    }
    checkpoint::write(inner.storage.as_ref(), &inner.dir, &target)
        .map_err(LogError::io("write journal checkpoint", &inner.dir))?;
    lock(&inner.ring).checkpoint = target.position;
    let now_ms = crate::log::now_ms();
    let last = inner.last_checkpoint_ms.swap(now_ms, Ordering::Relaxed);
    if last > 0 {
        inner
            .checkpoint_interval_ms
            .store(u64::try_from(now_ms - last).unwrap_or(0), Ordering::Relaxed);
    }
    inner.checkpoint_failed.store(false, Ordering::SeqCst);
    inner.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
    inner.ring_changed.notify_all();
    debug!(
        logs = dirty.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Journal checkpoint"
    );
    Ok(())
}

/// Syncs the segments of `logs`: one fdatasync each when few, one syncfs when many (and
/// each on its own if that fails, so a failing partition is found and refuses writes).
fn sync_logs(inner: &Inner, logs: &[Log]) -> Result<()> {
    if logs.len() > inner.config.checkpoint_syncs_max {
        match inner.storage.sync_file_system(&inner.root) {
            Ok(()) => return Ok(()),
            Err(e) => warn!(error = %e, "syncfs failed; syncing partitions one by one"),
        }
    }
    let mut first_error = None;
    for log in logs {
        if let Err(e) = log.sync_segment() {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
