//! The run loop every driver goes through: [`measure`] runs each durability level of a
//! workload against a [`Driver`] and returns the [`Report`].
//!
//! For one level the driver creates its destinations ([`Driver::prepare`]), then the loop
//! starts `consumers` consumer tasks and waits until they own every partition, opens the time
//! window and starts `producers` producer tasks. A producer asks its [`ProducerCtx`] for the
//! next record (which waits for the record's slot at a fixed rate), publishes it and reports
//! the acknowledgement to the [`crate::AckSink`]; a consumer hands every received payload to
//! its [`ConsumerCtx`]. After the window the loop waits for the producers, lets the consumers
//! drain what was acknowledged, stops them and turns counters and histograms into
//! [`Measured`] figures.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinHandle;

use crate::baseline::{rss_mib, sample_cpu, settle_disk, threads, Baseline, CpuSample};
use crate::ctx::{ConsumerCtx, ProducerCtx, Stop};
use crate::driver::{Driver, Prepared, Setup};
use crate::error::{bail, err, Context, Result};
use crate::report::{IntervalReporter, Measured, Report, RunReport, Tally, Workload};
use crate::workload::{
    merge, new_histogram, new_run_id, AckSink, Clock, Counters, Durability, Window, WorkloadArgs,
    CONSUMERS_MAX, PRODUCERS_MAX,
};

/// How long producers may take to deliver what they queued once the run ends.
pub(crate) const FLUSH_SECS_MAX: u64 = 60;
/// Consumers stop draining after this long without a new record.
const DRAIN_IDLE_SECS_MAX: u64 = 15;
/// How long the consumers may take to own every partition.
const ASSIGN_SECS_MAX: u64 = 60;
/// How often the progress line is redrawn.
const PROGRESS_INTERVAL_MS: u64 = 1_000;

/// Where the system was reached and how its client is set up, for the report.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where the system was reached (no passwords).
    pub server: String,
    /// The client's settings.
    pub client: String,
    /// Name prefix of what the run creates; each level appends `-d0` or `-d1`.
    pub prefix: String,
}

/// The default name prefix: `rivulet-bench-<pid>`.
pub fn default_prefix() -> String {
    format!("rivulet-bench-{}", std::process::id())
}

/// Runs every durability level of `load` against `driver` (no baselines, no printing);
/// `baseline` is the machine's limits measured earlier in the same run, if any.
pub fn measure<D: Driver>(
    driver: D,
    load: &WorkloadArgs,
    target: &Target,
    baseline: Option<Baseline>,
) -> Result<Report> {
    load.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(PRODUCERS_MAX + CONSUMERS_MAX + 16)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let driver = Arc::new(driver);
    let clock = Clock::start();
    let run_id = new_run_id();
    let mut runs = Vec::new();
    for &level in load.levels() {
        let run = Level {
            load,
            level,
            name: format!("{}-{}", target.prefix, level.label()),
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
        brokers: target.server.clone(),
        workload: Workload::of(load, target.client.clone()),
        baseline,
        runs,
    })
}

/// Everything one durability level needs.
struct Level<'a> {
    load: &'a WorkloadArgs,
    level: Durability,
    /// Name of what the driver creates for the level.
    name: String,
    clock: Clock,
    run_id: u64,
    baseline: Option<&'a Baseline>,
}

/// Runs one durability level against `driver`: `Ok((settings, None))` when the system cannot
/// provide the level.
async fn run_level<D: Driver>(driver: Arc<D>, run: Level<'_>) -> Result<(Vec<String>, Option<Measured>)> {
    let partitions = usize::try_from(run.load.partitions).unwrap_or(1).max(1);
    let prepared = match driver.prepare(run.level, &run.name, partitions).await? {
        Setup::Ready(prepared) => prepared,
        Setup::Unavailable(reasons) => return Ok((reasons, None)),
    };
    tokio::task::spawn_blocking(settle_disk)
        .await
        .context("sync before the run failed")?;
    let result = drive(Arc::clone(&driver), &run, &prepared).await;
    if let Err(e) = driver.cleanup(&prepared).await {
        eprintln!("warning: cleaning up after {}: {}", driver.name(), e.describe());
    }
    Ok((prepared.settings, Some(result?)))
}

/// What the tasks of one level share with the loop.
struct Shared {
    name: &'static str,
    level: Durability,
    clock: Clock,
    run_id: u64,
    counters: Arc<Counters>,
    window: Arc<OnceLock<Window>>,
    stop: Arc<Stop>,
    owned: Arc<AtomicUsize>,
    broker_pid: Option<u32>,
    tty: bool,
}

type Tasks = Vec<JoinHandle<Result<()>>>;
/// A consumer's end-to-end latency histogram, shared with its [`ConsumerCtx`].
type SharedHistogram = Arc<Mutex<Histogram<u64>>>;

/// One level: consumers, then producers for the window, then the drain.
async fn drive<D: Driver>(driver: Arc<D>, run: &Level<'_>, prepared: &Prepared) -> Result<Measured> {
    let load = run.load;
    let shared = Shared {
        name: driver.name(),
        level: run.level,
        clock: run.clock,
        run_id: run.run_id,
        counters: Arc::new(Counters::default()),
        window: Arc::new(OnceLock::new()),
        stop: Arc::new(Stop::default()),
        owned: Arc::new(AtomicUsize::new(0)),
        broker_pid: load.broker_pid.or_else(|| driver.server_pid()),
        tty: std::io::stderr().is_terminal(),
    };
    let (consumers, consumer_hists) = spawn_consumers(&driver, &shared, prepared, load.consumers)?;
    if let Err(e) = wait_for_owners(&shared, &consumers, prepared.partitions.max(1)).await {
        stop_consumers(&shared.stop, consumers)
            .await
            .context("starting consumers")?;
        return Err(e);
    }

    let start_ns = shared.clock.now_ns();
    let measure_ns = start_ns + load.warmup * 1_000_000_000;
    let window = Window {
        start_ns,
        measure_ns,
        end_ns: measure_ns + load.duration * 1_000_000_000,
    };
    let _ = shared.window.set(window);
    let interval = Arc::new(IntervalReporter::new(load.report_interval, shared.broker_pid)?);
    let (producers, sinks) = spawn_producers(&driver, &shared, load, prepared, window, &interval)?;
    let cpu = watch(&shared, window, load, &interval, &producers).await;
    let broker_end = shared
        .broker_pid
        .map_or((None, None), |pid| (threads(pid), rss_mib(pid)));
    if let Err(e) = join_producers(producers).await {
        let _ = stop_consumers(&shared.stop, consumers).await;
        return Err(e);
    }
    let mut publish = new_histogram()?;
    for sink in &sinks {
        let hist = sink
            .hist
            .lock()
            .map_err(|_| err!("publish latency histogram poisoned"))?;
        merge(&mut publish, &hist)?;
    }

    drain(&shared).await;
    stop_consumers(&shared.stop, consumers).await?;
    let catch_up = driver.catch_up(prepared).await?;
    let mut e2e = new_histogram()?;
    for hist in &consumer_hists {
        let hist = hist
            .lock()
            .map_err(|_| err!("end-to-end latency histogram poisoned"))?;
        merge(&mut e2e, &hist)?;
    }
    let tally = Tally {
        counters: &shared.counters,
        publish: &publish,
        e2e: &e2e,
        cpu,
        intervals: interval.finish(),
        broker_end,
        catch_up,
    };
    let topic = destinations_label(&prepared.destinations);
    Ok(Measured::new(topic, load, run.level, tally, run.baseline))
}

/// Names the destinations: comma-separated when few, else the first, the last and the count.
fn destinations_label(destinations: &[String]) -> String {
    const LISTED_MAX: usize = 8;
    match destinations {
        [first, .., last] if destinations.len() > LISTED_MAX => {
            format!("{first} .. {last} ({} in all)", destinations.len())
        }
        _ => destinations.join(","),
    }
}

/// Starts a consumer task per consumer that has destinations to read; returns the tasks and
/// every consumer's end-to-end latency histogram.
fn spawn_consumers<D: Driver>(
    driver: &Arc<D>,
    shared: &Shared,
    prepared: &Prepared,
    consumers: usize,
) -> Result<(Tasks, Vec<SharedHistogram>)> {
    let mut hists = Vec::with_capacity(consumers);
    let mut tasks = Vec::with_capacity(consumers);
    for index in 0..consumers {
        let destinations = driver.consumer_destinations(prepared, index, consumers);
        // A consumer without destinations owns nothing and would receive nothing.
        if destinations.is_empty() {
            continue;
        }
        let hist = Arc::new(Mutex::new(new_histogram()?));
        hists.push(Arc::clone(&hist));
        let ctx = ConsumerCtx {
            index,
            destinations,
            clock: shared.clock,
            run_id: shared.run_id,
            window: Arc::clone(&shared.window),
            counters: Arc::clone(&shared.counters),
            hist,
            stop: Arc::clone(&shared.stop),
            owned_total: Arc::clone(&shared.owned),
            owned: 0,
        };
        tasks.push(tokio::spawn(Arc::clone(driver).consume(ctx)));
    }
    Ok((tasks, hists))
}

/// Waits until the consumers own all `partitions`; fails when one of them ends first or
/// [`ASSIGN_SECS_MAX`] passes.
async fn wait_for_owners(shared: &Shared, consumers: &Tasks, partitions: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(ASSIGN_SECS_MAX);
    while shared.owned.load(Ordering::SeqCst) < partitions {
        if consumers.iter().any(|c| c.is_finished()) || Instant::now() > deadline {
            bail!(
                "the consumers got {} of {partitions} partitions within {ASSIGN_SECS_MAX} s",
                shared.owned.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Stops the consumers and waits up to [`FLUSH_SECS_MAX`] for each; returns the first error.
async fn stop_consumers(stop: &Stop, consumers: Tasks) -> Result<()> {
    stop.stop();
    let mut first_error = None;
    for handle in consumers {
        let result = tokio::time::timeout(Duration::from_secs(FLUSH_SECS_MAX), handle)
            .await
            .map_err(|_| err!("a consumer did not stop within {FLUSH_SECS_MAX} s"))
            .and_then(|joined| joined.map_err(|e| err!("a consumer task failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Starts a producer task per producer, each with its own acknowledgement sink; returns the
/// tasks and the sinks.
fn spawn_producers<D: Driver>(
    driver: &Arc<D>,
    shared: &Shared,
    load: &WorkloadArgs,
    prepared: &Prepared,
    window: Window,
    interval: &Arc<IntervalReporter>,
) -> Result<(Tasks, Vec<Arc<AckSink>>)> {
    let destinations = Arc::new(prepared.destinations.clone());
    let mut tasks = Vec::with_capacity(load.producers);
    let mut sinks = Vec::with_capacity(load.producers);
    for index in 0..load.producers {
        let acks = Arc::new(AckSink {
            clock: shared.clock,
            window,
            counters: Arc::clone(&shared.counters),
            hist: Mutex::new(new_histogram()?),
            interval: Arc::clone(interval),
        });
        sinks.push(Arc::clone(&acks));
        // At a fixed rate each producer sends every `producers`-th slot of the total rate.
        let schedule = load.rate.map(|rate| {
            let interval_ns = 1e9 * load.producers as f64 / rate as f64;
            (interval_ns * index as f64 / load.producers as f64, interval_ns)
        });
        let ctx = ProducerCtx {
            index,
            destinations: Arc::clone(&destinations),
            clock: shared.clock,
            window,
            schedule,
            run_id: shared.run_id,
            record_size: load.record_size,
            sent: 0,
            acks,
        };
        tasks.push(tokio::spawn(Arc::clone(driver).produce(ctx)));
    }
    Ok((tasks, sinks))
}

/// Until the window ends (or every producer is done): the progress line, interval rows and
/// CPU samples at the edges of the measured window, which it returns.
async fn watch(
    shared: &Shared,
    window: Window,
    load: &WorkloadArgs,
    interval: &IntervalReporter,
    producers: &Tasks,
) -> (Option<CpuSample>, Option<CpuSample>) {
    let counters = &shared.counters;
    let total_secs = load.warmup + load.duration;
    let mut cpu_start = None;
    let mut cpu_end = None;
    loop {
        let now = shared.clock.now_ns();
        if cpu_start.is_none() && now >= window.measure_ns {
            cpu_start = Some(sample_cpu(shared.broker_pid));
            interval.start(window.measure_ns, counters);
        }
        if cpu_start.is_some() {
            interval.maybe_print(now, counters);
        }
        if now >= window.end_ns {
            cpu_end = Some(sample_cpu(shared.broker_pid));
            interval.close(now, counters);
            break;
        }
        if producers.iter().all(|p| p.is_finished()) {
            break;
        }
        if shared.tty {
            eprint!(
                "\r{} {} {:>4}/{total_secs} s  acked {:>10}  consumed {:>10}  ",
                shared.name,
                shared.level.label(),
                (now - window.start_ns) / 1_000_000_000,
                counters.acked(),
                counters.consumed(),
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
    (cpu_start, cpu_end)
}

/// Waits for every producer (each has [`FLUSH_SECS_MAX`] to flush, plus as long again to
/// give up); returns the first error.
async fn join_producers(producers: Tasks) -> Result<()> {
    let limit = FLUSH_SECS_MAX * 2;
    let mut first_error = None;
    for handle in producers {
        let result = tokio::time::timeout(Duration::from_secs(limit), handle)
            .await
            .map_err(|_| err!("a producer did not finish within {limit} s"))
            .and_then(|joined| joined.map_err(|e| err!("a producer task failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Waits until the consumers have seen everything that was acknowledged, or made no progress
/// for [`DRAIN_IDLE_SECS_MAX`].
async fn drain(shared: &Shared) {
    let counters = &shared.counters;
    let acked_total = counters.acked();
    let mut last_consumed = counters.consumed();
    let mut last_progress = Instant::now();
    while last_consumed < acked_total && last_progress.elapsed() < Duration::from_secs(DRAIN_IDLE_SECS_MAX) {
        if shared.tty {
            eprint!(
                "\r{} {} draining  acked {acked_total:>10}  consumed {last_consumed:>10}  ",
                shared.name,
                shared.level.label()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let consumed = counters.consumed();
        if consumed != last_consumed {
            last_consumed = consumed;
            last_progress = Instant::now();
        }
    }
    if shared.tty {
        eprint!("\r{:78}\r", "");
    }
}

#[cfg(test)]
mod tests {
    use super::destinations_label;

    #[test]
    fn many_destinations_are_named_by_their_ends_and_count() {
        let few: Vec<String> = (0..3).map(|i| format!("t-{i}")).collect();
        assert_eq!(destinations_label(&few), "t-0,t-1,t-2");
        let many: Vec<String> = (0..1000).map(|i| format!("t-{i}")).collect();
        assert_eq!(destinations_label(&many), "t-0 .. t-999 (1000 in all)");
    }
}
