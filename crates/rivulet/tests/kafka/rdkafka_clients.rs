//! librdkafka (via the `rdkafka` crate) against `rivulet serve`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::harness::Rivulet;

/// Partitions assigned to each consumer thread.
type Assignments = HashMap<usize, BTreeSet<i32>>;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub(crate) fn producer(server: &Rivulet, extra: &[(&str, &str)]) -> FutureProducer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", server.bootstrap())
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create().expect("producer")
}

pub(crate) fn consumer(server: &Rivulet, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", server.bootstrap())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create().expect("consumer")
}

pub(crate) fn create_topic(server: &Rivulet, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .create()
        .expect("admin");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = runtime()
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .expect("create_topics");
    for r in results {
        r.expect("topic created");
    }
}

/// Sends `(key, value)` pairs (all queued at once, so batches form) and returns the
/// (partition, offset) of each, in send order.
pub(crate) fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    messages: &[(String, String)],
) -> Vec<(i32, i64)> {
    let mut deliveries = Vec::with_capacity(messages.len());
    for (k, v) in messages {
        let mut record = FutureRecord::to(topic).key(k.as_str()).payload(v.as_str());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break deliveries.push(delivery),
                Err((e, r)) => {
                    // Local queue full: let deliveries drain.
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "enqueue failed: {e}"
                    );
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    runtime().block_on(async {
        let mut out = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            let delivered = d
                .await
                .expect("delivery report")
                .map_err(|(e, _)| e)
                .expect("delivered");
            out.push((delivered.partition, delivered.offset));
        }
        out
    })
}

/// Polls until `n` messages arrived or the timeout passed; returns (partition, offset, key, value).
pub(crate) fn consume_n(
    consumer: &BaseConsumer,
    n: usize,
    timeout: Duration,
) -> Vec<(i32, i64, String, String)> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(e)) => eprintln!("consumer error (retrying): {e}"),
            None => {}
        }
    }
    out
}

pub(crate) fn assign_from_beginning(consumer: &BaseConsumer, topic: &str, partitions: i32) {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
}

fn numbered(n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("k{i}"), format!("v{i}"))).collect()
}

#[test]
fn rdkafka_acks_all_producer_round_trips_in_order() {
    let server = Rivulet::start();
    let p = producer(&server, &[("acks", "all")]);
    let messages = numbered(200);
    let acks = produce_all(&p, "acks-all", &messages);
    let offsets: Vec<i64> = acks.iter().map(|(_, o)| *o).collect();
    assert_eq!(
        offsets,
        (0..200).collect::<Vec<i64>>(),
        "offsets are dense and ordered"
    );

    let c = consumer(&server, "acks-all-reader", &[]);
    assign_from_beginning(&c, "acks-all", 1);
    let got = consume_n(&c, 200, Duration::from_secs(30));
    let values: Vec<String> = got.iter().map(|m| m.3.clone()).collect();
    let expected: Vec<String> = messages.iter().map(|m| m.1.clone()).collect();
    assert_eq!(values, expected);
    assert_eq!(got.last().map(|m| m.1), Some(199));
}

#[test]
fn rdkafka_idempotent_producer_writes_each_message_once() {
    let server = Rivulet::start();
    let p = producer(&server, &[("enable.idempotence", "true"), ("linger.ms", "5")]);
    let messages = numbered(2_000);
    let acks = produce_all(&p, "idempotent", &messages);
    assert_eq!(acks.len(), 2_000);
    assert!(acks.windows(2).all(|w| w[0].1 < w[1].1), "acks are ordered");

    let c = consumer(&server, "idem-reader", &[]);
    assign_from_beginning(&c, "idempotent", 1);
    let got = consume_n(&c, 2_000, Duration::from_secs(30));
    assert_eq!(got.len(), 2_000);
    let values: Vec<String> = got.iter().map(|m| m.3.clone()).collect();
    let expected: Vec<String> = messages.iter().map(|m| m.1.clone()).collect();
    assert_eq!(values, expected, "no loss, no duplicates, in order");
    // Nothing beyond the 2000 messages.
    assert!(consume_n(&c, 1, Duration::from_secs(1)).is_empty());
}

#[test]
fn rdkafka_group_of_three_rebalances_when_one_leaves() {
    let server = Rivulet::start();
    let topic = "group-three";
    create_topic(&server, topic, 6, &[]);
    let p = producer(&server, &[]);
    produce_all(&p, topic, &numbered(600));

    let stop = Arc::new(AtomicBool::new(false));
    let assignments: Arc<Mutex<HashMap<usize, BTreeSet<i32>>>> = Arc::default();
    let received: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    let leave = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for id in 0..3usize {
        let bootstrap = server.bootstrap();
        let stop = stop.clone();
        let leave = leave.clone();
        let assignments = assignments.clone();
        let received = received.clone();
        threads.push(std::thread::spawn(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", "three")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "500")
                .create()
                .expect("consumer");
            c.subscribe(&[topic]).expect("subscribe");
            while !stop.load(Ordering::SeqCst) {
                if id == 0 && leave.load(Ordering::SeqCst) {
                    break; // dropping the consumer closes it and leaves the group
                }
                if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
                    *received.lock().expect("lock").entry(id).or_default() += 1;
                }
                let parts: BTreeSet<i32> = c
                    .assignment()
                    .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                assignments.lock().expect("lock").insert(id, parts);
            }
            c.unsubscribe();
        }));
    }
    let wait_for = |what: &str, cond: &dyn Fn(&Assignments) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let snapshot = assignments.lock().expect("lock").clone();
            if cond(&snapshot) {
                return snapshot;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {snapshot:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let all: BTreeSet<i32> = (0..6).collect();
    let three = wait_for("three members sharing six partitions", &|a| {
        a.len() == 3
            && a.values().all(|p| p.len() == 2)
            && a.values().flatten().copied().collect::<BTreeSet<_>>() == all
    });
    assert_eq!(three.values().map(|p| p.len()).sum::<usize>(), 6);

    leave.store(true, Ordering::SeqCst);
    let two = wait_for("two members taking over all partitions", &|a| {
        let rest: Vec<&BTreeSet<i32>> = [1usize, 2].iter().filter_map(|i| a.get(i)).collect();
        rest.len() == 2
            && rest.iter().all(|p| p.len() == 3)
            && rest
                .iter()
                .flat_map(|p| p.iter())
                .copied()
                .collect::<BTreeSet<_>>()
                == all
    });
    assert!(two.get(&1).is_some_and(|p| !p.is_empty()));
    // The remaining members go on consuming everything.
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.lock().expect("lock").values().sum::<usize>() < 600 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("consumer thread");
    }
    let total: usize = received.lock().expect("lock").values().sum();
    assert!(
        total >= 600,
        "the group consumed every message at least once ({total})"
    );
}

#[test]
fn rdkafka_committed_offsets_survive_consumer_and_broker_restart() {
    let mut server = Rivulet::start();
    let topic = "resume";
    let p = producer(&server, &[("acks", "all")]);
    produce_all(&p, topic, &numbered(10));
    drop(p);

    // First consumer reads five messages and commits.
    let c = consumer(&server, "resumers", &[]);
    c.subscribe(&[topic]).expect("subscribe");
    let first = consume_n(&c, 5, Duration::from_secs(60));
    assert_eq!(first.len(), 5);
    assert_eq!(first[0].1, 0);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(5))
        .expect("offset");
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(c);

    // A new consumer in the same group resumes at offset 5.
    let c = consumer(&server, "resumers", &[]);
    c.subscribe(&[topic]).expect("subscribe");
    let second = consume_n(&c, 5, Duration::from_secs(60));
    assert_eq!(second.first().map(|m| m.1), Some(5), "resumed after the commit");
    assert_eq!(second.len(), 5);
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    {
        // Scoped: the list holds partition references that must go before the consumer.
        let committed = c.committed(Duration::from_secs(10)).expect("committed");
        assert_eq!(
            committed.find_partition(topic, 0).map(|e| e.offset()),
            Some(Offset::Offset(10))
        );
    }
    drop(c);

    // Restart the broker (graceful: SIGTERM, exit 0), add messages, resume at 10.
    server.restart();
    let p = producer(&server, &[("acks", "all")]);
    produce_all(&p, topic, &numbered(3));
    let c = consumer(&server, "resumers", &[]);
    c.subscribe(&[topic]).expect("subscribe");
    let third = consume_n(&c, 3, Duration::from_secs(60));
    assert_eq!(
        third.iter().map(|m| m.1).collect::<Vec<_>>(),
        vec![10, 11, 12],
        "resumed after the broker restart"
    );
}

#[test]
fn rdkafka_100k_keyed_messages_over_8_partitions_keep_order_without_loss_or_duplicates() {
    let server = Rivulet::start();
    let topic = "hundred-k";
    create_topic(&server, topic, 8, &[]);
    let p = producer(
        &server,
        &[
            ("enable.idempotence", "true"),
            ("linger.ms", "20"),
            ("batch.num.messages", "5000"),
            ("queue.buffering.max.messages", "200000"),
        ],
    );
    let total = 100_000usize;
    let messages: Vec<(String, String)> = (0..total)
        .map(|i| (format!("key-{}", i % 977), format!("{i}")))
        .collect();
    let acks = produce_all(&p, topic, &messages);
    assert_eq!(acks.len(), total);

    let c = consumer(&server, "hundred-k-reader", &[("fetch.wait.max.ms", "100")]);
    assign_from_beginning(&c, topic, 8);
    let got = consume_n(&c, total, Duration::from_secs(180));
    assert_eq!(got.len(), total, "every message consumed");

    let mut seen = BTreeSet::new();
    let mut last_in_partition: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    for (partition, offset, key, value) in &got {
        let n: i64 = value.parse().expect("numeric value");
        assert!(seen.insert(n), "value {n} delivered twice");
        if let Some((prev_offset, prev_n)) = last_in_partition.get(partition) {
            assert!(
                offset > prev_offset,
                "offsets increase within partition {partition}"
            );
            assert!(n > *prev_n, "send order kept within partition {partition}");
        }
        last_in_partition.insert(*partition, (*offset, n));
        let owner = partition_of_key.entry(key.clone()).or_insert(*partition);
        assert_eq!(owner, partition, "key {key} stays on one partition");
    }
    assert_eq!(seen.len(), total);
    assert_eq!(last_in_partition.len(), 8, "all 8 partitions used");
    assert!(
        consume_n(&c, 1, Duration::from_secs(1)).is_empty(),
        "nothing extra"
    );
}

#[test]
fn rdkafka_admin_creates_topics_and_describes_real_configs() {
    let mut server = Rivulet::start();
    create_topic(
        &server,
        "configured",
        3,
        &[("retention.ms", "3600000"), ("cleanup.policy", "compact")],
    );
    // Topic configs are stored durably.
    server.restart();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .create()
        .expect("admin");
    let rt = runtime();
    let described = rt
        .block_on(admin.describe_configs([&ResourceSpecifier::Topic("configured")], &AdminOptions::new()))
        .expect("describe_configs");
    let resource = described
        .into_iter()
        .next()
        .expect("one result")
        .expect("described");
    let entries = resource.entry_map();
    assert_eq!(
        entries.get("retention.ms").and_then(|e| e.value.as_deref()),
        Some("3600000")
    );
    assert_eq!(
        entries.get("cleanup.policy").and_then(|e| e.value.as_deref()),
        Some("compact")
    );
    assert!(entries.contains_key("segment.bytes"));
    assert!(entries.contains_key("fsync.policy"));

    // A second create of the same topic fails with TOPIC_ALREADY_EXISTS.
    let again = rt
        .block_on(admin.create_topics(
            [&NewTopic::new("configured", 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create_topics");
    assert!(again[0].is_err(), "duplicate create must fail");
    let metadata = admin
        .inner()
        .fetch_metadata(Some("configured"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 3);
}

#[test]
fn rdkafka_fetch_long_poll_is_woken_by_an_append() {
    let server = Rivulet::start();
    let topic = "long-poll";
    create_topic(&server, topic, 1, &[]);
    let c = consumer(
        &server,
        "long-poll-reader",
        &[("fetch.wait.max.ms", "10000"), ("fetch.min.bytes", "1")],
    );
    assign_from_beginning(&c, topic, 1);
    // Let the consumer start its long poll on the empty partition.
    assert!(consume_n(&c, 1, Duration::from_secs(2)).is_empty());
    let p = producer(&server, &[("linger.ms", "0")]);
    let sent_at = Instant::now();
    produce_all(&p, topic, &numbered(1));
    let got = consume_n(&c, 1, Duration::from_secs(9));
    assert_eq!(got.len(), 1, "the waiting fetch returned the new message");
    assert!(
        sent_at.elapsed() < Duration::from_secs(5),
        "the append woke the fetch well before its 10 s wait ({:?})",
        sent_at.elapsed()
    );
}

#[test]
fn rdkafka_standalone_commit_round_trips_metadata_and_offsets_for_times() {
    let mut server = Rivulet::start();
    let topic = "standalone";
    let p = producer(&server, &[]);
    let before = rdkafka::util::millis_to_epoch(std::time::SystemTime::now());
    produce_all(&p, topic, &numbered(5));
    std::thread::sleep(Duration::from_millis(20));
    let middle = rdkafka::util::millis_to_epoch(std::time::SystemTime::now());
    produce_all(&p, topic, &numbered(5));
    drop(p);

    // offsets_for_times: the first offset at or after each timestamp.
    let c = consumer(&server, "standalone-group", &[]);
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(topic, 0, Offset::Offset(before))
        .expect("query");
    let found = c
        .offsets_for_times(query, Duration::from_secs(10))
        .expect("offsets_for_times");
    assert_eq!(
        found.find_partition(topic, 0).map(|e| e.offset()),
        Some(Offset::Offset(0))
    );
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(topic, 0, Offset::Offset(middle))
        .expect("query");
    let found = c
        .offsets_for_times(query, Duration::from_secs(10))
        .expect("offsets_for_times");
    assert_eq!(
        found.find_partition(topic, 0).map(|e| e.offset()),
        Some(Offset::Offset(5))
    );
    let (low, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!((low, high), (0, 10));

    // A consumer that assigns partitions itself commits outside any generation (-1).
    assign_from_beginning(&c, topic, 1);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(7))
        .expect("offset");
    tpl.find_partition(topic, 0)
        .expect("partition")
        .set_metadata("checkpoint-7");
    c.commit(&tpl, CommitMode::Sync).expect("standalone commit");
    drop(tpl);
    drop(c);

    server.restart();
    let c = consumer(&server, "standalone-group", &[]);
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, 0);
    {
        let committed = c
            .committed_offsets(wanted, Duration::from_secs(10))
            .expect("committed");
        let entry = committed.find_partition(topic, 0).expect("partition");
        assert_eq!(entry.offset(), Offset::Offset(7), "offset survives a restart");
        assert_eq!(entry.metadata(), "checkpoint-7", "metadata round-trips");
    }
}

#[test]
fn rdkafka_admin_deletes_topics() {
    let server = Rivulet::start();
    create_topic(&server, "doomed", 2, &[]);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .create()
        .expect("admin");
    let rt = runtime();
    let deleted = rt
        .block_on(admin.delete_topics(&["doomed"], &AdminOptions::new()))
        .expect("delete_topics");
    assert!(deleted[0].is_ok(), "{deleted:?}");
    assert!(!server.dir().join("data/topics/doomed").exists(), "data removed");
    let again = rt
        .block_on(admin.delete_topics(&["doomed"], &AdminOptions::new()))
        .expect("delete_topics");
    assert!(again[0].is_err(), "deleting a missing topic fails");
}

#[test]
fn rdkafka_admin_deletes_an_empty_group_and_its_offsets() {
    let server = Rivulet::start();
    let topic = "group-delete";
    let p = producer(&server, &[]);
    produce_all(&p, topic, &numbered(3));
    let c = consumer(&server, "to-delete", &[]);
    c.subscribe(&[topic]).expect("subscribe");
    assert_eq!(consume_n(&c, 3, Duration::from_secs(60)).len(), 3);
    c.commit_consumer_state(CommitMode::Sync).expect("commit");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .create()
        .expect("admin");
    let rt = runtime();
    let busy = rt
        .block_on(admin.delete_groups(&["to-delete"], &AdminOptions::new()))
        .expect("delete_groups");
    assert!(busy[0].is_err(), "a group with members is not deleted");
    drop(c);

    let deleted = rt
        .block_on(admin.delete_groups(&["to-delete"], &AdminOptions::new()))
        .expect("delete_groups");
    assert!(deleted[0].is_ok(), "{deleted:?}");
    let c = consumer(&server, "to-delete", &[]);
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, 0);
    let committed = c
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("committed");
    assert_eq!(
        committed.find_partition(topic, 0).map(|e| e.offset()),
        Some(Offset::Invalid),
        "offsets are gone with the group"
    );
}

/// librdkafka's CreatePartitions grows a topic (metadata shows the new partitions and a
/// record reaches one); a shrink is refused with INVALID_PARTITIONS; DescribeCluster names
/// this node.
#[test]
fn rdkafka_admin_adds_partitions_and_describe_cluster_names_the_node() {
    use rdkafka::admin::NewPartitions;
    use rdkafka::error::RDKafkaErrorCode;
    let server = Rivulet::start();
    create_topic(&server, "growing", 2, &[]);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .create()
        .expect("admin");
    let rt = runtime();
    let grown = rt
        .block_on(admin.create_partitions(&[NewPartitions::new("growing", 6)], &AdminOptions::new()))
        .expect("create_partitions");
    assert!(grown.iter().all(Result::is_ok), "{grown:?}");
    let shrunk = rt
        .block_on(admin.create_partitions(&[NewPartitions::new("growing", 3)], &AdminOptions::new()))
        .expect("create_partitions");
    assert!(
        matches!(shrunk.as_slice(), [Err((_, RDKafkaErrorCode::InvalidPartitions))]),
        "{shrunk:?}"
    );
    let c = consumer(&server, "describer", &[]);
    let md = c
        .fetch_metadata(Some("growing"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 6);
    let p = producer(&server, &[]);
    let delivered = rt
        .block_on(p.send(
            FutureRecord::<(), str>::to("growing").partition(5).payload("new"),
            Duration::from_secs(10),
        ))
        .expect("delivered to a new partition");
    assert_eq!(delivered.partition, 5);

    let request = kafka_protocol::messages::DescribeClusterRequest::default();
    let answer = rt
        .block_on(rivulet_bench::kafka::request_once(
            &server.bootstrap(),
            &request,
            1,
        ))
        .expect("DescribeCluster");
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.brokers.len(), 1);
    assert_eq!(answer.brokers[0].port, i32::from(server.port()));
    assert_eq!(answer.controller_id, answer.brokers[0].broker_id);
}

/// A compacted topic refuses a record without a key (INVALID_RECORD, as Kafka does) and
/// takes keyed records and tombstones.
#[test]
fn rdkafka_keyless_record_to_a_compacted_topic_is_refused() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let server = Rivulet::start();
    create_topic(&server, "profiles", 1, &[("cleanup.policy", "compact")]);
    let p = producer(&server, &[("retries", "0"), ("enable.idempotence", "false")]);
    let rt = runtime();
    let keyless = rt.block_on(p.send(
        FutureRecord::<str, str>::to("profiles").payload("no key"),
        Duration::from_secs(10),
    ));
    match keyless {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord), _)) => {}
        other => panic!("a keyless record was not refused with INVALID_RECORD: {other:?}"),
    }
    let keyed = rt.block_on(p.send(
        FutureRecord::to("profiles").key("user-1").payload("v1"),
        Duration::from_secs(10),
    ));
    assert!(keyed.is_ok(), "{keyed:?}");
    let tombstone = rt.block_on(p.send(
        FutureRecord::<str, str>::to("profiles").key("user-1"),
        Duration::from_secs(10),
    ));
    assert!(tombstone.is_ok(), "{tombstone:?}");
}

/// librdkafka's DeleteRecords moves a partition's low watermark; consumers from the
/// beginning start there, and the start survives kill -9.
#[test]
fn rdkafka_delete_records_moves_the_low_watermark_across_a_crash() {
    let mut server = Rivulet::start();
    create_topic(&server, "trimmed", 1, &[]);
    let p = producer(&server, &[]);
    produce_all(&p, "trimmed", &numbered(10));
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .create()
        .expect("admin");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("trimmed", 0, Offset::Offset(6))
        .expect("tpl");
    let rt = runtime();
    let result = rt
        .block_on(admin.delete_records(&tpl, &AdminOptions::new()))
        .expect("delete_records");
    let element = &result.elements()[0];
    assert!(element.error().is_ok(), "{:?}", element.error());
    assert_eq!(element.offset(), Offset::Offset(6), "the new low watermark");
    drop(admin);
    let c = consumer(&server, "after-trim", &[]);
    assert_eq!(
        c.fetch_watermarks("trimmed", 0, Duration::from_secs(10))
            .expect("watermarks"),
        (6, 10)
    );
    assign_from_beginning(&c, "trimmed", 1);
    let got = consume_n(&c, 4, Duration::from_secs(30));
    let offsets: Vec<i64> = got.iter().map(|(_, o, _, _)| *o).collect();
    assert_eq!(offsets, vec![6, 7, 8, 9]);
    drop(c);
    server.kill9();
    server.respawn();
    let c = consumer(&server, "after-crash", &[]);
    assert_eq!(
        c.fetch_watermarks("trimmed", 0, Duration::from_secs(10))
            .expect("watermarks"),
        (6, 10),
        "the deleted records stay deleted after kill -9"
    );
}

/// Two consumers with the same `group.instance.id`: the newer one takes over and the older
/// one is fenced (FENCED_INSTANCE_ID, fatal for it) instead of the two replacing each other
/// forever.
#[test]
fn rdkafka_duplicate_static_member_is_fenced() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let server = Rivulet::start();
    create_topic(&server, "statics", 2, &[]);
    let p = producer(&server, &[]);
    produce_all(&p, "statics", &numbered(20));
    let settings = [
        ("group.instance.id", "worker-1"),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "200"),
    ];
    let first = consumer(&server, "static-group", &settings);
    first.subscribe(&["statics"]).expect("subscribe");
    let got = consume_n(&first, 20, Duration::from_secs(30));
    assert_eq!(got.len(), 20);
    let second = consumer(&server, "static-group", &settings);
    second.subscribe(&["statics"]).expect("subscribe");
    // The second joins (replacing the first); the first's next heartbeat is fenced.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fenced = false;
    while !fenced && Instant::now() < deadline {
        let _ = second.poll(Duration::from_millis(50));
        if let Some(Err(e)) = first.poll(Duration::from_millis(50)) {
            fenced = matches!(
                e,
                KafkaError::MessageConsumption(RDKafkaErrorCode::FencedInstanceId)
                    | KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::FencedInstanceId)
            ) || e.rdkafka_error_code() == Some(RDKafkaErrorCode::FencedInstanceId);
        }
    }
    assert!(fenced, "the older static member was not fenced");
    // No ping-pong: the second stays the only member for a while.
    let members = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rivulet"))
            .args(["group", "describe", "static-group", "--format", "json"])
            .env("RIVULET_BROKERS", server.bootstrap())
            .output()
            .expect("rivulet group describe");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let count = v[0]["members"].as_u64()?;
        let owners: BTreeSet<String> = v[0]["partitions"]
            .as_array()?
            .iter()
            .filter_map(|p| p["member_id"].as_str().map(str::to_string))
            .collect();
        Some((count, owners))
    };
    let settled = Instant::now() + Duration::from_secs(3);
    let mut seen = BTreeSet::new();
    while Instant::now() < settled {
        let _ = second.poll(Duration::from_millis(100));
        if let Some((count, owners)) = members() {
            assert!(count <= 1, "{count} members hold one instance");
            seen.extend(owners);
        }
    }
    assert!(seen.len() <= 1, "the member changed while both ran: {seen:?}");
    // rust-rdkafka's close of these consumers can wait forever on an assignment step
    // librdkafka no longer performs once a member of the instance was fenced (seen under
    // load); the test's process ends soon, so they are left open.
    std::mem::forget(first);
    std::mem::forget(second);
}

/// Two librdkafka consumers started together share the new group's first generation (the
/// broker waits group.initial.rebalance.delay.ms, 3 s by default, before completing it)
/// instead of rebalancing again at once.
#[test]
fn rdkafka_consumers_started_together_share_the_first_generation() {
    let server = Rivulet::start();
    create_topic(&server, "together", 4, &[]);
    let a = consumer(&server, "together-group", &[]);
    let b = consumer(&server, "together-group", &[]);
    let started = Instant::now();
    a.subscribe(&["together"]).expect("subscribe");
    let _ = a.poll(Duration::from_millis(300));
    b.subscribe(&["together"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let assigned = |c: &BaseConsumer| c.assignment().map(|l| l.count()).unwrap_or(0);
    while (assigned(&a) == 0 || assigned(&b) == 0) && Instant::now() < deadline {
        let _ = a.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
    }
    assert_eq!(assigned(&a) + assigned(&b), 4, "both consumers got partitions");
    assert!(
        started.elapsed() >= Duration::from_millis(2_500),
        "the first generation completed before the initial delay: {:?}",
        started.elapsed()
    );
    let log = server.log();
    assert!(
        log.contains("Group rebalanced generation=1 members=2"),
        "the first generation did not hold both consumers"
    );
    assert!(
        !log.contains("generation=1 members=1"),
        "a one-member first generation"
    );
}

/// Kafka's standard topic configs are accepted when creating a topic, described back with
/// their source (the topic's override, or Kafka's default), and kept across a restart; a
/// bad value and an unknown key are refused with INVALID_CONFIG naming the key.
#[test]
fn rdkafka_standard_topic_configs_are_accepted_described_and_validated() {
    use rdkafka::admin::ConfigSource;
    use rdkafka::error::RDKafkaErrorCode;
    let mut server = Rivulet::start();
    let standard = [
        ("compression.type", "zstd"),
        ("message.timestamp.type", "CreateTime"),
        ("min.insync.replicas", "1"),
        ("unclean.leader.election.enable", "false"),
        ("min.compaction.lag.ms", "60000"),
        ("message.format.version", "3.0-IV1"),
    ];
    create_topic(&server, "standard", 1, &standard);
    server.restart();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .create()
        .expect("admin");
    let rt = runtime();
    let described = rt
        .block_on(admin.describe_configs([&ResourceSpecifier::Topic("standard")], &AdminOptions::new()))
        .expect("describe_configs");
    let resource = described
        .into_iter()
        .next()
        .expect("one result")
        .expect("described");
    let entries = resource.entry_map();
    for (key, value) in standard {
        let entry = entries.get(key).unwrap_or_else(|| panic!("{key} not described"));
        assert_eq!(entry.value.as_deref(), Some(value), "{key}");
        assert_eq!(entry.source, ConfigSource::DynamicTopic, "{key}");
    }
    let preallocate = entries.get("preallocate").expect("preallocate described");
    assert_eq!(preallocate.value.as_deref(), Some("false"));
    assert_eq!(preallocate.source, ConfigSource::Default);

    for (key, value) in [("compression.type", "brotli"), ("no.such.key", "1")] {
        let topic = NewTopic::new("refused", 1, TopicReplication::Fixed(1)).set(key, value);
        let created = rt
            .block_on(admin.create_topics([&topic], &AdminOptions::new()))
            .expect("create_topics");
        assert!(
            matches!(created.as_slice(), [Err((_, RDKafkaErrorCode::InvalidConfig))]),
            "{key}={value}: {created:?}"
        );
    }
}

/// `message.timestamp.type=LogAppendTime`: records carry the broker's append time, whatever
/// timestamp the producer gave them, and consumers see the LogAppendTime type.
#[test]
fn rdkafka_log_append_time_topic_stamps_records_with_the_broker_clock() {
    use rdkafka::message::Timestamp;
    let server = Rivulet::start();
    create_topic(
        &server,
        "stamped",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let p = producer(&server, &[]);
    let rt = runtime();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let delivered = rt
        .block_on(p.send(
            FutureRecord::to("stamped").key("k").payload("v").timestamp(1_000),
            Duration::from_secs(10),
        ))
        .expect("delivered");
    assert_eq!(delivered.offset, 0);
    let c = consumer(&server, "stamped-reader", &[]);
    assign_from_beginning(&c, "stamped", 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let stamp = loop {
        assert!(Instant::now() < deadline, "record not consumed");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            break m.timestamp();
        }
    };
    match stamp {
        Timestamp::LogAppendTime(ms) => assert!(
            ms >= before - 1_000,
            "append time {ms} is older than the send ({before})"
        ),
        other => panic!("expected a LogAppendTime timestamp, got {other:?}"),
    }
}
