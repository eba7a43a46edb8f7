//! `rivulet serve --auth`: Kafka SASL with real clients, AMQP and HTTP logins with the same
//! users, `rivulet user`, failed-login limits, and the refusal to listen beyond loopback
//! without authentication.

use std::process::{Command, Stdio};

use crate::harness::{curl, http_status, repo_root, show, start_with_auth, ADMIN, ADMIN_PASSWORD};

fn python() -> std::path::PathBuf {
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.is_file(),
        "run scripts/test.sh (it creates .venv with the clients)"
    );
    venv
}

#[test]
fn kafka_and_amqp_clients_log_in_with_the_same_users_and_wrong_ones_are_refused() {
    let server = start_with_auth();
    let port = server.amqp_url().rsplit(':').next().expect("port").to_string();
    let output = Command::new(python())
        .arg(repo_root().join("tests/clients/auth_clients.py"))
        .args([&server.bootstrap(), &port, ADMIN, ADMIN_PASSWORD])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", show(&output));
    for check in [
        "OK librdkafka SCRAM-SHA-512",
        "OK wrong passwords and unauthenticated clients are refused",
        "OK kafka-python PLAIN and SCRAM-SHA-256",
        "OK users managed with AlterUserScramCredentials",
        "OK AMQP PLAIN with the same users",
    ] {
        assert!(stdout.contains(check), "{check} missing from:\n{stdout}");
    }
    let log = server.log();
    assert!(!log.contains(ADMIN_PASSWORD), "a password reached the log");
    assert!(!log.contains("bob-password-1"), "a password reached the log");
}

#[test]
fn kafkajs_logs_in_with_scram_sha_256() {
    let server = start_with_auth();
    let output = Command::new("node")
        .arg(repo_root().join("tests/clients/kafkajs_auth.js"))
        .args([&server.bootstrap(), ADMIN, ADMIN_PASSWORD])
        .current_dir(repo_root().join("tests/clients"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", show(&output));
    assert!(stdout.contains("OK kafkajs SCRAM-SHA-256"), "{stdout}");
    assert!(stdout.contains("OK kafkajs wrong password refused"), "{stdout}");
}

#[test]
fn http_requires_a_login_and_the_cli_manages_users() {
    let server = start_with_auth();
    let admin = format!("{ADMIN}:{ADMIN_PASSWORD}");
    assert_eq!(http_status(&server, "/v1/topics", None), "401");
    assert_eq!(http_status(&server, "/v1/topics", Some("admin:wrong")), "401");
    assert_eq!(http_status(&server, "/v1/topics", Some(&admin)), "200");
    assert_eq!(http_status(&server, "/metrics", None), "401");
    assert_eq!(http_status(&server, "/healthz", None), "200", "health stays open");
    let cli = |args: &[&str], password: &str, stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rivulet"))
            .args(args)
            .args(["--http", &server.http_base()])
            .env("RIVULET_HTTP_USER", ADMIN)
            .env("RIVULET_HTTP_PASSWORD", password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run rivulet");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("output")
    };
    let created = cli(
        &["user", "create", "carol", "--password-stdin"],
        ADMIN_PASSWORD,
        "carol-password\n",
    );
    assert!(created.status.success(), "{}", show(&created));
    let listed = cli(&["user", "list"], ADMIN_PASSWORD, "");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("carol") && text.contains("SCRAM-SHA-512 (4096)"),
        "{text}"
    );
    assert_eq!(
        http_status(&server, "/v1/topics", Some("carol:carol-password")),
        "200"
    );
    let short = cli(
        &["user", "passwd", "carol", "--password-stdin"],
        ADMIN_PASSWORD,
        "short\n",
    );
    assert!(!short.status.success(), "a 5-character password is refused");
    let denied = cli(&["user", "list"], "wrong-password", "");
    assert!(
        !denied.status.success(),
        "the CLI with a wrong password is refused"
    );
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("401"),
        "{}",
        show(&denied)
    );
    let deleted = cli(&["user", "delete", "carol"], ADMIN_PASSWORD, "");
    assert!(deleted.status.success(), "{}", show(&deleted));
    assert_eq!(
        http_status(&server, "/v1/topics", Some("carol:carol-password")),
        "401"
    );
}

#[test]
fn a_flood_of_failed_logins_is_cut_off_per_host_and_counted() {
    let server = start_with_auth();
    let admin = format!("{ADMIN}:{ADMIN_PASSWORD}");
    for _ in 0..25 {
        assert_eq!(http_status(&server, "/v1/topics", Some("admin:guess")), "401");
    }
    // This host is past its failures for the window: even the right password waits.
    assert_eq!(http_status(&server, "/v1/topics", Some(&admin)), "401");
    let scrape = Command::new("curl")
        .args(["-s", "-u", &admin, &format!("{}/metrics", server.http_base())])
        .output()
        .expect("curl");
    // A login verified before the flood would be remembered; this one was not, so the
    // scrape itself is refused too.
    assert!(String::from_utf8_lossy(&scrape.stdout).contains("too many failed logins"));
    assert!(
        server.log().matches("Login failed").count() >= 20,
        "failures are logged"
    );
}

#[test]
fn serve_refuses_to_listen_beyond_loopback_without_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--http-listen",
            "off",
            "--amqp-listen",
            "off",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run rivulet");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without authentication")
            && stderr.contains("--auth"),
        "{stderr}"
    );
    let no_user = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args([
            "serve",
            "--auth",
            "true",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
        ])
        .args(["--amqp-listen", "off", "--data-dir"])
        .arg(dir.path())
        .env_remove("RIVULET_BOOTSTRAP_USER")
        .output()
        .expect("run rivulet");
    assert!(!no_user.status.success());
    assert!(
        String::from_utf8_lossy(&no_user.stderr).contains("RIVULET_BOOTSTRAP_USER"),
        "{}",
        show(&no_user)
    );
}

mod raw {
    //! Raw SASL frames: request header v1 (key, version, correlation id, client id).
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn connect(bootstrap: &str) -> TcpStream {
        let s = TcpStream::connect(bootstrap).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    fn frame(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&key.to_be_bytes());
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&correlation_id.to_be_bytes());
        out.extend_from_slice(&4i16.to_be_bytes());
        out.extend_from_slice(b"test");
        out.extend_from_slice(body);
        let mut framed = (out.len() as i32).to_be_bytes().to_vec();
        framed.extend(out);
        framed
    }

    fn read(s: &mut TcpStream) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).ok()?;
        Some(body)
    }

    /// SaslHandshake v1: the error code of the answer.
    pub fn handshake(s: &mut TcpStream, mechanism: &str) -> i16 {
        let mut body = (mechanism.len() as i16).to_be_bytes().to_vec();
        body.extend_from_slice(mechanism.as_bytes());
        s.write_all(&frame(17, 1, 1, &body)).expect("send");
        let answer = read(s).expect("handshake answer");
        i16::from_be_bytes([answer[4], answer[5]])
    }

    /// SaslAuthenticate v0: the error code and the bytes answered.
    pub fn authenticate(s: &mut TcpStream, token: &[u8]) -> (i16, Vec<u8>) {
        let mut body = (token.len() as i32).to_be_bytes().to_vec();
        body.extend_from_slice(token);
        s.write_all(&frame(36, 0, 2, &body)).expect("send");
        let answer = read(s).expect("authenticate answer");
        let code = i16::from_be_bytes([answer[4], answer[5]]);
        let message_len = i16::from_be_bytes([answer[6], answer[7]]).max(0) as usize;
        let at = 8 + message_len;
        let bytes_len = i32::from_be_bytes([answer[at], answer[at + 1], answer[at + 2], answer[at + 3]]);
        (code, answer[at + 4..at + 4 + bytes_len.max(0) as usize].to_vec())
    }

    /// SaslAuthenticate v0; true when the broker answered rather than closing.
    pub fn authenticate_answered(s: &mut TcpStream, token: &[u8]) -> bool {
        let mut body = (token.len() as i32).to_be_bytes().to_vec();
        body.extend_from_slice(token);
        // The broker may close while the frame is still being written.
        let _ = s.write_all(&frame(36, 0, 2, &body));
        read(s).is_some()
    }

    /// A Metadata v0 request; true when the broker answered rather than closing.
    pub fn metadata_answered(s: &mut TcpStream) -> bool {
        if s.write_all(&frame(3, 0, 3, &0i32.to_be_bytes())).is_err() {
            return false;
        }
        read(s).is_some()
    }
}

#[test]
fn malformed_oversized_and_cut_off_sasl_exchanges_fail_cleanly() {
    let server = start_with_auth();
    let b = server.bootstrap();
    // Nothing but ApiVersions and SASL before a login.
    let mut s = raw::connect(&b);
    assert!(
        !raw::metadata_answered(&mut s),
        "Metadata before a login closes the connection"
    );
    // An unknown mechanism is refused with the ones offered.
    let mut s = raw::connect(&b);
    assert_eq!(raw::handshake(&mut s, "GSSAPI"), 33, "UNSUPPORTED_SASL_MECHANISM");
    // Garbage as client-first, then any request closes the connection.
    assert_eq!(raw::handshake(&mut s, "SCRAM-SHA-256"), 0);
    let (code, _) = raw::authenticate(&mut s, b"\xff\xfe not scram at all");
    assert_eq!(code, 58, "SASL_AUTHENTICATION_FAILED");
    assert!(
        !raw::metadata_answered(&mut s),
        "a failed login closes the connection"
    );
    // An oversized PLAIN token.
    let mut s = raw::connect(&b);
    assert_eq!(raw::handshake(&mut s, "PLAIN"), 0);
    let (code, _) = raw::authenticate(&mut s, &vec![b'a'; 200_000]);
    assert_eq!(code, 58);
    // A frame over 512 KiB before a login closes the connection unread.
    let mut s = raw::connect(&b);
    assert_eq!(raw::handshake(&mut s, "PLAIN"), 0);
    assert!(
        !raw::authenticate_answered(&mut s, &vec![b'a'; 600_000]),
        "no answer to an oversized unauthenticated frame"
    );
    // A SCRAM exchange cut after server-first.
    let mut s = raw::connect(&b);
    assert_eq!(raw::handshake(&mut s, "SCRAM-SHA-512"), 0);
    let (code, server_first) = raw::authenticate(&mut s, b"n,,n=admin,r=abcdefgh");
    assert_eq!(code, 0);
    assert!(server_first.starts_with(b"r=abcdefgh"), "{server_first:?}");
    drop(s);
    // Everyone else is served: a PLAIN login on a new connection, then Metadata.
    let mut s = raw::connect(&b);
    assert_eq!(raw::handshake(&mut s, "PLAIN"), 0);
    let token = format!("\0{ADMIN}\0{ADMIN_PASSWORD}");
    assert_eq!(raw::authenticate(&mut s, token.as_bytes()).0, 0);
    assert!(raw::metadata_answered(&mut s), "a logged-in connection is served");
    assert!(!server.log().contains("panicked"));
}

#[test]
fn http_bearer_tokens_log_in_until_revoked() {
    let server = start_with_auth();
    let admin = format!("{ADMIN}:{ADMIN_PASSWORD}");
    let (code, body) = curl(
        &server,
        "POST",
        "/v1/tokens",
        &["-u", &admin, "-d", r#"{"ttl_s":600}"#],
    );
    assert_eq!(code, "201", "{body}");
    let issued: serde_json::Value = serde_json::from_str(&body).expect("json");
    let token = issued["token"].as_str().expect("token").to_string();
    assert_eq!(issued["user"], ADMIN);
    assert!(!server.log().contains(&token), "the token is not logged");
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(curl(&server, "GET", "/v1/topics", &["-H", &bearer]).0, "200");
    // A browser's EventSource cannot set headers: the token may come as a query parameter,
    // and the handler's own query checks never see it.
    let query = format!("/v1/topics/t/partitions/0/records?offset=start&access_token={token}");
    let (code, body) = curl(&server, "GET", &query, &[]);
    assert!(
        code == "200" || code == "404",
        "logged in by query token: {code} {body}"
    );
    let (code, _) = curl(&server, "POST", "/v1/tokens", &["-H", &bearer]);
    assert_eq!(code, "403", "a token cannot issue tokens");
    assert_eq!(curl(&server, "DELETE", "/v1/tokens", &["-H", &bearer]).0, "204");
    let (code, body) = curl(&server, "GET", "/v1/topics", &["-H", &bearer]);
    assert_eq!(code, "401", "revoked: {body}");
    assert_eq!(
        curl(
            &server,
            "GET",
            "/v1/topics",
            &["-H", "Authorization: Bearer made-up"]
        )
        .0,
        "401"
    );
}
