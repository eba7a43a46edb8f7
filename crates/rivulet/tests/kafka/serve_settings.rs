//! `rivulet serve` settings: file < environment < flags; help text; dual-stack loopback.

use std::process::Command;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::harness::Rivulet;

#[test]
fn serve_help_documents_every_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["serve", "--help"])
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--config",
        "--listen",
        "--advertised-address",
        "--data-dir",
        "--auto-create-topics",
        "--default-partitions",
        "--fsync",
        "--request-bytes-max",
        "--connections-max",
        "--flush-threads",
        "RIVULET_LISTEN",
        "RIVULET_DATA_DIR",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn flags_beat_environment_which_beats_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rivulet.toml");
    std::fs::write(
        &file,
        "default_partitions = 5\nnode_id = 7\nretention_ms = 123456\n",
    )
    .expect("write config");
    let file_arg = file.to_string_lossy().into_owned();
    let server = Rivulet::start_with(
        &["--config", &file_arg, "--node-id", "9"],
        &[("RIVULET_DEFAULT_PARTITIONS", "4"), ("RIVULET_NODE_ID", "8")],
    );
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .create()
        .expect("producer");
    producer
        .send(BaseRecord::<(), str>::to("auto-created").payload("x"))
        .map_err(|(e, _)| e)
        .expect("queue");
    producer.flush(Duration::from_secs(30)).expect("flush");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some("auto-created"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(md.brokers()[0].id(), 9, "flag wins over env and file");
    assert_eq!(md.topics()[0].partitions().len(), 4, "env wins over file");
    let config = std::fs::read_to_string(server.dir().join("data/topics/auto-created/topic.json"))
        .expect("topic metadata");
    assert!(config.contains("\"partitions\": 4"), "{config}");
}

#[test]
fn serves_ipv4_and_ipv6_loopback_together() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("SKIPPED serves_ipv4_and_ipv6_loopback_together: no IPv6 loopback here");
        return;
    }
    let port = crate::harness::free_port();
    let listen = format!("127.0.0.1:{port},[::1]:{port}");
    let server = Rivulet::start_on(port, &["--listen", &listen], &[]);
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &addr)
            .create()
            .expect("client");
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata via {addr}: {e}"));
        assert_eq!(md.brokers().len(), 1);
    }
    assert!(server.log().contains(&format!("[::1]:{port}")));
}

#[test]
fn logs_to_a_file_are_plain_text_without_colour_codes() {
    let server = Rivulet::start_with(&["--flush-threads", "3"], &[]);
    let log = server.log();
    assert!(log.contains("Rivulet is serving"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log written to a file:\n{log}"
    );
}
