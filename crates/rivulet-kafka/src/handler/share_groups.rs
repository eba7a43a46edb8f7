//! Share groups (KIP-932): ShareGroupHeartbeat and ShareGroupDescribe. The broker core
//! keeps membership and record states; this file translates topic ids to names and back.

use kafka_protocol::messages::share_group_describe_response::{self as describe, DescribedGroup};
use kafka_protocol::messages::share_group_heartbeat_response as heartbeat;
use kafka_protocol::messages::*;
use rivulet_broker::acl::Operation;
use rivulet_broker::groups::ShareHeartbeat;
use uuid::Uuid;

use super::codes::group_error_code;
use super::operations;
use super::{str_bytes, ClientInfo, Handler};
use crate::errors as ec;

impl Handler {
    pub(super) fn share_group_heartbeat(
        &self,
        r: ShareGroupHeartbeatRequest,
        client_id: String,
        client: &ClientInfo,
    ) -> ShareGroupHeartbeatResponse {
        let req = ShareHeartbeat {
            group_id: r.group_id.0.to_string(),
            member_id: r.member_id.to_string(),
            member_epoch: r.member_epoch,
            subscribed_topics: r
                .subscribed_topic_names
                .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
            client_id,
            client_host: client.host.clone(),
        };
        let outcome = self.broker.share_heartbeat(&req);
        if req.member_epoch == -1 {
            // The group released what the member held; its fetch session goes too.
            self.share_sessions.forget(&req.group_id, &req.member_id);
        }
        let resp = ShareGroupHeartbeatResponse::default()
            .with_member_epoch(outcome.member_epoch)
            .with_heartbeat_interval_ms(outcome.heartbeat_interval_ms);
        if let Some(e) = outcome.error {
            return resp
                .with_error_code(group_error_code(e))
                .with_error_message(Some(str_bytes(e.to_string())));
        }
        let member_id = (outcome.member_epoch >= 0).then(|| str_bytes(outcome.member_id));
        let assignment = outcome.assignment.map(|a| {
            let topic_partitions = a
                .iter()
                .filter_map(|(name, ps)| {
                    let t = self.broker.topic(name)?;
                    Some(
                        heartbeat::TopicPartitions::default()
                            .with_topic_id(Uuid::from_u128(t.id()))
                            .with_partitions(ps.iter().copied().collect()),
                    )
                })
                .collect();
            heartbeat::Assignment::default().with_topic_partitions(topic_partitions)
        });
        resp.with_member_id(member_id).with_assignment(assignment)
    }

    pub(super) fn share_group_describe(
        &self,
        r: ShareGroupDescribeRequest,
        client: &ClientInfo,
    ) -> ShareGroupDescribeResponse {
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
                let Some(g) = self.broker.groups().describe_share_group(&id.0) else {
                    return out
                        .with_error_code(ec::GROUP_ID_NOT_FOUND)
                        .with_error_message(Some(str_bytes(format!("no share group {:?}", id.0.as_str()))));
                };
                let members = g
                    .members
                    .into_iter()
                    .map(|m| {
                        let topic_partitions = m
                            .assignment
                            .iter()
                            .filter_map(|(name, ps)| {
                                let t = self.broker.topic(name)?;
                                Some(
                                    describe::TopicPartitions::default()
                                        .with_topic_id(Uuid::from_u128(t.id()))
                                        .with_topic_name(TopicName(str_bytes(name.clone())))
                                        .with_partitions(ps.iter().copied().collect()),
                                )
                            })
                            .collect();
                        describe::Member::default()
                            .with_member_id(str_bytes(m.member_id))
                            .with_member_epoch(m.member_epoch)
                            .with_client_id(str_bytes(m.client_id))
                            .with_client_host(str_bytes(m.client_host))
                            .with_subscribed_topic_names(
                                m.subscribed_topics
                                    .into_iter()
                                    .map(|t| TopicName(str_bytes(t)))
                                    .collect(),
                            )
                            .with_assignment(
                                describe::Assignment::default().with_topic_partitions(topic_partitions),
                            )
                    })
                    .collect();
                out.with_group_state(str_bytes(g.state.as_str()))
                    .with_group_epoch(g.epoch)
                    .with_assignment_epoch(g.epoch)
                    .with_assignor_name(str_bytes("simple"))
                    .with_members(members)
            })
            .collect();
        ShareGroupDescribeResponse::default().with_groups(groups)
    }
}
