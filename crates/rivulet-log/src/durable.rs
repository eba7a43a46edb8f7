//! Durability of a log: how far it is on disk, and waiting for that.
//!
//! Each log keeps one [`Durability`]: the durable offset and a sync failure, written only by
//! the sync path ([`crate::Log`]'s `sync_to`), plus the bookkeeping of flush requests. An
//! append returns a [`Durable`] handle; awaiting it (or blocking on it) is the only way to
//! wait for the disk, so no caller can forget to ask for the sync it waits for.

use std::sync::{Condvar, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::error::{LogError, Result};
use crate::log::Log;

/// The durable end of one log and the flush requests waiting on it.
#[derive(Debug)]
pub(crate) struct Durability {
    state: Mutex<DurableState>,
    /// Wakes threads in [`Durable::wait_blocking`].
    blocking: Condvar,
    /// Wakes tasks in [`Durable::wait`].
    waiters: Notify,
}

#[derive(Debug)]
struct DurableState {
    /// Offset below which every record is on disk. Written only by the sync path.
    durable: i64,
    /// Why a sync failed; every later wait fails with it until the log is reopened.
    failed: Option<String>,
    /// The highest offset a writer asked to make durable.
    requested: i64,
    /// True while the log waits in the flush pool's queue or a flusher works on it, so a
    /// log is never queued twice and never synced by two flushers at once.
    queued: bool,
    /// Threads blocked in [`Durable::wait_blocking`]: the condvar is signalled only for
    /// them (a signal is a system call even with nobody waiting).
    blocked: usize,
}

/// What a writer must do after asking for a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// The offset is already durable, or a flusher will cover it.
    Covered,
    /// Put the log in the flush pool's queue.
    Enqueue,
}

fn lock(m: &Mutex<DurableState>) -> MutexGuard<'_, DurableState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Durability {
    /// State of a log whose first `durable` offsets are on disk.
    pub(crate) fn new(durable: i64) -> Durability {
        Durability {
            state: Mutex::new(DurableState {
                durable,
                failed: None,
                requested: durable,
                queued: false,
                blocked: 0,
            }),
            blocking: Condvar::new(),
            waiters: Notify::new(),
        }
    }

    /// Offset below which everything is on disk.
    pub(crate) fn offset(&self) -> i64 {
        lock(&self.state).durable
    }

    /// Records that a writer wants every offset below `next_offset` on disk.
    pub(crate) fn request(&self, next_offset: i64) -> Request {
        let mut st = lock(&self.state);
        if st.durable >= next_offset || st.failed.is_some() {
            return Request::Covered;
        }
        st.requested = st.requested.max(next_offset);
        if st.queued {
            return Request::Covered;
        }
        st.queued = true;
        Request::Enqueue
    }

    /// Called by a flusher after a sync pass: true when more was requested meanwhile and
    /// the log must stay queued for another pass.
    pub(crate) fn finish_pass(&self) -> bool {
        let mut st = lock(&self.state);
        assert!(st.queued, "a flusher finished a log that was not queued");
        let again = st.failed.is_none() && st.requested > st.durable;
        st.queued = again;
        again
    }

    /// The sync path: every offset below `target` is on disk.
    pub(crate) fn mark_durable(&self, target: i64) {
        {
            let mut st = lock(&self.state);
            if target <= st.durable {
                return;
            }
            st.durable = target;
        }
        self.wake();
    }

    /// The sync path: a sync failed; waiters get this reason.
    pub(crate) fn fail(&self, reason: String) {
        lock(&self.state).failed.get_or_insert(reason);
        self.wake();
    }

    fn wake(&self) {
        if lock(&self.state).blocked > 0 {
            self.blocking.notify_all();
        }
        self.waiters.notify_waiters();
    }

    /// `Some` once the offset is durable or a sync failed.
    fn check(&self, next_offset: i64) -> Option<Result<(), String>> {
        let st = lock(&self.state);
        if st.durable >= next_offset {
            Some(Ok(()))
        } else {
            st.failed.clone().map(Err)
        }
    }

    /// Waits until `next_offset` is durable; `kick` asks whoever makes it so (the journal's
    /// writer thread) to go ahead, without doing any I/O on this thread.
    async fn wait(&self, next_offset: i64, kick: impl Fn()) -> Result<(), String> {
        loop {
            let notified = self.waiters.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake between the check and the await is
            // not lost.
            notified.as_mut().enable();
            if let Some(result) = self.check(next_offset) {
                return result;
            }
            kick();
            notified.await;
        }
    }

    fn wait_blocking(&self, next_offset: i64, lead: impl Fn() -> bool) -> Result<(), String> {
        loop {
            if let Some(result) = self.check(next_offset) {
                return result;
            }
            if !lead() {
                break;
            }
        }
        let mut st = lock(&self.state);
        st.blocked += 1;
        let result = loop {
            if st.durable >= next_offset {
                break Ok(());
            }
            if let Some(reason) = &st.failed {
                break Err(reason.clone());
            }
            st = self.blocking.wait(st).unwrap_or_else(|p| p.into_inner());
        };
        st.blocked -= 1;
        result
    }
}

/// A promise that appended records reach the disk: returned by [`Log::append`], resolved by
/// the log's flushers under `fsync=always` and at once under other policies.
#[derive(Debug, Clone)]
#[must_use = "a record is durable only once its Durable handle resolved"]
pub struct Durable {
    /// `None` when there is nothing to wait for.
    log: Option<Log>,
    next_offset: i64,
}

impl Durable {
    /// A handle with nothing to wait for.
    pub fn ready() -> Durable {
        Durable {
            log: None,
            next_offset: 0,
        }
    }

    pub(crate) fn pending(log: Log, next_offset: i64) -> Durable {
        Durable {
            log: Some(log),
            next_offset,
        }
    }

    /// The offset after the last record this handle waits for.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// True when waiting would return at once.
    pub fn is_ready(&self) -> bool {
        self.log
            .as_ref()
            .is_none_or(|log| log.durable_offset() >= self.next_offset)
    }

    /// Waits until the records are on disk. Fails when a sync failed (the log then refuses
    /// writes until it is reopened).
    ///
    /// Records waiting in the shared journal are committed by its writer thread, which
    /// this wakes: a durable write takes a tenth of a millisecond on an idle disk but can
    /// take hundreds behind a flood of writeback, and it must not hold up an async
    /// runtime's thread and every connection served there.
    pub async fn wait(mut self) -> Result<()> {
        let Some(log) = self.log.clone() else {
            return Ok(());
        };
        let result = log
            .durability()
            .wait(self.next_offset, || log.kick_journal())
            .await;
        // Resolved: dropping the handle has nothing left to hand over.
        self.log = None;
        result.map_err(|reason| log.sync_failure(reason))
    }

    /// [`Durable::wait`] for threads outside an async runtime. When the records wait in the
    /// shared journal and no commit is running, the commit runs on this thread: no
    /// hand-over to the writer thread and back.
    pub fn wait_blocking(mut self) -> Result<()> {
        let Some(log) = self.log.take() else { return Ok(()) };
        let result = log
            .durability()
            .wait_blocking(self.next_offset, || log.lead_journal_commit());
        result.map_err(|reason| log.sync_failure(reason))
    }

    /// Combines handles: resolves when every one has (for one request spanning several
    /// partitions, whose syncs run in parallel).
    pub async fn wait_all(handles: Vec<Durable>) -> Result<()> {
        let mut first_error = None;
        for handle in handles {
            if let Err(e) = handle.wait().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Durable {
    /// A handle dropped before it resolved (nobody waits, or the wait was cancelled) hands
    /// its journal record to the writer thread, so the records still become durable and
    /// visible.
    fn drop(&mut self) {
        if let Some(log) = &self.log {
            if log.durable_offset() < self.next_offset {
                log.kick_journal();
            }
        }
    }
}

impl Log {
    pub(crate) fn sync_failure(&self, reason: String) -> LogError {
        LogError::Io {
            op: "group commit",
            path: self.dir().to_path_buf(),
            source: std::io::Error::other(reason),
        }
    }
}
