//! Waiting for data: a reader that found nothing parks on the high-watermark channels of
//! the partitions it reads, so the first append (or a deadline, or shutdown) wakes it.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::Broker;

type Change<'a> = Pin<Box<dyn Future<Output = Result<(), watch::error::RecvError>> + Send + 'a>>;

/// Why [`DataWatch::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// A watched partition's high watermark moved.
    Data,
    /// The deadline passed.
    Deadline,
    /// The broker is shutting down; long polls should answer now.
    ShuttingDown,
}

/// The high-watermark channels of a set of partitions. Create it before reading: a change
/// between the read and the wait is not missed.
#[derive(Debug)]
pub struct DataWatch {
    receivers: Vec<watch::Receiver<i64>>,
    shutdown: watch::Receiver<bool>,
}

impl Broker {
    /// Watches the given partitions; unknown topics and partitions are left out.
    pub fn watch<'a>(&self, partitions: impl IntoIterator<Item = (&'a str, i32)>) -> DataWatch {
        let mut receivers = Vec::new();
        for (topic, partition) in partitions {
            if let Some(log) = self.topic(topic).and_then(|t| t.partition(partition).cloned()) {
                receivers.push(log.subscribe());
            }
        }
        DataWatch {
            receivers,
            shutdown: self.inner.shutdown.subscribe(),
        }
    }
}

impl DataWatch {
    /// Number of partitions watched.
    pub fn len(&self) -> usize {
        self.receivers.len()
    }

    /// True when no partition is watched (waits end only at the deadline or shutdown).
    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }

    /// Waits until a watched partition's high watermark moves, the deadline passes or the
    /// broker shuts down.
    pub async fn wait(&mut self, deadline: Instant) -> Woke {
        if *self.shutdown.borrow() {
            return Woke::ShuttingDown;
        }
        // Every `changed()` future stays alive while waiting so each keeps its waker
        // registered; the first change of any partition wakes the wait.
        let mut changes: Vec<Option<Change<'_>>> = self
            .receivers
            .iter_mut()
            .map(|rx| Some(Box::pin(rx.changed()) as Change<'_>))
            .collect();
        let any_change = std::future::poll_fn(|cx| {
            for slot in changes.iter_mut() {
                let Some(change) = slot else { continue };
                if let Poll::Ready(result) = change.as_mut().poll(cx) {
                    if result.is_ok() {
                        return Poll::Ready(());
                    }
                    // A closed channel (a deleted topic) is not data; stop watching it.
                    *slot = None;
                }
            }
            Poll::Pending
        });
        tokio::select! {
            _ = any_change => Woke::Data,
            _ = tokio::time::sleep_until(deadline) => Woke::Deadline,
            _ = self.shutdown.wait_for(|stop| *stop) => Woke::ShuttingDown,
        }
    }
}
