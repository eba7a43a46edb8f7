//! Appends and stream changes. Each is checked and written under the writer lock, so no
//! two appends can be accepted at the same revision; the wait for the disk happens after
//! the lock is released and is shared by every append written meanwhile (group commit).
//!
//! The writer sees streams through the index plus `pending`: the heads and event ids of
//! streams written since the index last caught up, dropped once the index has them.

use std::collections::{HashMap, HashSet};

use rivulet_broker::{Appended, BrokerError};

use crate::codec::{self, Change};
use crate::error::{EventStoreError, Result};
use crate::index::apply_change;
use crate::model::{AppendResult, ExpectedState, NewEvent, StreamAppend, StreamHead};
use crate::{EventStore, APPEND_EVENTS_MAX, EVENT_TYPE_BYTES_MAX, STREAM_NAME_BYTES_MAX};

/// Streams kept in `pending` before the writer drops those the index has caught up with.
const PRUNE_STREAMS_MIN: usize = 256;

/// What the writer knows beyond the index.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pending: HashMap<String, Pending>,
    prune_at: usize,
}

#[derive(Debug)]
struct Pending {
    head: StreamHead,
    /// (event id, revision, position) of events not yet indexed, in revision order.
    ids: Vec<(u128, u64, u64)>,
    last_position: u64,
}

impl Writer {
    fn prune(&mut self, indexed: u64) {
        if self.pending.len() < self.prune_at.max(PRUNE_STREAMS_MIN) {
            return;
        }
        self.pending.retain(|_, p| p.last_position >= indexed);
        self.prune_at = self.pending.len() * 2;
    }

    fn note(&mut self, stream: &str, head: StreamHead, position: u64) -> &mut Pending {
        let pending = self.pending.entry(stream.to_string()).or_insert_with(|| Pending {
            head: StreamHead::default(),
            ids: Vec::new(),
            last_position: 0,
        });
        pending.head = head;
        pending.last_position = position;
        pending
    }
}

/// The revision the next event of a stream gets: revisions continue after a soft delete.
fn next_revision(head: &StreamHead) -> u64 {
    head.last_revision.map_or(0, |r| r + 1)
}

/// Checks a stream's state against what a writer expects.
fn check(stream: &str, head: &StreamHead, expected: ExpectedState) -> Result<()> {
    if head.tombstoned {
        return Err(EventStoreError::StreamDeleted(stream.to_string()));
    }
    let actual = head.current();
    let ok = match expected {
        ExpectedState::Any => true,
        ExpectedState::NoStream => actual.is_none(),
        ExpectedState::StreamExists => actual.is_some(),
        ExpectedState::Revision(r) => actual == Some(r),
    };
    if ok {
        Ok(())
    } else {
        Err(EventStoreError::WrongExpectedState {
            stream: stream.to_string(),
            expected,
            actual,
        })
    }
}

/// Who names the streams of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    /// Applications: no name starts with `$`.
    User,
    /// The store itself (persistent subscription state): only its own `$` streams.
    System,
}

/// Streams the store writes itself start with one of these.
const SYSTEM_STREAM_PREFIXES: [&str; 2] = ["$persistentsubscription-", "$persistentSubscriptionConfig"];

/// Checks a stream name a writer gives.
pub(crate) fn validate_stream_name(stream: &str, names: Names) -> Result<()> {
    if stream.is_empty() || stream.len() > STREAM_NAME_BYTES_MAX {
        return Err(EventStoreError::Invalid(format!(
            "a stream name has 1 to {STREAM_NAME_BYTES_MAX} bytes"
        )));
    }
    if names == Names::System {
        assert!(
            SYSTEM_STREAM_PREFIXES.iter().any(|p| stream.starts_with(p)),
            "the store writes only its own streams"
        );
        return Ok(());
    }
    if stream.starts_with('$') {
        return Err(EventStoreError::Invalid(format!(
            "stream '{stream}': names starting with '$' are the store's own ($all, $ce-, $et-)"
        )));
    }
    Ok(())
}

fn validate(appends: &[StreamAppend], names: Names) -> Result<()> {
    if appends.is_empty() {
        return Err(EventStoreError::Invalid(
            "an append names at least one stream".into(),
        ));
    }
    let total: usize = appends.iter().map(|a| a.events.len()).sum();
    if total > APPEND_EVENTS_MAX {
        return Err(EventStoreError::Invalid(format!(
            "{total} events in one append; at most {APPEND_EVENTS_MAX}"
        )));
    }
    let mut streams = HashSet::with_capacity(appends.len());
    for a in appends {
        validate_stream_name(&a.stream, names)?;
        if !streams.insert(a.stream.as_str()) {
            return Err(EventStoreError::Invalid(format!(
                "stream '{}' appears twice in one append",
                a.stream
            )));
        }
        validate_events(&a.stream, &a.events)?;
    }
    Ok(())
}

fn validate_events(stream: &str, events: &[NewEvent]) -> Result<()> {
    if events.is_empty() {
        return Err(EventStoreError::Invalid(format!(
            "stream '{stream}': an append has at least one event"
        )));
    }
    let mut ids = HashSet::with_capacity(events.len());
    for e in events {
        if e.event_type.is_empty() || e.event_type.len() > EVENT_TYPE_BYTES_MAX {
            return Err(EventStoreError::Invalid(format!(
                "stream '{stream}': an event type has 1 to {EVENT_TYPE_BYTES_MAX} bytes"
            )));
        }
        if !ids.insert(e.id) {
            return Err(EventStoreError::Invalid(format!(
                "stream '{stream}': event id {} appears twice in one append",
                uuid::Uuid::from_u128(e.id)
            )));
        }
    }
    Ok(())
}

impl EventStore {
    /// Appends events to one stream if it is in the expected state.
    pub async fn append_to(
        &self,
        stream: &str,
        expected: ExpectedState,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let mut results = self
            .append(vec![StreamAppend {
                stream: stream.to_string(),
                expected,
                events,
            }])
            .await?;
        results
            .pop()
            .ok_or_else(|| EventStoreError::Index("an append returned no result".into()))
    }

    /// Appends to several streams at once, each checked against its own expected state: every
    /// event is written or none. Returns when the events are durable and readable. An append
    /// whose event ids are already in their streams, in the same order, is answered with the
    /// original result (`already_written`) and writes nothing.
    pub async fn append(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        self.append_named(appends, Names::User).await
    }

    /// [`EventStore::append`] of the store's own streams.
    pub(crate) async fn append_system(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        self.append_named(appends, Names::System).await
    }

    async fn append_named(&self, appends: Vec<StreamAppend>, names: Names) -> Result<Vec<AppendResult>> {
        validate(&appends, names)?;
        let (appended, results) = self.write_appends(&appends)?;
        if let Some(appended) = appended {
            appended.durable().await?;
        }
        let last = results.iter().map(|r| r.position).max().unwrap_or(0);
        self.index_through(last).await?;
        Ok(results)
    }

    fn write_appends(&self, appends: &[StreamAppend]) -> Result<(Option<Appended>, Vec<AppendResult>)> {
        let topic = self.ensure_topic()?;
        let mut writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.inner.index.begin_read()?;
        let mut repeats = Vec::new();
        for a in appends {
            if let Some(r) = self.repeat_of(&writer, &txn, a)? {
                repeats.push(r);
            }
        }
        if repeats.len() == appends.len() {
            return Ok((None, repeats));
        }
        if let Some(r) = repeats.first() {
            let a = appends
                .iter()
                .find(|a| a.stream == r.stream)
                .unwrap_or(&appends[0]);
            return Err(EventStoreError::EventIdsReused {
                stream: r.stream.clone(),
                id: uuid::Uuid::from_u128(a.events[0].id),
            });
        }
        let mut heads = Vec::with_capacity(appends.len());
        let mut records = Vec::new();
        for a in appends {
            let head = self.head_of(&writer, &txn, &a.stream)?;
            check(&a.stream, &head, a.expected)?;
            let first = next_revision(&head);
            for (k, e) in a.events.iter().enumerate() {
                records.push(codec::event_record(&a.stream, first + k as u64, e));
            }
            heads.push(head);
        }
        let appended = self.inner.broker.append_atomic(&topic, 0, records)?;
        let mut positions = appended.positions.iter().map(|p| p.offset as u64);
        let mut results = Vec::with_capacity(appends.len());
        for (a, mut head) in appends.iter().zip(heads) {
            let first = next_revision(&head);
            let last = first + a.events.len() as u64 - 1;
            head.last_revision = Some(last);
            head.deleted = false;
            let ids: Vec<(u128, u64, u64)> = a
                .events
                .iter()
                .enumerate()
                .map(|(k, e)| (e.id, first + k as u64, positions.next().unwrap_or(0)))
                .collect();
            let position = ids.last().map_or(0, |x| x.2);
            writer.note(&a.stream, head, position).ids.extend(ids);
            results.push(AppendResult {
                stream: a.stream.clone(),
                first_revision: first,
                next_expected_revision: last,
                position,
                already_written: false,
            });
        }
        writer.prune(self.indexed_position());
        Ok((Some(appended), results))
    }

    /// The original result when every event id of `a` is already in its stream, in order;
    /// `None` when none is; an error when only some are, or in another order.
    fn repeat_of(
        &self,
        writer: &Writer,
        txn: &redb::ReadTransaction,
        a: &StreamAppend,
    ) -> Result<Option<AppendResult>> {
        let mut found = Vec::with_capacity(a.events.len());
        for e in &a.events {
            found.push(self.id_of(writer, txn, &a.stream, e.id)?);
        }
        if found.iter().all(Option::is_none) {
            return Ok(None);
        }
        let reused = |k: usize| EventStoreError::EventIdsReused {
            stream: a.stream.clone(),
            id: uuid::Uuid::from_u128(a.events[k].id),
        };
        let first = found[0]
            .ok_or_else(|| reused(found.iter().position(Option::is_some).unwrap_or(0)))?
            .0;
        for (k, f) in found.iter().enumerate() {
            if f.map(|(revision, _)| revision) != Some(first + k as u64) {
                return Err(reused(k));
            }
        }
        let (last, position) = found.last().copied().flatten().unwrap_or((first, 0));
        Ok(Some(AppendResult {
            stream: a.stream.clone(),
            first_revision: first,
            next_expected_revision: last,
            position,
            already_written: true,
        }))
    }

    fn id_of(
        &self,
        writer: &Writer,
        txn: &redb::ReadTransaction,
        stream: &str,
        id: u128,
    ) -> Result<Option<(u64, u64)>> {
        let pending = writer
            .pending
            .get(stream)
            .and_then(|p| p.ids.iter().find(|(i, _, _)| *i == id));
        match pending {
            Some((_, revision, position)) => Ok(Some((*revision, *position))),
            None => self.inner.index.id(txn, stream, id),
        }
    }

    fn head_of(&self, writer: &Writer, txn: &redb::ReadTransaction, stream: &str) -> Result<StreamHead> {
        match writer.pending.get(stream) {
            Some(p) => Ok(p.head.clone()),
            None => Ok(self.inner.index.head(txn, stream)?.unwrap_or_default()),
        }
    }

    /// Soft-deletes a stream: its events are no longer readable, and appending to it again
    /// continues its revisions. Returns the change's position.
    pub async fn delete(&self, stream: &str, expected: ExpectedState) -> Result<u64> {
        self.change(stream, expected, Names::User, |head| Change::Delete {
            truncate_before: next_revision(head),
        })
        .await
    }

    /// Deletes a stream for good: it cannot be read or written again, nor its name reused.
    pub async fn tombstone(&self, stream: &str, expected: ExpectedState) -> Result<u64> {
        self.change(stream, expected, Names::User, |_| Change::Tombstone)
            .await
    }

    /// Sets a stream's metadata (a JSON object); `$maxAge` (seconds), `$maxCount` and `$tb`
    /// (truncate before this revision) limit what reads return.
    pub async fn set_metadata(&self, stream: &str, metadata: serde_json::Value) -> Result<u64> {
        self.set_metadata_named(stream, metadata, Names::User).await
    }

    /// Soft-deletes one of the store's own streams (a removed group's checkpoints).
    pub(crate) async fn delete_system(&self, stream: &str) -> Result<u64> {
        self.change(stream, ExpectedState::Any, Names::System, |head| Change::Delete {
            truncate_before: next_revision(head),
        })
        .await
    }

    pub(crate) async fn set_metadata_named(
        &self,
        stream: &str,
        metadata: serde_json::Value,
        names: Names,
    ) -> Result<u64> {
        if !metadata.is_object() {
            return Err(EventStoreError::Invalid(
                "stream metadata is a JSON object".into(),
            ));
        }
        let bytes = serde_json::to_vec(&metadata).map_err(|e| EventStoreError::Invalid(e.to_string()))?;
        self.change(stream, ExpectedState::Any, names, move |_| {
            Change::Metadata(bytes.clone())
        })
        .await
    }

    async fn change(
        &self,
        stream: &str,
        expected: ExpectedState,
        names: Names,
        make: impl Fn(&StreamHead) -> Change,
    ) -> Result<u64> {
        validate_stream_name(stream, names)?;
        let (appended, position) = {
            let topic = self.ensure_topic()?;
            let mut writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let txn = self.inner.index.begin_read()?;
            let mut head = self.head_of(&writer, &txn, stream)?;
            check(stream, &head, expected)?;
            let change = make(&head);
            if matches!(change, Change::Delete { .. }) && head.last_revision.is_none() {
                return Err(EventStoreError::StreamNotFound(stream.to_string()));
            }
            let appended =
                self.inner
                    .broker
                    .append_atomic(&topic, 0, vec![codec::change_record(stream, &change)])?;
            let position = appended.positions.first().map_or(0, |p| p.offset as u64);
            apply_change(&mut head, &change);
            writer.note(stream, head, position);
            (appended, position)
        };
        appended.durable().await?;
        self.index_through(position).await?;
        Ok(position)
    }

    /// The store's topic, created on first use: one partition, kept forever.
    fn ensure_topic(&self) -> Result<String> {
        let topic = &self.inner.config.topic;
        if self.inner.broker.topic(topic).is_some() {
            return Ok(topic.clone());
        }
        let overrides = [
            ("retention.ms", "-1"),
            ("retention.bytes", "-1"),
            ("cleanup.policy", "delete"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        match self.inner.broker.create_topic(topic, 1, 1, overrides, false) {
            Ok(_) | Err(BrokerError::TopicExists(_)) => Ok(topic.clone()),
            Err(e) => Err(e.into()),
        }
    }
}
