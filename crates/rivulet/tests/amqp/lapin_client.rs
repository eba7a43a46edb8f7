//! lapin (Rust): publisher confirms, prefetch, nack with requeue and dead-lettering through
//! the default exchange.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

use crate::harness::Rivulet;

async fn connect(server: &Rivulet) -> (Connection, lapin::Channel) {
    let conn = Connection::connect(&server.amqp_url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn lapin_confirms_prefetch_requeue_and_dead_letters() {
    let server = Rivulet::start();
    runtime().block_on(async {
        let (conn, ch) = connect(&server).await;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare("l_orders", durable, FieldTable::default())
            .await
            .expect("declare");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        let mut confirms = Vec::new();
        for i in 0..200 {
            let props = BasicProperties::default().with_delivery_mode(2);
            let body = format!("order {i}");
            let c = ch
                .basic_publish(
                    "",
                    "l_orders",
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    props,
                )
                .await
                .expect("publish");
            confirms.push(c);
        }
        for c in confirms {
            assert!(c.await.expect("confirm").is_ack(), "every publish is acked");
        }

        // Prefetch 10: ten deliveries, then nothing until acks.
        let consumer_ch = conn.create_channel().await.expect("channel");
        consumer_ch
            .basic_qos(10, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut consumer = consumer_ch
            .basic_consume(
                "l_orders",
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut held = Vec::new();
        while held.len() < 10 {
            let d = consumer.next().await.expect("delivery").expect("ok");
            held.push(d);
        }
        let more = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
        assert!(more.is_err(), "no 11th delivery within prefetch 10");
        // Requeue the first five (multiple): they come back first, redelivered, in order.
        held[4]
            .nack(BasicNackOptions {
                multiple: true,
                requeue: true,
            })
            .await
            .expect("nack");
        let mut again = Vec::new();
        while again.len() < 5 {
            again.push(consumer.next().await.expect("delivery").expect("ok"));
        }
        let bodies: Vec<String> = again
            .iter()
            .map(|d| String::from_utf8_lossy(&d.data).into_owned())
            .collect();
        assert_eq!(bodies, ["order 0", "order 1", "order 2", "order 3", "order 4"]);
        assert!(again.iter().all(|d| d.redelivered));
        // Ack everything, one by one for the rest: 200 distinct messages in all.
        let mut seen: std::collections::BTreeSet<String> = bodies.into_iter().collect();
        for d in held.drain(5..).chain(again) {
            seen.insert(String::from_utf8_lossy(&d.data).into_owned());
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
        while seen.len() < 200 {
            let d = consumer.next().await.expect("delivery").expect("ok");
            seen.insert(String::from_utf8_lossy(&d.data).into_owned());
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
        assert_eq!(seen.len(), 200);

        // Dead-lettering through the default exchange.
        ch.queue_declare("l_dead", QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("declare");
        let mut args = FieldTable::default();
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString("l_dead".into()),
        );
        ch.queue_declare("l_work", QueueDeclareOptions::default(), args)
            .await
            .expect("declare");
        ch.basic_publish(
            "",
            "l_work",
            BasicPublishOptions::default(),
            b"bad",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
        let mut work = consumer_ch
            .basic_consume(
                "l_work",
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let d = work.next().await.expect("delivery").expect("ok");
        d.reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        let mut dead = consumer_ch
            .basic_consume(
                "l_dead",
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let d = tokio::time::timeout(Duration::from_secs(5), dead.next())
            .await
            .expect("a dead letter arrives")
            .expect("delivery")
            .expect("ok");
        assert_eq!(&d.data[..], b"bad");
        let headers = d.properties.headers().clone().expect("headers");
        let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
            panic!("x-death missing: {headers:?}");
        };
        let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
            panic!("x-death entry missing");
        };
        assert_eq!(
            death.inner().get("queue"),
            Some(&AMQPValue::LongString("l_work".into()))
        );
        assert_eq!(
            death.inner().get("reason"),
            Some(&AMQPValue::LongString("rejected".into()))
        );
        conn.close(200, "done").await.expect("close");
    });
}

fn kcat_produce(server: &Rivulet, topic: &str, line: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("kcat")
        .args(["-b", &server.bootstrap(), "-P", "-t", topic, "-H", "source=kafka"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run kcat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{line}\n").as_bytes())
        .expect("write");
    assert!(child.wait().expect("kcat").success(), "kcat failed");
}

/// Every record of `topic`, one line each, read with kcat from the beginning.
fn kcat_read(server: &Rivulet, topic: &str) -> String {
    let out = std::process::Command::new("kcat")
        .args([
            "-b",
            &server.bootstrap(),
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .output()
        .expect("run kcat");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A queue declared over an existing Kafka topic starts at the topic's end; a record
/// produced over Kafka (kcat) then reaches the AMQP consumer with its Kafka headers as the
/// AMQP headers table; deleting the queue leaves the topic and its records.
#[test]
fn a_kafka_record_is_delivered_to_the_queue_s_amqp_consumer_with_its_headers() {
    let mut server = Rivulet::start();
    kcat_produce(&server, "from_kafka", "{\"order\":6}");
    runtime().block_on(async {
        let (conn, ch) = connect(&server).await;
        let q = ch
            .queue_declare(
                "from_kafka",
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare");
        assert_eq!(q.message_count(), 0, "a queue over a topic starts at its end");
        kcat_produce(&server, "from_kafka", "{\"order\":7}");
        let mut consumer = ch
            .basic_consume(
                "from_kafka",
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("the Kafka record arrives")
            .expect("delivery")
            .expect("ok");
        assert_eq!(&d.data[..], b"{\"order\":7}");
        assert_eq!(d.routing_key.as_str(), "from_kafka");
        let headers = d.properties.headers().clone().expect("headers");
        assert_eq!(
            headers.inner().get("source"),
            Some(&AMQPValue::LongString("kafka".into()))
        );
        d.ack(BasicAckOptions::default()).await.expect("ack");
        ch.queue_delete("from_kafka", lapin::options::QueueDeleteOptions::default())
            .await
            .expect("delete");
        conn.close(200, "done").await.expect("close");
    });
    let text = kcat_read(&server, "from_kafka");
    assert_eq!(text.lines().count(), 2, "the topic outlives the queue: {text}");
    // A transient queue over the topic vanishes at restart; the topic stays.
    runtime().block_on(async {
        let (conn, ch) = connect(&server).await;
        ch.queue_declare(
            "from_kafka",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
        conn.close(200, "done").await.expect("close");
    });
    server.restart();
    let text = kcat_read(&server, "from_kafka");
    assert_eq!(
        text.lines().count(),
        2,
        "the topic outlives a restart that drops the transient queue: {text}"
    );
    runtime().block_on(async {
        let (_conn, ch) = connect(&server).await;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let gone = ch
            .queue_declare("from_kafka", passive, FieldTable::default())
            .await;
        assert!(gone.is_err(), "the transient queue is gone after the restart");
    });
}

/// Declares `name` (durable or not) of `kind` over `ch`.
async fn declare_exchange(ch: &lapin::Channel, name: &str, kind: lapin::ExchangeKind, durable: bool) {
    let options = lapin::options::ExchangeDeclareOptions {
        durable,
        ..lapin::options::ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(name, kind, options, FieldTable::default())
        .await
        .expect("declare exchange");
}

/// Publishes `body` to `exchange` with `key` and waits for its confirm.
async fn publish_confirmed(ch: &lapin::Channel, exchange: &str, key: &str, body: &[u8]) {
    ch.basic_publish(
        exchange,
        key,
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
}

/// Exchange-to-exchange bindings between durable exchanges survive a restart; one whose
/// destination is transient goes with it.
#[test]
fn exchange_bindings_between_durable_exchanges_survive_a_restart() {
    let mut server = Rivulet::start();
    runtime().block_on(async {
        let (conn, ch) = connect(&server).await;
        declare_exchange(&ch, "l_orders", lapin::ExchangeKind::Topic, true).await;
        declare_exchange(&ch, "l_paid", lapin::ExchangeKind::Fanout, true).await;
        declare_exchange(&ch, "l_scratch", lapin::ExchangeKind::Fanout, false).await;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        for q in ["l_payments", "l_scratch_q"] {
            ch.queue_declare(q, durable, FieldTable::default())
                .await
                .expect("declare");
        }
        let none = lapin::options::QueueBindOptions::default();
        ch.queue_bind("l_payments", "l_paid", "", none, FieldTable::default())
            .await
            .expect("bind");
        ch.queue_bind("l_scratch_q", "l_scratch", "", none, FieldTable::default())
            .await
            .expect("bind");
        let bind = lapin::options::ExchangeBindOptions::default();
        for dest in ["l_paid", "l_scratch"] {
            ch.exchange_bind(dest, "l_orders", "order.paid", bind, FieldTable::default())
                .await
                .expect("exchange.bind");
        }
        conn.close(200, "done").await.expect("close");
    });
    server.restart();
    runtime().block_on(async {
        let (conn, ch) = connect(&server).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        publish_confirmed(&ch, "l_orders", "order.paid", b"after the restart").await;
        publish_confirmed(&ch, "l_orders", "order.created", b"not taken").await;
        let get = lapin::options::BasicGetOptions { no_ack: true };
        let first = ch.basic_get("l_payments", get).await.expect("get");
        let body = first.map(|m| m.delivery.data.clone());
        assert_eq!(body.as_deref(), Some(&b"after the restart"[..]));
        let next = ch.basic_get("l_payments", get).await.expect("get");
        assert!(next.is_none(), "order.created is not bound");
        let scratch = ch.basic_get("l_scratch_q", get).await.expect("get");
        assert!(
            scratch.is_none(),
            "the binding to the transient exchange went with it"
        );
        conn.close(200, "done").await.expect("close");
    });
}
