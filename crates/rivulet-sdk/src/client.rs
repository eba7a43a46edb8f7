//! The entry point: publish events and subscribe handlers over either transport.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::dlq::{self, DeadLetter};
#[cfg(feature = "embedded")]
use crate::embedded::EmbeddedTransport;
use crate::error::{Result, SdkError};
use crate::event::Event;
#[cfg(feature = "kafka")]
use crate::kafka::KafkaTransport;
use crate::subscriber::{self, Handler, SubscribeOptions, Subscription};
use crate::transport::{Delivery, OutRecord, TopicSpec, Transport};

/// Publishes events and runs subscriptions. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    transport: Arc<dyn Transport>,
    partitions: i32,
    ensured: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("partitions", &self.partitions)
            .finish()
    }
}

/// Partitions of topics the client creates, unless set otherwise.
pub const DEFAULT_PARTITIONS: i32 = 4;

impl Client {
    /// A client over any transport.
    pub fn new(transport: Arc<dyn Transport>) -> Client {
        Client {
            transport,
            partitions: DEFAULT_PARTITIONS,
            ensured: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// A client over a Kafka-protocol cluster (Rivulet, Kafka, Redpanda).
    #[cfg(feature = "kafka")]
    pub fn kafka(brokers: &str) -> Result<Client> {
        Ok(Client::new(Arc::new(KafkaTransport::new(brokers)?)))
    }

    /// A client over a broker in this process.
    #[cfg(feature = "embedded")]
    pub fn embedded(broker: rivulet_broker::Broker) -> Client {
        Client::new(Arc::new(EmbeddedTransport::new(broker)))
    }

    /// Opens (or creates) an embedded broker's data directory and returns a client over it.
    /// The broker runs its own maintenance (retention, compaction) in the background.
    /// Blocking I/O: call before the service starts or from a blocking context.
    #[cfg(feature = "embedded")]
    pub fn open_embedded(data_dir: impl AsRef<std::path::Path>) -> Result<Client> {
        let config = rivulet_broker::BrokerConfig {
            data_dir: data_dir.as_ref().to_path_buf(),
            ..rivulet_broker::BrokerConfig::default()
        };
        Ok(Client::embedded(rivulet_broker::Broker::open(config)?))
    }

    /// Sets the partition count of topics this client creates.
    pub fn with_partitions(mut self, partitions: i32) -> Client {
        self.partitions = partitions.max(1);
        self
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    fn ensured(&self) -> MutexGuard<'_, HashSet<String>> {
        match self.ensured.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Creates a topic with the client's partition count unless it exists.
    pub async fn ensure_topic(&self, topic: &str) -> Result<()> {
        if self.ensured().contains(topic) {
            return Ok(());
        }
        self.transport
            .ensure_topic(
                topic,
                TopicSpec {
                    partitions: self.partitions,
                    configs: BTreeMap::new(),
                },
            )
            .await?;
        self.ensured().insert(topic.to_string());
        Ok(())
    }

    /// Publishes one event; `key` picks the partition (events of one key keep their
    /// order). Resolves when the event is durable.
    pub async fn publish<T: Serialize>(
        &self,
        topic: &str,
        key: Option<&str>,
        event: &Event<T>,
    ) -> Result<Delivery> {
        let mut d = self.publish_records(topic, vec![event.to_record(key)?]).await?;
        d.pop()
            .ok_or_else(|| SdkError::Corrupt("no delivery report".into()))
    }

    /// Publishes events as one batch per partition; resolves when all are durable, with
    /// their positions in order.
    pub async fn publish_batch<T: Serialize>(
        &self,
        topic: &str,
        events: &[(Option<&str>, &Event<T>)],
    ) -> Result<Vec<Delivery>> {
        let records = events
            .iter()
            .map(|(k, e)| e.to_record(*k))
            .collect::<Result<Vec<_>>>()?;
        self.publish_records(topic, records).await
    }

    /// Publishes raw records.
    pub async fn publish_records(&self, topic: &str, records: Vec<OutRecord>) -> Result<Vec<Delivery>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_topic(topic).await?;
        self.transport.publish(topic, records).await
    }

    /// Subscribes `handler` to `topics` as a member of `group` with default options.
    pub async fn subscribe<H: Handler>(
        &self,
        group: &str,
        topics: &[&str],
        handler: H,
    ) -> Result<Subscription> {
        self.subscribe_with(group, topics, SubscribeOptions::default(), handler)
            .await
    }

    /// Subscribes with explicit options.
    ///
    /// Delivery is at least once: an offset is committed only after the handler of that
    /// event (and of every earlier one in its partition) succeeded or the event was
    /// dead-lettered. Event ids already handled by the group are skipped.
    pub async fn subscribe_with<H: Handler>(
        &self,
        group: &str,
        topics: &[&str],
        options: SubscribeOptions,
        handler: H,
    ) -> Result<Subscription> {
        if group.is_empty()
            || !group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(SdkError::Config(format!(
                "group {group:?}: use letters, digits, '.', '_' and '-' (its handled-ids topic is named after it)"
            )));
        }
        if topics.is_empty() {
            return Err(SdkError::Config("subscribe to at least one topic".into()));
        }
        for t in topics {
            self.ensure_topic(t).await?;
        }
        subscriber::start(
            self.transport.clone(),
            group,
            topics.iter().map(|t| t.to_string()).collect(),
            options,
            Box::new(handler),
            self.partitions,
        )
        .await
    }

    /// Runs `transformer` exactly once per input event: as a member of `group` it consumes
    /// `topics`, and publishes each polled batch's outputs together with the batch's input
    /// offsets in one transaction of the producer `transactional_id` (give each instance
    /// of a service its own, stable across restarts: starting it fences the previous
    /// incarnation and aborts what that left open). Events the transformer fails on after
    /// `options.attempts_max` tries go to `<topic>.dlq` in the same transaction. Readers
    /// of the outputs must read committed data (Kafka's `isolation.level=read_committed`,
    /// the default of the SDK's own subscriptions and of librdkafka).
    pub async fn transform<T: crate::transform::Transformer>(
        &self,
        group: &str,
        topics: &[&str],
        transactional_id: &str,
        options: SubscribeOptions,
        transformer: T,
    ) -> Result<crate::transform::Transform> {
        if topics.is_empty() || transactional_id.is_empty() {
            return Err(SdkError::Config(
                "a transformation needs input topics and a transactional id".into(),
            ));
        }
        for t in topics {
            self.ensure_topic(t).await?;
        }
        crate::transform::start(
            self.transport.clone(),
            group,
            topics.iter().map(|t| t.to_string()).collect(),
            transactional_id,
            options,
            Box::new(transformer),
            self.partitions,
        )
        .await
    }

    /// Every dead letter in a dead-letter topic (`<topic>.dlq`).
    pub async fn dead_letters(&self, dlq_topic: &str) -> Result<Vec<DeadLetter>> {
        dlq::list(self.transport.as_ref(), dlq_topic).await
    }

    /// Publishes the dead letters not redriven before back to their topics; returns how
    /// many.
    pub async fn redrive(&self, dlq_topic: &str) -> Result<usize> {
        dlq::redrive(self.transport.as_ref(), dlq_topic).await
    }
}
