//! The per-stream index in redb: what the log alone cannot answer cheaply.
//!
//! Tables: `streams` (name → head), `events` ((stream, revision) → log position), `ids`
//! ((stream, event id) → (revision, position)), `links` ((projection, n) → (stream,
//! revision, position)) with
//! `projections` (name → next n) for `$ce-<category>` and `$et-<type>`, and `meta`
//! (`next_position`: the log position indexed up to, exclusive). Event bodies stay in the
//! log only; the index holds small fixed-size values, so its commits write few pages.
//!
//! The index only ever holds events that are durable in the log, and it is written in the
//! order of the log, so after a crash it is a prefix of the log and is completed by
//! indexing the rest (`EventStore::open`).

use std::path::Path;

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};

use crate::codec::{self, Change, LogEntry};
use crate::error::Result;
use crate::model::StreamHead;

const STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("streams");
const EVENTS: TableDefinition<(&str, u64), u64> = TableDefinition::new("events");
const IDS: TableDefinition<(&str, u128), (u64, u64)> = TableDefinition::new("ids");
const LINKS: TableDefinition<(&str, u64), (&str, u64, u64)> = TableDefinition::new("links");
const PROJECTIONS: TableDefinition<&str, u64> = TableDefinition::new("projections");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_POSITION: &str = "next_position";

/// The index file.
pub(crate) struct Index {
    db: Database,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

/// The projection streams an event is linked into: its category (`$ce-order` for
/// `order-42`, the part before the first `-`) and its type (`$et-OrderPlaced`).
pub(crate) fn projections_of(stream: &str, event_type: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    if let Some((category, _)) = stream.split_once('-').filter(|_| !stream.starts_with('$')) {
        out.push(format!("$ce-{category}"));
    }
    out.push(format!("$et-{event_type}"));
    out
}

impl Index {
    /// Opens (or creates) the index file and its tables.
    pub(crate) fn open(path: &Path) -> Result<Index> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(STREAMS)?;
            txn.open_table(EVENTS)?;
            txn.open_table(IDS)?;
            txn.open_table(LINKS)?;
            txn.open_table(PROJECTIONS)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
        Ok(Index { db })
    }

    /// A consistent view for reads.
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction> {
        Ok(self.db.begin_read()?)
    }

    /// The log position indexed up to (exclusive).
    pub(crate) fn next_position(&self) -> Result<u64> {
        let txn = self.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(NEXT_POSITION)?.map_or(0, |v| v.value()))
    }

    /// Forgets everything (the log no longer matches: it was deleted or lost a suffix).
    pub(crate) fn clear(&self, next_position: u64) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.delete_table(STREAMS)?;
        txn.delete_table(EVENTS)?;
        txn.delete_table(IDS)?;
        txn.delete_table(LINKS)?;
        txn.delete_table(PROJECTIONS)?;
        {
            txn.open_table(STREAMS)?;
            txn.open_table(EVENTS)?;
            txn.open_table(IDS)?;
            txn.open_table(LINKS)?;
            txn.open_table(PROJECTIONS)?;
            txn.open_table(META)?.insert(NEXT_POSITION, next_position)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// A stream's head, if the stream was ever written.
    pub(crate) fn head(&self, txn: &ReadTransaction, stream: &str) -> Result<Option<StreamHead>> {
        let streams = txn.open_table(STREAMS)?;
        let found = streams.get(stream)?;
        found.map(|v| codec::decode_head(v.value())).transpose()
    }

    /// Where an event id was written in a stream: (revision, position).
    pub(crate) fn id(&self, txn: &ReadTransaction, stream: &str, id: u128) -> Result<Option<(u64, u64)>> {
        let ids = txn.open_table(IDS)?;
        let found = ids.get((stream, id))?;
        Ok(found.map(|v| v.value()))
    }

    /// (revision, position) of a stream's events with revisions in `from..=to`, in the
    /// direction asked, at most `max`.
    pub(crate) fn events(
        &self,
        txn: &ReadTransaction,
        stream: &str,
        (from, to): (u64, u64),
        backwards: bool,
        max: usize,
    ) -> Result<Vec<(u64, u64)>> {
        let events = txn.open_table(EVENTS)?;
        let range = events.range((stream, from)..=(stream, to))?;
        let items: Box<dyn Iterator<Item = _>> = if backwards {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut out = Vec::with_capacity(max.min(1024));
        for item in items.take(max) {
            let (k, v) = item?;
            out.push((k.value().1, v.value()));
        }
        Ok(out)
    }

    /// Links of a projection stream with numbers in `from..=to`: (n, stream, revision,
    /// position).
    pub(crate) fn links(
        &self,
        txn: &ReadTransaction,
        projection: &str,
        (from, to): (u64, u64),
        backwards: bool,
        max: usize,
    ) -> Result<Vec<(u64, String, u64, u64)>> {
        let links = txn.open_table(LINKS)?;
        let range = links.range((projection, from)..=(projection, to))?;
        let mut out = Vec::new();
        let items: Box<dyn Iterator<Item = _>> = if backwards {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        for item in items.take(max) {
            let (k, v) = item?;
            let (stream, revision, position) = v.value();
            out.push((k.value().1, stream.to_string(), revision, position));
        }
        Ok(out)
    }

    /// How many events a projection stream has linked.
    pub(crate) fn projection_len(&self, txn: &ReadTransaction, projection: &str) -> Result<u64> {
        let projections = txn.open_table(PROJECTIONS)?;
        let found = projections.get(projection)?;
        Ok(found.map_or(0, |v| v.value()))
    }

    /// Streams in name order after `after`, at most `max`, whose names start with `prefix`.
    pub(crate) fn streams(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(String, StreamHead)>> {
        let txn = self.begin_read()?;
        let streams = txn.open_table(STREAMS)?;
        let start = after.unwrap_or(prefix);
        let mut out = Vec::new();
        for item in streams.range(start..)? {
            let (k, v) = item?;
            let name = k.value();
            if Some(name) == after {
                continue;
            }
            if !name.starts_with(prefix) || out.len() >= max {
                break;
            }
            out.push((name.to_string(), codec::decode_head(v.value())?));
        }
        Ok(out)
    }

    /// Applies log entries in log order and records `next_position`; `durable` makes this
    /// commit (and every one before it) survive a crash.
    pub(crate) fn apply(&self, entries: &[LogEntry], next_position: u64, durable: bool) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        {
            let mut streams = txn.open_table(STREAMS)?;
            let mut events = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(IDS)?;
            let mut links = txn.open_table(LINKS)?;
            let mut projections = txn.open_table(PROJECTIONS)?;
            for entry in entries {
                let stream = match entry {
                    LogEntry::Event(e) => e.stream.as_str(),
                    LogEntry::Change { stream, .. } => stream.as_str(),
                };
                let found = streams
                    .get(stream)?
                    .map(|v| codec::decode_head(v.value()))
                    .transpose()?;
                let mut head = found.unwrap_or_default();
                match entry {
                    LogEntry::Event(e) => {
                        head.last_revision = Some(e.revision);
                        head.deleted = false;
                        events.insert((stream, e.revision), e.position)?;
                        ids.insert((stream, e.id), (e.revision, e.position))?;
                        for projection in projections_of(stream, &e.event_type) {
                            let n = projections.get(projection.as_str())?.map_or(0, |v| v.value());
                            links.insert((projection.as_str(), n), (stream, e.revision, e.position))?;
                            projections.insert(projection.as_str(), n + 1)?;
                        }
                    }
                    LogEntry::Change { change, .. } => apply_change(&mut head, change),
                }
                streams.insert(stream, codec::encode_head(&head).as_slice())?;
            }
            txn.open_table(META)?.insert(NEXT_POSITION, next_position)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Makes every commit so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.commit()?;
        Ok(())
    }
}

/// A stream change applied to a head: the same rule for the index and for the writer's
/// view of streams not yet indexed.
pub(crate) fn apply_change(head: &mut StreamHead, change: &Change) {
    match change {
        Change::Delete { truncate_before } => {
            head.truncate_before = head.truncate_before.max(*truncate_before);
            head.deleted = true;
        }
        Change::Tombstone => head.tombstoned = true,
        Change::Metadata(metadata) => head.metadata = metadata.clone(),
    }
}
