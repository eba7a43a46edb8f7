//! The operator surface of queues and exchanges: `rivulet queue|exchange`, the HTTP admin
//! API and `/metrics`.

use std::process::Command;

use crate::amqplib::tutorial;
use crate::harness::Rivulet;

fn cli(server: &Rivulet, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(args)
        .args(["--http", &server.http_base()])
        .output()
        .expect("run rivulet");
    assert!(
        output.status.success(),
        "rivulet {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn metrics(server: &Rivulet) -> String {
    let out = Command::new("curl")
        .args(["-s", &format!("{}/metrics", server.http_base())])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn queue_and_exchange_commands_api_and_metrics_show_what_amqp_clients_made() {
    let server = Rivulet::start();
    // 250 confirmed messages in the durable queue `confirmed`.
    tutorial(&server, "confirms");
    let list = cli(&server, &["queue", "list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("confirmed"))
        .expect("the queue is listed");
    assert!(
        row.split_whitespace().collect::<Vec<_>>()[..5] == ["confirmed", "true", "250", "0", "0"],
        "{list}"
    );
    let json = cli(&server, &["queue", "describe", "confirmed", "--format", "json"]);
    let described: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(described["messages_ready"], 250, "{json}");
    assert_eq!(described["end_offset"], 250, "{json}");
    assert_eq!(described["published_total"], 250, "{json}");
    assert_eq!(described["delivered_total"], 0, "{json}");
    assert!(described["published_per_s"].is_number(), "{json}");
    let scrape = metrics(&server);
    assert!(
        scrape.contains("rivulet_queue_messages_ready{queue=\"confirmed\"} 250"),
        "{scrape}"
    );
    assert!(
        scrape.contains("rivulet_connections_total{protocol=\"amqp\"}"),
        "{scrape}"
    );
    assert!(
        scrape.contains("rivulet_queue_messages_published_total{queue=\"confirmed\"} 250"),
        "{scrape}"
    );
    assert!(
        scrape.contains("rivulet_channels_open{protocol=\"amqp\"} 0"),
        "{scrape}"
    );
    assert!(scrape.contains("rivulet_disk_alarm 0"), "{scrape}");
    let purged = cli(&server, &["queue", "purge", "confirmed"]);
    assert!(purged.contains("Purged 250 messages"), "{purged}");
    assert!(metrics(&server).contains("rivulet_queue_messages_ready{queue=\"confirmed\"} 0"));
    let status = cli(&server, &["status", "-b", &server.bootstrap()]);
    let amqp = server.amqp_url().trim_start_matches("amqp://").to_string();
    assert!(status.contains(&format!("amqp {amqp} up")), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("QUEUES") && l.trim_end().ends_with(" 1")),
        "{status}"
    );
    let exchanges = cli(&server, &["exchange", "list"]);
    assert!(
        exchanges
            .lines()
            .any(|l| l.starts_with("amq.topic") && l.contains("topic")),
        "{exchanges}"
    );
    let deleted = cli(&server, &["queue", "delete", "confirmed"]);
    assert!(deleted.contains("Deleted queue confirmed"), "{deleted}");
    assert!(!cli(&server, &["queue", "list"]).contains("confirmed"));
    let missing = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["queue", "describe", "confirmed", "--http", &server.http_base()])
        .output()
        .expect("run rivulet");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no queue"));
}
