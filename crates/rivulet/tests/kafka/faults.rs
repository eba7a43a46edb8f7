//! Fault suite: nothing acknowledged is lost. kill -9 under load, stuck consumers under a
//! producer flood, a full disk and hostile input, each against a real `rivulet serve`.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{
    BaseRecord, FutureProducer, FutureRecord, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::harness::{free_port, Rivulet};

/// A small deterministic RNG (xorshift64*), so failures can be replayed from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (partition, offset, key, value) of consumed records.
type Consumed = Vec<(i32, i64, String, String)>;

fn read_all_from_beginning(bootstrap: &str, topic: &str, partitions: i32) -> Consumed {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-verifier"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut expected = 0i64;
    for p in 0..partitions {
        let (low, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .expect("watermarks");
        assert_eq!(low, 0, "nothing was deleted from partition {p}");
        expected += high;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < expected {
        assert!(
            Instant::now() < deadline,
            "read {} of {expected} records",
            out.len()
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(record_of(&m)),
            Some(Err(e)) => eprintln!("verifier: consumer error (retrying): {e}"),
            None => {}
        }
    }
    out
}

fn record_of<M: Message>(m: &M) -> (i32, i64, String, String) {
    (
        m.partition(),
        m.offset(),
        String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------
// 1. kill -9 under load
// ---------------------------------------------------------------------------------------

/// An acknowledged (or failed) delivery: key, per-key sequence, partition, offset.
#[derive(Default)]
struct Deliveries {
    acked: Mutex<Vec<(String, u64, i32, i64)>>,
    failed: Mutex<Vec<(String, u64, String)>>,
    acked_count: AtomicU64,
}

struct Recorder(Arc<Deliveries>);

impl ClientContext for Recorder {}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let (partition, offset, key, value) = record_of(m);
                let seq = value
                    .rsplit(':')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("value key:seq");
                self.0
                    .acked
                    .lock()
                    .expect("lock")
                    .push((key, seq, partition, offset));
                self.0.acked_count.fetch_add(1, Ordering::SeqCst);
            }
            Err((e, m)) => {
                let (_, _, key, value) = record_of(m);
                let seq = value
                    .rsplit(':')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(u64::MAX);
                self.0
                    .failed
                    .lock()
                    .expect("lock")
                    .push((key, seq, e.to_string()));
            }
        }
    }
}

const KILL_ROUNDS: usize = 20;
const KEYS: u64 = 24;

// Longer than most functions: one scenario of kill -9 rounds whose state (acknowledged records, committed offsets) carries across rounds; kept whole so it reads top to bottom.
#[test]
fn kill9_under_load_loses_no_acknowledged_record_and_groups_resume() {
    let topic = "kill9";
    let partitions = 4;
    let mut server = Rivulet::start_on(
        free_port(),
        &["--default-partitions", &partitions.to_string()],
        &[],
    );
    let deliveries = Arc::new(Deliveries::default());
    let producer: ThreadedProducer<Recorder> = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "120000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "200")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create_with_context(Recorder(deliveries.clone()))
        .expect("producer");
    let producer = Arc::new(producer);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let producer = producer.clone();
        let stop = stop.clone();
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut seqs = vec![0u64; KEYS as usize];
            let mut rng = Rng::new(0x6b696c6c39);
            while !stop.load(Ordering::SeqCst) {
                let k = rng.below(KEYS) as usize;
                let key = format!("key-{k}");
                let value = format!("{key}:{}", seqs[k]);
                let mut record = BaseRecord::to(topic).key(&key).payload(&value);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((e, r)) => {
                            assert_eq!(
                                e.rdkafka_error_code(),
                                Some(RDKafkaErrorCode::QueueFull),
                                "enqueue failed: {e}"
                            );
                            record = r;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
                seqs[k] += 1;
                sent.fetch_add(1, Ordering::SeqCst);
                // Roughly 2,000 records a second: enough load to be mid-write at every kill.
                if sent.load(Ordering::SeqCst) % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
    };

    let mut rng = Rng::new(0x5eed_0001);
    let started = Instant::now();
    for round in 0..KILL_ROUNDS {
        // Kill only while records are being acknowledged, so every kill lands under load.
        let before = deliveries.acked_count.load(Ordering::SeqCst);
        wait_until(
            &format!("acknowledgements before kill {round}"),
            Duration::from_secs(30),
            || deliveries.acked_count.load(Ordering::SeqCst) > before + 50,
        );
        std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
        server.kill9();
        server.respawn();
    }
    let acked_during_kills = deliveries.acked_count.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    sender.join().expect("sender thread");
    producer
        .flush(Duration::from_secs(120))
        .expect("every record delivered or failed");
    let load_time = started.elapsed();
    let acked = std::mem::take(&mut *deliveries.acked.lock().expect("lock"));
    let failed = std::mem::take(&mut *deliveries.failed.lock().expect("lock"));
    println!(
        "kill9: {KILL_ROUNDS} kills in {load_time:?}, {} sent, {} acknowledged ({acked_during_kills} before the last kill), {} failed",
        sent.load(Ordering::SeqCst),
        acked.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "idempotent producer deliveries failed: {:?}",
        &failed[..failed.len().min(5)]
    );

    // Everything acknowledged is there exactly once, at its acknowledged offset, in order.
    let consumed = read_all_from_beginning(&server.bootstrap(), topic, partitions);
    let at: HashMap<(i32, i64), (String, String)> = consumed
        .iter()
        .map(|(p, o, k, v)| ((*p, *o), (k.clone(), v.clone())))
        .collect();
    assert_eq!(at.len(), consumed.len(), "no offset delivered twice");
    for (key, seq, partition, offset) in &acked {
        let found = at.get(&(*partition, *offset));
        assert_eq!(
            found,
            Some(&(key.clone(), format!("{key}:{seq}"))),
            "acknowledged record {key}:{seq} at {partition}/{offset}"
        );
    }
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut key_partition: HashMap<String, i32> = HashMap::new();
    for (p, _, k, v) in &consumed {
        let seq: u64 = v.rsplit(':').next().and_then(|s| s.parse().ok()).expect("seq");
        if let Some(prev) = last_seq.get(k) {
            assert!(
                seq > *prev,
                "{k}: sequence {seq} after {prev} (duplicate or reorder)"
            );
        }
        last_seq.insert(k.clone(), seq);
        assert_eq!(
            *key_partition.entry(k.clone()).or_insert(*p),
            *p,
            "{k} on one partition"
        );
    }
    // Every record sent was acknowledged (no failures), so every sequence is present.
    assert_eq!(consumed.len(), acked.len(), "no unacknowledged extras or gaps");

    // A consumer group resumes from its committed offsets across kills: read a slice,
    // commit exactly what was read, kill -9, restart, resume.
    drop(producer);
    let group_rounds = 3;
    let per_round = consumed.len() / (group_rounds + 1) + 1;
    let mut read_by_group: Vec<(i32, i64)> = Vec::new();
    let mut committed_before: BTreeMap<i32, i64> = BTreeMap::new();
    for round in 0..=group_rounds {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", server.bootstrap())
            .set("group.id", "kill9-resumers")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .expect("consumer");
        c.subscribe(&[topic]).expect("subscribe");
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let target = if round == group_rounds {
            consumed.len() - read_by_group.len()
        } else {
            per_round
        };
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut first_of_round: BTreeMap<i32, i64> = BTreeMap::new();
        while got < target {
            assert!(
                Instant::now() < deadline,
                "group round {round}: read {got} of {target}"
            );
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    first_of_round.entry(m.partition()).or_insert(m.offset());
                    read_by_group.push((m.partition(), m.offset()));
                    next.insert(m.partition(), m.offset() + 1);
                    got += 1;
                }
                Some(Err(e)) => eprintln!("group round {round}: consumer error (retrying): {e}"),
                None => {}
            }
        }
        if round > 0 {
            // Each partition restarts exactly at the offset committed before the kill.
            for (p, first) in &first_of_round {
                let committed = committed_before.get(p).copied().unwrap_or(0);
                assert_eq!(
                    *first, committed,
                    "round {round}: partition {p} resumed at {first}"
                );
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &next {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
                .expect("offset");
        }
        c.commit(&tpl, CommitMode::Sync).expect("commit");
        drop(tpl);
        drop(c);
        committed_before.extend(next);
        server.kill9();
        server.respawn();
    }
    read_by_group.sort_unstable();
    let mut all: Vec<(i32, i64)> = consumed.iter().map(|(p, o, _, _)| (*p, *o)).collect();
    all.sort_unstable();
    assert_eq!(
        read_by_group, all,
        "across kills the group read every record exactly once"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Stuck consumers and a producer flood
// ---------------------------------------------------------------------------------------

fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&body);
    f
}

/// A Fetch v4 request for partition 0 of `topic` from offset 0 with the given byte limits.
fn fetch_frame(topic: &str, correlation_id: i32, max_bytes: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&1i16.to_be_bytes()); // Fetch
    b.extend_from_slice(&4i16.to_be_bytes()); // v4
    b.extend_from_slice(&correlation_id.to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    b.extend_from_slice(&(-1i32).to_be_bytes()); // replica id
    b.extend_from_slice(&0i32.to_be_bytes()); // max wait
    b.extend_from_slice(&1i32.to_be_bytes()); // min bytes
    b.extend_from_slice(&max_bytes.to_be_bytes());
    b.push(0); // read uncommitted
    b.extend_from_slice(&1i32.to_be_bytes()); // one topic
    b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    b.extend_from_slice(topic.as_bytes());
    b.extend_from_slice(&1i32.to_be_bytes()); // one partition
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes()); // fetch offset
    b.extend_from_slice(&max_bytes.to_be_bytes()); // partition max bytes
    frame(b)
}

fn flood_producer(bootstrap: &str, acks: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

// Longer than most functions: one scenario on one server whose phases (stall, flood, check) build on each other; kept whole so it reads top to bottom.
#[test]
fn stuck_consumers_and_a_producer_flood_keep_memory_bounded_and_others_served() {
    const MIB: u64 = 1024 * 1024;
    let budget = 16 * MIB;
    let server = Rivulet::start_with(
        &[
            "--request-memory-bytes-max",
            &budget.to_string(),
            "--request-bytes-max",
            &(8 * MIB).to_string(),
            "--fetch-bytes-max",
            &(4 * MIB).to_string(),
            "--write-stall-timeout-ms",
            "1000",
        ],
        &[],
    );
    let bootstrap = server.bootstrap();

    // 16 MiB for the stuck consumers to ask for, over and over.
    let big = "s".repeat(64 * 1024);
    let p = flood_producer(&bootstrap, "1");
    let rt = runtime();
    rt.block_on(async {
        let keys: Vec<String> = (0..256).map(|i| format!("{i}")).collect();
        let sends: Vec<_> = keys
            .iter()
            .map(|key| {
                p.send(
                    FutureRecord::to("stuck").key(key).payload(&big),
                    Duration::from_secs(30),
                )
            })
            .collect();
        for s in sends {
            s.await.map_err(|(e, _)| e).expect("prefill delivered");
        }
    });

    // A normal client: one produce + consume round trip, measured.
    let probe_p = flood_producer(&bootstrap, "all");
    let probe_c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "probe")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("probe", 0, Offset::Beginning)
        .expect("partition");
    let mut probe_n = 0u64;
    let mut round_trip = |label: &str| -> Duration {
        let started = Instant::now();
        let value = format!("probe-{probe_n}");
        rt.block_on(probe_p.send(
            FutureRecord::to("probe").key("p").payload(&value),
            Duration::from_secs(30),
        ))
        .map_err(|(e, _)| e)
        .expect("probe delivered");
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{label}: probe {probe_n} never came back"
            );
            if let Some(Ok(m)) = probe_c.poll(Duration::from_millis(50)) {
                if m.payload() == Some(value.as_bytes()) {
                    break;
                }
            }
        }
        probe_n += 1;
        started.elapsed()
    };
    // Creates the topic; then the consumer starts at its beginning.
    rt.block_on(probe_p.send(
        FutureRecord::to("probe").key("p").payload("create"),
        Duration::from_secs(30),
    ))
    .map_err(|(e, _)| e)
    .expect("probe topic created");
    probe_c.assign(&tpl).expect("assign");
    wait_until("the probe consumer reads", Duration::from_secs(30), || {
        probe_c.poll(Duration::from_millis(50)).is_some()
    });
    round_trip("warm-up");
    let rss_before = server.rss_kib();

    // Stuck consumers: pipelined Fetch requests for 64 MiB each, never reading a byte.
    let mut stuck = Vec::new();
    for c in 0..8 {
        let s = TcpStream::connect(&bootstrap).expect("connect");
        s.set_write_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut s = s;
        for i in 0..32 {
            if s.write_all(&fetch_frame("stuck", c * 100 + i, 64 << 20)).is_err() {
                break; // the broker stopped reading this connection: backpressure
            }
        }
        stuck.push(s);
    }
    // A slow consumer: it keeps reading, a little at a time, and is not disconnected.
    let slow_stop = Arc::new(AtomicBool::new(false));
    let slow = {
        let mut s = TcpStream::connect(&bootstrap).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let stop = slow_stop.clone();
        std::thread::spawn(move || {
            for i in 0..4 {
                s.write_all(&fetch_frame("stuck", 1000 + i, 64 << 20))
                    .expect("slow consumer sends");
            }
            let mut read = 0usize;
            let mut buf = vec![0u8; 32 * 1024];
            while !stop.load(Ordering::SeqCst) {
                match s.read(&mut buf) {
                    Ok(0) => return (read, false),
                    Ok(n) => read += n,
                    Err(_) => return (read, false),
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (read, true)
        })
    };

    // The flood: two producers sending 4 KiB records as fast as their queues allow.
    let stop = Arc::new(AtomicBool::new(false));
    let flooded = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..2)
        .map(|t| {
            let bootstrap = bootstrap.clone();
            let stop = stop.clone();
            let flooded = flooded.clone();
            std::thread::spawn(move || {
                let p = flood_producer(&bootstrap, "1");
                let value = vec![b'f'; 4 * 1024];
                let key = format!("flood-{t}");
                // Bounded so the test writes at most ~600 MiB.
                while !stop.load(Ordering::SeqCst) && flooded.load(Ordering::SeqCst) < 150_000 {
                    match p.send_result(FutureRecord::to("flood").key(&key).payload(&value)) {
                        Ok(_) => {
                            flooded.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => {
                            p.poll(Duration::from_millis(5));
                        }
                    }
                }
                let _ = p.flush(Duration::from_secs(30));
            })
        })
        .collect();

    let mut took_all = Vec::new();
    let mut rss_max = 0u64;
    let flood_started = Instant::now();
    while flood_started.elapsed() < Duration::from_secs(4) || took_all.len() < 5 {
        took_all.push(round_trip("under flood"));
        if let Some(rss) = server.rss_kib() {
            rss_max = rss_max.max(rss);
        }
    }
    stop.store(true, Ordering::SeqCst);
    slow_stop.store(true, Ordering::SeqCst);
    for f in flooders {
        f.join().expect("flood thread");
    }
    let (slow_read, slow_open) = slow.join().expect("slow consumer");
    if let Some(rss) = server.rss_kib() {
        rss_max = rss_max.max(rss);
    }
    took_all.sort();
    let worst = took_all[took_all.len() - 1];
    let median = took_all[took_all.len() / 2];
    println!(
        "flood: {} records flooded, {probe_n} probe round trips, median {median:?}, worst {worst:?}, RSS {:?} KiB before, {rss_max} KiB max",
        flooded.load(Ordering::SeqCst),
        rss_before
    );
    println!("slow consumer read {slow_read} bytes, still connected: {slow_open}");
    assert!(flooded.load(Ordering::SeqCst) > 1000, "the flood ran");
    assert!(slow_open, "the slow but reading consumer stays connected");
    assert!(
        slow_read > 1 << 20,
        "the slow consumer got data ({slow_read} bytes)"
    );
    let log = server.log();
    assert!(
        log.contains("the client stopped reading responses"),
        "stuck consumers are disconnected:\n{log}"
    );
    // A starved client would wait for the 30 s probe deadline: stuck connections pin the
    // shared fetch memory until the 1 s write-stall timeout closes them. The bounds leave room
    // for a 2-core machine running other tests at the same time (the client tests beside this
    // one spawn Python and Node processes: a median of 690 ms was seen under that load).
    assert!(
        median < Duration::from_secs(2),
        "a normal client's median round trip took {median:?} under the flood"
    );
    assert!(
        worst < Duration::from_secs(6),
        "a normal client's worst round trip took {worst:?} under the flood"
    );
    if let Some(before) = rss_before {
        // Request and Fetch-response budgets, plus slack for runtime and page-cache effects.
        let bound_kib = before + (2 * budget + 64 * MIB) / 1024;
        assert!(
            rss_max < bound_kib,
            "RSS reached {rss_max} KiB (bound {bound_kib} KiB, {before} KiB before)"
        );
    } else {
        println!("no /proc: RSS not checked");
    }
    drop(stuck);
}

// ---------------------------------------------------------------------------------------
// 3. Full disk
// ---------------------------------------------------------------------------------------

/// A small filesystem mounted on a directory; unmounted (lazily) on drop.
struct SmallFs {
    dir: std::path::PathBuf,
    image: Option<std::path::PathBuf>,
}

impl SmallFs {
    /// Mounts a 16 MiB tmpfs on `dir`, or else a loop-mounted 16 MiB ext4 image; the reason
    /// when neither is possible here.
    fn mount(dir: &std::path::Path, scratch: &std::path::Path) -> Result<SmallFs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir: {e}"))?;
        let run = |cmd: &mut std::process::Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let tmpfs = run(std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(dir));
        let tmpfs_error = match tmpfs {
            Ok(()) => {
                return Ok(SmallFs {
                    dir: dir.to_path_buf(),
                    image: None,
                })
            }
            Err(e) => e,
        };
        let image = scratch.join("disk.img");
        let ext4 = run(std::process::Command::new("truncate")
            .args(["-s", "16M"])
            .arg(&image))
        .and_then(|()| {
            run(std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .arg(&image))
        })
        .and_then(|()| {
            run(std::process::Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(dir))
        });
        match ext4 {
            Ok(()) => Ok(SmallFs {
                dir: dir.to_path_buf(),
                image: Some(image),
            }),
            Err(e) => Err(format!("tmpfs: {tmpfs_error}; ext4 loop: {e}")),
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
        if let Some(image) = &self.image {
            let _ = std::fs::remove_file(image);
        }
    }
}

#[test]
fn full_disk_refuses_produce_keeps_acknowledged_data_and_recovers_without_restart() {
    let topic = "full";
    let mut server = Rivulet::unstarted(free_port(), &["--segment-bytes", "1048576"], &[]);
    let data = server.data_dir();
    let fs = match SmallFs::mount(&data, server.dir()) {
        Ok(fs) => fs,
        Err(reason) => {
            println!("SKIPPED full_disk test: cannot mount a small filesystem here: {reason}");
            return;
        }
    };
    // A filler file in the same filesystem, deleted later to free space.
    let filler = data.join("filler");
    std::fs::write(&filler, vec![0u8; 4 << 20]).expect("filler");
    server.respawn();

    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("acks", "all")
        .set("message.send.max.retries", "0")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let rt = runtime();
    let send = |i: usize| {
        let value = format!("{i:08}:{}", "d".repeat(32 * 1024));
        let key = format!("{i}");
        rt.block_on(p.send(
            FutureRecord::to(topic).key(&key).payload(&value),
            Duration::from_secs(30),
        ))
        .map(|d| (d.offset, value))
        .map_err(|(e, _)| e)
    };
    let mut acked: Vec<(i64, String)> = Vec::new();
    let error = loop {
        assert!(acked.len() < 1000, "16 MiB never filled up");
        match send(acked.len()) {
            Ok(a) => acked.push(a),
            Err(e) => break e,
        }
    };
    println!("full disk: {} records acknowledged, then {error}", acked.len());
    assert!(acked.len() > 50, "some records fit before the disk filled");
    assert_eq!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::KafkaStorageError),
        "a full disk answers KAFKA_STORAGE_ERROR: {error}"
    );
    // A second attempt fails the same way (nothing freed yet).
    assert!(send(acked.len()).is_err(), "still full");
    assert!(server.is_running(), "the broker survives a full disk");
    let log = server.log();
    assert!(
        log.contains("No space left on device"),
        "the log says the disk is full:\n{log}"
    );

    // Everything acknowledged reads back exactly.
    let check = |acked: &[(i64, String)]| {
        let got = read_all_from_beginning(&server.bootstrap(), topic, 1);
        let got: Vec<(i64, String)> = got.into_iter().map(|(_, o, _, v)| (o, v)).collect();
        assert_eq!(got.len(), acked.len(), "records read back");
        for (g, a) in got.iter().zip(acked) {
            assert!(g == a, "record at offset {} differs after the full disk", a.0);
        }
    };
    check(&acked);

    // Free space: the same broker process accepts produces again.
    std::fs::remove_file(&filler).expect("remove filler");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match send(acked.len()) {
            Ok(a) => {
                acked.push(a);
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "produce after freeing space: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    for _ in 0..20 {
        let a = send(acked.len()).expect("produce after freeing space");
        acked.push(a);
    }
    check(&acked);
    drop(p);
    server.kill9();
    drop(fs);
}

// ---------------------------------------------------------------------------------------
// 4. Hostile input
// ---------------------------------------------------------------------------------------

/// A valid Produce v3 frame (acks=1) carrying one uncompressed batch.
fn produce_template(topic: &str) -> Vec<u8> {
    let records = rivulet_log::batch::build(
        0,
        1_700_000_000_000,
        None,
        &[rivulet_log::record::Record::new(
            Some(b"k".to_vec()),
            Some(b"hostile".to_vec()),
        )],
    );
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&3i16.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&1000i32.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    b.extend_from_slice(topic.as_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    b.extend_from_slice(&records);
    frame(b)
}

/// One hostile frame: random bytes, a mutated valid request, a random header over a random
/// body, or a truncated frame.
fn hostile_frame(rng: &mut Rng, templates: &[Vec<u8>]) -> Vec<u8> {
    match rng.below(4) {
        0 => {
            let n = rng.below(512) as usize;
            rng.bytes(n)
        }
        1 => {
            let mut f = templates[rng.below(templates.len() as u64) as usize].clone();
            for _ in 0..=rng.below(6) {
                let at = 4 + rng.below(f.len() as u64 - 4) as usize;
                f[at] = rng.next() as u8;
            }
            f
        }
        2 => {
            let mut b = Vec::new();
            b.extend_from_slice(&(rng.below(75) as i16).to_be_bytes());
            b.extend_from_slice(&(rng.below(16) as i16).to_be_bytes());
            b.extend_from_slice(&(rng.next() as i32).to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes());
            let n = rng.below(256) as usize;
            b.extend(rng.bytes(n));
            frame(b)
        }
        _ => {
            let f = &templates[rng.below(templates.len() as u64) as usize];
            let keep = 4 + rng.below(f.len() as u64 - 4) as usize;
            f[..keep].to_vec()
        }
    }
}

// Longer than most functions: one scenario: hostile connections and a working client run at once against one server; kept whole.
#[test]
fn random_and_truncated_frames_never_crash_the_broker_while_clients_work() {
    let mut server = Rivulet::start_with(&["--fetch-wait-ms-max", "200"], &[]);
    let bootstrap = server.bootstrap();
    let templates = vec![
        produce_template("hostile"),
        fetch_frame("hostile", 7, 1 << 20),
        frame({
            // Metadata v1 for all topics.
            let mut b = Vec::new();
            b.extend_from_slice(&3i16.to_be_bytes());
            b.extend_from_slice(&1i16.to_be_bytes());
            b.extend_from_slice(&3i32.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
            b
        }),
    ];

    // A normal client producing and consuming round trips the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let client = {
        let stop = stop.clone();
        let progress = progress.clone();
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            let rt = runtime();
            let p = flood_producer(&bootstrap, "all");
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "hostile-bystander")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "100")
                .create()
                .expect("consumer");
            let mut assigned = false;
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) || n < 5 {
                let value = format!("bystander-{n}");
                rt.block_on(p.send(
                    FutureRecord::to("bystander").key("b").payload(&value),
                    Duration::from_secs(30),
                ))
                .map_err(|(e, _)| e)
                .expect("bystander produce");
                if !assigned {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset("bystander", 0, Offset::Beginning)
                        .expect("partition");
                    c.assign(&tpl).expect("assign");
                    assigned = true;
                }
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    assert!(Instant::now() < deadline, "bystander record {n} not consumed");
                    if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                        if m.payload() == Some(value.as_bytes()) {
                            break;
                        }
                    }
                }
                n += 1;
                progress.store(n, Ordering::SeqCst);
            }
            n
        })
    };
    wait_until(
        "the bystander's first round trip",
        Duration::from_secs(30),
        || progress.load(Ordering::SeqCst) > 0,
    );

    let started = Instant::now();
    let progress_before = progress.load(Ordering::SeqCst);
    let attackers: Vec<_> = (0..4u64)
        .map(|t| {
            let bootstrap = bootstrap.clone();
            let templates = templates.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(0x686f_7374_696c_6500 + t);
                let mut sent = 0;
                let mut s: Option<TcpStream> = None;
                for _ in 0..500 {
                    let f = hostile_frame(&mut rng, &templates);
                    let conn = match s.take() {
                        Some(c) => c,
                        None => {
                            let c = TcpStream::connect(&bootstrap).expect("connect");
                            c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                            c.set_write_timeout(Some(Duration::from_secs(5)))
                                .expect("timeout");
                            c
                        }
                    };
                    let mut conn = conn;
                    let _ = conn.write_all(&f);
                    sent += 1;
                    // Spread the attack over about two seconds so it overlaps the bystander.
                    std::thread::sleep(Duration::from_millis(4));
                    // Mostly keep the connection for the next frame; sometimes end it here
                    // and drain what the broker says until it closes.
                    if rng.below(4) == 0 {
                        let _ = conn.shutdown(Shutdown::Write);
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = conn.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                        }
                    } else {
                        s = Some(conn);
                    }
                }
                sent
            })
        })
        .collect();
    let frames: usize = attackers.into_iter().map(|a| a.join().expect("attacker")).sum();
    let fuzz_time = started.elapsed();
    let during = progress.load(Ordering::SeqCst) - progress_before;
    stop.store(true, Ordering::SeqCst);
    let round_trips = client.join().expect("the bystander kept producing and consuming");
    let closed = server.log().matches("Closing connection").count();
    println!(
        "hostile: {frames} frames in {fuzz_time:?}, {closed} connections closed for bad input; \
         bystander made {round_trips} round trips, {during} during the attack"
    );
    assert_eq!(frames, 2000);
    assert!(during > 0, "the bystander made progress during the attack");
    assert!(closed > 100, "the hostile frames reached the decoder");
    assert!(server.is_running(), "the broker survived:\n{}", server.log());
    let log = server.log();
    assert!(!log.contains("panicked"), "no panic in the broker log:\n{log}");
    // And it still serves new clients.
    let mut fresh = TcpStream::connect(&bootstrap).expect("connect");
    fresh
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = Vec::new();
    req.extend_from_slice(&18i16.to_be_bytes());
    req.extend_from_slice(&0i16.to_be_bytes());
    req.extend_from_slice(&99i32.to_be_bytes());
    req.extend_from_slice(&(-1i16).to_be_bytes());
    fresh.write_all(&frame(req)).expect("send");
    let mut len = [0u8; 4];
    fresh.read_exact(&mut len).expect("ApiVersions answered");
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    fresh.read_exact(&mut body).expect("body");
    assert_eq!(&body[0..4], &99i32.to_be_bytes());
    assert_eq!(&body[4..6], &0i16.to_be_bytes());
}

#[test]
fn records_produced_with_acks_0_and_1_become_visible_under_fsync_always() {
    let server = Rivulet::start();
    let rt = runtime();
    let mut expected = Vec::new();
    for acks in ["1", "0"] {
        let p = flood_producer(&server.bootstrap(), acks);
        for i in 0..3 {
            let value = format!("acks{acks}-{i}");
            rt.block_on(p.send(
                FutureRecord::to("weak-acks").key("k").payload(&value),
                Duration::from_secs(30),
            ))
            .map_err(|(e, _)| e)
            .expect("delivered");
            expected.push(value);
        }
    }
    // No acks=all producer ever waits for a sync here: the broker must still make the
    // records durable and visible on its own.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("group.id", "weak-acks-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("weak-acks", 0, Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while got.len() < expected.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(got, expected, "acks=1 and acks=0 records are readable");
}
