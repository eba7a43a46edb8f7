//! Topic settings that act on appends and compaction: `compression.type`,
//! `message.timestamp.{before,after}.max.ms`, `min.compaction.lag.ms` and
//! `max.compaction.lag.ms`.

use std::collections::HashMap;

use bytes::Bytes;
use rivulet_log::batch::BatchHeader;
use rivulet_log::{
    BatchError, CleanupPolicy, FsyncPolicy, Log, LogConfig, LogError, Records, TimestampBounds,
};

use crate::common::*;

/// `(offset, key, value)` of a record read back.
type Text = (i64, String, Option<String>);

/// Codec of every batch from `from` on, and their records (decompressed).
fn stored(log: &Log, from: i64) -> (Vec<i16>, Vec<Text>) {
    let mut codecs = Vec::new();
    let mut records = Vec::new();
    let mut offset = from;
    for _ in 0..10_000 {
        let read = log.read(offset, 64 * 1024).expect("read");
        if read.records.is_empty() {
            break;
        }
        let mut at = 0;
        while at < read.records.len() {
            let h = BatchHeader::parse(&read.records[at..]).expect("header");
            codecs.push(h.compression());
            at += h.total_bytes();
        }
        for r in Records::new(read.records.clone(), offset) {
            let r = r.expect("decodable");
            let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).to_string());
            records.push((r.offset, text(r.key).unwrap_or_default(), text(r.value)));
        }
        offset = records.last().map_or(offset, |r| r.0 + 1);
    }
    (codecs, records)
}

#[test]
fn compression_type_recompresses_what_producers_send() {
    for codec in 1..=4i16 {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            compression: Some(codec),
            ..small(FsyncPolicy::None)
        };
        let log = Log::open(dir.path(), config).expect("open");
        let plain = batch_of("v", 20, 20, 1_000);
        let out = log.append(&plain).expect("append");
        assert_eq!((out.base_offset, out.last_offset), (0, 19));
        let (codecs, records) = stored(&log, 0);
        assert_eq!(codecs, vec![codec], "stored with the topic's codec");
        assert_eq!(records.len(), 20);
        assert_eq!(records[7], (7, "k7".to_string(), Some("v-7".to_string())));
        // Back to uncompressed on a topic that asks for it.
        log.set_config(LogConfig {
            compression: Some(0),
            ..small(FsyncPolicy::None)
        })
        .expect("config");
        let (_, packed) = stored(&log, 0);
        assert_eq!(packed.len(), 20);
        let mut raw = Vec::new();
        let read = log.read(0, 64 * 1024).expect("read");
        raw.extend_from_slice(&read.records);
        let h = BatchHeader::parse(&raw).expect("header");
        let compressed = rivulet_log::batch::validate(&raw[..h.total_bytes()], usize::MAX).expect("valid");
        log.append(&raw[..h.total_bytes()]).expect("append compressed");
        let (codecs, records) = stored(&log, 0);
        assert_eq!(
            codecs,
            vec![compressed.compression(), 0],
            "codec {codec} batch stored plain"
        );
        assert_eq!(records.len(), 40);
        assert_eq!(records[27].2.as_deref(), Some("v-7"));
    }
}

#[test]
fn records_too_far_from_the_clock_are_refused_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        timestamp_bounds: TimestampBounds {
            before_max_ms: Some(60_000),
            after_max_ms: Some(1_000),
        },
        ..small(FsyncPolicy::None)
    };
    let log = Log::open(dir.path(), config).expect("open");
    let now = rivulet_log::now_ms();
    log.append(&one("a", Some("fresh"), now)).expect("a fresh record");
    let stale = log.append(&one("b", Some("stale"), now - 3_600_000));
    assert!(
        matches!(
            stale,
            Err(LogError::InvalidBatch(BatchError::TimestampOutOfRange { .. }))
        ),
        "{stale:?}"
    );
    let ahead = log.append(&one("c", Some("ahead"), now + 600_000));
    assert!(matches!(
        ahead,
        Err(LogError::InvalidBatch(BatchError::TimestampOutOfRange { .. }))
    ));
    assert_eq!(log.log_end_offset(), 1, "refused batches wrote nothing");
}

/// Appends 10 updates of each of 5 keys stamped `timestamp_ms`, then unique fillers
/// stamped now so the updates end up in sealed segments. Returns the latest offset per key.
fn updates_then_fillers(log: &Log, timestamp_ms: i64) -> HashMap<String, i64> {
    let mut latest = HashMap::new();
    for round in 0..10 {
        for k in 0..5 {
            let key = format!("key{k}");
            let out = log
                .append(&one(&key, Some(&format!("r{round}")), timestamp_ms))
                .expect("append");
            latest.insert(key, out.base_offset);
        }
    }
    for i in 0..200 {
        log.append(&one(&format!("filler{i}"), Some("x"), rivulet_log::now_ms()))
            .expect("append");
    }
    latest
}

#[test]
fn min_compaction_lag_holds_young_segments_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        cleanup: CleanupPolicy::COMPACT,
        min_compaction_lag_ms: 3_600_000,
        ..small(FsyncPolicy::None)
    };
    let log = Log::open(dir.path(), config.clone()).expect("open");
    let now = rivulet_log::now_ms();
    // Young updates: nothing may go.
    updates_then_fillers(&log, now);
    assert_eq!(
        log.compact(now).expect("compact"),
        0,
        "every segment is inside the lag"
    );
    // An hour and a minute later they are compactable; the fillers (stamped now) stay
    // inside the lag, but the updates' segments lie before them.
    let later = now + 3_660_000;
    let removed = log.compact(later).expect("compact");
    assert_eq!(removed, 45, "9 older versions of each of 5 keys");
}

#[test]
fn compaction_rewrites_compressed_batches_with_their_codec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        cleanup: CleanupPolicy::COMPACT,
        compression: Some(4),
        ..small(FsyncPolicy::None)
    };
    let log = Log::open(dir.path(), config).expect("open");
    let latest = updates_then_fillers(&log, 1_000);
    let removed = log.compact(rivulet_log::now_ms()).expect("compact");
    assert_eq!(removed, 45);
    let (codecs, records) = stored(&log, 0);
    assert!(codecs.iter().all(|&c| c == 4), "still zstd: {codecs:?}");
    for (key, offset) in latest {
        let kept: Vec<_> = records.iter().filter(|r| r.1 == key).collect();
        assert_eq!(kept.len(), 1, "{key}: {kept:?}");
        assert_eq!((kept[0].0, kept[0].2.as_deref()), (offset, Some("r9")));
    }
}

#[test]
fn max_compaction_lag_seals_the_active_segment_of_a_compacted_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        cleanup: CleanupPolicy::COMPACT,
        segment_ms: None,
        max_compaction_lag_ms: Some(50),
        ..small(FsyncPolicy::None)
    };
    let log = Log::open(dir.path(), config).expect("open");
    log.append(&one("k", Some("v1"), 1_000)).expect("append");
    log.append(&one("k", Some("v2"), 1_000)).expect("append");
    assert_eq!(log.segment_count(), 1);
    log.maintain(rivulet_log::now_ms() + 1_000).expect("maintain");
    assert_eq!(log.segment_count(), 2, "the aged active segment was sealed");
    log.maintain(rivulet_log::now_ms() + 1_000).expect("maintain");
    let (_, records) = stored(&log, 0);
    assert_eq!(records.len(), 1, "the sealed segment was compacted: {records:?}");
    assert_eq!(records[0].2.as_deref(), Some("v2"));
}
