//! `rivulet bench rabbitmq-stream` and `rabbitmq-quorum`: the RabbitMQ drivers of the peer
//! harness in [`super::peer`].
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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Semaphore;

use super::peer::{self, ConsumerCtx, PeerArgs, PeerDriver, Prepared, ProducerCtx};
use super::{AckSink, Durability, FLUSH_SECS_MAX};

/// The client's settings for streams, for the report.
pub(super) const STREAM_CLIENT_DESCRIPTION: &str = "lapin 2 over AMQP 0-9-1: one connection per task, \
     publisher confirms, consumers from offset first with prefetch=2000 and multiple acks every 500";
/// The AMQP client's settings, for the report.
pub(super) const QUORUM_CLIENT_DESCRIPTION: &str = "lapin 2: one connection per task, publisher confirms, \
     persistent messages, consumers prefetch=2000 with multiple acks every 500";

/// Unacknowledged deliveries a consumer may hold (`basic.qos`).
const QUORUM_PREFETCH: u16 = 2000;
/// A consumer acknowledges (multiple) every this many deliveries.
const QUORUM_ACK_EVERY: u64 = 500;

/// Arguments of `rivulet bench rabbitmq-stream`.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct StreamArgs {
    /// AMQP URL of the broker
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub url: String,
    #[command(flatten)]
    pub common: PeerArgs,
}

/// Arguments of `rivulet bench rabbitmq-quorum`.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct QuorumArgs {
    /// AMQP URL of the broker
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub url: String,
    #[command(flatten)]
    pub common: PeerArgs,
}

/// Runs `rivulet bench rabbitmq-stream`.
pub(super) fn run_stream(args: StreamArgs) -> Result<()> {
    let server = redact_url(&args.url);
    peer::run_peer(
        QueueDriver::stream(&args.url),
        &args.common,
        &server,
        STREAM_CLIENT_DESCRIPTION,
    )
}

/// Runs `rivulet bench rabbitmq-quorum`.
pub(super) fn run_quorum(args: QuorumArgs) -> Result<()> {
    let server = redact_url(&args.url);
    peer::run_peer(
        QueueDriver::quorum(&args.url),
        &args.common,
        &server,
        QUORUM_CLIENT_DESCRIPTION,
    )
}

/// `url` without its password, for the report.
pub(super) fn redact_url(url: &str) -> String {
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

/// Records published but not yet settled, bounded by a window: a producer takes a slot before
/// publishing and the confirmation (or its failure) gives it back.
struct InFlight {
    slots: Semaphore,
    window: usize,
    state: Mutex<Outstanding>,
    acks: Arc<AckSink>,
}

/// What [`InFlight`] tracks besides the slots.
#[derive(Debug, Default)]
struct Outstanding {
    /// Records published and not yet settled.
    count: u64,
    /// Set once the producer stopped waiting: late confirmations are then ignored, the
    /// records having been counted as failed.
    abandoned: bool,
}

impl InFlight {
    fn new(window: usize, acks: Arc<AckSink>) -> Self {
        let window = window.clamp(1, Semaphore::MAX_PERMITS);
        InFlight {
            slots: Semaphore::new(window),
            window,
            state: Mutex::new(Outstanding::default()),
            acks,
        }
    }

    /// Waits for a free slot and counts one more record in flight.
    async fn begin(&self) -> Result<()> {
        self.slots
            .acquire()
            .await
            .map_err(|_| anyhow!("the in-flight window was closed"))?
            .forget();
        if let Ok(mut state) = self.state.lock() {
            state.count += 1;
        }
        Ok(())
    }

    /// The record sent for `intended` was confirmed (`ok`) or refused; frees its slot.
    fn settle(&self, intended: u64, ok: bool) {
        let Ok(mut state) = self.state.lock() else {
            self.acks.failed();
            return;
        };
        if state.abandoned {
            return;
        }
        state.count = state.count.saturating_sub(1);
        if ok {
            self.acks.acked(intended);
        } else {
            self.acks.failed();
        }
        drop(state);
        self.slots.add_permits(1);
    }

    /// Waits up to `limit` for every record in flight to settle; counts those that did not as
    /// failed and returns how many they were.
    async fn drain(&self, limit: Duration) -> u64 {
        let window = u32::try_from(self.window).unwrap_or(u32::MAX);
        if let Ok(Ok(all)) = tokio::time::timeout(limit, self.slots.acquire_many(window)).await {
            drop(all);
            return 0;
        }
        let Ok(mut state) = self.state.lock() else {
            return 0;
        };
        state.abandoned = true;
        let lost = state.count;
        state.count = 0;
        drop(state);
        for _ in 0..lost {
            self.acks.failed();
        }
        lost
    }
}

/// RabbitMQ quorum queues through AMQP 0-9-1.
/// Which kind of RabbitMQ queue a [`QueueDriver`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stream,
    Quorum,
}

/// RabbitMQ streams or quorum queues through AMQP 0-9-1.
#[derive(Debug)]
pub(super) struct QueueDriver {
    url: String,
    kind: Kind,
}

impl QueueDriver {
    /// Streams on the broker at AMQP `url`; connects only when used.
    pub(super) fn stream(url: &str) -> QueueDriver {
        QueueDriver {
            url: url.to_string(),
            kind: Kind::Stream,
        }
    }

    /// Quorum queues on the broker at AMQP `url`; connects only when used.
    pub(super) fn quorum(url: &str) -> QueueDriver {
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

impl PeerDriver for QueueDriver {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Stream => "rabbitmq-stream",
            Kind::Quorum => "rabbitmq-quorum",
        }
    }

    fn server_pid(&self) -> Option<u32> {
        find_beam_pid()
    }

    async fn prepare(
        &self,
        level: Durability,
        prefix: &str,
        partitions: usize,
    ) -> Result<Result<Prepared, String>> {
        match (self.kind, level) {
            (Kind::Quorum, Durability::D0) => {
                return Ok(Err(
                    "quorum queues always fsync before confirming; there is no D0 setting".into(),
                ))
            }
            (Kind::Stream, Durability::D1) => {
                return Ok(Err(
                    "RabbitMQ streams confirm without fsync; no stream setting makes them sync".into(),
                ))
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
            anyhow::Ok(())
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
        Ok(Ok(Prepared {
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
        let flight = Arc::new(InFlight::new(ctx.in_flight_max(), ctx.acks()));
        let properties = BasicProperties::default().with_delivery_mode(2);
        let mut result = Ok(());
        loop {
            let destination = ctx.next_destination();
            let Some((intended, payload)) = ctx.next_record().await else {
                break;
            };
            if let Err(e) = flight.begin().await {
                ctx.acks().failed();
                result = Err(e);
                break;
            }
            if !channel.status().connected() {
                flight.settle(intended, false);
                result = Err(anyhow!("the AMQP channel closed during the run"));
                break;
            }
            // Each publish in its own task: lapin's publish waits for the frames to be
            // written, so awaiting them one by one would allow one publish per write.
            let queue = ctx.destinations()[destination].clone();
            let channel = channel.clone();
            let properties = properties.clone();
            let settle = Arc::clone(&flight);
            tokio::spawn(async move {
                let published = channel
                    .basic_publish("", &queue, BasicPublishOptions::default(), &payload, properties)
                    .await;
                let ok = match published {
                    Ok(confirm) => matches!(confirm.await, Ok(Confirmation::Ack(None))),
                    Err(_) => false,
                };
                settle.settle(intended, ok);
            });
        }
        let lost = flight.drain(Duration::from_secs(FLUSH_SECS_MAX)).await;
        close_connection(&connection).await;
        if lost > 0 && result.is_ok() {
            result = Err(anyhow!(
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
            anyhow::Ok(consumers)
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
                    None => break Err(anyhow!("the queue consumers closed before the run ended")),
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
