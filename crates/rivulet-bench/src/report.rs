//! What a run reports: [`Report`] with a [`RunReport`] per durability level, each with its
//! [`Measured`] figures, and the per-interval rows of soak runs ([`IntervalReporter`]).
//! Values only; the `rivulet` binary prints them as text or JSON.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::baseline::{cpu_secs, rss_mib, Baseline, CpuSample};
use crate::error::Result;
use crate::workload::{new_histogram, record_latency, Counters, Durability, Latency, WorkloadArgs};

/// Most interval rows one run keeps (a day of 10 s intervals).
const INTERVAL_ROWS_MAX: usize = 8_640;
/// Shortest final interval worth a row: anything shorter says nothing about a rate.
const INTERVAL_NS_MIN: u64 = 100_000_000;

/// The whole report of one system.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The system measured: rivulet, kafka-compatible, nats-jetstream, rabbitmq-stream, ...
    pub system: String,
    /// Where it was reached.
    pub brokers: String,
    /// The workload, as run.
    pub workload: Workload,
    /// This machine's limits, when measured.
    pub baseline: Option<Baseline>,
    /// One entry per durability level.
    pub runs: Vec<RunReport>,
}

/// The workload, as run.
#[derive(Debug, Serialize)]
pub struct Workload {
    /// Producer clients.
    pub producers: usize,
    /// Consumer clients.
    pub consumers: usize,
    /// Partitions (peers: streams or queues).
    pub partitions: i32,
    /// Bytes per record value.
    pub record_size_bytes: usize,
    /// Client settings of the driver (Kafka: acks, batch.size, linger.ms).
    pub client: String,
    /// `fixed-rate` or `max-rate`.
    pub mode: &'static str,
    /// The fixed rate, if any.
    pub rate_records_per_sec: Option<u64>,
    /// Seconds of load before measuring.
    pub warmup_secs: u64,
    /// Measured seconds.
    pub duration_secs: u64,
}

impl Workload {
    /// `load` as run with a client described by `client`.
    pub fn of(load: &WorkloadArgs, client: String) -> Workload {
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

/// One durability level of the report.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// `d0` or `d1`.
    pub durability: &'static str,
    /// False when the system cannot be configured for this durability level.
    pub controllable: bool,
    /// Kafka: topic configs; peers: how the stream or queue was configured, or why not.
    pub topic_configs: Vec<String>,
    /// The figures, when the level was measured.
    #[serde(flatten)]
    pub measured: Option<Measured>,
}

/// What one durability level measured.
#[derive(Debug, Serialize)]
pub struct Measured {
    /// The topic (peers: the streams or queues, comma-separated; more than 8 as the first,
    /// the last and their count).
    pub topic: String,
    /// Records acknowledged, warm-up included.
    pub produced_records: u64,
    /// Records refused or never acknowledged.
    pub failed_records: u64,
    /// Records consumed, warm-up included.
    pub consumed_records: u64,
    /// Receive errors (not fatal).
    pub consume_errors: u64,
    /// Records acknowledged per measured second.
    pub produce_records_per_sec: f64,
    /// MB acknowledged per measured second.
    pub produce_mb_per_sec: f64,
    /// Records consumed per measured second.
    pub consume_records_per_sec: f64,
    /// MB consumed per measured second.
    pub consume_mb_per_sec: f64,
    /// Acknowledgement time minus intended send time.
    pub publish_latency_ms: Option<Latency>,
    /// Receive time minus intended send time.
    pub e2e_latency_ms: Option<Latency>,
    /// CPU seconds of this process while measuring.
    pub cpu_secs_generator: f64,
    /// CPU seconds of the broker while measuring, when its pid is known.
    pub cpu_secs_broker: Option<f64>,
    /// Broker CPU microseconds per record produced (and consumed) while measuring.
    pub broker_cpu_us_per_record: Option<f64>,
    /// Load generator CPU microseconds per record while measuring.
    pub generator_cpu_us_per_record: Option<f64>,
    /// Busy CPU microseconds of the whole machine per record while measuring: broker,
    /// generator, kernel writeback and interrupts, and anything else running.
    pub machine_cpu_us_per_record: Option<f64>,
    /// Context switches of all the broker's threads per record while measuring.
    pub broker_context_switches_per_record: Option<f64>,
    /// The broker's read- and write-family system calls per record while measuring
    /// (`/proc/<pid>/io` syscr + syscw; futex, epoll and fdatasync are not counted there).
    pub broker_rw_syscalls_per_record: Option<f64>,
    /// The broker's threads at the end of the measured window.
    pub broker_threads: Option<u64>,
    /// The broker's resident memory at the end of the measured window, MiB.
    pub broker_rss_mib: Option<f64>,
    /// Produce MB/s over the disk baseline of the same durability (D0: write, D1: write+fdatasync).
    pub fraction_of_disk_baseline: Option<f64>,
    /// Produce MB/s over loopback TCP MB/s.
    pub fraction_of_loopback_tcp: Option<f64>,
    /// One consumer reading the whole run back from the start (`--catch-up`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    /// Per-interval figures when `--report-interval` is set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<IntervalRow>,
}

/// One consumer reading everything a run produced, from the first offset, as fast as the
/// broker serves it (the records are in the page cache: they were just written).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CatchUp {
    /// Record-batch bytes received.
    pub bytes: u64,
    /// Records received.
    pub records: u64,
    /// Seconds from the first request to the last record.
    pub secs: f64,
    /// Bytes per second, in MB (10^6).
    pub mb_per_sec: f64,
}

/// The raw results of one run, which [`Measured::new`] turns into figures.
pub(crate) struct Tally<'a> {
    pub counters: &'a Counters,
    pub publish: &'a Histogram<u64>,
    pub e2e: &'a Histogram<u64>,
    pub cpu: (Option<CpuSample>, Option<CpuSample>),
    pub intervals: Vec<IntervalRow>,
    /// The broker's threads and RSS (MiB) at the end of the window.
    pub broker_end: (Option<u64>, Option<f64>),
    pub catch_up: Option<CatchUp>,
}

impl Measured {
    /// Figures of one finished run from its counters and histograms.
    pub(crate) fn new(
        topic: String,
        load: &WorkloadArgs,
        level: Durability,
        tally: Tally<'_>,
        baseline: Option<&Baseline>,
    ) -> Measured {
        let counters = tally.counters;
        let secs = load.duration as f64;
        let mb = |records: u64| records as f64 * load.record_size as f64 / 1e6 / secs;
        let acked_measured = counters.acked_measured.load(Ordering::Relaxed);
        let consumed_measured = counters.consumed_measured.load(Ordering::Relaxed);
        let produce_mb_per_sec = mb(acked_measured);
        let (cpu_start, cpu_end) = tally.cpu;
        let cpu_delta = |pick: fn(&CpuSample) -> Option<f64>| -> Option<f64> {
            Some(pick(cpu_end.as_ref()?)? - pick(cpu_start.as_ref()?)?)
        };
        let disk_reference = baseline.map(|b| match level {
            Durability::D0 => b.disk_write_mb_per_sec,
            Durability::D1 => b.disk_write_fdatasync_mb_per_sec,
        });
        let ratio = |reference: Option<f64>| reference.filter(|r| *r > 0.0).map(|r| produce_mb_per_sec / r);
        let per_record = |total: Option<f64>, scale: f64| {
            total
                .filter(|_| acked_measured > 0)
                .map(|t| t * scale / acked_measured as f64)
        };
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
            publish_latency_ms: Latency::of(tally.publish),
            e2e_latency_ms: Latency::of(tally.e2e),
            cpu_secs_generator: cpu_delta(|s| s.generator).unwrap_or(0.0),
            cpu_secs_broker: cpu_delta(|s| s.broker),
            broker_cpu_us_per_record: per_record(cpu_delta(|s| s.broker), 1e6),
            generator_cpu_us_per_record: per_record(cpu_delta(|s| s.generator), 1e6),
            machine_cpu_us_per_record: per_record(cpu_delta(|s| s.machine), 1e6),
            broker_context_switches_per_record: per_record(cpu_delta(|s| s.broker_context_switches), 1.0),
            broker_rw_syscalls_per_record: per_record(cpu_delta(|s| s.broker_rw_syscalls), 1.0),
            broker_threads: tally.broker_end.0,
            broker_rss_mib: tally.broker_end.1,
            fraction_of_disk_baseline: ratio(disk_reference),
            fraction_of_loopback_tcp: ratio(baseline.map(|b| b.loopback_tcp_mb_per_sec)),
            catch_up: tally.catch_up,
            intervals: tally.intervals,
        }
    }
}

/// Figures of one `--report-interval` interval.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalRow {
    /// Seconds since measuring started, at the interval's end.
    pub at_secs: f64,
    /// Records acknowledged per second in the interval.
    pub acked_records_per_sec: f64,
    /// Records consumed per second in the interval.
    pub consumed_records_per_sec: f64,
    /// Publish latency median of the interval.
    pub publish_p50_ms: Option<f64>,
    /// Publish latency p99 of the interval.
    pub publish_p99_ms: Option<f64>,
    /// Largest publish latency of the interval.
    pub publish_max_ms: Option<f64>,
    /// Broker resident set size at the interval's end.
    pub broker_rss_mib: Option<f64>,
    /// Broker CPU seconds since it started, at the interval's end.
    pub broker_cpu_secs: Option<f64>,
}

/// Per-interval publish latency and throughput, for soak runs.
#[derive(Debug)]
pub(crate) struct IntervalReporter {
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

impl IntervalReporter {
    /// Rows every `every_secs` (none when 0), sampling the broker at `broker_pid`.
    pub fn new(every_secs: u64, broker_pid: Option<u32>) -> Result<IntervalReporter> {
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
    pub fn record(&self, intended_ns: u64, now_ns: u64) {
        if !self.enabled() {
            return;
        }
        if let Ok(mut state) = self.state.lock() {
            record_latency(&mut state.hist, intended_ns, now_ns);
        }
    }

    /// Marks the start of the measured window.
    pub fn start(&self, now_ns: u64, counters: &Counters) {
        if let Ok(mut state) = self.state.lock() {
            state.started_ns = now_ns;
            state.last_ns = now_ns;
            state.last_acked = counters.acked();
            state.last_consumed = counters.consumed();
            state.hist.reset();
        }
    }

    /// Closes the interval and prints its line when it is due.
    pub fn maybe_print(&self, now_ns: u64, counters: &Counters) {
        self.emit(now_ns, counters, false);
    }

    /// Closes the last interval at the end of the measured window, even when it is shorter
    /// than `--report-interval` (a duration that is not a multiple of it, or a late wake-up).
    pub fn close(&self, now_ns: u64, counters: &Counters) {
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
        let acked = counters.acked();
        let consumed = counters.consumed();
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
    pub fn finish(&self) -> Vec<IntervalRow> {
        self.state
            .lock()
            .map(|state| state.rows.clone())
            .unwrap_or_default()
    }
}
