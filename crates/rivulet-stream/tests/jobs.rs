//! Jobs against a real broker: embedded in the process, and over the Kafka protocol
//! (librdkafka against Rivulet's Kafka front end). Every output is compared with a plain
//! batch computation over the same input.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use rivulet_broker::{Broker, BrokerConfig};
use rivulet_sdk::{EmbeddedTransport, InRecord, KafkaTransport, OutRecord, Transport};
use rivulet_stream::task::{HEADER_REASON, HEADER_SOURCE, HEADER_WINDOW_START};
use rivulet_stream::{Guarantee, JobOptions, Pipeline, Stream, WindowResult, Windows};

const PARTITIONS: i32 = 3;
const WINDOW_MS: i64 = 1_000;
const BOUND_MS: i64 = 300;
const LATENESS_MS: i64 = 200;
/// Lateness beyond any disorder of the input: nothing is late.
const NEVER_LATE_MS: i64 = 1_000_000;
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Click {
    user: u32,
    at_ms: i64,
    cents: i64,
}

/// (user, window start) -> (count, sum)
type Totals = BTreeMap<(u32, i64), (u64, i64)>;
/// (partition, offset, window start) of each late record
type Lates = Vec<(i32, i64, i64)>;

/// Totals per user and window. Users are partitioned by `user % 3` on input; a
/// repartitioned job spreads them by hash instead, where a task's watermark is the minimum
/// over the upstream tasks, so late records are compared exactly only without
/// repartitioning.
fn pipeline(repartition: bool) -> Pipeline {
    let s = Stream::<Click>::json(&["clicks"])
        .event_time(|c| c.at_ms)
        .filter(|c| c.cents >= 0);
    let keyed = if repartition {
        s.key_by(|c| c.user)
    } else {
        s.key_by_partitioned(|c| c.user)
    };
    let lateness = if repartition { NEVER_LATE_MS } else { LATENESS_MS };
    keyed
        .window(Windows::tumbling(Duration::from_millis(WINDOW_MS as u64)))
        .allowed_lateness(Duration::from_millis(lateness as u64))
        .aggregate(
            || (0u64, 0i64),
            |a, c| {
                a.0 += 1;
                a.1 += c.cents;
            },
        )
        .to("click-totals")
}

fn options(name: &str) -> JobOptions {
    JobOptions::new(name).out_of_orderness(Duration::from_millis(BOUND_MS as u64))
}

/// Out-of-order clicks per partition (users partitioned by `user % 3`), an hour in the past
/// so the wall clock never calls them future. A few are negative (filtered out) and lag
/// far enough to be late. Deterministic.
fn clicks(per_partition: usize, seed: u64) -> Vec<Vec<Click>> {
    let mut x = seed;
    let mut next = move |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    let base = now_ms() - 3_600_000;
    (0..PARTITIONS)
        .map(|p| {
            let mut t = base;
            (0..per_partition)
                .map(|_| {
                    t += next(25) as i64;
                    Click {
                        user: (next(4) as u32) * PARTITIONS as u32 + p as u32,
                        at_ms: t - next(900) as i64,
                        cents: next(1_000) as i64 - 20,
                    }
                })
                .collect()
        })
        .collect()
}

/// The batch reference: per partition in order, a record is late for its window when the
/// window's end plus the lateness is at or below (greatest earlier timestamp - bound).
fn reference(parts: &[Vec<Click>], offsets: &[Vec<i64>], lateness_ms: i64) -> (Totals, Lates) {
    let mut totals = Totals::new();
    let mut lates = Lates::new();
    for (p, clicks) in parts.iter().enumerate() {
        let mut max_ts: Option<i64> = None;
        for (i, c) in clicks.iter().enumerate() {
            if c.cents < 0 {
                continue;
            }
            let start = c.at_ms - c.at_ms.rem_euclid(WINDOW_MS);
            let late = max_ts.is_some_and(|m| start + WINDOW_MS + lateness_ms <= m - BOUND_MS);
            if late {
                lates.push((p as i32, offsets[p][i], start));
            } else {
                let t = totals.entry((c.user, start)).or_default();
                t.0 += 1;
                t.1 += c.cents;
            }
            max_ts = Some(max_ts.map_or(c.at_ms, |m| m.max(c.at_ms)));
        }
    }
    lates.sort();
    (totals, lates)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Publishes each partition's clicks to its partition, in order; returns their offsets.
async fn publish(transport: &dyn Transport, parts: &[Vec<Click>], from: usize, to: usize) -> Vec<Vec<i64>> {
    let mut offsets = Vec::new();
    for (p, clicks) in parts.iter().enumerate() {
        let records = clicks[from..to]
            .iter()
            .map(|c| OutRecord {
                key: Some(c.user.to_string().into_bytes()),
                value: Some(serde_json::to_vec(c).expect("json")),
                headers: Vec::new(),
                partition: Some(p as i32),
            })
            .collect();
        let delivered = transport.publish("clicks", records).await.expect("publish");
        offsets.push(delivered.iter().map(|d| d.offset).collect());
    }
    offsets
}

async fn read_all(transport: &dyn Transport, topic: &str) -> Vec<InRecord> {
    transport
        .read_to_end(topic, BTreeMap::new(), 1_000_000)
        .await
        .expect("read")
        .0
}

fn totals_of(records: &[InRecord]) -> (Totals, usize) {
    let mut totals = Totals::new();
    let mut repeats = 0;
    for r in records {
        let v: WindowResult<u32, (u64, i64)> =
            serde_json::from_slice(r.value.as_deref().expect("value")).expect("window result");
        assert_eq!(v.end_ms - v.start_ms, WINDOW_MS);
        if totals.insert((v.key, v.start_ms), v.value).is_some() {
            repeats += 1;
        }
    }
    (totals, repeats)
}

fn lates_of(records: &[InRecord]) -> Lates {
    let header = |r: &InRecord, name: &str| -> String {
        String::from_utf8_lossy(r.header(name).expect("header")).to_string()
    };
    let mut lates: Lates = records
        .iter()
        .map(|r| {
            assert_eq!(header(r, HEADER_REASON), "late");
            let source = header(r, HEADER_SOURCE);
            let mut it = source.rsplit('/');
            let offset: i64 = it.next().and_then(|s| s.parse().ok()).expect("offset");
            let partition: i32 = it.next().and_then(|s| s.parse().ok()).expect("partition");
            let start: i64 = header(r, HEADER_WINDOW_START).parse().expect("start");
            (partition, offset, start)
        })
        .collect();
    lates.sort();
    lates
}

fn embedded(dir: &std::path::Path) -> Arc<dyn Transport> {
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    })
    .expect("broker opens");
    Arc::new(EmbeddedTransport::new(broker))
}

async fn create_input(transport: &dyn Transport) {
    let spec = rivulet_sdk::transport::TopicSpec {
        partitions: PARTITIONS,
        configs: BTreeMap::new(),
    };
    transport.ensure_topic("clicks", spec).await.expect("topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_run_equals_the_batch_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let transport = embedded(dir.path());
    create_input(transport.as_ref()).await;
    let parts = clicks(600, 7);
    let offsets = publish(transport.as_ref(), &parts, 0, 600).await;
    // A record that is not JSON goes to the dead-letter topic, not nowhere.
    transport
        .publish(
            "clicks",
            vec![OutRecord {
                value: Some(b"not json".to_vec()),
                partition: Some(0),
                ..OutRecord::default()
            }],
        )
        .await
        .expect("publish");
    let opts = options("bounded-totals");
    let stats = rivulet_stream::run_bounded(transport.as_ref(), &pipeline(false), &opts)
        .await
        .expect("bounded run");
    let (want, want_late) = reference(&parts, &offsets, LATENESS_MS);
    assert!(!want_late.is_empty(), "the input has late records");
    let (got, repeats) = totals_of(&read_all(transport.as_ref(), "click-totals").await);
    assert_eq!(repeats, 0, "each window once");
    assert_eq!(got, want);
    assert_eq!(
        lates_of(&read_all(transport.as_ref(), &opts.late_topic()).await),
        want_late
    );
    assert_eq!(read_all(transport.as_ref(), &opts.dlq_topic()).await.len(), 1);
    assert_eq!(stats.records_in, 1_801, "{stats:?}");
    assert_eq!(stats.dead_lettered, 1, "{stats:?}");

    // Repartitioned by user, over the same input: every total as the reference has it.
    let opts = options("bounded-shuffled");
    let p = Stream::<Click>::json(&["clicks"])
        .event_time(|c| c.at_ms)
        .filter(|c| c.cents >= 0)
        .key_by(|c| c.user)
        .window(Windows::tumbling(Duration::from_millis(WINDOW_MS as u64)))
        .allowed_lateness(Duration::from_millis(NEVER_LATE_MS as u64))
        .aggregate(
            || (0u64, 0i64),
            |a, c| {
                a.0 += 1;
                a.1 += c.cents;
            },
        )
        .to("click-totals-shuffled");
    rivulet_stream::run_bounded(transport.as_ref(), &p, &opts)
        .await
        .expect("bounded run");
    let (want, _) = reference(&parts, &offsets, NEVER_LATE_MS);
    let (got, repeats) = totals_of(&read_all(transport.as_ref(), "click-totals-shuffled").await);
    assert_eq!(repeats, 0, "each window once");
    assert_eq!(got, want);
}

/// Starts a Kafka front end on an ephemeral port over a broker in `dir`.
async fn serve(dir: &std::path::Path) -> (String, tokio::sync::oneshot::Sender<()>) {
    use rivulet_kafka::{HandlerConfig, Server, ServerConfig};
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    })
    .expect("broker opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = ServerConfig {
        listen: vec![addr],
        handler: HandlerConfig {
            node_id: 0,
            advertised_host: "127.0.0.1".into(),
            advertised_port: addr.port(),
            advertised_more: Vec::new(),
            cluster_id: "stream-test".into(),
            fetch_bytes_max: 8 << 20,
            fetch_wait_ms_max: 100,
        },
        request_bytes_max: 16 << 20,
        request_memory_bytes_max: 64 << 20,
        connections_max: 256,
        request_read_timeout_ms: 30_000,
        idle_timeout_ms: 600_000,
        write_stall_timeout_ms: 30_000,
        shutdown_timeout_ms: 2_000,
        tls: None,
        protocols: Vec::new(),
    };
    let server = Server::from_listeners(vec![listener], config, broker).expect("server");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (addr.to_string(), tx)
}

/// Exactly-once across crashes: the job is stopped abruptly (its task aborted, the open
/// transaction left to be fenced) three times while input keeps arriving; the results a
/// read_committed reader sees equal the batch reference, each window once. With
/// `local` (a state directory and copy interval), members restore from their local copy
/// and the changelog written since.
async fn exactly_once_across_crashes(
    transport: Arc<dyn Transport>,
    name: &str,
    repartition: bool,
    local: Option<(&std::path::Path, Duration)>,
) {
    let lateness = if repartition { NEVER_LATE_MS } else { LATENESS_MS };
    create_input(transport.as_ref()).await;
    let (per_round, rounds) = (150usize, 4usize);
    let parts = clicks(per_round * rounds, 11);
    let mut offsets: Vec<Vec<i64>> = vec![Vec::new(); PARTITIONS as usize];
    let mut opts = options(name).guarantee(Guarantee::ExactlyOnce);
    if let Some((dir, interval)) = local {
        opts = opts.state_dir(dir).local_copy_interval(interval);
    }
    let mut checkpoints = 0;
    for round in 0..rounds {
        let job = rivulet_stream::start(transport.clone(), pipeline(repartition), opts.clone())
            .await
            .expect("job starts");
        let got = publish(
            transport.as_ref(),
            &parts,
            round * per_round,
            (round + 1) * per_round,
        )
        .await;
        for (p, o) in got.into_iter().enumerate() {
            offsets[p].extend(o);
        }
        let deadline = Instant::now() + WAIT;
        let half = (per_round * PARTITIONS as usize / 2) as u64;
        while job.stats().records_in < half || job.stats().checkpoints == 0 {
            assert!(
                Instant::now() < deadline,
                "job made no progress: {:?}",
                job.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if round + 1 < rounds {
            // A crash at a different point of each round: nothing more is committed.
            tokio::time::sleep(Duration::from_millis(37 * round as u64)).await;
            checkpoints += job.stats().checkpoints;
            drop(job);
            continue;
        }
        // Last round: a final click per partition far ahead closes every earlier window.
        let closing: Vec<Vec<Click>> = (0..PARTITIONS)
            .map(|p| {
                vec![Click {
                    user: 1_000 * PARTITIONS as u32 + p as u32,
                    at_ms: now_ms() - 60_000,
                    cents: 0,
                }]
            })
            .collect();
        publish(transport.as_ref(), &closing, 0, 1).await;
        let (want, want_late) = reference(&parts, &offsets, lateness);
        let deadline = Instant::now() + WAIT;
        loop {
            let (got, _) = totals_of(&read_all(transport.as_ref(), "click-totals").await);
            if got.len() >= want.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} windows: {:?}",
                got.len(),
                want.len(),
                job.stats()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stats = job.shutdown().await.expect("shutdown");
        assert!(checkpoints + stats.checkpoints > 3, "{stats:?}");
        // State came from the local copy where there was one, and only the changelog
        // written after it was read.
        assert_eq!(stats.restored_from_copy > 0, local.is_some(), "{stats:?}");
        // The last member started from the committed offsets and restored state, rather
        // than reading everything again.
        let total = (per_round * rounds) as u64 * PARTITIONS as u64 + PARTITIONS as u64;
        assert!(stats.records_in < total, "{stats:?}");
        let (got, repeats) = totals_of(&read_all(transport.as_ref(), "click-totals").await);
        assert_eq!(repeats, 0, "a window emitted twice");
        assert_eq!(got, want);
        assert_eq!(
            lates_of(&read_all(transport.as_ref(), &opts.late_topic()).await),
            want_late
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_exactly_once_across_crashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    // Copies written only when restoring: each restore needs the changelog since.
    let local = Some((state.path(), Duration::from_secs(3_600)));
    exactly_once_across_crashes(embedded(dir.path()), "eo-embedded", false, local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_repartitioned_exactly_once_across_crashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    exactly_once_across_crashes(embedded(dir.path()), "eo-embedded-shuffled", true, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_repartitioned_exactly_once_across_crashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, _stop) = serve(dir.path()).await;
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(&addr).expect("client"));
    let state = tempfile::tempdir().expect("tempdir");
    let local = Some((state.path(), Duration::from_millis(50)));
    exactly_once_across_crashes(transport, "eo-kafka-shuffled", true, local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_exactly_once_across_crashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, _stop) = serve(dir.path()).await;
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(&addr).expect("client"));
    exactly_once_across_crashes(transport, "eo-kafka", false, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_table_join_enriches_from_the_latest_rows() {
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
    struct Enriched {
        user: u32,
        tier: String,
        cents: i64,
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let transport = embedded(dir.path());
    create_input(transport.as_ref()).await;
    let spec = rivulet_sdk::transport::TopicSpec {
        partitions: 2,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    };
    transport.ensure_topic("tiers", spec).await.expect("table topic");
    // Users 0..8 get a tier; users 0 and 1 are then moved to gold; user 2 is deleted.
    let row = |user: u32, tier: Option<&str>| OutRecord {
        key: Some(user.to_string().into_bytes()),
        value: tier.map(|t| serde_json::to_vec(t).expect("json")),
        ..OutRecord::default()
    };
    let mut rows: Vec<OutRecord> = (0..8).map(|u| row(u, Some("silver"))).collect();
    rows.extend([row(0, Some("gold")), row(1, Some("gold")), row(2, None)]);
    transport.publish("tiers", rows).await.expect("rows");
    let parts = clicks(200, 3);
    publish(transport.as_ref(), &parts, 0, 200).await;

    let tiers = rivulet_stream::table::Table::<String>::json("tiers");
    let p = Stream::<Click>::json(&["clicks"])
        .join_table(
            &tiers,
            |c| c.user.to_string(),
            |c, tier| {
                tier.map(|t| Enriched {
                    user: c.user,
                    tier: t.clone(),
                    cents: c.cents,
                })
            },
        )
        .to("enriched", |e| Some(e.tier.clone()));
    rivulet_stream::run_bounded(transport.as_ref(), &p, &options("enrich"))
        .await
        .expect("bounded run");
    let mut got: Vec<Enriched> = read_all(transport.as_ref(), "enriched")
        .await
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().expect("value")).expect("enriched"))
        .collect();
    got.sort();
    let tier_of = |u: u32| match u {
        0 | 1 => Some("gold"),
        2 => None,
        3..=7 => Some("silver"),
        _ => None,
    };
    let mut want: Vec<Enriched> = parts
        .iter()
        .flatten()
        .filter_map(|c| {
            tier_of(c.user).map(|t| Enriched {
                user: c.user,
                tier: t.to_string(),
                cents: c.cents,
            })
        })
        .collect();
    want.sort();
    assert!(
        want.iter().any(|e| e.tier == "gold") && want.len() < 600,
        "the input exercises the join"
    );
    assert_eq!(got, want);
}

/// Instances join and leave mid-run (a rebalance each time, one of them a crash): with
/// exactly-once and a repartitioned job, the read_committed output equals the reference.
/// With `state`, each instance keeps a local copy there: the one coming back restores
/// from its copy and the changelog the other wrote meanwhile.
async fn instances_come_and_go(transport: Arc<dyn Transport>, name: &str, state: Option<&std::path::Path>) {
    create_input(transport.as_ref()).await;
    let (per_round, rounds) = (100usize, 4usize);
    let parts = clicks(per_round * rounds, 23);
    let mut offsets: Vec<Vec<i64>> = vec![Vec::new(); PARTITIONS as usize];
    let opts = |instance: &str| {
        let o = options(name).guarantee(Guarantee::ExactlyOnce).instance(instance);
        match state {
            Some(dir) => o.state_dir(dir).local_copy_interval(Duration::from_millis(50)),
            None => o,
        }
    };
    let start = |instance: &'static str| {
        let (transport, o) = (transport.clone(), opts(instance));
        async move {
            rivulet_stream::start(transport, pipeline(true), o)
                .await
                .expect("job starts")
        }
    };
    let mut a = Some(start("a").await);
    let mut b = None;
    for round in 0..rounds {
        match round {
            1 => b = Some(start("b").await),
            2 => drop(a.take()), // a crash: b takes every partition
            3 => a = Some(start("a").await),
            _ => {}
        }
        let got = publish(
            transport.as_ref(),
            &parts,
            round * per_round,
            (round + 1) * per_round,
        )
        .await;
        for (p, o) in got.into_iter().enumerate() {
            offsets[p].extend(o);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let closing: Vec<Vec<Click>> = (0..PARTITIONS)
        .map(|p| {
            vec![Click {
                user: 1_000 * PARTITIONS as u32 + p as u32,
                at_ms: now_ms() - 60_000,
                cents: 0,
            }]
        })
        .collect();
    publish(transport.as_ref(), &closing, 0, 1).await;
    let (want, _) = reference(&parts, &offsets, NEVER_LATE_MS);
    let deadline = Instant::now() + WAIT;
    loop {
        let (got, _) = totals_of(&read_all(transport.as_ref(), "click-totals").await);
        if got.len() >= want.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} windows",
            got.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b_stats = b.as_ref().map(|j| j.stats()).expect("b runs");
    assert!(
        b_stats.records_in > 0 && b_stats.tasks > 0,
        "b took partitions: {b_stats:?}"
    );
    let a_back = a.as_ref().expect("a is back");
    while a_back.stats().tasks == 0 {
        assert!(Instant::now() < deadline, "a took no partitions back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a_stats = a_back.stats();
    assert_eq!(a_stats.restored_from_copy > 0, state.is_some(), "{a_stats:?}");
    for job in [a, b].into_iter().flatten() {
        job.shutdown().await.expect("shutdown");
    }
    let (got, repeats) = totals_of(&read_all(transport.as_ref(), "click-totals").await);
    assert_eq!(repeats, 0, "a window emitted twice");
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_instances_come_and_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    instances_come_and_go(embedded(dir.path()), "scale-embedded", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_instances_come_and_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, _stop) = serve(dir.path()).await;
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(&addr).expect("client"));
    let state = tempfile::tempdir().expect("tempdir");
    instances_come_and_go(transport, "scale-kafka", Some(state.path())).await;
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct Paid {
    order: u32,
    at_ms: i64,
}

/// Orders joined with their payments within 10 minutes, exactly-once, over the Kafka
/// protocol, the job crashing twice while orders and payments arrive: the matched pairs
/// equal the batch reference (each order with every payment of it within the bound), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_join_of_orders_and_payments_across_crashes() {
    const WITHIN_MS: i64 = 600_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, _stop) = serve(dir.path()).await;
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(&addr).expect("client"));
    for topic in ["placed", "paid"] {
        let spec = rivulet_sdk::transport::TopicSpec {
            partitions: 2,
            configs: BTreeMap::new(),
        };
        transport.ensure_topic(topic, spec).await.expect("topic");
    }
    let base = now_ms() - 7_200_000;
    // Order i placed at base + i s; paid 0..2 times, up to 20 min later (some too late).
    let placed: Vec<Paid> = (0..300u32)
        .map(|i| Paid {
            order: i,
            at_ms: base + i64::from(i) * 1_000,
        })
        .collect();
    let paid: Vec<Paid> = (0..300u32)
        .flat_map(|i| {
            (0..i % 3).map(move |n| Paid {
                order: i,
                at_ms: base + i64::from(i) * 1_000 + i64::from((i * 7 + n * 13) % 20) * 60_000,
            })
        })
        .collect();
    let record = |p: &Paid| OutRecord {
        key: Some(p.order.to_string().into_bytes()),
        value: Some(serde_json::to_vec(p).expect("json")),
        ..OutRecord::default()
    };
    let pipeline = || {
        let left = Stream::<Paid>::json(&["placed"])
            .event_time(|p| p.at_ms)
            .key_by(|p| p.order);
        let right = Stream::<Paid>::json(&["paid"])
            .event_time(|p| p.at_ms)
            .key_by(|p| p.order);
        left.join(right, Duration::from_millis(WITHIN_MS as u64), |k, o, p| {
            Some((*k, o.at_ms, p.at_ms))
        })
        .allowed_lateness(Duration::from_secs(100_000))
        .to("placed-paid", |_| None)
    };
    let opts = options("pay-join").guarantee(Guarantee::ExactlyOnce);
    // Each round places 100 orders and pays the previous round's: every pair spans a crash,
    // so it is found only if the orders' join state survived it.
    for round in 0..4usize {
        let job = rivulet_stream::start(transport.clone(), pipeline(), opts.clone())
            .await
            .expect("job starts");
        let (a, b) = (round * 100, ((round + 1) * 100).min(placed.len()));
        if a < b {
            transport
                .publish("placed", placed[a..b].iter().map(record).collect())
                .await
                .expect("placed");
        }
        let earlier = (a.saturating_sub(100) as u32)..(a as u32);
        let pays: Vec<OutRecord> = paid
            .iter()
            .filter(|p| round > 0 && earlier.contains(&p.order))
            .map(record)
            .collect();
        if !pays.is_empty() {
            transport.publish("paid", pays).await.expect("paid");
        }
        // Crash once the joined side holds this round's orders and a checkpoint after that
        // committed them.
        let deadline = Instant::now() + WAIT;
        while job.stats().state_entries < 50 {
            assert!(Instant::now() < deadline, "no progress: {:?}", job.stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seen = job.stats().checkpoints;
        while job.stats().checkpoints <= seen {
            assert!(Instant::now() < deadline, "no checkpoint: {:?}", job.stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if round < 3 {
            drop(job);
            continue;
        }
        let mut want: Vec<(u32, i64, i64)> = Vec::new();
        for o in &placed {
            for p in paid.iter().filter(|p| p.order == o.order) {
                if (o.at_ms - p.at_ms).abs() <= WITHIN_MS {
                    want.push((o.order, o.at_ms, p.at_ms));
                }
            }
        }
        want.sort();
        assert!(
            want.len() > 100 && want.len() < paid.len(),
            "{} of {} payments match",
            want.len(),
            paid.len()
        );
        let deadline = Instant::now() + WAIT;
        let mut got: Vec<(u32, i64, i64)>;
        loop {
            got = read_all(transport.as_ref(), "placed-paid")
                .await
                .iter()
                .map(|r| serde_json::from_slice(r.value.as_deref().expect("value")).expect("pair"))
                .collect();
            got.sort();
            if got.len() >= want.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} pairs: {:?}",
                got.len(),
                want.len(),
                job.stats()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        job.shutdown().await.expect("shutdown");
        assert_eq!(got, want);
    }
}

/// A plain HTTP/1.1 GET; the body parsed as JSON.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Interactive queries: the running total per user answered by the instance holding it
/// equals the sum over the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_totals_are_readable_by_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let transport = embedded(dir.path());
    create_input(transport.as_ref()).await;
    let parts = clicks(200, 5);
    publish(transport.as_ref(), &parts, 0, 200).await;
    let p = Stream::<Click>::json(&["clicks"])
        .key_by(|c| c.user)
        .global()
        .aggregate(|| 0i64, |sum, c| *sum += c.cents)
        .to("user-totals");
    let opts = options("user-totals").query_listen("127.0.0.1:0".parse().expect("addr"));
    let job = rivulet_stream::start(transport.clone(), p, opts)
        .await
        .expect("job");
    let addr = job.query_address().expect("query address");
    let deadline = Instant::now() + WAIT;
    while job.stats().records_in < 600 || job.stats().checkpoints == 0 {
        assert!(Instant::now() < deadline, "{:?}", job.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut want: BTreeMap<u32, i64> = BTreeMap::new();
    for c in parts.iter().flatten() {
        *want.entry(c.user).or_default() += c.cents;
    }
    for (user, total) in &want {
        let (status, body) = http_get(addr, &format!("/state/{user}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["windows"][0]["value"], *total, "user {user}: {body}");
    }
    let (status, body) = http_get(addr, "/state/999999").await;
    assert_eq!(
        (status, body["windows"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{body}"
    );
    job.shutdown().await.expect("shutdown");
}
