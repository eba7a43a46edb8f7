//! End-to-end tests of the shop: 1,000 orders with duplicate deliveries on the embedded
//! broker (stock in its event store), concurrent orders for the last units, and the notification service killed with SIGKILL and restarted as a real
//! process against the Kafka protocol.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivulet_broker::{Broker, BrokerConfig};
use rivulet_eventstore::{EventStore, EventStoreConfig};
use rivulet_sdk::aggregate::{EventStoreBackend, GrpcEventStore};
use rivulet_sdk::{Client, Event, Received, SubscribeOptions, TopicPartition};
use shop::app;
use shop::events::{
    inventory_outcome_id, order_placed_id, InventoryReserved, Item, OrderPlaced, INVENTORY, INVENTORY_LOW,
    INVENTORY_RESERVED, ORDERS, ORDER_PLACED, OUT_OF_STOCK,
};
use shop::inventory::Inventory;
use shop::notification::Mailer;
use shop::smtp_sink::{Sink, SinkConfig};

const FROM: &str = "Shop <shop@example.com>";

fn options() -> SubscribeOptions {
    SubscribeOptions {
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        commit_interval: Duration::from_millis(50),
        shutdown_timeout: Duration::from_secs(10),
        ..SubscribeOptions::default()
    }
}

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sink(dir: &std::path::Path, delay: Duration) -> Sink {
    Sink::start(SinkConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        mail_dir: dir.join("mail"),
        delay,
        connections_max: 64,
    })
    .await
    .expect("sink starts")
}

/// Order id -> number of stored mails about it (the order id is in every subject).
fn mails_per_order(sink: &Sink) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for m in sink.mails().expect("read mail dir") {
        let id = m
            .subject
            .strip_prefix("Order ")
            .and_then(|s| s.split([' ', ':']).next())
            .unwrap_or_default()
            .to_string();
        *out.entry(id).or_insert(0) += 1;
    }
    out
}

fn order(i: usize) -> OrderPlaced {
    let skus = ["widget", "gadget", "gizmo"];
    let mut items = vec![Item {
        sku: skus[i % 3].to_string(),
        qty: 1 + (i % 4) as u32,
    }];
    if i % 5 == 0 {
        items.push(Item {
            sku: skus[(i + 1) % 3].to_string(),
            qty: 1,
        });
    }
    OrderPlaced {
        order_id: format!("o{i:04}"),
        email: format!("customer{i}@example.com"),
        items,
    }
}

/// An embedded broker (4 partitions per topic) and its event store under `dir`.
fn embedded_shop(dir: &std::path::Path) -> (Client, Arc<dyn EventStoreBackend>) {
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.join("broker"),
        ..BrokerConfig::default()
    })
    .expect("broker");
    let store = EventStore::open(broker.clone(), EventStoreConfig::under(dir)).expect("event store");
    (Client::embedded(broker).with_partitions(4), Arc::new(store))
}

fn catalogue(skus: &[(&str, i64)]) -> BTreeMap<String, i64> {
    skus.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

async fn publish_orders(client: &Client, orders: &[OrderPlaced]) -> usize {
    // Every seventh order is published twice with the same event id, as a producer retrying
    // after a lost acknowledgement would.
    let mut events = Vec::new();
    for (i, o) in orders.iter().enumerate() {
        let e = Event::new("/shop/orders", ORDER_PLACED, o.clone())
            .with_id(order_placed_id(&o.order_id))
            .with_subject(o.order_id.clone());
        events.push((o.order_id.clone(), e.clone()));
        if i % 7 == 0 {
            events.push((o.order_id.clone(), e));
        }
    }
    for chunk in events.chunks(100) {
        let batch: Vec<(Option<&str>, &Event<OrderPlaced>)> =
            chunk.iter().map(|(k, e)| (Some(k.as_str()), e)).collect();
        client
            .publish_batch(ORDERS, &batch)
            .await
            .expect("publish orders");
    }
    events.len()
}

// Longer than most functions: one end-to-end run of the three services; kept whole so it reads top to bottom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_orders_with_duplicates_get_one_email_each_and_consistent_stock() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, store) = embedded_shop(dir.path());
    let sink = sink(dir.path(), Duration::ZERO).await;
    let catalogue = catalogue(&[("widget", 900), ("gadget", 800), ("gizmo", 120)]);
    let inventory = Inventory::new(store.clone(), catalogue.clone(), 50);
    let mailer = Mailer::new(&sink.addr().to_string(), FROM).expect("mailer");
    let mut inventory_sub = app::start_inventory(&client, inventory.clone(), options())
        .await
        .expect("inventory");
    let mut notification_sub = app::start_notification(&client, mailer.clone(), options())
        .await
        .expect("notify");

    let orders: Vec<OrderPlaced> = (0..1000).map(order).collect();
    let mut published = publish_orders(&client, &orders[..500]).await;
    wait_until("first half handled", Duration::from_secs(60), || {
        mails_per_order(&sink).len() >= 250
    })
    .await;
    eprintln!("250 emailed at {:?}", started.elapsed());

    // Duplicate deliveries: the inventory service crashes (no graceful stop, nothing
    // committed on the way out) and restarts; the notification service restarts gracefully.
    inventory_sub.abort();
    // A crashed process is gone before its replacement starts: let the aborted tasks stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let inventory = Inventory::new(store.clone(), catalogue.clone(), 50);
    inventory_sub = app::start_inventory(&client, inventory.clone(), options())
        .await
        .expect("inventory again");
    notification_sub.shutdown().await.expect("notification stops");
    notification_sub = app::start_notification(&client, mailer.clone(), options())
        .await
        .expect("notify again");
    // Orders placed a second time by clients retrying the same request.
    published += publish_orders(&client, &orders[..20]).await;
    published += publish_orders(&client, &orders[500..]).await;
    wait_until("every order emailed", Duration::from_secs(90), || {
        mails_per_order(&sink).len() >= 1000
    })
    .await;
    eprintln!("all emailed at {:?}", started.elapsed());

    // More duplicates: rewind the notification group to the start of the topic, so every
    // inventory event is delivered again.
    notification_sub.shutdown().await.expect("notification stops");
    let (inventory_events, _) = client
        .transport()
        .read_to_end(INVENTORY, BTreeMap::new(), 1_000_000)
        .await
        .expect("read inventory topic");
    let rewind = (0..4).map(|p| (TopicPartition::new(INVENTORY, p), 0)).collect();
    client
        .transport()
        .commit_standalone(app::NOTIFICATION_GROUP, rewind)
        .await
        .expect("rewind");
    notification_sub = app::start_notification(&client, mailer, options())
        .await
        .expect("notify after rewind");
    let want = inventory_events.len() as u64;
    eprintln!("rewound at {:?}; {want} inventory events", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(60);
    while notification_sub.stats().duplicates_skipped < want {
        assert!(
            Instant::now() < deadline,
            "redelivered events not all skipped: {:?}",
            notification_sub.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notification_stats = notification_sub.shutdown().await.expect("stop notification");
    let inventory_stats = inventory_sub.shutdown().await.expect("stop inventory");
    assert!(
        published > 1000 + 500 / 7,
        "duplicates were published: {published}"
    );
    assert_eq!(
        notification_stats.handled, 0,
        "after the rewind nothing was handled twice"
    );

    // Exactly one email per order; no retransmission reached the mail server.
    let per_order = mails_per_order(&sink);
    assert_eq!(per_order.len(), 1000);
    let doubles: Vec<_> = per_order.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubles.is_empty(), "orders with more than one email: {doubles:?}");
    let stats = sink.stats();
    assert_eq!(stats.deliveries, 1000, "SMTP deliveries: {stats:?}");
    assert_eq!(stats.retransmissions, 0);

    // One inventory decision per order, and stock equal to initial minus reservations.
    let mut outcomes: HashMap<String, Vec<String>> = HashMap::new();
    let mut reserved_units: BTreeMap<String, i64> = BTreeMap::new();
    let mut low_alerts = 0;
    for r in inventory_events {
        let e = Received::from_record(r);
        if e.ty == INVENTORY_LOW {
            low_alerts += 1;
            continue;
        }
        let order_id = e.subject.clone().unwrap_or_default();
        outcomes.entry(order_id).or_default().push(e.ty.clone());
        if e.ty == INVENTORY_RESERVED {
            let res: InventoryReserved = e.data().expect("reserved data");
            for item in res.items {
                *reserved_units.entry(item.sku).or_insert(0) += i64::from(item.qty);
            }
        }
    }
    assert_eq!(outcomes.len(), 1000, "every order decided");
    assert!(outcomes.values().all(|v| v.len() == 1), "one decision per order");
    let out_of_stock = outcomes.values().filter(|v| v[0] == OUT_OF_STOCK).count();
    assert!(out_of_stock > 0, "the small gizmo stock ran out");
    assert!(low_alerts >= 1, "InventoryLow was published");
    let stock = inventory.stock().await.expect("stock");
    for (sku, initial) in &catalogue {
        let left = stock.get(sku).copied().unwrap_or(0);
        assert!(left >= 0, "{sku} oversold: {left}");
        assert_eq!(
            initial - left,
            reserved_units.get(sku).copied().unwrap_or(0),
            "{sku}: units gone equal units reserved"
        );
    }
    // Rebuilt from its streams by a fresh service, the stock is the same.
    let replayed = Inventory::new(store.clone(), catalogue.clone(), 50);
    replayed.stock_up().await.expect("stocked once only");
    assert_eq!(replayed.stock().await.expect("stock"), stock);
    eprintln!(
        "1000 orders ({published} records), {out_of_stock} out of stock, inventory {inventory_stats:?}, in {:?}",
        started.elapsed()
    );
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn shop_cmd(dir: &std::path::Path, log: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shop"));
    let log = std::fs::File::create(dir.join(log)).expect("log file");
    cmd.arg("--data-dir")
        .arg(dir.join("shop-data"))
        .env("RUST_LOG", "info")
        .env_remove("SHOP_BROKERS")
        .stdin(Stdio::null())
        .stderr(log);
    cmd
}

fn notification(dir: &std::path::Path, brokers: &str, smtp: &str, log: &str) -> Proc {
    let child = shop_cmd(dir, log)
        .args([
            "--brokers",
            brokers,
            "notification",
            "--smtp-server",
            smtp,
            "--session-timeout-ms",
            "2000",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn notification service");
    Proc(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_killed_mid_stream_and_restarted_emails_every_order_once() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    // The broker: the shop binary serving the Kafka protocol over its embedded broker.
    let mut broker = shop_cmd(dir.path(), "broker.log")
        .args(["broker", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .map(Proc)
        .expect("spawn broker");
    let stdout = broker.0.stdout.take().expect("broker stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("broker prints its address");
    let brokers = line
        .trim()
        .strip_prefix("kafka listening on ")
        .expect("address line")
        .to_string();

    // A mail server that takes 5 ms per message, so the kill lands mid-stream.
    let sink = sink(dir.path(), Duration::from_millis(5)).await;
    let smtp = sink.addr().to_string();
    let client = Client::kafka(&brokers).expect("client").with_partitions(4);
    let orders = 400;
    let events: Vec<(String, Event<InventoryReserved>)> = (0..orders)
        .map(|i| {
            let o = order(i);
            let data = InventoryReserved {
                order_id: o.order_id.clone(),
                email: o.email,
                items: o.items,
            };
            let e = Event::new("/shop/inventory", INVENTORY_RESERVED, data)
                .with_id(inventory_outcome_id(&o.order_id))
                .with_subject(o.order_id.clone());
            (o.order_id, e)
        })
        .collect();
    let batch: Vec<(Option<&str>, &Event<InventoryReserved>)> =
        events.iter().map(|(k, e)| (Some(k.as_str()), e)).collect();
    client.publish_batch(INVENTORY, &batch).await.expect("publish");

    let first = notification(dir.path(), &brokers, &smtp, "notification-1.log");
    wait_until("some emails sent", Duration::from_secs(60), || {
        sink.stats().deliveries >= 100
    })
    .await;
    let mut first = first;
    first.0.kill().expect("kill -9");
    first.0.wait().expect("reap");
    let at_kill = sink.stats();
    assert!(
        (at_kill.stored as usize) < orders,
        "the kill landed mid-stream ({at_kill:?})"
    );

    let second = notification(dir.path(), &brokers, &smtp, "notification-2.log");
    wait_until("every order emailed", Duration::from_secs(90), || {
        mails_per_order(&sink).len() >= orders
    })
    .await;
    // Let anything still in flight arrive before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let per_order = mails_per_order(&sink);
    assert_eq!(per_order.len(), orders, "no order left without its email");
    let doubles: Vec<_> = per_order.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        doubles.is_empty(),
        "orders with two emails in the mailbox: {doubles:?}"
    );
    let stats = sink.stats();
    // Only emails whose handler finished in the instant before the kill, before the id
    // was recorded, can be sent again: at most one per worker (4).
    assert!(
        stats.retransmissions <= 4,
        "retransmissions beyond the in-flight window: {stats:?}"
    );
    assert_eq!(stats.stored as usize, orders);
    drop(second);
    drop(broker);
    eprintln!(
        "killed after {} deliveries; final {stats:?}; in {:?}",
        at_kill.deliveries,
        started.elapsed()
    );
}

/// The `rivulet` binary built next to this test (`cargo test --workspace` builds it).
fn rivulet_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("rivulet"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p rivulet` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

fn rivulet(args: &[&str]) -> String {
    let out = Command::new(rivulet_bin())
        .args(args)
        .env_remove("RIVULET_BROKERS")
        .output()
        .expect("run rivulet");
    assert!(
        out.status.success(),
        "rivulet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// Longer than most functions: one scenario (poison, list, redrive, consume) on one server; kept whole so it reads top to bottom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rivulet_cli_lists_and_redrives_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.path().join("broker"),
        ..BrokerConfig::default()
    })
    .expect("broker");
    let (addr, _server) = app::serve_kafka(
        broker.clone(),
        "127.0.0.1:0".parse().expect("addr"),
        std::future::pending(),
    )
    .await
    .expect("kafka listener");
    let addr = addr.to_string();
    let client = Client::embedded(broker).with_partitions(2);

    // A service whose handler rejects one event until a fix ships.
    let fixed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handled: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let handler = {
        let (fixed, handled) = (fixed.clone(), handled.clone());
        move |e: Received| {
            let (fixed, handled) = (fixed.clone(), handled.clone());
            async move {
                let o: OrderPlaced = e.data()?;
                if o.order_id == "o-poison" && !fixed.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(rivulet_sdk::HandlerError::transient(
                        "payment provider rejects o-poison",
                    ));
                }
                handled.lock().map_err(|_| "poisoned")?.push(o.order_id);
                Ok(())
            }
        }
    };
    let sub = client
        .subscribe_with(
            "billing",
            &[ORDERS],
            SubscribeOptions {
                attempts_max: 2,
                ..options()
            },
            handler,
        )
        .await
        .expect("subscribe");
    let mut orders: Vec<OrderPlaced> = (0..5).map(order).collect();
    orders.insert(
        2,
        OrderPlaced {
            order_id: "o-poison".into(),
            email: "p@example.com".into(),
            items: vec![Item {
                sku: "widget".into(),
                qty: 1,
            }],
        },
    );
    for o in &orders {
        let e = Event::new("/shop/orders", ORDER_PLACED, o.clone()).with_id(order_placed_id(&o.order_id));
        client
            .publish(ORDERS, Some(&o.order_id), &e)
            .await
            .expect("publish");
    }
    let count = |h: &std::sync::Arc<std::sync::Mutex<Vec<String>>>| h.lock().map(|v| v.len()).unwrap_or(0);
    wait_until("the good orders handled", Duration::from_secs(30), || {
        count(&handled) >= 5
    })
    .await;
    wait_until("the poison dead-lettered", Duration::from_secs(30), || {
        sub.stats().dead_lettered == 1
    })
    .await;

    let listed = rivulet(&["dlq", "list", "orders.dlq", "-b", &addr, "--format", "json"]);
    let letters: serde_json::Value = serde_json::from_str(&listed).expect("JSON list");
    let letters = letters.as_array().expect("array");
    assert_eq!(letters.len(), 1, "{listed}");
    assert_eq!(letters[0]["original_topic"], "orders");
    assert_eq!(letters[0]["attempts"], "2");
    assert_eq!(letters[0]["group"], "billing");
    assert_eq!(letters[0]["event_id"], order_placed_id("o-poison"));
    assert_eq!(letters[0]["error"], "payment provider rejects o-poison");
    let text = rivulet(&["dlq", "list", "orders.dlq", "-b", &addr]);
    assert!(text.starts_with("PARTITION  OFFSET  FROM"), "{text}");

    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    let dry = rivulet(&["dlq", "redrive", "orders.dlq", "-b", &addr, "--dry-run"]);
    assert!(dry.starts_with("Would redrive 1 dead letters"), "{dry}");
    let out = rivulet(&["dlq", "redrive", "orders.dlq", "-b", &addr]);
    assert!(out.starts_with("Redrove 1 dead letters from orders.dlq"), "{out}");
    wait_until("the redriven order handled", Duration::from_secs(30), || {
        count(&handled) >= 6
    })
    .await;
    let again = rivulet(&["dlq", "redrive", "orders.dlq", "-b", &addr]);
    assert!(again.starts_with("Redrove 0 dead letters"), "{again}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    sub.shutdown().await.expect("shutdown");
    let handled = handled.lock().expect("lock");
    assert_eq!(
        handled.iter().filter(|o| *o == "o-poison").count(),
        1,
        "handled once after redrive"
    );
    assert_eq!(handled.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_services_run_against_rivulet_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let es_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let log = std::fs::File::create(dir.path().join("rivulet.log")).expect("log");
    let _server = Command::new(rivulet_bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--http-listen",
            "off",
            "--eventstore-listen",
            &format!("127.0.0.1:{es_port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env_remove("RIVULET_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Proc)
        .expect("spawn rivulet serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rivulet serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let brokers = format!("127.0.0.1:{port}");
    let client = Client::kafka(&brokers).expect("client").with_partitions(3);
    let sink = sink(dir.path(), Duration::ZERO).await;
    while std::net::TcpStream::connect(("127.0.0.1", es_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the event store listener did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = GrpcEventStore::connect(&format!("127.0.0.1:{es_port}"))
        .await
        .expect("event store");
    let inventory = Inventory::new(Arc::new(store), shop::inventory::demo_catalogue(), 10);
    let inventory_sub = app::start_inventory(&client, inventory.clone(), options())
        .await
        .expect("inventory");
    let mailer = Mailer::new(&sink.addr().to_string(), FROM).expect("mailer");
    let notification_sub = app::start_notification(&client, mailer, options())
        .await
        .expect("notification");
    let orders = 60;
    for i in 0..orders {
        let req = shop::order::PlaceOrder {
            order_id: Some(format!("k{i:03}")),
            email: format!("c{i}@example.com"),
            items: vec![Item {
                sku: "gadget".into(),
                qty: 2,
            }],
        };
        shop::order::place(&client, req).await.expect("place order");
    }
    wait_until("every order emailed", Duration::from_secs(60), || {
        mails_per_order(&sink).len() >= orders
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    notification_sub.shutdown().await.expect("notification stops");
    inventory_sub.shutdown().await.expect("inventory stops");
    let per_order = mails_per_order(&sink);
    assert_eq!(per_order.len(), orders);
    assert!(per_order.values().all(|n| *n == 1));
    assert_eq!(sink.stats().deliveries as usize, orders);
    let stock = inventory.stock().await.expect("stock");
    assert_eq!(stock.get("gadget"), Some(&(500 - 2 * orders as i64)));
}

/// Two inventory services (two instances of the group, each with its own `Inventory`) take
/// twelve orders for a SKU with five units, some of them with a second line: exactly five
/// orders get a unit, every other order is out of stock with nothing taken (its other line
/// released), and the stock ends at zero. Decisions meet in the event store's expected
/// revisions, not in one process's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_inventory_services_never_sell_the_last_units_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, store) = embedded_shop(dir.path());
    let catalogue = catalogue(&[("last", 5), ("plenty", 1000)]);
    let services = [
        Inventory::new(store.clone(), catalogue.clone(), 0),
        Inventory::new(store.clone(), catalogue.clone(), 0),
    ];
    let mut subs = Vec::new();
    for inventory in &services {
        subs.push(
            app::start_inventory(&client, inventory.clone(), options())
                .await
                .expect("inventory"),
        );
    }
    let orders: Vec<OrderPlaced> = (0..12)
        .map(|i| OrderPlaced {
            order_id: format!("race{i}"),
            email: format!("r{i}@example.com"),
            items: if i % 2 == 0 {
                vec![
                    Item {
                        sku: "plenty".into(),
                        qty: 3,
                    },
                    Item {
                        sku: "last".into(),
                        qty: 1,
                    },
                ]
            } else {
                vec![Item {
                    sku: "last".into(),
                    qty: 1,
                }]
            },
        })
        .collect();
    publish_orders(&client, &orders).await;
    let mut outcomes: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while outcomes.len() < orders.len() {
        assert!(Instant::now() < deadline, "decided only {outcomes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (events, _) = client
            .transport()
            .read_to_end(INVENTORY, BTreeMap::new(), 10_000)
            .await
            .expect("inventory topic");
        for r in events {
            let e = Received::from_record(r);
            if e.ty == INVENTORY_RESERVED || e.ty == OUT_OF_STOCK {
                outcomes.insert(e.subject.clone().unwrap_or_default(), e.ty.clone());
            }
        }
    }
    for sub in subs {
        sub.shutdown().await.expect("inventory stops");
    }
    let reserved: Vec<&String> = outcomes
        .iter()
        .filter(|(_, t)| *t == INVENTORY_RESERVED)
        .map(|(o, _)| o)
        .collect();
    assert_eq!(reserved.len(), 5, "five units, five orders: {outcomes:?}");
    let stock = services[0].stock().await.expect("stock");
    assert_eq!(stock.get("last"), Some(&0));
    let plenty_taken = reserved
        .iter()
        .filter(|o| {
            o.trim_start_matches("race")
                .parse::<usize>()
                .is_ok_and(|i| i % 2 == 0)
        })
        .count() as i64;
    assert_eq!(
        stock.get("plenty"),
        Some(&(1000 - 3 * plenty_taken)),
        "refused orders gave their other line back"
    );
}

/// The analytics jobs over the inventory's reservations: per-SKU sales summed over every
/// window equal what the reservations add up to, and the low-stock alert's remaining
/// units equal the event-sourced stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_jobs_sum_sales_and_alert_on_low_stock() {
    use shop::analytics::{self, Sales, StockLevel};
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, store) = embedded_shop(dir.path());
    let stock = catalogue(&[("widget", 900), ("gadget", 800), ("gizmo", 60)]);
    let inventory = Inventory::new(store, stock.clone(), 10);
    let inventory_sub = app::start_inventory(&client, inventory.clone(), options())
        .await
        .expect("inventory");
    let products = analytics::demo_products(&stock, 10);
    analytics::publish_catalogue(&client, &products)
        .await
        .expect("catalogue");
    let jobs = analytics::start(&client, Duration::from_secs(1), &dir.path().join("jobs"))
        .await
        .expect("jobs");
    let orders: Vec<OrderPlaced> = (0..200).map(order).collect();
    publish_orders(&client, &orders).await;

    // The reference: every InventoryReserved event, summed per SKU.
    let mut want: BTreeMap<String, Sales> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (records, _) = client
            .transport()
            .read_to_end(INVENTORY, BTreeMap::new(), 100_000)
            .await
            .expect("inventory events");
        let outcomes = records
            .iter()
            .filter(|r| {
                let t = r.header("ce_type");
                t == Some(INVENTORY_RESERVED.as_bytes()) || t == Some(OUT_OF_STOCK.as_bytes())
            })
            .count();
        if outcomes >= orders.len() {
            want.clear();
            for r in records {
                if r.header("ce_type") != Some(INVENTORY_RESERVED.as_bytes()) {
                    continue;
                }
                let e: InventoryReserved = Received::from_record(r).data().expect("reserved");
                for i in e.items {
                    let price = products
                        .iter()
                        .find(|p| p.sku == i.sku)
                        .expect("product")
                        .price_cents;
                    let s = want.entry(i.sku).or_default();
                    s.orders += 1;
                    s.units += i64::from(i.qty);
                    s.revenue_cents += i64::from(i.qty) * price;
                }
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{outcomes} of {} orders handled",
            orders.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(want.len() == 3, "{want:?}");

    // Sales, summed over the windows, reach the reference once every window closed.
    let summed = |rows: Vec<rivulet_stream::WindowResult<String, Sales>>| {
        let mut got: BTreeMap<String, Sales> = BTreeMap::new();
        for r in rows {
            assert_eq!(r.end_ms - r.start_ms, 1_000);
            let s = got.entry(r.key).or_default();
            s.orders += r.value.orders;
            s.units += r.value.units;
            s.revenue_cents += r.value.revenue_cents;
        }
        got
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = summed(
            analytics::results::<Sales>(&client, analytics::SALES)
                .await
                .expect("sales"),
        );
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "sales {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The gizmo (60 units) runs low; its alert shows the stock the inventory holds.
    let left = inventory.stock().await.expect("stock");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = analytics::results::<StockLevel>(&client, analytics::LOW_STOCK_ALERTS)
            .await
            .expect("alerts");
        let latest: BTreeMap<String, StockLevel> = rows.into_iter().map(|r| (r.key, r.value)).collect();
        let gizmo = latest.get("gizmo").map(|s| s.remaining);
        if gizmo == left.get("gizmo").copied() {
            assert!(gizmo < Some(10), "{latest:?}");
            assert!(!latest.contains_key("widget"), "widget is not low: {latest:?}");
            break;
        }
        assert!(Instant::now() < deadline, "alerts {latest:?}, stock {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    jobs.shutdown().await.expect("jobs stop");
    inventory_sub.shutdown().await.expect("inventory stops");
}
