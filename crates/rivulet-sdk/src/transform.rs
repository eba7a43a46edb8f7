//! Exactly-once consume-transform-produce: each polled batch of input events is handled,
//! and the outputs are published together with the input offsets in one Kafka transaction.
//! A crash at any point leaves either the whole batch (outputs and offsets) or none of it,
//! so read_committed readers of the outputs see every input's outputs exactly once.
//!
//! Over the Kafka transport this is librdkafka's transactional producer with
//! `send_offsets_to_transaction`; embedded, the broker's transaction coordinator directly.

use std::collections::{BTreeMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dlq;
use crate::error::{HandlerError, Result, SdkError};
use crate::event::{Event, Received};
use crate::progress::Progress;
use crate::subscriber::SubscribeOptions;
use crate::transport::{
    GroupMember, InRecord, MemberSettings, OutRecord, Polled, TopicPartition, TopicSpec, Transport,
    TxnProducer,
};

/// A record a transformation emits: its topic and the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Destination topic.
    pub topic: String,
    /// The record.
    pub record: OutRecord,
}

impl Output {
    /// An event for `topic`; `key` picks the partition.
    pub fn event<T: Serialize>(topic: &str, key: Option<&str>, event: &Event<T>) -> Result<Output> {
        Ok(Output {
            topic: topic.to_string(),
            record: event.to_record(key)?,
        })
    }
}

/// Turns one input event into output records. Retried with backoff on a transient error;
/// dead-lettered (in the same transaction) after the last attempt or a permanent error.
pub trait Transformer: Send + Sync + 'static {
    /// Transforms one event.
    fn transform(&self, event: Received) -> BoxFuture<'static, Result<Vec<Output>, HandlerError>>;
}

impl<F, Fut> Transformer for F
where
    F: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Vec<Output>, HandlerError>> + Send + 'static,
{
    fn transform(&self, event: Received) -> BoxFuture<'static, Result<Vec<Output>, HandlerError>> {
        Box::pin(self(event))
    }
}

/// Counters of a running transformation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransformStats {
    /// Transactions committed.
    pub transactions: u64,
    /// Input events whose outputs were committed.
    pub transformed: u64,
    /// Input events dead-lettered.
    pub dead_lettered: u64,
    /// Transformer retries.
    pub retries: u64,
    /// Transactions that failed and whose batch was consumed again.
    pub failed_transactions: u64,
}

#[derive(Debug, Default)]
struct Counters {
    transactions: AtomicU64,
    transformed: AtomicU64,
    dead_lettered: AtomicU64,
    retries: AtomicU64,
    failed_transactions: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> TransformStats {
        TransformStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            transformed: self.transformed.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failed_transactions: self.failed_transactions.load(Ordering::Relaxed),
        }
    }
}

/// A running transformation; stop it with [`Transform::shutdown`]. Dropping it stops it
/// abruptly, like a crash: the open transaction is aborted and its batch consumed again.
#[derive(Debug)]
pub struct Transform {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<()>>>,
    counters: Arc<Counters>,
}

impl Transform {
    /// The counters so far.
    pub fn stats(&self) -> TransformStats {
        self.counters.snapshot()
    }

    /// Finishes the batch in hand, leaves the group and returns the counters.
    pub async fn shutdown(mut self) -> Result<TransformStats> {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            task.await
                .map_err(|e| SdkError::Config(format!("transform task failed: {e}")))??;
        }
        Ok(self.counters.snapshot())
    }
}

impl Drop for Transform {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What the loop shares.
struct Shared {
    transport: Arc<dyn Transport>,
    transactional_id: String,
    group: String,
    options: SubscribeOptions,
    transformer: Box<dyn Transformer>,
    counters: Arc<Counters>,
    /// Partitions of output topics created on first use.
    partitions: i32,
}

/// Starts a transformation (called by [`crate::Client::transform`]).
pub(crate) async fn start(
    transport: Arc<dyn Transport>,
    group: &str,
    topics: Vec<String>,
    transactional_id: &str,
    options: SubscribeOptions,
    transformer: Box<dyn Transformer>,
    partitions: i32,
) -> Result<Transform> {
    options.validate()?;
    let settings = MemberSettings {
        poll_records_max: options.poll_records_max,
        revoke_wait: options.revoke_wait,
        session_timeout: options.session_timeout,
    };
    // Nothing is dispatched through this progress, so a rebalance commits nothing outside
    // a transaction.
    let member = transport
        .join(group, topics, Arc::new(Progress::new()), settings)
        .await?;
    let producer = transport.transactional(transactional_id).await?;
    let counters = Arc::new(Counters::default());
    let shared = Shared {
        transport,
        transactional_id: transactional_id.to_string(),
        group: group.to_string(),
        options,
        transformer,
        counters: counters.clone(),
        partitions,
    };
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(shared, member, producer, stop_rx));
    Ok(Transform {
        stop,
        task: Some(task),
        counters,
    })
}

/// How long one poll waits before the loop checks for the stop.
const POLL_WAIT: Duration = Duration::from_millis(200);

async fn run(
    shared: Shared,
    mut member: Box<dyn GroupMember>,
    mut producer: Box<dyn TxnProducer>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut assigned: HashSet<TopicPartition> = HashSet::new();
    let mut ensured: HashSet<String> = HashSet::new();
    let mut failures = 0u32;
    while !*stop.borrow() {
        let batch = poll_batch(member.as_mut(), &mut assigned).await?;
        if batch.is_empty() {
            continue;
        }
        let (outputs, offsets) = transform_batch(&shared, &batch).await;
        let committed = match ensure_topics(&shared, &mut ensured, &outputs).await {
            Ok(()) => producer.commit(member.as_mut(), outputs, offsets).await,
            Err(e) => Err(e),
        };
        match committed {
            Ok(()) => {
                failures = 0;
                shared.counters.transactions.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                failures += 1;
                shared
                    .counters
                    .failed_transactions
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(group = %shared.group, transactional_id = %shared.transactional_id, error = %e, "Transaction failed; consuming its batch again");
                rewind(member.as_mut(), &batch)?;
                tokio::time::sleep(shared.options.backoff(failures)).await;
                // A fenced or failed producer cannot go on; a new one fences the old and
                // aborts what it left.
                producer = shared.transport.transactional(&shared.transactional_id).await?;
            }
        }
    }
    member.close(Vec::new()).await
}

/// Creates the output topics not seen before.
async fn ensure_topics(
    shared: &Shared,
    ensured: &mut HashSet<String>,
    outputs: &[(String, Vec<OutRecord>)],
) -> Result<()> {
    for (topic, _) in outputs {
        if ensured.contains(topic) {
            continue;
        }
        let spec = TopicSpec {
            partitions: shared.partitions,
            configs: BTreeMap::new(),
        };
        shared.transport.ensure_topic(topic, spec).await?;
        ensured.insert(topic.clone());
    }
    Ok(())
}

/// The records of one poll from partitions this member holds, in poll order.
async fn poll_batch(
    member: &mut dyn GroupMember,
    assigned: &mut HashSet<TopicPartition>,
) -> Result<Vec<InRecord>> {
    let mut batch = Vec::new();
    for polled in member.poll(POLL_WAIT).await? {
        match polled {
            Polled::Assigned(tps) => assigned.extend(tps),
            Polled::Revoked(tps) => {
                for tp in &tps {
                    assigned.remove(tp);
                }
                batch.retain(|r: &InRecord| assigned.contains(&r.topic_partition()));
            }
            Polled::Record(r) if assigned.contains(&r.topic_partition()) => batch.push(r),
            Polled::Record(_) => {}
        }
    }
    Ok(batch)
}

/// Outputs per topic (dead letters included) and the next offset of every input
/// partition of the batch.
async fn transform_batch(
    shared: &Shared,
    batch: &[InRecord],
) -> (Vec<(String, Vec<OutRecord>)>, Vec<(TopicPartition, i64)>) {
    let mut outputs: BTreeMap<String, Vec<OutRecord>> = BTreeMap::new();
    let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for record in batch {
        match transform_one(shared, record).await {
            Ok(outs) => {
                shared.counters.transformed.fetch_add(1, Ordering::Relaxed);
                for o in outs {
                    outputs.entry(o.topic).or_default().push(o.record);
                }
            }
            Err((error, attempts)) => {
                shared.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::error!(group = %shared.group, offset = record.offset, error = %error, "Event dead-lettered");
                let letter = dlq::dead_letter_record(record, &shared.group, error.message(), attempts);
                outputs
                    .entry(dlq::dlq_topic(&record.topic))
                    .or_default()
                    .push(letter);
            }
        }
        next.insert(record.topic_partition(), record.offset + 1);
    }
    (outputs.into_iter().collect(), next.into_iter().collect())
}

/// The outputs of one record, retrying transient errors; the last error and the attempts
/// made when it fails for good.
async fn transform_one(shared: &Shared, record: &InRecord) -> Result<Vec<Output>, (HandlerError, u32)> {
    let mut event = Received::from_record(record.clone());
    let attempts_max = shared.options.attempts_max;
    // Bounded by `attempts_max`.
    for attempt in 1..=attempts_max {
        event.attempt = attempt;
        let outcome = AssertUnwindSafe(shared.transformer.transform(event.clone()))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(HandlerError::transient("transformer panicked")));
        match outcome {
            Ok(outputs) => return Ok(outputs),
            Err(e) if e.is_permanent() || attempt == attempts_max => return Err((e, attempt)),
            Err(e) => {
                tracing::warn!(group = %shared.group, offset = record.offset, attempt, error = %e, "Transformer failed");
                shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(shared.options.backoff(attempt)).await;
            }
        }
    }
    Err((HandlerError::transient("no attempt made"), 0))
}

/// Moves every partition of `batch` back to its first record, so the batch is consumed
/// again.
fn rewind(member: &mut dyn GroupMember, batch: &[InRecord]) -> Result<()> {
    let mut first: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for r in batch {
        first.entry(r.topic_partition()).or_insert(r.offset);
    }
    for (tp, offset) in first {
        member.pause(&tp, offset)?;
        member.resume(&tp)?;
    }
    Ok(())
}
