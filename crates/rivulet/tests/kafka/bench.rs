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

#[test]
fn bench_kafka_json_reports_throughput_latency_and_baselines() {
    let server = Rivulet::start();
    let baseline_dir = tempfile::tempdir().expect("temp dir");
    let pid = server.pid().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args([
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
        ])
        .arg(baseline_dir.path())
        .args(["--broker-pid", &pid])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rivulet bench");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > BENCH_TIMEOUT {
            let _ = child.kill();
            panic!("`rivulet bench kafka` did not finish within {BENCH_TIMEOUT:?}");
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
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));

    assert_eq!(report["broker_is_rivulet"], true, "{report}");
    let baseline = &report["baseline"];
    for key in [
        "disk_write_mb_per_sec",
        "disk_write_fdatasync_mb_per_sec",
        "loopback_tcp_mb_per_sec",
    ] {
        assert!(number(&baseline[key], key) > 0.0, "{key}: {report}");
    }

    let runs = report["runs"].as_array().expect("runs array");
    assert_eq!(runs.len(), 2, "{report}");
    for (run, policy) in runs.iter().zip(["fsync.policy=none", "fsync.policy=always"]) {
        assert_eq!(run["controllable"], true, "{run}");
        assert_eq!(run["topic_configs"][0], policy, "{run}");
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
        assert!(run["cpu_secs_broker"].is_number(), "{run}");
        assert!(run["fraction_of_disk_baseline"].is_number(), "{run}");
    }
}
