//! Integration tests of the services SDK over the embedded broker and over the Kafka
//! protocol (librdkafka against a Rivulet Kafka listener on an ephemeral port).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rivulet_broker::{Broker, BrokerConfig};
use rivulet_sdk::{Client, Event, HandlerError, Received, SubscribeOptions};
use serde::{Deserialize, Serialize};

/// Longest a test waits for a condition.
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Step {
    key: String,
    seq: u32,
}

fn broker(dir: &std::path::Path) -> Broker {
    Broker::open(BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    })
    .expect("broker opens")
}

fn fast_options() -> SubscribeOptions {
    SubscribeOptions {
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(40),
        commit_interval: Duration::from_millis(50),
        shutdown_timeout: Duration::from_secs(10),
        ..SubscribeOptions::default()
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Per-key log of what handlers saw.
type Seen = Arc<Mutex<HashMap<String, Vec<u32>>>>;

fn recording_handler(seen: Seen) -> impl Fn(Received) -> futures_ready::Ready + Send + Sync + 'static {
    move |e: Received| {
        let seen = seen.clone();
        futures_ready::Ready::new(async move {
            let step: Step = e.data()?;
            // Uneven handling times shuffle completion order across workers.
            let pause_us = u64::from(step.seq * 37 % 7) * 300;
            tokio::time::sleep(Duration::from_micros(pause_us)).await;
            let mut s = seen.lock().map_err(|_| HandlerError::transient("poisoned"))?;
            s.entry(step.key.clone()).or_default().push(step.seq);
            Ok(())
        })
    }
}

mod futures_ready {
    //! A boxed handler future, so handler closures have a nameable return type.
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use rivulet_sdk::HandlerError;

    pub struct Ready(Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>);

    impl Ready {
        pub fn new(f: impl Future<Output = Result<(), HandlerError>> + Send + 'static) -> Ready {
            Ready(Box::pin(f))
        }
    }

    impl Future for Ready {
        type Output = Result<(), HandlerError>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.0.as_mut().poll(cx)
        }
    }
}

async fn publish_steps(client: &Client, topic: &str, keys: usize, steps: u32) -> usize {
    // Interleave keys so that each partition mixes many keys.
    for seq in 0..steps {
        let events: Vec<(String, Event<Step>)> = (0..keys)
            .map(|k| {
                let key = format!("order-{k}");
                let e = Event::new(
                    "/test",
                    "test.step",
                    Step {
                        key: key.clone(),
                        seq,
                    },
                )
                .with_subject(key.clone());
                (key, e)
            })
            .collect();
        let batch: Vec<(Option<&str>, &Event<Step>)> =
            events.iter().map(|(k, e)| (Some(k.as_str()), e)).collect();
        client.publish_batch(topic, &batch).await.expect("publish");
    }
    keys * steps as usize
}

fn assert_in_order(seen: &Seen, keys: usize, steps: u32) {
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), keys, "every key handled");
    for (key, seqs) in seen.iter() {
        let want: Vec<u32> = (0..steps).collect();
        assert_eq!(
            seqs, &want,
            "events of {key} handled once each, in published order"
        );
    }
}

fn total(seen: &Seen) -> usize {
    seen.lock().map(|s| s.values().map(Vec::len).sum()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_across_workers_and_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Client::embedded(broker(dir.path())).with_partitions(4);
    let (keys, steps) = (40, 25);
    let expected = publish_steps(&client, "steps", keys, steps).await;
    let seen: Seen = Arc::default();
    let sub = client
        .subscribe_with(
            "ordered",
            &["steps"],
            SubscribeOptions {
                workers: 8,
                ..fast_options()
            },
            recording_handler(seen.clone()),
        )
        .await
        .expect("subscribe");
    wait_until("all steps handled", || total(&seen) >= expected).await;
    let stats = sub.shutdown().await.expect("shutdown");
    assert_eq!(stats.handled as usize, expected);
    assert_in_order(&seen, keys, steps);
}

// Longer than most functions: one scenario (publish, crash, rewind, republish) on one broker; kept whole so it reads top to bottom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_republished_events_are_handled_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Client::embedded(broker(dir.path())).with_partitions(2);
    let events: Vec<Event<Step>> = (0..300)
        .map(|i| {
            Event::new(
                "/test",
                "test.step",
                Step {
                    key: format!("k{}", i % 30),
                    seq: i,
                },
            )
        })
        .collect();
    // Every third event is published twice with the same id (a producer retry).
    for (i, e) in events.iter().enumerate() {
        client
            .publish("dups", Some(&e.data.key), e)
            .await
            .expect("publish");
        if i % 3 == 0 {
            client
                .publish("dups", Some(&e.data.key), e)
                .await
                .expect("publish again");
        }
    }
    let effects: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let handler = {
        let effects = effects.clone();
        move |e: Received| {
            let effects = effects.clone();
            async move {
                *effects
                    .lock()
                    .map_err(|_| "poisoned")?
                    .entry(e.id.clone())
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<(), HandlerError>(())
            }
        }
    };
    let count = |effects: &Arc<Mutex<HashMap<String, usize>>>| effects.lock().map(|m| m.len()).unwrap_or(0);
    let options = SubscribeOptions {
        in_flight_per_partition_max: 8,
        ..fast_options()
    };
    // First run: crash (abort: nothing finishes or commits on the way out) part-way through.
    let sub = client
        .subscribe_with("dedup", &["dups"], options.clone(), handler.clone())
        .await
        .expect("subscribe");
    wait_until("some events handled", || count(&effects) >= 100).await;
    sub.abort();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Second run: everything after the last commit comes again; handled ids are skipped.
    let sub = client
        .subscribe_with("dedup", &["dups"], options.clone(), handler.clone())
        .await
        .expect("resubscribe");
    wait_until("all events handled", || count(&effects) >= 300).await;
    let stats = sub.shutdown().await.expect("shutdown");
    assert!(
        stats.duplicates_skipped > 0,
        "republished copies and redeliveries skipped: {stats:?}"
    );
    {
        let effects = effects.lock().expect("lock");
        assert_eq!(effects.len(), 300, "no event lost");
        // Only events in flight at the crash (handler done, id not yet recorded) may repeat:
        // at most the in-flight bound of each of the 2 partitions.
        let repeated = effects.values().filter(|n| **n > 1).count();
        assert!(
            repeated <= 16,
            "{repeated} events repeated, more than were in flight"
        );
        assert!(effects.values().all(|n| *n <= 2), "no event repeated twice");
    }
    let before: HashMap<String, usize> = effects.lock().expect("lock").clone();

    // Third run after rewinding the group to the start: every record (400) is delivered
    // again and every one is recognised as handled.
    let rewind = vec![
        (rivulet_sdk::TopicPartition::new("dups", 0), 0),
        (rivulet_sdk::TopicPartition::new("dups", 1), 0),
    ];
    client
        .transport()
        .commit_standalone("dedup", rewind)
        .await
        .expect("rewind");
    let sub = client
        .subscribe_with("dedup", &["dups"], options, handler)
        .await
        .expect("resubscribe after rewind");
    let skipped = {
        let deadline = Instant::now() + WAIT;
        while sub.stats().duplicates_skipped < 400 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sub.shutdown().await.expect("shutdown")
    };
    assert_eq!(skipped.duplicates_skipped, 400);
    assert_eq!(skipped.handled, 0);
    assert_eq!(*effects.lock().expect("lock"), before, "no side effect repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_event_is_dead_lettered_and_redriven_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Client::embedded(broker(dir.path())).with_partitions(1);
    let poison_seq = 5;
    for seq in 0..30 {
        let e = Event::new(
            "/test",
            "test.step",
            Step {
                key: "same-key".into(),
                seq,
            },
        );
        client
            .publish("work", Some("same-key"), &e)
            .await
            .expect("publish");
    }
    let fixed = Arc::new(AtomicBool::new(false));
    let handled: Arc<Mutex<Vec<u32>>> = Arc::default();
    let tries = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (fixed, handled, tries) = (fixed.clone(), handled.clone(), tries.clone());
        move |e: Received| {
            let (fixed, handled, tries) = (fixed.clone(), handled.clone(), tries.clone());
            async move {
                let step: Step = e.data()?;
                if step.seq == poison_seq {
                    tries.fetch_add(1, Ordering::SeqCst);
                    if !fixed.load(Ordering::SeqCst) {
                        return Err(HandlerError::transient("cannot handle step 5"));
                    }
                }
                handled.lock().map_err(|_| "poisoned")?.push(step.seq);
                Ok(())
            }
        }
    };
    let options = SubscribeOptions {
        attempts_max: 3,
        ..fast_options()
    };
    let sub = client
        .subscribe_with("workers", &["work"], options, handler)
        .await
        .expect("subscribe");
    wait_until("the other 29 handled", || {
        handled.lock().map(|h| h.len()).unwrap_or(0) >= 29
    })
    .await;
    assert_eq!(tries.load(Ordering::SeqCst), 3, "tried attempts_max times");
    let behind: Vec<u32> = handled
        .lock()
        .expect("lock")
        .iter()
        .copied()
        .filter(|s| *s > poison_seq)
        .collect();
    assert_eq!(
        behind,
        (poison_seq + 1..30).collect::<Vec<_>>(),
        "events behind the poison kept flowing, in order"
    );

    let letters = client.dead_letters("work.dlq").await.expect("list");
    assert_eq!(letters.len(), 1);
    let l = &letters[0];
    assert_eq!(l.original_topic.as_deref(), Some("work"));
    assert_eq!(l.original_partition, Some(0));
    assert_eq!(l.original_offset, Some(i64::from(poison_seq)));
    assert_eq!(l.attempts, Some(3));
    assert_eq!(l.error.as_deref(), Some("cannot handle step 5"));
    assert!(l.event_id.is_some(), "CloudEvents headers kept");
    assert_eq!(sub.stats().dead_lettered, 1);

    // The fix ships; the dead letter goes back and is handled exactly once.
    fixed.store(true, Ordering::SeqCst);
    assert_eq!(client.redrive("work.dlq").await.expect("redrive"), 1);
    wait_until("poison handled", || {
        handled.lock().map(|h| h.contains(&poison_seq)).unwrap_or(false)
    })
    .await;
    assert_eq!(
        client.redrive("work.dlq").await.expect("second redrive"),
        0,
        "nothing redriven twice"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    sub.shutdown().await.expect("shutdown");
    let handled = handled.lock().expect("lock");
    assert_eq!(handled.iter().filter(|s| **s == poison_seq).count(), 1);
    assert_eq!(handled.len(), 30);
    assert_eq!(tries.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_events_per_partition_stay_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Client::embedded(broker(dir.path())).with_partitions(1);
    for i in 0..120 {
        let e = Event::new(
            "/test",
            "test.step",
            Step {
                key: format!("k{i}"),
                seq: i,
            },
        );
        client
            .publish("busy", Some(&e.data.key), &e)
            .await
            .expect("publish");
    }
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
        move |_e: Received| {
            let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let options = SubscribeOptions {
        workers: 16,
        in_flight_per_partition_max: 4,
        ..fast_options()
    };
    let sub = client
        .subscribe_with("bounded", &["busy"], options, handler)
        .await
        .expect("subscribe");
    wait_until("all handled", || done.load(Ordering::SeqCst) >= 120).await;
    sub.shutdown().await.expect("shutdown");
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= 4,
        "at most 4 events of the partition in flight, saw {peak}"
    );
    assert!(peak >= 2, "distinct keys ran concurrently, saw {peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_and_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Client::embedded(broker(dir.path())).with_partitions(1);
    for i in 0..60 {
        let e = Event::new(
            "/test",
            "test.step",
            Step {
                key: format!("k{}", i % 6),
                seq: i,
            },
        );
        client
            .publish("slow", Some(&e.data.key), &e)
            .await
            .expect("publish");
    }
    let done = Arc::new(AtomicUsize::new(0));
    let handler = {
        let done = done.clone();
        move |_e: Received| {
            let done = done.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let sub = client
        .subscribe_with("graceful", &["slow"], fast_options(), handler.clone())
        .await
        .expect("subscribe");
    wait_until("some handled", || done.load(Ordering::SeqCst) >= 10).await;
    let stats = sub.shutdown().await.expect("shutdown");
    let first_run = done.load(Ordering::SeqCst);
    assert_eq!(
        stats.handled as usize, first_run,
        "nothing handled after shutdown returned"
    );
    let committed = client
        .transport()
        .committed("graceful", "slow")
        .await
        .expect("committed");
    assert_eq!(
        committed.get(&0).copied(),
        Some(first_run as i64),
        "commit covers exactly what was handled"
    );

    let sub = client
        .subscribe_with("graceful", &["slow"], fast_options(), handler)
        .await
        .expect("resubscribe");
    wait_until("the rest handled", || done.load(Ordering::SeqCst) >= 60).await;
    let stats = sub.shutdown().await.expect("shutdown");
    assert_eq!(
        stats.duplicates_skipped, 0,
        "the restart began after the committed offset"
    );
    assert_eq!(done.load(Ordering::SeqCst), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_members_of_one_group_split_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Client::embedded(broker(dir.path())).with_partitions(4);
    let seen_a: Seen = Arc::default();
    let seen_b: Seen = Arc::default();
    let a = client
        .subscribe_with(
            "pair",
            &["shared"],
            fast_options(),
            recording_handler(seen_a.clone()),
        )
        .await
        .expect("a");
    let b = client
        .subscribe_with(
            "pair",
            &["shared"],
            fast_options(),
            recording_handler(seen_b.clone()),
        )
        .await
        .expect("b");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (keys, steps) = (20, 10);
    let expected = publish_steps(&client, "shared", keys, steps).await;
    wait_until("all handled", || total(&seen_a) + total(&seen_b) >= expected).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.shutdown().await.expect("a stops");
    b.shutdown().await.expect("b stops");
    assert!(
        total(&seen_a) > 0 && total(&seen_b) > 0,
        "both members got partitions"
    );
    assert_eq!(
        total(&seen_a) + total(&seen_b),
        expected,
        "each event handled by one member"
    );
    let a = seen_a.lock().expect("lock");
    let b = seen_b.lock().expect("lock");
    assert!(
        a.keys().all(|k| !b.contains_key(k)),
        "a key belongs to one member"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_joining_mid_stream_takes_partitions_without_repeats_or_reordering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Client::embedded(broker(dir.path())).with_partitions(4);
    let (keys, steps) = (50, 30);
    let expected = publish_steps(&client, "busy-shared", keys, steps).await;
    let seen: Seen = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (seen, calls) = (seen.clone(), calls.clone());
        move |e: Received| {
            let (seen, calls) = (seen.clone(), calls.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let step: Step = e.data()?;
                tokio::time::sleep(Duration::from_micros(200)).await;
                seen.lock()
                    .map_err(|_| "poisoned")?
                    .entry(step.key)
                    .or_default()
                    .push(step.seq);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let a = client
        .subscribe_with("joiners", &["busy-shared"], fast_options(), handler.clone())
        .await
        .expect("a");
    wait_until("a under way", || total(&seen) >= 200).await;
    let b = client
        .subscribe_with("joiners", &["busy-shared"], fast_options(), handler)
        .await
        .expect("b");
    wait_until("all handled", || total(&seen) >= expected).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (sa, sb) = (a.shutdown().await.expect("a"), b.shutdown().await.expect("b"));
    assert!(sb.handled > 0, "b took partitions over mid-stream: {sb:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        expected,
        "no handler call repeated: a {sa:?}, b {sb:?}"
    );
    assert_in_order(&seen, keys, steps);
}

mod kafka {
    //! The same SDK calls over the Kafka protocol.
    use super::*;
    use rivulet_kafka::{HandlerConfig, Server, ServerConfig};

    /// Starts a Rivulet Kafka listener on an ephemeral port; returns its address.
    pub(super) async fn serve(dir: &std::path::Path) -> (String, tokio::sync::oneshot::Sender<()>) {
        let broker = broker(dir);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = ServerConfig {
            listen: vec![addr],
            handler: HandlerConfig {
                node_id: 0,
                advertised_host: "127.0.0.1".into(),
                advertised_port: addr.port(),
                advertised_more: Vec::new(),
                cluster_id: "sdk-test".into(),
                fetch_bytes_max: 8 << 20,
                fetch_wait_ms_max: 500,
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_transport_delivers_in_key_order_once_and_dead_letters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (addr, _stop) = serve(dir.path()).await;
        let client = Client::kafka(&addr).expect("client").with_partitions(3);
        let (keys, steps) = (10, 10);
        let expected = publish_steps(&client, "k-steps", keys, steps).await;
        // A poison event (data of the wrong shape) in the middle of the stream.
        let poison = Event::new("/test", "test.bad", serde_json::json!({"oops": true}));
        let at = client
            .publish("k-steps", Some("order-0"), &poison)
            .await
            .expect("publish poison");
        assert!(at.offset >= 0);
        let seen: Seen = Arc::default();
        let options = SubscribeOptions {
            attempts_max: 2,
            ..fast_options()
        };
        let sub = client
            .subscribe_with(
                "k-group",
                &["k-steps"],
                options.clone(),
                recording_handler(seen.clone()),
            )
            .await
            .expect("subscribe");
        wait_until("all steps handled", || total(&seen) >= expected).await;
        let letters = {
            let deadline = Instant::now() + WAIT;
            loop {
                let l = client.dead_letters("k-steps.dlq").await.unwrap_or_default();
                if !l.is_empty() || Instant::now() > deadline {
                    break l;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        assert_eq!(letters.len(), 1, "the poison event is dead-lettered");
        assert_eq!(letters[0].event_id.as_deref(), Some(poison.id.as_str()));
        assert_eq!(
            letters[0].attempts,
            Some(1),
            "decode errors are permanent: no retries"
        );
        let stats = sub.shutdown().await.expect("shutdown");
        assert_eq!(stats.handled as usize, expected);
        assert_in_order(&seen, keys, steps);

        // Offsets were committed on the way out: a restarted member handles nothing again.
        let committed: BTreeMap<i32, i64> = client
            .transport()
            .committed("k-group", "k-steps")
            .await
            .expect("committed");
        assert_eq!(committed.values().sum::<i64>(), expected as i64 + 1);
        let again: Seen = Arc::default();
        let sub = client
            .subscribe_with("k-group", &["k-steps"], options, recording_handler(again.clone()))
            .await
            .expect("resubscribe");
        tokio::time::sleep(Duration::from_secs(2)).await;
        sub.shutdown().await.expect("shutdown");
        assert_eq!(total(&again), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_members_split_partitions_and_take_over_after_leave() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (addr, _stop) = serve(dir.path()).await;
        let client = Client::kafka(&addr).expect("client").with_partitions(4);
        client.ensure_topic("k-shared").await.expect("topic");
        let seen: Seen = Arc::default();
        let a = client
            .subscribe_with(
                "k-pair",
                &["k-shared"],
                fast_options(),
                recording_handler(seen.clone()),
            )
            .await
            .expect("a");
        let b_seen: Seen = Arc::default();
        let both = {
            let (seen, b_seen) = (seen.clone(), b_seen.clone());
            move |e: Received| {
                let (seen, b_seen) = (seen.clone(), b_seen.clone());
                futures_ready::Ready::new(async move {
                    let step: Step = e.data()?;
                    b_seen
                        .lock()
                        .map_err(|_| "poisoned")?
                        .entry(step.key.clone())
                        .or_default()
                        .push(step.seq);
                    seen.lock()
                        .map_err(|_| "poisoned")?
                        .entry(step.key)
                        .or_default()
                        .push(step.seq);
                    Ok(())
                })
            }
        };
        let b = client
            .subscribe_with("k-pair", &["k-shared"], fast_options(), both)
            .await
            .expect("b");
        wait_until("the partitions split between a and b", || {
            let (x, y) = (a.assigned().len(), b.assigned().len());
            x > 0 && y > 0 && x + y == 4
        })
        .await;
        let (keys, steps) = (20, 10);
        let expected = publish_steps(&client, "k-shared", keys, steps).await;
        wait_until("all handled by the pair", || total(&seen) >= expected).await;
        assert!(
            total(&b_seen) > 0 && total(&b_seen) < expected,
            "b got some partitions, a the rest"
        );
        // b leaves; a takes its partitions over from b's committed offsets.
        b.shutdown().await.expect("b leaves");
        for seq in steps..steps + 5 {
            for k in 0..keys {
                let key = format!("order-{k}");
                let e = Event::new(
                    "/test",
                    "test.step",
                    Step {
                        key: key.clone(),
                        seq,
                    },
                );
                client.publish("k-shared", Some(&key), &e).await.expect("publish");
            }
        }
        wait_until("the rest handled by a", || {
            total(&seen) >= keys * (steps as usize + 5)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.shutdown().await.expect("a leaves");
        assert_in_order(&seen, keys, steps + 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_member_joining_mid_stream_repeats_and_reorders_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (addr, _stop) = serve(dir.path()).await;
        let client = Client::kafka(&addr).expect("client").with_partitions(4);
        let (keys, steps) = (40, 40);
        let expected = publish_steps(&client, "k-join", keys, steps).await;
        let seen: Seen = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let handler = {
            let (seen, calls) = (seen.clone(), calls.clone());
            move |e: Received| {
                let (seen, calls) = (seen.clone(), calls.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let step: Step = e.data()?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    seen.lock()
                        .map_err(|_| "poisoned")?
                        .entry(step.key)
                        .or_default()
                        .push(step.seq);
                    Ok::<(), HandlerError>(())
                }
            }
        };
        let a = client
            .subscribe_with("k-joiners", &["k-join"], fast_options(), handler.clone())
            .await
            .expect("a");
        wait_until("a under way", || total(&seen) >= 100).await;
        let b = client
            .subscribe_with("k-joiners", &["k-join"], fast_options(), handler)
            .await
            .expect("b");
        wait_until("all handled", || total(&seen) >= expected).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (sa, sb) = (a.shutdown().await.expect("a"), b.shutdown().await.expect("b"));
        assert!(
            sb.handled > 0,
            "b joined while a was still busy: a {sa:?}, b {sb:?}"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            expected,
            "no handler call repeated: a {sa:?}, b {sb:?}"
        );
        assert_in_order(&seen, keys, steps);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_in_flight_events_per_partition_stay_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (addr, _stop) = serve(dir.path()).await;
        let client = Client::kafka(&addr).expect("client").with_partitions(1);
        let events: Vec<Event<Step>> = (0..150)
            .map(|i| {
                Event::new(
                    "/test",
                    "test.step",
                    Step {
                        key: format!("k{i}"),
                        seq: i,
                    },
                )
            })
            .collect();
        let batch: Vec<(Option<&str>, &Event<Step>)> =
            events.iter().map(|e| (Some(e.data.key.as_str()), e)).collect();
        client.publish_batch("k-busy", &batch).await.expect("publish");
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let done: Arc<Mutex<Vec<u32>>> = Arc::default();
        let handler = {
            let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
            move |e: Received| {
                let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
                async move {
                    let step: Step = e.data()?;
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    done.lock().map_err(|_| "poisoned")?.push(step.seq);
                    Ok::<(), HandlerError>(())
                }
            }
        };
        let options = SubscribeOptions {
            workers: 16,
            in_flight_per_partition_max: 4,
            ..fast_options()
        };
        let sub = client
            .subscribe_with("k-bounded", &["k-busy"], options, handler)
            .await
            .expect("subscribe");
        wait_until("all handled", || done.lock().map(|d| d.len()).unwrap_or(0) >= 150).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        sub.shutdown().await.expect("shutdown");
        let peak = peak.load(Ordering::SeqCst);
        assert!(
            peak <= 4,
            "at most 4 events of the partition in flight, saw {peak}"
        );
        let mut done = done.lock().expect("lock").clone();
        assert_eq!(
            done.len(),
            150,
            "pausing and seeking back lost or repeated nothing"
        );
        done.sort_unstable();
        assert_eq!(done, (0..150).collect::<Vec<_>>());
    }

    /// `publish_many` over the Kafka protocol: every record of several topics is durable
    /// when it resolves, in order per partition; a record the broker refuses fails the
    /// whole call instead of vanishing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publish_many_delivers_every_record_or_fails() {
        use rivulet_sdk::transport::TopicSpec;
        use rivulet_sdk::{KafkaTransport, OutRecord, Transport};
        let dir = tempfile::tempdir().expect("tempdir");
        let (addr, _stop) = serve(dir.path()).await;
        let t = KafkaTransport::new(&addr).expect("client");
        for topic in ["many-a", "many-b"] {
            let spec = TopicSpec {
                partitions: 2,
                configs: BTreeMap::new(),
            };
            t.ensure_topic(topic, spec).await.expect("topic");
        }
        let records = |n: usize, partition: i32| -> Vec<OutRecord> {
            (0..n)
                .map(|i| OutRecord {
                    value: Some(i.to_string().into_bytes()),
                    partition: Some(partition),
                    ..OutRecord::default()
                })
                .collect()
        };
        let outputs = vec![
            ("many-a".to_string(), records(30_000, 0)),
            ("many-b".to_string(), records(5, 1)),
            ("many-a".to_string(), records(7, 1)),
        ];
        t.publish_many(outputs).await.expect("published");
        // Read at once after it resolved: everything is there.
        let (a, _) = t
            .read_to_end("many-a", BTreeMap::new(), 100_000)
            .await
            .expect("read");
        let values = |p: i32, recs: &[rivulet_sdk::InRecord]| -> Vec<usize> {
            recs.iter()
                .filter(|r| r.partition == p)
                .filter_map(|r| std::str::from_utf8(r.value.as_deref()?).ok()?.parse().ok())
                .collect()
        };
        assert_eq!(values(0, &a), (0..30_000).collect::<Vec<_>>());
        assert_eq!(values(1, &a), (0..7).collect::<Vec<_>>());
        let (b, _) = t.read_to_end("many-b", BTreeMap::new(), 100).await.expect("read");
        assert_eq!(values(1, &b), (0..5).collect::<Vec<_>>());
        // A partition the topic does not have: the call fails.
        let refused = t.publish_many(vec![("many-b".to_string(), records(3, 9))]).await;
        assert!(refused.is_err(), "{refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewound_group_skips_every_redelivered_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Client::embedded(broker(dir.path())).with_partitions(4);
    let expected = publish_steps(&client, "again", 100, 10).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let handler = {
        let handled = handled.clone();
        move |_e: Received| {
            let handled = handled.clone();
            async move {
                handled.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let sub = client
        .subscribe_with("again-g", &["again"], fast_options(), handler.clone())
        .await
        .expect("subscribe");
    wait_until("all handled", || handled.load(Ordering::SeqCst) >= expected).await;
    sub.shutdown().await.expect("shutdown");
    let rewind = (0..4)
        .map(|p| (rivulet_sdk::TopicPartition::new("again", p), 0))
        .collect();
    client
        .transport()
        .commit_standalone("again-g", rewind)
        .await
        .expect("rewind");
    let sub = client
        .subscribe_with("again-g", &["again"], fast_options(), handler)
        .await
        .expect("subscribe again");
    let deadline = Instant::now() + Duration::from_secs(20);
    while sub.stats().duplicates_skipped < expected as u64 {
        assert!(Instant::now() < deadline, "not all skipped: {:?}", sub.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = sub.shutdown().await.expect("shutdown");
    assert_eq!(stats.handled, 0);
    assert_eq!(handled.load(Ordering::SeqCst), expected);
}

mod transform {
    //! Exactly-once consume-transform-produce over both transports, across a transformer
    //! that is stopped abruptly (like a crash) and started again with the same
    //! transactional id.
    use super::*;
    use rivulet_sdk::{Output, Transform};

    /// Copies `tx-in` to `tx-out`; the first attempt at every seventh step fails (a
    /// retry), and the event of step 9 of `order-1` fails for good (a dead letter).
    async fn start(client: &Client, calls: Arc<AtomicUsize>) -> Transform {
        let options = SubscribeOptions {
            poll_records_max: 10,
            ..fast_options()
        };
        let failed_once: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let transformer = move |e: Received| {
            let (calls, failed_once) = (calls.clone(), failed_once.clone());
            async move {
                calls.fetch_add(1, Ordering::Relaxed);
                // Slow enough that a stop lands inside a batch.
                tokio::time::sleep(Duration::from_millis(2)).await;
                let step: Step = e.data()?;
                if step.key == "order-1" && step.seq == 9 {
                    return Err(HandlerError::permanent("step 9 of order-1 is refused"));
                }
                let first = failed_once
                    .lock()
                    .map(|mut s| s.insert(e.id.clone()))
                    .unwrap_or(false);
                if step.seq % 7 == 3 && first {
                    return Err(HandlerError::transient("first attempt fails"));
                }
                let out =
                    Event::new("/copier", "test.copied", step.clone()).with_id(format!("copy-{}", e.id));
                Ok(vec![Output::event("tx-out", Some(&step.key), &out)
                    .map_err(|e| HandlerError::permanent(e.to_string()))?])
            }
        };
        client
            .transform("tx-copier", &["tx-in"], "tx-copier-0", options, transformer)
            .await
            .expect("transform starts")
    }

    async fn copied(client: &Client) -> Vec<(String, u32)> {
        let read = client
            .transport()
            .read_to_end("tx-out", BTreeMap::new(), 100_000)
            .await;
        let records = match read {
            Ok((records, _)) => records,
            // Not created until the first transaction publishes to it.
            Err(rivulet_sdk::SdkError::UnknownTopic(_)) => Vec::new(),
            Err(e) => panic!("reading tx-out: {e}"),
        };
        records
            .into_iter()
            .filter_map(|r| {
                let step: Step = Received::from_record(r).data().ok()?;
                Some((step.key, step.seq))
            })
            .collect()
    }

    async fn exactly_once(client: Client) {
        let (keys, steps) = (6, 10);
        let expected = publish_steps(&client, "tx-in", keys, steps).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let first = start(&client, calls.clone()).await;
        // Stop abruptly inside the third batch of ten, as a crash would.
        wait_until("a third batch", || calls.load(Ordering::Relaxed) >= 25).await;
        let before = first.stats();
        drop(first);
        assert!(before.transactions >= 1, "{before:?}");
        let second = start(&client, calls.clone()).await;
        let deadline = Instant::now() + WAIT;
        let mut out = copied(&client).await;
        while out.len() < expected - 1 {
            assert!(
                Instant::now() < deadline,
                "only {} of {} copied; transformer called {} times; {:?}",
                out.len(),
                expected - 1,
                calls.load(Ordering::Relaxed),
                second.stats()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            out = copied(&client).await;
        }
        let stats = second.shutdown().await.expect("shutdown");
        assert!(stats.transactions > 0, "{stats:?}");
        let handled = before.transformed + before.dead_lettered + stats.transformed + stats.dead_lettered;
        assert!(
            handled as usize > expected,
            "the batch cut by the stop was transformed again ({before:?}, {stats:?})"
        );
        // Each input copied once (the refused one dead-lettered), in order per key.
        let mut by_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (key, seq) in copied(&client).await {
            by_key.entry(key).or_default().push(seq);
        }
        for k in 0..keys {
            let key = format!("order-{k}");
            let want: Vec<u32> = (0..steps).filter(|s| !(k == 1 && *s == 9)).collect();
            assert_eq!(by_key.get(&key), Some(&want), "{key}: each step once, in order");
        }
        let letters = client.dead_letters("tx-in.dlq").await.expect("dead letters");
        assert_eq!(letters.len(), 1, "the refused event is dead-lettered once");
        let committed = client
            .transport()
            .committed("tx-copier", "tx-in")
            .await
            .expect("committed");
        let total: i64 = committed.values().sum();
        assert_eq!(total as usize, expected, "the group's offsets cover every input");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_transform_copies_each_event_exactly_once_across_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        exactly_once(Client::embedded(broker(dir.path())).with_partitions(3)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_transform_copies_each_event_exactly_once_across_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (addr, _stop) = super::kafka::serve(dir.path()).await;
        exactly_once(Client::kafka(&addr).expect("client").with_partitions(3)).await;
    }
}
