//! librdkafka consumers with `group.protocol=consumer` (KIP-848): the broker assigns, a new
//! member gets partitions without the others stopping, a leaving member's partitions move
//! to the rest, and every record is consumed.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

use crate::harness::Rivulet;
use crate::rdkafka_clients::{create_topic, produce_all, producer};

const TOPIC: &str = "kip848";
const PARTITIONS: i32 = 6;
const RECORDS: usize = 600;

/// What the consumer threads saw: each one's current assignment, the smallest assignment
/// each had once it first held partitions, and every (partition, offset) consumed.
#[derive(Default)]
struct Seen {
    assigned: HashMap<usize, BTreeSet<i32>>,
    smallest_after_first: HashMap<usize, usize>,
    consumed: BTreeSet<(i32, i64)>,
}

fn spawn_member(
    server: &Rivulet,
    id: usize,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let bootstrap = server.bootstrap();
    std::thread::spawn(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "kip848-group")
            .set("group.protocol", "consumer")
            .set("auto.offset.reset", "earliest")
            .set("auto.commit.interval.ms", "200")
            .create()
            .expect("consumer");
        c.subscribe(&[TOPIC]).expect("subscribe");
        while !stop.load(Ordering::SeqCst) {
            let message = c.poll(Duration::from_millis(50));
            let parts: BTreeSet<i32> = c
                .assignment()
                .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
                .unwrap_or_default();
            let mut s = seen.lock().expect("lock");
            if let Some(Ok(m)) = message {
                s.consumed.insert((m.partition(), m.offset()));
            }
            if !parts.is_empty() || s.smallest_after_first.contains_key(&id) {
                let n = s.smallest_after_first.entry(id).or_insert(parts.len());
                *n = (*n).min(parts.len());
            }
            s.assigned.insert(id, parts);
        }
        // Dropping the consumer closes it: it leaves the group (member epoch -1).
    })
}

fn wait_for(seen: &Mutex<Seen>, what: &str, cond: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        {
            let s = seen.lock().expect("lock");
            if cond(&s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: assigned {:?}, consumed {}",
                s.assigned,
                s.consumed.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn consumer_protocol_members_share_partitions_incrementally_and_consume_everything() {
    let server = Rivulet::start_with(&["--group-consumer-heartbeat-interval-ms", "300"], &[]);
    create_topic(&server, TOPIC, PARTITIONS, &[]);
    let p = producer(&server, &[]);
    let messages: Vec<(String, String)> = (0..RECORDS).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    produce_all(&p, TOPIC, &messages);
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    let seen: Arc<Mutex<Seen>> = Arc::default();

    let stop_a = Arc::new(AtomicBool::new(false));
    let a = spawn_member(&server, 0, seen.clone(), stop_a.clone());
    wait_for(&seen, "the first member holding every partition", |s| {
        s.assigned.get(&0) == Some(&all)
    });

    let stop_b = Arc::new(AtomicBool::new(false));
    let b = spawn_member(&server, 1, seen.clone(), stop_b.clone());
    wait_for(&seen, "two members sharing the partitions", |s| {
        let (x, y) = (s.assigned.get(&0), s.assigned.get(&1));
        x.zip(y).is_some_and(|(x, y)| {
            x.len() == 3 && y.len() == 3 && x.union(y).copied().collect::<BTreeSet<_>>() == all
        })
    });
    let kept = seen.lock().expect("lock").smallest_after_first.get(&0).copied();
    assert!(
        kept.is_some_and(|n| n >= 3),
        "the first member kept consuming its partitions while the second joined: {kept:?}"
    );

    stop_a.store(true, Ordering::SeqCst);
    a.join().expect("member a");
    wait_for(&seen, "the second member taking every partition", |s| {
        s.assigned.get(&1) == Some(&all)
    });
    wait_for(&seen, "every record consumed", |s| s.consumed.len() == RECORDS);
    stop_b.store(true, Ordering::SeqCst);
    b.join().expect("member b");

    let consumed = &seen.lock().expect("lock").consumed;
    for partition in 0..PARTITIONS {
        let offsets: Vec<i64> = consumed
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .collect();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, expected, "partition {partition}: no gap");
    }
    let log = server.log();
    assert!(log.contains("Consumer group member joined"), "{log}");
    assert!(log.contains("Consumer group member left"), "{log}");
}

#[test]
fn a_consumer_protocol_pattern_subscription_follows_matching_topics() {
    let server = Rivulet::start_with(&["--group-consumer-heartbeat-interval-ms", "300"], &[]);
    for (topic, partitions) in [("pat-a", 2), ("pat-b", 2), ("other", 1)] {
        create_topic(&server, topic, partitions, &[]);
    }
    let p = producer(&server, &[]);
    for topic in ["pat-a", "pat-b", "other"] {
        produce_all(&p, topic, &[("k".to_string(), format!("in {topic}"))]);
    }
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("group.id", "patterns")
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .expect("consumer");
    c.subscribe(&["^pat-.*"]).expect("subscribe");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut created = false;
    while Instant::now() < deadline && seen.len() < 3 {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            seen.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
        if !created && seen.len() == 2 {
            // A topic created later that matches is picked up too.
            create_topic(&server, "pat-c", 1, &[]);
            produce_all(&p, "pat-c", &[("k".to_string(), "in pat-c".to_string())]);
            created = true;
        }
    }
    let expected: BTreeSet<String> = ["in pat-a", "in pat-b", "in pat-c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seen, expected, "only the matching topics, the late one included");
}

/// Each static member's partitions, by instance id.
type ByInstance = HashMap<String, BTreeSet<i32>>;

/// A static member (group.instance.id) that closes and restarts gets its partitions back,
/// and the other member's partitions never move meanwhile.
#[test]
fn a_restarted_static_member_gets_its_partitions_back_without_moving_the_others() {
    let server = Rivulet::start_with(&["--group-consumer-heartbeat-interval-ms", "300"], &[]);
    create_topic(&server, "statics", PARTITIONS, &[]);
    let assigned: Arc<Mutex<ByInstance>> = Arc::default();
    let moved_other = Arc::new(AtomicBool::new(false));
    let run = |instance: &'static str, stop: Arc<AtomicBool>| {
        let bootstrap = server.bootstrap();
        let assigned = assigned.clone();
        std::thread::spawn(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", "statics-group")
                .set("group.protocol", "consumer")
                .set("group.instance.id", instance)
                .create()
                .expect("consumer");
            c.subscribe(&["statics"]).expect("subscribe");
            while !stop.load(Ordering::SeqCst) {
                let _ = c.poll(Duration::from_millis(50));
                let parts: BTreeSet<i32> = c
                    .assignment()
                    .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                assigned.lock().expect("lock").insert(instance.to_string(), parts);
            }
            // Dropping closes: a static member leaves with epoch -2.
        })
    };
    let halves = |a: &ByInstance| {
        let (x, y) = (a.get("w1"), a.get("w2"));
        x.zip(y)
            .is_some_and(|(x, y)| x.len() == 3 && y.len() == 3 && x.is_disjoint(y))
    };
    let wait = |what: &str, cond: &dyn Fn(&ByInstance) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let snapshot = assigned.lock().expect("lock").clone();
            if cond(&snapshot) {
                return snapshot;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {snapshot:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (stop1, stop2) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let w1 = run("w1", stop1.clone());
    let w2 = run("w2", stop2.clone());
    let before = wait("two static members with three partitions each", &halves);
    stop1.store(true, Ordering::SeqCst);
    w1.join().expect("w1");
    assigned.lock().expect("lock").remove("w1");
    let stop3 = Arc::new(AtomicBool::new(false));
    let restarted = run("w1", stop3.clone());
    let after = wait("the restarted w1 holding partitions", &|a| {
        if a.get("w2") != before.get("w2") {
            moved_other.store(true, Ordering::SeqCst);
        }
        a.get("w1").is_some_and(|p| !p.is_empty())
    });
    assert_eq!(
        after.get("w1"),
        before.get("w1"),
        "the same partitions as before the restart"
    );
    assert!(!moved_other.load(Ordering::SeqCst), "w2's partitions never moved");
    stop2.store(true, Ordering::SeqCst);
    stop3.store(true, Ordering::SeqCst);
    w2.join().expect("w2");
    restarted.join().expect("w1 again");
    assert!(server.log().contains("Static consumer group member rejoined"));
}
