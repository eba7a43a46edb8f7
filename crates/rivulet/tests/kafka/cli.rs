//! The operator CLI (`rivulet topic|produce|consume|group|status`) run as a subprocess against
//! a real `rivulet serve`.

use std::io::Write;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{free_port, Rivulet};

/// Upper bound on one CLI invocation; a hang fails the test instead of blocking the suite.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// What a CLI invocation printed and how it exited.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// Asserts exit code 0 and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.status.code(), Some(0), "expected success: {}", self.show());
        self.stdout
    }

    /// Asserts exit code 1 and returns stderr.
    fn failed(self) -> String {
        assert_eq!(self.status.code(), Some(1), "expected exit 1: {}", self.show());
        self.stderr
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.show()))
    }

    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

fn spawn(brokers: &str, args: &[&str], stdin: bool) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(args)
        .env("RIVULET_BROKERS", brokers)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rivulet")
}

fn wait(mut child: Child, what: &str) -> Run {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > CLI_TIMEOUT {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "`rivulet {what}` did not finish within {CLI_TIMEOUT:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `rivulet ARGS` against `brokers` with `input` on stdin.
fn run_at(brokers: &str, args: &[&str], input: Option<&str>) -> Run {
    let mut child = spawn(brokers, args, input.is_some());
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    wait(child, &args.join(" "))
}

fn run(server: &Rivulet, args: &[&str]) -> Run {
    run_at(&server.bootstrap(), args, None)
}

fn produce(server: &Rivulet, args: &[&str], input: &str) -> Run {
    run_at(&server.bootstrap(), args, Some(input))
}

/// The JSON description of one group.
fn group_json(server: &Rivulet, group: &str) -> Value {
    let out = run(server, &["group", "describe", group, "--format", "json"]);
    let v = out.json();
    assert_eq!(out.status.code(), Some(0), "{}", out.show());
    v[0].clone()
}

/// (current offset, lag) of one partition in a group description.
fn partition_lag(group: &Value, topic: &str, partition: i64) -> (Value, Value) {
    let rows = group["partitions"].as_array().expect("partitions array");
    let row = rows
        .iter()
        .find(|r| r["topic"] == topic && r["partition"] == partition)
        .unwrap_or_else(|| panic!("no row for {topic}/{partition} in {group}"));
    (row["current_offset"].clone(), row["lag"].clone())
}

#[test]
fn cli_topic_create_then_list_and_describe_show_it() {
    let server = Rivulet::start();
    let out = run(
        &server,
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-c",
            "retention.ms=3600000",
        ],
    )
    .ok();
    assert!(out.contains("TOPIC") && out.contains("STATUS"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("orders") && l.ends_with("OK")),
        "{out}"
    );

    let list = run(&server, &["topic", "list"]).ok();
    let mut lines = list.lines();
    assert_eq!(
        lines.next().map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["NAME", "PARTITIONS", "REPLICAS"])
    );
    assert!(
        lines.any(|l| l.split_whitespace().collect::<Vec<_>>() == ["orders", "3", "1"]),
        "{list}"
    );
    let json = run(&server, &["topic", "list", "--format", "json"]).json();
    let entry = json
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["name"] == "orders")
        .cloned()
        .expect("orders listed");
    assert_eq!(entry["partitions"], 3);

    let text = run(&server, &["topic", "describe", "orders"]).ok();
    for heading in [
        "SUMMARY",
        "CONFIGS",
        "PARTITIONS",
        "LOG-START-OFFSET",
        "HIGH-WATERMARK",
    ] {
        assert!(text.contains(heading), "missing {heading}: {text}");
    }
    assert!(
        text.lines().any(|l| {
            l.split_whitespace().collect::<Vec<_>>() == ["retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG"]
        }),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("segment.bytes") && l.ends_with("DEFAULT_CONFIG")),
        "{text}"
    );
    let described = run(&server, &["topic", "describe", "orders", "--format", "json"]).json();
    let parts = described[0]["partition_details"].as_array().expect("partitions");
    assert_eq!(parts.len(), 3);
    assert!(parts
        .iter()
        .all(|p| p["log_start_offset"] == 0 && p["high_watermark"] == 0));

    let again = run(&server, &["topic", "create", "orders", "-p", "3"]);
    assert!(again.stdout.contains("already exists"), "{}", again.show());
    let err = again.failed();
    assert!(err.contains("could not be created"), "{err}");

    let deleted = run(&server, &["topic", "delete", "orders"]).ok();
    assert!(deleted.contains("OK"), "{deleted}");
    let list = run(&server, &["topic", "list"]).ok();
    assert!(!list.contains("orders"), "{list}");
}

#[test]
fn cli_produce_lines_then_consume_returns_them_as_json() {
    let server = Rivulet::start();
    run(&server, &["topic", "create", "events", "-p", "1"]).ok();

    let produced = produce(
        &server,
        &[
            "produce",
            "events",
            "-f",
            "%k %v",
            "-H",
            "source=cli",
            "-H",
            "trace=abc",
        ],
        "user-1 first record\nuser-2 second\nuser-1 third one\n",
    )
    .ok();
    // Delivery reports print as they arrive; each line landed at its own offset.
    let mut landed: Vec<&str> = produced.lines().collect();
    landed.sort();
    assert_eq!(landed.len(), 3, "{produced}");
    for (i, line) in landed.iter().enumerate() {
        assert!(
            line.starts_with(&format!("Produced to partition 0 at offset {i} ")),
            "{produced}"
        );
    }
    let as_json = produce(&server, &["produce", "events", "--format", "json"], "plain\n");
    let report = as_json.json_lines();
    assert_eq!(report.len(), 1, "{}", as_json.show());
    assert_eq!(report[0]["partition"], 0);
    assert_eq!(report[0]["offset"], 3);

    let consumed = run(&server, &["consume", "events", "-e", "-n", "10"]);
    assert_eq!(consumed.status.code(), Some(0), "{}", consumed.show());
    let records = consumed.json_lines();
    assert_eq!(records.len(), 4, "{}", consumed.show());
    assert_eq!(records[0]["topic"], "events");
    assert_eq!(records[0]["partition"], 0);
    assert_eq!(records[0]["offset"], 0);
    assert_eq!(records[0]["key"], "user-1");
    assert_eq!(records[0]["value"], "first record");
    assert!(records[0]["timestamp"].as_i64().is_some_and(|t| t > 0));
    assert_eq!(
        records[0]["headers"],
        serde_json::json!([{"key": "source", "value": "cli"}, {"key": "trace", "value": "abc"}])
    );
    assert_eq!(records[2]["key"], "user-1");
    assert_eq!(records[2]["value"], "third one");
    assert_eq!(records[3]["key"], Value::Null);
    assert_eq!(records[3]["value"], "plain");
    assert_eq!(records[3]["headers"], serde_json::json!([]));

    // -n stops early; -o picks the start; a format string replaces JSON.
    let two = run(&server, &["consume", "events", "-n", "2"]).json_lines();
    assert_eq!(two.len(), 2);
    let formatted = run(
        &server,
        &["consume", "events", "-o", "1", "-n", "1", "-f", "%o|%k|%v"],
    )
    .ok();
    assert_eq!(formatted, "1|user-2|second\n");
    let tail = run(&server, &["consume", "events", "-o", "-1", "-e", "-f", "%v"]).ok();
    assert_eq!(tail, "plain\n");
    let future = run(&server, &["consume", "events", "-o", "@-0s", "-e"]).ok();
    assert_eq!(future, "", "nothing is newer than now");
    let past = run(&server, &["consume", "events", "-o", "@-1h", "-e", "-f", "%o"]).ok();
    assert_eq!(past, "0\n1\n2\n3\n");

    let described = run(&server, &["topic", "describe", "events", "--format", "json"]).json();
    assert_eq!(described[0]["partition_details"][0]["high_watermark"], 4);

    // Bytes that are not UTF-8 come back as base64 and say so; -Z makes an empty value null.
    let mut child = spawn(&server.bootstrap(), &["produce", "events", "-k", "bin"], true);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"\xff\xfe\n")
        .expect("write stdin");
    wait(child, "produce binary").ok();
    produce(&server, &["produce", "events", "-Z", "-f", "%k:%v"], "gone:\n").ok();
    let last = run(&server, &["consume", "events", "-o", "-2", "-e"]).json_lines();
    assert_eq!(last.len(), 2);
    assert_eq!(last[0]["key"], "bin");
    assert_eq!(last[0]["value"], "//4=");
    assert_eq!(last[0]["value_encoding"], "base64");
    assert_eq!(last[1]["key"], "gone");
    assert_eq!(last[1]["value"], Value::Null);
}

#[test]
fn cli_group_describe_shows_lag_and_seek_moves_offsets() {
    let server = Rivulet::start();
    run(&server, &["topic", "create", "jobs", "-p", "1"]).ok();
    produce(&server, &["produce", "jobs"], "a\nb\nc\nd\ne\n").ok();

    // A group member reads 3 of 5 records and commits its position on exit.
    let read = run(
        &server,
        &["consume", "jobs", "-g", "workers", "-n", "3", "-f", "%v"],
    )
    .ok();
    assert_eq!(read, "a\nb\nc\n");
    let group = group_json(&server, "workers");
    assert_eq!(group["state"], "Empty");
    assert_eq!(group["total_lag"], 2);
    assert_eq!(partition_lag(&group, "jobs", 0), (3.into(), 2.into()));
    let text = run(&server, &["group", "describe", "workers"]).ok();
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["TOTAL-LAG", "2"]),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["jobs", "0", "3", "0", "5", "2"]),
        "{text}"
    );
    let listed = run(&server, &["group", "list"]).ok();
    assert!(listed.lines().any(|l| l.starts_with("workers")), "{listed}");

    // The dry run prints the plan and changes nothing.
    let plan = run(
        &server,
        &["group", "seek", "workers", "--to", "start", "--dry-run"],
    )
    .ok();
    assert!(
        plan.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["jobs", "0", "3", "0", "5"]),
        "{plan}"
    );
    assert!(plan.contains("Dry run"), "{plan}");
    assert_eq!(
        partition_lag(&group_json(&server, "workers"), "jobs", 0),
        (3.into(), 2.into())
    );

    run(&server, &["group", "seek", "workers", "--to", "start"]).ok();
    let group = group_json(&server, "workers");
    assert_eq!(partition_lag(&group, "jobs", 0), (0.into(), 5.into()));
    assert_eq!(group["total_lag"], 5);

    let seek = run(
        &server,
        &["group", "seek", "workers", "--to", "4", "--format", "json"],
    )
    .json();
    assert_eq!(seek["dry_run"], false);
    assert_eq!(seek["partitions"][0]["new_offset"], 4);
    assert_eq!(
        partition_lag(&group_json(&server, "workers"), "jobs", 0),
        (4.into(), 1.into())
    );

    // The group resumes from the sought offset.
    let resumed = run(&server, &["consume", "jobs", "-g", "workers", "-e", "-f", "%v"]).ok();
    assert_eq!(resumed, "e\n");
    assert_eq!(group_json(&server, "workers")["total_lag"], 0);

    let deleted = run(&server, &["group", "delete", "workers"]).ok();
    assert!(deleted.contains("OK"), "{deleted}");
    let gone = run(&server, &["group", "describe", "workers"]).failed();
    assert!(gone.contains("does not exist"), "{gone}");
}

#[test]
fn cli_group_seek_to_a_timestamp_picks_the_first_record_at_or_after_it() {
    let server = Rivulet::start();
    run(&server, &["topic", "create", "clock", "-p", "1"]).ok();
    produce(&server, &["produce", "clock"], "old-1\nold-2\nold-3\n").ok();
    std::thread::sleep(Duration::from_millis(50));
    produce(&server, &["produce", "clock"], "new-1\nnew-2\n").ok();
    let records = run(&server, &["consume", "clock", "-e"]).json_lines();
    assert_eq!(records.len(), 5);
    let cut = records[3]["timestamp"].as_i64().expect("timestamp");
    assert!(cut > records[2]["timestamp"].as_i64().expect("timestamp"));

    run(&server, &["consume", "clock", "-g", "audit", "-e"]).ok();
    assert_eq!(group_json(&server, "audit")["total_lag"], 0);
    let plan = run(
        &server,
        &[
            "group",
            "seek",
            "audit",
            "--to",
            &format!("@{cut}"),
            "--format",
            "json",
        ],
    )
    .json();
    assert_eq!(plan["partitions"][0]["current_offset"], 5);
    assert_eq!(plan["partitions"][0]["new_offset"], 3);
    assert_eq!(
        partition_lag(&group_json(&server, "audit"), "clock", 0),
        (3.into(), 2.into())
    );
    let from_cut = run(
        &server,
        &["consume", "clock", "-o", &format!("@{cut}"), "-e", "-f", "%v"],
    )
    .ok();
    assert_eq!(from_cut, "new-1\nnew-2\n");
}

#[test]
fn cli_consume_member_blocks_seek_and_exits_cleanly_on_ctrl_c() {
    let server = Rivulet::start();
    run(&server, &["topic", "create", "live", "-p", "2"]).ok();
    produce(&server, &["produce", "live", "-p", "1"], "x\ny\n").ok();

    let member = spawn(
        &server.bootstrap(),
        &[
            "consume",
            "live",
            "-g",
            "tail",
            "-f",
            "%v",
            "-X",
            "client.id=tail-ops",
        ],
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = run(&server, &["group", "describe", "tail", "--format", "json"]);
        if out.status.success() && out.json()[0]["members"] == 1 && out.json()[0]["total_lag"] == 0 {
            let v = out.json();
            let rows = v[0]["partitions"].as_array().expect("rows");
            if rows
                .iter()
                .any(|r| r["partition"] == 1 && r["current_offset"] == 2)
            {
                assert!(rows.iter().all(|r| r["member_id"].is_string()), "{v}");
                assert!(
                    rows.iter().all(|r| r["client_id"] == "tail-ops"),
                    "-X sets client.id: {v}"
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the member never joined and committed: {}",
            out.show()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let refused = run(&server, &["group", "seek", "tail", "--to", "start"]).failed();
    assert!(refused.contains("active members"), "{refused}");

    let status = Command::new("kill")
        .args(["-INT", &member.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let done = wait(member, "consume live -g tail");
    assert_eq!(
        done.status.code(),
        Some(0),
        "Ctrl-C should exit cleanly: {}",
        done.show()
    );
    assert_eq!(done.stdout, "x\ny\n");
    let group = group_json(&server, "tail");
    assert_eq!(group["members"], 0);
    assert_eq!(partition_lag(&group, "live", 1), (2.into(), 0.into()));
}

#[test]
fn cli_status_counts_topics_partitions_and_groups() {
    let server = Rivulet::start();
    run(&server, &["topic", "create", "a", "b", "-p", "2"]).ok();
    produce(&server, &["produce", "a"], "1\n").ok();
    run(&server, &["consume", "a", "-g", "g", "-e"]).ok();
    let status = run(&server, &["status", "--format", "json"]).json();
    assert_eq!(status["topics"], 2);
    assert_eq!(status["partitions"], 4);
    assert_eq!(status["groups"], 1);
    assert_eq!(status["brokers"][0]["address"], server.bootstrap());
    assert!(status["cluster_id"].is_string(), "{status}");
    let text = run(&server, &["status"]).ok();
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["PARTITIONS", "4"]),
        "{text}"
    );
    assert!(text.contains(&server.bootstrap()), "{text}");
    // -b wins over RIVULET_BROKERS, before or after the subcommand.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let flagged = run_at(
        &nowhere,
        &["status", "-b", &server.bootstrap(), "--timeout", "2"],
        None,
    )
    .ok();
    assert!(flagged.contains(&server.bootstrap()), "{flagged}");
    let listed = run_at(
        &nowhere,
        &["topic", "-b", &server.bootstrap(), "list", "--format", "json"],
        None,
    );
    assert_eq!(
        listed.json().as_array().map(Vec::len),
        Some(2),
        "{}",
        listed.show()
    );
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{status}");
    assert!(
        status["disk_use_bytes"].as_u64().is_some_and(|b| b > 0),
        "the produced record takes disk space: {status}"
    );
}

#[test]
fn cli_bad_input_exits_1_with_a_clear_message() {
    let server = Rivulet::start();
    run(&server, &["topic", "create", "t", "-p", "1"]).ok();

    let err = run(&server, &["topic", "describe", "missing"]).failed();
    assert!(err.contains("topic \"missing\" does not exist"), "{err}");
    assert!(err.contains("rivulet topic list"), "{err}");

    let err = produce(&server, &["produce", "missing"], "x\n").failed();
    assert!(err.contains("does not exist"), "{err}");
    let list = run(&server, &["topic", "list"]).ok();
    assert!(
        !list.contains("missing"),
        "produce must not create the topic: {list}"
    );

    let err = run(&server, &["consume", "t", "-o", "yesterday"]).failed();
    assert!(err.contains("invalid offset") && err.contains("@TIME"), "{err}");

    let err = produce(&server, &["produce", "t", "-f", "%k %v"], "no-delimiter\n").failed();
    assert!(err.contains("line 1 does not match"), "{err}");

    let err = run(&server, &["group", "describe", "nobody"]).failed();
    assert!(err.contains("group \"nobody\" does not exist"), "{err}");

    let refused = run(
        &server,
        &["topic", "alter-config", "t", "--set", "retention.ms=soon"],
    );
    assert!(refused.stdout.contains("refused"), "{}", refused.show());
    let err = refused.failed();
    assert!(err.contains("could not be altered"), "{err}");

    let err = run(&server, &["topic", "list", "-X", "no.such.property=1"]).failed();
    assert!(err.contains("no.such.property"), "{err}");

    // Nothing listens on this port.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let err = run_at(&nowhere, &["topic", "list", "--timeout", "2"], None).failed();
    assert!(err.contains(&format!("no broker at {nowhere}")), "{err}");
    assert!(err.contains("-b/--brokers"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let err = run_at(&nowhere, &["status", "--timeout", "2"], None).failed();
    assert!(err.contains("no broker at"), "{err}");
}

#[test]
fn cli_topic_alter_config_sets_and_deletes_overrides() {
    let server = Rivulet::start();
    run(
        &server,
        &["topic", "create", "tuned", "-c", "retention.ms=3600000"],
    )
    .ok();
    run(
        &server,
        &[
            "topic",
            "alter-config",
            "tuned",
            "--set",
            "cleanup.policy=compact",
            "--set",
            "retention.ms=60000",
        ],
    )
    .ok();
    let has = |text: &str, row: [&str; 3]| {
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == row)
    };
    let text = run(&server, &["topic", "describe", "tuned"]).ok();
    assert!(
        has(&text, ["cleanup.policy", "compact", "DYNAMIC_TOPIC_CONFIG"]),
        "{text}"
    );
    assert!(
        has(&text, ["retention.ms", "60000", "DYNAMIC_TOPIC_CONFIG"]),
        "{text}"
    );
    run(
        &server,
        &["topic", "alter-config", "tuned", "--delete", "retention.ms"],
    )
    .ok();
    let text = run(&server, &["topic", "describe", "tuned"]).ok();
    assert!(
        has(&text, ["cleanup.policy", "compact", "DYNAMIC_TOPIC_CONFIG"]),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("retention.ms") && l.ends_with("DEFAULT_CONFIG")),
        "deleted override returns to the default: {text}"
    );
    // Overrides survive a restart.
    let mut server = server;
    server.restart();
    let text = run(&server, &["topic", "describe", "tuned"]).ok();
    assert!(
        has(&text, ["cleanup.policy", "compact", "DYNAMIC_TOPIC_CONFIG"]),
        "{text}"
    );
}

/// `rivulet topic add-partitions` grows a topic (a dry run changes nothing) and refuses to
/// shrink it.
#[test]
fn cli_topic_add_partitions_grows_and_refuses_to_shrink() {
    let server = Rivulet::start();
    run(&server, &["topic", "create", "growing", "-p", "2"]).ok();
    run(
        &server,
        &["topic", "add-partitions", "growing", "-p", "4", "--dry-run"],
    )
    .ok();
    let partitions = |server: &Rivulet| {
        let json = run(server, &["topic", "list", "--format", "json"]).json();
        json.as_array()
            .and_then(|a| a.iter().find(|t| t["name"] == "growing").cloned())
            .map(|t| t["partitions"].clone())
    };
    assert_eq!(
        partitions(&server),
        Some(serde_json::json!(2)),
        "a dry run changed the topic"
    );
    run(&server, &["topic", "add-partitions", "growing", "-p", "4"]).ok();
    assert_eq!(partitions(&server), Some(serde_json::json!(4)));
    let refused = run(&server, &["topic", "add-partitions", "growing", "-p", "3"]);
    assert_ne!(
        refused.status.code(),
        Some(0),
        "a shrink was accepted: {}",
        refused.show()
    );
    assert_eq!(partitions(&server), Some(serde_json::json!(4)));
}

/// `rivulet topic delete-records` moves a partition's start; `rivulet group delete-offsets`
/// forgets an empty group's offsets of a topic.
#[test]
fn cli_deletes_records_and_a_groups_offsets_of_a_topic() {
    let server = Rivulet::start();
    run(&server, &["topic", "create", "journal", "-p", "1"]).ok();
    let lines: String = (0..8).map(|i| format!("line-{i}\n")).collect();
    produce(&server, &["produce", "journal"], &lines).ok();
    let out = run(
        &server,
        &["topic", "delete-records", "journal", "-p", "0", "--before", "5"],
    )
    .ok();
    assert!(out.contains("starts at offset 5"), "{out}");
    let consumed = run(&server, &["consume", "journal", "-o", "start", "-e"]).ok();
    let offsets: Vec<i64> = consumed
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["offset"].as_i64())
        .collect();
    assert_eq!(offsets, vec![5, 6, 7], "{consumed}");
    run(
        &server,
        &["topic", "delete-records", "journal", "-p", "0", "--before", "99"],
    )
    .failed();

    run(
        &server,
        &["consume", "journal", "-g", "readers", "-o", "start", "-e"],
    )
    .ok();
    let (current, _) = partition_lag(&group_json(&server, "readers"), "journal", 0);
    assert_eq!(current, serde_json::json!(8));
    let out = run(
        &server,
        &["group", "delete-offsets", "readers", "--topic", "journal"],
    )
    .ok();
    assert!(out.contains("deleted"), "{out}");
    // The group is forgotten with its last offsets, or described without them.
    let after = run(&server, &["group", "describe", "readers", "--format", "json"]);
    let committed = after.stdout.contains("\"current_offset\":8");
    assert!(!committed, "{}", after.show());
}
