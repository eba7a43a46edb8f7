//! `POST /v1/groups/{group}/reset-offsets`: moves a consumer group's committed offsets on a
//! topic to the start, the end, a time, an offset, or by a number of records, with a dry run
//! that shows the change without making it. Refused while the group has members (as Kafka's
//! `kafka-consumer-groups --reset-offsets` is): their next commit would undo it.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use bytes::Bytes;
use rivulet_broker::acl::{Operation, ResourceType};
use rivulet_broker::{Broker, BrokerError, GroupError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::authz::Caller;
use crate::error::ApiError;
use crate::produce::body_error;
use crate::AppState;

/// Where the offsets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Target {
    /// Each partition's log start.
    Start,
    /// Each partition's high watermark.
    End,
    /// The first record at or after `timestamp` (the end when there is none).
    Timestamp,
    /// `offset`, clamped to the partition's range.
    Offset,
    /// The committed offset moved by `shift` records (negative goes back), clamped.
    Shift,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    topic: String,
    /// Partitions to move; all when absent.
    #[serde(default)]
    partitions: Option<Vec<i32>>,
    to: Target,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    shift: Option<i64>,
    /// Show the new offsets without committing them.
    #[serde(default)]
    dry_run: bool,
}

/// One partition's move.
struct Move {
    partition: i32,
    current: Option<i64>,
    new: i64,
}

fn required(value: Option<i64>, name: &str, target: &str) -> Result<i64, ApiError> {
    value.ok_or_else(|| ApiError::bad_request(format!("\"to\": \"{target}\" needs \"{name}\"")))
}

fn new_offset(
    broker: &Broker,
    req: &ResetRequest,
    partition: i32,
    range: (i64, i64),
    current: Option<i64>,
) -> Result<i64, ApiError> {
    let (start, end) = range;
    let offset = match req.to {
        Target::Start => start,
        Target::End => end,
        Target::Offset => required(req.offset, "offset", "offset")?,
        Target::Shift => current.unwrap_or(start) + required(req.shift, "shift", "shift")?,
        Target::Timestamp => {
            let ts = required(req.timestamp, "timestamp", "timestamp")?;
            broker
                .offset_for_timestamp(&req.topic, partition, ts)?
                .map_or(end, |found| found.offset)
        }
    };
    Ok(offset.clamp(start, end))
}

fn plan(broker: &Broker, group: &str, req: &ResetRequest) -> Result<Vec<Move>, ApiError> {
    let topic = broker
        .topic(&req.topic)
        .ok_or_else(|| ApiError::unknown_topic(&req.topic))?;
    let count = topic.partition_count();
    let all: Vec<i32> = (0..i32::try_from(count).unwrap_or(i32::MAX)).collect();
    let chosen = req.partitions.clone().unwrap_or(all);
    let mut moves = Vec::with_capacity(chosen.len());
    for partition in chosen {
        let info = topic
            .partition_info(partition)
            .ok_or_else(|| ApiError::unknown_partition(&req.topic, partition, count))?;
        let current = broker.committed_offset(group, &req.topic, partition);
        let range = (info.log_start_offset, info.high_watermark);
        let new = new_offset(broker, req, partition, range, current)?;
        moves.push(Move {
            partition,
            current,
            new,
        });
    }
    Ok(moves)
}

pub(crate) async fn reset(
    State(state): State<AppState>,
    Path(group): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let req: ResetRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"topic\", \"to\": start|end|timestamp|offset|shift, \"timestamp\"|\"offset\"|\"shift\", \"partitions\", \"dry_run\"}}: {e}"
        ))
    })?;
    // As Kafka's offset commits: read on the group (checked by the route) and on the topic.
    if !caller.may(&state.broker, Operation::Read, ResourceType::Topic, &req.topic) {
        return Err(BrokerError::NotAuthorized(format!("read topic {:?}", req.topic)).into());
    }
    // Refused while the group has members, as a group delete is: their next commit would
    // undo the reset.
    let has_members = state
        .broker
        .describe_group(&group)
        .is_some_and(|d| !d.members.is_empty());
    if has_members {
        return Err(crate::error::group_error(&group, GroupError::NonEmptyGroup));
    }
    let moves = plan(&state.broker, &group, &req)?;
    if !req.dry_run {
        let offsets = moves
            .iter()
            .map(|m| (req.topic.clone(), m.partition, m.new))
            .collect();
        state.broker.commit_offsets(&group, offsets).await?;
        tracing::info!(group = %group, topic = %req.topic, partitions = moves.len(), "Group offsets reset");
    }
    let partitions: Vec<Value> = moves
        .iter()
        .map(|m| json!({"partition": m.partition, "current_offset": m.current, "new_offset": m.new}))
        .collect();
    Ok(Json(json!({
        "group": group,
        "topic": req.topic,
        "dry_run": req.dry_run,
        "partitions": partitions,
    })))
}
