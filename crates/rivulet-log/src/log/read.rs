//! Reading batches back, and lookups by timestamp.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::{lock, Log, ReadResult, State, TimestampOffset};
use crate::batch::{self, BatchHeader, HEADER_BYTES};
use crate::error::{LogError, Result};
use crate::recent::VisibleEnd;
use crate::records::Records;
use crate::storage::StorageFile;
use crate::txn::{AbortedTxn, Isolation};

/// Where one read looks, captured under the state lock.
pub(super) struct ReadPlan {
    pub file: Arc<dyn StorageFile>,
    pub path: PathBuf,
    /// Position of the index entry at or before the offset.
    pub start: u32,
    /// End of the bytes readers may see in this segment.
    pub end: u64,
    /// Indexed batch start at or before `start + max_bytes` (within `end`).
    pub cut_hint: u64,
    /// `(position, length, next offset)` of the batches to return, when the segment's
    /// recent batches tell without reading headers (a reader following the log).
    pub exact: Option<(u64, u64, i64)>,
    /// Offset after the segment's last batch.
    pub segment_next: i64,
    /// The offset lies in bytes that failed validation when the log was opened.
    pub corrupt: bool,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Base offset of the following segment (or the high watermark).
    pub next_base: i64,
}

impl ReadPlan {
    /// The plan, or `Corrupt` when `offset` lies in bytes that failed validation at open.
    pub fn readable(self, offset: i64) -> Result<ReadPlan> {
        if !self.corrupt {
            return Ok(self);
        }
        Err(LogError::Corrupt {
            path: self.path,
            position: self.end,
            reason: format!("offset {offset} lies in bytes that failed validation at open"),
        })
    }
}

/// A segment range a timestamp lookup scans.
type TimeCandidate = (Arc<dyn StorageFile>, PathBuf, u64, u64);

impl Log {
    /// Reads whole batches starting with the one that contains `offset`, up to `max_bytes`
    /// but always at least that one batch. Every batch returned has passed its CRC check.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let mut offset = offset;
        // Each pass moves to a later segment; bounded by the number of segments.
        for _ in 0..=self.segment_count() {
            let plan = match self.plan_read(offset, max_bytes)? {
                Ok(plan) => plan,
                Err(nothing_yet) => return Ok(nothing_yet),
            };
            let plan = plan.readable(offset)?;
            let read = match plan.exact {
                Some((position, len, _)) => Some(read_exact(plan.file.as_ref(), &plan.path, position, len)?),
                None => read_from(
                    plan.file.as_ref(),
                    &plan.path,
                    offset,
                    plan.start,
                    plan.end,
                    max_bytes,
                )?,
            };
            match read {
                Some(records) => {
                    return Ok(ReadResult {
                        records,
                        high_watermark: plan.high_watermark,
                        log_start_offset: plan.log_start_offset,
                    })
                }
                // The offset is past this segment's last batch (end of a sealed segment, or a
                // gap left by compaction): continue in the next segment.
                None => offset = offset.max(plan.segment_next).max(plan.next_base),
            }
        }
        Ok(ReadResult {
            records: Bytes::new(),
            high_watermark: self.high_watermark(),
            log_start_offset: self.log_start_offset(),
        })
    }

    /// [`Log::read`] for a reader at `isolation`: a read_committed reader gets only batches
    /// below the last stable offset, and the aborted transactions among them (decode with
    /// [`Records::committed`]).
    pub fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        isolation: Isolation,
    ) -> Result<(ReadResult, Vec<AbortedTxn>)> {
        let stable = self.last_stable_offset();
        let mut read = self.read(offset, max_bytes)?;
        if isolation == Isolation::ReadUncommitted || read.records.is_empty() {
            return Ok((read, Vec::new()));
        }
        let mut at = 0usize;
        let mut end_offset = offset;
        // Bounded by the bytes read: each pass moves past one batch.
        while let Ok(header) = BatchHeader::parse(&read.records[at..]) {
            if header.base_offset >= stable || at + header.total_bytes() > read.records.len() {
                break;
            }
            at += header.total_bytes();
            end_offset = header.next_offset();
        }
        read.records.truncate(at);
        let aborted = match at {
            0 => Vec::new(),
            _ => self.aborted_transactions(offset, end_offset),
        };
        Ok((read, aborted))
    }

    /// The segment to read `offset` from, or (as `Ok(Err)`) an empty result when the offset
    /// is at the high watermark.
    pub(super) fn plan_read(&self, offset: i64, max_bytes: usize) -> Result<Result<ReadPlan, ReadResult>> {
        let mut st = lock(&self.shared.state);
        let out_of_range = |st: &State| LogError::OffsetOutOfRange {
            offset,
            log_start_offset: st.log_start_offset,
            log_end_offset: st.next_offset,
        };
        if offset < st.log_start_offset || offset > st.next_offset {
            return Err(out_of_range(&st));
        }
        let visible = st.visible;
        let log_start_offset = st.log_start_offset;
        if offset >= visible.offset {
            return Ok(Err(ReadResult {
                records: Bytes::new(),
                high_watermark: visible.offset,
                log_start_offset,
            }));
        }
        st.tick += 1;
        let tick = st.tick;
        let storage = self.shared.storage.clone();
        let next_base = st
            .segments
            .range(offset + 1..)
            .next()
            .map_or(visible.offset, |(base, _)| *base);
        let Some((_, segment)) = st.segments.range_mut(..=offset).next_back() else {
            return Err(out_of_range(&st));
        };
        let end = if segment.base_offset == visible.segment_base {
            visible.position
        } else {
            segment.size()
        };
        let end = segment.corrupt_from.map_or(end, |c| end.min(c));
        let rel = u32::try_from(offset - segment.base_offset).unwrap_or(u32::MAX);
        segment.last_used = tick;
        let start = segment.index.position_for(rel);
        let cut = end.min(u64::from(start).saturating_add(max_bytes as u64));
        let exact = (segment.base_offset == visible.segment_base)
            .then(|| {
                let end = VisibleEnd {
                    offset: visible.offset,
                    position: visible.position,
                };
                segment.recent.plan(offset, end, max_bytes as u64)
            })
            .flatten();
        let plan = ReadPlan {
            file: segment.file(storage.as_ref())?,
            path: segment.log_path.clone(),
            start,
            end,
            cut_hint: segment.index.batch_at_or_before(cut),
            exact,
            segment_next: segment.index.next_offset,
            corrupt: segment.corrupt_from.is_some() && offset >= segment.index.next_offset,
            high_watermark: visible.offset,
            log_start_offset,
            next_base,
        };
        self.close_idle_handles(&mut st);
        Ok(Ok(plan))
    }

    pub(super) fn close_idle_handles(&self, st: &mut State) {
        let max_open = self.config().max_open_sealed_segments;
        let mut open: Vec<(u64, i64)> = st
            .segments
            .values()
            .filter(|s| s.sealed && s.file.is_some())
            .map(|s| (s.last_used, s.base_offset))
            .collect();
        if open.len() <= max_open {
            return;
        }
        open.sort_unstable();
        for &(_, base) in &open[..open.len() - max_open] {
            if let Some(s) = st.segments.get_mut(&base) {
                s.file = None;
            }
        }
    }

    /// Number of sealed segments whose files are open.
    pub fn open_sealed_segments(&self) -> usize {
        lock(&self.shared.state)
            .segments
            .values()
            .filter(|s| s.sealed && s.file.is_some())
            .count()
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`, among visible
    /// records; `None` when every record is older.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<TimestampOffset>> {
        for (file, path, start, end) in self.time_candidates(timestamp_ms)? {
            let mut position = start;
            while position + HEADER_BYTES as u64 <= end {
                let header = read_header(file.as_ref(), &path, position)?;
                if header.max_timestamp >= timestamp_ms {
                    let found =
                        first_record_at(file.as_ref(), &path, position, &header, |ts| ts >= timestamp_ms)?;
                    return Ok(Some(found));
                }
                position += header.total_bytes() as u64;
            }
        }
        Ok(None)
    }

    /// The visible record with the largest timestamp (the earliest such record if several
    /// share it); `None` for an empty log. Kafka's ListOffsets `MAX_TIMESTAMP`.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>> {
        let newest = {
            let st = lock(&self.shared.state);
            st.segments
                .values()
                .filter(|s| s.base_offset < st.visible.offset && s.size() > 0)
                .map(|s| s.index.max_timestamp)
                .max()
        };
        match newest {
            Some(ts) => self.offset_for_timestamp(ts),
            None => Ok(None),
        }
    }

    /// At most two segment ranges that may hold a record at or after `timestamp_ms`.
    fn time_candidates(&self, timestamp_ms: i64) -> Result<Vec<TimeCandidate>> {
        let mut st = lock(&self.shared.state);
        let visible = st.visible;
        let storage = self.shared.storage.clone();
        let mut out = Vec::new();
        for segment in st.segments.values_mut() {
            if segment.index.max_timestamp < timestamp_ms || segment.base_offset > visible.offset {
                continue;
            }
            let end = if segment.base_offset == visible.segment_base {
                visible.position
            } else {
                segment.size()
            };
            let end = segment.corrupt_from.map_or(end, |c| end.min(c));
            let rel = segment.index.offset_for_time(timestamp_ms);
            let start = u64::from(segment.index.position_for(rel));
            out.push((
                segment.file(storage.as_ref())?,
                segment.log_path.clone(),
                start,
                end,
            ));
            if out.len() >= 2 {
                break;
            }
        }
        Ok(out)
    }
}

/// The first record of the batch at `position` whose timestamp passes `wanted`.
fn first_record_at(
    file: &dyn StorageFile,
    path: &Path,
    position: u64,
    header: &BatchHeader,
    wanted: impl Fn(i64) -> bool,
) -> Result<TimestampOffset> {
    let mut buf = BytesMut::zeroed(header.total_bytes());
    file.read_exact_at(&mut buf, position)
        .map_err(LogError::io("read segment", path))?;
    batch::validate_framing(&buf).map_err(|e| corrupt(path, position, e.to_string()))?;
    for record in Records::new(buf.freeze(), header.base_offset) {
        let record = record.map_err(|e| corrupt(path, position, e.to_string()))?;
        if wanted(record.timestamp_ms) {
            return Ok(TimestampOffset {
                offset: record.offset,
                timestamp_ms: record.timestamp_ms,
            });
        }
    }
    // A control batch, or timestamps that disagree with the header: the batch as a whole.
    Ok(TimestampOffset {
        offset: header.base_offset,
        timestamp_ms: header.max_timestamp,
    })
}

pub(super) fn corrupt(path: &Path, position: u64, reason: String) -> LogError {
    LogError::Corrupt {
        path: path.to_path_buf(),
        position,
        reason,
    }
}

pub(super) fn read_header(file: &dyn StorageFile, path: &Path, position: u64) -> Result<BatchHeader> {
    let mut head = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut head, position)
        .map_err(LogError::io("read segment", path))?;
    let header = BatchHeader::parse(&head).map_err(|e| corrupt(path, position, e.to_string()))?;
    if header.batch_length < (HEADER_BYTES - batch::LOG_OVERHEAD_BYTES) as i32 || header.magic != 2 {
        return Err(corrupt(path, position, format!("bad batch header {header:?}")));
    }
    Ok(header)
}

/// Reads the whole batches known to lie at `[position, position + len)`, checking each.
fn read_exact(file: &dyn StorageFile, path: &Path, position: u64, len: u64) -> Result<Bytes> {
    let mut buf = BytesMut::zeroed(len as usize);
    file.read_exact_at(&mut buf, position)
        .map_err(LogError::io("read segment", path))?;
    let mut at = 0usize;
    // Bounded by the bytes read: each pass moves past one batch.
    while at < buf.len() {
        let header =
            BatchHeader::parse(&buf[at..]).map_err(|e| corrupt(path, position + at as u64, e.to_string()))?;
        let total = header.total_bytes();
        let batch = buf.get(at..at + total).ok_or_else(|| {
            corrupt(
                path,
                position + at as u64,
                "batch runs past its recorded end".into(),
            )
        })?;
        batch::validate_framing(batch).map_err(|e| corrupt(path, position + at as u64, e.to_string()))?;
        at += total;
    }
    Ok(buf.freeze())
}

/// Reads batches from one segment; `None` when no batch in `[start, end)` reaches `offset`.
fn read_from(
    file: &dyn StorageFile,
    path: &Path,
    offset: i64,
    start: u32,
    end: u64,
    max_bytes: usize,
) -> Result<Option<Bytes>> {
    // Find the batch containing `offset`: at most one index interval of headers to skip.
    let mut position = u64::from(start);
    let first = loop {
        if position + HEADER_BYTES as u64 > end {
            return Ok(None);
        }
        let header = read_header(file, path, position)?;
        if header.next_offset() > offset {
            break header;
        }
        position += header.total_bytes() as u64;
    };
    let available = end - position;
    let first_bytes = first.total_bytes() as u64;
    if first_bytes > available {
        return Err(corrupt(path, position, "batch runs past the valid end".into()));
    }
    let want = available.min((max_bytes as u64).max(first_bytes));
    let mut buf = BytesMut::zeroed(want as usize);
    file.read_exact_at(&mut buf, position)
        .map_err(LogError::io("read segment", path))?;
    // Keep whole, valid batches only.
    let mut at = 0usize;
    while at + HEADER_BYTES <= buf.len() {
        let header =
            BatchHeader::parse(&buf[at..]).map_err(|e| corrupt(path, position + at as u64, e.to_string()))?;
        let total = header.total_bytes();
        if at + total > buf.len() {
            break;
        }
        batch::validate_framing(&buf[at..at + total])
            .map_err(|e| corrupt(path, position + at as u64, e.to_string()))?;
        at += total;
    }
    assert!(
        at >= first.total_bytes(),
        "the first batch is always returned whole"
    );
    buf.truncate(at);
    Ok(Some(buf.freeze()))
}
