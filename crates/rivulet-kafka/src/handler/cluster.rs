//! DescribeCluster, CreatePartitions, DeleteRecords and OffsetDelete.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::*;
use rivulet_broker::acl::Operation;

use super::codes::{broker_error_code, group_error_code};
use super::operations;
use super::{str_bytes, ClientInfo, Handler};
use crate::errors as ec;

impl Handler {
    pub(super) fn describe_cluster(
        &self,
        r: DescribeClusterRequest,
        client: &ClientInfo,
    ) -> DescribeClusterResponse {
        const BROKERS: i8 = 1;
        if r.endpoint_type != BROKERS {
            return DescribeClusterResponse::default()
                .with_error_code(ec::UNSUPPORTED_ENDPOINT_TYPE)
                .with_error_message(Some(str_bytes("only broker endpoints exist")));
        }
        let node = DescribeClusterBroker::default()
            .with_broker_id(BrokerId(self.config.node_id))
            .with_host(str_bytes(self.advertised(client).0))
            .with_port(i32::from(self.advertised(client).1));
        let operations = operations::reported(r.include_cluster_authorized_operations, || {
            self.cluster_operations(client)
        });
        DescribeClusterResponse::default()
            .with_endpoint_type(BROKERS)
            .with_cluster_id(str_bytes(self.config.cluster_id.clone()))
            .with_controller_id(BrokerId(self.config.node_id))
            .with_brokers(vec![node])
            .with_cluster_authorized_operations(operations)
    }

    pub(super) async fn create_partitions(
        &self,
        r: CreatePartitionsRequest,
        client: &ClientInfo,
    ) -> CreatePartitionsResponse {
        let mut results = Vec::with_capacity(r.topics.len());
        for t in r.topics {
            let mut out = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            if !self.may_topic(client, Operation::Alter, &t.name.0) {
                results.push(out.with_error_code(ec::TOPIC_AUTHORIZATION_FAILED));
                continue;
            }
            let broker = self.broker.clone();
            let (name, count, validate_only) = (t.name.0.to_string(), t.count, r.validate_only);
            let result =
                tokio::task::spawn_blocking(move || broker.create_partitions(&name, count, validate_only))
                    .await
                    .unwrap_or_else(|e| {
                        Err(rivulet_broker::BrokerError::LimitReached(format!(
                            "partition task failed: {e}"
                        )))
                    });
            if let Err(e) = result {
                tracing::info!(topic = %t.name.0, error = %e, "CreatePartitions refused");
                out.error_code = broker_error_code(&e);
                out.error_message = Some(str_bytes(e.to_string()));
            }
            results.push(out);
        }
        CreatePartitionsResponse::default().with_results(results)
    }

    pub(super) async fn delete_records(
        &self,
        r: DeleteRecordsRequest,
        client: &ClientInfo,
    ) -> DeleteRecordsResponse {
        use kafka_protocol::messages::delete_records_response::{
            DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
        };
        let mut topics = Vec::with_capacity(r.topics.len());
        for t in r.topics {
            let allowed = self.may_topic(client, Operation::Delete, &t.name.0);
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                if !allowed {
                    partitions.push(
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1)
                            .with_error_code(ec::TOPIC_AUTHORIZATION_FAILED),
                    );
                    continue;
                }
                let broker = self.broker.clone();
                let (name, index, offset) = (t.name.0.to_string(), p.partition_index, p.offset);
                let result = tokio::task::spawn_blocking(move || broker.delete_records(&name, index, offset))
                    .await
                    .unwrap_or_else(|e| {
                        Err(rivulet_broker::BrokerError::LimitReached(format!(
                            "delete task failed: {e}"
                        )))
                    });
                let mut out = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                match result {
                    Ok(low) => out.low_watermark = low,
                    Err(e) => {
                        tracing::info!(topic = %t.name.0, partition = p.partition_index, error = %e, "DeleteRecords refused");
                        out.low_watermark = -1;
                        out.error_code = broker_error_code(&e);
                    }
                }
                partitions.push(out);
            }
            topics.push(
                DeleteRecordsTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        DeleteRecordsResponse::default().with_topics(topics)
    }

    pub(super) async fn offset_delete(
        &self,
        r: OffsetDeleteRequest,
        client: &ClientInfo,
    ) -> OffsetDeleteResponse {
        if !self.may_group(client, Operation::Delete, &r.group_id.0) {
            return OffsetDeleteResponse::default().with_error_code(ec::GROUP_AUTHORIZATION_FAILED);
        }
        let readable: std::collections::BTreeSet<String> = r
            .topics
            .iter()
            .filter(|t| self.may_topic(client, Operation::Read, &t.name.0))
            .map(|t| t.name.0.to_string())
            .collect();
        let partitions: Vec<(String, i32)> = r
            .topics
            .iter()
            .filter(|t| readable.contains(t.name.0.as_str()))
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.0.to_string(), p.partition_index))
            })
            .collect();
        let outcome = self
            .broker
            .groups()
            .delete_offsets(&r.group_id.0, &partitions)
            .await;
        let (top, subscribed) = match outcome {
            Ok(kept) => (ec::NONE, kept),
            Err(e) => (group_error_code(e), Default::default()),
        };
        let topics = r
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        // Members may be consuming the topics they subscribe to.
                        let code = if !readable.contains(t.name.0.as_str()) {
                            ec::TOPIC_AUTHORIZATION_FAILED
                        } else if subscribed.contains(t.name.0.as_str()) {
                            ec::GROUP_SUBSCRIBED_TO_TOPIC
                        } else {
                            ec::NONE
                        };
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        OffsetDeleteResponse::default()
            .with_error_code(top)
            .with_topics(topics)
    }
}
