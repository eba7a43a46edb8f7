//! Between the KurrentDB wire messages and the event store's values.

use std::collections::HashMap;

use rivulet_eventstore::{ContentType, ExpectedState, NewEvent, RecordedEvent};
use tonic::Status;

use crate::errors::invalid;
use crate::pb::event_store::client::streams::read_resp::{self, read_event, ReadEvent};
use crate::pb::event_store::client::streams::ReadResp;
use crate::pb::event_store::client::{uuid as id_form, StreamIdentifier, Uuid};

/// 100-nanosecond ticks per millisecond: `created` is in ticks since the Unix epoch.
const TICKS_PER_MS: i64 = 10_000;

/// An id in either of the clients' forms.
pub(crate) fn uuid_of(u: Option<&Uuid>) -> Result<u128, Status> {
    match u.and_then(|u| u.value.as_ref()) {
        Some(id_form::Value::String(s)) => ::uuid::Uuid::parse_str(s)
            .map(|u| u.as_u128())
            .map_err(|_| invalid(format!("{s:?} is not a UUID"))),
        Some(id_form::Value::Structured(s)) => {
            Ok((u128::from(s.most_significant_bits as u64) << 64)
                | u128::from(s.least_significant_bits as u64))
        }
        None => Err(invalid("an id is missing")),
    }
}

/// An id in the form the client asked for.
pub(crate) fn uuid_to(id: u128, string: bool) -> Uuid {
    let value = if string {
        id_form::Value::String(::uuid::Uuid::from_u128(id).to_string())
    } else {
        id_form::Value::Structured(id_form::Structured {
            most_significant_bits: (id >> 64) as u64 as i64,
            least_significant_bits: id as u64 as i64,
        })
    };
    Uuid { value: Some(value) }
}

/// A random id (subscription and node ids).
pub(crate) fn random_id() -> u128 {
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    u128::from_le_bytes(bytes)
}

/// A stream name from its identifier.
pub(crate) fn stream_name(id: Option<&StreamIdentifier>) -> Result<String, Status> {
    let id = id.ok_or_else(|| invalid("a stream identifier is missing"))?;
    String::from_utf8(id.stream_name.clone()).map_err(|_| invalid("a stream name is not UTF-8"))
}

/// The identifier of a stream name.
pub(crate) fn stream_id(name: &str) -> StreamIdentifier {
    StreamIdentifier {
        stream_name: name.as_bytes().to_vec(),
    }
}

/// An event a client proposes: its metadata map must name `type` and `content-type`.
pub(crate) fn new_event(
    id: Option<&Uuid>,
    metadata: &HashMap<String, String>,
    custom_metadata: Vec<u8>,
    data: Vec<u8>,
) -> Result<NewEvent, Status> {
    let missing = |key: &str| {
        crate::errors::with_trailers(
            tonic::Code::InvalidArgument,
            format!("Required Metadata Property '{key}' is missing"),
            &[
                ("exception", "missing-required-metadata-property".into()),
                ("required-metadata-properties", "type,content-type".into()),
            ],
        )
    };
    let event_type = metadata.get("type").ok_or_else(|| missing("type"))?;
    let content_type = metadata
        .get("content-type")
        .ok_or_else(|| missing("content-type"))?;
    Ok(NewEvent {
        id: uuid_of(id)?,
        event_type: event_type.clone(),
        content_type: ContentType::from_mime(content_type),
        data,
        metadata: custom_metadata,
    })
}

/// An event as a read answers it.
pub(crate) fn recorded(e: RecordedEvent, string_ids: bool) -> read_event::RecordedEvent {
    let metadata = HashMap::from([
        ("type".to_string(), e.event_type.clone()),
        ("content-type".to_string(), e.content_type.as_str().to_string()),
        (
            "created".to_string(),
            e.created_ms.saturating_mul(TICKS_PER_MS).to_string(),
        ),
    ]);
    read_event::RecordedEvent {
        id: Some(uuid_to(e.id, string_ids)),
        stream_identifier: Some(stream_id(&e.stream)),
        stream_revision: e.revision,
        prepare_position: e.position,
        commit_position: e.position,
        metadata,
        custom_metadata: e.metadata,
        data: e.data,
    }
}

/// A read response carrying one event.
pub(crate) fn event_resp(e: RecordedEvent, string_ids: bool) -> ReadResp {
    let position = e.position;
    ReadResp {
        content: Some(read_resp::Content::Event(ReadEvent {
            event: Some(recorded(e, string_ids)),
            link: None,
            position: Some(read_event::Position::CommitPosition(position)),
        })),
    }
}

/// KurrentDB's number for an expected state in error trailers and messages.
pub(crate) fn expected_number(e: ExpectedState) -> i64 {
    match e {
        ExpectedState::Any => -2,
        ExpectedState::NoStream => -1,
        ExpectedState::StreamExists => -4,
        ExpectedState::Revision(r) => r as i64,
    }
}

/// Milliseconds since the epoch as a protobuf timestamp.
pub(crate) fn now_timestamp() -> prost_types::Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: now.as_secs() as i64,
        nanos: now.subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_id_forms_name_the_same_event() {
        for id in [0u128, 1, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210] {
            assert_eq!(uuid_of(Some(&uuid_to(id, true))).expect("string"), id);
            assert_eq!(uuid_of(Some(&uuid_to(id, false))).expect("structured"), id);
        }
        assert!(uuid_of(None).is_err());
        let bad = Uuid {
            value: Some(id_form::Value::String("nope".into())),
        };
        assert_eq!(
            uuid_of(Some(&bad)).expect_err("bad").code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn created_is_in_ticks_since_the_epoch() {
        let e = RecordedEvent {
            stream: "s".into(),
            revision: 3,
            position: 9,
            id: 5,
            event_type: "T".into(),
            content_type: ContentType::Json,
            data: b"{}".to_vec(),
            metadata: Vec::new(),
            created_ms: 1_704_067_200_000,
        };
        let r = recorded(e, true);
        assert_eq!(r.metadata["created"], "17040672000000000");
        assert_eq!(r.metadata["content-type"], "application/json");
        assert_eq!(
            (r.stream_revision, r.commit_position, r.prepare_position),
            (3, 9, 9)
        );
    }

    #[test]
    fn events_need_a_type_and_a_content_type() {
        let id = uuid_to(7, true);
        let only_type = HashMap::from([("type".to_string(), "T".to_string())]);
        let err = new_event(Some(&id), &only_type, Vec::new(), Vec::new()).expect_err("no content type");
        assert_eq!(
            err.metadata().get("exception").and_then(|v| v.to_str().ok()),
            Some("missing-required-metadata-property")
        );
        let both = HashMap::from([
            ("type".to_string(), "T".to_string()),
            ("content-type".to_string(), "application/octet-stream".to_string()),
        ]);
        let e = new_event(Some(&id), &both, b"m".to_vec(), b"d".to_vec()).expect("event");
        assert_eq!((e.id, e.content_type), (7, ContentType::Binary));
    }
}
