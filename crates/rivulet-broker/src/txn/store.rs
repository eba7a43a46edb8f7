//! The transaction log: each transactional id's state as one record keyed by the id, in the
//! internal compacted, fsynced `__transaction_state` log, replayed into memory at start.

use std::collections::HashMap;
use std::path::Path;

use rivulet_log::record::Record;
use rivulet_log::{CleanupPolicy, Durable, FsyncPolicy, Log, LogConfig, LogContext};

use super::TxnMeta;
use crate::error::{BrokerError, Result};

/// Name of the internal topic holding transaction state.
pub const TRANSACTIONS_TOPIC: &str = "__transaction_state";

/// The durable side of the transaction coordinator.
#[derive(Debug)]
pub(crate) struct TxnStore {
    log: Log,
}

impl TxnStore {
    /// Opens the log under `dir` and returns it with the last state of every id.
    pub fn open(dir: &Path, context: &LogContext) -> Result<(TxnStore, HashMap<String, TxnMeta>)> {
        let config = LogConfig {
            segment_bytes: 100 << 20,
            max_batch_bytes: 1 << 20,
            fsync: FsyncPolicy::Always,
            retention_ms: None,
            retention_bytes: None,
            cleanup: CleanupPolicy::COMPACT,
            ..LogConfig::default()
        };
        let log = Log::open_journaled(context, dir, config, TRANSACTIONS_TOPIC.as_bytes())?;
        let store = TxnStore { log };
        let state = store.replay()?;
        Ok((store, state))
    }

    fn replay(&self) -> Result<HashMap<String, TxnMeta>> {
        let mut state = HashMap::new();
        crate::meta::replay_log(&self.log, TRANSACTIONS_TOPIC, |key, value| {
            apply(&mut state, key, value)
        })?;
        tracing::info!(transactional_ids = state.len(), "Loaded transaction state");
        Ok(state)
    }

    /// Appends the state of one id; the handle resolves once it is on disk.
    pub fn write(&self, meta: &TxnMeta) -> Result<Durable> {
        let value = serde_json::to_vec(meta).map_err(|e| BrokerError::CorruptMetadata {
            path: TRANSACTIONS_TOPIC.into(),
            reason: e.to_string(),
        })?;
        let record = Record::new(Some(meta.transactional_id.as_bytes().to_vec()), Some(value));
        let batch = rivulet_log::batch::build(0, rivulet_log::now_ms(), None, &[record]);
        Ok(self.log.append(&batch)?.durable)
    }

    /// Appends a tombstone for `transactional_id`: compaction then forgets it.
    pub fn forget(&self, transactional_id: &str) -> Result<Durable> {
        let record = Record::new(Some(transactional_id.as_bytes().to_vec()), None);
        let batch = rivulet_log::batch::build(0, rivulet_log::now_ms(), None, &[record]);
        Ok(self.log.append(&batch)?.durable)
    }

    /// Runs the log's periodic maintenance (compaction, flushes).
    pub fn maintain(&self, now_ms: i64) -> Result<()> {
        Ok(self.log.maintain(now_ms)?)
    }

    /// Flushes and closes the log.
    pub fn close(&self) -> Result<()> {
        Ok(self.log.close()?)
    }
}

fn apply(state: &mut HashMap<String, TxnMeta>, key: Option<&[u8]>, value: Option<&[u8]>) {
    let Some(key) = key.map(|k| String::from_utf8_lossy(k).into_owned()) else {
        return;
    };
    match value.map(serde_json::from_slice::<TxnMeta>) {
        None => {
            state.remove(&key);
        }
        Some(Ok(meta)) => {
            state.insert(key, meta);
        }
        Some(Err(e)) => tracing::warn!(error = %e, "Skipping an unreadable transaction state record"),
    }
}
