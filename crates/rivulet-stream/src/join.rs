//! Stream-stream interval joins: per key, every pair of a left and a right value whose event
//! times are at most `within` apart, emitted when the second of the two arrives.
//!
//! Rules (tested against a batch reference): a value is late when
//! `ts + lateness < watermark` and goes to the side output; a buffered value is dropped when
//! `ts + within + lateness < watermark`. A value that is not late can then still meet every
//! value it pairs with, so the output is exactly the pairs of values that were not late.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use rivulet_sdk::OutRecord;

use crate::logic::KeyFn;
use crate::stream::{KeyedChain, StateKey};
use crate::task::{ChangelogEntry, Ctx, SideReason, TaskLogic, TaskOut, HEADER_SIDE, HEADER_SOURCE};

/// Makes the output of a pair.
pub type JoinFn<K, L, R, U> = Arc<dyn Fn(&K, &L, &R) -> Option<U> + Send + Sync>;

/// Which side a record is on.
#[derive(Clone)]
pub enum Sides {
    /// Records of these topics are left, the rest right (co-partitioned inputs).
    LeftTopics(Arc<HashSet<String>>),
    /// The `rivulet-side` header says (behind a repartition topic).
    Header,
}

/// A buffered value: event time, unique id (its source and index), value.
type Held<V> = Vec<(i64, String, V)>;

/// The values of both sides waiting for partners, per key.
pub struct JoinLogic<K, L, R, U> {
    left: KeyedChain<K, L>,
    right: KeyedChain<K, R>,
    sides: Sides,
    joiner: JoinFn<K, L, R, U>,
    out_key: KeyFn<U>,
    within_ms: i64,
    lateness_ms: i64,
    observe_records: bool,
    held: HashMap<K, (Held<L>, Held<R>)>,
    /// Drop time (`ts + within + lateness`) to keys that may hold a value to drop then.
    timers: BTreeMap<i64, Vec<K>>,
    /// Changelog entries since the last checkpoint: key -> value (None deletes).
    dirty: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<K, L, R, U> JoinLogic<K, L, R, U>
where
    K: StateKey,
    L: Clone + Serialize + DeserializeOwned + Send + 'static,
    R: Clone + Serialize + DeserializeOwned + Send + 'static,
    U: Serialize + Send + 'static,
{
    /// A join of `left` and `right` chains.
    // Eight settings of one join, all required; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        left: KeyedChain<K, L>,
        right: KeyedChain<K, R>,
        sides: Sides,
        joiner: JoinFn<K, L, R, U>,
        out_key: KeyFn<U>,
        within_ms: i64,
        lateness_ms: i64,
        observe_records: bool,
    ) -> Self {
        assert!(within_ms >= 0 && lateness_ms >= 0, "negative join bounds");
        JoinLogic {
            left,
            right,
            sides,
            joiner,
            out_key,
            within_ms,
            lateness_ms,
            observe_records,
            held: HashMap::new(),
            timers: BTreeMap::new(),
            dirty: HashMap::new(),
        }
    }

    fn is_left(&self, ctx: &Ctx<'_>) -> bool {
        match &self.sides {
            Sides::LeftTopics(t) => t.contains(&ctx.record.topic),
            Sides::Header => ctx.record.header(HEADER_SIDE) == Some(b"l"),
        }
    }

    fn state_key(key: &K, side: &str, ts: i64, id: &str) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&(key, side, ts, id))
    }

    fn emit(&self, key: &K, l: &L, r: &R, out: &mut TaskOut) {
        let Some(u) = (self.joiner)(key, l, r) else {
            return;
        };
        match serde_json::to_vec(&u) {
            Ok(value) => out.results.push(OutRecord {
                key: (self.out_key)(&u).map(String::into_bytes),
                value: Some(value),
                headers: Vec::new(),
                partition: None,
            }),
            Err(e) => tracing::error!(error = %e, "Join result not encodable; skipped"),
        }
    }

    /// Joins one value with the other side's held values and holds it.
    fn add(&mut self, ts: i64, id: String, key: K, value: (Option<L>, Option<R>), out: &mut TaskOut) {
        let (l, r) = value;
        let left = l.is_some();
        let entry = self.held.entry(key.clone()).or_default();
        let within = self.within_ms;
        let mut pairs: Vec<(L, R)> = Vec::new();
        if let Some(l) = &l {
            for (rts, _, r) in &entry.1 {
                if (ts - rts).abs() <= within {
                    pairs.push((l.clone(), r.clone()));
                }
            }
        }
        if let Some(r) = &r {
            for (lts, _, l) in &entry.0 {
                if (ts - lts).abs() <= within {
                    pairs.push((l.clone(), r.clone()));
                }
            }
        }
        let encoded = match (&l, &r) {
            (Some(v), _) => serde_json::to_vec(v),
            (_, Some(v)) => serde_json::to_vec(v),
            _ => return,
        };
        let side = if left { "l" } else { "r" };
        match (Self::state_key(&key, side, ts, &id), encoded) {
            (Ok(k), Ok(v)) => {
                self.dirty.insert(k, Some(v));
            }
            (Err(e), _) | (_, Err(e)) => tracing::error!(error = %e, "Join state not encodable"),
        }
        match (l, r) {
            (Some(l), _) => entry.0.push((ts, id, l)),
            (_, Some(r)) => entry.1.push((ts, id, r)),
            _ => {}
        }
        let at = ts.saturating_add(within).saturating_add(self.lateness_ms);
        self.timers.entry(at).or_default().push(key.clone());
        for (l, r) in pairs {
            self.emit(&key, &l, &r, out);
        }
    }

    /// Drops held values whose partners can no longer arrive.
    fn evict(&mut self, watermark_ms: i64) {
        let horizon = self.within_ms.saturating_add(self.lateness_ms);
        // Bounded by the timers due; each is removed.
        while let Some(entry) = self.timers.first_entry() {
            if *entry.key() >= watermark_ms {
                break;
            }
            for key in entry.remove() {
                let Some((ls, rs)) = self.held.get_mut(&key) else {
                    continue;
                };
                let mut gone: Vec<(&'static str, i64, String)> = Vec::new();
                ls.retain(|(ts, id, _)| {
                    let keep = ts.saturating_add(horizon) >= watermark_ms;
                    if !keep {
                        gone.push(("l", *ts, id.clone()));
                    }
                    keep
                });
                rs.retain(|(ts, id, _)| {
                    let keep = ts.saturating_add(horizon) >= watermark_ms;
                    if !keep {
                        gone.push(("r", *ts, id.clone()));
                    }
                    keep
                });
                if ls.is_empty() && rs.is_empty() {
                    self.held.remove(&key);
                }
                for (side, ts, id) in gone {
                    if let Ok(k) = Self::state_key(&key, side, ts, &id) {
                        self.dirty.insert(k, None);
                    }
                }
            }
        }
    }
}

impl<K, L, R, U> TaskLogic for JoinLogic<K, L, R, U>
where
    K: StateKey,
    L: Clone + Serialize + DeserializeOwned + Send + 'static,
    R: Clone + Serialize + DeserializeOwned + Send + 'static,
    U: Serialize + Send + 'static,
{
    fn process(&mut self, ctx: &mut Ctx<'_>) {
        let left = self.is_left(ctx);
        let source = ctx
            .record
            .header(HEADER_SOURCE)
            .map(|s| String::from_utf8_lossy(s).to_string())
            .unwrap_or_else(|| {
                format!(
                    "{}/{}/{}",
                    ctx.record.topic, ctx.record.partition, ctx.record.offset
                )
            });
        // Values of the record: (ts, key, left value, right value).
        let mut items: Vec<(i64, K, Option<L>, Option<R>)> = Vec::new();
        let outcome = if left {
            (self.left.clone())(ctx.record, &mut |ts, k, v| items.push((ts, k, Some(v), None)))
        } else {
            (self.right.clone())(ctx.record, &mut |ts, k, v| items.push((ts, k, None, Some(v))))
        };
        for (i, (ts, key, l, r)) in items.into_iter().enumerate() {
            if ts > ctx.future_limit_ms {
                ctx.side(SideReason::TooFarInFuture, ts, None);
                continue;
            }
            if ts.saturating_add(self.lateness_ms) < ctx.clock.watermark_ms {
                ctx.side(SideReason::Late, ts, None);
                continue;
            }
            self.add(ts, format!("{source}#{i}"), key, (l, r), ctx.out);
            let watermark = if self.observe_records {
                ctx.clock.observe(ctx.input, ts)
            } else {
                ctx.clock.watermark_ms
            };
            self.evict(watermark);
        }
        if let Err(reason) = outcome {
            ctx.dead_letter(&reason);
        }
    }

    fn advance(&mut self, watermark_ms: i64, _out: &mut TaskOut) {
        self.evict(watermark_ms);
    }

    fn take_changelog(&mut self) -> Result<Vec<ChangelogEntry>, String> {
        Ok(self.dirty.drain().collect())
    }

    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let (k, side, ts, id): (K, String, i64, String) =
            serde_json::from_slice(key).map_err(|e| e.to_string())?;
        let entry = self.held.entry(k.clone()).or_default();
        entry.0.retain(|(_, i, _)| !(side == "l" && *i == id));
        entry.1.retain(|(_, i, _)| !(side == "r" && *i == id));
        if let Some(bytes) = value {
            match side.as_str() {
                "l" => entry
                    .0
                    .push((ts, id, serde_json::from_slice(bytes).map_err(|e| e.to_string())?)),
                "r" => entry
                    .1
                    .push((ts, id, serde_json::from_slice(bytes).map_err(|e| e.to_string())?)),
                other => return Err(format!("unknown join side {other:?}")),
            }
            let at = ts.saturating_add(self.within_ms).saturating_add(self.lateness_ms);
            self.timers.entry(at).or_default().push(k);
        }
        Ok(())
    }

    fn state_len(&self) -> usize {
        self.held.values().map(|(l, r)| l.len() + r.len()).sum()
    }
}

/// The first stage of a repartitioned join: each side's operators, their records marked
/// with the side.
pub struct JoinShuffle {
    /// Topics of the left side.
    pub left_topics: Arc<HashSet<String>>,
    /// The left side's first stage.
    pub left: Box<dyn TaskLogic>,
    /// The right side's first stage.
    pub right: Box<dyn TaskLogic>,
}

impl TaskLogic for JoinShuffle {
    fn process(&mut self, ctx: &mut Ctx<'_>) {
        if self.left_topics.contains(&ctx.record.topic) {
            self.left.process(ctx)
        } else {
            self.right.process(ctx)
        }
    }
}
