//! The consuming runtime: dispatch to per-key workers, retries, dead letters,
//! deduplication, commits, backpressure and graceful shutdown.

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::dlq;
use crate::error::{HandlerError, Result, SdkError};
use crate::event::Received;
use crate::handled::HandledStore;
use crate::progress::{Admit, Progress};
use crate::transport::{GroupMember, InRecord, Polled, TopicPartition, TopicSpec, Transport};

/// Handles one event. Implemented for every `Fn(Received) -> impl Future<Output =
/// Result<(), HandlerError>>` closure.
pub trait Handler: Send + Sync + 'static {
    /// Handles the event; an error is retried, then dead-lettered.
    fn handle(&self, event: Received) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, event: Received) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin(self(event))
    }
}

/// Settings of a subscription. Every queue and wait has a bound.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Workers handling events concurrently; one key always goes to the same worker.
    pub workers: usize,
    /// Events of one partition dispatched and not yet finished; fetching from the partition
    /// pauses at this bound and resumes at half of it.
    pub in_flight_per_partition_max: usize,
    /// Capacity of each worker's queue.
    pub worker_queue_events_max: usize,
    /// Handler tries per event, the first included, before it goes to `<topic>.dlq`.
    pub attempts_max: u32,
    /// Delay before the first retry; doubles per retry, with jitter.
    pub backoff_initial: Duration,
    /// Longest delay between retries.
    pub backoff_max: Duration,
    /// How long handled event ids are remembered.
    pub handled_ttl: Duration,
    /// Most handled ids kept in memory; beyond it the oldest are forgotten.
    pub handled_ids_max: usize,
    /// How often finished offsets are committed.
    pub commit_interval: Duration,
    /// How long shutdown waits for in-flight events.
    pub shutdown_timeout: Duration,
    /// How long a rebalance waits for in-flight events of revoked partitions.
    pub revoke_wait: Duration,
    /// Session timeout of the group membership (Kafka transport).
    pub session_timeout: Duration,
    /// Records taken from the transport per poll.
    pub poll_records_max: usize,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            workers: 4,
            in_flight_per_partition_max: 64,
            worker_queue_events_max: 256,
            attempts_max: 5,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            handled_ttl: Duration::from_secs(7 * 24 * 3600),
            handled_ids_max: 1_000_000,
            commit_interval: Duration::from_millis(200),
            shutdown_timeout: Duration::from_secs(30),
            revoke_wait: Duration::from_secs(10),
            session_timeout: Duration::from_secs(10),
            poll_records_max: 500,
        }
    }
}

impl SubscribeOptions {
    /// Checks that every bound is usable.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("workers", self.workers),
            ("in_flight_per_partition_max", self.in_flight_per_partition_max),
            ("worker_queue_events_max", self.worker_queue_events_max),
            ("poll_records_max", self.poll_records_max),
            ("handled_ids_max", self.handled_ids_max),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(SdkError::Config(format!("{name} must be at least 1")));
            }
        }
        if self.attempts_max == 0 {
            return Err(SdkError::Config("attempts_max must be at least 1".into()));
        }
        Ok(())
    }

    /// The delay before retry number `retry` (1 for the first retry): exponential, capped,
    /// with "equal jitter" (a random point in the upper half).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(30));
        let full = self.backoff_initial.saturating_mul(factor).min(self.backoff_max);
        let half = full / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis().min(u128::from(u64::MAX)) as u64);
        half + Duration::from_millis(jitter_ms)
    }
}

/// Counters of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionStats {
    /// Events whose handler succeeded.
    pub handled: u64,
    /// Redelivered events skipped because their id was already handled.
    pub duplicates_skipped: u64,
    /// Handler retries.
    pub retries: u64,
    /// Events sent to a dead-letter topic.
    pub dead_lettered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    duplicates_skipped: AtomicU64,
    retries: AtomicU64,
    dead_lettered: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SubscriptionStats {
        SubscriptionStats {
            handled: self.handled.load(Ordering::Relaxed),
            duplicates_skipped: self.duplicates_skipped.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }
}

/// A running subscription. Dropping it stops consuming abruptly, like a crash; call
/// [`Subscription::shutdown`] to stop gracefully.
#[derive(Debug)]
pub struct Subscription {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<()>>>,
    counters: Arc<Counters>,
    progress: Arc<Progress>,
}

impl Subscription {
    /// Partitions currently assigned to this member.
    pub fn assigned(&self) -> Vec<TopicPartition> {
        self.progress.assigned()
    }

    /// Current counters.
    pub fn stats(&self) -> SubscriptionStats {
        self.counters.snapshot()
    }

    /// Stops fetching, finishes the events in flight (up to the shutdown timeout),
    /// commits and leaves the group.
    pub async fn shutdown(mut self) -> Result<SubscriptionStats> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.await
                .map_err(|e| SdkError::Config(format!("subscription task failed: {e}")))??;
        }
        Ok(self.counters.snapshot())
    }

    /// True when the subscription stopped by itself (an error).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops at once without finishing or committing anything, as a crash would.
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Shared {
    group: String,
    transport: Arc<dyn Transport>,
    handler: Box<dyn Handler>,
    handled: HandledStore,
    progress: Arc<Progress>,
    options: SubscribeOptions,
    counters: Arc<Counters>,
    dlq_partitions: i32,
}

struct Work {
    record: InRecord,
    epoch: u64,
}

/// Starts a subscription (called by [`crate::Client::subscribe_with`]).
pub(crate) async fn start(
    transport: Arc<dyn Transport>,
    group: &str,
    topics: Vec<String>,
    options: SubscribeOptions,
    handler: Box<dyn Handler>,
    dlq_partitions: i32,
) -> Result<Subscription> {
    options.validate()?;
    let handled = HandledStore::open(
        transport.clone(),
        group,
        options.handled_ttl,
        options.handled_ids_max,
    )
    .await?;
    let progress = Arc::new(Progress::new());
    let settings = crate::transport::MemberSettings {
        poll_records_max: options.poll_records_max,
        revoke_wait: options.revoke_wait,
        session_timeout: options.session_timeout,
    };
    let member = transport.join(group, topics, progress.clone(), settings).await?;
    let counters = Arc::new(Counters::default());
    let shared = Arc::new(Shared {
        group: group.to_string(),
        transport,
        handler,
        handled,
        progress: progress.clone(),
        options,
        counters: counters.clone(),
        dlq_partitions,
    });
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(shared, member, stop_rx));
    Ok(Subscription {
        stop,
        task: Some(task),
        counters,
        progress,
    })
}

fn worker_for(record: &InRecord, workers: usize) -> usize {
    let mut h = DefaultHasher::new();
    match &record.key {
        Some(k) => k.hash(&mut h),
        None => (&record.topic, record.partition).hash(&mut h),
    }
    (h.finish() % workers as u64) as usize
}

async fn run(
    shared: Arc<Shared>,
    mut member: Box<dyn GroupMember>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let opts = shared.options.clone();
    let mut workers = JoinSet::new();
    let mut queues = Vec::with_capacity(opts.workers);
    for _ in 0..opts.workers {
        let (tx, rx) = mpsc::channel::<Work>(opts.worker_queue_events_max);
        queues.push(tx);
        workers.spawn(worker(shared.clone(), rx));
    }
    let resume_at = opts.in_flight_per_partition_max / 2;
    let mut last_commit = Instant::now();
    let result: Result<()> = async {
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let polled = tokio::select! {
                r = member.poll(Duration::from_millis(100)) => r?,
                _ = stop.changed() => return Ok(()),
            };
            for p in polled {
                match p {
                    Polled::Assigned(tps) => {
                        let loaded = refresh_handled(&shared).await?;
                        tracing::info!(group = %shared.group, partitions = tps.len(), handled_ids_loaded = loaded, "Partitions assigned");
                    }
                    Polled::Revoked(tps) => {
                        tracing::info!(group = %shared.group, partitions = tps.len(), "Partitions revoked");
                    }
                    Polled::Record(record) => match shared.progress.admit(&record, opts.in_flight_per_partition_max) {
                        Admit::Dispatch(epoch) => {
                            let w = worker_for(&record, queues.len());
                            queues[w].send(Work { record, epoch }).await.map_err(|_| SdkError::Closed)?;
                        }
                        Admit::Drop => {}
                        Admit::Pause => {
                            // A partition revoked meanwhile cannot be paused; its new owner
                            // starts from the committed offset, so nothing is lost.
                            if let Err(e) = member.pause(&record.topic_partition(), record.offset) {
                                tracing::warn!(group = %shared.group, topic = %record.topic, partition = record.partition, error = %e, "Pausing a partition failed");
                            }
                        }
                    },
                }
            }
            for tp in shared.progress.take_resumable(resume_at) {
                if let Err(e) = member.resume(&tp) {
                    tracing::warn!(group = %shared.group, topic = %tp.topic, partition = tp.partition, error = %e, "Resuming a partition failed");
                }
            }
            if last_commit.elapsed() >= opts.commit_interval {
                commit(&shared, member.as_mut()).await;
                last_commit = Instant::now();
            }
        }
    }
    .await;
    if let Err(e) = &result {
        tracing::error!(group = %shared.group, error = %e, "Subscription failed; stopping");
    }
    // Graceful stop: finish what is in flight, commit, leave.
    if !shared.progress.wait_idle(None, opts.shutdown_timeout).await {
        tracing::warn!(group = %shared.group, in_flight = shared.progress.in_flight(None), "Shutdown timed out; unfinished events will be redelivered");
    }
    drop(queues);
    let deadline = tokio::time::sleep(opts.shutdown_timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = workers.join_next() => if next.is_none() { break },
            _ = &mut deadline => { workers.abort_all(); break }
        }
    }
    let points = shared.progress.commit_points();
    let closed = member.close(points.clone()).await;
    if closed.is_ok() {
        shared.progress.mark_committed(&points);
    }
    result.and(closed)
}

/// Catches up on ids other members handled, retrying a few times: records of newly
/// assigned partitions must not be handled before it succeeds.
async fn refresh_handled(shared: &Shared) -> Result<usize> {
    const TRIES_MAX: u32 = 5;
    let mut attempt = 1;
    loop {
        match shared.handled.refresh().await {
            Ok(n) => return Ok(n),
            Err(e) if attempt < TRIES_MAX => {
                tracing::warn!(group = %shared.group, error = %e, attempt, "Loading handled ids failed; retrying");
                tokio::time::sleep(shared.options.backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn commit(shared: &Shared, member: &mut dyn GroupMember) {
    let points = shared.progress.commit_points();
    if points.is_empty() {
        return;
    }
    match member.commit(points.clone()).await {
        Ok(()) => shared.progress.mark_committed(&points),
        Err(e) => tracing::warn!(group = %shared.group, error = %e, "Offset commit failed; will retry"),
    }
}

async fn worker(shared: Arc<Shared>, mut rx: mpsc::Receiver<Work>) {
    while let Some(work) = rx.recv().await {
        let tp = work.record.topic_partition();
        let offset = work.record.offset;
        let epoch = work.epoch;
        if process(&shared, work).await {
            shared.progress.complete(&tp, epoch, offset);
        }
    }
}

/// Handles one event; returns true when it is finished (handled, skipped as a duplicate or
/// dead-lettered) and its offset may be committed.
async fn process(shared: &Shared, work: Work) -> bool {
    let tp = work.record.topic_partition();
    if !shared.progress.is_current(&tp, work.epoch) {
        return false;
    }
    let mut event = Received::from_record(work.record);
    if shared.handled.contains(&event.id) {
        shared.counters.duplicates_skipped.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    let opts = &shared.options;
    let mut last_error = HandlerError::transient("not tried");
    let mut succeeded = false;
    for attempt in 1..=opts.attempts_max {
        event.attempt = attempt;
        let outcome = AssertUnwindSafe(shared.handler.handle(event.clone()))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(HandlerError::transient("handler panicked")));
        match outcome {
            Ok(()) => {
                succeeded = true;
                break;
            }
            Err(e) => {
                tracing::warn!(
                    group = %shared.group, topic = %tp.topic, partition = tp.partition,
                    offset = event.record.offset, event_id = %event.id, attempt, error = %e,
                    "Handler failed"
                );
                let permanent = e.is_permanent();
                last_error = e;
                if permanent || attempt == opts.attempts_max {
                    break;
                }
                shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(opts.backoff(attempt)).await;
            }
        }
    }
    if succeeded {
        shared.counters.handled.fetch_add(1, Ordering::Relaxed);
        return durably(shared, &tp, "recording a handled event id", || {
            shared.handled.mark(&event.id)
        })
        .await;
    }
    let record = dlq::dead_letter_record(&event.record, &shared.group, last_error.message(), event.attempt);
    let topic = dlq::dlq_topic(&tp.topic);
    let sent = durably(shared, &tp, "publishing a dead letter", || async {
        shared
            .transport
            .ensure_topic(
                &topic,
                TopicSpec {
                    partitions: shared.dlq_partitions,
                    configs: Default::default(),
                },
            )
            .await?;
        shared
            .transport
            .publish(&topic, vec![record.clone()])
            .await
            .map(|_| ())
    })
    .await;
    if sent {
        shared.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        tracing::error!(group = %shared.group, event_id = %event.id, dlq = %topic, error = %last_error, "Event dead-lettered");
    }
    sent
}

/// Retries a broker write with backoff (bounded) while the partition stays assigned.
async fn durably<F, Fut>(shared: &Shared, tp: &TopicPartition, what: &str, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    const TRIES_MAX: u32 = 10;
    for attempt in 1..=TRIES_MAX {
        match f().await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(group = %shared.group, error = %e, attempt, "{what} failed");
                tokio::time::sleep(shared.options.backoff(attempt)).await;
            }
        }
    }
    tracing::error!(group = %shared.group, topic = %tp.topic, partition = tp.partition, "{what} kept failing; the event will be redelivered");
    false
}
