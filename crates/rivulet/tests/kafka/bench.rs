//! `rivulet bench kafka` run briefly against a real `rivulet serve`, checked through its JSON.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Rivulet;

/// Upper bound on the bench run; a hang fails the test instead of blocking the suite.
const BENCH_TIMEOUT: Duration = Duration::from_secs(60);

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// Runs `rivulet <args>` to completion within [`BENCH_TIMEOUT`] and parses its stdout as JSON.
fn run_json(args: &[&str]) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rivulet bench");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > BENCH_TIMEOUT {
            let _ = child.kill();
            panic!("`rivulet {args:?}` did not finish within {BENCH_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

/// Checks one measured run: records flowed, every produced record was consumed, none failed,
/// and the latency percentiles are ordered.
fn assert_measured(run: &Value) {
    assert!(number(&run["produce_records_per_sec"], "rate") > 0.0, "{run}");
    assert!(number(&run["produce_mb_per_sec"], "MB/s") > 0.0, "{run}");
    let produced = run["produced_records"].as_u64().expect("produced");
    assert!(produced > 0, "{run}");
    assert_eq!(run["consumed_records"].as_u64(), Some(produced), "{run}");
    assert_eq!(run["failed_records"].as_u64(), Some(0), "{run}");
    for hist in ["publish_latency_ms", "e2e_latency_ms"] {
        let h = &run[hist];
        let (p50, p99, p999, max) = (
            number(&h["p50"], "p50"),
            number(&h["p99"], "p99"),
            number(&h["p999"], "p999"),
            number(&h["max"], "max"),
        );
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
            "{hist}: {run}"
        );
    }
}

#[test]
fn bench_kafka_json_reports_throughput_latency_and_baselines() {
    let server = Rivulet::start();
    let baseline_dir = tempfile::tempdir().expect("temp dir");
    let pid = server.pid().to_string();
    let baseline_path = baseline_dir.path().display().to_string();
    let report = run_json(&[
        "bench",
        "kafka",
        "-b",
        &server.bootstrap(),
        "--format",
        "json",
        "--durability",
        "both",
        "--partitions",
        "4",
        "--warmup",
        "1",
        "--duration",
        "1",
        "--rate",
        "2000",
        "--baseline-secs",
        "1",
        "--baseline-dir",
        &baseline_path,
        "--broker-pid",
        &pid,
        "--report-interval",
        "1",
    ]);

    assert_eq!(report["system"], "rivulet", "{report}");
    let baseline = &report["baseline"];
    for key in [
        "disk_write_mb_per_sec",
        "disk_write_fdatasync_mb_per_sec",
        "loopback_tcp_mb_per_sec",
    ] {
        assert!(number(&baseline[key], key) > 0.0, "{key}: {report}");
    }
    let sync = &baseline["append_fdatasync_latency_ms"];
    assert!(sync["count"].as_u64().unwrap_or(0) > 0, "{report}");
    assert!(
        number(&sync["p50"], "p50") <= number(&sync["p99"], "p99"),
        "{report}"
    );

    let runs = report["runs"].as_array().expect("runs array");
    assert_eq!(runs.len(), 2, "{report}");
    for (run, policy) in runs.iter().zip(["fsync.policy=none", "fsync.policy=always"]) {
        assert_eq!(run["controllable"], true, "{run}");
        assert_eq!(run["topic_configs"][0], policy, "{run}");
        assert_measured(run);
        let intervals = run["intervals"].as_array().expect("per-interval rows");
        assert!(!intervals.is_empty(), "{run}");
        assert!(intervals[0]["broker_rss_mib"].is_number(), "{run}");
        assert!(run["cpu_secs_broker"].is_number(), "{run}");
        assert!(run["fraction_of_disk_baseline"].is_number(), "{run}");
    }
}

/// The native client over several topics: every record crosses, the topics are created and
/// deleted in batches, and the run reports what the broker spent per record.
#[test]
fn bench_kafka_native_client_spreads_a_rate_over_topics_and_reports_cost_per_record() {
    let server = Rivulet::start();
    let pid = server.pid().to_string();
    let report = run_json(&[
        "bench",
        "kafka",
        "-b",
        &server.bootstrap(),
        "--format",
        "json",
        "--client",
        "native",
        "--durability",
        "d1",
        "--topics",
        "5",
        "--partitions",
        "3",
        "--warmup",
        "1",
        "--duration",
        "1",
        "--rate",
        "3000",
        "--baseline",
        "false",
        "--broker-pid",
        &pid,
    ]);
    let run = &report["runs"][0];
    assert_measured(run);
    let produced = run["produced_records"].as_u64().expect("produced");
    assert!(
        produced >= 2_000,
        "a 3,000/s run for 1 s produced {produced}: {run}"
    );
    for key in [
        "broker_cpu_us_per_record",
        "generator_cpu_us_per_record",
        "broker_context_switches_per_record",
    ] {
        let v = number(&run[key], key);
        assert!(v > 0.0 && v.is_finite(), "{key} = {v}: {run}");
    }
    assert!(number(&run["broker_threads"], "threads") >= 1.0, "{run}");
    // The run's topics are gone afterwards: only internal topics remain.
    let list = run_json(&["topic", "list", "-b", &server.bootstrap(), "--format", "json"]);
    let text = list.to_string();
    assert!(
        !text.contains("rivulet-bench"),
        "bench topics left behind: {text}"
    );
}

/// Peer drivers against the NATS and RabbitMQ servers of this machine (127.0.0.1:4222 and
/// 127.0.0.1:5672), briefly: they must move records end to end and
/// report D1 honestly as not measurable where the peer cannot fsync per message.
#[cfg(feature = "peers")]
mod peers {
    use super::{assert_measured, run_json};

    fn peer(command: &str) -> serde_json::Value {
        run_json(&[
            "bench",
            command,
            "--format",
            "json",
            "--partitions",
            "2",
            "--warmup",
            "1",
            "--duration",
            "1",
            "--rate",
            "1000",
            "--baseline",
            "false",
        ])
    }

    /// The run at `level` ("d0" or "d1").
    fn level<'a>(report: &'a serde_json::Value, level: &str) -> &'a serde_json::Value {
        report["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .find(|r| r["durability"] == level)
            .unwrap_or_else(|| panic!("no {level} run: {report}"))
    }

    #[test]
    fn bench_nats_measures_d0_and_declines_d1() {
        let report = peer("nats");
        assert_eq!(report["system"], "nats-jetstream", "{report}");
        assert_measured(level(&report, "d0"));
        assert_eq!(level(&report, "d1")["controllable"], false, "{report}");
    }

    #[test]
    fn bench_rabbitmq_stream_measures_d0_and_declines_d1() {
        let report = peer("rabbitmq-stream");
        assert_eq!(report["system"], "rabbitmq-stream", "{report}");
        assert_measured(level(&report, "d0"));
        assert_eq!(level(&report, "d1")["controllable"], false, "{report}");
    }

    #[test]
    fn bench_rabbitmq_quorum_measures_d1_and_declines_d0() {
        let report = peer("rabbitmq-quorum");
        assert_eq!(report["system"], "rabbitmq-quorum", "{report}");
        assert_measured(level(&report, "d1"));
        assert_eq!(level(&report, "d0")["controllable"], false, "{report}");
    }

    #[test]
    fn bench_compare_finds_the_peak_then_measures_fractions_and_draws_a_chart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let chart = dir.path().join("chart.svg");
        let json = dir.path().join("report.json");
        let dir_arg = dir.path().display().to_string();
        let report = run_json(&[
            "bench",
            "compare",
            "--systems",
            "rivulet",
            "--format",
            "json",
            "--partitions",
            "2",
            "--warmup",
            "1",
            "--duration",
            "1",
            "--fractions",
            "0.5",
            "--record-size",
            "128",
            "--baseline-secs",
            "1",
            "--baseline-dir",
            &dir_arg,
            "--chart",
            &chart.display().to_string(),
            "--json",
            &json.display().to_string(),
        ]);
        let points = report["points"].as_array().expect("points");
        // D0 and D1 at max rate, then each at 50% of its own peak.
        assert_eq!(points.len(), 4, "{report}");
        for p in points {
            assert_eq!(p["system"], "rivulet", "{p}");
            assert_measured(p);
        }
        for level in ["d0", "d1"] {
            let peak = points
                .iter()
                .find(|p| p["durability"] == level && p["fraction_of_peak"].is_null())
                .expect("peak point");
            let half = points
                .iter()
                .find(|p| p["durability"] == level && p["fraction_of_peak"] == 0.5)
                .expect("half point");
            let peak_rate = peak["produce_records_per_sec"].as_f64().expect("rate");
            let asked = half["rate_records_per_sec"].as_f64().expect("asked rate");
            assert!(
                (asked - peak_rate / 2.0).abs() <= 1.0,
                "50% of {peak_rate} is not {asked}"
            );
        }
        let svg = std::fs::read_to_string(&chart).expect("chart written");
        assert!(svg.starts_with("<svg") && svg.contains("rivulet D1"), "{svg}");
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
        assert_eq!(saved["points"].as_array().map(Vec::len), Some(4));
        // The Rivulet started for the run is gone, and so is its data directory.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("rivulet-bench-compare")
            })
            .collect();
        assert!(leftovers.is_empty(), "data directory left behind");
    }
}
