//! The shared journal: acknowledged appends survive the loss of every segment write that
//! was not synced (what a power cut does to the page cache), across ring wrap-arounds,
//! checkpoints, large appends that bypass it, and a journal that fails.
//!
//! [`LossyStorage`] models the page cache: it remembers how much of each file was synced
//! and, at a simulated crash, cuts every file back to that length. Segments are written
//! only at their end, so the synced prefix is exactly what a crash would leave.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rivulet_log::storage::{FsStorage, Storage, StorageFile};
use rivulet_log::{Durable, FlushPool, FsyncPolicy, Journal, JournalConfig, Log, LogConfig, LogContext};

use crate::common::*;

/// Synced lengths by path (`u64::MAX`: written durably on every write).
#[derive(Debug, Default)]
struct Synced {
    len: Mutex<HashMap<PathBuf, u64>>,
    fail_durable_writes: AtomicBool,
}

#[derive(Debug, Clone, Default)]
struct LossyStorage {
    synced: Arc<Synced>,
}

#[derive(Debug)]
struct LossyFile {
    path: PathBuf,
    inner: Arc<dyn StorageFile>,
    synced: Arc<Synced>,
    durable: bool,
}

impl StorageFile for LossyFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.inner.read_at(buf, position)
    }
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        if self.durable && self.synced.fail_durable_writes.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.write_all_at(buf, position)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()?;
        let len = self.inner.len()?;
        let mut synced = self.synced.len.lock().expect("lock");
        let entry = synced.entry(self.path.clone()).or_insert(0);
        if *entry != u64::MAX {
            *entry = len;
        }
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl LossyStorage {
    /// Cuts every file back to what was synced.
    fn crash(&self) {
        let synced = self.synced.len.lock().expect("lock");
        for (path, &len) in synced.iter() {
            if len == u64::MAX || !path.exists() {
                continue;
            }
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .expect("open for crash");
            let now = file.metadata().expect("metadata").len();
            if now > len {
                file.set_len(len).expect("cut");
            }
        }
    }

    fn track(&self, path: &Path, inner: Arc<dyn StorageFile>, durable: bool) -> Arc<dyn StorageFile> {
        let mut synced = self.synced.len.lock().expect("lock");
        let entry = synced.entry(path.to_path_buf()).or_insert(0);
        if durable {
            *entry = u64::MAX;
        }
        Arc::new(LossyFile {
            path: path.to_path_buf(),
            inner,
            synced: self.synced.clone(),
            durable,
        })
    }
}

impl Storage for LossyStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        FsStorage.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        FsStorage.list_dir(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.track(path, FsStorage.open(path, create)?, false))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)?;
        let mut synced = self.synced.len.lock().expect("lock");
        if let Some(len) = synced.remove(from) {
            synced.insert(to.to_path_buf(), len);
        }
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        FsStorage.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        FsStorage.exists(path)
    }
    fn open_durable(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.track(path, FsStorage.open_durable(path)?, true))
    }
    fn available_bytes(&self, path: &Path) -> io::Result<u64> {
        FsStorage.available_bytes(path)
    }
    fn sync_file_system(&self, path: &Path) -> io::Result<()> {
        FsStorage.sync_file_system(path)?;
        let mut synced = self.synced.len.lock().expect("lock");
        for (path, len) in synced.iter_mut() {
            if *len != u64::MAX {
                *len = std::fs::metadata(path).map_or(0, |m| m.len());
            }
        }
        Ok(())
    }
}

/// A ring small enough to wrap several times in a test.
fn small_ring() -> JournalConfig {
    JournalConfig {
        ring_bytes: 512 << 10,
        grow_bytes: 64 << 10,
        checkpoint_bytes: 128 << 10,
        commit_bytes_max: 32 << 10,
        append_bytes_max: 16 << 10,
        checkpoint_syncs_max: 4,
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 10,
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// A journal and the logs on it, opened (or reopened) in `root`.
struct Node {
    storage: LossyStorage,
    root: PathBuf,
    journal: Journal,
    logs: Vec<Log>,
}

impl Node {
    fn open(storage: &LossyStorage, root: &Path, logs: usize, journal: JournalConfig) -> Node {
        let arc: Arc<dyn Storage> = Arc::new(storage.clone());
        let journal =
            Journal::open(arc.clone(), &root.join("journal"), root, journal, None).expect("journal");
        let context = LogContext {
            storage: arc,
            pool: FlushPool::new(2, None),
            journal: Some(journal.clone()),
            ..LogContext::default()
        };
        let logs = (0..logs)
            .map(|i| {
                let key = format!("log-{i}");
                Log::open_journaled(&context, root.join(&key), config(), key.as_bytes()).expect("open log")
            })
            .collect();
        journal.finish_recovery();
        Node {
            storage: storage.clone(),
            root: root.to_path_buf(),
            journal,
            logs,
        }
    }

    /// Stops without a checkpoint, drops everything and loses what was not synced.
    fn crash(self) {
        self.journal.abandon();
        drop(self.logs);
        drop(self.journal);
        self.storage.crash();
    }
}

/// Appends `rounds` batches to every log (values `"{tag}-{log}-{n}"`), then waits for all.
fn append_all(node: &Node, tag: &str, rounds: usize, records: usize) -> Vec<Vec<String>> {
    let mut expected = vec![Vec::new(); node.logs.len()];
    let mut waits = Vec::new();
    for n in 0..rounds {
        for (i, log) in node.logs.iter().enumerate() {
            let value = format!("{tag}-{i}-{n}");
            let out = log.append(&batch_of(&value, records, 3, 1_000)).expect("append");
            waits.push(out.durable);
            expected[i].extend((0..records).map(|r| format!("{value}-{r}")));
        }
    }
    for durable in waits {
        durable.wait_blocking().expect("durable");
    }
    expected
}

fn values(log: &Log) -> Vec<String> {
    let records = read_all(log, 0);
    for (i, (offset, _, _)) in records.iter().enumerate() {
        assert_eq!(
            *offset,
            i as i64,
            "offsets are dense from 0 in {}",
            log.dir().display()
        );
    }
    records
        .into_iter()
        .map(|(_, _, v)| String::from_utf8(v.expect("value")).expect("utf-8"))
        .collect()
}

fn assert_holds(node: &Node, expected: &[Vec<String>]) {
    for (log, want) in node.logs.iter().zip(expected) {
        let got = values(log);
        assert_eq!(got.len(), want.len(), "records in {}", log.dir().display());
        assert_eq!(&got, want, "records of {}", log.dir().display());
    }
}

#[test]
fn acknowledged_appends_survive_the_loss_of_every_unsynced_segment_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = LossyStorage::default();
    let node = Node::open(&storage, dir.path(), 8, JournalConfig::default());
    let expected = append_all(&node, "a", 50, 2);
    let stats = node.journal.stats();
    assert_eq!(
        stats.entries, 400,
        "every append went through the journal: {stats:?}"
    );
    assert!(stats.commits <= stats.entries, "{stats:?}");
    for log in &node.logs {
        assert_eq!(log.fsync_count(), 0, "no segment was synced for an append");
    }
    node.crash();
    // The crash took the segments' unsynced tails: only the journal has the records.
    let cut: u64 = std::fs::read_dir(dir.path().join("log-0"))
        .expect("dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    assert_eq!(
        cut, 0,
        "the simulated crash left segment bytes that were never synced"
    );
    let node = Node::open(&storage, dir.path(), 8, JournalConfig::default());
    assert_eq!(node.journal.stats().recovered_entries, 400);
    assert_holds(&node, &expected);
    // Appends continue after the replayed ones, and a clean close leaves nothing to replay.
    let more = append_all(&node, "b", 5, 1);
    node.journal.close().expect("close");
    let root = node.root.clone();
    drop(node);
    let node = Node::open(&storage, &root, 8, JournalConfig::default());
    assert_eq!(node.journal.stats().recovered_entries, 0);
    let all = joined(&expected, &more);
    assert_holds(&node, &all);
}

#[test]
fn appends_of_many_logs_share_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = LossyStorage::default();
    let node = Node::open(&storage, dir.path(), 64, JournalConfig::default());
    append_all(&node, "a", 20, 1);
    let stats = node.journal.stats();
    assert_eq!(stats.entries, 64 * 20);
    assert!(
        stats.commits * 4 <= stats.entries,
        "appends issued without waiting should share commits: {stats:?}"
    );
}

#[test]
fn a_small_ring_wraps_and_checkpoints_across_crashes_syncing_partitions_one_by_one() {
    wraps_and_checkpoints_across_crashes(3);
}

#[test]
fn a_small_ring_wraps_and_checkpoints_across_crashes_syncing_the_file_system() {
    // More partitions than `checkpoint_syncs_max`: checkpoints use syncfs.
    wraps_and_checkpoints_across_crashes(6);
}

fn wraps_and_checkpoints_across_crashes(logs: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = LossyStorage::default();
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); logs];
    let mut checkpoints = 0;
    let ring_bytes = small_ring().ring_bytes;
    for round in 0..4 {
        let node = Node::open(&storage, dir.path(), logs, small_ring());
        assert_holds(&node, &expected);
        // How many bytes a commit takes depends on how appends group, so each round writes
        // in chunks until the ring has wrapped at least once, within a bound.
        let mut chunks = 0;
        while node.journal.stats().bytes <= ring_bytes + ring_bytes / 4 {
            assert!(chunks < 64, "a round of {chunks} chunks wrote too little");
            let tag = format!("r{round}c{chunks}");
            let added = append_all(&node, &tag, 120 / logs, 40);
            for (e, a) in expected.iter_mut().zip(added) {
                e.extend(a);
            }
            chunks += 1;
        }
        checkpoints += node.journal.stats().checkpoints;
        node.crash();
    }
    assert!(checkpoints >= 4, "checkpoints ran: {checkpoints}");
    let node = Node::open(&storage, dir.path(), logs, small_ring());
    assert_holds(&node, &expected);
}

#[test]
fn large_appends_sync_their_own_segment_and_mix_with_journaled_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = LossyStorage::default();
    let node = Node::open(&storage, dir.path(), 1, small_ring());
    let log = &node.logs[0];
    let big = batch_of("big", 1_500, 3, 1_000); // over the 16 KiB limit
    assert!(big.len() > small_ring().append_bytes_max);
    let mut waits: Vec<Durable> = Vec::new();
    for n in 0..10 {
        let bytes = if n % 3 == 0 {
            big.clone()
        } else {
            batch_of(&format!("small-{n}"), 2, 1, 1_000)
        };
        waits.push(log.append(&bytes).expect("append").durable);
    }
    for w in waits {
        w.wait_blocking().expect("durable");
    }
    let stats = node.journal.stats();
    assert!(log.fsync_count() >= 1, "large appends synced the segment");
    assert!(
        stats.entries <= 6,
        "large appends stayed out of the journal: {stats:?}"
    );
    let before = values(log);
    node.crash();
    let node = Node::open(&storage, dir.path(), 1, small_ring());
    assert_eq!(values(&node.logs[0]), before);
}

#[test]
fn a_failing_journal_hands_durability_back_to_the_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = LossyStorage::default();
    let node = Node::open(&storage, dir.path(), 3, small_ring());
    let first = append_all(&node, "ok", 10, 1);
    storage.synced.fail_durable_writes.store(true, Ordering::SeqCst);
    let second = append_all(&node, "failing", 10, 1);
    let synced: u64 = node.logs.iter().map(Log::fsync_count).sum();
    assert!(
        synced >= 3,
        "each log synced its own segment after the journal failed: {synced}"
    );
    node.crash();
    storage.synced.fail_durable_writes.store(false, Ordering::SeqCst);
    let node = Node::open(&storage, dir.path(), 3, small_ring());
    let all = joined(&first, &second);
    assert_holds(&node, &all);
}

#[test]
fn a_log_under_a_new_key_takes_nothing_from_the_old_logs_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = LossyStorage::default();
    let node = Node::open(&storage, dir.path(), 1, JournalConfig::default());
    append_all(&node, "old", 5, 1);
    node.crash();
    // The log is deleted and a new one takes its directory under another key.
    std::fs::remove_dir_all(dir.path().join("log-0")).expect("delete");
    let arc: Arc<dyn Storage> = Arc::new(storage.clone());
    let journal = Journal::open(
        arc.clone(),
        &dir.path().join("journal"),
        dir.path(),
        JournalConfig::default(),
        None,
    )
    .expect("journal");
    assert_eq!(journal.stats().recovered_entries, 5);
    let context = LogContext {
        storage: arc,
        journal: Some(journal.clone()),
        ..LogContext::default()
    };
    let log = Log::open_journaled(&context, dir.path().join("log-0"), config(), b"log-0-v2").expect("open");
    journal.finish_recovery();
    assert_eq!(
        log.log_end_offset(),
        0,
        "the old log's records stay out of the new one"
    );
}

#[test]
fn appends_nobody_waits_for_still_become_durable_and_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = LossyStorage::default();
    let node = Node::open(&storage, dir.path(), 2, JournalConfig::default());
    for n in 0..5 {
        for log in &node.logs {
            // acks=0 or 1: the handle is dropped at once.
            drop(
                log.append(&batch_of(&format!("fire-{n}"), 1, 1, 1_000))
                    .expect("append"),
            );
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for log in &node.logs {
        while log.high_watermark() < 5 {
            assert!(
                std::time::Instant::now() < deadline,
                "records nobody waited for never became visible"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(log.durable_offset(), 5);
    }
    assert!(
        node.journal.stats().entries >= 10,
        "they went through the journal"
    );
}

#[test]
fn logs_under_other_policies_keep_their_background_writeback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = LossyStorage::default();
    let arc: Arc<dyn Storage> = Arc::new(storage.clone());
    let journal = Journal::open(
        arc.clone(),
        &dir.path().join("journal"),
        dir.path(),
        JournalConfig::default(),
        None,
    )
    .expect("journal");
    let context = LogContext {
        storage: arc,
        journal: Some(journal.clone()),
        ..LogContext::default()
    };
    let config = LogConfig {
        fsync: FsyncPolicy::None,
        ..config()
    };
    let log = Log::open_journaled(&context, dir.path().join("none"), config, b"none").expect("open");
    journal.finish_recovery();
    // Past WRITEBACK_BYTES the append asks the flush pool for a background sync.
    let batch = batch_of("w", 4_000, 3, 1_000);
    let rounds = rivulet_log::WRITEBACK_BYTES as usize / batch.len() + 2;
    for _ in 0..rounds {
        log.append(&batch)
            .expect("append")
            .durable
            .wait_blocking()
            .expect("no wait under none");
    }
    assert_eq!(
        journal.stats().entries,
        0,
        "only `always` appends use the journal"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.fsync_count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the background writeback never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(log.high_watermark(), log.log_end_offset());
}

/// Each log's values of a first round followed by those of a second.
fn joined(first: &[Vec<String>], second: &[Vec<String>]) -> Vec<Vec<String>> {
    first
        .iter()
        .zip(second)
        .map(|(a, b)| [a.clone(), b.clone()].concat())
        .collect()
}
