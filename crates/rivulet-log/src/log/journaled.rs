//! Appends made durable through the shared journal, and replay from it at open.

use std::sync::atomic::Ordering;

use tracing::info;

use super::append::{split_batches, Written};
use super::{lock, Log, State, Visible};
use crate::config::FsyncPolicy;
use crate::error::{LogError, Result};
use crate::journal::Mark;

/// Batches replayed into one log at most per entry (an entry holds one append's batches).
const REPLAY_BATCHES_MAX: usize = 1 << 16;

impl Log {
    /// Under the state lock, after an `always` append wrote `batches` (with their base
    /// offsets) to the segment: hands them to the journal when that is safe. True when the
    /// journal now owns their durability; false when the segment must be synced instead.
    pub(super) fn made_durable_by_journal(
        &self,
        st: &mut State,
        written: &Written,
        batches: &[(i64, &[u8])],
    ) -> bool {
        let Some(link) = &self.shared.journal else {
            return false;
        };
        let next_offset = written.last + 1;
        let covered = st.journaled_to.max(self.durable_offset());
        let Some(&(first_new, _)) = batches.first() else {
            // A retried duplicate: covered once its first attempt is durable or journaled.
            return covered >= next_offset;
        };
        let bytes: usize = batches.iter().map(|(_, b)| b.len()).sum();
        if covered < first_new || bytes > link.journal.config().append_bytes_max {
            return false;
        }
        let heads: Vec<[u8; 8]> = batches.iter().map(|(base, _)| base.to_be_bytes()).collect();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(batches.len() * 2);
        for (head, (_, bytes)) in heads.iter().zip(batches) {
            parts.push(head);
            parts.push(&bytes[8..]);
        }
        let Some(active) = st.segments.values().next_back() else {
            return false;
        };
        let mark = Mark {
            log: self.clone(),
            next_offset,
            visible: Visible {
                offset: next_offset,
                segment_base: active.base_offset,
                position: active.size(),
            },
        };
        if !link.journal.submit(link, &parts, mark) {
            return false;
        }
        st.journaled_to = next_offset;
        true
    }

    /// Commits the journal's pending record on this thread when no commit runs; true when
    /// something was written (the caller checks its offset again).
    pub(crate) fn lead_journal_commit(&self) -> bool {
        self.shared
            .journal
            .as_ref()
            .is_some_and(|link| link.journal.lead_commit())
    }

    /// Hands the journal's pending record to its writer thread: for async waiters, and for
    /// a durability handle dropped before it resolved, whose appends nobody else would
    /// commit.
    pub(crate) fn kick_journal(&self) {
        if let Some(link) = &self.shared.journal {
            link.journal.kick();
        }
    }

    /// Called by the journal's writer once a record holding this log's append is durable.
    pub(crate) fn journal_committed(&self, next_offset: i64, visible: Visible) {
        if self.config().fsync == FsyncPolicy::Always {
            let mut st = lock(&self.shared.state);
            if visible.offset > st.visible.offset {
                st.visible = visible;
                self.publish_hwm(visible.offset);
            }
        }
        self.shared.durability.mark_durable(next_offset);
    }

    /// Starts writeback of what was appended to the active segment since the last call,
    /// without waiting: the journal's keeper spreads these over the time between
    /// checkpoints, so a checkpoint's sync finds little left to write and does not stall
    /// the journal's own writes behind a burst. Ranges under `min_bytes` wait for the next
    /// call.
    pub(crate) fn start_writeback(&self, min_bytes: u64) {
        let (file, from, to) = {
            let mut st = lock(&self.shared.state);
            let Some(active) = st.segments.values().next_back() else {
                return;
            };
            let (base, size) = (active.base_offset, active.size());
            let from = if st.writeback_started.0 == base {
                st.writeback_started.1
            } else {
                0
            };
            if size < from + min_bytes {
                return;
            }
            let Ok(file) = st
                .segments
                .values_mut()
                .next_back()
                .map_or(Err(()), |s| s.file(self.shared.storage.as_ref()).map_err(|_| ()))
            else {
                return;
            };
            st.writeback_started = (base, size);
            (file, from, size)
        };
        // A hint: a failure shows at the checkpoint's sync, which handles it.
        let _ = file.start_writeback(from, to - from);
    }

    /// Records that everything appended so far is being synced (a checkpoint): later
    /// writeback starts after it.
    pub(crate) fn writeback_covered(&self) {
        let mut st = lock(&self.shared.state);
        if let Some(active) = st.segments.values().next_back() {
            st.writeback_started = (active.base_offset, active.size());
        }
    }

    /// Takes the log off the journal's dirty list (a checkpoint is about to sync it).
    pub(crate) fn clear_journal_dirty(&self) {
        if let Some(link) = &self.shared.journal {
            link.dirty.store(false, Ordering::Release);
        }
    }

    /// Puts the log back on the dirty list; true when the caller must list it.
    pub(crate) fn mark_journal_dirty(&self) -> bool {
        self.shared
            .journal
            .as_ref()
            .is_some_and(|link| !link.dirty.swap(true, Ordering::AcqRel))
    }

    /// Appends, at open, the batches of journal entries the segments lack, then makes them
    /// durable in the segments. An entry that would leave a gap means the segments lost
    /// records the journal no longer holds: the log refuses to open rather than serve a
    /// log with a hole.
    pub(super) fn replay(&self, entries: Vec<Vec<u8>>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let config = self.config();
        let now = super::now_ms();
        let mut replayed = 0usize;
        let mut st = lock(&self.shared.state);
        for entry in &entries {
            let batches = split_batches(entry, config.max_batch_bytes)?;
            for (header, bytes) in batches.into_iter().take(REPLAY_BATCHES_MAX) {
                if header.last_offset() < st.next_offset {
                    continue;
                }
                if header.base_offset != st.next_offset {
                    return Err(LogError::Corrupt {
                        path: self.shared.dir.clone(),
                        position: 0,
                        reason: format!(
                            "the journal continues at offset {} but the log ends at {}",
                            header.base_offset, st.next_offset
                        ),
                    });
                }
                let header = self.write_batch(&mut st, &config, header, bytes, now)?;
                self.note_batch(&mut st, &header, bytes, now);
                replayed += 1;
            }
        }
        let end = st.next_offset;
        st.journaled_to = end;
        drop(st);
        self.sync_to(end)?;
        if config.fsync != FsyncPolicy::Always {
            self.publish_end(&mut lock(&self.shared.state));
        }
        if replayed > 0 {
            info!(dir = %self.shared.dir.display(), batches = replayed, log_end_offset = end, "Replayed journal entries the segments lacked");
        }
        Ok(())
    }
}
