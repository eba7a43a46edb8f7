//! Damaged files: torn tails, flipped bytes, missing or garbled indexes.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rivulet_log::{FsyncPolicy, Log, LogError};

use crate::common::*;

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn write_log(dir: &Path, batches: usize) -> Vec<Stored> {
    let log = Log::open(dir, small(FsyncPolicy::None)).expect("open");
    for i in 0..batches {
        log.append(&batch_of(&format!("b{i}"), 3, 3, 1_000 + i as i64))
            .expect("append");
    }
    let all = read_all(&log, 0);
    log.close().expect("close");
    all
}

fn flip(path: &Path, at_from_end: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let len = f.metadata().expect("meta").len();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, len - at_from_end).expect("read");
    b[0] ^= 0x55;
    f.write_all_at(&b, len - at_from_end).expect("write");
}

#[test]
fn truncated_tail_is_cut_back_to_the_last_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = write_log(dir.path(), 50);
    let last = files(dir.path(), ".log").pop().expect("segment");
    let len = fs::metadata(&last).expect("meta").len();
    let f = OpenOptions::new().write(true).open(&last).expect("open");
    f.set_len(len - 7).expect("truncate");
    let log = Log::open(dir.path(), small(FsyncPolicy::None)).expect("reopen");
    let now = read_all(&log, 0);
    assert_eq!(now.len(), all.len() - 3, "exactly the torn batch is gone");
    assert_eq!(&now[..], &all[..now.len()]);
    let next = log.append(&batch_of("after", 1, 1, 9)).expect("append");
    assert_eq!(next.base_offset, now.len() as i64);
}

#[test]
fn garbage_after_the_tail_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = write_log(dir.path(), 20);
    let last = files(dir.path(), ".log").pop().expect("segment");
    let f = OpenOptions::new().append(true).open(&last).expect("open");
    use std::io::Write;
    (&f).write_all(&[0u8; 300]).expect("zeros");
    (&f).write_all(&[0xffu8; 100]).expect("ones");
    let log = Log::open(dir.path(), small(FsyncPolicy::None)).expect("reopen");
    assert_eq!(read_all(&log, 0), all);
}

#[test]
fn flipped_byte_in_the_last_batch_drops_only_that_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = write_log(dir.path(), 30);
    let last = files(dir.path(), ".log").pop().expect("segment");
    flip(&last, 5);
    // The index file vouches for the old length, but the index alone cannot prove the data.
    for idx in files(dir.path(), ".index") {
        fs::remove_file(idx).expect("rm index");
    }
    let log = Log::open(dir.path(), small(FsyncPolicy::None)).expect("reopen");
    let now = read_all(&log, 0);
    assert_eq!(now.len(), all.len() - 3);
    assert_eq!(&now[..], &all[..now.len()]);
}

#[test]
fn flipped_byte_in_a_sealed_segment_is_never_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = write_log(dir.path(), 150);
    let segs = files(dir.path(), ".log");
    assert!(segs.len() >= 3);
    flip(&segs[0], 3);
    let log = Log::open(dir.path(), small(FsyncPolicy::None)).expect("reopen");
    // Reads that reach the damaged batch fail; they never return its bytes.
    let mut offset = 0;
    let mut served = 0;
    let err = loop {
        match log.read(offset, 512) {
            Ok(r) => {
                let recs = records_of(&r.records);
                served += recs.len();
                offset = recs.last().expect("records").0 + 1;
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(err, LogError::Corrupt { .. }), "got {err:?}");
    assert!(served < all.len());
    // Later segments are intact and readable.
    let second_base: i64 = segs[1]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("base");
    let tail = read_all(&log, second_base);
    assert_eq!(&tail[..], &all[second_base as usize..]);
}

#[test]
fn missing_or_garbled_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = write_log(dir.path(), 80);
    let indexes = files(dir.path(), ".index");
    assert!(
        indexes.len() >= 3,
        "every sealed segment and the closed active one has an index"
    );
    fs::remove_file(&indexes[0]).expect("rm");
    fs::write(&indexes[1], b"garbage garbage garbage garbage garbage garbage").expect("garble");
    // An index that checks out by itself but belongs to another segment.
    fs::copy(&indexes[3.min(indexes.len() - 1)], &indexes[2]).expect("swap");
    let log = Log::open(dir.path(), small(FsyncPolicy::None)).expect("reopen");
    assert_eq!(read_all(&log, 0), all);
    for offset in (0..all.len() as i64).step_by(7) {
        let r = log.read(offset, 64).expect("read");
        assert!(records_of(&r.records).iter().any(|(o, _, _)| *o == offset));
    }
    drop(log);
    // Rebuilt indexes were written back and are valid.
    let reopened = Log::open(dir.path(), small(FsyncPolicy::None)).expect("reopen again");
    assert_eq!(read_all(&reopened, 0), all);
}
