//! pika (Python): confirms and returns, prefetch, nack/requeue, dead-lettering, the delivery
//! limit, basic.get, purge and channel errors.

use std::process::Command;

use crate::harness::{repo_root, Rivulet};

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
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in [
        "OK confirms and returns",
        "OK prefetch and requeue order",
        "OK dead letters and delivery limit",
        "OK message TTL, expiration and x-expires",
        "OK x-max-length drops the oldest",
        "OK streams read from offsets",
        "OK get, purge and channel errors",
    ] {
        assert!(stdout.contains(check), "{check} missing from:\n{stdout}");
    }
}
