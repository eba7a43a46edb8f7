//! The broker's own background work, started by [`crate::Broker::open`] for every user of
//! the broker (`rivulet serve`, the embedded SDK, tests): consumer-group ticks on one
//! thread, transaction timeouts on another, log maintenance (interval flushes, segment rolls, retention, compaction) on
//! another, so a long compaction never delays a session expiry.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Broker, Inner};

/// A background thread: its name, period and work.
type Job = (&'static str, Duration, fn(&Broker));

/// Stops the background threads; they also stop on their own once the broker is gone.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Sleeps up to `period`; true when asked to stop.
    fn sleep(&self, period: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, period, |s| !*s)
            .unwrap_or_else(|p| p.into_inner());
        *stopped
    }

    pub(crate) fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }
}

/// The running background threads.
#[derive(Debug, Default)]
pub(crate) struct Background {
    pub(crate) stop: Arc<Stop>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Background {
    /// Starts the group-tick and maintenance threads of `inner`.
    pub(crate) fn start(&self, inner: Weak<Inner>, tick: Duration, maintain: Duration) {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        // Thread names within the 15 characters Linux keeps.
        let jobs: [Job; 3] = [
            ("rivulet-groups", tick, |b| b.groups().tick()),
            ("rivulet-txns", tick, |b| b.tick_transactions()),
            ("rivulet-maint", maintain, |b| b.maintain(rivulet_log::now_ms())),
        ];
        for (name, period, job) in jobs {
            let inner = inner.clone();
            let stop = self.stop.clone();
            let spawned = std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || run(&inner, &stop, period, job));
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => tracing::error!(thread = name, error = %e, "Cannot start a background thread"),
            }
        }
    }

    /// Stops the threads and waits for the work in progress to finish.
    pub(crate) fn stop_and_join(&self) {
        self.stop.stop();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in threads {
            if handle.thread().id() == std::thread::current().id() {
                continue;
            }
            let _ = handle.join();
        }
    }
}

fn run(inner: &Weak<Inner>, stop: &Stop, period: Duration, job: fn(&Broker)) {
    while !stop.sleep(period) {
        let Some(inner) = inner.upgrade() else { return };
        job(&Broker { inner });
    }
}
