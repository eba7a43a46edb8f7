//! Shared helpers: building batches and reading them back.

#![allow(dead_code)]

use rivulet_log::batch::{self, BatchHeader, HEADER_BYTES};
use rivulet_log::record::{self, Record};
use rivulet_log::{AppendOutcome, FsyncPolicy, Log, LogConfig, LogError};

/// `(offset, key, value)` of a record read back.
pub type Stored = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// A batch of `n` records whose values are `"{tag}-{i}"` and keys `"k{i % keys}"`.
pub fn batch_of(tag: &str, n: usize, keys: usize, timestamp_ms: i64) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| {
            Record::new(
                Some(format!("k{}", i % keys.max(1)).into_bytes()),
                Some(format!("{tag}-{i}").into_bytes()),
            )
        })
        .collect();
    batch::build(0, timestamp_ms, None, &records)
}

/// A batch with one record of the given key and value.
pub fn one(key: &str, value: Option<&str>, timestamp_ms: i64) -> Vec<u8> {
    batch::build(
        0,
        timestamp_ms,
        None,
        &[Record::new(
            Some(key.as_bytes().to_vec()),
            value.map(|v| v.as_bytes().to_vec()),
        )],
    )
}

/// Splits read bytes into `(offset, key, value)` triples, checking every batch's CRC.
pub fn records_of(bytes: &[u8]) -> Vec<Stored> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = BatchHeader::parse(&bytes[at..]).expect("header");
        let total = header.total_bytes();
        batch::validate_framing(&bytes[at..at + total]).expect("served batch is valid");
        let records = record::decode_all(&bytes[at + HEADER_BYTES..at + total], header.record_count)
            .expect("records decode");
        for r in records {
            out.push((header.base_offset + i64::from(r.offset_delta), r.key, r.value));
        }
        at += total;
    }
    out
}

/// Reads every visible record from `from`.
pub fn read_all(log: &rivulet_log::Log, from: i64) -> Vec<Stored> {
    let mut out = Vec::new();
    let mut offset = from;
    for _ in 0..100_000 {
        let r = log.read(offset, 64 * 1024).expect("read");
        if r.records.is_empty() {
            break;
        }
        let recs = records_of(&r.records);
        let last = recs.last().expect("non-empty read has records").0;
        out.extend(recs.into_iter().filter(|(o, _, _)| *o >= offset));
        offset = last + 1;
    }
    out
}

/// A small-segment config for tests.
pub fn small(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        max_batch_bytes: 4096,
        index_interval_bytes: 256,
        fsync,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Appends and waits until the records are durable.
pub async fn append_durable(log: &Log, bytes: &[u8]) -> Result<AppendOutcome, LogError> {
    let out = log.append(bytes)?;
    out.durable.clone().wait().await?;
    Ok(out)
}
