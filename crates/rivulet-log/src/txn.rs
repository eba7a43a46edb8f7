//! Transactions as one partition sees them: which producers have a transaction open here,
//! the last stable offset, and the aborted transactions read_committed readers must drop.
//!
//! A transactional producer's batches carry the transactional attribute; a transaction
//! ends in each partition with a control batch (a commit or abort marker) the coordinator
//! writes. Like the idempotent producer state, this index is a cache rebuilt from the
//! segments when the log opens (control batches are read whole; they are a few dozen
//! bytes).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::batch::{self, BatchHeader, HEADER_BYTES};
use crate::record::{self, Record};

/// Aborted transactions remembered per partition; the oldest are forgotten beyond this
/// (their records are long below any reader's position, or retention removed them).
pub const ABORTED_MAX: usize = 100_000;

/// Attribute bit of a transactional batch.
const TRANSACTIONAL_FLAG: i16 = 0x10;
/// Attribute bit of a control batch.
const CONTROL_FLAG: i16 = 0x20;

/// How a transaction ended in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The transaction's records are discarded by read_committed readers.
    Abort,
    /// The transaction's records become visible to read_committed readers.
    Commit,
}

impl Marker {
    fn control_type(self) -> i16 {
        match self {
            Marker::Abort => 0,
            Marker::Commit => 1,
        }
    }
}

/// A transaction aborted in one partition: its records lie in `[first_offset, last_offset]`
/// (the abort marker's offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer whose records to drop.
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
}

/// Which records a reader may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Everything up to the high watermark, open and aborted transactions included.
    #[default]
    ReadUncommitted,
    /// Only up to the last stable offset; aborted transactions are reported so the reader
    /// drops them.
    ReadCommitted,
}

/// Open transactions and aborted ones of one partition.
#[derive(Debug, Default, Clone)]
pub(crate) struct TxnIndex {
    /// Producer id → offset of its open transaction's first record here.
    open: HashMap<i64, i64>,
    /// First offset of each open transaction → how many start there (one per producer).
    open_starts: BTreeMap<i64, u32>,
    /// Aborted transactions in marker order.
    aborted: VecDeque<AbortedTxn>,
}

impl TxnIndex {
    /// Notes an appended batch; `marker` is the decoded marker of a control batch.
    pub fn note(&mut self, header: &BatchHeader, marker: Option<Marker>) {
        if !header.is_transactional() || header.producer_id < 0 {
            return;
        }
        if !header.is_control() {
            if let std::collections::hash_map::Entry::Vacant(e) = self.open.entry(header.producer_id) {
                e.insert(header.base_offset);
                *self.open_starts.entry(header.base_offset).or_insert(0) += 1;
            }
            return;
        }
        let Some(first_offset) = self.open.remove(&header.producer_id) else {
            return;
        };
        self.forget_start(first_offset);
        if marker == Some(Marker::Abort) {
            self.aborted.push_back(AbortedTxn {
                producer_id: header.producer_id,
                first_offset,
                last_offset: header.base_offset,
            });
            if self.aborted.len() > ABORTED_MAX {
                self.aborted.pop_front();
            }
        }
    }

    fn forget_start(&mut self, first_offset: i64) {
        if let Some(n) = self.open_starts.get_mut(&first_offset) {
            *n -= 1;
            if *n == 0 {
                self.open_starts.remove(&first_offset);
            }
        }
    }

    /// True when `producer_id` has a transaction open in this partition.
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.open.contains_key(&producer_id)
    }

    /// First offset of `producer_id`'s open transaction here, if any.
    pub fn open_start(&self, producer_id: i64) -> Option<i64> {
        self.open.get(&producer_id).copied()
    }

    /// First offset of the oldest open transaction, if any.
    pub fn first_open(&self) -> Option<i64> {
        self.open_starts.keys().next().copied()
    }

    /// Number of open transactions.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Aborted transactions whose records overlap `[from, to)`, in marker order.
    pub fn aborted_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below `log_start_offset`.
    pub fn trim(&mut self, log_start_offset: i64) {
        while self
            .aborted
            .front()
            .is_some_and(|a| a.last_offset < log_start_offset)
        {
            self.aborted.pop_front();
        }
    }
}

/// The marker of a control batch's bytes (`None` for a batch that is not a readable
/// control batch).
pub fn parse_marker(batch_bytes: &[u8]) -> Option<Marker> {
    let header = BatchHeader::parse(batch_bytes).ok()?;
    if !header.is_control() || header.compression() != 0 {
        return None;
    }
    let body = batch_bytes.get(HEADER_BYTES..header.total_bytes())?;
    let records = record::decode_all(body, header.record_count).ok()?;
    let key = records.first()?.key.as_ref()?;
    match key.get(2..4)? {
        [0, 0] => Some(Marker::Abort),
        [0, 1] => Some(Marker::Commit),
        _ => None,
    }
}

/// A control batch holding one marker of `producer_id` at `producer_epoch`.
pub fn build_marker(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&marker.control_type().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let records = [Record::new(Some(key), Some(value))];
    let mut out = batch::build(0, timestamp_ms, Some((producer_id, producer_epoch, -1)), &records);
    let attributes = TRANSACTIONAL_FLAG | CONTROL_FLAG;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pid: i64, base: i64) -> BatchHeader {
        let mut b = batch::build(
            base,
            0,
            Some((pid, 0, 0)),
            &[Record::new(None, Some(b"x".to_vec()))],
        );
        b[21..23].copy_from_slice(&TRANSACTIONAL_FLAG.to_be_bytes());
        let mut h = BatchHeader::parse(&b).expect("header");
        h.base_offset = base;
        h
    }

    fn marker(pid: i64, at: i64, m: Marker) -> (BatchHeader, Option<Marker>) {
        let b = build_marker(pid, 0, m, 0, 0);
        let mut h = batch::validate(&b, 1 << 20).expect("valid marker");
        h.base_offset = at;
        (h, parse_marker(&b))
    }

    #[test]
    fn markers_round_trip() {
        for m in [Marker::Abort, Marker::Commit] {
            let b = build_marker(9, 3, m, 0, 1);
            let h = batch::validate(&b, 1 << 20).expect("valid");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch), (9, 3));
            assert_eq!(parse_marker(&b), Some(m));
        }
    }

    #[test]
    fn stable_offset_and_aborted_ranges() {
        let mut ix = TxnIndex::default();
        ix.note(&data(1, 10), None);
        ix.note(&data(2, 12), None);
        ix.note(&data(1, 14), None);
        assert_eq!(ix.first_open(), Some(10));
        let (h, m) = marker(1, 15, Marker::Abort);
        ix.note(&h, m);
        assert_eq!(ix.first_open(), Some(12));
        let (h, m) = marker(2, 16, Marker::Commit);
        ix.note(&h, m);
        assert_eq!(ix.first_open(), None);
        let a = ix.aborted_in(0, 100);
        assert_eq!(
            a,
            vec![AbortedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 15
            }]
        );
        assert!(ix.aborted_in(16, 100).is_empty());
        assert!(ix.aborted_in(0, 10).is_empty());
        // A marker without an open transaction changes nothing.
        let (h, m) = marker(7, 17, Marker::Abort);
        ix.note(&h, m);
        assert_eq!(ix.aborted_in(0, 100).len(), 1);
        ix.trim(16);
        assert!(ix.aborted_in(0, 100).is_empty());
    }
}
