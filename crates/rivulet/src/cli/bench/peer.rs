//! The run loop shared by the peer drivers (NATS JetStream, RabbitMQ streams and quorum
//! queues): the same workload, clock, record header, histograms and report as
//! `rivulet bench kafka`, driven from async tasks because the peers' Rust clients are async.
//!
//! A driver creates its destinations (one stream or queue per partition), then the harness
//! runs `producers` producer tasks and `consumers` consumer tasks. A producer task asks its
//! [`ProducerCtx`] for the next record (which waits for the record's slot at a fixed rate),
//! publishes it, and reports the acknowledgement to the [`AckSink`]; a consumer task hands
//! every received payload to its [`ConsumerCtx`].

use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use tokio::sync::Notify;

use super::super::output::{emit, emit_json};
use super::super::Format;
use super::{
    new_histogram, new_run_id, record_latency, render, run_baselines, sample_cpu, settle_disk, write_header,
    AckSink, Baseline, Clock, Counters, CpuSample, Durability, IntervalReporter, Measured, Report, RunReport,
    Window, Workload, WorkloadArgs, ASSIGN_SECS_MAX, DRAIN_IDLE_SECS_MAX, FLUSH_SECS_MAX,
    PROGRESS_INTERVAL_MS,
};

/// Records one producer may have published but not yet seen acknowledged: the peers' analogue
/// of librdkafka's 64 MiB producer queue, in records (at most 64 MiB of them).
pub(super) fn in_flight_records_max(record_size: usize) -> usize {
    const IN_FLIGHT_BYTES_MAX: usize = 64 << 20;
    const IN_FLIGHT_RECORDS_MAX: usize = 65_536;
    (IN_FLIGHT_BYTES_MAX / record_size.max(1)).clamp(1, IN_FLIGHT_RECORDS_MAX)
}

/// Bytes per write of the disk baselines (peers have no batch size of their own).
const BASELINE_WRITE_BYTES: usize = 1 << 20;

/// What a driver set up for one durability level.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    /// Stream, queue or subject names, one per partition.
    pub destinations: Vec<String>,
    /// How the peer is configured for this level, for the report.
    pub settings: Vec<String>,
}

/// A peer system the benchmark can drive.
pub(super) trait PeerDriver: Send + Sync + 'static {
    /// The system's name in reports, e.g. `nats-jetstream`.
    fn name(&self) -> &'static str;

    /// The server's process id when it can be found, for its CPU time.
    fn server_pid(&self) -> Option<u32> {
        None
    }

    /// Creates `partitions` destinations named after `prefix` at durability `level`, or
    /// `Ok(None)` with the reason when the system cannot provide that level.
    fn prepare(
        &self,
        level: Durability,
        prefix: &str,
        partitions: usize,
    ) -> impl Future<Output = Result<Result<Prepared, String>>> + Send;

    /// Publishes records from `ctx` until it returns none, then waits for outstanding acks.
    fn produce(self: Arc<Self>, ctx: ProducerCtx) -> impl Future<Output = Result<()>> + Send;

    /// Receives records from `ctx.destinations()` (from their beginning) until `ctx` stops.
    fn consume(self: Arc<Self>, ctx: ConsumerCtx) -> impl Future<Output = Result<()>> + Send;

    /// Deletes what [`PeerDriver::prepare`] created.
    fn cleanup(&self, prepared: &Prepared) -> impl Future<Output = Result<()>> + Send;
}

/// One producer's view of the run.
pub(super) struct ProducerCtx {
    index: usize,
    destinations: Arc<Vec<String>>,
    clock: Clock,
    window: Window,
    /// Fixed rate: (offset of this producer's first slot, interval between its slots) in ns.
    schedule: Option<(f64, f64)>,
    run_id: u64,
    record_size: usize,
    sent: u64,
    acks: Arc<AckSink>,
}

impl ProducerCtx {
    /// Every destination of the run; producers spread records over all of them.
    pub fn destinations(&self) -> &[String] {
        &self.destinations
    }

    /// Where to report acknowledgements (shareable with an ack-collecting task).
    pub fn acks(&self) -> Arc<AckSink> {
        Arc::clone(&self.acks)
    }

    /// Most records to keep published but unacknowledged.
    pub fn in_flight_max(&self) -> usize {
        in_flight_records_max(self.record_size)
    }

    /// The destination for the next record: round robin over all of them.
    pub fn next_destination(&self) -> usize {
        let n = self.destinations.len().max(1) as u64;
        usize::try_from((self.sent + self.index as u64) % n).unwrap_or(0)
    }

    /// Waits for the next record's slot (at a fixed rate) and returns its intended send time
    /// and payload, or `None` once the run's sending time is over.
    pub async fn next_record(&mut self) -> Option<(u64, Vec<u8>)> {
        let intended = match self.schedule {
            None => {
                let now = self.clock.now_ns();
                if now >= self.window.end_ns {
                    return None;
                }
                now
            }
            Some((offset_ns, interval_ns)) => {
                let t = self.window.start_ns + (offset_ns + self.sent as f64 * interval_ns) as u64;
                if t >= self.window.end_ns {
                    return None;
                }
                let now = self.clock.now_ns();
                if now < t {
                    tokio::time::sleep(Duration::from_nanos(t - now)).await;
                }
                t
            }
        };
        let mut payload = vec![b'r'; self.record_size];
        write_header(&mut payload, intended, self.run_id);
        self.sent += 1;
        Some((intended, payload))
    }
}

/// The stop signal shared by consumers.
#[derive(Debug, Default)]
struct Stop {
    stopped: AtomicBool,
    notify: Notify,
}

/// One consumer's view of the run.
pub(super) struct ConsumerCtx {
    index: usize,
    destinations: Vec<String>,
    clock: Clock,
    run_id: u64,
    window: Arc<OnceLock<Window>>,
    counters: Arc<Counters>,
    hist: Arc<Mutex<Histogram<u64>>>,
    stop: Arc<Stop>,
    ready: Arc<AtomicUsize>,
    announced: bool,
}

impl ConsumerCtx {
    /// This consumer's index, 0-based.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The destinations this consumer reads, each from its beginning.
    pub fn destinations(&self) -> &[String] {
        &self.destinations
    }

    /// Call once every destination is subscribed: producing starts when all consumers are.
    pub fn ready(&mut self) {
        if !self.announced {
            self.announced = true;
            self.ready.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// True once the run is over and consumers should return.
    pub fn stopped(&self) -> bool {
        self.stop.stopped.load(Ordering::Relaxed)
    }

    /// Resolves when the run is over (for `tokio::select!`).
    pub async fn wait_stopped(&self) {
        loop {
            let notified = self.stop.notify.notified();
            if self.stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Accounts one received payload; ignores payloads of other runs.
    pub fn received(&self, payload: &[u8]) {
        let now = self.clock.now_ns();
        if let Some(intended) = self
            .counters
            .received(self.window.get(), self.run_id, payload, now)
        {
            if let Ok(mut hist) = self.hist.lock() {
                record_latency(&mut hist, intended, now);
            }
        }
    }

    /// A receive failed (counted, not fatal).
    pub fn error(&self) {
        self.counters.consume_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Arguments every peer command shares.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct PeerArgs {
    #[command(flatten)]
    pub load: WorkloadArgs,
    /// Name prefix of the streams or queues created for the run [default: rivulet-bench-<pid>]
    #[arg(long)]
    pub prefix: Option<String>,
    /// Output format: text or json
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Runs the whole benchmark against one peer: baselines, then each durability level, then the
/// report. `server` says where the peer was reached; `client` describes the client settings.
pub(super) fn run_peer<D: PeerDriver>(driver: D, args: &PeerArgs, server: &str, client: &str) -> Result<()> {
    args.load.validate()?;
    let baseline = if args.load.baseline {
        Some(run_baselines(&args.load, BASELINE_WRITE_BYTES)?)
    } else {
        None
    };
    let report = measure_peer(driver, args, server, client, baseline)?;
    match args.format {
        Format::Json => emit_json(&report),
        Format::Text => emit(&render(&report)),
    }
}

/// [`run_peer`] without printing or baselines: the report. `baseline` is the machine's limits
/// measured earlier in the same run, if any.
pub(super) fn measure_peer<D: PeerDriver>(
    driver: D,
    args: &PeerArgs,
    server: &str,
    client: &str,
    baseline: Option<Baseline>,
) -> Result<Report> {
    args.load.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
    let driver = Arc::new(driver);
    let clock = Clock { base: Instant::now() };
    let run_id = new_run_id();
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("rivulet-bench-{}", std::process::id()));
    let mut runs = Vec::new();
    for &level in args.load.levels() {
        let run = PeerLevel {
            load: &args.load,
            level,
            prefix: format!("{prefix}-{}", level.label()),
            clock,
            run_id,
            baseline: baseline.as_ref(),
        };
        let (settings, measured) = runtime.block_on(run_level(Arc::clone(&driver), run))?;
        runs.push(RunReport {
            durability: level.label(),
            controllable: measured.is_some(),
            topic_configs: settings,
            measured,
        });
    }
    Ok(Report {
        system: driver.name().to_string(),
        brokers: server.to_string(),
        workload: Workload::of(&args.load, client.to_string()),
        baseline,
        runs,
    })
}

/// Everything one durability level of a peer run needs.
pub(super) struct PeerLevel<'a> {
    pub load: &'a WorkloadArgs,
    pub level: Durability,
    pub prefix: String,
    pub clock: Clock,
    pub run_id: u64,
    pub baseline: Option<&'a Baseline>,
}

/// Runs one durability level against `driver`: `Ok((settings, None))` when the peer cannot
/// provide the level.
pub(super) async fn run_level<D: PeerDriver>(
    driver: Arc<D>,
    run: PeerLevel<'_>,
) -> Result<(Vec<String>, Option<Measured>)> {
    let partitions = usize::try_from(run.load.partitions).unwrap_or(1).max(1);
    let prepared = match driver.prepare(run.level, &run.prefix, partitions).await? {
        Ok(prepared) => prepared,
        Err(reason) => return Ok((vec![reason], None)),
    };
    tokio::task::spawn_blocking(settle_disk)
        .await
        .map_err(|e| anyhow!("sync before the run failed: {e}"))?;
    let result = drive(Arc::clone(&driver), &run, &prepared).await;
    if let Err(e) = driver.cleanup(&prepared).await {
        eprintln!("warning: cleaning up after {}: {e:#}", driver.name());
    }
    Ok((prepared.settings, Some(result?)))
}

async fn drive<D: PeerDriver>(driver: Arc<D>, run: &PeerLevel<'_>, prepared: &Prepared) -> Result<Measured> {
    let load = run.load;
    let clock = run.clock;
    let counters = Arc::new(Counters::default());
    let window_cell: Arc<OnceLock<Window>> = Arc::new(OnceLock::new());
    let stop = Arc::new(Stop::default());
    let ready = Arc::new(AtomicUsize::new(0));
    let broker_pid = load.broker_pid.or_else(|| driver.server_pid());

    let mut consumer_hists = Vec::with_capacity(load.consumers);
    let mut consumers = Vec::with_capacity(load.consumers);
    for index in 0..load.consumers {
        let destinations: Vec<String> = prepared
            .destinations
            .iter()
            .enumerate()
            .filter(|(i, _)| i % load.consumers == index)
            .map(|(_, d)| d.clone())
            .collect();
        let hist = Arc::new(Mutex::new(new_histogram()?));
        consumer_hists.push(Arc::clone(&hist));
        let ctx = ConsumerCtx {
            index,
            // A consumer without destinations has nothing to wait for.
            announced: destinations.is_empty(),
            destinations,
            clock,
            run_id: run.run_id,
            window: Arc::clone(&window_cell),
            counters: Arc::clone(&counters),
            hist,
            stop: Arc::clone(&stop),
            ready: Arc::clone(&ready),
        };
        if ctx.announced {
            ready.fetch_add(1, Ordering::SeqCst);
        }
        consumers.push(tokio::spawn(Arc::clone(&driver).consume(ctx)));
    }
    let stop_consumers = |consumers: Vec<tokio::task::JoinHandle<Result<()>>>| {
        let stop = Arc::clone(&stop);
        async move {
            stop.stopped.store(true, Ordering::SeqCst);
            stop.notify.notify_waiters();
            let mut first_error = None;
            for handle in consumers {
                let result = tokio::time::timeout(Duration::from_secs(FLUSH_SECS_MAX), handle)
                    .await
                    .map_err(|_| anyhow!("a consumer did not stop within {FLUSH_SECS_MAX} s"))
                    .and_then(|joined| joined.map_err(|e| anyhow!("a consumer task failed: {e}")))
                    .and_then(|r| r);
                if let Err(e) = result {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        }
    };

    let deadline = Instant::now() + Duration::from_secs(ASSIGN_SECS_MAX);
    while ready.load(Ordering::SeqCst) < load.consumers {
        if consumers.iter().any(|c| c.is_finished()) || Instant::now() > deadline {
            let ready_now = ready.load(Ordering::SeqCst);
            let stopped = stop_consumers(consumers).await;
            stopped.context("starting consumers")?;
            bail!(
                "{} of {} consumers subscribed within {ASSIGN_SECS_MAX} s",
                ready_now,
                load.consumers
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let start_ns = clock.now_ns();
    let measure_ns = start_ns + load.warmup * 1_000_000_000;
    let window = Window {
        start_ns,
        measure_ns,
        end_ns: measure_ns + load.duration * 1_000_000_000,
    };
    let _ = window_cell.set(window);
    let interval = Arc::new(IntervalReporter::new(load.report_interval, broker_pid)?);

    let destinations = Arc::new(prepared.destinations.clone());
    let mut producers = Vec::with_capacity(load.producers);
    let mut sinks = Vec::with_capacity(load.producers);
    for index in 0..load.producers {
        let acks = Arc::new(AckSink {
            clock,
            window,
            counters: Arc::clone(&counters),
            hist: Mutex::new(new_histogram()?),
            interval: Arc::clone(&interval),
        });
        sinks.push(Arc::clone(&acks));
        let schedule = load.rate.map(|rate| {
            let interval_ns = 1e9 * load.producers as f64 / rate as f64;
            (interval_ns * index as f64 / load.producers as f64, interval_ns)
        });
        let ctx = ProducerCtx {
            index,
            destinations: Arc::clone(&destinations),
            clock,
            window,
            schedule,
            run_id: run.run_id,
            record_size: load.record_size,
            sent: 0,
            acks,
        };
        producers.push(tokio::spawn(Arc::clone(&driver).produce(ctx)));
    }

    let tty = std::io::stderr().is_terminal();
    let total_secs = load.warmup + load.duration;
    let mut cpu_start: Option<CpuSample> = None;
    let mut cpu_end: Option<CpuSample> = None;
    loop {
        let now = clock.now_ns();
        if cpu_start.is_none() && now >= window.measure_ns {
            cpu_start = Some(sample_cpu(broker_pid));
            interval.start(window.measure_ns, &counters);
        }
        if now >= window.end_ns {
            cpu_end = Some(sample_cpu(broker_pid));
            interval.maybe_print(now, &counters);
            interval.close(now, &counters);
            break;
        }
        if producers.iter().all(|p| p.is_finished()) {
            break;
        }
        if cpu_start.is_some() {
            interval.maybe_print(now, &counters);
        }
        if tty {
            eprint!(
                "\r{} {} {:>4}/{total_secs} s  acked {:>10}  consumed {:>10}  ",
                driver.name(),
                run.level.label(),
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
        tokio::time::sleep(Duration::from_nanos(sleep_ns)).await;
    }

    let mut produce_error = None;
    for handle in producers {
        let result = tokio::time::timeout(Duration::from_secs(FLUSH_SECS_MAX * 2), handle)
            .await
            .map_err(|_| anyhow!("a producer did not finish within {} s", FLUSH_SECS_MAX * 2))
            .and_then(|joined| joined.map_err(|e| anyhow!("a producer task failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = result {
            produce_error.get_or_insert(e);
        }
    }
    if let Some(e) = produce_error {
        let _ = stop_consumers(consumers).await;
        return Err(e);
    }
    let mut publish = new_histogram()?;
    for sink in &sinks {
        let hist = sink
            .hist
            .lock()
            .map_err(|_| anyhow!("publish latency histogram poisoned"))?;
        publish
            .add(&*hist)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
    }

    let acked_total = counters.acked_total.load(Ordering::Relaxed);
    let mut last_consumed = counters.consumed_total.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    while last_consumed < acked_total && last_progress.elapsed() < Duration::from_secs(DRAIN_IDLE_SECS_MAX) {
        if tty {
            eprint!(
                "\r{} {} draining  acked {acked_total:>10}  consumed {last_consumed:>10}  ",
                driver.name(),
                run.level.label()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let consumed = counters.consumed_total.load(Ordering::Relaxed);
        if consumed != last_consumed {
            last_consumed = consumed;
            last_progress = Instant::now();
        }
    }
    if tty {
        eprint!("\r{:78}\r", "");
    }
    stop_consumers(consumers).await?;
    let mut e2e = new_histogram()?;
    for hist in &consumer_hists {
        let hist = hist
            .lock()
            .map_err(|_| anyhow!("end-to-end latency histogram poisoned"))?;
        e2e.add(&*hist)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
    }
    Ok(Measured::new(
        prepared.destinations.join(","),
        load,
        run.level,
        &counters,
        &publish,
        &e2e,
        (cpu_start, cpu_end),
        run.baseline,
        interval.finish(),
    ))
}
