//! kill -9 while appending: every acknowledged batch survives, intact and in order.
//!
//! The parent re-runs this test binary as a child (`crash_child`, ignored in normal runs)
//! that appends with `FsyncPolicy::Always` from several threads and prints each
//! acknowledged offset. The parent kills it with SIGKILL at a random moment, reopens the
//! log and checks every acknowledgement. The log is reused across rounds, so recovery runs
//! on top of earlier recoveries.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng;
use rivulet_log::{FsyncPolicy, Log, LogConfig};

use crate::common::*;

const CHILD_DIR_ENV: &str = "RIVULET_CRASH_CHILD_DIR";
const CHILD_ROUND_ENV: &str = "RIVULET_CRASH_CHILD_ROUND";
const ROUNDS: usize = 50;

fn crash_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 1024,
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// The child: appends until killed. Runs only when the parent asks for it.
#[test]
#[ignore = "run by crash::acknowledged_batches_survive_kill_9 as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let round = std::env::var(CHILD_ROUND_ENV).unwrap_or_default();
    let log = Log::open(&dir, crash_config()).expect("child open");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            let round = round.clone();
            std::thread::spawn(move || {
                for n in 0u64.. {
                    let value = format!("{round}-{t}-{n}");
                    let records = 1 + (n % 3) as usize;
                    let batch = batch_of(&value, records, 2, 1_000);
                    let out = log.append(&batch).expect("append");
                    out.durable.clone().wait_blocking().expect("durable");
                    // One line per acknowledgement; println! takes the stdout lock per line.
                    println!("ack {} {} {value}", out.base_offset, records);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn acknowledged_batches_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = rand::rng();
    // offset -> (expected value prefix, records)
    let mut acked: HashMap<i64, (String, usize)> = HashMap::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "crash::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the child to start acknowledging, then kill it at a random moment.
        // (The test harness prints its own lines first.)
        let mut lines = Vec::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("child acknowledged nothing");
            let is_ack = line.starts_with("ack ");
            lines.push(line);
            if is_ack {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(1..80)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        reader.join().expect("reader");
        lines.extend(rx.try_iter());
        let mut round_acks = 0;
        for line in lines {
            let parts: Vec<&str> = line.split(' ').collect();
            // A line cut by the kill is not an acknowledgement the child finished printing.
            if parts.len() != 4 || parts[0] != "ack" {
                continue;
            }
            let (Ok(offset), Ok(records)) = (parts[1].parse::<i64>(), parts[2].parse::<usize>()) else {
                continue;
            };
            acked.insert(offset, (parts[3].to_string(), records));
            round_acks += 1;
        }
        assert!(round_acks > 0, "round {round}: no acknowledgement parsed");
        // Reopen (recovery) and check every acknowledgement so far.
        let log = Log::open(dir.path(), crash_config()).expect("recover");
        let recs = read_all(&log, 0);
        assert!(
            recs.windows(2).all(|w| w[1].0 == w[0].0 + 1),
            "offsets stay contiguous"
        );
        let by_offset: HashMap<i64, &Option<Vec<u8>>> = recs.iter().map(|(o, _, v)| (*o, v)).collect();
        for (offset, (value, records)) in &acked {
            for i in 0..*records {
                let got = by_offset.get(&(offset + i as i64)).unwrap_or_else(|| {
                    panic!("round {round}: acknowledged offset {} lost", offset + i as i64)
                });
                let want = format!("{value}-{i}").into_bytes();
                assert_eq!(
                    got.as_deref(),
                    Some(&want[..]),
                    "round {round}: offset {offset}+{i} changed"
                );
            }
        }
        drop(log);
    }
    assert!(
        acked.len() >= ROUNDS,
        "{} acknowledgements in {ROUNDS} rounds",
        acked.len()
    );
    eprintln!(
        "crash test: {ROUNDS} kill -9 rounds, {} acknowledged batches verified in {:?}",
        acked.len(),
        started.elapsed()
    );
}
