//! ACLs on every front end: real clients refused without an ACL and served once one is
//! granted at run time (tests/clients/acl_clients.py), and `rivulet acl` managing the same
//! bindings through the HTTP API.

use std::process::{Command, Output};

use crate::harness::{curl, http_status, repo_root, show, start_with_auth, ADMIN, ADMIN_PASSWORD};

#[test]
fn clients_of_every_protocol_are_refused_without_an_acl_and_served_once_granted() {
    let server = start_with_auth();
    let port = server.amqp_url().rsplit(':').next().expect("port").to_string();
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "run scripts/test.sh (it creates .venv with the clients)"
    );
    let output = Command::new(python)
        .arg(repo_root().join("tests/clients/acl_clients.py"))
        .args([
            &server.bootstrap(),
            &port,
            &server.http_base(),
            ADMIN,
            ADMIN_PASSWORD,
        ])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", show(&output));
    for check in [
        "OK a missing ACL gives librdkafka TOPIC_AUTHORIZATION_FAILED",
        "OK an ACL granted with kafka-python takes effect without reconnecting",
        "OK a consumer is refused without group and topic ACLs and reads once granted",
        "OK HTTP refuses a topic without read and lists only describable topics",
        "OK AMQP refuses a queue without read or write",
        "OK deleted ACLs take the access away",
    ] {
        assert!(stdout.contains(check), "{check} missing from:\n{stdout}");
    }
    assert!(
        server.log().contains("Authorization denied"),
        "denials are logged"
    );
    let admin = format!("{ADMIN}:{ADMIN_PASSWORD}");
    let (_, text) = curl(&server, "GET", "/metrics", &["-u", &admin]);
    assert!(
        text.lines()
            .any(|l| l.contains("authorization_failed") && l.contains("protocol=\"kafka\"")),
        "denials are counted per protocol:\n{text}"
    );
}

#[test]
fn the_cli_grants_lists_and_revokes_acls() {
    let server = start_with_auth();
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rivulet"))
            .args(args)
            .args(["--http", &server.http_base()])
            .env("RIVULET_HTTP_USER", ADMIN)
            .env("RIVULET_HTTP_PASSWORD", ADMIN_PASSWORD)
            .env("RIVULET_NEW_PASSWORD", "erin-password")
            .output()
            .expect("run rivulet")
    };
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(cli(&["user", "create", "erin"]));
    let admin = format!("{ADMIN}:{ADMIN_PASSWORD}");
    let body = r#"{"name":"cli-acl"}"#;
    let json = "content-type: application/json";
    let created = curl(
        &server,
        "POST",
        "/v1/topics",
        &["-u", &admin, "-H", json, "-d", body],
    );
    assert_eq!(created.0, "201", "the admin creates the topic: {}", created.1);
    let path = "/v1/topics/cli-acl/partitions/0/records?offset=0";
    let erin_reads = || http_status(&server, path, Some("erin:erin-password"));
    assert_eq!(erin_reads(), "403", "no ACL yet");
    ok(cli(&[
        "acl",
        "create",
        "--user",
        "erin",
        "--operation",
        "read",
        "--topic",
        "cli-acl",
    ]));
    assert_eq!(erin_reads(), "200", "granted");
    let listed = ok(cli(&["acl", "list", "--user", "erin"]));
    assert!(
        listed.contains("User:erin") && listed.contains("cli-acl") && listed.contains("read"),
        "{listed}"
    );
    assert!(!listed.contains("User:admin"), "filtered by user:\n{listed}");
    let everyone = ok(cli(&["acl", "list"]));
    assert!(
        everyone.contains("User:admin"),
        "the first user's ACLs are listed:\n{everyone}"
    );
    let bad = cli(&[
        "acl",
        "create",
        "--user",
        "erin",
        "--operation",
        "fly",
        "--topic",
        "x",
    ]);
    assert!(!bad.status.success(), "an unknown operation is refused");
    let deleted = ok(cli(&["acl", "delete", "--user", "erin", "--topic", "cli-acl"]));
    assert!(deleted.contains("Deleted 1 ACLs"), "{deleted}");
    assert_eq!(erin_reads(), "403", "revoked");
    let unfiltered = cli(&["acl", "delete"]);
    assert!(
        !unfiltered.status.success(),
        "deleting without a filter is refused"
    );
}
