//! `rivulet bench compare`: the same workload against Rivulet and its peers on this machine,
//! side by side. For each system and durability level it finds the peak (max-rate run), then
//! measures latency at fixed fractions of that peak (50% and 80% by default). The machine's
//! disk and loopback limits are measured once, first, and every figure is also shown as a
//! fraction of them. Output: a table, JSON (`--json`) and an SVG chart (`--chart`) of
//! end-to-end p99 latency against throughput.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::super::output::{emit, emit_json, key_values, section, Table};
use super::super::{ConnArgs, Format};
use super::chart::{self, Series};
use super::nats::NatsDriver;
use super::peer::{measure_peer, PeerArgs};
use super::rabbitmq::{redact_url, QueueDriver};
use super::{
    measure_kafka, run_baselines, Baseline, DurabilityChoice, KafkaArgs, Measured, Report, WorkloadArgs,
};

/// How long a started Rivulet may take to accept connections.
const RIVULET_START_SECS_MAX: u64 = 30;
/// Most fixed-rate fractions per system and level.
const FRACTIONS_MAX: usize = 8;
/// Bytes per write of the disk baselines (librdkafka's default batch.size).
const BASELINE_WRITE_BYTES: usize = 1_000_000;

/// A system `compare` can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum System {
    /// Rivulet over the Kafka protocol (librdkafka).
    Rivulet,
    /// NATS JetStream (async-nats).
    Nats,
    /// RabbitMQ streams (lapin, AMQP 0-9-1).
    RabbitmqStream,
    /// RabbitMQ quorum queues (lapin).
    RabbitmqQuorum,
}

impl System {
    fn color(self) -> usize {
        match self {
            System::Rivulet => 0,
            System::Nats => 1,
            System::RabbitmqStream => 2,
            System::RabbitmqQuorum => 3,
        }
    }
}

/// Arguments of `rivulet bench compare`.
#[derive(Debug, Args)]
pub(super) struct CompareArgs {
    #[command(flatten)]
    load: WorkloadArgs,
    /// Systems to measure, in this order
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rivulet,nats,rabbitmq-stream,rabbitmq-quorum"
    )]
    systems: Vec<System>,
    /// Fixed rates to measure after each peak, as fractions of that peak
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.8")]
    fractions: Vec<f64>,
    /// Kafka address of a running Rivulet [default: start `rivulet serve` for the run]
    #[arg(long, value_name = "HOST:PORT")]
    rivulet: Option<String>,
    /// Data directory of the Rivulet started for the run [default: a new directory under
    /// --baseline-dir or the system temp dir, removed afterwards]
    #[arg(long, value_name = "DIR")]
    rivulet_data_dir: Option<PathBuf>,
    /// NATS server URL
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// RabbitMQ AMQP URL (streams and quorum queues)
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    rabbitmq_url: String,
    /// Write the chart (SVG) here
    #[arg(long, value_name = "FILE")]
    chart: Option<PathBuf>,
    /// Write the full report (JSON) here
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Output format on stdout: text or json
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// One measured point.
#[derive(Debug, Serialize)]
struct Point {
    system: System,
    durability: &'static str,
    /// Fraction of the peak for fixed-rate points; none for the max-rate point.
    fraction_of_peak: Option<f64>,
    rate_records_per_sec: Option<u64>,
    controllable: bool,
    settings: Vec<String>,
    #[serde(flatten)]
    measured: Option<Measured>,
}

/// The whole comparison.
#[derive(Debug, Serialize)]
struct CompareReport {
    workload: WorkloadSummary,
    baseline: Option<Baseline>,
    points: Vec<Point>,
}

#[derive(Debug, Serialize)]
struct WorkloadSummary {
    producers: usize,
    consumers: usize,
    partitions: i32,
    record_size_bytes: usize,
    warmup_secs: u64,
    duration_secs: u64,
    systems: Vec<System>,
    fractions: Vec<f64>,
}

/// A `rivulet serve` started for the run; stopped and cleaned up on drop.
struct StartedRivulet {
    child: Child,
    address: String,
    data_dir: PathBuf,
    remove_data_dir: bool,
}

impl StartedRivulet {
    fn start(data_dir: Option<PathBuf>, base: &std::path::Path) -> Result<StartedRivulet> {
        let (data_dir, remove_data_dir) = match data_dir {
            Some(dir) => (dir, false),
            None => (
                base.join(format!("rivulet-bench-compare-{}", std::process::id())),
                true,
            ),
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port for Rivulet")?
            .port();
        let address = format!("127.0.0.1:{port}");
        let exe = std::env::current_exe().context("finding the rivulet executable")?;
        let child = Command::new(exe)
            .args(["serve", "--listen", &address, "--http-listen", "off"])
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting rivulet serve")?;
        let mut started = StartedRivulet {
            child,
            address,
            data_dir,
            remove_data_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(RIVULET_START_SECS_MAX);
        loop {
            if TcpStream::connect(&started.address).is_ok() {
                return Ok(started);
            }
            if let Ok(Some(status)) = started.child.try_wait() {
                bail!("rivulet serve exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("rivulet serve did not listen within {RIVULET_START_SECS_MAX} s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for StartedRivulet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.remove_data_dir {
            let _ = fs::remove_dir_all(&self.data_dir);
        }
    }
}

fn validate(args: &CompareArgs) -> Result<()> {
    args.load.validate()?;
    if args.load.rate.is_some() {
        bail!("compare finds each system's peak and picks its rates from --fractions; drop --rate");
    }
    if args.systems.is_empty() {
        bail!("--systems names no system");
    }
    if args.fractions.len() > FRACTIONS_MAX || args.fractions.iter().any(|f| !(*f > 0.0 && *f <= 1.0)) {
        bail!("--fractions takes at most {FRACTIONS_MAX} numbers in (0, 1]");
    }
    Ok(())
}

/// Runs `rivulet bench compare`.
pub(super) fn run(args: CompareArgs) -> Result<()> {
    validate(&args)?;
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
        let started;
        let mut system_load = load.clone();
        let peak = match system {
            System::Rivulet => {
                let address = match &args.rivulet {
                    Some(address) => address.clone(),
                    None => {
                        started = StartedRivulet::start(args.rivulet_data_dir.clone(), &baseline_base)?;
                        system_load.broker_pid = Some(started.pid());
                        started.address.clone()
                    }
                };
                let measure =
                    |load: &WorkloadArgs| measure_kafka(&kafka_args(&address, load), baseline.clone());
                sweep(system, &system_load, &args.fractions, measure)?
            }
            System::Nats => {
                let url = args.nats_url.clone();
                sweep(system, &system_load, &args.fractions, |load| {
                    measure_peer(
                        NatsDriver::new(&url),
                        &peer_args(load),
                        &url,
                        super::nats::CLIENT_DESCRIPTION,
                        baseline.clone(),
                    )
                })?
            }
            System::RabbitmqStream => {
                let server = redact_url(&args.rabbitmq_url);
                sweep(system, &system_load, &args.fractions, |load| {
                    measure_peer(
                        QueueDriver::stream(&args.rabbitmq_url),
                        &peer_args(load),
                        &server,
                        super::rabbitmq::STREAM_CLIENT_DESCRIPTION,
                        baseline.clone(),
                    )
                })?
            }
            System::RabbitmqQuorum => {
                let server = redact_url(&args.rabbitmq_url);
                sweep(system, &system_load, &args.fractions, |load| {
                    measure_peer(
                        QueueDriver::quorum(&args.rabbitmq_url),
                        &peer_args(load),
                        &server,
                        super::rabbitmq::QUORUM_CLIENT_DESCRIPTION,
                        baseline.clone(),
                    )
                })?
            }
        };
        points.extend(peak);
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
    match args.format {
        Format::Json => emit_json(&report),
        Format::Text => emit(&render(&report)),
    }
}

fn kafka_args(address: &str, load: &WorkloadArgs) -> KafkaArgs {
    KafkaArgs {
        conn: ConnArgs {
            brokers: address.to_string(),
            format: Format::Text,
            timeout: 10,
            client_properties: Vec::new(),
        },
        load: load.clone(),
        batch_size: 1_000_000,
        linger_ms: 1,
        acks: "all".to_string(),
        d0_configs: Vec::new(),
        d1_configs: Vec::new(),
        topic: None,
        keep: false,
    }
}

fn peer_args(load: &WorkloadArgs) -> PeerArgs {
    PeerArgs {
        load: load.clone(),
        prefix: None,
        format: Format::Text,
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

fn system_name(system: System) -> &'static str {
    match system {
        System::Rivulet => "rivulet",
        System::Nats => "nats-jetstream",
        System::RabbitmqStream => "rabbitmq-stream",
        System::RabbitmqQuorum => "rabbitmq-quorum",
    }
}

fn level_name(durability: &str) -> &'static str {
    if durability == "d0" {
        "D0"
    } else {
        "D1"
    }
}

fn render_chart(report: &CompareReport) -> String {
    let mut series: Vec<Series> = Vec::new();
    for point in &report.points {
        let Some(m) = &point.measured else {
            continue;
        };
        let Some(e2e) = &m.e2e_latency_ms else {
            continue;
        };
        let label = format!("{} {}", system_name(point.system), level_name(point.durability));
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

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

fn render(report: &CompareReport) -> String {
    let mut out = section("Peak (max rate)");
    let mut peaks = Table::new(&[
        "system",
        "level",
        "records/s",
        "MB/s",
        "vs rivulet",
        "of disk",
        "publish p99 ms",
        "broker CPU s",
        "settings",
    ]);
    let rivulet_peak = |durability: &str| {
        report
            .points
            .iter()
            .find(|p| {
                p.system == System::Rivulet && p.durability == durability && p.fraction_of_peak.is_none()
            })
            .and_then(|p| p.measured.as_ref())
            .map(|m| m.produce_records_per_sec)
    };
    for p in report.points.iter().filter(|p| p.fraction_of_peak.is_none()) {
        let m = p.measured.as_ref();
        let vs = match (m, rivulet_peak(p.durability)) {
            (Some(m), Some(r)) if m.produce_records_per_sec > 0.0 => Some(r / m.produce_records_per_sec),
            _ => None,
        };
        peaks.row(vec![
            system_name(p.system).to_string(),
            level_name(p.durability).to_string(),
            opt(m.map(|m| m.produce_records_per_sec), 0),
            opt(m.map(|m| m.produce_mb_per_sec), 1),
            vs.map_or("-".to_string(), |v| format!("rivulet {v:.2}x")),
            opt(m.and_then(|m| m.fraction_of_disk_baseline), 2),
            opt(m.and_then(|m| m.publish_latency_ms.as_ref()).map(|l| l.p99), 2),
            opt(m.and_then(|m| m.cpu_secs_broker), 1),
            if p.controllable {
                p.settings.join(", ")
            } else {
                format!("not measured: {}", p.settings.join(", "))
            },
        ]);
    }
    out.push_str(&peaks.render());
    out.push('\n');
    out.push_str(&section("Fixed rate (fractions of each peak)"));
    let mut fixed = Table::new(&[
        "system",
        "level",
        "of peak",
        "rate/s",
        "achieved/s",
        "publish p50/p99/p99.9 ms",
        "e2e p50/p99/p99.9/max ms",
        "failed",
    ]);
    for p in report.points.iter().filter(|p| p.fraction_of_peak.is_some()) {
        let Some(m) = p.measured.as_ref() else {
            continue;
        };
        let lat = |l: &Option<super::Latency>, max: bool| {
            l.as_ref().map_or("-".to_string(), |l| {
                if max {
                    format!("{:.2}/{:.2}/{:.2}/{:.1}", l.p50, l.p99, l.p999, l.max)
                } else {
                    format!("{:.2}/{:.2}/{:.2}", l.p50, l.p99, l.p999)
                }
            })
        };
        fixed.row(vec![
            system_name(p.system).to_string(),
            level_name(p.durability).to_string(),
            opt(p.fraction_of_peak.map(|f| f * 100.0), 0) + "%",
            p.rate_records_per_sec.map_or("-".to_string(), |r| r.to_string()),
            format!("{:.0}", m.produce_records_per_sec),
            lat(&m.publish_latency_ms, false),
            lat(&m.e2e_latency_ms, true),
            m.failed_records.to_string(),
        ]);
    }
    out.push_str(&fixed.render());
    if let Some(b) = &report.baseline {
        out.push('\n');
        out.push_str(&section("Baseline (same run, no broker)"));
        out.push_str(&key_values(&[
            ("disk write", format!("{:.1} MB/s", b.disk_write_mb_per_sec)),
            (
                "disk write+fdatasync",
                format!(
                    "{:.1} MB/s ({:.0} fdatasync/s of {} B)",
                    b.disk_write_fdatasync_mb_per_sec, b.fdatasyncs_per_sec, b.write_size_bytes
                ),
            ),
            ("4 KiB append+fdatasync", b.append_fdatasync_text()),
            ("loopback TCP", format!("{:.1} MB/s", b.loopback_tcp_mb_per_sec)),
        ]));
    }
    out
}
