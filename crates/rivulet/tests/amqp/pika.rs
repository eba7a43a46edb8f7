//! pika (Python): confirms and returns, prefetch, nack/requeue, dead-lettering, the delivery
//! limit, basic.get, purge and channel errors.

use std::process::Command;

use crate::harness::{assert_client_checks, repo_root, Rivulet};

pub fn python() -> std::path::PathBuf {
    let venv = repo_root().join(".venv/bin/python");
    assert!(venv.exists(), "run scripts/test.sh (it creates .venv with pika)");
    venv
}

#[test]
fn pika_confirms_prefetch_requeue_dead_letters_and_errors() {
    let server = Rivulet::start();
    let output = Command::new(python())
        .arg(repo_root().join("tests/clients/amqp/pika_semantics.py"))
        .arg(server.amqp_url())
        .output()
        .expect("run python");
    assert_client_checks(
        &output,
        &[
            "OK confirms and returns",
            "OK prefetch and requeue order",
            "OK dead letters and delivery limit",
            "OK message TTL, expiration and x-expires",
            "OK x-max-length drops the oldest",
            "OK x-max-length-bytes drops the oldest",
            "OK reject-publish and reject-publish-dlx",
            "OK alternate exchange",
            "OK exchange-to-exchange bindings",
            "OK transactions",
            "OK stream arguments",
            "OK streams read from offsets",
            "OK get, purge and channel errors",
        ],
    );
}

/// Free bytes of the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .expect("df");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the available bytes")
}

#[test]
fn a_disk_alarm_blocks_publishers_until_space_comes_back() {
    const GIB: u64 = 1 << 30;
    let free = free_bytes(&std::env::temp_dir());
    assert!(
        free > 8 * GIB,
        "this test needs 8 GiB free in the temp dir, {free} bytes free"
    );
    // The alarm sits 2 GiB below today's free space; allocating 4 GiB raises it.
    let min = (free - 2 * GIB).to_string();
    let server = Rivulet::start_with(&["--disk-free-min-bytes", &min], &[]);
    let filler = server.dir().join("filler");
    let output = Command::new(python())
        .arg(repo_root().join("tests/clients/amqp/pika_blocked.py"))
        .arg(server.amqp_url())
        .arg(format!("{}/v1/status", server.http_base()))
        .arg(&filler)
        .arg((4 * GIB).to_string())
        .output()
        .expect("run python");
    let _ = std::fs::remove_file(&filler);
    assert_client_checks(
        &output,
        &[
            "OK the alarm is raised",
            "OK the publisher was blocked and unblocked",
            "OK both messages confirmed and queued",
        ],
    );
}
