//! `rivulet bench rabbitmq-stream` and `rabbitmq-quorum`: the RabbitMQ drivers of the shared
//! run loop ([`crate::run`]).
//!
//! Both go through AMQP 0-9-1 (`lapin`) with publisher confirms, one queue per partition:
//!
//! * **Streams** (`x-queue-type=stream`): a stream confirms a publish once the chunk is written
//!   to its segment file (the page cache) and replicated to a quorum of members; it never
//!   fsyncs before confirming and no stream argument changes that, so streams provide D0 only.
//!   Consumers read from the first offset (`x-stream-offset=first`). The native stream
//!   protocol (port 5552) would be faster, but its Rust client (`rabbitmq-stream-client` 0.9)
//!   opens every connection with a command RabbitMQ added in 3.11, so it cannot talk to the
//!   3.10 servers this benchmark meets; AMQP works with every version.
//! * **Quorum queues** (`x-queue-type=quorum`, persistent messages): a quorum queue confirms a
//!   publish once the Raft log entry is fsynced on a quorum of members; no queue argument turns
//!   that off, so quorum queues provide D1 only.
//!
//! Every producer and consumer task opens its own connections. A producer keeps at most
//! [`ProducerCtx::in_flight_max`] records published but unconfirmed, and after the run waits a
//! bounded time for the rest, counting those that never come as failed.

mod in_flight;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use self::in_flight::InFlight;
use crate::ctx::{ConsumerCtx, ProducerCtx};
use crate::driver::{Driver, Prepared, Setup};
use crate::error::{err, BenchError, Context, Result};
use crate::peer::{self, PeerArgs};
use crate::report::Report;
use crate::run::FLUSH_SECS_MAX;
use crate::workload::Durability;

/// The client's settings for streams, for the report.
pub(crate) const STREAM_CLIENT_DESCRIPTION: &str = "lapin 2 over AMQP 0-9-1: one connection per task, \
     publisher confirms, consumers from offset first with prefetch=2000 and multiple acks every 500";
/// The AMQP client's settings, for the report.
pub(crate) const QUORUM_CLIENT_DESCRIPTION: &str = "lapin 2: one connection per task, publisher confirms, \
     persistent messages, consumers prefetch=2000 with multiple acks every 500";

/// Unacknowledged deliveries a consumer may hold (`basic.qos`).
const QUORUM_PREFETCH: u16 = 2000;
/// A consumer acknowledges (multiple) every this many deliveries.
const QUORUM_ACK_EVERY: u64 = 500;

/// Arguments of `rivulet bench rabbitmq-stream`.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// AMQP URL of the broker
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub url: String,
    /// The workload, name prefix and output format.
    #[command(flatten)]
    pub common: PeerArgs,
}

/// Arguments of `rivulet bench rabbitmq-quorum`.
#[derive(Debug, Clone, clap::Args)]
pub struct QuorumArgs {
    /// AMQP URL of the broker
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub url: String,
    /// The workload, name prefix and output format.
    #[command(flatten)]
    pub common: PeerArgs,
}

/// Runs `rivulet bench rabbitmq-stream`: the baselines (unless `--baseline false`), then
/// each durability level.
pub fn run_stream(args: &StreamArgs) -> Result<Report> {
    let server = redact_url(&args.url);
    peer::run_peer(
        QueueDriver::stream(&args.url),
        &args.common,
        &server,
        STREAM_CLIENT_DESCRIPTION,
    )
}

/// Runs `rivulet bench rabbitmq-quorum`: the baselines (unless `--baseline false`), then
/// each durability level.
pub fn run_quorum(args: &QuorumArgs) -> Result<Report> {
    let server = redact_url(&args.url);
    peer::run_peer(
        QueueDriver::quorum(&args.url),
        &args.common,
        &server,
        QUORUM_CLIENT_DESCRIPTION,
    )
}

/// `url` without its password, for the report.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_string(),
    }
}

/// The RabbitMQ server's process id: the Erlang VM (`beam.smp`) that boots `rabbit`, else the
/// first `beam.smp` found.
fn find_beam_pid() -> Option<u32> {
    let mut first = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if comm.trim_end() != "beam.smp" {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("-s rabbit boot") {
            return Some(pid);
        }
        first.get_or_insert(pid);
    }
    first
}

/// Which kind of RabbitMQ queue a [`QueueDriver`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stream,
    Quorum,
}

/// RabbitMQ streams or quorum queues through AMQP 0-9-1.
#[derive(Debug)]
pub(crate) struct QueueDriver {
    url: String,
    kind: Kind,
}

impl QueueDriver {
    /// Streams on the broker at AMQP `url`; connects only when used.
    pub(crate) fn stream(url: &str) -> QueueDriver {
        QueueDriver {
            url: url.to_string(),
            kind: Kind::Stream,
        }
    }

    /// Quorum queues on the broker at AMQP `url`; connects only when used.
    pub(crate) fn quorum(url: &str) -> QueueDriver {
        QueueDriver {
            url: url.to_string(),
            kind: Kind::Quorum,
        }
    }

    /// A new connection and a channel on it.
    async fn connect(&self) -> Result<(Connection, Channel)> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .with_context(|| format!("connecting to RabbitMQ at {}", redact_url(&self.url)))?;
        let channel = connection
            .create_channel()
            .await
            .context("opening an AMQP channel")?;
        Ok((connection, channel))
    }

    /// Deletes `queues` (deleting a missing queue succeeds).
    async fn delete_queues<'a>(
        channel: &Channel,
        queues: impl IntoIterator<Item = &'a String>,
    ) -> Result<()> {
        for queue in queues {
            channel
                .queue_delete(queue, QueueDeleteOptions::default())
                .await
                .with_context(|| format!("deleting queue {queue}"))?;
        }
        Ok(())
    }
}

/// Closes an AMQP connection, warning when that fails.
async fn close_connection(connection: &Connection) {
    if let Err(e) = connection.close(200, "rivulet bench done").await {
        eprintln!("warning: closing an AMQP connection: {e}");
    }
}

impl Driver for QueueDriver {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Stream => "rabbitmq-stream",
            Kind::Quorum => "rabbitmq-quorum",
        }
    }

    fn server_pid(&self) -> Option<u32> {
        find_beam_pid()
    }

    async fn prepare(&self, level: Durability, prefix: &str, partitions: usize) -> Result<Setup> {
        match (self.kind, level) {
            (Kind::Quorum, Durability::D0) => {
                return Ok(Setup::Unavailable(vec![
                    "quorum queues always fsync before confirming; there is no D0 setting".into(),
                ]))
            }
            (Kind::Stream, Durability::D1) => {
                return Ok(Setup::Unavailable(vec![
                    "RabbitMQ streams confirm without fsync; no stream setting makes them sync".into(),
                ]))
            }
            _ => {}
        }
        let queue_type = match self.kind {
            Kind::Stream => "stream",
            Kind::Quorum => "quorum",
        };
        let (connection, channel) = self.connect().await?;
        let destinations: Vec<String> = (0..partitions).map(|i| format!("{prefix}-{i}")).collect();
        let created = async {
            Self::delete_queues(&channel, &destinations).await?;
            let mut arguments = FieldTable::default();
            arguments.insert("x-queue-type".into(), AMQPValue::LongString(queue_type.into()));
            for queue in &destinations {
                channel
                    .queue_declare(
                        queue,
                        QueueDeclareOptions {
                            durable: true,
                            ..QueueDeclareOptions::default()
                        },
                        arguments.clone(),
                    )
                    .await
                    .with_context(|| format!("declaring {queue_type} queue {queue}"))?;
            }
            Ok::<_, BenchError>(())
        }
        .await;
        close_connection(&connection).await;
        created?;
        let consumer =
            format!("consumer prefetch={QUORUM_PREFETCH}, manual acks (multiple) every {QUORUM_ACK_EVERY}");
        let settings = match self.kind {
            Kind::Quorum => vec![
                "quorum queue (x-queue-type=quorum, durable)".into(),
                "persistent messages (delivery_mode=2)".into(),
                "confirm after fsync of the Raft WAL".into(),
                consumer,
            ],
            Kind::Stream => vec![
                "stream (x-queue-type=stream) over AMQP 0-9-1".into(),
                "confirm after write to the page cache (no fsync)".into(),
                format!("{consumer}, from x-stream-offset=first"),
            ],
        };
        Ok(Setup::Ready(Prepared {
            partitions: destinations.len(),
            destinations,
            settings,
        }))
    }

    async fn produce(self: Arc<Self>, mut ctx: ProducerCtx) -> Result<()> {
        let (connection, channel) = self.connect().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        let flight = InFlight::new(ctx.in_flight_max(), ctx.acks());
        let properties = BasicProperties::default().with_delivery_mode(2);
        // Publishes run concurrently inside this task: lapin's publish waits for its frames
        // to be written, so awaiting them one by one would allow one publish per write.
        let mut publishes = FuturesUnordered::new();
        let mut result = Ok(());
        loop {
            let destination = ctx.next_destination();
            let Some((intended, payload)) = settling(&mut publishes, &flight, ctx.next_record()).await else {
                break;
            };
            if let Err(e) = settling(&mut publishes, &flight, flight.begin()).await {
                ctx.acks().failed();
                result = Err(e);
                break;
            }
            if !channel.status().connected() {
                flight.settle(intended, false);
                result = Err(err!("the AMQP channel closed during the run"));
                break;
            }
            let queue = ctx.destinations()[destination].clone();
            let (channel, properties) = (&channel, properties.clone());
            publishes.push(async move {
                let published = channel
                    .basic_publish("", &queue, BasicPublishOptions::default(), &payload, properties)
                    .await;
                let ok = match published {
                    Ok(confirm) => matches!(confirm.await, Ok(Confirmation::Ack(None))),
                    Err(_) => false,
                };
                (intended, ok)
            });
        }
        let drained = flight.drain(Duration::from_secs(FLUSH_SECS_MAX));
        let lost = settling(&mut publishes, &flight, drained).await;
        drop(publishes);
        close_connection(&connection).await;
        if lost > 0 && result.is_ok() {
            result = Err(err!(
                "{lost} records were not confirmed within {FLUSH_SECS_MAX} s after the run"
            ));
        }
        result
    }

    async fn consume(self: Arc<Self>, mut ctx: ConsumerCtx) -> Result<()> {
        if ctx.destinations().is_empty() {
            return Ok(());
        }
        let (connection, channel) = self.connect().await?;
        let subscribed = async {
            channel
                .basic_qos(QUORUM_PREFETCH, BasicQosOptions::default())
                .await
                .context("setting the consumer prefetch")?;
            let mut consumers = Vec::with_capacity(ctx.destinations().len());
            let mut arguments = FieldTable::default();
            if self.kind == Kind::Stream {
                arguments.insert("x-stream-offset".into(), AMQPValue::LongString("first".into()));
            }
            for (i, queue) in ctx.destinations().iter().enumerate() {
                let consumer = channel
                    .basic_consume(
                        queue,
                        &format!("rivulet-bench-{}-{i}", ctx.index()),
                        BasicConsumeOptions::default(),
                        arguments.clone(),
                    )
                    .await
                    .with_context(|| format!("consuming from queue {queue}"))?;
                consumers.push(consumer);
            }
            Ok::<_, BenchError>(consumers)
        }
        .await;
        let consumers = match subscribed {
            Ok(consumers) => consumers,
            Err(e) => {
                close_connection(&connection).await;
                return Err(e);
            }
        };
        ctx.ready();
        let mut deliveries = futures_util::stream::select_all(consumers);
        let stopped = ctx.wait_stopped();
        tokio::pin!(stopped);
        // Delivery tags are per channel, so one multiple ack covers every queue's deliveries.
        // The merged stream may yield a queue's deliveries after a later tag of another queue:
        // ack only the highest tag seen, and only when it moved.
        let mut unacked: u64 = 0;
        let mut highest_tag: u64 = 0;
        let mut acked_tag: u64 = 0;
        let result = loop {
            tokio::select! {
                biased;
                () = &mut stopped => break Ok(()),
                delivery = deliveries.next() => match delivery {
                    Some(Ok(delivery)) => {
                        ctx.received(&delivery.data);
                        highest_tag = highest_tag.max(delivery.delivery_tag);
                        unacked += 1;
                        if unacked >= QUORUM_ACK_EVERY && highest_tag > acked_tag {
                            unacked = 0;
                            acked_tag = highest_tag;
                            let ack = BasicAckOptions { multiple: true };
                            if channel.basic_ack(highest_tag, ack).await.is_err() {
                                ctx.error();
                            }
                        }
                    }
                    Some(Err(_)) => ctx.error(),
                    None => break Err(err!("the queue consumers closed before the run ended")),
                },
            }
        };
        close_connection(&connection).await;
        result
    }

    async fn cleanup(&self, prepared: &Prepared) -> Result<()> {
        let (connection, channel) = self.connect().await?;
        let deleted = Self::delete_queues(&channel, &prepared.destinations).await;
        close_connection(&connection).await;
        deleted
    }
}

/// Awaits `fut` while settling the publishes that finish meanwhile (first, so their
/// confirm times are taken as they come).
async fn settling<P, F>(publishes: &mut FuturesUnordered<P>, flight: &InFlight, fut: F) -> F::Output
where
    P: Future<Output = (u64, bool)>,
    F: Future,
{
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            Some((intended, ok)) = publishes.next(), if !publishes.is_empty() => flight.settle(intended, ok),
            out = &mut fut => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
