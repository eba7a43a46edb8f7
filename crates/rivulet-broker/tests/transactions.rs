//! The transaction coordinator through the broker's calls: markers, the last stable offset,
//! fencing, offsets committed with a transaction, timeouts and state kept across restarts.

use std::time::Duration;

use rivulet_broker::{
    Broker, BrokerConfig, BrokerError, Create, Isolation, PendingOffset, ReadLimit, TxnError, TxnState,
};
use rivulet_log::record::Record;

fn open(dir: &std::path::Path) -> Broker {
    Broker::open(BrokerConfig {
        data_dir: dir.to_path_buf(),
        default_partitions: 2,
        group_tick_ms: 20,
        ..BrokerConfig::default()
    })
    .expect("broker opens")
}

/// A transactional batch of `values` from `producer` at `epoch`, sequences from `seq`.
fn txn_batch(producer: i64, epoch: i16, seq: i32, values: &[&str]) -> Vec<u8> {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record::new(None, Some(v.as_bytes().to_vec())))
        .collect();
    let mut batch = rivulet_log::batch::build(0, 1_000, Some((producer, epoch, seq)), &records);
    batch[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    let crc = rivulet_log::batch::compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

async fn produce(broker: &Broker, topic: &str, partition: i32, batch: &[u8]) -> Result<(), BrokerError> {
    let outcome = broker.produce(topic, partition, batch, Create::IfAllowed)?;
    outcome.durable.wait().await?;
    Ok(())
}

fn committed_values(broker: &Broker, topic: &str, partition: i32) -> Vec<String> {
    let read = broker
        .read_records(topic, partition, 0, 1 << 20, 10_000)
        .expect("read");
    read.records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

fn stable(broker: &Broker, topic: &str, partition: i32) -> (i64, i64) {
    let info = broker
        .topic(topic)
        .and_then(|t| t.partition_info(partition))
        .expect("partition");
    (info.last_stable_offset, info.high_watermark)
}

#[tokio::test]
async fn committed_records_appear_at_the_commit_and_aborted_ones_never() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("t", 2, 1, Default::default(), false)
        .expect("topic");
    let (pid, epoch) = broker
        .init_transactional_producer("tx", 60_000)
        .await
        .expect("init");
    let parts = [("t".to_string(), 0), ("t".to_string(), 1)];
    broker
        .add_partitions_to_txn("tx", pid, epoch, &parts)
        .await
        .expect("add");
    produce(&broker, "t", 0, &txn_batch(pid, epoch, 0, &["a", "b"]))
        .await
        .expect("produce");
    produce(&broker, "t", 1, &txn_batch(pid, epoch, 0, &["c"]))
        .await
        .expect("produce");
    // Open: read_committed readers stop before it.
    assert_eq!(stable(&broker, "t", 0), (0, 2));
    assert!(committed_values(&broker, "t", 0).is_empty());
    broker.end_txn("tx", pid, epoch, true).await.expect("commit");
    assert_eq!(committed_values(&broker, "t", 0), ["a", "b"]);
    assert_eq!(committed_values(&broker, "t", 1), ["c"]);
    // The marker took an offset: the stable offset is the end again.
    assert_eq!(stable(&broker, "t", 0), (3, 3));

    broker
        .add_partitions_to_txn("tx", pid, epoch, &parts[..1])
        .await
        .expect("add");
    produce(&broker, "t", 0, &txn_batch(pid, epoch, 2, &["x"]))
        .await
        .expect("produce");
    broker.end_txn("tx", pid, epoch, false).await.expect("abort");
    assert_eq!(committed_values(&broker, "t", 0), ["a", "b"]);
    let topic = broker.topic("t").expect("topic");
    let slice = broker
        .read_topic_slice(
            &topic,
            0,
            0,
            ReadLimit::AtLeastOneBatch(1 << 20),
            Isolation::ReadCommitted,
        )
        .expect("slice");
    assert_eq!(slice.aborted.len(), 1, "{:?}", slice.aborted);
    assert_eq!(
        (slice.aborted[0].producer_id, slice.aborted[0].first_offset),
        (pid, 3)
    );
    // The same state after a restart (index rebuilt from the segments).
    drop(topic);
    broker.close().expect("close");
    drop(broker);
    let broker = open(dir.path());
    assert_eq!(committed_values(&broker, "t", 0), ["a", "b"]);
    let meta = broker.txns().describe("tx").expect("described");
    assert_eq!(meta.state, TxnState::CompleteAbort);
    assert_eq!((meta.producer_id, meta.producer_epoch), (pid, epoch));
}

#[tokio::test]
async fn a_new_producer_fences_the_old_one_and_aborts_its_open_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("t", 1, 1, Default::default(), false)
        .expect("topic");
    let (pid, old) = broker
        .init_transactional_producer("tx", 60_000)
        .await
        .expect("init");
    broker
        .add_partitions_to_txn("tx", pid, old, &[("t".to_string(), 0)])
        .await
        .expect("add");
    produce(&broker, "t", 0, &txn_batch(pid, old, 0, &["zombie"]))
        .await
        .expect("produce");
    let (pid2, new) = broker
        .init_transactional_producer("tx", 60_000)
        .await
        .expect("re-init");
    assert_eq!(pid2, pid);
    assert!(new > old);
    // The open transaction was aborted: nothing pending, nothing visible.
    assert_eq!(stable(&broker, "t", 0).0, stable(&broker, "t", 0).1);
    assert!(committed_values(&broker, "t", 0).is_empty());
    let fenced = broker.end_txn("tx", pid, old, true).await;
    assert!(
        matches!(
            fenced,
            Err(BrokerError::Transaction {
                error: TxnError::ProducerFenced { .. },
                ..
            })
        ),
        "{fenced:?}"
    );
    // The zombie's writes are refused at the partition too.
    let write = produce(&broker, "t", 0, &txn_batch(pid, old, 1, &["late"])).await;
    assert!(write.is_err(), "a fenced producer wrote: {write:?}");
}

#[tokio::test]
async fn offsets_commit_with_the_transaction_and_not_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("in", 1, 1, Default::default(), false)
        .expect("topic");
    broker
        .create_topic("out", 1, 1, Default::default(), false)
        .expect("topic");
    let (pid, epoch) = broker
        .init_transactional_producer("copier", 60_000)
        .await
        .expect("init");
    broker
        .add_partitions_to_txn("copier", pid, epoch, &[("out".to_string(), 0)])
        .await
        .expect("add");
    broker
        .add_offsets_to_txn("copier", pid, epoch, "g")
        .await
        .expect("add offsets");
    let pending = PendingOffset {
        group: "g".into(),
        topic: "in".into(),
        partition: 0,
        offset: 42,
        leader_epoch: -1,
        metadata: None,
    };
    broker
        .txn_offset_commit("copier", pid, epoch, vec![pending])
        .await
        .expect("txn offset commit");
    let offsets = broker.groups().offsets();
    assert!(offsets.fetch("g", "in", 0).is_none(), "visible before the commit");
    assert!(broker.txns().has_pending_offset("g", "in", 0));
    broker.end_txn("copier", pid, epoch, true).await.expect("commit");
    assert_eq!(offsets.fetch("g", "in", 0).map(|c| c.offset), Some(42));
    assert!(!broker.txns().has_pending_offset("g", "in", 0));
}

#[tokio::test]
async fn a_transaction_open_past_its_timeout_is_aborted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("t", 1, 1, Default::default(), false)
        .expect("topic");
    let (pid, epoch) = broker
        .init_transactional_producer("slow", 200)
        .await
        .expect("init");
    broker
        .add_partitions_to_txn("slow", pid, epoch, &[("t".to_string(), 0)])
        .await
        .expect("add");
    produce(&broker, "t", 0, &txn_batch(pid, epoch, 0, &["never"]))
        .await
        .expect("produce");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while broker.txns().describe("slow").map(|m| m.state) != Some(TxnState::CompleteAbort) {
        assert!(std::time::Instant::now() < deadline, "not aborted in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (lso, hwm) = stable(&broker, "t", 0);
    assert_eq!(
        lso, hwm,
        "the aborted transaction still holds the stable offset back"
    );
    assert!(committed_values(&broker, "t", 0).is_empty());
    let late = broker.end_txn("slow", pid, epoch, true).await;
    assert!(late.is_err(), "the timed-out producer committed: {late:?}");
}

#[tokio::test]
async fn produce_outside_the_transactions_partitions_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("t", 2, 1, Default::default(), false)
        .expect("topic");
    let (pid, epoch) = broker
        .init_transactional_producer("tx", 60_000)
        .await
        .expect("init");
    broker
        .add_partitions_to_txn("tx", pid, epoch, &[("t".to_string(), 0)])
        .await
        .expect("add");
    let refused = produce(&broker, "t", 1, &txn_batch(pid, epoch, 0, &["x"])).await;
    assert!(
        matches!(
            refused,
            Err(BrokerError::Transaction {
                error: TxnError::InvalidState { .. },
                ..
            })
        ),
        "{refused:?}"
    );
    let timeout = broker.init_transactional_producer("other", 0).await;
    assert!(matches!(
        timeout,
        Err(BrokerError::Transaction {
            error: TxnError::InvalidTimeout { .. },
            ..
        })
    ));
}

/// A commit interrupted between the markers of its two partitions (the second marker's
/// write fails, then the broker stops) is completed when the broker opens again: both
/// partitions show the transaction, once.
#[tokio::test]
async fn a_commit_cut_between_its_markers_is_completed_at_the_next_open() {
    use std::sync::Arc;

    use rivulet_log::storage::{FaultyStorage, FsStorage};
    use rivulet_log::txn::{build_marker, Marker};

    let dir = tempfile::tempdir().expect("tempdir");
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        journal: None,
        group_tick_ms: 20,
        ..BrokerConfig::default()
    };
    let storage = FaultyStorage::new(Arc::new(FsStorage));
    let faults = storage.faults();
    let broker = Broker::open_with(config.clone(), Arc::new(storage)).expect("open");
    broker
        .create_topic("t", 2, 1, Default::default(), false)
        .expect("topic");
    let (pid, epoch) = broker
        .init_transactional_producer("tx", 60_000)
        .await
        .expect("init");
    let parts = [("t".to_string(), 0), ("t".to_string(), 1)];
    broker
        .add_partitions_to_txn("tx", pid, epoch, &parts)
        .await
        .expect("add");
    produce(&broker, "t", 0, &txn_batch(pid, epoch, 0, &["a"]))
        .await
        .expect("produce");
    produce(&broker, "t", 1, &txn_batch(pid, epoch, 0, &["b"]))
        .await
        .expect("produce");

    // Room for the PrepareCommit state record and the first marker, not the second.
    let mut prepared = broker.txns().describe("tx").expect("described");
    prepared.state = TxnState::PrepareCommit;
    let value = serde_json::to_vec(&prepared).expect("json");
    let record = Record::new(Some(b"tx".to_vec()), Some(value));
    let state_bytes = rivulet_log::batch::build(0, 0, None, &[record]).len();
    let marker_bytes = build_marker(pid, epoch, Marker::Commit, 0, 0).len();
    faults.set_write_budget(Some((state_bytes + marker_bytes) as u64));
    let cut = broker.end_txn("tx", pid, epoch, true).await;
    assert!(cut.is_err(), "the second marker was written: {cut:?}");
    assert_eq!(
        broker.txns().describe("tx").map(|m| m.state),
        Some(TxnState::PrepareCommit)
    );
    assert_eq!(committed_values(&broker, "t", 0), ["a"], "the first marker is in");
    assert!(committed_values(&broker, "t", 1).is_empty(), "the second is not");
    drop(broker);

    let broker = Broker::open(config).expect("reopen");
    assert_eq!(
        broker.txns().describe("tx").map(|m| m.state),
        Some(TxnState::CompleteCommit)
    );
    assert_eq!(committed_values(&broker, "t", 0), ["a"]);
    assert_eq!(committed_values(&broker, "t", 1), ["b"]);
    for p in 0..2 {
        let (lso, hwm) = stable(&broker, "t", p);
        assert_eq!(lso, hwm, "partition {p} is held back");
        assert_eq!(hwm, 2, "partition {p}: one record and one marker");
    }
}
