//! Request handlers: translate decoded Kafka requests into broker calls and build responses.
//!
//! Responses only set fields that exist in the negotiated version (the codec refuses to
//! encode a non-default value in a version that lacks the field).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rivulet_broker::groups::JoinRequest;
use rivulet_broker::{Broker, BrokerError, CommittedOffset, GroupError, Topic};
use rivulet_log::{BatchError, Log, LogError};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::codec::Request;
use crate::errors as ec;
use crate::versions;

/// Settings the handlers need beyond the broker.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// This node's id.
    pub node_id: i32,
    /// Host clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: u16,
    /// Cluster id reported in Metadata.
    pub cluster_id: String,
    /// Upper bound on a Fetch response's record bytes, whatever the client asks.
    pub fetch_bytes_max: usize,
    /// Upper bound on how long a Fetch waits for data, whatever the client asks.
    pub fetch_wait_ms_max: u64,
}

/// A response and the memory reservation it holds until it is written.
#[derive(Debug)]
pub struct Response {
    /// The response body.
    pub body: ResponseKind,
    /// Memory reserved for the body's record bytes; release after writing.
    pub reservation: Option<OwnedSemaphorePermit>,
}

/// A Fetch topic: requested name, the topic if it exists, requested partitions.
type ResolvedFetchTopic = (TopicName, Option<Arc<Topic>>, Vec<FetchPartition>);

/// Handles decoded requests against a [`Broker`].
#[derive(Debug, Clone)]
pub struct Handler {
    broker: Broker,
    config: Arc<HandlerConfig>,
    shutdown: watch::Receiver<bool>,
    fetch_memory: Arc<Semaphore>,
    metrics: Option<Arc<rivulet_metrics::Metrics>>,
}

/// Who sent a request.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer address.
    pub host: String,
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Kafka error code for a broker error.
pub fn broker_error_code(e: &BrokerError) -> i16 {
    match e {
        BrokerError::Log(e) => log_error_code(e),
        BrokerError::InvalidTopicName { .. } => ec::INVALID_TOPIC_EXCEPTION,
        BrokerError::TopicExists(_) => ec::TOPIC_ALREADY_EXISTS,
        BrokerError::UnknownTopic(_) => ec::UNKNOWN_TOPIC_OR_PARTITION,
        BrokerError::InvalidPartitions { .. } => ec::INVALID_PARTITIONS,
        BrokerError::InvalidReplicationFactor(_) => ec::INVALID_REPLICATION_FACTOR,
        BrokerError::InvalidConfig { .. } => ec::INVALID_CONFIG,
        BrokerError::LimitReached(_) => ec::POLICY_VIOLATION,
        BrokerError::Io { .. } | BrokerError::CorruptMetadata { .. } => ec::KAFKA_STORAGE_ERROR,
        BrokerError::ShuttingDown => ec::COORDINATOR_NOT_AVAILABLE,
        BrokerError::DataDirLocked { .. } => ec::KAFKA_STORAGE_ERROR,
    }
}

/// Kafka error code for a log error.
pub fn log_error_code(e: &LogError) -> i16 {
    match e {
        LogError::InvalidBatch(BatchError::TooLarge { .. }) => ec::MESSAGE_TOO_LARGE,
        LogError::InvalidBatch(_) => ec::CORRUPT_MESSAGE,
        LogError::OutOfOrderSequence { .. } => ec::OUT_OF_ORDER_SEQUENCE_NUMBER,
        LogError::ProducerFenced { .. } => ec::INVALID_PRODUCER_EPOCH,
        LogError::OffsetOutOfRange { .. } => ec::OFFSET_OUT_OF_RANGE,
        LogError::Closed { .. } => ec::UNKNOWN_TOPIC_OR_PARTITION,
        LogError::Io { .. } | LogError::Corrupt { .. } => ec::KAFKA_STORAGE_ERROR,
        _ => ec::UNKNOWN_SERVER_ERROR,
    }
}

/// Kafka error code for a group error.
pub fn group_error_code(e: GroupError) -> i16 {
    match e {
        GroupError::UnknownMemberId => ec::UNKNOWN_MEMBER_ID,
        GroupError::IllegalGeneration => ec::ILLEGAL_GENERATION,
        GroupError::RebalanceInProgress => ec::REBALANCE_IN_PROGRESS,
        GroupError::InconsistentGroupProtocol => ec::INCONSISTENT_GROUP_PROTOCOL,
        GroupError::MemberIdRequired => ec::MEMBER_ID_REQUIRED,
        GroupError::InvalidSessionTimeout => ec::INVALID_SESSION_TIMEOUT,
        GroupError::GroupIdNotFound => ec::GROUP_ID_NOT_FOUND,
        GroupError::NonEmptyGroup => ec::NON_EMPTY_GROUP,
        GroupError::InvalidGroupId => ec::INVALID_GROUP_ID,
        GroupError::GroupMaxSizeReached => ec::GROUP_MAX_SIZE_REACHED,
        GroupError::StorageFailed => ec::COORDINATOR_NOT_AVAILABLE,
    }
}

fn code_of(e: Option<GroupError>) -> i16 {
    e.map_or(ec::NONE, group_error_code)
}

impl Handler {
    /// Records produced and fetched traffic into `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<rivulet_metrics::Metrics>>) -> Handler {
        self.metrics = metrics;
        self
    }

    /// The metrics this handler records into.
    pub fn metrics(&self) -> Option<&Arc<rivulet_metrics::Metrics>> {
        self.metrics.as_ref()
    }

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
            metrics: None,
        }
    }

    /// The broker this handler serves.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Starts one request. A Produce is validated and appended to its logs here, in the
    /// order requests arrive, and what is returned only waits for durability: a connection
    /// can read and append its next request while earlier ones sync, and answers in order.
    /// Every other request is handled to the end.
    pub async fn start(&self, request: Request, client: &ClientInfo) -> Started {
        match request.body {
            RequestKind::Produce(r) => Started::Produce(self.produce_append(request.version, r)),
            body => {
                let request = Request { body, ..request };
                Started::Done(self.handle(request, client).await.map(Box::new))
            }
        }
    }

    /// Handles one request. `None` means no response is sent (Produce with acks=0).
    pub async fn handle(&self, request: Request, client: &ClientInfo) -> Option<Response> {
        if let RequestKind::Fetch(r) = request.body {
            let (body, reservation) = self.fetch(request.version, r).await;
            return Some(Response {
                body: ResponseKind::Fetch(body),
                reservation,
            });
        }
        let body = self.handle_other(request, client).await?;
        Some(Response {
            body,
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
        Some(match request.body {
            RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(versions::api_versions_response(v)),
            RequestKind::Metadata(r) => ResponseKind::Metadata(self.metadata(v, r)),
            RequestKind::Produce(r) => ResponseKind::Produce(self.produce(v, r).await?),
            RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(self.list_offsets(v, r)),
            RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(self.find_coordinator(v, r)),
            RequestKind::JoinGroup(r) => {
                ResponseKind::JoinGroup(self.join_group(v, r, client_id, client).await)
            }
            RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(self.sync_group(r).await),
            RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(
                HeartbeatResponse::default().with_error_code(code_of(self.broker.groups().heartbeat(
                    &r.group_id.0,
                    r.generation_id,
                    &r.member_id,
                ))),
            ),
            RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(self.leave_group(v, r)),
            RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(self.offset_commit(v, r).await),
            RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(self.offset_fetch(v, r)),
            RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(self.init_producer_id(v, r)),
            RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(self.create_topics(v, r)),
            RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(self.delete_topics(r)),
            RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(self.describe_configs(r)),
            RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(self.alter_configs(r).await),
            RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(self.describe_groups(v, r)),
            RequestKind::ListGroups(r) => ResponseKind::ListGroups(self.list_groups(v, r)),
            RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(self.delete_groups(r).await),
            other => {
                // Unreachable in practice: the codec only decodes served APIs.
                tracing::warn!(api = ?request.api_key, "Request for an API without a handler");
                drop(other);
                return None;
            }
        })
    }

    fn metadata(&self, v: i16, r: MetadataRequest) -> MetadataResponse {
        let allow_create = if v >= 4 { r.allow_auto_topic_creation } else { true };
        let all = match &r.topics {
            None => true,
            Some(list) => v == 0 && list.is_empty(),
        };
        let mut topics = Vec::new();
        if all {
            for t in self.broker.topics() {
                topics.push(self.metadata_topic(v, Ok(t), None));
            }
        } else {
            for requested in r.topics.unwrap_or_default() {
                match requested.name {
                    Some(name) => {
                        let result = self.broker.get_or_create_topic(&name.0, allow_create);
                        topics.push(self.metadata_topic(v, result, Some(name)));
                    }
                    None => {
                        let found = self.broker.topic_by_id(requested.topic_id.as_u128());
                        let mut t = match found {
                            Some(t) => self.metadata_topic(v, Ok(t), None),
                            None => MetadataResponseTopic::default()
                                .with_error_code(ec::UNKNOWN_TOPIC_ID)
                                .with_name(None),
                        };
                        if v >= 10 {
                            t.topic_id = requested.topic_id;
                        }
                        topics.push(t);
                    }
                }
            }
        }
        let mut resp = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(self.config.node_id))
                .with_host(str_bytes(self.config.advertised_host.clone()))
                .with_port(self.config.advertised_port as i32)])
            .with_topics(topics);
        if v >= 1 {
            resp.controller_id = BrokerId(self.config.node_id);
        }
        if v >= 2 {
            resp.cluster_id = Some(str_bytes(self.config.cluster_id.clone()));
        }
        resp
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

    async fn produce(&self, v: i16, r: ProduceRequest) -> Option<ProduceResponse> {
        self.produce_append(v, r).finish().await
    }

    /// The part of a Produce that must run in request order: validation and appends. Each
    /// partition's sync is requested here too, so the partitions of one request sync in
    /// parallel (each log has its own flusher).
    fn produce_append(&self, v: i16, r: ProduceRequest) -> ProduceInFlight {
        let acks = r.acks;
        let transactional = r.transactional_id.as_ref().is_some_and(|t| !t.0.is_empty());
        let mut pending: Vec<(usize, usize, Log, i64)> = Vec::new();
        let mut responses: Vec<TopicProduceResponse> = Vec::with_capacity(r.topic_data.len());
        for (ti, td) in r.topic_data.into_iter().enumerate() {
            let topic = if acks != 0 && acks != 1 && acks != -1 {
                Err(ec::INVALID_REQUIRED_ACKS)
            } else if transactional {
                Err(ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            } else {
                self.broker
                    .get_or_create_topic(&td.name.0, true)
                    .map_err(|e| broker_error_code(&e))
            };
            let mut parts = Vec::with_capacity(td.partition_data.len());
            for (pi, pd) in td.partition_data.into_iter().enumerate() {
                let mut resp = PartitionProduceResponse::default().with_index(pd.index);
                let result = match &topic {
                    Err(code) => Err((*code, None)),
                    Ok(t) => match t.partition(pd.index) {
                        None => Err((ec::UNKNOWN_TOPIC_OR_PARTITION, None)),
                        Some(log) => match pd.records.as_ref().filter(|b| !b.is_empty()) {
                            None => Err((ec::CORRUPT_MESSAGE, Some("no records".to_string()))),
                            Some(records) => match log.append(records) {
                                Ok(outcome) => {
                                    if let (Some(m), false) = (&self.metrics, outcome.duplicate) {
                                        m.record_produced(
                                            &td.name.0,
                                            outcome.record_count as u64,
                                            records.len() as u64,
                                        );
                                    }
                                    Ok((log.clone(), outcome))
                                }
                                Err(e) => {
                                    tracing::warn!(topic = %td.name.0, partition = pd.index, error = %e, code = e.code(), "Produce rejected");
                                    Err((log_error_code(&e), Some(e.to_string())))
                                }
                            },
                        },
                    },
                };
                match result {
                    Ok((log, outcome)) => {
                        resp.base_offset = outcome.base_offset;
                        resp.log_append_time_ms = outcome.log_append_time_ms;
                        if v >= 5 {
                            resp.log_start_offset = outcome.log_start_offset;
                        }
                        // Ask for the sync now, so the partitions of one request sync in
                        // parallel (each log has its own flusher) rather than one after
                        // another while the waits below run. With acks 0 or 1 nobody waits,
                        // but readers only see durable data.
                        log.request_sync(outcome.last_offset + 1);
                        if acks == -1 {
                            pending.push((ti, pi, log, outcome.last_offset + 1));
                        }
                    }
                    Err((code, message)) => {
                        resp.error_code = code;
                        resp.base_offset = -1;
                        if v >= 8 {
                            resp.error_message = message.map(str_bytes);
                        }
                    }
                }
                parts.push(resp);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(td.name)
                    .with_partition_responses(parts),
            );
        }
        ProduceInFlight {
            acks,
            responses,
            pending,
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

/// A Produce request whose records are appended and whose syncs are requested.
#[derive(Debug)]
pub struct ProduceInFlight {
    acks: i16,
    responses: Vec<TopicProduceResponse>,
    /// `(topic index, partition index, log, next offset)` awaiting durability (acks=all).
    pending: Vec<(usize, usize, Log, i64)>,
}

impl ProduceInFlight {
    /// Waits until every acks=all partition is durable and returns the response, or `None`
    /// for acks=0.
    pub async fn finish(self) -> Option<ProduceResponse> {
        let ProduceInFlight {
            acks,
            mut responses,
            pending,
        } = self;
        // Every sync was requested at append time: waiting in turn takes as long as the
        // slowest one.
        for (ti, pi, log, next_offset) in pending {
            if let Err(e) = log.wait_durable(next_offset).await {
                tracing::error!(error = %e, "Waiting for durability failed");
                if let Some(p) = responses
                    .get_mut(ti)
                    .and_then(|t| t.partition_responses.get_mut(pi))
                {
                    p.error_code = log_error_code(&e);
                    p.base_offset = -1;
                }
            }
        }
        if acks == 0 {
            return None;
        }
        Some(ProduceResponse::default().with_responses(responses))
    }
}

impl Handler {
    async fn fetch(&self, v: i16, r: FetchRequest) -> (FetchResponse, Option<OwnedSemaphorePermit>) {
        let wait_ms = (r.max_wait_ms.max(0) as u64).min(self.config.fetch_wait_ms_max);
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        let min_bytes = r.min_bytes.max(0) as usize;
        let max_bytes = (r.max_bytes.max(0) as usize).min(self.config.fetch_bytes_max);
        let resolved: Vec<ResolvedFetchTopic> = r
            .topics
            .into_iter()
            .map(|t| {
                let topic = self.broker.topic(&t.topic.0);
                (t.topic, topic, t.partitions)
            })
            .collect();
        let mut shutdown = self.shutdown.clone();
        loop {
            let mut receivers: Vec<watch::Receiver<i64>> = resolved
                .iter()
                .filter_map(|(_, t, parts)| t.as_ref().map(|t| (t, parts)))
                .flat_map(|(t, parts)| {
                    parts
                        .iter()
                        .filter_map(|p| t.partition(p.partition).map(|log| log.subscribe()))
                })
                .collect();
            // Reserve memory for the largest response before reading; give back what the
            // read did not use. Under memory pressure this waits (backpressure).
            let mut reservation = match self
                .fetch_memory
                .clone()
                .acquire_many_owned(u32::try_from(max_bytes).unwrap_or(u32::MAX))
                .await
            {
                Ok(permit) => permit,
                Err(_) => {
                    return (FetchResponse::default(), None);
                }
            };
            let (responses, total, errored) = self.fetch_once(v, &resolved, max_bytes);
            let now = Instant::now();
            if total >= min_bytes || errored || now >= deadline || *shutdown.borrow() {
                let unused = reservation.num_permits().saturating_sub(total);
                drop(reservation.split(unused));
                return (
                    FetchResponse::default().with_responses(responses),
                    Some(reservation),
                );
            }
            drop(reservation);
            // Keep every `changed()` future alive while waiting so each keeps its waker
            // registered; the first high-watermark change of any partition wakes the fetch.
            let mut changes: Vec<Pin<Box<dyn Future<Output = _> + Send + '_>>> = receivers
                .iter_mut()
                .map(|rx| Box::pin(rx.changed()) as Pin<Box<dyn Future<Output = _> + Send>>)
                .collect();
            let any_change = std::future::poll_fn(|cx| {
                for change in changes.iter_mut() {
                    if change.as_mut().poll(cx).is_ready() {
                        return std::task::Poll::Ready(());
                    }
                }
                std::task::Poll::Pending
            });
            tokio::select! {
                _ = any_change => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    fn fetch_once(
        &self,
        v: i16,
        resolved: &[ResolvedFetchTopic],
        max_bytes: usize,
    ) -> (Vec<FetchableTopicResponse>, usize, bool) {
        let mut total = 0usize;
        let mut errored = false;
        let mut out = Vec::with_capacity(resolved.len());
        for (name, topic, parts) in resolved {
            let mut partitions = Vec::with_capacity(parts.len());
            for p in parts {
                let mut data = PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_records(Some(Bytes::new()));
                let Some(log) = topic.as_ref().and_then(|t| t.partition(p.partition)) else {
                    data.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION;
                    data.high_watermark = -1;
                    errored = true;
                    partitions.push(data);
                    continue;
                };
                let remaining = max_bytes.saturating_sub(total);
                let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                let read = if remaining == 0 && total > 0 {
                    Ok(None)
                } else {
                    log.read(p.fetch_offset, limit).map(Some)
                };
                match read {
                    Ok(read) => {
                        let hw = read
                            .as_ref()
                            .map_or_else(|| log.high_watermark(), |r| r.high_watermark);
                        data.high_watermark = hw;
                        data.last_stable_offset = hw;
                        if v >= 5 {
                            data.log_start_offset = read
                                .as_ref()
                                .map_or_else(|| log.log_start_offset(), |r| r.log_start_offset);
                        }
                        if let Some(read) = read {
                            // The first batch may exceed the limits (so a consumer can always
                            // make progress); later partitions must fit.
                            if total == 0 || read.records.len() <= remaining {
                                total += read.records.len();
                                if let Some(m) = &self.metrics {
                                    let records = batch_record_count(&read.records, p.fetch_offset);
                                    m.record_fetched(&name.0, records, read.records.len() as u64);
                                }
                                data.records = Some(read.records);
                            }
                        }
                    }
                    Err(e) => {
                        if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                            tracing::error!(topic = %name.0, partition = p.partition, error = %e, "Fetch read failed");
                        }
                        data.error_code = log_error_code(&e);
                        data.high_watermark = log.high_watermark();
                        data.last_stable_offset = data.high_watermark;
                        if v >= 5 {
                            data.log_start_offset = log.log_start_offset();
                        }
                        errored = true;
                    }
                }
                partitions.push(data);
            }
            out.push(
                FetchableTopicResponse::default()
                    .with_topic(name.clone())
                    .with_partitions(partitions),
            );
        }
        (out, total, errored)
    }

    fn list_offsets(&self, v: i16, r: ListOffsetsRequest) -> ListOffsetsResponse {
        let topics = r
            .topics
            .into_iter()
            .map(|t| {
                let topic = self.broker.topic(&t.name.0);
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let mut resp =
                            ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                        let Some(log) = topic.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                            resp.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION;
                            return resp;
                        };
                        if v >= 4 {
                            resp.leader_epoch = 0;
                        }
                        match p.timestamp {
                            -2 => resp.offset = log.log_start_offset(),
                            -1 => resp.offset = log.high_watermark(),
                            -3 => match last_batch_max_timestamp(log) {
                                Some((offset, ts)) => {
                                    resp.offset = offset;
                                    resp.timestamp = ts;
                                }
                                None => resp.offset = -1,
                            },
                            ts => match log.offset_for_timestamp(ts) {
                                Ok(Some(found)) => {
                                    resp.offset = found.offset;
                                    resp.timestamp = found.timestamp_ms;
                                }
                                Ok(None) => resp.offset = -1,
                                Err(e) => {
                                    tracing::error!(error = %e, "Offset lookup by timestamp failed");
                                    resp.error_code = log_error_code(&e);
                                }
                            },
                        }
                        resp
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }

    fn find_coordinator(&self, v: i16, r: FindCoordinatorRequest) -> FindCoordinatorResponse {
        let mut resp = FindCoordinatorResponse::default()
            .with_node_id(BrokerId(self.config.node_id))
            .with_host(str_bytes(self.config.advertised_host.clone()))
            .with_port(self.config.advertised_port as i32);
        if r.key_type != 0 {
            resp = resp
                .with_error_code(ec::COORDINATOR_NOT_AVAILABLE)
                .with_node_id(BrokerId(-1))
                .with_host(str_bytes(""))
                .with_port(-1);
            if v >= 1 {
                resp.error_message = Some(str_bytes("transactions are not supported"));
            }
        }
        resp
    }

    async fn join_group(
        &self,
        v: i16,
        r: JoinGroupRequest,
        client_id: String,
        client: &ClientInfo,
    ) -> JoinGroupResponse {
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

    async fn sync_group(&self, r: SyncGroupRequest) -> SyncGroupResponse {
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

    fn leave_group(&self, v: i16, r: LeaveGroupRequest) -> LeaveGroupResponse {
        if v >= 3 {
            let ids: Vec<String> = r.members.iter().map(|m| m.member_id.to_string()).collect();
            let results = self.broker.groups().leave(&r.group_id.0, &ids);
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

    async fn offset_commit(&self, v: i16, r: OffsetCommitRequest) -> OffsetCommitResponse {
        let group = r.group_id.0.to_string();
        let group_error =
            self.broker
                .groups()
                .validate_commit(&group, r.generation_id_or_member_epoch, &r.member_id);
        let now = rivulet_broker::offsets::now_ms();
        let mut entries = Vec::new();
        let mut topics: Vec<OffsetCommitResponseTopic> = Vec::with_capacity(r.topics.len());
        for t in r.topics {
            let topic = self.broker.topic(&t.name.0);
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let code = if let Some(e) = group_error {
                    group_error_code(e)
                } else if topic
                    .as_ref()
                    .and_then(|t| t.partition(p.partition_index))
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

    fn offset_fetch(&self, v: i16, r: OffsetFetchRequest) -> OffsetFetchResponse {
        let group = r.group_id.0.to_string();
        let store = self.broker.groups().offsets();
        let requested: Vec<(TopicName, Vec<i32>)> = match r.topics {
            Some(list) => list.into_iter().map(|t| (t.name, t.partition_indexes)).collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                for (t, p, _) in store.group_offsets(&group) {
                    by_topic.entry(t).or_default().push(p);
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
                let partitions = parts
                    .into_iter()
                    .map(|p| {
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

    fn init_producer_id(&self, v: i16, r: InitProducerIdRequest) -> InitProducerIdResponse {
        if r.transactional_id.as_ref().is_some_and(|t| !t.0.is_empty()) {
            tracing::warn!("InitProducerId with a transactional id: transactions are not supported");
            return InitProducerIdResponse::default()
                .with_error_code(ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
        let existing = (v >= 3 && r.producer_id.0 >= 0).then_some((r.producer_id.0, r.producer_epoch));
        match self.broker.init_producer_id(existing) {
            Ok((id, epoch)) => {
                tracing::info!(
                    producer_id = id,
                    epoch,
                    "Allocated a producer id for an idempotent producer"
                );
                InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(epoch)
            }
            Err(e) => {
                tracing::error!(error = %e, "Allocating a producer id failed");
                InitProducerIdResponse::default()
                    .with_error_code(broker_error_code(&e))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            }
        }
    }

    fn create_topics(&self, v: i16, r: CreateTopicsRequest) -> CreateTopicsResponse {
        let topics = r
            .topics
            .into_iter()
            .map(|t| {
                let overrides: BTreeMap<String, String> = t
                    .configs
                    .iter()
                    .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                    .collect();
                let partitions = if t.assignments.is_empty() {
                    t.num_partitions
                } else {
                    t.assignments.len() as i32
                };
                let result = self.broker.create_topic(
                    &t.name.0,
                    partitions,
                    t.replication_factor,
                    overrides,
                    r.validate_only,
                );
                let mut out = CreatableTopicResult::default().with_name(t.name.clone());
                out.error_message = None;
                if v < 5 {
                    // Fields of v5+ keep their defaults.
                    out.configs = Some(Vec::new());
                }
                match result {
                    Ok(created) => {
                        tracing::info!(topic = %t.name.0, validate_only = r.validate_only, "CreateTopics");
                        if v >= 5 {
                            if let Some(topic) = created.or_else(|| self.broker.topic(&t.name.0)) {
                                out.num_partitions = topic.partition_count() as i32;
                                out.replication_factor = 1;
                                out.configs = Some(
                                    topic
                                        .describe_configs()
                                        .into_iter()
                                        .map(|c| {
                                            CreatableTopicConfigs::default()
                                                .with_name(str_bytes(c.name))
                                                .with_value(Some(str_bytes(c.value)))
                                                .with_config_source(if c.is_default { 5 } else { 1 })
                                        })
                                        .collect(),
                                );
                            } else {
                                out.num_partitions = partitions;
                                out.replication_factor = 1;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::info!(topic = %t.name.0, error = %e, "CreateTopics refused");
                        out.error_code = broker_error_code(&e);
                        out.error_message = Some(str_bytes(e.to_string()));
                    }
                }
                out
            })
            .collect();
        CreateTopicsResponse::default().with_topics(topics)
    }

    fn delete_topics(&self, r: DeleteTopicsRequest) -> DeleteTopicsResponse {
        let responses = r
            .topic_names
            .into_iter()
            .map(|name| {
                let code = match self.broker.delete_topic(&name.0) {
                    Ok(()) => ec::NONE,
                    Err(e) => {
                        tracing::info!(topic = %name.0, error = %e, "DeleteTopics refused");
                        broker_error_code(&e)
                    }
                };
                DeletableTopicResult::default()
                    .with_name(Some(name))
                    .with_error_code(code)
            })
            .collect();
        DeleteTopicsResponse::default().with_responses(responses)
    }

    /// AlterConfigs: replaces a topic's config overrides with the given set (Kafka's
    /// non-incremental semantics: keys not given return to their defaults).
    async fn alter_configs(&self, r: AlterConfigsRequest) -> AlterConfigsResponse {
        const TOPIC: i8 = 2;
        let mut responses = Vec::with_capacity(r.resources.len());
        for res in r.resources {
            let mut out = AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            if res.resource_type != TOPIC {
                out.error_code = ec::INVALID_REQUEST;
                out.error_message = Some(str_bytes("only topic configs can be altered on Rivulet"));
                responses.push(out);
                continue;
            }
            let overrides: std::collections::BTreeMap<String, String> = res
                .configs
                .iter()
                .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                .collect();
            let name = res.resource_name.to_string();
            let result = if self.broker.topic(&name).is_none() {
                Err(BrokerError::UnknownTopic(name.clone()))
            } else if r.validate_only {
                rivulet_broker::topics::build_log_config(&self.broker.config().default_log_config, &overrides)
                    .map(|_| ())
            } else {
                let broker = self.broker.clone();
                let topic = name.clone();
                tokio::task::spawn_blocking(move || broker.set_topic_configs(&topic, overrides))
                    .await
                    .unwrap_or_else(|e| Err(BrokerError::LimitReached(format!("config task failed: {e}"))))
            };
            if let Err(e) = result {
                tracing::info!(topic = %name, error = %e, "AlterConfigs refused");
                out.error_code = match &e {
                    BrokerError::InvalidConfig { .. } => ec::INVALID_CONFIG,
                    other => broker_error_code(other),
                };
                out.error_message = Some(str_bytes(e.to_string()));
            }
            responses.push(out);
        }
        AlterConfigsResponse::default().with_responses(responses)
    }

    fn describe_configs(&self, r: DescribeConfigsRequest) -> DescribeConfigsResponse {
        const TOPIC: i8 = 2;
        const BROKER: i8 = 4;
        let results = r
            .resources
            .into_iter()
            .map(|res| {
                let mut out = DescribeConfigsResult::default()
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name.clone());
                let wanted = |name: &str| {
                    res.configuration_keys
                        .as_ref()
                        .is_none_or(|keys| keys.iter().any(|k| &**k == name))
                };
                let entry = |name: String, value: String, source: i8| {
                    DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(name))
                        .with_value(Some(str_bytes(value)))
                        .with_config_source(source)
                };
                match res.resource_type {
                    TOPIC => match self.broker.topic(&res.resource_name) {
                        Some(topic) => {
                            out.configs = topic
                                .describe_configs()
                                .into_iter()
                                .filter(|c| wanted(&c.name))
                                .map(|c| {
                                    let source = if c.is_default { 5 } else { 1 };
                                    entry(c.name, c.value, source)
                                })
                                .collect();
                        }
                        None => {
                            out.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION;
                            out.error_message = Some(str_bytes("unknown topic"));
                        }
                    },
                    BROKER => {
                        let cfg = self.broker.config();
                        let defaults = &cfg.default_log_config;
                        let mut all = vec![
                            (
                                "auto.create.topics.enable".to_string(),
                                cfg.auto_create_topics.to_string(),
                            ),
                            ("num.partitions".to_string(), cfg.default_partitions.to_string()),
                            (
                                "rivulet.version".to_string(),
                                env!("CARGO_PKG_VERSION").to_string(),
                            ),
                            (
                                "rivulet.log.dirs.size.bytes".to_string(),
                                self.broker
                                    .topics()
                                    .iter()
                                    .flat_map(|t| t.partitions().iter().map(Log::size_bytes))
                                    .sum::<u64>()
                                    .to_string(),
                            ),
                        ];
                        for key in rivulet_broker::topics::TOPIC_CONFIG_KEYS {
                            if let Some(value) = rivulet_broker::topics::topic_config_value(defaults, key) {
                                all.push((format!("log.{key}"), value));
                            }
                        }
                        out.configs = all
                            .into_iter()
                            .filter(|(k, _)| wanted(k))
                            .map(|(k, val)| entry(k, val, 4))
                            .collect();
                    }
                    other => {
                        out.error_code = ec::INVALID_REQUEST;
                        out.error_message =
                            Some(str_bytes(format!("resource type {other} is not supported")));
                    }
                }
                out
            })
            .collect();
        DescribeConfigsResponse::default().with_results(results)
    }

    fn describe_groups(&self, v: i16, r: DescribeGroupsRequest) -> DescribeGroupsResponse {
        let groups = r
            .groups
            .into_iter()
            .map(|id| {
                let mut out = DescribedGroup::default().with_group_id(id.clone());
                match self.broker.groups().describe(&id.0) {
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
                out
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }

    fn list_groups(&self, v: i16, r: ListGroupsRequest) -> ListGroupsResponse {
        let groups = self
            .broker
            .groups()
            .list()
            .into_iter()
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

    async fn delete_groups(&self, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(r.groups_names.len());
        for id in r.groups_names {
            let code = code_of(self.broker.groups().delete(&id.0).await);
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(code),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }
}

/// Offset and max timestamp of the newest batch (for ListOffsets with timestamp -3).
fn last_batch_max_timestamp(log: &Log) -> Option<(i64, i64)> {
    let hw = log.high_watermark();
    if hw <= log.log_start_offset() {
        return None;
    }
    let read = log.read(hw - 1, 1).ok()?;
    let bytes = &read.records[..];
    let mut pos = 0usize;
    let mut last = None;
    while pos + 61 <= bytes.len() {
        let b = &bytes[pos..];
        let base = i64::from_be_bytes(b[0..8].try_into().ok()?);
        let len = i32::from_be_bytes(b[8..12].try_into().ok()?);
        let last_delta = i32::from_be_bytes(b[23..27].try_into().ok()?);
        let max_ts = i64::from_be_bytes(b[35..43].try_into().ok()?);
        last = Some((base + last_delta as i64, max_ts));
        if len <= 0 {
            break;
        }
        pos += 12 + len as usize;
    }
    last
}

/// Records in fetched batches at or after `from`, counted from batch headers (no decoding).
fn batch_record_count(batches: &[u8], from: i64) -> u64 {
    let mut at = 0usize;
    let mut count = 0u64;
    // Bounded by the bytes: every step advances by a whole batch of at least 61 bytes.
    while let Ok(h) = rivulet_log::batch::BatchHeader::parse(&batches[at..]) {
        let total = h.total_bytes();
        if total < rivulet_log::batch::HEADER_BYTES || at + total > batches.len() {
            break;
        }
        let first = h.base_offset.max(from);
        count += (h.next_offset() - first).max(0) as u64;
        at += total;
    }
    count
}
