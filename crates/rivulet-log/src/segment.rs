//! One segment: a file of consecutive record batches plus its in-memory sparse indexes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use crate::batch::{self, BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES};
use crate::error::{LogError, Result};
use crate::index::SegmentIndex;
use crate::recent::RecentBatches;
use crate::storage::{offset_file, Storage, StorageFile};

/// Suffix of segment files.
pub const LOG_SUFFIX: &str = ".log";
/// Suffix of index files.
pub const INDEX_SUFFIX: &str = ".index";
/// Suffix of a compacted segment before it replaces the original.
pub const CLEANED_SUFFIX: &str = ".log.cleaned";

/// Smallest valid batchLength field (a header with no records would be 49).
const BATCH_LENGTH_MIN: i32 = (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub file: Option<Arc<dyn StorageFile>>,
    /// `valid_bytes` is the segment's size; everything in it has been validated.
    pub index: SegmentIndex,
    pub bytes_since_index: u64,
    /// Wall-clock time of the first append, for `segment.ms`.
    pub created_ms: i64,
    pub sealed: bool,
    /// A sealed segment whose bytes from here on failed validation; they are never served.
    pub corrupt_from: Option<u64>,
    pub last_used: u64,
    /// Where the latest batches start (see [`RecentBatches`]).
    pub recent: RecentBatches,
}

/// Result of scanning a segment file batch by batch.
pub(crate) struct Scan {
    pub index: SegmentIndex,
    pub bytes_since_index: u64,
    pub stop_reason: Option<String>,
}

impl Segment {
    /// Creates an empty segment file and makes its directory entry durable.
    pub fn create(storage: &dyn Storage, dir: &Path, base_offset: i64, now_ms: i64) -> Result<Segment> {
        let segment = Segment::create_unsynced(storage, dir, base_offset, now_ms)?;
        storage
            .sync_dir(dir)
            .map_err(LogError::io("sync directory", dir))?;
        Ok(segment)
    }

    /// Creates an empty segment file without syncing its directory: the caller must sync
    /// the directory before it reports anything written to this segment as durable.
    pub fn create_unsynced(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
    ) -> Result<Segment> {
        let log_path = offset_file(dir, base_offset, LOG_SUFFIX);
        let index_path = offset_file(dir, base_offset, INDEX_SUFFIX);
        let file = storage
            .open(&log_path, true)
            .map_err(LogError::io("create segment", &log_path))?;
        file.set_len(0)
            .map_err(LogError::io("truncate segment", &log_path))?;
        if storage.exists(&index_path) {
            storage
                .remove_file(&index_path)
                .map_err(LogError::io("remove stale index", &index_path))?;
        }
        Ok(Segment {
            base_offset,
            log_path,
            index_path,
            file: Some(file),
            index: SegmentIndex {
                valid_bytes: 0,
                next_offset: base_offset,
                max_timestamp: -1,
                offsets: Vec::new(),
                times: Vec::new(),
            },
            bytes_since_index: 0,
            created_ms: now_ms,
            sealed: false,
            corrupt_from: None,
            last_used: 0,
            recent: RecentBatches::default(),
        })
    }

    /// Opens an existing segment, trusting its index file only if it checks out and
    /// otherwise scanning every batch. The last segment gets a torn tail truncated.
    pub fn open(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
        is_last: bool,
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> Result<Segment> {
        let log_path = offset_file(dir, base_offset, LOG_SUFFIX);
        let index_path = offset_file(dir, base_offset, INDEX_SUFFIX);
        let file = storage
            .open(&log_path, false)
            .map_err(LogError::io("open segment", &log_path))?;
        let len = file.len().map_err(LogError::io("stat segment", &log_path))?;
        let mut segment = Segment {
            base_offset,
            log_path,
            index_path,
            file: Some(file.clone()),
            index: SegmentIndex::default(),
            bytes_since_index: 0,
            created_ms: now_ms,
            sealed: !is_last,
            corrupt_from: None,
            last_used: 0,
            recent: RecentBatches::default(),
        };
        if let Some(index) = SegmentIndex::load(storage, &segment.index_path, len)
            .filter(|index| index_matches(file.as_ref(), base_offset, index))
        {
            segment.bytes_since_index = index
                .offsets
                .last()
                .map_or(index.valid_bytes, |&(_, pos)| index.valid_bytes - u64::from(pos));
            segment.index = index;
            return Ok(segment);
        }
        let scan = scan(file.as_ref(), base_offset, len, index_interval_bytes)?;
        if let Some(reason) = &scan.stop_reason {
            let valid = scan.index.valid_bytes;
            if is_last {
                warn!(
                    segment = %segment.log_path.display(),
                    valid_bytes = valid,
                    dropped_bytes = len - valid,
                    reason = reason.as_str(),
                    "Truncating the unfinished tail of the last segment"
                );
                file.set_len(valid)
                    .map_err(LogError::io("truncate segment", &segment.log_path))?;
                file.sync_data()
                    .map_err(LogError::io("sync segment", &segment.log_path))?;
            } else {
                warn!(
                    segment = %segment.log_path.display(),
                    valid_bytes = valid,
                    reason = reason.as_str(),
                    "Sealed segment holds invalid bytes; they will not be served"
                );
                segment.corrupt_from = Some(valid);
            }
        }
        segment.bytes_since_index = scan.bytes_since_index;
        segment.index = scan.index;
        if segment.sealed && segment.corrupt_from.is_none() {
            // Cache the rebuilt index so the next open needs no scan.
            segment.index.store(storage, &segment.index_path)?;
        }
        Ok(segment)
    }

    /// The open file, opening it if it was closed while idle.
    pub fn file(&mut self, storage: &dyn Storage) -> Result<Arc<dyn StorageFile>> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let f = storage
            .open(&self.log_path, false)
            .map_err(LogError::io("open segment", &self.log_path))?;
        self.file = Some(f.clone());
        Ok(f)
    }

    /// Size in bytes of the valid part.
    pub fn size(&self) -> u64 {
        self.index.valid_bytes
    }

    /// Records a batch just written at `position` in the in-memory indexes.
    pub fn note_batch(&mut self, header: &BatchHeader, position: u64, interval_bytes: u32) {
        self.recent.push(header.base_offset, position);
        note_batch(
            &mut self.index,
            &mut self.bytes_since_index,
            self.base_offset,
            header,
            position,
            interval_bytes,
        );
    }
}

fn note_batch(
    index: &mut SegmentIndex,
    bytes_since_index: &mut u64,
    base_offset: i64,
    header: &BatchHeader,
    position: u64,
    interval_bytes: u32,
) {
    debug_assert!(header.base_offset >= base_offset);
    let rel = (header.base_offset - base_offset) as u32;
    if *bytes_since_index >= u64::from(interval_bytes) {
        index.offsets.push((rel, position as u32));
        if index.max_timestamp > index.times.last().map_or(i64::MIN, |t| t.0) {
            index.times.push((index.max_timestamp, rel));
        }
        *bytes_since_index = 0;
    }
    *bytes_since_index += header.total_bytes() as u64;
    index.valid_bytes = position + header.total_bytes() as u64;
    index.next_offset = header.next_offset();
    index.max_timestamp = index.max_timestamp.max(header.max_timestamp);
}

/// Spot-checks a loaded index against the segment: the last indexed position must hold a
/// batch whose base offset matches.
fn index_matches(file: &dyn StorageFile, base_offset: i64, index: &SegmentIndex) -> bool {
    if index.next_offset < base_offset {
        return false;
    }
    let Some(&(rel, pos)) = index.offsets.last() else {
        return true;
    };
    let mut buf = [0u8; HEADER_BYTES];
    if file.read_exact_at(&mut buf, u64::from(pos)).is_err() {
        return false;
    }
    BatchHeader::parse(&buf).is_ok_and(|h| h.base_offset == base_offset + i64::from(rel) && h.magic == 2)
}

/// Reads every batch from the start, validating framing, CRC and offsets, and builds the
/// indexes. Stops at the first invalid or incomplete batch.
pub(crate) fn scan(file: &dyn StorageFile, base_offset: i64, len: u64, interval_bytes: u32) -> Result<Scan> {
    let mut index = SegmentIndex {
        valid_bytes: 0,
        next_offset: base_offset,
        max_timestamp: -1,
        offsets: Vec::new(),
        times: Vec::new(),
    };
    let mut bytes_since_index = 0u64;
    let mut position = 0u64;
    let mut buf = Vec::new();
    let stop = loop {
        if position == len {
            break None;
        }
        if len - position < HEADER_BYTES as u64 {
            break Some(format!(
                "{} trailing bytes are shorter than a batch header",
                len - position
            ));
        }
        let mut head = [0u8; HEADER_BYTES];
        if let Err(e) = file.read_exact_at(&mut head, position) {
            break Some(format!("header unreadable: {e}"));
        }
        let header = match BatchHeader::parse(&head) {
            Ok(h) => h,
            Err(e) => break Some(e.to_string()),
        };
        if header.batch_length < BATCH_LENGTH_MIN || header.total_bytes() as u64 > len - position {
            break Some(format!("batch length {} runs past the end", header.batch_length));
        }
        buf.resize(header.total_bytes(), 0);
        if let Err(e) = file.read_exact_at(&mut buf, position) {
            break Some(format!("batch unreadable: {e}"));
        }
        if let Err(e) = batch::validate_framing(&buf) {
            break Some(e.to_string());
        }
        if header.base_offset < index.next_offset || header.last_offset_delta < 0 {
            break Some(format!(
                "batch offset {} is not after {}",
                header.base_offset, index.next_offset
            ));
        }
        if header.next_offset() - base_offset > i64::from(u32::MAX) {
            break Some("offset too far from the segment base".to_string());
        }
        note_batch(
            &mut index,
            &mut bytes_since_index,
            base_offset,
            &header,
            position,
            interval_bytes,
        );
        position += header.total_bytes() as u64;
    };
    debug_assert_eq!(index.valid_bytes, position);
    Ok(Scan {
        index,
        bytes_since_index,
        stop_reason: stop,
    })
}
