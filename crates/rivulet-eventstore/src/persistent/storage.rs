//! Where groups keep their state: in the store's own streams, on the same log and with the
//! same durability as events. `$persistentSubscriptionConfig` holds every definition (the
//! latest event is the whole set), `$persistentsubscription-<source>::<group>-checkpoint`
//! where a group resumes, and `...-parked` the events it parked, as links (`<revision>@<stream>`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::model::GroupDefinition;
use crate::append::Names;
use crate::error::{EventStoreError, Result};
use crate::model::{ContentType, Direction, ExpectedState, NewEvent, RecordedEvent, StreamAppend};
use crate::EventStore;

/// The stream of group definitions.
pub(crate) const CONFIG_STREAM: &str = "$persistentSubscriptionConfig";
const CONFIG_TYPE: &str = "$PersistentConfig";
const CHECKPOINT_TYPE: &str = "$SubscriptionCheckpoint";
/// The type of a link to another stream's event.
pub(crate) const LINK_TYPE: &str = "$>";
/// Longest text after a group's id in its own stream names.
pub(crate) const SUFFIX_BYTES_MAX: usize = "$persistentsubscription-".len() + "-checkpoint".len();

/// The stream of a group's checkpoints.
pub(crate) fn checkpoint_stream(group_id: &str) -> String {
    format!("$persistentsubscription-{group_id}-checkpoint")
}

/// The stream of a group's parked events.
pub fn parked_stream(group_id: &str) -> String {
    format!("$persistentsubscription-{group_id}-parked")
}

/// An event id no other event of the store's own streams has: the time in nanoseconds and a
/// counter.
fn fresh_id() -> u128 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos << 20) | u128::from(COUNTER.fetch_add(1, Ordering::Relaxed) & 0xF_FFFF)
}

fn json_event(event_type: &str, data: Vec<u8>, metadata: Vec<u8>) -> NewEvent {
    NewEvent {
        id: fresh_id(),
        event_type: event_type.to_string(),
        content_type: ContentType::Json,
        data,
        metadata,
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| EventStoreError::Index(format!("encoding group state: {e}")))
}

async fn write(store: &EventStore, stream: String, events: Vec<NewEvent>) -> Result<()> {
    store
        .append_system(vec![StreamAppend {
            stream,
            expected: ExpectedState::Any,
            events,
        }])
        .await
        .map(|_| ())
}

/// The last event of a stream, `None` when it has none.
fn last_event(store: &EventStore, stream: &str) -> Result<Option<RecordedEvent>> {
    match store.read_stream(stream, None, Direction::Backwards, 1) {
        Ok(slice) => Ok(slice.events.into_iter().next()),
        Err(EventStoreError::StreamNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Serialize, Deserialize)]
struct Config {
    groups: Vec<GroupDefinition>,
}

/// Every group defined.
pub(crate) fn load_config(store: &EventStore) -> Result<Vec<GroupDefinition>> {
    let Some(event) = last_event(store, CONFIG_STREAM)? else {
        return Ok(Vec::new());
    };
    let config: Config = serde_json::from_slice(&event.data).map_err(|e| {
        EventStoreError::Index(format!(
            "{CONFIG_STREAM} revision {}: unreadable group definitions: {e}",
            event.revision
        ))
    })?;
    Ok(config.groups)
}

/// Writes the whole set of groups.
pub(crate) async fn save_config(store: &EventStore, groups: Vec<GroupDefinition>) -> Result<()> {
    let data = encode(&Config { groups })?;
    write(
        store,
        CONFIG_STREAM.to_string(),
        vec![json_event(CONFIG_TYPE, data, Vec::new())],
    )
    .await
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    /// The revision or position the group resumes at.
    next: u64,
}

/// Where a group resumes, `None` before its first checkpoint.
pub(crate) fn load_checkpoint(store: &EventStore, group_id: &str) -> Result<Option<u64>> {
    let stream = checkpoint_stream(group_id);
    let Some(event) = last_event(store, &stream)? else {
        return Ok(None);
    };
    let checkpoint: Checkpoint = serde_json::from_slice(&event.data)
        .map_err(|e| EventStoreError::Index(format!("{stream}: unreadable checkpoint: {e}")))?;
    Ok(Some(checkpoint.next))
}

/// Records where a group resumes.
pub(crate) async fn save_checkpoint(store: &EventStore, group_id: &str, next: u64) -> Result<()> {
    let data = encode(&Checkpoint { next })?;
    write(
        store,
        checkpoint_stream(group_id),
        vec![json_event(CHECKPOINT_TYPE, data, Vec::new())],
    )
    .await
}

/// Forgets a removed group's checkpoints and parked events (a group created again with the
/// same name starts afresh).
pub(crate) async fn forget(store: &EventStore, group_id: &str) -> Result<()> {
    for stream in [checkpoint_stream(group_id), parked_stream(group_id)] {
        match store.delete_system(&stream).await {
            Ok(_) | Err(EventStoreError::StreamNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct ParkedMeta {
    /// The parked event's log position.
    position: u64,
    /// Why it was parked.
    reason: String,
}

/// Writes events to the parked stream, in one append.
pub(crate) async fn park(
    store: &EventStore,
    group_id: &str,
    events: &[(Arc<RecordedEvent>, String)],
) -> Result<()> {
    let mut links = Vec::with_capacity(events.len());
    for (e, reason) in events {
        let meta = encode(&ParkedMeta {
            position: e.position,
            reason: reason.clone(),
        })?;
        let data = format!("{}@{}", e.revision, e.stream).into_bytes();
        links.push(NewEvent {
            content_type: ContentType::Binary,
            ..json_event(LINK_TYPE, data, meta)
        });
    }
    write(store, parked_stream(group_id), links).await
}

/// Events parked and not yet replayed.
pub(crate) fn parked_count(store: &EventStore, group_id: &str) -> Result<u64> {
    Ok(store
        .readable_span(&parked_stream(group_id))?
        .map_or(0, |(floor, last)| (last + 1).saturating_sub(floor)))
}

/// Up to `max` parked events not yet replayed: (revision in the parked stream, the event).
/// A link whose event is gone (deleted, truncated) is returned as `None`.
pub(crate) fn read_parked(
    store: &EventStore,
    group_id: &str,
    max: usize,
) -> Result<Vec<(u64, Option<RecordedEvent>)>> {
    let slice = match store.read_stream(&parked_stream(group_id), None, Direction::Forwards, max) {
        Ok(slice) => slice,
        Err(EventStoreError::StreamNotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(slice.events.len());
    for link in slice.events {
        out.push((link.revision, resolve(store, &link)?));
    }
    Ok(out)
}

fn resolve(store: &EventStore, link: &RecordedEvent) -> Result<Option<RecordedEvent>> {
    let text = String::from_utf8_lossy(&link.data);
    let Some((revision, stream)) = text.split_once('@') else {
        return Ok(None);
    };
    let Ok(revision) = revision.parse::<u64>() else {
        return Ok(None);
    };
    match store.read_stream(stream, Some(revision), Direction::Forwards, 1) {
        Ok(slice) => Ok(slice.events.into_iter().find(|e| e.revision == revision)),
        Err(EventStoreError::StreamNotFound(_) | EventStoreError::StreamDeleted(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Hides parked events below `before` (replayed and finished).
pub(crate) async fn truncate_parked(store: &EventStore, group_id: &str, before: u64) -> Result<()> {
    let metadata = serde_json::json!({ "$tb": before });
    store
        .set_metadata_named(&parked_stream(group_id), metadata, Names::System)
        .await
        .map(|_| ())
}
