//! Kafka's consumer group protocol (KIP-848): ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe. The broker core assigns and reconciles; this file translates
//! topic ids to names and back.

use kafka_protocol::messages::consumer_group_describe_response::{self as describe, DescribedGroup};
use kafka_protocol::messages::consumer_group_heartbeat_response::{self as heartbeat};
use kafka_protocol::messages::*;
use rivulet_broker::acl::Operation;
use rivulet_broker::groups::assignor::Assignment;
use rivulet_broker::groups::ConsumerHeartbeat;
use uuid::Uuid;

use super::codes::group_error_code;
use super::operations;
use super::{str_bytes, ClientInfo, Handler};
use crate::errors as ec;

impl Handler {
    pub(super) fn consumer_group_heartbeat(
        &self,
        r: ConsumerGroupHeartbeatRequest,
        client_id: String,
        client: &ClientInfo,
    ) -> ConsumerGroupHeartbeatResponse {
        let owned = r.topic_partitions.map(|tps| {
            let mut a = Assignment::new();
            for tp in tps {
                if let Some(t) = self.broker.topic_by_id(tp.topic_id.as_u128()) {
                    a.entry(t.name().to_string()).or_default().extend(tp.partitions);
                }
            }
            a
        });
        let req = ConsumerHeartbeat {
            group_id: r.group_id.0.to_string(),
            member_id: r.member_id.to_string(),
            member_epoch: r.member_epoch,
            instance_id: r.instance_id.map(|s| s.to_string()),
            rebalance_timeout_ms: r.rebalance_timeout_ms,
            subscribed_topics: r
                .subscribed_topic_names
                .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
            subscribed_regex: r.subscribed_topic_regex.map(|s| s.to_string()),
            owned,
            client_id,
            client_host: client.host.clone(),
        };
        let outcome = self.broker.consumer_heartbeat(&req);
        let mut resp = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(outcome.member_id)))
            .with_member_epoch(outcome.member_epoch)
            .with_heartbeat_interval_ms(outcome.heartbeat_interval_ms);
        if let Some(e) = outcome.error {
            return resp
                .with_error_code(group_error_code(e))
                .with_error_message(Some(str_bytes(e.to_string())));
        }
        resp.assignment = outcome.assignment.map(|a| {
            heartbeat::Assignment::default().with_topic_partitions(
                self.with_ids(&a)
                    .into_iter()
                    .map(|(id, _, ps)| {
                        heartbeat::TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(ps)
                    })
                    .collect(),
            )
        });
        resp
    }

    /// `(topic id, name, partitions)` of each topic of an assignment that still exists.
    fn with_ids(&self, a: &Assignment) -> Vec<(Uuid, String, Vec<i32>)> {
        a.iter()
            .filter_map(|(name, ps)| {
                let t = self.broker.topic(name)?;
                Some((
                    Uuid::from_u128(t.id()),
                    name.clone(),
                    ps.iter().copied().collect(),
                ))
            })
            .collect()
    }

    pub(super) fn consumer_group_describe(
        &self,
        v: i16,
        r: ConsumerGroupDescribeRequest,
        client: &ClientInfo,
    ) -> ConsumerGroupDescribeResponse {
        let groups = r
            .group_ids
            .into_iter()
            .map(|id| {
                let out = DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_authorized_operations(operations::reported(
                        r.include_authorized_operations,
                        || self.group_operations(client, &id.0),
                    ));
                if !self.may_group(client, Operation::Describe, &id.0) {
                    return out.with_error_code(ec::GROUP_AUTHORIZATION_FAILED);
                }
                let Some(g) = self.broker.groups().describe_consumer_group(&id.0) else {
                    return out
                        .with_error_code(ec::GROUP_ID_NOT_FOUND)
                        .with_error_message(Some(str_bytes(format!(
                            "no consumer group {:?}",
                            id.0.as_str()
                        ))));
                };
                let members = g
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = describe::Member::default()
                            .with_member_id(str_bytes(m.member_id))
                            .with_instance_id(m.instance_id.map(str_bytes))
                            .with_member_epoch(m.member_epoch)
                            .with_client_id(str_bytes(m.client_id))
                            .with_client_host(str_bytes(m.client_host))
                            .with_subscribed_topic_names(
                                m.subscribed_topics
                                    .into_iter()
                                    .map(|t| TopicName(str_bytes(t)))
                                    .collect(),
                            )
                            .with_assignment(self.describe_assignment(&m.assignment))
                            .with_target_assignment(self.describe_assignment(&m.target_assignment));
                        if v >= 1 {
                            member.member_type = 1;
                        }
                        member
                    })
                    .collect();
                out.with_group_state(str_bytes(g.state.as_str()))
                    .with_group_epoch(g.epoch)
                    .with_assignment_epoch(g.assignment_epoch)
                    .with_assignor_name(str_bytes("uniform"))
                    .with_members(members)
            })
            .collect();
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    }

    fn describe_assignment(&self, a: &Assignment) -> describe::Assignment {
        describe::Assignment::default().with_topic_partitions(
            self.with_ids(a)
                .into_iter()
                .map(|(id, name, ps)| {
                    describe::TopicPartitions::default()
                        .with_topic_id(id)
                        .with_topic_name(TopicName(str_bytes(name)))
                        .with_partitions(ps)
                })
                .collect(),
        )
    }
}
