//! Growing topics, deleting records before an offset, deleting a group's offsets of a
//! topic, and the producers a partition remembers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::admin::topic_detail;
use crate::error::ApiError;
use crate::produce::body_error;
use crate::AppState;

#[derive(Debug, Deserialize)]
struct Grow {
    count: i32,
}

#[derive(Debug, Deserialize)]
struct DeleteBefore {
    /// Records before this offset are deleted; -1: every record (the high watermark).
    before_offset: i64,
}

/// `POST /v1/topics/{topic}/partitions` `{"count": N}`: grows the topic to N partitions.
pub(crate) async fn grow(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let req: Grow = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"count\": N}}: {e}")))?;
    let broker = state.broker.clone();
    let name = topic.clone();
    tokio::task::spawn_blocking(move || broker.create_partitions(&name, req.count, false))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let t = state
        .broker
        .topic(&topic)
        .ok_or_else(|| ApiError::unknown_topic(&topic))?;
    Ok(Json(topic_detail(&t)))
}

/// `POST /v1/topics/{topic}/partitions/{partition}/delete-records`
/// `{"before_offset": N}`: deletes the partition's records before N.
pub(crate) async fn delete_records(
    State(state): State<AppState>,
    Path((topic, partition)): Path<(String, i32)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let req: DeleteBefore = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"before_offset\": N}}: {e}")))?;
    let broker = state.broker.clone();
    let start =
        tokio::task::spawn_blocking(move || broker.delete_records(&topic, partition, req.before_offset))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(json!({"log_start_offset": start})))
}

/// `GET /v1/topics/{topic}/partitions/{partition}/producers`: the idempotent and
/// transactional producers the partition remembers.
pub(crate) async fn producers(
    State(state): State<AppState>,
    Path((topic, partition)): Path<(String, i32)>,
) -> Result<Json<Value>, ApiError> {
    let producers = state.broker.describe_producers(&topic, partition)?;
    let list: Vec<Value> = producers
        .iter()
        .map(|p| {
            json!({
                "producer_id": p.producer_id,
                "producer_epoch": p.producer_epoch,
                "last_sequence": p.last_sequence,
                "last_timestamp_ms": p.last_timestamp_ms,
                "transaction_start_offset": (p.txn_start_offset >= 0).then_some(p.txn_start_offset),
            })
        })
        .collect();
    Ok(Json(
        json!({"topic": topic, "partition": partition, "producers": list}),
    ))
}

/// `DELETE /v1/groups/{group}/offsets/{topic}`: forgets the group's committed offsets of
/// every partition of the topic (refused while the group has members).
pub(crate) async fn delete_group_offsets(
    State(state): State<AppState>,
    Path((group, topic)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let t = state
        .broker
        .topic(&topic)
        .ok_or_else(|| ApiError::unknown_topic(&topic))?;
    let partitions: Vec<(String, i32)> = (0..t.partition_count() as i32)
        .map(|p| (topic.clone(), p))
        .collect();
    match state.broker.groups().delete_offsets(&group, &partitions).await {
        Ok(kept) if kept.is_empty() => Ok(StatusCode::NO_CONTENT),
        Ok(_) => Err(crate::error::ApiError::new(
            StatusCode::CONFLICT,
            40907,
            format!("group {group:?} has members subscribed to {topic:?}; stop them first"),
        )),
        Err(e) => Err(crate::error::group_error(&group, e)),
    }
}
