//! Per-partition bookkeeping of dispatched and finished offsets.
//!
//! Handlers finish out of offset order (different keys run on different workers), so the
//! committable offset of a partition is the lowest offset still being handled, or the one
//! after the last dispatched when nothing is. Each assignment of a partition gets a new
//! epoch; results of an older epoch (the partition was revoked meanwhile) are ignored.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::transport::{InRecord, TopicPartition};

#[derive(Debug, Default)]
struct PartState {
    epoch: u64,
    outstanding: BTreeSet<i64>,
    next: Option<i64>,
    committed: Option<i64>,
    paused: bool,
    rewound: Option<i64>,
}

impl PartState {
    fn commit_point(&self) -> Option<i64> {
        self.outstanding.first().copied().or(self.next)
    }
}

/// What to do with a polled record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Hand it to a worker; carries the partition's epoch.
    Dispatch(u64),
    /// Drop it: not assigned, already dispatched, or before a rewind point.
    Drop,
    /// The partition is full: pause it and rewind to this record.
    Pause,
}

/// Dispatched and finished offsets of every assigned partition.
#[derive(Debug, Default)]
pub struct Progress {
    parts: Mutex<HashMap<TopicPartition, PartState>>,
    finished: Condvar,
    epochs: AtomicU64,
}

impl Progress {
    /// Empty progress.
    pub fn new() -> Progress {
        Progress::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TopicPartition, PartState>> {
        match self.parts.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Starts tracking a newly assigned partition, whose committed offset is `committed`
    /// if known.
    pub fn assign(&self, tp: &TopicPartition, committed: Option<i64>) {
        let epoch = self.epochs.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(
            tp.clone(),
            PartState {
                epoch,
                committed,
                ..PartState::default()
            },
        );
    }

    /// Stops tracking a partition; returns the offset to commit before giving it up, if
    /// anything was handled since the last commit.
    pub fn revoke(&self, tp: &TopicPartition) -> Option<i64> {
        let state = self.lock().remove(tp)?;
        let point = state.commit_point()?;
        match state.committed {
            Some(c) if c >= point => None,
            _ => Some(point),
        }
    }

    /// Partitions currently tracked.
    pub fn assigned(&self) -> Vec<TopicPartition> {
        let mut all: Vec<_> = self.lock().keys().cloned().collect();
        all.sort();
        all
    }

    /// Decides what to do with a polled record, given the in-flight bound per partition.
    pub fn admit(&self, record: &InRecord, in_flight_max: usize) -> Admit {
        let mut parts = self.lock();
        let Some(state) = parts.get_mut(&record.topic_partition()) else {
            return Admit::Drop;
        };
        if let Some(at) = state.rewound {
            if record.offset != at {
                return Admit::Drop;
            }
            state.rewound = None;
        }
        if state.next.is_some_and(|n| record.offset < n) {
            return Admit::Drop;
        }
        if state.outstanding.len() >= in_flight_max {
            state.paused = true;
            state.rewound = Some(record.offset);
            return Admit::Pause;
        }
        state.outstanding.insert(record.offset);
        state.next = Some(record.offset + 1);
        Admit::Dispatch(state.epoch)
    }

    /// True while the partition is still assigned in the given epoch.
    pub fn is_current(&self, tp: &TopicPartition, epoch: u64) -> bool {
        self.lock().get(tp).is_some_and(|s| s.epoch == epoch)
    }

    /// Records that the event at `offset` is finished (handled, skipped or dead-lettered).
    pub fn complete(&self, tp: &TopicPartition, epoch: u64, offset: i64) {
        let mut parts = self.lock();
        if let Some(state) = parts.get_mut(tp) {
            if state.epoch == epoch {
                state.outstanding.remove(&offset);
            }
        }
        drop(parts);
        self.finished.notify_all();
    }

    /// Offsets to commit: every partition whose commit point moved past its last commit.
    pub fn commit_points(&self) -> Vec<(TopicPartition, i64)> {
        let parts = self.lock();
        let mut out: Vec<_> = parts
            .iter()
            .filter_map(|(tp, s)| {
                let point = s.commit_point()?;
                match s.committed {
                    Some(c) if c >= point => None,
                    _ => Some((tp.clone(), point)),
                }
            })
            .collect();
        out.sort();
        out
    }

    /// Remembers successful commits.
    pub fn mark_committed(&self, points: &[(TopicPartition, i64)]) {
        let mut parts = self.lock();
        for (tp, offset) in points {
            if let Some(s) = parts.get_mut(tp) {
                s.committed = Some(s.committed.map_or(*offset, |c| c.max(*offset)));
            }
        }
    }

    /// Paused partitions whose in-flight count fell to `threshold` or below; they are
    /// marked resumed.
    pub fn take_resumable(&self, threshold: usize) -> Vec<TopicPartition> {
        let mut parts = self.lock();
        let mut out = Vec::new();
        for (tp, s) in parts.iter_mut() {
            if s.paused && s.outstanding.len() <= threshold {
                s.paused = false;
                out.push(tp.clone());
            }
        }
        out
    }

    /// Events dispatched and not finished, over all partitions (or the given ones).
    pub fn in_flight(&self, only: Option<&[TopicPartition]>) -> usize {
        let parts = self.lock();
        parts
            .iter()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .map(|(_, s)| s.outstanding.len())
            .sum()
    }

    /// Blocks until the given partitions have nothing in flight, or `timeout` passes.
    /// Returns true when idle.
    pub fn wait_idle_blocking(&self, only: &[TopicPartition], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut parts = self.lock();
        loop {
            let busy: usize = parts
                .iter()
                .filter(|(tp, _)| only.contains(tp))
                .map(|(_, s)| s.outstanding.len())
                .sum();
            if busy == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            parts = match self.finished.wait_timeout(parts, deadline - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Waits (asynchronously) until the given partitions, or all, have nothing in flight, or
    /// `timeout` passes. Returns true when idle.
    pub async fn wait_idle(&self, only: Option<&[TopicPartition]>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.in_flight(only) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64) -> InRecord {
        InRecord {
            topic: "t".into(),
            partition: 0,
            offset,
            timestamp_ms: 0,
            key: None,
            value: None,
            headers: vec![],
        }
    }

    #[test]
    fn commit_point_is_lowest_unfinished_offset() {
        let p = Progress::new();
        let tp = TopicPartition::new("t", 0);
        p.assign(&tp, None);
        let e = match p.admit(&rec(10), 8) {
            Admit::Dispatch(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(p.admit(&rec(11), 8), Admit::Dispatch(e));
        assert_eq!(p.admit(&rec(12), 8), Admit::Dispatch(e));
        p.complete(&tp, e, 11);
        p.complete(&tp, e, 12);
        assert_eq!(p.commit_points(), vec![(tp.clone(), 10)]);
        p.complete(&tp, e, 10);
        assert_eq!(p.commit_points(), vec![(tp.clone(), 13)]);
        p.mark_committed(&[(tp.clone(), 13)]);
        assert!(p.commit_points().is_empty());
        assert_eq!(p.admit(&rec(12), 8), Admit::Drop, "already dispatched");
    }

    #[test]
    fn full_partition_pauses_and_drops_until_rewind_point() {
        let p = Progress::new();
        let tp = TopicPartition::new("t", 0);
        p.assign(&tp, Some(0));
        let Admit::Dispatch(e) = p.admit(&rec(0), 1) else {
            panic!("first record dispatches")
        };
        assert_eq!(p.admit(&rec(1), 1), Admit::Pause);
        assert_eq!(p.admit(&rec(2), 1), Admit::Drop, "records after the rewind point");
        assert!(p.take_resumable(0).is_empty());
        p.complete(&tp, e, 0);
        assert_eq!(p.take_resumable(0), vec![tp.clone()]);
        assert_eq!(p.admit(&rec(1), 1), Admit::Dispatch(e));
    }

    #[test]
    fn results_of_a_revoked_epoch_are_ignored() {
        let p = Progress::new();
        let tp = TopicPartition::new("t", 0);
        p.assign(&tp, None);
        let Admit::Dispatch(old) = p.admit(&rec(5), 4) else {
            panic!("dispatch")
        };
        assert_eq!(p.revoke(&tp), Some(5));
        p.assign(&tp, Some(5));
        assert!(!p.is_current(&tp, old));
        p.complete(&tp, old, 5);
        assert_eq!(p.admit(&rec(5), 4), Admit::Dispatch(old + 1));
        assert_eq!(p.in_flight(None), 1);
    }
}
