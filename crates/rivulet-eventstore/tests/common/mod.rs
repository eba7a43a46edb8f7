//! What the event store's integration tests share: a store on a real broker and log.

use std::path::Path;

use rivulet_broker::{Broker, BrokerConfig};
use rivulet_eventstore::{EventStore, EventStoreConfig};

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
