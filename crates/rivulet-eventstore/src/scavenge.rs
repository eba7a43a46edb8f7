//! Scavenging: removing from the log the events no reader may see any more, so deleted
//! streams and metadata limits give their space back (KurrentDB's scavenge).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rivulet_broker::StoredRecord;

use crate::codec::{self, LogEntry};
use crate::error::Result;
use crate::model::RecordedEvent;
use crate::read::visible_from;
use crate::{EventStore, Inner};

/// Longest time between two scavenges of the background scavenger.
const SCAVENGE_AGE_MAX: Duration = Duration::from_secs(24 * 3600);

/// Stream heads one scavenge keeps in memory before starting the cache afresh.
const HEADS_CACHED_MAX: usize = 100_000;

/// What a stream shows, as far as scavenging is concerned.
#[derive(Debug, Clone, Copy)]
struct Shown {
    last: u64,
    tombstoned: bool,
    /// The first readable revision.
    floor: u64,
    /// The oldest readable creation time (`$maxAge`).
    oldest_ms: i64,
}

impl Shown {
    /// True when a reader may still see `e`, or when it is the stream's last event (kept so
    /// an index rebuilt from the log continues the stream's revisions).
    fn keeps(&self, e: &RecordedEvent) -> bool {
        if e.revision == self.last {
            return true;
        }
        !self.tombstoned && e.revision >= self.floor && e.created_ms >= self.oldest_ms
    }
}

impl EventStore {
    /// Removes from the log's sealed segments the events no reader may see any more: those
    /// of tombstoned streams, and those below what a stream shows (soft-deleted, `$tb`,
    /// `$maxCount`, `$maxAge`). Each stream's last event stays, and so do stream changes
    /// and events not yet indexed; positions of removed events become gaps in `$all`.
    /// Blocking I/O (it rewrites segment files): call from a thread that may block.
    /// Returns the number of events removed.
    pub fn scavenge(&self) -> Result<u64> {
        let indexed = self.indexed_position();
        let txn = self.inner.index.begin_read()?;
        let mut shown: HashMap<String, Option<Shown>> = HashMap::new();
        let mut failure = None;
        let mut keep = |r: &StoredRecord| -> bool {
            if u64::try_from(r.offset).map_or(true, |p| p >= indexed) {
                return true;
            }
            let Ok(LogEntry::Event(e)) = codec::decode_record(r) else {
                return true;
            };
            if shown.len() >= HEADS_CACHED_MAX {
                shown.clear();
            }
            if !shown.contains_key(&e.stream) {
                match self.inner.index.head(&txn, &e.stream) {
                    Ok(head) => {
                        let s = head.and_then(|h| {
                            let last = h.last_revision?;
                            let (floor, oldest_ms) = visible_from(&h, last);
                            Some(Shown {
                                last,
                                tombstoned: h.tombstoned,
                                floor,
                                oldest_ms,
                            })
                        });
                        shown.insert(e.stream.clone(), s);
                    }
                    Err(error) => {
                        failure.get_or_insert(error);
                        return true;
                    }
                }
            }
            shown
                .get(&e.stream)
                .copied()
                .flatten()
                .is_none_or(|s| s.keeps(&e))
        };
        let removed = self.inner.broker.scavenge_records(self.topic(), 0, &mut keep);
        if let Some(error) = failure {
            return Err(error);
        }
        let removed = match removed {
            Err(rivulet_broker::BrokerError::UnknownTopic(_)) => 0,
            other => other?,
        };
        if removed > 0 {
            tracing::info!(removed_events = removed, "Event store scavenged");
        }
        Ok(removed)
    }
}

/// Looks every `interval` on its own thread whether to scavenge: when stream changes were
/// indexed since the last scavenge, or [`SCAVENGE_AGE_MAX`] passed. Ends when the store is
/// dropped.
pub(crate) fn spawn_scavenger(store: Weak<Inner>, interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("rivulet-es-scavenge".into())
        .spawn(move || {
            let mut seen = 0u64;
            let mut last = Instant::now();
            loop {
                std::thread::sleep(interval);
                let Some(inner) = store.upgrade() else {
                    return;
                };
                let changes = inner.changes_indexed.load(Ordering::Relaxed);
                if changes == seen && last.elapsed() < SCAVENGE_AGE_MAX {
                    continue;
                }
                let store = EventStore {
                    inner: Arc::clone(&inner),
                };
                match store.scavenge() {
                    Ok(_) => (seen, last) = (changes, Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "Event store: scavenging failed; retrying later"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "Event store: cannot start the scavenger thread; scavenge on demand only");
    }
}
