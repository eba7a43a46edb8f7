//! Fetch (a long poll woken by the broker's data watch) and ListOffsets.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use rivulet_broker::acl::Operation;
use rivulet_broker::{
    AbortedTxn, BrokerError, DataWatch, FileSlice, Isolation, LogError, ReadLimit, TimestampOffset, Topic,
    Woke, WATCH_PARTITIONS_MAX,
};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::codes::broker_error_code;
use super::sessions::{Answer, Plan};
use super::{ClientInfo, Handler};
use crate::errors as ec;

/// Slices up to this size are copied into the response: one read and no separate send is
/// cheaper for them than sendfile. Larger ones are sent from the file without a copy.
const INLINE_SLICE_BYTES_MAX: u64 = 16 * 1024;

/// A partition's records in a response.
enum Records {
    /// Copied into the response.
    Inline(Bytes),
    /// Sent from the segment file.
    File(FileSlice),
}

/// Reads small slices into memory (see [`INLINE_SLICE_BYTES_MAX`]).
fn inline_small(slice: Option<FileSlice>) -> Result<Records, BrokerError> {
    match slice {
        None => Ok(Records::Inline(Bytes::new())),
        Some(s) if s.len() <= INLINE_SLICE_BYTES_MAX => Ok(Records::Inline(s.read()?)),
        Some(s) => Ok(Records::File(s)),
    }
}

/// ListOffsets' special timestamps.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;

/// What one pass over the requested partitions produced.
struct Pass {
    topics: Vec<FetchableTopicResponse>,
    /// Each partition's records, left in their segment file (topic, then partition order).
    slices: Vec<Option<FileSlice>>,
    bytes: usize,
    errored: bool,
}

/// A Fetch response whose record bytes stay in the segment files until written.
#[derive(Debug)]
pub struct FetchAnswer {
    /// The response, `records: None` where a slice holds them.
    pub body: FetchResponse,
    /// The partitions' records in topic, then partition order.
    pub slices: Vec<Option<FileSlice>>,
    /// Memory reserved for the response until it is written.
    pub reservation: Option<OwnedSemaphorePermit>,
}

impl Handler {
    pub(super) async fn fetch(&self, v: i16, r: FetchRequest, client: &ClientInfo) -> FetchAnswer {
        let wait_ms = (r.max_wait_ms.max(0) as u64).min(self.config.fetch_wait_ms_max);
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        let min_bytes = r.min_bytes.max(0) as usize;
        let max_bytes = (r.max_bytes.max(0) as usize).min(self.config.fetch_bytes_max);
        let isolation = isolation_of(r.isolation_level);
        let begun = self.sessions.begin(
            v,
            r.session_id,
            r.session_epoch,
            r.topics,
            &r.forgotten_topics_data,
        );
        self.metrics().set_fetch_sessions(self.sessions.len());
        let plan = match begun {
            Ok(plan) => plan,
            Err(code) => {
                return FetchAnswer {
                    body: FetchResponse::default().with_error_code(code),
                    slices: Vec::new(),
                    reservation: None,
                }
            }
        };
        // Watching starts before the first read, so an append in between is not missed.
        let mut watch = self.watch_for(&plan);
        let mut shutdown = self.shutdown.clone();
        loop {
            // Reserve memory for the largest response before reading; give back what the
            // read did not use. Under memory pressure this waits (backpressure).
            let permits = u32::try_from(max_bytes).unwrap_or(u32::MAX);
            let Ok(mut reservation) = self.fetch_memory.clone().acquire_many_owned(permits).await else {
                return FetchAnswer {
                    body: FetchResponse::default(),
                    slices: Vec::new(),
                    reservation: None,
                };
            };
            let pass = if plan.incremental {
                let candidates = self.sessions.candidates(plan.session_id, |name| {
                    self.broker.topic(&name.0).map(|t| move |p| t.offsets(p))
                });
                self.fetch_once(v, &candidates, max_bytes, isolation, client)
            } else {
                self.fetch_once(v, &plan.partitions, max_bytes, isolation, client)
            };
            let done =
                pass.bytes >= min_bytes || pass.errored || Instant::now() >= deadline || *shutdown.borrow();
            if done {
                let unused = reservation.num_permits().saturating_sub(pass.bytes);
                drop(reservation.split(unused));
                let (topics, slices) = self.session_answer(&plan, pass);
                return FetchAnswer {
                    body: FetchResponse::default()
                        .with_session_id(plan.session_id)
                        .with_responses(topics),
                    slices,
                    reservation: Some(reservation),
                };
            }
            drop(reservation);
            let woke = tokio::select! {
                woke = watch.wait(deadline) => woke,
                _ = shutdown.changed() => Woke::ShuttingDown,
            };
            tracing::trace!(?woke, "Fetch woke");
        }
    }

    /// What wakes a long poll: the partitions read, or for a large session any data.
    fn watch_for(&self, plan: &Plan) -> DataWatch {
        if !plan.incremental {
            let partitions = plan
                .partitions
                .iter()
                .flat_map(|(name, parts)| parts.iter().map(move |p| (&*name.0, p.partition)));
            return self.broker.watch(partitions);
        }
        match self.sessions.partitions(plan.session_id, WATCH_PARTITIONS_MAX) {
            Some(list) => self.broker.watch(list.iter().map(|(name, p)| (&*name.0, *p))),
            None => self.broker.watch_all(),
        }
    }

    /// The partitions a response carries: all of them, or in an incremental session only
    /// those with something new (see [`sessions::FetchSessions::select`]).
    fn session_answer(
        &self,
        plan: &Plan,
        pass: Pass,
    ) -> (Vec<FetchableTopicResponse>, Vec<Option<FileSlice>>) {
        if plan.session_id == 0 {
            return (pass.topics, pass.slices);
        }
        let mut answers = Vec::with_capacity(pass.slices.len());
        let mut slices = pass.slices.iter();
        for topic in &pass.topics {
            for p in &topic.partitions {
                let sliced = slices.next().is_some_and(Option::is_some);
                let answer = Answer {
                    has_records: sliced || p.records.as_ref().is_some_and(|r| !r.is_empty()),
                    error_code: p.error_code,
                    high_watermark: p.high_watermark,
                    log_start_offset: p.log_start_offset,
                };
                answers.push((topic.topic.clone(), p.partition_index, answer));
            }
        }
        let keep = self.sessions.select(plan, &answers);
        let mut keep = keep.into_iter();
        let mut slices = pass.slices.into_iter();
        let mut kept_slices = Vec::new();
        let mut topics = Vec::new();
        for mut topic in pass.topics {
            let partitions = std::mem::take(&mut topic.partitions);
            for p in partitions {
                let slice = slices.next().flatten();
                if keep.next().unwrap_or(true) {
                    topic.partitions.push(p);
                    kept_slices.push(slice);
                }
            }
            if !topic.partitions.is_empty() {
                topics.push(topic);
            }
        }
        (topics, kept_slices)
    }

    fn fetch_once(
        &self,
        v: i16,
        requested: &[(TopicName, Vec<FetchPartition>)],
        max_bytes: usize,
        isolation: Isolation,
        client: &ClientInfo,
    ) -> Pass {
        let mut pass = Pass {
            topics: Vec::with_capacity(requested.len()),
            slices: Vec::new(),
            bytes: 0,
            errored: false,
        };
        for (name, parts) in requested {
            // Checked and looked up once per topic and pass, not per partition.
            let topic = if self.may_topic(client, Operation::Read, &name.0) {
                self.broker
                    .existing_topic(&name.0)
                    .map_err(|e| broker_error_code(&e))
            } else {
                Err(ec::TOPIC_AUTHORIZATION_FAILED)
            };
            let partitions = parts
                .iter()
                .map(|p| {
                    let ask = Ask {
                        v,
                        max_bytes,
                        isolation,
                    };
                    self.fetch_partition(ask, &name.0, topic.as_deref(), p, &mut pass)
                })
                .collect();
            pass.topics.push(
                FetchableTopicResponse::default()
                    .with_topic(name.clone())
                    .with_partitions(partitions),
            );
        }
        pass
    }

    fn fetch_partition(
        &self,
        ask: Ask,
        name: &str,
        topic: Result<&Topic, &i16>,
        p: &FetchPartition,
        pass: &mut Pass,
    ) -> PartitionData {
        let Ask {
            v,
            max_bytes,
            isolation,
        } = ask;
        let mut data = PartitionData::default()
            .with_partition_index(p.partition)
            .with_records(Some(Bytes::new()));
        let topic = match topic {
            Ok(t) => t,
            Err(code) => {
                data.error_code = *code;
                data.high_watermark = -1;
                data.last_stable_offset = -1;
                pass.errored = true;
                pass.slices.push(None);
                return data;
            }
        };
        let remaining = max_bytes.saturating_sub(pass.bytes);
        let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
        // The first batch of a response may exceed the limits (so a consumer can always make
        // progress); later partitions must fit.
        let limit = if pass.bytes == 0 {
            ReadLimit::AtLeastOneBatch(limit)
        } else {
            ReadLimit::Within(limit)
        };
        let read = if remaining == 0 && pass.bytes > 0 {
            Ok(None)
        } else {
            self.broker
                .read_topic_slice(topic, p.partition, p.fetch_offset, limit, isolation)
                .map(Some)
        };
        let (start, hw, stable) = match &read {
            Ok(Some(r)) => (r.log_start_offset, r.high_watermark, r.last_stable_offset),
            _ => {
                let (start, hw) = topic.offsets(p.partition).unwrap_or((-1, -1));
                (start, hw, hw)
            }
        };
        data.high_watermark = hw;
        data.last_stable_offset = stable;
        if v >= 5 {
            data.log_start_offset = start;
        }
        if isolation == Isolation::ReadCommitted {
            let aborted = match &read {
                Ok(Some(r)) => r.aborted.iter().map(aborted_transaction).collect(),
                _ => Vec::new(),
            };
            data.aborted_transactions = Some(aborted);
        }
        let mut slice = None;
        match read.and_then(|r| inline_small(r.map(|r| r.slice).unwrap_or_default())) {
            Ok(Records::File(s)) => {
                pass.bytes += usize::try_from(s.len()).unwrap_or(usize::MAX);
                data.records = None;
                slice = Some(s);
            }
            Ok(Records::Inline(bytes)) => {
                pass.bytes += bytes.len();
                data.records = Some(bytes);
            }
            Err(e) => {
                if !matches!(e, BrokerError::Log(LogError::OffsetOutOfRange { .. })) {
                    tracing::warn!(topic = name, partition = p.partition, error = %e, "Fetch read failed");
                }
                data.error_code = broker_error_code(&e);
                pass.errored = true;
            }
        }
        pass.slices.push(slice);
        data
    }

    pub(super) fn list_offsets(
        &self,
        v: i16,
        r: ListOffsetsRequest,
        client: &ClientInfo,
    ) -> ListOffsetsResponse {
        let topics = r
            .topics
            .into_iter()
            .map(|t| {
                let allowed = self.may_topic(client, Operation::Describe, &t.name.0);
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| match allowed {
                        true => {
                            self.list_offset(v, &t.name.0, p.partition_index, p.timestamp, r.isolation_level)
                        }
                        false => ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ec::TOPIC_AUTHORIZATION_FAILED),
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }

    fn list_offset(
        &self,
        v: i16,
        topic: &str,
        partition: i32,
        timestamp: i64,
        isolation_level: i8,
    ) -> ListOffsetsPartitionResponse {
        let mut resp = ListOffsetsPartitionResponse::default().with_partition_index(partition);
        let Some(info) = self.broker.topic(topic).and_then(|t| t.partition_info(partition)) else {
            resp.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION;
            return resp;
        };
        if v >= 4 {
            resp.leader_epoch = 0;
        }
        let latest = match isolation_of(isolation_level) {
            Isolation::ReadCommitted => info.last_stable_offset,
            Isolation::ReadUncommitted => info.high_watermark,
        };
        let found = match timestamp {
            EARLIEST => Ok(Some((info.log_start_offset, -1))),
            LATEST => Ok(Some((latest, -1))),
            MAX_TIMESTAMP => self.broker.max_timestamp_offset(topic, partition).map(pair),
            ts => self.broker.offset_for_timestamp(topic, partition, ts).map(pair),
        };
        match found {
            Ok(Some((offset, ts))) => {
                resp.offset = offset;
                resp.timestamp = ts;
            }
            Ok(None) => resp.offset = -1,
            Err(e) => {
                tracing::error!(topic, partition, error = %e, "Offset lookup by timestamp failed");
                resp.error_code = broker_error_code(&e);
            }
        }
        resp
    }
}

/// What one partition of a Fetch asks beyond its own fields.
#[derive(Clone, Copy)]
struct Ask {
    v: i16,
    max_bytes: usize,
    isolation: Isolation,
}

/// Kafka's `isolation_level`: 1 is read_committed, anything else read_uncommitted.
fn isolation_of(level: i8) -> Isolation {
    match level {
        1 => Isolation::ReadCommitted,
        _ => Isolation::ReadUncommitted,
    }
}

fn aborted_transaction(a: &AbortedTxn) -> AbortedTransaction {
    AbortedTransaction::default()
        .with_producer_id(ProducerId(a.producer_id))
        .with_first_offset(a.first_offset)
}

fn pair(found: Option<TimestampOffset>) -> Option<(i64, i64)> {
    found.map(|f| (f.offset, f.timestamp_ms))
}
