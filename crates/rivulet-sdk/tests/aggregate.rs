//! Event-sourced aggregates on a real event store, embedded and over the KurrentDB gRPC
//! API: concurrent commands on the last units of stock, conflicts retried, a command run
//! twice written once.
#![cfg(feature = "embedded")]

use std::sync::Arc;

use rivulet_broker::{Broker, BrokerConfig};
use rivulet_eventstore::{EventStore, EventStoreConfig};
use rivulet_sdk::aggregate::{Aggregate, EventStoreBackend, ExecuteError, Repository};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Stock {
    units: u64,
}

#[derive(Debug, Serialize, Deserialize)]
enum StockEvent {
    Received(u64),
    Reserved(u64),
}

impl Aggregate for Stock {
    type Event = StockEvent;
    const CATEGORY: &'static str = "stock";
    fn event_type(e: &StockEvent) -> &'static str {
        match e {
            StockEvent::Received(_) => "Received",
            StockEvent::Reserved(_) => "Reserved",
        }
    }
    fn apply(&mut self, e: &StockEvent) {
        match e {
            StockEvent::Received(n) => self.units += n,
            StockEvent::Reserved(n) => self.units -= n,
        }
    }
}

fn open(dir: &std::path::Path) -> (Broker, EventStore) {
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.join("broker"),
        ..BrokerConfig::default()
    })
    .expect("broker opens");
    let store = EventStore::open(broker.clone(), EventStoreConfig::under(dir)).expect("store opens");
    (broker, store)
}

fn reserve_one(s: &Stock) -> Result<Vec<StockEvent>, &'static str> {
    if s.units >= 1 {
        Ok(vec![StockEvent::Reserved(1)])
    } else {
        Err("sold out")
    }
}

/// Twelve buyers race for five units: exactly five win, the stream holds exactly their
/// reservations, and a command run again with its id is not written twice.
async fn last_units(store: Arc<dyn EventStoreBackend>) {
    let repo = Arc::new(Repository::<Stock>::new(store).with_attempts(50));
    let received = repo
        .execute("apple", uuid::Uuid::new_v4(), |_| {
            Ok::<_, &str>(vec![StockEvent::Received(5)])
        })
        .await
        .expect("stocked");
    assert_eq!((received.state.units, received.revision), (5, Some(0)));
    let buyers: Vec<_> = (0..12)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.execute("apple", uuid::Uuid::new_v4(), reserve_one).await })
        })
        .collect();
    let (mut won, mut refused) = (0, 0);
    for b in buyers {
        match b.await.expect("buyer task") {
            Ok(_) => won += 1,
            Err(ExecuteError::Rejected("sold out")) => refused += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((won, refused), (5, 7));
    let now = repo.load("apple").await.expect("loads");
    assert_eq!((now.state.units, now.revision), (0, Some(5)));

    let restock = uuid::Uuid::new_v4();
    let add = |_: &Stock| Ok::<_, &str>(vec![StockEvent::Received(3)]);
    let first = repo.execute("apple", restock, add).await.expect("restocked");
    let again = repo
        .execute("apple", restock, add)
        .await
        .expect("the same command again");
    assert_eq!(first.revision, Some(6));
    assert_eq!(again.revision, Some(6), "the repeated command wrote nothing");
    assert_eq!(repo.load("apple").await.expect("loads").state.units, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_sells_the_last_units_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, store) = open(dir.path());
    last_units(Arc::new(store)).await;
}

#[cfg(feature = "eventstore-grpc")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_store_sells_the_last_units_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, store) = open(dir.path());
    let groups = rivulet_eventstore::PersistentSubscriptions::start(store.clone())
        .await
        .expect("groups");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(rivulet_eventstore_grpc::serve(
        listener,
        broker,
        store,
        groups,
        None,
        std::future::pending(),
    ));
    let remote = rivulet_sdk::aggregate::GrpcEventStore::connect(&address)
        .await
        .expect("connects");
    last_units(Arc::new(remote)).await;
}
