//! Reads: one stream (or a projection) by revision from the index, and the global order
//! (`$all`) by position from the log. Both show only what is indexed, so a reader that has
//! seen position P finds every event below P by stream as well, and nothing not yet durable.

use std::collections::HashMap;

use rivulet_broker::BrokerError;

use crate::codec::{self, LogEntry};
use crate::error::{EventStoreError, Result};
use crate::model::{Direction, RecordedEvent, StreamHead};
use crate::{EventStore, READ_EVENTS_MAX};

/// Bytes of the log one `$all` read pass takes.
const ALL_READ_BYTES: usize = 1 << 20;
/// Passes one `$all` read makes over records its filter leaves out before answering.
const ALL_PASSES_MAX: usize = 64;

/// Bytes of the log one fetch of event bodies reads.
const FETCH_BYTES: usize = 1 << 20;
/// Positions apart within which one read fetches several wanted events together.
const FETCH_SPAN_MAX: u64 = 256;

/// Events of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSlice {
    /// The events, in the direction read.
    pub events: Vec<RecordedEvent>,
    /// Where a next read in the same direction continues; `None` at the stream's end.
    pub next: Option<u64>,
    /// The stream's last revision (for a projection, its last link number).
    pub last_revision: u64,
}

/// Which events of `$all` a read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllFilter {
    /// Only streams whose names start with this.
    pub stream_prefix: Option<String>,
    /// Only event types that start with this.
    pub event_type_prefix: Option<String>,
}

impl AllFilter {
    /// True when the event passes.
    pub fn matches(&self, e: &RecordedEvent) -> bool {
        self.stream_prefix
            .as_deref()
            .is_none_or(|p| e.stream.starts_with(p))
            && self
                .event_type_prefix
                .as_deref()
                .is_none_or(|p| e.event_type.starts_with(p))
    }
}

/// Events of `$all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllSlice {
    /// The events, in the direction read.
    pub events: Vec<RecordedEvent>,
    /// Where a next read in the same direction continues (forwards: the next position to
    /// look at; backwards: the position below which to look). Moves past records the filter
    /// left out, so a filtered reader makes progress.
    pub next_position: u64,
    /// True when the read reached the end (forwards) or the start (backwards).
    pub end: bool,
}

/// What a stream's metadata limits.
#[derive(Debug, Default)]
struct Limits {
    max_count: Option<u64>,
    max_age_s: Option<u64>,
    truncate_before: Option<u64>,
}

fn limits(head: &StreamHead) -> Limits {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(&head.metadata) else {
        return Limits::default();
    };
    Limits {
        max_count: m.get("$maxCount").and_then(serde_json::Value::as_u64),
        max_age_s: m.get("$maxAge").and_then(serde_json::Value::as_u64),
        truncate_before: m.get("$tb").and_then(serde_json::Value::as_u64),
    }
}

/// The first readable revision and the oldest readable creation time of a stream.
pub(crate) fn visible_from(head: &StreamHead, last: u64) -> (u64, i64) {
    let l = limits(head);
    let by_count = l.max_count.map_or(0, |n| (last + 1).saturating_sub(n));
    let floor = head
        .truncate_before
        .max(l.truncate_before.unwrap_or(0))
        .max(by_count);
    let oldest_ms = l.max_age_s.map_or(i64::MIN, |s| {
        now_ms().saturating_sub(s.saturating_mul(1000) as i64)
    });
    (floor, oldest_ms)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn is_projection(stream: &str) -> bool {
    stream.starts_with("$ce-") || stream.starts_with("$et-")
}

/// The revision range a read covers, `None` when it is empty.
fn span(from: Option<u64>, direction: Direction, floor: u64, last: u64) -> Option<(u64, u64)> {
    match direction {
        Direction::Forwards => {
            let start = from.unwrap_or(0).max(floor);
            (start <= last).then_some((start, last))
        }
        Direction::Backwards => {
            let start = from.unwrap_or(last).min(last);
            (start >= floor).then_some((floor, start))
        }
    }
}

fn next_after(direction: Direction, seen: Option<u64>, (lo, hi): (u64, u64)) -> Option<u64> {
    let seen = seen?;
    match direction {
        Direction::Forwards => (seen < hi).then(|| seen + 1),
        Direction::Backwards => (seen > lo).then(|| seen - 1),
    }
}

impl EventStore {
    /// The first readable and the last revision of a stream with events, `None` otherwise.
    pub(crate) fn readable_span(&self, stream: &str) -> Result<Option<(u64, u64)>> {
        let txn = self.inner.index.begin_read()?;
        let head = self.inner.index.head(&txn, stream)?;
        Ok(head.filter(StreamHead::exists).and_then(|h| {
            let last = h.last_revision?;
            Some((visible_from(&h, last).0, last))
        }))
    }

    /// Reads a stream (or `$ce-<category>` / `$et-<type>`) from a revision (`None`: its start,
    /// or its end backwards), at most `max` events.
    pub fn read_stream(
        &self,
        stream: &str,
        from: Option<u64>,
        direction: Direction,
        max: usize,
    ) -> Result<StreamSlice> {
        let max = max.clamp(1, READ_EVENTS_MAX);
        if is_projection(stream) {
            return self.read_projection(stream, from, direction, max);
        }
        let txn = self.inner.index.begin_read()?;
        let head = self.inner.index.head(&txn, stream)?;
        let head = match head {
            Some(h) if h.tombstoned => return Err(EventStoreError::StreamDeleted(stream.to_string())),
            Some(h) if h.exists() => h,
            _ => return Err(EventStoreError::StreamNotFound(stream.to_string())),
        };
        let last = head.last_revision.unwrap_or(0);
        let (floor, oldest_ms) = visible_from(&head, last);
        let Some(range) = span(from, direction, floor, last) else {
            return Ok(StreamSlice {
                events: Vec::new(),
                next: None,
                last_revision: last,
            });
        };
        let backwards = direction == Direction::Backwards;
        let found = self.inner.index.events(&txn, stream, range, backwards, max)?;
        let next = next_after(direction, found.last().map(|f| f.0), range);
        let positions: Vec<u64> = found.iter().map(|f| f.1).collect();
        let mut events = self.fetch(&positions)?;
        events.retain(|e| e.created_ms >= oldest_ms);
        Ok(StreamSlice {
            events,
            next,
            last_revision: last,
        })
    }

    fn read_projection(
        &self,
        stream: &str,
        from: Option<u64>,
        direction: Direction,
        max: usize,
    ) -> Result<StreamSlice> {
        let txn = self.inner.index.begin_read()?;
        let len = self.inner.index.projection_len(&txn, stream)?;
        let Some(last) = len.checked_sub(1) else {
            return Err(EventStoreError::StreamNotFound(stream.to_string()));
        };
        let Some(range) = span(from, direction, 0, last) else {
            return Ok(StreamSlice {
                events: Vec::new(),
                next: None,
                last_revision: last,
            });
        };
        let links = self
            .inner
            .index
            .links(&txn, stream, range, direction == Direction::Backwards, max)?;
        let next = next_after(direction, links.last().map(|l| l.0), range);
        let mut heads: HashMap<String, Option<(u64, i64)>> = HashMap::new();
        let mut positions = Vec::with_capacity(links.len());
        for (_, source, revision, position) in links {
            if !heads.contains_key(&source) {
                let head = self.inner.index.head(&txn, &source)?.filter(StreamHead::exists);
                let visible = head.map(|h| visible_from(&h, h.last_revision.unwrap_or(0)));
                heads.insert(source.clone(), visible);
            }
            if let Some(Some((floor, _))) = heads.get(&source) {
                if revision >= *floor {
                    positions.push(position);
                }
            }
        }
        let mut events = self.fetch(&positions)?;
        events.retain(
            |e| matches!(heads.get(&e.stream), Some(Some((_, oldest_ms))) if e.created_ms >= *oldest_ms),
        );
        Ok(StreamSlice {
            events,
            next,
            last_revision: last,
        })
    }

    /// Reads `$all` from a position (`None`: the start, or the end backwards), at most `max`
    /// events passing `filter`.
    pub fn read_all(
        &self,
        from: Option<u64>,
        direction: Direction,
        max: usize,
        filter: &AllFilter,
    ) -> Result<AllSlice> {
        self.read_all_where(from, direction, max, &|e| filter.matches(e))
    }

    /// [`EventStore::read_all`] with any test of events (front ends with their own filter
    /// languages, such as regular expressions).
    pub fn read_all_where(
        &self,
        from: Option<u64>,
        direction: Direction,
        max: usize,
        filter: &dyn Fn(&RecordedEvent) -> bool,
    ) -> Result<AllSlice> {
        let max = max.clamp(1, READ_EVENTS_MAX);
        let indexed = self.indexed_position();
        let start = self
            .inner
            .broker
            .topic(self.topic())
            .and_then(|t| t.offsets(0))
            .map_or(0, |(s, _)| s.max(0) as u64);
        match direction {
            Direction::Forwards => self.read_all_forwards(from.unwrap_or(0).max(start), indexed, max, filter),
            Direction::Backwards => {
                self.read_all_backwards(from.unwrap_or(indexed).min(indexed), start, max, filter)
            }
        }
    }

    fn read_all_forwards(
        &self,
        from: u64,
        end: u64,
        max: usize,
        filter: &dyn Fn(&RecordedEvent) -> bool,
    ) -> Result<AllSlice> {
        let mut out = Vec::new();
        let mut next = from;
        for _ in 0..ALL_PASSES_MAX {
            if next >= end || out.len() >= max {
                break;
            }
            let (events, after) = self.scan(next, end, max - out.len(), filter)?;
            out.extend(events);
            if after == next {
                break;
            }
            next = after;
        }
        Ok(AllSlice {
            events: out,
            next_position: next,
            end: next >= end,
        })
    }

    fn read_all_backwards(
        &self,
        below: u64,
        start: u64,
        max: usize,
        filter: &dyn Fn(&RecordedEvent) -> bool,
    ) -> Result<AllSlice> {
        let mut out = Vec::new();
        let mut below = below;
        for _ in 0..ALL_PASSES_MAX {
            if below <= start || out.len() >= max {
                break;
            }
            let begin = below.saturating_sub(max.max(64) as u64).max(start);
            let mut window = Vec::new();
            let mut at = begin;
            while at < below {
                let (events, after) = self.scan(at, below, READ_EVENTS_MAX, filter)?;
                window.extend(events);
                if after == at {
                    break;
                }
                at = after;
            }
            let need = max - out.len();
            let take = window.len().min(need);
            // Newest first; when the window has more than needed, continue below the oldest taken.
            let taken: Vec<RecordedEvent> = window.drain(window.len() - take..).rev().collect();
            below = match (window.is_empty(), taken.last()) {
                (false, Some(e)) => e.position,
                _ => begin,
            };
            out.extend(taken);
        }
        Ok(AllSlice {
            events: out,
            next_position: below,
            end: below <= start,
        })
    }

    /// Events in `[from, end)` passing the filter, at most `max`, and where to continue.
    fn scan(
        &self,
        from: u64,
        end: u64,
        max: usize,
        filter: &dyn Fn(&RecordedEvent) -> bool,
    ) -> Result<(Vec<RecordedEvent>, u64)> {
        let read = match self
            .inner
            .broker
            .read_records(self.topic(), 0, from as i64, ALL_READ_BYTES, max)
        {
            Ok(r) => r,
            Err(BrokerError::UnknownTopic(_)) => return Ok((Vec::new(), from)),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        let mut next = from;
        for r in &read.records {
            let position = r.offset as u64;
            if position >= end || out.len() >= max {
                return Ok((out, next));
            }
            next = position + 1;
            if let Ok(LogEntry::Event(e)) = codec::decode_record(r) {
                if filter(&e) {
                    out.push(e);
                }
            }
        }
        Ok((out, (read.next_offset.max(0) as u64).clamp(next, end)))
    }
}

impl EventStore {
    /// The events at `positions` (bodies live in the log), in the order given; positions
    /// no longer in the log are left out. Wanted positions close together are read at once.
    fn fetch(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>> {
        let mut wanted = positions.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut found: HashMap<u64, RecordedEvent> = HashMap::with_capacity(wanted.len());
        let mut i = 0;
        // Each pass settles at least the position it starts at.
        while i < wanted.len() {
            let start = wanted[i];
            let span = wanted[i..]
                .iter()
                .take_while(|p| **p - start < FETCH_SPAN_MAX)
                .last()
                .map_or(1, |p| p - start + 1);
            let read = match self.inner.broker.read_records(
                self.topic(),
                0,
                start as i64,
                FETCH_BYTES,
                span as usize,
            ) {
                Ok(r) => r,
                Err(BrokerError::Log(rivulet_broker::LogError::OffsetOutOfRange { .. })) => {
                    i += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for r in &read.records {
                let offset = r.offset as u64;
                while i < wanted.len() && wanted[i] < offset {
                    i += 1;
                }
                if i < wanted.len() && wanted[i] == offset {
                    if let Ok(LogEntry::Event(e)) = codec::decode_record(r) {
                        found.insert(offset, e);
                    }
                    i += 1;
                }
            }
            if i < wanted.len() && wanted[i] == start {
                i += 1;
            }
        }
        Ok(positions.iter().filter_map(|p| found.remove(p)).collect())
    }

    /// Streams in name order, after `after`, whose names start with `prefix`; at most `max`.
    /// Deleted and tombstoned streams are listed with their state.
    pub fn list_streams(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<crate::StreamSummary>> {
        let max = max.clamp(1, READ_EVENTS_MAX);
        Ok(self
            .inner
            .index
            .streams(prefix, after, max)?
            .into_iter()
            .map(|(name, head)| crate::StreamSummary { name, head })
            .collect())
    }
}
