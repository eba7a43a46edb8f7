//! The operator surface end to end: the CLI, the HTTP gateway, Kafka clients and kcat on
//! one real `rivulet serve`, each reading what another wrote; and `/metrics` moving with
//! traffic.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::harness::Rivulet;

/// curl with a time limit; returns (HTTP status, body).
pub(crate) fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

pub(crate) fn post(url: &str, body: &str) -> (u16, Value) {
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

/// Opens an SSE stream as a member of `group`.
pub(crate) fn sse_member(server: &Rivulet, topic: &str, group: &str) -> std::process::Child {
    let url = format!("{}/v1/topics/{topic}/events?group={group}", server.http_base());
    Command::new("curl")
        .args(["-s", "-N", "--max-time", "60", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl -N")
}

#[test]
fn server_sent_event_members_show_in_group_describe_with_their_partitions() {
    let server = Rivulet::start();
    let (code, out, err) = cli(&server, &["topic", "create", "wall", "-p", "4"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut streams = vec![
        sse_member(&server, "wall", "screens"),
        sse_member(&server, "wall", "screens"),
    ];
    let mut described = Value::Null;
    for _ in 0..100 {
        let (code, out, _) = cli(&server, &["group", "describe", "screens", "--format", "json"]);
        if code == 0 {
            described = serde_json::from_str::<Value>(&out).expect("group json")[0].clone();
            if described["members"] == 2 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(described["members"], 2, "{described}");
    assert_eq!(described["state"], "Stable", "{described}");
    let partitions = described["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 4, "{described}");
    let mut per_member: BTreeMap<String, usize> = BTreeMap::new();
    for p in partitions {
        assert_eq!(p["client_id"], "sse", "{p}");
        *per_member
            .entry(p["member_id"].as_str().expect("owner").to_string())
            .or_default() += 1;
    }
    assert_eq!(
        per_member.values().copied().collect::<Vec<_>>(),
        vec![2, 2],
        "each stream reads half: {described}"
    );
    let (code, out, _) = cli(&server, &["group", "list", "--format", "json"]);
    assert_eq!(code, 0);
    assert!(out.contains("screens"), "{out}");
    let (code, body) = curl(&[&format!("{}/v1/groups", server.http_base())]);
    assert_eq!(code, 200);
    assert!(body.contains("\"screens\""), "{body}");
    // A stream that goes away leaves the group; the other takes every partition.
    let mut gone = streams.remove(0);
    let _ = gone.kill();
    let _ = gone.wait();
    let mut owners = BTreeMap::new();
    for _ in 0..100 {
        let (_, out, _) = cli(&server, &["group", "describe", "screens", "--format", "json"]);
        let v: Value = serde_json::from_str(&out).expect("group json");
        owners = v[0]["partitions"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| (p["partition"].to_string(), p["member_id"].to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if v[0]["members"] == 1 && owners.values().collect::<std::collections::BTreeSet<_>>().len() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(owners.len(), 4);
    assert_eq!(
        owners.values().collect::<std::collections::BTreeSet<_>>().len(),
        1,
        "{owners:?}"
    );
    for mut s in streams {
        let _ = s.kill();
        let _ = s.wait();
    }
}

/// A hanging transaction is visible to an operator (`rivulet txn list|describe`,
/// `/v1/transactions`, `/metrics`), holds back read_committed readers, and an abort through
/// the gateway releases them and fences its producer.
#[test]
fn an_operator_sees_a_hanging_transaction_and_aborts_it() {
    use rdkafka::producer::Producer;
    let server = Rivulet::start();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("transactional.id", "stuck-job")
        .set("transaction.timeout.ms", "600000")
        .create()
        .expect("transactional producer");
    producer.init_transactions(Duration::from_secs(30)).expect("init");
    producer.begin_transaction().expect("begin");
    let delivered = rt().block_on(
        producer.send(
            FutureRecord::<(), str>::to("ledger")
                .partition(0)
                .payload("pending"),
            Duration::from_secs(30),
        ),
    );
    assert!(delivered.is_ok(), "{delivered:?}");

    let (code, out, err) = cli(&server, &["txn", "list"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.contains("stuck-job")).unwrap_or_default();
    assert!(line.contains("Ongoing"), "{out}");
    let (code, out, err) = cli(&server, &["txn", "describe", "stuck-job", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let described: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(described[0]["state"], "Ongoing", "{out}");
    assert_eq!(described[0]["partitions"][0], "ledger:0", "{out}");
    let (code, _, _) = cli(&server, &["txn", "describe", "no-such-id"]);
    assert_ne!(code, 0, "an unknown id is an error");

    // The partition remembers the producer and where its open transaction starts
    // (Kafka DescribeProducers).
    let (code, out, err) = cli(&server, &["topic", "producers", "ledger", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let producers: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(producers.as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(producers[0]["partition"], 0, "{out}");
    assert_eq!(producers[0]["transaction_start_offset"], 0, "{out}");
    assert_eq!(producers[0]["last_sequence"], 0, "{out}");
    let (code, _, err) = cli(&server, &["topic", "producers", "no-such-topic"]);
    assert_ne!(code, 0, "an unknown topic is an error: {err}");

    let (code, listed) = curl(&[&format!("{}/v1/transactions", server.http_base())]);
    assert_eq!(code, 200);
    let listed: Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed["transactions"][0]["transactional_id"], "stuck-job");
    assert!(
        listed["transactions"][0]["open_ms"].as_i64().is_some(),
        "{listed}"
    );
    let metrics_url = format!("{}/metrics", server.http_base());
    let (_, text) = curl(&[&metrics_url]);
    assert_eq!(metric(&text, "rivulet_transactions_open"), Some(1.0), "{text}");
    let lag = r#"rivulet_partition_last_stable_offset_lag{topic="ledger",partition="0"}"#;
    assert_eq!(metric(&text, lag), Some(1.0), "{text}");

    let abort_url = format!("{}/v1/transactions/stuck-job/abort", server.http_base());
    let (code, body) = curl(&["-X", "POST", &abort_url]);
    assert_eq!(code, 204, "{body}");
    let (code, _) = curl(&["-X", "POST", &abort_url]);
    assert_eq!(code, 409, "nothing left to abort");
    let (_, text) = curl(&[&metrics_url]);
    assert_eq!(metric(&text, "rivulet_transactions_open"), Some(0.0), "{text}");
    assert_eq!(metric(&text, lag), Some(0.0), "{text}");
    assert_eq!(
        metric(&text, r#"rivulet_transactions_aborted_total{reason="operator"}"#),
        Some(1.0),
        "{text}"
    );
    let committed = producer.commit_transaction(Duration::from_secs(30));
    assert!(committed.is_err(), "the fenced producer committed");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `/readyz` and `/v1/status` list every listener; an AMQP address given explicitly that
/// is busy stops the server with a clear error, while a busy default one (RabbitMQ's 5672)
/// only shows as down.
#[test]
fn listeners_show_in_readyz_and_a_busy_default_amqp_port_only_warns() {
    let server = Rivulet::start();
    let (code, body) = curl(&[&format!("{}/readyz", server.http_base())]);
    assert_eq!(code, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).expect("json");
    let amqp = server.amqp_url().trim_start_matches("amqp://").to_string();
    let listeners = ready["listeners"].as_array().expect("listeners");
    assert!(
        listeners
            .iter()
            .any(|l| l["protocol"] == "amqp" && l["address"] == amqp.as_str() && l["up"] == true),
        "{body}"
    );
    let (_, status) = curl(&[&format!("{}/v1/status", server.http_base())]);
    assert!(status.contains(&amqp), "{status}");

    // Explicitly asked for and busy: an error naming the address.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = held.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "off"])
        .args(["--amqp-listen", &busy])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("AMQP: listening on {busy}")), "{stderr}");

    // The default 127.0.0.1:5672, busy (held here unless RabbitMQ already holds it): the
    // broker serves anyway and reports the listener down.
    let _hold = std::net::TcpListener::bind("127.0.0.1:5672").ok();
    let http = crate::harness::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--http-listen", &format!("127.0.0.1:{http}")])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("RIVULET_AMQP_LISTEN")
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let url = format!("http://127.0.0.1:{http}/readyz");
    let mut body = String::new();
    for _ in 0..100 {
        let (code, b) = curl(&["--max-time", "1", &url]);
        if code == 200 {
            body = b;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let ready: Value = serde_json::from_str(&body).expect("readyz answers");
    let down = ready["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["address"] == "127.0.0.1:5672")
        .cloned()
        .expect("the default AMQP address is listed");
    assert_eq!(down["up"], false, "{body}");
    assert!(
        down["error"].as_str().is_some_and(|e| e.contains("in use")),
        "{body}"
    );
}
