//! DescribeProducers, DescribeLogDirs, OffsetForLeaderEpoch and the authorized-operations
//! fields, handled against a real broker.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rivulet_broker::{Broker, BrokerConfig, Create};
use rivulet_kafka::codec::Request;
use rivulet_kafka::handler::ClientInfo;
use rivulet_kafka::{Handler, HandlerConfig};
use rivulet_log::record::Record;

const TOPIC: &str = "inspected";

struct Fixture {
    _dir: tempfile::TempDir,
    broker: Broker,
    handler: Handler,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    })
    .expect("broker");
    broker
        .create_topic(TOPIC, 2, 1, BTreeMap::new(), false)
        .expect("topic");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let handler = Handler::new(broker.clone(), HandlerConfig::default(), stop_rx, 8 << 20);
    Fixture {
        _dir: dir,
        broker,
        handler,
        _stop: stop,
    }
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Appends `count` records as producer `(id, epoch)` starting at `sequence`.
async fn produce(f: &Fixture, producer: Option<(i64, i16, i32)>, count: usize) {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            offset_delta: i as i32,
            ..Record::new(None, Some(vec![b'x'; 100]))
        })
        .collect();
    let batch = rivulet_log::batch::build(0, 1_700_000_000_000, producer, &records);
    let out = f
        .broker
        .produce(TOPIC, 0, &Bytes::from(batch), Create::Never)
        .expect("produce");
    out.durable.wait().await.expect("durable");
}

async fn send(f: &Fixture, version: i16, body: RequestKind) -> ResponseKind {
    let api_key = match &body {
        RequestKind::DescribeProducers(_) => ApiKey::DescribeProducers,
        RequestKind::DescribeLogDirs(_) => ApiKey::DescribeLogDirs,
        RequestKind::OffsetForLeaderEpoch(_) => ApiKey::OffsetForLeaderEpoch,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::DescribeGroups(_) => ApiKey::DescribeGroups,
        other => panic!("not sent by this test: {other:?}"),
    };
    let request = Request {
        api_key,
        version,
        header: RequestHeader::default(),
        body,
    };
    let client = ClientInfo {
        host: "127.0.0.1".to_string(),
        connection: 1,
        user: None,
        listener: 0,
    };
    f.handler
        .handle(request, &client)
        .await
        .map(|r| r.body)
        .expect("a response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_producers_lists_idempotent_producers_per_partition() {
    let f = fixture();
    produce(&f, Some((4000, 2, 0)), 3).await;
    produce(&f, Some((4000, 2, 3)), 2).await;
    produce(&f, None, 1).await;
    let request = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partition_indexes(vec![0, 1, 9]),
    ]);
    let ResponseKind::DescribeProducers(r) = send(&f, 0, request.into()).await else {
        panic!("not a DescribeProducers response");
    };
    let parts = &r.topics[0].partitions;
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0].error_code, 0);
    let p = &parts[0].active_producers;
    assert_eq!(p.len(), 1, "the producer without an id is not listed: {p:?}");
    assert_eq!(
        (
            p[0].producer_id.0,
            p[0].producer_epoch,
            p[0].last_sequence,
            p[0].current_txn_start_offset
        ),
        (4000, 2, 4, -1)
    );
    assert!(p[0].last_timestamp > 0);
    assert!(parts[1].error_code == 0 && parts[1].active_producers.is_empty());
    assert_eq!(parts[2].error_code, 3, "partition 9 does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_leader_epoch_ends_epoch_zero_at_the_log_end() {
    let f = fixture();
    produce(&f, None, 5).await;
    let ask = |partition: i32, current: i32, epoch: i32| {
        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
            .with_partition(partition)
            .with_current_leader_epoch(current)
            .with_leader_epoch(epoch)
    };
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(TopicName(s(TOPIC)))
                .with_partitions(vec![
                    ask(0, 0, 0),
                    ask(1, -1, 0),
                    ask(0, 0, 3),
                    ask(0, 2, 0),
                    ask(5, 0, 0),
                ]),
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(TopicName(s("missing")))
                .with_partitions(vec![ask(0, 0, 0)]),
        ]);
    let ResponseKind::OffsetForLeaderEpoch(r) = send(&f, 4, request.into()).await else {
        panic!("not an OffsetForLeaderEpoch response");
    };
    let got: Vec<(i16, i32, i64)> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 0, 5),    // epoch 0 ends at the log end offset
            (0, 0, 0),    // an empty partition
            (0, -1, -1),  // an epoch this partition never had
            (75, -1, -1), // the client claims a newer current epoch: UNKNOWN_LEADER_EPOCH
            (3, -1, -1),  // no partition 5
            (3, -1, -1),  // no such topic
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_log_dirs_reports_partition_sizes_and_space() {
    let f = fixture();
    produce(&f, None, 10).await;
    let expected = f.broker.topic(TOPIC).expect("topic").partition_infos()[0].size_bytes as i64;
    assert!(expected > 1000);
    let request = DescribeLogDirsRequest::default().with_topics(Some(vec![
        describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(TopicName(s(TOPIC)))
            .with_partitions(vec![0]),
        describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(TopicName(s("missing")))
            .with_partitions(vec![0]),
    ]));
    let ResponseKind::DescribeLogDirs(r) = send(&f, 4, request.into()).await else {
        panic!("not a DescribeLogDirs response");
    };
    assert_eq!(r.results.len(), 1, "one log directory");
    let dir = &r.results[0];
    assert!(dir
        .log_dir
        .ends_with(f._dir.path().file_name().and_then(|n| n.to_str()).expect("name")));
    assert!(dir.total_bytes > 0 && dir.usable_bytes > 0 && dir.usable_bytes <= dir.total_bytes);
    assert_eq!(dir.topics.len(), 1, "missing topics are left out");
    let parts = &dir.topics[0].partitions;
    assert_eq!(parts.len(), 1, "only the partition asked for");
    assert_eq!((parts[0].partition_index, parts[0].partition_size), (0, expected));

    // No topic list: every partition of every topic.
    let all = DescribeLogDirsRequest::default().with_topics(None);
    let ResponseKind::DescribeLogDirs(r) = send(&f, 1, all.into()).await else {
        panic!("not a DescribeLogDirs response");
    };
    assert_eq!(r.results[0].topics[0].partitions.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_operations_are_reported_when_asked() {
    let f = fixture();
    let metadata = |asked: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(TOPIC))))
            ]))
            .with_include_topic_authorized_operations(asked)
            .with_include_cluster_authorized_operations(asked)
    };
    let ResponseKind::Metadata(r) = send(&f, 9, metadata(true).into()).await else {
        panic!("not a Metadata response");
    };
    // READ, WRITE, ALTER, DELETE, CREATE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
    assert_eq!(r.topics[0].topic_authorized_operations, 3576);
    // ALTER, CREATE, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
    assert_eq!(r.cluster_authorized_operations, 8096);
    let ResponseKind::Metadata(r) = send(&f, 9, metadata(false).into()).await else {
        panic!("not a Metadata response");
    };
    assert_eq!(r.topics[0].topic_authorized_operations, i32::MIN);
    let groups = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(s("g"))])
        .with_include_authorized_operations(true);
    let ResponseKind::DescribeGroups(r) = send(&f, 5, groups.into()).await else {
        panic!("not a DescribeGroups response");
    };
    // READ, DELETE, DESCRIBE.
    assert_eq!(r.groups[0].authorized_operations, 328);
}
