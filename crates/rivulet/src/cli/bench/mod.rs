//! `rivulet bench kafka`: drives any Kafka-compatible broker through librdkafka with N producers
//! and M consumers (one group) over one topic, and measures the same machine's raw limits (disk
//! write, write + fdatasync, loopback TCP) in the same run, so results read as fractions of them.
//!
//! Every record carries its intended send time (nanoseconds since the start of the run) and a
//! run id in its first 16 bytes. At a fixed rate the intended time comes from the schedule, not
//! from when the send happened, so a stalled producer shows up as latency (coordinated-omission
//! correction). Publish latency is delivery report minus intended time; end-to-end latency is
//! consumer receive time minus intended time.

use std::fs::{self, File};
use std::io::{IsTerminal, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use rdkafka::admin::{NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::Message;
use serde::Serialize;

use super::output::{emit, emit_json, key_values, section, Table};
use super::topic::parse_key_value;
use super::{runtime, with_hint, ConnArgs, Format};

#[cfg(feature = "peers")]
mod chart;
#[cfg(feature = "peers")]
mod compare;
#[cfg(feature = "peers")]
mod nats;
#[cfg(feature = "peers")]
mod peer;
#[cfg(feature = "peers")]
mod rabbitmq;

/// Bytes at the start of every record: intended send time (u64 LE ns) and run id (u64 LE).
const HEADER_BYTES: usize = 16;
/// Largest record the bench produces.
const RECORD_BYTES_MAX: usize = 1 << 20;
/// Limits on the workload shape.
const PRODUCERS_MAX: usize = 256;
const CONSUMERS_MAX: usize = 256;
const PARTITIONS_MAX: i32 = 10_000;
const DURATION_SECS_MAX: u64 = 86_400;
/// Largest latency a histogram records, in microseconds (one hour); larger values saturate.
const LATENCY_US_MAX: u64 = 3_600_000_000;
/// librdkafka's producer queue, per producer: bounds the backlog a max-rate run builds up.
const PRODUCER_QUEUE_KIB_MAX: u64 = 65_536;
/// How long producers may take to deliver what they queued once the run ends.
const FLUSH_SECS_MAX: u64 = 60;
/// Consumers stop draining after this long without a new record.
const DRAIN_IDLE_SECS_MAX: u64 = 15;
/// How long the consumer group may take to get every partition assigned.
const ASSIGN_SECS_MAX: u64 = 60;
/// Bytes each disk baseline writes at most (the file is deleted afterwards), and never more
/// than half the file system's free space. Large on purpose: virtual disks often absorb the
/// first gigabyte or so in a host-side cache at several times their sustained rate, and the
/// broker runs it is compared with write many gigabytes.
const BASELINE_DISK_BYTES_MAX: u64 = 16 << 30;
/// Largest single write of the loopback TCP baseline.
const BASELINE_TCP_WRITE_BYTES_MAX: usize = 1 << 20;
/// Linux reports process CPU time in clock ticks of 1/100 s (USER_HZ).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
/// How often the progress line is redrawn.
const PROGRESS_INTERVAL_MS: u64 = 1_000;
/// The configuration key of a topic's fsync policy on a Rivulet broker.
const RIVULET_FSYNC_KEY: &str = "fsync.policy";
/// A broker config only Rivulet reports; its presence identifies a Rivulet broker.
const RIVULET_VERSION_CONFIG: &str = "rivulet.version";

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
    Kafka(Box<KafkaArgs>),
    /// Benchmark NATS JetStream (async-nats): one file-backed stream per partition.
    #[cfg(feature = "peers")]
    Nats(Box<nats::NatsArgs>),
    /// Benchmark RabbitMQ streams (lapin, AMQP 0-9-1, publisher confirms): one stream per
    /// partition.
    #[cfg(feature = "peers")]
    RabbitmqStream(Box<rabbitmq::StreamArgs>),
    /// Benchmark RabbitMQ quorum queues (lapin, publisher confirms): one queue per partition.
    #[cfg(feature = "peers")]
    RabbitmqQuorum(Box<rabbitmq::QuorumArgs>),
    /// Rivulet, NATS JetStream and RabbitMQ side by side: each one's peak, then latency at
    /// fractions of it, with a chart.
    #[cfg(feature = "peers")]
    Compare(Box<compare::CompareArgs>),
    /// Peer benchmarks need a build with `--features peers`.
    #[cfg(not(feature = "peers"))]
    #[command(name = "nats", aliases = ["rabbitmq-stream", "rabbitmq-quorum", "compare"])]
    PeersMissing {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<String>,
    },
}

/// Which durability levels to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DurabilityChoice {
    /// Ack after page-cache write (Rivulet: fsync.policy=none).
    D0,
    /// Ack after fdatasync (Rivulet: fsync.policy=always, group-committed).
    D1,
    /// D0, then D1.
    Both,
}

/// One durability level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    D0,
    D1,
}

impl Durability {
    fn label(self) -> &'static str {
        match self {
            Durability::D0 => "d0",
            Durability::D1 => "d1",
        }
    }
}

/// The workload and measurement settings every driver shares.
#[derive(Debug, Clone, Args)]
pub(super) struct WorkloadArgs {
    /// Producer clients, each on its own thread or task
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer clients (Kafka: one consumer group), each on its own thread or task
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Partitions of the benchmark topic (peers: streams or queues, one per partition)
    #[arg(short, long, default_value_t = 16)]
    partitions: i32,
    /// Bytes per record value (at least 16: send time and run id)
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    record_size: usize,
    /// Measured seconds (after the warm-up)
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    duration: u64,
    /// Seconds of load before measuring starts
    #[arg(long, default_value_t = 2, value_name = "SECS")]
    warmup: u64,
    /// Fixed total rate in records/s with coordinated-omission-corrected latency [default: max rate]
    #[arg(long, value_name = "RECORDS_PER_SEC")]
    rate: Option<u64>,
    /// Durability levels to run: d0 (ack after page cache), d1 (ack after fdatasync), both
    #[arg(long, value_enum, default_value = "both")]
    durability: DurabilityChoice,
    /// Process id of the broker, to report its CPU time and find its data directory
    #[arg(long, value_name = "PID")]
    broker_pid: Option<u32>,
    /// Measure disk and loopback TCP baselines first
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    baseline: bool,
    /// Directory for the disk baselines [default: next to the broker's --data-dir when
    /// --broker-pid is given, else the system temp dir]
    #[arg(long, value_name = "DIR")]
    baseline_dir: Option<PathBuf>,
    /// Seconds per baseline [default: --duration]
    #[arg(long, value_name = "SECS")]
    baseline_secs: Option<u64>,
    /// Print a line per interval of this many seconds while measuring (records/s, p99 of the
    /// interval, broker RSS): for soak runs; 0 prints none
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    report_interval: u64,
}

impl WorkloadArgs {
    fn levels(&self) -> &'static [Durability] {
        match self.durability {
            DurabilityChoice::D0 => &[Durability::D0],
            DurabilityChoice::D1 => &[Durability::D1],
            DurabilityChoice::Both => &[Durability::D0, Durability::D1],
        }
    }
}

/// Arguments of `rivulet bench kafka`.
#[derive(Debug, Args)]
struct KafkaArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    load: WorkloadArgs,
    /// librdkafka batch.size: most bytes per partition batch
    #[arg(long, default_value_t = 1_000_000, value_name = "BYTES")]
    batch_size: usize,
    /// librdkafka linger.ms: how long a batch may wait to fill
    #[arg(long, default_value_t = 1, value_name = "MS")]
    linger_ms: u64,
    /// Producer acks: all, 1 or 0
    #[arg(long, default_value = "all")]
    acks: String,
    /// Topic config KEY=VALUE for D0 on a non-Rivulet broker (repeatable) [default: broker default]
    #[arg(long = "d0-configs", value_name = "KEY=VALUE")]
    d0_configs: Vec<String>,
    /// Topic config KEY=VALUE that makes a non-Rivulet broker fsync before acking (repeatable);
    /// without it D1 is reported as not controllable
    #[arg(long = "d1-configs", value_name = "KEY=VALUE")]
    d1_configs: Vec<String>,
    /// Topic name prefix [default: rivulet-bench-<pid>]
    #[arg(long)]
    topic: Option<String>,
    /// Keep the benchmark topics instead of deleting them after each run
    #[arg(long)]
    keep: bool,
}

/// Runs `rivulet bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    match args.target {
        Target::Kafka(args) => run_kafka(*args),
        #[cfg(feature = "peers")]
        Target::Nats(args) => nats::run(*args),
        #[cfg(feature = "peers")]
        Target::Compare(args) => compare::run(*args),
        #[cfg(feature = "peers")]
        Target::RabbitmqStream(args) => rabbitmq::run_stream(*args),
        #[cfg(feature = "peers")]
        Target::RabbitmqQuorum(args) => rabbitmq::run_quorum(*args),
        #[cfg(not(feature = "peers"))]
        Target::PeersMissing { .. } => bail!(
            "this rivulet was built without the peer drivers; build it with \
             `cargo build --release -p rivulet --features peers`"
        ),
    }
}

fn validate(args: &KafkaArgs) -> Result<()> {
    args.load.validate()?;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1 byte");
    }
    if !matches!(args.acks.as_str(), "all" | "-1" | "1" | "0") {
        bail!("--acks must be all, 1 or 0");
    }
    for c in args.d0_configs.iter().chain(&args.d1_configs) {
        parse_key_value(c)?;
    }
    Ok(())
}

impl WorkloadArgs {
    fn validate(&self) -> Result<()> {
        let args = self;
        if !(1..=PRODUCERS_MAX).contains(&args.producers) {
            bail!("--producers must be between 1 and {PRODUCERS_MAX}");
        }
        if !(1..=CONSUMERS_MAX).contains(&args.consumers) {
            bail!("--consumers must be between 1 and {CONSUMERS_MAX}");
        }
        if !(1..=PARTITIONS_MAX).contains(&args.partitions) {
            bail!("--partitions must be between 1 and {PARTITIONS_MAX}");
        }
        if !(HEADER_BYTES..=RECORD_BYTES_MAX).contains(&args.record_size) {
            bail!("--record-size must be between {HEADER_BYTES} and {RECORD_BYTES_MAX} bytes");
        }
        if !(1..=DURATION_SECS_MAX).contains(&args.duration) || args.warmup > DURATION_SECS_MAX {
            bail!("--duration must be 1..={DURATION_SECS_MAX} s and --warmup at most that");
        }
        if args.rate == Some(0) {
            bail!("--rate must be at least 1 record/s");
        }
        if args.report_interval > DURATION_SECS_MAX {
            bail!("--report-interval must be at most {DURATION_SECS_MAX} s");
        }
        Ok(())
    }
}

/// Nanoseconds since the start of the run; shared by every thread of the process.
#[derive(Debug, Clone, Copy)]
struct Clock {
    base: Instant,
}

impl Clock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The phases of one run, in clock nanoseconds: warm-up from `start`, measured from `measure`
/// until `end`.
#[derive(Debug, Clone, Copy)]
struct Window {
    start_ns: u64,
    measure_ns: u64,
    end_ns: u64,
}

impl Window {
    fn measured(&self, t_ns: u64) -> bool {
        (self.measure_ns..self.end_ns).contains(&t_ns)
    }
}

fn write_header(buf: &mut [u8], intended_ns: u64, run_id: u64) {
    buf[..8].copy_from_slice(&intended_ns.to_le_bytes());
    buf[8..16].copy_from_slice(&run_id.to_le_bytes());
}

fn read_header(payload: &[u8]) -> Option<(u64, u64)> {
    let intended = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let run_id = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((intended, run_id))
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
        .map_err(|e| anyhow!("cannot create a latency histogram: {e:?}"))
}

fn record_latency(hist: &mut Histogram<u64>, from_ns: u64, to_ns: u64) {
    let us = to_ns.saturating_sub(from_ns) / 1_000;
    hist.saturating_record(us.max(1));
}

/// Counters shared by all producer and consumer threads of one run.
#[derive(Debug, Default)]
struct Counters {
    acked_total: AtomicU64,
    acked_measured: AtomicU64,
    failed: AtomicU64,
    consumed_total: AtomicU64,
    consumed_measured: AtomicU64,
    consume_errors: AtomicU64,
}

/// Where acknowledgements go: counts and publish latency of one producer.
#[derive(Debug)]
struct AckSink {
    clock: Clock,
    window: Window,
    counters: Arc<Counters>,
    hist: Mutex<Histogram<u64>>,
    interval: Arc<IntervalReporter>,
}

impl AckSink {
    /// The record sent for `intended_ns` was acknowledged just now.
    pub fn acked(&self, intended_ns: u64) {
        let now = self.clock.now_ns();
        self.counters.acked_total.fetch_add(1, Ordering::Relaxed);
        if self.window.measured(intended_ns) {
            self.counters.acked_measured.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut hist) = self.hist.lock() {
                record_latency(&mut hist, intended_ns, now);
            }
            self.interval.record(intended_ns, now);
        }
    }

    /// A record was refused or its acknowledgement never came.
    pub fn failed(&self) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counters {
    /// Counts one consumed `payload` received at `now`, ignoring payloads of other runs;
    /// returns its intended send time when its latency belongs to the measured window.
    fn received(&self, window: Option<&Window>, run_id: u64, payload: &[u8], now: u64) -> Option<u64> {
        let (intended, from_run) = read_header(payload)?;
        if from_run != run_id {
            return None;
        }
        self.consumed_total.fetch_add(1, Ordering::Relaxed);
        let window = window?;
        if window.measured(now) {
            self.consumed_measured.fetch_add(1, Ordering::Relaxed);
        }
        window.measured(intended).then_some(intended)
    }
}

/// Producer context: records publish latency from delivery reports, which the producer's own
/// polling thread delivers as soon as librdkafka has them.
struct DeliveryContext {
    run_id: u64,
    acks: AckSink,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(message) => {
                if let Some((intended, run_id)) = message.payload().and_then(read_header) {
                    if run_id == self.run_id {
                        self.acks.acked(intended);
                    }
                }
            }
            Err(_) => self.acks.failed(),
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
struct Latency {
    count: u64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Latency {
    fn of(hist: &Histogram<u64>) -> Option<Latency> {
        if hist.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1_000.0;
        Some(Latency {
            count: hist.len(),
            p50: ms(hist.value_at_quantile(0.50)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
        })
    }
}

/// The workload, as run.
#[derive(Debug, Serialize)]
struct Workload {
    producers: usize,
    consumers: usize,
    partitions: i32,
    record_size_bytes: usize,
    /// Client settings of the driver (Kafka: acks, batch.size, linger.ms).
    client: String,
    mode: &'static str,
    rate_records_per_sec: Option<u64>,
    warmup_secs: u64,
    duration_secs: u64,
}

/// Raw limits of this machine, measured in the same run.
#[derive(Debug, Clone, Serialize)]
struct Baseline {
    dir: String,
    write_size_bytes: usize,
    disk_write_mb_per_sec: f64,
    disk_write_bytes: u64,
    disk_write_secs: f64,
    disk_write_fdatasync_mb_per_sec: f64,
    disk_write_fdatasync_bytes: u64,
    disk_write_fdatasync_secs: f64,
    fdatasyncs_per_sec: f64,
    /// Latency of appending [`SYNC_LATENCY_WRITE_BYTES`] and fdatasync, one at a time: the
    /// floor under any D1 acknowledgement on this disk.
    append_fdatasync_latency_ms: Option<Latency>,
    loopback_tcp_mb_per_sec: f64,
    loopback_tcp_secs: f64,
}

impl Baseline {
    /// The 4 KiB append + fdatasync latency as one line of text.
    fn append_fdatasync_text(&self) -> String {
        self.append_fdatasync_latency_ms
            .as_ref()
            .map_or("-".to_string(), |l| {
                format!(
                    "p50 {:.2} / p99 {:.2} / p99.9 {:.2} / max {:.2} ms",
                    l.p50, l.p99, l.p999, l.max
                )
            })
    }
}

/// One disk baseline measurement.
#[derive(Debug, Clone, Copy)]
struct DiskSample {
    bytes: u64,
    syncs: u64,
    secs: f64,
}

impl DiskSample {
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs.max(1e-9)
    }
}

/// What one durability level measured.
#[derive(Debug, Serialize)]
struct Measured {
    topic: String,
    produced_records: u64,
    failed_records: u64,
    consumed_records: u64,
    consume_errors: u64,
    produce_records_per_sec: f64,
    produce_mb_per_sec: f64,
    consume_records_per_sec: f64,
    consume_mb_per_sec: f64,
    publish_latency_ms: Option<Latency>,
    e2e_latency_ms: Option<Latency>,
    cpu_secs_generator: f64,
    cpu_secs_broker: Option<f64>,
    /// Produce MB/s over the disk baseline of the same durability (D0: write, D1: write+fdatasync).
    fraction_of_disk_baseline: Option<f64>,
    /// Produce MB/s over loopback TCP MB/s.
    fraction_of_loopback_tcp: Option<f64>,
    /// Per-interval figures when `--report-interval` is set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    intervals: Vec<IntervalRow>,
}

impl Measured {
    /// Figures of one finished run from its counters and histograms.
    #[allow(clippy::too_many_arguments)]
    fn new(
        topic: String,
        load: &WorkloadArgs,
        level: Durability,
        counters: &Counters,
        publish: &Histogram<u64>,
        e2e: &Histogram<u64>,
        cpu: (Option<CpuSample>, Option<CpuSample>),
        baseline: Option<&Baseline>,
        intervals: Vec<IntervalRow>,
    ) -> Measured {
        let secs = load.duration as f64;
        let mb = |records: u64| records as f64 * load.record_size as f64 / 1e6 / secs;
        let acked_measured = counters.acked_measured.load(Ordering::Relaxed);
        let consumed_measured = counters.consumed_measured.load(Ordering::Relaxed);
        let produce_mb_per_sec = mb(acked_measured);
        let (cpu_start, cpu_end) = cpu;
        let cpu_delta = |pick: fn(&CpuSample) -> Option<f64>| -> Option<f64> {
            Some(pick(cpu_end.as_ref()?)? - pick(cpu_start.as_ref()?)?)
        };
        let disk_reference = baseline.map(|b| match level {
            Durability::D0 => b.disk_write_mb_per_sec,
            Durability::D1 => b.disk_write_fdatasync_mb_per_sec,
        });
        let ratio = |reference: Option<f64>| reference.filter(|r| *r > 0.0).map(|r| produce_mb_per_sec / r);
        Measured {
            topic,
            produced_records: counters.acked_total.load(Ordering::Relaxed),
            failed_records: counters.failed.load(Ordering::Relaxed),
            consumed_records: counters.consumed_total.load(Ordering::Relaxed),
            consume_errors: counters.consume_errors.load(Ordering::Relaxed),
            produce_records_per_sec: acked_measured as f64 / secs,
            produce_mb_per_sec,
            consume_records_per_sec: consumed_measured as f64 / secs,
            consume_mb_per_sec: mb(consumed_measured),
            publish_latency_ms: Latency::of(publish),
            e2e_latency_ms: Latency::of(e2e),
            cpu_secs_generator: cpu_delta(|s| s.generator).unwrap_or(0.0),
            cpu_secs_broker: cpu_delta(|s| s.broker),
            fraction_of_disk_baseline: ratio(disk_reference),
            fraction_of_loopback_tcp: ratio(baseline.map(|b| b.loopback_tcp_mb_per_sec)),
            intervals,
        }
    }
}

/// Figures of one `--report-interval` interval.
#[derive(Debug, Clone, Serialize)]
struct IntervalRow {
    /// Seconds since measuring started, at the interval's end.
    at_secs: f64,
    acked_records_per_sec: f64,
    consumed_records_per_sec: f64,
    publish_p50_ms: Option<f64>,
    publish_p99_ms: Option<f64>,
    publish_max_ms: Option<f64>,
    broker_rss_mib: Option<f64>,
    broker_cpu_secs: Option<f64>,
}

/// Per-interval publish latency and throughput, for soak runs.
#[derive(Debug)]
struct IntervalReporter {
    every_ns: u64,
    broker_pid: Option<u32>,
    state: Mutex<IntervalState>,
}

#[derive(Debug)]
struct IntervalState {
    hist: Histogram<u64>,
    started_ns: u64,
    last_ns: u64,
    last_acked: u64,
    last_consumed: u64,
    rows: Vec<IntervalRow>,
}

/// Most interval rows one run keeps (a day of 10 s intervals).
const INTERVAL_ROWS_MAX: usize = 8_640;

/// Shortest final interval worth a row: anything shorter says nothing about a rate.
const INTERVAL_NS_MIN: u64 = 100_000_000;

impl IntervalReporter {
    fn new(every_secs: u64, broker_pid: Option<u32>) -> Result<IntervalReporter> {
        Ok(IntervalReporter {
            every_ns: every_secs.saturating_mul(1_000_000_000),
            broker_pid,
            state: Mutex::new(IntervalState {
                hist: new_histogram()?,
                started_ns: 0,
                last_ns: 0,
                last_acked: 0,
                last_consumed: 0,
                rows: Vec::new(),
            }),
        })
    }

    fn enabled(&self) -> bool {
        self.every_ns > 0
    }

    /// Records one publish latency into the current interval.
    fn record(&self, intended_ns: u64, now_ns: u64) {
        if !self.enabled() {
            return;
        }
        if let Ok(mut state) = self.state.lock() {
            record_latency(&mut state.hist, intended_ns, now_ns);
        }
    }

    /// Marks the start of the measured window.
    fn start(&self, now_ns: u64, counters: &Counters) {
        if let Ok(mut state) = self.state.lock() {
            state.started_ns = now_ns;
            state.last_ns = now_ns;
            state.last_acked = counters.acked_total.load(Ordering::Relaxed);
            state.last_consumed = counters.consumed_total.load(Ordering::Relaxed);
            state.hist.reset();
        }
    }

    /// Closes the interval and prints its line when it is due.
    fn maybe_print(&self, now_ns: u64, counters: &Counters) {
        self.emit(now_ns, counters, false);
    }

    /// Closes the last interval at the end of the measured window, even when it is shorter
    /// than `--report-interval` (a duration that is not a multiple of it, or a late wake-up).
    fn close(&self, now_ns: u64, counters: &Counters) {
        self.emit(now_ns, counters, true);
    }

    fn emit(&self, now_ns: u64, counters: &Counters, partial: bool) {
        if !self.enabled() {
            return;
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let due_ns = if partial { INTERVAL_NS_MIN } else { self.every_ns };
        if now_ns < state.last_ns + due_ns || state.rows.len() >= INTERVAL_ROWS_MAX {
            return;
        }
        let secs = (now_ns - state.last_ns) as f64 / 1e9;
        let acked = counters.acked_total.load(Ordering::Relaxed);
        let consumed = counters.consumed_total.load(Ordering::Relaxed);
        let latency = Latency::of(&state.hist);
        let (rss, cpu) = match self.broker_pid {
            Some(pid) => (rss_mib(pid), cpu_secs(&pid.to_string())),
            None => (None, None),
        };
        let row = IntervalRow {
            at_secs: (now_ns - state.started_ns) as f64 / 1e9,
            acked_records_per_sec: (acked - state.last_acked) as f64 / secs,
            consumed_records_per_sec: (consumed - state.last_consumed) as f64 / secs,
            publish_p50_ms: latency.as_ref().map(|l| l.p50),
            publish_p99_ms: latency.as_ref().map(|l| l.p99),
            publish_max_ms: latency.as_ref().map(|l| l.max),
            broker_rss_mib: rss,
            broker_cpu_secs: cpu,
        };
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        eprintln!(
            "\r[{:>7.1} s] acked {:>9.0}/s consumed {:>9.0}/s publish p50 {} p99 {} max {} ms  broker RSS {} MiB",
            row.at_secs,
            row.acked_records_per_sec,
            row.consumed_records_per_sec,
            opt(row.publish_p50_ms),
            opt(row.publish_p99_ms),
            opt(row.publish_max_ms),
            opt(row.broker_rss_mib),
        );
        state.rows.push(row);
        state.hist.reset();
        state.last_ns = now_ns;
        state.last_acked = acked;
        state.last_consumed = consumed;
    }

    /// The rows collected so far.
    fn finish(&self) -> Vec<IntervalRow> {
        self.state
            .lock()
            .map(|state| state.rows.clone())
            .unwrap_or_default()
    }
}

/// Resident set size of a process in MiB, from /proc/<pid>/status.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// One durability level of the report.
#[derive(Debug, Serialize)]
struct RunReport {
    durability: &'static str,
    /// False when the system cannot be configured for this durability level.
    controllable: bool,
    /// Kafka: topic configs; peers: how the stream or queue was configured, or why not.
    topic_configs: Vec<String>,
    #[serde(flatten)]
    measured: Option<Measured>,
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    /// The system measured: rivulet, kafka-compatible, nats-jetstream, rabbitmq-stream, ...
    system: String,
    /// Where it was reached.
    brokers: String,
    workload: Workload,
    baseline: Option<Baseline>,
    runs: Vec<RunReport>,
}

/// A run id unlikely to repeat: wall-clock nanoseconds mixed with the process id.
fn new_run_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
        ^ u64::from(std::process::id())
}

impl Workload {
    fn of(load: &WorkloadArgs, client: String) -> Workload {
        Workload {
            producers: load.producers,
            consumers: load.consumers,
            partitions: load.partitions,
            record_size_bytes: load.record_size,
            client,
            mode: if load.rate.is_some() {
                "fixed-rate"
            } else {
                "max-rate"
            },
            rate_records_per_sec: load.rate,
            warmup_secs: load.warmup,
            duration_secs: load.duration,
        }
    }
}

fn run_kafka(args: KafkaArgs) -> Result<()> {
    validate(&args)?;
    let baseline = if args.load.baseline {
        Some(run_baselines(
            &args.load,
            (args.batch_size / args.load.record_size).max(1) * args.load.record_size,
        )?)
    } else {
        None
    };
    let report = measure_kafka(&args, baseline)?;
    match args.conn.format {
        Format::Json => emit_json(&report),
        Format::Text => emit(&render(&report)),
    }
}

/// Runs every durability level of `args` against a Kafka-compatible broker; `baseline` is
/// the machine's limits measured earlier in the same run, if any.
fn measure_kafka(args: &KafkaArgs, baseline: Option<Baseline>) -> Result<Report> {
    validate(args)?;
    let clock = Clock { base: Instant::now() };
    let run_id = new_run_id();
    let is_rivulet = broker_is_rivulet(&args.conn)?;
    let prefix = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("rivulet-bench-{}", std::process::id()));
    let levels = args.load.levels();
    let mut runs = Vec::new();
    for &level in levels {
        let configs = match (level, is_rivulet) {
            (Durability::D0, true) => vec![format!("{RIVULET_FSYNC_KEY}=none")],
            (Durability::D1, true) => vec![format!("{RIVULET_FSYNC_KEY}=always")],
            (Durability::D0, false) => args.d0_configs.clone(),
            (Durability::D1, false) if args.d1_configs.is_empty() => {
                runs.push(RunReport {
                    durability: level.label(),
                    controllable: false,
                    topic_configs: Vec::new(),
                    measured: None,
                });
                continue;
            }
            (Durability::D1, false) => args.d1_configs.clone(),
        };
        let topic = format!("{prefix}-{}", level.label());
        let measured = run_level(args, level, &topic, &configs, clock, run_id, baseline.as_ref())?;
        runs.push(RunReport {
            durability: level.label(),
            controllable: true,
            topic_configs: configs,
            measured: Some(measured),
        });
    }
    Ok(Report {
        system: if is_rivulet {
            "rivulet".to_string()
        } else {
            "kafka-compatible".to_string()
        },
        brokers: args.conn.brokers.clone(),
        workload: Workload::of(
            &args.load,
            format!(
                "librdkafka acks={} batch.size={} linger.ms={}",
                args.acks, args.batch_size, args.linger_ms
            ),
        ),
        baseline,
        runs,
    })
}

/// True when the broker reports Rivulet's version config.
fn broker_is_rivulet(conn: &ConnArgs) -> Result<bool> {
    let consumer = conn.consumer(None)?;
    let metadata = conn.metadata(&consumer)?;
    let Some(broker) = metadata.brokers().first() else {
        bail!("the cluster metadata lists no brokers");
    };
    let admin = conn.admin()?;
    let spec = ResourceSpecifier::Broker(broker.id());
    let results = runtime()?.block_on(admin.describe_configs([&spec], &conn.admin_options()));
    Ok(match results {
        Ok(results) => results
            .into_iter()
            .next()
            .and_then(|r| r.ok())
            .is_some_and(|r| r.get(RIVULET_VERSION_CONFIG).is_some()),
        Err(_) => false,
    })
}

fn create_topic(conn: &ConnArgs, topic: &str, partitions: i32, configs: &[String]) -> Result<()> {
    let pairs = configs
        .iter()
        .map(|c| parse_key_value(c))
        .collect::<Result<Vec<_>>>()?;
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in &pairs {
        new_topic = new_topic.set(k, v);
    }
    let admin = conn.admin()?;
    let results = runtime()?
        .block_on(admin.create_topics([&new_topic], &conn.admin_options()))
        .map_err(|e| conn.error(e, "creating the benchmark topic"))?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("creating topic {name}: {}", with_hint(code));
        }
    }
    Ok(())
}

fn delete_topic(conn: &ConnArgs, topic: &str) -> Result<()> {
    let admin = conn.admin()?;
    let results = runtime()?
        .block_on(admin.delete_topics(&[topic], &conn.admin_options()))
        .map_err(|e| conn.error(e, "deleting the benchmark topic"))?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("deleting topic {name}: {}", with_hint(code));
        }
    }
    Ok(())
}

/// Creates the topic, runs the workload, deletes the topic (unless --keep).
fn run_level(
    args: &KafkaArgs,
    level: Durability,
    topic: &str,
    configs: &[String],
    clock: Clock,
    run_id: u64,
    baseline: Option<&Baseline>,
) -> Result<Measured> {
    create_topic(&args.conn, topic, args.load.partitions, configs)?;
    settle_disk();
    let result = drive(args, level, topic, clock, run_id, baseline);
    if !args.keep {
        if let Err(e) = delete_topic(&args.conn, topic) {
            eprintln!("warning: {e:#}");
        }
    }
    result
}

/// Writes back every dirty page (`sync`) before a run, so the previous run's page-cache
/// writes are not flushed during this one: a D0 run can leave gigabytes dirty, and their
/// writeback would slow the next run's fdatasyncs.
fn settle_disk() {
    match std::process::Command::new("sync").status() {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("warning: sync before the run exited with {status}"),
        Err(e) => eprintln!("warning: cannot run sync before the run: {e}"),
    }
}

/// Process CPU time (user + system) in seconds from /proc/<pid>/stat.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_SEC)
}

#[derive(Debug, Clone, Copy)]
struct CpuSample {
    generator: Option<f64>,
    broker: Option<f64>,
}

fn sample_cpu(broker_pid: Option<u32>) -> CpuSample {
    CpuSample {
        generator: cpu_secs("self"),
        broker: broker_pid.and_then(|pid| cpu_secs(&pid.to_string())),
    }
}

fn producer_config(args: &KafkaArgs) -> Result<rdkafka::config::ClientConfig> {
    let mut cfg = args.conn.client_config();
    cfg.set("client.id", "rivulet-bench")
        .set("acks", &args.acks)
        .set("batch.size", args.batch_size.to_string())
        .set("linger.ms", args.linger_ms.to_string())
        .set("queue.buffering.max.kbytes", PRODUCER_QUEUE_KIB_MAX.to_string());
    if args.batch_size > 1_000_000 {
        cfg.set("message.max.bytes", (args.batch_size + 65_536).to_string());
    }
    args.conn.finish(cfg)
}

fn consumer_config(args: &KafkaArgs, group: &str) -> Result<rdkafka::config::ClientConfig> {
    let mut cfg = args.conn.client_config();
    cfg.set("client.id", "rivulet-bench")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    args.conn.finish(cfg)
}

/// What one consumer thread shares with the run.
struct ConsumerShared {
    clock: Clock,
    run_id: u64,
    window: Arc<OnceLock<Window>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    assigned: Arc<AtomicUsize>,
}

fn consume_loop(consumer: &BaseConsumer, shared: &ConsumerShared) -> Result<Histogram<u64>> {
    let mut hist = new_histogram()?;
    let mut last_assigned = usize::MAX;
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.window.get().is_none() {
            let count = consumer.assignment().map(|a| a.count()).unwrap_or(0);
            if count != last_assigned {
                let previous = if last_assigned == usize::MAX {
                    0
                } else {
                    last_assigned
                };
                shared.assigned.fetch_add(count, Ordering::Relaxed);
                shared.assigned.fetch_sub(previous, Ordering::Relaxed);
                last_assigned = count;
            }
        }
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(_)) => {
                shared.counters.consume_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Some(Ok(message)) => message,
        };
        let now = shared.clock.now_ns();
        let payload = message.payload().unwrap_or_default();
        if let Some(intended) = shared
            .counters
            .received(shared.window.get(), shared.run_id, payload, now)
        {
            record_latency(&mut hist, intended, now);
        }
    }
    Ok(hist)
}

/// Sends records until the window ends (as fast as possible, or on the fixed-rate schedule),
/// then flushes.
fn produce_loop(
    producer: &ThreadedProducer<DeliveryContext>,
    topic: &str,
    record_size: usize,
    schedule: Option<(f64, f64)>,
    clock: Clock,
    window: Window,
    run_id: u64,
) -> Result<u64> {
    let mut buf = vec![b'r'; record_size];
    let mut sent: u64 = 0;
    let give_up_ns = window.end_ns + FLUSH_SECS_MAX * 1_000_000_000;
    loop {
        let intended = match schedule {
            None => {
                let now = clock.now_ns();
                if now >= window.end_ns {
                    break;
                }
                now
            }
            Some((offset_ns, interval_ns)) => {
                let t = window.start_ns + (offset_ns + sent as f64 * interval_ns) as u64;
                if t >= window.end_ns {
                    break;
                }
                loop {
                    let now = clock.now_ns();
                    if now >= t {
                        break;
                    }
                    // Sleep rather than spin: the broker may share these cores. Timer slack
                    // makes a record late by tens of microseconds, which its latency includes.
                    let wait_ns = t - now;
                    thread::sleep(Duration::from_nanos(wait_ns));
                }
                t
            }
        };
        write_header(&mut buf, intended, run_id);
        loop {
            match producer.send(BaseRecord::<(), [u8]>::to(topic).payload(&buf[..])) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    thread::sleep(Duration::from_millis(1));
                    if clock.now_ns() > give_up_ns {
                        bail!("the producer queue stayed full for {FLUSH_SECS_MAX} s after the run");
                    }
                }
                Err((e, _)) => bail!("producing to {topic}: {e}"),
            }
        }
        sent += 1;
    }
    producer.flush(Duration::from_secs(FLUSH_SECS_MAX)).map_err(|e| {
        anyhow!(
            "flushing the producer: {e} ({} records undelivered after {FLUSH_SECS_MAX} s)",
            producer.in_flight_count()
        )
    })?;
    Ok(sent)
}

fn join<T>(handle: thread::JoinHandle<Result<T>>, what: &str) -> Result<T> {
    handle.join().map_err(|_| anyhow!("a {what} thread panicked"))?
}

fn drive(
    args: &KafkaArgs,
    level: Durability,
    topic: &str,
    clock: Clock,
    run_id: u64,
    baseline: Option<&Baseline>,
) -> Result<Measured> {
    let counters = Arc::new(Counters::default());
    let window_cell: Arc<OnceLock<Window>> = Arc::new(OnceLock::new());
    let stop = Arc::new(AtomicBool::new(false));
    let assigned = Arc::new(AtomicUsize::new(0));
    let group = format!("{topic}-{run_id:x}");

    let mut consumers = Vec::with_capacity(args.load.consumers);
    for _ in 0..args.load.consumers {
        let consumer: BaseConsumer = consumer_config(args, &group)?
            .create()
            .map_err(|e| anyhow!("cannot create a Kafka consumer: {e}"))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| args.conn.error(e, "subscribing"))?;
        let shared = ConsumerShared {
            clock,
            run_id,
            window: Arc::clone(&window_cell),
            counters: Arc::clone(&counters),
            stop: Arc::clone(&stop),
            assigned: Arc::clone(&assigned),
        };
        consumers.push(thread::spawn(move || {
            let result = consume_loop(&consumer, &shared);
            consumer.unsubscribe();
            result
        }));
    }
    let stop_consumers = |consumers: Vec<thread::JoinHandle<Result<Histogram<u64>>>>| {
        stop.store(true, Ordering::Relaxed);
        consumers
            .into_iter()
            .map(|h| join(h, "consumer"))
            .collect::<Result<Vec<_>>>()
    };

    // Wait for the group to own every partition before producing.
    let partitions = usize::try_from(args.load.partitions).unwrap_or(0);
    let assign_deadline = Instant::now() + Duration::from_secs(ASSIGN_SECS_MAX);
    while assigned.load(Ordering::Relaxed) < partitions {
        if Instant::now() > assign_deadline {
            let _ = stop_consumers(consumers);
            bail!(
                "the consumer group got {} of {partitions} partitions assigned within \
                 {ASSIGN_SECS_MAX} s",
                assigned.load(Ordering::Relaxed)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }

    let start_ns = clock.now_ns();
    let measure_ns = start_ns + args.load.warmup * 1_000_000_000;
    let window = Window {
        start_ns,
        measure_ns,
        end_ns: measure_ns + args.load.duration * 1_000_000_000,
    };
    let _ = window_cell.set(window);
    let interval = Arc::new(IntervalReporter::new(
        args.load.report_interval,
        args.load.broker_pid,
    )?);

    let mut producers = Vec::with_capacity(args.load.producers);
    for index in 0..args.load.producers {
        let context = DeliveryContext {
            run_id,
            acks: AckSink {
                clock,
                window,
                counters: Arc::clone(&counters),
                hist: Mutex::new(new_histogram()?),
                interval: Arc::clone(&interval),
            },
        };
        let producer: ThreadedProducer<DeliveryContext> = producer_config(args)?
            .create_with_context(context)
            .map_err(|e| anyhow!("cannot create a Kafka producer: {e}"))?;
        let schedule = args.load.rate.map(|rate| {
            let interval_ns = 1e9 * args.load.producers as f64 / rate as f64;
            (
                interval_ns * index as f64 / args.load.producers as f64,
                interval_ns,
            )
        });
        let topic = topic.to_string();
        let record_size = args.load.record_size;
        producers.push(thread::spawn(move || -> Result<Histogram<u64>> {
            produce_loop(&producer, &topic, record_size, schedule, clock, window, run_id)?;
            let hist = producer
                .context()
                .acks
                .hist
                .lock()
                .map_err(|_| anyhow!("publish latency histogram poisoned"))?
                .clone();
            Ok(hist)
        }));
    }

    // Progress, and CPU samples at the edges of the measured window.
    let tty = std::io::stderr().is_terminal();
    let total_secs = args.load.warmup + args.load.duration;
    let mut cpu_start = None;
    let mut cpu_end = None;
    loop {
        let now = clock.now_ns();
        if cpu_start.is_none() && now >= window.measure_ns {
            cpu_start = Some(sample_cpu(args.load.broker_pid));
            interval.start(window.measure_ns, &counters);
        }
        if cpu_start.is_some() {
            interval.maybe_print(now, &counters);
        }
        if now >= window.end_ns {
            cpu_end = Some(sample_cpu(args.load.broker_pid));
            interval.close(now, &counters);
            break;
        }
        if producers.iter().all(|p| p.is_finished()) {
            break;
        }
        if tty {
            eprint!(
                "\r{} {:>4}/{total_secs} s  acked {:>10}  consumed {:>10}  ",
                level.label(),
                (now - window.start_ns) / 1_000_000_000,
                counters.acked_total.load(Ordering::Relaxed),
                counters.consumed_total.load(Ordering::Relaxed),
            );
        }
        let next_ns = [window.measure_ns, window.end_ns]
            .into_iter()
            .filter(|&t| t > now)
            .min()
            .unwrap_or(now);
        let sleep_ns = (next_ns - now).clamp(1_000_000, PROGRESS_INTERVAL_MS * 1_000_000);
        thread::sleep(Duration::from_nanos(sleep_ns));
    }

    let mut publish = new_histogram()?;
    let mut produce_error = None;
    for handle in producers {
        match join(handle, "producer") {
            Ok(hist) => publish
                .add(&hist)
                .map_err(|e| anyhow!("merging histograms: {e:?}"))?,
            Err(e) => produce_error = Some(e),
        }
    }
    if let Some(e) = produce_error {
        let _ = stop_consumers(consumers);
        return Err(e);
    }

    // Drain: wait until consumers have seen everything that was acknowledged.
    let acked_total = counters.acked_total.load(Ordering::Relaxed);
    let mut last_consumed = counters.consumed_total.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    while last_consumed < acked_total && last_progress.elapsed() < Duration::from_secs(DRAIN_IDLE_SECS_MAX) {
        if tty {
            eprint!(
                "\r{} draining  acked {acked_total:>10}  consumed {last_consumed:>10}  ",
                level.label()
            );
        }
        thread::sleep(Duration::from_millis(50));
        let consumed = counters.consumed_total.load(Ordering::Relaxed);
        if consumed != last_consumed {
            last_consumed = consumed;
            last_progress = Instant::now();
        }
    }
    if tty {
        eprint!("\r{:70}\r", "");
    }
    let mut e2e = new_histogram()?;
    for hist in stop_consumers(consumers)? {
        e2e.add(&hist).map_err(|e| anyhow!("merging histograms: {e:?}"))?;
    }

    Ok(Measured::new(
        topic.to_string(),
        &args.load,
        level,
        &counters,
        &publish,
        &e2e,
        (cpu_start, cpu_end),
        baseline,
        interval.finish(),
    ))
}

/// The broker's `--data-dir` from its command line, resolved against its working directory.
fn broker_data_dir(pid: u32) -> Option<PathBuf> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let dir = words.iter().enumerate().find_map(|(i, w)| {
        if w == "--data-dir" {
            words.get(i + 1).cloned()
        } else {
            w.strip_prefix("--data-dir=").map(str::to_string)
        }
    })?;
    let dir = PathBuf::from(dir);
    if dir.is_absolute() {
        Some(dir)
    } else {
        Some(fs::read_link(format!("/proc/{pid}/cwd")).ok()?.join(dir))
    }
}

fn run_baselines(load: &WorkloadArgs, write_size: usize) -> Result<Baseline> {
    let args = load;
    // Next to the data directory (same file system) rather than inside it, which the broker owns.
    let dir = match (&args.baseline_dir, args.broker_pid.and_then(broker_data_dir)) {
        (Some(dir), _) => dir.clone(),
        (None, Some(data)) => data.parent().map_or(data.clone(), Path::to_path_buf),
        (None, None) => std::env::temp_dir(),
    };
    let secs = args.baseline_secs.unwrap_or(args.duration).max(1) as f64;
    if std::io::stderr().is_terminal() {
        eprint!("\rbaseline: disk and loopback TCP, {secs} s each  ");
    }
    let write = disk_baseline(&dir, write_size, secs, false)?;
    let sync = disk_baseline(&dir, write_size, secs, true)?;
    let small_sync = sync_latency_baseline(&dir, secs.min(SYNC_LATENCY_SECS_MAX))?;
    let (tcp_mbps, tcp_secs) = tcp_baseline(write_size.min(BASELINE_TCP_WRITE_BYTES_MAX), secs)?;
    if std::io::stderr().is_terminal() {
        eprint!("\r{:70}\r", "");
    }
    Ok(Baseline {
        dir: dir.display().to_string(),
        write_size_bytes: write_size,
        disk_write_mb_per_sec: write.mb_per_sec(),
        disk_write_bytes: write.bytes,
        disk_write_secs: write.secs,
        disk_write_fdatasync_mb_per_sec: sync.mb_per_sec(),
        disk_write_fdatasync_bytes: sync.bytes,
        disk_write_fdatasync_secs: sync.secs,
        fdatasyncs_per_sec: sync.syncs as f64 / sync.secs.max(1e-9),
        append_fdatasync_latency_ms: Latency::of(&small_sync),
        loopback_tcp_mb_per_sec: tcp_mbps,
        loopback_tcp_secs: tcp_secs,
    })
}

/// Bytes per append of the fdatasync latency baseline: a few records, as a produce request
/// to one partition at a moderate rate carries.
const SYNC_LATENCY_WRITE_BYTES: usize = 4096;
/// Longest fdatasync latency baseline.
const SYNC_LATENCY_SECS_MAX: f64 = 5.0;

/// Appends of [`SYNC_LATENCY_WRITE_BYTES`] to a new file, each followed by fdatasync, for
/// `secs`: the latency of each (in microseconds) in a histogram.
fn sync_latency_baseline(dir: &Path, secs: f64) -> Result<Histogram<u64>> {
    let path = dir.join(format!(".rivulet-bench-sync-{}", std::process::id()));
    let mut hist = new_histogram()?;
    let mut measure = || -> std::io::Result<()> {
        let mut file = File::create(&path)?;
        let buf = vec![0x5au8; SYNC_LATENCY_WRITE_BYTES];
        let limit = Duration::from_secs_f64(secs);
        let started = Instant::now();
        let mut bytes: u64 = 0;
        while started.elapsed() < limit && bytes < BASELINE_DISK_BYTES_MAX {
            let t = Instant::now();
            file.write_all(&buf)?;
            file.sync_data()?;
            let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
            hist.saturating_record(us.max(1));
            bytes += buf.len() as u64;
        }
        Ok(())
    };
    let result = measure();
    let _ = fs::remove_file(&path);
    result.with_context(|| format!("fdatasync latency baseline in {}", dir.display()))?;
    Ok(hist)
}

/// Sequential writes of `write_size` into a new file for `secs` (at most
/// [`BASELINE_DISK_BYTES_MAX`] or half the free space), optionally with an fdatasync after
/// each.
fn disk_baseline(dir: &Path, write_size: usize, secs: f64, sync: bool) -> Result<DiskSample> {
    let path = dir.join(format!(".rivulet-bench-baseline-{}", std::process::id()));
    let measure = || -> std::io::Result<(u64, u64, f64)> {
        let free = rustix::fs::statvfs(dir)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .map_err(std::io::Error::from)?;
        let bytes_max = BASELINE_DISK_BYTES_MAX.min(free / 2);
        let mut file = File::create(&path)?;
        let buf = vec![0xa5u8; write_size];
        let limit = Duration::from_secs_f64(secs);
        let started = Instant::now();
        let mut bytes: u64 = 0;
        let mut syncs: u64 = 0;
        while started.elapsed() < limit && bytes < bytes_max {
            file.write_all(&buf)?;
            bytes += buf.len() as u64;
            if sync {
                file.sync_data()?;
                syncs += 1;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        // Not timed: leave no dirty pages behind for the next measurement.
        file.sync_all()?;
        Ok((bytes, syncs, elapsed))
    };
    let result = measure();
    let _ = fs::remove_file(&path);
    let (bytes, syncs, elapsed) = result.with_context(|| {
        format!(
            "disk baseline in {} (choose another with --baseline-dir)",
            dir.display()
        )
    })?;
    Ok(DiskSample {
        bytes,
        syncs,
        secs: elapsed,
    })
}

/// A sender and a receiver thread over 127.0.0.1 for `secs`; MB/s received and seconds taken.
fn tcp_baseline(write_size: usize, secs: f64) -> Result<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("loopback baseline: bind")?;
    let addr = listener.local_addr().context("loopback baseline")?;
    let receiver = thread::spawn(move || -> Result<u64> {
        let (mut stream, _) = listener.accept().context("loopback baseline: accept")?;
        let mut buf = vec![0u8; BASELINE_TCP_WRITE_BYTES_MAX];
        let mut total: u64 = 0;
        loop {
            let n = stream.read(&mut buf).context("loopback baseline: read")?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    });
    let mut stream = TcpStream::connect(addr).context("loopback baseline: connect")?;
    let buf = vec![0x5au8; write_size];
    let limit = Duration::from_secs_f64(secs);
    let started = Instant::now();
    while started.elapsed() < limit {
        stream.write_all(&buf).context("loopback baseline: write")?;
    }
    stream
        .shutdown(Shutdown::Write)
        .context("loopback baseline: shutdown")?;
    let total = join(receiver, "loopback receiver")?;
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    Ok((total as f64 / 1e6 / elapsed, elapsed))
}

fn ms(v: f64) -> String {
    format!("{v:.3}")
}

fn lat(latency: &Option<Latency>, pick: fn(&Latency) -> f64) -> String {
    latency.as_ref().map_or("-".to_string(), |l| ms(pick(l)))
}

fn render(report: &Report) -> String {
    let w = &report.workload;
    let mut out = section("Workload");
    out.push_str(&key_values(&[
        ("brokers", report.brokers.clone()),
        ("system", report.system.clone()),
        (
            "mode",
            match w.rate_records_per_sec {
                Some(rate) => format!("fixed-rate {rate} records/s"),
                None => "max-rate".to_string(),
            },
        ),
        (
            "clients",
            format!("{} producers, {} consumers (one group)", w.producers, w.consumers),
        ),
        ("partitions", w.partitions.to_string()),
        ("record size", format!("{} B", w.record_size_bytes)),
        ("client", w.client.clone()),
        (
            "time",
            format!("{} s warm-up, {} s measured", w.warmup_secs, w.duration_secs),
        ),
    ]));
    out.push('\n');
    out.push_str(&section("Results"));
    let mut headers = vec!["metric"];
    headers.extend(report.runs.iter().map(|r| match r.durability {
        "d0" => "D0",
        _ => "D1",
    }));
    let mut table = Table::new(&headers);
    type Cell = fn(&Measured) -> String;
    let rows: Vec<(&str, Cell)> = vec![
        ("produced records/s", |m| {
            format!("{:.0}", m.produce_records_per_sec)
        }),
        ("produced MB/s", |m| format!("{:.1}", m.produce_mb_per_sec)),
        ("consumed records/s", |m| {
            format!("{:.0}", m.consume_records_per_sec)
        }),
        ("consumed MB/s", |m| format!("{:.1}", m.consume_mb_per_sec)),
        ("publish p50 ms", |m| lat(&m.publish_latency_ms, |l| l.p50)),
        ("publish p99 ms", |m| lat(&m.publish_latency_ms, |l| l.p99)),
        ("publish p99.9 ms", |m| lat(&m.publish_latency_ms, |l| l.p999)),
        ("publish max ms", |m| lat(&m.publish_latency_ms, |l| l.max)),
        ("end-to-end p50 ms", |m| lat(&m.e2e_latency_ms, |l| l.p50)),
        ("end-to-end p99 ms", |m| lat(&m.e2e_latency_ms, |l| l.p99)),
        ("end-to-end p99.9 ms", |m| lat(&m.e2e_latency_ms, |l| l.p999)),
        ("end-to-end max ms", |m| lat(&m.e2e_latency_ms, |l| l.max)),
        ("records produced", |m| m.produced_records.to_string()),
        ("records consumed", |m| m.consumed_records.to_string()),
        ("records failed", |m| m.failed_records.to_string()),
        ("generator CPU s", |m| format!("{:.2}", m.cpu_secs_generator)),
        ("broker CPU s", |m| {
            m.cpu_secs_broker.map_or("-".to_string(), |c| format!("{c:.2}"))
        }),
        ("of disk baseline", |m| {
            m.fraction_of_disk_baseline
                .map_or("-".to_string(), |f| format!("{f:.2}"))
        }),
        ("of loopback TCP", |m| {
            m.fraction_of_loopback_tcp
                .map_or("-".to_string(), |f| format!("{f:.2}"))
        }),
    ];
    let mut config_row = vec!["topic configs".to_string()];
    config_row.extend(report.runs.iter().map(|r| {
        if !r.controllable && r.topic_configs.is_empty() {
            "not controllable (give --d1-configs)".to_string()
        } else if !r.controllable {
            format!("not measured: {}", r.topic_configs.join(","))
        } else if r.topic_configs.is_empty() {
            "broker default".to_string()
        } else {
            r.topic_configs.join(",")
        }
    }));
    table.row(config_row);
    for (name, cell) in rows {
        let mut row = vec![name.to_string()];
        row.extend(
            report
                .runs
                .iter()
                .map(|r| r.measured.as_ref().map_or("-".to_string(), cell)),
        );
        table.row(row);
    }
    out.push_str(&table.render());
    if let Some(b) = &report.baseline {
        out.push('\n');
        out.push_str(&section("Baseline (same run, no broker)"));
        out.push_str(&key_values(&[
            ("dir", b.dir.clone()),
            (
                "disk write",
                format!(
                    "{:.1} MB/s ({} B writes, {:.1} MB in {:.2} s)",
                    b.disk_write_mb_per_sec,
                    b.write_size_bytes,
                    b.disk_write_bytes as f64 / 1e6,
                    b.disk_write_secs
                ),
            ),
            (
                "disk write+fdatasync",
                format!(
                    "{:.1} MB/s ({:.0} fdatasync/s, {:.1} MB in {:.2} s)",
                    b.disk_write_fdatasync_mb_per_sec,
                    b.fdatasyncs_per_sec,
                    b.disk_write_fdatasync_bytes as f64 / 1e6,
                    b.disk_write_fdatasync_secs
                ),
            ),
            ("4 KiB append+fdatasync", b.append_fdatasync_text()),
            (
                "loopback TCP",
                format!(
                    "{:.1} MB/s ({:.2} s)",
                    b.loopback_tcp_mb_per_sec, b.loopback_tcp_secs
                ),
            ),
        ]));
    }
    out
}
