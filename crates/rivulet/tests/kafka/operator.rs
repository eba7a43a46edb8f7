//! The operator surface end to end: the CLI, the HTTP gateway, Kafka clients and kcat on
//! one real `rivulet serve`, each reading what another wrote; and `/metrics` moving with
//! traffic.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::harness::Rivulet;

/// curl with a time limit; returns (HTTP status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

fn post(url: &str, body: &str) -> (u16, Value) {
    let (code, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        body,
        url,
    ]);
    (code, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

fn cli(server: &Rivulet, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(args)
        .env("RIVULET_BROKERS", server.bootstrap())
        .stdin(Stdio::null())
        .output()
        .expect("rivulet CLI runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn topic_created_with_cli_takes_http_records_that_kcat_reads() {
    let server = Rivulet::start();
    let (code, out, err) = cli(&server, &["topic", "create", "orders", "-p", "2"]);
    assert_eq!(code, 0, "topic create failed: {out}{err}");
    let (code, body) = post(
        &format!("{}/v1/topics/orders/records", server.http_base()),
        r#"[{"key":"order-7","value":{"total":42},"headers":{"type":"OrderPlaced"}},{"key":"order-8","value":"plain"}]"#,
    );
    assert_eq!(code, 200, "{body}");
    let offsets = body["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 2);
    let out = Command::new("kcat")
        .args([
            "-b",
            &server.bootstrap(),
            "-t",
            "orders",
            "-C",
            "-e",
            "-q",
            "-f",
            "%k|%s|%h\n",
        ])
        .output()
        .expect("kcat runs");
    assert!(
        out.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        vec![r#"order-7|{"total":42}|type=OrderPlaced"#, "order-8|plain|"],
        "kcat saw: {text}"
    );
    // The HTTP gateway and a Kafka client agree on key partitioning (murmur2).
    let (_, described) = curl(&[&format!("{}/v1/topics/orders", server.http_base())]);
    let described: Value = serde_json::from_str(&described).expect("json");
    let total: i64 = described["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["high_watermark"].as_i64().expect("hwm"))
        .sum();
    assert_eq!(total, 2);
}

#[test]
fn records_from_a_kafka_client_arrive_over_server_sent_events() {
    let server = Rivulet::start();
    let (code, out, err) = cli(&server, &["topic", "create", "clicks", "-p", "3"]);
    assert_eq!(code, 0, "{out}{err}");
    let url = format!(
        "{}/v1/topics/clicks/events?from=start&group=dashboard",
        server.http_base()
    );
    let mut sse = Command::new("curl")
        .args(["-s", "-N", "--max-time", "30", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl -N");
    let stdout = sse.stdout.take().expect("stdout");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    runtime.block_on(async {
        for i in 0..30 {
            let key = format!("user-{}", i % 5);
            let value = format!("click-{i}");
            producer
                .send(
                    FutureRecord::to("clicks").key(&key).payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .expect("delivered");
        }
    });
    let mut values = Vec::new();
    let mut ids = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(id) = line.strip_prefix("id:") {
            ids.push(id.trim().to_string());
        }
        if let Some(data) = line.strip_prefix("data:") {
            let v: Value = serde_json::from_str(data.trim()).expect("event JSON");
            values.push(v["value"].as_str().expect("value").to_string());
            if values.len() == 30 {
                break;
            }
        }
    }
    let _ = sse.kill();
    let _ = sse.wait();
    values.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("click-{i}")).collect();
    want.sort();
    assert_eq!(values, want, "every record once over SSE");
    assert!(
        ids.last().is_some_and(|id| id.split(',').count() == 3),
        "ids carry all partitions: {ids:?}"
    );
    // The SSE group committed its position; the CLI shows the group with no lag.
    let mut lag = None;
    for _ in 0..50 {
        let (code, out, _) = cli(&server, &["group", "describe", "dashboard", "--format", "json"]);
        if code == 0 {
            let v: Value = serde_json::from_str(&out).expect("group json");
            // One object per described group.
            lag = v[0]["total_lag"].as_i64();
            if lag == Some(0) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(lag, Some(0), "the dashboard group is caught up");
}

#[test]
fn metrics_move_as_traffic_flows() {
    let server = Rivulet::start();
    let metrics_url = format!("{}/metrics", server.http_base());
    let (code, before) = curl(&[&metrics_url]);
    assert_eq!(code, 200);
    assert!(before.contains("rivulet_build_info{version="), "{before}");
    let out = Command::new("kcat")
        .args(["-b", &server.bootstrap(), "-t", "metered", "-P"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            if let Some(mut stdin) = c.stdin.take() {
                stdin.write_all(b"a\nb\nc\n")?;
            }
            c.wait_with_output()
        })
        .expect("kcat -P");
    assert!(out.status.success());
    let out = Command::new("kcat")
        .args(["-b", &server.bootstrap(), "-t", "metered", "-C", "-e", "-q"])
        .output()
        .expect("kcat -C");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let (_, after) = curl(&[&metrics_url]);
    assert_eq!(
        metric(&after, r#"rivulet_records_produced_total{topic="metered"}"#),
        Some(3.0),
        "{after}"
    );
    assert!(metric(&after, r#"rivulet_records_fetched_total{topic="metered"}"#).unwrap_or(0.0) >= 3.0);
    assert_eq!(
        metric(
            &after,
            r#"rivulet_partition_high_watermark{topic="metered",partition="0"}"#
        ),
        Some(3.0)
    );
    assert!(
        metric(
            &after,
            r#"rivulet_request_duration_seconds_count{protocol="kafka",api="Produce"}"#
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{after}"
    );
    assert!(
        metric(&after, "rivulet_fsync_duration_seconds_count").unwrap_or(0.0) >= 1.0,
        "acks=all fsyncs are timed"
    );
    assert!(metric(&after, r#"rivulet_connections_total{protocol="kafka"}"#).unwrap_or(0.0) >= 2.0);
    assert!(metric(&after, "rivulet_disk_used_bytes").unwrap_or(0.0) > 0.0);
}
