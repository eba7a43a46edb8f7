//! kill -9 under a confirming publisher and an acking consumer on a durable queue: no
//! confirmed message is lost, no acknowledged message comes back, and a message delivered
//! before a crash comes back marked as redelivered.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{repo_root, Rivulet};
use crate::pika::python;

const ROUNDS: usize = 20;

fn lines(dir: &Path, name: &str, round: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(format!("{name}.{round}")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn run_round(server: &Rivulet, dir: &Path, round: &str, drain: bool) -> std::process::Child {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/clients/amqp/pika_crash_round.py"))
        .arg(server.amqp_url())
        .arg(dir)
        .arg(round)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if drain {
        cmd.arg("drain");
    }
    cmd.spawn().expect("run python")
}

#[test]
fn kill_9_loses_no_confirmed_message_and_brings_back_no_acked_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Rivulet::start();
    let mut confirmed: HashSet<String> = HashSet::new();
    let mut acked: HashSet<String> = HashSet::new();
    // Acks sent when the broker died: applied or not, both are correct.
    let mut in_doubt: HashSet<String> = HashSet::new();
    // Delivered at least once before, not acknowledged.
    let mut delivered: HashSet<String> = HashSet::new();
    let mut redeliveries = 0;
    for round in 0..=ROUNDS {
        let drain = round == ROUNDS;
        let name = round.to_string();
        let mut client = run_round(&server, dir.path(), &name, drain);
        if drain {
            let out = client.wait_with_output().expect("drain");
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("DRAINED"),
                "the drain finished"
            );
        } else {
            std::thread::sleep(Duration::from_millis(400 + (round as u64 * 97) % 800));
            server.kill9();
            let _ = client.wait();
        }
        for line in lines(dir.path(), "received", &name) {
            let (id, redelivered) = line.split_once(' ').expect("id and flag");
            assert!(
                !acked.contains(id),
                "round {round}: {id} came back after its ack was applied"
            );
            if delivered.contains(id) {
                assert_eq!(
                    redelivered, "1",
                    "round {round}: {id} delivered again without the redelivered flag"
                );
                redeliveries += 1;
            }
            delivered.insert(id.to_string());
        }
        let acked_now = lines(dir.path(), "acked", &name);
        for id in lines(dir.path(), "acking", &name) {
            if !acked_now.contains(&id) {
                in_doubt.insert(id);
            }
        }
        for id in acked_now {
            in_doubt.remove(&id);
            assert!(acked.insert(id.clone()), "{id} acknowledged twice");
        }
        confirmed.extend(lines(dir.path(), "confirmed", &name));
        if !drain {
            server.respawn();
        }
    }
    let lost: Vec<&String> = confirmed
        .iter()
        .filter(|id| !acked.contains(*id) && !in_doubt.contains(*id))
        .collect();
    let lost_delivered = lost.iter().filter(|id| delivered.contains(**id)).count();
    assert!(
        lost.is_empty(),
        "{} confirmed messages never acked ({lost_delivered} of them delivered): {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let by_round: HashMap<&str, usize> = confirmed.iter().fold(HashMap::new(), |mut m, id| {
        *m.entry(id.split('-').next().unwrap_or("")).or_default() += 1;
        m
    });
    assert!(
        by_round.len() >= ROUNDS / 2,
        "most rounds confirmed messages before the kill: {by_round:?}"
    );
    println!(
        "{} confirmed, {} acked, {} acks in doubt at a kill, {} redelivered after crashes, over {ROUNDS} kills",
        confirmed.len(),
        acked.len(),
        in_doubt.len(),
        redeliveries
    );
}
