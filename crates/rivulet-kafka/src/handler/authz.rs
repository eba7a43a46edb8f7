//! The authorization checks handlers make, named for what they guard. Each refusal is
//! counted and logged by the broker; handlers answer it with Kafka's error code.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rivulet_broker::acl::{Operation, ResourceType, CLUSTER_NAME};

use super::{ClientInfo, Handler};
use crate::errors as ec;

impl Handler {
    /// May the client perform `op` on the topic?
    pub(super) fn may_topic(&self, client: &ClientInfo, op: Operation, topic: &str) -> bool {
        self.broker
            .authorize(client.who(), op, ResourceType::Topic, topic)
    }

    /// May the client perform `op` on the group?
    pub(super) fn may_group(&self, client: &ClientInfo, op: Operation, group: &str) -> bool {
        self.broker
            .authorize(client.who(), op, ResourceType::Group, group)
    }

    /// May the client perform `op` on the transactional id?
    pub(super) fn may_txn(&self, client: &ClientInfo, op: Operation, id: &str) -> bool {
        self.broker
            .authorize(client.who(), op, ResourceType::TransactionalId, id)
    }

    /// May the client perform `op` on the cluster?
    pub(super) fn may_cluster(&self, client: &ClientInfo, op: Operation) -> bool {
        self.broker
            .authorize(client.who(), op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// May the client perform `op` (describe or alter configs) on a config resource of
    /// Kafka's type codes (topic 2, broker 4, group 32)? The error code when not.
    pub(super) fn may_config(
        &self,
        client: &ClientInfo,
        op: Operation,
        kind: i8,
        name: &str,
    ) -> Result<(), i16> {
        let (allowed, code) = match kind {
            2 => (self.may_topic(client, op, name), ec::TOPIC_AUTHORIZATION_FAILED),
            4 => (self.may_cluster(client, op), ec::CLUSTER_AUTHORIZATION_FAILED),
            32 => (self.may_group(client, op, name), ec::GROUP_AUTHORIZATION_FAILED),
            _ => (true, ec::NONE),
        };
        if allowed {
            Ok(())
        } else {
            Err(code)
        }
    }

    /// May the client see the topic (silently: for filtering lists)?
    pub(super) fn sees_topic(&self, client: &ClientInfo, topic: &str) -> bool {
        self.broker
            .authorized(client.who(), Operation::Describe, ResourceType::Topic, topic)
    }

    /// May the client create the topic: create on the cluster, or on the topic itself?
    pub(super) fn may_create_topic(&self, client: &ClientInfo, topic: &str) -> bool {
        let who = client.who();
        self.broker
            .authorized(who, Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
            || self.may_topic(client, Operation::Create, topic)
    }

    /// May the client produce idempotently without a transactional id: idempotent write
    /// on the cluster, or write on some topic (as Kafka since 3.0)?
    pub(super) fn may_write_idempotently(&self, client: &ClientInfo) -> bool {
        // The cluster check comes last: it logs and counts the refusal when both fail.
        self.broker
            .authorized_any(client.who(), Operation::Write, ResourceType::Topic)
            || self.may_cluster(client, Operation::IdempotentWrite)
    }
}

/// The answer to a request refused as a whole, or `None` when the request may go on (its
/// handler may still refuse single topics or groups).
pub(super) fn refusal(
    handler: &Handler,
    v: i16,
    body: &RequestKind,
    client: &ClientInfo,
) -> Option<ResponseKind> {
    use Operation::{Alter, Describe, Read, Write};
    let group = |id: &str| !handler.may_group(client, Read, id);
    let txn = |id: &str| !handler.may_txn(client, Write, id);
    const GROUP: i16 = ec::GROUP_AUTHORIZATION_FAILED;
    const TXN: i16 = ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    const CLUSTER: i16 = ec::CLUSTER_AUTHORIZATION_FAILED;
    // Offsets committed in a transaction: write on the id first, then read on the group.
    let txn_then_group = |id: &str, g: &str| {
        if txn(id) {
            Some(TXN)
        } else if group(g) {
            Some(GROUP)
        } else {
            None
        }
    };
    Some(match body {
        RequestKind::JoinGroup(r) if group(&r.group_id) => ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(GROUP)
                .with_generation_id(-1)
                .with_member_id(r.member_id.clone()),
        ),
        RequestKind::SyncGroup(r) if group(&r.group_id) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(GROUP))
        }
        RequestKind::Heartbeat(r) if group(&r.group_id) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(GROUP))
        }
        RequestKind::LeaveGroup(r) if group(&r.group_id) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(GROUP))
        }
        RequestKind::ConsumerGroupHeartbeat(r) if group(&r.group_id) => ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(GROUP)
                .with_member_epoch(-1),
        ),
        RequestKind::ShareGroupHeartbeat(r) if group(&r.group_id) => ResponseKind::ShareGroupHeartbeat(
            ShareGroupHeartbeatResponse::default()
                .with_error_code(GROUP)
                .with_member_epoch(-1),
        ),
        RequestKind::ShareFetch(r) => {
            let topics = r.topics.iter().map(|t| t.topic_id);
            let code = share_refusal(handler, client, r.group_id.as_ref(), topics)?;
            ResponseKind::ShareFetch(ShareFetchResponse::default().with_error_code(code))
        }
        RequestKind::ShareAcknowledge(r) => {
            let topics = r.topics.iter().map(|t| t.topic_id);
            let code = share_refusal(handler, client, r.group_id.as_ref(), topics)?;
            ResponseKind::ShareAcknowledge(ShareAcknowledgeResponse::default().with_error_code(code))
        }
        RequestKind::InitProducerId(r) => {
            let code = match r.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
                Some(id) if txn(id) => TXN,
                None if !handler.may_write_idempotently(client) => CLUSTER,
                _ => return None,
            };
            ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_error_code(code)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let code = txn_then_group(&r.transactional_id, &r.group_id)?;
            ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
        }
        RequestKind::EndTxn(r) if txn(&r.transactional_id) => {
            ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(TXN))
        }
        RequestKind::TxnOffsetCommit(r) => {
            let code = txn_then_group(&r.transactional_id, &r.group_id)?;
            ResponseKind::TxnOffsetCommit(super::txn::txn_offset_commit_answer(&r.topics, code))
        }
        RequestKind::AddPartitionsToTxn(r) if v <= 3 => {
            let txn_denied = txn(&r.v3_and_below_transactional_id);
            let denied: Vec<bool> = r
                .v3_and_below_topics
                .iter()
                .map(|t| !txn_denied && !handler.may_topic(client, Write, &t.name))
                .collect();
            if !txn_denied && !denied.contains(&true) {
                return None;
            }
            ResponseKind::AddPartitionsToTxn(add_partitions_refused(r, txn_denied, &denied))
        }
        RequestKind::DescribeLogDirs(_) if !handler.may_cluster(client, Describe) => {
            let mut resp = DescribeLogDirsResponse::default();
            if v >= 3 {
                resp.error_code = CLUSTER;
            }
            ResponseKind::DescribeLogDirs(resp)
        }
        RequestKind::DescribeUserScramCredentials(_) if !handler.may_cluster(client, Describe) => {
            ResponseKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsResponse::default()
                    .with_error_code(CLUSTER)
                    .with_error_message(Some(StrBytes::from_static_str("not authorized"))),
            )
        }
        RequestKind::AlterUserScramCredentials(r) if !handler.may_cluster(client, Alter) => {
            let names = r
                .deletions
                .iter()
                .map(|d| &d.name)
                .chain(r.upsertions.iter().map(|u| &u.name));
            let mut seen = std::collections::BTreeSet::new();
            let results = names
                .filter(|n| seen.insert(n.to_string()))
                .map(|n| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(n.clone())
                        .with_error_code(CLUSTER)
                })
                .collect();
            ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(results),
            )
        }
        _ => return None,
    })
}

/// A share fetch or acknowledgement needs read on the group and on every topic.
fn share_refusal(
    handler: &Handler,
    client: &ClientInfo,
    group: Option<&GroupId>,
    mut topics: impl Iterator<Item = uuid::Uuid>,
) -> Option<i16> {
    if group.is_some_and(|g| !handler.may_group(client, Operation::Read, g)) {
        return Some(ec::GROUP_AUTHORIZATION_FAILED);
    }
    let unreadable = |id: uuid::Uuid| {
        handler
            .broker
            .topic_by_id(id.as_u128())
            .is_some_and(|t| !handler.may_topic(client, Operation::Read, t.name()))
    };
    topics.any(unreadable).then_some(ec::TOPIC_AUTHORIZATION_FAILED)
}

/// Kafka's answer when some of a transaction's partitions may not be written: those get
/// their authorization error, the others OPERATION_NOT_ATTEMPTED.
fn add_partitions_refused(
    r: &AddPartitionsToTxnRequest,
    txn_denied: bool,
    denied: &[bool],
) -> AddPartitionsToTxnResponse {
    let topics = r
        .v3_and_below_topics
        .iter()
        .zip(denied)
        .map(|(t, topic_denied)| {
            let code = match (txn_denied, topic_denied) {
                (true, _) => ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                (false, true) => ec::TOPIC_AUTHORIZATION_FAILED,
                (false, false) => ec::OPERATION_NOT_ATTEMPTED,
            };
            let results = t
                .partitions
                .iter()
                .map(|p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(code)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(results)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}
