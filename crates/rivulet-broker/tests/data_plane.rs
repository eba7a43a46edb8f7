//! The data plane through the broker's calls, and the policies decided there once.

use std::collections::BTreeMap;
use std::time::Duration;

use rivulet_broker::{Broker, BrokerConfig, BrokerError, Create, NewRecord, ReadLimit, Woke};

fn open(dir: &std::path::Path, auto_create: bool) -> Broker {
    Broker::open(BrokerConfig {
        data_dir: dir.to_path_buf(),
        auto_create_topics: auto_create,
        default_partitions: 3,
        ..BrokerConfig::default()
    })
    .expect("broker opens")
}

fn record(key: Option<&str>, value: &str) -> NewRecord {
    NewRecord {
        key: key.map(|k| k.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        ..NewRecord::default()
    }
}

#[tokio::test]
async fn appended_records_come_back_in_order_with_their_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), true);
    let records: Vec<NewRecord> = (0..1_200)
        .map(|i| record(Some(&format!("k{}", i % 7)), &format!("v{i}")))
        .collect();
    let positions = broker
        .append_records("orders", records, Create::IfAllowed)
        .expect("append")
        .durable()
        .await
        .expect("durable");
    assert_eq!(positions.len(), 1_200);
    // One key, one partition; offsets per partition contiguous from 0.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut partition_of_key: BTreeMap<String, i32> = BTreeMap::new();
    for (i, p) in positions.iter().enumerate() {
        let key = format!("k{}", i % 7);
        assert_eq!(*partition_of_key.entry(key).or_insert(p.partition), p.partition);
        let expected = next.entry(p.partition).or_insert(0);
        assert_eq!(p.offset, *expected);
        *expected += 1;
    }
    for (partition, end) in next {
        let read = broker
            .read_records("orders", partition, 0, 1 << 20, 10_000)
            .expect("read");
        assert_eq!(read.records.len() as i64, end);
        assert_eq!(read.next_offset, end);
        let values: Vec<i64> = read
            .records
            .iter()
            .map(|r| {
                let v = std::str::from_utf8(r.value.as_deref().expect("value")).expect("utf8");
                v[1..].parse().expect("number")
            })
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "request order kept per partition"
        );
    }
}

#[tokio::test]
async fn auto_creation_is_one_policy_for_produce_and_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), false);
    let refused = broker.append_records("new", vec![record(None, "x")], Create::IfAllowed);
    assert!(matches!(refused, Err(BrokerError::UnknownTopic(_))));
    let batch = rivulet_log::batch::build(
        0,
        1,
        None,
        &[rivulet_log::record::Record::new(None, Some(b"x".to_vec()))],
    );
    let refused = broker.produce("new", 0, &batch, Create::IfAllowed);
    assert!(matches!(refused, Err(BrokerError::UnknownTopic(_))));
    assert!(broker.topic("new").is_none());
    broker.close().expect("close");
    drop(broker);

    let broker = open(dir.path(), true);
    let never = broker.append_records("new", vec![record(None, "x")], Create::Never);
    assert!(
        matches!(never, Err(BrokerError::UnknownTopic(_))),
        "readers never create"
    );
    broker
        .produce("new", 0, &batch, Create::IfAllowed)
        .expect("created and appended");
    assert_eq!(broker.topic("new").expect("created").partition_count(), 3);
}

#[tokio::test]
async fn partitions_out_of_range_are_one_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), true);
    let mut bad = record(None, "x");
    bad.partition = Some(3);
    let result = broker.append_records("t", vec![record(None, "ok"), bad], Create::IfAllowed);
    match result {
        Err(BrokerError::UnknownPartition {
            partition: 3,
            count: 3,
            ..
        }) => {}
        other => panic!("expected UnknownPartition, got {other:?}"),
    }
    let total: i64 = broker
        .topic("t")
        .expect("topic")
        .partition_infos()
        .iter()
        .map(|p| p.log_end_offset)
        .sum();
    assert_eq!(
        total, 0,
        "the valid record of the refused request was not written"
    );
    let read = broker.read("t", 9, 0, ReadLimit::AtLeastOneBatch(1024));
    assert!(matches!(
        read,
        Err(BrokerError::UnknownPartition { partition: 9, .. })
    ));
}

#[tokio::test]
async fn a_watch_wakes_on_the_first_append_and_ends_at_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), true);
    broker
        .create_topic("w", 2, 1, BTreeMap::new(), false)
        .expect("create");
    let mut watch = broker.watch([("w", 0), ("w", 1), ("missing", 0)]);
    assert_eq!(watch.len(), 2, "unknown partitions are left out");
    let writer = broker.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut r = record(None, "wake");
        r.partition = Some(1);
        let appended = writer
            .append_records("w", vec![r], Create::Never)
            .expect("append");
        appended.durable().await.expect("durable");
    });
    let started = std::time::Instant::now();
    let woke = watch
        .wait(tokio::time::Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(woke, Woke::Data);
    assert!(started.elapsed() < Duration::from_secs(5));
    let woke = watch
        .wait(tokio::time::Instant::now() + Duration::from_millis(50))
        .await;
    assert_eq!(woke, Woke::Deadline);
    broker.shut_down();
    let woke = watch
        .wait(tokio::time::Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(woke, Woke::ShuttingDown);
}

#[tokio::test]
async fn reads_count_records_and_stored_bytes_in_one_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), true);
    broker
        .create_topic("m", 1, 1, BTreeMap::new(), false)
        .expect("create");
    let records: Vec<NewRecord> = (0..10).map(|i| record(None, &format!("value-{i}"))).collect();
    broker
        .append_records("m", records, Create::Never)
        .expect("append")
        .durable()
        .await
        .expect("durable");
    let raw = broker
        .read("m", 0, 0, ReadLimit::AtLeastOneBatch(1 << 20))
        .expect("read");
    let decoded = broker
        .read_records("m", 0, 0, 1 << 20, 100)
        .expect("read records");
    assert_eq!(decoded.records.len(), 10);
    let text = broker.metrics().render_with(None);
    let fetched_bytes = metric(&text, "rivulet_fetched_bytes_total{topic=\"m\"}");
    let fetched_records = metric(&text, "rivulet_records_fetched_total{topic=\"m\"}");
    assert_eq!(fetched_records, 20.0, "both reads counted their records");
    assert_eq!(
        fetched_bytes,
        2.0 * raw.records.len() as f64,
        "both reads counted stored batch bytes"
    );
    let produced = metric(&text, "rivulet_records_produced_total{topic=\"m\"}");
    assert_eq!(produced, 10.0);
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse::<f64>().expect("number"))
        })
        .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}
