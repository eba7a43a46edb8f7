//! Kafka transactions against `rivulet serve`, driven by librdkafka's transactional producer
//! (InitProducerId with a `transactional.id`, AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn) and read by `read_committed` consumers (last stable offset,
//! aborted transactions): visibility, fencing, consume-transform-produce, and exactly-once
//! across kill -9.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::harness::Rivulet;

/// Timeout of one transactional call (init, send offsets, commit, abort) on a healthy broker.
const TXN_CALL: Duration = Duration::from_secs(30);

/// Values per partition.
type Values = BTreeMap<i32, Vec<String>>;

/// (partition, offset, value) of a consumed record.
type Polled = (i32, i64, String);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = runtime()
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .expect("create_topics");
    for r in results {
        r.expect("topic created");
    }
}

/// A transactional producer (idempotent, acks=all, as librdkafka implies) for `id`.
fn txn_producer(bootstrap: &str, id: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("linger.ms", "5");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create().expect("transactional producer")
}

/// Queues `value` for `partition` of `topic` (inside the producer's open transaction, if any).
fn enqueue(
    p: &FutureProducer,
    topic: &str,
    partition: i32,
    value: &str,
) -> KafkaResult<rdkafka::producer::DeliveryFuture> {
    p.send_result(
        FutureRecord::<(), str>::to(topic)
            .partition(partition)
            .payload(value),
    )
    .map_err(|(e, _)| e)
}

/// Sends `(partition, value)` records and waits until each is acknowledged, so they are in
/// the log whatever later happens to their transaction.
fn send_acked(p: &FutureProducer, topic: &str, records: &[(i32, String)]) {
    let deliveries: Vec<_> = records
        .iter()
        .map(|(partition, value)| enqueue(p, topic, *partition, value).expect("enqueue"))
        .collect();
    runtime().block_on(async {
        for d in deliveries {
            d.await
                .expect("delivery report")
                .map_err(|(e, _)| e)
                .expect("delivered");
        }
    });
}

fn value_of<M: Message>(m: &M) -> String {
    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
}

/// A consumer assigned to every partition of a topic from the beginning, collecting values.
struct Reader {
    consumer: BaseConsumer,
    what: String,
    values: Values,
    at_end: Vec<bool>,
}

impl Reader {
    /// `isolation` is `read_committed` or `read_uncommitted`.
    fn new(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("{topic}-{isolation}-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", isolation)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        Reader {
            consumer,
            what: format!("{isolation} read of {topic}"),
            values: (0..partitions).map(|p| (p, Vec::new())).collect(),
            at_end: vec![false; partitions as usize],
        }
    }

    /// Polls until at least `at_least` values arrived and every partition then reported its
    /// end (the last stable offset under read_committed, the high watermark otherwise).
    fn read_to_end(&mut self, at_least: usize) -> &Values {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n: usize = self.values.values().map(Vec::len).sum();
            if n >= at_least && self.at_end.iter().all(|e| *e) {
                return &self.values;
            }
            let counts: Vec<usize> = self.values.values().map(Vec::len).collect();
            assert!(
                Instant::now() < deadline,
                "{}: {n} of at least {at_least} records (per partition {counts:?}, at end {:?})",
                self.what,
                self.at_end
            );
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    self.at_end[m.partition() as usize] = false;
                    self.values.entry(m.partition()).or_default().push(value_of(&m));
                }
                Some(Err(KafkaError::PartitionEOF(p))) => self.at_end[p as usize] = true,
                Some(Err(e)) => eprintln!("{}: consumer error (retrying): {e}", self.what),
                None => {}
            }
        }
    }
}

/// Everything in `topic` from the beginning under `isolation`, once at least `at_least`
/// records arrived and every partition reached its end.
fn read_to_end(bootstrap: &str, topic: &str, partitions: i32, isolation: &str, at_least: usize) -> Values {
    Reader::new(bootstrap, topic, partitions, isolation)
        .read_to_end(at_least)
        .clone()
}

/// Up to `max` records: returns once `max` arrived, a poll comes back empty after the first
/// record, or `wait` passed.
fn poll_batch(c: &BaseConsumer, max: usize, wait: Duration, who: &str) -> Vec<Polled> {
    let deadline = Instant::now() + wait;
    let mut batch = Vec::new();
    while batch.len() < max && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => batch.push((m.partition(), m.offset(), value_of(&m))),
            Some(Err(e)) => eprintln!("{who}: consumer error (librdkafka retries): {e}"),
            None if !batch.is_empty() => break,
            None => {}
        }
    }
    batch
}

/// `topic`'s partitions at the given offsets.
fn offsets_list(topic: &str, offsets: &BTreeMap<i32, i64>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .expect("offset");
    }
    tpl
}

/// `(partition, "t{t}-p{partition}-{i}")` for `per` records per partition of transaction `t`.
fn txn_records(t: u32, partitions: i32, per: usize) -> Vec<(i32, String)> {
    (0..per)
        .flat_map(|i| (0..partitions).map(move |p| (p, format!("t{t}-p{p}-{i}"))))
        .collect()
}

/// The values of `records` that went to `partition`, in order.
fn values_in(records: &[(i32, String)], partition: i32) -> Vec<String> {
    records
        .iter()
        .filter(|(p, _)| *p == partition)
        .map(|(_, v)| v.clone())
        .collect()
}

/// `"0", "2", "4", ...` (partition 0) or `"1", "3", ...` (partition 1): the values of a topic
/// whose record `i` went to partition `i % 2`.
fn evens_or_odds(partition: i32, total: usize) -> Vec<String> {
    (partition as usize..total)
        .step_by(2)
        .map(|i| i.to_string())
        .collect()
}

/// Writes records `range` to `topic` (value `i` to partition `i % 2`) with a plain idempotent
/// producer and waits until all are acknowledged.
fn feed(p: &FutureProducer, topic: &str, range: std::ops::Range<usize>) {
    let records: Vec<(i32, String)> = range.map(|i| ((i % 2) as i32, i.to_string())).collect();
    send_acked(p, topic, &records);
}

fn plain_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "200")
        .create()
        .expect("producer")
}

/// Asserts `got` is exactly `expected`, naming the first difference instead of printing both.
fn assert_sequence(got: &[String], expected: &[String], what: &str) {
    if got == expected {
        return;
    }
    let at = got
        .iter()
        .zip(expected)
        .position(|(g, e)| g != e)
        .unwrap_or(got.len().min(expected.len()));
    panic!(
        "{what}: {} values where {} were expected; first difference at index {at}: got {:?}, expected {:?}",
        got.len(),
        expected.len(),
        got.get(at.saturating_sub(2)..(at + 3).min(got.len())),
        expected.get(at.saturating_sub(2)..(at + 3).min(expected.len())),
    );
}

fn committed_offsets(
    c: &BaseConsumer,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> KafkaResult<BTreeMap<i32, i64>> {
    let mut wanted = TopicPartitionList::new();
    for p in 0..partitions {
        wanted.add_partition(topic, p);
    }
    let committed = c.committed_offsets(wanted, timeout)?;
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let entry = committed.find_partition(topic, p).expect("partition asked for");
        entry.error()?;
        let offset = match entry.offset() {
            Offset::Offset(o) => o,
            _ => 0, // nothing committed yet
        };
        out.insert(p, offset);
    }
    Ok(out)
}

fn is_fencing(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    )
}

// ---------------------------------------------------------------------------------------
// Visibility, fencing, consume-transform-produce
// ---------------------------------------------------------------------------------------

/// Committed transactions are visible to read_committed consumers and an aborted one is not,
/// although its records are in the log: read_uncommitted sees all three transactions, in
/// order per partition, and each transaction's marker takes one offset per partition.
#[test]
fn rdkafka_transactions_commit_and_abort_are_seen_by_read_committed_consumers() {
    let server = Rivulet::start();
    let (topic, partitions, per) = ("txn-visibility", 3, 4);
    create_topic(&server.bootstrap(), topic, partitions);
    let p = txn_producer(&server.bootstrap(), "txn-visibility-producer", &[]);
    p.init_transactions(TXN_CALL).expect("init_transactions");
    for (t, commit) in [(1, true), (2, false), (3, true)] {
        p.begin_transaction().expect("begin_transaction");
        // Acknowledged before the abort, so the aborted records really are in the log.
        send_acked(&p, topic, &txn_records(t, partitions, per));
        if commit {
            p.commit_transaction(TXN_CALL).expect("commit_transaction");
        } else {
            p.abort_transaction(TXN_CALL).expect("abort_transaction");
        }
    }

    let total = partitions as usize * per;
    let committed = read_to_end(
        &server.bootstrap(),
        topic,
        partitions,
        "read_committed",
        2 * total,
    );
    let uncommitted = read_to_end(
        &server.bootstrap(),
        topic,
        partitions,
        "read_uncommitted",
        3 * total,
    );
    for partition in 0..partitions {
        let of = |t| values_in(&txn_records(t, partitions, per), partition);
        assert_eq!(
            committed[&partition],
            [of(1), of(3)].concat(),
            "read_committed, partition {partition}: transactions 1 and 3, nothing of 2"
        );
        assert_eq!(
            uncommitted[&partition],
            [of(1), of(2), of(3)].concat(),
            "read_uncommitted, partition {partition}: the aborted records were written"
        );
    }
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .create()
        .expect("consumer");
    for partition in 0..partitions {
        let (low, high) = c
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .expect("watermarks");
        assert_eq!(
            (low, high),
            (0, 3 * (per as i64 + 1)),
            "partition {partition}: {per} records and one control record per transaction"
        );
    }
}

/// A read_committed consumer stops at the last stable offset: nothing from the first record
/// of an open transaction on, not even a plain record written after it, until the
/// transaction commits; then it sees both, in log order.
#[test]
fn rdkafka_read_committed_stops_at_an_open_transaction_until_it_commits() {
    let server = Rivulet::start();
    let topic = "txn-lso";
    create_topic(&server.bootstrap(), topic, 1);
    let txn = txn_producer(&server.bootstrap(), "txn-lso-producer", &[]);
    txn.init_transactions(TXN_CALL).expect("init_transactions");
    txn.begin_transaction().expect("begin_transaction");
    let open: Vec<(i32, String)> = (0..3).map(|i| (0, format!("open-{i}"))).collect();
    send_acked(&txn, topic, &open);
    send_acked(
        &plain_producer(&server.bootstrap()),
        topic,
        &[(0, "plain-after".to_string())],
    );

    let mut committed = Reader::new(&server.bootstrap(), topic, 1, "read_committed");
    assert_eq!(
        committed.read_to_end(0)[&0],
        Vec::<String>::new(),
        "read_committed ends at the open transaction's first offset"
    );
    let all = [values_in(&open, 0), vec!["plain-after".to_string()]].concat();
    assert_eq!(
        read_to_end(&server.bootstrap(), topic, 1, "read_uncommitted", 4)[&0],
        all,
        "read_uncommitted reads past the open transaction"
    );

    txn.commit_transaction(TXN_CALL).expect("commit_transaction");
    assert_eq!(
        committed.read_to_end(4)[&0],
        all,
        "after the commit the same read_committed consumer sees both, in log order"
    );
}

/// A second producer with the same transactional.id fences the first: its InitProducerId
/// aborts the first one's open transaction, the zombie can neither write nor commit (a
/// fencing error), and only the new producer's transaction is visible to read_committed.
#[test]
fn rdkafka_zombie_producer_is_fenced() {
    let server = Rivulet::start();
    let bootstrap = server.bootstrap();
    let topic = "txn-zombie";
    create_topic(&bootstrap, topic, 2);
    let zombie = txn_producer(&bootstrap, "txn-zombie-id", &[("message.timeout.ms", "10000")]);
    zombie.init_transactions(TXN_CALL).expect("A: init_transactions");
    zombie.begin_transaction().expect("A: begin_transaction");
    send_acked(&zombie, topic, &[(0, "a-0".to_string()), (1, "a-1".to_string())]);

    let fresh = txn_producer(&bootstrap, "txn-zombie-id", &[]);
    fresh
        .init_transactions(TXN_CALL)
        .expect("B: init_transactions fences A and aborts its open transaction");

    // A partition already in A's transaction: the Produce itself carries the old epoch.
    let late = enqueue(&zombie, topic, 0, "a-late").expect("enqueue");
    let late = runtime().block_on(late).expect("delivery report");
    assert!(
        late.is_err(),
        "a fenced producer's record must not be written: {late:?}"
    );
    let err = zombie
        .commit_transaction(TXN_CALL)
        .expect_err("the fenced producer's commit must fail");
    assert!(
        is_fencing(err.rdkafka_error_code()),
        "A's commit fails with a fencing error (librdkafka reports PRODUCER_FENCED and \
         INVALID_PRODUCER_EPOCH as _FENCED), not: {err} ({:?})",
        err.rdkafka_error_code()
    );

    fresh.begin_transaction().expect("B: begin_transaction");
    send_acked(&fresh, topic, &[(0, "b-0".to_string()), (1, "b-1".to_string())]);
    fresh.commit_transaction(TXN_CALL).expect("B: commit_transaction");

    let committed = read_to_end(&bootstrap, topic, 2, "read_committed", 2);
    assert_eq!(committed[&0], ["b-0"], "partition 0: B's record only");
    assert_eq!(committed[&1], ["b-1"], "partition 1: B's record only");
    let uncommitted = read_to_end(&bootstrap, topic, 2, "read_uncommitted", 4);
    assert_eq!(
        uncommitted[&0],
        ["a-0", "b-0"],
        "partition 0: A's aborted record is in the log, its late one is not"
    );
    assert_eq!(uncommitted[&1], ["a-1", "b-1"]);
}

/// The consume-transform-produce loop: each polled batch is produced to the output and its
/// input offsets are committed for the consumer's group inside the same transaction
/// (send_offsets_to_transaction with the consumer's group metadata). The output holds each
/// input once, and the group's committed offsets are the input's end offsets.
#[test]
fn rdkafka_consume_transform_produce_commits_offsets_with_the_transaction() {
    let server = Rivulet::start();
    let bootstrap = server.bootstrap();
    let (input, output, group, total) = ("ctp-in", "ctp-out", "ctp-group", 200usize);
    create_topic(&bootstrap, input, 2);
    create_topic(&bootstrap, output, 2);
    feed(&plain_producer(&bootstrap), input, 0..total);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    let producer = txn_producer(&bootstrap, "ctp-copier", &[]);
    producer.init_transactions(TXN_CALL).expect("init_transactions");

    let mut copied = 0;
    let mut transactions = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while copied < total {
        assert!(Instant::now() < deadline, "copied {copied} of {total}");
        let batch = poll_batch(&consumer, 25, Duration::from_secs(1), "ctp");
        if batch.is_empty() {
            continue;
        }
        let mut next = BTreeMap::new();
        producer.begin_transaction().expect("begin_transaction");
        for (p, offset, value) in &batch {
            enqueue(&producer, output, *p, &format!("copy-{value}")).expect("enqueue");
            next.insert(*p, offset + 1);
        }
        let group_metadata = consumer.group_metadata().expect("group metadata");
        producer
            .send_offsets_to_transaction(&offsets_list(input, &next), &group_metadata, TXN_CALL)
            .expect("send_offsets_to_transaction");
        producer.commit_transaction(TXN_CALL).expect("commit_transaction");
        copied += batch.len();
        transactions += 1;
    }
    println!("consume-transform-produce: {copied} records in {transactions} transactions");
    assert_eq!(copied, total, "the input was read once");

    let out = read_to_end(&bootstrap, output, 2, "read_committed", total);
    for p in 0..2 {
        let expected: Vec<String> = evens_or_odds(p, total)
            .iter()
            .map(|v| format!("copy-{v}"))
            .collect();
        assert_sequence(&out[&p], &expected, &format!("output partition {p}"));
    }
    let committed = consumer.committed(TXN_CALL).expect("committed");
    for p in 0..2 {
        let (_, end) = consumer
            .fetch_watermarks(input, p, Duration::from_secs(10))
            .expect("watermarks");
        assert_eq!(end, (total / 2) as i64);
        assert_eq!(
            committed.find_partition(input, p).map(|e| e.offset()),
            Some(Offset::Offset(end)),
            "the group's committed offset of input partition {p} is its end offset"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Exactly-once across kill -9
// ---------------------------------------------------------------------------------------

/// A small deterministic RNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

const EOS_KILL_ROUNDS: usize = 20;
const EOS_RECORDS: usize = 2_000;
const EOS_PER_TXN: usize = 25;
/// Time each transaction spends "processing" between its steps.
const EOS_PROCESSING: Duration = Duration::from_millis(15);
const EOS_INPUT: &str = "eos-in";
const EOS_OUTPUT: &str = "eos-out";
const EOS_GROUP: &str = "eos-copier";
/// Timeout of one transactional call of the copier: shorter than [`TXN_CALL`], so a call that
/// a kill left hanging fails and the copier starts over instead of waiting.
const EOS_CALL: Duration = Duration::from_secs(10);

/// What the copier went through.
#[derive(Debug, Default)]
struct CopyStats {
    sessions: u64,
    transactions: u64,
    aborted: u64,
    fatal: u64,
    errors: Vec<String>,
}

/// Shared between the test and its copier thread.
#[derive(Default)]
struct CopyShared {
    /// Input records whose copy is committed (the sum of the committed input offsets).
    copied: AtomicU64,
    stop: AtomicBool,
    /// True from begin_transaction until commit_transaction returns.
    in_txn: AtomicBool,
}

/// Tells the copier to stop when the test ends, also when it fails.
struct StopOnDrop(Arc<CopyShared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

fn eos_producer(bootstrap: &str) -> FutureProducer {
    txn_producer(
        bootstrap,
        "eos-copier",
        &[
            ("transaction.timeout.ms", "30000"),
            ("message.timeout.ms", "10000"),
            ("reconnect.backoff.ms", "20"),
            ("reconnect.backoff.max.ms", "200"),
            ("retry.backoff.ms", "20"),
            ("retry.backoff.max.ms", "200"),
        ],
    )
}

fn eos_consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", EOS_GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create()
        .expect("consumer")
}

/// Copies [`EOS_INPUT`] to [`EOS_OUTPUT`] (same partition) in transactions until all
/// [`EOS_RECORDS`] are copied, starting a new session (consumer and producer) after any error.
fn copy_exactly_once(bootstrap: &str, shared: &CopyShared) -> CopyStats {
    let mut stats = CopyStats::default();
    // Input offsets whose transaction's commit_transaction returned Ok.
    let mut acknowledged: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(170);
    while !shared.stop.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "copier: not done in time: {stats:?}");
        stats.sessions += 1;
        let producer = eos_producer(bootstrap);
        match copy_session(bootstrap, &producer, &mut acknowledged, shared, &mut stats) {
            Ok(()) => break,
            Err(e) => settle_failed_transaction(&producer, e, &mut stats),
        }
    }
    stats
}

/// After an error: aborts the transaction if librdkafka says it needs an abort; a fatal
/// producer is just dropped. Either way the caller starts a new session.
fn settle_failed_transaction(producer: &FutureProducer, e: KafkaError, stats: &mut CopyStats) {
    if stats.errors.len() < 20 {
        stats.errors.push(e.to_string());
    }
    if let KafkaError::Transaction(te) = &e {
        if te.is_fatal() {
            stats.fatal += 1;
        } else if te.txn_requires_abort() {
            stats.aborted += 1;
            if let Err(e) = producer.abort_transaction(EOS_CALL) {
                stats.errors.push(format!("abort_transaction: {e}"));
            }
        }
    }
}

/// One incarnation of the copier: the new producer's init_transactions fences the previous
/// one and settles its open transaction; then the consumer resumes at the group's committed
/// offsets. Returns Ok once everything is copied (or the test stops), or the first error.
fn copy_session(
    bootstrap: &str,
    producer: &FutureProducer,
    acknowledged: &mut BTreeMap<i32, i64>,
    shared: &CopyShared,
    stats: &mut CopyStats,
) -> KafkaResult<()> {
    producer.init_transactions(EOS_CALL)?;
    let consumer = eos_consumer(bootstrap);
    let mut positions = committed_offsets(&consumer, EOS_INPUT, 2, EOS_CALL)?;
    for (p, at) in &positions {
        let acked = acknowledged.get(p).copied().unwrap_or(0);
        assert!(
            *at >= acked,
            "input partition {p}: committed offset {at} is behind {acked}, whose commit was acknowledged"
        );
    }
    consumer.assign(&offsets_list(EOS_INPUT, &positions))?;
    let group_metadata = consumer.group_metadata().expect("group metadata");
    loop {
        let copied: i64 = positions.values().sum();
        shared.copied.store(copied as u64, Ordering::SeqCst);
        if copied >= EOS_RECORDS as i64 || shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let batch = poll_batch(&consumer, EOS_PER_TXN, Duration::from_millis(500), "copier");
        if batch.is_empty() {
            continue;
        }
        producer.begin_transaction()?;
        shared.in_txn.store(true, Ordering::SeqCst);
        for (p, offset, value) in &batch {
            let expected = positions[p];
            assert_eq!(
                *offset, expected,
                "input partition {p}: the consumer skipped or repeated records"
            );
            enqueue(producer, EOS_OUTPUT, *p, value)?;
            positions.insert(*p, offset + 1);
        }
        // Processing time, so kills land inside transactions as well as between them.
        std::thread::sleep(EOS_PROCESSING);
        producer.send_offsets_to_transaction(
            &offsets_list(EOS_INPUT, &positions),
            &group_metadata,
            EOS_CALL,
        )?;
        std::thread::sleep(EOS_PROCESSING);
        let committed = producer.commit_transaction(EOS_CALL);
        shared.in_txn.store(false, Ordering::SeqCst);
        committed?;
        stats.transactions += 1;
        acknowledged.clone_from(&positions);
    }
}

/// Waits until the copier has committed the copy of at least `n` records.
fn wait_for_copied(shared: &CopyShared, n: usize, copier: &JoinHandle<CopyStats>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let copied = shared.copied.load(Ordering::SeqCst);
        if copied >= n as u64 {
            return;
        }
        assert!(
            !copier.is_finished(),
            "the copier stopped early, waiting for {what} (its panic is printed above)"
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {copied} of {n} records copied"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Exactly-once across kill -9: a transactional consume-transform-produce copier (about 50
/// records per transaction, offsets sent to the transaction) copies 2,000 records while the
/// broker is killed -9 and restarted 20 times, each time while a fresh slice of input is being
/// copied. The copier recovers from every error by aborting (when librdkafka asks for it) and
/// starting over with a new producer (whose init fences the old one) and a consumer at the
/// committed offsets. read_committed then sees every input exactly once, in order, on the
/// input's partition, and the group's offsets are the input's end.
#[test]
fn transactions_survive_kill_9_exactly_once() {
    let mut server = Rivulet::start();
    let bootstrap = server.bootstrap();
    create_topic(&bootstrap, EOS_INPUT, 2);
    create_topic(&bootstrap, EOS_OUTPUT, 2);
    let feeder = plain_producer(&bootstrap);
    let shared = Arc::new(CopyShared::default());
    let _stop = StopOnDrop(shared.clone());
    let copier = {
        let shared = shared.clone();
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || copy_exactly_once(&bootstrap, &shared))
    };

    let per_round = EOS_RECORDS / EOS_KILL_ROUNDS;
    let mut rng = Rng::new(0x7478_6e6b_696c_6c39);
    let started = Instant::now();
    let mut kills_in_txn = 0;
    for round in 0..EOS_KILL_ROUNDS {
        // The copier is healthy again: it caught up with everything fed so far.
        wait_for_copied(
            &shared,
            round * per_round,
            &copier,
            &format!("the copy before kill {round}"),
        );
        feed(&feeder, EOS_INPUT, round * per_round..(round + 1) * per_round);
        // A random moment of this slice's copy: polling, producing, sending offsets, committing.
        std::thread::sleep(Duration::from_millis(rng.below(120)));
        if shared.in_txn.load(Ordering::SeqCst) {
            kills_in_txn += 1;
        }
        server.kill9();
        server.respawn();
    }
    wait_for_copied(&shared, EOS_RECORDS, &copier, "the end of the copy");
    let stats = copier.join().expect("copier thread");
    let out = read_to_end(&bootstrap, EOS_OUTPUT, 2, "read_committed", EOS_RECORDS);
    let written: usize = read_to_end(&bootstrap, EOS_OUTPUT, 2, "read_uncommitted", EOS_RECORDS)
        .values()
        .map(Vec::len)
        .sum();
    println!(
        "exactly-once: {EOS_KILL_ROUNDS} kills ({kills_in_txn} inside a transaction) in {:?}; {} sessions, {} transactions committed, \
         {} aborted, {} fatal; {} records written to the output, {EOS_RECORDS} committed; errors: {:?}",
        started.elapsed(),
        stats.sessions,
        stats.transactions,
        stats.aborted,
        stats.fatal,
        written,
        stats.errors
    );

    assert!(
        kills_in_txn >= EOS_KILL_ROUNDS / 4,
        "only {kills_in_txn} of {EOS_KILL_ROUNDS} kills landed inside a transaction"
    );
    for p in 0..2 {
        assert_sequence(
            &out[&p],
            &evens_or_odds(p, EOS_RECORDS),
            &format!("read_committed output partition {p}: each input once, in order"),
        );
    }
    let c = eos_consumer(&bootstrap);
    let committed = committed_offsets(&c, EOS_INPUT, 2, TXN_CALL).expect("committed offsets");
    let half = (EOS_RECORDS / 2) as i64;
    assert_eq!(
        committed,
        BTreeMap::from([(0, half), (1, half)]),
        "the group's committed offsets are the input's end offsets"
    );
}
