//! Writes the seed corpus in fuzz/corpus/: real request frames for `request_decode` and
//! valid RecordBatch v2 inputs for `batch_validate`. Seeds are named by content, so running
//! it again only adds what is missing:
//!
//! ```text
//! cd fuzz && cargo test --test corpus -- --ignored
//! ```

use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use rivulet_kafka::versions::SUPPORTED;
use rivulet_log::batch;
use rivulet_log::record::Record;

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn topic(name: &'static str) -> TopicName {
    TopicName(s(name))
}

fn sample_batch() -> Vec<u8> {
    let mut with_headers = Record::new(Some(b"order-7".to_vec()), Some(b"{\"total\":12}".to_vec()));
    with_headers.headers = vec![
        ("trace".to_owned(), Some(b"abc".to_vec())),
        ("empty".to_owned(), None),
    ];
    batch::build(
        0,
        1_700_000_000_000,
        Some((42, 0, 0)),
        &[
            Record::new(Some(b"k".to_vec()), Some(b"v".to_vec())),
            with_headers,
            Record::new(None, None),
        ],
    )
}

/// A request body of each served API, with some content where the API has any.
fn body(key: ApiKey) -> RequestKind {
    match key {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(topic("orders"))
                    .with_partition_data(vec![produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(sample_batch())))])]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(topic("orders"))
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(5)
                        .with_partition_max_bytes(1 << 20)])]),
        ),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(
            vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic("orders"))
                .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])],
        )),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic("orders"))),
        ]))),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("billing")))
                .with_generation_id_or_member_epoch(1)
                .with_member_id(s("m-1"))
                .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic("orders"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(17),
                    ])]),
        ),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
        ApiKey::FindCoordinator => {
            RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(s("billing")))
        }
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("billing")))
                .with_session_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(&[
                        0, 1, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e', b'r', b's',
                    ]))]),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("billing"))]),
        ),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(s("rivulet-fuzz"))
                .with_client_software_version(s("0.1")),
        ),
        ApiKey::CreateTopics => {
            use create_topics_request::{CreatableTopic, CreatableTopicConfig};
            let config = CreatableTopicConfig::default()
                .with_name(s("cleanup.policy"))
                .with_value(Some(s("compact")));
            let topic = CreatableTopic::default()
                .with_name(topic("orders"))
                .with_num_partitions(3)
                .with_replication_factor(1)
                .with_configs(vec![config]);
            RequestKind::CreateTopics(
                CreateTopicsRequest::default()
                    .with_timeout_ms(5_000)
                    .with_topics(vec![topic]),
            )
        }
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("billing"))]),
        ),
        other => panic!("no seed body for {other:?}"),
    }
}

/// One frame body (no length prefix), as `decode_request` receives it.
fn frame(key: ApiKey, version: i16) -> Option<Vec<u8>> {
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(s("rivulet-fuzz")))
        .encode(&mut out, key.request_header_version(version))
        .ok()?;
    body(key).encode(&mut out, version).ok()?;
    Some(out.to_vec())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");

    let dir = root.join("request_decode");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (key, min, max) in SUPPORTED {
        let mut versions = vec![*min, (*min + *max) / 2, *max];
        versions.dedup();
        for version in versions {
            match frame(*key, version) {
                Some(f) => write(&dir, &format!("{key:?}-v{version}"), &f),
                None => eprintln!("{key:?} v{version} does not encode; skipped"),
            }
        }
    }
    // ApiVersions newer than served: the broker still answers.
    if let Some(mut f) = frame(ApiKey::ApiVersions, 3) {
        f[2..4].copy_from_slice(&9i16.to_be_bytes());
        write(&dir, "ApiVersions-too-new", &f);
    }

    let dir = root.join("batch_validate");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let one = batch::build(5, 1_000, None, &[Record::new(None, Some(b"hello".to_vec()))]);
    let three = sample_batch();
    let mut gzip = three.clone();
    gzip[22] |= 1; // attributes: gzip (records are not checked when compressed)
    let crc = batch::compute_crc(&gzip);
    gzip[17..21].copy_from_slice(&crc.to_be_bytes());
    for (name, b) in [
        ("one-record", &one),
        ("three-records", &three),
        ("gzip-flag", &gzip),
    ] {
        // Mode 0: the batch as is.
        let mut raw = vec![0u8];
        raw.extend_from_slice(b);
        write(&dir, &format!("raw-{name}"), &raw);
        // Mode 1: attributes, count, flags, then the records; the target adds the framing.
        let mut structured = vec![1u8];
        structured.extend_from_slice(&b[21..23]);
        structured.push(b[60]); // low byte of recordCount
        structured.push(0);
        structured.extend_from_slice(&b[batch::HEADER_BYTES..]);
        write(&dir, &format!("structured-{name}"), &structured);
    }
}
