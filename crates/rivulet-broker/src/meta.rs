//! Small metadata files (`topic.json`, `producer_ids`), read and written through the
//! log's [`Storage`] interface so tests can inject a full disk or a failing sync here too;
//! and the replay of the internal logs (committed offsets, transaction state) at start.

use std::io;
use std::path::Path;

use rivulet_log::storage::Storage;

use crate::error::{BrokerError, Result};

/// Largest metadata file read; anything bigger is not ours.
const META_BYTES_MAX: u64 = 1 << 20;

/// Writes `bytes` to `path` via a temporary file, fdatasync and rename, then syncs the
/// directory: after a crash the file holds either the old or the new bytes.
pub(crate) fn write_atomically(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let file = storage
        .open(&tmp, true)
        .map_err(BrokerError::io("create", &tmp))?;
    file.set_len(0).map_err(BrokerError::io("truncate", &tmp))?;
    file.write_all_at(bytes, 0)
        .map_err(BrokerError::io("write", &tmp))?;
    file.sync_data().map_err(BrokerError::io("fsync", &tmp))?;
    drop(file);
    storage
        .rename(&tmp, path)
        .map_err(BrokerError::io("rename", path))?;
    if let Some(parent) = path.parent() {
        sync_dir(storage, parent)?;
    }
    Ok(())
}

/// The whole file, or `None` when it does not exist.
pub(crate) fn read_file(storage: &dyn Storage, path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match storage.open(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BrokerError::io("open", path)(e)),
    };
    let len = file.len().map_err(BrokerError::io("stat", path))?;
    if len > META_BYTES_MAX {
        return Err(BrokerError::CorruptMetadata {
            path: path.to_path_buf(),
            reason: format!("{len} bytes; a metadata file is at most {META_BYTES_MAX}"),
        });
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)
        .map_err(BrokerError::io("read", path))?;
    Ok(Some(buf))
}

/// Makes a directory's entries durable.
pub(crate) fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    storage.sync_dir(dir).map_err(BrokerError::io("fsync dir", dir))
}

/// Bytes read per step while replaying an internal log at startup.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// Replays every record of an internal log (`name` for errors) into `apply(key, value)`,
/// from its start to its high watermark; returns how many records there were.
pub(crate) fn replay_log(
    log: &rivulet_log::Log,
    name: &str,
    mut apply: impl FnMut(Option<&[u8]>, Option<&[u8]>),
) -> Result<usize> {
    let mut offset = log.log_start_offset();
    let end = log.high_watermark();
    let mut applied = 0usize;
    // Every pass moves `offset` forward by at least one batch.
    while offset < end {
        let read = log.read(offset, REPLAY_READ_BYTES)?;
        if read.records.is_empty() {
            break;
        }
        let mut records = rivulet_log::Records::new(read.records, offset);
        for record in records.by_ref() {
            let record = record.map_err(|e| BrokerError::CorruptMetadata {
                path: name.into(),
                reason: e.to_string(),
            })?;
            applied += 1;
            apply(record.key.as_deref(), record.value.as_deref());
        }
        if records.next_offset() <= offset {
            break;
        }
        offset = records.next_offset();
    }
    Ok(applied)
}
