//! The gateway over a real broker on an ephemeral port, driven with curl.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rivulet_broker::{Broker, BrokerConfig};
use rivulet_http::GatewayConfig;
use serde_json::Value;

struct Gateway {
    base: String,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    broker: Broker,
}

async fn start() -> Gateway {
    start_with(BrokerConfig::default()).await
}

async fn start_with(config: BrokerConfig) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..config
    })
    .expect("broker");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = GatewayConfig {
        body_bytes_max: 64 * 1024,
        ..GatewayConfig::default()
    };
    let b = broker.clone();
    tokio::spawn(async move {
        let _ = rivulet_http::serve(listener, b, config, async {
            let _ = rx.await;
        })
        .await;
    });
    Gateway {
        base,
        _dir: dir,
        _shutdown: tx,
        broker,
    }
}

/// Runs curl; returns (status, body).
async fn curl(args: Vec<String>) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-s", "-S", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20"])
            .args(&args)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').expect("status line");
        (code.trim().parse().expect("status"), body.to_string())
    })
    .await
    .expect("join")
}

async fn get(g: &Gateway, path: &str) -> (u16, Value) {
    let (code, body) = curl(vec![format!("{}{path}", g.base)]).await;
    (code, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

async fn send(g: &Gateway, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (code, body) = curl(vec![
        "-X".into(),
        method.into(),
        "-H".into(),
        "content-type: application/json".into(),
        "--data-binary".into(),
        body.into(),
        format!("{}{path}", g.base),
    ])
    .await;
    (code, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

// Longer than most functions: one walk through every route on one gateway, each step reading what the last one wrote; kept whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_poll_and_admin_round_trip() {
    let g = start().await;
    let (code, created) = send(
        &g,
        "POST",
        "/v1/topics",
        r#"{"name":"orders","partitions":3,"configs":{"retention.ms":"3600000"}}"#,
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["partitions"].as_array().map(Vec::len), Some(3));
    let retention = created["configs"]
        .as_array()
        .and_then(|c| c.iter().find(|e| e["name"] == "retention.ms").cloned())
        .expect("retention.ms listed");
    assert_eq!(retention["value"], "3600000");
    assert_eq!(retention["source"], "DYNAMIC_TOPIC_CONFIG");

    let (code, produced) = send(
        &g,
        "POST",
        "/v1/topics/orders/records",
        r#"[{"key":"order-1","value":{"sku":"A","qty":2},"headers":{"type":"OrderPlaced"}},
            {"key":"order-1","value":"second"},
            {"value_base64":"AP8=","partition":2}]"#,
    )
    .await;
    assert_eq!(code, 200, "{produced}");
    let offsets = produced["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 3);
    let p = offsets[0]["partition"].as_i64().expect("partition");
    assert_eq!(
        offsets[1]["partition"].as_i64(),
        Some(p),
        "same key, same partition"
    );
    assert_eq!(
        offsets[1]["offset"].as_i64(),
        Some(offsets[0]["offset"].as_i64().expect("o") + 1)
    );
    assert_eq!(offsets[2]["partition"], 2);

    let (code, polled) = get(
        &g,
        &format!("/v1/topics/orders/partitions/{p}/records?offset=start"),
    )
    .await;
    assert_eq!(code, 200, "{polled}");
    let records = polled["records"].as_array().expect("records");
    assert!(records.len() >= 2);
    let first = records
        .iter()
        .find(|r| r["key"] == "order-1")
        .expect("keyed record");
    assert_eq!(first["value"], r#"{"sku":"A","qty":2}"#);
    assert_eq!(first["headers"]["type"], "OrderPlaced");
    let (_, binary) = get(&g, "/v1/topics/orders/partitions/2/records?offset=start").await;
    let bin = binary["records"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["value_base64"] == "AP8=").cloned());
    assert!(bin.is_some(), "binary value comes back as base64: {binary}");

    let (code, listed) = get(&g, "/v1/topics").await;
    assert_eq!(code, 200);
    assert!(listed["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .any(|t| t["name"] == "orders"));
    let (code, status) = get(&g, "/v1/status").await;
    assert_eq!(code, 200);
    assert_eq!(status["topics"], 1);
    assert_eq!(status["partitions"], 3);

    let (code, _) = send(&g, "DELETE", "/v1/topics/orders", "").await;
    assert_eq!(code, 204);
    let (code, err) = get(&g, "/v1/topics/orders").await;
    assert_eq!(code, 404);
    assert_eq!(err["error_code"], 40401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_json_errors() {
    let g = start().await;
    send(&g, "POST", "/v1/topics", r#"{"name":"t","partitions":1}"#).await;
    let (code, e) = send(&g, "POST", "/v1/topics/t/records", "{not json").await;
    assert_eq!((code, e["error_code"].as_i64()), (400, Some(40001)), "{e}");
    assert!(e["message"].as_str().expect("message").contains("not valid JSON"));
    let (code, e) = send(
        &g,
        "POST",
        "/v1/topics/t/records",
        r#"{"value":"x","partition":7}"#,
    )
    .await;
    assert_eq!((code, e["error_code"].as_i64()), (404, Some(40402)));
    let (code, e) = send(&g, "POST", "/v1/topics/t/records", r#"{"valu":"typo"}"#).await;
    assert_eq!(code, 400, "unknown fields are refused: {e}");
    // A negative timestamp beside a positive one would overflow the batch's timestamp delta.
    let (code, e) = send(
        &g,
        "POST",
        "/v1/topics/t/records",
        r#"[{"value":"a","timestamp":1700000000000},{"value":"b","timestamp":-9223372036854775808}]"#,
    )
    .await;
    assert_eq!((code, e["error_code"].as_i64()), (400, Some(40001)), "{e}");
    assert!(
        e["message"].as_str().expect("message").contains("negative"),
        "{e}"
    );
    let big = format!(r#"{{"value":"{}"}}"#, "x".repeat(100 * 1024));
    let (code, e) = send(&g, "POST", "/v1/topics/t/records", &big).await;
    assert_eq!((code, e["error_code"].as_i64()), (413, Some(41301)), "{e}");
    let (code, e) = get(&g, "/v1/topics/t/partitions/0/records?offset=99").await;
    assert_eq!((code, e["error_code"].as_i64()), (416, Some(41601)), "{e}");
    let (code, e) = get(&g, "/v1/topics/t/partitions/x/records").await;
    assert_eq!((code, e["error_code"].as_i64()), (400, Some(40001)), "{e}");
    let (code, e) = get(&g, "/v1/topics/t/partitions/0/records?bogus=1").await;
    assert_eq!((code, e["error_code"].as_i64()), (400, Some(40001)), "{e}");
    let (code, e) = get(&g, "/v1/topics/t/events?partition=zz").await;
    assert_eq!((code, e["error_code"].as_i64()), (400, Some(40001)), "{e}");
    let (code, e) = get(&g, "/v1/nothing").await;
    assert_eq!((code, e["error_code"].as_i64()), (404, Some(40400)));
    let (code, e) = send(&g, "POST", "/v1/topics", r#"{"name":"bad/name"}"#).await;
    assert_eq!(code, 422, "{e}");
    // Nothing was written by the refused requests.
    assert_eq!(
        g.broker
            .topic("t")
            .expect("t")
            .partition_info(0)
            .expect("p0")
            .log_end_offset,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_produce() {
    let g = start().await;
    send(&g, "POST", "/v1/topics", r#"{"name":"wake","partitions":1}"#).await;
    let url = format!(
        "{}/v1/topics/wake/partitions/0/records?offset=0&timeout_ms=10000",
        g.base
    );
    let started = std::time::Instant::now();
    let poll = tokio::spawn(curl(vec![url]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&g, "POST", "/v1/topics/wake/records", r#"{"value":"hello"}"#).await;
    let (code, body) = poll.await.expect("poll");
    let elapsed = started.elapsed();
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["records"][0]["value"], "hello");
    assert!(
        elapsed < Duration::from_secs(5),
        "woken by the append, not the timeout: {elapsed:?}"
    );
}

/// Reads SSE events (id, data) from `curl -N` until `n` arrived.
fn read_events(url: &str, last_event_id: Option<&str>, n: usize) -> Vec<(String, Value)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-N", "--max-time", "15", url])
        .stdout(Stdio::piped());
    if let Some(id) = last_event_id {
        cmd.args(["-H", &format!("Last-Event-ID: {id}")]);
    }
    let mut child = cmd.spawn().expect("curl");
    let stdout = child.stdout.take().expect("stdout");
    let mut events = Vec::new();
    let (mut id, mut data) = (String::new(), String::new());
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data = v.trim().to_string();
        } else if line.is_empty() && !data.is_empty() {
            events.push((id.clone(), serde_json::from_str(&data).expect("event json")));
            data.clear();
            if events.len() >= n {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_resume_and_commit_group_offsets() {
    let g = start().await;
    send(&g, "POST", "/v1/topics", r#"{"name":"feed","partitions":2}"#).await;
    let batch: Vec<String> = (0..10)
        .map(|i| format!(r#"{{"value":"v{i}","partition":{}}}"#, i % 2))
        .collect();
    send(
        &g,
        "POST",
        "/v1/topics/feed/records",
        &format!("[{}]", batch.join(",")),
    )
    .await;
    let url = format!("{}/v1/topics/feed/events?from=start", g.base);
    let u = url.clone();
    let first = tokio::task::spawn_blocking(move || read_events(&u, None, 4))
        .await
        .expect("join");
    assert_eq!(first.len(), 4);
    // Resume after the 4th event: the rest arrive, none repeats.
    let resume = first[3].0.clone();
    let u = url.clone();
    let rest = tokio::task::spawn_blocking(move || read_events(&u, Some(&resume), 6))
        .await
        .expect("join");
    let mut seen: Vec<String> = first
        .iter()
        .chain(rest.iter())
        .map(|(_, v)| v["value"].as_str().expect("value").to_string())
        .collect();
    seen.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(seen, want, "every record exactly once across the resume");

    // As a group: consumes, commits, and a new stream of the group starts after the commit.
    let gurl = format!("{}/v1/topics/feed/events?group=readers&from=start", g.base);
    let u = gurl.clone();
    let got = tokio::task::spawn_blocking(move || read_events(&u, None, 10))
        .await
        .expect("join");
    assert_eq!(got.len(), 10);
    let mut committed = 0;
    for _ in 0..50 {
        committed = g
            .broker
            .groups()
            .offsets()
            .group_offsets("readers")
            .iter()
            .map(|(_, _, c)| c.offset)
            .sum::<i64>();
        if committed == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(committed, 10, "the group committed both partitions' ends");
    let (code, group) = get(&g, "/v1/groups/readers").await;
    assert_eq!(code, 200);
    assert_eq!(group["total_lag"], 0);
    send(
        &g,
        "POST",
        "/v1/topics/feed/records",
        r#"{"value":"late","partition":0}"#,
    )
    .await;
    let (_, group) = get(&g, "/v1/groups/readers").await;
    assert_eq!(group["total_lag"], 1, "{group}");
    let u = gurl.clone();
    let next = tokio::task::spawn_blocking(move || read_events(&u, None, 1))
        .await
        .expect("join");
    assert_eq!(
        next[0].1["value"], "late",
        "the group resumes after its committed offsets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic() {
    let g = start().await;
    send(&g, "POST", "/v1/topics", r#"{"name":"m","partitions":1}"#).await;
    let scrape = |g: &Gateway| {
        let url = format!("{}/metrics", g.base);
        async move { curl(vec![url]).await.1 }
    };
    let before = scrape(&g).await;
    assert!(before.contains("rivulet_build_info"), "{before}");
    assert!(
        before.contains("rivulet_partition_high_watermark{topic=\"m\",partition=\"0\"} 0"),
        "{before}"
    );
    send(
        &g,
        "POST",
        "/v1/topics/m/records",
        r#"[{"value":"a"},{"value":"b"}]"#,
    )
    .await;
    let after = scrape(&g).await;
    assert!(
        after.contains("rivulet_records_produced_total{topic=\"m\"} 2"),
        "{after}"
    );
    assert!(
        after.contains("rivulet_partition_high_watermark{topic=\"m\",partition=\"0\"} 2"),
        "{after}"
    );
    let (code, health) = get(&g, "/healthz").await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")));
    let (code, api) = get(&g, "/openapi.json").await;
    assert_eq!(code, 200);
    assert!(api["paths"]["/v1/topics/{topic}/records"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_a_new_topic_follows_the_auto_creation_setting() {
    // On (the default, as for Kafka clients): the first record creates the topic.
    let g = start().await;
    let (code, body) = send(
        &g,
        "POST",
        "/v1/topics/fresh/records",
        r#"{"key":"k","value":"v"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["offsets"][0]["offset"], 0);
    let (code, topic) = get(&g, "/v1/topics/fresh").await;
    assert_eq!(code, 200, "{topic}");
    assert_eq!(topic["partitions"][0]["high_watermark"], 1);

    // Off: a clear 404 that says why and what to do; nothing is created.
    let g = start_with(BrokerConfig {
        auto_create_topics: false,
        ..BrokerConfig::default()
    })
    .await;
    let (code, e) = send(&g, "POST", "/v1/topics/fresh/records", r#"{"value":"v"}"#).await;
    assert_eq!((code, e["error_code"].as_i64()), (404, Some(40401)), "{e}");
    let message = e["message"].as_str().expect("message");
    assert!(message.contains("automatic topic creation is off"), "{message}");
    assert!(message.contains("POST /v1/topics"), "{message}");
    assert!(g.broker.topic("fresh").is_none());
}

/// Growing a topic, deleting records before an offset and deleting a group's offsets of a
/// topic over HTTP, with the errors Kafka's rules give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_grow_records_are_deleted_and_group_offsets_forgotten() {
    let g = start().await;
    let (code, _) = send(&g, "POST", "/v1/topics", r#"{"name":"ledger","partitions":2}"#).await;
    assert_eq!(code, 201);
    let records: Vec<String> = (0..10)
        .map(|i| format!(r#"{{"partition":0,"value":"e{i}"}}"#))
        .collect();
    let (code, _) = send(
        &g,
        "POST",
        "/v1/topics/ledger/records",
        &format!("[{}]", records.join(",")),
    )
    .await;
    assert_eq!(code, 200);

    let (code, grown) = send(&g, "POST", "/v1/topics/ledger/partitions", r#"{"count":4}"#).await;
    assert_eq!(code, 200, "{grown}");
    assert_eq!(grown["partitions"].as_array().map(Vec::len), Some(4));
    let (code, refused) = send(&g, "POST", "/v1/topics/ledger/partitions", r#"{"count":3}"#).await;
    assert_eq!(code, 422, "{refused}");

    let path = "/v1/topics/ledger/partitions/0/delete-records";
    let (code, trimmed) = send(&g, "POST", path, r#"{"before_offset":6}"#).await;
    assert_eq!(code, 200, "{trimmed}");
    assert_eq!(trimmed["log_start_offset"], 6);
    let (code, past) = send(&g, "POST", path, r#"{"before_offset":99}"#).await;
    assert_eq!(code, 416, "{past}");
    let (code, gone) = get(&g, "/v1/topics/ledger/partitions/0/records?offset=0").await;
    assert_eq!(code, 416, "{gone}");
    let (code, kept) = get(&g, "/v1/topics/ledger/partitions/0/records?offset=6").await;
    assert_eq!(code, 200, "{kept}");
    assert_eq!(kept["records"][0]["value"], "e6", "{kept}");

    let offsets = g.broker.groups().offsets();
    let committed = rivulet_broker::CommittedOffset {
        offset: 3,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp_ms: 0,
    };
    offsets
        .commit(
            "auditors",
            vec![
                ("ledger".into(), 0, committed.clone()),
                ("ledger".into(), 1, committed),
            ],
        )
        .await
        .expect("commit");
    let (code, _) = send(&g, "DELETE", "/v1/groups/auditors/offsets/ledger", "").await;
    assert_eq!(code, 204);
    assert!(offsets.group_offsets("auditors").is_empty());
    let (code, unknown) = send(&g, "DELETE", "/v1/groups/nobody/offsets/ledger", "").await;
    assert_eq!(code, 404, "{unknown}");
}

/// The producers a partition remembers, over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_producers_are_listed() {
    let g = start().await;
    let (code, _) = send(&g, "POST", "/v1/topics", r#"{"name":"orders","partitions":1}"#).await;
    assert_eq!(code, 201);
    let record = rivulet_log::record::Record::new(None, Some(b"v".to_vec()));
    let batch = rivulet_log::batch::build(0, 1_000, Some((77, 1, 0)), &[record]);
    let out = g
        .broker
        .produce("orders", 0, &batch, rivulet_broker::Create::Never)
        .expect("produce");
    out.durable.wait().await.expect("durable");
    let (code, body) = get(&g, "/v1/topics/orders/partitions/0/producers").await;
    assert_eq!(code, 200, "{body}");
    let producers = body["producers"].as_array().expect("a list");
    assert_eq!(producers.len(), 1, "{body}");
    assert_eq!(producers[0]["producer_id"], 77);
    assert_eq!(producers[0]["producer_epoch"], 1);
    assert_eq!(producers[0]["last_sequence"], 0);
    assert!(producers[0]["transaction_start_offset"].is_null());
    let (code, missing) = get(&g, "/v1/topics/orders/partitions/3/producers").await;
    assert_eq!(code, 404, "{missing}");
}
