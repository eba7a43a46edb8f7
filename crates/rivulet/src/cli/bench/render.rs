//! The text rendering of the benchmark's reports (JSON is their `Serialize` form).

#[cfg(feature = "peers")]
use rivulet_bench::compare::{CompareReport, Point, System};
use rivulet_bench::{Baseline, Latency, Measured, Report, RunReport};

use super::super::output::{key_values, section, Table};

/// The text report of one system: workload, results per durability level, baselines.
pub(super) fn report(report: &Report) -> String {
    let mut out = workload(report);
    out.push('\n');
    out.push_str(&section("Results"));
    out.push_str(&results(&report.runs).render());
    if let Some(b) = &report.baseline {
        out.push('\n');
        out.push_str(&baseline(b));
    }
    out
}

fn ms(v: f64) -> String {
    format!("{v:.3}")
}

fn lat(latency: &Option<Latency>, pick: fn(&Latency) -> f64) -> String {
    latency.as_ref().map_or("-".to_string(), |l| ms(pick(l)))
}

/// The 4 KiB append + fdatasync latency as one line of text.
fn append_fdatasync(baseline: &Baseline) -> String {
    baseline
        .append_fdatasync_latency_ms
        .as_ref()
        .map_or("-".to_string(), |l| {
            format!(
                "p50 {:.2} / p99 {:.2} / p99.9 {:.2} / max {:.2} ms",
                l.p50, l.p99, l.p999, l.max
            )
        })
}

/// The "Workload" section.
fn workload(report: &Report) -> String {
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
    out
}

/// The results table: a row per metric, a column per durability level.
fn results(runs: &[RunReport]) -> Table {
    let mut headers = vec!["metric"];
    headers.extend(runs.iter().map(|r| match r.durability {
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
        ("broker CPU us/record", |m| opt2(m.broker_cpu_us_per_record)),
        ("generator CPU us/record", |m| opt2(m.generator_cpu_us_per_record)),
        ("machine CPU us/record", |m| opt2(m.machine_cpu_us_per_record)),
        ("broker ctx switches/record", |m| {
            opt3(m.broker_context_switches_per_record)
        }),
        ("broker r/w syscalls/record", |m| {
            opt3(m.broker_rw_syscalls_per_record)
        }),
        ("broker threads", |m| {
            m.broker_threads.map_or("-".to_string(), |t| t.to_string())
        }),
        ("broker RSS MiB", |m| opt2(m.broker_rss_mib)),
        ("of disk baseline", |m| {
            m.fraction_of_disk_baseline
                .map_or("-".to_string(), |f| format!("{f:.2}"))
        }),
        ("of loopback TCP", |m| {
            m.fraction_of_loopback_tcp
                .map_or("-".to_string(), |f| format!("{f:.2}"))
        }),
        ("catch-up MB/s (one consumer)", |m| {
            m.catch_up
                .map_or("-".to_string(), |c| format!("{:.0}", c.mb_per_sec))
        }),
    ];
    let mut config_row = vec!["topic configs".to_string()];
    config_row.extend(runs.iter().map(|r| {
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
            runs.iter()
                .map(|r| r.measured.as_ref().map_or("-".to_string(), cell)),
        );
        table.row(row);
    }
    table
}

/// The "Baseline" section of one system's report.
fn baseline(b: &Baseline) -> String {
    let mut out = section("Baseline (same run, no broker)");
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
        ("4 KiB append+fdatasync", append_fdatasync(b)),
        (
            "loopback TCP",
            format!(
                "{:.1} MB/s ({:.2} s)",
                b.loopback_tcp_mb_per_sec, b.loopback_tcp_secs
            ),
        ),
    ]));
    out
}

/// The text report of `rivulet bench compare`: peaks, fixed-rate points, baselines.
#[cfg(feature = "peers")]
pub(super) fn compare(report: &CompareReport) -> String {
    let mut out = section("Peak (max rate)");
    out.push_str(&peaks(&report.points).render());
    out.push('\n');
    out.push_str(&section("Fixed rate (fractions of each peak)"));
    out.push_str(&fixed_rates(&report.points).render());
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
            ("4 KiB append+fdatasync", append_fdatasync(b)),
            ("loopback TCP", format!("{:.1} MB/s", b.loopback_tcp_mb_per_sec)),
        ]));
    }
    out
}

/// `D0` or `D1`.
#[cfg(feature = "peers")]
fn level_name(durability: &str) -> &'static str {
    if durability == "d0" {
        "D0"
    } else {
        "D1"
    }
}

#[cfg(feature = "peers")]
fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

/// A row per max-rate point, with Rivulet's peak over each.
#[cfg(feature = "peers")]
fn peaks(points: &[Point]) -> Table {
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
        points
            .iter()
            .find(|p| {
                p.system == System::Rivulet && p.durability == durability && p.fraction_of_peak.is_none()
            })
            .and_then(|p| p.measured.as_ref())
            .map(|m| m.produce_records_per_sec)
    };
    for p in points.iter().filter(|p| p.fraction_of_peak.is_none()) {
        let m = p.measured.as_ref();
        let vs = match (m, rivulet_peak(p.durability)) {
            (Some(m), Some(r)) if m.produce_records_per_sec > 0.0 => Some(r / m.produce_records_per_sec),
            _ => None,
        };
        peaks.row(vec![
            p.system.name().to_string(),
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
    peaks
}

/// A row per measured fixed-rate point.
#[cfg(feature = "peers")]
fn fixed_rates(points: &[Point]) -> Table {
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
    for p in points.iter().filter(|p| p.fraction_of_peak.is_some()) {
        let Some(m) = p.measured.as_ref() else {
            continue;
        };
        let lat = |l: &Option<Latency>, max: bool| {
            l.as_ref().map_or("-".to_string(), |l| {
                if max {
                    format!("{:.2}/{:.2}/{:.2}/{:.1}", l.p50, l.p99, l.p999, l.max)
                } else {
                    format!("{:.2}/{:.2}/{:.2}", l.p50, l.p99, l.p999)
                }
            })
        };
        fixed.row(vec![
            p.system.name().to_string(),
            level_name(p.durability).to_string(),
            opt(p.fraction_of_peak.map(|f| f * 100.0), 0) + "%",
            p.rate_records_per_sec.map_or("-".to_string(), |r| r.to_string()),
            format!("{:.0}", m.produce_records_per_sec),
            lat(&m.publish_latency_ms, false),
            lat(&m.e2e_latency_ms, true),
            m.failed_records.to_string(),
        ]);
    }
    fixed
}

fn opt2(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.2}"))
}

fn opt3(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.3}"))
}
