//! 2,000 partitions under `fsync=always`, once through the shared journal (the default) and
//! once through a flush pool of 4 threads alone: the durability threads stay within their
//! bound and every acknowledged record survives kill -9.
//!
//! The parent re-runs this test binary as a child (`many_partitions_child`, ignored in
//! normal runs) that produces one record to every partition per round, waits for all of
//! them to be durable, prints each acknowledgement and its durability-thread counts, and is
//! killed with SIGKILL at a random moment. The parent then reopens the data directory and
//! reads every acknowledged record back.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng;
use rivulet_broker::{Broker, BrokerConfig, Create, NewRecord};

const CHILD_DIR_ENV: &str = "RIVULET_MANY_PARTITIONS_DIR";
/// Set to "1" when the child writes through the shared journal.
const CHILD_JOURNAL_ENV: &str = "RIVULET_MANY_PARTITIONS_JOURNAL";
const TOPICS: usize = 4;
const PARTITIONS_PER_TOPIC: usize = 500;
const FLUSH_THREADS: usize = 4;
const KILL_ROUNDS: usize = 3;

fn config(dir: &std::path::Path, journal: bool) -> BrokerConfig {
    let defaults = BrokerConfig::default();
    assert!(defaults.journal.is_some(), "the journal is on by default");
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        flush_threads: FLUSH_THREADS,
        journal: if journal { defaults.journal.clone() } else { None },
        ..defaults
    }
}

/// Threads of this process whose name is one of `names`.
fn threads_named(names: &[&str]) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|name| names.contains(&name.trim()))
                })
                .count()
        })
        .unwrap_or(0)
}

/// The child: produces to every partition, round after round, until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by many_partitions::two_thousand_partitions_share_a_bounded_flush_pool as a child process"]
async fn many_partitions_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let journal = std::env::var(CHILD_JOURNAL_ENV).is_ok_and(|v| v == "1");
    let broker = Broker::open(config(std::path::Path::new(&dir), journal)).expect("child open");
    for t in 0..TOPICS {
        let name = format!("wide-{t}");
        if broker.topic(&name).is_none() {
            broker
                .create_topic(&name, PARTITIONS_PER_TOPIC as i32, 1, BTreeMap::new(), false)
                .expect("create");
        }
    }
    println!("ready");
    for round in 0u64.. {
        let mut pending = Vec::new();
        for t in 0..TOPICS {
            let topic = format!("wide-{t}");
            let records = (0..PARTITIONS_PER_TOPIC as i32)
                .map(|p| NewRecord {
                    value: Some(format!("{round}").into_bytes()),
                    partition: Some(p),
                    ..NewRecord::default()
                })
                .collect();
            pending.push((
                topic.clone(),
                broker
                    .append_records(&topic, records, Create::Never)
                    .expect("append"),
            ));
        }
        for (topic, appended) in pending {
            for p in appended.durable().await.expect("durable") {
                println!("ack {topic} {} {} {round}", p.partition, p.offset);
            }
        }
        println!(
            "threads {} {}",
            threads_named(&["rivulet-fsync"]),
            threads_named(&["rivulet-journal", "rivulet-keeper"])
        );
    }
}

/// Acknowledged records: (topic, partition, offset) -> value.
type Acked = BTreeMap<(String, i32, i64), String>;

#[test]
fn two_thousand_partitions_share_one_journal() {
    let counts = kill_rounds_verified(true);
    assert!(
        counts.iter().all(|&(_, j)| j == 2),
        "journal threads {counts:?}: always its writer and its keeper"
    );
    assert!(
        counts.iter().all(|&(f, _)| f <= FLUSH_THREADS),
        "flusher threads {counts:?} over {FLUSH_THREADS}"
    );
}

#[test]
fn two_thousand_partitions_share_a_bounded_flush_pool() {
    let counts = kill_rounds_verified(false);
    assert!(
        counts
            .iter()
            .all(|&(f, j)| (1..=FLUSH_THREADS).contains(&f) && j == 0),
        "(flusher, journal) threads {counts:?}: flushers outside 1..={FLUSH_THREADS}"
    );
}

/// Kills a producing child `KILL_ROUNDS` times, then reads every acknowledged record back;
/// returns the (flusher, journal) thread counts the child printed.
fn kill_rounds_verified(journal: bool) -> Vec<(usize, usize)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acked = Acked::new();
    let mut thread_counts = Vec::new();
    for round in 0..KILL_ROUNDS {
        let lines = run_child_until_killed(dir.path(), round, journal);
        for line in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                [.., "ack", topic, p, o, value] => {
                    let key = (
                        topic.to_string(),
                        p.parse().expect("partition"),
                        o.parse().expect("offset"),
                    );
                    acked.insert(key, value.to_string());
                }
                ["threads", f, j] => thread_counts.push((
                    f.parse::<usize>().expect("count"),
                    j.parse::<usize>().expect("count"),
                )),
                _ => {}
            }
        }
    }
    assert!(
        !thread_counts.is_empty(),
        "at least one whole round was acknowledged"
    );
    let started = Instant::now();
    let partitions = verify_acknowledged(dir.path(), &acked, journal);
    eprintln!(
        "{} acknowledged records over {partitions} partitions verified in {:?}",
        acked.len(),
        started.elapsed(),
    );
    thread_counts
}

/// Runs the child until it is producing, lets it run a random while, kills it with SIGKILL
/// and returns every line it printed.
fn run_child_until_killed(dir: &std::path::Path, round: usize, journal: bool) -> Vec<String> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(&exe)
        .args([
            "many_partitions::many_partitions_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_JOURNAL_ENV, if journal { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("round {round}: child never ready: {e}"));
        if line.ends_with("ready") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(rand::rng().random_range(500..2_500)));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let _ = reader.join();
    rx.try_iter().collect()
}

/// Reopens the data directory and checks every acknowledged record; returns the number of
/// partitions checked.
fn verify_acknowledged(dir: &std::path::Path, acked: &Acked, journal: bool) -> usize {
    let broker = Broker::open(config(dir, journal)).expect("reopen");
    let mut by_partition: BTreeMap<(String, i32), Vec<(i64, String)>> = BTreeMap::new();
    for ((topic, p, o), value) in acked {
        by_partition
            .entry((topic.clone(), *p))
            .or_default()
            .push((*o, value.clone()));
    }
    assert_eq!(
        by_partition.len(),
        TOPICS * PARTITIONS_PER_TOPIC,
        "every partition was acknowledged"
    );
    for ((topic, p), records) in &by_partition {
        let read = broker.read_records(topic, *p, 0, 1 << 20, 100_000).expect("read");
        let stored: BTreeMap<i64, String> = read
            .records
            .iter()
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        for (offset, value) in records {
            assert_eq!(
                stored.get(offset),
                Some(value),
                "{topic}[{p}] offset {offset} lost"
            );
        }
    }
    by_partition.len()
}
