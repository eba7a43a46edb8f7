//! Interactive queries: a running instance answers `GET /state/{key}` with the open windows
//! it holds for that key (the running value of a global aggregate, the current windows of a
//! windowed one). Closed windows are in the output topic. The HTTP handler asks the job's
//! loop through a bounded queue, so it never touches the tasks itself.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

/// Queries waiting for the job's loop; more are refused with 503.
pub(crate) const QUERIES_MAX: usize = 64;
/// How long a query waits for the loop.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A key asked about, and where its windows go.
#[derive(Debug)]
pub(crate) struct Query {
    pub key: String,
    pub reply: oneshot::Sender<Vec<Value>>,
}

#[derive(Clone)]
struct QueryState {
    job: String,
    instance: String,
    queries: mpsc::Sender<Query>,
}

async fn state(State(s): State<QueryState>, Path(key): Path<String>) -> Response {
    let (reply, answer) = oneshot::channel();
    if s.queries
        .try_send(Query {
            key: key.clone(),
            reply,
        })
        .is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "too many queries waiting"})),
        )
            .into_response();
    }
    match tokio::time::timeout(QUERY_TIMEOUT, answer).await {
        Ok(Ok(windows)) => Json(json!({
            "job": s.job,
            "instance": s.instance,
            "key": key,
            "windows": windows,
        }))
        .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the job did not answer"})),
        )
            .into_response(),
    }
}

/// Serves queries on `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    job: String,
    instance: String,
    queries: mpsc::Sender<Query>,
    mut stop: watch::Receiver<bool>,
) {
    let router = Router::new()
        .route("/state/{key}", get(state))
        .with_state(QueryState {
            job,
            instance,
            queries,
        });
    let shutdown = async move {
        // Bounded: ends when the job stops or its sender is gone.
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(error = %e, "Query server stopped");
    }
}

/// Binds the query address.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
