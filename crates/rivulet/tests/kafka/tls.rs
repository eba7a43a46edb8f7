//! TLS with certificates from `rivulet cert dev`: real clients (librdkafka, kcat, kafkajs,
//! kafka-python, pika, curl) over Kafka SASL_SSL and SSL, amqps and HTTPS with client
//! certificates; a certificate replaced on disk is served without a restart; listeners of
//! different security protocols side by side.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{assert_client_checks, repo_root, Rivulet};

fn cert_dev(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["cert", "dev", "--out"])
        .arg(dir)
        .output()
        .expect("run rivulet cert dev");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn tls_args(certs: &Path, client_ca: bool) -> Vec<String> {
    let path = |name: &str| certs.join(name).display().to_string();
    let mut args = vec![
        "--tls-cert".to_string(),
        path("server.pem"),
        "--tls-key".to_string(),
        path("server-key.pem"),
    ];
    if client_ca {
        args.extend(["--tls-client-ca".to_string(), path("ca.pem")]);
    }
    args
}

/// `curl` over HTTPS trusting `ca`: the status code, "000" when TLS fails.
fn https_status(server: &Rivulet, ca: &Path) -> String {
    let base = server
        .http_base()
        .replace("http://127.0.0.1", "https://localhost");
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca)
        .arg(format!("{base}/healthz"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn clients_of_every_protocol_use_tls_with_client_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    cert_dev(dir.path());
    let mut args = tls_args(dir.path(), true);
    args.extend(["--auth".to_string(), "true".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Rivulet::start_with(
        &args,
        &[
            ("RIVULET_BOOTSTRAP_USER", "admin"),
            ("RIVULET_BOOTSTRAP_PASSWORD", "admin-password-1"),
        ],
    );
    let amqp_port = server.amqp_url().rsplit(':').next().expect("port").to_string();
    let https = server
        .http_base()
        .replace("http://127.0.0.1", "https://localhost");
    let output = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tests/clients/tls_clients.py"))
        .args([&server.bootstrap(), &amqp_port, &https])
        .arg(dir.path())
        .args(["admin", "admin-password-1"])
        .output()
        .expect("run python");
    assert_client_checks(
        &output,
        &[
            "OK librdkafka SASL_SSL SCRAM-SHA-512 with a client certificate",
            "OK a client without a certificate is refused",
            "OK librdkafka SSL with a client certificate logs in as its common name",
            "OK kafka-python SASL_SSL PLAIN",
            "OK pika over amqps",
            "OK pika EXTERNAL logs in as the certificate's common name",
            "OK HTTPS with a client certificate",
        ],
    );
    let node = Command::new("node")
        .arg(repo_root().join("tests/clients/kafkajs_auth.js"))
        .args([&server.bootstrap(), "admin", "admin-password-1"])
        .arg(dir.path())
        .current_dir(repo_root().join("tests/clients"))
        .output()
        .expect("run node");
    assert_client_checks(
        &node,
        &[
            "OK kafkajs SCRAM-SHA-256 over TLS",
            "OK kafkajs wrong password refused over TLS",
        ],
    );
    kcat_round_trip(&server, dir.path());
    let plain = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/healthz", server.http_base()))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        "000",
        "plain HTTP gets no answer"
    );
}

/// kcat produces and reads back over SASL_SSL with SCRAM-SHA-512 and a client certificate.
fn kcat_round_trip(server: &Rivulet, certs: &Path) {
    let path = |name: &str| certs.join(name).display().to_string();
    let settings = [
        "security.protocol=SASL_SSL".to_string(),
        "sasl.mechanisms=SCRAM-SHA-512".to_string(),
        "sasl.username=admin".to_string(),
        "sasl.password=admin-password-1".to_string(),
        format!("ssl.ca.location={}", path("ca.pem")),
        format!("ssl.certificate.location={}", path("client.pem")),
        format!("ssl.key.location={}", path("client-key.pem")),
    ];
    let kcat = |mode: &[&str], stdin: &str| {
        let mut cmd = Command::new("kcat");
        cmd.args(["-b", &server.bootstrap(), "-t", "tls-kcat"]).args(mode);
        for s in &settings {
            cmd.args(["-X", s]);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kcat (scripts/test.sh installs it)");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        child.wait_with_output().expect("kcat output")
    };
    let produced = kcat(&["-P"], "one\ntwo\nthree\n");
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let read = kcat(&["-C", "-o", "beginning", "-e", "-q"], "");
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    assert_eq!(String::from_utf8_lossy(&read.stdout), "one\ntwo\nthree\n");
}

#[test]
fn a_certificate_replaced_on_disk_is_served_without_a_restart() {
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    cert_dev(first.path());
    cert_dev(second.path());
    let serving = tempfile::tempdir().expect("tempdir");
    for name in ["server.pem", "server-key.pem"] {
        std::fs::copy(first.path().join(name), serving.path().join(name)).expect("copy");
    }
    let args = tls_args(serving.path(), false);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Rivulet::start_with(&args, &[]);
    assert_eq!(https_status(&server, &first.path().join("ca.pem")), "200");
    assert_eq!(https_status(&server, &second.path().join("ca.pem")), "000");
    // Key first, then the certificate: a half-replaced pair keeps the old certificate.
    for name in ["server-key.pem", "server.pem"] {
        std::fs::copy(second.path().join(name), serving.path().join(name)).expect("copy");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while https_status(&server, &second.path().join("ca.pem")) != "200" {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 10 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(https_status(&server, &first.path().join("ca.pem")), "000");
    assert!(server.log().contains("Reloaded the TLS certificate"));
    // The CLI reaches the HTTPS admin API with the CA.
    let base = server
        .http_base()
        .replace("http://127.0.0.1", "https://localhost");
    let listed = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["queue", "list", "--format", "json", "--http", &base, "--http-ca"])
        .arg(second.path().join("ca.pem"))
        .output()
        .expect("run rivulet");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\"queues\""));
}

#[test]
fn sasl_ssl_and_plaintext_listeners_serve_side_by_side() {
    let certs = tempfile::tempdir().expect("tempdir");
    cert_dev(certs.path());
    let secure_port = crate::harness::free_port();
    let plain_port = crate::harness::free_port();
    let listen = format!("SASL_SSL://127.0.0.1:{secure_port},PLAINTEXT://127.0.0.1:{plain_port}");
    let mut args: Vec<String> = vec!["--auth".into(), "true".into(), "--listen".into(), listen];
    args.extend(tls_args(certs.path(), false));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Rivulet::start_on(
        secure_port,
        &args,
        &[
            ("RIVULET_BOOTSTRAP_USER", "admin"),
            ("RIVULET_BOOTSTRAP_PASSWORD", "admin-password-1"),
        ],
    );
    let output = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tests/clients/listeners_clients.py"))
        .arg(format!("127.0.0.1:{secure_port}"))
        .arg(format!("127.0.0.1:{plain_port}"))
        .arg(certs.path())
        .args(["admin", "admin-password-1"])
        .output()
        .expect("run python");
    assert_client_checks(
        &output,
        &[
            "OK each listener's clients are sent back to it",
            "OK PLAINTEXT clients are ANONYMOUS and need ACLs",
        ],
    );
    drop(server);
}

#[test]
fn a_listener_without_sasl_beyond_loopback_is_refused_with_auth_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["serve", "--auth", "true", "--listen", "PLAINTEXT://0.0.0.0:0"])
        .args(["--http-listen", "off", "--amqp-listen", "off", "--data-dir"])
        .arg(dir.path())
        .env("RIVULET_BOOTSTRAP_USER", "admin")
        .env("RIVULET_BOOTSTRAP_PASSWORD", "admin-password-1")
        .output()
        .expect("run rivulet");
    assert!(!output.status.success(), "refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ANONYMOUS") && stderr.contains("SASL_SSL"),
        "{stderr}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["serve", "--listen", "SASL_PLAINTEXT://127.0.0.1:0"])
        .args(["--http-listen", "off", "--amqp-listen", "off", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run rivulet");
    assert!(!bad.status.success(), "SASL without --auth is refused");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("needs logins on"), "{stderr}");
}

/// The official KurrentDB Python and Node clients over TLS (`kurrentdb://user:pw@host?tls=true`)
/// with logins on: the user's appends, reads and (Python) a persistent subscription work; a
/// wrong password is refused.
#[test]
fn kurrentdb_clients_use_tls_with_credentials() {
    let python = repo_root().join(".venv/bin/python");
    if !python.exists() {
        println!("SKIPPED kurrentdb_clients_use_tls_with_credentials: .venv is missing");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    cert_dev(dir.path());
    let mut args = tls_args(dir.path(), false);
    args.extend(["--auth".to_string(), "true".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Rivulet::start_with(
        &args,
        &[
            ("RIVULET_BOOTSTRAP_USER", "admin"),
            ("RIVULET_BOOTSTRAP_PASSWORD", "admin-password-1"),
        ],
    );
    let address = server.eventstore_address().replace("127.0.0.1", "localhost");
    let output = Command::new("timeout")
        .arg("120")
        .arg(&python)
        .arg(repo_root().join("tests/clients/kurrentdb_py.py"))
        .args([&address, "t1", "tls"])
        .arg(dir.path().join("ca.pem"))
        .args(["admin", "admin-password-1"])
        .output()
        .expect("run python");
    assert_client_checks(
        &output,
        &[
            "ok: append and read over TLS with credentials",
            "ok: a persistent subscription over TLS",
            "ok: a wrong password is refused",
            "all checks passed",
        ],
    );
    let output = Command::new("timeout")
        .arg("120")
        .arg("node")
        .current_dir(repo_root().join("tests/clients"))
        .args(["kurrentdb_node.mjs", &address, "t1", "tls"])
        .arg(dir.path().join("ca.pem"))
        .args(["admin", "admin-password-1"])
        .output()
        .expect("run node");
    assert_client_checks(
        &output,
        &[
            "ok: append and read over TLS with credentials",
            "all checks passed",
        ],
    );
}
