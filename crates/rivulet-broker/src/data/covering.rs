//! Reading the stored batches that hold given offset ranges (share group fetches hand out
//! scattered ranges of records, each inside whole batches).

use bytes::{Bytes, BytesMut};
use rivulet_log::batch::{BatchHeader, HEADER_BYTES};

use super::ReadLimit;
use crate::settle::AcquiredRange;
use crate::Broker;

/// Bytes read from the log at a time: the ranges usually need far less than the budget,
/// and each read copies and checks every byte it covers.
const CHUNK_BYTES: usize = 256 * 1024;

impl Broker {
    /// The stored batches holding `ranges` (ascending), each batch once, within `budget`
    /// bytes (at least one batch), which is lowered by what was read. Returns the batches
    /// and the offset up to which the ranges are covered: records from there on did not fit.
    pub fn read_covering(
        &self,
        topic: &str,
        partition: i32,
        ranges: &[AcquiredRange],
        budget: &mut usize,
    ) -> (Bytes, i64) {
        let mut out = BytesMut::new();
        let mut covered = ranges.first().map_or(0, |r| r.first);
        for r in ranges {
            let mut next = r.first.max(covered);
            // Each read moves `next` past at least one batch, or ends the reading.
            while next <= r.last {
                let chunk = (*budget).min(CHUNK_BYTES);
                // A batch larger than a chunk is read whole while the budget has room.
                let limit = if out.is_empty() || *budget >= CHUNK_BYTES {
                    ReadLimit::AtLeastOneBatch(chunk)
                } else {
                    ReadLimit::Within(chunk)
                };
                let read = match self.read(topic, partition, next, limit) {
                    Ok(read) if !read.records.is_empty() => read.records,
                    _ => return (out.freeze(), next),
                };
                let before = next;
                next = append_batches(&read, r.last, next, &mut out, budget);
                if next == before || *budget == 0 {
                    return (out.freeze(), next.max(covered));
                }
            }
            covered = covered.max(next).max(r.last + 1);
        }
        (out.freeze(), covered)
    }
}

/// Appends the batches of `read` (which starts with the batch holding `next`, or the first
/// one after it) that hold offsets from `next` up to `last`; returns the offset after the
/// last one covered. Offsets with no stored record (compacted away, or markers) count as
/// covered: the reader acknowledges them as gaps.
fn append_batches(read: &[u8], last: i64, mut next: i64, out: &mut BytesMut, budget: &mut usize) -> i64 {
    let mut at = 0;
    while let Ok(h) = BatchHeader::parse(&read[at..]) {
        let total = h.total_bytes();
        if total < HEADER_BYTES || at + total > read.len() {
            break;
        }
        if h.base_offset > last {
            // Nothing is stored between `next` and `last`.
            return next.max(last + 1);
        }
        if h.last_offset() >= next {
            out.extend_from_slice(&read[at..at + total]);
            *budget = budget.saturating_sub(total);
            next = h.last_offset() + 1;
        }
        at += total;
    }
    next
}
