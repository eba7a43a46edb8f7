//! The event store over HTTP: `/v1/streams`.
//!
//! - `POST /v1/streams/{stream}`: `{"expected": "any"|"no_stream"|"stream_exists"|N,
//!   "events": [{"id", "type", "data" | "data_base64", "metadata"}]}`; answers the revisions
//!   and position once durable, 409 with the actual revision on a conflict.
//! - `POST /v1/streams`: `{"appends": [{"stream", "expected", "events"}]}`, all or nothing.
//! - `GET /v1/streams/{stream}?from=&direction=&limit=`: a stream, `$ce-<category>`,
//!   `$et-<type>`, or `$all` (by position, with `stream_prefix` and `type_prefix`).
//! - `DELETE /v1/streams/{stream}?expected=&tombstone=`, `PUT /v1/streams/{stream}/metadata`.
//! - `GET /v1/streams`: stream names with their state.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use rivulet_eventstore::{
    AllFilter, ContentType, Direction, EventStore, EventStoreError, ExpectedState, NewEvent, RecordedEvent,
    StreamAppend, StreamSummary,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::produce::body_error;
use crate::AppState;

/// Events one read returns unless `limit` says otherwise.
const READ_DEFAULT: usize = 100;

impl From<EventStoreError> for ApiError {
    fn from(e: EventStoreError) -> ApiError {
        let (code, message) = (e.code(), e.to_string());
        let status = match e {
            EventStoreError::Broker(b) => return ApiError::from(b),
            EventStoreError::WrongExpectedState { .. } | EventStoreError::EventIdsReused { .. } => {
                StatusCode::CONFLICT
            }
            EventStoreError::StreamDeleted(_) => StatusCode::GONE,
            EventStoreError::StreamNotFound(_) | EventStoreError::GroupNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            EventStoreError::GroupExists { .. } | EventStoreError::GroupFull { .. } => StatusCode::CONFLICT,
            EventStoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            EventStoreError::Index(_) | EventStoreError::Foreign { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, code, message)
    }
}

/// An append's failure: the error JSON, plus the stream and its actual revision on a
/// conflict, so a client can reload and retry without another read.
fn append_failure(e: EventStoreError) -> Response {
    let conflict = match &e {
        EventStoreError::WrongExpectedState { stream, actual, .. } => Some((stream.clone(), *actual)),
        _ => None,
    };
    let api = ApiError::from(e);
    let mut body = json!({"error_code": api.error_code, "message": api.message});
    if let Some((stream, actual)) = conflict {
        body["stream"] = json!(stream);
        body["actual_revision"] = json!(actual);
    }
    (api.status, Json(body)).into_response()
}

pub(crate) fn store(state: &AppState) -> Result<&EventStore, ApiError> {
    state.config.event_store.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            40410,
            "the event store is not enabled on this server",
        )
    })
}

/// An event in a request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonNewEvent {
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    data: Option<Value>,
    data_base64: Option<String>,
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendBody {
    expected: Option<Value>,
    events: Vec<JsonNewEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiAppendBody {
    appends: Vec<StreamAppendBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamAppendBody {
    stream: String,
    expected: Option<Value>,
    events: Vec<JsonNewEvent>,
}

/// `"any"`, `"no_stream"`, `"stream_exists"` or a revision; absent is `any`.
pub(crate) fn expected_state(v: Option<&Value>) -> Result<ExpectedState, ApiError> {
    match v {
        None => Ok(ExpectedState::Any),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(ExpectedState::Revision)
            .ok_or_else(|| ApiError::bad_request("expected: a revision is a whole number from 0")),
        Some(Value::String(s)) => parse_expected(s),
        Some(_) => Err(ApiError::bad_request(
            "expected: \"any\", \"no_stream\", \"stream_exists\" or a revision",
        )),
    }
}

fn parse_expected(s: &str) -> Result<ExpectedState, ApiError> {
    match s {
        "any" => Ok(ExpectedState::Any),
        "no_stream" => Ok(ExpectedState::NoStream),
        "stream_exists" => Ok(ExpectedState::StreamExists),
        n => n.parse().map(ExpectedState::Revision).map_err(|_| {
            ApiError::bad_request(format!(
                "expected: {n:?} is not \"any\", \"no_stream\", \"stream_exists\" or a revision"
            ))
        }),
    }
}

fn new_event(e: JsonNewEvent) -> Result<NewEvent, ApiError> {
    let id = match e.id {
        Some(s) => uuid::Uuid::parse_str(&s)
            .map_err(|_| ApiError::bad_request(format!("event id {s:?} is not a UUID")))?
            .as_u128(),
        None => uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .as_u128(),
    };
    let (content_type, data) = match (e.data, e.data_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "an event has data or data_base64, not both",
            ))
        }
        (Some(v), None) => (ContentType::Json, serde_json::to_vec(&v).unwrap_or_default()),
        (None, Some(b)) => (
            ContentType::Binary,
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| ApiError::bad_request("data_base64 is not base64"))?,
        ),
        (None, None) => (ContentType::Json, b"null".to_vec()),
    };
    let metadata = e
        .metadata
        .map_or_else(Vec::new, |m| serde_json::to_vec(&m).unwrap_or_default());
    Ok(NewEvent {
        id,
        event_type: e.event_type,
        content_type,
        data,
        metadata,
    })
}

fn stream_append(
    stream: String,
    expected: Option<&Value>,
    events: Vec<JsonNewEvent>,
) -> Result<StreamAppend, ApiError> {
    Ok(StreamAppend {
        stream,
        expected: expected_state(expected)?,
        events: events.into_iter().map(new_event).collect::<Result<_, _>>()?,
    })
}

fn parse<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(body_error)?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

fn result_json(r: &rivulet_eventstore::AppendResult) -> Value {
    json!({
        "stream": r.stream,
        "first_revision": r.first_revision,
        "next_expected_revision": r.next_expected_revision,
        "position": r.position,
        "already_written": r.already_written,
    })
}

/// `POST /v1/streams/{stream}`.
pub(crate) async fn append(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let store = store(&state)?;
    let body: AppendBody = parse(body)?;
    let append = stream_append(stream, body.expected.as_ref(), body.events)?;
    Ok(match store.append(vec![append]).await {
        Ok(results) => Json(results.first().map(result_json).unwrap_or(Value::Null)).into_response(),
        Err(e) => append_failure(e),
    })
}

/// `POST /v1/streams`: several streams at once.
pub(crate) async fn append_many(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let store = store(&state)?;
    let body: MultiAppendBody = parse(body)?;
    let appends = body
        .appends
        .into_iter()
        .map(|a| stream_append(a.stream, a.expected.as_ref(), a.events))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match store.append(appends).await {
        Ok(results) => {
            Json(json!({"results": results.iter().map(result_json).collect::<Vec<_>>()})).into_response()
        }
        Err(e) => append_failure(e),
    })
}

/// An event as JSON: `data` as JSON when it is, else `data_base64`.
pub(crate) fn event_json(e: &RecordedEvent) -> Value {
    let mut v = json!({
        "stream": e.stream,
        "revision": e.revision,
        "position": e.position,
        "id": uuid::Uuid::from_u128(e.id).to_string(),
        "type": e.event_type,
        "content_type": e.content_type.as_str(),
        "created_ms": e.created_ms,
    });
    let as_json = (e.content_type == ContentType::Json)
        .then(|| serde_json::from_slice::<Value>(&e.data).ok())
        .flatten();
    match as_json {
        Some(data) => v["data"] = data,
        None => v["data_base64"] = base64::engine::general_purpose::STANDARD.encode(&e.data).into(),
    }
    if !e.metadata.is_empty() {
        match serde_json::from_slice::<Value>(&e.metadata) {
            Ok(m) => v["metadata"] = m,
            Err(_) => {
                v["metadata_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(&e.metadata)
                    .into()
            }
        }
    }
    v
}

/// Query of a read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadQuery {
    /// A revision (a position for `$all`); `start` or `end`. Default: the start forwards,
    /// the end backwards.
    from: Option<String>,
    /// `forwards` (default) or `backwards`.
    direction: Option<String>,
    limit: Option<usize>,
    /// `$all` only: streams whose names start with this.
    stream_prefix: Option<String>,
    /// `$all` only: event types that start with this.
    type_prefix: Option<String>,
}

fn direction(d: Option<&str>) -> Result<Direction, ApiError> {
    match d {
        None | Some("forwards") => Ok(Direction::Forwards),
        Some("backwards") => Ok(Direction::Backwards),
        Some(x) => Err(ApiError::bad_request(format!(
            "direction {x:?}: forwards or backwards"
        ))),
    }
}

pub(crate) fn from_point(from: Option<&str>) -> Result<Option<u64>, ApiError> {
    match from {
        None | Some("start") | Some("end") => Ok(None),
        Some(n) => n
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("from {n:?}: start, end or a number"))),
    }
}

/// `GET /v1/streams/{stream}`.
pub(crate) async fn read(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let Query(q) = query?;
    let direction = direction(q.direction.as_deref())?;
    let mut from = from_point(q.from.as_deref())?;
    if q.from.as_deref() == Some("start") && direction == Direction::Backwards {
        from = Some(0);
    }
    let limit = q.limit.unwrap_or(READ_DEFAULT);
    if stream == "$all" {
        let filter = AllFilter {
            stream_prefix: q.stream_prefix,
            event_type_prefix: q.type_prefix,
        };
        let slice = store.read_all(from, direction, limit, &filter)?;
        return Ok(Json(json!({
            "events": slice.events.iter().map(event_json).collect::<Vec<_>>(),
            "next_position": slice.next_position,
            "end": slice.end,
        })));
    }
    if q.stream_prefix.is_some() || q.type_prefix.is_some() {
        return Err(ApiError::bad_request(
            "stream_prefix and type_prefix filter $all only",
        ));
    }
    let slice = store.read_stream(&stream, from, direction, limit)?;
    Ok(Json(json!({
        "stream": stream,
        "events": slice.events.iter().map(event_json).collect::<Vec<_>>(),
        "next_revision": slice.next,
        "last_revision": slice.last_revision,
    })))
}

/// Query of a delete.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    expected: Option<String>,
    /// True: delete for good; the name can never be used again.
    tombstone: Option<bool>,
}

/// `DELETE /v1/streams/{stream}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let Query(q) = query?;
    let expected = q
        .expected
        .as_deref()
        .map_or(Ok(ExpectedState::Any), parse_expected)?;
    let tombstone = q.tombstone.unwrap_or(false);
    let position = if tombstone {
        store.tombstone(&stream, expected).await?
    } else {
        store.delete(&stream, expected).await?
    };
    Ok(Json(
        json!({"stream": stream, "tombstoned": tombstone, "position": position}),
    ))
}

/// `POST /v1/scavenge`: removes from the log the events no reader sees any more (deleted
/// and tombstoned streams, events below `$maxCount`, `$maxAge` and `$tb`).
pub(crate) async fn scavenge(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?.clone();
    let started = std::time::Instant::now();
    let removed = tokio::task::spawn_blocking(move || store.scavenge())
        .await
        .map_err(|e| ApiError::internal(format!("the scavenge stopped: {e}")))??;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(Json(
        json!({"removed_events": removed, "duration_ms": duration_ms}),
    ))
}

/// `PUT /v1/streams/{stream}/metadata`.
pub(crate) async fn set_metadata(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let metadata: Value = parse(body)?;
    let position = store.set_metadata(&stream, metadata).await?;
    Ok(Json(json!({"stream": stream, "position": position})))
}

/// Query of the stream list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

fn summary_json(s: &StreamSummary) -> Value {
    let state = if s.head.tombstoned {
        "tombstoned"
    } else if s.head.deleted {
        "deleted"
    } else {
        "live"
    };
    json!({"name": s.name, "last_revision": s.head.last_revision, "state": state})
}

/// `GET /v1/streams`.
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(1000);
    let streams = store.list_streams(q.prefix.as_deref().unwrap_or(""), q.after.as_deref(), limit)?;
    Ok(Json(json!({
        "streams": streams.iter().map(summary_json).collect::<Vec<_>>(),
        "indexed_position": store.indexed_position(),
        "topic": store.topic(),
    })))
}
