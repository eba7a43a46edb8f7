//! Sparse offset and time indexes of a segment.
//!
//! Indexes are caches: they live in memory while the segment is open and are written to
//! `<base>.index` when a segment is sealed or the log closes. A file carries the segment
//! length it describes and a CRC-32C; on open a file that fails its CRC, disagrees with the
//! segment's length or holds out-of-order entries is ignored and the index is rebuilt by
//! scanning the segment.

use crate::error::{LogError, Result};
use crate::storage::Storage;
use std::path::Path;

const MAGIC: &[u8; 4] = b"RVIX";
const VERSION: u32 = 1;
const FIXED_BYTES: usize = 4 + 4 + 8 + 8 + 8 + 4 + 4;
const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;
/// Entries an index may hold; a 2 GiB segment indexed every 4 KiB needs 512 Ki.
const ENTRIES_MAX: usize = 1 << 22;

/// Sparse indexes and summary of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    /// Bytes of the segment file these entries describe.
    pub valid_bytes: u64,
    /// Offset after the segment's last batch.
    pub next_offset: i64,
    /// Largest record timestamp in the segment (-1 when empty).
    pub max_timestamp: i64,
    /// `(offset - base, position)` of some batch starts, ascending.
    pub offsets: Vec<(u32, u32)>,
    /// `(max timestamp so far, offset - base)`, both ascending.
    pub times: Vec<(i64, u32)>,
}

impl SegmentIndex {
    /// Position from which to scan for `offset`: the last indexed batch starting at or before it.
    pub fn position_for(&self, relative_offset: u32) -> u32 {
        let i = self.offsets.partition_point(|&(rel, _)| rel <= relative_offset);
        if i == 0 {
            0
        } else {
            self.offsets[i - 1].1
        }
    }

    /// Position of the last indexed batch start at or before `position` (0 when none).
    pub fn batch_at_or_before(&self, position: u64) -> u64 {
        let i = self.offsets.partition_point(|&(_, p)| u64::from(p) <= position);
        if i == 0 {
            0
        } else {
            u64::from(self.offsets[i - 1].1)
        }
    }

    /// Relative offset from which to scan for the first record with a timestamp >= `ts`.
    pub fn offset_for_time(&self, timestamp: i64) -> u32 {
        let i = self.times.partition_point(|&(t, _)| t < timestamp);
        if i == 0 {
            0
        } else {
            self.times[i - 1].1
        }
    }

    /// Encodes the index file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            FIXED_BYTES + 4 + self.offsets.len() * OFFSET_ENTRY_BYTES + self.times.len() * TIME_ENTRY_BYTES,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.valid_bytes.to_be_bytes());
        out.extend_from_slice(&self.next_offset.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&(self.offsets.len() as u32).to_be_bytes());
        out.extend_from_slice(&(self.times.len() as u32).to_be_bytes());
        for &(rel, pos) in &self.offsets {
            out.extend_from_slice(&rel.to_be_bytes());
            out.extend_from_slice(&pos.to_be_bytes());
        }
        for &(ts, rel) in &self.times {
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&rel.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes and checks an index file; `None` when anything is off.
    pub fn decode(bytes: &[u8]) -> Option<SegmentIndex> {
        if bytes.len() < FIXED_BYTES + 4 || &bytes[..4] != MAGIC {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return None;
        }
        let u32_at = |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[at..at + 8]);
            u64::from_be_bytes(b)
        };
        if u32_at(4) != VERSION {
            return None;
        }
        let offsets_len = u32_at(32) as usize;
        let times_len = u32_at(36) as usize;
        if offsets_len > ENTRIES_MAX
            || times_len > ENTRIES_MAX
            || body.len() != FIXED_BYTES + offsets_len * OFFSET_ENTRY_BYTES + times_len * TIME_ENTRY_BYTES
        {
            return None;
        }
        let mut index = SegmentIndex {
            valid_bytes: u64_at(8),
            next_offset: u64_at(16) as i64,
            max_timestamp: u64_at(24) as i64,
            offsets: Vec::with_capacity(offsets_len),
            times: Vec::with_capacity(times_len),
        };
        let mut at = FIXED_BYTES;
        for _ in 0..offsets_len {
            index.offsets.push((u32_at(at), u32_at(at + 4)));
            at += OFFSET_ENTRY_BYTES;
        }
        for _ in 0..times_len {
            index.times.push((u64_at(at) as i64, u32_at(at + 8)));
            at += TIME_ENTRY_BYTES;
        }
        index.is_consistent().then_some(index)
    }

    /// Entries ascend and positions stay within the described bytes.
    pub fn is_consistent(&self) -> bool {
        let offsets_ok = self
            .offsets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && self
                .offsets
                .iter()
                .all(|&(_, pos)| u64::from(pos) < self.valid_bytes.max(1));
        let times_ok = self
            .times
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1);
        offsets_ok && times_ok
    }

    /// Loads `path` if it exists and is valid for a segment of `segment_bytes`.
    pub fn load(storage: &dyn Storage, path: &Path, segment_bytes: u64) -> Option<SegmentIndex> {
        if !storage.exists(path) {
            return None;
        }
        let file = storage.open(path, false).ok()?;
        let len = file.len().ok()?;
        if len > (FIXED_BYTES + 4 + ENTRIES_MAX * (OFFSET_ENTRY_BYTES + TIME_ENTRY_BYTES)) as u64 {
            return None;
        }
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, 0).ok()?;
        let index = SegmentIndex::decode(&buf)?;
        (index.valid_bytes == segment_bytes).then_some(index)
    }

    /// Writes the index file durably (write, fdatasync).
    pub fn store(&self, storage: &dyn Storage, path: &Path) -> Result<()> {
        self.write(storage, path, true)
    }

    /// Writes the index file without waiting for the disk. Safe because the index is a
    /// cache: after a crash a missing, short or stale file fails its length or CRC check on
    /// open and the segment is scanned instead. Used when a segment rolls, where an fsync
    /// would hold up every append to the partition.
    pub fn store_cached(&self, storage: &dyn Storage, path: &Path) -> Result<()> {
        self.write(storage, path, false)
    }

    fn write(&self, storage: &dyn Storage, path: &Path, durable: bool) -> Result<()> {
        let bytes = self.encode();
        let file = storage
            .open(path, true)
            .map_err(LogError::io("open index", path))?;
        file.set_len(0).map_err(LogError::io("truncate index", path))?;
        file.write_all_at(&bytes, 0)
            .map_err(LogError::io("write index", path))?;
        if durable {
            file.sync_data().map_err(LogError::io("sync index", path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentIndex {
        SegmentIndex {
            valid_bytes: 10_000,
            next_offset: 77,
            max_timestamp: 1_234,
            offsets: vec![(0, 0), (10, 4_100), (20, 8_300)],
            times: vec![(1_000, 0), (1_100, 10), (1_234, 20)],
        }
    }

    #[test]
    fn round_trips_and_rejects_any_flip() {
        let idx = sample();
        let bytes = idx.encode();
        assert_eq!(SegmentIndex::decode(&bytes), Some(idx));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert_eq!(SegmentIndex::decode(&b), None, "flip at {i} accepted");
        }
        assert_eq!(SegmentIndex::decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn lookups_floor() {
        let idx = sample();
        assert_eq!(idx.position_for(0), 0);
        assert_eq!(idx.position_for(15), 4_100);
        assert_eq!(idx.position_for(25), 8_300);
        assert_eq!(idx.offset_for_time(999), 0);
        assert_eq!(idx.offset_for_time(1_150), 10);
    }
}
