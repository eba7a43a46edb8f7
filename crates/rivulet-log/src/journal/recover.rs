//! Opening the journal: the checkpoint, then every valid record after it, indexed by the
//! key of the log each entry belongs to.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tracing::info;

use super::checkpoint::{self, Checkpoint};
use super::format::{self, ALIGN_BYTES, HEADER_BYTES};
use super::ring::Ring;
use super::{Inner, JournalConfig, RING_FILE};
use crate::error::{LogError, Result};
use crate::storage::{Storage, StorageFile};

/// Where one recovered entry's data lies in the ring file.
#[derive(Debug, Clone, Copy)]
pub(super) struct EntryRef {
    offset: u64,
    len: u32,
}

/// A journal read at open.
pub(super) struct Opened {
    pub file: Arc<dyn StorageFile>,
    pub ring: Ring,
    pub entries: HashMap<Box<[u8]>, Vec<EntryRef>>,
}

fn corrupt(dir: &Path, reason: String) -> LogError {
    LogError::Corrupt {
        path: dir.to_path_buf(),
        position: 0,
        reason,
    }
}

/// Opens or creates the journal in `dir` and reads every record after its checkpoint.
pub(super) fn open(storage: &dyn Storage, dir: &Path, root: &Path, config: &JournalConfig) -> Result<Opened> {
    storage
        .create_dir_all(dir)
        .map_err(LogError::io("create journal directory", dir))?;
    let path = dir.join(RING_FILE);
    let cp = read_or_create_checkpoint(storage, dir, root, config)?;
    if !storage.exists(&path) {
        if cp.position != 0 {
            return Err(corrupt(
                dir,
                "the journal file is missing but its checkpoint is not".into(),
            ));
        }
        storage
            .open(&path, true)
            .map_err(LogError::io("create journal file", &path))?;
        storage
            .sync_dir(dir)
            .map_err(LogError::io("sync journal directory", dir))?;
    }
    let reader = storage
        .open(&path, false)
        .map_err(LogError::io("open journal file", &path))?;
    let len = reader.len().map_err(LogError::io("size journal file", &path))?;
    let grown = (len / ALIGN_BYTES as u64 * ALIGN_BYTES as u64).min(cp.ring_bytes);
    let (ring, entries) = scan(reader.as_ref(), &cp, grown).map_err(LogError::io("read journal", &path))?;
    let file = storage
        .open_durable(&path)
        .map_err(LogError::io("open journal for writing", &path))?;
    Ok(Opened { file, ring, entries })
}

/// A new journal's ring: as configured, but at most a quarter of the free space.
fn ring_for_new_journal(storage: &dyn Storage, root: &Path, config: &JournalConfig) -> Result<u64> {
    let free = storage
        .available_bytes(root)
        .map_err(LogError::io("measure free space", root))?;
    let ring = config
        .ring_bytes
        .min(free / 4 / super::RING_BYTES_MIN * super::RING_BYTES_MIN);
    // A ring configured below the minimum is kept as configured; one that had to shrink
    // must keep at least the minimum.
    if ring < config.ring_bytes.min(super::RING_BYTES_MIN) {
        return Err(LogError::Config(format!(
            "{free} bytes free: too little for a journal of at least {} bytes",
            super::RING_BYTES_MIN
        )));
    }
    if ring < config.ring_bytes {
        info!(
            ring_bytes = ring,
            free_bytes = free,
            "The journal is created smaller than configured: the disk is small"
        );
    }
    Ok(ring)
}

fn read_or_create_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
    root: &Path,
    config: &JournalConfig,
) -> Result<Checkpoint> {
    match checkpoint::read(storage, dir).map_err(LogError::io("read journal checkpoint", dir))? {
        Some(Ok(cp)) => {
            if cp.ring_bytes != config.ring_bytes {
                info!(
                    ring_bytes = cp.ring_bytes,
                    "The journal keeps the ring size it was created with"
                );
            }
            if cp.ring_bytes == 0
                || cp.ring_bytes % ALIGN_BYTES as u64 != 0
                || cp.position % ALIGN_BYTES as u64 != 0
            {
                return Err(corrupt(dir, format!("checkpoint out of range: {cp:?}")));
            }
            Ok(cp)
        }
        Some(Err(reason)) => Err(corrupt(dir, format!("journal checkpoint: {reason}"))),
        None => {
            if storage.exists(&dir.join(RING_FILE)) {
                return Err(corrupt(dir, "a journal file without its checkpoint".into()));
            }
            let cp = Checkpoint {
                ring_bytes: ring_for_new_journal(storage, root, config)?,
                position: 0,
                lsn: 1,
            };
            checkpoint::write(storage, dir, &cp).map_err(LogError::io("write journal checkpoint", dir))?;
            Ok(cp)
        }
    }
}

type Index = HashMap<Box<[u8]>, Vec<EntryRef>>;

/// Reads records from the checkpoint on while each is valid and carries the next sequence
/// number; a record that is not found in place may have been moved to the ring's start.
fn scan(file: &dyn StorageFile, cp: &Checkpoint, grown: u64) -> std::io::Result<(Ring, Index)> {
    let ring_bytes = cp.ring_bytes;
    let mut at = cp.position;
    let mut lsn = cp.lsn;
    let mut index: Index = HashMap::new();
    let mut records = 0u64;
    // At most one lap of the ring, one aligned block per pass at least.
    while at - cp.position < ring_bytes {
        let found = match read_record(file, at % ring_bytes, grown, ring_bytes, lsn)? {
            Some(r) => Some((at, r)),
            None => {
                let lap = at.next_multiple_of(ring_bytes);
                let in_reach = lap != at && lap - cp.position < ring_bytes;
                match in_reach
                    .then(|| read_record(file, 0, grown, ring_bytes, lsn))
                    .transpose()?
                {
                    Some(Some(r)) => Some((lap, r)),
                    _ => None,
                }
            }
        };
        let Some((record_at, (len, entries))) = found else {
            break;
        };
        for (key, entry) in entries {
            index.entry(key).or_default().push(entry);
        }
        at = record_at + len;
        lsn += 1;
        records += 1;
    }
    if records > 0 {
        let entries: usize = index.values().map(Vec::len).sum();
        info!(
            records,
            entries,
            logs = index.len(),
            "Journal records after the last checkpoint will be replayed"
        );
    }
    let ring = Ring {
        ring_bytes,
        head: at,
        lsn,
        checkpoint: cp.position,
        grown,
    };
    Ok((ring, index))
}

/// The record at file offset `offset` if it is whole, valid and numbered `lsn`: its padded
/// length and its entries.
type Found = (u64, Vec<(Box<[u8]>, EntryRef)>);

fn read_record(
    file: &dyn StorageFile,
    offset: u64,
    grown: u64,
    ring_bytes: u64,
    lsn: u64,
) -> std::io::Result<Option<Found>> {
    if offset + HEADER_BYTES as u64 > grown {
        return Ok(None);
    }
    let mut head = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut head, offset)?;
    let Some(header) = format::parse_header(&head) else {
        return Ok(None);
    };
    let len = header.padded_bytes() as u64;
    if header.lsn != lsn || len > ring_bytes / 2 || offset + len > grown {
        return Ok(None);
    }
    let mut record = vec![0u8; HEADER_BYTES + header.payload_bytes as usize];
    file.read_exact_at(&mut record, offset)?;
    if !format::check(&record, &header) {
        return Ok(None);
    }
    let Some(entries) = format::entries(&record, &header) else {
        return Ok(None);
    };
    let refs = entries
        .iter()
        .map(|e| {
            let entry = EntryRef {
                offset: offset + e.data_at as u64,
                len: e.data.len() as u32,
            };
            (Box::from(e.key), entry)
        })
        .collect();
    Ok(Some((len, refs)))
}

/// The data of `refs`, read back from the ring file.
pub(super) fn read_entries(inner: &Inner, refs: &[EntryRef]) -> Result<Vec<Vec<u8>>> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let path = inner.dir.join(RING_FILE);
    let file = inner
        .storage
        .open(&path, false)
        .map_err(LogError::io("open journal file", &path))?;
    refs.iter()
        .map(|r| {
            let mut data = vec![0u8; r.len as usize];
            file.read_exact_at(&mut data, r.offset)
                .map_err(LogError::io("read journal entry", &path))?;
            Ok(data)
        })
        .collect()
}
