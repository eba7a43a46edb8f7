//! Reads that return where the batches lie in a segment file instead of their bytes, so a
//! front end can send them to a socket without copying them through user space.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::read::{corrupt, read_header};
use super::Log;
use crate::batch::HEADER_BYTES;
use crate::error::{LogError, Result};
use crate::storage::StorageFile;
use crate::txn::{AbortedTxn, Isolation};

/// Whole batches lying in one segment file. The bytes are immutable: the log only ever
/// appends after them, and a segment that retention or compaction removes stays readable
/// through this handle.
#[derive(Debug, Clone)]
pub struct FileSlice {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    position: u64,
    len: u64,
}

impl FileSlice {
    /// The segment file.
    pub fn file(&self) -> &dyn StorageFile {
        self.file.as_ref()
    }

    /// Where the first batch starts in the file.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Bytes of the batches.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the slice holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies the bytes out (for a destination that cannot take the file directly).
    pub fn read(&self) -> Result<Bytes> {
        let len = usize::try_from(self.len).map_err(|_| LogError::Config("slice too large".into()))?;
        let mut buf = BytesMut::zeroed(len);
        self.file
            .read_exact_at(&mut buf, self.position)
            .map_err(LogError::io("read segment", &self.path))?;
        Ok(buf.freeze())
    }
}

/// What [`Log::read_slice`] found.
#[derive(Debug, Clone)]
pub struct SliceRead {
    /// The batches; `None` when nothing is visible at the offset yet.
    pub slice: Option<FileSlice>,
    /// Offset after the last batch of the slice (the offset asked for when there is none).
    pub next_offset: i64,
    /// Offset after the last record readers may see.
    pub high_watermark: i64,
    /// First offset still in the log.
    pub log_start_offset: i64,
    /// Offset below which every transaction is decided (see [`Log::last_stable_offset`]).
    pub last_stable_offset: i64,
    /// Read committed only: the aborted transactions overlapping the slice, for the reader
    /// to drop their records.
    pub aborted: Vec<AbortedTxn>,
}

impl Log {
    /// [`Log::read_slice`] for a reader at `isolation`: a read_committed reader gets only
    /// batches below the last stable offset, and the aborted transactions among them.
    pub fn read_slice_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        isolation: Isolation,
    ) -> Result<SliceRead> {
        let stable = self.last_stable_offset();
        let mut read = self.read_slice(offset, max_bytes)?;
        read.last_stable_offset = stable.min(read.high_watermark);
        if isolation == Isolation::ReadUncommitted {
            return Ok(read);
        }
        if read.next_offset > stable {
            self.cut_slice(&mut read, offset, stable)?;
        }
        if read.slice.is_some() {
            read.aborted = self.aborted_transactions(offset, read.next_offset);
        }
        Ok(read)
    }

    /// Drops the batches of `read` at or after offset `end` (a batch boundary: the first
    /// offset of an open transaction, or the high watermark).
    fn cut_slice(&self, read: &mut SliceRead, offset: i64, end: i64) -> Result<()> {
        let Some(slice) = read.slice.as_mut() else {
            return Ok(());
        };
        let stop = slice.position + slice.len;
        let mut at = slice.position;
        let mut next_offset = offset;
        // Bounded by the slice's bytes: each pass moves past one batch.
        while at + HEADER_BYTES as u64 <= stop {
            let header = read_header(slice.file.as_ref(), &slice.path, at)?;
            if header.base_offset >= end {
                break;
            }
            at += header.total_bytes() as u64;
            next_offset = header.next_offset();
        }
        slice.len = at - slice.position;
        read.next_offset = next_offset;
        if slice.len == 0 {
            read.slice = None;
            read.next_offset = offset;
        }
        Ok(())
    }

    /// [`Log::read`] without reading: where the whole batches from the one containing
    /// `offset` lie (up to `max_bytes`, but at least that first batch). Batch boundaries
    /// come from the batch headers and the index; the bytes themselves are not read, so
    /// their CRCs are not checked again (appends and recovery checked them; consumers
    /// check them too).
    pub fn read_slice(&self, offset: i64, max_bytes: usize) -> Result<SliceRead> {
        // A reader that is up to date (most partitions of a large fetch) needs no lock.
        let (log_start_offset, high_watermark) = self.offsets();
        if offset == high_watermark {
            return Ok(empty(offset, high_watermark, log_start_offset));
        }
        let mut offset = offset;
        // Each pass moves to a later segment; bounded by the number of segments.
        for _ in 0..=self.segment_count() {
            let plan = match self.plan_read(offset, max_bytes)? {
                Ok(plan) => plan,
                Err(nothing) => return Ok(empty(offset, nothing.high_watermark, nothing.log_start_offset)),
            };
            let plan = plan.readable(offset)?;
            let found = match plan.exact {
                Some(exact) => Some(exact),
                None => {
                    let bounds = Bounds {
                        start: u64::from(plan.start),
                        end: plan.end,
                        max_bytes: max_bytes as u64,
                        cut_hint: plan.cut_hint,
                    };
                    slice_from(plan.file.as_ref(), &plan.path, offset, &bounds)?
                }
            };
            match found {
                Some((position, len, next_offset)) => {
                    return Ok(SliceRead {
                        slice: Some(FileSlice {
                            file: plan.file,
                            path: plan.path,
                            position,
                            len,
                        }),
                        next_offset,
                        high_watermark: plan.high_watermark,
                        log_start_offset: plan.log_start_offset,
                        last_stable_offset: plan.high_watermark,
                        aborted: Vec::new(),
                    })
                }
                None => offset = offset.max(plan.segment_next).max(plan.next_base),
            }
        }
        Ok(empty(offset, self.high_watermark(), self.log_start_offset()))
    }
}

fn empty(offset: i64, high_watermark: i64, log_start_offset: i64) -> SliceRead {
    SliceRead {
        slice: None,
        next_offset: offset,
        high_watermark,
        log_start_offset,
        last_stable_offset: high_watermark,
        aborted: Vec::new(),
    }
}

/// Where a slice may lie in a segment.
struct Bounds {
    /// Indexed batch start at or before the offset.
    start: u64,
    /// End of the visible bytes.
    end: u64,
    max_bytes: u64,
    /// Indexed batch start at or before `start + max_bytes`: the walk to the cut skips to it.
    cut_hint: u64,
}

/// `(position, length, next offset)` of the batches from the one containing `offset`, or
/// `None` when no visible batch of this segment reaches it.
fn slice_from(
    file: &dyn StorageFile,
    path: &Path,
    offset: i64,
    b: &Bounds,
) -> Result<Option<(u64, u64, i64)>> {
    // The batch containing `offset`: at most one index interval of headers to skip.
    let mut position = b.start;
    let first = loop {
        if position + HEADER_BYTES as u64 > b.end {
            return Ok(None);
        }
        let header = read_header(file, path, position)?;
        if header.next_offset() > offset {
            break header;
        }
        position += header.total_bytes() as u64;
    };
    let first_len = first.total_bytes() as u64;
    if position + first_len > b.end {
        return Err(corrupt(path, position, "batch runs past the valid end".into()));
    }
    let limit = b.end.min(position + b.max_bytes.max(first_len));
    let mut at = position + first_len;
    let mut next_offset = first.next_offset();
    if b.cut_hint > at && b.cut_hint < limit {
        // Every batch before the hint ends before it: skip their headers.
        at = b.cut_hint;
        next_offset = read_header(file, path, at)?.base_offset;
    }
    // Whole batches up to the limit; at most one index interval of headers.
    while at + HEADER_BYTES as u64 <= limit {
        let header = read_header(file, path, at)?;
        let total = header.total_bytes() as u64;
        if at + total > limit {
            break;
        }
        at += total;
        next_offset = header.next_offset();
    }
    Ok(Some((position, at - position, next_offset)))
}
