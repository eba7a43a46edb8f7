//! Wiring: subscriptions of the services, the HTTP API and an optional Kafka listener over
//! the embedded broker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rivulet_sdk::{Client, Received, Result as SdkResult, SubscribeOptions, Subscription};
use serde_json::json;

use crate::analytics;
use crate::events::{order_placed_id, INVENTORY, ORDERS};
use crate::inventory::Inventory;
use crate::notification::Mailer;
use crate::order::{self, OrderError, PlaceOrder};
use crate::smtp_sink;

/// Consumer group of the inventory service.
pub const INVENTORY_GROUP: &str = "inventory";
/// Consumer group of the notification service.
pub const NOTIFICATION_GROUP: &str = "notification";

/// Starts the inventory service: stocks the catalogue (once), then handles `orders`.
pub async fn start_inventory(
    client: &Client,
    inventory: Arc<Inventory>,
    options: SubscribeOptions,
) -> SdkResult<Subscription> {
    inventory.stock_up().await?;
    tracing::info!(stock = ?inventory.stock().await?, "Inventory ready");
    let c = client.clone();
    client
        .subscribe_with(INVENTORY_GROUP, &[ORDERS], options, move |e: Received| {
            let (inventory, client) = (inventory.clone(), c.clone());
            async move { inventory.handle(&client, e).await }
        })
        .await
}

/// Starts the notification service: emails on `inventory` events.
pub async fn start_notification(
    client: &Client,
    mailer: Mailer,
    options: SubscribeOptions,
) -> SdkResult<Subscription> {
    client.ensure_topic(INVENTORY).await?;
    client
        .subscribe_with(NOTIFICATION_GROUP, &[INVENTORY], options, move |e: Received| {
            let mailer = mailer.clone();
            async move { mailer.handle(e).await }
        })
        .await
}

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Publishes orders.
    pub client: Client,
    /// Stock, when the inventory service runs in this process.
    pub inventory: Option<Arc<Inventory>>,
    /// Mail directory of the local SMTP sink, when it runs in this process.
    pub mail_dir: Option<PathBuf>,
}

/// The shop's HTTP API.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/orders", post(place_order))
        .route("/stock", get(stock))
        .route("/sales", get(sales))
        .route("/alerts", get(alerts))
        .route("/mail", get(list_mail))
        .route("/mail/{file}", get(read_mail))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><title>Rivulet shop</title><h1>Rivulet shop</h1>",
        "<p>Place an order: <code>curl -X POST localhost:8081/orders -H 'content-type: application/json' ",
        "-d '{\"email\":\"ann@example.com\",\"items\":[{\"sku\":\"widget\",\"qty\":2}]}'</code></p>",
        "<p><a href=\"/mail\">Mail sent</a> &middot; <a href=\"/stock\">Stock</a> &middot; ",
        "<a href=\"/sales\">Sales per minute</a> &middot; <a href=\"/alerts\">Low-stock alerts</a></p>"
    ))
}

async fn place_order(State(state): State<HttpState>, body: axum::body::Bytes) -> Response {
    let req: PlaceOrder = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid order JSON: {e}")),
    };
    match order::place(&state.client, req).await {
        Ok((placed, at)) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "order_id": placed.order_id,
                "event_id": order_placed_id(&placed.order_id),
                "partition": at.partition,
                "offset": at.offset,
            })),
        )
            .into_response(),
        Err(OrderError::Invalid(m)) => error(StatusCode::BAD_REQUEST, m),
        Err(e @ OrderError::Publish(_)) => {
            tracing::error!(error = %e, "Publishing an order failed");
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

async fn stock(State(state): State<HttpState>) -> Response {
    match &state.inventory {
        Some(inv) => match inv.stock().await {
            Ok(stock) => Json(stock).into_response(),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("reading stock: {e}")),
        },
        None => error(
            StatusCode::NOT_FOUND,
            "the inventory service does not run in this process",
        ),
    }
}

/// `GET /sales`: orders, units and revenue per SKU per window, as the sales job wrote them.
async fn sales(State(state): State<HttpState>) -> Response {
    match analytics::results::<analytics::Sales>(&state.client, analytics::SALES).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("reading sales: {e}")),
    }
}

/// `GET /alerts`: the latest low-stock alert per SKU.
async fn alerts(State(state): State<HttpState>) -> Response {
    match analytics::results::<analytics::StockLevel>(&state.client, analytics::LOW_STOCK_ALERTS).await {
        Ok(rows) => {
            let latest: std::collections::BTreeMap<String, analytics::StockLevel> =
                rows.into_iter().map(|r| (r.key, r.value)).collect();
            Json(latest).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("reading alerts: {e}")),
    }
}

async fn list_mail(State(state): State<HttpState>) -> Response {
    let Some(dir) = state.mail_dir.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "the SMTP sink does not run in this process",
        );
    };
    match tokio::task::spawn_blocking(move || smtp_sink::summaries(&dir)).await {
        Ok(Ok(list)) => Json(list).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading mail: {e}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn read_mail(State(state): State<HttpState>, Path(file): Path<String>) -> Response {
    let Some(dir) = state.mail_dir.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "the SMTP sink does not run in this process",
        );
    };
    let safe = file.ends_with(".eml")
        && !file.starts_with('.')
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !safe {
        return error(StatusCode::BAD_REQUEST, "not a mail file name");
    }
    match tokio::fs::read_to_string(dir.join(&file)).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => error(StatusCode::NOT_FOUND, "no such mail"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading {file}: {e}")),
    }
}

/// Serves the Kafka protocol over a broker (so Kafka tools and out-of-process services
/// reach the shop's embedded broker). Returns the bound address.
pub async fn serve_kafka(
    broker: rivulet_broker::Broker,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    use rivulet_kafka::{HandlerConfig, Server, ServerConfig};
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let config = ServerConfig {
        listen: vec![addr],
        handler: HandlerConfig {
            node_id: 0,
            advertised_host: addr.ip().to_string(),
            advertised_port: addr.port(),
            advertised_more: Vec::new(),
            cluster_id: "rivulet-shop".into(),
            fetch_bytes_max: 8 << 20,
            fetch_wait_ms_max: 500,
        },
        request_bytes_max: 16 << 20,
        request_memory_bytes_max: 64 << 20,
        connections_max: 256,
        request_read_timeout_ms: 30_000,
        idle_timeout_ms: 600_000,
        write_stall_timeout_ms: 30_000,
        shutdown_timeout_ms: 2_000,
        tls: None,
        protocols: Vec::new(),
    };
    let server = Server::from_listeners(vec![listener], config, broker)?;
    Ok((addr, tokio::spawn(server.run(shutdown))))
}
