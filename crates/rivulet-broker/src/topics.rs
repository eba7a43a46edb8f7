//! Topics: names, per-topic configs, partition logs and their on-disk metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rivulet_log::storage::Storage;
use rivulet_log::{CleanupPolicy, FsyncPolicy, Log, LogConfig, LogContext};
use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};
use crate::meta;

/// Longest topic name Kafka accepts.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Name of the per-topic metadata file inside the topic directory.
const META_FILE: &str = "topic.json";

/// Topic config keys Rivulet accepts, in the order DescribeConfigs lists them: those that
/// shape the log (see [`apply_topic_config`]), then Kafka's other standard keys, which are
/// validated, stored and described (see [`STORED_KEYS`]).
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "delete.retention.ms",
    "fsync.policy",
    "message.timestamp.type",
    "compression.type",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "message.timestamp.difference.max.ms",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "segment.jitter.ms",
    "index.interval.bytes",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "message.downconversion.enable",
    "message.format.version",
    "min.cleanable.dirty.ratio",
    "min.insync.replicas",
    "preallocate",
    "remote.storage.enable",
    "segment.index.bytes",
    "unclean.leader.election.enable",
];

/// What values a stored-only config key takes.
#[derive(Debug, Clone, Copy)]
pub enum ConfigKind {
    /// An integer at least this large.
    Int(i64),
    /// `true` or `false`.
    Bool,
    /// A number within `[0, 1]`.
    Ratio,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// Any text (a list, a version).
    Text,
}

/// Kafka's standard topic config keys that do not shape a single-node log (replication,
/// tiered storage, flush and cleaner tuning): `(key, Kafka's default, values)`. They are validated, stored with the topic and
/// described with their source, so tools that copy or create topics with them work.
pub const STORED_KEYS: &[(&str, &str, ConfigKind)] = &[
    ("file.delete.delay.ms", "60000", ConfigKind::Int(0)),
    ("flush.messages", "9223372036854775807", ConfigKind::Int(1)),
    ("flush.ms", "9223372036854775807", ConfigKind::Int(0)),
    ("follower.replication.throttled.replicas", "", ConfigKind::Text),
    ("leader.replication.throttled.replicas", "", ConfigKind::Text),
    ("local.retention.bytes", "-2", ConfigKind::Int(-2)),
    ("local.retention.ms", "-2", ConfigKind::Int(-2)),
    ("message.downconversion.enable", "true", ConfigKind::Bool),
    ("message.format.version", "3.0-IV1", ConfigKind::Text),
    ("min.cleanable.dirty.ratio", "0.5", ConfigKind::Ratio),
    ("min.insync.replicas", "1", ConfigKind::Int(1)),
    ("preallocate", "false", ConfigKind::Bool),
    ("remote.storage.enable", "false", ConfigKind::Bool),
    ("segment.index.bytes", "10485760", ConfigKind::Int(4)),
    ("unclean.leader.election.enable", "false", ConfigKind::Bool),
];

/// The entry of a stored-only key.
fn stored_key(key: &str) -> Option<&'static (&'static str, &'static str, ConfigKind)> {
    STORED_KEYS.iter().find(|(k, _, _)| *k == key)
}

/// Checks a value of a stored-only key against its kind.
fn check_stored(key: &str, kind: ConfigKind, value: &str) -> Result<()> {
    let bad = |reason: String| BrokerError::InvalidConfig {
        key: key.to_string(),
        reason,
    };
    let v = value.trim();
    match kind {
        ConfigKind::Int(min) => match v.parse::<i64>() {
            Ok(n) if n >= min => Ok(()),
            Ok(n) => Err(bad(format!("{n} is below the minimum {min}"))),
            Err(_) => Err(bad(format!("{v:?} is not an integer"))),
        },
        ConfigKind::Bool => match v {
            "true" | "false" => Ok(()),
            _ => Err(bad(format!("{v:?} is not true or false"))),
        },
        ConfigKind::Ratio => match v.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
            _ => Err(bad(format!("{v:?} is not a number within [0, 1]"))),
        },
        ConfigKind::OneOf(words) if words.contains(&v) => Ok(()),
        ConfigKind::OneOf(words) => Err(bad(format!("{v:?} is not one of {}", words.join(", ")))),
        ConfigKind::Text => Ok(()),
    }
}

/// Checks a topic name against Kafka's rules: 1..=249 bytes of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(BrokerError::InvalidTopicName {
            name: name.chars().take(300).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid("longer than 249 bytes");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are reserved");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Applies one Kafka-style topic config override onto a log config.
pub fn apply_topic_config(config: &mut LogConfig, key: &str, value: &str) -> Result<()> {
    let bad = |reason: String| BrokerError::InvalidConfig {
        key: key.to_string(),
        reason,
    };
    let int = |v: &str| -> Result<i64> {
        v.trim()
            .parse::<i64>()
            .map_err(|_| bad(format!("{v:?} is not an integer")))
    };
    let non_negative =
        |v: i64| -> Result<u64> { u64::try_from(v).map_err(|_| bad(format!("{v} must not be negative"))) };
    match key {
        "cleanup.policy" => config.cleanup = CleanupPolicy::parse(value).map_err(|e| bad(e.to_string()))?,
        "retention.ms" => {
            let v = int(value)?;
            config.retention_ms = if v < 0 { None } else { Some(v as u64) };
        }
        "retention.bytes" => {
            let v = int(value)?;
            config.retention_bytes = if v < 0 { None } else { Some(v as u64) };
        }
        "segment.bytes" => config.segment_bytes = non_negative(int(value)?)?,
        "segment.ms" => {
            let v = int(value)?;
            config.segment_ms = if v <= 0 { None } else { Some(v as u64) };
        }
        "max.message.bytes" => {
            config.max_batch_bytes =
                usize::try_from(non_negative(int(value)?)?).map_err(|_| bad("too large".to_string()))?
        }
        "delete.retention.ms" => config.delete_retention_ms = non_negative(int(value)?)?,
        "fsync.policy" => config.fsync = FsyncPolicy::parse(value.trim()).map_err(|e| bad(e.to_string()))?,
        "message.timestamp.type" => {
            config.log_append_time = match value.trim() {
                "CreateTime" => false,
                "LogAppendTime" => true,
                other => return Err(bad(format!("{other:?} is not CreateTime or LogAppendTime"))),
            }
        }
        "compression.type" => {
            config.compression = match value.trim() {
                "producer" => None,
                "uncompressed" => Some(0),
                "gzip" => Some(1),
                "snappy" => Some(2),
                "lz4" => Some(3),
                "zstd" => Some(4),
                other => {
                    return Err(bad(format!(
                        "{other:?} is not one of uncompressed, zstd, lz4, snappy, gzip, producer"
                    )))
                }
            }
        }
        "message.timestamp.before.max.ms" => {
            config.timestamp_bounds.before_max_ms = bound(non_negative(int(value)?)?)
        }
        "message.timestamp.after.max.ms" => {
            config.timestamp_bounds.after_max_ms = bound(non_negative(int(value)?)?)
        }
        // Kafka's older key, both directions at once; the newer keys win when set too.
        "message.timestamp.difference.max.ms" => {
            let v = bound(non_negative(int(value)?)?);
            let b = &mut config.timestamp_bounds;
            b.before_max_ms = b.before_max_ms.or(v);
            b.after_max_ms = b.after_max_ms.or(v);
        }
        "min.compaction.lag.ms" => config.min_compaction_lag_ms = non_negative(int(value)?)?,
        "segment.jitter.ms" => config.segment_jitter_ms = non_negative(int(value)?)?,
        // 0 (an entry per batch in Kafka) becomes the smallest spacing the index takes.
        "index.interval.bytes" => {
            config.index_interval_bytes =
                u32::try_from(non_negative(int(value)?)?.max(1)).map_err(|_| bad("too large".to_string()))?
        }
        "max.compaction.lag.ms" => {
            let v = int(value)?;
            if v < 1 {
                return Err(bad(format!("{v} is below the minimum 1")));
            }
            config.max_compaction_lag_ms = bound(v as u64);
        }
        other => match stored_key(other) {
            Some((_, _, kind)) => check_stored(other, *kind, value)?,
            None => return Err(bad("unknown config key".to_string())),
        },
    }
    Ok(())
}

/// `None` for Kafka's "no bound" (`Long.MAX_VALUE`).
fn bound(ms: u64) -> Option<u64> {
    (ms < i64::MAX as u64).then_some(ms)
}

/// Kafka's text for an optional bound.
fn bound_text(ms: Option<u64>) -> String {
    ms.unwrap_or(i64::MAX as u64).to_string()
}

/// The current value of a config key in a log config, in Kafka's text form.
pub fn topic_config_value(config: &LogConfig, key: &str) -> Option<String> {
    let opt = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
    Some(match key {
        "cleanup.policy" => config.cleanup.as_str().to_string(),
        "retention.ms" => opt(config.retention_ms),
        "retention.bytes" => opt(config.retention_bytes),
        "segment.bytes" => config.segment_bytes.to_string(),
        "segment.ms" => opt(config.segment_ms),
        "max.message.bytes" => config.max_batch_bytes.to_string(),
        "delete.retention.ms" => config.delete_retention_ms.to_string(),
        "fsync.policy" => config.fsync.as_string(),
        "message.timestamp.type" => match config.log_append_time {
            true => "LogAppendTime".to_string(),
            false => "CreateTime".to_string(),
        },
        "compression.type" => match config.compression {
            None => "producer",
            Some(0) => "uncompressed",
            Some(1) => "gzip",
            Some(2) => "snappy",
            Some(3) => "lz4",
            Some(_) => "zstd",
        }
        .to_string(),
        "message.timestamp.before.max.ms" => bound_text(config.timestamp_bounds.before_max_ms),
        "message.timestamp.after.max.ms" => bound_text(config.timestamp_bounds.after_max_ms),
        // Described as stored; its effect shows in the two keys above.
        "message.timestamp.difference.max.ms" => bound_text(None),
        "min.compaction.lag.ms" => config.min_compaction_lag_ms.to_string(),
        "segment.jitter.ms" => config.segment_jitter_ms.to_string(),
        "index.interval.bytes" => config.index_interval_bytes.to_string(),
        "max.compaction.lag.ms" => bound_text(config.max_compaction_lag_ms),
        other => stored_key(other)?.1.to_string(),
    })
}

/// Builds a topic's log config from broker defaults plus overrides; validates the result.
pub fn build_log_config(defaults: &LogConfig, overrides: &BTreeMap<String, String>) -> Result<LogConfig> {
    let mut config = defaults.clone();
    for (key, value) in overrides {
        apply_topic_config(&mut config, key, value)?;
    }
    config.validate().map_err(|e| BrokerError::InvalidConfig {
        key: "config".to_string(),
        reason: e.to_string(),
    })?;
    Ok(config)
}

/// One entry of a topic's described configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Kafka config key.
    pub name: String,
    /// Current value.
    pub value: String,
    /// True when the value is the broker default rather than a topic override.
    pub is_default: bool,
}

/// What is stored in a topic's `topic.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TopicMeta {
    /// Topic id as 32 hex digits.
    id: String,
    partitions: u32,
    configs: BTreeMap<String, String>,
}

/// One partition's offsets and size, as admin views show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// First offset still stored.
    pub log_start_offset: i64,
    /// Offset after the last record readers may see.
    pub high_watermark: i64,
    /// Offset the next record will get.
    pub log_end_offset: i64,
    /// Offset below which every transaction is decided (read_committed readers stop here).
    pub last_stable_offset: i64,
    /// Transactions open in the partition.
    pub open_transactions: usize,
    /// Bytes of the partition's segments.
    pub size_bytes: u64,
    /// Number of segments.
    pub segments: usize,
}

/// A topic: its partition logs and config overrides. Front ends see its name, id, configs
/// and partition figures; reading and writing go through the [`crate::Broker`]'s calls.
#[derive(Debug)]
pub struct Topic {
    name: String,
    id: u128,
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    partitions: Vec<Log>,
    overrides: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Topic {
    /// The topic name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's stable 128-bit id (Kafka topic UUID).
    pub fn id(&self) -> u128 {
        self.id
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// The log of one partition, if the index is in range.
    pub(crate) fn partition(&self, index: i32) -> Option<&Log> {
        usize::try_from(index).ok().and_then(|i| self.partitions.get(i))
    }

    /// All partition logs, by index.
    pub(crate) fn partitions(&self) -> &[Log] {
        &self.partitions
    }

    /// `(log start offset, high watermark)` of one partition: two numbers, one lock.
    pub fn offsets(&self, index: i32) -> Option<(i64, i64)> {
        self.partition(index).map(Log::offsets)
    }

    /// Offsets and size of one partition.
    pub fn partition_info(&self, index: i32) -> Option<PartitionInfo> {
        self.partition(index).map(|log| PartitionInfo {
            partition: index,
            log_start_offset: log.log_start_offset(),
            high_watermark: log.high_watermark(),
            log_end_offset: log.log_end_offset(),
            last_stable_offset: log.last_stable_offset(),
            open_transactions: log.open_transactions(),
            size_bytes: log.size_bytes(),
            segments: log.segment_count(),
        })
    }

    /// Offsets and size of every partition.
    pub fn partition_infos(&self) -> Vec<PartitionInfo> {
        (0..self.partitions.len() as i32)
            .filter_map(|i| self.partition_info(i))
            .collect()
    }

    /// Bytes of all partitions' segments.
    pub fn size_bytes(&self) -> u64 {
        self.partitions.iter().map(Log::size_bytes).sum()
    }

    /// The topic's config overrides.
    pub fn overrides(&self) -> BTreeMap<String, String> {
        match self.overrides.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How long records are kept; `None` for ever.
    pub fn retention_ms(&self) -> Option<u64> {
        self.partitions.first().and_then(|log| log.config().retention_ms)
    }

    /// Every config key with its effective value.
    pub fn describe_configs(&self) -> Vec<ConfigEntry> {
        let overrides = self.overrides();
        let config = self
            .partitions
            .first()
            .map(|log| log.config())
            .unwrap_or_default();
        TOPIC_CONFIG_KEYS
            .iter()
            .filter_map(|key| {
                // A stored-only key's override is its value (so is the older timestamp
                // key's, whose effect the newer two show); the others are read back from
                // the log config the override shaped.
                let as_set = stored_key(key).is_some() || *key == "message.timestamp.difference.max.ms";
                let stored = as_set.then(|| overrides.get(*key).cloned()).flatten();
                stored
                    .or_else(|| topic_config_value(&config, key))
                    .map(|value| ConfigEntry {
                        name: key.to_string(),
                        value,
                        is_default: !overrides.contains_key(*key),
                    })
            })
            .collect()
    }

    /// Creates a topic on disk and opens its logs. On failure nothing of it is left.
    pub(crate) fn create(
        context: &LogContext,
        topics_dir: &Path,
        name: &str,
        partitions: u32,
        overrides: BTreeMap<String, String>,
        log_config: &LogConfig,
    ) -> Result<Topic> {
        let storage = context.storage.clone();
        let dir = topics_dir.join(name);
        if storage.exists(&dir) {
            // Left over from an interrupted create or delete: start clean.
            storage
                .remove_dir_all(&dir)
                .map_err(BrokerError::io("remove stale topic dir", &dir))?;
        }
        let created = Topic::create_in(context, &dir, name, partitions, overrides, log_config)
            .and_then(|topic| meta::sync_dir(storage.as_ref(), topics_dir).map(|()| topic));
        if created.is_err() {
            // Without its metadata the directory would be ignored on the next start anyway;
            // remove it now so a retry starts clean.
            let _ = storage.remove_dir_all(&dir);
        }
        created
    }

    fn create_in(
        context: &LogContext,
        dir: &Path,
        name: &str,
        partitions: u32,
        overrides: BTreeMap<String, String>,
        log_config: &LogConfig,
    ) -> Result<Topic> {
        context
            .storage
            .create_dir_all(dir)
            .map_err(BrokerError::io("create topic dir", dir))?;
        let id = random_u128();
        let mut logs = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            logs.push(open_partition(context, dir, id, p, log_config)?);
        }
        let topic = Topic {
            name: name.to_string(),
            id,
            dir: dir.to_path_buf(),
            storage: context.storage.clone(),
            partitions: logs,
            overrides: std::sync::Mutex::new(overrides),
        };
        topic.write_meta(&topic.overrides())?;
        Ok(topic)
    }

    /// Opens a topic from its directory. Returns `Ok(None)` for a directory without metadata.
    pub(crate) fn open(context: &LogContext, dir: &Path, defaults: &LogConfig) -> Result<Option<Topic>> {
        let meta_path = dir.join(META_FILE);
        let text = match meta::read_file(context.storage.as_ref(), &meta_path) {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(None),
            Err(BrokerError::Io { source, .. }) if source.raw_os_error() == Some(20) => return Ok(None),
            Err(e) => return Err(e),
        };
        let corrupt = |reason: String| BrokerError::CorruptMetadata {
            path: meta_path.clone(),
            reason,
        };
        let meta: TopicMeta = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        let id = u128::from_str_radix(&meta.id, 16).map_err(|e| corrupt(e.to_string()))?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| corrupt("directory name is not UTF-8".to_string()))?
            .to_string();
        validate_topic_name(&name)?;
        let log_config = build_log_config(defaults, &meta.configs)?;
        let mut logs = Vec::with_capacity(meta.partitions as usize);
        for p in 0..meta.partitions {
            logs.push(open_partition(context, dir, id, p, &log_config)?);
        }
        Ok(Some(Topic {
            name,
            id,
            dir: dir.to_path_buf(),
            storage: context.storage.clone(),
            partitions: logs,
            overrides: std::sync::Mutex::new(meta.configs),
        }))
    }

    /// The same topic with `count` partitions: the existing logs and new empty ones after
    /// them, the new count stored durably. On failure the topic stays as it was (new
    /// partition directories are ignored without the count in the metadata).
    pub(crate) fn with_partitions(
        &self,
        context: &LogContext,
        count: u32,
        defaults: &LogConfig,
    ) -> Result<Topic> {
        assert!(count as usize > self.partitions.len(), "partitions only grow");
        let overrides = self.overrides();
        let config = build_log_config(defaults, &overrides)?;
        let mut logs = self.partitions.clone();
        for p in self.partitions.len() as u32..count {
            let dir = self.dir.join(p.to_string());
            if context.storage.exists(&dir) {
                // Left by an earlier attempt that did not store the new count.
                context
                    .storage
                    .remove_dir_all(&dir)
                    .map_err(BrokerError::io("remove stale partition dir", &dir))?;
            }
            logs.push(open_partition(context, &self.dir, self.id, p, &config)?);
        }
        let topic = Topic {
            name: self.name.clone(),
            id: self.id,
            dir: self.dir.clone(),
            storage: self.storage.clone(),
            partitions: logs,
            overrides: std::sync::Mutex::new(overrides.clone()),
        };
        topic.write_meta(&overrides)?;
        Ok(topic)
    }

    /// Replaces the config overrides: validated, stored durably, then applied to every
    /// partition. A failure to store leaves the topic as it was.
    pub(crate) fn set_overrides(
        &self,
        overrides: BTreeMap<String, String>,
        defaults: &LogConfig,
    ) -> Result<()> {
        let config = build_log_config(defaults, &overrides)?;
        self.write_meta(&overrides)?;
        for log in &self.partitions {
            log.set_config(config.clone())?;
        }
        match self.overrides.lock() {
            Ok(mut g) => *g = overrides,
            Err(poisoned) => *poisoned.into_inner() = overrides,
        }
        Ok(())
    }

    fn write_meta(&self, overrides: &BTreeMap<String, String>) -> Result<()> {
        let meta = TopicMeta {
            id: format!("{:032x}", self.id),
            partitions: self.partitions.len() as u32,
            configs: overrides.clone(),
        };
        let text = serde_json::to_vec_pretty(&meta).map_err(|e| BrokerError::CorruptMetadata {
            path: self.dir.join(META_FILE),
            reason: e.to_string(),
        })?;
        meta::write_atomically(self.storage.as_ref(), &self.dir.join(META_FILE), &text)
    }

    /// Closes the logs and deletes the topic's directory: it is moved into `trash` (durably:
    /// the topic is gone from then on, crash or not) and its files are freed gradually in
    /// the background, so deleting gigabytes does not stall the fdatasyncs of other topics.
    pub(crate) fn delete(&self, trash: &Path) -> Result<()> {
        let storage = self.storage.as_ref();
        // Remove the metadata first: a crash midway leaves a directory that is not loaded.
        let meta_path = self.dir.join(META_FILE);
        storage
            .remove_file(&meta_path)
            .map_err(BrokerError::io("remove topic metadata", &meta_path))?;
        for log in &self.partitions {
            log.mark_deleted();
        }
        let target = trash.join(format!("{}-{:016x}", self.name, random_u128() as u64));
        if let Err(e) = storage.rename(&self.dir, &target) {
            tracing::warn!(topic = %self.name, error = %e, "Cannot move a deleted topic to the trash; deleting it at once");
            storage
                .remove_dir_all(&self.dir)
                .map_err(BrokerError::io("remove topic dir", &self.dir))?;
            return Ok(());
        }
        meta::sync_dir(storage, trash)?;
        if let Some(parent) = self.dir.parent() {
            meta::sync_dir(storage, parent)?;
        }
        rivulet_log::retire_dir(target);
        Ok(())
    }

    /// Flushes and closes every partition log.
    pub(crate) fn close(&self) -> Result<()> {
        let mut first_error = None;
        for log in &self.partitions {
            if let Err(e) = log.close() {
                tracing::error!(topic = %self.name, error = %e, "Closing a partition log failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), |e| Err(e.into()))
    }
}

/// 128 random bits from the standard library's randomly seeded hasher and the clock.
pub(crate) fn random_u128() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut a = RandomState::new().build_hasher();
    a.write_u128(nanos);
    let mut b = RandomState::new().build_hasher();
    b.write_u64(a.finish());
    ((a.finish() as u128) << 64) | b.finish() as u128
}

/// Opens partition `p` of the topic with id `id`. Its journal key is the topic id and the
/// partition: a re-created topic has a new id, so the journal never replays a deleted
/// topic's records into it.
fn open_partition(context: &LogContext, dir: &Path, id: u128, p: u32, config: &LogConfig) -> Result<Log> {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(&id.to_be_bytes());
    key[16..].copy_from_slice(&p.to_be_bytes());
    Ok(Log::open_journaled(
        context,
        dir.join(p.to_string()),
        config.clone(),
        &key,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("test-topic_1.x").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn configs_round_trip_through_text() {
        let mut overrides = BTreeMap::new();
        overrides.insert("retention.ms".to_string(), "-1".to_string());
        overrides.insert("cleanup.policy".to_string(), "compact".to_string());
        overrides.insert("fsync.policy".to_string(), "interval:250".to_string());
        let config = build_log_config(&LogConfig::default(), &overrides).expect("valid");
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.cleanup, CleanupPolicy::COMPACT);
        assert_eq!(
            topic_config_value(&config, "fsync.policy").as_deref(),
            Some("interval:250")
        );
        overrides.insert("bogus".to_string(), "1".to_string());
        assert!(build_log_config(&LogConfig::default(), &overrides).is_err());
    }

    #[test]
    fn every_standard_key_is_accepted_with_a_valid_value_and_refused_with_a_bad_one() {
        for key in TOPIC_CONFIG_KEYS {
            assert!(
                topic_config_value(&LogConfig::default(), key).is_some(),
                "{key} has no described value"
            );
        }
        for (key, default, kind) in STORED_KEYS {
            let mut overrides = BTreeMap::new();
            overrides.insert(key.to_string(), default.to_string());
            assert!(
                build_log_config(&LogConfig::default(), &overrides).is_ok(),
                "{key}={default}"
            );
            let bad = match kind {
                ConfigKind::Int(min) => Some((min - 1).to_string()),
                ConfigKind::Bool => Some("yes".to_string()),
                ConfigKind::Ratio => Some("1.5".to_string()),
                ConfigKind::OneOf(_) => Some("nonsense".to_string()),
                ConfigKind::Text => None,
            };
            if let Some(bad) = bad {
                overrides.insert(key.to_string(), bad.clone());
                match build_log_config(&LogConfig::default(), &overrides) {
                    Err(BrokerError::InvalidConfig { key: named, .. }) => assert_eq!(named, *key),
                    other => panic!("{key}={bad} was not refused: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn compression_timestamp_and_compaction_keys_shape_the_log() {
        let set = |pairs: &[(&str, &str)]| {
            let overrides: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            build_log_config(&LogConfig::default(), &overrides)
        };
        let config = set(&[
            ("compression.type", "zstd"),
            ("message.timestamp.difference.max.ms", "5000"),
            ("message.timestamp.after.max.ms", "100"),
            ("min.compaction.lag.ms", "60000"),
            ("max.compaction.lag.ms", "86400000"),
        ])
        .expect("valid");
        assert_eq!(config.compression, Some(4));
        assert_eq!(
            topic_config_value(&config, "compression.type").as_deref(),
            Some("zstd")
        );
        // The newer key wins over the older one in its direction.
        assert_eq!(config.timestamp_bounds.after_max_ms, Some(100));
        assert_eq!(config.timestamp_bounds.before_max_ms, Some(5000));
        assert_eq!(config.min_compaction_lag_ms, 60_000);
        assert_eq!(config.max_compaction_lag_ms, Some(86_400_000));
        let defaults = set(&[("max.compaction.lag.ms", "9223372036854775807")]).expect("valid");
        assert_eq!(
            defaults.max_compaction_lag_ms, None,
            "Long.MAX_VALUE means no bound"
        );
        assert_eq!(
            topic_config_value(&defaults, "message.timestamp.before.max.ms").as_deref(),
            Some("9223372036854775807")
        );
        for (key, bad) in [
            ("compression.type", "brotli"),
            ("max.compaction.lag.ms", "0"),
            ("min.compaction.lag.ms", "-5"),
            ("message.timestamp.before.max.ms", "soon"),
        ] {
            match set(&[(key, bad)]) {
                Err(BrokerError::InvalidConfig { key: named, .. }) => assert_eq!(named, key),
                other => panic!("{key}={bad} was not refused: {other:?}"),
            }
        }
    }
}
