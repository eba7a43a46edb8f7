//! `rivulet bench`: the command line of the benchmark in the `rivulet-bench` crate, and the
//! printing of its reports (text or JSON).

mod render;

use anyhow::Result;
use clap::{Args, Subcommand};
use rivulet_bench::{kafka, Format};
use serde::Serialize;

use super::output::{emit, emit_json};

/// Arguments of `rivulet bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum Target {
    /// Benchmark a Kafka-compatible broker: N producers, M consumers (one group), one topic of P
    /// partitions created for the run, plus disk and loopback TCP baselines in the same run.
    Kafka(Box<kafka::KafkaArgs>),
    /// Benchmark NATS JetStream (async-nats): one file-backed stream per partition.
    #[cfg(feature = "peers")]
    Nats(Box<rivulet_bench::nats::NatsArgs>),
    /// Benchmark RabbitMQ streams (lapin, AMQP 0-9-1, publisher confirms): one stream per
    /// partition.
    #[cfg(feature = "peers")]
    RabbitmqStream(Box<rivulet_bench::rabbitmq::StreamArgs>),
    /// Benchmark RabbitMQ quorum queues (lapin, publisher confirms): one queue per partition.
    #[cfg(feature = "peers")]
    RabbitmqQuorum(Box<rivulet_bench::rabbitmq::QuorumArgs>),
    /// Rivulet, NATS JetStream and RabbitMQ side by side: each one's peak, then latency at
    /// fractions of it, with a chart.
    #[cfg(feature = "peers")]
    Compare(Box<rivulet_bench::compare::CompareArgs>),
    /// The event store: appends with exact expected revisions over the KurrentDB gRPC API
    /// against the same workload on PostgreSQL (events table, one transaction per append).
    #[cfg(feature = "peers")]
    Eventstore(Box<rivulet_bench::eventstore::EventStoreArgs>),
    /// Peer benchmarks need a build with `--features peers`.
    #[cfg(not(feature = "peers"))]
    #[command(name = "nats", aliases = ["rabbitmq-stream", "rabbitmq-quorum", "compare", "eventstore"])]
    PeersMissing {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<String>,
    },
}

/// Runs `rivulet bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    match args.target {
        Target::Kafka(args) => print(args.conn.format, &kafka::run(&args)?, render::report),
        #[cfg(feature = "peers")]
        Target::Nats(args) => print(
            args.common.format,
            &rivulet_bench::nats::run(&args)?,
            render::report,
        ),
        #[cfg(feature = "peers")]
        Target::RabbitmqStream(args) => print(
            args.common.format,
            &rivulet_bench::rabbitmq::run_stream(&args)?,
            render::report,
        ),
        #[cfg(feature = "peers")]
        Target::RabbitmqQuorum(args) => print(
            args.common.format,
            &rivulet_bench::rabbitmq::run_quorum(&args)?,
            render::report,
        ),
        #[cfg(feature = "peers")]
        Target::Compare(args) => print(args.format, &rivulet_bench::compare::run(&args)?, render::compare),
        #[cfg(feature = "peers")]
        Target::Eventstore(args) => print(
            args.format,
            &rivulet_bench::eventstore::run(&args)?,
            rivulet_bench::eventstore::render,
        ),
        #[cfg(not(feature = "peers"))]
        Target::PeersMissing { .. } => anyhow::bail!(
            "this rivulet was built without the peer drivers; build it with \
             `cargo build --release -p rivulet --features peers`"
        ),
    }
}

/// Prints `report` as JSON or as the text `render` makes of it.
fn print<T: Serialize>(format: Format, report: &T, render: fn(&T) -> String) -> Result<()> {
    match format {
        Format::Json => emit_json(report),
        Format::Text => emit(&render(report)),
    }
}
