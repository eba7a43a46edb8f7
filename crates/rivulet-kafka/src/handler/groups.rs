//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), committed
//! offsets (OffsetCommit, OffsetFetch) and group admin (DescribeGroups, ListGroups,
//! DeleteGroups). The coordinator lives in the broker; this translates.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::*;
use rivulet_broker::acl::{Operation, ResourceType, CLUSTER_NAME};
use rivulet_broker::groups::JoinRequest;
use rivulet_broker::CommittedOffset;

use super::codes::{code_of, group_error_code};
use super::operations;
use super::{str_bytes, ClientInfo, Handler};
use crate::errors as ec;

impl Handler {
    pub(super) fn heartbeat(&self, r: HeartbeatRequest) -> HeartbeatResponse {
        let groups = self.broker.groups();
        let instance = r.group_instance_id.as_deref();
        let error = groups
            .check_static(&r.group_id.0, &r.member_id, instance)
            .or_else(|| groups.heartbeat(&r.group_id.0, r.generation_id, &r.member_id));
        HeartbeatResponse::default().with_error_code(code_of(error))
    }

    pub(super) async fn join_group(
        &self,
        v: i16,
        r: JoinGroupRequest,
        client_id: String,
        client: &ClientInfo,
    ) -> JoinGroupResponse {
        // A known member id claiming a static instance that a newer member holds is fenced;
        // an empty member id with the instance is its restart, which replaces the holder.
        let instance = r.group_instance_id.as_deref();
        if !r.member_id.is_empty() {
            if let Some(e) = self
                .broker
                .groups()
                .check_static(&r.group_id.0, &r.member_id, instance)
            {
                return JoinGroupResponse::default()
                    .with_error_code(code_of(Some(e)))
                    .with_generation_id(-1)
                    .with_member_id(r.member_id);
            }
        }
        let outcome = self
            .broker
            .groups()
            .join(JoinRequest {
                group_id: r.group_id.0.to_string(),
                member_id: r.member_id.to_string(),
                group_instance_id: r.group_instance_id.map(|s| s.to_string()),
                client_id,
                client_host: client.host.clone(),
                session_timeout_ms: r.session_timeout_ms,
                rebalance_timeout_ms: if v >= 1 {
                    r.rebalance_timeout_ms
                } else {
                    r.session_timeout_ms
                },
                protocol_type: r.protocol_type.to_string(),
                protocols: r
                    .protocols
                    .into_iter()
                    .map(|p| (p.name.to_string(), p.metadata))
                    .collect(),
                require_known_member_id: v >= 4,
            })
            .await;
        let members = outcome
            .members
            .into_iter()
            .map(|m| {
                let mut jm = JoinGroupResponseMember::default()
                    .with_member_id(str_bytes(m.member_id))
                    .with_metadata(m.metadata);
                if v >= 5 {
                    jm.group_instance_id = m.group_instance_id.map(str_bytes);
                }
                jm
            })
            .collect();
        JoinGroupResponse::default()
            .with_error_code(code_of(outcome.error))
            .with_generation_id(outcome.generation_id)
            .with_protocol_name(Some(str_bytes(outcome.protocol_name.unwrap_or_default())))
            .with_leader(str_bytes(outcome.leader))
            .with_member_id(str_bytes(outcome.member_id))
            .with_members(members)
    }

    pub(super) async fn sync_group(&self, r: SyncGroupRequest) -> SyncGroupResponse {
        let instance = r.group_instance_id.as_deref();
        if let Some(e) = self
            .broker
            .groups()
            .check_static(&r.group_id.0, &r.member_id, instance)
        {
            return SyncGroupResponse::default().with_error_code(code_of(Some(e)));
        }
        let outcome = self
            .broker
            .groups()
            .sync(
                &r.group_id.0,
                r.generation_id,
                &r.member_id,
                r.assignments
                    .into_iter()
                    .map(|a| (a.member_id.to_string(), a.assignment))
                    .collect(),
            )
            .await;
        SyncGroupResponse::default()
            .with_error_code(code_of(outcome.error))
            .with_assignment(outcome.assignment)
    }

    pub(super) fn leave_group(&self, v: i16, r: LeaveGroupRequest) -> LeaveGroupResponse {
        if v >= 3 {
            let groups = self.broker.groups();
            let fenced: Vec<Option<rivulet_broker::GroupError>> = r
                .members
                .iter()
                .map(|m| groups.check_static(&r.group_id.0, &m.member_id, m.group_instance_id.as_deref()))
                .collect();
            let ids: Vec<String> = r
                .members
                .iter()
                .zip(&fenced)
                .filter(|(_, f)| f.is_none())
                .map(|(m, _)| m.member_id.to_string())
                .collect();
            let mut left = groups.leave(&r.group_id.0, &ids).into_iter();
            let results: Vec<Option<rivulet_broker::GroupError>> = fenced
                .into_iter()
                .map(|f| f.or_else(|| left.next().flatten()))
                .collect();
            let members = r
                .members
                .into_iter()
                .zip(results)
                .map(|(m, e)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(code_of(e))
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        } else {
            let results = self
                .broker
                .groups()
                .leave(&r.group_id.0, &[r.member_id.to_string()]);
            LeaveGroupResponse::default().with_error_code(code_of(results.into_iter().next().flatten()))
        }
    }

    pub(super) async fn offset_commit(
        &self,
        v: i16,
        r: OffsetCommitRequest,
        client: &ClientInfo,
    ) -> OffsetCommitResponse {
        let group = r.group_id.0.to_string();
        let group_denied = !self.may_group(client, Operation::Read, &group);
        let groups = self.broker.groups();
        let group_error = groups
            .check_static(&group, &r.member_id, r.group_instance_id.as_deref())
            .or_else(|| groups.validate_commit(&group, r.generation_id_or_member_epoch, &r.member_id));
        let now = rivulet_broker::offsets::now_ms();
        let mut entries = Vec::new();
        let mut topics: Vec<OffsetCommitResponseTopic> = Vec::with_capacity(r.topics.len());
        for t in r.topics {
            let topic = self.broker.topic(&t.name.0);
            let topic_denied = !group_denied && !self.may_topic(client, Operation::Read, &t.name.0);
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let code = if group_denied {
                    ec::GROUP_AUTHORIZATION_FAILED
                } else if topic_denied {
                    ec::TOPIC_AUTHORIZATION_FAILED
                } else if let Some(e) = group_error {
                    group_error_code(e)
                } else if topic
                    .as_ref()
                    .and_then(|t| t.partition_info(p.partition_index))
                    .is_none()
                {
                    ec::UNKNOWN_TOPIC_OR_PARTITION
                } else if p
                    .committed_metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > rivulet_broker::offsets::OFFSET_METADATA_BYTES_MAX)
                {
                    ec::OFFSET_METADATA_TOO_LARGE
                } else {
                    entries.push((
                        t.name.0.to_string(),
                        p.partition_index,
                        CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                            metadata: p.committed_metadata.map(|m| m.to_string()),
                            commit_timestamp_ms: now,
                        },
                    ));
                    ec::NONE
                };
                partitions.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code),
                );
            }
            topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        if !entries.is_empty() {
            if let Err(e) = self.broker.groups().commit(&group, entries).await {
                tracing::error!(group = %group, error = %e, "Committing offsets failed");
                for t in topics.iter_mut() {
                    for p in t.partitions.iter_mut() {
                        if p.error_code == ec::NONE {
                            p.error_code = ec::COORDINATOR_NOT_AVAILABLE;
                        }
                    }
                }
            }
        }
        OffsetCommitResponse::default().with_topics(topics)
    }

    pub(super) fn offset_fetch(
        &self,
        v: i16,
        r: OffsetFetchRequest,
        client: &ClientInfo,
    ) -> OffsetFetchResponse {
        let group = r.group_id.0.to_string();
        if !self.may_group(client, Operation::Describe, &group) {
            return offset_fetch_refused(v, r.topics.unwrap_or_default());
        }
        let store = self.broker.groups().offsets();
        let requested: Vec<(TopicName, Vec<i32>)> = match r.topics {
            Some(list) => list.into_iter().map(|t| (t.name, t.partition_indexes)).collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                // Only the topics the client may describe.
                for (t, p, _) in store.group_offsets(&group) {
                    if self.sees_topic(client, &t) {
                        by_topic.entry(t).or_default().push(p);
                    }
                }
                by_topic
                    .into_iter()
                    .map(|(t, ps)| (TopicName(str_bytes(t)), ps))
                    .collect()
            }
        };
        let topics = requested
            .into_iter()
            .map(|(name, parts)| {
                let denied = !self.may_topic(client, Operation::Describe, &name.0);
                let partitions = parts
                    .into_iter()
                    .map(|p| {
                        if denied {
                            return OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_error_code(ec::TOPIC_AUTHORIZATION_FAILED);
                        }
                        let committed = store.fetch(&group, &name.0, p);
                        let mut resp = OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(committed.as_ref().map_or(-1, |c| c.offset))
                            .with_metadata(Some(str_bytes(
                                committed
                                    .as_ref()
                                    .and_then(|c| c.metadata.clone())
                                    .unwrap_or_default(),
                            )));
                        if v >= 5 {
                            resp.committed_leader_epoch = committed.as_ref().map_or(-1, |c| c.leader_epoch);
                        }
                        // KIP-447: a transaction about to commit this offset makes it unstable.
                        if r.require_stable && self.broker.txns().has_pending_offset(&group, &name.0, p) {
                            resp.error_code = ec::UNSTABLE_OFFSET_COMMIT;
                        }
                        resp
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        OffsetFetchResponse::default().with_topics(topics)
    }

    pub(super) fn describe_groups(
        &self,
        v: i16,
        r: DescribeGroupsRequest,
        client: &ClientInfo,
    ) -> DescribeGroupsResponse {
        let groups = r
            .groups
            .into_iter()
            .map(|id| {
                let mut out = DescribedGroup::default().with_group_id(id.clone());
                if !self.may_group(client, Operation::Describe, &id.0) {
                    return out.with_error_code(ec::GROUP_AUTHORIZATION_FAILED);
                }
                match self.broker.describe_group(&id.0) {
                    Some(d) => {
                        out.group_state = str_bytes(d.state.as_str());
                        out.protocol_type = str_bytes(d.protocol_type);
                        out.protocol_data = str_bytes(d.protocol_name);
                        out.members = d
                            .members
                            .into_iter()
                            .map(|m| {
                                let mut dm = DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment);
                                if v >= 4 {
                                    dm.group_instance_id = m.group_instance_id.map(str_bytes);
                                }
                                dm
                            })
                            .collect();
                    }
                    None => out.group_state = str_bytes("Dead"),
                }
                if v >= 3 {
                    out.authorized_operations = operations::reported(r.include_authorized_operations, || {
                        self.group_operations(client, &id.0)
                    });
                }
                out
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }

    pub(super) fn list_groups(
        &self,
        v: i16,
        r: ListGroupsRequest,
        client: &ClientInfo,
    ) -> ListGroupsResponse {
        // Describe on the cluster lists every group; otherwise those the client may describe.
        let all = self.broker.authorized(
            client.who(),
            Operation::Describe,
            ResourceType::Cluster,
            CLUSTER_NAME,
        );
        let groups = self
            .broker
            .groups()
            .list()
            .into_iter()
            .filter(|(id, _, _)| {
                all || self
                    .broker
                    .authorized(client.who(), Operation::Describe, ResourceType::Group, id)
            })
            .filter(|(_, _, state)| {
                r.states_filter.is_empty()
                    || r.states_filter
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(state.as_str()))
            })
            .map(|(id, protocol_type, state)| {
                let mut g = ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(id)))
                    .with_protocol_type(str_bytes(protocol_type));
                if v >= 4 {
                    g.group_state = str_bytes(state.as_str());
                }
                g
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    pub(super) async fn delete_groups(
        &self,
        r: DeleteGroupsRequest,
        client: &ClientInfo,
    ) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(r.groups_names.len());
        for id in r.groups_names {
            let code = if self.may_group(client, Operation::Delete, &id.0) {
                code_of(self.broker.groups().delete(&id.0).await)
            } else {
                ec::GROUP_AUTHORIZATION_FAILED
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(code),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }
}

/// An OffsetFetch of a group the client may not describe: the error at the top (v2 and
/// later) or on every partition asked for (v1, which has no top-level error).
fn offset_fetch_refused(v: i16, topics: Vec<OffsetFetchRequestTopic>) -> OffsetFetchResponse {
    if v >= 2 {
        return OffsetFetchResponse::default().with_error_code(ec::GROUP_AUTHORIZATION_FAILED);
    }
    let topics = topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .into_iter()
                .map(|p| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(-1)
                        .with_error_code(ec::GROUP_AUTHORIZATION_FAILED)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
