//! Fetch (a long poll woken by the broker's data watch) and ListOffsets.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use rivulet_broker::{BrokerError, LogError, ReadLimit, TimestampOffset, Topic, Woke};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::codes::broker_error_code;
use super::Handler;
use crate::errors as ec;

/// ListOffsets' special timestamps.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;

/// What one pass over the requested partitions produced.
struct Pass {
    topics: Vec<FetchableTopicResponse>,
    bytes: usize,
    errored: bool,
}

impl Handler {
    pub(super) async fn fetch(
        &self,
        v: i16,
        r: FetchRequest,
    ) -> (FetchResponse, Option<OwnedSemaphorePermit>) {
        let wait_ms = (r.max_wait_ms.max(0) as u64).min(self.config.fetch_wait_ms_max);
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        let min_bytes = r.min_bytes.max(0) as usize;
        let max_bytes = (r.max_bytes.max(0) as usize).min(self.config.fetch_bytes_max);
        let requested: Vec<(TopicName, Vec<FetchPartition>)> =
            r.topics.into_iter().map(|t| (t.topic, t.partitions)).collect();
        // Watching starts before the first read, so an append in between is not missed.
        let mut watch = self.broker.watch(
            requested
                .iter()
                .flat_map(|(name, parts)| parts.iter().map(move |p| (&*name.0, p.partition))),
        );
        let mut shutdown = self.shutdown.clone();
        loop {
            // Reserve memory for the largest response before reading; give back what the
            // read did not use. Under memory pressure this waits (backpressure).
            let permits = u32::try_from(max_bytes).unwrap_or(u32::MAX);
            let Ok(mut reservation) = self.fetch_memory.clone().acquire_many_owned(permits).await else {
                return (FetchResponse::default(), None);
            };
            let pass = self.fetch_once(v, &requested, max_bytes);
            let done =
                pass.bytes >= min_bytes || pass.errored || Instant::now() >= deadline || *shutdown.borrow();
            if done {
                let unused = reservation.num_permits().saturating_sub(pass.bytes);
                drop(reservation.split(unused));
                return (
                    FetchResponse::default().with_responses(pass.topics),
                    Some(reservation),
                );
            }
            drop(reservation);
            let woke = tokio::select! {
                woke = watch.wait(deadline) => woke,
                _ = shutdown.changed() => Woke::ShuttingDown,
            };
            tracing::trace!(?woke, "Fetch woke");
        }
    }

    fn fetch_once(&self, v: i16, requested: &[(TopicName, Vec<FetchPartition>)], max_bytes: usize) -> Pass {
        let mut pass = Pass {
            topics: Vec::with_capacity(requested.len()),
            bytes: 0,
            errored: false,
        };
        for (name, parts) in requested {
            // Looked up once per topic and pass, not per partition.
            let topic = self.broker.existing_topic(&name.0);
            let partitions = parts
                .iter()
                .map(|p| self.fetch_partition(v, &name.0, topic.as_deref(), p, max_bytes, &mut pass))
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
        v: i16,
        name: &str,
        topic: Result<&Topic, &BrokerError>,
        p: &FetchPartition,
        max_bytes: usize,
        pass: &mut Pass,
    ) -> PartitionData {
        let mut data = PartitionData::default()
            .with_partition_index(p.partition)
            .with_records(Some(Bytes::new()));
        let topic = match topic {
            Ok(t) => t,
            Err(e) => {
                data.error_code = broker_error_code(e);
                data.high_watermark = -1;
                data.last_stable_offset = -1;
                pass.errored = true;
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
                .read_topic(topic, p.partition, p.fetch_offset, limit)
                .map(Some)
        };
        let (start, hw) = match &read {
            Ok(Some(r)) => (r.log_start_offset, r.high_watermark),
            _ => topic.offsets(p.partition).unwrap_or((-1, -1)),
        };
        data.high_watermark = hw;
        data.last_stable_offset = hw;
        if v >= 5 {
            data.log_start_offset = start;
        }
        match read {
            Ok(Some(read)) => {
                pass.bytes += read.records.len();
                data.records = Some(read.records);
            }
            Ok(None) => {}
            Err(e) => {
                if !matches!(e, BrokerError::Log(LogError::OffsetOutOfRange { .. })) {
                    tracing::warn!(topic = name, partition = p.partition, error = %e, "Fetch read failed");
                }
                data.error_code = broker_error_code(&e);
                pass.errored = true;
            }
        }
        data
    }

    pub(super) fn list_offsets(&self, v: i16, r: ListOffsetsRequest) -> ListOffsetsResponse {
        let topics = r
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| self.list_offset(v, &t.name.0, p.partition_index, p.timestamp))
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
    ) -> ListOffsetsPartitionResponse {
        let mut resp = ListOffsetsPartitionResponse::default().with_partition_index(partition);
        let Some(info) = self.broker.topic(topic).and_then(|t| t.partition_info(partition)) else {
            resp.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION;
            return resp;
        };
        if v >= 4 {
            resp.leader_epoch = 0;
        }
        let found = match timestamp {
            EARLIEST => Ok(Some((info.log_start_offset, -1))),
            LATEST => Ok(Some((info.high_watermark, -1))),
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

fn pair(found: Option<TimestampOffset>) -> Option<(i64, i64)> {
    found.map(|f| (f.offset, f.timestamp_ms))
}
