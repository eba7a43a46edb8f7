//! Window-close latency over the Kafka protocol: a producer writes bids stamped with the
//! wall clock at a fixed rate, a job counts them per auction in 1 s tumbling windows, and a
//! group member reading the output notes when each result becomes visible. Latency = visible
//! time - (window end + out-of-orderness bound): what the engine adds after the watermark
//! could first pass the window.
//!
//! `cargo run --release -p rivulet-stream --example window_latency -- <brokers> <records/s>
//!  <seconds> <exactly_once|at_least_once>`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use rivulet_sdk::progress::Progress;
use rivulet_sdk::transport::{MemberSettings, Polled, TopicSpec};
use rivulet_sdk::{KafkaTransport, OutRecord, Transport};
use rivulet_stream::{Guarantee, JobOptions, Stream, WindowResult, Windows};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bid {
    auction: u32,
    at_ms: i64,
}

const BOUND_MS: i64 = 100;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Publishes `rate` bids per second for `seconds`, in 10 ms steps.
async fn produce(transport: Arc<dyn Transport>, topic: String, rate: u64, seconds: u64) -> Result<u64> {
    let started = Instant::now();
    let mut sent = 0u64;
    let total = rate * seconds;
    while sent < total {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        let n = due.min(total).saturating_sub(sent);
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        let at = now_ms();
        let records = (0..n)
            .map(|i| {
                let bid = Bid {
                    auction: ((sent + i) % 100) as u32,
                    at_ms: at,
                };
                Ok(OutRecord {
                    key: Some(bid.auction.to_string().into_bytes()),
                    value: Some(serde_json::to_vec(&bid)?),
                    ..OutRecord::default()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        transport.publish(&topic, records).await?;
        sent += n;
    }
    Ok(sent)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        bail!("usage: window_latency <brokers> <records/s> <seconds> <exactly_once|at_least_once>");
    }
    let rate: u64 = args[2].parse().context("rate")?;
    let seconds: u64 = args[3].parse().context("seconds")?;
    let guarantee = match args[4].as_str() {
        "exactly_once" => Guarantee::ExactlyOnce,
        "at_least_once" => Guarantee::AtLeastOnce,
        other => bail!("unknown guarantee {other}"),
    };
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(&args[1])?);
    let run = format!("latency-{}", std::process::id());
    let (input, output) = (format!("{run}-bids"), format!("{run}-counts"));
    for t in [&input, &output] {
        transport
            .ensure_topic(
                t,
                TopicSpec {
                    partitions: 3,
                    configs: BTreeMap::new(),
                },
            )
            .await?;
    }
    let pipeline = Stream::<Bid>::json(&[&input])
        .event_time(|b| b.at_ms)
        .key_by_partitioned(|b| b.auction)
        .window(Windows::tumbling(Duration::from_secs(1)))
        .count()
        .to(&output);
    let options = JobOptions::new(&run)
        .guarantee(guarantee)
        .out_of_orderness(Duration::from_millis(BOUND_MS as u64))
        .idle_timeout(Duration::from_secs(1));
    let job = rivulet_stream::start(transport.clone(), pipeline, options).await?;
    let settings = MemberSettings {
        poll_records_max: 10_000,
        revoke_wait: Duration::from_secs(1),
        session_timeout: Duration::from_secs(10),
    };
    let mut reader = transport
        .join(
            &format!("{run}-reader"),
            vec![output.clone()],
            Arc::new(Progress::new()),
            settings,
        )
        .await?;
    // Let the job and the reader join their groups before the clock starts.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let started = now_ms();
    let producer = tokio::spawn(produce(transport.clone(), input.clone(), rate, seconds));
    let mut latencies: Vec<i64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    while Instant::now() < deadline {
        for p in reader.poll(Duration::from_millis(50)).await? {
            let Polled::Record(r) = p else { continue };
            let seen = now_ms();
            let Some(v) = r
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<WindowResult<u32, u64>>(v).ok())
            else {
                continue;
            };
            // Whole windows only: skip the first and last second of the run.
            if v.start_ms >= started + 1_000 && v.end_ms <= started + (seconds as i64 - 1) * 1_000 {
                latencies.push(seen - (v.end_ms + BOUND_MS));
            }
        }
        if producer.is_finished() && latencies.len() as u64 >= (seconds - 3) * 100 {
            break;
        }
    }
    let sent = producer.await??;
    let stats = job.shutdown().await?;
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(-1)
    };
    println!(
        "{rate} records/s for {seconds} s ({sent} sent), {:?}: {} window results; close latency p50 {} ms, p99 {} ms, max {} ms; {} checkpoints, last {} ms",
        guarantee,
        latencies.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        stats.checkpoints,
        stats.checkpoint_last_ms
    );
    Ok(())
}
