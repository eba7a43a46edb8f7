//! Queues, exchanges and bindings, protocol-neutral: what an AMQP 0-9-1 front end calls.
//!
//! A queue is a single-partition topic of the same name plus settlement state ([`Queue`]):
//! competing consumers acquire messages, then accept (ack), release (requeue) or reject
//! them. Durable queues keep their ack floor and the settled offsets above it in the
//! internal compacted log `__queue_state`; exchanges, durable queues and bindings live in
//! `<data_dir>/amqp/definitions.json`, rewritten atomically on every change. Transient and
//! exclusive queues vanish at restart, their topics with them.

pub mod args;
mod declare;
mod definitions;
pub mod error;
mod publish;
mod queue;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

pub use error::QueueError;
pub use publish::QueueAppend;
pub use queue::{Queue, QueueCounts, QueueRates, QueueSpec, StoredState, STORED_RANGES_MAX, WINDOW_MAX};

use crate::offsets::OffsetStore;
use crate::routing::Topology;

/// Name of the internal log keeping durable queues' settlement state.
pub const QUEUE_STATE_TOPIC: &str = "__queue_state";
/// How often the queue state log is synced: acknowledgements are written as they are
/// applied (a crash of the process keeps them) and reach the disk within this interval (a
/// power loss may bring back messages acknowledged in the last interval).
pub const STATE_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Largest number of queues.
pub const QUEUES_MAX: usize = 10_000;
/// The connection id operators act as (HTTP API, CLI): exclusive queues do not lock them out.
pub const OPERATOR: u64 = u64::MAX;

/// What a declaration answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The queue's name (generated for a server-named queue).
    pub name: String,
    /// Messages ready for delivery.
    pub messages: u64,
    /// Consumers attached.
    pub consumers: u32,
}

/// The registry of queues and the exchange topology.
#[derive(Debug)]
pub struct Queues {
    registry: Mutex<Registry>,
    state: OffsetStore,
    definitions: PathBuf,
}

#[derive(Debug, Default)]
struct Registry {
    topology: Topology,
    queues: BTreeMap<String, Arc<Queue>>,
}

impl Queues {
    pub(crate) fn new(state: OffsetStore, definitions: PathBuf) -> Queues {
        Queues {
            registry: Mutex::new(Registry::default()),
            state,
            definitions,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The internal log of settlement state.
    pub(crate) fn state_log(&self) -> &OffsetStore {
        &self.state
    }

    /// One queue.
    pub fn get(&self, name: &str) -> Option<Arc<Queue>> {
        self.lock().queues.get(name).cloned()
    }

    /// Every queue, by name.
    pub fn list(&self) -> Vec<Arc<Queue>> {
        self.lock().queues.values().cloned().collect()
    }

    /// A copy of the exchanges and bindings.
    pub fn topology(&self) -> Topology {
        self.lock().topology.clone()
    }
}

/// What an operator sees of a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueInfo {
    /// Name (also its topic's).
    pub name: String,
    /// How it was declared.
    pub spec: QueueSpec,
    /// Exclusive to a connection.
    pub owner: Option<u64>,
    /// Ready, unacknowledged and consumers.
    pub counts: QueueCounts,
    /// Every message below is settled.
    pub ack_floor: i64,
    /// End of the messages consumers may be handed.
    pub end: i64,
    /// Bytes of the queue's topic on disk.
    pub size_bytes: u64,
    /// Messages through the queue and their rates.
    pub rates: QueueRates,
}

impl crate::Broker {
    /// A queue's counts; a stream's ready count is every message it holds.
    pub fn queue_counts(&self, queue: &Queue, end: i64) -> QueueCounts {
        let mut counts = queue.counts(end);
        if queue.is_stream() {
            let start = self
                .topic(queue.name())
                .and_then(|t| t.offsets(0))
                .map_or(0, |o| o.0);
            counts.ready = u64::try_from(end - start).unwrap_or(0);
            counts.unacked = 0;
        }
        counts
    }

    /// One queue's operator view.
    pub fn queue_info(&self, name: &str) -> Option<QueueInfo> {
        let queue = self.inner.queues.get(name)?;
        Some(self.info_of(&queue))
    }

    /// Every queue's operator view, by name.
    pub fn queue_infos(&self) -> Vec<QueueInfo> {
        self.inner.queues.list().iter().map(|q| self.info_of(q)).collect()
    }

    fn info_of(&self, queue: &Queue) -> QueueInfo {
        let end = self.queue_end(queue.name());
        QueueInfo {
            name: queue.name().to_string(),
            spec: queue.spec().clone(),
            owner: queue.owner(),
            counts: self.queue_counts(queue, end),
            ack_floor: queue.floor(),
            end,
            size_bytes: self.topic(queue.name()).map_or(0, |t| t.size_bytes()),
            rates: queue.rates(),
        }
    }
}
