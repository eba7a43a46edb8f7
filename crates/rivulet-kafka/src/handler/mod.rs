//! Request handlers: translate decoded Kafka requests into broker calls and build responses.
//! One module per API area:
//!
//! - [`produce`]: Produce (appends in request order, answers after durability);
//! - [`fetch`]: Fetch (long poll on the broker's data watch) and ListOffsets;
//! - [`metadata`]: Metadata and FindCoordinator;
//! - [`groups`]: the group protocol, OffsetCommit/OffsetFetch and group admin;
//! - [`consumer_groups`]: the consumer group protocol (KIP-848);
//! - [`share_groups`], [`share_fetch`], [`share_sessions`]: share groups (KIP-932);
//! - [`admin`]: topics and configs;
//! - [`cluster`]: DescribeCluster, CreatePartitions, DeleteRecords, OffsetDelete;
//! - [`txn`]: producer ids and transactions;
//! - [`inspect`]: DescribeProducers, DescribeLogDirs and OffsetForLeaderEpoch;
//! - [`acls`]: CreateAcls, DescribeAcls and DeleteAcls;
//! - [`authz`]: the authorization checks every handler makes;
//! - [`operations`]: the authorized-operations bit sets;
//! - [`codes`]: broker errors as Kafka error codes.
//!
//! Responses only set fields that exist in the negotiated version (the codec refuses to
//! encode a non-default value in a version that lacks the field).

mod acls;
mod admin;
mod authz;
mod cluster;
pub mod codes;
mod consumer_groups;
mod fetch;
mod groups;
mod inspect;
mod metadata;
mod operations;
mod produce;
pub mod sessions;
mod share_fetch;
mod share_groups;
pub mod share_sessions;
mod txn;
mod users;

use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rivulet_broker::acl::Who;
use rivulet_broker::Broker;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::codec::Request;
use crate::versions;
pub use codes::{broker_error_code, group_error_code, log_error_code};
pub use produce::ProduceInFlight;

/// Settings the handlers need beyond the broker.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// This node's id.
    pub node_id: i32,
    /// Host clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: u16,
    /// Where clients of each further listener (index 1 on) are told to connect: the
    /// listener a client came through is the one it is sent back to.
    pub advertised_more: Vec<(String, u16)>,
    /// Cluster id reported in Metadata.
    pub cluster_id: String,
    /// Upper bound on a Fetch response's record bytes, whatever the client asks.
    pub fetch_bytes_max: usize,
    /// Upper bound on how long a Fetch waits for data, whatever the client asks.
    pub fetch_wait_ms_max: u64,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        HandlerConfig {
            node_id: 0,
            advertised_host: "localhost".to_string(),
            advertised_port: 9092,
            advertised_more: Vec::new(),
            cluster_id: "rivulet".to_string(),
            fetch_bytes_max: 50 << 20,
            fetch_wait_ms_max: 30_000,
        }
    }
}

/// A response and the memory reservation it holds until it is written.
#[derive(Debug)]
pub struct Response {
    /// The response body. A Fetch's partitions have `records: None` where `slices` holds
    /// them.
    pub body: ResponseKind,
    /// Fetch only: each partition's records in their segment file, in topic then partition
    /// order (see [`crate::frame::encode_fetch`]).
    pub slices: Vec<Option<rivulet_broker::FileSlice>>,
    /// Memory reserved for the body's record bytes; release after writing.
    pub reservation: Option<OwnedSemaphorePermit>,
}

/// Handles decoded requests against a [`Broker`].
#[derive(Debug, Clone)]
pub struct Handler {
    broker: Broker,
    config: Arc<HandlerConfig>,
    shutdown: watch::Receiver<bool>,
    fetch_memory: Arc<Semaphore>,
    sessions: Arc<sessions::FetchSessions>,
    share_sessions: Arc<share_sessions::ShareSessions>,
}

/// Who sent a request.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer address.
    pub host: String,
    /// The connection, unique for the process's life (share sessions end with it).
    pub connection: u64,
    /// The user the connection logged in as (SASL), if it did.
    pub user: Option<Arc<str>>,
    /// The listener the connection came through (an index into the listen addresses).
    pub listener: usize,
}

impl ClientInfo {
    /// The client as the broker's authorization sees it.
    pub fn who(&self) -> Who<'_> {
        Who {
            protocol: "kafka",
            user: self.user.as_deref(),
            host: &self.host,
        }
    }
}

/// What [`Handler::start`] returns.
#[derive(Debug)]
pub enum Started {
    /// The request is complete; `None` means no response is sent.
    Done(Option<Box<Response>>),
    /// A Produce whose records are appended and whose response waits for durability.
    Produce(ProduceInFlight),
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

impl Handler {
    /// A handler; `shutdown` flips to true when the server stops (long polls return early).
    /// `fetch_memory_bytes_max` bounds the Fetch response bytes held in memory across all
    /// connections (read from the log until written to the socket); it is raised to at least
    /// `config.fetch_bytes_max`.
    pub fn new(
        broker: Broker,
        config: HandlerConfig,
        shutdown: watch::Receiver<bool>,
        fetch_memory_bytes_max: usize,
    ) -> Handler {
        let fetch_memory = Arc::new(Semaphore::new(fetch_memory_bytes_max.max(config.fetch_bytes_max)));
        Handler {
            broker,
            config: Arc::new(config),
            shutdown,
            fetch_memory,
            sessions: Arc::new(sessions::FetchSessions::default()),
            share_sessions: Arc::new(share_sessions::ShareSessions::default()),
        }
    }

    /// Where the client is told to connect: the advertised address of the listener it came
    /// through.
    fn advertised(&self, client: &ClientInfo) -> (String, u16) {
        let more = client
            .listener
            .checked_sub(1)
            .and_then(|i| self.config.advertised_more.get(i));
        match more {
            Some((host, port)) => (host.clone(), *port),
            None => (self.config.advertised_host.clone(), self.config.advertised_port),
        }
    }

    /// The broker this handler serves.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// A connection closed: the share fetch sessions it used end, and what their members
    /// held is offered to the others at once.
    pub fn connection_closed(&self, connection: u64) {
        for ((group, member), partitions) in self.share_sessions.close_connection(connection) {
            self.release_share(&group, &member, &partitions);
        }
    }

    /// The process metrics (the broker's).
    pub fn metrics(&self) -> &Arc<rivulet_metrics::Metrics> {
        self.broker.metrics()
    }

    /// Starts one request. A Produce is validated and appended to its logs here, in the
    /// order requests arrive, and what is returned only waits for durability: a connection
    /// can read and append its next request while earlier ones sync, and answers in order.
    /// Every other request is handled to the end.
    pub async fn start(&self, request: Request, client: &ClientInfo) -> Started {
        match request.body {
            RequestKind::Produce(r) => Started::Produce(self.produce_append(request.version, r, client)),
            body => {
                let request = Request { body, ..request };
                Started::Done(self.handle(request, client).await.map(Box::new))
            }
        }
    }

    /// Handles one request. `None` means no response is sent (Produce with acks=0).
    pub async fn handle(&self, request: Request, client: &ClientInfo) -> Option<Response> {
        if let RequestKind::Fetch(r) = request.body {
            let answer = self.fetch(request.version, r, client).await;
            return Some(Response {
                body: ResponseKind::Fetch(answer.body),
                slices: answer.slices,
                reservation: answer.reservation,
            });
        }
        let body = self.handle_other(request, client).await?;
        Some(Response {
            body,
            slices: Vec::new(),
            reservation: None,
        })
    }

    async fn handle_other(&self, request: Request, client: &ClientInfo) -> Option<ResponseKind> {
        let v = request.version;
        let client_id = request
            .header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        if let Some(refused) = authz::refusal(self, v, &request.body, client) {
            return Some(refused);
        }
        Some(match request.body {
            RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(versions::api_versions_response(v)),
            RequestKind::Metadata(r) => ResponseKind::Metadata(self.metadata(v, r, client)),
            RequestKind::Produce(r) => {
                ResponseKind::Produce(self.produce_append(v, r, client).finish().await?)
            }
            RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(self.list_offsets(v, r, client)),
            RequestKind::FindCoordinator(r) => {
                ResponseKind::FindCoordinator(self.find_coordinator(v, r, client))
            }
            RequestKind::JoinGroup(r) => {
                ResponseKind::JoinGroup(self.join_group(v, r, client_id, client).await)
            }
            RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(self.sync_group(r).await),
            RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(self.heartbeat(r)),
            RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(self.leave_group(v, r)),
            RequestKind::OffsetCommit(r) => {
                ResponseKind::OffsetCommit(self.offset_commit(v, r, client).await)
            }
            RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(self.offset_fetch(v, r, client)),
            RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(self.init_producer_id(v, r).await),
            RequestKind::AddPartitionsToTxn(r) => {
                ResponseKind::AddPartitionsToTxn(self.add_partitions_to_txn(v, r).await)
            }
            RequestKind::AddOffsetsToTxn(r) => {
                ResponseKind::AddOffsetsToTxn(self.add_offsets_to_txn(v, r).await)
            }
            RequestKind::TxnOffsetCommit(r) => {
                ResponseKind::TxnOffsetCommit(self.txn_offset_commit(v, r).await)
            }
            RequestKind::EndTxn(r) => ResponseKind::EndTxn(self.end_txn(v, r).await),
            RequestKind::DescribeTransactions(r) => {
                ResponseKind::DescribeTransactions(self.describe_transactions(r, client))
            }
            RequestKind::ListTransactions(r) => {
                ResponseKind::ListTransactions(self.list_transactions(r, client))
            }
            RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(self.create_topics(v, r, client)),
            RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(self.delete_topics(r, client)),
            RequestKind::DescribeConfigs(r) => {
                ResponseKind::DescribeConfigs(self.describe_configs(r, client))
            }
            RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(self.alter_configs(r, client).await),
            RequestKind::DescribeGroups(r) => {
                ResponseKind::DescribeGroups(self.describe_groups(v, r, client))
            }
            RequestKind::ListGroups(r) => ResponseKind::ListGroups(self.list_groups(v, r, client)),
            RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(self.delete_groups(r, client).await),
            RequestKind::DescribeCluster(r) => {
                ResponseKind::DescribeCluster(self.describe_cluster(r, client))
            }
            RequestKind::CreatePartitions(r) => {
                ResponseKind::CreatePartitions(self.create_partitions(r, client).await)
            }
            RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(self.offset_delete(r, client).await),
            RequestKind::DeleteRecords(r) => {
                ResponseKind::DeleteRecords(self.delete_records(r, client).await)
            }
            RequestKind::ShareGroupHeartbeat(r) => {
                ResponseKind::ShareGroupHeartbeat(self.share_group_heartbeat(r, client_id, client))
            }
            RequestKind::ShareGroupDescribe(r) => {
                ResponseKind::ShareGroupDescribe(self.share_group_describe(r, client))
            }
            RequestKind::ShareFetch(r) => ResponseKind::ShareFetch(self.share_fetch(r, client).await),
            RequestKind::ShareAcknowledge(r) => {
                ResponseKind::ShareAcknowledge(self.share_acknowledge(r, client).await)
            }
            RequestKind::ConsumerGroupHeartbeat(r) => {
                ResponseKind::ConsumerGroupHeartbeat(self.consumer_group_heartbeat(r, client_id, client))
            }
            RequestKind::ConsumerGroupDescribe(r) => {
                ResponseKind::ConsumerGroupDescribe(self.consumer_group_describe(v, r, client))
            }
            RequestKind::DescribeProducers(r) => {
                ResponseKind::DescribeProducers(self.describe_producers(r, client))
            }
            RequestKind::DescribeLogDirs(r) => ResponseKind::DescribeLogDirs(self.describe_log_dirs(v, r)),
            RequestKind::OffsetForLeaderEpoch(r) => {
                ResponseKind::OffsetForLeaderEpoch(self.offset_for_leader_epoch(r, client))
            }
            RequestKind::IncrementalAlterConfigs(r) => {
                ResponseKind::IncrementalAlterConfigs(self.incremental_alter_configs(r, client).await)
            }
            RequestKind::DescribeUserScramCredentials(r) => {
                ResponseKind::DescribeUserScramCredentials(self.describe_user_scram_credentials(r))
            }
            RequestKind::AlterUserScramCredentials(r) => {
                ResponseKind::AlterUserScramCredentials(self.alter_user_scram_credentials(r))
            }
            RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(self.create_acls(r, client)),
            RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(self.describe_acls(r, client)),
            RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(self.delete_acls(r, client)),
            other => {
                // Unreachable in practice: the codec only decodes served APIs, and the
                // connection answers SaslHandshake and SaslAuthenticate itself.
                tracing::warn!(api = ?request.api_key, "Request for an API without a handler");
                drop(other);
                return None;
            }
        })
    }
}
