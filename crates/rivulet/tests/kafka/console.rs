//! The web console in a real headless Chromium (Debian's `chromium`, driven by
//! playwright-core): every page and action against a server with logins on, with kafkajs and
//! amqplib as the other clients. `CONSOLE_SCREENSHOTS=<dir>` keeps a screenshot per page.

use std::process::Command;

use crate::harness::{assert_client_checks, repo_root, start_with_auth, which, ADMIN, ADMIN_PASSWORD};

#[test]
fn console_pages_and_actions_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
    if which("node").is_none() || !std::path::Path::new(&chromium).exists() {
        println!("SKIPPED console_pages_and_actions_in_chromium: node or {chromium} is missing");
        return;
    }
    let server = start_with_auth();
    let mut cmd = Command::new("node");
    cmd.current_dir(repo_root().join("tests/clients"))
        .arg("console_e2e.mjs")
        .args([
            server.http_base(),
            server.bootstrap(),
            server.amqp_url(),
            ADMIN.to_string(),
            ADMIN_PASSWORD.to_string(),
        ])
        .env("CHROMIUM", &chromium);
    if let Ok(dir) = std::env::var("CONSOLE_SCREENSHOTS") {
        cmd.arg(dir);
    }
    let output = cmd.output().expect("run node");
    assert_client_checks(
        &output,
        &[
            "OK weight",
            "OK login",
            "OK overview shows live produce rate",
            "OK topic created and config edited",
            "OK produced from the form and found by key and by JSON field",
            "OK live tail shows a new record",
            "OK offsets reset after a dry run",
            "OK lag fell to zero live while the consumer ran",
            "OK dead letter redriven and consumed",
            "OK queue depth follows live, purged after typed confirmation",
            "OK open transaction aborted",
            "OK event store stream listed with its events",
            "OK job listed with its instance and figures",
            "OK a restricted user sees only what it may describe and is refused a delete",
            "OK no script errors",
        ],
    );
}
