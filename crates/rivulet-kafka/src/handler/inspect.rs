//! DescribeProducers, DescribeLogDirs and OffsetForLeaderEpoch.
//!
//! Rivulet is one node that has led every partition since it was created, so every
//! partition's leader epoch is 0 and stays 0: the epoch's end offset is the log end offset,
//! and a client that names a newer epoch is told it is unknown.

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::*;
use rivulet_broker::acl::Operation;

use super::codes::broker_error_code;
use super::{str_bytes, ClientInfo, Handler};
use crate::errors as ec;

/// The only leader epoch a partition has.
const LEADER_EPOCH: i32 = 0;

impl Handler {
    pub(super) fn describe_producers(
        &self,
        r: DescribeProducersRequest,
        client: &ClientInfo,
    ) -> DescribeProducersResponse {
        let topics = r
            .topics
            .into_iter()
            .map(|t| {
                let allowed = self.may_topic(client, Operation::Read, &t.name.0);
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|&p| match allowed {
                        true => self.producers_of(&t.name.0, p),
                        false => PartitionResponse::default()
                            .with_partition_index(p)
                            .with_error_code(ec::TOPIC_AUTHORIZATION_FAILED),
                    })
                    .collect();
                TopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        DescribeProducersResponse::default().with_topics(topics)
    }

    fn producers_of(&self, topic: &str, partition: i32) -> PartitionResponse {
        let out = PartitionResponse::default().with_partition_index(partition);
        match self.broker.describe_producers(topic, partition) {
            Ok(producers) => out.with_active_producers(
                producers
                    .into_iter()
                    .map(|p| {
                        ProducerState::default()
                            .with_producer_id(ProducerId(p.producer_id))
                            .with_producer_epoch(i32::from(p.producer_epoch))
                            .with_last_sequence(p.last_sequence)
                            .with_last_timestamp(p.last_timestamp_ms)
                            .with_coordinator_epoch(-1)
                            .with_current_txn_start_offset(p.txn_start_offset)
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::debug!(topic, partition, error = %e, "DescribeProducers for a missing partition");
                out.with_error_code(broker_error_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string())))
            }
        }
    }

    /// One log directory (the data directory) holding every partition; requested topics
    /// or partitions that do not exist are left out, as Kafka does.
    pub(super) fn describe_log_dirs(&self, v: i16, r: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
        // The request was refused as a whole unless the client may describe the cluster.
        let usage = self.broker.log_dir_usage();
        let wanted: Vec<(String, Option<Vec<i32>>)> = match r.topics {
            None => self
                .broker
                .topics()
                .iter()
                .map(|t| (t.name().to_string(), None))
                .collect(),
            Some(list) => list
                .into_iter()
                .map(|t| (t.topic.0.to_string(), Some(t.partitions)))
                .collect(),
        };
        let topics = wanted
            .into_iter()
            .filter_map(|(name, partitions)| {
                let topic = self.broker.topic(&name)?;
                let sizes = topic
                    .partition_infos()
                    .into_iter()
                    .filter(|p| partitions.as_ref().is_none_or(|ps| ps.contains(&p.partition)))
                    .map(|p| {
                        DescribeLogDirsPartition::default()
                            .with_partition_index(p.partition)
                            .with_partition_size(i64::try_from(p.size_bytes).unwrap_or(i64::MAX))
                    })
                    .collect();
                Some(
                    DescribeLogDirsTopic::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partitions(sizes),
                )
            })
            .collect();
        let mut dir = DescribeLogDirsResult::default()
            .with_log_dir(str_bytes(usage.path.display().to_string()))
            .with_topics(topics);
        if v >= 4 {
            let bytes = |b: Option<u64>| b.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX));
            dir.total_bytes = bytes(usage.total_bytes);
            dir.usable_bytes = bytes(usage.usable_bytes);
        }
        DescribeLogDirsResponse::default().with_results(vec![dir])
    }

    pub(super) fn offset_for_leader_epoch(
        &self,
        r: OffsetForLeaderEpochRequest,
        client: &ClientInfo,
    ) -> OffsetForLeaderEpochResponse {
        let topics = r
            .topics
            .into_iter()
            .map(|t| {
                let allowed = self.may_topic(client, Operation::Describe, &t.topic.0);
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| match allowed {
                        true => {
                            self.epoch_end(&t.topic.0, p.partition, p.current_leader_epoch, p.leader_epoch)
                        }
                        false => EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_error_code(ec::TOPIC_AUTHORIZATION_FAILED)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    })
                    .collect();
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic)
                    .with_partitions(partitions)
            })
            .collect();
        OffsetForLeaderEpochResponse::default().with_topics(topics)
    }

    fn epoch_end(&self, topic: &str, partition: i32, current_epoch: i32, epoch: i32) -> EpochEndOffset {
        let out = EpochEndOffset::default()
            .with_partition(partition)
            .with_leader_epoch(-1)
            .with_end_offset(-1);
        let info = match self.broker.existing_topic(topic) {
            Ok(t) => t.partition_info(partition),
            Err(_) => None,
        };
        let Some(info) = info else {
            return out.with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION);
        };
        if current_epoch > LEADER_EPOCH {
            return out.with_error_code(ec::UNKNOWN_LEADER_EPOCH);
        }
        if epoch != LEADER_EPOCH {
            // Older epochs never existed here, newer ones do not yet: undefined, as Kafka
            // answers for an epoch it has no entry for.
            return out;
        }
        out.with_leader_epoch(LEADER_EPOCH)
            .with_end_offset(info.log_end_offset)
    }
}
