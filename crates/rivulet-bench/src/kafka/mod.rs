//! `rivulet bench kafka`: drives any Kafka-compatible broker through librdkafka with N
//! producers and M consumers (one group) over one topic per durability level, through the
//! shared run loop ([`crate::run`]), and measures the same machine's raw limits in the same
//! run, so results read as fractions of them.
//!
//! On a Rivulet broker (recognised by its `rivulet.version` broker config) D0 and D1 are the
//! topic's `fsync.policy` (`none`, `always`); on another broker they are the topic configs
//! given with `--d0-configs` and `--d1-configs`, and D1 without them is not controllable.

mod client;
mod conn;
mod native;

use std::sync::Arc;

use clap::Args;
use rdkafka::config::ClientConfig;

use self::conn::parse_key_value;
pub use self::conn::KafkaConn;
pub use self::native::request_once;
use crate::baseline::{run_baselines, Baseline};
use crate::ctx::{ConsumerCtx, ProducerCtx};
use crate::driver::{Driver, Prepared, Setup};
use crate::error::{bail, Context, Result};
use crate::report::{CatchUp, Report};
use crate::run::{self, default_prefix, Target};
use crate::workload::{Durability, WorkloadArgs};

/// librdkafka's producer queue, per producer: bounds the backlog a max-rate run builds up.
const PRODUCER_QUEUE_KIB_MAX: u64 = 65_536;
/// Most topics one run creates per durability level.
const TOPICS_MAX: usize = 10_000;
/// Topics created (or deleted) per admin request.
const TOPICS_PER_REQUEST: usize = 100;
/// The configuration key of a topic's fsync policy on a Rivulet broker.
const RIVULET_FSYNC_KEY: &str = "fsync.policy";

/// Arguments of `rivulet bench kafka`.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// How to reach the broker, and the output format.
    #[command(flatten)]
    pub conn: KafkaConn,
    /// The workload.
    #[command(flatten)]
    pub load: WorkloadArgs,
    /// librdkafka batch.size: most bytes per partition batch
    #[arg(long, default_value_t = 1_000_000, value_name = "BYTES")]
    pub batch_size: usize,
    /// librdkafka linger.ms: how long a batch may wait to fill
    #[arg(long, default_value_t = 1, value_name = "MS")]
    pub linger_ms: u64,
    /// Producer acks: all, 1 or 0
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Topic config KEY=VALUE for D0 on a non-Rivulet broker (repeatable) [default: broker default]
    #[arg(long = "d0-configs", value_name = "KEY=VALUE")]
    pub d0_configs: Vec<String>,
    /// Topic config KEY=VALUE that makes a non-Rivulet broker fsync before acking (repeatable);
    /// without it D1 is reported as not controllable
    #[arg(long = "d1-configs", value_name = "KEY=VALUE")]
    pub d1_configs: Vec<String>,
    /// Kafka client: librdkafka, or native (a minimal producer and consumer written on the
    /// kafka-protocol crate, for thousands of partitions where librdkafka's per-partition
    /// work saturates the load generator; first bootstrap address only)
    #[arg(long, value_enum, default_value = "librdkafka")]
    pub client: ClientKind,
    /// Topics per durability level, each with --partitions partitions; records go to them
    /// in turn and every consumer subscribes to all of them
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub topics: usize,
    /// Topic name prefix [default: rivulet-bench-<pid>]
    #[arg(long)]
    pub topic: Option<String>,
    /// Keep the benchmark topics instead of deleting them after each run
    #[arg(long)]
    pub keep: bool,
    /// After each run, read everything it produced with one consumer from the first
    /// offset, as fast as the broker serves it, and report the rate (catch-up from the page
    /// cache)
    #[arg(long)]
    pub catch_up: bool,
    /// librdkafka producers become transactional and commit a transaction every N records
    /// (the last one at the end of the run); acks=all and idempotence are implied
    #[arg(long, value_name = "N")]
    pub transaction_records: Option<usize>,
    /// librdkafka enable.idempotence (implied by --transaction-records)
    #[arg(long)]
    pub idempotent: bool,
    /// Consumers' isolation.level: read_committed (librdkafka's default) or
    /// read_uncommitted
    #[arg(long, default_value = "read_committed")]
    pub isolation: String,
}

/// Which Kafka client drives the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// librdkafka (through rust-rdkafka), what most applications use.
    Librdkafka,
    /// The benchmark's own minimal client.
    Native,
}

impl KafkaArgs {
    /// The arguments `rivulet bench compare` measures a Rivulet at `brokers` with: the
    /// command line's defaults and `load`.
    pub fn with_defaults(brokers: &str, load: &WorkloadArgs) -> KafkaArgs {
        KafkaArgs {
            conn: KafkaConn::to(brokers),
            load: load.clone(),
            batch_size: 1_000_000,
            linger_ms: 1,
            acks: "all".to_string(),
            d0_configs: Vec::new(),
            d1_configs: Vec::new(),
            client: ClientKind::Librdkafka,
            topics: 1,
            topic: None,
            keep: false,
            catch_up: false,
            transaction_records: None,
            idempotent: false,
            isolation: "read_committed".to_string(),
        }
    }

    /// Fails with [`crate::BenchError::Config`] when a setting is out of range.
    pub fn validate(&self) -> Result<()> {
        self.load.validate()?;
        if self.batch_size == 0 {
            bail!(config, "--batch-size must be at least 1 byte");
        }
        if !(1..=TOPICS_MAX).contains(&self.topics) {
            bail!(config, "--topics must be between 1 and {TOPICS_MAX}");
        }
        if !matches!(self.acks.as_str(), "all" | "-1" | "1" | "0") {
            bail!(config, "--acks must be all, 1 or 0");
        }
        if !matches!(self.isolation.as_str(), "read_committed" | "read_uncommitted") {
            bail!(config, "--isolation must be read_committed or read_uncommitted");
        }
        if let Some(n) = self.transaction_records {
            if n == 0 || self.client == ClientKind::Native || !matches!(self.acks.as_str(), "all" | "-1") {
                bail!(
                    config,
                    "--transaction-records needs N >= 1, --client librdkafka and --acks all"
                );
            }
        }
        for c in self.d0_configs.iter().chain(&self.d1_configs) {
            parse_key_value(c)?;
        }
        Ok(())
    }
}

/// Runs `rivulet bench kafka`: the baselines (unless `--baseline false`), then every
/// durability level.
pub fn run(args: &KafkaArgs) -> Result<Report> {
    args.validate()?;
    let baseline = if args.load.baseline {
        // Disk writes of one full producer batch.
        let write_size = (args.batch_size / args.load.record_size).max(1) * args.load.record_size;
        Some(run_baselines(&args.load, write_size)?)
    } else {
        None
    };
    measure(args, baseline)
}

/// Runs every durability level of `args` against a Kafka-compatible broker; `baseline` is
/// the machine's limits measured earlier in the same run, if any.
pub fn measure(args: &KafkaArgs, baseline: Option<Baseline>) -> Result<Report> {
    args.validate()?;
    let driver = KafkaDriver {
        is_rivulet: args.conn.broker_is_rivulet()?,
        args: args.clone(),
    };
    let target = Target {
        server: args.conn.brokers.clone(),
        client: match args.client {
            ClientKind::Librdkafka => format!(
                "librdkafka acks={} batch.size={} linger.ms={}{}{} isolation.level={}",
                args.acks,
                args.batch_size,
                args.linger_ms,
                if args.idempotent { " idempotent" } else { "" },
                args.transaction_records
                    .map(|n| format!(" transactions of {n} records"))
                    .unwrap_or_default(),
                args.isolation
            ),
            ClientKind::Native => format!(
                "native acks=all linger.ms={}, {} requests in flight, {} topics",
                args.linger_ms,
                native::IN_FLIGHT_REQUESTS_MAX,
                args.topics
            ),
        },
        prefix: args.topic.clone().unwrap_or_else(default_prefix),
    };
    run::measure(driver, &args.load, &target, baseline)
}

/// The Kafka driver: one topic per level, librdkafka clients on blocking threads.
#[derive(Debug)]
struct KafkaDriver {
    args: KafkaArgs,
    /// Rivulet sets durability per topic through `fsync.policy`.
    is_rivulet: bool,
}

impl KafkaDriver {
    fn producer_config(&self) -> Result<ClientConfig> {
        let args = &self.args;
        let mut cfg = args.conn.client_config();
        cfg.set("client.id", "rivulet-bench")
            .set("acks", &args.acks)
            .set("batch.size", args.batch_size.to_string())
            .set("linger.ms", args.linger_ms.to_string())
            .set("queue.buffering.max.kbytes", PRODUCER_QUEUE_KIB_MAX.to_string());
        if args.batch_size > 1_000_000 {
            cfg.set("message.max.bytes", (args.batch_size + 65_536).to_string());
        }
        if args.idempotent {
            cfg.set("enable.idempotence", "true");
        }
        args.conn.finish(cfg)
    }

    /// Every partition of `topics`, topic by topic.
    fn topic_partitions(&self, topics: &[String]) -> Vec<native::TopicPartition> {
        let partitions = self.args.load.partitions.max(1);
        topics
            .iter()
            .flat_map(|t| (0..partitions).map(move |p| (t.clone(), p)))
            .collect()
    }

    fn consumer_config(&self, group: &str) -> Result<ClientConfig> {
        let mut cfg = self.args.conn.client_config();
        cfg.set("client.id", "rivulet-bench")
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", &self.args.isolation);
        self.args.conn.finish(cfg)
    }
}

impl Driver for KafkaDriver {
    fn name(&self) -> &'static str {
        if self.is_rivulet {
            "rivulet"
        } else {
            "kafka-compatible"
        }
    }

    async fn prepare(&self, level: Durability, name: &str, partitions: usize) -> Result<Setup> {
        let configs = match (level, self.is_rivulet) {
            (Durability::D0, true) => vec![format!("{RIVULET_FSYNC_KEY}=none")],
            (Durability::D1, true) => vec![format!("{RIVULET_FSYNC_KEY}=always")],
            (Durability::D0, false) => self.args.d0_configs.clone(),
            (Durability::D1, false) if self.args.d1_configs.is_empty() => {
                return Ok(Setup::Unavailable(Vec::new()))
            }
            (Durability::D1, false) => self.args.d1_configs.clone(),
        };
        let topics: Vec<String> = if self.args.topics == 1 {
            vec![name.to_string()]
        } else {
            (0..self.args.topics).map(|i| format!("{name}-{i}")).collect()
        };
        for chunk in topics.chunks(TOPICS_PER_REQUEST) {
            self.args.conn.create_topics(chunk, partitions, &configs).await?;
        }
        Ok(Setup::Ready(Prepared {
            partitions: partitions * topics.len(),
            destinations: topics,
            settings: configs,
        }))
    }

    /// Every consumer subscribes to the topic; the group spreads the partitions.
    fn consumer_destinations(&self, prepared: &Prepared, _index: usize, _consumers: usize) -> Vec<String> {
        prepared.destinations.clone()
    }

    async fn produce(self: Arc<Self>, ctx: ProducerCtx) -> Result<()> {
        if self.args.client == ClientKind::Native {
            let tps = Arc::new(self.topic_partitions(ctx.destinations()));
            let linger = std::time::Duration::from_millis(self.args.linger_ms);
            return native::produce(&self.args.conn.brokers, tps, linger, ctx).await;
        }
        let mut config = self.producer_config()?;
        let every = self.args.transaction_records;
        if every.is_some() {
            let id = format!("rivulet-bench-{:x}-{}", ctx.run_id(), ctx.index());
            config.set("transactional.id", id);
        }
        tokio::task::spawn_blocking(move || client::produce(&config, every, ctx))
            .await
            .context("a producer thread failed")?
    }

    async fn consume(self: Arc<Self>, ctx: ConsumerCtx) -> Result<()> {
        if self.args.client == ClientKind::Native {
            let consumers = self.args.load.consumers.max(1);
            let tps: Vec<_> = self
                .topic_partitions(ctx.destinations())
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % consumers == ctx.index())
                .map(|(_, tp)| tp)
                .collect();
            return native::consume(&self.args.conn.brokers, tps, ctx).await;
        }
        let first = ctx.destinations().first().cloned().unwrap_or_default();
        let config = self.consumer_config(&format!("{first}-{:x}", ctx.run_id()))?;
        tokio::task::spawn_blocking(move || client::consume(&self.args.conn, &config, ctx))
            .await
            .context("a consumer thread failed")?
    }

    async fn catch_up(&self, prepared: &Prepared) -> Result<Option<CatchUp>> {
        if !self.args.catch_up {
            return Ok(None);
        }
        let tps = self.topic_partitions(&prepared.destinations);
        native::catch_up(&self.args.conn.brokers, &tps).await.map(Some)
    }

    async fn cleanup(&self, prepared: &Prepared) -> Result<()> {
        if self.args.keep {
            return Ok(());
        }
        for chunk in prepared.destinations.chunks(TOPICS_PER_REQUEST) {
            self.args.conn.delete_topics(chunk).await?;
        }
        Ok(())
    }
}
