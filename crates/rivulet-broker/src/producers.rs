//! Producer id allocation for idempotent producers.
//!
//! Sequence numbers and deduplication live in each partition log (which also recovers them);
//! the broker only hands out producer ids that are never reused, even across restarts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rivulet_log::storage::Storage;

use crate::error::{BrokerError, Result};
use crate::meta;

/// Producer ids reserved on disk at a time; a restart skips the unused rest of a block.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1_000;

/// Hands out unique producer ids and bumps epochs.
#[derive(Debug)]
pub struct ProducerIds {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    state: Mutex<IdState>,
}

#[derive(Debug)]
struct IdState {
    next_id: i64,
    reserved_end: i64,
}

impl ProducerIds {
    /// Opens (or creates) the allocator state stored at `path`.
    pub fn open(storage: Arc<dyn Storage>, path: &Path) -> Result<ProducerIds> {
        let corrupt = |reason: String| BrokerError::CorruptMetadata {
            path: path.to_path_buf(),
            reason,
        };
        let reserved_end = match meta::read_file(storage.as_ref(), path)? {
            Some(bytes) => String::from_utf8_lossy(&bytes)
                .trim()
                .parse::<i64>()
                .map_err(|e| corrupt(e.to_string()))?,
            None => 0,
        };
        if reserved_end < 0 {
            return Err(corrupt(format!("negative producer id block end {reserved_end}")));
        }
        Ok(ProducerIds {
            storage,
            path: path.to_path_buf(),
            state: Mutex::new(IdState {
                next_id: reserved_end,
                reserved_end,
            }),
        })
    }

    /// Allocates a fresh producer id (epoch 0), or bumps the epoch of an existing one.
    ///
    /// `existing` is the (id, epoch) a producer presents when it re-initializes (KIP-360).
    /// An id this broker never issued, or an exhausted epoch, gets a fresh id.
    pub fn init(&self, existing: Option<(i64, i16)>) -> Result<(i64, i16)> {
        let mut state = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((id, epoch)) = existing {
            if (0..state.next_id).contains(&id) && (0..i16::MAX - 1).contains(&epoch) {
                return Ok((id, epoch + 1));
            }
        }
        if state.next_id >= state.reserved_end {
            let new_end = state.reserved_end + PRODUCER_ID_BLOCK_SIZE;
            meta::write_atomically(self.storage.as_ref(), &self.path, new_end.to_string().as_bytes())?;
            state.reserved_end = new_end;
        }
        let id = state.next_id;
        state.next_id += 1;
        Ok((id, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("producer_ids");
        let fs: Arc<dyn Storage> = Arc::new(rivulet_log::storage::FsStorage);
        let ids = ProducerIds::open(fs.clone(), &path).expect("open");
        let (a, ea) = ids.init(None).expect("init");
        let (b, _) = ids.init(None).expect("init");
        assert_ne!(a, b);
        assert_eq!(ea, 0);
        assert_eq!(ids.init(Some((a, 0))).expect("bump"), (a, 1));
        drop(ids);
        let ids = ProducerIds::open(fs, &path).expect("reopen");
        let (c, _) = ids.init(None).expect("init");
        assert!(c > b, "id {c} reused after restart");
    }
}
