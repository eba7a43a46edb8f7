//! Rivulet's KurrentDB-compatible gRPC front end: applications written against KurrentDB
//! (formerly EventStoreDB) and its official clients append, read, subscribe and delete
//! through `kurrentdb://host:2113?tls=false` unchanged. Every call translates its messages
//! and calls the event store; this crate keeps no events or stream state of its own.
//!
//! Served: `Streams` (Read with catch-up subscriptions and `$all` filters, Append,
//! BatchAppend, Delete, Tombstone), `PersistentSubscriptions` (groups on a stream or
//! `$all`: create, update, delete, read with ack/nack, info, list, replay of parked
//! events), `ServerFeatures` and `Gossip`. Other services answer `UNIMPLEMENTED`.

mod access;
mod batch;
mod conn;
mod convert;
mod errors;
mod features;
pub mod pb;
mod persistent;
mod persistent_read;
mod read;
mod streams;
mod timed;

use std::net::SocketAddr;

use rivulet_broker::Broker;
use rivulet_eventstore::{EventStore, PersistentSubscriptions};

pub use features::API_VERSION;

/// Bytes of event data and metadata one append may carry.
pub const APPEND_BYTES_MAX: usize = 1 << 20;
/// Largest gRPC message accepted (an append's events travel in one message per event).
pub const MESSAGE_BYTES_MAX: usize = 16 << 20;

/// HTTP/2 flow-control window of one call, and of a whole connection.
const STREAM_WINDOW_BYTES: u32 = 1 << 20;
const CONNECTION_WINDOW_BYTES: u32 = 4 << 20;

/// Serves the gRPC API on `listener` (over TLS with `tls`, which should offer ALPN `h2`)
/// until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Broker,
    store: EventStore,
    groups: PersistentSubscriptions,
    tls: Option<rivulet_tls::Acceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(address = ?local, tls = tls.is_some(), "Listening for KurrentDB clients (gRPC)");
    let timed = timed::TimedLayer {
        broker: broker.clone(),
    };
    let access = access::Access::new(broker, store.topic().to_string());
    let streams = streams::StreamsService {
        store,
        access: access.clone(),
    };
    let persistent = persistent::PersistentService { groups, access };
    let features = features::Features {
        instance: convert::random_id(),
        host: local.map_or_else(|| "127.0.0.1".to_string(), |a| a.ip().to_string()),
        port: local.map_or(2113, |a| u32::from(a.port())),
    };
    use pb::event_store::client::{
        gossip::gossip_server::GossipServer,
        persistent_subscriptions::persistent_subscriptions_server::PersistentSubscriptionsServer,
        server_features::server_features_server::ServerFeaturesServer,
        streams::streams_server::StreamsServer,
    };
    // Small messages (one per event, one per append) go out at once (TCP_NODELAY), not after
    // the peer's delayed acknowledgement; reads of whole streams are not held back by a
    // 64 KiB window.
    let incoming = tokio_stream::wrappers::ReceiverStream::new(conn::accept(listener, tls));
    tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .layer(timed)
        .add_service(
            StreamsServer::new(streams)
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX),
        )
        .add_service(PersistentSubscriptionsServer::new(persistent))
        .add_service(ServerFeaturesServer::new(features.clone()))
        .add_service(GossipServer::new(features))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
