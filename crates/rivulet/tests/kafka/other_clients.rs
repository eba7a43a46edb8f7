//! kcat, kafka-python and kafkajs against `rivulet serve`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::harness::{repo_root, which, Rivulet};

fn show(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn kcat(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kcat");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("kcat output")
}

#[test]
fn kcat_lists_produces_and_consumes() {
    if which("kcat").is_none() {
        println!("SKIPPED kcat_lists_produces_and_consumes: kcat is not installed (apt-get install kcat)");
        return;
    }
    let server = Rivulet::start();
    let b = server.bootstrap();
    let produced = kcat(
        &["-b", &b, "-P", "-t", "kcat-topic", "-K:"],
        Some("a:one\nb:two\nc:three\n"),
    );
    assert!(produced.status.success(), "kcat -P failed: {}", show(&produced));

    let consumed = kcat(
        &["-b", &b, "-C", "-t", "kcat-topic", "-e", "-f", "%k=%s@%o\n"],
        None,
    );
    assert!(consumed.status.success(), "kcat -C failed: {}", show(&consumed));
    assert_eq!(
        String::from_utf8_lossy(&consumed.stdout),
        "a=one@0\nb=two@1\nc=three@2\n"
    );

    let listed = kcat(&["-b", &b, "-L"], None);
    assert!(listed.status.success(), "kcat -L failed: {}", show(&listed));
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains(&format!("broker 0 at {b}")), "{text}");
    assert!(text.contains("topic \"kcat-topic\" with 1 partitions"), "{text}");
}

/// The JSON a client script printed after `prefix` on one line of its output.
fn summary(output: &Output, prefix: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line: {}", show(output)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("the summary is not JSON ({e}): {line}"))
}

fn python() -> Option<std::path::PathBuf> {
    let venv = repo_root().join(".venv/bin/python");
    if venv.is_file() {
        return Some(venv);
    }
    which("python3")
}

#[test]
fn kafka_python_default_producer_and_group_consumer() {
    let Some(python) = python() else {
        println!("SKIPPED kafka_python_default_producer_and_group_consumer: python3 is not installed");
        return;
    };
    let server = Rivulet::start();
    let script = repo_root().join("tests/clients/kafka_python_smoke.py");
    let output = Command::new(python)
        .arg(script)
        .args([&server.bootstrap(), "python-topic", "python-group", "300"])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "kafka-python smoke failed (is kafka-python installed in .venv?): {}",
        show(&output)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK 300"));
    assert!(
        server.log().contains("Allocated a producer id"),
        "kafka-python's default producer is idempotent (InitProducerId)"
    );
}

#[test]
fn kafka_python_consumes_many_partitions_through_an_incremental_fetch_session() {
    let Some(python) = python() else {
        println!("SKIPPED kafka_python_consumes_many_partitions_through_an_incremental_fetch_session: python3 is not installed");
        return;
    };
    let server = Rivulet::start();
    let metrics = format!("{}/metrics", server.http_base());
    let script = repo_root().join("tests/clients/kafka_python_sessions.py");
    let output = Command::new(python)
        .arg(script)
        .args([&server.bootstrap(), &metrics, "python-sessions", "48", "600"])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "kafka-python sessions failed: {}",
        show(&output)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK 600 records over 48 partitions"));
}

#[test]
fn kafkajs_readme_example_produces_and_consumes() {
    if which("node").is_none() {
        println!("SKIPPED kafkajs_readme_example_produces_and_consumes: node is not installed");
        return;
    }
    // Serve loopback on IPv4 and IPv6 and let the client resolve `localhost`, as the
    // kafkajs README does.
    let port = crate::harness::free_port();
    let listen = if std::net::TcpListener::bind("[::1]:0").is_ok() {
        format!("127.0.0.1:{port},[::1]:{port}")
    } else {
        format!("127.0.0.1:{port}")
    };
    let server = Rivulet::start_on(
        port,
        &[
            "--listen",
            &listen,
            "--advertised-address",
            &format!("localhost:{port}"),
        ],
        &[],
    );
    let dir = repo_root().join("tests/clients");
    let output = Command::new("node")
        .current_dir(&dir)
        .arg("kafkajs_smoke.js")
        .args([&format!("localhost:{}", server.port()), "20"])
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "kafkajs smoke failed (run `npm install` in tests/clients?): {}",
        show(&output)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK 20"));
}

/// kafkajs's transactional producer (`transactionalId`, idempotent, one request in flight): a
/// committed and an aborted transaction, then consume-transform-produce transactions that
/// carry the group's offsets (`sendOffsets`). read_committed consumers see exactly the
/// committed values, read_uncommitted ones also the aborted ones, and the group's committed
/// offsets (admin.fetchOffsets) are those the transactions sent.
#[test]
fn kafkajs_transactions_commit_abort_and_send_offsets() {
    if which("node").is_none() {
        println!("SKIPPED kafkajs_transactions_commit_abort_and_send_offsets: node is not installed");
        return;
    }
    let server = Rivulet::start();
    let output = Command::new("node")
        .current_dir(repo_root().join("tests/clients"))
        .arg("kafkajs_transactions.js")
        .arg(server.bootstrap())
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "kafkajs transactions failed (run `npm install` in tests/clients?): {}",
        show(&output)
    );
    let summary = summary(&output, "SUMMARY ");
    let values = |view: &str, partition: &str| -> Vec<String> {
        summary[view][partition]
            .as_array()
            .unwrap_or_else(|| panic!("{view}/{partition} in {summary}"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    };
    let with_copies = |first: &[&str], partition: usize| -> Vec<String> {
        let copies = (partition..10).step_by(2).map(|i| format!("copy-in-{i}"));
        first.iter().map(|s| s.to_string()).chain(copies).collect()
    };
    assert_eq!(values("committed", "0"), with_copies(&["c1-0", "c1-2"], 0));
    assert_eq!(values("committed", "1"), with_copies(&["c1-1", "c1-3"], 1));
    assert_eq!(
        values("uncommitted", "0"),
        with_copies(&["c1-0", "c1-2", "a2-0"], 0),
        "the aborted records are in the log"
    );
    assert_eq!(
        values("uncommitted", "1"),
        with_copies(&["c1-1", "c1-3", "a2-1"], 1)
    );
    let five = serde_json::json!({ "0": "5", "1": "5" });
    assert_eq!(summary["sentOffsets"], five, "offsets sent with the transactions");
    assert_eq!(summary["fetchedOffsets"], five, "the group's committed offsets");
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK transactions"));
}

/// confluent-kafka's AdminClient (librdkafka 2.16): create_partitions (and a refused
/// shrink), describe_topics with authorized operations, incremental_alter_configs SET and
/// DELETE, describe_configs listing every standard key, delete_records with list_offsets,
/// alter/list consumer group offsets, describe and delete a group, describe_cluster.
#[test]
fn confluent_admin_client_manages_topics_configs_records_and_groups() {
    let Some(python) = python() else {
        println!("SKIPPED confluent_admin: python3 is not installed");
        return;
    };
    let server = Rivulet::start();
    let script = repo_root().join("tests/clients/confluent_admin.py");
    let output = Command::new(python)
        .arg(script)
        .arg(server.bootstrap())
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "confluent-kafka admin failed: {}",
        show(&output)
    );
    let summary = summary(&output, "OK ");
    assert_eq!(summary["partitions"], 4);
    assert_eq!(summary["low_watermark"], 6);
    assert_eq!(summary["committed"], 8);
    // Kafka's names for the topic operations Rivulet allows, decoded by librdkafka.
    assert_eq!(
        summary["topic_operations"],
        serde_json::json!([
            "ALTER",
            "ALTER_CONFIGS",
            "CREATE",
            "DELETE",
            "DESCRIBE",
            "DESCRIBE_CONFIGS",
            "READ",
            "WRITE"
        ])
    );
}

/// librdkafka's ShareConsumer (confluent-kafka 2.16, KIP-932): the group set to start at
/// the earliest offset through its GROUP config; two members of one share group; the first
/// releases a record and leaves holding records it never acknowledged; a second process
/// dies holding records (its connection just ends) and they are released at once;
/// the second gets those again with delivery count 2; every record is accepted once.
#[test]
fn confluent_share_consumers_split_records_and_redeliver_released_ones() {
    let Some(python) = python() else {
        println!("SKIPPED confluent_share_consumer: python3 is not installed");
        return;
    };
    let server = Rivulet::start();
    let script = repo_root().join("tests/clients/confluent_share_consumer.py");
    let output = Command::new(python)
        .arg(script)
        .arg(server.bootstrap())
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "confluent-kafka share consumer failed: {}",
        show(&output)
    );
    let summary = summary(&output, "OK ");
    assert_eq!(summary["accepted"], 300);
    assert!(summary["abandoned"].as_u64().is_some_and(|n| n > 0), "{summary}");
    assert!(summary["orphaned"].as_u64().is_some_and(|n| n > 0), "{summary}");
    let log = server.log();
    assert!(log.contains("Share group member joined"), "{log}");
}

/// kafkajs's admin client: createPartitions (and a refused shrink), alterConfigs read back
/// with describeConfigs (an unknown key refused), deleteTopicRecords then
/// fetchTopicOffsets and a consumer starting at the new log start, setOffsets/fetchOffsets,
/// describeGroups, describeCluster and deleteGroups.
#[test]
fn kafkajs_admin_grows_alters_deletes_records_and_manages_groups() {
    if which("node").is_none() {
        println!("SKIPPED kafkajs_admin: node is not installed");
        return;
    }
    let server = Rivulet::start();
    let output = Command::new("node")
        .current_dir(repo_root().join("tests/clients"))
        .arg("kafkajs_admin.js")
        .arg(server.bootstrap())
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "kafkajs admin failed (run `npm install` in tests/clients?): {}",
        show(&output)
    );
    let summary = summary(&output, "SUMMARY ");
    assert_eq!(summary["partitions"], 4);
    assert_eq!(summary["compression"], "gzip");
    assert_eq!(
        (summary["low"].as_str(), summary["high"].as_str()),
        (Some("6"), Some("10"))
    );
    assert_eq!(summary["committed"], "8");
    assert!(server.log().contains("Added partitions"));
}

/// kafka-python's admin client: CreatePartitions (and a refused shrink), records from an
/// idempotent producer to a new partition, DescribeProducers, DescribeLogDirs,
/// IncrementalAlterConfigs SET/APPEND/DELETE, OffsetDelete of one partition, and
/// DescribeGroups' authorized operations.
#[test]
fn kafka_python_admin_grows_partitions_alters_configs_incrementally_and_deletes_offsets() {
    let Some(python) = python() else {
        println!("SKIPPED kafka_python_admin: python3 is not installed");
        return;
    };
    let server = Rivulet::start();
    let script = repo_root().join("tests/clients/kafka_python_admin.py");
    let output = Command::new(python)
        .arg(script)
        .arg(server.bootstrap())
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "kafka-python admin failed: {}",
        show(&output)
    );
    let summary = summary(&output, "OK ");
    assert_eq!(summary["partitions"], 5);
    assert_eq!(summary["offsets_kept"], serde_json::json!([0]));
    assert!(
        summary["log_dir_bytes"].as_i64().is_some_and(|b| b > 0),
        "{summary}"
    );
    assert_eq!(
        summary["group_operations"],
        serde_json::json!(["DELETE", "DESCRIBE", "READ"])
    );
    assert!(server.log().contains("Added partitions"));
}
