//! Admin routes for queues and exchanges (the AMQP front end's, and any protocol's that
//! uses the broker's queues): list, describe, purge, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use rivulet_broker::acl::ResourceType;
use rivulet_broker::queues::{QueueError, QueueInfo, OPERATOR};
use rivulet_broker::routing::{Binding, Exchange, ExchangeBinding, FieldValue, Headers};
use serde_json::{json, Value};

use crate::authz::Caller;
use crate::error::ApiError;
use crate::AppState;

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> ApiError {
        match e {
            QueueError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, 40407, m),
            QueueError::AccessRefused(m) => ApiError::new(StatusCode::FORBIDDEN, 40301, m),
            QueueError::ResourceLocked(m) => ApiError::new(StatusCode::CONFLICT, 40907, m),
            QueueError::PreconditionFailed(m) => ApiError::new(StatusCode::CONFLICT, 40908, m),
            QueueError::LimitReached(m) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, 42901, m),
            QueueError::Broker(e) => e.into(),
        }
    }
}

fn value(v: &FieldValue) -> Value {
    match v {
        FieldValue::Void => Value::Null,
        FieldValue::Bool(b) => json!(b),
        FieldValue::Int(i) => json!(i),
        FieldValue::Float(f) => json!(f),
        FieldValue::Str(s) => json!(s),
        FieldValue::Bytes(b) => json!(String::from_utf8_lossy(b)),
    }
}

fn headers(h: &Headers) -> Value {
    Value::Object(h.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

fn queue_json(q: &QueueInfo) -> Value {
    json!({
        "name": q.name,
        "durable": q.spec.durable,
        "exclusive": q.spec.exclusive,
        "auto_delete": q.spec.auto_delete,
        "arguments": headers(&q.spec.arguments),
        "messages_ready": q.counts.ready,
        "messages_unacknowledged": q.counts.unacked,
        "consumers": q.counts.consumers,
        "ack_floor": q.ack_floor,
        "end_offset": q.end,
        "size_bytes": q.size_bytes,
        "published_total": q.rates.published_total,
        "delivered_total": q.rates.delivered_total,
        "acknowledged_total": q.rates.acknowledged_total,
        "published_per_s": q.rates.published_per_s,
        "delivered_per_s": q.rates.delivered_per_s,
        "acknowledged_per_s": q.rates.acknowledged_per_s,
    })
}

fn binding_json(exchange: &str, b: &Binding) -> Value {
    json!({"exchange": exchange, "queue": b.queue, "destination_type": "queue", "routing_key": b.key, "arguments": headers(&b.arguments)})
}

/// An exchange-to-exchange binding of source `exchange`.
fn exchange_binding_json(exchange: &str, b: &ExchangeBinding) -> Value {
    json!({"exchange": exchange, "destination": b.destination, "destination_type": "exchange", "routing_key": b.key, "arguments": headers(&b.arguments)})
}

fn unknown_queue(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, 40407, format!("no queue {name:?}"))
}

/// The queues the caller may describe, as JSON.
pub(crate) fn visible_queues(state: &AppState, caller: &Caller) -> Vec<Value> {
    state
        .broker
        .queue_infos()
        .iter()
        .filter(|q| caller.sees(&state.broker, ResourceType::Topic, &q.name))
        .map(queue_json)
        .collect()
}

pub(crate) async fn list_queues(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    Json(json!({"queues": visible_queues(&state, &caller)}))
}

pub(crate) async fn describe_queue(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = state
        .broker
        .queue_info(&name)
        .ok_or_else(|| unknown_queue(&name))?;
    let topology = state.broker.queues().topology();
    let bindings: Vec<Value> = topology
        .bindings()
        .filter(|(_, b)| b.queue == name)
        .map(|(e, b)| binding_json(e, b))
        .collect();
    let mut out = queue_json(&info);
    out["bindings"] = Value::Array(bindings);
    Ok(Json(out))
}

pub(crate) async fn purge_queue(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let purged = state.broker.queue_purge(&name, OPERATOR)?;
    Ok(Json(json!({"queue": name, "purged": purged})))
}

pub(crate) async fn delete_queue(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if state.broker.queue_info(&name).is_none() {
        return Err(unknown_queue(&name));
    }
    let messages = state.broker.queue_delete(&name, false, false, OPERATOR)?;
    Ok(Json(json!({"queue": name, "deleted_messages": messages})))
}

pub(crate) async fn list_exchanges(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let topology = state.broker.queues().topology();
    let exchanges: Vec<Value> = topology
        .exchanges()
        .filter(|(name, _)| caller.sees(&state.broker, ResourceType::Topic, name))
        .map(|(name, e)| {
            exchange_json(
                name,
                e,
                json!(
                    topology.bindings().filter(|(x, _)| *x == name).count()
                        + topology.exchange_bindings().filter(|(x, _)| *x == name).count()
                ),
            )
        })
        .collect();
    Json(json!({"exchanges": exchanges}))
}

pub(crate) async fn describe_exchange(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let topology = state.broker.queues().topology();
    let e = topology
        .exchange(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, 40408, format!("no exchange {name:?}")))?;
    let to_queues = topology
        .bindings()
        .filter(|(x, _)| **x == name)
        .map(|(x, b)| binding_json(x, b));
    let to_exchanges = topology
        .exchange_bindings()
        .filter(|(x, _)| **x == name)
        .map(|(x, b)| exchange_binding_json(x, b));
    let bindings: Vec<Value> = to_queues.chain(to_exchanges).collect();
    Ok(Json(exchange_json(&name, e, Value::Array(bindings))))
}

/// An exchange; `bindings` is their count (list) or the bindings themselves (describe).
fn exchange_json(name: &str, e: &Exchange, bindings: Value) -> Value {
    json!({
        "name": name,
        "type": e.kind.as_str(),
        "durable": e.durable,
        "auto_delete": e.auto_delete,
        "internal": e.internal,
        "alternate_exchange": e.alternate,
        "bindings": bindings,
    })
}

pub(crate) async fn delete_exchange(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.broker.exchange_delete(&name, false)?;
    Ok(StatusCode::NO_CONTENT)
}
