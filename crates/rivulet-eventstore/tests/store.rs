//! The event store on a real broker and log in a temporary directory.

mod common;

use common::{open, revisions};
use std::collections::BTreeMap;

use rivulet_broker::Broker;
use rivulet_eventstore::{
    AllFilter, ContentType, Direction, EventStore, EventStoreError, ExpectedState, NewEvent, StreamAppend,
};

fn close(broker: Broker, store: EventStore) {
    store.close().expect("index syncs");
    broker.close().expect("broker closes");
}

fn event(id: u128, event_type: &str, data: &str) -> NewEvent {
    NewEvent {
        id,
        event_type: event_type.to_string(),
        content_type: ContentType::Json,
        data: data.as_bytes().to_vec(),
        metadata: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_states_are_checked_and_conflicts_carry_the_actual_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, store) = open(dir.path());
    let missing = store
        .append_to(
            "order-1",
            ExpectedState::StreamExists,
            vec![event(1, "Placed", "{}")],
        )
        .await
        .expect_err("no stream yet");
    assert!(
        matches!(missing, EventStoreError::WrongExpectedState { actual: None, .. }),
        "{missing}"
    );
    let first = store
        .append_to(
            "order-1",
            ExpectedState::NoStream,
            vec![event(2, "Placed", "{}"), event(3, "Paid", "{}")],
        )
        .await
        .expect("first append");
    assert_eq!((first.first_revision, first.next_expected_revision), (0, 1));
    let again = store
        .append_to("order-1", ExpectedState::NoStream, vec![event(4, "Paid", "{}")])
        .await
        .expect_err("the stream exists now");
    assert!(
        matches!(again, EventStoreError::WrongExpectedState { actual: Some(1), .. }),
        "{again}"
    );
    assert_eq!(again.code(), 40_910);
    let stale = store
        .append_to(
            "order-1",
            ExpectedState::Revision(0),
            vec![event(5, "Shipped", "{}")],
        )
        .await
        .expect_err("revision 0 is stale");
    assert!(
        matches!(stale, EventStoreError::WrongExpectedState { actual: Some(1), .. }),
        "{stale}"
    );
    let exact = store
        .append_to(
            "order-1",
            ExpectedState::Revision(1),
            vec![event(6, "Shipped", "{}")],
        )
        .await
        .expect("exact revision");
    assert_eq!(exact.first_revision, 2);
    let any = store
        .append_to("order-1", ExpectedState::Any, vec![event(7, "Noted", "{}")])
        .await
        .expect("any");
    assert_eq!(any.first_revision, 3);
    assert!(any.position > exact.position, "positions grow");
    assert_eq!(revisions(&store, "order-1"), vec![0, 1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_appends_answer_the_original_result_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, store) = open(dir.path());
    let events = vec![event(10, "Placed", "{\"n\":1}"), event(11, "Paid", "{}")];
    let original = store
        .append_to("order-2", ExpectedState::NoStream, events.clone())
        .await
        .expect("append");
    let repeat = store
        .append_to("order-2", ExpectedState::NoStream, events.clone())
        .await
        .expect("a repeat is not a conflict");
    assert!(repeat.already_written);
    assert_eq!(
        (
            repeat.first_revision,
            repeat.next_expected_revision,
            repeat.position
        ),
        (
            original.first_revision,
            original.next_expected_revision,
            original.position
        )
    );
    let partly = store
        .append_to(
            "order-2",
            ExpectedState::Any,
            vec![event(11, "Paid", "{}"), event(12, "X", "{}")],
        )
        .await
        .expect_err("one id reused in another append");
    assert!(
        matches!(partly, EventStoreError::EventIdsReused { .. }),
        "{partly}"
    );
    assert_eq!(revisions(&store, "order-2"), vec![0, 1]);
    close(broker, store);

    let (_broker, store) = open(dir.path());
    let after = store
        .append_to("order-2", ExpectedState::Revision(7), events)
        .await
        .expect("a repeat after a restart");
    assert!(after.already_written);
    assert_eq!(after.position, original.position);
    assert_eq!(revisions(&store, "order-2"), vec![0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_stream_append_writes_every_stream_or_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, store) = open(dir.path());
    store
        .append_to(
            "account-a",
            ExpectedState::NoStream,
            vec![event(20, "Opened", "{}")],
        )
        .await
        .expect("open a");
    let conflict = store
        .append(vec![
            StreamAppend {
                stream: "account-a".into(),
                expected: ExpectedState::Revision(0),
                events: vec![event(21, "Debited", "{}")],
            },
            StreamAppend {
                stream: "account-b".into(),
                expected: ExpectedState::StreamExists,
                events: vec![event(22, "Credited", "{}")],
            },
        ])
        .await
        .expect_err("account-b does not exist");
    assert!(
        matches!(conflict, EventStoreError::WrongExpectedState { ref stream, .. } if stream == "account-b")
    );
    assert_eq!(
        revisions(&store, "account-a"),
        vec![0],
        "nothing of the failed append"
    );
    let done = store
        .append(vec![
            StreamAppend {
                stream: "account-a".into(),
                expected: ExpectedState::Revision(0),
                events: vec![event(21, "Debited", "{}")],
            },
            StreamAppend {
                stream: "account-b".into(),
                expected: ExpectedState::NoStream,
                events: vec![event(22, "Credited", "{}")],
            },
        ])
        .await
        .expect("both");
    assert_eq!(done.len(), 2);
    assert_eq!(
        done[1].position,
        done[0].position + 1,
        "one batch, consecutive positions"
    );
    assert_eq!(revisions(&store, "account-a"), vec![0, 1]);
    assert_eq!(revisions(&store, "account-b"), vec![0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_hides_events_and_revisions_continue_tombstones_are_final() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, store) = open(dir.path());
    store
        .append_to(
            "cart-1",
            ExpectedState::NoStream,
            vec![event(30, "Added", "{}"), event(31, "Added", "{}")],
        )
        .await
        .expect("append");
    let wrong = store
        .delete("cart-1", ExpectedState::Revision(0))
        .await
        .expect_err("stale delete");
    assert!(matches!(wrong, EventStoreError::WrongExpectedState { .. }));
    store
        .delete("cart-1", ExpectedState::Revision(1))
        .await
        .expect("delete");
    let gone = store
        .read_stream("cart-1", None, Direction::Forwards, 10)
        .expect_err("deleted");
    assert!(matches!(gone, EventStoreError::StreamNotFound(_)), "{gone}");
    let again = store
        .append_to("cart-1", ExpectedState::NoStream, vec![event(32, "Added", "{}")])
        .await
        .expect("recreated");
    assert_eq!(again.first_revision, 2, "revisions continue");
    assert_eq!(revisions(&store, "cart-1"), vec![2]);

    store
        .append_to("cart-2", ExpectedState::NoStream, vec![event(33, "Added", "{}")])
        .await
        .expect("append");
    store
        .tombstone("cart-2", ExpectedState::Any)
        .await
        .expect("tombstone");
    let write = store
        .append_to("cart-2", ExpectedState::Any, vec![event(34, "Added", "{}")])
        .await
        .expect_err("tombstoned");
    assert!(matches!(write, EventStoreError::StreamDeleted(_)), "{write}");
    close(broker, store);
    let (_broker, store) = open(dir.path());
    let read = store
        .read_stream("cart-2", None, Direction::Forwards, 10)
        .expect_err("still tombstoned");
    assert!(matches!(read, EventStoreError::StreamDeleted(_)), "{read}");
    assert_eq!(revisions(&store, "cart-1"), vec![2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_both_ways_in_streams_projections_and_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, store) = open(dir.path());
    for i in 0..10u128 {
        let stream = format!("order-{}", i % 2);
        let kind = if i % 3 == 0 { "Placed" } else { "Paid" };
        store
            .append_to(
                &stream,
                ExpectedState::Any,
                vec![event(100 + i, kind, &format!("{{\"i\":{i}}}"))],
            )
            .await
            .expect("append");
        store
            .append_to("user-x", ExpectedState::Any, vec![event(200 + i, "Seen", "{}")])
            .await
            .expect("append");
    }
    let fwd = store
        .read_stream("order-0", Some(1), Direction::Forwards, 2)
        .expect("read");
    assert_eq!(
        fwd.events.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!((fwd.next, fwd.last_revision), (Some(3), 4));
    let back = store
        .read_stream("order-0", None, Direction::Backwards, 3)
        .expect("read");
    assert_eq!(
        back.events.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![4, 3, 2]
    );
    assert_eq!(back.next, Some(1));
    assert_eq!(back.events[0].data, b"{\"i\":8}");

    let category = store
        .read_stream("$ce-order", None, Direction::Forwards, 100)
        .expect("category");
    let datas: Vec<String> = category
        .events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.data).into())
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("{{\"i\":{i}}}")).collect();
    assert_eq!(datas, want, "every order event in global order");
    let placed = store
        .read_stream("$et-Placed", None, Direction::Backwards, 100)
        .expect("type");
    assert_eq!(
        placed.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![109, 106, 103, 100]
    );

    let all = store
        .read_all(None, Direction::Forwards, 1000, &AllFilter::default())
        .expect("$all");
    assert_eq!(all.events.len(), 20);
    assert!(all.events.windows(2).all(|w| w[0].position < w[1].position));
    let orders = AllFilter {
        stream_prefix: Some("order-".into()),
        event_type_prefix: None,
    };
    let page = store
        .read_all(None, Direction::Forwards, 3, &orders)
        .expect("filtered");
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![100, 101, 102]
    );
    let rest = store
        .read_all(Some(page.next_position), Direction::Forwards, 100, &orders)
        .expect("rest");
    assert_eq!(rest.events.len(), 7);
    assert!(rest.end);
    let newest = store
        .read_all(None, Direction::Backwards, 4, &orders)
        .expect("backwards");
    assert_eq!(
        newest.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![109, 108, 107, 106]
    );
    let older = store
        .read_all(Some(newest.next_position), Direction::Backwards, 100, &orders)
        .expect("older");
    assert_eq!(
        older.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![105, 104, 103, 102, 101, 100]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_limits_what_reads_return() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, store) = open(dir.path());
    let events: Vec<NewEvent> = (0..6).map(|i| event(300 + i, "Tick", "{}")).collect();
    store
        .append_to("clock-1", ExpectedState::NoStream, events)
        .await
        .expect("append");
    store
        .set_metadata("clock-1", serde_json::json!({"$maxCount": 2}))
        .await
        .expect("metadata");
    assert_eq!(revisions(&store, "clock-1"), vec![4, 5]);
    store
        .set_metadata("clock-1", serde_json::json!({"$tb": 5}))
        .await
        .expect("metadata");
    assert_eq!(revisions(&store, "clock-1"), vec![5]);
    let bad = store
        .set_metadata("clock-1", serde_json::json!([1]))
        .await
        .expect_err("not an object");
    assert!(matches!(bad, EventStoreError::Invalid(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, store) = open(dir.path());
    for i in 0..50u128 {
        store
            .append_to(
                &format!("item-{}", i % 5),
                ExpectedState::Any,
                vec![event(400 + i, "Moved", "{}")],
            )
            .await
            .expect("append");
    }
    store
        .tombstone("item-4", ExpectedState::Any)
        .await
        .expect("tombstone");
    let before: BTreeMap<String, Vec<u64>> = (0..4)
        .map(|s| (format!("item-{s}"), revisions(&store, &format!("item-{s}"))))
        .collect();
    close(broker, store);
    std::fs::remove_file(dir.path().join("eventstore/index.redb")).expect("index removed");
    let (_broker, store) = open(dir.path());
    let after: BTreeMap<String, Vec<u64>> = (0..4)
        .map(|s| (format!("item-{s}"), revisions(&store, &format!("item-{s}"))))
        .collect();
    assert_eq!(before, after);
    assert_eq!(after["item-0"], (0..10).collect::<Vec<u64>>());
    assert!(matches!(
        store.read_stream("item-4", None, Direction::Forwards, 1),
        Err(EventStoreError::StreamDeleted(_))
    ));
    let repeat = store
        .append_to("item-0", ExpectedState::Any, vec![event(400, "Moved", "{}")])
        .await
        .expect("repeat");
    assert!(repeat.already_written, "ids came back with the index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_nothing_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, store) = open(dir.path());
    for (stream, events) in [
        ("", vec![event(1, "A", "{}")]),
        ("$all", vec![event(1, "A", "{}")]),
        ("s", vec![]),
        ("s", vec![event(1, "", "{}")]),
        ("s", vec![event(1, "A", "{}"), event(1, "B", "{}")]),
    ] {
        let err = store
            .append_to(stream, ExpectedState::Any, events)
            .await
            .expect_err("refused");
        assert!(matches!(err, EventStoreError::Invalid(_)), "{err}");
    }
    let too_big = store
        .append_to(
            "s",
            ExpectedState::Any,
            vec![event(9, "Big", &"x".repeat(2 << 20))],
        )
        .await
        .expect_err("over max.message.bytes");
    assert!(matches!(too_big, EventStoreError::Broker(_)), "{too_big}");
    assert!(matches!(
        store.read_stream("s", None, Direction::Forwards, 10),
        Err(EventStoreError::StreamNotFound(_))
    ));
}
