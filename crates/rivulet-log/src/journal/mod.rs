//! The shared journal: one write-ahead file whose single durable write per commit makes the
//! appends of any number of partitions durable at once.
//!
//! Without it every partition with new records needs its own fdatasync, so the cost of
//! durability follows the number of partitions written, not the work. With it an append
//! still writes its batches to the partition's segment (page cache only), and also copies
//! them into the journal's pending record; one thread writes each pending record with one
//! direct, `O_DSYNC` write into a preallocated ring file (no metadata changes, so the
//! device sees one data write and, where it has a volatile cache, one flush), then marks
//! every append in it durable. Appends that arrive while a record is being written gather
//! in the next one (group commit across partitions).
//!
//! A checkpoint, run by a second thread once enough was written, syncs the segments of
//! every partition written since the previous one (each with fdatasync when few, the whole
//! file system with one syncfs when many) and records the position from which a restart
//! must replay. On open, [`Journal::open`] reads what follows the checkpoint; each log
//! opened with its key then appends the entries it is missing (see
//! [`crate::Log::open_journaled`]).
//!
//! Appends larger than [`JournalConfig::append_bytes_max`] sync their own segment instead:
//! for them one fdatasync is cheap per byte, and the journal would double the bytes written.

mod checkpoint;
mod format;
mod keeper;
mod recover;
mod ring;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;

use tracing::info;

use crate::error::{LogError, Result};
use crate::flusher::FsyncObserver;
use crate::log::{Log, Shared, Visible};
use crate::storage::{Storage, StorageFile};

pub use format::KEY_BYTES_MAX;

/// Name of the journal's ring file in its directory.
const RING_FILE: &str = "journal";

/// Sizes and thresholds of a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// Final size of the ring file; a multiple of 4 KiB.
    pub ring_bytes: u64,
    /// Bytes the file is preallocated by at a time, ahead of the writer.
    pub grow_bytes: u64,
    /// A checkpoint starts once this many bytes were written since the previous one.
    pub checkpoint_bytes: u64,
    /// Payload bytes one commit record carries at most. Appends that find the pending
    /// record full sync their own segment instead of waiting.
    pub commit_bytes_max: usize,
    /// Appends of more bytes than this sync their own segment.
    pub append_bytes_max: usize,
    /// A checkpoint syncs each written partition when there are at most this many, and the
    /// whole file system (syncfs) when there are more.
    pub checkpoint_syncs_max: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            ring_bytes: 256 << 20,
            grow_bytes: 8 << 20,
            checkpoint_bytes: 16 << 20,
            commit_bytes_max: 4 << 20,
            append_bytes_max: 64 << 10,
            checkpoint_syncs_max: 64,
        }
    }
}

/// Smallest ring a journal is created with.
pub const RING_BYTES_MIN: u64 = 1 << 20;

impl JournalConfig {
    /// The settings scaled down to a ring of `ring_bytes` (a journal keeps the ring size
    /// it was created with, which may be smaller than configured when the disk was small).
    pub fn fitted(&self, ring_bytes: u64) -> JournalConfig {
        let align = format::ALIGN_BYTES as u64;
        let commit_bytes_max = self
            .commit_bytes_max
            .min((ring_bytes / 8) as usize - format::ALIGN_BYTES);
        JournalConfig {
            ring_bytes,
            grow_bytes: self.grow_bytes.min(ring_bytes / 4 / align * align).max(align),
            checkpoint_bytes: self.checkpoint_bytes.min(ring_bytes / 4),
            commit_bytes_max,
            append_bytes_max: self.append_bytes_max.min(commit_bytes_max.saturating_sub(4096)),
            checkpoint_syncs_max: self.checkpoint_syncs_max,
        }
    }

    /// Checks the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        let align = format::ALIGN_BYTES as u64;
        let bad = |why: &str| Err(LogError::Config(format!("journal: {why}")));
        if self.ring_bytes % align != 0 || self.grow_bytes % align != 0 || self.grow_bytes == 0 {
            return bad("ring and growth sizes must be non-zero multiples of 4 KiB");
        }
        if self.grow_bytes > self.ring_bytes {
            return bad("the growth step exceeds the ring");
        }
        let record_max = format::padded(format::HEADER_BYTES + self.commit_bytes_max) as u64;
        if record_max > self.ring_bytes / 8 {
            return bad("a commit record may take at most an eighth of the ring");
        }
        if self.checkpoint_bytes == 0 || self.checkpoint_bytes > self.ring_bytes / 2 {
            return bad("the checkpoint interval must be within half the ring");
        }
        if self.append_bytes_max + 4096 > self.commit_bytes_max {
            return bad("an append must fit a commit record");
        }
        Ok(())
    }
}

/// Counters of a journal since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Commit records written.
    pub commits: u64,
    /// Appends those records carried.
    pub entries: u64,
    /// Bytes written into the ring, padding included.
    pub bytes: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Appends that synced their own segment because the pending record was full or the
    /// journal had failed.
    pub overflows: u64,
    /// Entries found after the last checkpoint when the journal was opened.
    pub recovered_entries: u64,
}

/// The shared journal of a set of logs. Cheap to clone; the threads stop when the last
/// clone is dropped (after writing what is pending) or at [`Journal::close`].
#[derive(Clone)]
pub struct Journal {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.handle.inner.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Stops the threads when dropped.
struct Handle {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

/// State shared by the journal's handle and its two threads.
pub(crate) struct Inner {
    dir: PathBuf,
    /// A directory on the logs' file system, for syncfs.
    root: PathBuf,
    storage: Arc<dyn Storage>,
    config: JournalConfig,
    /// The ring file, opened for durable (direct, `O_DSYNC`) writes.
    file: Arc<dyn StorageFile>,
    pending: Mutex<Pending>,
    /// Held while a record is being committed (see `writer`).
    committer: Mutex<writer::Committer>,
    /// Wakes the writer thread when kicked.
    work: Condvar,
    ring: Mutex<ring::Ring>,
    /// Wakes the keeper (growth, checkpoints) and a writer waiting for space.
    ring_changed: Condvar,
    /// Entries read at open, by key, until their logs take them.
    recovered: Mutex<HashMap<Box<[u8]>, Vec<recover::EntryRef>>>,
    /// Set by [`Journal::finish_recovery`]: checkpoints may run from then on.
    recovery_done: AtomicBool,
    /// Set when a write failed: later appends sync their own segments.
    failed: AtomicBool,
    /// Set by the first [`Journal::close`].
    closed: AtomicBool,
    /// When the last checkpoint finished (ms since the epoch), and the time between the
    /// last two: the writeback sweep paces itself on it.
    last_checkpoint_ms: AtomicI64,
    checkpoint_interval_ms: AtomicU64,
    /// The keeper sleeps until a commit wakes it (no sweeps while nothing is written).
    keeper_idle: AtomicBool,
    /// Commits counted at the keeper's last look.
    swept_at_commits: AtomicU64,
    /// Set while the last checkpoint attempt failed: a writer finding the ring full does
    /// not wait for the next one.
    checkpoint_failed: AtomicBool,
    stats: Stats,
    observer: Option<FsyncObserver>,
}

#[derive(Default)]
struct Stats {
    commits: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    checkpoints: AtomicU64,
    overflows: AtomicU64,
    recovered_entries: AtomicU64,
}

/// The record being filled, and what to do once it is durable.
struct Pending {
    buf: format::RecordBuf,
    marks: Vec<Mark>,
    /// Logs with entries since the last checkpoint started (each once: see `Link::dirty`).
    dirty: Vec<Weak<Shared>>,
    /// Where the keeper's next writeback sweep starts in `dirty`.
    sweep_cursor: usize,
    /// The writer thread waits for a kick.
    writer_idle: bool,
    /// The writer thread has work: pending entries nobody else commits, or a leftover.
    kicked: bool,
    /// The committer holds a record an appender could not write without waiting.
    leftover: bool,
    stopping: bool,
}

/// An append carried by the pending record: once the record is durable, the log's records
/// below `next_offset` are durable and readers may see up to `visible`.
pub(crate) struct Mark {
    pub log: Log,
    pub next_offset: i64,
    pub visible: Visible,
}

/// A log's tie to the journal.
#[derive(Debug)]
pub(crate) struct Link {
    pub journal: Journal,
    /// Names the log in the journal's entries; must stay the same across restarts and
    /// differ between a log and any log that replaces it later.
    pub key: Box<[u8]>,
    /// True while the log is in the journal's dirty list.
    pub dirty: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, reading what follows the last checkpoint;
    /// `root` is a directory on the logs' file system (for syncfs at checkpoints).
    ///
    /// Open every log that uses the journal with [`crate::Log::open_journaled`], then call
    /// [`Journal::finish_recovery`]: until then no checkpoint runs, so no entry a log has
    /// not taken yet is released.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        root: &Path,
        config: JournalConfig,
        observer: Option<FsyncObserver>,
    ) -> Result<Journal> {
        config.validate()?;
        let opened = recover::open(storage.as_ref(), dir, root, &config)?;
        let config = config.fitted(opened.ring.ring_bytes);
        config.validate()?;
        let stats = Stats::default();
        let recovered: usize = opened.entries.values().map(Vec::len).sum();
        stats.recovered_entries.store(recovered as u64, Ordering::Relaxed);
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
            config: config.clone(),
            file: opened.file,
            pending: Mutex::new(Pending {
                buf: format::RecordBuf::new(config.commit_bytes_max),
                marks: Vec::new(),
                dirty: Vec::new(),
                sweep_cursor: 0,
                writer_idle: false,
                kicked: false,
                leftover: false,
                stopping: false,
            }),
            committer: Mutex::new(writer::Committer::new(config.commit_bytes_max)),
            work: Condvar::new(),
            ring: Mutex::new(opened.ring),
            ring_changed: Condvar::new(),
            recovered: Mutex::new(opened.entries),
            recovery_done: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            last_checkpoint_ms: AtomicI64::new(0),
            checkpoint_interval_ms: AtomicU64::new(0),
            keeper_idle: AtomicBool::new(false),
            swept_at_commits: AtomicU64::new(0),
            checkpoint_failed: AtomicBool::new(false),
            stats,
            observer,
            storage,
        });
        let mut threads = Vec::with_capacity(2);
        // Names within the 15 characters Linux keeps, so ps and top show them whole.
        for (name, run) in [
            ("rivulet-journal", writer::run as fn(&Inner)),
            ("rivulet-keeper", keeper::run),
        ] {
            match spawn(name, inner.clone(), run) {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    inner.stop();
                    return Err(e);
                }
            }
        }
        Ok(Journal {
            handle: Arc::new(Handle {
                inner,
                threads: Mutex::new(threads),
            }),
        })
    }

    /// Ends recovery: entries no log took belong to logs that no longer exist and are
    /// released at the next checkpoint, which may run from now on.
    pub fn finish_recovery(&self) {
        let inner = &self.handle.inner;
        let left = std::mem::take(&mut *lock(&inner.recovered));
        if !left.is_empty() {
            let entries: usize = left.values().map(Vec::len).sum();
            info!(
                logs = left.len(),
                entries, "Journal entries of logs that no longer exist are dropped"
            );
        }
        inner.recovery_done.store(true, Ordering::SeqCst);
        inner.ring_changed.notify_all();
    }

    /// Writes what is pending, runs a last checkpoint (once recovery finished) so the next
    /// open replays nothing, and stops the threads. Appends after this sync their own
    /// segments.
    pub fn close(&self) -> Result<()> {
        self.abandon();
        let inner = &self.handle.inner;
        if inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if inner.recovery_done.load(Ordering::SeqCst) && !inner.failed.load(Ordering::SeqCst) {
            keeper::checkpoint(inner)?;
        }
        Ok(())
    }

    /// Stops the threads after writing what is pending, without a last checkpoint: the
    /// next open replays everything written since the last one, as after a crash.
    pub fn abandon(&self) {
        let inner = &self.handle.inner;
        inner.stop();
        let threads = std::mem::take(&mut *lock(&self.handle.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Counters since open.
    pub fn stats(&self) -> JournalStats {
        let s = &self.handle.inner.stats;
        JournalStats {
            commits: s.commits.load(Ordering::Relaxed),
            entries: s.entries.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            checkpoints: s.checkpoints.load(Ordering::Relaxed),
            overflows: s.overflows.load(Ordering::Relaxed),
            recovered_entries: s.recovered_entries.load(Ordering::Relaxed),
        }
    }

    /// The journal's settings.
    pub fn config(&self) -> &JournalConfig {
        &self.handle.inner.config
    }

    /// The data of every entry recorded for `key` after the last checkpoint, in order;
    /// each call hands them out once.
    pub(crate) fn take_recovered(&self, key: &[u8]) -> Result<Vec<Vec<u8>>> {
        let refs = lock(&self.handle.inner.recovered).remove(key).unwrap_or_default();
        recover::read_entries(&self.handle.inner, &refs)
    }

    /// Adds an append (the concatenation of `parts`) to the pending record. Called under
    /// the log's state lock, so each log's entries keep their order. False when the record
    /// is full or the journal failed: the caller syncs its own segment.
    ///
    /// Nothing is written yet: the appender's wait for durability commits the record (see
    /// [`Journal::lead_commit`]), or dropping its handle kicks the writer thread.
    pub(crate) fn submit(&self, link: &Link, parts: &[&[u8]], mark: Mark) -> bool {
        let inner = &self.handle.inner;
        let data_len: usize = parts.iter().map(|p| p.len()).sum();
        let mut p = lock(&inner.pending);
        if p.stopping || inner.failed.load(Ordering::Relaxed) || !p.buf.fits(link.key.len(), data_len) {
            drop(p);
            inner.stats.overflows.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        p.buf.push(&link.key, parts);
        if !link.dirty.swap(true, Ordering::AcqRel) {
            p.dirty.push(mark.log.downgrade());
        }
        p.marks.push(mark);
        // Appenders that append ahead of waiting would otherwise fill the record and fall
        // back to their own syncs: past a quarter, the writer thread starts committing.
        if p.buf.payload_bytes() >= inner.config.commit_bytes_max / 4 {
            p.kicked = true;
            if std::mem::take(&mut p.writer_idle) {
                drop(p);
                inner.work.notify_one();
            }
        }
        true
    }

    /// Commits what is pending on the calling thread, unless a commit is already running
    /// (its committer hands what is left to the writer thread). True when it wrote.
    pub(crate) fn lead_commit(&self) -> bool {
        writer::try_commit(&self.handle.inner)
    }

    /// Has the writer thread commit what is pending: for appends nobody waits for.
    pub(crate) fn kick(&self) {
        writer::kick(&self.handle.inner);
    }
}

impl Inner {
    fn stop(&self) {
        lock(&self.pending).stopping = true;
        self.work.notify_all();
        self.ring_changed.notify_all();
    }

    fn stopping(&self) -> bool {
        lock(&self.pending).stopping
    }
}

fn spawn(name: &str, inner: Arc<Inner>, run: fn(&Inner)) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || run(&inner))
        .map_err(|e| LogError::Io {
            op: "start a journal thread",
            path: PathBuf::from(name),
            source: e,
        })
}
