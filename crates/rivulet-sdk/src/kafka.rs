//! The Kafka transport: librdkafka over the Kafka protocol, so a service runs unchanged
//! against Rivulet or a Kafka cluster.
//!
//! Publishing uses an idempotent producer (`enable.idempotence=true`, `acks=all`) that
//! batches records (`linger.ms`) and partitions keys with murmur2 like the Java client.
//! Group members never auto-commit: the SDK commits offsets of handled events, and the
//! rebalance callback commits what finished before partitions are revoked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::error::{Result, SdkError};
use crate::kafka_batch::{enqueue, fill_record, BatchContext, BatchProducer, InFlight};
use crate::progress::Progress;
use crate::transport::{
    Delivery, GroupMember, InRecord, MemberSettings, OutRecord, Polled, ReadBatch, TopicPartition, TopicSpec,
    Transport, TxnProducer,
};

/// Records a group member's consumer keeps queued ahead of the application.
const QUEUED_RECORDS_MIN: &str = "1000000";

/// How long a request to the cluster may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A transport over the Kafka protocol.
#[derive(Clone)]
pub struct KafkaTransport {
    brokers: String,
    extra: Vec<(String, String)>,
    producer: FutureProducer,
    /// The producer of [`Transport::publish_many`], created on first use.
    batch: Arc<OnceLock<Arc<BatchProducer>>>,
    admin: Arc<AdminClient<DefaultClientContext>>,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("brokers", &self.brokers)
            .finish()
    }
}

impl KafkaTransport {
    /// Connects to `brokers` (comma-separated host:port).
    pub fn new(brokers: &str) -> Result<KafkaTransport> {
        KafkaTransport::with_config(brokers, &[])
    }

    /// Connects with extra librdkafka settings applied to every client.
    pub fn with_config(brokers: &str, extra: &[(&str, &str)]) -> Result<KafkaTransport> {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", brokers)
            .set("client.id", "rivulet-sdk");
        for (k, v) in &extra {
            base.set(k, v);
        }
        let producer: FutureProducer = base
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "30000")
            .create()?;
        let admin: AdminClient<DefaultClientContext> = base.create()?;
        Ok(KafkaTransport {
            brokers: brokers.to_string(),
            extra,
            producer,
            batch: Arc::new(OnceLock::new()),
            admin: Arc::new(admin),
        })
    }

    /// The producer of [`Transport::publish_many`]: idempotent and acks=all like
    /// [`KafkaTransport::publish`]'s.
    fn batch_producer(&self) -> Result<Arc<BatchProducer>> {
        if let Some(p) = self.batch.get() {
            return Ok(p.clone());
        }
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("client.id", "rivulet-sdk");
        for (k, v) in &self.extra {
            cfg.set(k, v);
        }
        let created: BatchProducer = cfg
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "30000")
            .create_with_context(BatchContext)?;
        // Another caller may have won the race; either producer serves.
        Ok(self.batch.get_or_init(|| Arc::new(created)).clone())
    }

    fn config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("client.id", "rivulet-sdk")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false");
        for (k, v) in &self.extra {
            cfg.set(k, v);
        }
        cfg
    }

    async fn publish_inner(&self, topic: &str, records: Vec<OutRecord>) -> Result<Vec<Delivery>> {
        send_all(&self.producer, topic, &records).await
    }

    fn reader(&self, group: &str) -> Result<BaseConsumer> {
        Ok(self
            .config()
            .set("group.id", group)
            .set("enable.partition.eof", "true")
            .create()?)
    }

    fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
        let md = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| SdkError::UnknownTopic(topic.to_string()))?;
        if t.error().is_some() || t.partitions().is_empty() {
            return Err(SdkError::UnknownTopic(topic.to_string()));
        }
        Ok(t.partitions().iter().map(|p| p.id()).collect())
    }

    fn read_blocking(&self, topic: &str, from: BTreeMap<i32, i64>, records_max: usize) -> Result<ReadBatch> {
        let consumer = self.reader("rivulet-sdk-reader")?;
        let mut next = BTreeMap::new();
        let mut end = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for p in KafkaTransport::partitions(&consumer, topic)? {
            let (low, high) = consumer.fetch_watermarks(topic, p, REQUEST_TIMEOUT)?;
            let start = from.get(&p).copied().unwrap_or(low).max(low);
            next.insert(p, start);
            if start < high {
                end.insert(p, high);
                tpl.add_partition_offset(topic, p, Offset::Offset(start))?;
            }
        }
        let mut out = Vec::new();
        if end.is_empty() {
            return Ok((out, next));
        }
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + REQUEST_TIMEOUT * 2;
        while !end.is_empty() && out.len() < records_max {
            if Instant::now() >= deadline {
                return Err(SdkError::Timeout(format!("reading {topic} to its end")));
            }
            let msg = match consumer.poll(Duration::from_millis(100)) {
                None => continue,
                // The end can be a transaction marker, which is never delivered.
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    end.remove(&p);
                    continue;
                }
                Some(other) => other?,
            };
            let p = msg.partition();
            let Some(high) = end.get(&p).copied() else {
                continue;
            };
            if msg.offset() >= high {
                end.remove(&p);
                continue;
            }
            next.insert(p, msg.offset() + 1);
            if msg.offset() + 1 >= high {
                end.remove(&p);
            }
            out.push(to_record(&msg));
        }
        Ok((out, next))
    }
}

/// Sends `records` to `topic` and waits for every delivery report.
async fn send_all(producer: &FutureProducer, topic: &str, records: &[OutRecord]) -> Result<Vec<Delivery>> {
    let sends = records.iter().map(|r| {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        fill_record!(rec, r);
        producer.send(rec, Duration::from_secs(30))
    });
    let results = futures_util::future::join_all(sends).await;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(d) => out.push(Delivery {
                partition: d.partition,
                offset: d.offset,
            }),
            Err((e, _)) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn to_record<M: Message>(msg: &M) -> InRecord {
    let mut headers = Vec::new();
    if let Some(h) = msg.headers() {
        for i in 0..h.count() {
            let header = h.get(i);
            headers.push((header.key.to_string(), header.value.map(|v| v.to_vec())));
        }
    }
    InRecord {
        topic: msg.topic().to_string(),
        partition: msg.partition(),
        offset: msg.offset(),
        timestamp_ms: msg.timestamp().to_millis().unwrap_or(-1),
        key: msg.key().map(|k| k.to_vec()),
        value: msg.payload().map(|v| v.to_vec()),
        headers,
    }
}

fn tpl_of(offsets: &[(TopicPartition, i64)]) -> KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for (tp, o) in offsets {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*o))?;
    }
    Ok(tpl)
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> BoxFuture<'static, Result<T>> {
    async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| SdkError::Config(format!("blocking task failed: {e}")))?
    }
    .boxed()
}

impl Transport for KafkaTransport {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        records: Vec<OutRecord>,
    ) -> BoxFuture<'a, Result<Vec<Delivery>>> {
        self.publish_inner(topic, records).boxed()
    }

    fn publish_many(&self, outputs: Vec<(String, Vec<OutRecord>)>) -> BoxFuture<'_, Result<()>> {
        let this = self.clone();
        blocking(move || {
            let producer = this.batch_producer()?;
            let batch = Arc::new(InFlight::default());
            for (topic, records) in &outputs {
                enqueue(&producer, topic, records, &batch)?;
            }
            batch.wait(Duration::from_secs(60))
        })
    }

    fn ensure_topic<'a>(&'a self, topic: &'a str, spec: TopicSpec) -> BoxFuture<'a, Result<()>> {
        async move {
            let mut new = NewTopic::new(topic, spec.partitions, TopicReplication::Fixed(-1));
            for (k, v) in &spec.configs {
                new = new.set(k, v);
            }
            let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
            for r in self.admin.create_topics([&new], &opts).await? {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => {
                        return Err(SdkError::Kafka(KafkaError::AdminOp(code))).inspect_err(
                            |_| tracing::error!(topic = %name, error = %code, "Creating a topic failed"),
                        )
                    }
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn partition_count<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<i32>> {
        let this = self.clone();
        let topic = topic.to_string();
        blocking(move || {
            let consumer = this.reader("rivulet-sdk-reader")?;
            Ok(KafkaTransport::partitions(&consumer, &topic)?.len() as i32)
        })
    }

    fn read_to_end<'a>(
        &'a self,
        topic: &'a str,
        from: BTreeMap<i32, i64>,
        records_max: usize,
    ) -> BoxFuture<'a, Result<ReadBatch>> {
        let this = self.clone();
        let topic = topic.to_string();
        blocking(move || this.read_blocking(&topic, from, records_max))
    }

    fn offset_ranges<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<BTreeMap<i32, (i64, i64)>>> {
        let this = self.clone();
        let topic = topic.to_string();
        blocking(move || {
            let consumer = this.reader("rivulet-sdk-reader")?;
            let mut ranges = BTreeMap::new();
            for p in KafkaTransport::partitions(&consumer, &topic)? {
                ranges.insert(p, consumer.fetch_watermarks(&topic, p, REQUEST_TIMEOUT)?);
            }
            Ok(ranges)
        })
    }

    fn committed<'a>(&'a self, group: &'a str, topic: &'a str) -> BoxFuture<'a, Result<BTreeMap<i32, i64>>> {
        let this = self.clone();
        let (group, topic) = (group.to_string(), topic.to_string());
        blocking(move || {
            let consumer = this.reader(&group)?;
            let mut tpl = TopicPartitionList::new();
            for p in KafkaTransport::partitions(&consumer, &topic)? {
                tpl.add_partition(&topic, p);
            }
            let got = consumer.committed_offsets(tpl, REQUEST_TIMEOUT)?;
            Ok(got
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect())
        })
    }

    fn commit_standalone<'a>(
        &'a self,
        group: &'a str,
        offsets: Vec<(TopicPartition, i64)>,
    ) -> BoxFuture<'a, Result<()>> {
        let this = self.clone();
        let group = group.to_string();
        blocking(move || {
            if offsets.is_empty() {
                return Ok(());
            }
            let consumer = this.reader(&group)?;
            consumer.commit(&tpl_of(&offsets)?, CommitMode::Sync)?;
            Ok(())
        })
    }

    fn join<'a>(
        &'a self,
        group: &'a str,
        topics: Vec<String>,
        progress: Arc<Progress>,
        settings: MemberSettings,
    ) -> BoxFuture<'a, Result<Box<dyn GroupMember>>> {
        async move {
            let context = MemberContext {
                group: group.to_string(),
                progress,
                revoke_wait: settings.revoke_wait,
                events: Mutex::new(Vec::new()),
            };
            let consumer: StreamConsumer<MemberContext> = self
                .config()
                .set("group.id", group)
                .set(
                    "session.timeout.ms",
                    settings.session_timeout.as_millis().to_string(),
                )
                .set(
                    "heartbeat.interval.ms",
                    (settings.session_timeout.as_millis() / 4).max(100).to_string(),
                )
                // Keep fetching ahead while records are handled: with librdkafka's default
                // (100,000 queued records, then a pause of up to fetch.queue.backoff.ms) a
                // member catching up a backlog idles half the time. Memory stays bounded by
                // queued.max.messages.kbytes (64 MiB by default).
                .set("queued.min.messages", QUEUED_RECORDS_MIN)
                .create_with_context(context)?;
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            consumer.subscribe(&names)?;
            let m: Box<dyn GroupMember> = Box::new(KafkaMember {
                group: group.to_string(),
                consumer: Some(consumer),
                settings,
            });
            Ok(m)
        }
        .boxed()
    }

    fn transactional<'a>(&'a self, transactional_id: &'a str) -> BoxFuture<'a, Result<Box<dyn TxnProducer>>> {
        let mut cfg = self.config();
        cfg.remove("enable.auto.commit");
        cfg.remove("enable.auto.offset.store");
        cfg.remove("auto.offset.reset");
        cfg.set("transactional.id", transactional_id)
            .set("linger.ms", "5")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "30000")
            .set("transaction.timeout.ms", TXN_TIMEOUT.as_millis().to_string());
        blocking(move || {
            let producer: BatchProducer = cfg.create_with_context(BatchContext)?;
            producer.init_transactions(REQUEST_TIMEOUT)?;
            let p: Box<dyn TxnProducer> = Box::new(KafkaTxnProducer {
                producer: Arc::new(producer),
            });
            Ok(p)
        })
    }
}

/// `transaction.timeout.ms` of the SDK's transactional producers: a transaction its
/// process abandoned is aborted by the broker after this.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// A librdkafka transactional producer (its own thread serves delivery reports).
struct KafkaTxnProducer {
    producer: Arc<BatchProducer>,
}

impl KafkaTxnProducer {
    async fn commit_inner(
        &mut self,
        member: &mut dyn GroupMember,
        outputs: Vec<(String, Vec<OutRecord>)>,
        offsets: Vec<(TopicPartition, i64)>,
    ) -> Result<()> {
        let metadata = member
            .as_any()
            .downcast_ref::<KafkaMember>()
            .and_then(KafkaMember::group_metadata)
            .ok_or_else(|| SdkError::Config("a Kafka transaction needs a Kafka group member".into()))?;
        let producer = self.producer.clone();
        let finished = blocking(move || {
            producer.begin_transaction()?;
            let batch = Arc::new(InFlight::default());
            for (topic, records) in &outputs {
                enqueue(&producer, topic, records, &batch)?;
            }
            // Offsets sent while records are still in flight make librdkafka's commit take
            // up to 100 ms longer: the records are delivered first.
            batch.wait(REQUEST_TIMEOUT)?;
            if !offsets.is_empty() {
                producer.send_offsets_to_transaction(&tpl_of(&offsets)?, &metadata, REQUEST_TIMEOUT)?;
            }
            producer.commit_transaction(REQUEST_TIMEOUT)?;
            Ok(())
        })
        .await;
        if let Err(e) = &finished {
            let producer = self.producer.clone();
            let aborted = blocking(move || Ok(producer.abort_transaction(REQUEST_TIMEOUT)?)).await;
            if let Err(abort) = aborted {
                tracing::warn!(error = %e, abort_error = %abort, "Aborting a failed transaction failed; the broker aborts it at its timeout");
            }
        }
        finished
    }
}

impl TxnProducer for KafkaTxnProducer {
    fn commit<'a>(
        &'a mut self,
        member: &'a mut dyn GroupMember,
        outputs: Vec<(String, Vec<OutRecord>)>,
        offsets: Vec<(TopicPartition, i64)>,
    ) -> BoxFuture<'a, Result<()>> {
        self.commit_inner(member, outputs, offsets).boxed()
    }
}

struct MemberContext {
    group: String,
    progress: Arc<Progress>,
    revoke_wait: Duration,
    events: Mutex<Vec<Polled>>,
}

impl MemberContext {
    fn events(&self) -> MutexGuard<'_, Vec<Polled>> {
        match self.events.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let tps: Vec<TopicPartition> = list
            .elements()
            .iter()
            .map(|e| TopicPartition::new(e.topic(), e.partition()))
            .collect();
        if !self.progress.wait_idle_blocking(&tps, self.revoke_wait) {
            tracing::warn!(group = %self.group, "Events still in flight when partitions were revoked; they will be redelivered");
        }
        let points: Vec<(TopicPartition, i64)> = tps
            .iter()
            .filter_map(|tp| self.progress.revoke(tp).map(|o| (tp.clone(), o)))
            .collect();
        if !points.is_empty() {
            let result = tpl_of(&points).and_then(|tpl| consumer.commit(&tpl, CommitMode::Sync));
            if let Err(e) = result {
                tracing::warn!(group = %self.group, error = %e, "Commit before revoke failed; finished events will be redelivered");
            }
        }
        self.events().push(Polled::Revoked(tps));
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(list) = rebalance else {
            return;
        };
        // A partition paused for backpressure before the rebalance starts afresh.
        if let Err(e) = consumer.resume(list) {
            tracing::warn!(group = %self.group, error = %e, "Resuming newly assigned partitions failed");
        }
        let tps: Vec<TopicPartition> = list
            .elements()
            .iter()
            .map(|e| TopicPartition::new(e.topic(), e.partition()))
            .collect();
        for tp in &tps {
            self.progress.assign(tp, None);
        }
        self.events().push(Polled::Assigned(tps));
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(group = %self.group, error = %e, "Offset commit failed");
        }
    }
}

struct KafkaMember {
    group: String,
    consumer: Option<StreamConsumer<MemberContext>>,
    settings: MemberSettings,
}

impl KafkaMember {
    fn consumer(&self) -> Result<&StreamConsumer<MemberContext>> {
        self.consumer.as_ref().ok_or(SdkError::Closed)
    }

    async fn poll_inner(&mut self, max_wait: Duration) -> Result<Vec<Polled>> {
        let consumer = self.consumer()?;
        let mut records = Vec::new();
        match tokio::time::timeout(max_wait, consumer.recv()).await {
            Err(_) => {}
            Ok(Ok(msg)) => {
                records.push(Polled::Record(to_record(&msg)));
                while records.len() < self.settings.poll_records_max {
                    match consumer.recv().now_or_never() {
                        Some(Ok(msg)) => records.push(Polled::Record(to_record(&msg))),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "Consumer error");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut out: Vec<Polled> = std::mem::take(&mut *consumer.context().events());
        out.extend(records);
        Ok(out)
    }
}

impl GroupMember for KafkaMember {
    fn poll(&mut self, max_wait: Duration) -> BoxFuture<'_, Result<Vec<Polled>>> {
        self.poll_inner(max_wait).boxed()
    }

    fn commit(&mut self, offsets: Vec<(TopicPartition, i64)>) -> BoxFuture<'_, Result<()>> {
        async move {
            if offsets.is_empty() {
                return Ok(());
            }
            self.consumer()?.commit(&tpl_of(&offsets)?, CommitMode::Async)?;
            Ok(())
        }
        .boxed()
    }

    fn pause(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        let consumer = self.consumer()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.topic, tp.partition);
        consumer.pause(&tpl)?;
        consumer.seek(
            &tp.topic,
            tp.partition,
            Offset::Offset(offset),
            Duration::from_secs(5),
        )?;
        Ok(())
    }

    fn resume(&mut self, tp: &TopicPartition) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.topic, tp.partition);
        self.consumer()?.resume(&tpl)?;
        Ok(())
    }

    fn close(&mut self, offsets: Vec<(TopicPartition, i64)>) -> BoxFuture<'_, Result<()>> {
        let consumer = self.consumer.take();
        async move {
            let Some(consumer) = consumer else { return Ok(()) };
            tokio::task::spawn_blocking(move || {
                let mut result = Ok(());
                if !offsets.is_empty() {
                    result = tpl_of(&offsets)
                        .and_then(|tpl| consumer.commit(&tpl, CommitMode::Sync))
                        .map_err(SdkError::from);
                }
                consumer.unsubscribe();
                // Dropping the consumer leaves the group (rd_kafka_consumer_close).
                drop(consumer);
                result
            })
            .await
            .map_err(|e| SdkError::Config(format!("closing the consumer failed: {e}")))?
        }
        .boxed()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn group(&self) -> &str {
        &self.group
    }
}

impl KafkaMember {
    fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.as_ref().and_then(|c| c.group_metadata())
    }
}

impl Drop for KafkaMember {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            // Leaving the group blocks; do it off the async threads when possible.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn_blocking(move || drop(consumer));
            }
        }
    }
}
