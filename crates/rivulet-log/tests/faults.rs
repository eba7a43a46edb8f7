//! Injected storage faults: a full disk and failing fsync.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rivulet_log::storage::{FaultyStorage, FsStorage};
use rivulet_log::{FsyncPolicy, Log, LogConfig};

use crate::common::*;

#[tokio::test]
async fn full_disk_fails_appends_cleanly_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = FaultyStorage::new(Arc::new(FsStorage));
    let faults = storage.faults();
    let log = Log::open_with_storage(Arc::new(storage.clone()), dir.path(), small(FsyncPolicy::Always))
        .expect("open");
    let mut acked = 0;
    for i in 0..20 {
        append_durable(&log, &batch_of(&format!("a{i}"), 2, 2, 1))
            .await
            .expect("append");
        acked += 2;
    }
    faults.set_write_budget(Some(150));
    let mut failures = 0;
    for i in 0..5 {
        match append_durable(&log, &batch_of(&format!("full{i}"), 2, 2, 1)).await {
            Ok(_) => acked += 2,
            Err(e) => {
                assert!(e.is_disk_full(), "expected ENOSPC, got {e}");
                failures += 1;
            }
        }
    }
    assert!(failures >= 4, "a full disk must refuse appends");
    assert_eq!(
        read_all(&log, 0).len(),
        acked,
        "nothing already written is damaged"
    );
    faults.set_write_budget(None);
    append_durable(&log, &batch_of("later", 2, 2, 1))
        .await
        .expect("space is back");
    acked += 2;
    drop(log);
    let log = Log::open(dir.path(), small(FsyncPolicy::Always)).expect("reopen");
    let recs = read_all(&log, 0);
    assert_eq!(recs.len(), acked);
    assert!(recs.windows(2).all(|w| w[1].0 == w[0].0 + 1));
}

#[tokio::test]
async fn failed_fsync_is_reported_and_the_log_refuses_writes_until_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = FaultyStorage::new(Arc::new(FsStorage));
    let faults = storage.faults();
    let log = Log::open_with_storage(Arc::new(storage), dir.path(), LogConfig::default()).expect("open");
    append_durable(&log, &batch_of("ok", 1, 1, 1))
        .await
        .expect("append");
    faults.fail_sync.store(true, Ordering::SeqCst);
    assert!(append_durable(&log, &batch_of("lost", 1, 1, 1)).await.is_err());
    faults.fail_sync.store(false, Ordering::SeqCst);
    assert!(
        log.append(&batch_of("refused", 1, 1, 1)).is_err(),
        "poisoned until reopened"
    );
    assert_eq!(log.high_watermark(), 1, "the unsynced batch never became visible");
    drop(log);
    let log = Log::open(dir.path(), LogConfig::default()).expect("reopen");
    let next = append_durable(&log, &batch_of("again", 1, 1, 1))
        .await
        .expect("append after reopen");
    assert!(next.base_offset >= 1);
}
