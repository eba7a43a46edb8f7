//! Admin routes: topics, groups with lag, status.

use std::collections::BTreeMap;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use rivulet_broker::Topic;
use rivulet_log::Log;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::produce::body_error;
use crate::AppState;

fn topic_summary(t: &Topic) -> Value {
    let size: u64 = t.partitions().iter().map(Log::size_bytes).sum();
    json!({"name": t.name(), "partitions": t.partition_count(), "size_bytes": size})
}

fn topic_detail(t: &Topic) -> Value {
    let partitions: Vec<Value> = t
        .partitions()
        .iter()
        .enumerate()
        .map(|(i, log)| {
            json!({
                "partition": i,
                "log_start_offset": log.log_start_offset(),
                "high_watermark": log.high_watermark(),
                "size_bytes": log.size_bytes(),
            })
        })
        .collect();
    let configs: Vec<Value> = t
        .describe_configs()
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "value": c.value,
                "source": if c.is_default { "DEFAULT_CONFIG" } else { "DYNAMIC_TOPIC_CONFIG" },
            })
        })
        .collect();
    json!({"name": t.name(), "id": format!("{:032x}", t.id()), "partitions": partitions, "configs": configs})
}

pub(crate) async fn list_topics(State(state): State<AppState>) -> Json<Value> {
    let topics: Vec<Value> = state.broker.topics().iter().map(|t| topic_summary(t)).collect();
    Json(json!({"topics": topics}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTopic {
    name: String,
    #[serde(default)]
    partitions: Option<i32>,
    #[serde(default)]
    configs: BTreeMap<String, Value>,
}

pub(crate) async fn create_topic(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let req: CreateTopic = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"name\", \"partitions\", \"configs\"}}: {e}"))
    })?;
    let configs: BTreeMap<String, String> = req
        .configs
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    let broker = state.broker.clone();
    let created = tokio::task::spawn_blocking(move || {
        broker.create_topic(&req.name, req.partitions.unwrap_or(-1), -1, configs, false)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let topic = created.ok_or_else(|| ApiError::internal("topic was not created"))?;
    Ok((StatusCode::CREATED, Json(topic_detail(&topic))).into_response())
}

pub(crate) async fn describe_topic(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = state
        .broker
        .topic(&name)
        .ok_or_else(|| ApiError::unknown_topic(&name))?;
    Ok(Json(topic_detail(&t)))
}

pub(crate) async fn delete_topic(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let broker = state.broker.clone();
    tokio::task::spawn_blocking(move || broker.delete_topic(&name))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_groups(State(state): State<AppState>) -> Json<Value> {
    let groups: Vec<Value> = state
        .broker
        .groups()
        .list()
        .into_iter()
        .map(|(id, protocol_type, st)| json!({"group": id, "protocol_type": protocol_type, "state": st.as_str()}))
        .collect();
    Json(json!({"groups": groups}))
}

/// Lag of one committed position: records behind the high watermark, and seconds since the
/// oldest unconsumed record was written (0 when caught up).
pub(crate) fn lag_of(log: &Log, committed: i64) -> (i64, f64) {
    let hwm = log.high_watermark();
    let lag = (hwm - committed.max(log.log_start_offset())).max(0);
    if lag == 0 {
        return (0, 0.0);
    }
    let at = committed.max(log.log_start_offset());
    let ts = log
        .read(at, 1)
        .ok()
        .and_then(|r| crate::records::decode("", 0, r.records, at, 1).ok())
        .and_then(|recs| recs.first().map(|r| r.timestamp));
    let seconds = ts.map_or(0.0, |ts| ((rivulet_log::now_ms() - ts).max(0) as f64) / 1000.0);
    (lag, seconds)
}

pub(crate) async fn describe_group(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let groups = state.broker.groups();
    let description = groups.describe(&group);
    let offsets = groups.offsets().group_offsets(&group);
    if description.is_none() && offsets.is_empty() {
        return Err(ApiError::unknown_group(&group));
    }
    let mut total_lag = 0i64;
    let mut partitions = Vec::new();
    for (topic, partition, committed) in offsets {
        let log = state
            .broker
            .topic(&topic)
            .and_then(|t| t.partition(partition).cloned());
        let (end, lag, lag_seconds) = match &log {
            Some(log) => {
                let (lag, secs) = lag_of(log, committed.offset);
                (json!(log.high_watermark()), json!(lag), json!(secs))
            }
            None => (Value::Null, Value::Null, Value::Null),
        };
        total_lag += lag.as_i64().unwrap_or(0);
        partitions.push(json!({
            "topic": topic,
            "partition": partition,
            "current_offset": committed.offset,
            "log_end_offset": end,
            "lag": lag,
            "lag_seconds": lag_seconds,
            "metadata": committed.metadata,
        }));
    }
    let (state_name, protocol, members) = match description {
        Some(d) => (
            d.state.as_str().to_string(),
            d.protocol_name,
            d.members
                .iter()
                .map(|m| json!({"member_id": m.member_id, "client_id": m.client_id, "host": m.client_host}))
                .collect(),
        ),
        None => ("Empty".to_string(), String::new(), Vec::new()),
    };
    Ok(Json(json!({
        "group": group,
        "state": state_name,
        "protocol": protocol,
        "members": members,
        "partitions": partitions,
        "total_lag": total_lag,
    })))
}

pub(crate) async fn delete_group(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.broker.groups().delete(&group).await {
        None => Ok(StatusCode::NO_CONTENT),
        Some(rivulet_broker::GroupError::GroupIdNotFound) => Err(ApiError::unknown_group(&group)),
        Some(rivulet_broker::GroupError::NonEmptyGroup) => Err(ApiError::new(
            StatusCode::CONFLICT,
            40902,
            format!("group {group:?} has active members; stop them first"),
        )),
        Some(e) => Err(ApiError::internal(format!(
            "deleting group {group:?} failed: {e:?}"
        ))),
    }
}

pub(crate) async fn status(State(state): State<AppState>) -> Json<Value> {
    let topics = state.broker.topics();
    let partitions: usize = topics.iter().map(|t| t.partition_count()).sum();
    let disk: u64 = topics
        .iter()
        .flat_map(|t| t.partitions().iter().map(Log::size_bytes))
        .sum();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "kafka_listeners": state.config.kafka_addresses,
        "topics": topics.len(),
        "partitions": partitions,
        "groups": state.broker.groups().list().len(),
        "disk_bytes": disk,
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}
