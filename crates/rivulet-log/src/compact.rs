//! Compaction for `cleanup.policy=compact`: keep the latest record per key.
//!
//! Only sealed segments are rewritten. A first pass maps each key to its latest offset; a
//! second rewrites each segment that holds superseded records into `<base>.log.cleaned`,
//! syncs it and renames it over the original (an interrupted compaction leaves the original
//! intact and the leftover is removed on open). Kept records keep their offsets. Tombstones
//! (null values) are kept until their batch is older than `delete.retention.ms`. Compressed
//! batches are decompressed to find their keys and written back with their codec.
//! Segments holding records younger than `min.compaction.lag.ms` are left alone, and newer
//! records there do not supersede older ones yet.

use std::collections::HashMap;

use tracing::info;

use crate::batch::{self, BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES};
use crate::error::{LogError, Result};
use crate::log::Log;
use crate::record::{self, Record};
use crate::records::StoredRecord;
use crate::storage::StorageFile;

/// Keys tracked in one compaction pass; segments beyond this wait for the next pass.
const KEYS_MAX: usize = 1_000_000;

/// Walks the batches of a segment file: `(position, header, whole batch bytes)`.
fn for_each_batch(
    file: &dyn StorageFile,
    path: &std::path::Path,
    len: u64,
    mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut position = 0u64;
    let mut buf = Vec::new();
    while position + HEADER_BYTES as u64 <= len {
        let mut head = [0u8; HEADER_BYTES];
        file.read_exact_at(&mut head, position)
            .map_err(LogError::io("read segment", path))?;
        let header = BatchHeader::parse(&head)?;
        let total = header.total_bytes();
        if total < HEADER_BYTES || position + total as u64 > len {
            return Err(LogError::Corrupt {
                path: path.to_path_buf(),
                position,
                reason: "batch runs past the segment".into(),
            });
        }
        buf.resize(total, 0);
        file.read_exact_at(&mut buf, position)
            .map_err(LogError::io("read segment", path))?;
        batch::validate_framing(&buf).map_err(|e| LogError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason: e.to_string(),
        })?;
        f(position, &header, &buf)?;
        position += total as u64;
    }
    Ok(())
}

/// What one compaction pass did and saw.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// Records removed.
    pub removed: u64,
    /// Base offset of the newest sealed segment the pass covered.
    pub last_sealed_base: Option<i64>,
    /// Timestamp of the oldest batch with a tombstone the pass kept.
    pub oldest_tombstone_ms: Option<i64>,
}

pub(crate) fn compact(log: &Log, now_ms: i64) -> Result<Pass> {
    let _cleaner = log.cleaner_lock();
    let config = log.config();
    let sealed = log.compactable_segments(now_ms)?;
    let mut pass = Pass::default();
    // Pass 1: latest offset of every key.
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut covered = 0usize;
    for s in &sealed {
        if latest.len() >= KEYS_MAX {
            break;
        }
        for_each_batch(s.file.as_ref(), &s.path, s.len, |_, header, bytes| {
            let Some(records) = data_records(header, bytes)? else {
                return Ok(());
            };
            for r in records {
                if let Some(key) = r.key {
                    latest.insert(key, header.base_offset + i64::from(r.offset_delta));
                }
            }
            Ok(())
        })?;
        covered += 1;
    }
    let tombstone_horizon_ms = now_ms - config.delete_retention_ms as i64;
    pass.last_sealed_base = sealed.iter().take(covered).map(|s| s.base).next_back();
    // Pass 2: rewrite segments that hold superseded records.
    for s in sealed.iter().take(covered) {
        let (base, path, len) = (s.base, &s.path, s.len);
        let mut out = Vec::new();
        let mut removed = 0u64;
        for_each_batch(s.file.as_ref(), path, len, |_, header, bytes| {
            let Some(records) = data_records(header, bytes)? else {
                out.extend_from_slice(bytes);
                return Ok(());
            };
            let total = records.len();
            let kept: Vec<Record> = records
                .into_iter()
                .filter(|r| {
                    let Some(key) = &r.key else { return true };
                    let offset = header.base_offset + i64::from(r.offset_delta);
                    let is_latest = latest.get(key) == Some(&offset);
                    let expired_tombstone = r.value.is_none() && header.max_timestamp < tombstone_horizon_ms;
                    is_latest && !expired_tombstone
                })
                .collect();
            if kept.iter().any(|r| r.value.is_none()) {
                let ts = header.max_timestamp;
                pass.oldest_tombstone_ms = Some(pass.oldest_tombstone_ms.map_or(ts, |t: i64| t.min(ts)));
            }
            removed += (total - kept.len()) as u64;
            put_batch(&mut out, header, bytes, total, &kept)
        })?;
        if removed == 0 {
            continue;
        }
        pass.removed += removed;
        install(log, base, path, &out)?;
        info!(segment = %path.display(), removed_records = removed, bytes_before = len, bytes_after = out.len(), "Compacted segment");
    }
    Ok(pass)
}

/// Appends a batch to `out`: as it was when all `total` records are kept, rebuilt around
/// `kept` when some are, not at all when none is.
fn put_batch(
    out: &mut Vec<u8>,
    header: &BatchHeader,
    bytes: &[u8],
    total: usize,
    kept: &[Record],
) -> Result<()> {
    if kept.len() == total {
        out.extend_from_slice(bytes);
    } else if !kept.is_empty() {
        out.extend_from_slice(&rebuild(header, kept)?);
    }
    Ok(())
}

/// Writes a rewritten segment to `<base>.log.cleaned`, syncs it and swaps it in (an
/// interrupted rewrite leaves the original intact; the leftover is removed on open).
fn install(log: &Log, base: i64, path: &std::path::Path, out: &[u8]) -> Result<()> {
    let cleaned = path.with_extension("log.cleaned");
    let storage = log.storage();
    let f = storage
        .open(&cleaned, true)
        .map_err(LogError::io("create compacted segment", &cleaned))?;
    f.set_len(0)
        .map_err(LogError::io("truncate compacted segment", &cleaned))?;
    f.write_all_at(out, 0)
        .map_err(LogError::io("write compacted segment", &cleaned))?;
    f.sync_data()
        .map_err(LogError::io("sync compacted segment", &cleaned))?;
    log.replace_segment(base, &cleaned)
}

/// See [`Log::scavenge`].
pub(crate) fn scavenge(log: &Log, keep: &mut dyn FnMut(&StoredRecord) -> bool) -> Result<u64> {
    let _cleaner = log.cleaner_lock();
    let mut removed_total = 0u64;
    for s in log.sealed_segments()? {
        let mut out = Vec::new();
        let mut removed = 0u64;
        for_each_batch(s.file.as_ref(), &s.path, s.len, |_, header, bytes| {
            let Some(records) = data_records(header, bytes)? else {
                out.extend_from_slice(bytes);
                return Ok(());
            };
            let total = records.len();
            let kept: Vec<Record> = records.into_iter().filter(|r| keep(&stored(header, r))).collect();
            removed += (total - kept.len()) as u64;
            put_batch(&mut out, header, bytes, total, &kept)
        })?;
        if removed == 0 {
            continue;
        }
        install(log, s.base, &s.path, &out)?;
        info!(segment = %s.path.display(), removed_records = removed, bytes_before = s.len, bytes_after = out.len(), "Scavenged segment");
        removed_total += removed;
    }
    Ok(removed_total)
}

/// A record of a batch as readers see it.
fn stored(header: &BatchHeader, r: &Record) -> StoredRecord {
    let timestamp_ms = if header.is_log_append_time() {
        header.max_timestamp
    } else {
        header.base_timestamp.saturating_add(r.timestamp_delta)
    };
    let bytes = |v: &Option<Vec<u8>>| v.as_ref().map(|v| bytes::Bytes::copy_from_slice(v));
    StoredRecord {
        offset: header.base_offset + i64::from(r.offset_delta),
        timestamp_ms,
        key: bytes(&r.key),
        value: bytes(&r.value),
        headers: r.headers.iter().map(|(k, v)| (k.clone(), bytes(v))).collect(),
    }
}

/// The records of a data batch (decompressed); `None` for a control batch.
fn data_records(header: &BatchHeader, bytes: &[u8]) -> Result<Option<Vec<Record>>> {
    if header.is_control() {
        return Ok(None);
    }
    let body = bytes::Bytes::copy_from_slice(&bytes[HEADER_BYTES..]);
    let body = crate::records::decompress(header.compression(), body)?;
    Ok(Some(record::decode_all(&body, header.record_count)?))
}

/// Re-encodes a batch with a subset of its records, keeping the base offset,
/// lastOffsetDelta (so the batch still spans the same offsets), timestamps, producer fields
/// and compression codec.
fn rebuild(header: &BatchHeader, kept: &[Record]) -> Result<Vec<u8>> {
    let codec = header.compression();
    let plain = BatchHeader {
        attributes: header.attributes & !0x7,
        ..*header
    };
    let out = rebuild_plain(&plain, kept);
    if codec == 0 {
        return Ok(out);
    }
    Ok(crate::rewrite::recompress(&out, &plain, codec)?)
}

fn rebuild_plain(header: &BatchHeader, kept: &[Record]) -> Vec<u8> {
    assert!(!kept.is_empty());
    let mut body = Vec::new();
    for r in kept {
        r.encode(&mut body);
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&header.base_offset.to_be_bytes());
    let batch_length = (HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len()) as i32;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&header.attributes.to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&header.max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&header.base_sequence.to_be_bytes());
    out.extend_from_slice(&(kept.len() as i32).to_be_bytes());
    out.extend_from_slice(&body);
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}
