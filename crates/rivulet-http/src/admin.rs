//! Admin routes: topics, groups with lag, status.

use std::collections::BTreeMap;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use bytes::Bytes;
use rivulet_broker::acl::ResourceType;
use rivulet_broker::groups::MemberDescription;
use rivulet_broker::{BrokerError, PartitionLag, Topic};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::authz::Caller;
use crate::error::ApiError;
use crate::produce::body_error;
use crate::AppState;

fn topic_summary(t: &Topic) -> Value {
    let records: i64 = t
        .partition_infos()
        .iter()
        .map(|p| p.high_watermark - p.log_start_offset)
        .sum();
    json!({
        "name": t.name(),
        "partitions": t.partition_count(),
        "size_bytes": t.size_bytes(),
        "records": records,
        "retention_ms": t.retention_ms().map_or(-1, |ms| i64::try_from(ms).unwrap_or(i64::MAX)),
    })
}

pub(crate) fn topic_detail(t: &Topic) -> Value {
    let partitions: Vec<Value> = t
        .partition_infos()
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "log_start_offset": p.log_start_offset,
                "high_watermark": p.high_watermark,
                "size_bytes": p.size_bytes,
                "segments": p.segments,
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

pub(crate) async fn list_topics(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let topics: Vec<Value> = state
        .broker
        .topics()
        .iter()
        .filter(|t| caller.sees(&state.broker, ResourceType::Topic, t.name()))
        .map(|t| topic_summary(t))
        .collect();
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
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let req: CreateTopic = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"name\", \"partitions\", \"configs\"}}: {e}"))
    })?;
    if !caller.may_create_topic(&state.broker, &req.name) {
        return Err(BrokerError::NotAuthorized(format!("create topic {:?}", req.name)).into());
    }
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

pub(crate) async fn list_groups(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let groups: Vec<Value> = state
        .broker
        .groups()
        .list()
        .into_iter()
        .filter(|(id, _, _)| caller.sees(&state.broker, ResourceType::Group, id))
        .map(|(id, protocol_type, st)| json!({"group": id, "protocol_type": protocol_type, "state": st.as_str()}))
        .collect();
    Json(json!({"groups": groups}))
}

pub(crate) async fn describe_group(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let description = state.broker.describe_group(&group);
    let lags = state.broker.group_lag(&group);
    if description.is_none() && lags.is_empty() {
        return Err(ApiError::unknown_group(&group));
    }
    let total_lag: i64 = lags.iter().filter_map(|l| l.lag).sum();
    let partitions: Vec<Value> = lags.iter().map(lag_json).collect();
    let (state_name, protocol, members) = match description {
        Some(d) => (
            d.state.as_str().to_string(),
            d.protocol_name,
            d.members.iter().map(member_json).collect(),
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

/// One partition's committed offset and lag, as the group routes show it.
pub(crate) fn lag_json(l: &PartitionLag) -> Value {
    json!({
        "topic": l.topic,
        "partition": l.partition,
        "current_offset": l.committed,
        "log_end_offset": l.high_watermark,
        "lag": l.lag,
        "lag_seconds": l.lag_seconds,
        "metadata": l.metadata,
    })
}

/// One group member, as the group routes show it.
pub(crate) fn member_json(m: &MemberDescription) -> Value {
    json!({"member_id": m.member_id, "client_id": m.client_id, "host": m.client_host})
}

pub(crate) async fn delete_group(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.broker.groups().delete(&group).await {
        None => Ok(StatusCode::NO_CONTENT),
        Some(e) => Err(crate::error::group_error(&group, e)),
    }
}

pub(crate) async fn status(State(state): State<AppState>) -> Json<Value> {
    let topics = state.broker.topics();
    let partitions: usize = topics.iter().map(|t| t.partition_count()).sum();
    let disk: u64 = topics.iter().map(|t| t.size_bytes()).sum();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "kafka_listeners": state.config.kafka_addresses,
        "amqp_listeners": state.config.amqp_addresses,
        "amqp_connections": state.broker.metrics().connections_open("amqp"),
        "amqp_channels": state.broker.metrics().channels_open("amqp"),
        "alarm": *state.broker.alarm().borrow(),
        "queues": state.broker.queues().list().len(),
        "exchanges": state.broker.queues().topology().exchanges().count(),
        "listeners": crate::listeners(&state.config),
        "topics": topics.len(),
        "partitions": partitions,
        "groups": state.broker.groups().list().len(),
        "disk_bytes": disk,
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}
