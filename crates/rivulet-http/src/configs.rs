//! `PATCH /v1/topics/{topic}/configs`: sets and removes a topic's config overrides (Kafka's
//! IncrementalAlterConfigs SET and DELETE), validated as a whole before anything changes.

use std::collections::BTreeMap;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::admin::topic_detail;
use crate::error::ApiError;
use crate::produce::body_error;
use crate::AppState;

/// Overrides in one request at most.
const CHANGES_MAX: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigChange {
    /// Overrides to set; a JSON string or number or boolean per key.
    #[serde(default)]
    set: BTreeMap<String, Value>,
    /// Overrides to remove (back to the broker default).
    #[serde(default)]
    delete: Vec<String>,
}

fn as_text(key: &str, v: Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(ApiError::bad_request(format!(
            "{key}: expected a string, number or boolean, got {other}"
        ))),
    }
}

pub(crate) async fn alter(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let change: ConfigChange = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"set\": {{key: value}}, \"delete\": [key]}}: {e}"
        ))
    })?;
    if change.set.len() + change.delete.len() > CHANGES_MAX {
        return Err(ApiError::bad_request(format!(
            "at most {CHANGES_MAX} changes in one request"
        )));
    }
    let topic = state
        .broker
        .topic(&name)
        .ok_or_else(|| ApiError::unknown_topic(&name))?;
    let mut overrides = topic.overrides();
    for key in &change.delete {
        overrides.remove(key);
    }
    for (key, value) in change.set {
        let text = as_text(&key, value)?;
        overrides.insert(key, text);
    }
    let broker = state.broker.clone();
    let topic_name = name.clone();
    tokio::task::spawn_blocking(move || broker.set_topic_configs(&topic_name, overrides))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    tracing::info!(topic = %name, "Topic configs altered over HTTP");
    let topic = state
        .broker
        .topic(&name)
        .ok_or_else(|| ApiError::unknown_topic(&name))?;
    Ok(Json(topic_detail(&topic)))
}
