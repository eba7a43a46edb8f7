//! `GET /v1/subscriptions`: the event store's persistent subscription groups, their
//! consumers and how far behind each group is.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use rivulet_eventstore::persistent::model::GroupInfo;
use rivulet_eventstore::PersistentSubscriptions;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// Query of the group list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionsQuery {
    /// Only the groups of this stream (or `$all`).
    source: Option<String>,
}

fn groups(state: &AppState) -> Result<&PersistentSubscriptions, ApiError> {
    state.config.persistent_subscriptions.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            40410,
            "the event store is not enabled on this server",
        )
    })
}

/// One group as JSON.
pub(crate) fn info_json(i: &GroupInfo) -> Value {
    let consumers: Vec<Value> = i
        .consumers
        .iter()
        .map(|c| {
            json!({
                "from": c.from,
                "username": c.username,
                "connection_name": c.connection_name,
                "delivered_total": c.delivered_total,
                "in_flight": c.in_flight,
                "slots_free": c.slots_free,
            })
        })
        .collect();
    let s = &i.definition.settings;
    json!({
        "source": i.definition.source.name(),
        "group": i.definition.group,
        "status": i.status,
        "strategy": s.strategy.name(),
        "checkpoint": i.checkpoint,
        "next_read": i.next_read,
        "source_end": i.source_end,
        "lag": i.lag(),
        "outstanding": i.outstanding,
        "in_flight": i.in_flight,
        "retry_waiting": i.retry_waiting,
        "parked": i.parked,
        "delivered_total": i.delivered_total,
        "finished_total": i.finished_total,
        "max_retry_count": s.max_retry_count,
        "message_timeout_ms": s.message_timeout_ms,
        "consumers": consumers,
    })
}

/// `GET /v1/subscriptions`.
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<SubscriptionsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let groups = groups(&state)?;
    let Query(q) = query?;
    let infos = groups.list(q.source.as_deref()).await?;
    Ok(Json(json!({
        "subscriptions": infos.iter().map(info_json).collect::<Vec<_>>(),
    })))
}
