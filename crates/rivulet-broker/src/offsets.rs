//! Committed consumer-group offsets, stored durably in the internal compacted
//! `__consumer_offsets` log and kept in memory for lookups.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rivulet_log::record::Record;
use rivulet_log::{CleanupPolicy, FsyncPolicy, Log, LogConfig, LogContext};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Name of the internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Name of the internal topic holding share groups' start offsets (an [`OffsetStore`] too).
pub const SHARE_STATE_TOPIC: &str = "__share_group_state";
/// Largest `metadata` string accepted with a commit (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch the client saw, or -1.
    pub leader_epoch: i32,
    /// Client metadata string, round-tripped as given.
    pub metadata: Option<String>,
    /// When the commit was made (ms since the epoch).
    pub commit_timestamp_ms: i64,
}

type GroupOffsets = HashMap<(String, i32), CommittedOffset>;

/// Durable store of committed offsets.
#[derive(Debug)]
pub struct OffsetStore {
    name: &'static str,
    log: Log,
    state: Mutex<HashMap<String, GroupOffsets>>,
}

fn encode_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    serde_json::to_vec(&(group, topic, partition)).unwrap_or_default()
}

impl OffsetStore {
    /// Opens the offsets log under `dir` and replays it into memory.
    pub fn open(dir: &Path, context: &LogContext) -> Result<OffsetStore> {
        OffsetStore::open_named(dir, context, OFFSETS_TOPIC)
    }

    /// Opens an offsets log named `name` (its key in the shared journal) under `dir`.
    pub fn open_named(dir: &Path, context: &LogContext, name: &'static str) -> Result<OffsetStore> {
        OffsetStore::open_with_fsync(dir, context, name, FsyncPolicy::Always)
    }

    /// [`OffsetStore::open_named`] with another fsync policy: a store written on every
    /// acknowledgement syncs on an interval instead, so its writes never wait for the disk
    /// or add journal commits (a crash of the process keeps them; a power loss may lose
    /// the last interval).
    pub fn open_with_fsync(
        dir: &Path,
        context: &LogContext,
        name: &'static str,
        fsync: FsyncPolicy,
    ) -> Result<OffsetStore> {
        let config = LogConfig {
            segment_bytes: 100 << 20,
            max_batch_bytes: 16 << 20,
            fsync,
            retention_ms: None,
            retention_bytes: None,
            cleanup: CleanupPolicy::COMPACT,
            ..LogConfig::default()
        };
        let log = Log::open_journaled(context, dir, config, name.as_bytes())?;
        let store = OffsetStore {
            name,
            log,
            state: Mutex::new(HashMap::new()),
        };
        store.replay()?;
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, GroupOffsets>> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn replay(&self) -> Result<()> {
        let mut state = self.lock();
        let applied = crate::meta::replay_log(&self.log, self.name, |key, value| {
            apply_record(&mut state, key, value)
        })?;
        tracing::info!(
            records = applied,
            groups = state.len(),
            store = self.name,
            "Loaded committed offsets"
        );
        Ok(())
    }

    /// Durably stores offsets for one group. Returns after the commit is on disk.
    pub async fn commit(&self, group: &str, entries: Vec<(String, i32, CommittedOffset)>) -> Result<()> {
        if let Some(durable) = self.commit_durable(group, entries)? {
            durable.wait().await?;
        }
        Ok(())
    }

    /// Stores offsets for one group; the handle resolves once they are on disk (`None`:
    /// nothing to store). Readers see the offsets at once.
    pub fn commit_durable(
        &self,
        group: &str,
        entries: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<Option<rivulet_log::Durable>> {
        if entries.is_empty() {
            return Ok(None);
        }
        let records: Vec<Record> = entries
            .iter()
            .map(|(topic, partition, c)| {
                Record::new(
                    Some(encode_key(group, topic, *partition)),
                    Some(serde_json::to_vec(c).unwrap_or_default()),
                )
            })
            .collect();
        let batch = rivulet_log::batch::build(0, now_ms(), None, &records);
        let outcome = {
            // Append and update memory under one lock so memory and log agree on order.
            let mut state = self.lock();
            let outcome = self.log.append(&batch)?;
            let group_state = state.entry(group.to_string()).or_default();
            for (topic, partition, c) in entries {
                group_state.insert((topic, partition), c);
            }
            outcome
        };
        Ok(Some(outcome.durable))
    }

    /// The committed offset of one partition.
    pub fn fetch(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.lock()
            .get(group)
            .and_then(|g| g.get(&(topic.to_string(), partition)).cloned())
    }

    /// Every committed offset of a group, sorted by topic and partition.
    pub fn group_offsets(&self, group: &str) -> Vec<(String, i32, CommittedOffset)> {
        let mut out: Vec<_> = self
            .lock()
            .get(group)
            .map(|g| g.iter().map(|((t, p), c)| (t.clone(), *p, c.clone())).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Removes every committed offset of a group (writes tombstones).
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let partitions: Vec<(String, i32)> = match self.lock().get(group) {
            Some(offsets) => offsets.keys().cloned().collect(),
            None => return Ok(()),
        };
        self.delete_partitions(group, &partitions).await
    }

    /// Removes the committed offsets of some partitions of a group (writes tombstones for
    /// those it has).
    pub async fn delete_partitions(&self, group: &str, partitions: &[(String, i32)]) -> Result<()> {
        if let Some(durable) = self.forget(group, partitions)? {
            durable.wait().await?;
        }
        Ok(())
    }

    /// [`OffsetStore::delete_partitions`] without waiting: the handle resolves once the
    /// tombstones are on disk (`None`: nothing to remove).
    pub fn forget(&self, group: &str, partitions: &[(String, i32)]) -> Result<Option<rivulet_log::Durable>> {
        let mut state = self.lock();
        let Some(offsets) = state.get_mut(group) else {
            return Ok(None);
        };
        let records: Vec<Record> = partitions
            .iter()
            .filter(|(t, p)| offsets.remove(&(t.clone(), *p)).is_some())
            .map(|(t, p)| Record::new(Some(encode_key(group, t, *p)), None))
            .collect();
        if offsets.is_empty() {
            state.remove(group);
        }
        if records.is_empty() {
            return Ok(None);
        }
        let batch = rivulet_log::batch::build(0, now_ms(), None, &records);
        Ok(Some(self.log.append(&batch)?.durable))
    }

    /// Runs the offsets log's periodic maintenance (compaction, flushes).
    pub fn maintain(&self, now_ms: i64) -> Result<()> {
        Ok(self.log.maintain(now_ms)?)
    }

    /// Flushes and closes the offsets log.
    pub fn close(&self) -> Result<()> {
        Ok(self.log.close()?)
    }
}

fn apply_record(state: &mut HashMap<String, GroupOffsets>, key: Option<&[u8]>, value: Option<&[u8]>) {
    let Some(key) = key else {
        return;
    };
    let Ok((group, topic, partition)) = serde_json::from_slice::<(String, String, i32)>(key) else {
        tracing::warn!("Skipping an offsets record with an unreadable key");
        return;
    };
    match value {
        None => {
            if let Some(g) = state.get_mut(&group) {
                g.remove(&(topic, partition));
                if g.is_empty() {
                    state.remove(&group);
                }
            }
        }
        Some(value) => match serde_json::from_slice::<CommittedOffset>(value) {
            Ok(c) => {
                state.entry(group).or_default().insert((topic, partition), c);
            }
            Err(e) => tracing::warn!(error = %e, "Skipping an offsets record with an unreadable value"),
        },
    }
}

pub use rivulet_log::now_ms;
