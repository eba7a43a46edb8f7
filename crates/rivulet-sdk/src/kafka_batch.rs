//! Publishing many records through librdkafka without a future per record: each batch
//! counts its deliveries down (the producer's own thread serves the reports) and its
//! caller waits once for all of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};

use crate::error::{Result, SdkError};
use crate::transport::OutRecord;

/// How long enqueueing waits for room in librdkafka's queue before the batch fails.
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(30);

/// One batch's records in flight and its first delivery failure.
#[derive(Default)]
pub(crate) struct InFlight {
    outstanding: AtomicU64,
    drained: (Mutex<()>, Condvar),
    failed: Mutex<Option<String>>,
}

impl InFlight {
    fn delivered(&self, failure: Option<String>) {
        if let Some(reason) = failure {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert(reason);
        }
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _guard = self.drained.0.lock().unwrap_or_else(|p| p.into_inner());
            self.drained.1.notify_all();
        }
    }

    /// Waits until every record enqueued is delivered or failed; an error names the first
    /// failure.
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &self.drained;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded by the deadline; the short wait covers a wake-up between load and wait.
        while self.outstanding.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return Err(SdkError::Timeout("waiting for deliveries".into()));
            }
            guard = cv
                .wait_timeout(guard, Duration::from_millis(5))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(guard);
        match self.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(reason) => Err(SdkError::Delivery(reason)),
            None => Ok(()),
        }
    }
}

/// Routes each delivery report to its batch.
pub(crate) struct BatchContext;

impl ClientContext for BatchContext {}

impl ProducerContext for BatchContext {
    type DeliveryOpaque = Arc<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<InFlight>) {
        batch.delivered(result.as_ref().err().map(|(e, _)| e.to_string()));
    }
}

/// A producer whose batches are tracked as [`InFlight`].
pub(crate) type BatchProducer = ThreadedProducer<BatchContext>;

/// Sets a librdkafka record's headers, key, payload and partition from an [`OutRecord`]
/// (`FutureRecord` and `BaseRecord` have the same builder methods but no common trait).
macro_rules! fill_record {
    ($rec:ident, $r:expr) => {
        if let Some(headers) = $crate::kafka_batch::headers_of($r) {
            $rec = $rec.headers(headers);
        }
        if let Some(k) = &$r.key {
            $rec = $rec.key(k.as_slice());
        }
        if let Some(v) = &$r.value {
            $rec = $rec.payload(v.as_slice());
        }
        if let Some(p) = $r.partition {
            $rec = $rec.partition(p);
        }
    };
}
pub(crate) use fill_record;

/// A record's headers for librdkafka: a header list is a C allocation per record, so only
/// for records that have headers.
pub(crate) fn headers_of(r: &OutRecord) -> Option<OwnedHeaders> {
    if r.headers.is_empty() {
        return None;
    }
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        headers = headers.insert(rdkafka::message::Header {
            key: k.as_str(),
            value: Some(v.as_slice()),
        });
    }
    Some(headers)
}

/// Enqueues `records` for `topic` as part of `batch`, waiting while the queue is full.
/// Blocks: call it on a blocking thread.
pub(crate) fn enqueue(
    producer: &BatchProducer,
    topic: &str,
    records: &[OutRecord],
    batch: &Arc<InFlight>,
) -> Result<()> {
    for r in records {
        let mut rec: BaseRecord<'_, [u8], [u8], Arc<InFlight>> =
            BaseRecord::with_opaque_to(topic, batch.clone());
        fill_record!(rec, r);
        let deadline = Instant::now() + QUEUE_FULL_WAIT;
        batch.outstanding.fetch_add(1, Ordering::AcqRel);
        // Bounded by the deadline.
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    batch.outstanding.fetch_sub(1, Ordering::AcqRel);
                    return Err(e.into());
                }
            }
        }
    }
    Ok(())
}
