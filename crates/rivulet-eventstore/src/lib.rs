//! Rivulet's event store: named streams of events with revisions, appends checked against an
//! expected state, durable idempotency by event id, one global order (`$all`), and
//! projections by category and event type, on the broker's own log.
//!
//! Every event is a record of one single-partition topic (`eventstore.all` by default),
//! so the log's offset is the event's global position, the log's group commit makes appends
//! durable, and any Kafka client can read `$all` as a topic. An append of several events,
//! or of several streams, is one record batch: all or nothing. Appends are checked and
//! written one at a time under the writer lock; the wait for the disk is shared. An index in
//! redb maps streams to revisions and event ids to where they were written; it only holds
//! durable events and is completed from the log at start-up, so it never disagrees with the
//! log after a crash.

mod append;
mod codec;
pub mod error;
mod filter;
mod index;
mod indexer;
pub mod model;
pub mod persistent;
mod read;
mod scavenge;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivulet_broker::Broker;
use tokio::sync::watch;

pub use error::{EventStoreError, Result};
pub use filter::{EventFilter, FilterOn, FilterSpec};
pub use model::{
    AppendResult, ContentType, Direction, ExpectedState, NewEvent, RecordedEvent, StreamAppend, StreamHead,
    StreamSummary,
};
pub use persistent::{PersistentSubscriptions, Subscription};
pub use read::{AllFilter, AllSlice, StreamSlice};

/// The event store's topic unless configured otherwise.
pub const DEFAULT_TOPIC: &str = "eventstore.all";
/// Most events in one append (all streams together).
pub const APPEND_EVENTS_MAX: usize = 4096;
/// Longest stream name, in bytes.
pub const STREAM_NAME_BYTES_MAX: usize = 1024;
/// Longest event type, in bytes.
pub const EVENT_TYPE_BYTES_MAX: usize = 512;
/// Most events one read returns.
pub const READ_EVENTS_MAX: usize = 10_000;

/// Where the store keeps its index and which topic holds its events.
#[derive(Debug, Clone)]
pub struct EventStoreConfig {
    /// The topic of every event (one partition, never deleted by retention).
    pub topic: String,
    /// Directory of the index (`index.redb`).
    pub dir: PathBuf,
    /// How often the index is made durable; a crash costs re-indexing at most this much of
    /// the log, never an event.
    pub index_sync_interval: Duration,
    /// How often the store looks whether to scavenge (see [`EventStore::scavenge`]): it does
    /// when streams were deleted or their metadata changed since the last scavenge, and at
    /// least daily (`$maxAge` expires events without any change). `None`: only when asked.
    pub scavenge_interval: Option<Duration>,
}

impl EventStoreConfig {
    /// The defaults under a broker's data directory.
    pub fn under(data_dir: &std::path::Path) -> EventStoreConfig {
        EventStoreConfig {
            topic: DEFAULT_TOPIC.to_string(),
            dir: data_dir.join("eventstore"),
            index_sync_interval: Duration::from_secs(1),
            scavenge_interval: Some(Duration::from_secs(3600)),
        }
    }
}

/// The event store. Cheap to clone; every clone is the same store.
#[derive(Debug, Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    broker: Broker,
    config: EventStoreConfig,
    index: index::Index,
    writer: Mutex<append::Writer>,
    indexer: Mutex<indexer::IndexerState>,
    /// The log position indexed up to (exclusive): everything below is readable by stream.
    indexed: watch::Sender<u64>,
    /// Stream changes (deletes, tombstones, metadata) indexed since the store opened.
    changes_indexed: std::sync::atomic::AtomicU64,
}

impl EventStore {
    /// Opens the store: its index, then indexes what the log holds beyond it.
    pub fn open(broker: Broker, config: EventStoreConfig) -> Result<EventStore> {
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| EventStoreError::Index(format!("creating {}: {e}", config.dir.display())))?;
        let path = config.dir.join("index.redb");
        // The index is rebuilt from the log: one that does not open (damaged, or of an
        // older layout) is set aside and built again.
        let index = match index::Index::open(&path) {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "The event store index does not open; rebuilding it from the log");
                let aside = path.with_extension("redb.unusable");
                std::fs::rename(&path, &aside)
                    .map_err(|e| EventStoreError::Index(format!("setting {} aside: {e}", path.display())))?;
                index::Index::open(&path)?
            }
        };
        let next = indexer::reconcile(&broker, &config.topic, &index)?;
        let store = EventStore {
            inner: Arc::new(Inner {
                broker,
                index,
                writer: Mutex::new(append::Writer::default()),
                indexer: Mutex::new(indexer::IndexerState::default()),
                indexed: watch::Sender::new(next),
                changes_indexed: std::sync::atomic::AtomicU64::new(0),
                config,
            }),
        };
        store.index_available()?;
        indexer::spawn_syncer(
            Arc::downgrade(&store.inner),
            store.inner.config.dir.join("index.redb"),
            store.inner.config.index_sync_interval,
        );
        if let Some(interval) = store.inner.config.scavenge_interval {
            scavenge::spawn_scavenger(Arc::downgrade(&store.inner), interval);
        }
        tracing::info!(
            topic = %store.inner.config.topic,
            indexed_position = *store.inner.indexed.borrow(),
            "Event store open"
        );
        Ok(store)
    }

    /// The topic holding every event.
    pub fn topic(&self) -> &str {
        &self.inner.config.topic
    }

    /// The log position indexed up to (exclusive).
    pub fn indexed_position(&self) -> u64 {
        *self.inner.indexed.borrow()
    }

    /// A receiver that changes whenever more events become readable by stream.
    pub fn watch_indexed(&self) -> watch::Receiver<u64> {
        self.inner.indexed.subscribe()
    }

    /// Makes the index durable (at shutdown; it is also synced periodically).
    pub fn close(&self) -> Result<()> {
        let mut indexing = self.inner.indexer.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.index.sync()?;
        indexing.commits_since_sync = 0;
        Ok(())
    }
}
