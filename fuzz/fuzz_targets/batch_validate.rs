//! RecordBatch v2 validation, as the log runs it on every produced batch (`validate`) and
//! on every stored batch it recovers or reads (`validate_framing`), plus `BatchHeader::parse`
//! and the record codec in `rivulet_log::record`.
//!
//! The first input byte picks a mode:
//!
//! - even: the rest of the input is the batch, byte for byte. Mostly exercises the header
//!   checks, since random bytes rarely carry a matching length and CRC-32C.
//! - odd: the input is the material for a batch whose framing is correct: batchLength, magic
//!   and CRC-32C are computed here, so the fuzzer reaches the record-count and per-record
//!   checks. Layout after the mode byte: attributes (2 bytes, big-endian), record count
//!   (1 byte, as `i8`), a flags byte (bit 0: lastOffsetDelta disagrees with the count), then
//!   the records section.
//!
//! Nothing here may panic, and the checks must agree with one another.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_log::batch::{self, BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES};
use rivulet_log::record::{self, Record};
use rivulet_log::BatchError;

/// A limit no fuzzed input reaches (libFuzzer's default -max_len is 4096).
const MAX_BATCH_BYTES: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(rest);
    } else {
        structured(rest);
    }
});

/// Arbitrary bytes as a batch.
fn raw(batch: &[u8]) {
    let parsed = BatchHeader::parse(batch);
    if let Ok(header) = &parsed {
        // Pure accessors on an unvalidated header must not panic either.
        let _ = (header.total_bytes(), header.compression(), header.last_sequence());
        let _ = (
            header.is_control(),
            header.is_transactional(),
            header.is_log_append_time(),
        );
    }
    let framing = batch::validate_framing(batch);
    if let Ok(header) = &framing {
        assert_eq!(parsed.as_ref().ok(), Some(header));
        assert_eq!(header.total_bytes(), batch.len());
    }
    match batch::validate(batch, MAX_BATCH_BYTES) {
        Ok(header) => {
            assert_eq!(framing.as_ref().ok(), Some(&header));
            check_records(header, &batch[HEADER_BYTES..]);
        }
        Err(BatchError::TooLarge { .. }) => panic!("{} bytes are over the limit", batch.len()),
        Err(_) => {}
    }
}

/// A batch with correct framing around fuzzed attributes, count and records.
fn structured(data: &[u8]) {
    let [a0, a1, count, flags, records @ ..] = data else {
        return;
    };
    let attributes = i16::from_be_bytes([*a0, *a1]);
    let record_count = i32::from(*count as i8);
    let last_offset_delta = if flags & 1 == 0 {
        record_count.wrapping_sub(1)
    } else {
        record_count
    };
    let batch = frame(attributes, last_offset_delta, record_count, records);

    let header = batch::validate_framing(&batch).expect("framing built here is valid");
    assert_eq!(header.total_bytes(), batch.len());
    assert_eq!(header.record_count, record_count);
    assert!(matches!(
        batch::validate(&batch, batch.len() - 1),
        Err(BatchError::TooLarge { .. })
    ));
    match batch::validate(&batch, batch.len()) {
        Ok(validated) => {
            assert_eq!(validated, header);
            assert!(record_count > 0 && last_offset_delta == record_count - 1);
            assert!((0..=4).contains(&validated.compression()));
            check_records(validated, records);
        }
        Err(BatchError::BadRecordCount { .. }) => {
            assert!(record_count <= 0 || last_offset_delta != record_count - 1);
        }
        Err(BatchError::BadRecord { .. }) => {
            assert_eq!(header.compression(), 0);
            // Both record parsers must agree that deltas 0, 1, 2, ... are present.
            if let Ok(decoded) = record::decode_all(records, record_count) {
                assert!(
                    decoded
                        .iter()
                        .enumerate()
                        .any(|(i, r)| r.offset_delta as i64 != i as i64),
                    "decode_all accepted records that check_offset_deltas rejected"
                );
            }
        }
        Err(BatchError::BadCompression { codec }) => assert!(codec > 4),
        Err(other) => panic!("framing was valid, yet: {other}"),
    }
}

/// After `validate` accepted a batch: uncompressed records that fully decode round-trip
/// through `Record::encode` and `batch::build`.
fn check_records(header: BatchHeader, records: &[u8]) {
    if header.compression() != 0 {
        return;
    }
    let Ok(decoded) = record::decode_all(records, header.record_count) else {
        return;
    };
    assert_eq!(decoded.len(), header.record_count as usize);
    for (i, r) in decoded.iter().enumerate() {
        assert_eq!(r.offset_delta as usize, i);
    }
    let mut encoded = Vec::new();
    for r in &decoded {
        r.encode(&mut encoded);
    }
    assert_eq!(
        record::decode_all(&encoded, header.record_count).as_ref(),
        Ok(&decoded)
    );
    let rebuilt = batch::build(header.base_offset, 0, None, &decoded);
    let rebuilt_header = batch::validate(&rebuilt, rebuilt.len()).expect("built batch validates");
    assert_eq!(rebuilt_header.record_count, header.record_count);
    let redecoded: Vec<Record> =
        record::decode_all(&rebuilt[HEADER_BYTES..], header.record_count).expect("decodes");
    assert_eq!(redecoded, decoded);
}

/// Frames `records` as a RecordBatch v2 with a correct batchLength, magic and CRC-32C.
fn frame(attributes: i16, last_offset_delta: i32, record_count: i32, records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + records.len());
    out.extend_from_slice(&0i64.to_be_bytes()); // baseOffset
    let batch_length = (HEADER_BYTES - LOG_OVERHEAD_BYTES + records.len()) as i32;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // partitionLeaderEpoch
    out.push(2); // magic
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&last_offset_delta.to_be_bytes());
    out.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // baseTimestamp
    out.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // maxTimestamp
    out.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
    out.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
    out.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    out.extend_from_slice(&record_count.to_be_bytes());
    out.extend_from_slice(records);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}
