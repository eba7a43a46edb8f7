//! Per-record settlement of a partition shared by many consumers: each record is acquired
//! by one consumer for a limited time, then accepted, released for redelivery or rejected.
//!
//! This is the state Kafka share groups (KIP-932) keep per partition, and what a queue
//! consumed by competing consumers needs. Offsets below `start` are settled; offsets in
//! `[start, end)` are tracked one by one; offsets from `end` on have never been handed out.
//! Every record's delivery count survives releases and lock expiries, and a record
//! delivered `delivery_limit` times is archived instead of being offered again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a consumer settles records it acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Processed: never delivered again.
    Accept,
    /// Not processed: offered again (until the delivery limit archives it).
    Release,
    /// Unprocessable: archived, never delivered again.
    Reject,
}

/// Why a settlement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// An offset in the range is not currently acquired by this consumer (its lock expired,
    /// it was settled already, or it was never handed out).
    #[error("offset {offset} is not acquired by this consumer")]
    NotAcquired {
        /// The first such offset.
        offset: i64,
    },
}

/// A contiguous range of records handed to one consumer, all with the same delivery count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcquiredRange {
    /// First offset.
    pub first: i64,
    /// Last offset (inclusive).
    pub last: i64,
    /// How many times these records have been handed out, this time included.
    pub delivery_count: u16,
}

/// Limits of one shared partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleLimits {
    /// How long an acquired record stays with its consumer.
    pub lock: Duration,
    /// Deliveries after which a released or expired record is archived.
    pub delivery_limit: u16,
    /// Offsets tracked one by one at most (`end - start`).
    pub window: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Available,
    Acquired { owner: Arc<str>, until: Instant },
    Settled,
}

#[derive(Debug, Clone)]
struct Record {
    state: State,
    delivery_count: u16,
}

impl Record {
    /// The state of a record given back (released, its lock passed, its holder gone):
    /// available again, or archived once delivered `limit` times.
    fn given_back(&self, limit: u16) -> State {
        if self.delivery_count >= limit {
            State::Settled
        } else {
            State::Available
        }
    }
}

/// The settlement state of one partition.
#[derive(Debug, Clone)]
pub struct SharedPartition {
    start: i64,
    end: i64,
    records: BTreeMap<i64, Record>,
    limits: SettleLimits,
}

impl SharedPartition {
    /// A partition whose records before `start` count as settled.
    pub fn new(start: i64, limits: SettleLimits) -> SharedPartition {
        assert!(start >= 0);
        assert!(limits.window > 0 && limits.delivery_limit > 0);
        SharedPartition {
            start,
            end: start,
            records: BTreeMap::new(),
            limits,
        }
    }

    /// First offset not yet settled.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// First offset never handed out.
    pub fn end(&self) -> i64 {
        self.end
    }

    /// Records currently acquired.
    pub fn acquired(&self) -> usize {
        self.records
            .values()
            .filter(|r| matches!(r.state, State::Acquired { .. }))
            .count()
    }

    /// Hands up to `max` records to `owner`: released and expired ones first, then records
    /// never handed out, up to `available_end` (the end of what readers may see) and the
    /// tracking window. Returns the ranges acquired, in offset order.
    pub fn acquire(
        &mut self,
        owner: &Arc<str>,
        available_end: i64,
        max: usize,
        now: Instant,
    ) -> Vec<AcquiredRange> {
        self.expire(now);
        let until = now + self.limits.lock;
        let mut taken: Vec<(i64, u16)> = Vec::new();
        for (offset, r) in self.records.iter_mut() {
            if taken.len() >= max {
                break;
            }
            if r.state == State::Available {
                r.delivery_count = r.delivery_count.saturating_add(1);
                r.state = State::Acquired {
                    owner: owner.clone(),
                    until,
                };
                taken.push((*offset, r.delivery_count));
            }
        }
        let window_end = self.start.saturating_add(self.limits.window as i64);
        while taken.len() < max && self.end < available_end && self.end < window_end {
            self.records.insert(
                self.end,
                Record {
                    state: State::Acquired {
                        owner: owner.clone(),
                        until,
                    },
                    delivery_count: 1,
                },
            );
            taken.push((self.end, 1));
            self.end += 1;
        }
        taken.sort_unstable();
        ranges(&taken)
    }

    /// Settles `[first, last]`, every offset of which must be acquired by `owner`; nothing
    /// changes when one is not. Returns true when the start moved.
    pub fn settle(&mut self, owner: &str, first: i64, last: i64, how: Settle) -> Result<bool, SettleError> {
        if last < first {
            return Err(SettleError::NotAcquired { offset: first });
        }
        for offset in first..=last {
            let held = self
                .records
                .get(&offset)
                .is_some_and(|r| matches!(&r.state, State::Acquired { owner: o, .. } if o.as_ref() == owner));
            if !held {
                return Err(SettleError::NotAcquired { offset });
            }
        }
        let limit = self.limits.delivery_limit;
        for (_, r) in self.records.range_mut(first..=last) {
            r.state = match how {
                Settle::Accept | Settle::Reject => State::Settled,
                Settle::Release => r.given_back(limit),
            };
        }
        Ok(self.advance())
    }

    /// Makes records whose lock passed available again (or archives them at the delivery
    /// limit). Returns true when the start moved.
    pub fn expire(&mut self, now: Instant) -> bool {
        self.give_back_where(
            i64::MIN,
            i64::MAX,
            |state| matches!(state, State::Acquired { until, .. } if *until <= now),
        )
    }

    /// Releases every record `owner` holds (it left or was removed). Returns true when the
    /// start moved.
    pub fn release_owner(&mut self, owner: &str) -> bool {
        self.release_range(owner, i64::MIN, i64::MAX)
    }

    /// Gives back records acquired by `owner` in `[first, last]` that were never delivered
    /// (the answer had no room for them): available again, their delivery not counted.
    pub fn unacquire(&mut self, owner: &str, first: i64, last: i64) {
        for (_, r) in self.records.range_mut(first..=last.max(first)) {
            if matches!(&r.state, State::Acquired { owner: o, .. } if o.as_ref() == owner) {
                r.state = State::Available;
                r.delivery_count = r.delivery_count.saturating_sub(1);
            }
        }
    }

    /// Releases what `owner` holds in `[first, last]`, as [`Settle::Release`] would, without
    /// requiring it to hold every offset. Returns true when the start moved.
    pub fn release_range(&mut self, owner: &str, first: i64, last: i64) -> bool {
        self.give_back_where(
            first,
            last,
            |state| matches!(state, State::Acquired { owner: o, .. } if o.as_ref() == owner),
        )
    }

    /// Gives back the records in `[first, last]` whose state `pick` selects (available
    /// again, archived at the delivery limit); true when the start moved.
    fn give_back_where(&mut self, first: i64, last: i64, pick: impl Fn(&State) -> bool) -> bool {
        let limit = self.limits.delivery_limit;
        let mut any = false;
        for (_, r) in self.records.range_mut(first..=last.max(first)) {
            if pick(&r.state) {
                r.state = r.given_back(limit);
                any = true;
            }
        }
        any && self.advance()
    }

    /// Records a consumer could be handed now: available ones in the window and those never
    /// handed out up to `available_end`.
    pub fn ready(&self, available_end: i64) -> u64 {
        let waiting = self
            .records
            .values()
            .filter(|r| r.state == State::Available)
            .count();
        waiting as u64 + u64::try_from(available_end - self.end).unwrap_or(0)
    }

    /// Offsets in the window that are available again (released or expired), lowest first.
    pub fn available_in_window(&self) -> impl Iterator<Item = i64> + '_ {
        self.records
            .iter()
            .filter(|(_, r)| r.state == State::Available)
            .map(|(offset, _)| *offset)
    }

    /// Settles every record not currently acquired, up to `available_end` (a queue purge).
    /// Returns how many were dropped.
    pub fn purge(&mut self, available_end: i64) -> u64 {
        let mut dropped = 0u64;
        for r in self.records.values_mut() {
            if r.state == State::Available {
                r.state = State::Settled;
                dropped += 1;
            }
        }
        if available_end > self.end {
            dropped += u64::try_from(available_end - self.end).unwrap_or(0);
            if self.records.is_empty() {
                self.start = available_end;
            } else {
                for offset in self.end..available_end {
                    self.records.insert(
                        offset,
                        Record {
                            state: State::Settled,
                            delivery_count: 0,
                        },
                    );
                }
            }
            self.end = available_end;
        }
        self.advance();
        dropped
    }

    /// Settled ranges `[first, last]` above the start, at most `max` of them, lowest first.
    pub fn settled_ranges(&self, max: usize) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = Vec::new();
        for (offset, r) in &self.records {
            if r.state != State::Settled {
                continue;
            }
            let full = out.len() >= max;
            match out.last_mut() {
                Some(last) if last.1 + 1 == *offset => last.1 = *offset,
                _ if full => break,
                _ => out.push((*offset, *offset)),
            }
        }
        out
    }

    /// Restores the state stored before a restart: `[first, last]` ranges above the start
    /// are settled; the other records below `delivered_end` were handed out before, so they
    /// count one delivery (they come back marked as redelivered).
    pub fn restore(&mut self, settled: &[(i64, i64)], delivered_end: i64) {
        let end = settled
            .iter()
            .map(|r| r.1 + 1)
            .max()
            .unwrap_or(0)
            .max(delivered_end);
        if end <= self.end {
            return;
        }
        let window_end = self.start.saturating_add(self.limits.window as i64);
        let end = end.min(window_end);
        for offset in self.end..end {
            let done = settled.iter().any(|r| r.0 <= offset && offset <= r.1);
            let state = if done { State::Settled } else { State::Available };
            self.records.insert(
                offset,
                Record {
                    state,
                    delivery_count: 1,
                },
            );
        }
        self.end = end;
        self.advance();
    }

    /// True when `offset` is settled (below the start, or settled above it).
    pub fn is_settled(&self, offset: i64) -> bool {
        offset < self.start
            || self
                .records
                .get(&offset)
                .is_some_and(|r| r.state == State::Settled)
    }

    /// Skips records the log no longer holds (retention, DeleteRecords).
    pub fn skip_to(&mut self, log_start: i64) {
        if log_start <= self.start {
            return;
        }
        self.records = self.records.split_off(&log_start);
        self.start = log_start;
        self.end = self.end.max(log_start);
    }

    /// Moves the start past settled records; true when it moved.
    fn advance(&mut self) -> bool {
        let before = self.start;
        while let Some(entry) = self.records.first_entry() {
            if entry.get().state != State::Settled {
                break;
            }
            entry.remove();
            self.start += 1;
        }
        if self.records.is_empty() {
            self.start = self.end;
        }
        assert!(self.start <= self.end);
        self.start != before
    }
}

/// Contiguous runs of `(offset, delivery count)` with one count each.
fn ranges(taken: &[(i64, u16)]) -> Vec<AcquiredRange> {
    let mut out: Vec<AcquiredRange> = Vec::new();
    for &(offset, count) in taken {
        match out.last_mut() {
            Some(r) if r.last + 1 == offset && r.delivery_count == count => r.last = offset,
            _ => out.push(AcquiredRange {
                first: offset,
                last: offset,
                delivery_count: count,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> SettleLimits {
        SettleLimits {
            lock: Duration::from_secs(30),
            delivery_limit: 3,
            window: 100,
        }
    }

    fn owner(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn records_go_to_one_consumer_at_a_time_and_the_start_follows_acceptance() {
        let now = Instant::now();
        let mut p = SharedPartition::new(10, limits());
        let (a, b) = (owner("a"), owner("b"));
        assert_eq!(
            p.acquire(&a, 20, 4, now),
            vec![AcquiredRange {
                first: 10,
                last: 13,
                delivery_count: 1
            }]
        );
        assert_eq!(
            p.acquire(&b, 20, 4, now),
            vec![AcquiredRange {
                first: 14,
                last: 17,
                delivery_count: 1
            }]
        );
        assert_eq!(
            p.settle("b", 14, 17, Settle::Accept),
            Ok(false),
            "10..13 still held"
        );
        assert_eq!(
            p.settle("b", 10, 10, Settle::Accept),
            Err(SettleError::NotAcquired { offset: 10 })
        );
        assert_eq!(p.settle("a", 10, 13, Settle::Accept), Ok(true));
        assert_eq!((p.start(), p.end()), (18, 18));
    }

    #[test]
    fn released_and_expired_records_come_back_with_their_count_until_archived() {
        let now = Instant::now();
        let mut p = SharedPartition::new(0, limits());
        let a = owner("a");
        p.acquire(&a, 2, 10, now);
        p.settle("a", 0, 0, Settle::Release).expect("release");
        // Offset 0 again (count 2); 1 is still held.
        assert_eq!(
            p.acquire(&a, 2, 10, now),
            vec![AcquiredRange {
                first: 0,
                last: 0,
                delivery_count: 2
            }]
        );
        // Both locks expire: 0 comes back a third time, 1 a second.
        let later = now + Duration::from_secs(31);
        let again = p.acquire(&a, 2, 10, later);
        assert_eq!(
            again,
            vec![
                AcquiredRange {
                    first: 0,
                    last: 0,
                    delivery_count: 3
                },
                AcquiredRange {
                    first: 1,
                    last: 1,
                    delivery_count: 2
                },
            ]
        );
        // The third delivery was the last: releasing 0 archives it.
        p.settle("a", 0, 0, Settle::Release).expect("release");
        assert_eq!(p.start(), 1);
        p.settle("a", 1, 1, Settle::Reject).expect("reject");
        assert_eq!(p.start(), 2);
        assert!(p.acquire(&a, 2, 10, later).is_empty());
    }

    #[test]
    fn a_departed_consumers_records_are_offered_to_the_others_and_the_window_bounds_tracking() {
        let now = Instant::now();
        let mut p = SharedPartition::new(
            0,
            SettleLimits {
                window: 5,
                ..limits()
            },
        );
        p.acquire(&owner("gone"), 100, 3, now);
        assert!(!p.release_owner("gone"));
        let b = owner("b");
        let got = p.acquire(&b, 100, 10, now);
        assert_eq!(
            got,
            vec![
                AcquiredRange {
                    first: 0,
                    last: 2,
                    delivery_count: 2
                },
                AcquiredRange {
                    first: 3,
                    last: 4,
                    delivery_count: 1
                },
            ],
            "the window holds 5 offsets"
        );
        p.skip_to(4);
        assert_eq!((p.start(), p.acquired()), (4, 1));
    }

    proptest! {
        /// Whatever consumers do, an offset is acquired by at most one of them, the start
        /// never passes an unsettled offset and never moves back.
        #[test]
        fn settlement_invariants_hold(ops in proptest::collection::vec((0u8..4, 0usize..3, 0i64..30, 1usize..6), 1..200)) {
            let owners = [owner("a"), owner("b"), owner("c")];
            let mut p = SharedPartition::new(0, limits());
            let mut now = Instant::now();
            let mut accepted = std::collections::BTreeSet::new();
            for (op, who, offset, n) in ops {
                let before = p.start();
                match op {
                    0 => {
                        for r in p.acquire(&owners[who], 30, n, now) {
                            prop_assert!(r.first >= p.start() && r.last < p.end());
                            prop_assert!(r.delivery_count >= 1 && r.delivery_count <= 3);
                        }
                    }
                    1 => {
                        if p.settle(&owners[who], offset, offset, Settle::Accept).is_ok() {
                            prop_assert!(accepted.insert(offset), "offset {} accepted twice", offset);
                        }
                    }
                    2 => { let _ = p.settle(&owners[who], offset, offset, Settle::Release); }
                    _ => now += Duration::from_secs(16),
                }
                prop_assert!(p.start() >= before);
                let mut holders = 0;
                for r in p.records.values() {
                    if matches!(r.state, State::Acquired { .. }) { holders += 1; }
                }
                prop_assert!(holders <= (p.end() - p.start()) as usize);
                if let Some((first, r)) = p.records.iter().next() {
                    prop_assert_eq!(*first, p.start());
                    prop_assert!(r.state != State::Settled);
                }
            }
        }
    }
}
