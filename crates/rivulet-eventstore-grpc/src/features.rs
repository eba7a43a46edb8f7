//! `ServerFeatures` (which methods this server serves, which clients choose their calls
//! by) and `Gossip` (a single node: itself, the leader).

use tonic::{Request, Response, Status};

use crate::pb::event_store::client::gossip::gossip_server::Gossip;
use crate::pb::event_store::client::gossip::{member_info, ClusterInfo, EndPoint, MemberInfo};
use crate::pb::event_store::client::server_features::server_features_server::ServerFeatures;
use crate::pb::event_store::client::server_features::{SupportedMethod, SupportedMethods};
use crate::pb::event_store::client::Empty;

/// The KurrentDB API level Rivulet speaks, in the semantic-version form clients parse.
pub const API_VERSION: &str = "24.10.0";

const STREAMS: &str = "event_store.client.streams.streams";
const PERSISTENT: &str = "event_store.client.persistent_subscriptions.persistentsubscriptions";

/// The methods served, lower case as the clients compare them, with their features.
fn methods() -> Vec<SupportedMethod> {
    let m = |service: &str, method: &str, features: &[&str]| SupportedMethod {
        method_name: method.to_string(),
        service_name: service.to_string(),
        features: features.iter().map(ToString::to_string).collect(),
    };
    vec![
        m(STREAMS, "read", &["position", "events"]),
        m(STREAMS, "append", &[]),
        m(STREAMS, "batchappend", &["deadline_duration"]),
        m(STREAMS, "delete", &[]),
        m(STREAMS, "tombstone", &[]),
        m(PERSISTENT, "create", &["stream", "all"]),
        m(PERSISTENT, "update", &["stream", "all"]),
        m(PERSISTENT, "delete", &["stream", "all"]),
        m(PERSISTENT, "read", &["stream", "all"]),
        m(PERSISTENT, "getinfo", &["stream", "all"]),
        m(PERSISTENT, "replayparked", &["stream", "all"]),
        m(PERSISTENT, "list", &["stream", "all"]),
        m(PERSISTENT, "restartsubsystem", &[]),
        m(
            "event_store.client.server_features.serverfeatures",
            "getsupportedmethods",
            &[],
        ),
        m("event_store.client.gossip.gossip", "read", &[]),
    ]
}

/// Both services.
#[derive(Debug, Clone)]
pub(crate) struct Features {
    /// This node's id in gossip.
    pub(crate) instance: u128,
    /// The address clients reach the gRPC listener at.
    pub(crate) host: String,
    pub(crate) port: u32,
}

#[tonic::async_trait]
impl ServerFeatures for Features {
    async fn get_supported_methods(&self, _: Request<Empty>) -> Result<Response<SupportedMethods>, Status> {
        Ok(Response::new(SupportedMethods {
            methods: methods(),
            event_store_server_version: API_VERSION.to_string(),
        }))
    }
}

#[tonic::async_trait]
impl Gossip for Features {
    async fn read(&self, _: Request<Empty>) -> Result<Response<ClusterInfo>, Status> {
        let me = MemberInfo {
            instance_id: Some(crate::convert::uuid_to(self.instance, true)),
            time_stamp: 0,
            state: member_info::VNodeState::Leader as i32,
            is_alive: true,
            http_end_point: Some(EndPoint {
                address: self.host.clone(),
                port: self.port,
            }),
        };
        Ok(Response::new(ClusterInfo { members: vec![me] }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_and_the_version_is_semver() {
        for m in methods() {
            assert_eq!(m.method_name, m.method_name.to_lowercase());
            assert_eq!(m.service_name, m.service_name.to_lowercase());
        }
        let parts: Vec<u32> = API_VERSION
            .split('.')
            .map(|p| p.parse().expect("number"))
            .collect();
        assert_eq!(parts.len(), 3);
        assert!(parts >= vec![21, 10, 1], "clients need at least 21.10.1");
    }
}
