//! Dead-letter routes: `GET /v1/dead-letters` lists every `*.dlq` topic with its stored and
//! not-yet-redriven records; `POST /v1/dead-letters/{topic}/redrive` publishes dead letters
//! back to their original topics (all pending ones, or chosen records). Reading the letters
//! themselves is the ordinary records route.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use bytes::Bytes;
use rivulet_broker::acl::{Operation, ResourceType};
use rivulet_broker::dead_letters::{redrive_group, Redrive};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::authz::Caller;
use crate::error::ApiError;
use crate::produce::body_error;
use crate::AppState;

pub(crate) async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Json<Value> {
    let topics: Vec<Value> = state
        .broker
        .dead_letter_topics()
        .into_iter()
        .filter(|d| caller.sees(&state.broker, ResourceType::Topic, &d.topic))
        .map(|d| {
            json!({
                "topic": d.topic,
                "records": d.records,
                "pending": d.pending,
                "redrive_group": redrive_group(&d.topic),
                "partitions": d
                    .redriven_before
                    .iter()
                    .map(|(p, o)| json!({"partition": p, "redriven_before": o}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({"dead_letter_topics": topics}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    partition: i32,
    offset: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveRequest {
    /// Records to redrive; every pending one when absent.
    #[serde(default)]
    records: Option<Vec<Position>>,
}

pub(crate) async fn redrive(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let req: RedriveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RedriveRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "expected {{}} (every pending letter) or {{\"records\": [{{\"partition\", \"offset\"}}]}}: {e}"
            ))
        })?
    };
    let which = match req.records {
        None => Redrive::Pending,
        Some(list) if list.is_empty() => return Err(ApiError::bad_request("\"records\" is empty")),
        Some(list) => Redrive::Records(list.into_iter().map(|p| (p.partition, p.offset)).collect()),
    };
    let broker = &state.broker;
    let may_write = |t: &str| caller.may(broker, Operation::Write, ResourceType::Topic, t);
    let redriven = broker.redrive_dead_letters(&topic, which, &may_write).await?;
    tracing::info!(topic = %topic, redriven, "Dead letters redriven");
    Ok(Json(json!({"topic": topic, "redriven": redriven})))
}
