//! The flush pool: a bounded set of threads that run the fdatasyncs of every log.
//!
//! A log that has records waiting for the disk is put in the pool's queue once (see
//! [`crate::durable`]); a free flusher takes it, syncs everything written before the sync
//! started, and puts it back at the end of the queue when more was requested meanwhile. So
//! concurrent appends to one log share syncs (group commit), logs take turns fairly, and the
//! number of threads is bounded by the pool's size, not by the number of partitions.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tracing::{error, warn};

use crate::log::{Log, Shared};

/// Called with the duration of every fdatasync the pool's logs make (for metrics).
pub type FsyncObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// Threads of a pool whose size is not set: four per CPU, within `[4, 64]`. Syncs mostly
/// wait for the device, so more threads than CPUs keep several syncs in flight.
pub fn default_flush_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cpus * 4).clamp(4, FLUSH_THREADS_MAX)
}

/// Largest pool accepted.
pub const FLUSH_THREADS_MAX: usize = 256;

/// A bounded pool of flusher threads shared by many logs. Cheap to clone; the threads stop
/// when the last clone (and every log opened with it) is gone.
#[derive(Clone)]
pub struct FlushPool {
    handle: Arc<PoolHandle>,
}

impl std::fmt::Debug for FlushPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushPool")
            .field("threads_max", &self.handle.inner.threads_max)
            .field("threads", &self.threads())
            .finish()
    }
}

/// Stops the threads when dropped.
struct PoolHandle {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    queue: Mutex<Queue>,
    wake: Condvar,
    threads_max: usize,
    observer: Option<FsyncObserver>,
}

#[derive(Default)]
struct Queue {
    /// Logs waiting for a flusher, each at most once (see `Durability::request`).
    ready: VecDeque<Weak<Shared>>,
    threads: usize,
    idle: usize,
    stop: bool,
}

impl Drop for PoolHandle {
    fn drop(&mut self) {
        lock(&self.inner.queue).stop = true;
        self.inner.wake.notify_all();
    }
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FlushPool {
    /// A pool of at most `threads_max` threads (at least 1), started as work arrives.
    pub fn new(threads_max: usize, observer: Option<FsyncObserver>) -> FlushPool {
        let threads_max = threads_max.clamp(1, FLUSH_THREADS_MAX);
        FlushPool {
            handle: Arc::new(PoolHandle {
                inner: Arc::new(PoolInner {
                    queue: Mutex::new(Queue::default()),
                    wake: Condvar::new(),
                    threads_max,
                    observer,
                }),
            }),
        }
    }

    /// The process-wide pool of [`default_flush_threads`] threads, used by logs opened
    /// without a pool of their own.
    pub fn global() -> FlushPool {
        static GLOBAL: OnceLock<FlushPool> = OnceLock::new();
        GLOBAL
            .get_or_init(|| FlushPool::new(default_flush_threads(), None))
            .clone()
    }

    /// The most threads this pool starts.
    pub fn threads_max(&self) -> usize {
        self.handle.inner.threads_max
    }

    /// Threads started so far.
    pub fn threads(&self) -> usize {
        lock(&self.handle.inner.queue).threads
    }

    pub(crate) fn observe(&self, elapsed: Duration) {
        if let Some(observe) = &self.handle.inner.observer {
            observe(elapsed);
        }
    }

    /// Queues a log for a sync pass. The caller holds the log's `queued` flag.
    pub(crate) fn enqueue(&self, log: &Log) {
        let inner = &self.handle.inner;
        let mut queue = lock(&inner.queue);
        queue.ready.push_back(log.downgrade());
        if queue.idle > 0 || queue.threads >= inner.threads_max {
            drop(queue);
            inner.wake.notify_one();
            return;
        }
        let worker = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("rivulet-fsync".into())
            .spawn(move || flusher_loop(&worker));
        match spawned {
            Ok(_) => queue.threads += 1,
            Err(e) if queue.threads > 0 => {
                warn!(error = %e, threads = queue.threads, "Cannot start another flusher thread; the running ones continue");
            }
            Err(e) => {
                // No flusher at all: sync here, so no writer waits for ever.
                error!(error = %e, "Cannot start a flusher thread; syncing on the writer's thread");
                queue.ready.pop_back();
                drop(queue);
                sync_pass(log);
            }
        }
    }
}

fn flusher_loop(inner: &PoolInner) {
    loop {
        let next = {
            let mut queue = lock(&inner.queue);
            loop {
                if queue.stop {
                    queue.threads -= 1;
                    return;
                }
                if let Some(next) = queue.ready.pop_front() {
                    break next;
                }
                queue.idle += 1;
                queue = inner.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
                queue.idle -= 1;
            }
        };
        let Some(log) = Log::upgrade(&next) else {
            continue;
        };
        if sync_pass(&log) {
            lock(&inner.queue).ready.push_back(next);
        }
    }
}

/// One sync of everything written so far; true when the log needs another pass.
fn sync_pass(log: &Log) -> bool {
    let end = log.log_end_offset();
    // A failure is recorded in the log's durability state, where its waiters see it.
    let _ = log.sync_to(end);
    log.durability().finish_pass()
}
