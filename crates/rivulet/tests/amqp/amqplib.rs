//! amqplib (Node): the issue's two reference programs verbatim, and programs covering what
//! RabbitMQ's tutorials 1-7 cover.

use std::process::{Command, Output};

use crate::harness::{repo_root, which, Rivulet};

fn show(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The seed programs hard-code `amqp://localhost`, i.e. port 5672, which RabbitMQ holds on
/// this machine: they run with Rivulet in a private network namespace.
#[test]
fn seed_programs_run_unchanged_in_both_orders_and_kcat_reads_the_message() {
    if which("node").is_none() || which("kcat").is_none() || which("unshare").is_none() {
        panic!("node, kcat and unshare are needed (scripts/test.sh installs them)");
    }
    if !Command::new("unshare")
        .args(["--net", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        println!("SKIPPED seed programs: no private network namespace here (needs root)");
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let script = r#"
set -u
ip link set lo up
"$RIVULET" serve --data-dir "$DATA/data" --http-listen off > "$DATA/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q "Rivulet is serving" "$DATA/serve.log" && break; sleep 0.1; done
cd "$CLIENTS"
echo "== producer first"
timeout 3 node amqp/seed_producer.js
timeout 3 node amqp/seed_consumer.js
echo "== consumer first"
timeout 5 node amqp/seed_consumer.js &
consumer=$!
sleep 1.5
timeout 2 node amqp/seed_producer.js
wait $consumer
echo "== kcat"
kcat -b 127.0.0.1:9092 -C -t order_events -o beginning -e -q
kill $server
wait $server
"#;
    let output = Command::new("unshare")
        .args(["--net", "bash", "-c", script])
        .env("RIVULET", env!("CARGO_BIN_EXE_rivulet"))
        .env("DATA", data.path())
        .env("CLIENTS", repo_root().join("tests/clients"))
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let order = r#"{"type":"Order Placed","data":{"orderId":1,"item":"Laptop","price":1200}}"#;
    let sections: Vec<&str> = stdout.split("== ").collect();
    assert_eq!(sections.len(), 4, "{}", show(&output));
    for section in &sections[1..3] {
        assert!(
            section.contains(&format!("received {order}")),
            "the consumer prints the order: {}",
            show(&output)
        );
    }
    assert_eq!(
        sections[3].matches(order).count(),
        2,
        "kcat reads both messages as Kafka records: {}",
        show(&output)
    );
}

pub fn tutorial(server: &Rivulet, name: &str) -> String {
    let output = Command::new("node")
        .current_dir(repo_root().join("tests/clients"))
        .args(["amqp/tutorials.js", &server.amqp_url(), name])
        .output()
        .expect("run node");
    assert!(output.status.success(), "tutorial {name}: {}", show(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn amqplib_hello_world_work_queues_and_publish_subscribe() {
    let server = Rivulet::start();
    assert!(tutorial(&server, "hello").contains("OK hello Hello World!"));
    let work = tutorial(&server, "work");
    assert!(work.contains("OK work 10 tasks"), "{work}");
    assert!(tutorial(&server, "pubsub").contains("OK pubsub 5 messages to 2 subscribers"));
}

#[test]
fn amqplib_routing_topics_rpc_and_publisher_confirms() {
    let server = Rivulet::start();
    assert!(tutorial(&server, "routing").contains("OK routing 4 routed"));
    assert!(tutorial(&server, "topics").contains("OK topics 4 routed"));
    assert!(tutorial(&server, "rpc").contains("OK rpc fib(10,15,20) = 55,610,6765"));
    assert!(tutorial(&server, "confirms").contains("OK confirms 250 confirmed, 250 in the queue"));
}
