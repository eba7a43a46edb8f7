//! A stream processing job against `rivulet serve` over the Kafka protocol, seen by
//! operators: `rivulet job list|describe`, `/v1/jobs` and `/metrics`.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use rivulet_sdk::transport::TopicSpec;
use rivulet_sdk::{KafkaTransport, OutRecord, Transport};
use rivulet_stream::{JobOptions, Stream, WindowResult, Windows};

use crate::harness::{curl, Rivulet};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    sku: String,
    at_ms: i64,
}

fn cli(server: &Rivulet, args: &[&str]) -> Value {
    let out = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_rivulet"))
        .args(args)
        .args(["--format", "json"])
        .env("RIVULET_HTTP", server.http_base().trim_start_matches("http://"))
        .env("RIVULET_BROKERS", server.bootstrap())
        .output()
        .expect("run rivulet");
    assert!(
        out.status.success(),
        "rivulet {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_job_reports_itself_to_operators() {
    let server = Rivulet::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(&server.bootstrap()).expect("client"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let base = now - 600_000 - now.rem_euclid(1_000);
    rt.block_on(async {
        let spec = TopicSpec {
            partitions: 3,
            configs: BTreeMap::new(),
        };
        transport.ensure_topic("orders", spec).await.expect("topic");
        // 3 SKUs x 10 orders in the first second, then one order a minute later that
        // closes that second's windows.
        let mut orders: Vec<OutRecord> = (0..30)
            .map(|i| Order {
                sku: format!("sku-{}", i % 3),
                at_ms: base + i * 10,
            })
            .chain(std::iter::once(Order {
                sku: "sku-0".into(),
                at_ms: base + 60_000,
            }))
            .map(|o| OutRecord {
                key: Some(o.sku.clone().into_bytes()),
                value: Some(serde_json::to_vec(&o).expect("json")),
                ..OutRecord::default()
            })
            .collect();
        // A record that is no order: dead-lettered, counted.
        orders.push(OutRecord {
            value: Some(b"{}".to_vec()),
            ..OutRecord::default()
        });
        transport.publish("orders", orders).await.expect("publish");
    });
    let pipeline = Stream::<Order>::json(&["orders"])
        .event_time(|o| o.at_ms)
        .key_by(|o| o.sku.clone())
        .window(Windows::tumbling(Duration::from_secs(1)))
        .count()
        .to("orders-per-second");
    let options = JobOptions::new("orders-per-second")
        .idle_timeout(Duration::from_millis(500))
        .query_listen("127.0.0.1:0".parse().expect("addr"));
    let job = rt
        .block_on(rivulet_stream::start(transport.clone(), pipeline, options))
        .expect("job starts");

    // The first second's counts arrive in the output topic (the later order's window may
    // follow once idleness advances the watermark).
    let first_second = || -> Vec<WindowResult<String, u64>> {
        let (records, _) = rt
            .block_on(transport.read_to_end("orders-per-second", BTreeMap::new(), 1_000))
            .unwrap_or_default();
        records
            .iter()
            .filter_map(|r| serde_json::from_slice::<WindowResult<String, u64>>(r.value.as_deref()?).ok())
            .filter(|v| v.start_ms == base)
            .collect()
    };
    wait_for("three window results", || first_second().len() >= 3);
    let mut got: Vec<(String, u64)> = first_second().into_iter().map(|v| (v.key, v.value)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("sku-0".to_string(), 10),
            ("sku-1".to_string(), 10),
            ("sku-2".to_string(), 10)
        ]
    );

    // Operators see it: the CLI, the HTTP API and the metrics.
    wait_for("a status with the processed records", || {
        let list = cli(&server, &["job", "list"]);
        list["jobs"][0]["instances"][0]["records_in"].as_u64() == Some(32)
    });
    let list = cli(&server, &["job", "list"]);
    let job_json = &list["jobs"][0];
    assert_eq!(job_json["job"], "orders-per-second");
    assert_eq!(job_json["instances_running"], 1);
    let instance = &job_json["instances"][0];
    assert_eq!(instance["dead_lettered"], 1, "{instance}");
    assert_eq!(instance["repartition_topic"], "orders-per-second-repartition");
    assert_eq!(instance["guarantee"], "exactly_once");
    // The lowest task watermark: past the start of the data (tasks that saw fewer records
    // trail the others).
    assert!(
        instance["watermark_ms"].as_i64() > Some(base - 1_000),
        "{instance}"
    );
    let (code, _) = curl(&server, "GET", "/v1/jobs/orders-per-second", &[]);
    assert_eq!(code, "200");
    let (code, body) = curl(&server, "GET", "/v1/jobs/nothing-here", &[]);
    assert_eq!(code, "404", "{body}");
    assert!(body.contains("40413"), "{body}");
    let (_, metrics) = curl(&server, "GET", "/metrics", &[]);
    assert!(
        metrics.contains("rivulet_job_records_in_total{job=\"orders-per-second\",instance=\"0\"} 32"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("rivulet_job"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.contains("rivulet_job_up{job=\"orders-per-second\",instance=\"0\"} 1"));
    // A fresh job has restored nothing from a copy (it keeps none).
    assert!(
        metrics.contains("rivulet_job_restored_from_copy_total{job=\"orders-per-second\",instance=\"0\"} 0")
    );

    // Interactive queries through the broker: the instance answers for a key (the windows
    // of sku-1 have all closed, so it holds none open).
    let (code, body) = curl(&server, "GET", "/v1/jobs/orders-per-second/state/sku-1", &[]);
    assert_eq!(code, "200", "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["instances"][0]["instance"], "0", "{answer}");
    assert!(answer["instances"][0]["windows"].is_array(), "{answer}");

    // A graceful stop is reported.
    let stats = rt.block_on(job.shutdown()).expect("shutdown");
    assert_eq!(stats.records_in, 32, "{stats:?}");
    let described = cli(&server, &["job", "describe", "orders-per-second"]);
    assert_eq!(described["instances"][0]["state"], "stopped", "{described}");
    // Every input record committed (the repartition topic's last offset is a transaction
    // marker, which the group never consumes).
    let input_lag: Vec<i64> = described["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["topic"] == "orders")
        .filter_map(|p| p["lag"].as_i64())
        .collect();
    assert!(
        !input_lag.is_empty() && input_lag.iter().all(|l| *l == 0),
        "{described}"
    );
}
