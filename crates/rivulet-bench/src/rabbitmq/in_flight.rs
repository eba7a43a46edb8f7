//! The bounded window of records a RabbitMQ producer has published but not yet seen
//! confirmed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::{err, Result};
use crate::workload::AckSink;

/// Records published but not yet settled, bounded by a window: a producer takes a slot before
/// publishing and the confirmation (or its failure) gives it back.
pub(super) struct InFlight {
    slots: Semaphore,
    window: usize,
    state: Mutex<Outstanding>,
    acks: Arc<AckSink>,
}

/// What [`InFlight`] tracks besides the slots.
#[derive(Debug, Default)]
struct Outstanding {
    /// Records published and not yet settled.
    count: u64,
    /// Set once the producer stopped waiting: late confirmations are then ignored, the
    /// records having been counted as failed.
    abandoned: bool,
}

impl InFlight {
    /// A window of `window` records whose settlements go to `acks`.
    pub fn new(window: usize, acks: Arc<AckSink>) -> Self {
        let window = window.clamp(1, Semaphore::MAX_PERMITS);
        InFlight {
            slots: Semaphore::new(window),
            window,
            state: Mutex::new(Outstanding::default()),
            acks,
        }
    }

    /// Waits for a free slot and counts one more record in flight.
    pub async fn begin(&self) -> Result<()> {
        self.slots
            .acquire()
            .await
            .map_err(|_| err!("the in-flight window was closed"))?
            .forget();
        if let Ok(mut state) = self.state.lock() {
            state.count += 1;
        }
        Ok(())
    }

    /// The record sent for `intended` was confirmed (`ok`) or refused; frees its slot.
    pub fn settle(&self, intended: u64, ok: bool) {
        let Ok(mut state) = self.state.lock() else {
            self.acks.failed();
            return;
        };
        if state.abandoned {
            return;
        }
        state.count = state.count.saturating_sub(1);
        if ok {
            self.acks.acked(intended);
        } else {
            self.acks.failed();
        }
        drop(state);
        self.slots.add_permits(1);
    }

    /// Waits up to `limit` for every record in flight to settle; counts those that did not as
    /// failed and returns how many they were.
    pub async fn drain(&self, limit: Duration) -> u64 {
        let window = u32::try_from(self.window).unwrap_or(u32::MAX);
        if let Ok(Ok(all)) = tokio::time::timeout(limit, self.slots.acquire_many(window)).await {
            drop(all);
            return 0;
        }
        let Ok(mut state) = self.state.lock() else {
            return 0;
        };
        state.abandoned = true;
        let lost = state.count;
        state.count = 0;
        drop(state);
        for _ in 0..lost {
            self.acks.failed();
        }
        lost
    }
}
