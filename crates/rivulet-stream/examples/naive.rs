//! The floor for Nexmark side by side: a naive single-threaded loop over the same JSON-lines
//! file of bids the other engines read. q0 decodes each bid and encodes it again; the count
//! decodes each bid and counts it per auction and 10 s window in a hash map. Reading the
//! file into memory is left out of the CPU figure.
//!
//! `cargo run --release -p rivulet-stream --example naive -- <bids.jsonl>`

use std::collections::HashMap;

use anyhow::{Context, Result};

mod common;
use common::{cpu_s, Bid};

fn q0(lines: &[&str]) -> Result<usize> {
    let mut bytes = 0;
    for line in lines {
        let bid: Bid = serde_json::from_str(line)?;
        bytes += serde_json::to_vec(&bid)?.len();
    }
    Ok(bytes)
}

fn count(lines: &[&str]) -> Result<usize> {
    let mut counts: HashMap<(u64, i64), u64> = HashMap::new();
    for line in lines {
        let bid: Bid = serde_json::from_str(line)?;
        *counts
            .entry((bid.auction, bid.date_time - bid.date_time.rem_euclid(10_000)))
            .or_default() += 1;
    }
    Ok(counts.len())
}

fn main() -> Result<()> {
    let path = std::env::args().nth(1).context("usage: naive <bids.jsonl>")?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    for (name, query) in [("q0", q0 as fn(&[&str]) -> Result<usize>), ("count", count)] {
        let before = cpu_s();
        let out = query(&lines)?;
        let cpu = cpu_s() - before;
        println!(
            "naive {name}: {} bids, {cpu:.2} CPU s, {:.0} events per CPU-s (output {out})",
            lines.len(),
            lines.len() as f64 / cpu.max(0.01)
        );
    }
    Ok(())
}
