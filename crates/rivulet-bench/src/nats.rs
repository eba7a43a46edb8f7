//! `rivulet bench nats`: NATS JetStream through async-nats, through the shared run loop.
//!
//! One file-backed JetStream stream per partition (`{prefix}-{i}`, bound to the subject
//! `{prefix}.{i}`), one replica, limits retention. Every producer task opens its own
//! connection and publishes asynchronously, keeping up to `IN_FLIGHT_CAP` publish acks
//! outstanding; every consumer task opens its own connection and reads its streams from the
//! beginning through ephemeral pull consumers with `AckPolicy::None` (nothing is redelivered,
//! so the consumers' throughput is not spent on acks).
//!
//! Durability: JetStream acks a publish once the message is written to its file store, i.e. to
//! the page cache, and fsyncs on the server's `sync_interval` (D0). Fsync before every ack (D1)
//! needs `sync_interval: always`, which arrived in nats-server 2.10 and is a server setting, not
//! a stream one: the client cannot ask for it, so D1 is reported as not controllable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::{GetStreamErrorKind, PublishAckFuture, PublishError};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use futures_util::stream::{self, FuturesUnordered, StreamExt};

use crate::ctx::{ConsumerCtx, ProducerCtx};
use crate::driver::{Driver, Prepared, Setup};
use crate::error::{bail, err, Context, Result};
use crate::peer::{self, PeerArgs};
use crate::report::Report;
use crate::run::FLUSH_SECS_MAX;
use crate::workload::{AckSink, Durability};

/// Most publish acks one producer keeps outstanding. The harness allows up to 65,536 (1 KiB
/// records); on a 2-core box with nats-server 2.9 throughput peaked at 4,096 (256: 18k/s,
/// 1,024: 31k/s, 4,096: 43k/s, 16,384 and 65,536: 41k/s with twice the latency).
const IN_FLIGHT_CAP: usize = 4_096;
/// Messages a pull consumer asks for per pull request.
const FETCH_BATCH: usize = 4_096;
/// Timeout of JetStream API requests and of each publish ack.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How the client is configured, for the report.
pub(crate) const CLIENT_DESCRIPTION: &str = "async-nats 0.46 JetStream async publish, up to 4096 acks in flight per \
                                  producer; ephemeral pull consumers, AckPolicy::None, 4096 messages per pull";

/// Arguments of `rivulet bench nats`.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL
    #[arg(long, default_value = "nats://127.0.0.1:4222", env = "RIVULET_BENCH_NATS_URL")]
    pub url: String,
    /// The workload, name prefix and output format.
    #[command(flatten)]
    pub common: PeerArgs,
}

/// Runs `rivulet bench nats`: the baselines (unless `--baseline false`), then each durability
/// level.
pub fn run(args: &NatsArgs) -> Result<Report> {
    peer::run_peer(
        NatsDriver::new(&args.url),
        &args.common,
        &args.url,
        CLIENT_DESCRIPTION,
    )
}

/// The NATS JetStream driver: each task connects on its own.
#[derive(Debug)]
pub(crate) struct NatsDriver {
    url: String,
    /// Subject of each stream [`Driver::prepare`] created, by stream name.
    subjects: Mutex<HashMap<String, String>>,
}

impl NatsDriver {
    /// A driver for the server at `url` (connects only when used).
    pub(crate) fn new(url: &str) -> NatsDriver {
        NatsDriver {
            url: url.to_string(),
            subjects: Mutex::new(HashMap::new()),
        }
    }

    async fn connect(&self) -> Result<async_nats::Client> {
        async_nats::ConnectOptions::new()
            .name("rivulet-bench")
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(self.url.as_str())
            .await
            .with_context(|| format!("connecting to NATS at {}", self.url))
    }

    /// A JetStream context whose own in-flight limit never holds back `in_flight` publishes.
    fn jetstream(client: async_nats::Client, in_flight: usize) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .max_ack_inflight(in_flight.max(1) + 16)
            .backpressure_on_inflight(true)
            .build(client)
    }

    fn subject_of(&self, stream: &str) -> Result<String> {
        self.subjects
            .lock()
            .map_err(|_| err!("subject map poisoned"))?
            .get(stream)
            .cloned()
            .ok_or_else(|| err!("no subject known for stream {stream}"))
    }

    /// Deletes `names`, ignoring streams that do not exist; returns the first error.
    async fn delete_streams(js: &jetstream::Context, names: &[String]) -> Result<()> {
        let mut first_error = None;
        for name in names {
            if let Err(e) = delete_stream(js, name).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Deletes stream `name` if it exists.
async fn delete_stream(js: &jetstream::Context, name: &str) -> Result<()> {
    match js.delete_stream(name).await {
        Ok(_) => Ok(()),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(err) if err.error_code() == ErrorCode::STREAM_NOT_FOUND => Ok(()),
            _ => Err(err!("deleting stream {name}: {e}")),
        },
    }
}

/// `name` with everything but ASCII letters, digits, '-' and '_' replaced by '_': valid as a
/// stream name and as a single subject token.
fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "rivulet-bench".to_string()
    } else {
        clean
    }
}

/// (major, minor) of a server version such as `2.9.10`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

/// Why D1 cannot be measured against a server of `version`.
fn d1_reason(version: &str) -> String {
    match major_minor(version) {
        Some(v) if v >= (2, 10) => format!(
            "nats-server {version}: fsync of every message before acking needs the server started \
             with sync_interval: always (a server setting, not per stream); not controllable from \
             the client"
        ),
        _ => "nats-server 2.9 cannot fsync every message before acking (sync_interval is a server \
              setting, 'always' needs 2.10)"
            .to_string(),
    }
}

/// Finds a process named `nats-server`.
fn find_nats_server() -> Option<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "nats-server")
        })
        .collect();
    pids.sort_unstable();
    pids.first().copied()
}

/// Accounts one settled publish; prints the first failure of a producer.
fn settle(acks: &AckSink, intended: u64, result: Result<PublishAck, PublishError>, reported: &mut bool) {
    match result {
        Ok(_) => acks.acked(intended),
        Err(e) => {
            acks.failed();
            if !std::mem::replace(reported, true) {
                eprintln!("warning: nats publish failed (further failures only counted): {e}");
            }
        }
    }
}

impl Driver for NatsDriver {
    fn name(&self) -> &'static str {
        "nats-jetstream"
    }

    fn server_pid(&self) -> Option<u32> {
        find_nats_server()
    }

    async fn prepare(&self, level: Durability, prefix: &str, partitions: usize) -> Result<Setup> {
        let client = self.connect().await?;
        let info = client.server_info();
        if !info.jetstream {
            bail!(
                "the NATS server at {} does not have JetStream enabled (start it with -js)",
                self.url
            );
        }
        if level == Durability::D1 {
            return Ok(Setup::Unavailable(vec![d1_reason(&info.version)]));
        }
        let js = Self::jetstream(client, 1);
        let base = sanitize(prefix);
        let mut created = Vec::with_capacity(partitions);
        let mut subjects = Vec::with_capacity(partitions);
        for i in 0..partitions {
            let name = format!("{base}-{i}");
            let subject = format!("{base}.{i}");
            let result = async {
                delete_stream(&js, &name).await?;
                js.create_stream(StreamConfig {
                    name: name.clone(),
                    subjects: vec![subject.clone()],
                    storage: StorageType::File,
                    num_replicas: 1,
                    retention: RetentionPolicy::Limits,
                    discard: DiscardPolicy::New,
                    ..Default::default()
                })
                .await
                .map_err(|e| err!("creating stream {name}: {e}"))
            }
            .await;
            if let Err(e) = result {
                if let Err(cleanup) = Self::delete_streams(&js, &created).await {
                    eprintln!(
                        "warning: cleaning up after a failed prepare: {}",
                        cleanup.describe()
                    );
                }
                return Err(e);
            }
            created.push(name.clone());
            subjects.push((name, subject));
        }
        self.subjects
            .lock()
            .map_err(|_| err!("subject map poisoned"))?
            .extend(subjects);
        Ok(Setup::Ready(Prepared {
            partitions: created.len(),
            destinations: created,
            settings: vec![
                format!("nats-server {}", info.version),
                "file storage".to_string(),
                "replicas=1".to_string(),
                "retention=limits".to_string(),
                "discard=new (a full stream refuses publishes)".to_string(),
                "acked after write to the page cache (no fsync; the server syncs on its sync_interval)"
                    .to_string(),
            ],
        }))
    }

    async fn produce(self: Arc<Self>, mut ctx: ProducerCtx) -> Result<()> {
        let window = ctx.in_flight_max().clamp(1, IN_FLIGHT_CAP);
        let subjects = ctx
            .destinations()
            .iter()
            .map(|d| self.subject_of(d))
            .collect::<Result<Vec<_>>>()?;
        let js = Self::jetstream(self.connect().await?, window);
        let acks = ctx.acks();
        let mut reported = false;
        let mut pending = FuturesUnordered::new();
        loop {
            while pending.len() >= window {
                if let Some((intended, result)) = pending.next().await {
                    settle(&acks, intended, result, &mut reported);
                }
            }
            // Settle acks while waiting for the next record's slot (`next_record` only counts a
            // record once its slot has come, so dropping it half-way is harmless).
            let record = tokio::select! {
                biased;
                Some((intended, result)) = pending.next(), if !pending.is_empty() => {
                    settle(&acks, intended, result, &mut reported);
                    continue;
                }
                record = ctx.next_record() => record,
            };
            let Some((intended, payload)) = record else {
                break;
            };
            let subject = subjects
                .get(ctx.next_destination())
                .ok_or_else(|| err!("destination out of range"))?
                .clone();
            match js.publish(subject, payload.into()).await {
                Ok(ack) => pending.push(async move {
                    let ack: PublishAckFuture = ack;
                    (intended, ack.await)
                }),
                Err(e) => settle(&acks, intended, Err(e), &mut reported),
            }
        }
        let drain = async {
            while let Some((intended, result)) = pending.next().await {
                settle(&acks, intended, result, &mut reported);
            }
        };
        if tokio::time::timeout(Duration::from_secs(FLUSH_SECS_MAX), drain)
            .await
            .is_err()
        {
            eprintln!(
                "warning: {} nats publish acks still outstanding after {FLUSH_SECS_MAX} s, counted as failed",
                pending.len()
            );
            for _ in 0..pending.len() {
                acks.failed();
            }
        }
        Ok(())
    }

    async fn consume(self: Arc<Self>, mut ctx: ConsumerCtx) -> Result<()> {
        let js = Self::jetstream(self.connect().await?, 1);
        let mut streams = Vec::with_capacity(ctx.destinations().len());
        for name in ctx.destinations() {
            let consumer: PullConsumer = js
                .create_consumer_on_stream(
                    pull::Config {
                        deliver_policy: DeliverPolicy::All,
                        ack_policy: AckPolicy::None,
                        inactive_threshold: Duration::from_secs(60),
                        ..Default::default()
                    },
                    name,
                )
                .await
                .map_err(|e| err!("creating a pull consumer on stream {name}: {e}"))?;
            let messages = consumer
                .stream()
                .max_messages_per_batch(FETCH_BATCH)
                .messages()
                .await
                .map_err(|e| err!("pulling from stream {name}: {e}"))?;
            streams.push(messages);
        }
        ctx.ready();
        let mut messages = stream::select_all(streams);
        let stopped = ctx.wait_stopped();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => break,
                item = messages.next() => match item {
                    Some(Ok(message)) => ctx.received(&message.payload),
                    Some(Err(_)) => ctx.error(),
                    // Every pull stream ended (their consumers were deleted): wait for the stop.
                    None => {
                        stopped.as_mut().await;
                        break;
                    }
                },
            }
        }
        Ok(())
    }

    async fn cleanup(&self, prepared: &Prepared) -> Result<()> {
        if let Ok(mut subjects) = self.subjects.lock() {
            for name in &prepared.destinations {
                subjects.remove(name);
            }
        }
        let js = Self::jetstream(self.connect().await?, 1);
        Self::delete_streams(&js, &prepared.destinations).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_names() {
        assert_eq!(sanitize("rivulet-bench-12-d0"), "rivulet-bench-12-d0");
        assert_eq!(sanitize("a.b c*>/x"), "a_b_c___x");
        assert_eq!(sanitize(""), "rivulet-bench");
    }

    #[test]
    fn parses_versions() {
        assert_eq!(major_minor("2.9.10"), Some((2, 9)));
        assert_eq!(major_minor("v2.10.0-beta.1"), Some((2, 10)));
        assert_eq!(major_minor("garbage"), None);
        assert!(d1_reason("2.9.10").contains("2.9 cannot"));
        assert!(d1_reason("2.10.4").contains("sync_interval: always"));
    }
}
