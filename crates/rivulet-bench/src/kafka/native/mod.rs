//! The native Kafka client (`--client native`): a minimal producer and consumer written on
//! the `kafka-protocol` crate, for workloads where librdkafka itself is the bottleneck (its
//! broker thread visits every partition it knows on every wake-up, so with thousands of
//! partitions the load generator, not the broker, saturates).
//!
//! The producer sends every due record in one Produce request (one uncompressed batch per
//! partition, `acks=all`), then lingers (`--linger-ms`, as librdkafka's `linger.ms`) before
//! gathering the next; at most [`IN_FLIGHT_REQUESTS_MAX`] requests are in flight on one
//! connection, and each record is acknowledged from its response. The consumer fetches its
//! partitions directly (no group) from offset 0 with `min_bytes=1`. Both talk to the first
//! bootstrap address only: meant for single-node brokers.

mod batch;
mod wire;

pub use wire::request_once;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use crate::ctx::{ConsumerCtx, ProducerCtx};
use crate::error::{err, Result};
use crate::report::CatchUp;
use crate::workload::AckSink;

/// Produce requests one producer keeps in flight.
pub const IN_FLIGHT_REQUESTS_MAX: usize = 5;
/// Records one Produce request carries at most (max rate).
const REQUEST_RECORDS_MAX: usize = 1_000;
/// Produce and Fetch versions used.
const PRODUCE_VERSION: i16 = 8;
const FETCH_VERSION: i16 = 11;
/// Fetch settings.
const FETCH_WAIT_MS: i32 = 500;
const FETCH_BYTES_MAX: i32 = 50 << 20;
const PARTITION_FETCH_BYTES_MAX: i32 = 1 << 20;

/// A topic and partition of the run.
pub type TopicPartition = (String, i32);

/// The records of one request in flight: per partition, the intended send times.
type InFlight = Vec<(usize, Vec<u64>)>;

async fn connect(brokers: &str) -> Result<TcpStream> {
    let first = brokers.split(',').next().unwrap_or(brokers).trim();
    let stream = TcpStream::connect(first)
        .await
        .map_err(|e| err!("connecting to {first}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Sends records until the run's sending time is over, then waits for every response.
pub(super) async fn produce(
    brokers: &str,
    tps: Arc<Vec<TopicPartition>>,
    linger: Duration,
    mut ctx: ProducerCtx,
) -> Result<()> {
    let (reader, mut writer) = connect(brokers).await?.into_split();
    let permits = Arc::new(Semaphore::new(IN_FLIGHT_REQUESTS_MAX));
    let (tx, rx) = mpsc::unbounded_channel::<(i32, InFlight)>();
    let acks = ctx.acks();
    let reader_permits = permits.clone();
    let tps_reader = tps.clone();
    let responses = tokio::spawn(async move {
        let result = read_produce_responses(tps_reader, reader, rx, acks, reader_permits.clone()).await;
        // A reader that stopped (the broker went away) wakes a producer waiting for a permit.
        reader_permits.close();
        result
    });
    let mut buf = ctx.record_buffer();
    let mut correlation_id = 0i32;
    let mut next = ctx.index();
    // Each pass sends one request or sleeps until the next slot.
    loop {
        let now = ctx.now_ns();
        let mut records: BTreeMap<usize, (Vec<u64>, Vec<u8>)> = BTreeMap::new();
        let mut taken = 0;
        while taken < REQUEST_RECORDS_MAX {
            let Some(intended) = ctx.take_due(&mut buf, now) else {
                break;
            };
            let entry = records.entry(next % tps.len()).or_default();
            entry.0.push(intended);
            entry.1.extend_from_slice(&buf);
            next += 1;
            taken += 1;
        }
        if records.is_empty() {
            match ctx.next_slot_ns() {
                None => break,
                Some(slot) => {
                    let wait = slot.saturating_sub(ctx.now_ns());
                    tokio::time::sleep(Duration::from_nanos(wait.max(100_000))).await;
                    continue;
                }
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        permit.forget();
        correlation_id = correlation_id.wrapping_add(1);
        let (frame, in_flight) = produce_request(&tps, records, ctx.record_size(), correlation_id)?;
        if tx.send((correlation_id, in_flight)).is_err()
            || wire::write_frame(&mut writer, &frame).await.is_err()
        {
            break;
        }
        if !linger.is_zero() {
            tokio::time::sleep(linger).await;
        }
    }
    drop(tx);
    // The reader's result says whether every request was answered: after a failed write
    // or a closed permit pool it reports why.
    responses
        .await
        .map_err(|e| err!("the response reader failed: {e}"))?
}

fn produce_request(
    tps: &[TopicPartition],
    records: BTreeMap<usize, (Vec<u64>, Vec<u8>)>,
    record_size: usize,
    correlation_id: i32,
) -> Result<(Bytes, InFlight)> {
    let mut topics: BTreeMap<&str, Vec<PartitionProduceData>> = BTreeMap::new();
    let mut in_flight = Vec::with_capacity(records.len());
    for (tp, (intended, payloads)) in records {
        let values: Vec<&[u8]> = payloads.chunks(record_size).collect();
        let mut bytes = Vec::with_capacity(payloads.len() + 64 + values.len() * 8);
        batch::encode(&mut bytes, &values, now_ms());
        let (topic, partition) = &tps[tp];
        topics.entry(topic).or_default().push(
            PartitionProduceData::default()
                .with_index(*partition)
                .with_records(Some(Bytes::from(bytes))),
        );
        in_flight.push((tp, intended));
    }
    let topic_data = topics
        .into_iter()
        .map(|(name, partitions)| {
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_partition_data(partitions)
        })
        .collect();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(topic_data);
    Ok((
        wire::encode(&request, PRODUCE_VERSION, correlation_id)?,
        in_flight,
    ))
}

async fn read_produce_responses(
    tps: Arc<Vec<TopicPartition>>,
    mut reader: impl AsyncRead + Unpin,
    mut rx: mpsc::UnboundedReceiver<(i32, InFlight)>,
    acks: Arc<AckSink>,
    permits: Arc<Semaphore>,
) -> Result<()> {
    let mut waiting: VecDeque<(i32, InFlight)> = VecDeque::new();
    // Each pass answers one request; ends when the producer is done and nothing waits.
    loop {
        while let Ok(entry) = rx.try_recv() {
            waiting.push_back(entry);
        }
        if waiting.is_empty() {
            match rx.recv().await {
                Some(entry) => waiting.push_back(entry),
                None => return Ok(()),
            }
        }
        let frame = wire::read_frame(&mut reader)
            .await?
            .ok_or_else(|| err!("the broker closed the connection"))?;
        let (correlation_id, response) = wire::decode::<ProduceRequest>(frame, PRODUCE_VERSION)?;
        let Some((expected, in_flight)) = waiting.pop_front() else {
            return Err(err!("a response nobody asked for"));
        };
        if expected != correlation_id {
            return Err(err!("response {correlation_id} where {expected} was due"));
        }
        let failed: Vec<(String, i32)> = response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(move |p| (t, p)))
            .filter(|(_, p)| p.error_code != 0)
            .map(|(t, p)| (t.name.0.to_string(), p.index))
            .collect();
        for (tp, intended) in in_flight {
            let refused = failed.contains(&tps[tp]);
            for t in intended {
                if refused {
                    acks.failed();
                } else {
                    acks.acked(t);
                }
            }
        }
        permits.add_permits(1);
    }
}

/// An incremental fetch session (KIP-227) as a client keeps it: after a full fetch that
/// opens it, requests carry only the partitions whose position moved.
#[derive(Debug, Default)]
struct Session {
    /// 0 while there is none (the next request is a full fetch that asks for one).
    id: i32,
    epoch: i32,
    /// Each partition's offset as the broker last heard it.
    sent: Vec<Option<i64>>,
}

impl Session {
    /// The partitions the next request must carry.
    fn changed(&self, offsets: &[i64]) -> Vec<usize> {
        (0..offsets.len())
            .filter(|&i| self.id == 0 || self.sent.get(i).copied().flatten() != Some(offsets[i]))
            .collect()
    }

    /// Takes in the broker's answer to a request that carried `carried` at `offsets`.
    fn answered(&mut self, error_code: i16, session_id: i32, carried: &[usize], offsets: &[i64]) {
        if error_code != 0 || session_id == 0 {
            // Not found, a wrong epoch, or no session granted: full fetches from here.
            *self = Session::default();
            return;
        }
        if self.id != session_id {
            self.id = session_id;
            self.epoch = 0;
            self.sent = vec![None; offsets.len()];
        }
        self.epoch = if self.epoch == i32::MAX { 1 } else { self.epoch + 1 };
        for &i in carried {
            self.sent[i] = Some(offsets[i]);
        }
    }
}

/// Fetches `tps` from offset 0 and hands every value to `ctx` until it stops, in an
/// incremental fetch session when the broker grants one.
pub(super) async fn consume(brokers: &str, tps: Vec<TopicPartition>, mut ctx: ConsumerCtx) -> Result<()> {
    let mut stream = connect(brokers).await?;
    ctx.owns(tps.len());
    let mut offsets: Vec<i64> = vec![0; tps.len()];
    let index: BTreeMap<(&str, i32), usize> = tps
        .iter()
        .enumerate()
        .map(|(i, (t, p))| ((t.as_str(), *p), i))
        .collect();
    let mut session = Session::default();
    let mut correlation_id = 0i32;
    while !ctx.stopped() {
        correlation_id = correlation_id.wrapping_add(1);
        let carried = session.changed(&offsets);
        let request = fetch_request_of(&tps, &offsets, &carried)
            .with_session_id(session.id)
            .with_session_epoch(session.epoch);
        wire::write_frame(
            &mut stream,
            &wire::encode(&request, FETCH_VERSION, correlation_id)?,
        )
        .await?;
        let frame = tokio::select! {
            frame = wire::read_frame(&mut stream) => frame?.ok_or_else(|| err!("the broker closed the connection"))?,
            _ = ctx.wait_stopped() => break,
        };
        let (_, response) = wire::decode::<FetchRequest>(frame, FETCH_VERSION)?;
        session.answered(response.error_code, response.session_id, &carried, &offsets);
        for topic in &response.responses {
            for p in &topic.partitions {
                let Some(&i) = index.get(&(&*topic.topic.0, p.partition_index)) else {
                    continue;
                };
                let Some(records) = p.records.as_ref().filter(|r| !r.is_empty()) else {
                    continue;
                };
                match batch::for_each_value(records, offsets[i], |v| ctx.received(v)) {
                    Some(next) => offsets[i] = next,
                    None => ctx.error(),
                }
            }
        }
    }
    Ok(())
}

/// Bytes a catch-up fetch asks for per partition and in all.
const CATCH_UP_PARTITION_BYTES_MAX: i32 = 16 << 20;
const CATCH_UP_FETCH_BYTES_MAX: i32 = 64 << 20;

/// Reads `tps` from offset 0 up to the high watermarks the first response reports, as fast
/// as the broker answers, counting record-batch bytes and records.
pub(super) async fn catch_up(brokers: &str, tps: &[TopicPartition]) -> Result<CatchUp> {
    let mut stream = connect(brokers).await?;
    let index: BTreeMap<(&str, i32), usize> = tps
        .iter()
        .enumerate()
        .map(|(i, (t, p))| ((t.as_str(), *p), i))
        .collect();
    let mut offsets: Vec<i64> = vec![0; tps.len()];
    let mut ends: Vec<Option<i64>> = vec![None; tps.len()];
    let (mut bytes, mut records) = (0u64, 0u64);
    let started = std::time::Instant::now();
    let mut correlation_id = 0i32;
    // Each pass is one fetch; ends when every partition reached its end (bounded by them).
    while ends
        .iter()
        .zip(&offsets)
        .any(|(end, at)| end.is_none_or(|e| *at < e))
    {
        correlation_id = correlation_id.wrapping_add(1);
        let request = fetch_request(tps, &offsets)
            .with_max_bytes(CATCH_UP_FETCH_BYTES_MAX)
            .with_max_wait_ms(0);
        let mut request = request;
        for t in &mut request.topics {
            for p in &mut t.partitions {
                p.partition_max_bytes = CATCH_UP_PARTITION_BYTES_MAX;
            }
        }
        wire::write_frame(
            &mut stream,
            &wire::encode(&request, FETCH_VERSION, correlation_id)?,
        )
        .await?;
        let frame = wire::read_frame(&mut stream)
            .await?
            .ok_or_else(|| err!("the broker closed the connection"))?;
        let (_, response) = wire::decode::<FetchRequest>(frame, FETCH_VERSION)?;
        for topic in &response.responses {
            for p in &topic.partitions {
                let Some(&i) = index.get(&(&*topic.topic.0, p.partition_index)) else {
                    continue;
                };
                if p.error_code != 0 {
                    return Err(err!(
                        "catch-up fetch of {}/{}: error {}",
                        topic.topic.0.as_str(),
                        p.partition_index,
                        p.error_code
                    ));
                }
                ends[i].get_or_insert(p.high_watermark);
                let Some(data) = p.records.as_ref().filter(|r| !r.is_empty()) else {
                    continue;
                };
                let mut n = 0u64;
                let next = batch::for_each_value(data, offsets[i], |_| n += 1).ok_or_else(|| {
                    err!(
                        "an undecodable batch in {}/{}",
                        topic.topic.0.as_str(),
                        p.partition_index
                    )
                })?;
                bytes += data.len() as u64;
                records += n;
                offsets[i] = next;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(CatchUp {
        bytes,
        records,
        secs,
        mb_per_sec: bytes as f64 / 1e6 / secs.max(1e-9),
    })
}

fn fetch_request(tps: &[TopicPartition], offsets: &[i64]) -> FetchRequest {
    let all: Vec<usize> = (0..tps.len()).collect();
    fetch_request_of(tps, offsets, &all)
}

/// A fetch of the partitions `which` (indexes into `tps`, ascending).
fn fetch_request_of(tps: &[TopicPartition], offsets: &[i64], which: &[usize]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (&i, (topic, partition)) in which.iter().map(|i| (i, &tps[*i])) {
        let offset = &offsets[i];
        if topics.last().is_none_or(|t| *t.topic.0 != **topic) {
            topics.push(FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.clone()))));
        }
        if let Some(t) = topics.last_mut() {
            t.partitions.push(
                FetchPartition::default()
                    .with_partition(*partition)
                    .with_fetch_offset(*offset)
                    .with_partition_max_bytes(PARTITION_FETCH_BYTES_MAX),
            );
        }
    }
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES_MAX)
        .with_session_epoch(-1)
        .with_topics(topics)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
