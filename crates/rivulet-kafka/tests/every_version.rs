//! Every advertised (API, version) pair: the request encodes, decodes through Rivulet's codec,
//! is handled against a real broker, and the response encodes at that version.
//!
//! The codec refuses to encode a field the version lacks, so this catches responses that
//! would break a client only at some versions.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use rivulet_broker::{Broker, BrokerConfig};
use rivulet_kafka::codec::{decode_request, Decoded};
use rivulet_kafka::handler::ClientInfo;
use rivulet_kafka::sasl::SaslState;
use rivulet_kafka::{versions, Handler, HandlerConfig};
use rivulet_log::record::Record;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn batch() -> Bytes {
    Bytes::from(rivulet_log::batch::build(
        0,
        1_700_000_000_000,
        None,
        &[Record::new(Some(b"k".to_vec()), Some(b"v".to_vec()))],
    ))
}

// Longer than most functions: one match arm per API key: splitting it would scatter one table.
/// A representative request of each API (valid at every version Rivulet advertises).
fn request(key: ApiKey, version: i16) -> RequestKind {
    let topic = TopicName(s("t"));
    match key {
        ApiKey::ApiVersions => {
            let mut r = ApiVersionsRequest::default();
            if version >= 3 {
                r.client_software_name = s("test");
                r.client_software_version = s("1");
            }
            r.into()
        }
        ApiKey::Metadata => {
            let mut r = MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic))]));
            if version >= 4 {
                r.allow_auto_topic_creation = true;
            }
            if (8..=10).contains(&version) {
                r.include_cluster_authorized_operations = true;
            }
            if version >= 8 {
                r.include_topic_authorized_operations = true;
            }
            r.into()
        }
        ApiKey::Produce => ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic)
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch()))])])
            .into(),
        ApiKey::Fetch => FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default().with_topic(topic).with_partitions(
                vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)],
            )])
            .into(),
        ApiKey::ListOffsets => ListOffsetsRequest::default()
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic)
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])])
            .into(),
        ApiKey::FindCoordinator => FindCoordinatorRequest::default().with_key(s("g")).into(),
        ApiKey::JoinGroup => {
            let mut r = JoinGroupRequest::default()
                .with_group_id(GroupId(s(&format!("join-{version}"))))
                .with_session_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(b"meta"))]);
            if version >= 1 {
                r.rebalance_timeout_ms = 10_000;
            }
            r.into()
        }
        ApiKey::SyncGroup => SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s("nobody"))
            .into(),
        ApiKey::Heartbeat => HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s("nobody"))
            .into(),
        ApiKey::LeaveGroup => {
            let mut r = LeaveGroupRequest::default().with_group_id(GroupId(s("g")));
            if version >= 3 {
                r.members = vec![leave_group_request::MemberIdentity::default().with_member_id(s("nobody"))];
            } else {
                r.member_id = s("nobody");
            }
            r.into()
        }
        ApiKey::OffsetCommit => OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic)
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(1)
                    .with_committed_metadata(Some(s("m")))])])
            .into(),
        ApiKey::OffsetFetch => OffsetFetchRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic)
                .with_partition_indexes(vec![0])]))
            .into(),
        ApiKey::InitProducerId => InitProducerIdRequest::default()
            .with_transaction_timeout_ms(1000)
            .into(),
        ApiKey::CreateTopics => CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(s(&format!("created-{version}"))))
                .with_num_partitions(2)
                .with_replication_factor(1)])
            .into(),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(s("missing"))])
            .into(),
        ApiKey::DescribeConfigs => DescribeConfigsRequest::default()
            .with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t")),
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("0")),
            ])
            .into(),
        ApiKey::DescribeGroups => {
            let mut r = DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(s("join-5")), GroupId(s("unknown"))]);
            if version >= 3 {
                r.include_authorized_operations = true;
            }
            r.into()
        }
        ApiKey::ListGroups => ListGroupsRequest::default().into(),
        ApiKey::AlterConfigs => AlterConfigsRequest::default()
            .with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("60000")))])])
            .into(),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(s("unknown"))])
            .into(),
        ApiKey::AddPartitionsToTxn => AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s("tx")))
            .with_v3_and_below_producer_id(ProducerId(7))
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(topic)
                    .with_partitions(vec![0]),
            ])
            .into(),
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_producer_id(ProducerId(7))
            .with_group_id(GroupId(s("g")))
            .into(),
        ApiKey::EndTxn => EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_producer_id(ProducerId(7))
            .with_committed(true)
            .into(),
        ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_group_id(GroupId(s("g")))
            .with_producer_id(ProducerId(7))
            .with_generation_id(-1)
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(topic)
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1),
                    ]),
            ])
            .into(),
        ApiKey::DescribeTransactions => DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s("tx")), TransactionalId(s("unknown"))])
            .into(),
        ApiKey::ListTransactions => ListTransactionsRequest::default()
            .with_state_filters(vec![s("Ongoing"), s("NoSuchState")])
            .into(),
        ApiKey::DescribeCluster => DescribeClusterRequest::default()
            .with_include_cluster_authorized_operations(true)
            .into(),
        ApiKey::CreatePartitions => CreatePartitionsRequest::default()
            .with_topics(vec![create_partitions_request::CreatePartitionsTopic::default()
                .with_name(TopicName(s("t")))
                .with_count(1)])
            .with_validate_only(true)
            .into(),
        ApiKey::DeleteRecords => DeleteRecordsRequest::default()
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic)
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(0),
                ])])
            .into(),
        ApiKey::OffsetDelete => OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("unknown")))
            .with_topics(vec![offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(topic)
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0),
                ])])
            .into(),
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default()
            .with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default(
                    )
                    .with_name(s("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(s("120000")))]),
            ])
            .with_validate_only(true)
            .into(),
        ApiKey::DescribeProducers => DescribeProducersRequest::default()
            .with_topics(vec![describe_producers_request::TopicRequest::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0, 7])])
            .into(),
        ApiKey::DescribeLogDirs => DescribeLogDirsRequest::default().with_topics(None).into(),
        ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic)
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(0)
                            .with_leader_epoch(0),
                    ]),
            ])
            .into(),
        ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("kip848")))
            .with_member_id(s(&format!("member-v{version}")))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
            .with_topic_partitions(Some(vec![]))
            .into(),
        ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s("kip848")), GroupId(s("unknown"))])
            .with_include_authorized_operations(true)
            .into(),
        ApiKey::ShareGroupHeartbeat => ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("queue")))
            .with_member_id(s("share-member"))
            .with_member_epoch(0)
            .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
            .into(),
        ApiKey::ShareGroupDescribe => ShareGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s("queue")), GroupId(s("unknown"))])
            .into(),
        ApiKey::ShareFetch => ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s("queue"))))
            .with_member_id(Some(s("share-member")))
            .with_share_session_epoch(0)
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_max_records(10)
            .with_batch_size(10)
            .into(),
        ApiKey::ShareAcknowledge => ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(s("queue"))))
            .with_member_id(Some(s("share-member")))
            .with_share_session_epoch(1)
            .into(),
        ApiKey::SaslHandshake => SaslHandshakeRequest::default().with_mechanism(s("PLAIN")).into(),
        ApiKey::SaslAuthenticate => SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from_static(b"\0alice\0password"))
            .into(),
        ApiKey::DescribeUserScramCredentials => DescribeUserScramCredentialsRequest::default()
            .with_users(None)
            .into(),
        ApiKey::AlterUserScramCredentials => {
            use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
            AlterUserScramCredentialsRequest::default()
                .with_upsertions(vec![ScramCredentialUpsertion::default()
                    .with_name(s("alice"))
                    .with_mechanism(1)
                    .with_iterations(4096)
                    .with_salt(Bytes::from_static(b"salt"))
                    .with_salted_password(Bytes::from(vec![7u8; 32]))])
                .into()
        }
        ApiKey::CreateAcls => {
            use kafka_protocol::messages::create_acls_request::AclCreation;
            CreateAclsRequest::default()
                .with_creations(vec![AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_principal(s("User:alice"))
                    .with_host(s("*"))
                    .with_operation(3)
                    .with_permission_type(3)])
                .into()
        }
        ApiKey::DescribeAcls => DescribeAclsRequest::default()
            .with_resource_type_filter(1)
            .with_operation(1)
            .with_permission_type(1)
            .into(),
        ApiKey::DeleteAcls => {
            use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
            DeleteAclsRequest::default()
                .with_filters(vec![DeleteAclsFilter::default()
                    .with_resource_type_filter(2)
                    .with_resource_name_filter(Some(s("t")))
                    .with_operation(1)
                    .with_permission_type(1)])
                .into()
        }
        other => panic!("no sample request for {other:?}: add one when advertising a new API"),
    }
}

fn frame(key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(s("test")))
        .encode(&mut out, key.request_header_version(version))
        .expect("header encodes");
    body.encode(&mut out, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version} request encodes: {e:#}"));
    out.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    })
    .expect("broker");
    broker
        .create_topic("t", 1, 1, BTreeMap::new(), false)
        .expect("topic");
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut sasl = SaslState::new(&broker, true, None);
    let handler = Handler::new(
        broker.clone(),
        HandlerConfig {
            node_id: 0,
            advertised_host: "127.0.0.1".to_string(),
            advertised_port: 9092,
            advertised_more: Vec::new(),
            cluster_id: "rivulet".to_string(),
            fetch_bytes_max: 1 << 20,
            fetch_wait_ms_max: 100,
        },
        stop_rx,
        8 << 20,
    );
    let client = ClientInfo {
        host: "127.0.0.1".to_string(),
        connection: 1,
        user: None,
        listener: 0,
    };
    let mut checked = 0;
    for (key, min, max) in versions::SUPPORTED {
        for version in *min..=*max {
            let body = request(*key, version);
            let decoded = match decode_request(frame(*key, version, &body)) {
                Ok(Decoded::Request(r)) => r,
                other => panic!("{key:?} v{version} does not decode: {other:?}"),
            };
            assert_eq!(decoded.header.correlation_id, 42);
            // The connection answers the SASL requests itself.
            let intercepted = sasl
                .intercept(&broker, "127.0.0.1", *key, &decoded.body)
                .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            let response = match intercepted {
                Some(body) => rivulet_kafka::handler::Response {
                    body,
                    slices: Vec::new(),
                    reservation: None,
                },
                None => handler
                    .handle(*decoded, &client)
                    .await
                    .unwrap_or_else(|| panic!("{key:?} v{version} got no response")),
            };
            let frame =
                rivulet_kafka::frame::encode_response(*key, version, 42, &response.body, response.slices)
                    .unwrap_or_else(|e| panic!("{key:?} v{version} response: {e}"));
            let Some(rivulet_kafka::frame::Piece::Bytes(head)) = frame.pieces.first() else {
                panic!("{key:?} v{version}: a frame starts with bytes");
            };
            assert_eq!(&head[4..8], &42i32.to_be_bytes());
            checked += 1;
        }
    }
    assert!(checked > 80, "checked {checked} pairs");
}
