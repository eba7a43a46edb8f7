//! Operator commands (`topic`, `produce`, `consume`, `group`, `txn`, `status`). They speak the Kafka
//! protocol through librdkafka, so they work against Rivulet and against any Kafka cluster.
//! `queue` and `exchange` use Rivulet's HTTP admin API: Kafka has no words for them.

mod acl;
mod admin_http;
mod bench;
mod cert;
mod consume;
mod dlq;
mod group;
mod job;
mod offsets;
mod output;
mod produce;
mod queue;
mod status;
mod stream;
mod topic;
mod topic_producers;
mod txn;
mod user;

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;

/// Operator commands, flattened into the top-level `rivulet` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe, delete and configure topics.
    Topic(topic::TopicArgs),
    /// Produce records from stdin, one per line, and print where each landed.
    Produce(produce::ProduceArgs),
    /// Consume records and print one JSON object (or a format string) per record.
    Consume(consume::ConsumeArgs),
    /// List, describe, delete consumer groups and move their committed offsets.
    Group(group::GroupArgs),
    /// Show the broker's address, cluster, topics, partitions and groups.
    Status(status::StatusArgs),
    /// List and describe transactions (transactional ids, their state and partitions).
    Txn(txn::TxnArgs),
    /// List and redrive dead letters of services built on the Rivulet SDK.
    Dlq(dlq::DlqArgs),
    /// Benchmark a Kafka-compatible broker against this machine's disk and loopback limits.
    Bench(bench::BenchArgs),
    /// List, describe, purge and delete queues (AMQP), through the HTTP admin API.
    Queue(queue::QueueArgs),
    /// List, describe and delete exchanges (AMQP), through the HTTP admin API.
    Exchange(queue::ExchangeArgs),
    /// List, read, append to and delete event store streams, through the HTTP API.
    Stream(stream::StreamArgs),
    /// List and describe stream processing jobs (status, lag, watermark, late records),
    /// through the HTTP API.
    Job(job::JobArgs),
    /// Create, list and delete the users logins check (`rivulet serve --auth`), through the
    /// HTTP admin API.
    User(user::UserArgs),
    /// Create, list and delete the ACLs every front end enforces once logins are on, through
    /// the HTTP admin API.
    Acl(acl::AclArgs),
    /// Make TLS certificates for trying TLS and mutual TLS locally (`cert dev`).
    Cert(cert::CertArgs),
}

/// Runs an operator command.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Topic(args) => topic::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Group(args) => group::run(args),
        Command::Status(args) => status::run(args),
        Command::Txn(args) => txn::run(args),
        Command::Dlq(args) => dlq::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Queue(args) => queue::run_queue(args),
        Command::Exchange(args) => queue::run_exchange(args),
        Command::Stream(args) => stream::run(args),
        Command::Job(args) => job::run(args),
        Command::User(args) => user::run_user(args),
        Command::Acl(args) => acl::run_acl(args),
        Command::Cert(args) => cert::run_cert(args),
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Borderless tables with uppercase headers.
    Text,
    /// JSON documents (one per line for streams).
    Json,
}

/// Connection and output settings shared by every operator command.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Kafka bootstrap servers, comma-separated host:port
    #[arg(
        short = 'b',
        long,
        env = "RIVULET_BROKERS",
        default_value = "localhost:9092",
        global = true,
        value_name = "HOST:PORT,..."
    )]
    pub brokers: String,

    /// Output format: text or json (consume always prints one JSON object per record unless -f is given)
    #[arg(
        long,
        value_enum,
        default_value = "text",
        global = true,
        hide_possible_values = true
    )]
    pub format: Format,

    /// How long to wait for the broker on each request, in seconds
    #[arg(long, default_value_t = 10, global = true, value_name = "SECS")]
    pub timeout: u64,

    /// librdkafka client property KEY=VALUE, applied last (repeatable), e.g.
    /// -X security.protocol=sasl_plaintext -X sasl.mechanism=PLAIN
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE")]
    pub client_properties: Vec<String>,
}

impl ConnArgs {
    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }

    /// Client settings every client gets.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("client.id", "rivulet-cli")
            .set("socket.timeout.ms", (self.timeout().as_millis()).to_string())
            .set("allow.auto.create.topics", "false");
        cfg
    }

    /// `cfg` with the `-X` properties applied on top.
    pub fn finish(&self, mut cfg: ClientConfig) -> Result<ClientConfig> {
        for property in &self.client_properties {
            match property.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    cfg.set(k.trim(), v);
                }
                _ => bail!("invalid -X {property:?}: expected KEY=VALUE"),
            }
        }
        Ok(cfg)
    }

    /// A consumer for metadata, offsets and groups; `group` sets `group.id`.
    pub fn consumer(&self, group: Option<&str>) -> Result<BaseConsumer> {
        let mut cfg = self.client_config();
        cfg.set("enable.auto.commit", "false");
        if let Some(g) = group {
            cfg.set("group.id", g);
        }
        self.finish(cfg)?
            .create()
            .map_err(|e| anyhow!("cannot create a Kafka client: {e}; check -b/--brokers and -X"))
    }

    /// An admin client.
    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        self.finish(self.client_config())?
            .create()
            .map_err(|e| anyhow!("cannot create a Kafka admin client: {e}; check -b/--brokers and -X"))
    }

    /// Admin request options with this command's timeout.
    pub fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout()))
            .operation_timeout(Some(self.timeout()))
    }

    /// The first address of `-b/--brokers`, for requests librdkafka does not offer.
    pub fn first_broker(&self) -> Result<String> {
        self.brokers
            .split(',')
            .next()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no broker address in -b/--brokers"))
    }

    /// Sends one Kafka request at `version` to the first broker and waits for its answer,
    /// within the command's timeout.
    pub async fn ask<R: kafka_protocol::protocol::Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response> {
        let address = self.first_broker()?;
        let call = rivulet_bench::kafka::request_once(&address, request, version);
        tokio::time::timeout(self.timeout(), call)
            .await
            .map_err(|_| anyhow!("{address} did not answer within {} s", self.timeout().as_secs()))?
            .map_err(|e| anyhow!("{e}"))
    }

    /// Metadata of all topics; fails with a hint when no broker answers.
    pub fn metadata(&self, consumer: &BaseConsumer) -> Result<Metadata> {
        consumer
            .fetch_metadata(None, self.timeout())
            .map_err(|e| self.error(e, "fetching cluster metadata"))
    }

    /// Turns a client error into a message that says what failed and what to do.
    pub fn error(&self, e: KafkaError, doing: &str) -> anyhow::Error {
        let code = match &e {
            KafkaError::AdminOp(code) => Some(*code),
            _ => e.rdkafka_error_code(),
        };
        match code {
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::BrokerNotAvailable
                | RDKafkaErrorCode::NetworkException,
            ) => anyhow!(
                "{doing}: no broker at {} answered within {}s ({e}); check that the server is \
                 running and that -b/--brokers (or RIVULET_BROKERS) names its Kafka address",
                self.brokers,
                self.timeout().as_secs()
            ),
            Some(RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion) => {
                anyhow!("{doing}: the broker does not implement the Kafka request this needs ({e})")
            }
            _ => anyhow!("{doing}: {e}"),
        }
    }
}

/// A single-threaded runtime to drive admin futures.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))
}

/// A short hint for an error code returned by a broker for one resource.
pub fn code_hint(code: RDKafkaErrorCode) -> &'static str {
    match code {
        RDKafkaErrorCode::TopicAlreadyExists => "",
        RDKafkaErrorCode::UnknownTopicOrPartition => "list topics with `rivulet topic list`",
        RDKafkaErrorCode::InvalidPartitions => "use a partition count of at least 1 (-p N)",
        RDKafkaErrorCode::InvalidReplicationFactor => {
            "use a replication factor no larger than the number of brokers (-r N)"
        }
        RDKafkaErrorCode::InvalidConfig => "check the -c key=value settings",
        RDKafkaErrorCode::InvalidTopic => {
            "topic names use letters, digits, '.', '_' and '-' (at most 249 characters)"
        }
        RDKafkaErrorCode::PolicyViolation => "the broker refused by policy or a limit",
        RDKafkaErrorCode::NonEmptyGroup => "stop the group's consumers first",
        RDKafkaErrorCode::GroupIdNotFound => "list groups with `rivulet group list`",
        RDKafkaErrorCode::UnsupportedVersion | RDKafkaErrorCode::UnsupportedFeature => {
            "the broker does not implement this request"
        }
        _ => "",
    }
}

/// `message; hint` or just the message.
pub fn with_hint(code: RDKafkaErrorCode) -> String {
    let hint = code_hint(code);
    if hint.is_empty() {
        code.to_string()
    } else {
        format!("{code}; {hint}")
    }
}
