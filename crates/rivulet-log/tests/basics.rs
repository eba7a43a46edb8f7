//! Appends, reads, rolls, timestamps, idempotency and group commit.

use rivulet_log::batch;
use rivulet_log::record::Record;
use rivulet_log::{FsyncPolicy, Log, LogConfig, LogError};

use crate::common::*;

#[tokio::test]
async fn append_assigns_offsets_and_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), small(FsyncPolicy::Always)).expect("open");
    let a = append_durable(&log, &batch_of("a", 3, 3, 1_000))
        .await
        .expect("append a");
    let b = append_durable(&log, &batch_of("b", 2, 2, 2_000))
        .await
        .expect("append b");
    assert_eq!((a.base_offset, a.last_offset), (0, 2));
    assert_eq!((b.base_offset, b.last_offset), (3, 4));
    assert_eq!(log.high_watermark(), 5);
    let all = read_all(&log, 0);
    let values: Vec<_> = all
        .iter()
        .map(|(o, _, v)| (*o, v.clone().expect("value")))
        .collect();
    assert_eq!(
        values,
        vec![
            (0, b"a-0".to_vec()),
            (1, b"a-1".to_vec()),
            (2, b"a-2".to_vec()),
            (3, b"b-0".to_vec()),
            (4, b"b-1".to_vec())
        ]
    );
    // Reading from the middle of a batch returns the whole batch that contains it.
    let r = log.read(1, 1).expect("read mid-batch");
    let recs = records_of(&r.records);
    assert_eq!(recs.first().map(|r| r.0), Some(0));
    assert_eq!(recs.len(), 3, "at least one whole batch, even past max_bytes");
    // At the high watermark: empty, not an error; past the end: out of range.
    assert!(log.read(5, 1024).expect("read at end").records.is_empty());
    assert!(matches!(
        log.read(6, 1024),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[tokio::test]
async fn segments_roll_by_size_and_reopen_without_scan_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path(), small(FsyncPolicy::None)).expect("open");
        for i in 0..200 {
            log.append(&batch_of(&format!("r{i}"), 4, 4, 1_000 + i))
                .expect("append");
        }
        assert!(
            log.segment_count() > 5,
            "4 KiB segments must roll, got {}",
            log.segment_count()
        );
        log.close().expect("close");
    }
    let log = Log::open(dir.path(), small(FsyncPolicy::None)).expect("reopen");
    assert_eq!(log.log_end_offset(), 800);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 800);
    assert!(
        all.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "offsets are contiguous"
    );
    // Every offset can start a read, including segment boundaries.
    for offset in (0..800).step_by(37) {
        let r = log.read(offset, 100).expect("read");
        let recs = records_of(&r.records);
        assert!(
            recs.iter().any(|(o, _, _)| *o == offset),
            "offset {offset} missing from its read"
        );
    }
}

#[tokio::test]
async fn timestamps_find_first_record_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), small(FsyncPolicy::None)).expect("open");
    for i in 0..100i64 {
        log.append(&one(&format!("k{i}"), Some("v"), 10_000 + i * 10))
            .expect("append");
    }
    let found = log.offset_for_timestamp(10_455).expect("lookup").expect("found");
    assert_eq!((found.offset, found.timestamp_ms), (46, 10_460));
    let exact = log.offset_for_timestamp(10_000).expect("lookup").expect("found");
    assert_eq!(exact.offset, 0);
    assert_eq!(log.offset_for_timestamp(99_999).expect("lookup"), None);
}

#[tokio::test]
async fn idempotent_retries_are_answered_with_original_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let producer_batch = |seq: i32| {
        batch::build(
            0,
            1_000,
            Some((42, 0, seq)),
            &[Record::new(None, Some(format!("s{seq}").into_bytes()))],
        )
    };
    {
        let log = Log::open(dir.path(), LogConfig::default()).expect("open");
        log.append(&batch_of("other", 2, 1, 1_000)).expect("append");
        let first = append_durable(&log, &producer_batch(0)).await.expect("seq 0");
        assert_eq!(first.base_offset, 2);
        let retry = append_durable(&log, &producer_batch(0)).await.expect("retry");
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, 2);
        let gap = log.append(&producer_batch(5));
        assert!(matches!(
            gap,
            Err(LogError::OutOfOrderSequence {
                expected: 1,
                received: 5,
                ..
            })
        ));
        append_durable(&log, &producer_batch(1)).await.expect("seq 1");
    }
    // Producer state is rebuilt from the log after a restart (no clean close here).
    let log = Log::open(dir.path(), LogConfig::default()).expect("reopen");
    let retry = log.append(&producer_batch(1)).expect("retry after restart");
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 3);
    assert_eq!(log.log_end_offset(), 4);
    assert!(matches!(
        log.append(&producer_batch(3)),
        Err(LogError::OutOfOrderSequence { .. })
    ));
}

#[test]
fn bad_batches_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), small(FsyncPolicy::None)).expect("open");
    let good = batch_of("g", 2, 2, 1);
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(log.append(&flipped), Err(LogError::InvalidBatch(_))));
    assert!(matches!(
        log.append(&good[..good.len() - 3]),
        Err(LogError::InvalidBatch(_))
    ));
    assert!(matches!(log.append(&[]), Err(LogError::InvalidBatch(_))));
    assert!(matches!(log.append(&[0u8; 200]), Err(LogError::InvalidBatch(_))));
    let mut magic = good.clone();
    magic[16] = 1;
    assert!(matches!(log.append(&magic), Err(LogError::InvalidBatch(_))));
    let huge = batch::build(0, 0, None, &[Record::new(None, Some(vec![7u8; 5000]))]);
    assert!(matches!(
        log.append(&huge),
        Err(LogError::InvalidBatch(rivulet_log::BatchError::TooLarge { .. }))
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    // Two batches in one append (as a produce request may carry) both land.
    let mut two = good.clone();
    two.extend_from_slice(&batch_of("h", 3, 3, 2));
    let out = log.append(&two).expect("two batches");
    assert_eq!((out.base_offset, out.last_offset, out.record_count), (0, 4, 5));
}

#[tokio::test]
async fn readers_wake_on_append_and_only_see_durable_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    let mut rx = log.subscribe();
    let writer = log.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        append_durable(&writer, &batch_of("w", 1, 1, 5))
            .await
            .expect("append");
    });
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.wait_for(|hwm| *hwm >= 1))
        .await
        .expect("woken before the timeout")
        .expect("channel open");
    task.await.expect("writer");
    // With `always`, appended-but-unsynced data is invisible to readers.
    let pending = log.append(&batch_of("p", 1, 1, 6)).expect("append");
    assert_eq!(log.high_watermark(), 1);
    assert!(log.read(1, 1024).expect("read").records.is_empty());
    pending.durable.wait().await.expect("sync");
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(read_all(&log, 0).len(), 2);
}

#[test]
fn concurrent_appenders_share_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    let threads = 16;
    let per_thread = 50;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut offsets = Vec::new();
                for i in 0..per_thread {
                    let out = log
                        .append(&one(&format!("t{t}"), Some(&format!("{i}")), 1))
                        .expect("append");
                    out.durable.clone().wait_blocking().expect("durable");
                    assert!(log.durable_offset() > out.last_offset);
                    offsets.push(out.base_offset);
                }
                offsets
            })
        })
        .collect();
    let mut all: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..(threads * per_thread) as i64).collect::<Vec<_>>());
    let appends = (threads * per_thread) as u64;
    let syncs = log.fsync_count();
    assert!(syncs > 0, "always policy must fsync");
    assert!(
        syncs < appends,
        "group commit: {syncs} fsyncs for {appends} appends"
    );
    let recs = read_all(&log, 0);
    assert_eq!(recs.len(), threads * per_thread);
    // Per key (thread), values stay in append order.
    for t in 0..threads {
        let key = format!("t{t}").into_bytes();
        let vals: Vec<String> = recs
            .iter()
            .filter(|(_, k, _)| k.as_deref() == Some(&key[..]))
            .map(|(_, _, v)| String::from_utf8(v.clone().expect("v")).expect("utf8"))
            .collect();
        assert_eq!(vals, (0..per_thread).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn appends_become_visible_without_anyone_waiting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    let mut rx = log.subscribe();
    // An acks=0/1 writer drops the handle: the sync was requested by the append itself.
    let out = log.append(&batch_of("r", 3, 1, 7)).expect("append");
    drop(out.durable);
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.wait_for(|hwm| *hwm >= 3))
        .await
        .expect("the requested sync moved the high watermark")
        .expect("channel open");
    // Under `always` the high watermark moves only after a successful fdatasync.
    assert!(log.fsync_count() >= 1);
    assert_eq!(read_all(&log, 0).len(), 3);
}

#[test]
fn fsync_none_writes_back_in_the_background_every_writeback_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        fsync: FsyncPolicy::None,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).expect("open");
    let value = vec![0x42u8; 256 * 1024];
    let batch = batch::build(0, 1_000, None, &[Record::new(None, Some(value))]);
    // Just under the threshold: nothing is synced, appends never wait.
    let below = (rivulet_log::WRITEBACK_BYTES / batch.len() as u64) as usize;
    for _ in 0..below {
        log.append(&batch).expect("append");
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(log.fsync_count(), 0, "synced before the threshold");
    // Crossing it hands a sync to the flusher thread.
    log.append(&batch).expect("append");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.fsync_count() == 0 {
        assert!(std::time::Instant::now() < deadline, "no background writeback");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(log.durable_offset(), below as i64 + 1);
}
