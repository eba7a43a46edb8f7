//! Kafka RecordBatch v2 headers: parsing and validation, no I/O.
//!
//! Layout (big-endian), as stored on disk and sent on the wire:
//!
//! ```text
//! 0  baseOffset int64        | 27 baseTimestamp int64
//! 8  batchLength int32       | 35 maxTimestamp int64
//! 12 partitionLeaderEpoch i32| 43 producerId int64
//! 16 magic int8 (= 2)        | 51 producerEpoch int16
//! 17 crc uint32 (CRC-32C)    | 53 baseSequence int32
//! 21 attributes int16        | 57 recordCount int32
//! 23 lastOffsetDelta int32   | 61 records...
//! ```
//!
//! The CRC covers everything from `attributes` to the end, so the log may rewrite
//! `baseOffset` and `partitionLeaderEpoch` without touching it.

use crate::error::BatchError;
use crate::record;

/// Size of the fixed RecordBatch v2 header.
pub const HEADER_BYTES: usize = 61;
/// Bytes before the batchLength field's coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD_BYTES: usize = 12;
const CRC_START: usize = 21;

/// Fields of a RecordBatch v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes following the batchLength field.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker.
    pub partition_leader_epoch: i32,
    /// Format version, always 2 here.
    pub magic: i8,
    /// CRC-32C over attributes..end.
    pub crc: u32,
    /// Compression codec, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the fixed header. Checks only that enough bytes are present.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::TooShort {
                len_bytes: bytes.len(),
            });
        }
        let i64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            i64::from_be_bytes(b)
        };
        let i32_at = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[at..at + 4]);
            i32::from_be_bytes(b)
        };
        let i16_at = |at: usize| i16::from_be_bytes([bytes[at], bytes[at + 1]]);
        Ok(BatchHeader {
            base_offset: i64_at(0),
            batch_length: i32_at(8),
            partition_leader_epoch: i32_at(12),
            magic: bytes[16] as i8,
            crc: i32_at(17) as u32,
            attributes: i16_at(21),
            last_offset_delta: i32_at(23),
            base_timestamp: i64_at(27),
            max_timestamp: i64_at(35),
            producer_id: i64_at(43),
            producer_epoch: i16_at(51),
            base_sequence: i32_at(53),
            record_count: i32_at(57),
        })
    }

    /// Total size of the batch on disk, including baseOffset and batchLength.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length.max(0) as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }

    /// True for a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// True when the batch is part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// True when timestamps are LogAppendTime rather than CreateTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x8 != 0
    }

    /// Sequence number of the last record, wrapping like Kafka's.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// Computes the CRC-32C that a batch's header should carry.
pub fn compute_crc(batch: &[u8]) -> u32 {
    debug_assert!(batch.len() >= HEADER_BYTES);
    crc32c::crc32c(&batch[CRC_START..])
}

/// Fully validates one batch offered for append and returns its header.
///
/// Checks length against the header and `max_batch_bytes`, the magic byte, the CRC, the
/// record count against lastOffsetDelta and, for uncompressed batches, that each record
/// parses and carries offset deltas 0, 1, 2, ... in order.
pub fn validate(batch: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
    if batch.len() > max_batch_bytes {
        return Err(BatchError::TooLarge {
            len_bytes: batch.len(),
            limit_bytes: max_batch_bytes,
        });
    }
    let header = validate_framing(batch)?;
    if header.record_count <= 0 || header.last_offset_delta != header.record_count - 1 {
        return Err(BatchError::BadRecordCount {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    match header.compression() {
        0 => record::check_offset_deltas(&batch[HEADER_BYTES..], header.record_count)?,
        1..=4 => {}
        codec => return Err(BatchError::BadCompression { codec }),
    }
    Ok(header)
}

/// Validates the parts of a batch that storage depends on: length, magic and CRC.
///
/// This is what recovery and reads check for every stored batch.
pub fn validate_framing(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let declared = i64::from(header.batch_length);
    let actual = batch.len() - LOG_OVERHEAD_BYTES;
    if declared != actual as i64 {
        return Err(BatchError::LengthMismatch {
            declared_bytes: declared,
            actual_bytes: actual,
        });
    }
    if header.magic != 2 {
        return Err(BatchError::BadMagic { magic: header.magic });
    }
    let actual_crc = compute_crc(batch);
    if actual_crc != header.crc {
        return Err(BatchError::CrcMismatch {
            expected: header.crc,
            actual: actual_crc,
        });
    }
    Ok(header)
}

/// Records at or after `from` in concatenated batches, counted from the batch headers
/// without decoding anything (control batches count as their markers). A trailing partial
/// batch is not counted.
pub fn count_records_from(batches: &[u8], from: i64) -> u64 {
    let mut at = 0usize;
    let mut count = 0u64;
    // Every step advances by a whole batch of at least 61 bytes.
    while let Ok(h) = BatchHeader::parse(&batches[at..]) {
        let total = h.total_bytes();
        if total < HEADER_BYTES || at + total > batches.len() {
            break;
        }
        let first = h.base_offset.max(from);
        count += (h.next_offset() - first).max(0) as u64;
        at += total;
    }
    count
}

/// Rewrites the baseOffset field in place; the CRC stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    assert!(batch.len() >= HEADER_BYTES);
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Stamps each of the concatenated batches with the broker's append time: the LogAppendTime
/// attribute (bit 3) and `timestamp_ms` as maxTimestamp, with the CRC recomputed. The
/// batches must have passed [`validate`].
pub fn stamp_log_append_time(batches: &[u8], timestamp_ms: i64) -> Vec<u8> {
    let mut out = batches.to_vec();
    let mut at = 0usize;
    // Each pass moves past one whole batch.
    while let Ok(header) = BatchHeader::parse(&out[at..]) {
        let total = header.total_bytes();
        if total < HEADER_BYTES || at + total > out.len() {
            break;
        }
        let batch = &mut out[at..at + total];
        let attributes = i16::from_be_bytes([batch[21], batch[22]]) | 0x08;
        batch[21..23].copy_from_slice(&attributes.to_be_bytes());
        batch[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
        let crc = compute_crc(batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        at += total;
    }
    out
}

/// Marks a built batch as a transactional producer's (attribute bit 4) and recomputes its
/// CRC.
pub fn set_transactional(batch: &mut [u8]) {
    assert!(batch.len() >= HEADER_BYTES);
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | 0x10;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Builds an uncompressed RecordBatch v2 from records. Used by tests, tools and compaction.
pub fn build(
    base_offset: i64,
    base_timestamp: i64,
    producer: Option<(i64, i16, i32)>,
    records: &[record::Record],
) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut body = Vec::new();
    let mut max_timestamp = base_timestamp;
    for (i, r) in records.iter().enumerate() {
        let mut rec = r.clone();
        rec.offset_delta = i as i32;
        max_timestamp = max_timestamp.max(base_timestamp + rec.timestamp_delta);
        rec.encode(&mut body);
    }
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&base_offset.to_be_bytes());
    let batch_length = (HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len()) as i32;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // partitionLeaderEpoch
    out.push(2); // magic
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, patched below
    out.extend_from_slice(&0i16.to_be_bytes()); // attributes
    out.extend_from_slice(&(records.len() as i32 - 1).to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&producer_id.to_be_bytes());
    out.extend_from_slice(&producer_epoch.to_be_bytes());
    out.extend_from_slice(&base_sequence.to_be_bytes());
    out.extend_from_slice(&(records.len() as i32).to_be_bytes());
    out.extend_from_slice(&body);
    let crc = compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn sample() -> Vec<u8> {
        build(
            0,
            1_000,
            None,
            &[
                Record::new(Some(b"k1".to_vec()), Some(b"v1".to_vec())),
                Record::new(None, Some(b"v2".to_vec())),
            ],
        )
    }

    #[test]
    fn built_batch_validates() {
        let b = sample();
        let h = validate(&b, 1 << 20).expect("valid");
        assert_eq!(h.record_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.total_bytes(), b.len());
    }

    #[test]
    fn log_append_time_stamp_keeps_batches_valid() {
        let two = [sample(), sample()].concat();
        let stamped = stamp_log_append_time(&two, 9_999);
        let first = validate(&stamped[..two.len() / 2], 1 << 20).expect("first valid");
        let second = validate(&stamped[two.len() / 2..], 1 << 20).expect("second valid");
        for h in [first, second] {
            assert!(h.is_log_append_time());
            assert_eq!(h.max_timestamp, 9_999);
            assert_eq!(h.base_timestamp, 1_000, "the producer's base timestamp is kept");
        }
    }

    #[test]
    fn base_offset_rewrite_keeps_crc() {
        let mut b = sample();
        set_base_offset(&mut b, 12_345);
        let h = validate(&b, 1 << 20).expect("valid after rewrite");
        assert_eq!(h.base_offset, 12_345);
    }

    #[test]
    fn every_flipped_byte_after_length_is_caught() {
        let b = sample();
        for i in 16..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(validate(&c, 1 << 20).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn rejects_short_long_and_oversized() {
        let b = sample();
        assert!(matches!(
            validate(&b[..30], 1 << 20),
            Err(BatchError::TooShort { .. })
        ));
        assert!(matches!(
            validate(&b[..b.len() - 1], 1 << 20),
            Err(BatchError::LengthMismatch { .. })
        ));
        assert!(matches!(validate(&b, 10), Err(BatchError::TooLarge { .. })));
    }
}
