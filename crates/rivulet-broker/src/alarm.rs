//! Resource alarms. When the data directory's file system runs low on space, publishers
//! that can be told to wait (AMQP connections, with `connection.blocked`) are held back
//! instead of having their writes fail once the disk is full; consumers go on, freeing
//! space as they acknowledge. Log maintenance checks the space every interval.

use tokio::sync::watch;

use crate::Broker;

/// Default of [`crate::BrokerConfig::disk_free_min_bytes`], RabbitMQ's default disk limit.
pub const DISK_FREE_MIN_BYTES_DEFAULT: u64 = 50_000_000;

/// The broker's alarms: the reason publishers are held back, when they are.
#[derive(Debug)]
pub(crate) struct Alarms {
    disk: watch::Sender<Option<String>>,
}

impl Alarms {
    pub(crate) fn new() -> Alarms {
        Alarms {
            disk: watch::channel(None).0,
        }
    }
}

impl Broker {
    /// The current alarm: `Some(reason)` while publishers should wait. The receiver sees
    /// every change.
    pub fn alarm(&self) -> watch::Receiver<Option<String>> {
        self.inner.alarms.disk.subscribe()
    }

    /// Raises or clears the disk alarm from the data directory's free space. Blocking
    /// (statvfs).
    pub(crate) fn check_disk_alarm(&self) {
        let min = self.inner.config.disk_free_min_bytes;
        if min == 0 {
            return;
        }
        let path = &self.inner.config.data_dir;
        let free = match self.inner.context.storage.available_bytes(path) {
            Ok(free) => free,
            Err(e) => {
                tracing::warn!(error = %e, "Checking free disk space failed");
                return;
            }
        };
        let low = free < min;
        let raised = self.inner.alarms.disk.borrow().is_some();
        self.inner.metrics.set_disk_alarm(low);
        if low && !raised {
            let reason = format!("low on disk: {free} bytes free, below {min}");
            tracing::warn!(
                free_bytes = free,
                free_bytes_min = min,
                "Disk alarm: holding publishers back"
            );
            self.inner.alarms.disk.send_replace(Some(reason));
        } else if !low && raised {
            tracing::info!(free_bytes = free, "Disk alarm cleared");
            self.inner.alarms.disk.send_replace(None);
        }
    }
}
