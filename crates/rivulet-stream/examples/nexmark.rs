//! Nexmark on the engine: the standard streaming benchmark's queries over events from the
//! `nexmark` crate's generator (base time pinned, so runs are identical), topic to topic,
//! each as a bounded run over an embedded broker. Every query's output is checked against
//! a plain batch computation over the same events, then its rate is reported as input
//! events per CPU-second of the whole process (engine and embedded broker; generating and
//! publishing the input excluded), beside q0.
//!
//! `cargo run --release -p rivulet-stream --example nexmark -- [events] [q11 events]`

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use rivulet_broker::{Broker, BrokerConfig};
use rivulet_sdk::transport::TopicSpec;
use rivulet_sdk::{EmbeddedTransport, OutRecord, Transport};
mod common;
use common::{cpu_s, Bid};
use rivulet_stream::{Emit, JobOptions, Pipeline, Stream, WindowResult, Windows};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Person {
    id: u64,
    name: String,
    city: String,
    state: String,
    date_time: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Auction {
    id: u64,
    seller: u64,
    category: u64,
    date_time: i64,
    expires: i64,
}

const BASE_TIME_MS: u64 = 1_700_000_000_000;

struct Input {
    persons: Vec<Person>,
    auctions: Vec<Auction>,
    bids: Vec<Bid>,
}

/// Generates `events` events at `rate` per second of event time.
fn generate(events: usize, rate: usize) -> Input {
    let config = nexmark::config::NexmarkConfig {
        base_time: BASE_TIME_MS,
        first_rate: rate,
        next_rate: rate,
        ..Default::default()
    };
    let mut input = Input {
        persons: Vec::new(),
        auctions: Vec::new(),
        bids: Vec::new(),
    };
    for e in nexmark::EventGenerator::new(config).take(events) {
        match e {
            nexmark::event::Event::Person(p) => input.persons.push(Person {
                id: p.id as u64,
                name: p.name,
                city: p.city,
                state: p.state,
                date_time: p.date_time as i64,
            }),
            nexmark::event::Event::Auction(a) => input.auctions.push(Auction {
                id: a.id as u64,
                seller: a.seller as u64,
                category: a.category as u64,
                date_time: a.date_time as i64,
                expires: a.expires as i64,
            }),
            nexmark::event::Event::Bid(b) => input.bids.push(Bid {
                auction: b.auction as u64,
                bidder: b.bidder as u64,
                price: b.price as u64,
                channel: b.channel,
                date_time: b.date_time as i64,
            }),
        }
    }
    input
}

async fn publish<T: Serialize>(t: &dyn Transport, topic: &str, items: &[T]) -> Result<()> {
    let spec = TopicSpec {
        partitions: 1,
        configs: BTreeMap::new(),
    };
    t.ensure_topic(topic, spec).await?;
    for chunk in items.chunks(10_000) {
        let records = chunk
            .iter()
            .map(|i| {
                Ok(OutRecord {
                    value: Some(serde_json::to_vec(i)?),
                    ..OutRecord::default()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        t.publish(topic, records).await?;
    }
    Ok(())
}

async fn read<T: serde::de::DeserializeOwned>(t: &dyn Transport, topic: &str) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let mut from = BTreeMap::new();
    loop {
        let (records, next) = t.read_to_end(topic, from.clone(), 200_000).await?;
        for r in &records {
            out.push(serde_json::from_slice(r.value.as_deref().unwrap_or_default())?);
        }
        from = next;
        if records.len() < 200_000 {
            return Ok(out);
        }
    }
}

/// One output partition, so outputs keep the input's order.
fn opts(name: &str) -> JobOptions {
    let mut o = JobOptions::new(name).out_of_orderness(Duration::from_secs(1));
    o.output_partitions = 1;
    o
}

/// Runs the pipelines one after the other; returns CPU seconds and wall time.
async fn run(t: &dyn Transport, name: &str, pipelines: Vec<Pipeline>) -> Result<(f64, Duration)> {
    let (cpu, wall) = (cpu_s(), Instant::now());
    for (i, p) in pipelines.iter().enumerate() {
        let stats = rivulet_stream::run_bounded(t, p, &opts(&format!("{name}-{i}"))).await?;
        ensure!(stats.late == 0 && stats.dead_lettered == 0, "{name}: {stats:?}");
    }
    Ok((cpu_s() - cpu, wall.elapsed()))
}

fn window(ts: i64, size: i64) -> i64 {
    ts - ts.rem_euclid(size)
}

/// Each query: its pipelines and a check of its output against the batch reference.
async fn queries(
    t: &dyn Transport,
    input: &Input,
    slow_bids: &[Bid],
) -> Result<Vec<(String, usize, f64, Duration)>> {
    let mut rows = Vec::new();
    let bids = input.bids.len();

    // q0: pass-through.
    let p = Stream::<Bid>::json(&["bids"]).to("q0", |_| None);
    let (cpu, wall) = run(t, "q0", vec![p]).await?;
    ensure!(read::<Bid>(t, "q0").await? == input.bids, "q0 differs");
    rows.push(("q0 pass-through".into(), bids, cpu, wall));

    // q1: prices in euros.
    let p = Stream::<Bid>::json(&["bids"])
        .map(|mut b| {
            b.price = b.price * 908 / 1000;
            b
        })
        .to("q1", |_| None);
    let (cpu, wall) = run(t, "q1", vec![p]).await?;
    let want: Vec<u64> = input.bids.iter().map(|b| b.price * 908 / 1000).collect();
    let got: Vec<u64> = read::<Bid>(t, "q1").await?.iter().map(|b| b.price).collect();
    ensure!(got == want, "q1 differs");
    rows.push(("q1 map".into(), bids, cpu, wall));

    // q2: bids of some auctions.
    let p = Stream::<Bid>::json(&["bids"])
        .filter(|b| b.auction % 123 == 0)
        .map(|b| (b.auction, b.price))
        .to("q2", |_| None);
    let (cpu, wall) = run(t, "q2", vec![p]).await?;
    let want: Vec<(u64, u64)> = input
        .bids
        .iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| (b.auction, b.price))
        .collect();
    ensure!(read::<(u64, u64)>(t, "q2").await? == want, "q2 differs");
    rows.push(("q2 filter".into(), bids, cpu, wall));

    // Tumbling 10 s count per auction.
    let p = Stream::<Bid>::json(&["bids"])
        .event_time(|b| b.date_time)
        .key_by_partitioned(|b| b.auction)
        .window(Windows::tumbling(Duration::from_secs(10)))
        .count()
        .to("count10");
    let (cpu, wall) = run(t, "count10", vec![p]).await?;
    let mut want: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for b in &input.bids {
        *want.entry((b.auction, window(b.date_time, 10_000))).or_default() += 1;
    }
    let got: BTreeMap<(u64, i64), u64> = read::<WindowResult<u64, u64>>(t, "count10")
        .await?
        .into_iter()
        .map(|r| ((r.key, r.start_ms), r.value))
        .collect();
    ensure!(got == want, "tumbling count differs");
    rows.push(("10 s tumbling count by auction".into(), bids, cpu, wall));

    rows.push(q4(t, input).await?);
    rows.extend(joins(t, input).await?);
    rows.extend(windows(t, input, slow_bids).await?);
    Ok(rows)
}

/// q4: the average closing price per category, kept up to date: bids joined with their
/// auction while it is open (job 1), the highest per auction once it expires (job 2: a
/// window per auction at its expiry), and a running average per category (job 3: a global
/// window emitting on every update). The last update per category must equal the batch
/// reference.
async fn q4(t: &dyn Transport, input: &Input) -> Result<(String, usize, f64, Duration)> {
    let life_ms = input
        .auctions
        .iter()
        .map(|a| a.expires - a.date_time)
        .max()
        .unwrap_or(0);
    println!("q4: the longest auction is open {life_ms} ms of event time");
    let life = Duration::from_millis(life_ms as u64 + 1_000);
    let auctions = Stream::<Auction>::json(&["auctions"])
        .event_time(|a| a.date_time)
        .key_by_partitioned(|a| a.id);
    let bids = Stream::<Bid>::json(&["bids"])
        .event_time(|b| b.date_time)
        .key_by_partitioned(|b| b.auction);
    let joined = auctions
        .join(bids, life, |_, a, b| {
            (a.date_time..=a.expires)
                .contains(&b.date_time)
                .then_some((a.id, a.category, b.price, a.expires))
        })
        .allowed_lateness(life)
        .to("q4-bids", |_| None);
    let closing = Stream::<(u64, u64, u64, i64)>::json(&["q4-bids"])
        .event_time(|r| r.3)
        .key_by_partitioned(|r| r.0)
        .window(Windows::tumbling(Duration::from_millis(1)))
        .allowed_lateness(life)
        .aggregate(|| (0u64, 0u64), |acc, r| *acc = (r.1, acc.1.max(r.2)))
        .to("q4-closing");
    let average = Stream::<WindowResult<u64, (u64, u64)>>::json(&["q4-closing"])
        .event_time(|r| r.start_ms)
        .key_by_partitioned(|r| r.value.0)
        .global()
        .emit(Emit::OnUpdate)
        .aggregate(|| (0u64, 0u64), |acc, r| *acc = (acc.0 + r.value.1, acc.1 + 1))
        .to("q4");
    let (cpu, wall) = run(t, "q4", vec![joined, closing, average]).await?;
    let mut closing_price: HashMap<u64, u64> = HashMap::new();
    let by_id: HashMap<u64, &Auction> = input.auctions.iter().map(|a| (a.id, a)).collect();
    for b in &input.bids {
        if let Some(a) = by_id
            .get(&b.auction)
            .filter(|a| (a.date_time..=a.expires).contains(&b.date_time))
        {
            let best = closing_price.entry(a.id).or_default();
            *best = (*best).max(b.price);
        }
    }
    let mut want: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (id, price) in closing_price {
        let e = want.entry(by_id[&id].category).or_default();
        *e = (e.0 + price, e.1 + 1);
    }
    let mut got: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for r in read::<WindowResult<u64, (u64, u64)>>(t, "q4").await? {
        got.insert(r.key, r.value);
    }
    ensure!(
        want.len() > 1 && got == want,
        "q4 differs: {got:?} against {want:?}"
    );
    let n = input.auctions.len() + input.bids.len();
    Ok(("q4 average closing price per category".into(), n, cpu, wall))
}

/// q3 (incremental join) and q8 (window join).
async fn joins(t: &dyn Transport, input: &Input) -> Result<Vec<(String, usize, f64, Duration)>> {
    let mut rows = Vec::new();
    let n = input.persons.len() + input.auctions.len();
    // q3: sellers in OR, ID or CA of category-10 auctions (lower-case states).
    let persons = Stream::<Person>::json(&["persons"])
        .event_time(|p| p.date_time)
        .filter(|p| matches!(p.state.as_str(), "or" | "id" | "ca"))
        .key_by_partitioned(|p| p.id);
    let auctions = Stream::<Auction>::json(&["auctions"])
        .event_time(|a| a.date_time)
        .filter(|a| a.category == 10)
        .key_by_partitioned(|a| a.seller);
    let year = Duration::from_secs(365 * 86_400);
    let p = persons
        .join(auctions, year, |_, p, a| {
            Some((p.name.clone(), p.city.clone(), p.state.clone(), a.id))
        })
        .allowed_lateness(year)
        .to("q3", |_| None);
    let (cpu, wall) = run(t, "q3", vec![p]).await?;
    let by_id: HashMap<u64, &Person> = input.persons.iter().map(|p| (p.id, p)).collect();
    let mut want: Vec<(String, String, String, u64)> = input
        .auctions
        .iter()
        .filter(|a| a.category == 10)
        .filter_map(|a| {
            let p = by_id.get(&a.seller)?;
            matches!(p.state.as_str(), "or" | "id" | "ca")
                .then(|| (p.name.clone(), p.city.clone(), p.state.clone(), a.id))
        })
        .collect();
    want.sort();
    let mut got: Vec<(String, String, String, u64)> = read(t, "q3").await?;
    got.sort();
    ensure!(
        !want.is_empty() && got == want,
        "q3 differs: {} against {}",
        got.len(),
        want.len()
    );
    rows.push(("q3 incremental join".into(), n, cpu, wall));

    // q8: people who opened auctions in the 10 s window they registered in.
    let persons = Stream::<Person>::json(&["persons"])
        .event_time(|p| p.date_time)
        .key_by_partitioned(|p| p.id);
    let auctions = Stream::<Auction>::json(&["auctions"])
        .event_time(|a| a.date_time)
        .key_by_partitioned(|a| a.seller);
    let p = persons
        .join(auctions, Duration::from_secs(10), |_, p, a| {
            let w = window(p.date_time, 10_000);
            (w == window(a.date_time, 10_000)).then(|| (p.id, p.name.clone(), w))
        })
        .to("q8", |_| None);
    let (cpu, wall) = run(t, "q8", vec![p]).await?;
    let mut want: Vec<(u64, String, i64)> = Vec::new();
    for a in &input.auctions {
        if let Some(p) = by_id.get(&a.seller) {
            let w = window(p.date_time, 10_000);
            if w == window(a.date_time, 10_000) {
                want.push((p.id, p.name.clone(), w));
            }
        }
    }
    want.sort();
    let mut got: Vec<(u64, String, i64)> = read(t, "q8").await?;
    got.sort();
    ensure!(
        !want.is_empty() && got == want,
        "q8 differs: {} against {}",
        got.len(),
        want.len()
    );
    rows.push(("q8 window join".into(), n, cpu, wall));
    Ok(rows)
}

/// q5 (hot items), q7 (highest bid) and q11 (user sessions).
async fn windows(
    t: &dyn Transport,
    input: &Input,
    slow_bids: &[Bid],
) -> Result<Vec<(String, usize, f64, Duration)>> {
    let mut rows = Vec::new();
    let bids = input.bids.len();
    // q5: bids per auction in 10 s windows every 2 s, then the most bid-on auctions of each.
    let counts = Stream::<Bid>::json(&["bids"])
        .event_time(|b| b.date_time)
        .key_by_partitioned(|b| b.auction)
        .window(Windows::hopping(Duration::from_secs(10), Duration::from_secs(2)))
        .count()
        .to("q5-counts");
    let hottest = Stream::<WindowResult<u64, u64>>::json(&["q5-counts"])
        .event_time(|r| r.start_ms)
        .key_by_partitioned(|r| r.start_ms)
        .window(Windows::tumbling(Duration::from_secs(2)))
        .aggregate(
            || (0u64, Vec::<u64>::new()),
            |best, r| {
                if r.value > best.0 {
                    *best = (r.value, vec![r.key]);
                } else if r.value == best.0 {
                    best.1.push(r.key);
                }
            },
        )
        .to("q5");
    let (cpu, wall) = run(t, "q5", vec![counts, hottest]).await?;
    let mut per: HashMap<(i64, u64), u64> = HashMap::new();
    for b in &input.bids {
        let last = window(b.date_time, 2_000);
        for start in (0..5).map(|i| last - i * 2_000) {
            *per.entry((start, b.auction)).or_default() += 1;
        }
    }
    let mut want: BTreeMap<i64, (u64, Vec<u64>)> = BTreeMap::new();
    for ((start, auction), n) in per {
        let best = want.entry(start).or_insert((0, Vec::new()));
        if n > best.0 {
            *best = (n, vec![auction]);
        } else if n == best.0 {
            best.1.push(auction);
        }
    }
    for v in want.values_mut() {
        v.1.sort();
    }
    let got: BTreeMap<i64, (u64, Vec<u64>)> = read::<WindowResult<i64, (u64, Vec<u64>)>>(t, "q5")
        .await?
        .into_iter()
        .map(|r| {
            let (n, mut a) = r.value;
            a.sort();
            (r.key, (n, a))
        })
        .collect();
    if let Some((k, v)) = want.iter().find(|(k, v)| got.get(*k) != Some(*v)) {
        anyhow::bail!(
            "q5 differs at window {k}: want {v:?}, got {:?} ({} windows against {})",
            got.get(k),
            got.len(),
            want.len()
        );
    }
    ensure!(got == want, "q5 has windows the reference does not");
    rows.push(("q5 hot items (hopping, two stages)".into(), bids, cpu, wall));

    // q7: the highest bids of each 10 s window.
    let p = Stream::<Bid>::json(&["bids"])
        .event_time(|b| b.date_time)
        .key_by_partitioned(|_| 0u8)
        .window(Windows::tumbling(Duration::from_secs(10)))
        .aggregate(|| (0u64, Vec::new()), common::keep_highest)
        .to("q7");
    let (cpu, wall) = run(t, "q7", vec![p]).await?;
    let mut want: BTreeMap<i64, u64> = BTreeMap::new();
    for b in &input.bids {
        let m = want.entry(window(b.date_time, 10_000)).or_default();
        *m = (*m).max(b.price);
    }
    let got: BTreeMap<i64, u64> = read::<WindowResult<u8, (u64, Vec<(u64, u64)>)>>(t, "q7")
        .await?
        .into_iter()
        .map(|r| (r.start_ms, r.value.0))
        .collect();
    ensure!(got == want, "q7 differs");
    rows.push(("q7 highest bid".into(), bids, cpu, wall));

    // q11: bids per bidder session (10 s gap), over bids generated at 1,000 events/s.
    let p = Stream::<Bid>::json(&["bids-slow"])
        .event_time(|b| b.date_time)
        .key_by_partitioned(|b| b.bidder)
        .window(Windows::session(Duration::from_secs(10)))
        .count()
        .to("q11");
    let (cpu, wall) = run(t, "q11", vec![p]).await?;
    let mut by_bidder: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for b in slow_bids {
        by_bidder.entry(b.bidder).or_default().push(b.date_time);
    }
    let mut want: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for (bidder, mut ts) in by_bidder {
        ts.sort();
        let (mut start, mut last, mut n) = (ts[0], ts[0], 0u64);
        for t in ts {
            if t >= last + 10_000 {
                want.insert((bidder, start), n);
                (start, n) = (t, 0);
            }
            last = t;
            n += 1;
        }
        want.insert((bidder, start), n);
    }
    let got: BTreeMap<(u64, i64), u64> = read::<WindowResult<u64, u64>>(t, "q11")
        .await?
        .into_iter()
        .map(|r| ((r.key, r.start_ms), r.value))
        .collect();
    ensure!(
        got.len() > slow_bids.len() / 1_000 && got == want,
        "q11 differs: {} sessions against {}",
        got.len(),
        want.len()
    );
    rows.push(("q11 user sessions".into(), slow_bids.len(), cpu, wall));
    Ok(rows)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let slow: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(events / 4);
    let dir = tempfile::tempdir()?;
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    })?;
    let transport: Arc<dyn Transport> = Arc::new(EmbeddedTransport::new(broker));
    let t = transport.as_ref();
    let input = generate(events, 10_000);
    let slow_bids = generate(slow, 1_000).bids;
    // The same bids as JSON lines, for engines that read files (Flink, a naive loop).
    if let Ok(path) = std::env::var("NEXMARK_DUMP_BIDS") {
        let mut text = String::new();
        for b in &input.bids {
            text.push_str(&serde_json::to_string(b)?);
            text.push('\n');
        }
        std::fs::write(&path, text)?;
        println!("wrote {} bids to {path}", input.bids.len());
        return Ok(());
    }
    publish(t, "persons", &input.persons).await?;
    publish(t, "auctions", &input.auctions).await?;
    publish(t, "bids", &input.bids).await?;
    publish(t, "bids-slow", &slow_bids).await?;
    println!(
        "{events} events ({} persons, {} auctions, {} bids) at 10,000/s; q11: {} bids at 1,000/s",
        input.persons.len(),
        input.auctions.len(),
        input.bids.len(),
        slow_bids.len()
    );
    let rows = queries(t, &input, &slow_bids).await?;
    let q0 = rows.first().map_or(1.0, |r| r.1 as f64 / r.2.max(0.01));
    println!(
        "{:<36} {:>10} {:>8} {:>8} {:>16} {:>8}",
        "query (all outputs equal the reference)", "input", "CPU s", "wall s", "events per CPU-s", "vs q0"
    );
    for (name, n, cpu, wall) in rows {
        let rate = n as f64 / cpu.max(0.01);
        println!(
            "{name:<36} {n:>10} {cpu:>8.2} {:>8.2} {rate:>16.0} {:>8.2}",
            wall.as_secs_f64(),
            rate / q0
        );
    }
    Ok(())
}
