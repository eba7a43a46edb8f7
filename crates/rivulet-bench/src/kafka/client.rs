//! The librdkafka side of the Kafka driver, on blocking threads: a `ThreadedProducer` per
//! producer whose delivery reports feed the [`AckSink`] on librdkafka's own polling thread,
//! and a `BaseConsumer` per consumer polled in a loop.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::Message;

use super::conn::KafkaConn;
use crate::ctx::{ConsumerCtx, ProducerCtx};
use crate::error::{bail, err, Result};
use crate::run::FLUSH_SECS_MAX;
use crate::workload::{read_header, AckSink};

/// How long one consumer poll waits before the loop checks for the stop again.
const POLL_MS: u64 = 100;

/// Producer context: records publish latency from delivery reports, which the producer's own
/// polling thread delivers as soon as librdkafka has them.
struct DeliveryContext {
    run_id: u64,
    acks: Arc<AckSink>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(message) => {
                if let Some((intended, run_id)) = message.payload().and_then(read_header) {
                    if run_id == self.run_id {
                        self.acks.acked(intended);
                    }
                }
            }
            Err(_) => self.acks.failed(),
        }
    }
}

/// How long a transactional call (init, commit) may take.
const TXN_CALL_SECS: u64 = 60;

/// Sends records to `ctx`'s topic until the window ends (as fast as possible, or on the
/// fixed-rate schedule), then flushes. With `transaction_records`, the producer is
/// transactional and commits every that many records. Blocks: runs on a blocking thread.
pub(super) fn produce(
    config: &ClientConfig,
    transaction_records: Option<usize>,
    mut ctx: ProducerCtx,
) -> Result<()> {
    let context = DeliveryContext {
        run_id: ctx.run_id(),
        acks: ctx.acks(),
    };
    let producer: ThreadedProducer<DeliveryContext> = config
        .create_with_context(context)
        .map_err(|e| err!("cannot create a Kafka producer: {e}"))?;
    let topics: Vec<String> = ctx.destinations().to_vec();
    if topics.is_empty() {
        bail!("no topic to produce to");
    }
    let txn_call = Duration::from_secs(TXN_CALL_SECS);
    if transaction_records.is_some() {
        producer
            .init_transactions(txn_call)
            .and_then(|()| producer.begin_transaction())
            .map_err(|e| err!("starting a transaction: {e}"))?;
    }
    let mut in_txn = 0usize;
    let mut buf = ctx.record_buffer();
    while ctx.next_record_blocking(&mut buf).is_some() {
        if let Some(every) = transaction_records {
            if in_txn == every {
                wait_delivered(&producer, &ctx)?;
                producer
                    .commit_transaction(txn_call)
                    .and_then(|()| producer.begin_transaction())
                    .map_err(|e| err!("committing a transaction: {e}"))?;
                in_txn = 0;
            }
            in_txn += 1;
        }
        // Round robin over the topics (one topic: always it).
        let topic = &topics[ctx.next_destination() % topics.len()];
        loop {
            match producer.send(BaseRecord::<(), [u8]>::to(topic).payload(&buf[..])) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    thread::sleep(Duration::from_millis(1));
                    if ctx.past_flush_deadline() {
                        bail!("the producer queue stayed full for {FLUSH_SECS_MAX} s after the run");
                    }
                }
                Err((e, _)) => bail!("producing to {topic}: {e}"),
            }
        }
    }
    if transaction_records.is_some() {
        wait_delivered(&producer, &ctx)?;
        producer
            .commit_transaction(Duration::from_secs(FLUSH_SECS_MAX))
            .map_err(|e| err!("committing the last transaction: {e}"))?;
    }
    producer.flush(Duration::from_secs(FLUSH_SECS_MAX)).map_err(|e| {
        err!(
            "flushing the producer: {e} ({} records undelivered after {FLUSH_SECS_MAX} s)",
            producer.in_flight_count()
        )
    })
}

/// Waits until every record sent is delivered, served by the producer's polling thread.
/// rust-rdkafka's `commit_transaction` flushes first, and its flush polls in steps of up
/// to 100 ms that the polling thread's events do not end early; with nothing left in
/// flight that flush returns at once.
fn wait_delivered(producer: &ThreadedProducer<DeliveryContext>, ctx: &ProducerCtx) -> Result<()> {
    // Each pass sleeps 100 us; bounded by the flush deadline.
    while producer.in_flight_count() > 0 {
        if ctx.past_flush_deadline() {
            bail!("records stayed undelivered for {FLUSH_SECS_MAX} s");
        }
        thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

/// Subscribes to `ctx`'s topic in its group and hands every record to `ctx` until it stops;
/// reports the partitions assigned to it until producing starts. Blocks: runs on a blocking
/// thread.
pub(super) fn consume(conn: &KafkaConn, config: &ClientConfig, mut ctx: ConsumerCtx) -> Result<()> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| err!("cannot create a Kafka consumer: {e}"))?;
    let topics: Vec<&str> = ctx.destinations().iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| conn.error(e, "subscribing"))?;
    while !ctx.stopped() {
        if !ctx.producing() {
            ctx.owns(consumer.assignment().map(|a| a.count()).unwrap_or(0));
        }
        match consumer.poll(Duration::from_millis(POLL_MS)) {
            None => {}
            Some(Err(_)) => ctx.error(),
            Some(Ok(message)) => ctx.received(message.payload().unwrap_or_default()),
        }
    }
    consumer.unsubscribe();
    Ok(())
}
