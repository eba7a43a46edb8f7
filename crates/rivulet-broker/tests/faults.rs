//! A full disk or failing sync under the broker's own metadata (`topic.json`,
//! `producer_ids`): clear errors, nothing half-made, and the broker keeps serving.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rivulet_broker::{Broker, BrokerConfig, BrokerError};
use rivulet_log::storage::{FaultyStorage, FsStorage};

fn config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    }
}

fn is_disk_full(e: &BrokerError) -> bool {
    match e {
        BrokerError::Io { source, .. } => source.raw_os_error() == Some(28),
        BrokerError::Log(e) => e.is_disk_full(),
        _ => false,
    }
}

#[test]
fn a_full_disk_refuses_metadata_writes_cleanly_and_the_broker_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = FaultyStorage::new(Arc::new(FsStorage));
    let faults = storage.faults();
    let broker = Broker::open_with(config(dir.path()), Arc::new(storage)).expect("open");
    broker
        .create_topic("kept", 1, 1, BTreeMap::new(), false)
        .expect("create");
    let mut overrides = BTreeMap::new();
    overrides.insert("retention.ms".to_string(), "1000".to_string());

    faults.set_write_budget(Some(0));
    let created = broker.create_topic("lost", 2, 1, BTreeMap::new(), false);
    assert!(created.as_ref().is_err_and(is_disk_full), "{created:?}");
    assert!(broker.topic("lost").is_none());
    let producer = broker.init_producer_id(None);
    assert!(producer.as_ref().is_err_and(is_disk_full), "{producer:?}");
    let altered = broker.set_topic_configs("kept", overrides.clone());
    assert!(altered.as_ref().is_err_and(is_disk_full), "{altered:?}");
    let kept = broker.topic("kept").expect("kept");
    assert!(
        kept.overrides().is_empty(),
        "a config that was not stored is not applied"
    );

    faults.set_write_budget(None);
    broker
        .create_topic("lost", 2, 1, BTreeMap::new(), false)
        .expect("created once there is room");
    broker
        .init_producer_id(None)
        .expect("producer id once there is room");
    broker
        .set_topic_configs("kept", overrides.clone())
        .expect("config once there is room");
    broker.close().expect("close");
    drop(broker);

    let broker = Broker::open(config(dir.path())).expect("reopen");
    let names: Vec<String> = broker.topics().iter().map(|t| t.name().to_string()).collect();
    assert_eq!(names, vec!["kept", "lost"]);
    assert_eq!(broker.topic("kept").expect("kept").overrides(), overrides);
}

#[test]
fn a_failing_sync_refuses_a_topic_and_leaves_no_directory_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = FaultyStorage::new(Arc::new(FsStorage));
    let faults = storage.faults();
    let broker = Broker::open_with(config(dir.path()), Arc::new(storage)).expect("open");
    faults.fail_sync.store(true, Ordering::SeqCst);
    assert!(broker.create_topic("t", 1, 1, BTreeMap::new(), false).is_err());
    faults.fail_sync.store(false, Ordering::SeqCst);
    assert!(broker.topic("t").is_none());
    assert!(
        !dir.path().join("topics").join("t").exists(),
        "the half-made topic was removed"
    );
    broker
        .create_topic("t", 1, 1, BTreeMap::new(), false)
        .expect("then it works");
}
