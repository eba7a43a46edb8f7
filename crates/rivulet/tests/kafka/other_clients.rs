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
