//! What the event store's integration tests share: a store on a real broker and log.
// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::path::Path;

use rivulet_broker::{Broker, BrokerConfig};
use rivulet_eventstore::{Direction, EventStore, EventStoreConfig};

/// A broker and its event store under `dir`.
pub fn open(dir: &Path) -> (Broker, EventStore) {
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.join("broker"),
        ..BrokerConfig::default()
    })
    .expect("broker opens");
    let store = EventStore::open(broker.clone(), EventStoreConfig::under(dir)).expect("store opens");
    (broker, store)
}

/// The revisions a forward read of `stream` returns.
pub fn revisions(store: &EventStore, stream: &str) -> Vec<u64> {
    store
        .read_stream(stream, None, Direction::Forwards, 10_000)
        .expect("stream reads")
        .events
        .iter()
        .map(|e| e.revision)
        .collect()
}
