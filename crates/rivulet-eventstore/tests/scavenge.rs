//! Scavenging on a real broker and log: what readers no longer see leaves the log, and
//! nothing they see does, even after the index is rebuilt from the scavenged log.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::revisions;
use rivulet_broker::{Broker, BrokerConfig};
use rivulet_eventstore::{
    AllFilter, ContentType, Direction, EventStore, EventStoreConfig, EventStoreError, ExpectedState, NewEvent,
};

/// A broker whose event store topic rolls a segment every 4 KiB, and the store (which
/// scavenges on its own every `scavenge` when given).
fn open_small_segments(dir: &Path, scavenge: Option<Duration>) -> (Broker, EventStore) {
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.join("broker"),
        ..BrokerConfig::default()
    })
    .expect("broker opens");
    let config = EventStoreConfig {
        scavenge_interval: scavenge,
        ..EventStoreConfig::under(dir)
    };
    if broker.topic(&config.topic).is_none() {
        let overrides: BTreeMap<String, String> = [
            ("retention.ms", "-1"),
            ("retention.bytes", "-1"),
            ("segment.bytes", "4096"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        broker
            .create_topic(&config.topic, 1, 1, overrides, false)
            .expect("topic");
    }
    let store = EventStore::open(broker.clone(), config).expect("store opens");
    (broker, store)
}

fn event(id: u128) -> NewEvent {
    NewEvent {
        id,
        event_type: "Ticked".to_string(),
        content_type: ContentType::Json,
        data: format!("{{\"n\":{id}}}").into_bytes(),
        metadata: Vec::new(),
    }
}

async fn append(store: &EventStore, stream: &str, ids: std::ops::Range<u128>) {
    for id in ids {
        store
            .append_to(stream, ExpectedState::Any, vec![event(id)])
            .await
            .expect("append");
    }
}

/// Every event id `$all` holds, in position order.
fn all_ids(store: &EventStore) -> Vec<u128> {
    let slice = store
        .read_all(None, Direction::Forwards, 10_000, &AllFilter::default())
        .expect("$all reads");
    slice.events.iter().map(|e| e.id).collect()
}

const READABLE: [&str; 4] = ["kept", "soft", "capped", "filler"];

fn readable(store: &EventStore) -> BTreeMap<&'static str, Vec<u64>> {
    READABLE.iter().map(|s| (*s, revisions(store, s))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scavenging_removes_only_what_no_reader_sees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, store) = open_small_segments(dir.path(), None);
    // Interleaved, so every segment mixes streams.
    for round in 0..20u128 {
        append(&store, "kept", 1000 + round..1001 + round).await;
        append(&store, "gone", 2000 + round..2001 + round).await;
        append(&store, "soft", 3000 + round..3001 + round).await;
        append(&store, "capped", 4000 + round..4001 + round).await;
    }
    store
        .tombstone("gone", ExpectedState::Any)
        .await
        .expect("tombstone");
    store
        .delete("soft", ExpectedState::Revision(19))
        .await
        .expect("delete");
    append(&store, "soft", 3100..3102).await;
    store
        .set_metadata("capped", serde_json::json!({"$maxCount": 3}))
        .await
        .expect("metadata");
    // Enough after the changes that every event above sits in a sealed segment.
    append(&store, "filler", 9000..9100).await;
    let before = readable(&store);
    let all_before = all_ids(&store);
    assert_eq!(before["soft"], vec![20, 21]);
    assert_eq!(before["capped"], vec![17, 18, 19]);

    let removed = store.scavenge().expect("scavenge");
    // gone: all but its last event; soft: the 20 before the delete; capped: 17 below the cap.
    let gone: Vec<u128> = (2000..2019).chain(3000..3020).chain(4000..4017).collect();
    assert_eq!(removed, gone.len() as u64);
    assert_eq!(readable(&store), before, "readers see what they saw");
    let expected_all: Vec<u128> = all_before
        .iter()
        .copied()
        .filter(|id| !gone.contains(id))
        .collect();
    assert_eq!(
        all_ids(&store),
        expected_all,
        "$all lost exactly the removed events"
    );
    assert_eq!(store.scavenge().expect("again"), 0, "nothing more to remove");

    // The index rebuilt from the scavenged log agrees, and streams go on where they were.
    store.close().expect("index syncs");
    drop(store);
    broker.close().expect("broker closes");
    drop(broker);
    std::fs::remove_file(dir.path().join("eventstore/index.redb")).expect("index removed");
    let (_broker, store) = open_small_segments(dir.path(), None);
    assert_eq!(readable(&store), before);
    let next = store
        .append_to("soft", ExpectedState::Revision(21), vec![event(3102)])
        .await
        .expect("revisions continue after the rebuild");
    assert_eq!(next.first_revision, 22);
    let capped = store
        .append_to("capped", ExpectedState::Revision(19), vec![event(4020)])
        .await
        .expect("append");
    assert_eq!(capped.first_revision, 20);
    assert!(matches!(
        store.read_stream("gone", None, Direction::Forwards, 1),
        Err(EventStoreError::StreamDeleted(_))
    ));
    let repeat = store
        .append_to("kept", ExpectedState::Any, vec![event(1019)])
        .await
        .expect("repeat");
    assert!(repeat.already_written, "a kept event's id still answers a retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_scavenges_on_its_own_after_a_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, store) = open_small_segments(dir.path(), Some(Duration::from_millis(100)));
    append(&store, "temp", 5000..5030).await;
    append(&store, "filler", 9000..9060).await;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(all_ids(&store).len(), 90, "nothing to scavenge before the delete");
    store
        .tombstone("temp", ExpectedState::Any)
        .await
        .expect("tombstone");
    append(&store, "filler", 9060..9120).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = all_ids(&store);
    while left.len() != 121 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = all_ids(&store);
    }
    let temp: Vec<u128> = left
        .iter()
        .copied()
        .filter(|id| (5000..5030).contains(id))
        .collect();
    assert_eq!(
        temp,
        vec![5029],
        "only the tombstoned stream's last event is left"
    );
    assert_eq!(left.len(), 121);
}
