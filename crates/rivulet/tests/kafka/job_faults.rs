//! Exactly-once stream jobs through twenty random faults: a repartitioned windowed count and
//! an orders-payments join run in job worker processes (this test binary, started to run
//! only [`job_worker`]) against `rivulet serve`, while rounds of input arrive and, at a
//! random point of each round, `rivulet serve` or a worker is killed with SIGKILL and
//! started again, or a second worker joins or leaves. The read_committed outputs equal the
//! batch reference, each window and pair once.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use rivulet_sdk::transport::TopicSpec;
use rivulet_sdk::{KafkaTransport, OutRecord, Transport};
use rivulet_stream::{JobOptions, Pipeline, Stream, WindowResult, Windows};

use crate::harness::Rivulet;

const ROUNDS: usize = 20;
const CLICKS_PER_ROUND: u32 = 150;
const ORDERS_PER_ROUND: u32 = 20;
const JOIN_WITHIN_MS: i64 = 600_000;
const COUNT_JOB: &str = "faults-count";
const JOIN_JOB: &str = "faults-join";
/// Environment of a worker process.
const WORKER_BOOTSTRAP: &str = "RIVULET_JOB_WORKER_BOOTSTRAP";
const WORKER_INSTANCE: &str = "RIVULET_JOB_WORKER_INSTANCE";
const WORKER_STATE: &str = "RIVULET_JOB_WORKER_STATE";
/// How long the jobs may take to make progress after a fault (a killed worker's group
/// membership lasts its 10 s session).
const PROGRESS_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Click {
    user: u32,
    at_ms: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Paid {
    order: u32,
    at_ms: i64,
}

fn count_pipeline() -> Pipeline {
    Stream::<Click>::json(&["f-clicks"])
        .event_time(|c| c.at_ms)
        .key_by(|c| c.user)
        .window(Windows::tumbling(Duration::from_secs(1)))
        .allowed_lateness(Duration::from_secs(10))
        .count()
        .to("f-clicks-per-second")
}

fn join_pipeline() -> Pipeline {
    let placed = Stream::<Paid>::json(&["f-placed"])
        .event_time(|p| p.at_ms)
        .key_by(|p| p.order);
    let paid = Stream::<Paid>::json(&["f-paid"])
        .event_time(|p| p.at_ms)
        .key_by(|p| p.order);
    placed
        .join(paid, Duration::from_millis(JOIN_WITHIN_MS as u64), |k, o, p| {
            Some((*k, o.at_ms, p.at_ms))
        })
        .allowed_lateness(Duration::from_secs(100_000))
        .to("f-pairs", |_| None)
}

/// A job worker: runs both jobs as instance `$RIVULET_JOB_WORKER_INSTANCE` until its
/// standard input closes (then stops them gracefully) or it is killed. Started by
/// [`twenty_random_faults_leave_exactly_once_outputs_equal_to_the_reference`]; run
/// directly it has no broker to talk to and returns.
#[test]
#[ignore = "a job worker process of the fault test, started by it"]
fn job_worker() {
    let (Ok(bootstrap), Ok(instance), Ok(state)) = (
        std::env::var(WORKER_BOOTSTRAP),
        std::env::var(WORKER_INSTANCE),
        std::env::var(WORKER_STATE),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(&bootstrap).expect("client"));
    let start = |name: &str, pipeline: fn() -> Pipeline| {
        let options = JobOptions::new(name).instance(&instance).state_dir(&state);
        // The broker may be down for a moment (a fault): try again.
        for _ in 0..120 {
            match rt.block_on(rivulet_stream::start(
                transport.clone(),
                pipeline(),
                options.clone(),
            )) {
                Ok(job) => return job,
                Err(e) => eprintln!("worker {instance}: {name} not started yet: {e}"),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("worker {instance}: {name} never started");
    };
    let jobs = [start(COUNT_JOB, count_pipeline), start(JOIN_JOB, join_pipeline)];
    // Blocks until the test closes the pipe.
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    for job in jobs {
        rt.block_on(job.shutdown()).expect("graceful stop");
    }
}

/// A worker process.
struct Worker {
    child: Child,
}

impl Worker {
    fn spawn(bootstrap: &str, instance: &str, state: &std::path::Path, log: &std::path::Path) -> Worker {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("worker log");
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--ignored", "--exact", "job_faults::job_worker", "--nocapture"])
            .env(WORKER_BOOTSTRAP, bootstrap)
            .env(WORKER_INSTANCE, instance)
            .env(WORKER_STATE, state)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("worker starts");
        Worker { child }
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// Closes its input and waits for the graceful stop.
    fn leave(mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.child.try_wait().expect("wait") {
                Some(status) => {
                    assert!(status.success(), "worker stopped with {status}");
                    return;
                }
                None if Instant::now() > deadline => panic!("worker did not stop"),
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What can strike at a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillBroker,
    KillWorker,
    /// A second worker joins, or leaves when it is there.
    AddOrRemove,
}

/// xorshift64*: the schedule and timing come from one seed, printed on failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Twenty faults in a seeded random order (eight broker kills, six worker kills, three
/// joins and three leaves).
fn schedule(rng: &mut Rng) -> Vec<Fault> {
    let mut faults = [
        vec![Fault::KillBroker; 8],
        vec![Fault::KillWorker; 6],
        vec![Fault::AddOrRemove; 6],
    ]
    .concat();
    for i in (1..faults.len()).rev() {
        faults.swap(i, rng.below(i as u64 + 1) as usize);
    }
    assert_eq!(faults.len(), ROUNDS);
    faults
}

fn record<T: Serialize>(key: u32, value: &T) -> OutRecord {
    OutRecord {
        key: Some(key.to_string().into_bytes()),
        value: Some(serde_json::to_vec(value).expect("json")),
        ..OutRecord::default()
    }
}

/// The input of one round: clicks in time order, orders placed, and the previous round's
/// orders paid 0-2 times up to 20 minutes after (some beyond the join's 10).
fn round_input(round: usize, base_ms: i64) -> (Vec<Click>, Vec<Paid>, Vec<Paid>) {
    let first = round as u32 * CLICKS_PER_ROUND;
    let clicks = (first..first + CLICKS_PER_ROUND)
        .map(|i| Click {
            user: (i * 7) % 12,
            at_ms: base_ms + i64::from(i) * 20,
        })
        .collect();
    let order_at = |i: u32| base_ms + i64::from(i) * 1_000;
    let o = round as u32 * ORDERS_PER_ROUND;
    let placed = (o..o + ORDERS_PER_ROUND)
        .map(|i| Paid {
            order: i,
            at_ms: order_at(i),
        })
        .collect();
    let paid = (o.saturating_sub(ORDERS_PER_ROUND)..o)
        .flat_map(|i| {
            (0..i % 3).map(move |n| Paid {
                order: i,
                at_ms: order_at(i) + i64::from((i * 7 + n * 13) % 20) * 60_000,
            })
        })
        .collect();
    (clicks, placed, paid)
}

/// Sum of a group's committed offsets over a topic.
fn committed(rt: &tokio::runtime::Runtime, transport: &dyn Transport, group: &str, topic: &str) -> i64 {
    rt.block_on(transport.committed(group, topic))
        .map(|c| c.values().sum())
        .unwrap_or(-1)
}

#[test]
fn twenty_random_faults_leave_exactly_once_outputs_equal_to_the_reference() {
    let seed = std::env::var("RIVULET_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64 * 0x9e37_79b9 + 1);
    let mut rng = Rng(seed | 1);
    let faults = schedule(&mut rng);
    eprintln!("fault seed {seed}: {faults:?}");
    let mut server = Rivulet::start();
    let bootstrap = server.bootstrap();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(&bootstrap).expect("client"));
    for topic in ["f-clicks", "f-placed", "f-paid"] {
        let spec = TopicSpec {
            partitions: 3,
            configs: BTreeMap::new(),
        };
        rt.block_on(transport.ensure_topic(topic, spec)).expect("topic");
    }
    let dir = server.dir().to_path_buf();
    let spawn = |instance: &str| {
        Worker::spawn(
            &bootstrap,
            instance,
            &dir.join(format!("state-{instance}")),
            &dir.join(format!("worker-{instance}.log")),
        )
    };
    let now = rivulet_now_ms();
    let base = now - 3_600_000;
    let (mut clicks, mut placed, mut paid) = (Vec::new(), Vec::new(), Vec::new());
    let mut a = Some(spawn("a"));
    let mut b: Option<Worker> = None;
    for (round, fault) in faults.iter().enumerate() {
        let (c, o, p) = round_input(round, base);
        let seen = committed(&rt, transport.as_ref(), COUNT_JOB, "f-clicks");
        rt.block_on(transport.publish("f-clicks", c.iter().map(|c| record(c.user, c)).collect()))
            .expect("clicks");
        rt.block_on(transport.publish("f-placed", o.iter().map(|p| record(p.order, p)).collect()))
            .expect("orders");
        if !p.is_empty() {
            rt.block_on(transport.publish("f-paid", p.iter().map(|p| record(p.order, p)).collect()))
                .expect("payments");
        }
        clicks.extend(c);
        placed.extend(o);
        paid.extend(p);
        // Strike once the jobs are back at work after the last fault, at a random point.
        let deadline = Instant::now() + PROGRESS_WAIT;
        while committed(&rt, transport.as_ref(), COUNT_JOB, "f-clicks") <= seen {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: no progress in round {round} after {:?}",
                faults.get(round.wrapping_sub(1))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        match fault {
            Fault::KillBroker => {
                server.kill9();
                server.respawn();
            }
            Fault::KillWorker => match (b.take(), rng.below(2)) {
                (Some(w), 0) => {
                    w.kill9();
                    b = Some(spawn("b"));
                }
                (other, _) => {
                    b = other;
                    a.take().expect("a runs").kill9();
                    a = Some(spawn("a"));
                }
            },
            Fault::AddOrRemove => match b.take() {
                Some(w) => w.leave(),
                None => b = Some(spawn("b")),
            },
        }
    }
    // A click and an order an hour later per partition key close every window and bound.
    let closing_clicks: Vec<OutRecord> = (0..3u32)
        .map(|user| record(user, &Click { user, at_ms: now }))
        .collect();
    rt.block_on(transport.publish("f-clicks", closing_clicks))
        .expect("closing");
    let want_counts = reference_counts(&clicks);
    let want_pairs = reference_pairs(&placed, &paid);
    assert!(want_pairs.len() > 100, "the input exercises the join");
    let deadline = Instant::now() + PROGRESS_WAIT;
    loop {
        let (counts, repeats) = read_counts(&rt, transport.as_ref(), now);
        let pairs = read_pairs(&rt, transport.as_ref());
        if counts.len() >= want_counts.len() && pairs.len() >= want_pairs.len() {
            assert_eq!(repeats, 0, "seed {seed}: a window emitted twice");
            assert_eq!(counts, want_counts, "seed {seed}");
            assert_eq!(pairs, want_pairs, "seed {seed}: pairs");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: {} of {} windows, {} of {} pairs",
            counts.len(),
            want_counts.len(),
            pairs.len(),
            want_pairs.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for w in [a, b].into_iter().flatten() {
        w.leave();
    }
}

fn rivulet_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn reference_counts(clicks: &[Click]) -> BTreeMap<(u32, i64), u64> {
    let mut want = BTreeMap::new();
    for c in clicks {
        *want
            .entry((c.user, c.at_ms - c.at_ms.rem_euclid(1_000)))
            .or_default() += 1;
    }
    want
}

fn reference_pairs(placed: &[Paid], paid: &[Paid]) -> Vec<(u32, i64, i64)> {
    let mut want = Vec::new();
    for o in placed {
        for p in paid.iter().filter(|p| p.order == o.order) {
            if (o.at_ms - p.at_ms).abs() <= JOIN_WITHIN_MS {
                want.push((o.order, o.at_ms, p.at_ms));
            }
        }
    }
    want.sort();
    want
}

/// The count job's results before `now` (the closing clicks' windows left out) and how
/// many windows came more than once.
fn read_counts(
    rt: &tokio::runtime::Runtime,
    transport: &dyn Transport,
    now: i64,
) -> (BTreeMap<(u32, i64), u64>, usize) {
    let (records, _) = rt
        .block_on(transport.read_to_end("f-clicks-per-second", BTreeMap::new(), 1_000_000))
        .unwrap_or_default();
    let mut got = BTreeMap::new();
    let mut repeats = 0;
    for r in &records {
        let Some(v) = r
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice::<WindowResult<u32, u64>>(v).ok())
        else {
            continue;
        };
        if v.start_ms < now - 60_000 && got.insert((v.key, v.start_ms), v.value).is_some() {
            repeats += 1;
        }
    }
    (got, repeats)
}

fn read_pairs(rt: &tokio::runtime::Runtime, transport: &dyn Transport) -> Vec<(u32, i64, i64)> {
    let (records, _) = rt
        .block_on(transport.read_to_end("f-pairs", BTreeMap::new(), 1_000_000))
        .unwrap_or_default();
    let mut pairs: Vec<(u32, i64, i64)> = records
        .iter()
        .filter_map(|r| serde_json::from_slice(r.value.as_deref()?).ok())
        .collect();
    pairs.sort();
    pairs
}
