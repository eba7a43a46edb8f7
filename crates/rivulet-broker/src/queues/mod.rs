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
pub use queue::{Queue, QueueCounts, QueueSpec, StoredState, STORED_RANGES_MAX, WINDOW_MAX};

use crate::offsets::OffsetStore;
use crate::routing::Topology;

/// Name of the internal log keeping durable queues' settlement state.
pub const QUEUE_STATE_TOPIC: &str = "__queue_state";
/// Largest number of queues.
pub const QUEUES_MAX: usize = 10_000;

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
