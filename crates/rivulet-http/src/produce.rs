//! `POST /v1/topics/{topic}/records`: JSON records appended through the broker (which
//! partitions, batches and creates the topic under its auto-creation setting).

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use rivulet_broker::{BrokerError, Create};
use serde_json::{json, Value};

use crate::authz::Caller;
use crate::error::ApiError;
use crate::records::ProduceRecord;
use crate::AppState;

/// Maps a body extraction failure to a JSON error.
pub(crate) fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            41301,
            "request body is larger than the gateway accepts; send fewer records per request",
        )
    } else {
        ApiError::bad_request(format!("could not read the request body: {rejection}"))
    }
}

pub(crate) async fn produce(
    State(state): State<AppState>,
    Path(topic_name): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let items: Vec<ProduceRecord> = match first {
        Some(b'[') => serde_json::from_slice(&body),
        Some(b'{') => serde_json::from_slice(&body).map(|r| vec![r]),
        _ => {
            return Err(ApiError::bad_request(
                "send a record object or an array of records",
            ))
        }
    }
    .map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_request(format!("request body is not valid JSON: {e}"))
        } else {
            ApiError::bad_request(format!("invalid record: {e}"))
        }
    })?;
    if items.is_empty() {
        return Err(ApiError::bad_request("no records to produce"));
    }
    let max = state.config.records_per_request_max;
    if items.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            41303,
            format!("{} records in one request; at most {max}", items.len()),
        ));
    }
    let mut records = Vec::with_capacity(items.len());
    for (i, r) in items.into_iter().enumerate() {
        records.push(
            r.encode()
                .map_err(|e| ApiError::bad_request(format!("record {i}: {}", e.message)))?,
        );
    }
    // A missing topic is created only for a caller that may create it.
    let create =
        if state.broker.topic(&topic_name).is_some() || caller.may_create_topic(&state.broker, &topic_name) {
            Create::IfAllowed
        } else {
            Create::Never
        };
    let appended = match state.broker.append_records(&topic_name, records, create) {
        Ok(a) => a,
        Err(BrokerError::UnknownTopic(_)) if !state.broker.config().auto_create_topics => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                40401,
                format!(
                    "topic {topic_name:?} does not exist and automatic topic creation is off \
                     (auto_create_topics = false); create it with POST /v1/topics"
                ),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    // Answered only once every record is durable (acks=all).
    let positions = appended.durable().await?;
    let offsets: Vec<Value> = positions
        .iter()
        .map(|p| json!({"partition": p.partition, "offset": p.offset, "timestamp": p.timestamp_ms}))
        .collect();
    Ok(Json(json!({"topic": topic_name, "offsets": offsets})))
}
