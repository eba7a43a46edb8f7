//! Persistent subscription groups on a real store: competing consumers, acknowledgements,
//! retries and parking, timeouts, and what survives a restart (definitions, checkpoints,
//! parked events).

mod common;

use common::open;
use std::time::Duration;

use rivulet_eventstore::persistent::model::{
    ConsumerStrategy, Delivery, GroupDefinition, GroupSettings, GroupSource, JoinRequest, NackAction,
    StartFrom,
};
use rivulet_eventstore::{
    ContentType, EventStore, EventStoreError, ExpectedState, FilterOn, FilterSpec, NewEvent,
    PersistentSubscriptions, Subscription,
};

async fn append(store: &EventStore, stream: &str, from: u128, n: u128) {
    let events = (from..from + n)
        .map(|i| NewEvent {
            id: i + 1,
            event_type: "Job".into(),
            content_type: ContentType::Json,
            data: i.to_string().into_bytes(),
            metadata: Vec::new(),
        })
        .collect();
    store
        .append_to(stream, ExpectedState::Any, events)
        .await
        .expect("append");
}

fn definition(stream: &str, strategy: ConsumerStrategy) -> GroupDefinition {
    GroupDefinition {
        source: GroupSource::Stream(stream.into()),
        group: "g".into(),
        settings: GroupSettings {
            start_from: StartFrom::Start,
            max_retry_count: 1,
            checkpoint_after_ms: 0,
            checkpoint_count_min: 1,
            message_timeout_ms: 300,
            strategy,
            ..GroupSettings::default()
        },
    }
}

async fn join(groups: &PersistentSubscriptions, source: &str, slots: u32) -> Subscription {
    groups
        .join(
            source,
            "g",
            JoinRequest {
                buffer_size: slots,
                ..JoinRequest::default()
            },
        )
        .await
        .expect("joins")
}

async fn next(sub: &mut Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("an event within 10 s")
        .expect("the group runs")
}

fn number(d: &Delivery) -> u64 {
    String::from_utf8_lossy(&d.event.data).parse().expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_share_and_a_restart_resumes_at_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, store) = open(dir.path());
    let groups = PersistentSubscriptions::start(store.clone())
        .await
        .expect("starts");
    groups
        .create(definition("jobs", ConsumerStrategy::RoundRobin))
        .await
        .expect("created");
    let again = groups
        .create(definition("jobs", ConsumerStrategy::RoundRobin))
        .await;
    assert!(
        matches!(again, Err(EventStoreError::GroupExists { .. })),
        "{again:?}"
    );
    append(&store, "jobs", 0, 10).await;
    let mut a = join(&groups, "jobs", 5).await;
    let mut b = join(&groups, "jobs", 5).await;
    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let d = next(&mut a).await;
        from_a.push(number(&d));
        a.ack(vec![d.event.id]).await.expect("ack");
        let d = next(&mut b).await;
        from_b.push(number(&d));
        b.ack(vec![d.event.id]).await.expect("ack");
    }
    let mut all: Vec<u64> = from_a.iter().chain(&from_b).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>(), "a: {from_a:?} b: {from_b:?}");
    drop((a, b));
    append(&store, "jobs", 10, 3).await;
    // The checkpoint is written within moments of the last acknowledgement.
    let mut checkpoint = None;
    for _ in 0..50 {
        checkpoint = groups.info("jobs", "g").await.expect("info").checkpoint;
        if checkpoint == Some(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(checkpoint, Some(10));
    groups.restart().await.expect("restarts");
    drop(groups);
    // The groups' tasks end once their registry is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.close().expect("index syncs");
    drop(store);
    broker.close().expect("broker closes");
    drop(broker);

    let (_broker, store) = open(dir.path());
    let groups = PersistentSubscriptions::start(store.clone())
        .await
        .expect("starts again");
    let mut c = join(&groups, "jobs", 10).await;
    let resumed: Vec<u64> = [next(&mut c).await, next(&mut c).await, next(&mut c).await]
        .iter()
        .map(number)
        .collect();
    assert_eq!(
        resumed,
        vec![10, 11, 12],
        "a restart resumes after the acknowledged events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_parking_and_replay_and_timeouts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, store) = open(dir.path());
    let groups = PersistentSubscriptions::start(store.clone())
        .await
        .expect("starts");
    groups
        .create(definition("work", ConsumerStrategy::DispatchToSingle))
        .await
        .expect("created");
    append(&store, "work", 0, 2).await;
    let mut sub = join(&groups, "work", 1).await;
    let first = next(&mut sub).await;
    assert_eq!((number(&first), first.retry_count), (0, 0));
    sub.nack(vec![first.event.id], NackAction::Retry, "busy".into())
        .await
        .expect("nack");
    let retried = next(&mut sub).await;
    assert_eq!((number(&retried), retried.retry_count), (0, 1));
    // Retried once already (max_retry_count = 1): the next retry parks it.
    sub.nack(vec![retried.event.id], NackAction::Retry, "still busy".into())
        .await
        .expect("nack");
    let second = next(&mut sub).await;
    assert_eq!(number(&second), 1);
    // Not acknowledged: it times out (300 ms) and comes back.
    let timed_out = next(&mut sub).await;
    assert_eq!((number(&timed_out), timed_out.retry_count), (1, 1));
    sub.ack(vec![timed_out.event.id]).await.expect("ack");
    let mut parked = 0;
    for _ in 0..50 {
        parked = groups.info("work", "g").await.expect("info").parked;
        if parked == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(parked, 1, "the twice-refused event is parked");
    groups.replay_parked("work", "g", None).await.expect("replay");
    let replayed = next(&mut sub).await;
    assert_eq!(number(&replayed), 0, "the parked event comes back");
    sub.ack(vec![replayed.event.id]).await.expect("ack");
    for _ in 0..50 {
        parked = groups.info("work", "g").await.expect("info").parked;
        if parked == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        parked, 0,
        "a replayed and acknowledged event leaves the parked stream"
    );
    groups.delete("work", "g").await.expect("deleted");
    let gone = groups.info("work", "g").await;
    assert!(
        matches!(gone, Err(EventStoreError::GroupNotFound { .. })),
        "{gone:?}"
    );
    assert!(
        sub.next().await.is_none(),
        "a deleted group's consumers are dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_on_all_filter_and_skip_their_own_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, store) = open(dir.path());
    let groups = PersistentSubscriptions::start(store.clone())
        .await
        .expect("starts");
    append(&store, "order-1", 0, 2).await;
    append(&store, "user-1", 100, 2).await;
    let mut all = definition("$all", ConsumerStrategy::RoundRobin);
    all.source = GroupSource::All {
        filter: Some(FilterSpec {
            on: FilterOn::Stream,
            regex: Some("^order-".into()),
            prefixes: Vec::new(),
        }),
    };
    groups.create(all).await.expect("created");
    append(&store, "order-2", 200, 1).await;
    let mut sub = join(&groups, "$all", 10).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let d = next(&mut sub).await;
        seen.push((d.event.stream.clone(), number(&d)));
        sub.ack(vec![d.event.id]).await.expect("ack");
    }
    assert_eq!(
        seen,
        vec![
            ("order-1".into(), 0),
            ("order-1".into(), 1),
            ("order-2".into(), 200)
        ]
    );
    // Its own checkpoints land in $all too; the group never delivers them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let extra = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
    assert!(extra.is_err(), "nothing else is delivered: {extra:?}");
}
