//! Rivulet's HTTP/JSON gateway.
//!
//! Browsers and scripts produce and consume without a Kafka client:
//!
//! - `POST /v1/topics/{topic}/records`: one record or an array; answers each record's
//!   partition and offset once the append is durable under the topic's fsync policy (the
//!   same guarantee as `acks=all`).
//! - `GET /v1/topics/{topic}/partitions/{partition}/records?offset=N`: a long-poll read.
//! - `GET /v1/topics/{topic}/events`: a Server-Sent Events stream that `EventSource` can
//!   follow, from a position or as a member of a consumer group with committed offsets,
//!   resuming with `Last-Event-ID`.
//! - `/v1/streams`: the event store (append with expected revisions, read, subscribe);
//!   `/v1/subscriptions`: its persistent subscription groups and their lag.
//! * Stream processing jobs: `/v1/jobs`, as their instances report themselves.
//! - Admin: topics, groups with lag, queues and exchanges, status; `/metrics`, `/healthz`, `/readyz`,
//!   `/openapi.json`.
//!
//! Errors are JSON `{error_code, message}` with a matching HTTP status (see [`ApiError`]).
#![deny(missing_docs)]

mod acls;
mod admin;
mod auth;
mod authz;
mod configs;
pub mod console;
mod consume;
mod dead_letters;
pub mod error;
mod filter;
mod jobs;
mod partitions;
mod produce;
mod queues;
pub mod records;
mod reset;
mod scrape;
mod sse;
mod stats;
mod stream_events;
mod streams;
mod subscriptions;
mod tokens;
mod txns;
mod users;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use rivulet_broker::Broker;

pub use error::ApiError;

/// Gateway settings.
#[derive(Clone)]
pub struct GatewayConfig {
    /// Largest request body accepted.
    pub body_bytes_max: usize,
    /// Records in one produce request.
    pub records_per_request_max: usize,
    /// Longest long-poll wait.
    pub poll_wait_ms_max: u64,
    /// Concurrent Server-Sent Events streams.
    pub sse_streams_max: usize,
    /// The Kafka listener addresses, shown by `/v1/status`.
    pub kafka_addresses: Vec<String>,
    /// The AMQP listener addresses serving, shown by `/v1/status` and `/readyz`.
    pub amqp_addresses: Vec<String>,
    /// AMQP addresses that could not be bound, with the reason.
    pub amqp_down: Vec<(String, String)>,
    /// The event store `/v1/streams` serves; without one those routes answer 404.
    pub event_store: Option<rivulet_eventstore::EventStore>,
    /// The event store's persistent subscription groups `/v1/subscriptions` lists.
    pub persistent_subscriptions: Option<rivulet_eventstore::PersistentSubscriptions>,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("body_bytes_max", &self.body_bytes_max)
            .field("records_per_request_max", &self.records_per_request_max)
            .field("poll_wait_ms_max", &self.poll_wait_ms_max)
            .field("sse_streams_max", &self.sse_streams_max)
            .finish()
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            body_bytes_max: 8 << 20,
            records_per_request_max: 10_000,
            poll_wait_ms_max: 30_000,
            sse_streams_max: 1_000,
            kafka_addresses: Vec::new(),
            amqp_addresses: Vec::new(),
            amqp_down: Vec::new(),
            event_store: None,
            persistent_subscriptions: None,
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    pub broker: Broker,
    pub config: Arc<GatewayConfig>,
    pub sse_streams: Arc<AtomicUsize>,
    pub started: Instant,
    pub verified: Arc<auth::Verified>,
    pub stats: Arc<stats::Sampler>,
}

/// The gateway's routes over a broker.
pub fn router(broker: Broker, config: GatewayConfig) -> Router {
    let body_limit = config.body_bytes_max;
    let state = AppState {
        broker,
        config: Arc::new(config),
        sse_streams: Arc::new(AtomicUsize::new(0)),
        started: Instant::now(),
        verified: Arc::new(auth::Verified::default()),
        stats: Arc::new(stats::Sampler::default()),
    };
    Router::new()
        .route("/", get(console::index))
        .route("/console/{file}", get(console::file))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/status", get(admin::status))
        .route("/v1/stats", get(stats::once))
        .route("/v1/stats/events", get(stats::events))
        .route("/v1/topics/{topic}/configs", axum::routing::patch(configs::alter))
        .route("/v1/groups/{group}/reset-offsets", post(reset::reset))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/dead-letters/{topic}/redrive", post(dead_letters::redrive))
        .route("/v1/topics", get(admin::list_topics).post(admin::create_topic))
        .route(
            "/v1/topics/{topic}",
            get(admin::describe_topic).delete(admin::delete_topic),
        )
        .route("/v1/topics/{topic}/records", post(produce::produce))
        .route("/v1/topics/{topic}/partitions", post(partitions::grow))
        .route(
            "/v1/topics/{topic}/partitions/{partition}/delete-records",
            post(partitions::delete_records),
        )
        .route(
            "/v1/topics/{topic}/partitions/{partition}/producers",
            get(partitions::producers),
        )
        .route(
            "/v1/groups/{group}/offsets/{topic}",
            delete(partitions::delete_group_offsets),
        )
        .route(
            "/v1/topics/{topic}/partitions/{partition}/records",
            get(consume::poll),
        )
        .route("/v1/topics/{topic}/events", get(sse::events))
        .route("/v1/queues", get(queues::list_queues))
        .route(
            "/v1/queues/{queue}",
            get(queues::describe_queue).delete(queues::delete_queue),
        )
        .route("/v1/queues/{queue}/purge", post(queues::purge_queue))
        .route("/v1/exchanges", get(queues::list_exchanges))
        .route(
            "/v1/exchanges/{exchange}",
            get(queues::describe_exchange).delete(queues::delete_exchange),
        )
        .route("/v1/groups", get(admin::list_groups))
        .route(
            "/v1/groups/{group}",
            get(admin::describe_group).delete(admin::delete_group),
        )
        .route("/v1/transactions", get(txns::list))
        .route("/v1/transactions/{id}", get(txns::describe))
        .route("/v1/transactions/{id}/abort", post(txns::abort))
        .route(
            "/v1/acls",
            get(acls::list).post(acls::create).delete(acls::delete),
        )
        .route("/v1/tokens", post(tokens::issue).delete(tokens::revoke))
        .route("/v1/streams", get(streams::list).post(streams::append_many))
        .route(
            "/v1/streams/{stream}",
            get(streams::read).post(streams::append).delete(streams::delete),
        )
        .route(
            "/v1/streams/{stream}/metadata",
            axum::routing::put(streams::set_metadata),
        )
        .route("/v1/streams/{stream}/events", get(stream_events::subscribe))
        .route("/v1/scavenge", post(streams::scavenge))
        .route("/v1/subscriptions", get(subscriptions::list))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{job}", get(jobs::describe))
        .route("/v1/jobs/{job}/state/{key}", get(jobs::state))
        .route("/v1/users", get(users::list))
        .route(
            "/v1/users/{user}",
            axum::routing::put(users::set_password).delete(users::delete),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authz::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_login,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Serves the gateway on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Broker,
    config: GatewayConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(address = ?addr, "HTTP gateway listening");
    let app = router(broker, config).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Time a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the gateway over TLS (HTTPS, HTTP/1.1) on `listener` until `shutdown`
/// completes; connections open then end with the process.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    broker: Broker,
    config: GatewayConfig,
    tls: rivulet_tls::Acceptor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(address = ?listener.local_addr().ok(), "HTTPS gateway listening");
    let app = router(broker, config);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTPS: accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let service = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::info!(%peer, error = %e, "HTTPS: TLS handshake failed"),
                Err(_) => return tracing::info!(%peer, "HTTPS: TLS handshake timed out"),
            };
            let service = hyper_util::service::TowerToHyperService::new(service);
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended");
            }
        });
    }
}

/// Records each request's duration under its route (bounded: routes, not raw paths).
async fn observe(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(
            || "unmatched".to_string(),
            |p| format!("{} {}", request.method(), p.as_str()),
        );
    let started = Instant::now();
    let response = next.run(request).await;
    let m = state.broker.metrics();
    m.observe_request("http", &route, started.elapsed());
    if response.status().is_client_error() || response.status().is_server_error() {
        m.request_error("http", response.status().as_str());
    }
    response
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    // Ready once the broker opened its data (it has by the time routes exist) and the
    // offsets store answers.
    let _ = state.broker.groups().list();
    axum::Json(serde_json::json!({
        "status": "ready",
        "listeners": listeners(&state.config),
    }))
    .into_response()
}

/// Every listener and whether it serves.
pub(crate) fn listeners(config: &GatewayConfig) -> serde_json::Value {
    let up = |protocol: &str, a: &String| serde_json::json!({"protocol": protocol, "address": a, "up": true});
    let mut out: Vec<serde_json::Value> = config.kafka_addresses.iter().map(|a| up("kafka", a)).collect();
    out.extend(config.amqp_addresses.iter().map(|a| up("amqp", a)));
    out.extend(
        config
            .amqp_down
            .iter()
            .map(|(a, why)| serde_json::json!({"protocol": "amqp", "address": a, "up": false, "error": why})),
    );
    serde_json::Value::Array(out)
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let groups = match &state.config.persistent_subscriptions {
        Some(groups) => groups.list(None).await.unwrap_or_default(),
        None => Vec::new(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        scrape::render(
            &state.broker,
            state.broker.metrics(),
            &groups,
            &jobs::statuses(&state.broker),
        ),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        40400,
        format!("no route for {uri}; see /openapi.json"),
    )
}

#[cfg(test)]
mod tests {
    /// Every route the router serves is in `/openapi.json`, so the console and scripts have
    /// no private endpoints.
    #[test]
    fn every_route_is_documented() {
        let spec: serde_json::Value =
            serde_json::from_str(include_str!("openapi.json")).expect("openapi.json parses");
        let paths = spec["paths"].as_object().expect("paths");
        let source = include_str!("lib.rs");
        let routes: Vec<&str> = source
            .split(".route(")
            .skip(1)
            .filter_map(|rest| rest.trim_start().strip_prefix('"'))
            .filter_map(|rest| rest.split('"').next())
            .filter(|route| route.starts_with('/'))
            .collect();
        assert!(routes.len() > 30, "found only {} routes", routes.len());
        for route in routes {
            assert!(paths.contains_key(route), "{route} is not in openapi.json");
        }
    }
}
