//! Counters and gauges of a running job.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::clock::WATERMARK_MIN;

/// What a job has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct JobStats {
    /// Input records processed (including ones processed again after a failed checkpoint;
    /// not counting the repartition topic's).
    pub records_in: u64,
    /// Results written to the output topic.
    pub results_out: u64,
    /// Records sent to the side output (late or too far in the future), one per missed
    /// window.
    pub late: u64,
    /// Records dead-lettered (not decodable).
    pub dead_lettered: u64,
    /// Checkpoints committed.
    pub checkpoints: u64,
    /// Checkpoints that failed (the job restarted from the last committed one).
    pub checkpoint_failures: u64,
    /// Duration of the last checkpoint (ms).
    pub checkpoint_last_ms: i64,
    /// Open windows held (at the last checkpoint).
    pub state_entries: u64,
    /// Lowest task watermark (ms), `None` before any.
    pub watermark_ms: Option<i64>,
    /// Tasks (partition indexes) this instance holds.
    pub tasks: u64,
    /// State entries restored from the local copy (`state_dir`).
    #[serde(default)]
    pub restored_from_copy: u64,
    /// Changelog records read to restore state.
    #[serde(default)]
    pub restored_from_changelog: u64,
    /// Time spent restoring state (ms, all restores).
    #[serde(default)]
    pub restore_ms: u64,
}

#[derive(Debug)]
pub(crate) struct Stats {
    pub records_in: AtomicU64,
    pub results_out: AtomicU64,
    pub late: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_failures: AtomicU64,
    pub checkpoint_last_ms: AtomicI64,
    pub state_entries: AtomicU64,
    pub watermark_ms: AtomicI64,
    pub tasks: AtomicU64,
    pub restored_from_copy: AtomicU64,
    pub restored_from_changelog: AtomicU64,
    pub restore_ms: AtomicU64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            records_in: AtomicU64::new(0),
            results_out: AtomicU64::new(0),
            late: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            checkpoint_failures: AtomicU64::new(0),
            checkpoint_last_ms: AtomicI64::new(0),
            state_entries: AtomicU64::new(0),
            watermark_ms: AtomicI64::new(WATERMARK_MIN),
            tasks: AtomicU64::new(0),
            restored_from_copy: AtomicU64::new(0),
            restored_from_changelog: AtomicU64::new(0),
            restore_ms: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> JobStats {
        let wm = self.watermark_ms.load(Ordering::Relaxed);
        JobStats {
            records_in: self.records_in.load(Ordering::Relaxed),
            results_out: self.results_out.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            checkpoint_failures: self.checkpoint_failures.load(Ordering::Relaxed),
            checkpoint_last_ms: self.checkpoint_last_ms.load(Ordering::Relaxed),
            state_entries: self.state_entries.load(Ordering::Relaxed),
            watermark_ms: (wm != WATERMARK_MIN).then_some(wm),
            tasks: self.tasks.load(Ordering::Relaxed),
            restored_from_copy: self.restored_from_copy.load(Ordering::Relaxed),
            restored_from_changelog: self.restored_from_changelog.load(Ordering::Relaxed),
            restore_ms: self.restore_ms.load(Ordering::Relaxed),
        }
    }
}
