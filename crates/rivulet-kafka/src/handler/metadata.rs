//! Metadata and FindCoordinator: a single node that leads every partition and coordinates
//! every group.

use std::sync::Arc;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use rivulet_broker::acl::Operation;
use rivulet_broker::{BrokerError, Create, Topic};
use uuid::Uuid;

use super::codes::broker_error_code;
use super::operations;
use super::{str_bytes, ClientInfo, Handler};
use crate::errors as ec;

impl Handler {
    pub(super) fn metadata(&self, v: i16, r: MetadataRequest, client: &ClientInfo) -> MetadataResponse {
        let allow_create = if v >= 4 { r.allow_auto_topic_creation } else { true };
        let all = match &r.topics {
            None => true,
            Some(list) => v == 0 && list.is_empty(),
        };
        let mut topics = Vec::new();
        if all {
            // Only the topics the client may describe are listed.
            for t in self
                .broker
                .topics()
                .into_iter()
                .filter(|t| self.sees_topic(client, t.name()))
            {
                topics.push(self.metadata_topic(v, Ok(t), None));
            }
        } else {
            for requested in r.topics.unwrap_or_default() {
                topics.push(self.metadata_requested(v, requested, allow_create, client));
            }
        }
        if v >= 8 && r.include_topic_authorized_operations {
            for t in topics.iter_mut().filter(|t| t.error_code == ec::NONE) {
                let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                t.topic_authorized_operations = self.topic_operations(client, &name);
            }
        }
        let mut resp = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(self.config.node_id))
                .with_host(str_bytes(self.advertised(client).0))
                .with_port(i32::from(self.advertised(client).1))])
            .with_topics(topics);
        if v >= 1 {
            resp.controller_id = BrokerId(self.config.node_id);
        }
        if v >= 2 {
            resp.cluster_id = Some(str_bytes(self.config.cluster_id.clone()));
        }
        if (8..=10).contains(&v) {
            resp.cluster_authorized_operations =
                operations::reported(r.include_cluster_authorized_operations, || {
                    self.cluster_operations(client)
                });
        }
        resp
    }

    /// One topic asked for by name or id; a missing topic is created when allowed and the
    /// client may create it.
    fn metadata_requested(
        &self,
        v: i16,
        requested: MetadataRequestTopic,
        allow_create: bool,
        client: &ClientInfo,
    ) -> MetadataResponseTopic {
        let Some(name) = requested.name else {
            let found = self
                .broker
                .topic_by_id(requested.topic_id.as_u128())
                .filter(|t| self.may_topic(client, Operation::Describe, t.name()));
            let mut t = match found {
                Some(t) => self.metadata_topic(v, Ok(t), None),
                None => MetadataResponseTopic::default()
                    .with_error_code(ec::UNKNOWN_TOPIC_ID)
                    .with_name(None),
            };
            if v >= 10 {
                t.topic_id = requested.topic_id;
            }
            return t;
        };
        if !self.may_topic(client, Operation::Describe, &name.0) {
            return MetadataResponseTopic::default()
                .with_error_code(ec::TOPIC_AUTHORIZATION_FAILED)
                .with_name(Some(name));
        }
        let create =
            if allow_create && self.broker.topic(&name.0).is_none() && self.may_create_topic(client, &name.0)
            {
                Create::IfAllowed
            } else {
                Create::Never
            };
        let result = self.broker.topic_for(&name.0, create);
        self.metadata_topic(v, result, Some(name))
    }

    fn metadata_topic(
        &self,
        v: i16,
        topic: Result<Arc<Topic>, BrokerError>,
        requested: Option<TopicName>,
    ) -> MetadataResponseTopic {
        match topic {
            Ok(t) => {
                let node = BrokerId(self.config.node_id);
                let partitions = (0..t.partition_count() as i32)
                    .map(|p| {
                        let mut part = MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_id(node)
                            .with_replica_nodes(vec![node])
                            .with_isr_nodes(vec![node]);
                        if v >= 7 {
                            part.leader_epoch = 0;
                        }
                        part
                    })
                    .collect();
                let mut out = MetadataResponseTopic::default()
                    .with_name(Some(TopicName(str_bytes(t.name()))))
                    .with_partitions(partitions);
                if v >= 10 {
                    out.topic_id = Uuid::from_u128(t.id());
                }
                out
            }
            Err(e) => {
                tracing::debug!(error = %e, "Metadata for a missing topic");
                MetadataResponseTopic::default()
                    .with_error_code(broker_error_code(&e))
                    .with_name(requested)
            }
        }
    }

    pub(super) fn find_coordinator(
        &self,
        v: i16,
        r: FindCoordinatorRequest,
        client: &ClientInfo,
    ) -> FindCoordinatorResponse {
        let mut resp = FindCoordinatorResponse::default()
            .with_node_id(BrokerId(self.config.node_id))
            .with_host(str_bytes(self.advertised(client).0))
            .with_port(i32::from(self.advertised(client).1));
        // 0: a consumer group, 1: a transactional id; this node coordinates both.
        if r.key_type != 0 && r.key_type != 1 {
            resp = resp
                .with_error_code(ec::COORDINATOR_NOT_AVAILABLE)
                .with_node_id(BrokerId(-1))
                .with_host(str_bytes(""))
                .with_port(-1);
            if v >= 1 {
                resp.error_message = Some(str_bytes("unknown coordinator key type"));
            }
            return resp;
        }
        let refused = match r.key_type {
            0 if !self.may_group(client, Operation::Describe, &r.key) => ec::GROUP_AUTHORIZATION_FAILED,
            1 if !self.may_txn(client, Operation::Describe, &r.key) => {
                ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            }
            _ => ec::NONE,
        };
        if refused != ec::NONE {
            resp = resp
                .with_error_code(refused)
                .with_node_id(BrokerId(-1))
                .with_host(str_bytes(""))
                .with_port(-1);
        }
        resp
    }
}
