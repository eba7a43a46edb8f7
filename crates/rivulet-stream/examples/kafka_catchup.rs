//! A job as a group member over the Kafka protocol catching up a backlog: Nexmark bids are
//! published first, then the job starts and runs until every bid is processed and
//! committed. Reports the job process's CPU per input event (librdkafka client included),
//! the broker's CPU over the same span when its pid is given, and the wall time.
//!
//! `cargo run --release -p rivulet-stream --example kafka_catchup -- <brokers> <events>
//!  <q0|q1|q2|q7|count> <exactly_once|at_least_once> [broker pid]`
//!
//! Environment: `KAFKA_EXTRA`, `PENDING_MAX`, `CHECKPOINT_MS`, `STATE_DIR`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use rivulet_sdk::transport::TopicSpec;
use rivulet_sdk::{KafkaTransport, OutRecord, Transport};
mod common;
use common::{cpu_s_of, Bid};
use rivulet_stream::{Guarantee, JobOptions, Stream, Windows};

/// Waits until the job's second stage has consumed its repartition topic: its committed
/// offsets reach the end (less at most one transaction marker per partition).
async fn drain_repartition(transport: &dyn Transport, run: &str) -> Result<()> {
    let topic = format!("{run}-repartition");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ends = transport.offset_ranges(&topic).await?;
        let committed = transport.committed(run, &topic).await?;
        let behind: i64 = ends
            .iter()
            .map(|(p, (_, end))| (end - committed.get(p).copied().unwrap_or(0) - 1).max(0))
            .sum();
        if behind == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("repartition topic not drained: {behind} behind");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        bail!("usage: kafka_catchup <brokers> <events> <q0|q1|q2|q7|count> <exactly_once|at_least_once> [broker pid]");
    }
    let (brokers, events): (&str, usize) = (&args[1], args[2].parse().context("events")?);
    let guarantee = match args[4].as_str() {
        "exactly_once" => Guarantee::ExactlyOnce,
        "at_least_once" => Guarantee::AtLeastOnce,
        other => bail!("unknown guarantee {other}"),
    };
    let broker_pid = args.get(5).cloned();
    // Extra librdkafka settings for every client, `KAFKA_EXTRA=key=value,key=value`.
    let extra_text = std::env::var("KAFKA_EXTRA").unwrap_or_default();
    let extra: Vec<(&str, &str)> = extra_text
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::with_config(brokers, &extra)?);
    let run = format!("catchup-{}", std::process::id());
    let input = format!("{run}-bids");
    transport
        .ensure_topic(
            &input,
            TopicSpec {
                partitions: 3,
                configs: BTreeMap::new(),
            },
        )
        .await?;
    let config = nexmark::config::NexmarkConfig {
        base_time: 1_700_000_000_000,
        ..Default::default()
    };
    let mut bids = 0;
    let mut batch = Vec::new();
    for e in nexmark::EventGenerator::new(config) {
        if bids == events {
            break;
        }
        let nexmark::event::Event::Bid(b) = e else {
            continue;
        };
        let bid = Bid {
            auction: b.auction as u64,
            bidder: b.bidder as u64,
            price: b.price as u64,
            channel: b.channel,
            date_time: b.date_time as i64,
        };
        batch.push(OutRecord {
            key: Some(bid.auction.to_string().into_bytes()),
            value: Some(serde_json::to_vec(&bid)?),
            ..OutRecord::default()
        });
        bids += 1;
        if batch.len() == 10_000 {
            transport.publish(&input, std::mem::take(&mut batch)).await?;
        }
    }
    transport.publish(&input, batch).await?;
    let pipeline = match args[3].as_str() {
        "q0" => Stream::<Bid>::json(&[&input]).to(&format!("{run}-out"), |_| None),
        "q1" => Stream::<Bid>::json(&[&input])
            .map(|mut b| {
                b.price = b.price * 908 / 1000;
                b
            })
            .to(&format!("{run}-out"), |_| None),
        "q2" => Stream::<Bid>::json(&[&input])
            .filter(|b| b.auction % 123 == 0)
            .map(|b| (b.auction, b.price))
            .to(&format!("{run}-out"), |_| None),
        // The highest bids of each 10 s window over every partition: all bids go through
        // the repartition topic to one key.
        "q7" => Stream::<Bid>::json(&[&input])
            .event_time(|b| b.date_time)
            .key_by(|_| 0u8)
            .window(Windows::tumbling(Duration::from_secs(10)))
            .aggregate(|| (0u64, Vec::new()), common::keep_highest)
            .to(&format!("{run}-out")),
        "count" => Stream::<Bid>::json(&[&input])
            .event_time(|b| b.date_time)
            .key_by_partitioned(|b| b.auction)
            .window(Windows::tumbling(Duration::from_secs(10)))
            .count()
            .to(&format!("{run}-out")),
        other => bail!("unknown query {other}"),
    };
    let mut options = JobOptions::new(&run).guarantee(guarantee);
    options.pending_records_max = std::env::var("PENDING_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    if let Some(ms) = std::env::var("CHECKPOINT_MS").ok().and_then(|v| v.parse().ok()) {
        options = options.checkpoint_interval(Duration::from_millis(ms));
    }
    // A local state copy under `STATE_DIR`, when set.
    if let Ok(dir) = std::env::var("STATE_DIR") {
        options = options.state_dir(dir);
    }
    let me = std::process::id().to_string();
    let (cpu0, broker0, wall) = (cpu_s_of(&me), broker_pid.as_deref().map(cpu_s_of), Instant::now());
    let job = rivulet_stream::start(transport.clone(), pipeline, options).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<(Duration, f64)> = None;
    loop {
        let s = job.stats();
        if first.is_none() && s.records_in > 0 {
            first = Some((wall.elapsed(), cpu_s_of(&me)));
        }
        if s.records_in as usize >= events && s.checkpoints > 0 {
            // One more checkpoint commits the last records.
            let seen = s.checkpoints;
            while job.stats().checkpoints <= seen {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if args[3] == "q7" {
                drain_repartition(transport.as_ref(), &run).await?;
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("not caught up: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (cpu, elapsed) = (cpu_s_of(&me) - cpu0, wall.elapsed());
    let (joined, cpu_joined) = first.unwrap_or((Duration::ZERO, cpu0));
    let (process_s, process_cpu) = ((elapsed - joined).as_secs_f64(), cpu_s_of(&me) - cpu_joined);
    let stats = job.shutdown().await?;
    eprintln!("{stats:?}");
    let broker = match (broker_pid.as_deref(), broker0) {
        (Some(pid), Some(b0)) => format!("{:.2}", cpu_s_of(pid) - b0),
        _ => "-".to_string(),
    };
    println!(
        "{} {:?} {events} bids: caught up in {:.2} s wall ({:.2} s joining the group, {process_s:.2} s processing); job CPU {cpu:.2} s, {process_cpu:.2} s of it processing ({:.0} events per job CPU-s); broker CPU {broker} s; {} checkpoints, {} results",
        args[3],
        guarantee,
        elapsed.as_secs_f64(),
        joined.as_secs_f64(),
        events as f64 / process_cpu.max(0.01),
        stats.checkpoints,
        stats.results_out
    );
    Ok(())
}
