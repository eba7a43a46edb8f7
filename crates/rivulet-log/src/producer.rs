//! Idempotent producer state: the last batches of each producer id, for deduplication.
//!
//! Kafka clients retry a batch whose acknowledgement was lost. The log keeps, per producer
//! id, the epoch and the sequence ranges and offsets of its last [`BATCHES_KEPT`] batches, so
//! a retried batch is answered with its original offsets and a gap in sequences is refused.
//! The state is rebuilt on open from the batch headers in the log.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::error::{LogError, Result};

/// Batches remembered per producer, as in Kafka.
pub const BATCHES_KEPT: usize = 5;
/// Producer ids remembered per partition; the least recently used are forgotten beyond this.
pub const PRODUCERS_MAX: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_used: u64,
}

/// One producer id as a partition knows it (for DescribeProducers and admin views).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSnapshot {
    /// The producer id.
    pub producer_id: i64,
    /// The newest epoch seen.
    pub producer_epoch: i16,
    /// Sequence of its last appended record at that epoch; -1 when none (after a marker).
    pub last_sequence: i32,
    /// Timestamp of its last appended batch (ms); -1 when none.
    pub last_timestamp_ms: i64,
    /// First offset of its open transaction here; -1 when none.
    pub txn_start_offset: i64,
}

/// What the producer state says about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Not an idempotent batch, or the next in sequence: append it.
    Append,
    /// Already appended: answer with these offsets.
    Duplicate(BatchMeta),
}

/// Producer ids and their recent batches, for one partition.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    tick: u64,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerState {
    /// Decides whether `header` is new, a duplicate, or out of order.
    pub fn check(&self, header: &BatchHeader) -> Result<Check> {
        if header.producer_id < 0 || header.base_sequence < 0 {
            return Ok(Check::Append);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return Ok(Check::Append);
        };
        if header.producer_epoch < entry.epoch {
            return Err(LogError::ProducerFenced {
                producer_id: header.producer_id,
                current: entry.epoch,
                received: header.producer_epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            if header.base_sequence != 0 {
                return Err(LogError::OutOfOrderSequence {
                    producer_id: header.producer_id,
                    expected: 0,
                    received: header.base_sequence,
                });
            }
            return Ok(Check::Append);
        }
        let last_seq = header.last_sequence();
        if let Some(meta) = entry
            .batches
            .iter()
            .find(|m| m.first_seq == header.base_sequence && m.last_seq == last_seq)
        {
            return Ok(Check::Duplicate(*meta));
        }
        let expected = entry.batches.back().map_or(0, |m| next_seq(m.last_seq));
        if header.base_sequence != expected {
            return Err(LogError::OutOfOrderSequence {
                producer_id: header.producer_id,
                expected,
                received: header.base_sequence,
            });
        }
        Ok(Check::Append)
    }

    /// Records an appended batch (with its final offsets).
    pub fn record(&mut self, header: &BatchHeader, timestamp_ms: i64) {
        if header.is_control() && header.producer_id >= 0 {
            self.fence_below(header.producer_id, header.producer_epoch);
            return;
        }
        if header.producer_id < 0 || header.base_sequence < 0 {
            return;
        }
        self.tick += 1;
        let tick = self.tick;
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_KEPT),
                last_used: tick,
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_used = tick;
        if entry.batches.len() == BATCHES_KEPT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            timestamp_ms,
        });
        assert!(entry.batches.len() <= BATCHES_KEPT);
        if self.producers.len() > PRODUCERS_MAX {
            self.evict_oldest();
        }
    }

    /// A transaction marker written at `epoch`: batches of older epochs are refused from
    /// now on, and the producer starts its sequences again at this epoch.
    fn fence_below(&mut self, producer_id: i64, epoch: i16) {
        self.tick += 1;
        let tick = self.tick;
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(BATCHES_KEPT),
                last_used: tick,
            });
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.last_used = tick;
        if self.producers.len() > PRODUCERS_MAX {
            self.evict_oldest();
        }
    }

    /// Every remembered producer, by id; `txn_start` gives the first offset of a
    /// producer's open transaction.
    pub fn snapshot(&self, txn_start: impl Fn(i64) -> Option<i64>) -> Vec<ProducerSnapshot> {
        let mut out: Vec<ProducerSnapshot> = self
            .producers
            .iter()
            .map(|(&producer_id, e)| {
                let last = e.batches.back();
                ProducerSnapshot {
                    producer_id,
                    producer_epoch: e.epoch,
                    last_sequence: last.map_or(-1, |b| b.last_seq),
                    last_timestamp_ms: last.map_or(-1, |b| b.timestamp_ms),
                    txn_start_offset: txn_start(producer_id).unwrap_or(-1),
                }
            })
            .collect();
        out.sort_unstable_by_key(|p| p.producer_id);
        out
    }

    fn evict_oldest(&mut self) {
        if let Some((&pid, _)) = self.producers.iter().min_by_key(|(_, e)| e.last_used) {
            self.producers.remove(&pid);
        }
    }

    /// Number of producer ids remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.producers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut s = ProducerState::default();
        let h = header(7, 0, 0, 3, 100);
        assert_eq!(s.check(&h).expect("new"), Check::Append);
        s.record(&h, 0);
        // Retry of the same batch: duplicate with original offsets.
        match s.check(&header(7, 0, 0, 3, -1)).expect("dup") {
            Check::Duplicate(m) => assert_eq!((m.base_offset, m.last_offset), (100, 102)),
            other => panic!("expected duplicate, got {other:?}"),
        }
        // Gap.
        assert!(matches!(
            s.check(&header(7, 0, 5, 1, -1)),
            Err(LogError::OutOfOrderSequence {
                expected: 3,
                received: 5,
                ..
            })
        ));
        // Next in sequence.
        assert_eq!(s.check(&header(7, 0, 3, 1, -1)).expect("next"), Check::Append);
        // Older epoch is fenced; newer epoch must restart at 0.
        s.record(&header(7, 1, 0, 1, 103), 0);
        assert!(matches!(
            s.check(&header(7, 0, 1, 1, -1)),
            Err(LogError::ProducerFenced { .. })
        ));
        assert!(s.check(&header(7, 2, 4, 1, -1)).is_err());
        assert_eq!(
            s.check(&header(7, 2, 0, 1, -1)).expect("new epoch"),
            Check::Append
        );
    }

    #[test]
    fn keeps_only_five_batches() {
        let mut s = ProducerState::default();
        for i in 0..8 {
            s.record(&header(1, 0, i, 1, i64::from(i)), 0);
        }
        assert!(s.check(&header(1, 0, 2, 1, -1)).is_err(), "batch 2 was forgotten");
        assert!(matches!(
            s.check(&header(1, 0, 7, 1, -1)),
            Ok(Check::Duplicate(_))
        ));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn snapshot_lists_each_producer_once_with_its_last_batch() {
        let mut s = ProducerState::default();
        s.record(&header(9, 3, 0, 4, 10), 1_000);
        s.record(&header(9, 3, 4, 2, 14), 2_000);
        s.record(&header(5, 0, 0, 1, 16), 3_000);
        let snap = s.snapshot(|pid| (pid == 9).then_some(10));
        assert_eq!(snap.len(), 2);
        assert_eq!(
            snap[1],
            ProducerSnapshot {
                producer_id: 9,
                producer_epoch: 3,
                last_sequence: 5,
                last_timestamp_ms: 2_000,
                txn_start_offset: 10,
            }
        );
        assert_eq!(
            (
                snap[0].producer_id,
                snap[0].last_sequence,
                snap[0].txn_start_offset
            ),
            (5, 0, -1)
        );
    }
}
