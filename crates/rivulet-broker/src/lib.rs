//! Rivulet's broker core: topics and their partition logs, producer ids, consumer groups
//! and committed offsets. Protocol front ends (the Kafka wire protocol in `rivulet-kafka`)
//! translate requests into calls on [`Broker`].
//!
//! Data directory layout:
//!
//! ```text
//! <data_dir>/topics/<topic>/topic.json     id, partition count, config overrides
//! <data_dir>/topics/<topic>/<partition>/   one rivulet-log Log per partition
//! <data_dir>/internal/__consumer_offsets/  committed offsets (compacted log)
//! <data_dir>/producer_ids                  reserved producer-id block
//! <data_dir>/trash/                         deleted topics whose files are still being freed
//! ```

pub mod error;
pub mod groups;
pub mod offsets;
pub mod partitioner;
pub mod producers;
pub mod topics;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rivulet_log::LogConfig;

pub use error::{BrokerError, Result};
pub use groups::{GroupCoordinator, GroupError, GroupLimits, GroupState};
pub use offsets::{CommittedOffset, OffsetStore};
pub use topics::{ConfigEntry, Topic};

/// Directory under the data directory where deleted topics wait to be freed.
const TRASH_DIR: &str = "trash";

/// Settings of the broker core.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where topics, offsets and producer state live.
    pub data_dir: PathBuf,
    /// Create unknown topics on Metadata/Produce.
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

/// Holds the function told about every fdatasync of a partition log (for metrics).
struct ObserverSlot(std::sync::RwLock<Option<rivulet_log::FsyncObserver>>);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FsyncObserver")
    }
}

#[derive(Debug)]
struct Inner {
    fsync_observer: ObserverSlot,
    config: BrokerConfig,
    /// Held open for the broker's lifetime: its exclusive lock keeps a second process out.
    _lock: std::fs::File,
    topics_dir: PathBuf,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    producer_ids: producers::ProducerIds,
    groups: GroupCoordinator,
}

impl Broker {
    /// Opens the data directory, recovering every topic and the committed offsets.
    /// Blocking I/O: call before serving or from a blocking context.
    pub fn open(config: BrokerConfig) -> Result<Broker> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(BrokerError::io("create data dir", &config.data_dir))?;
        let lock = lock_data_dir(&config.data_dir)?;
        let topics_dir = config.data_dir.join("topics");
        std::fs::create_dir_all(&topics_dir).map_err(BrokerError::io("create data dir", &topics_dir))?;
        let internal = config.data_dir.join("internal");
        std::fs::create_dir_all(&internal).map_err(BrokerError::io("create data dir", &internal))?;
        let trash = config.data_dir.join(TRASH_DIR);
        std::fs::create_dir_all(&trash).map_err(BrokerError::io("create data dir", &trash))?;
        // Topics deleted before a restart whose files were not all freed yet.
        let leftovers = std::fs::read_dir(&trash).map_err(BrokerError::io("list trash", &trash))?;
        for entry in leftovers.flatten() {
            tracing::info!(dir = %entry.path().display(), "Freeing a deleted topic left from before the restart");
            rivulet_log::retire_dir(entry.path());
        }
        let mut topics = HashMap::new();
        let entries = std::fs::read_dir(&topics_dir).map_err(BrokerError::io("list topics", &topics_dir))?;
        for entry in entries {
            let entry = entry.map_err(BrokerError::io("list topics", &topics_dir))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            match Topic::open(&path, &config.default_log_config)? {
                Some(topic) => {
                    tracing::info!(topic = %topic.name(), partitions = topic.partition_count(), "Opened topic");
                    topics.insert(topic.name().to_string(), Arc::new(topic));
                }
                None => {
                    tracing::warn!(dir = %path.display(), "Ignoring a topic directory without topic.json (interrupted create or delete)")
                }
            }
        }
        let producer_ids = producers::ProducerIds::open(&config.data_dir.join("producer_ids"))?;
        let offsets = OffsetStore::open(&internal.join(offsets::OFFSETS_TOPIC))?;
        let groups = GroupCoordinator::new(offsets, config.group_limits.clone());
        Ok(Broker {
            inner: Arc::new(Inner {
                fsync_observer: ObserverSlot(std::sync::RwLock::new(None)),
                config,
                _lock: lock,
                topics_dir,
                topics: RwLock::new(topics),
                producer_ids,
                groups,
            }),
        })
    }

    /// Sets a function told the duration of every fdatasync of every partition log, now
    /// and for topics created later.
    pub fn set_fsync_observer(&self, observer: Option<rivulet_log::FsyncObserver>) {
        *self
            .inner
            .fsync_observer
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner()) = observer;
        for topic in self.topics() {
            self.adopt(&topic);
        }
    }

    fn adopt(&self, topic: &Topic) {
        let observer = self
            .inner
            .fsync_observer
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for log in topic.partitions() {
            log.set_fsync_observer(observer.clone());
        }
    }

    /// The broker's settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// The consumer-group coordinator.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.inner.groups
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

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Topic>>> {
        match self.inner.topics.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write_topics(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Topic>>> {
        match self.inner.topics.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A topic by name, auto-creating it with default settings when `allow_create` and the
    /// broker's auto-creation setting both allow it.
    pub fn get_or_create_topic(&self, name: &str, allow_create: bool) -> Result<Arc<Topic>> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if !(allow_create && self.inner.config.auto_create_topics) {
            return Err(BrokerError::UnknownTopic(name.to_string()));
        }
        match self.create_topic(name, -1, 1, BTreeMap::new(), false) {
            Ok(Some(t)) => {
                tracing::info!(topic = %name, partitions = t.partition_count(), "Auto-created topic");
                Ok(t)
            }
            Ok(None) | Err(BrokerError::TopicExists(_)) => self
                .topic(name)
                .ok_or_else(|| BrokerError::UnknownTopic(name.to_string())),
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
            &self.inner.topics_dir,
            name,
            count,
            overrides,
            &log_config,
        )?);
        self.adopt(&topic);
        topics.insert(name.to_string(), topic.clone());
        Ok(Some(topic))
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

    /// Changes a topic's config overrides (applied at once and stored durably).
    pub fn set_topic_configs(&self, name: &str, overrides: BTreeMap<String, String>) -> Result<()> {
        let topic = self
            .topic(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        topic.set_overrides(overrides, &self.inner.config.default_log_config)
    }

    /// Allocates a producer id, or bumps the epoch of an existing one.
    pub fn init_producer_id(&self, existing: Option<(i64, i16)>) -> Result<(i64, i16)> {
        self.inner.producer_ids.init(existing)
    }

    /// Runs log maintenance (interval flushes, segment rolls, retention, compaction) on every
    /// log and group-session expiry. Blocking I/O: run on a blocking thread.
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
    }

    /// Flushes and closes every log. Blocking I/O.
    pub fn close(&self) -> Result<()> {
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
        result
    }
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
            topic.partitions()[0].append(&batch).expect("append");
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
