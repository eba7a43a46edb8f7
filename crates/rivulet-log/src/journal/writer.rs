//! Commits: the pending record written with one durable write, then every log in it told
//! that its appends are on disk.
//!
//! One commit runs at a time, under the committer lock. A waiter on a plain thread runs it
//! on that thread ([`try_commit`]): no hand-over to another thread and back. Async waiters
//! (a durable write must not hold up an async runtime's thread), appends that arrive while
//! a commit runs, and appends nobody waits for are committed by the writer thread once
//! kicked ([`kick`]).

use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, TryLockError};
use std::time::Instant;

use tracing::{error, warn};

use super::format::{self, RecordBuf};
use super::ring::Wait;
use super::{lock, Inner, Mark};

/// The record being committed, owned by whoever holds the committer lock. A record that an
/// appender took but could not write without waiting stays here for the writer thread.
pub(super) struct Committer {
    buf: RecordBuf,
    marks: Vec<Mark>,
}

impl Committer {
    pub(super) fn new(commit_bytes_max: usize) -> Committer {
        Committer {
            buf: RecordBuf::new(commit_bytes_max),
            marks: Vec::new(),
        }
    }
}

/// Runs until the journal stops and nothing is left to commit.
pub(super) fn run(inner: &Inner) {
    // Each pass commits everything kicked; ends when stopped with nothing left.
    loop {
        let stopping = {
            let mut p = lock(&inner.pending);
            while !p.kicked && !p.stopping {
                p.writer_idle = true;
                p = inner.work.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            p.writer_idle = false;
            p.kicked = false;
            p.stopping
        };
        let mut c = lock(&inner.committer);
        // Bounded: each pass empties the committer or the pending record.
        while commit_once(inner, &mut c, true) {}
        if stopping && lock(&inner.pending).buf.entries() == 0 && c.buf.entries() == 0 {
            return;
        }
    }
}

/// Commits the pending record on the calling thread unless a commit is running or the
/// ring would make it wait. True when it wrote something.
pub(super) fn try_commit(inner: &Inner) -> bool {
    let mut c = match inner.committer.try_lock() {
        Ok(c) => c,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return false,
    };
    let wrote = commit_once(inner, &mut c, false);
    drop(c);
    // What arrived meanwhile waits for the writer thread, not for its appenders to retry.
    kick(inner);
    wrote
}

/// Has the writer thread commit what is pending or left over (if anything).
pub(super) fn kick(inner: &Inner) {
    let mut p = lock(&inner.pending);
    if p.buf.entries() == 0 && !p.leftover {
        return;
    }
    p.kicked = true;
    if std::mem::take(&mut p.writer_idle) {
        drop(p);
        inner.work.notify_one();
    }
}

/// Writes one record: the one left over, or else the pending one. False when there was
/// nothing to write or it could not be written without waiting (`may_wait` unset).
fn commit_once(inner: &Inner, c: &mut MutexGuard<'_, Committer>, may_wait: bool) -> bool {
    if c.buf.entries() == 0 {
        let mut p = lock(&inner.pending);
        if p.buf.entries() == 0 {
            return false;
        }
        let Committer { buf, marks } = &mut **c;
        std::mem::swap(&mut p.buf, buf);
        std::mem::swap(&mut p.marks, marks);
    }
    let entries = u64::from(c.buf.entries());
    match commit(inner, &mut c.buf, may_wait) {
        Ok(len) => {
            let s = &inner.stats;
            s.commits.fetch_add(1, Ordering::Relaxed);
            s.entries.fetch_add(entries, Ordering::Relaxed);
            s.bytes.fetch_add(len, Ordering::Relaxed);
            for mark in c.marks.drain(..) {
                mark.log.journal_committed(mark.next_offset, mark.visible);
            }
        }
        Err(Failure::WouldWait) => {
            // Left for the writer thread, which commits it before anything newer.
            let mut p = lock(&inner.pending);
            p.leftover = true;
            return false;
        }
        Err(Failure::NoRoom(reason)) => make_durable_elsewhere(inner, &reason, &mut c.marks),
        Err(Failure::Write(reason)) => fail(inner, &reason, &mut c.marks),
    }
    c.buf.clear();
    lock(&inner.pending).leftover = false;
    true
}

/// Why a record was not written.
enum Failure {
    /// An appender's commit would wait for the keeper; the writer thread takes it over.
    WouldWait,
    /// The ring is full and no checkpoint can free it now; the journal stays in service.
    NoRoom(String),
    /// The write failed; the journal goes out of service.
    Write(String),
}

/// The ring had no room for this record: its logs are synced here and now, before any
/// later record can report their later appends durable.
fn make_durable_elsewhere(inner: &Inner, reason: &str, marks: &mut Vec<Mark>) {
    warn!(journal = %inner.dir.display(), reason, "Journal full; syncing the partitions of one commit directly");
    inner
        .stats
        .overflows
        .fetch_add(marks.len() as u64, Ordering::Relaxed);
    for mark in marks.drain(..) {
        // A failure is recorded in the log's durability state, where its waiters see it.
        let _ = mark.log.sync_to(mark.next_offset);
    }
}

/// After a failed write the journal is out of service: its appends, and every later one,
/// are made durable by syncing their own segments, where the data already is.
fn fail(inner: &Inner, reason: &str, marks: &mut Vec<Mark>) {
    if !inner.failed.swap(true, Ordering::SeqCst) {
        error!(journal = %inner.dir.display(), error = reason, "Journal write failed; partitions sync their own segments from now on");
    }
    for mark in marks.drain(..) {
        mark.log.request_durable(mark.next_offset);
    }
}

/// Writes `buf` as the next record; returns the bytes it took in the ring.
fn commit(inner: &Inner, buf: &mut RecordBuf, may_wait: bool) -> Result<u64, Failure> {
    if inner.failed.load(Ordering::SeqCst) {
        return Err(Failure::Write("the journal failed earlier".into()));
    }
    let len = format::padded(format::HEADER_BYTES + buf.payload_bytes()) as u64;
    let (at, lsn, ring_bytes) = reserve(inner, len, may_wait)?;
    let record = buf.seal(lsn);
    debug_assert_eq!(record.len() as u64, len);
    let started = Instant::now();
    inner
        .file
        .write_all_at(record, at % ring_bytes)
        .map_err(|e| Failure::Write(format!("writing {len} bytes at {}: {e}", at % ring_bytes)))?;
    if let Some(observe) = &inner.observer {
        observe(started.elapsed());
    }
    let mut ring = lock(&inner.ring);
    let used_before = ring.used();
    ring.advance(at, len);
    // The keeper is woken when the checkpoint threshold is crossed, not on every commit
    // while a checkpoint runs.
    let crossed = [inner.config.checkpoint_bytes, ring.ring_bytes / 2]
        .iter()
        .any(|&threshold| used_before < threshold && ring.used() >= threshold);
    let keeper_asleep =
        inner.keeper_idle.load(Ordering::Relaxed) && inner.keeper_idle.swap(false, Ordering::SeqCst);
    let wake = crossed || keeper_asleep || ring.wants_growth(inner.config.grow_bytes);
    drop(ring);
    if wake {
        inner.ring_changed.notify_all();
    }
    Ok(len)
}

/// Waits until the ring has room for `len` bytes: `(position, lsn, ring size)`.
fn reserve(inner: &Inner, len: u64, may_wait: bool) -> Result<(u64, u64, u64), Failure> {
    let mut ring = lock(&inner.ring);
    // Each pass waits for the keeper to grow the file or checkpoint; bounded by them.
    loop {
        match ring.reserve(len) {
            Ok(at) => return Ok((at, ring.lsn, ring.ring_bytes)),
            // The keeper could not preallocate: nobody will make room.
            Err(_) if inner.failed.load(Ordering::SeqCst) => {
                return Err(Failure::Write("the journal could not be preallocated".into()));
            }
            Err(_) if !may_wait => {
                drop(ring);
                inner.ring_changed.notify_all();
                return Err(Failure::WouldWait);
            }
            Err(Wait::Checkpoint) if !inner.recovery_done.load(Ordering::SeqCst) => {
                return Err(Failure::NoRoom(
                    "no checkpoint may run before recovery finished".into(),
                ));
            }
            Err(Wait::Checkpoint) if inner.checkpoint_failed.load(Ordering::SeqCst) => {
                return Err(Failure::NoRoom("the last checkpoint failed".into()));
            }
            // The keeper stops with the journal: nobody would make room.
            Err(_) if inner.stopping() => return Err(Failure::NoRoom("the journal is stopping".into())),
            Err(_) => {
                inner.ring_changed.notify_all();
                ring = inner.ring_changed.wait(ring).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}
