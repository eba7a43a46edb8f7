//! The records iterator against batches made by an independent encoder (kafka-protocol's),
//! for every codec, and against hostile compressed data.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rivulet_log::batch;
use rivulet_log::{BatchError, FsyncPolicy, Log, LogConfig, Records, StoredRecord};

use crate::common::*;

fn k_record(offset: i64, key: Option<&str>, value: Option<&str>, header: Option<&str>) -> KRecord {
    let mut headers = IndexMap::new();
    if let Some(h) = header {
        headers.insert(StrBytes::from_static_str("h"), Some(Bytes::from(h.to_string())));
    }
    KRecord {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp: 1_700_000_000_000 + offset * 10,
        key: key.map(|k| Bytes::from(k.to_string())),
        value: value.map(|v| Bytes::from(v.to_string())),
        headers,
    }
}

fn encode(records: &[KRecord], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encodes");
    buf.freeze()
}

fn sample(n: i64) -> Vec<KRecord> {
    (0..n)
        .map(|i| {
            let key = format!("key-{i}");
            let value = "v".repeat(i as usize % 50);
            match i % 3 {
                0 => k_record(i, Some(&key), Some(&value), Some("x")),
                1 => k_record(i, None, Some(&value), None),
                _ => k_record(i, Some(&key), None, Some("")),
            }
        })
        .collect()
}

fn expected(records: &[KRecord]) -> Vec<StoredRecord> {
    records
        .iter()
        .map(|r| StoredRecord {
            offset: r.offset,
            timestamp_ms: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        })
        .collect()
}

#[test]
fn every_codec_decodes_to_the_records_the_encoder_was_given() {
    let records = sample(40);
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let bytes = encode(&records, compression);
        let decoded: Vec<StoredRecord> = Records::new(bytes, 0)
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        assert_eq!(decoded, expected(&records), "{compression:?}");
    }
}

#[test]
fn a_log_serves_compressed_batches_that_decode_from_any_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), small(FsyncPolicy::None)).expect("open");
    let records = sample(30);
    for (i, compression) in [Compression::Zstd, Compression::Lz4, Compression::Gzip]
        .into_iter()
        .enumerate()
    {
        let chunk = &records[i * 10..(i + 1) * 10];
        let rebased: Vec<KRecord> = chunk
            .iter()
            .enumerate()
            .map(|(j, r)| KRecord {
                offset: j as i64,
                ..r.clone()
            })
            .collect();
        log.append(&encode(&rebased, compression)).expect("append");
    }
    let read = log.read(15, 1 << 20).expect("read");
    let mut it = Records::new(read.records, 15);
    let offsets: Vec<i64> = it.by_ref().map(|r| r.expect("decodes").offset).collect();
    assert_eq!(offsets, (15..30).collect::<Vec<_>>());
    assert_eq!(it.next_offset(), 30);
}

#[test]
fn control_batches_are_skipped_and_the_position_moves_past_them() {
    let control = KRecord {
        control: true,
        transactional: true,
        producer_id: 7,
        producer_epoch: 0,
        key: Some(Bytes::from_static(&[0, 0, 0, 0])),
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
        ..k_record(3, None, None, None)
    };
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&encode(&sample(3), Compression::None));
    bytes.extend_from_slice(&encode(std::slice::from_ref(&control), Compression::None));
    let mut it = Records::new(bytes.freeze(), 1);
    let offsets: Vec<i64> = it.by_ref().map(|r| r.expect("decodes").offset).collect();
    assert_eq!(
        offsets,
        vec![1, 2],
        "records before `from` and the marker are left out"
    );
    assert_eq!(it.next_offset(), 4, "the position moves past the control batch");
}

#[test]
fn log_append_time_batches_give_every_record_the_append_time() {
    let records: Vec<rivulet_log::record::Record> = (0..3)
        .map(|i| rivulet_log::record::Record {
            timestamp_delta: i * 10,
            ..rivulet_log::record::Record::new(None, Some(vec![i as u8]))
        })
        .collect();
    let mut bytes = batch::build(0, 1_000, None, &records);
    // The LogAppendTime attribute (bit 3), with the append time as the max timestamp.
    bytes[21..23].copy_from_slice(&0x08i16.to_be_bytes());
    bytes[35..43].copy_from_slice(&5_000i64.to_be_bytes());
    let crc = batch::compute_crc(&bytes);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let times: Vec<i64> = Records::new(Bytes::from(bytes), 0)
        .map(|r| r.expect("decodes").timestamp_ms)
        .collect();
    assert_eq!(times, vec![5_000; 3]);
}

/// A batch whose records part is `body`, with codec `codec` and a valid CRC.
fn batch_with_body(codec: i16, body: &[u8], count: i32) -> Bytes {
    let mut b = batch::build(
        0,
        1,
        None,
        &[rivulet_log::record::Record::new(None, Some(vec![1]))],
    );
    b.truncate(batch::HEADER_BYTES);
    b.extend_from_slice(body);
    let len = (b.len() - batch::LOG_OVERHEAD_BYTES) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[21..23].copy_from_slice(&codec.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = batch::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

#[test]
fn a_decompression_bomb_is_refused_and_the_next_batch_still_decodes() {
    // 200 MiB of zeros compress to a few hundred KiB; the bound is 64 MiB.
    let zeros = vec![0u8; 200 << 20];
    let bomb = zstd::bulk::compress(&zeros, 19).expect("compress");
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&batch_with_body(4, &bomb, 1));
    let good = KRecord {
        offset: 1,
        ..k_record(1, Some("k"), Some("after"), None)
    };
    let mut after = BytesMut::from(&encode(std::slice::from_ref(&good), Compression::None)[..]);
    batch::set_base_offset(&mut after, 1);
    bytes.extend_from_slice(&after);
    let mut it = Records::new(bytes.freeze(), 0);
    let first = it.next().expect("an item");
    let err = first.expect_err("the bomb is refused");
    assert!(
        matches!(err.error, BatchError::Decompress { codec: 4, .. }),
        "{err}"
    );
    assert_eq!(it.next_offset(), 1, "the bad batch is skipped");
    let next = it.next().expect("the next batch").expect("decodes");
    assert_eq!(next.value.as_deref(), Some(&b"after"[..]));
}

#[test]
fn garbage_inside_a_compressed_batch_is_an_error_not_a_panic() {
    for codec in 1..=4 {
        for garbage in [
            &b""[..],
            b"\x82SNAPPY\x00",
            b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xff",
            &[0xffu8; 64],
        ] {
            let bytes = batch_with_body(codec, garbage, 2);
            let items: Vec<_> = Records::new(bytes, 0).collect();
            assert_eq!(items.len(), 1, "codec {codec}: one error for the batch");
            assert!(items[0].is_err(), "codec {codec}");
        }
    }
}

#[test]
fn records_within_a_batch_that_lie_about_their_count_are_an_error() {
    let good = encode(&sample(2), Compression::None);
    let body = &good[batch::HEADER_BYTES..];
    let items: Vec<_> = Records::new(batch_with_body(0, body, 3), 0).collect();
    assert!(
        items.iter().any(Result::is_err),
        "a missing third record is reported"
    );
    let items: Vec<_> = Records::new(batch_with_body(0, body, 1), 0).collect();
    assert!(items.iter().any(Result::is_err), "an extra record is reported");
}

#[tokio::test]
async fn one_small_pool_syncs_many_logs_within_its_thread_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = rivulet_log::FlushPool::new(2, None);
    let context = rivulet_log::LogContext {
        pool: pool.clone(),
        ..rivulet_log::LogContext::default()
    };
    let logs: Vec<Log> = (0..64)
        .map(|i| {
            Log::open_with(&context, dir.path().join(i.to_string()), LogConfig::default()).expect("open")
        })
        .collect();
    let mut waits = Vec::new();
    for round in 0..5 {
        for (i, log) in logs.iter().enumerate() {
            let out = log
                .append(&one(&format!("k{i}"), Some(&format!("{round}")), 1))
                .expect("append");
            waits.push(out.durable);
        }
    }
    rivulet_log::Durable::wait_all(waits).await.expect("all durable");
    assert!(
        pool.threads() <= 2,
        "{} flusher threads for a pool of 2",
        pool.threads()
    );
    assert!(pool.threads() >= 1);
    for log in &logs {
        assert_eq!(log.durable_offset(), 5);
        assert_eq!(log.high_watermark(), 5);
    }
}

type Fields = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);

fn arbitrary_record(offset: i64, (key, value, headers): Fields) -> KRecord {
    let mut record = k_record(offset, None, None, None);
    record.key = key.map(Bytes::from);
    record.value = value.map(Bytes::from);
    for (name, value) in headers {
        record
            .headers
            .insert(StrBytes::from_string(name), value.map(Bytes::from));
    }
    record
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
    /// Any keys, values and headers (null or not) decode to what kafka-protocol encoded.
    #[test]
    fn arbitrary_records_decode_to_what_was_encoded(
        fields in proptest::collection::vec(
            (
                proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..300)),
                proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..300)),
                proptest::collection::vec(
                    ("[a-z]{0,12}", proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40))),
                    0..4,
                ),
            ),
            1..20,
        )
    ) {
        let records: Vec<KRecord> = fields
            .into_iter()
            .enumerate()
            .map(|(i, f)| arbitrary_record(i as i64, f))
            .collect();
        let decoded: Vec<StoredRecord> = Records::new(encode(&records, Compression::None), 0)
            .collect::<Result<_, _>>()
            .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
        proptest::prop_assert_eq!(decoded, expected(&records));
    }
}
