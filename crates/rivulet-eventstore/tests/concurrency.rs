//! Concurrent writers doing read-decide-append with exact expected revisions, and a `$all`
//! reader started in the middle.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rivulet_broker::{Broker, BrokerConfig};
use rivulet_eventstore::{
    AllFilter, ContentType, Direction, EventStore, EventStoreConfig, EventStoreError, ExpectedState, NewEvent,
};

const WRITERS: u64 = 16;
const STREAMS: u64 = 100;
const APPENDS_PER_WRITER: u64 = 150;

async fn writer(store: EventStore, w: u64, next_id: Arc<AtomicU64>) -> (u64, u64) {
    let (mut accepted, mut conflicts) = (0, 0);
    let mut seed = w * 7919 + 1;
    while accepted < APPENDS_PER_WRITER {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let stream = format!("acct-{}", (seed >> 33) % STREAMS);
        let expected = match store.read_stream(&stream, None, Direction::Backwards, 1) {
            Ok(slice) => ExpectedState::Revision(slice.last_revision),
            Err(EventStoreError::StreamNotFound(_)) => ExpectedState::NoStream,
            Err(e) => panic!("read {stream}: {e}"),
        };
        let id = u128::from(next_id.fetch_add(1, Ordering::Relaxed));
        let event = NewEvent {
            id,
            event_type: "Deposited".into(),
            content_type: ContentType::Json,
            data: format!("{{\"writer\":{w}}}").into_bytes(),
            metadata: Vec::new(),
        };
        match store.append_to(&stream, expected, vec![event]).await {
            Ok(r) => {
                let want = match expected {
                    ExpectedState::Revision(r) => r + 1,
                    _ => 0,
                };
                assert_eq!(
                    r.first_revision, want,
                    "{stream}: accepted at the decided revision"
                );
                accepted += 1;
            }
            Err(EventStoreError::WrongExpectedState { .. }) => conflicts += 1,
            Err(e) => panic!("append {stream}: {e}"),
        }
    }
    (accepted, conflicts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_never_share_a_revision_and_all_sees_each_event_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.path().join("broker"),
        ..BrokerConfig::default()
    })
    .expect("broker opens");
    let store = EventStore::open(broker, EventStoreConfig::under(dir.path())).expect("store opens");
    let next_id = Arc::new(AtomicU64::new(1));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(store.clone(), w, next_id.clone())))
        .collect();

    // A reader of $all that starts once writing is under way and follows it live.
    let total = WRITERS * APPENDS_PER_WRITER;
    let reader_store = store.clone();
    let reader = tokio::spawn(async move {
        let mut indexed = reader_store.watch_indexed();
        while *indexed.borrow_and_update() < total / 3 {
            indexed.changed().await.expect("store open");
        }
        let mut seen = Vec::new();
        let mut from = 0;
        while (seen.len() as u64) < total {
            let slice = reader_store
                .read_all(Some(from), Direction::Forwards, 500, &AllFilter::default())
                .expect("read $all");
            from = slice.next_position;
            seen.extend(slice.events.iter().map(|e| (e.position, e.id)));
            if slice.events.is_empty() {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), indexed.changed()).await;
            }
        }
        seen
    });

    let mut accepted = 0;
    let mut conflicts = 0;
    for w in writers {
        let (a, c) = w.await.expect("writer finishes");
        accepted += a;
        conflicts += c;
    }
    assert_eq!(accepted, total);
    let seen = reader.await.expect("reader finishes");
    assert_eq!(seen.len() as u64, total, "every event once");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "in position order");
    assert_eq!(
        seen.iter().map(|s| s.1).collect::<HashSet<_>>().len() as u64,
        total,
        "no event twice"
    );

    let mut per_stream = BTreeMap::new();
    for s in 0..STREAMS {
        let stream = format!("acct-{s}");
        let Ok(slice) = store.read_stream(&stream, None, Direction::Forwards, 10_000) else {
            continue;
        };
        let revisions: Vec<u64> = slice.events.iter().map(|e| e.revision).collect();
        assert_eq!(
            revisions,
            (0..revisions.len() as u64).collect::<Vec<_>>(),
            "{stream} has no gap"
        );
        per_stream.insert(stream, revisions.len() as u64);
    }
    assert_eq!(
        per_stream.values().sum::<u64>(),
        total,
        "accepted appends are exactly the stored events"
    );
    assert!(
        conflicts > 0,
        "16 writers over 100 streams do collide ({conflicts} conflicts)"
    );
}
