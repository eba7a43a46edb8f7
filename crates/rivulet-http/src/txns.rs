//! `/v1/transactions`: the transaction coordinator's view for operators, and aborting a
//! transaction that hangs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use rivulet_broker::acl::ResourceType;
use rivulet_broker::TxnMeta;
use serde_json::{json, Value};

use crate::authz::Caller;
use crate::error::ApiError;
use crate::AppState;

/// Every transactional id with its state; `open` first, oldest first.
pub(crate) async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Json<Value> {
    let now = rivulet_broker::offsets::now_ms();
    let mut metas = state.broker.txns().list();
    metas.retain(|m| caller.sees(&state.broker, ResourceType::TransactionalId, &m.transactional_id));
    metas.sort_by_key(|m| (!is_open(m), m.started_ms));
    let txns: Vec<Value> = metas.iter().map(|m| describe_meta(m, now)).collect();
    Json(json!({"transactions": txns}))
}

/// One transactional id.
pub(crate) async fn describe(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let meta = state.broker.txns().describe(&id).ok_or_else(|| unknown(&id))?;
    Ok(Json(describe_meta(&meta, rivulet_broker::offsets::now_ms())))
}

/// Aborts the id's open transaction and fences its producer.
pub(crate) async fn abort(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.broker.txns().describe(&id).is_none() {
        return Err(unknown(&id));
    }
    state.broker.abort_transaction(&id).await?;
    tracing::info!(transactional_id = %id, "Transaction aborted by an operator");
    Ok(StatusCode::NO_CONTENT)
}

fn unknown(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        40406,
        format!("transactional id {id:?} does not exist"),
    )
}

fn is_open(m: &TxnMeta) -> bool {
    matches!(
        m.state,
        rivulet_broker::TxnState::Ongoing
            | rivulet_broker::TxnState::PrepareCommit
            | rivulet_broker::TxnState::PrepareAbort
    )
}

fn describe_meta(m: &TxnMeta, now_ms: i64) -> Value {
    let partitions: Vec<Value> = m
        .partitions
        .iter()
        .map(|(t, p)| json!({"topic": t, "partition": p}))
        .collect();
    let open_ms = is_open(m).then(|| (now_ms - m.started_ms).max(0));
    json!({
        "transactional_id": m.transactional_id,
        "producer_id": m.producer_id,
        "producer_epoch": m.producer_epoch,
        "state": m.state.name(),
        "timeout_ms": m.timeout_ms,
        "started_ms": m.started_ms,
        "open_ms": open_ms,
        "partitions": partitions,
        "groups": m.groups,
        "pending_offsets": m.offsets.len(),
    })
}
