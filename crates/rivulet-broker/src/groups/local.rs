//! Groups whose partitions the broker assigns itself: members in this process that do not
//! speak Kafka's group protocol (Server-Sent Events streams of the HTTP gateway, services
//! on the embedded SDK).
//!
//! They share the coordinator's namespace with Kafka groups (a group is one kind or the
//! other), are listed and described with them, and commit through the same offset store.
//! Assignment: the partitions of every subscribed topic, sorted, go round-robin to the
//! members subscribed to each topic, in joining order. A member joining or leaving bumps
//! the group's generation; each member then recomputes its share. A partition changes
//! hands only once its previous holder released it ([`LocalGroup::claim`]), so two members
//! never consume one partition at the same time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use tokio::sync::watch;

use super::protocol;
use super::types::{GroupDescription, GroupState, MemberDescription};

/// Protocol name shown for broker-assigned groups.
pub const LOCAL_PROTOCOL: &str = "rivulet";

/// Who a local member is, as descriptions show it.
#[derive(Debug, Clone)]
pub struct LocalClient {
    /// Client id, e.g. `sse` or the service name.
    pub client_id: String,
    /// Where the member's consumer is (the HTTP client's address, or `embedded`).
    pub client_host: String,
}

#[derive(Debug)]
struct LocalMemberState {
    client: LocalClient,
    topics: BTreeSet<String>,
}

/// A broker-assigned group.
#[derive(Debug)]
pub(super) struct LocalGroup {
    members: BTreeMap<u64, LocalMemberState>,
    generation: watch::Sender<u64>,
    /// Which member holds each partition now.
    owners: HashMap<(String, i32), u64>,
}

impl LocalGroup {
    pub(super) fn new() -> LocalGroup {
        LocalGroup {
            members: BTreeMap::new(),
            generation: watch::channel(0).0,
            owners: HashMap::new(),
        }
    }

    /// The topics its members read.
    pub(super) fn topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.topics.iter().cloned())
            .collect()
    }

    pub(super) fn len(&self) -> usize {
        self.members.len()
    }

    pub(super) fn join(&mut self, id: u64, topics: &[String], client: LocalClient) -> watch::Receiver<u64> {
        let state = LocalMemberState {
            client,
            topics: topics.iter().cloned().collect(),
        };
        self.members.insert(id, state);
        self.generation.send_modify(|g| *g += 1);
        self.generation.subscribe()
    }

    /// Removes a member and frees its partitions; true when the group is now empty.
    pub(super) fn leave(&mut self, id: u64) -> bool {
        if self.members.remove(&id).is_some() {
            self.owners.retain(|_, owner| *owner != id);
            self.generation.send_modify(|g| *g += 1);
        }
        self.members.is_empty()
    }

    /// Takes a partition for `id` unless another member holds it.
    pub(super) fn claim(&mut self, id: u64, tp: (String, i32)) -> bool {
        *self.owners.entry(tp).or_insert(id) == id
    }

    pub(super) fn release(&mut self, id: u64, tp: &(String, i32)) {
        if self.owners.get(tp) == Some(&id) {
            self.owners.remove(tp);
        }
    }

    /// Every member's share of the partitions; `partitions` gives a topic's partition
    /// count (0 for a topic that does not exist).
    pub(super) fn assignments(
        &self,
        partitions: &dyn Fn(&str) -> usize,
    ) -> BTreeMap<u64, Vec<(String, i32)>> {
        let topics: BTreeSet<&String> = self.members.values().flat_map(|m| m.topics.iter()).collect();
        let mut out: BTreeMap<u64, Vec<(String, i32)>> =
            self.members.keys().map(|id| (*id, Vec::new())).collect();
        let mut index = 0usize;
        for topic in topics {
            let subscribers: Vec<u64> = self
                .members
                .iter()
                .filter(|(_, m)| m.topics.contains(topic))
                .map(|(id, _)| *id)
                .collect();
            for p in 0..partitions(topic) {
                let owner = subscribers[index % subscribers.len()];
                index += 1;
                if let Some(share) = out.get_mut(&owner) {
                    share.push((topic.clone(), p as i32));
                }
            }
        }
        out
    }

    pub(super) fn describe(&self, partitions: &dyn Fn(&str) -> usize) -> GroupDescription {
        let assignments = self.assignments(partitions);
        let members = self
            .members
            .iter()
            .map(|(id, m)| {
                let topics: Vec<String> = m.topics.iter().cloned().collect();
                let share = assignments.get(id).map(Vec::as_slice).unwrap_or_default();
                MemberDescription {
                    member_id: format!("{}-{id}", m.client.client_id),
                    group_instance_id: None,
                    client_id: m.client.client_id.clone(),
                    client_host: m.client.client_host.clone(),
                    metadata: Bytes::from(protocol::subscription(&topics)),
                    assignment: Bytes::from(protocol::assignment(share)),
                }
            })
            .collect();
        GroupDescription {
            state: if self.members.is_empty() {
                GroupState::Empty
            } else {
                GroupState::Stable
            },
            protocol_type: "consumer".to_string(),
            protocol_name: LOCAL_PROTOCOL.to_string(),
            members,
        }
    }
}
