//! Retention by size and time, and compaction by key.

use std::collections::HashMap;

use rivulet_log::{CleanupPolicy, FsyncPolicy, Log, LogConfig, LogError};

use crate::common::*;

#[test]
fn retention_by_bytes_deletes_oldest_whole_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_bytes: Some(20 * 1024),
        ..small(FsyncPolicy::None)
    };
    let log = Log::open(dir.path(), config).expect("open");
    for i in 0..400 {
        log.append(&batch_of(&format!("r{i}"), 3, 3, rivulet_log::now_ms()))
            .expect("append");
    }
    let before = log.size_bytes();
    assert!(before > 40 * 1024, "wrote {before} bytes");
    let deleted = log.enforce_retention(rivulet_log::now_ms()).expect("retention");
    assert!(deleted > 0);
    let after = log.size_bytes();
    assert!(after <= 20 * 1024 + 4096, "{after} bytes left");
    let start = log.log_start_offset();
    assert!(start > 0);
    assert!(matches!(
        log.read(start - 1, 1024),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let left = read_all(&log, start);
    assert_eq!(left.first().map(|r| r.0), Some(start));
    assert_eq!(left.last().map(|r| r.0), Some(1199));
    // Deleted segments stay deleted after a restart.
    log.close().expect("close");
    let log = Log::open(dir.path(), small(FsyncPolicy::None)).expect("reopen");
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(read_all(&log, start).len(), left.len());
}

#[test]
fn retention_by_time_keeps_the_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: Some(3_600_000),
        ..small(FsyncPolicy::None)
    };
    let log = Log::open(dir.path(), config).expect("open");
    for i in 0..300 {
        log.append(&batch_of(&format!("old{i}"), 2, 2, 1_000))
            .expect("append");
    }
    let segments = log.segment_count();
    assert!(segments > 3);
    log.maintain(rivulet_log::now_ms()).expect("maintain");
    assert_eq!(log.segment_count(), 1, "only the active segment survives");
    assert_eq!(log.log_end_offset(), 600);
    // Appends continue at the same offsets.
    let next = log
        .append(&batch_of("new", 1, 1, rivulet_log::now_ms()))
        .expect("append");
    assert_eq!(next.base_offset, 600);
}

#[test]
fn compaction_keeps_latest_value_per_key_and_original_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        cleanup: CleanupPolicy::COMPACT,
        delete_retention_ms: 0,
        ..small(FsyncPolicy::None)
    };
    let log = Log::open(dir.path(), config.clone()).expect("open");
    let mut written: HashMap<i64, (String, Option<String>)> = HashMap::new();
    let mut latest: HashMap<String, i64> = HashMap::new();
    for round in 0..50 {
        for k in 0..10 {
            let key = format!("key{k}");
            let value = if k == 3 && round == 49 {
                None
            } else {
                Some(format!("v{round}"))
            };
            let out = log.append(&one(&key, value.as_deref(), 1_000)).expect("append");
            written.insert(out.base_offset, (key.clone(), value));
            latest.insert(key, out.base_offset);
        }
    }
    // Filler with unique keys so every keyed update above sits in sealed segments.
    for i in 0..200 {
        log.append(&one(&format!("filler{i}"), Some("x"), 1_000))
            .expect("append");
    }
    let before = read_all(&log, 0).len();
    let removed = log.compact(rivulet_log::now_ms()).expect("compact");
    assert!(removed >= 490, "removed only {removed}");
    let check = |log: &Log| {
        let after = read_all(log, 0);
        assert_eq!(after.len(), before - removed as usize);
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (offset, key, value) in &after {
            let key = String::from_utf8(key.clone().expect("key")).expect("utf8");
            let (wkey, wvalue) = written
                .get(offset)
                .cloned()
                .unwrap_or((key.clone(), Some("x".into())));
            assert_eq!(key, wkey, "offset {offset} changed key");
            assert_eq!(value.clone().map(|v| String::from_utf8(v).expect("utf8")), wvalue);
            *seen.entry(key).or_default() += 1;
        }
        for k in 0..10 {
            let key = format!("key{k}");
            let n = seen.get(&key).copied().unwrap_or(0);
            if k == 3 {
                assert_eq!(n, 0, "expired tombstone and its history are gone");
            } else {
                assert_eq!(n, 1, "{key} kept {n} times");
                let kept = after
                    .iter()
                    .find(|(_, kk, _)| kk.as_deref() == Some(key.as_bytes()))
                    .expect("kept");
                assert_eq!(kept.0, latest[&key], "the latest version is the one kept");
            }
        }
    };
    check(&log);
    log.close().expect("close");
    let log = Log::open(dir.path(), config).expect("reopen");
    check(&log);
    // Appends after compaction continue past the old end.
    let next = log.append(&one("key0", Some("again"), 2_000)).expect("append");
    assert_eq!(next.base_offset, 700);
}

/// Names of the files in a log directory.
fn file_names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list log directory")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn retention_retires_segments_at_once_frees_them_in_the_background_and_reopen_removes_leftovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_bytes: Some(20 * 1024),
        ..small(FsyncPolicy::Always)
    };
    let log = Log::open(dir.path(), config.clone()).expect("open");
    for i in 0..400 {
        log.append(&batch_of(&format!("r{i}"), 3, 3, rivulet_log::now_ms()))
            .expect("append");
    }
    log.flush().expect("flush");
    let deleted = log.enforce_retention(rivulet_log::now_ms()).expect("retention");
    assert!(deleted > 0);
    let start = log.log_start_offset();
    // No segment file below the log start remains under its segment name.
    for name in file_names(dir.path()) {
        if let Some(base) = name.strip_suffix(".log") {
            let base: i64 = base.parse().expect("segment name");
            assert!(base >= start, "{name} is below log start {start}");
        }
    }
    // The reaper shrinks and unlinks the retired files.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while file_names(dir.path()).iter().any(|n| n.ends_with(".deleted")) {
        assert!(
            std::time::Instant::now() < deadline,
            "retired segments still present: {:?}",
            file_names(dir.path())
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let left = read_all(&log, start);
    log.close().expect("close");

    // A crash while the reaper was at work leaves a retired file behind, possibly cut short;
    // the next open removes it and never serves it.
    let leftover = dir.path().join("00000000000000000000.log.deleted");
    std::fs::write(&leftover, vec![0x5a; 5_000]).expect("write leftover");
    let log = Log::open(dir.path(), config).expect("reopen");
    assert!(!leftover.exists(), "leftover retired segment not removed");
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(read_all(&log, start), left);
}

#[test]
fn an_idle_log_is_left_alone_until_its_next_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: Some(3_600_000),
        retention_ms: Some(7_200_000),
        ..small(FsyncPolicy::None)
    };
    let log = Log::open(dir.path(), config).expect("open");
    let now = rivulet_log::now_ms();
    for i in 0..20 {
        log.append(&batch_of(&format!("r{i}"), 3, 3, now))
            .expect("append");
    }
    assert_eq!(log.maintenance_due_ms(), 0, "an append asks for maintenance");
    log.maintain(now).expect("maintain");
    let due = log.maintenance_due_ms();
    // The earliest deadline: the oldest sealed segment leaves retention (now + 2 h), the
    // active one rolls at its creation + 1 h.
    assert!(
        due > now + 3_000_000 && due <= now + 3_601_000,
        "due {due} vs now {now}"
    );
    log.maintain(now + 1_000).expect("idle pass");
    assert_eq!(log.maintenance_due_ms(), due, "an idle pass changes nothing");
    let segments = log.segment_count();
    log.maintain(due).expect("due pass");
    assert_eq!(
        log.segment_count(),
        segments + 1,
        "the aged active segment rolled"
    );
}
