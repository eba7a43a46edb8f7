//! The admin routes the console uses, over plain HTTP: offset resets (dry run, refusal while
//! a group has members), topic config changes, filtered and timed reads, live stats, and
//! dead-letter redrive; with the errors bad input gets.

use serde_json::Value;

use crate::harness::Rivulet;
use crate::operator::{curl, post, sse_member};

fn get(server: &Rivulet, path: &str) -> (u16, Value) {
    let (code, body) = curl(&[&format!("{}{path}", server.http_base())]);
    (code, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

fn produce(server: &Rivulet, topic: &str, body: &str) {
    let (code, answer) = post(&format!("{}/v1/topics/{topic}/records", server.http_base()), body);
    assert_eq!(code, 200, "{answer}");
}

fn new_offsets(answer: &Value) -> Vec<i64> {
    answer["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["new_offset"].as_i64().expect("new_offset"))
        .collect()
}

#[test]
fn offsets_reset_with_a_dry_run_and_not_while_the_group_has_members() {
    let server = Rivulet::start();
    let base = server.http_base();
    let (code, _) = post(&format!("{base}/v1/topics"), r#"{"name":"pay","partitions":1}"#);
    assert_eq!(code, 201);
    let records: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"key":"k{i}","value":{i},"timestamp":{}}}"#,
                1_000_000 + i * 1000
            )
        })
        .collect();
    produce(&server, "pay", &format!("[{}]", records.join(",")));
    let reset = format!("{base}/v1/groups/g1/reset-offsets");
    // Dry run to the end: shown, not committed.
    let (code, answer) = post(&reset, r#"{"topic":"pay","to":"end","dry_run":true}"#);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(new_offsets(&answer), vec![10]);
    assert_eq!(answer["partitions"][0]["current_offset"], Value::Null);
    let (code, _) = get(&server, "/v1/groups/g1");
    assert_eq!(code, 404, "a dry run commits nothing");
    // To a time, then shifted back, then an offset beyond the end (clamped).
    let (_, answer) = post(&reset, r#"{"topic":"pay","to":"timestamp","timestamp":1004500}"#);
    assert_eq!(new_offsets(&answer), vec![5]);
    let (_, group) = get(&server, "/v1/groups/g1");
    assert_eq!(group["partitions"][0]["current_offset"], 5);
    assert_eq!(group["total_lag"], 5);
    let (_, answer) = post(&reset, r#"{"topic":"pay","to":"shift","shift":-2}"#);
    assert_eq!(new_offsets(&answer), vec![3]);
    let (_, answer) = post(&reset, r#"{"topic":"pay","to":"offset","offset":99}"#);
    assert_eq!(new_offsets(&answer), vec![10]);
    // Bad requests.
    let (code, answer) = post(&reset, r#"{"topic":"pay","to":"offset"}"#);
    assert_eq!(
        (code, answer["error_code"].as_i64()),
        (400, Some(40001)),
        "{answer}"
    );
    let (code, _) = post(&reset, r#"{"topic":"pay","to":"sideways"}"#);
    assert_eq!(code, 400);
    let (code, _) = post(&reset, r#"{"topic":"nope","to":"start"}"#);
    assert_eq!(code, 404);
    let (code, _) = post(&reset, r#"{"topic":"pay","to":"start","partitions":[3]}"#);
    assert_eq!(code, 404);
    // A member (an SSE stream in the group) makes the group refuse.
    let mut member = sse_member(&server, "pay", "g1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refused = loop {
        let (code, answer) = post(&reset, r#"{"topic":"pay","to":"start"}"#);
        if code == 409 || std::time::Instant::now() > deadline {
            break (code, answer);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(refused.0, 409, "{}", refused.1);
    assert_eq!(refused.1["error_code"], 40902);
    let _ = member.kill();
    let _ = member.wait();
}

#[test]
fn configs_filters_stats_and_dead_letters_over_http() {
    let server = Rivulet::start();
    let base = server.http_base();
    post(
        &format!("{base}/v1/topics"),
        r#"{"name":"orders","partitions":2}"#,
    );
    // Config overrides: set, refused as a whole on a bad value, removed.
    let patch = |body: &str| {
        curl(&[
            "-X",
            "PATCH",
            "-H",
            "content-type: application/json",
            "--data-binary",
            body,
            &format!("{base}/v1/topics/orders/configs"),
        ])
    };
    let (code, body) = patch(r#"{"set":{"retention.ms":60000}}"#);
    assert_eq!(code, 200, "{body}");
    let (code, body) = patch(r#"{"set":{"retention.ms":"soon","segment.bytes":1048576}}"#);
    assert_eq!(code, 422, "an invalid value is refused: {body}");
    let (_, topics) = get(&server, "/v1/topics");
    let orders = topics["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["name"] == "orders")
        .cloned()
        .expect("orders");
    assert_eq!(orders["retention_ms"], 60000);
    let (code, _) = patch(r#"{"delete":["retention.ms"]}"#);
    assert_eq!(code, 200);
    let (_, topic) = get(&server, "/v1/topics/orders");
    let retention = topic["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| c["name"] == "retention.ms")
        .cloned()
        .expect("key");
    assert_eq!(retention["source"], "DEFAULT_CONFIG");
    // Filtered reads find by key, header and JSON field; a bad field is a 400.
    let records: Vec<String> = (0..200)
        .map(|i| {
            format!(
                r#"{{"key":"k{i}","value":{{"sku":"S{}"}},"headers":{{"kind":"{}"}},"partition":0}}"#,
                i % 10,
                if i == 150 { "refund" } else { "order" }
            )
        })
        .collect();
    produce(&server, "orders", &format!("[{}]", records.join(",")));
    let read = |q: &str| get(&server, &format!("/v1/topics/orders/partitions/0/records?{q}"));
    let (_, by_key) = read("key=k42");
    assert_eq!(by_key["records"].as_array().expect("records").len(), 1);
    assert_eq!(by_key["records"][0]["offset"], 42);
    assert_eq!(by_key["scanned"], 200);
    let (_, by_header) = read("header=kind%3Drefund");
    assert_eq!(by_header["records"][0]["key"], "k150");
    let (_, by_field) = read("field=sku%3DS3&max_records=5");
    let offsets: Vec<i64> = by_field["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["offset"].as_i64().expect("offset"))
        .collect();
    assert_eq!(offsets, vec![3, 13, 23, 33, 43]);
    assert_eq!(by_field["next_offset"], 44);
    let (_, limited) = read("key=k199&scan_records_max=50");
    assert_eq!(
        (
            limited["records"].as_array().expect("records").len(),
            limited["next_offset"].as_i64()
        ),
        (0, Some(50))
    );
    let (code, _) = read("field=sku");
    assert_eq!(code, 400);
    // Stats: one reading with the produce counted.
    let (code, stats) = get(&server, "/v1/stats");
    assert_eq!(code, 200);
    assert!(
        stats["produced"]["records_total"].as_u64().expect("total") >= 200,
        "{stats}"
    );
    assert!(stats["disk"]["usable_bytes"].as_u64().expect("usable") > 0);
    // Dead letters: one letter redriven back to its original partition, once.
    post(
        &format!("{base}/v1/topics"),
        r#"{"name":"orders.dlq","partitions":1}"#,
    );
    produce(
        &server,
        "orders.dlq",
        r#"{"key":"dead","value":"x","headers":{"dlq.original.topic":"orders","dlq.original.partition":"1","dlq.error":"boom"}}"#,
    );
    let (_, list) = get(&server, "/v1/dead-letters");
    assert_eq!(list["dead_letter_topics"][0]["pending"], 1, "{list}");
    let redrive = format!("{base}/v1/dead-letters/orders.dlq/redrive");
    let (code, answer) = post(&redrive, "{}");
    assert_eq!((code, answer["redriven"].as_i64()), (200, Some(1)), "{answer}");
    let (_, again) = post(&redrive, "");
    assert_eq!(again["redriven"], 0);
    let (_, list) = get(&server, "/v1/dead-letters");
    assert_eq!(list["dead_letter_topics"][0]["pending"], 0);
    assert_eq!(
        list["dead_letter_topics"][0]["partitions"][0]["redriven_before"],
        1
    );
    let (_, p1) = read_partition(&server, 1);
    let keys: Vec<&str> = p1["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["key"].as_str())
        .collect();
    assert_eq!(keys, vec!["dead"]);
    assert!(p1["records"][0]["headers"]
        .as_object()
        .expect("headers")
        .is_empty());
    let (code, _) = post(&redrive, r#"{"records":[]}"#);
    assert_eq!(code, 400);
}

fn read_partition(server: &Rivulet, partition: i32) -> (u16, Value) {
    get(
        server,
        &format!("/v1/topics/orders/partitions/{partition}/records"),
    )
}
