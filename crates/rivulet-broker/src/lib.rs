//! Rivulet's broker core: topics and their partition logs, the data plane every front end
//! goes through, producer ids, consumer groups and committed offsets.
//!
//! Front ends (the Kafka wire protocol in `rivulet-kafka`, the HTTP gateway, the embedded
//! SDK) translate their protocol into calls on [`Broker`] and never touch a log:
//!
//! - data plane ([`data`]): [`Broker::produce`], [`Broker::append_records`],
//!   [`Broker::read`], [`Broker::read_records`], [`Broker::watch`];
//! - topics: [`Broker::create_topic`], [`Broker::delete_topic`], [`Broker::set_topic_configs`],
//!   [`Broker::topics`] with [`Topic::partition_infos`];
//! - groups ([`groups`]): the Kafka group coordinator, broker-assigned members
//!   ([`Broker::join_local_group`]), committed offsets and [`Broker::group_lag`];
//! - lifecycle: [`Broker::open`] recovers the data directory and starts the background work
//!   (group ticks, log maintenance); [`Broker::shut_down`] ends long polls;
//!   [`Broker::close`] stops everything and flushes.
//!
//! Data directory layout:
//!
//! ```text
//! <data_dir>/topics/<topic>/topic.json     id, partition count, config overrides
//! <data_dir>/topics/<topic>/<partition>/   one rivulet-log Log per partition
//! <data_dir>/internal/__consumer_offsets/  committed offsets (compacted log)
//! <data_dir>/internal/__queue_state/       queues' ack floors and settled offsets
//! <data_dir>/amqp/definitions.json         exchanges, queues and bindings
//! <data_dir>/producer_ids                  reserved producer-id block
//! <data_dir>/journal/                       shared journal of `fsync=always` appends
//! <data_dir>/trash/                        deleted topics whose files are still being freed
//! ```

pub mod acl;
pub mod alarm;
mod background;
pub mod data;
pub mod dead_letters;
pub mod error;
pub mod groups;
pub mod inspect;
mod lag;
mod members;
mod meta;
pub mod offsets;
pub mod partitioner;
pub mod producers;
pub mod queues;
pub mod routing;
pub mod settle;
pub mod tokens;
pub mod topics;
pub mod txn;
pub mod users;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rivulet_log::storage::{FsStorage, Storage};
use rivulet_log::{FlushPool, Journal, JournalConfig, Log, LogConfig, LogContext};
use rivulet_metrics::Metrics;
use tokio::sync::watch;

pub use data::{
    Appended, Create, DataWatch, NewRecord, ReadLimit, RecordPosition, RecordsRead, Woke,
    WATCH_PARTITIONS_MAX,
};
pub use error::{BrokerError, Result};
pub use groups::local::LocalClient;
pub use groups::{GroupCoordinator, GroupDescription, GroupError, GroupLimits, GroupState};
pub use inspect::LogDirUsage;
pub use lag::PartitionLag;
pub use members::LocalMember;
pub use offsets::{CommittedOffset, OffsetStore};
pub use rivulet_log::{AbortedTxn, Isolation};
pub use rivulet_log::{
    AppendOutcome, BatchError, Durable, FileSlice, LogError, ProducerSnapshot, ReadResult, SliceRead,
    StoredRecord, TimestampOffset, UndecodableBatch,
};
pub use topics::{ConfigEntry, PartitionInfo, Topic};
pub use txn::{PendingOffset, TxnCoordinator, TxnError, TxnMeta, TxnState};

/// Directory under the data directory where deleted topics wait to be freed.
const TRASH_DIR: &str = "trash";
/// Directory under the data directory holding the shared journal.
const JOURNAL_DIR: &str = "journal";

/// Settings of the broker core.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where topics, offsets and producer state live.
    pub data_dir: PathBuf,
    /// Create unknown topics when a client writes to them or asks for their metadata (the
    /// same for every front end).
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with `num_partitions = -1`.
    pub default_partitions: u32,
    /// Largest partition count of one topic.
    pub partitions_per_topic_max: u32,
    /// Largest number of topics.
    pub topics_max: usize,
    /// Log settings of topics without overrides.
    pub default_log_config: LogConfig,
    /// Consumer-group limits.
    pub group_limits: GroupLimits,
    /// Threads that run fdatasync for all partitions (see [`rivulet_log::FlushPool`]).
    pub flush_threads: usize,
    /// Interval of group-session checks.
    pub group_tick_ms: u64,
    /// Interval of log maintenance (interval fsync, segment rolls, retention, compaction).
    pub maintenance_interval_ms: u64,
    /// The shared journal `fsync=always` appends go through (see [`rivulet_log::Journal`]);
    /// `None`: every partition syncs its own segments.
    pub journal: Option<JournalConfig>,
    /// Largest `transaction.timeout.ms` a transactional producer may ask for.
    pub transaction_timeout_ms_max: i32,
    /// Free bytes of the data directory's file system below which the disk alarm holds
    /// publishers back (see [`Broker::alarm`]); 0 turns the alarm off.
    pub disk_free_min_bytes: u64,
    /// Every front end requires a login with one of the [`users`] (Kafka SASL, AMQP PLAIN,
    /// HTTP basic auth).
    pub auth_required: bool,
    /// Users allowed everything whatever the ACLs say (Kafka's `super.users`).
    pub superusers: Vec<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("data"),
            auto_create_topics: true,
            default_partitions: 1,
            partitions_per_topic_max: 1_000,
            topics_max: 10_000,
            default_log_config: LogConfig::default(),
            group_limits: GroupLimits::default(),
            flush_threads: rivulet_log::default_flush_threads(),
            group_tick_ms: 250,
            maintenance_interval_ms: 1_000,
            journal: Some(JournalConfig::default()),
            transaction_timeout_ms_max: txn::TRANSACTION_TIMEOUT_MS_MAX,
            disk_free_min_bytes: alarm::DISK_FREE_MIN_BYTES_DEFAULT,
            auth_required: false,
            superusers: Vec::new(),
        }
    }
}

/// Takes an exclusive advisory lock on `<data_dir>/.lock` (released when the process exits,
/// even after a crash).
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File> {
    let path = data_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(BrokerError::io("open lock file", &path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(BrokerError::DataDirLocked { path }),
        Err(e) => Err(BrokerError::io("lock data dir", &path)(e.into())),
    }
}

/// The broker core. Cheap to clone; all clones share state.
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: BrokerConfig,
    /// Held open for the broker's lifetime: its exclusive lock keeps a second process out.
    _lock: std::fs::File,
    context: LogContext,
    topics_dir: PathBuf,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    producer_ids: producers::ProducerIds,
    groups: GroupCoordinator,
    txns: txn::TxnCoordinator,
    queues: queues::Queues,
    alarms: alarm::Alarms,
    users: users::Users,
    acls: acl::Acls,
    tokens: tokens::Tokens,
    metrics: Arc<Metrics>,
    round_robin: AtomicUsize,
    shutdown: watch::Sender<bool>,
    background: background::Background,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.background.stop.stop();
    }
}

impl Broker {
    /// Opens the data directory on the real file system, recovering every topic and the
    /// committed offsets, and starts the background work. Blocking I/O: call before
    /// serving or from a blocking context.
    pub fn open(config: BrokerConfig) -> Result<Broker> {
        Broker::open_with(config, Arc::new(FsStorage))
    }

    /// [`Broker::open`] on the given storage (tests inject faults through it).
    pub fn open_with(config: BrokerConfig, storage: Arc<dyn Storage>) -> Result<Broker> {
        let create = |dir: &std::path::Path| {
            storage
                .create_dir_all(dir)
                .map_err(BrokerError::io("create data dir", dir))
        };
        create(&config.data_dir)?;
        let lock = lock_data_dir(&config.data_dir)?;
        let topics_dir = config.data_dir.join("topics");
        let internal = config.data_dir.join("internal");
        let trash = config.data_dir.join(TRASH_DIR);
        let amqp_dir = config.data_dir.join("amqp");
        for dir in [&topics_dir, &internal, &trash, &amqp_dir] {
            create(dir)?;
        }
        free_trash(storage.as_ref(), &trash)?;
        let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION")));
        let observer = metrics.clone();
        let observer: rivulet_log::FsyncObserver = Arc::new(move |d| observer.observe_fsync(d));
        let pool = FlushPool::new(config.flush_threads, Some(observer.clone()));
        let journal = open_journal(&config, storage.clone(), observer)?;
        let context = LogContext {
            storage,
            pool,
            activity: rivulet_log::Activity::default(),
            journal,
        };
        let topics = open_topics(&context, &topics_dir, &config.default_log_config)?;
        let producer_ids =
            producers::ProducerIds::open(context.storage.clone(), &config.data_dir.join("producer_ids"))?;
        let offsets = OffsetStore::open(&internal.join(offsets::OFFSETS_TOPIC), &context)?;
        let share_state = OffsetStore::open_named(
            &internal.join(offsets::SHARE_STATE_TOPIC),
            &context,
            offsets::SHARE_STATE_TOPIC,
        )?;
        let queue_state = OffsetStore::open_with_fsync(
            &internal.join(queues::QUEUE_STATE_TOPIC),
            &context,
            queues::QUEUE_STATE_TOPIC,
            rivulet_log::FsyncPolicy::Interval(queues::STATE_SYNC_INTERVAL),
        )?;
        let queues = queues::Queues::new(queue_state, amqp_dir.join("definitions.json"));
        let users = users::Users::load(context.storage.as_ref(), config.data_dir.join("users.json"))?;
        let acls = acl::Acls::load(context.storage.as_ref(), config.data_dir.join("acls.json"))?;
        let (txn_store, txn_state) = txn::TxnStore::open(&internal.join(txn::TRANSACTIONS_TOPIC), &context)?;
        let txns = txn::TxnCoordinator::new(txn_store, txn_state, config.transaction_timeout_ms_max);
        // Every log that uses the journal took its entries: checkpoints may run.
        if let Some(journal) = &context.journal {
            journal.finish_recovery();
            if config.journal.is_none() {
                retire_journal(
                    journal,
                    context.storage.as_ref(),
                    &config.data_dir.join(JOURNAL_DIR),
                )?;
            }
        }
        let groups =
            GroupCoordinator::new(offsets, config.group_limits.clone()).with_share_state(share_state);
        let tick = Duration::from_millis(config.group_tick_ms.max(10));
        let maintain = Duration::from_millis(config.maintenance_interval_ms.max(10));
        let broker = Broker {
            inner: Arc::new(Inner {
                config,
                _lock: lock,
                context,
                topics_dir,
                topics: RwLock::new(topics),
                producer_ids,
                groups,
                txns,
                queues,
                alarms: alarm::Alarms::new(),
                users,
                acls,
                tokens: tokens::Tokens::default(),
                metrics,
                round_robin: AtomicUsize::new(0),
                shutdown: watch::channel(false).0,
                background: background::Background::default(),
            }),
        };
        broker.recover_transactions();
        broker.recover_queues()?;
        broker
            .inner
            .background
            .start(Arc::downgrade(&broker.inner), tick, maintain);
        Ok(broker)
    }

    /// Queues, exchanges and bindings ([`queues`]).
    pub fn queues(&self) -> &queues::Queues {
        &self.inner.queues
    }

    /// The broker's settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// The consumer-group coordinator.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.inner.groups
    }

    /// The transaction coordinator.
    pub fn txns(&self) -> &txn::TxnCoordinator {
        &self.inner.txns
    }

    /// The process metrics the data plane records into; front ends add their own.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The flush pool syncing every partition.
    pub fn flush_pool(&self) -> &FlushPool {
        &self.inner.context.pool
    }

    /// The shared journal's counters; `None` when it is off.
    pub fn journal_stats(&self) -> Option<rivulet_log::JournalStats> {
        self.inner.context.journal.as_ref().map(Journal::stats)
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.read_topics().get(name).cloned()
    }

    /// A topic by its id.
    pub fn topic_by_id(&self, id: u128) -> Option<Arc<Topic>> {
        self.read_topics().values().find(|t| t.id() == id).cloned()
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.read_topics().values().cloned().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Describes a group of either kind (see [`GroupCoordinator::describe`]).
    pub fn describe_group(&self, group: &str) -> Option<GroupDescription> {
        let partitions = |t: &str| self.topic(t).map_or(0, |t| t.partition_count());
        self.groups().describe(group, &partitions)
    }

    /// Handles a share group (KIP-932) heartbeat against the current topics.
    pub fn share_heartbeat(&self, req: &groups::ShareHeartbeat) -> groups::HeartbeatOutcome {
        let partitions = |t: &str| self.topic(t).map_or(0, |t| t.partition_count());
        self.groups().share_heartbeat(req, &partitions)
    }

    /// Handles a consumer group (KIP-848) heartbeat against the current topics.
    pub fn consumer_heartbeat(&self, req: &groups::ConsumerHeartbeat) -> groups::HeartbeatOutcome {
        let partitions = |t: &str| self.topic(t).map_or(0, |t| t.partition_count());
        let topics = || self.topics().iter().map(|t| t.name().to_string()).collect();
        self.groups().consumer_heartbeat(req, &partitions, &topics)
    }

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Topic>>> {
        self.inner.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_topics(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Topic>>> {
        self.inner.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A topic that must exist (`UnknownTopic` otherwise).
    pub fn existing_topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topic(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    /// A topic by name, created with default settings when `create` and the broker's
    /// `auto_create_topics` both allow it (the one auto-creation policy of every front end).
    pub fn topic_for(&self, name: &str, create: Create) -> Result<Arc<Topic>> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if create == Create::Never || !self.inner.config.auto_create_topics {
            return Err(BrokerError::UnknownTopic(name.to_string()));
        }
        match self.create_topic(name, -1, 1, BTreeMap::new(), false) {
            Ok(Some(t)) => {
                tracing::info!(topic = %name, partitions = t.partition_count(), "Auto-created topic");
                Ok(t)
            }
            Ok(None) | Err(BrokerError::TopicExists(_)) => self.existing_topic(name),
            Err(e) => Err(e),
        }
    }

    /// Creates a topic. `partitions = -1` uses the default count; `replication_factor` must be
    /// 1 or -1. With `validate_only` nothing is created and `Ok(None)` means it would succeed.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Option<Arc<Topic>>> {
        let count = self.check_new_topic(name, partitions, replication_factor)?;
        let log_config = topics::build_log_config(&self.inner.config.default_log_config, &overrides)?;
        let mut topics = self.write_topics();
        if topics.contains_key(name) {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        if topics.len() >= self.inner.config.topics_max {
            return Err(BrokerError::LimitReached(format!(
                "{} topics exist (topics_max)",
                topics.len()
            )));
        }
        if validate_only {
            return Ok(None);
        }
        let topic = Arc::new(Topic::create(
            &self.inner.context,
            &self.inner.topics_dir,
            name,
            count,
            overrides,
            &log_config,
        )?);
        topics.insert(name.to_string(), topic.clone());
        Ok(Some(topic))
    }

    /// Checks a new topic's name, partition count and replication factor; returns the
    /// partition count.
    fn check_new_topic(&self, name: &str, partitions: i32, replication_factor: i16) -> Result<u32> {
        topics::validate_topic_name(name)?;
        if name.starts_with("__") {
            return Err(BrokerError::InvalidTopicName {
                name: name.to_string(),
                reason: "names starting with '__' are reserved for internal topics",
            });
        }
        let max = self.inner.config.partitions_per_topic_max;
        let count = if partitions == -1 {
            self.inner.config.default_partitions
        } else {
            u32::try_from(partitions).unwrap_or(0)
        };
        if count == 0 || count > max {
            return Err(BrokerError::InvalidPartitions {
                count: partitions,
                max: max as i32,
            });
        }
        if replication_factor != 1 && replication_factor != -1 {
            return Err(BrokerError::InvalidReplicationFactor(replication_factor));
        }
        Ok(count)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let topic = self
            .write_topics()
            .remove(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        topic.delete(&self.inner.config.data_dir.join(TRASH_DIR))?;
        tracing::info!(topic = %name, "Deleted topic");
        Ok(())
    }

    /// Grows a topic to `count` partitions (Kafka CreatePartitions). Partitions never
    /// shrink; keys may map to other partitions afterwards, as in Kafka. `validate_only`
    /// checks without changing anything.
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<()> {
        let max = self.inner.config.partitions_per_topic_max;
        let mut topics = self.write_topics();
        let current = topics
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        let valid = u32::try_from(count)
            .ok()
            .filter(|c| *c as usize > current.partition_count() && *c <= max);
        let Some(count) = valid else {
            return Err(BrokerError::PartitionsOnlyGrow {
                current: current.partition_count(),
                requested: count,
                max,
            });
        };
        if validate_only {
            return Ok(());
        }
        let grown =
            current.with_partitions(&self.inner.context, count, &self.inner.config.default_log_config)?;
        topics.insert(name.to_string(), Arc::new(grown));
        tracing::info!(topic = %name, from = current.partition_count(), to = count, "Added partitions");
        Ok(())
    }

    /// Deletes the records of one partition before `offset` (`-1`: the high watermark):
    /// Kafka DeleteRecords. Returns the new log start offset. Blocking I/O.
    pub fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> Result<i64> {
        Ok(self
            .partition_log(topic, partition)?
            .delete_records_before(offset)?)
    }

    /// The log of an existing partition.
    pub(crate) fn partition_log(&self, topic: &str, partition: i32) -> Result<Log> {
        self.existing_topic(topic).and_then(|t| {
            t.partition(partition)
                .cloned()
                .ok_or_else(|| BrokerError::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                    count: t.partition_count(),
                })
        })
    }

    /// Changes a topic's config overrides (applied at once and stored durably).
    pub fn set_topic_configs(&self, name: &str, overrides: BTreeMap<String, String>) -> Result<()> {
        let topic = self.existing_topic(name)?;
        topic.set_overrides(overrides, &self.inner.config.default_log_config)
    }

    /// Checks topic config overrides without applying them.
    pub fn validate_topic_configs(&self, overrides: &BTreeMap<String, String>) -> Result<()> {
        topics::build_log_config(&self.inner.config.default_log_config, overrides).map(|_| ())
    }

    /// Allocates a producer id, or bumps the epoch of an existing one.
    pub fn init_producer_id(&self, existing: Option<(i64, i16)>) -> Result<(i64, i16)> {
        self.inner.producer_ids.init(existing)
    }

    /// Runs log maintenance (interval flushes, segment rolls, retention, compaction) on every
    /// log. The background thread calls this every `maintenance_interval_ms`. Blocking I/O.
    pub fn maintain(&self, now_ms: i64) {
        for topic in self.topics() {
            for (index, log) in topic.partitions().iter().enumerate() {
                if let Err(e) = log.maintain(now_ms) {
                    tracing::error!(topic = %topic.name(), partition = index, error = %e, "Log maintenance failed");
                }
            }
        }
        if let Err(e) = self.inner.groups.offsets().maintain(now_ms) {
            tracing::error!(error = %e, "Offsets log maintenance failed");
        }
        if let Some(Err(e)) = self.inner.groups.share_state().map(|s| s.maintain(now_ms)) {
            tracing::error!(error = %e, "Share state log maintenance failed");
        }
        if let Err(e) = self.inner.queues.state_log().maintain(now_ms) {
            tracing::error!(error = %e, "Queue state log maintenance failed");
        }
        self.free_acknowledged();
        self.expire_unused_queues();
        self.check_disk_alarm();
        let now = std::time::Instant::now();
        for queue in self.inner.queues.list() {
            queue.sample_rates(now);
        }
        let forgotten = self.inner.txns.expire_idle(now_ms);
        if forgotten > 0 {
            tracing::info!(
                transactional_ids = forgotten,
                "Forgot transactional ids idle for 7 days"
            );
        }
        if let Err(e) = self.inner.txns.maintain(now_ms) {
            tracing::error!(error = %e, "Transaction log maintenance failed");
        }
    }

    /// Starts shutting down: waits for data ([`DataWatch::wait`]) end at once, so long polls
    /// answer and connections can drain. Reads and writes still work until [`Broker::close`].
    pub fn shut_down(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// True once [`Broker::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Stops the background work, then flushes and closes every log. Blocking I/O.
    pub fn close(&self) -> Result<()> {
        self.shut_down();
        self.inner.background.stop_and_join();
        let mut result = Ok(());
        for topic in self.topics() {
            if let Err(e) = topic.close() {
                result = Err(e);
            }
        }
        if let Err(e) = self.inner.groups.offsets().close() {
            tracing::error!(error = %e, "Closing the offsets log failed");
            result = Err(e);
        }
        if let Some(Err(e)) = self.inner.groups.share_state().map(|s| s.close()) {
            tracing::error!(error = %e, "Closing the share state log failed");
            result = Err(e);
        }
        if let Err(e) = self.inner.queues.state_log().close() {
            tracing::error!(error = %e, "Closing the queue state log failed");
            result = Err(e);
        }
        if let Err(e) = self.inner.txns.close() {
            tracing::error!(error = %e, "Closing the transaction log failed");
            result = Err(e);
        }
        if let Some(journal) = &self.inner.context.journal {
            // Every log is synced: the last checkpoint leaves nothing to replay.
            if let Err(e) = journal.close() {
                tracing::error!(error = %e, "Closing the journal failed");
                result = Err(e.into());
            }
        }
        result
    }
}

/// The journal: opened when configured, and also when it is not but one exists, so its
/// records are replayed before it is retired. A new journal that cannot be created (a
/// nearly full disk) leaves the broker running without one.
fn open_journal(
    config: &BrokerConfig,
    storage: Arc<dyn Storage>,
    observer: rivulet_log::FsyncObserver,
) -> Result<Option<Journal>> {
    let dir = config.data_dir.join(JOURNAL_DIR);
    let exists = storage.exists(&dir.join("checkpoint"));
    if config.journal.is_none() && !exists {
        return Ok(None);
    }
    let settings = config.journal.clone().unwrap_or_default();
    match Journal::open(storage, &dir, &config.data_dir, settings, Some(observer)) {
        Ok(journal) => Ok(Some(journal)),
        Err(e) if !exists => {
            tracing::warn!(error = %e, "Running without the journal: every partition syncs its own segments");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Closes a journal that is no longer configured once its records are replayed (the close
/// syncs every partition), and removes it.
fn retire_journal(journal: &Journal, storage: &dyn Storage, dir: &std::path::Path) -> Result<()> {
    journal.close()?;
    storage
        .remove_dir_all(dir)
        .map_err(BrokerError::io("remove the journal", dir))?;
    tracing::info!("The journal is off: its records are in the partitions' segments and it was removed");
    Ok(())
}

/// Frees topics deleted before a restart whose files were not all freed yet.
fn free_trash(storage: &dyn Storage, trash: &std::path::Path) -> Result<()> {
    let leftovers = storage
        .list_dir(trash)
        .map_err(BrokerError::io("list trash", trash))?;
    for name in leftovers {
        let path = trash.join(name);
        tracing::info!(dir = %path.display(), "Freeing a deleted topic left from before the restart");
        rivulet_log::retire_dir(path);
    }
    Ok(())
}

fn open_topics(
    context: &LogContext,
    topics_dir: &std::path::Path,
    defaults: &LogConfig,
) -> Result<HashMap<String, Arc<Topic>>> {
    let mut topics = HashMap::new();
    let names = context
        .storage
        .list_dir(topics_dir)
        .map_err(BrokerError::io("list topics", topics_dir))?;
    for name in names {
        let path = topics_dir.join(&name);
        match Topic::open(context, &path, defaults)? {
            Some(topic) => {
                tracing::info!(topic = %topic.name(), partitions = topic.partition_count(), "Opened topic");
                topics.insert(topic.name().to_string(), Arc::new(topic));
            }
            None => {
                tracing::warn!(dir = %path.display(), "Ignoring a topic directory without topic.json (interrupted create or delete)")
            }
        }
    }
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_broker_cannot_open_the_same_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let first = Broker::open(config.clone()).expect("first opens");
        assert!(matches!(
            Broker::open(config.clone()),
            Err(BrokerError::DataDirLocked { .. })
        ));
        first.close().expect("close");
        drop(first);
        Broker::open(config).expect("reopens once the first is gone");
    }

    /// Waits up to 10 s for the reaper to empty the trash.
    fn wait_for_empty_trash(data: &std::path::Path) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left: Vec<_> = std::fs::read_dir(data.join(TRASH_DIR))
                .expect("list trash")
                .map(|e| e.expect("entry").path())
                .collect();
            if left.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "trash not emptied: {left:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn a_deleted_topic_is_gone_at_once_and_its_files_are_freed_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let broker = Broker::open(config.clone()).expect("open");
        broker
            .create_topic("orders", 2, 1, BTreeMap::new(), false)
            .expect("create");
        let topic = broker.topic("orders").expect("topic");
        // 12 MiB in one partition: the reaper shrinks it in several steps.
        let value = vec![7u8; 512 * 1024];
        let records: Vec<_> = (0..24)
            .map(|_| rivulet_log::record::Record::new(None, Some(value.clone())))
            .collect();
        for record in records {
            let batch = rivulet_log::batch::build(0, rivulet_log::now_ms(), None, &[record]);
            topic.partitions()[0]
                .append(&batch)
                .expect("append")
                .durable
                .wait_blocking()
                .expect("durable");
        }
        broker.delete_topic("orders").expect("delete");
        assert!(broker.topic("orders").is_none());
        assert!(!dir.path().join("topics").join("orders").exists());
        // Recreating the name works while the old files are still being freed.
        broker
            .create_topic("orders", 1, 1, BTreeMap::new(), false)
            .expect("recreate");
        assert_eq!(
            broker.topic("orders").expect("topic").partitions()[0].log_end_offset(),
            0
        );
        wait_for_empty_trash(dir.path());
        broker.close().expect("close");
        drop(broker);

        // A deleted topic left in the trash by a crash is freed on the next start.
        let leftover = dir.path().join(TRASH_DIR).join("old-0000000000000001").join("0");
        std::fs::create_dir_all(&leftover).expect("leftover dir");
        std::fs::write(leftover.join("00000000000000000000.log"), vec![1u8; 4096]).expect("leftover file");
        let broker = Broker::open(config).expect("reopen");
        assert!(broker.topic("old").is_none());
        wait_for_empty_trash(dir.path());
    }
}
