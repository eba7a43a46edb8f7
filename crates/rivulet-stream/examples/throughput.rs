//! Engine throughput on this machine: input events per engine CPU-second, topic to topic,
//! for a pass-through (Nexmark q0's shape) and a 10 s tumbling count keyed by auction,
//! beside a naive single-threaded loop over the same records (decode + hash map) as the
//! floor. Bounded runs over an embedded broker; publishing the input is not measured.
//!
//! `cargo run --release -p rivulet-stream --example throughput -- [events]`

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use rivulet_broker::{Broker, BrokerConfig};
use rivulet_sdk::transport::TopicSpec;
use rivulet_sdk::{EmbeddedTransport, OutRecord, Transport};
mod common;
use common::cpu_s;
use rivulet_stream::{JobOptions, Stream, Windows};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bid {
    auction: u64,
    bidder: u64,
    price: u64,
    date_time: i64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    })?;
    let transport: Arc<dyn Transport> = Arc::new(EmbeddedTransport::new(broker));
    let spec = TopicSpec {
        partitions: 1,
        configs: BTreeMap::new(),
    };
    transport.ensure_topic("bids", spec).await?;
    let base = 1_700_000_000_000i64;
    let mut x = 1u64;
    for chunk in 0..events.div_ceil(10_000) {
        let records = (0..10_000.min(events - chunk * 10_000))
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let bid = Bid {
                    auction: (x >> 40) % 1_000,
                    bidder: (x >> 20) % 10_000,
                    price: (x >> 8) % 100_000,
                    date_time: base + ((chunk * 10_000 + i) as i64) / 10 - ((x >> 50) % 500) as i64,
                };
                OutRecord {
                    value: Some(serde_json::to_vec(&bid).unwrap_or_default()),
                    ..OutRecord::default()
                }
            })
            .collect();
        transport.publish("bids", records).await?;
    }
    let naive = {
        let start = cpu_s();
        let mut counts: HashMap<(u64, i64), u64> = HashMap::new();
        let (records, _) = transport.read_to_end("bids", BTreeMap::new(), events).await?;
        for r in &records {
            let b: Bid = serde_json::from_slice(r.value.as_deref().unwrap_or_default())?;
            *counts.entry((b.auction, b.date_time / 10_000)).or_default() += 1;
        }
        assert!(!counts.is_empty());
        events as f64 / (cpu_s() - start).max(0.01)
    };
    let q0 = {
        let p = Stream::<Bid>::json(&["bids"]).to("q0-out", |_| None);
        let start = cpu_s();
        let stats = rivulet_stream::run_bounded(transport.as_ref(), &p, &JobOptions::new("q0")).await?;
        assert_eq!(stats.records_in as usize, events);
        events as f64 / (cpu_s() - start).max(0.01)
    };
    let tumbling = {
        let p = Stream::<Bid>::json(&["bids"])
            .event_time(|b| b.date_time)
            .key_by(|b| b.auction)
            .window(Windows::tumbling(Duration::from_secs(10)))
            .count()
            .to("count-out");
        let start = cpu_s();
        let opts = JobOptions::new("count").out_of_orderness(Duration::from_millis(500));
        let stats = rivulet_stream::run_bounded(transport.as_ref(), &p, &opts).await?;
        assert_eq!(stats.records_in as usize, events);
        events as f64 / (cpu_s() - start).max(0.01)
    };
    println!("events: {events}");
    println!("naive loop (read + decode + hash map): {naive:>12.0} events/CPU-s");
    println!(
        "q0 pass-through topic to topic:        {q0:>12.0} events/CPU-s ({:.2}x naive)",
        q0 / naive
    );
    println!(
        "10 s tumbling count by auction:        {tumbling:>12.0} events/CPU-s ({:.2}x naive)",
        tumbling / naive
    );
    Ok(())
}
