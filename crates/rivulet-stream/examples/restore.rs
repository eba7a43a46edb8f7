//! How long an instance takes to restore a large state over the Kafka protocol: from the
//! changelog alone, from the local copy (`state_dir`), and reading the changelog raw
//! without applying it (the floor), alternating in one run.
//!
//! A job counts events per user in a one-hour tumbling window that never closes, so its
//! state holds one window per user. After it has processed every event it stops
//! gracefully; then fresh instances start and restore that state.
//!
//! Then, twice: `<events>` more are published while no instance runs, and an instance
//! restores the state and catches up that backlog; three times in a row: from the changelog,
//! from the local copy (which must also read what the first instance wrote since), and from
//! the local copy again.
//!
//! `cargo run --release -p rivulet-stream --example restore -- <brokers> <users> <events>`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use rivulet_sdk::transport::TopicSpec;
use rivulet_sdk::{KafkaTransport, OutRecord, Transport};
use rivulet_stream::{JobOptions, Pipeline, Stream, Windows};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Click {
    user: u64,
    at_ms: i64,
}

const PARTITIONS: i32 = 3;
const BASE_MS: i64 = 1_700_000_000_000;

fn pipeline(input: &str, output: &str) -> Pipeline {
    Stream::<Click>::json(&[input])
        .event_time(|c| c.at_ms)
        .key_by_partitioned(|c| c.user)
        .window(Windows::tumbling(Duration::from_secs(3_600)))
        .count()
        .to(output)
}

async fn publish(transport: &dyn Transport, input: &str, users: u64, events: u64) -> Result<()> {
    let spec = TopicSpec {
        partitions: PARTITIONS,
        configs: BTreeMap::new(),
    };
    transport.ensure_topic(input, spec).await?;
    let mut batch = Vec::new();
    for i in 0..events {
        let click = Click {
            user: i % users,
            at_ms: BASE_MS + (i % 1_000) as i64,
        };
        batch.push(OutRecord {
            key: Some(click.user.to_string().into_bytes()),
            value: Some(serde_json::to_vec(&click)?),
            ..OutRecord::default()
        });
        if batch.len() == 10_000 {
            transport.publish(input, std::mem::take(&mut batch)).await?;
        }
    }
    transport.publish(input, batch).await?;
    Ok(())
}

/// Starts an instance, waits until it holds every task and has restored them, and
/// returns (restore ms, entries from the copy, changelog records read, open windows).
async fn restore_once(
    transport: &Arc<dyn Transport>,
    pipeline: Pipeline,
    options: JobOptions,
) -> Result<(u64, u64, u64, u64)> {
    let job = rivulet_stream::start(transport.clone(), pipeline, options).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while job.stats().tasks < PARTITIONS as u64 {
        if Instant::now() > deadline {
            bail!("tasks not assigned: {:?}", job.stats());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // One more checkpoint reports the state held.
    let seen = job.stats().checkpoints;
    let wait = Instant::now() + Duration::from_secs(3);
    while job.stats().checkpoints == seen && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = job.shutdown().await?;
    Ok((
        s.restore_ms,
        s.restored_from_copy,
        s.restored_from_changelog,
        s.state_entries,
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: restore <brokers> <users> <events>");
    }
    let brokers = &args[1];
    let users: u64 = args[2].parse().context("users")?;
    let events: u64 = args[3].parse().context("events")?;
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(brokers)?);
    let run = format!("restore-{}", std::process::id());
    let (input, output) = (format!("{run}-clicks"), format!("{run}-out"));
    publish(transport.as_ref(), &input, users, events).await?;
    let state_dir = std::env::temp_dir().join(&run);
    let base = JobOptions::new(&run).idle_timeout(Duration::from_secs(3_600));
    let with_copy = base.clone().state_dir(&state_dir);
    let job = rivulet_stream::start(transport.clone(), pipeline(&input, &output), with_copy.clone()).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while job.stats().records_in < events {
        if Instant::now() > deadline {
            bail!("not processed: {:?}", job.stats());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let built = job.shutdown().await?;
    let changelog = base.changelog_topic();
    let ranges = transport.offset_ranges(&changelog).await?;
    let records: i64 = ranges.values().map(|(start, end)| end - start).sum();
    println!(
        "state: {} windows from {events} events; changelog {records} records (with transaction markers)",
        built.state_entries
    );
    for round in 0..2 {
        let raw = Instant::now();
        let mut read = 0usize;
        let mut from = BTreeMap::new();
        loop {
            let (got, next) = transport.read_to_end(&changelog, from.clone(), 100_000).await?;
            read += got.len();
            from = next;
            if got.len() < 100_000 {
                break;
            }
        }
        println!(
            "round {round} raw read of the changelog: {read} records in {} ms",
            raw.elapsed().as_millis()
        );
        for (label, options) in [("changelog", base.clone()), ("local copy", with_copy.clone())] {
            let (ms, copied, replayed, windows) =
                restore_once(&transport, pipeline(&input, &output), options).await?;
            println!("round {round} from the {label}: {ms} ms ({copied} entries copied, {replayed} changelog records read, {windows} windows held)");
        }
    }
    let runs = [
        ("the changelog", base.clone()),
        ("the local copy, after another instance", with_copy.clone()),
        ("the local copy", with_copy.clone()),
    ];
    for round in 0..2 {
        for (label, options) in runs.clone() {
            publish(transport.as_ref(), &input, users, events).await?;
            let started = Instant::now();
            let job = rivulet_stream::start(transport.clone(), pipeline(&input, &output), options).await?;
            let deadline = Instant::now() + Duration::from_secs(600);
            while job.stats().records_in < events {
                if Instant::now() > deadline {
                    bail!("not caught up: {:?}", job.stats());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let caught_up = started.elapsed();
            let s = job.shutdown().await?;
            println!(
                "round {round} restore from {label} and catch up {events} events: {} ms ({} ms restoring, {} windows held)",
                caught_up.as_millis(),
                s.restore_ms,
                s.state_entries
            );
        }
    }
    std::fs::remove_dir_all(&state_dir).ok();
    Ok(())
}
