//! What a topic's settings do to a producer's batches before they are written:
//! `compression.type` recompresses batches written with another codec, and
//! `message.timestamp.{before,after}.max.ms` refuse records whose CreateTime is too far
//! from the broker's clock. No I/O.

use std::io::Write;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_BYTES};
use crate::error::BatchError;
use crate::record;
use crate::records::decompress;

/// Raw bytes per xerial snappy block, as Kafka's Java client writes them.
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;
/// The xerial header: magic, version 1, compatible version 1.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// zstd level Kafka uses by default.
const ZSTD_LEVEL: i32 = 3;

/// How far a record's CreateTime may lie from the broker's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampBounds {
    /// At most this far in the past (ms); `None`: unbounded.
    pub before_max_ms: Option<u64>,
    /// At most this far in the future (ms); `None`: unbounded.
    pub after_max_ms: Option<u64>,
}

impl TimestampBounds {
    /// True when neither bound is set.
    pub fn is_unbounded(&self) -> bool {
        self.before_max_ms.is_none() && self.after_max_ms.is_none()
    }
}

/// The records part of a batch, decompressed.
fn records_body(batch: &[u8], header: &BatchHeader) -> Result<Bytes, BatchError> {
    let body = Bytes::copy_from_slice(&batch[HEADER_BYTES..]);
    decompress(header.compression(), body)
}

/// Refuses a batch holding a record whose timestamp lies outside `bounds` around `now_ms`.
pub(crate) fn check_timestamps(
    batch: &[u8],
    header: &BatchHeader,
    bounds: TimestampBounds,
    now_ms: i64,
) -> Result<(), BatchError> {
    if bounds.is_unbounded() || header.is_log_append_time() {
        return Ok(());
    }
    let low = bounds
        .before_max_ms
        .map_or(i64::MIN, |b| now_ms.saturating_sub(b.min(i64::MAX as u64) as i64));
    let high = bounds
        .after_max_ms
        .map_or(i64::MAX, |a| now_ms.saturating_add(a.min(i64::MAX as u64) as i64));
    let body = records_body(batch, header)?;
    let records = record::decode_all(&body, header.record_count)?;
    for r in &records {
        let timestamp_ms = header.base_timestamp.saturating_add(r.timestamp_delta);
        if timestamp_ms < low || timestamp_ms > high {
            return Err(BatchError::TimestampOutOfRange {
                timestamp_ms,
                low_ms: low,
                high_ms: high,
            });
        }
    }
    Ok(())
}

/// The batch with its records compressed with `codec` (0 none, 1 gzip, 2 snappy, 3 lz4,
/// 4 zstd); the header is kept but for the codec bits, the length and the CRC.
pub(crate) fn recompress(batch: &[u8], header: &BatchHeader, codec: i16) -> Result<Vec<u8>, BatchError> {
    assert!(batch.len() >= HEADER_BYTES);
    let body = records_body(batch, header)?;
    let packed = compress(codec, &body)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + packed.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(&packed);
    let length = i32::try_from(out.len() - batch::LOG_OVERHEAD_BYTES).map_err(|_| BatchError::TooLarge {
        len_bytes: out.len(),
        limit_bytes: i32::MAX as usize,
    })?;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = (header.attributes & !0x7) | codec;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// `data` compressed the way Kafka's clients do: gzip, xerial-framed snappy, LZ4 frames with
/// independent 64 KiB blocks, zstd.
pub(crate) fn compress(codec: i16, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    let failed = |e: std::io::Error| BatchError::Decompress {
        codec,
        reason: format!("compressing: {e}"),
    };
    match codec {
        0 => Ok(data.to_vec()),
        1 => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        2 => xerial_snappy(data).map_err(failed),
        3 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .map_err(failed)?;
            encoder.write_all(data).map_err(failed)?;
            let (out, result) = encoder.finish();
            result.map_err(failed)?;
            Ok(out)
        }
        4 => zstd::stream::encode_all(data, ZSTD_LEVEL).map_err(failed),
        codec => Err(BatchError::BadCompression { codec }),
    }
}

fn xerial_snappy(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(XERIAL_HEADER.len() + data.len() / 2);
    out.extend_from_slice(XERIAL_HEADER);
    let mut encoder = snap::raw::Encoder::new();
    for block in data.chunks(SNAPPY_BLOCK_BYTES) {
        let packed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
        let len = u32::try_from(packed.len()).map_err(std::io::Error::other)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&packed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use proptest::prelude::*;

    proptest! {
        /// Any batch survives a trip through every codec byte for byte, and the timestamp
        /// check agrees with the records' own timestamps.
        #[test]
        fn recompression_round_trips_and_bounds_follow_the_records(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
            deltas in proptest::collection::vec(-5_000i64..5_000, 20),
            codec in 1i16..=4,
        ) {
            let records: Vec<Record> = values
                .iter()
                .enumerate()
                .map(|(i, v)| Record {
                    offset_delta: i as i32,
                    timestamp_delta: deltas[i],
                    ..Record::new(None, Some(v.clone()))
                })
                .collect();
            let base = 1_000_000;
            let original = batch::build(0, base, None, &records);
            let header = batch::validate(&original, usize::MAX).expect("valid");
            let packed = recompress(&original, &header, codec).expect("compress");
            let h = batch::validate(&packed, usize::MAX).expect("valid after");
            prop_assert_eq!(recompress(&packed, &h, 0).expect("back"), original);
            let used = &deltas[..values.len()];
            let (lo, hi) = (base + used.iter().min().copied().unwrap_or(0), base + used.iter().max().copied().unwrap_or(0));
            let bounds = |before: i64, after: i64| TimestampBounds {
                before_max_ms: Some(before as u64),
                after_max_ms: Some(after as u64),
            };
            // "Now" is the batch's base; the window just fits, then misses by one on each side.
            prop_assert!(check_timestamps(&packed, &h, bounds(base - lo, hi - base), base).is_ok());
            if lo < base {
                prop_assert!(check_timestamps(&packed, &h, bounds(base - lo - 1, hi - base), base).is_err());
            }
            if hi > base {
                prop_assert!(check_timestamps(&packed, &h, bounds(base - lo, hi - base - 1), base).is_err());
            }
        }
    }

    fn plain_batch(base_timestamp: i64, deltas: &[i64]) -> Vec<u8> {
        let records: Vec<Record> = deltas
            .iter()
            .enumerate()
            .map(|(i, &d)| Record {
                offset_delta: i as i32,
                timestamp_delta: d,
                ..Record::new(Some(format!("k{i}").into_bytes()), Some(vec![b'v'; 300]))
            })
            .collect();
        batch::build(0, base_timestamp, Some((5, 0, 0)), &records)
    }

    #[test]
    fn every_codec_round_trips_and_keeps_the_header() {
        let original = plain_batch(1_000, &[0, 1, 2, 3]);
        let header = batch::validate(&original, usize::MAX).expect("valid");
        for codec in 1..=4 {
            let packed = recompress(&original, &header, codec).expect("compresses");
            let h = batch::validate(&packed, usize::MAX).expect("valid after recompression");
            assert_eq!(h.compression(), codec);
            assert!(
                packed.len() < original.len(),
                "codec {codec} shrinks repetitive values"
            );
            assert_eq!(
                (h.producer_id, h.base_sequence, h.record_count, h.base_timestamp),
                (5, 0, 4, 1_000)
            );
            let back = recompress(&packed, &h, 0).expect("decompresses");
            assert_eq!(back, original, "codec {codec} gives back the same batch");
        }
    }

    #[test]
    fn snappy_uses_xerial_blocks_a_reader_can_split() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_be_bytes()).collect();
        let packed = compress(2, &data).expect("snappy");
        assert!(packed.starts_with(b"\x82SNAPPY\x00"));
        assert_eq!(&decompress(2, Bytes::from(packed)).expect("back")[..], &data[..]);
    }

    #[test]
    fn timestamps_outside_the_bounds_are_refused() {
        let now = 1_000_000;
        let bounds = TimestampBounds {
            before_max_ms: Some(1_000),
            after_max_ms: Some(100),
        };
        let check = |base: i64, deltas: &[i64], codec: i16| {
            let b = plain_batch(base, deltas);
            let h = batch::validate(&b, usize::MAX).expect("valid");
            let b = recompress(&b, &h, codec).expect("codec");
            let h = batch::validate(&b, usize::MAX).expect("valid");
            check_timestamps(&b, &h, bounds, now)
        };
        assert!(check(now - 1_000, &[0, 500, 1_100], 0).is_ok());
        assert!(check(now, &[0], 3).is_ok());
        // The second record is 1,001 ms old; the last is 101 ms ahead (inside zstd data).
        assert!(matches!(
            check(now - 1_000, &[0, -1], 0),
            Err(BatchError::TimestampOutOfRange {
                timestamp_ms: 998_999,
                ..
            })
        ));
        assert!(matches!(
            check(now, &[0, 0, 101], 4),
            Err(BatchError::TimestampOutOfRange { .. })
        ));
        let unbounded = TimestampBounds {
            before_max_ms: None,
            after_max_ms: None,
        };
        let b = plain_batch(0, &[0]);
        let h = batch::validate(&b, usize::MAX).expect("valid");
        assert!(check_timestamps(&b, &h, unbounded, now).is_ok());
    }
}
