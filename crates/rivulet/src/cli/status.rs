//! `rivulet status`: a one-screen summary of the cluster.

use anyhow::Result;
use clap::Args;
use rdkafka::admin::ResourceSpecifier;
use rdkafka::consumer::Consumer;
use serde::Serialize;
use serde_json::Value;

use super::admin_http::HttpArgs;
use super::output::{emit, emit_json, key_values, or_dash};
use super::{runtime, ConnArgs, Format};

/// The read-only broker config through which a broker may report its software version.
const VERSION_CONFIG: &str = "rivulet.version";
/// The read-only broker config through which a Rivulet broker reports its partitions' bytes.
const DISK_CONFIG: &str = "rivulet.log.dirs.size.bytes";

/// Arguments of `rivulet status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Address of a Rivulet's HTTP gateway, to add its listeners (Kafka, AMQP, up or
    /// down), AMQP connections, queues and exchanges
    #[arg(long = "http", env = "RIVULET_HTTP", value_name = "HOST:PORT")]
    http: Option<String>,
}

#[derive(Debug, Serialize)]
struct BrokerOut {
    id: i32,
    address: String,
}

#[derive(Debug, Serialize)]
struct Status {
    bootstrap: String,
    brokers: Vec<BrokerOut>,
    cluster_id: Option<String>,
    version: Option<String>,
    topics: usize,
    partitions: usize,
    groups: usize,
    /// Bytes of all partitions, from a Rivulet broker's `rivulet.log.dirs.size.bytes`
    /// config; other brokers do not report it.
    disk_use_bytes: Option<u64>,
    /// What a Rivulet broker's HTTP gateway (`--http`) reports beyond Kafka: every
    /// listener with its state, AMQP connections, queues and exchanges (when `--http` is
    /// given).
    rivulet: Option<Value>,
}

/// Runs `rivulet status`.
pub fn run(args: StatusArgs) -> Result<()> {
    let conn = &args.conn;
    let consumer = conn.consumer(None)?;
    let metadata = conn.metadata(&consumer)?;
    let cluster_id = consumer.client().fetch_cluster_id(conn.timeout());
    let groups = consumer
        .fetch_group_list(None, conn.timeout())
        .map_err(|e| conn.error(e, "listing groups"))?
        .groups()
        .len();
    let mut brokers: Vec<BrokerOut> = metadata
        .brokers()
        .iter()
        .map(|b| BrokerOut {
            id: b.id(),
            address: format!("{}:{}", b.host(), b.port()),
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    let (version, disk_use_bytes) = match brokers.first() {
        Some(b) => broker_info(conn, b.id),
        None => (None, None),
    };
    let topics = metadata.topics().iter().filter(|t| t.error().is_none());
    let (topic_count, partitions) =
        topics.fold((0, 0), |(t, p), topic| (t + 1, p + topic.partitions().len()));
    let status = Status {
        bootstrap: conn.brokers.clone(),
        brokers,
        cluster_id,
        version,
        topics: topic_count,
        partitions,
        groups,
        disk_use_bytes,
        rivulet: match &args.http {
            Some(address) => Some(
                HttpArgs {
                    address: address.clone(),
                    user: std::env::var("RIVULET_HTTP_USER").ok(),
                    password: std::env::var("RIVULET_HTTP_PASSWORD").ok(),
                    ca: std::env::var_os("RIVULET_HTTP_CA").map(Into::into),
                }
                .call("GET", "/v1/status", conn.timeout())?,
            ),
            None => None,
        },
    };
    match conn.format {
        Format::Json => emit_json(&status),
        Format::Text => {
            let addresses: Vec<String> = status
                .brokers
                .iter()
                .map(|b| format!("{} (node {})", b.address, b.id))
                .collect();
            let mut pairs = vec![
                ("broker", addresses.join(", ")),
                ("cluster-id", or_dash(status.cluster_id.clone())),
                ("version", or_dash(status.version.clone())),
                ("topics", status.topics.to_string()),
                ("partitions", status.partitions.to_string()),
                ("groups", status.groups.to_string()),
                ("disk-use", or_dash(status.disk_use_bytes)),
            ];
            if let Some(r) = &status.rivulet {
                pairs.extend(rivulet_pairs(r));
            }
            emit(&key_values(&pairs))
        }
    }
}

/// Listeners, AMQP connections, queues and exchanges from a Rivulet's `/v1/status`.
fn rivulet_pairs(status: &Value) -> Vec<(&'static str, String)> {
    let listeners: Vec<String> = status["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let state = if l["up"] == true { "up" } else { "DOWN" };
            let address = l["address"].as_str().unwrap_or("?");
            let protocol = l["protocol"].as_str().unwrap_or("?");
            match l["error"].as_str() {
                Some(e) => format!("{protocol} {address} {state} ({e})"),
                None => format!("{protocol} {address} {state}"),
            }
        })
        .collect();
    let count = |key: &str| {
        status[key]
            .as_i64()
            .map_or_else(|| "-".to_string(), |n| n.to_string())
    };
    vec![
        ("listeners", listeners.join(", ")),
        ("amqp-connections", count("amqp_connections")),
        ("amqp-channels", count("amqp_channels")),
        ("queues", count("queues")),
        ("exchanges", count("exchanges")),
        ("alarm", status["alarm"].as_str().unwrap_or("none").to_string()),
    ]
}

/// The broker's software version and disk use, where it reports them as broker configs.
fn broker_info(conn: &ConnArgs, broker_id: i32) -> (Option<String>, Option<u64>) {
    let fetch = || {
        let admin = conn.admin().ok()?;
        let spec = ResourceSpecifier::Broker(broker_id);
        let results = runtime()
            .ok()?
            .block_on(admin.describe_configs([&spec], &conn.admin_options()))
            .ok()?;
        results.into_iter().next()?.ok()
    };
    let Some(resource) = fetch() else {
        return (None, None);
    };
    let version = resource.get(VERSION_CONFIG).and_then(|e| e.value.clone());
    let disk = resource
        .get(DISK_CONFIG)
        .and_then(|e| e.value.as_deref())
        .and_then(|v| v.parse().ok());
    (version, disk)
}
