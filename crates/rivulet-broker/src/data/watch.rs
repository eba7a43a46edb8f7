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

/// Partitions beyond which a watch waits on the broker-wide activity signal (any
/// partition's high watermark moving) instead of on one channel per partition: a reader of
/// thousands of partitions then costs one subscription, and re-checks its partitions when
/// anything moved.
pub const WATCH_PARTITIONS_MAX: usize = 64;

/// The high-watermark channels of a set of partitions. Create it before reading: a change
/// between the read and the wait is not missed.
#[derive(Debug)]
pub struct DataWatch {
    receivers: Vec<watch::Receiver<i64>>,
    /// Set instead of `receivers` for large sets.
    any: Option<watch::Receiver<u64>>,
    shutdown: watch::Receiver<bool>,
}

impl Broker {
    /// Watches the given partitions; unknown topics and partitions are left out. Sets of
    /// more than [`WATCH_PARTITIONS_MAX`] partitions wake on any partition's data.
    pub fn watch<'a>(&self, partitions: impl IntoIterator<Item = (&'a str, i32)>) -> DataWatch {
        let mut receivers = Vec::new();
        let mut current: Option<(&str, std::sync::Arc<crate::Topic>)> = None;
        for (topic, partition) in partitions {
            if current.as_ref().is_none_or(|(name, _)| *name != topic) {
                current = self.topic(topic).map(|t| (topic, t));
            }
            let Some((_, t)) = &current else { continue };
            if let Some(log) = t.partition(partition) {
                receivers.push(log.subscribe());
            }
            if receivers.len() > WATCH_PARTITIONS_MAX {
                return DataWatch {
                    receivers: Vec::new(),
                    any: Some(self.inner.context.activity.subscribe()),
                    shutdown: self.inner.shutdown.subscribe(),
                };
            }
        }
        DataWatch {
            receivers,
            any: None,
            shutdown: self.inner.shutdown.subscribe(),
        }
    }
}

impl Broker {
    /// A watch woken by any partition's data (for readers of very many partitions).
    pub fn watch_all(&self) -> DataWatch {
        DataWatch {
            receivers: Vec::new(),
            any: Some(self.inner.context.activity.subscribe()),
            shutdown: self.inner.shutdown.subscribe(),
        }
    }
}

impl DataWatch {
    /// Number of partitions watched one by one (0 for a watch on all activity).
    pub fn len(&self) -> usize {
        self.receivers.len()
    }

    /// True when nothing is watched (waits end only at the deadline or shutdown).
    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty() && self.any.is_none()
    }

    /// True when this watch wakes on any partition's data (a large set).
    pub fn watches_all(&self) -> bool {
        self.any.is_some()
    }

    /// Waits until a watched partition's high watermark moves, the deadline passes or the
    /// broker shuts down.
    pub async fn wait(&mut self, deadline: Instant) -> Woke {
        if *self.shutdown.borrow() {
            return Woke::ShuttingDown;
        }
        if let Some(any) = self.any.as_mut() {
            let changed = async {
                if any.changed().await.is_err() {
                    // The broker is gone: nothing more will arrive.
                    std::future::pending::<()>().await;
                }
            };
            return tokio::select! {
                _ = changed => Woke::Data,
                _ = tokio::time::sleep_until(deadline) => Woke::Deadline,
                _ = self.shutdown.wait_for(|stop| *stop) => Woke::ShuttingDown,
            };
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
