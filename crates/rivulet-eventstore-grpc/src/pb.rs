//! Messages and service traits generated from `proto/` at build time.
#![allow(missing_docs, clippy::all)]

/// The KurrentDB client API's packages.
pub mod event_store {
    /// Shared messages.
    pub mod client {
        tonic::include_proto!("event_store.client");

        /// Streams: read, append, delete.
        pub mod streams {
            tonic::include_proto!("event_store.client.streams");
        }
        /// Which methods the server serves.
        pub mod server_features {
            tonic::include_proto!("event_store.client.server_features");
        }
        /// Cluster members.
        pub mod gossip {
            tonic::include_proto!("event_store.client.gossip");
        }
        /// Server-side consumer groups (not served yet: calls answer UNIMPLEMENTED).
        pub mod persistent_subscriptions {
            tonic::include_proto!("event_store.client.persistent_subscriptions");
        }
    }
}

/// `google.rpc.Status`, as BatchAppend errors carry it.
pub mod google {
    /// RPC status.
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}
