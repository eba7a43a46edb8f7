//! Deleting records before an offset (Kafka DeleteRecords): the log start offset moves
//! forward, is stored in `log_start_offset` so it survives a restart, and whole segments
//! below it are deleted like retention deletes them.

use std::path::Path;
use std::sync::atomic::Ordering;

use tracing::info;

use super::{lock, Log};
use crate::error::{LogError, Result};
use crate::storage::Storage;

/// File holding a log start offset moved past the first segment's base.
pub(crate) const START_FILE: &str = "log_start_offset";
/// Largest size of that file (an i64 in decimal).
const START_FILE_BYTES_MAX: u64 = 32;

/// The stored log start offset, if DeleteRecords ever moved it.
pub(super) fn read_start(storage: &dyn Storage, dir: &Path) -> Result<Option<i64>> {
    let path = dir.join(START_FILE);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let corrupt = |reason: String| LogError::Corrupt {
        path: path.clone(),
        position: 0,
        reason,
    };
    let file = storage.open(&path, false).map_err(LogError::io("open", &path))?;
    let len = file.len().map_err(LogError::io("stat", &path))?;
    if len > START_FILE_BYTES_MAX {
        return Err(corrupt(format!(
            "{len} bytes; a log start offset is at most {START_FILE_BYTES_MAX}"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)
        .map_err(LogError::io("read", &path))?;
    let text = String::from_utf8_lossy(&buf);
    let offset = text.trim().parse::<i64>().map_err(|e| corrupt(e.to_string()))?;
    if offset < 0 {
        return Err(corrupt(format!("negative log start offset {offset}")));
    }
    Ok(Some(offset))
}

/// Stores `offset` atomically: a temporary file, synced, renamed over the old one, the
/// directory synced.
fn write_start(storage: &dyn Storage, dir: &Path, offset: i64) -> Result<()> {
    let path = dir.join(START_FILE);
    let tmp = dir.join(format!("{START_FILE}.tmp"));
    let file = storage.open(&tmp, true).map_err(LogError::io("create", &tmp))?;
    let text = offset.to_string();
    file.set_len(0).map_err(LogError::io("truncate", &tmp))?;
    file.write_all_at(text.as_bytes(), 0)
        .map_err(LogError::io("write", &tmp))?;
    file.sync_data().map_err(LogError::io("sync", &tmp))?;
    storage
        .rename(&tmp, &path)
        .map_err(LogError::io("rename", &tmp))?;
    storage.sync_dir(dir).map_err(LogError::io("sync directory", dir))
}

impl Log {
    /// Deletes the records before `offset` (`-1`: the high watermark): readers then start
    /// at `offset`, and whole segments below it are deleted. An offset past the high
    /// watermark is `OffsetOutOfRange`; one at or below the log start changes nothing.
    /// Returns the log start offset afterwards. Blocking I/O.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let _cleaner = lock(&self.shared.cleaner_lock);
        let (current, high_watermark) = {
            let st = lock(&self.shared.state);
            (st.log_start_offset, st.visible.offset)
        };
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: current,
                log_end_offset: high_watermark,
            });
        }
        if target <= current {
            return Ok(current);
        }
        write_start(self.shared.storage.as_ref(), &self.shared.dir, target)?;
        let doomed = {
            let mut st = lock(&self.shared.state);
            st.log_start_offset = target;
            st.txns.trim(target);
            self.shared.log_start.store(target, Ordering::Release);
            // Sealed segments whose successor starts at or below the new start hold only
            // deleted records.
            let bases: Vec<i64> = st.segments.keys().copied().collect();
            let below: Vec<i64> = bases
                .windows(2)
                .filter(|w| w[1] <= target)
                .map(|w| w[0])
                .collect();
            below
                .into_iter()
                .filter_map(|base| st.segments.remove(&base))
                .collect::<Vec<_>>()
        };
        info!(dir = %self.shared.dir.display(), log_start_offset = target, segments = doomed.len(), "Deleted records");
        self.retire_segments(doomed)?;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch;
    use crate::config::{FsyncPolicy, LogConfig};
    use crate::record::Record;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 1_024,
            fsync: FsyncPolicy::None,
            ..LogConfig::default()
        }
    }

    fn append(log: &Log, n: usize) {
        for i in 0..n {
            let value = format!("record-{i:04}-{}", "x".repeat(100)).into_bytes();
            let bytes = batch::build(0, 1_000, None, &[Record::new(None, Some(value))]);
            log.append(&bytes).expect("append");
        }
    }

    #[test]
    fn deleted_records_stay_deleted_across_reopen_and_free_whole_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p");
        let log = Log::open(&path, config()).expect("open");
        append(&log, 40);
        let segments = log.segment_count();
        assert!(segments > 3, "{segments} segments");
        assert!(matches!(
            log.delete_records_before(41),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.delete_records_before(25).expect("delete"), 25);
        assert_eq!(log.log_start_offset(), 25);
        assert!(log.segment_count() < segments, "no segment was freed");
        assert!(matches!(
            log.read(24, 1 << 20),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(!log
            .read(25, 1 << 20)
            .expect("read at the start")
            .records
            .is_empty());
        // An earlier offset changes nothing.
        assert_eq!(log.delete_records_before(10).expect("no-op"), 25);
        log.close().expect("close");
        drop(log);

        let log = Log::open(&path, config()).expect("reopen");
        assert_eq!(log.log_start_offset(), 25, "the start survived the restart");
        assert_eq!(log.delete_records_before(-1).expect("to the end"), 40);
        assert_eq!(log.log_start_offset(), 40);
        append(&log, 1);
        assert_eq!(log.high_watermark(), 41);
    }
}
