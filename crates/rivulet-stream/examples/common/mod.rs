//! What the benchmark examples share: the Nexmark bid as they write it, and process CPU
//! time. Each example uses part of it.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};

/// A Nexmark bid, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bid {
    pub auction: u64,
    pub bidder: u64,
    pub price: u64,
    pub channel: String,
    pub date_time: i64,
}

/// CPU time (user + system) of process `pid` (`"self"` for this one), in seconds.
pub fn cpu_s_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of /proc/<pid>/stat (utime, stime), counted from after the command
    // name; 100 ticks per second.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU time of this process, in seconds.
pub fn cpu_s() -> f64 {
    cpu_s_of("self")
}

/// Nexmark q7's fold: the highest price of a window and the (auction, bidder) pairs bidding
/// it.
pub fn keep_highest(best: &mut (u64, Vec<(u64, u64)>), b: &Bid) {
    if b.price > best.0 {
        *best = (b.price, vec![(b.auction, b.bidder)]);
    } else if b.price == best.0 {
        best.1.push((b.auction, b.bidder));
    }
}
