//! `rivulet serve`'s settings: each from a flag, else its environment variable, else the
//! config file, else the library's default (`BrokerConfig`, `LogConfig`, `ServerConfig`,
//! `GatewayConfig`), resolved once before anything starts.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use rivulet_broker::BrokerConfig;
use rivulet_http::GatewayConfig;
use rivulet_kafka::{HandlerConfig, SecurityProtocol, ServerConfig};
use rivulet_log::FsyncPolicy;
use serde::Deserialize;

const DEFAULT_LISTEN: &[&str] = &["127.0.0.1:9092", "[::1]:9092"];
const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_AMQP_LISTEN: &[&str] = &["127.0.0.1:5672", "[::1]:5672"];
const DEFAULT_EVENTSTORE_LISTEN: &str = "127.0.0.1:2113";

/// Settings of `rivulet serve`. Each comes from a flag, else its environment variable, else
/// the config file (same names in snake_case, e.g. `data_dir = "/var/lib/rivulet"`), else
/// the default shown. Log verbosity follows `RUST_LOG` (default `info`).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file with any of the settings below (snake_case keys).
    #[arg(long, env = "RIVULET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Addresses to listen on for Kafka clients, comma-separated, each optionally with
    /// Kafka's security protocol: PLAINTEXT://, SSL://, SASL_PLAINTEXT://, SASL_SSL://
    /// (without one: TLS with --tls-cert, SASL with --auth)
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

    /// Addresses to listen on for AMQP 0-9-1 clients (RabbitMQ applications),
    /// comma-separated; `off` disables it. A busy default port only warns; a busy address
    /// given here is an error [default: 127.0.0.1:5672,[::1]:5672]
    #[arg(long, env = "RIVULET_AMQP_LISTEN", value_name = "ADDR,...|off")]
    amqp_listen: Option<String>,

    /// Address of the event store's KurrentDB-compatible gRPC API (`kurrentdb://` clients);
    /// `off` disables it. A busy default port only warns [default: 127.0.0.1:2113]
    #[arg(long, env = "RIVULET_EVENTSTORE_LISTEN", value_name = "ADDR|off")]
    eventstore_listen: Option<String>,

    /// Largest HTTP request body accepted [default: 8388608]
    #[arg(long, env = "RIVULET_HTTP_BODY_BYTES_MAX", value_name = "BYTES")]
    http_body_bytes_max: Option<usize>,

    /// Threads that run fdatasync for all partitions together [default: 4 per CPU, 4-64]
    #[arg(long, env = "RIVULET_FLUSH_THREADS", value_name = "N")]
    flush_threads: Option<usize>,

    /// Make `fsync=always` appends durable through the shared journal: one durable write
    /// per commit for any number of partitions, instead of an fdatasync per partition
    /// [default: true]
    #[arg(long, env = "RIVULET_JOURNAL", value_name = "BOOL")]
    journal: Option<bool>,

    /// Log output format: text (colours only on a terminal, never with NO_COLOR) or json
    /// [default: text]
    #[arg(long, env = "RIVULET_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,

    /// How long the first rebalance of a new consumer group waits for more members, so
    /// consumers started together share it (Kafka's group.initial.rebalance.delay.ms)
    /// [default: 3000]
    #[arg(long, env = "RIVULET_GROUP_INITIAL_REBALANCE_DELAY_MS", value_name = "MS")]
    group_initial_rebalance_delay_ms: Option<u64>,

    /// How often members of consumer-protocol groups (KIP-848, group.protocol=consumer)
    /// heartbeat (Kafka's group.consumer.heartbeat.interval.ms) [default: 5000]
    #[arg(long, env = "RIVULET_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", value_name = "MS")]
    group_consumer_heartbeat_interval_ms: Option<u64>,

    /// A consumer-protocol group member silent this long is removed (Kafka's
    /// group.consumer.session.timeout.ms) [default: 45000]
    #[arg(long, env = "RIVULET_GROUP_CONSUMER_SESSION_TIMEOUT_MS", value_name = "MS")]
    group_consumer_session_timeout_ms: Option<u64>,

    /// Where a share group starts reading a partition it never read: latest (records
    /// produced from then on, as Kafka's share.auto.offset.reset) or earliest
    /// [default: latest]
    #[arg(long, env = "RIVULET_SHARE_AUTO_OFFSET_RESET", value_name = "WHERE")]
    share_auto_offset_reset: Option<String>,

    /// How long a share group member holds a record it acquired before it is offered again
    /// (Kafka's group.share.record.lock.duration.ms) [default: 30000]
    #[arg(long, env = "RIVULET_SHARE_RECORD_LOCK_MS", value_name = "MS")]
    share_record_lock_ms: Option<u64>,

    /// Free bytes of the data directory's file system below which AMQP publishers are held
    /// back (connection.blocked) until space is freed; 0 turns the disk alarm off
    /// [default: 50000000]
    #[arg(long, env = "RIVULET_DISK_FREE_MIN_BYTES", value_name = "BYTES")]
    disk_free_min_bytes: Option<u64>,

    /// Require a login on every listener: Kafka SASL (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN),
    /// AMQP PLAIN/AMQPLAIN, HTTP basic auth, all with the users of `rivulet user`. With no
    /// user yet, RIVULET_BOOTSTRAP_USER and RIVULET_BOOTSTRAP_PASSWORD create the first
    /// [default: false]
    #[arg(long, env = "RIVULET_AUTH", value_name = "BOOL")]
    auth: Option<bool>,

    /// Users allowed everything whatever the ACLs say (Kafka's super.users), comma-separated.
    /// Everyone else needs ACLs (`rivulet acl`, or Kafka's CreateAcls) once --auth is on
    #[arg(
        long,
        env = "RIVULET_SUPERUSERS",
        value_name = "USER,...",
        value_delimiter = ','
    )]
    superusers: Option<Vec<String>>,

    /// Allow listening on addresses other than loopback without --auth (anyone who can
    /// reach the port can then read, write and delete everything) [default: false]
    #[arg(long, env = "RIVULET_INSECURE", value_name = "BOOL")]
    insecure: Option<bool>,

    /// PEM certificate chain for TLS on every listener (Kafka SSL/SASL_SSL, amqps, HTTPS);
    /// read again when it changes. `rivulet cert dev` makes one for trying it
    #[arg(long, env = "RIVULET_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert
    #[arg(long, env = "RIVULET_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// PEM CA certificates: with it, every TLS client must present a certificate that
    /// chains to them (mutual TLS)
    #[arg(
        long,
        env = "RIVULET_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,
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
    amqp_listen: Option<String>,
    eventstore_listen: Option<String>,
    http_body_bytes_max: Option<usize>,
    flush_threads: Option<usize>,
    journal: Option<bool>,
    log_format: Option<String>,
    group_initial_rebalance_delay_ms: Option<u64>,
    group_consumer_heartbeat_interval_ms: Option<u64>,
    group_consumer_session_timeout_ms: Option<u64>,
    share_auto_offset_reset: Option<String>,
    share_record_lock_ms: Option<u64>,
    disk_free_min_bytes: Option<u64>,
    auth: Option<bool>,
    superusers: Option<Vec<String>>,
    insecure: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines; colours only when stderr is a terminal and NO_COLOR is unset.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything `rivulet serve` runs with.
#[derive(Debug)]
pub(crate) struct Settings {
    pub broker: BrokerConfig,
    /// The Kafka listener; `handler.advertised_*` is final only once the listeners are bound
    /// (see [`Settings::advertised`]).
    pub kafka: ServerConfig,
    /// `host:port` given for clients, if any.
    pub advertised: Option<String>,
    /// The HTTP gateway's address, `None` when it is off.
    pub http: Option<SocketAddr>,
    pub gateway: GatewayConfig,
    /// The AMQP listener's addresses (empty: off); `explicit` when the user chose them.
    pub amqp: AmqpSettings,
    /// The event store's gRPC address (`None`: off) and whether the user chose it.
    pub eventstore: Option<(SocketAddr, bool)>,
    pub log_format: LogFormat,
    /// TLS for every listener, when configured.
    pub tls: Option<rivulet_tls::TlsFiles>,
}

/// Where the AMQP front end listens.
#[derive(Debug, Clone)]
pub(crate) struct AmqpSettings {
    pub listen: Vec<SocketAddr>,
    /// Given by the user: a busy address is an error rather than a warning.
    pub explicit: bool,
    pub config: rivulet_amqp::AmqpConfig,
}

impl Settings {
    /// Resolves every setting from flags, environment, the config file and defaults.
    pub(crate) fn resolve(args: &ServeArgs) -> Result<Settings> {
        let file: FileConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        macro_rules! setting {
            ($name:ident) => {
                args.$name.clone().or(file.$name.clone())
            };
        }
        let log_format = match setting!(log_format).as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("log format {other:?}: expected text or json"),
        };
        let broker = broker_config(args, &file)?;
        let kafka = kafka_config(args, &file)?;
        let http = match setting!(http_listen)
            .as_deref()
            .unwrap_or(DEFAULT_HTTP_LISTEN)
            .trim()
        {
            "off" | "none" | "" => None,
            addr => Some(resolve(addr)?),
        };
        let defaults = GatewayConfig::default();
        let gateway = GatewayConfig {
            body_bytes_max: setting!(http_body_bytes_max).unwrap_or(defaults.body_bytes_max),
            ..defaults
        };
        let amqp = amqp_settings(setting!(amqp_listen))?;
        let eventstore = match setting!(eventstore_listen).as_deref().map(str::trim) {
            Some("off" | "none" | "") => None,
            Some(addr) => Some((resolve(addr)?, true)),
            None => Some((resolve(DEFAULT_EVENTSTORE_LISTEN)?, false)),
        };
        let exposed = kafka
            .listen
            .iter()
            .chain(&amqp.listen)
            .chain(&http)
            .chain(eventstore.as_ref().map(|(a, _)| a))
            .find(|a| !a.ip().is_loopback());
        let insecure = setting!(insecure).unwrap_or(false);
        let client_certificates = setting!(tls_client_ca).is_some();
        if broker.auth_required && !insecure {
            check_anonymous_listeners(&kafka, client_certificates)?;
        }
        if let Some(addr) = exposed {
            if !broker.auth_required && !insecure {
                bail!(
                    "refusing to listen on {addr} without authentication: anyone who can reach it could \
                     read, write and delete everything. Add --auth (with RIVULET_BOOTSTRAP_USER and \
                     RIVULET_BOOTSTRAP_PASSWORD for the first user), or pass --insecure true to accept it"
                );
            }
        }
        let tls = match (setting!(tls_cert), setting!(tls_key)) {
            (Some(cert), Some(key)) => Some(rivulet_tls::TlsFiles {
                cert,
                key,
                client_ca: setting!(tls_client_ca),
            }),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        Ok(Settings {
            tls,
            broker,
            kafka,
            amqp,
            eventstore,
            advertised: setting!(advertised_address),
            http,
            gateway,
            log_format,
        })
    }

    /// The host and port clients are told to connect to: the given advertised address, or
    /// the first bound listener (0.0.0.0 and :: become localhost).
    pub(crate) fn advertised(&self, first_bound: SocketAddr) -> Result<(String, u16)> {
        match &self.advertised {
            Some(a) => split_host_port(a),
            None => {
                let host = if first_bound.ip().is_unspecified() {
                    "localhost".to_string()
                } else {
                    first_bound.ip().to_string()
                };
                Ok((host, first_bound.port()))
            }
        }
    }
}

/// Kafka's default `group.initial.rebalance.delay.ms`.
const GROUP_INITIAL_REBALANCE_DELAY_MS: u64 = 3_000;

fn broker_config(args: &ServeArgs, file: &FileConfig) -> Result<BrokerConfig> {
    macro_rules! setting {
        ($name:ident) => {
            args.$name.clone().or(file.$name.clone())
        };
    }
    let defaults = BrokerConfig::default();
    let mut log = defaults.default_log_config.clone();
    if let Some(text) = setting!(fsync) {
        log.fsync = FsyncPolicy::parse(&text).context("--fsync")?;
    }
    if let Some(ms) = setting!(retention_ms) {
        log.retention_ms = u64::try_from(ms).ok();
    }
    if let Some(bytes) = setting!(retention_bytes) {
        log.retention_bytes = u64::try_from(bytes).ok();
    }
    log.segment_bytes = setting!(segment_bytes).unwrap_or(log.segment_bytes);
    log.max_batch_bytes = setting!(max_message_bytes).unwrap_or(log.max_batch_bytes);
    log.validate().context("topic defaults")?;
    let default_partitions = setting!(default_partitions).unwrap_or(defaults.default_partitions);
    if default_partitions == 0 {
        bail!("--default-partitions must be at least 1");
    }
    let flush_threads = setting!(flush_threads).unwrap_or(defaults.flush_threads);
    if flush_threads == 0 || flush_threads > rivulet_log::FLUSH_THREADS_MAX {
        bail!(
            "--flush-threads must be within [1, {}]",
            rivulet_log::FLUSH_THREADS_MAX
        );
    }
    Ok(BrokerConfig {
        data_dir: setting!(data_dir).unwrap_or(defaults.data_dir.clone()),
        auto_create_topics: setting!(auto_create_topics).unwrap_or(defaults.auto_create_topics),
        default_partitions,
        default_log_config: log,
        flush_threads,
        journal: match setting!(journal) {
            Some(false) => None,
            _ => defaults.journal.clone(),
        },
        group_limits: rivulet_broker::GroupLimits {
            initial_rebalance_delay_ms: setting!(group_initial_rebalance_delay_ms)
                .unwrap_or(GROUP_INITIAL_REBALANCE_DELAY_MS),
            consumer_heartbeat_interval_ms: setting!(group_consumer_heartbeat_interval_ms)
                .unwrap_or(defaults.group_limits.consumer_heartbeat_interval_ms)
                .clamp(100, 600_000),
            consumer_session_timeout_ms: setting!(group_consumer_session_timeout_ms)
                .unwrap_or(defaults.group_limits.consumer_session_timeout_ms)
                .clamp(1_000, 1_800_000),
            share_start_at_earliest: match setting!(share_auto_offset_reset).as_deref() {
                None | Some("latest") => false,
                Some("earliest") => true,
                Some(other) => bail!("--share-auto-offset-reset {other:?}: expected earliest or latest"),
            },
            share_record_lock_ms: setting!(share_record_lock_ms)
                .unwrap_or(defaults.group_limits.share_record_lock_ms)
                .clamp(1_000, 3_600_000),
            ..defaults.group_limits.clone()
        },
        disk_free_min_bytes: setting!(disk_free_min_bytes).unwrap_or(defaults.disk_free_min_bytes),
        auth_required: setting!(auth).unwrap_or(false),
        superusers: setting!(superusers)
            .unwrap_or_default()
            .into_iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect(),
        ..defaults
    })
}

fn kafka_config(args: &ServeArgs, file: &FileConfig) -> Result<ServerConfig> {
    macro_rules! setting {
        ($name:ident) => {
            args.$name.clone().or(file.$name.clone())
        };
    }
    let defaults = ServerConfig::default();
    let handler = HandlerConfig::default();
    let listen_strings: Vec<String> = match setting!(listen) {
        Some(list) => list,
        None => DEFAULT_LISTEN
            .iter()
            .filter(|a| !a.starts_with('[') || ipv6_loopback_available())
            .map(|a| a.to_string())
            .collect(),
    };
    let mut listen = Vec::with_capacity(listen_strings.len());
    let mut protocols = Vec::with_capacity(listen_strings.len());
    for text in &listen_strings {
        let (protocol, addr) = split_protocol(text.trim())?;
        listen.push(resolve(addr)?);
        protocols.push(protocol);
    }
    if listen.is_empty() {
        bail!("no listen address given");
    }
    let config = ServerConfig {
        listen,
        protocols,
        handler: HandlerConfig {
            node_id: setting!(node_id).unwrap_or(handler.node_id),
            fetch_bytes_max: setting!(fetch_bytes_max).unwrap_or(handler.fetch_bytes_max),
            fetch_wait_ms_max: setting!(fetch_wait_ms_max).unwrap_or(handler.fetch_wait_ms_max),
            ..handler
        },
        request_bytes_max: setting!(request_bytes_max).unwrap_or(defaults.request_bytes_max),
        request_memory_bytes_max: setting!(request_memory_bytes_max)
            .unwrap_or(defaults.request_memory_bytes_max),
        connections_max: setting!(connections_max).unwrap_or(defaults.connections_max),
        idle_timeout_ms: setting!(idle_timeout_ms).unwrap_or(defaults.idle_timeout_ms),
        write_stall_timeout_ms: setting!(write_stall_timeout_ms).unwrap_or(defaults.write_stall_timeout_ms),
        shutdown_timeout_ms: setting!(shutdown_timeout_ms).unwrap_or(defaults.shutdown_timeout_ms),
        ..defaults
    };
    if config.request_bytes_max > config.request_memory_bytes_max {
        bail!(
            "request_bytes_max ({}) must not exceed request_memory_bytes_max ({})",
            config.request_bytes_max,
            config.request_memory_bytes_max
        );
    }
    if config.connections_max == 0 {
        bail!("connections_max must be at least 1");
    }
    Ok(config)
}

fn amqp_settings(listen: Option<String>) -> Result<AmqpSettings> {
    let config = rivulet_amqp::AmqpConfig::default();
    let (addrs, explicit): (Vec<String>, bool) = match listen.as_deref().map(str::trim) {
        Some("off" | "none" | "") => (Vec::new(), true),
        Some(list) => (list.split(',').map(|a| a.trim().to_string()).collect(), true),
        None => (
            DEFAULT_AMQP_LISTEN
                .iter()
                .filter(|a| !a.starts_with('[') || ipv6_loopback_available())
                .map(|a| a.to_string())
                .collect(),
            false,
        ),
    };
    let listen = addrs.iter().map(|a| resolve(a)).collect::<Result<Vec<_>>>()?;
    Ok(AmqpSettings {
        listen,
        explicit,
        config,
    })
}

fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// `SASL_SSL://host:port` into the protocol and the address; no prefix, no protocol.
fn split_protocol(text: &str) -> Result<(Option<SecurityProtocol>, &str)> {
    let Some((name, addr)) = text.split_once("://") else {
        return Ok((None, text));
    };
    let protocol = SecurityProtocol::parse(name).with_context(|| {
        format!("listener {text:?}: {name:?} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    })?;
    Ok((Some(protocol), addr))
}

/// With logins on, a listener chosen without SASL serves the anonymous user: only on
/// loopback, or with client certificates required, unless --insecure.
fn check_anonymous_listeners(kafka: &ServerConfig, client_certificates: bool) -> Result<()> {
    for (addr, protocol) in kafka.listen.iter().zip(&kafka.protocols) {
        let anonymous = match protocol {
            Some(SecurityProtocol::Plaintext) => true,
            Some(SecurityProtocol::Ssl) => !client_certificates,
            _ => false,
        };
        if anonymous && !addr.ip().is_loopback() {
            bail!(
                "refusing {}://{addr}: with --auth on, its clients would log in as nobody (User:ANONYMOUS). \
                 Use SASL_PLAINTEXT or SASL_SSL, SSL with --tls-client-ca, a loopback address, or --insecure true",
                protocol.map_or("", SecurityProtocol::name)
            );
        }
    }
    Ok(())
}

fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("listen address {addr:?}"))?
        .next()
        .with_context(|| format!("listen address {addr:?} resolves to nothing"))
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
