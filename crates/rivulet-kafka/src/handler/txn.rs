//! Transactions: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
//! EndTxn, DescribeTransactions and ListTransactions, each one call on the broker's
//! transaction coordinator.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self as described, TopicData};
use kafka_protocol::messages::list_transactions_response as listed;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use rivulet_broker::acl::{Operation, ResourceType};
use rivulet_broker::{BrokerError, PendingOffset, TxnMeta};

use super::codes::{group_error_code, txn_broker_error_code};
use super::{str_bytes, ClientInfo, Handler};
use crate::errors as ec;

impl Handler {
    pub(super) async fn init_producer_id(&self, v: i16, r: InitProducerIdRequest) -> InitProducerIdResponse {
        let fail = |code| {
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        };
        let result = match r.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
            Some(id) => self
                .broker
                .init_transactional_producer(&id.0, r.transaction_timeout_ms)
                .await
                .inspect(|(pid, epoch)| tracing::info!(transactional_id = %id.0, producer_id = pid, epoch, "Transactional producer initialised")),
            None => {
                let existing = (v >= 3 && r.producer_id.0 >= 0).then_some((r.producer_id.0, r.producer_epoch));
                self.broker.init_producer_id(existing).inspect(|(pid, epoch)| {
                    tracing::info!(producer_id = pid, epoch, "Allocated a producer id for an idempotent producer")
                })
            }
        };
        match result {
            Ok((id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
            Err(e) => {
                tracing::warn!(error = %e, "InitProducerId refused");
                fail(txn_broker_error_code(&e, v >= 4))
            }
        }
    }

    pub(super) async fn add_partitions_to_txn(
        &self,
        v: i16,
        r: AddPartitionsToTxnRequest,
    ) -> AddPartitionsToTxnResponse {
        if v >= 4 {
            // Batched broker-to-broker form; clients use versions 0-3.
            return AddPartitionsToTxnResponse::default().with_error_code(ec::UNSUPPORTED_VERSION);
        }
        let partitions: Vec<(String, i32)> = r
            .v3_and_below_topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
            .collect();
        let result = self
            .broker
            .add_partitions_to_txn(
                &r.v3_and_below_transactional_id.0,
                r.v3_and_below_producer_id.0,
                r.v3_and_below_producer_epoch,
                &partitions,
            )
            .await;
        let code_for = |topic: &str, partition: i32| match &result {
            Ok(()) => ec::NONE,
            Err(BrokerError::UnknownTopic(t)) if t == topic => ec::UNKNOWN_TOPIC_OR_PARTITION,
            Err(BrokerError::UnknownPartition {
                topic: t,
                partition: p,
                ..
            }) if t == topic && *p == partition => ec::UNKNOWN_TOPIC_OR_PARTITION,
            Err(BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. }) => {
                ec::OPERATION_NOT_ATTEMPTED
            }
            Err(e) => txn_broker_error_code(e, v >= 2),
        };
        if let Err(e) = &result {
            tracing::warn!(transactional_id = %r.v3_and_below_transactional_id.0, error = %e, "AddPartitionsToTxn refused");
        }
        let topics = r
            .v3_and_below_topics
            .iter()
            .map(|t| {
                let results = t
                    .partitions
                    .iter()
                    .map(|p| {
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(*p)
                            .with_partition_error_code(code_for(&t.name.0, *p))
                    })
                    .collect();
                AddPartitionsToTxnTopicResult::default()
                    .with_name(t.name.clone())
                    .with_results_by_partition(results)
            })
            .collect();
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
    }

    pub(super) async fn add_offsets_to_txn(
        &self,
        v: i16,
        r: AddOffsetsToTxnRequest,
    ) -> AddOffsetsToTxnResponse {
        let result = self
            .broker
            .add_offsets_to_txn(
                &r.transactional_id.0,
                r.producer_id.0,
                r.producer_epoch,
                &r.group_id.0,
            )
            .await;
        let code = match result {
            Ok(()) => ec::NONE,
            Err(e) => {
                tracing::warn!(transactional_id = %r.transactional_id.0, error = %e, "AddOffsetsToTxn refused");
                txn_broker_error_code(&e, v >= 2)
            }
        };
        AddOffsetsToTxnResponse::default().with_error_code(code)
    }

    pub(super) async fn txn_offset_commit(
        &self,
        v: i16,
        r: TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitResponse {
        let group = r.group_id.0.to_string();
        let mut offsets = Vec::new();
        let mut too_large = false;
        for t in &r.topics {
            for p in &t.partitions {
                let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
                too_large |= metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > rivulet_broker::offsets::OFFSET_METADATA_BYTES_MAX);
                offsets.push(PendingOffset {
                    group: group.clone(),
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                });
            }
        }
        // KIP-447: a consumer's generation and member id, when given, must be current, so a
        // zombie consumer's producer cannot commit offsets of partitions it lost.
        let member_error = (v >= 3 && r.generation_id >= 0)
            .then(|| {
                self.broker
                    .groups()
                    .validate_commit(&group, r.generation_id, &r.member_id)
            })
            .flatten();
        let code = if let Some(e) = member_error {
            tracing::warn!(group = %group, error = ?e, "TxnOffsetCommit from a stale group member refused");
            group_error_code(e)
        } else if too_large {
            ec::OFFSET_METADATA_TOO_LARGE
        } else {
            let result = self
                .broker
                .txn_offset_commit(&r.transactional_id.0, r.producer_id.0, r.producer_epoch, offsets)
                .await;
            match result {
                Ok(()) => ec::NONE,
                Err(e) => {
                    tracing::warn!(transactional_id = %r.transactional_id.0, error = %e, "TxnOffsetCommit refused");
                    txn_broker_error_code(&e, v >= 3)
                }
            }
        };
        txn_offset_commit_answer(&r.topics, code)
    }

    pub(super) async fn end_txn(&self, v: i16, r: EndTxnRequest) -> EndTxnResponse {
        let result = self
            .broker
            .end_txn(
                &r.transactional_id.0,
                r.producer_id.0,
                r.producer_epoch,
                r.committed,
            )
            .await;
        let code = match result {
            Ok(()) => ec::NONE,
            Err(e) => {
                tracing::warn!(transactional_id = %r.transactional_id.0, commit = r.committed, error = %e, "EndTxn refused");
                txn_broker_error_code(&e, v >= 2)
            }
        };
        EndTxnResponse::default().with_error_code(code)
    }

    pub(super) fn describe_transactions(
        &self,
        r: DescribeTransactionsRequest,
        client: &ClientInfo,
    ) -> DescribeTransactionsResponse {
        let states = r
            .transactional_ids
            .into_iter()
            .map(|id| match self.broker.txns().describe(&id.0) {
                _ if !self.may_txn(client, Operation::Describe, &id.0) => {
                    described::TransactionState::default()
                        .with_transactional_id(id)
                        .with_error_code(ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                        .with_transaction_state(str_bytes(""))
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1)
                }
                Some(meta) => described_state(&meta),
                None => described::TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(ec::TRANSACTIONAL_ID_NOT_FOUND)
                    .with_transaction_state(str_bytes(""))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            })
            .collect();
        DescribeTransactionsResponse::default().with_transaction_states(states)
    }

    pub(super) fn list_transactions(
        &self,
        r: ListTransactionsRequest,
        client: &ClientInfo,
    ) -> ListTransactionsResponse {
        const KNOWN: [&str; 6] = [
            "Empty",
            "Ongoing",
            "PrepareCommit",
            "PrepareAbort",
            "CompleteCommit",
            "CompleteAbort",
        ];
        let unknown: Vec<_> = r
            .state_filters
            .iter()
            .filter(|s| !KNOWN.contains(&s.as_str()))
            .cloned()
            .collect();
        let now = rivulet_broker::offsets::now_ms();
        let states = self
            .broker
            .txns()
            .list()
            .into_iter()
            .filter(|m| {
                r.state_filters.is_empty() || r.state_filters.iter().any(|s| s.as_str() == m.state.name())
            })
            .filter(|m| {
                r.producer_id_filters.is_empty() || r.producer_id_filters.contains(&ProducerId(m.producer_id))
            })
            .filter(|m| r.duration_filter < 0 || now - m.started_ms >= r.duration_filter)
            .filter(|m| {
                self.broker.authorized(
                    client.who(),
                    Operation::Describe,
                    ResourceType::TransactionalId,
                    &m.transactional_id,
                )
            })
            .map(|m| {
                listed::TransactionState::default()
                    .with_transactional_id(TransactionalId(str_bytes(m.transactional_id)))
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_transaction_state(str_bytes(m.state.name()))
            })
            .collect();
        ListTransactionsResponse::default()
            .with_unknown_state_filters(unknown)
            .with_transaction_states(states)
    }
}

fn described_state(meta: &TxnMeta) -> described::TransactionState {
    let mut topics: Vec<TopicData> = Vec::new();
    for (topic, partition) in &meta.partitions {
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == topic => t.partitions.push(*partition),
            _ => topics.push(
                TopicData::default()
                    .with_topic(TopicName(str_bytes(topic.clone())))
                    .with_partitions(vec![*partition]),
            ),
        }
    }
    described::TransactionState::default()
        .with_transactional_id(TransactionalId(str_bytes(meta.transactional_id.clone())))
        .with_transaction_state(str_bytes(meta.state.name()))
        .with_transaction_timeout_ms(meta.timeout_ms)
        .with_transaction_start_time_ms(meta.started_ms)
        .with_producer_id(ProducerId(meta.producer_id))
        .with_producer_epoch(meta.producer_epoch)
        .with_topics(topics)
}

/// A TxnOffsetCommit answer giving every partition asked for the same code.
pub(super) fn txn_offset_commit_answer(
    topics: &[kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic],
    code: i16,
) -> TxnOffsetCommitResponse {
    let topics = topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
