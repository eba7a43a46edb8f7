//! `rivulet bench compare`: the same workload against Rivulet and its peers on this machine,
//! side by side. For each system and durability level it finds the peak (max-rate run), then
//! measures latency at fixed fractions of that peak (50% and 80% by default). The machine's
//! disk and loopback limits are measured once, first, and every figure is also shown as a
//! fraction of them. Output: the [`CompareReport`], written as JSON (`--json`) and as an SVG
//! chart (`--chart`) of end-to-end p99 latency against throughput.

mod rivulet;

use std::fs;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Serialize;

use self::rivulet::StartedRivulet;
use crate::baseline::{run_baselines, Baseline};
use crate::chart::{self, Series};
use crate::error::{bail, Context, Result};
use crate::kafka::{self, KafkaArgs};
use crate::nats::{self, NatsDriver};
use crate::peer::{measure_peer, PeerArgs};
use crate::rabbitmq::{self, redact_url, QueueDriver};
use crate::report::{Measured, Report};
use crate::workload::{DurabilityChoice, WorkloadArgs};
use crate::Format;

/// Most fixed-rate fractions per system and level.
const FRACTIONS_MAX: usize = 8;
/// Bytes per write of the disk baselines (librdkafka's default batch.size).
const BASELINE_WRITE_BYTES: usize = 1_000_000;

/// A system `compare` can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// Rivulet over the Kafka protocol (librdkafka).
    Rivulet,
    /// NATS JetStream (async-nats).
    Nats,
    /// RabbitMQ streams (lapin, AMQP 0-9-1).
    RabbitmqStream,
    /// RabbitMQ quorum queues (lapin).
    RabbitmqQuorum,
    /// Rivulet's AMQP 0-9-1 front end, driven exactly as RabbitMQ quorum queues are
    /// (lapin, durable quorum queues, persistent messages, publisher confirms).
    RivuletAmqp,
    /// Rivulet's AMQP 0-9-1 streams, driven exactly as RabbitMQ streams are (lapin,
    /// `x-queue-type=stream`, publisher confirms); started with `--fsync none`, so confirms
    /// follow the page cache, as RabbitMQ streams' do (D0).
    RivuletAmqpStream,
}

impl System {
    /// The name its driver reports, e.g. `nats-jetstream`.
    pub fn name(self) -> &'static str {
        match self {
            System::Rivulet => "rivulet",
            System::Nats => "nats-jetstream",
            System::RabbitmqStream => "rabbitmq-stream",
            System::RabbitmqQuorum => "rabbitmq-quorum",
            System::RivuletAmqp => "rivulet-amqp",
            System::RivuletAmqpStream => "rivulet-amqp-stream",
        }
    }

    fn color(self) -> usize {
        match self {
            System::Rivulet => 0,
            System::Nats => 1,
            System::RabbitmqStream => 2,
            System::RabbitmqQuorum => 3,
            System::RivuletAmqp => 4,
            System::RivuletAmqpStream => 5,
        }
    }
}

/// Arguments of `rivulet bench compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The workload.
    #[command(flatten)]
    pub load: WorkloadArgs,
    /// Systems to measure, in this order
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rivulet,nats,rabbitmq-stream,rabbitmq-quorum"
    )]
    pub systems: Vec<System>,
    /// Fixed rates to measure after each peak, as fractions of that peak
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.8")]
    pub fractions: Vec<f64>,
    /// Kafka address of a running Rivulet [default: start `rivulet serve` for the run]
    #[arg(long, value_name = "HOST:PORT")]
    pub rivulet: Option<String>,
    /// Data directory of the Rivulet started for the run [default: a new directory under
    /// --baseline-dir or the system temp dir, removed afterwards]
    #[arg(long, value_name = "DIR")]
    pub rivulet_data_dir: Option<PathBuf>,
    /// NATS server URL
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// RabbitMQ AMQP URL (streams and quorum queues)
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub rabbitmq_url: String,
    /// Write the chart (SVG) here
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
    /// Write the full report (JSON) here
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Output format on stdout: text or json
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// One measured point.
#[derive(Debug, Serialize)]
pub struct Point {
    /// The system measured.
    pub system: System,
    /// `d0` or `d1`.
    pub durability: &'static str,
    /// Fraction of the peak for fixed-rate points; none for the max-rate point.
    pub fraction_of_peak: Option<f64>,
    /// The fixed rate asked for; none for the max-rate point.
    pub rate_records_per_sec: Option<u64>,
    /// False when the system cannot be configured for this durability level.
    pub controllable: bool,
    /// How the system was configured, or why not.
    pub settings: Vec<String>,
    /// The figures, when measured.
    #[serde(flatten)]
    pub measured: Option<Measured>,
}

/// The whole comparison.
#[derive(Debug, Serialize)]
pub struct CompareReport {
    /// The workload every system ran.
    pub workload: WorkloadSummary,
    /// This machine's limits, when measured.
    pub baseline: Option<Baseline>,
    /// Every system's peaks and fixed-rate points, in the order measured.
    pub points: Vec<Point>,
}

/// The workload of a comparison.
#[derive(Debug, Serialize)]
pub struct WorkloadSummary {
    /// Producer clients.
    pub producers: usize,
    /// Consumer clients.
    pub consumers: usize,
    /// Partitions (peers: streams or queues).
    pub partitions: i32,
    /// Bytes per record value.
    pub record_size_bytes: usize,
    /// Seconds of load before measuring, per point.
    pub warmup_secs: u64,
    /// Measured seconds, per point.
    pub duration_secs: u64,
    /// The systems, in the order measured.
    pub systems: Vec<System>,
    /// The fixed rates, as fractions of each peak.
    pub fractions: Vec<f64>,
}

fn validate(args: &CompareArgs) -> Result<()> {
    args.load.validate()?;
    if args.load.rate.is_some() {
        bail!(
            config,
            "compare finds each system's peak and picks its rates from --fractions; drop --rate"
        );
    }
    if args.systems.is_empty() {
        bail!(config, "--systems names no system");
    }
    if args.fractions.len() > FRACTIONS_MAX || args.fractions.iter().any(|f| !(*f > 0.0 && *f <= 1.0)) {
        bail!(
            config,
            "--fractions takes at most {FRACTIONS_MAX} numbers in (0, 1]"
        );
    }
    Ok(())
}

/// Runs `rivulet bench compare`; writes the `--json` and `--chart` files when asked.
pub fn run(args: &CompareArgs) -> Result<CompareReport> {
    validate(args)?;
    let baseline_base = args.load.baseline_dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut load = args.load.clone();
    load.baseline_dir = Some(baseline_base.clone());
    let baseline = if load.baseline {
        Some(run_baselines(&load, BASELINE_WRITE_BYTES)?)
    } else {
        None
    };
    let mut points = Vec::new();
    for &system in &args.systems {
        points.extend(measure_system(system, args, &load, &baseline_base, &baseline)?);
    }
    let report = CompareReport {
        workload: WorkloadSummary {
            producers: load.producers,
            consumers: load.consumers,
            partitions: load.partitions,
            record_size_bytes: load.record_size,
            warmup_secs: load.warmup,
            duration_secs: load.duration,
            systems: args.systems.clone(),
            fractions: args.fractions.clone(),
        },
        baseline,
        points,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("rendering JSON")?;
        fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        fs::write(path, render_chart(&report)).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// Every point of one system; starts a Rivulet for the run unless `--rivulet` names one.
fn measure_system(
    system: System,
    args: &CompareArgs,
    load: &WorkloadArgs,
    baseline_base: &Path,
    baseline: &Option<Baseline>,
) -> Result<Vec<Point>> {
    let fractions = &args.fractions;
    match system {
        System::Rivulet => {
            let mut load = load.clone();
            let started;
            let address = match &args.rivulet {
                Some(address) => address.clone(),
                None => {
                    started = StartedRivulet::start(args.rivulet_data_dir.clone(), baseline_base, &[])?;
                    load.broker_pid = Some(started.pid());
                    started.address.clone()
                }
            };
            sweep(system, &load, fractions, |load| {
                kafka::measure(&KafkaArgs::with_defaults(&address, load), baseline.clone())
            })
        }
        System::Nats => {
            let url = &args.nats_url;
            sweep(system, load, fractions, |load| {
                let driver = NatsDriver::new(url);
                let peer = PeerArgs::with_defaults(load);
                measure_peer(driver, &peer, url, nats::CLIENT_DESCRIPTION, baseline.clone())
            })
        }
        System::RivuletAmqp | System::RivuletAmqpStream => {
            let mut load = load.clone();
            let stream = system == System::RivuletAmqpStream;
            let extra: &[&str] = if stream { &["--fsync", "none"] } else { &[] };
            let started = StartedRivulet::start(args.rivulet_data_dir.clone(), baseline_base, extra)?;
            load.broker_pid = Some(started.pid());
            let url = started.amqp_url.clone();
            sweep(system, &load, fractions, |load| {
                let peer = PeerArgs::with_defaults(load);
                let (driver, client) = match stream {
                    true => (QueueDriver::stream(&url), rabbitmq::STREAM_CLIENT_DESCRIPTION),
                    false => (QueueDriver::quorum(&url), rabbitmq::QUORUM_CLIENT_DESCRIPTION),
                };
                measure_peer(driver, &peer, &url, client, baseline.clone())
            })
        }
        System::RabbitmqStream | System::RabbitmqQuorum => {
            let server = redact_url(&args.rabbitmq_url);
            sweep(system, load, fractions, |load| {
                let peer = PeerArgs::with_defaults(load);
                let (driver, client) = if system == System::RabbitmqStream {
                    let driver = QueueDriver::stream(&args.rabbitmq_url);
                    (driver, rabbitmq::STREAM_CLIENT_DESCRIPTION)
                } else {
                    let driver = QueueDriver::quorum(&args.rabbitmq_url);
                    (driver, rabbitmq::QUORUM_CLIENT_DESCRIPTION)
                };
                measure_peer(driver, &peer, &server, client, baseline.clone())
            })
        }
    }
}

/// Max rate at every level, then each fraction of each level's peak.
fn sweep(
    system: System,
    load: &WorkloadArgs,
    fractions: &[f64],
    measure: impl Fn(&WorkloadArgs) -> Result<Report>,
) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    let mut max_load = load.clone();
    max_load.rate = None;
    max_load.baseline = false;
    let peak = measure(&max_load).with_context(|| format!("{system:?} at max rate"))?;
    for run in peak.runs {
        let level = if run.durability == "d0" {
            DurabilityChoice::D0
        } else {
            DurabilityChoice::D1
        };
        let peak_rate = run
            .measured
            .as_ref()
            .map(|m| m.produce_records_per_sec)
            .filter(|r| *r >= 1.0);
        points.push(Point {
            system,
            durability: run.durability,
            fraction_of_peak: None,
            rate_records_per_sec: None,
            controllable: run.controllable,
            settings: run.topic_configs,
            measured: run.measured,
        });
        let Some(peak_rate) = peak_rate else {
            continue;
        };
        for &fraction in fractions {
            let rate = (peak_rate * fraction).round().max(1.0) as u64;
            let mut fixed = max_load.clone();
            fixed.rate = Some(rate);
            fixed.durability = level;
            let report = measure(&fixed).with_context(|| format!("{system:?} at {rate} records/s"))?;
            for run in report.runs {
                points.push(Point {
                    system,
                    durability: run.durability,
                    fraction_of_peak: Some(fraction),
                    rate_records_per_sec: Some(rate),
                    controllable: run.controllable,
                    settings: run.topic_configs,
                    measured: run.measured,
                });
            }
        }
    }
    Ok(points)
}

/// `D0` or `D1`.
fn level_name(durability: &str) -> &'static str {
    if durability == "d0" {
        "D0"
    } else {
        "D1"
    }
}

/// The SVG chart: end-to-end p99 against throughput, a line per system and level.
pub fn render_chart(report: &CompareReport) -> String {
    let mut series: Vec<Series> = Vec::new();
    for point in &report.points {
        let Some(m) = &point.measured else {
            continue;
        };
        let Some(e2e) = &m.e2e_latency_ms else {
            continue;
        };
        let label = format!("{} {}", point.system.name(), level_name(point.durability));
        let xy = (m.produce_records_per_sec, e2e.p99);
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push(xy),
            None => series.push(Series {
                label,
                color: point.system.color(),
                dashed: point.durability != "d0",
                points: vec![xy],
            }),
        }
    }
    let w = &report.workload;
    chart::render(
        "End-to-end p99 latency against throughput",
        &format!(
            "{} B records, {} partitions, {} producer(s), {} consumer(s); points: {} of peak and max rate",
            w.record_size_bytes,
            w.partitions,
            w.producers,
            w.consumers,
            w.fractions
                .iter()
                .map(|f| format!("{:.0}%", f * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "end-to-end p99, ms",
        &series,
    )
}
