//! Appending batches: validation, idempotent-producer checks, the write, and the sync
//! request that makes them durable.

use tracing::{debug, error, warn};

use super::{lock, now_ms, AppendOutcome, Log, State};
use crate::batch::{self, BatchHeader};
use crate::config::{FsyncPolicy, LogConfig};
use crate::durable::{Durable, Request};
use crate::error::{BatchError, LogError, Result};
use crate::producer::Check;
use crate::rewrite;
use crate::txn::Marker;

/// Under `FsyncPolicy::None`, a flusher syncs a partition in the background once this many
/// bytes were appended since its last sync, without anyone waiting for it. This keeps each
/// partition's dirty pages bounded: left to itself the kernel lets gigabytes accumulate,
/// then writes them back all at once and throttles every writer meanwhile, and a segment
/// roll would fdatasync up to a whole segment under the partition's lock.
pub const WRITEBACK_BYTES: u64 = 16 * 1024 * 1024;

/// What the batches of one append added up to.
pub(super) struct Written {
    pub first: Option<i64>,
    pub last: i64,
    pub count: i64,
    pub all_duplicate: bool,
}

impl Log {
    /// Appends one or more concatenated RecordBatch v2 (a Produce request's records for one
    /// partition). Each batch is validated, checked against the idempotent producer state,
    /// given offsets by rewriting its baseOffset and written to the page cache.
    ///
    /// The sync that makes the records durable is requested here; the returned outcome's
    /// [`Durable`] handle resolves once it is done (at once under policies other than
    /// `always`). Under `always` readers see the records only after that sync.
    ///
    /// Control batches are refused: transaction markers go through [`Log::append_marker`].
    pub fn append(&self, records: &[u8]) -> Result<AppendOutcome> {
        let config = self.config();
        let batches = split_batches(records, config.max_batch_bytes)?;
        if batches.iter().any(|(h, _)| h.is_control()) {
            return Err(LogError::InvalidBatch(BatchError::ControlFromProducer));
        }
        let now = now_ms();
        for (header, bytes) in &batches {
            if !config.log_append_time {
                rewrite::check_timestamps(bytes, header, config.timestamp_bounds, now)?;
            }
        }
        let recompressed = match config.compression {
            Some(codec) if batches.iter().any(|(h, _)| h.compression() != codec) => {
                Some(recompress_all(&batches, codec)?)
            }
            _ => None,
        };
        if !config.log_append_time && recompressed.is_none() {
            return self.append_checked(&config, records, batches);
        }
        // Recompressed bytes are used as they are; LogAppendTime stamps a copy.
        let stamped = match recompressed {
            Some(bytes) if !config.log_append_time => bytes,
            bytes => batch::stamp_log_append_time(bytes.as_deref().unwrap_or(records), now),
        };
        // Recompression may grow a batch past the limit; it was accepted as sent.
        let batches = split_batches(&stamped, usize::MAX)?;
        let mut outcome = self.append_checked(&config, &stamped, batches)?;
        if config.log_append_time {
            outcome.log_append_time_ms = now;
        }
        Ok(outcome)
    }

    /// Ends `producer_id`'s open transaction in this partition with a commit or abort
    /// marker written at `producer_epoch` (older epochs of the producer are refused from
    /// then on). `None` when the producer has no transaction open here: there is nothing
    /// to end, and a marker written again after a restart changes nothing.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        coordinator_epoch: i32,
    ) -> Result<Option<AppendOutcome>> {
        let config = self.config();
        let bytes =
            crate::txn::build_marker(producer_id, producer_epoch, marker, coordinator_epoch, now_ms());
        let batches = split_batches(&bytes, usize::MAX)?;
        if !self.has_open_transaction(producer_id) {
            return Ok(None);
        }
        self.append_checked(&config, &bytes, batches).map(Some)
    }

    fn append_checked(
        &self,
        config: &LogConfig,
        records: &[u8],
        batches: Vec<(BatchHeader, &[u8])>,
    ) -> Result<AppendOutcome> {
        let mut st = lock(&self.shared.state);
        self.check_writable(&st)?;
        let now = now_ms();
        let mut written = Written {
            first: None,
            last: -1,
            count: 0,
            all_duplicate: true,
        };
        // The batches written, with their assigned base offsets, for the journal.
        let mut new_batches: Vec<(i64, &[u8])> = Vec::new();
        for (header, bytes) in batches {
            if let Check::Duplicate(meta) = st.producers.check(&header)? {
                debug!(
                    producer_id = header.producer_id,
                    base_sequence = header.base_sequence,
                    "Duplicate batch"
                );
                written.first.get_or_insert(meta.base_offset);
                written.last = meta.last_offset;
                written.count += meta.last_offset - meta.base_offset + 1;
                continue;
            }
            written.all_duplicate = false;
            let header = self.write_batch(&mut st, config, header, bytes, now)?;
            self.note_batch(&mut st, &header, bytes, now);
            new_batches.push((header.base_offset, bytes));
            written.first.get_or_insert(header.base_offset);
            written.last = header.last_offset();
            written.count += i64::from(header.record_count);
        }
        let base_offset = written
            .first
            .ok_or(LogError::InvalidBatch(BatchError::TooShort { len_bytes: 0 }))?;
        let mut sync_to = self.after_write(&mut st, config, &written, records.len());
        // Only `always` appends wait for a sync; the others' background writeback stays
        // with the flush pool.
        let waited_for = config.fsync == FsyncPolicy::Always && sync_to.is_some();
        if waited_for && self.made_durable_by_journal(&mut st, &written, &new_batches) {
            sync_to = None;
        }
        let log_start_offset = st.log_start_offset;
        drop(st);
        if !written.all_duplicate {
            self.maintenance_now();
        }
        if let Some(next_offset) = sync_to {
            self.request_durable(next_offset);
        }
        let durable = if config.fsync == FsyncPolicy::Always {
            Durable::pending(self.clone(), written.last + 1)
        } else {
            Durable::ready()
        };
        Ok(AppendOutcome {
            base_offset,
            last_offset: written.last,
            log_append_time_ms: -1,
            log_start_offset,
            record_count: written.count,
            duplicate: written.all_duplicate,
            durable,
        })
    }

    fn check_writable(&self, st: &State) -> Result<()> {
        if st.closed {
            return Err(LogError::Closed {
                path: self.shared.dir.clone(),
            });
        }
        if let Some(reason) = &st.poisoned {
            return Err(LogError::Io {
                op: "append (log needs reopening after an earlier failure)",
                path: self.shared.dir.clone(),
                source: std::io::Error::other(reason.clone()),
            });
        }
        Ok(())
    }

    /// Publishes the new end to readers where the policy allows, and returns the offset a
    /// sync should reach, if one is due.
    fn after_write(
        &self,
        st: &mut State,
        config: &LogConfig,
        written: &Written,
        bytes: usize,
    ) -> Option<i64> {
        match config.fsync {
            // Readers see the records once they are durable; a retried duplicate may still be
            // waiting for the sync of its first attempt, so it asks too.
            FsyncPolicy::Always => Some(written.last + 1),
            FsyncPolicy::Interval(_) => {
                if !written.all_duplicate {
                    self.publish_end(st);
                }
                None
            }
            FsyncPolicy::None => {
                if written.all_duplicate {
                    return None;
                }
                self.publish_end(st);
                st.unflushed_bytes += bytes as u64;
                if st.unflushed_bytes < WRITEBACK_BYTES {
                    return None;
                }
                st.unflushed_bytes = 0;
                Some(st.next_offset)
            }
        }
    }

    /// Asks the flush pool to make every offset below `next_offset` durable.
    pub(crate) fn request_durable(&self, next_offset: i64) {
        if self.shared.durability.request(next_offset) == Request::Enqueue {
            self.shared.pool.enqueue(self);
        }
    }

    /// Writes one validated batch at the end of the active segment, rolling first if needed.
    pub(super) fn write_batch(
        &self,
        st: &mut State,
        config: &LogConfig,
        header: BatchHeader,
        bytes: &[u8],
        now: i64,
    ) -> Result<BatchHeader> {
        if needs_roll(st, config, &header, bytes.len(), now)? {
            self.roll(st, now)?;
        }
        let storage = self.shared.storage.clone();
        let base_offset = st.next_offset;
        let head = base_offset.to_be_bytes();
        let active = st
            .segments
            .values_mut()
            .next_back()
            .ok_or_else(|| LogError::Config("no segment".into()))?;
        let position = active.size();
        let file = active.file(storage.as_ref())?;
        // One vectored write with the patched first 8 bytes instead of copying the batch. A
        // torn write leaves a batch that fails its checks: recovery cuts it.
        let written = file.write_all_vectored_at(&[&head, &bytes[8..]], position);
        if let Err(e) = written {
            // Remove whatever part of the batch reached the file so no torn batch stays behind.
            if let Err(e2) = file.set_len(position) {
                error!(segment = %active.log_path.display(), error = %e2, "Could not cut a failed write");
                st.poisoned = Some(format!("write failed and could not be undone: {e2}"));
            }
            warn!(segment = %active.log_path.display(), error = %e, "Append failed");
            return Err(LogError::Io {
                op: "append",
                path: active.log_path.clone(),
                source: e,
            });
        }
        if position == 0 {
            active.created_ms = now;
        }
        let mut header = header;
        header.base_offset = base_offset;
        active.note_batch(&header, position, config.index_interval_bytes);
        st.next_offset = header.next_offset();
        debug_assert_eq!(active.size(), position + bytes.len() as u64);
        Ok(header)
    }
}

/// True when the active segment must roll before a batch of `len` bytes is written.
fn needs_roll(st: &State, config: &LogConfig, header: &BatchHeader, len: usize, now: i64) -> Result<bool> {
    let active = st
        .segments
        .values()
        .next_back()
        .ok_or_else(|| LogError::Config("no segment".into()))?;
    let full = active.size() + len as u64 > config.segment_bytes;
    let aged = config
        .segment_ms
        .is_some_and(|ms| now - active.created_ms >= ms as i64);
    // Offsets relative to the segment's base must fit the index's 32 bits.
    let offsets_exhausted =
        st.next_offset - active.base_offset + i64::from(header.last_offset_delta) >= i64::from(u32::MAX);
    Ok(active.size() > 0 && (full || aged || offsets_exhausted))
}

/// Splits concatenated batches and validates each one.
pub(super) fn split_batches(records: &[u8], max_batch_bytes: usize) -> Result<Vec<(BatchHeader, &[u8])>> {
    let mut out = Vec::new();
    let mut rest = records;
    if rest.is_empty() {
        return Err(LogError::InvalidBatch(BatchError::TooShort { len_bytes: 0 }));
    }
    // A produce request is bounded by its size limit; so is this loop.
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest)?;
        let total = header.total_bytes();
        if header.batch_length < 0 || total > rest.len() {
            return Err(LogError::InvalidBatch(BatchError::LengthMismatch {
                declared_bytes: i64::from(header.batch_length),
                actual_bytes: rest.len().saturating_sub(batch::LOG_OVERHEAD_BYTES),
            }));
        }
        let (one, tail) = rest.split_at(total);
        let header = batch::validate(one, max_batch_bytes)?;
        out.push((header, one));
        rest = tail;
    }
    Ok(out)
}

/// The batches, each compressed with `codec` (those already in it are copied as they are).
fn recompress_all(batches: &[(BatchHeader, &[u8])], codec: i16) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (header, bytes) in batches {
        if header.compression() == codec {
            out.extend_from_slice(bytes);
        } else {
            out.extend_from_slice(&rewrite::recompress(bytes, header, codec)?);
        }
    }
    Ok(out)
}
