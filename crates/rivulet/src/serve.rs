//! `rivulet serve`: settings (file < environment < flags) and the server lifecycle.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use rivulet_broker::{Broker, BrokerConfig};
use rivulet_kafka::{HandlerConfig, Server, ServerConfig};
use rivulet_log::{FsyncPolicy, LogConfig};
use serde::Deserialize;

const DEFAULT_LISTEN: &[&str] = &["127.0.0.1:9092", "[::1]:9092"];

/// Settings of `rivulet serve`. Each comes from a flag, else its environment variable, else
/// the config file (same names in snake_case, e.g. `data_dir = "/var/lib/rivulet"`), else
/// the default shown. Log verbosity follows `RUST_LOG` (default `info`).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file with any of the settings below (snake_case keys).
    #[arg(long, env = "RIVULET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Addresses to listen on for Kafka clients, comma-separated
    /// [default: 127.0.0.1:9092,[::1]:9092 (IPv6 skipped when unavailable)]
    #[arg(long, env = "RIVULET_LISTEN", value_name = "ADDR,...", value_delimiter = ',')]
    listen: Option<Vec<String>>,

    /// host:port clients are told to connect to in Metadata and FindCoordinator
    /// [default: the first listen address; 0.0.0.0 and :: become localhost]
    #[arg(long, env = "RIVULET_ADVERTISED_ADDRESS", value_name = "HOST:PORT")]
    advertised_address: Option<String>,

    /// Directory holding topics, committed offsets and producer state [default: ./data]
    #[arg(long, env = "RIVULET_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Node id reported to clients [default: 0]
    #[arg(long, env = "RIVULET_NODE_ID", value_name = "ID")]
    node_id: Option<i32>,

    /// Create unknown topics on Metadata and Produce requests [default: true]
    #[arg(long, env = "RIVULET_AUTO_CREATE_TOPICS", value_name = "BOOL")]
    auto_create_topics: Option<bool>,

    /// Partitions of auto-created topics [default: 1]
    #[arg(long, env = "RIVULET_DEFAULT_PARTITIONS", value_name = "N")]
    default_partitions: Option<u32>,

    /// Default fsync policy of topics: always (acks=all waits for a group-committed
    /// fdatasync), interval:<ms>, or none [default: always]
    #[arg(long, env = "RIVULET_FSYNC", value_name = "POLICY")]
    fsync: Option<String>,

    /// Default retention.ms of topics; -1 keeps data forever [default: 604800000]
    #[arg(long, env = "RIVULET_RETENTION_MS", value_name = "MS")]
    retention_ms: Option<i64>,

    /// Default retention.bytes per partition; -1 for no size limit [default: -1]
    #[arg(long, env = "RIVULET_RETENTION_BYTES", value_name = "BYTES")]
    retention_bytes: Option<i64>,

    /// Default segment.bytes of topics [default: 1073741824]
    #[arg(long, env = "RIVULET_SEGMENT_BYTES", value_name = "BYTES")]
    segment_bytes: Option<u64>,

    /// Default max.message.bytes (largest record batch) of topics [default: 1048588]
    #[arg(long, env = "RIVULET_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    max_message_bytes: Option<usize>,

    /// Largest request accepted; larger frames close the connection [default: 104857600]
    #[arg(long, env = "RIVULET_REQUEST_BYTES_MAX", value_name = "BYTES")]
    request_bytes_max: Option<usize>,

    /// Request bytes held in memory across all connections; Fetch response bytes get a
    /// separate budget of the same size [default: 268435456]
    #[arg(long, env = "RIVULET_REQUEST_MEMORY_BYTES_MAX", value_name = "BYTES")]
    request_memory_bytes_max: Option<usize>,

    /// Concurrent client connections; more are refused [default: 1024]
    #[arg(long, env = "RIVULET_CONNECTIONS_MAX", value_name = "N")]
    connections_max: Option<usize>,

    /// Record bytes in one Fetch response, whatever the client asks [default: 52428800]
    #[arg(long, env = "RIVULET_FETCH_BYTES_MAX", value_name = "BYTES")]
    fetch_bytes_max: Option<usize>,

    /// Longest Fetch long-poll, whatever the client asks [default: 30000]
    #[arg(long, env = "RIVULET_FETCH_WAIT_MS_MAX", value_name = "MS")]
    fetch_wait_ms_max: Option<u64>,

    /// Close connections idle this long [default: 600000]
    #[arg(long, env = "RIVULET_IDLE_TIMEOUT_MS", value_name = "MS")]
    idle_timeout_ms: Option<u64>,

    /// Close a connection whose client accepts no response bytes for this long; it would
    /// otherwise hold Fetch response memory shared by all connections [default: 30000]
    #[arg(long, env = "RIVULET_WRITE_STALL_TIMEOUT_MS", value_name = "MS")]
    write_stall_timeout_ms: Option<u64>,

    /// On SIGTERM/Ctrl-C, wait this long for in-flight requests [default: 10000]
    #[arg(long, env = "RIVULET_SHUTDOWN_TIMEOUT_MS", value_name = "MS")]
    shutdown_timeout_ms: Option<u64>,

    /// Address of the HTTP gateway (JSON produce/consume, Server-Sent Events, admin,
    /// /metrics); `off` disables it [default: 127.0.0.1:8080]
    #[arg(long, env = "RIVULET_HTTP_LISTEN", value_name = "ADDR")]
    http_listen: Option<String>,

    /// Largest HTTP request body accepted [default: 8388608]
    #[arg(long, env = "RIVULET_HTTP_BODY_BYTES_MAX", value_name = "BYTES")]
    http_body_bytes_max: Option<usize>,

    /// Log output format: text or json [default: text]
    #[arg(long, env = "RIVULET_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
}

/// The config file: the same settings as the flags, snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Vec<String>>,
    advertised_address: Option<String>,
    data_dir: Option<PathBuf>,
    node_id: Option<i32>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<u32>,
    fsync: Option<String>,
    retention_ms: Option<i64>,
    retention_bytes: Option<i64>,
    segment_bytes: Option<u64>,
    max_message_bytes: Option<usize>,
    request_bytes_max: Option<usize>,
    request_memory_bytes_max: Option<usize>,
    connections_max: Option<usize>,
    fetch_bytes_max: Option<usize>,
    fetch_wait_ms_max: Option<u64>,
    idle_timeout_ms: Option<u64>,
    write_stall_timeout_ms: Option<u64>,
    shutdown_timeout_ms: Option<u64>,
    http_listen: Option<String>,
    http_body_bytes_max: Option<usize>,
    log_format: Option<String>,
}

fn init_logging(format: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "text" => builder.init(),
        "json" => builder.json().init(),
        other => bail!("log format {other:?}: expected text or json"),
    }
    Ok(())
}

fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("listen address {addr:?}"))?
        .next()
        .with_context(|| format!("listen address {addr:?} resolves to nothing"))
}

/// Runs `rivulet serve` until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> Result<()> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    macro_rules! setting {
        ($name:ident, $default:expr) => {
            args.$name
                .clone()
                .or(file.$name.clone())
                .unwrap_or($default)
        };
    }
    init_logging(&setting!(log_format, "text".to_string()))?;

    let listen_given = args.listen.clone().or(file.listen.clone());
    let listen_strings: Vec<String> = match listen_given {
        Some(list) => list,
        None => DEFAULT_LISTEN
            .iter()
            .filter(|a| !a.starts_with('[') || ipv6_loopback_available())
            .map(|a| a.to_string())
            .collect(),
    };
    let listen = listen_strings
        .iter()
        .map(|a| resolve(a.trim()))
        .collect::<Result<Vec<_>>>()?;
    if listen.is_empty() {
        bail!("no listen address given");
    }

    let mut log_config = LogConfig::default();
    if let Some(text) = args.fsync.clone().or(file.fsync.clone()) {
        log_config.fsync = FsyncPolicy::parse(&text).context("--fsync")?;
    }
    let retention_ms = setting!(retention_ms, 7 * 24 * 3600 * 1000);
    log_config.retention_ms = u64::try_from(retention_ms).ok();
    let retention_bytes = setting!(retention_bytes, -1);
    log_config.retention_bytes = u64::try_from(retention_bytes).ok();
    log_config.segment_bytes = setting!(segment_bytes, log_config.segment_bytes);
    log_config.max_batch_bytes = setting!(max_message_bytes, log_config.max_batch_bytes);
    log_config.validate().context("topic defaults")?;

    let default_partitions = setting!(default_partitions, 1);
    if default_partitions == 0 {
        bail!("--default-partitions must be at least 1");
    }
    let broker_config = BrokerConfig {
        data_dir: setting!(data_dir, PathBuf::from("data")),
        auto_create_topics: setting!(auto_create_topics, true),
        default_partitions,
        default_log_config: log_config,
        ..BrokerConfig::default()
    };
    let node_id = setting!(node_id, 0);
    let advertised = args
        .advertised_address
        .clone()
        .or(file.advertised_address.clone());
    let request_bytes_max = setting!(request_bytes_max, 100 << 20);
    let request_memory_bytes_max = setting!(request_memory_bytes_max, 256 << 20);
    let connections_max = setting!(connections_max, 1024);
    let fetch_bytes_max = setting!(fetch_bytes_max, 50 << 20);
    let fetch_wait_ms_max = setting!(fetch_wait_ms_max, 30_000);
    let idle_timeout_ms = setting!(idle_timeout_ms, 600_000);
    let write_stall_timeout_ms = setting!(write_stall_timeout_ms, 30_000);
    let shutdown_timeout_ms = setting!(shutdown_timeout_ms, 10_000);
    if request_bytes_max > request_memory_bytes_max {
        bail!("request_bytes_max ({request_bytes_max}) must not exceed request_memory_bytes_max ({request_memory_bytes_max})");
    }
    if connections_max == 0 {
        bail!("connections_max must be at least 1");
    }
    let http_listen = setting!(http_listen, "127.0.0.1:8080".to_string());
    let http_listen = match http_listen.trim() {
        "off" | "none" | "" => None,
        addr => Some(resolve(addr)?),
    };
    let http_body_bytes_max = setting!(http_body_bytes_max, 8 << 20);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let data_dir = broker_config.data_dir.clone();
        let broker = tokio::task::spawn_blocking(move || Broker::open(broker_config))
            .await
            .context("opening the data directory")?
            .with_context(|| format!("opening data directory {}", data_dir.display()))?;

        // Bind first so that an advertised port follows a listen port of 0.
        let server_config = |host: String, port: u16| ServerConfig {
            listen: listen.clone(),
            handler: HandlerConfig {
                node_id,
                advertised_host: host,
                advertised_port: port,
                cluster_id: "rivulet".to_string(),
                fetch_bytes_max,
                fetch_wait_ms_max,
            },
            request_bytes_max,
            request_memory_bytes_max,
            connections_max,
            request_read_timeout_ms: 30_000,
            idle_timeout_ms,
            write_stall_timeout_ms,
            shutdown_timeout_ms,
            group_tick_ms: 250,
            maintenance_interval_ms: 1_000,
        };
        let listeners = bind_all(&listen).await?;
        let first = listeners[0].local_addr().context("listener address")?;
        let (host, port) = match &advertised {
            Some(a) => split_host_port(a)?,
            None => {
                let host = if first.ip().is_unspecified() {
                    "localhost".to_string()
                } else {
                    first.ip().to_string()
                };
                (host, first.port())
            }
        };
        let config = server_config(host.clone(), port);
        let metrics = Arc::new(rivulet_metrics::Metrics::new(env!("CARGO_PKG_VERSION")));
        let observer_metrics = metrics.clone();
        broker.set_fsync_observer(Some(Arc::new(move |elapsed| observer_metrics.observe_fsync(elapsed))));
        let server = Server::from_listeners(listeners, config, broker.clone())
            .context("starting the Kafka listener")?
            .with_metrics(metrics.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let gateway = match http_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("HTTP gateway: listening on {addr}"))?;
                let local = listener.local_addr().context("HTTP listener address")?;
                tracing::info!(address = %local, "Listening for HTTP");
                let gateway_config = rivulet_http::GatewayConfig {
                    body_bytes_max: http_body_bytes_max,
                    kafka_addresses: server.local_addrs().iter().map(ToString::to_string).collect(),
                    metrics: Some(metrics.clone()),
                    ..rivulet_http::GatewayConfig::default()
                };
                let mut stop = stop_rx.clone();
                let b = broker.clone();
                Some(tokio::spawn(async move {
                    rivulet_http::serve(listener, b, gateway_config, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
                }))
            }
            None => None,
        };
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        for addr in server.local_addrs() {
            tracing::info!(address = %addr, "Listening for Kafka clients");
        }
        tracing::info!(advertised = %format!("{host}:{port}"), data_dir = %data_dir.display(), "Rivulet is serving");
        let mut stop = stop_rx.clone();
        server
            .run(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
            .context("serving")?;
        if let Some(gateway) = gateway {
            // Event streams stay open until clients leave: give the gateway a moment, no more.
            match tokio::time::timeout(std::time::Duration::from_secs(2), gateway).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP gateway stopped with an error"),
                Err(_) => tracing::info!("HTTP gateway: closing open streams"),
                _ => {}
            }
        }
        tokio::task::spawn_blocking(move || broker.close())
            .await
            .context("closing logs")?
            .context("flushing logs")?;
        tracing::info!("Rivulet stopped");
        Ok(())
    })
}

async fn bind_all(listen: &[SocketAddr]) -> Result<Vec<tokio::net::TcpListener>> {
    let mut out = Vec::new();
    let mut port = None;
    for addr in listen {
        let mut addr = *addr;
        // With port 0, every listener shares the port the first one got.
        if addr.port() == 0 {
            if let Some(p) = port {
                addr.set_port(p);
            }
        }
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        port.get_or_insert(l.local_addr().map(|a| a.port()).unwrap_or(0));
        out.push(l);
    }
    Ok(out)
}

fn split_host_port(text: &str) -> Result<(String, u16)> {
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("advertised address {text:?}: expected host:port"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("advertised address {text:?}: bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("advertised address {text:?}: empty host");
    }
    Ok((host.to_string(), port))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("Shutdown requested");
}
