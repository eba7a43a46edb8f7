//! How events travel in the log (Kafka records any Kafka client can read) and how the index
//! stores stream heads and events.
//!
//! In the log an event is a record whose key is the stream name and whose value is the
//! event's data; headers carry the rest: `es-id` (the UUID), `es-type`, `es-revision`
//! (decimal), `es-content-type` and, when present, `es-metadata`. Stream changes are records
//! with an `es-op` header: `delete` (with `es-truncate-before`), `tombstone`, `metadata`
//! (the value is the metadata).

use rivulet_broker::{NewRecord, StoredRecord};

use crate::error::{EventStoreError, Result};
use crate::model::{ContentType, NewEvent, RecordedEvent, StreamHead};

const H_ID: &str = "es-id";
const H_TYPE: &str = "es-type";
const H_REVISION: &str = "es-revision";
const H_CONTENT_TYPE: &str = "es-content-type";
const H_METADATA: &str = "es-metadata";
const H_OP: &str = "es-op";
const H_TRUNCATE_BEFORE: &str = "es-truncate-before";

/// A record of the event store's log, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogEntry {
    /// An event appended to a stream.
    Event(RecordedEvent),
    /// A change to a stream.
    Change { stream: String, change: Change },
}

/// A change to a stream other than an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A soft delete: revisions below `truncate_before` are gone; the stream may be written again.
    Delete { truncate_before: u64 },
    /// A hard delete.
    Tombstone,
    /// New stream metadata.
    Metadata(Vec<u8>),
}

/// The log record of an event.
pub(crate) fn event_record(stream: &str, revision: u64, event: &NewEvent) -> NewRecord {
    let mut headers = vec![
        (
            H_ID.to_string(),
            Some(uuid::Uuid::from_u128(event.id).to_string().into_bytes()),
        ),
        (H_TYPE.to_string(), Some(event.event_type.clone().into_bytes())),
        (H_REVISION.to_string(), Some(revision.to_string().into_bytes())),
        (
            H_CONTENT_TYPE.to_string(),
            Some(event.content_type.as_str().as_bytes().to_vec()),
        ),
    ];
    if !event.metadata.is_empty() {
        headers.push((H_METADATA.to_string(), Some(event.metadata.clone())));
    }
    NewRecord {
        key: Some(stream.as_bytes().to_vec()),
        value: Some(event.data.clone()),
        headers,
        partition: Some(0),
        timestamp_ms: None,
    }
}

/// The log record of a stream change.
pub(crate) fn change_record(stream: &str, change: &Change) -> NewRecord {
    let mut headers = Vec::with_capacity(2);
    let (op, value) = match change {
        Change::Delete { truncate_before } => {
            headers.push((
                H_TRUNCATE_BEFORE.to_string(),
                Some(truncate_before.to_string().into_bytes()),
            ));
            ("delete", None)
        }
        Change::Tombstone => ("tombstone", None),
        Change::Metadata(metadata) => ("metadata", Some(metadata.clone())),
    };
    headers.insert(0, (H_OP.to_string(), Some(op.as_bytes().to_vec())));
    NewRecord {
        key: Some(stream.as_bytes().to_vec()),
        value,
        headers,
        partition: Some(0),
        timestamp_ms: None,
    }
}

fn header<'a>(record: &'a StoredRecord, name: &str) -> Option<&'a [u8]> {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

fn text(record: &StoredRecord, name: &str) -> std::result::Result<String, String> {
    let bytes = header(record, name).ok_or_else(|| format!("no {name} header"))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{name} is not UTF-8"))
}

fn number(record: &StoredRecord, name: &str) -> std::result::Result<u64, String> {
    text(record, name)?
        .parse()
        .map_err(|_| format!("{name} is not a number"))
}

/// Decodes a record of the log; a record the store did not write is an error.
pub(crate) fn decode_record(record: &StoredRecord) -> Result<LogEntry> {
    let position = record.offset as u64;
    decode_inner(record).map_err(|reason| EventStoreError::Foreign { position, reason })
}

fn decode_inner(record: &StoredRecord) -> std::result::Result<LogEntry, String> {
    let key = record.key.as_deref().ok_or("no key (stream name)")?;
    let stream = String::from_utf8(key.to_vec()).map_err(|_| "the key is not UTF-8")?;
    if let Some(op) = header(record, H_OP) {
        let change = match op {
            b"delete" => Change::Delete {
                truncate_before: number(record, H_TRUNCATE_BEFORE)?,
            },
            b"tombstone" => Change::Tombstone,
            b"metadata" => Change::Metadata(record.value.as_deref().unwrap_or_default().to_vec()),
            _ => return Err(format!("unknown {H_OP}")),
        };
        return Ok(LogEntry::Change { stream, change });
    }
    let id = uuid::Uuid::parse_str(&text(record, H_ID)?).map_err(|_| format!("{H_ID} is not a UUID"))?;
    Ok(LogEntry::Event(RecordedEvent {
        stream,
        revision: number(record, H_REVISION)?,
        position: record.offset as u64,
        id: id.as_u128(),
        event_type: text(record, H_TYPE)?,
        content_type: ContentType::from_mime(&text(record, H_CONTENT_TYPE)?),
        data: record.value.as_deref().unwrap_or_default().to_vec(),
        metadata: header(record, H_METADATA).unwrap_or_default().to_vec(),
        created_ms: record.timestamp_ms,
    }))
}

const HAS_LAST: u8 = 1;
const DELETED: u8 = 2;
const TOMBSTONED: u8 = 4;
const HEAD_FIXED_BYTES: usize = 17;

/// A stream head as the index stores it.
pub(crate) fn encode_head(head: &StreamHead) -> Vec<u8> {
    let mut flags = 0;
    if head.last_revision.is_some() {
        flags |= HAS_LAST;
    }
    if head.deleted {
        flags |= DELETED;
    }
    if head.tombstoned {
        flags |= TOMBSTONED;
    }
    let mut out = Vec::with_capacity(HEAD_FIXED_BYTES + head.metadata.len());
    out.push(flags);
    out.extend_from_slice(&head.last_revision.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&head.truncate_before.to_le_bytes());
    out.extend_from_slice(&head.metadata);
    out
}

/// A stored stream head.
pub(crate) fn decode_head(bytes: &[u8]) -> Result<StreamHead> {
    if bytes.len() < HEAD_FIXED_BYTES {
        return Err(EventStoreError::Index(format!(
            "a stream head of {} bytes",
            bytes.len()
        )));
    }
    let flags = bytes[0];
    let last = u64_at(bytes, 1);
    Ok(StreamHead {
        last_revision: (flags & HAS_LAST != 0).then_some(last),
        truncate_before: u64_at(bytes, 9),
        deleted: flags & DELETED != 0,
        tombstoned: flags & TOMBSTONED != 0,
        metadata: bytes[HEAD_FIXED_BYTES..].to_vec(),
    })
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stored(record: NewRecord, offset: i64) -> StoredRecord {
        StoredRecord {
            offset,
            timestamp_ms: 7,
            key: record.key.map(Into::into),
            value: record.value.map(Into::into),
            headers: record
                .headers
                .into_iter()
                .map(|(k, v)| (k, v.map(Into::into)))
                .collect(),
        }
    }

    proptest! {
        #[test]
        fn events_survive_the_log(
            stream in "[a-z$-]{1,20}", revision in any::<u64>(), id in any::<u128>(),
            event_type in "[A-Za-z]{0,30}", json in any::<bool>(),
            data in proptest::collection::vec(any::<u8>(), 0..200),
            metadata in proptest::collection::vec(any::<u8>(), 0..50),
            offset in 0i64..i64::MAX,
        ) {
            let content_type = if json { ContentType::Json } else { ContentType::Binary };
            let new = NewEvent { id, event_type: event_type.clone(), content_type, data: data.clone(), metadata: metadata.clone() };
            let decoded = decode_record(&stored(event_record(&stream, revision, &new), offset)).expect("decodes");
            let LogEntry::Event(e) = decoded else { panic!("not an event") };
            prop_assert_eq!(&e, &RecordedEvent { stream: stream.clone(), revision, position: offset as u64, id,
                event_type, content_type, data, metadata, created_ms: 7 });
        }

        #[test]
        fn heads_survive_the_index(last in proptest::option::of(any::<u64>()), tb in any::<u64>(),
            deleted in any::<bool>(), tombstoned in any::<bool>(), metadata in proptest::collection::vec(any::<u8>(), 0..40)) {
            let head = StreamHead { last_revision: last, truncate_before: tb, deleted, tombstoned, metadata };
            prop_assert_eq!(decode_head(&encode_head(&head)).expect("decodes"), head);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_head(&bytes);
        }
    }

    #[test]
    fn stream_changes_survive_the_log() {
        for change in [
            Change::Delete { truncate_before: 9 },
            Change::Tombstone,
            Change::Metadata(b"{\"$maxCount\":3}".to_vec()),
        ] {
            let entry = LogEntry::Change {
                stream: "a".into(),
                change: change.clone(),
            };
            assert_eq!(
                decode_record(&stored(change_record("a", &change), 3)).expect("decodes"),
                entry
            );
        }
    }

    #[test]
    fn foreign_records_are_refused() {
        let plain = NewRecord {
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            ..NewRecord::default()
        };
        let err = decode_record(&stored(plain, 5)).expect_err("foreign");
        assert!(
            matches!(err, EventStoreError::Foreign { position: 5, .. }),
            "{err}"
        );
    }
}
