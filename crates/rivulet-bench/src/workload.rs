//! What every driver shares: the workload arguments, the durability levels, the run's clock
//! and time window, the record header, latency histograms and the counters and
//! acknowledgement sink the producers and consumers feed.
//!
//! Every record carries its intended send time (nanoseconds since the start of the run) and a
//! run id in its first 16 bytes. At a fixed rate the intended time comes from the schedule, not
//! from when the send happened, so a stalled producer shows up as latency (coordinated-omission
//! correction). Publish latency is acknowledgement time minus intended time; end-to-end latency
//! is consumer receive time minus intended time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::{bail, err, Result};
use crate::report::IntervalReporter;

/// Bytes at the start of every record: intended send time (u64 LE ns) and run id (u64 LE).
pub const HEADER_BYTES: usize = 16;
/// Largest record the bench produces.
const RECORD_BYTES_MAX: usize = 1 << 20;
/// Most producers of one run.
pub(crate) const PRODUCERS_MAX: usize = 256;
/// Most consumers of one run.
pub(crate) const CONSUMERS_MAX: usize = 256;
/// Most partitions of one run.
const PARTITIONS_MAX: i32 = 10_000;
/// Longest warm-up, measured time and report interval.
const DURATION_SECS_MAX: u64 = 86_400;
/// Largest latency a histogram records, in microseconds (one hour); larger values saturate.
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// Which durability levels to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityChoice {
    /// Ack after page-cache write (Rivulet: fsync.policy=none).
    D0,
    /// Ack after fdatasync (Rivulet: fsync.policy=always, group-committed).
    D1,
    /// D0, then D1.
    Both,
}

/// One durability level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged once written to the page cache.
    D0,
    /// Acknowledged once fdatasync'ed.
    D1,
}

impl Durability {
    /// `d0` or `d1`, as in reports and names.
    pub fn label(self) -> &'static str {
        match self {
            Durability::D0 => "d0",
            Durability::D1 => "d1",
        }
    }
}

/// The workload and measurement settings every driver shares.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Producer clients, each on its own thread or task
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer clients (Kafka: one consumer group), each on its own thread or task
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Partitions of the benchmark topic (peers: streams or queues, one per partition)
    #[arg(short, long, default_value_t = 16)]
    pub partitions: i32,
    /// Bytes per record value (at least 16: send time and run id)
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    pub record_size: usize,
    /// Measured seconds (after the warm-up)
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub duration: u64,
    /// Seconds of load before measuring starts
    #[arg(long, default_value_t = 2, value_name = "SECS")]
    pub warmup: u64,
    /// Fixed total rate in records/s with coordinated-omission-corrected latency [default: max rate]
    #[arg(long, value_name = "RECORDS_PER_SEC")]
    pub rate: Option<u64>,
    /// Durability levels to run: d0 (ack after page cache), d1 (ack after fdatasync), both
    #[arg(long, value_enum, default_value = "both")]
    pub durability: DurabilityChoice,
    /// Process id of the broker, to report its CPU time and find its data directory
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Measure disk and loopback TCP baselines first
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub baseline: bool,
    /// Directory for the disk baselines [default: next to the broker's --data-dir when
    /// --broker-pid is given, else the system temp dir]
    #[arg(long, value_name = "DIR")]
    pub baseline_dir: Option<PathBuf>,
    /// Seconds per baseline [default: --duration]
    #[arg(long, value_name = "SECS")]
    pub baseline_secs: Option<u64>,
    /// Print a line per interval of this many seconds while measuring (records/s, p99 of the
    /// interval, broker RSS): for soak runs; 0 prints none
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub report_interval: u64,
}

impl WorkloadArgs {
    /// The durability levels to run, in order.
    pub fn levels(&self) -> &'static [Durability] {
        match self.durability {
            DurabilityChoice::D0 => &[Durability::D0],
            DurabilityChoice::D1 => &[Durability::D1],
            DurabilityChoice::Both => &[Durability::D0, Durability::D1],
        }
    }

    /// Fails with [`crate::BenchError::Config`] when a setting is out of range.
    pub fn validate(&self) -> Result<()> {
        let args = self;
        if !(1..=PRODUCERS_MAX).contains(&args.producers) {
            bail!(config, "--producers must be between 1 and {PRODUCERS_MAX}");
        }
        if !(1..=CONSUMERS_MAX).contains(&args.consumers) {
            bail!(config, "--consumers must be between 1 and {CONSUMERS_MAX}");
        }
        if !(1..=PARTITIONS_MAX).contains(&args.partitions) {
            bail!(config, "--partitions must be between 1 and {PARTITIONS_MAX}");
        }
        if !(HEADER_BYTES..=RECORD_BYTES_MAX).contains(&args.record_size) {
            bail!(
                config,
                "--record-size must be between {HEADER_BYTES} and {RECORD_BYTES_MAX} bytes"
            );
        }
        if !(1..=DURATION_SECS_MAX).contains(&args.duration) || args.warmup > DURATION_SECS_MAX {
            bail!(
                config,
                "--duration must be 1..={DURATION_SECS_MAX} s and --warmup at most that"
            );
        }
        if args.rate == Some(0) {
            bail!(config, "--rate must be at least 1 record/s");
        }
        if args.report_interval > DURATION_SECS_MAX {
            bail!(config, "--report-interval must be at most {DURATION_SECS_MAX} s");
        }
        Ok(())
    }
}

/// Nanoseconds since the start of the run; shared by every thread and task of the process.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Clock {
        Clock { base: Instant::now() }
    }

    /// Nanoseconds since the clock started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The phases of one run, in clock nanoseconds: warm-up from `start_ns`, measured from
/// `measure_ns` until `end_ns`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Producing starts.
    pub start_ns: u64,
    /// Measuring starts (after the warm-up).
    pub measure_ns: u64,
    /// Producing and measuring end.
    pub end_ns: u64,
}

impl Window {
    /// True when `t_ns` falls in the measured part.
    pub fn measured(&self, t_ns: u64) -> bool {
        (self.measure_ns..self.end_ns).contains(&t_ns)
    }
}

/// Writes the record header (intended send time, run id) into the first 16 bytes of `buf`.
pub fn write_header(buf: &mut [u8], intended_ns: u64, run_id: u64) {
    buf[..8].copy_from_slice(&intended_ns.to_le_bytes());
    buf[8..16].copy_from_slice(&run_id.to_le_bytes());
}

/// The (intended send time, run id) of a record, if it is long enough to have them.
pub fn read_header(payload: &[u8]) -> Option<(u64, u64)> {
    let intended = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let run_id = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((intended, run_id))
}

/// An empty latency histogram in microseconds, 3 significant digits, up to one hour.
pub(crate) fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
        .map_err(|e| err!("cannot create a latency histogram: {e:?}"))
}

/// Records the latency from `from_ns` to `to_ns` (at least 1 µs).
pub(crate) fn record_latency(hist: &mut Histogram<u64>, from_ns: u64, to_ns: u64) {
    let us = to_ns.saturating_sub(from_ns) / 1_000;
    hist.saturating_record(us.max(1));
}

/// Adds `from` into `into`.
pub(crate) fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) -> Result<()> {
    into.add(from).map_err(|e| err!("merging histograms: {e:?}"))
}

/// A run id unlikely to repeat: wall-clock nanoseconds mixed with the process id.
pub(crate) fn new_run_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
        ^ u64::from(std::process::id())
}

/// Counters shared by all producers and consumers of one run.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub acked_total: AtomicU64,
    pub acked_measured: AtomicU64,
    pub failed: AtomicU64,
    pub consumed_total: AtomicU64,
    pub consumed_measured: AtomicU64,
    pub consume_errors: AtomicU64,
}

impl Counters {
    /// Counts one consumed `payload` received at `now`, ignoring payloads of other runs;
    /// returns its intended send time when its latency belongs to the measured window.
    pub fn received(&self, window: Option<&Window>, run_id: u64, payload: &[u8], now: u64) -> Option<u64> {
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

    /// Records acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked_total.load(Ordering::Relaxed)
    }

    /// Records consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed_total.load(Ordering::Relaxed)
    }
}

/// Where acknowledgements go: counts and publish latency of one producer.
#[derive(Debug)]
pub struct AckSink {
    pub(crate) clock: Clock,
    pub(crate) window: Window,
    pub(crate) counters: Arc<Counters>,
    pub(crate) hist: Mutex<Histogram<u64>>,
    pub(crate) interval: Arc<IntervalReporter>,
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

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest value.
    pub max: f64,
}

impl Latency {
    /// The percentiles of `hist` (microseconds), or none when it is empty.
    pub fn of(hist: &Histogram<u64>) -> Option<Latency> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_short_payloads_have_none() {
        let mut buf = vec![0u8; HEADER_BYTES + 4];
        write_header(&mut buf, 123_456, 0xfeed);
        assert_eq!(read_header(&buf), Some((123_456, 0xfeed)));
        assert_eq!(read_header(&buf[..15]), None);
    }

    #[test]
    fn counters_ignore_other_runs_and_time_the_measured_window() {
        let window = Window {
            start_ns: 0,
            measure_ns: 100,
            end_ns: 200,
        };
        let counters = Counters::default();
        let mut buf = vec![0u8; HEADER_BYTES];
        write_header(&mut buf, 150, 7);
        assert_eq!(counters.received(Some(&window), 8, &buf, 160), None);
        assert_eq!(counters.consumed(), 0);
        assert_eq!(counters.received(Some(&window), 7, &buf, 160), Some(150));
        write_header(&mut buf, 50, 7);
        assert_eq!(counters.received(Some(&window), 7, &buf, 120), None);
        assert_eq!(counters.received(None, 7, &buf, 120), None);
        assert_eq!(counters.consumed(), 3);
        assert_eq!(counters.consumed_measured.load(Ordering::Relaxed), 2);
    }
}
