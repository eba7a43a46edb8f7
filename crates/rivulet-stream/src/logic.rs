//! The task logic of the two pipeline shapes: stateless (operators straight to a topic)
//! and windowed aggregation.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use rivulet_sdk::OutRecord;

use crate::agg::{AggFns, Emit, Step, WindowAgg};
use crate::stream::{Chain, KeyedChain, StateKey, StateValue};
use crate::task::{
    ChangelogEntry, Ctx, SideReason, TaskLogic, TaskOut, HEADER_EVENT_TIME, HEADER_SIDE, HEADER_SOURCE,
    HEADER_UPSTREAM, HEADER_UPSTREAM_WATERMARK,
};
use crate::window::{Window, Windows};

/// The record key of a result: a string key as it is, anything else as JSON.
pub fn encode_key<K: Serialize>(key: &K) -> Result<Vec<u8>, serde_json::Error> {
    match serde_json::to_value(key)? {
        serde_json::Value::String(s) => Ok(s.into_bytes()),
        other => serde_json::to_vec(&other),
    }
}

/// A window's result as written to the output topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult<K, A> {
    /// The key.
    pub key: K,
    /// Window start (ms, inclusive).
    pub start_ms: i64,
    /// Window end (ms, exclusive).
    pub end_ms: i64,
    /// The aggregate.
    pub value: A,
    /// With on-update emission: this session merged into a larger one and no longer
    /// stands.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retracted: bool,
}

/// Picks the record key of an output value.
pub type KeyFn<T> = Arc<dyn Fn(&T) -> Option<String> + Send + Sync>;

/// Operators straight to the output topic.
pub struct StatelessLogic<T> {
    chain: Chain<T>,
    key: KeyFn<T>,
}

impl<T> StatelessLogic<T> {
    /// Logic running `chain` and keying outputs with `key`.
    pub fn new(chain: Chain<T>, key: KeyFn<T>) -> StatelessLogic<T> {
        StatelessLogic { chain, key }
    }
}

impl<T: Serialize + Send + 'static> TaskLogic for StatelessLogic<T> {
    fn process(&mut self, ctx: &mut Ctx<'_>) {
        let mut failed: Option<String> = None;
        let (key, input, limit) = (&self.key, ctx.input, ctx.future_limit_ms);
        let mut late: Vec<i64> = Vec::new();
        let clock = &mut *ctx.clock;
        let results = &mut ctx.out.results;
        let outcome = (self.chain)(ctx.record, &mut |ts, v| {
            if ts > limit {
                late.push(ts);
                return;
            }
            clock.observe(input, ts);
            match serde_json::to_vec(&v) {
                Ok(value) => results.push(OutRecord {
                    key: key(&v).map(String::into_bytes),
                    value: Some(value),
                    headers: Vec::new(),
                    partition: None,
                }),
                Err(e) => failed = Some(format!("result not encodable: {e}")),
            }
        });
        for ts in late {
            ctx.side(SideReason::TooFarInFuture, ts, None);
        }
        if let Some(reason) = outcome.err().or(failed) {
            ctx.dead_letter(&reason);
        }
    }
}

/// Encodes a value for the repartition topic.
pub type EncodeFn<T> = Arc<dyn Fn(&T) -> Result<Vec<u8>, String> + Send + Sync>;
/// Decodes a value from the repartition topic.
pub type DecodeFn<T> = Arc<dyn Fn(&[u8]) -> Result<T, String> + Send + Sync>;

/// Encodes and decodes the values a repartition topic carries.
pub struct ShuffleCodec<T> {
    /// Value to bytes.
    pub encode: EncodeFn<T>,
    /// Bytes to value.
    pub decode: DecodeFn<T>,
}

impl<T> Clone for ShuffleCodec<T> {
    fn clone(&self) -> Self {
        ShuffleCodec {
            encode: self.encode.clone(),
            decode: self.decode.clone(),
        }
    }
}

/// The first stage of a repartitioned job: runs the operators up to `key_by` and writes
/// each keyed value to the repartition topic with its event time, its source and this
/// task's watermark before it.
pub struct ShuffleLogic<K, T> {
    chain: KeyedChain<K, T>,
    codec: ShuffleCodec<T>,
    /// The join side its records carry (`rivulet-side`), for joins.
    side: Option<&'static str>,
}

impl<K, T> ShuffleLogic<K, T> {
    /// Logic running `chain` and encoding with `codec`.
    pub fn new(chain: KeyedChain<K, T>, codec: ShuffleCodec<T>) -> ShuffleLogic<K, T> {
        ShuffleLogic {
            chain,
            codec,
            side: None,
        }
    }

    /// Marks every record with a join side.
    pub fn side(mut self, side: &'static str) -> ShuffleLogic<K, T> {
        self.side = Some(side);
        self
    }
}

impl<K: StateKey, T: Send + 'static> TaskLogic for ShuffleLogic<K, T> {
    fn process(&mut self, ctx: &mut Ctx<'_>) {
        let (input, limit) = (ctx.input, ctx.future_limit_ms);
        let r = ctx.record;
        let source = format!("{}/{}/{}", r.topic, r.partition, r.offset);
        let mut future: Vec<i64> = Vec::new();
        let mut failed: Option<String> = None;
        let clock = &mut *ctx.clock;
        let shuffled = &mut ctx.out.shuffled;
        let encode = &self.codec.encode;
        let side = self.side;
        let outcome = (self.chain)(r, &mut |ts, key, value| {
            if ts > limit {
                future.push(ts);
                return;
            }
            let watermark = clock.watermark_ms;
            clock.observe(input, ts);
            let encoded = serde_json::to_vec(&key)
                .map_err(|e| e.to_string())
                .and_then(|k| Ok((k, encode(&value)?)));
            match encoded {
                Ok((k, v)) => shuffled.push(OutRecord {
                    key: Some(k),
                    value: Some(v),
                    headers: side
                        .map(|s| (HEADER_SIDE.to_string(), s.as_bytes().to_vec()))
                        .into_iter()
                        .chain([
                            (HEADER_EVENT_TIME.to_string(), ts.to_string().into_bytes()),
                            (
                                HEADER_UPSTREAM.to_string(),
                                input.partition.to_string().into_bytes(),
                            ),
                            (
                                HEADER_UPSTREAM_WATERMARK.to_string(),
                                watermark.to_string().into_bytes(),
                            ),
                            (HEADER_SOURCE.to_string(), source.clone().into_bytes()),
                        ])
                        .collect(),
                    partition: None,
                }),
                Err(e) => failed = Some(format!("key or value not encodable: {e}")),
            }
        });
        for ts in future {
            ctx.side(SideReason::TooFarInFuture, ts, None);
        }
        if let Some(reason) = outcome.err().or(failed) {
            ctx.dead_letter(&reason);
        }
    }
}

/// The chain of the second stage: a repartitioned record back to its key, value and
/// event time.
pub fn unshuffle<K: StateKey, T: Send + 'static>(codec: ShuffleCodec<T>) -> KeyedChain<K, T> {
    Arc::new(move |r, emit| {
        let key: K = serde_json::from_slice(r.key.as_deref().ok_or("no key")?).map_err(|e| e.to_string())?;
        let value = (codec.decode)(r.value.as_deref().ok_or("no value")?)?;
        let ts: i64 = r
            .header(HEADER_EVENT_TIME)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .ok_or("no event time")?;
        emit(ts, key, value);
        Ok(())
    })
}

/// A windowed aggregation per key.
pub struct WindowLogic<K, T, A> {
    chain: KeyedChain<K, T>,
    agg: WindowAgg<K, T, A>,
    steps: Vec<Step<K, A>>,
    /// Whether record timestamps move the clock (false behind a repartition topic, where
    /// the upstream watermarks do).
    observe_records: bool,
    /// Which results are written (all when `None`).
    keep: Option<crate::stream::ResultFilter<K, A>>,
}

impl<K: StateKey, T: Send + 'static, A: StateValue> WindowLogic<K, T, A> {
    /// An empty aggregation fed by `chain`.
    pub fn new(
        chain: KeyedChain<K, T>,
        windows: Windows,
        lateness_ms: i64,
        emit: Emit,
        fns: AggFns<T, A>,
    ) -> WindowLogic<K, T, A> {
        WindowLogic {
            chain,
            agg: WindowAgg::new(windows, lateness_ms, emit, fns),
            steps: Vec::new(),
            observe_records: true,
            keep: None,
        }
    }

    /// Writes only the results `keep` accepts.
    pub fn keeping(mut self, keep: Option<crate::stream::ResultFilter<K, A>>) -> WindowLogic<K, T, A> {
        self.keep = keep;
        self
    }

    /// Behind a repartition topic: the runner moves the clock from upstream watermarks.
    pub fn behind_shuffle(mut self) -> WindowLogic<K, T, A> {
        self.observe_records = false;
        self
    }

    fn result_record(
        key: K,
        window: Window,
        value: A,
        retracted: bool,
    ) -> Result<OutRecord, serde_json::Error> {
        let record_key = encode_key(&key)?;
        let body = WindowResult {
            key,
            start_ms: window.start_ms,
            end_ms: window.end_ms,
            value,
            retracted,
        };
        Ok(OutRecord {
            key: Some(record_key),
            value: Some(serde_json::to_vec(&body)?),
            headers: Vec::new(),
            partition: None,
        })
    }

    fn push(out: &mut TaskOut, record: Result<OutRecord, serde_json::Error>) {
        match record {
            Ok(r) => out.results.push(r),
            Err(e) => tracing::error!(error = %e, "Window result not encodable; skipped"),
        }
    }

    /// Moves results into `out` and returns the windows the record missed.
    fn drain(
        steps: &mut Vec<Step<K, A>>,
        out: &mut TaskOut,
        keep: Option<&crate::stream::ResultFilter<K, A>>,
    ) -> Vec<Window> {
        let mut missed = Vec::new();
        for step in steps.drain(..) {
            let kept = match (&step, keep) {
                (Step::Result { key, value, .. } | Step::Retract { key, value, .. }, Some(k)) => {
                    k(key, value)
                }
                _ => true,
            };
            if !kept {
                continue;
            }
            match step {
                Step::Result { key, window, value } => {
                    Self::push(out, Self::result_record(key, window, value, false))
                }
                Step::Retract { key, window, value } => {
                    Self::push(out, Self::result_record(key, window, value, true))
                }
                Step::Late { window } => missed.push(window),
            }
        }
        missed
    }
}

impl<K: StateKey, T: Send + 'static, A: StateValue> TaskLogic for WindowLogic<K, T, A> {
    fn process(&mut self, ctx: &mut Ctx<'_>) {
        let chain = self.chain.clone();
        let observe = self.observe_records;
        let keep = self.keep.as_ref();
        let (agg, steps) = (&mut self.agg, &mut self.steps);
        let (input, limit) = (ctx.input, ctx.future_limit_ms);
        // (event time, window missed or None for too far in the future)
        let mut side: Vec<(i64, Option<Window>)> = Vec::new();
        let clock = &mut *ctx.clock;
        let out = &mut *ctx.out;
        let outcome = chain(ctx.record, &mut |ts, key, value| {
            if ts > limit {
                side.push((ts, None));
                return;
            }
            agg.add(clock.watermark_ms, ts, key, &value, steps);
            let watermark = if observe {
                clock.observe(input, ts)
            } else {
                clock.watermark_ms
            };
            for w in Self::drain(steps, out, keep) {
                side.push((ts, Some(w)));
            }
            agg.advance(watermark, steps);
            Self::drain(steps, out, keep);
        });
        for (ts, window) in side {
            let reason = if window.is_some() {
                SideReason::Late
            } else {
                SideReason::TooFarInFuture
            };
            ctx.side(reason, ts, window);
        }
        if let Err(reason) = outcome {
            ctx.dead_letter(&reason);
        }
    }

    fn advance(&mut self, watermark_ms: i64, out: &mut TaskOut) {
        self.agg.advance(watermark_ms, &mut self.steps);
        Self::drain(&mut self.steps, out, self.keep.as_ref());
    }

    fn take_changelog(&mut self) -> Result<Vec<ChangelogEntry>, String> {
        let mut entries = Vec::new();
        for (key, window, value) in self.agg.take_dirty() {
            let k = serde_json::to_vec(&(key, window.start_ms, window.end_ms)).map_err(|e| e.to_string())?;
            let v = match value {
                Some(a) => Some(serde_json::to_vec(&a).map_err(|e| e.to_string())?),
                None => None,
            };
            entries.push((k, v));
        }
        Ok(entries)
    }

    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let (k, start, end): (K, i64, i64) = serde_json::from_slice(key).map_err(|e| e.to_string())?;
        if start >= end {
            return Err(format!("empty window [{start}, {end})"));
        }
        let v: Option<A> = match value {
            Some(bytes) => Some(serde_json::from_slice(bytes).map_err(|e| e.to_string())?),
            None => None,
        };
        self.agg.restore(k, Window::new(start, end), v);
        Ok(())
    }

    fn state_len(&self) -> usize {
        self.agg.len()
    }

    fn query(&self, key: &str) -> Option<Vec<serde_json::Value>> {
        let k: K = serde_json::from_str(key)
            .or_else(|_| serde_json::from_value(serde_json::Value::String(key.to_string())))
            .ok()?;
        let windows = self.agg.windows_of(&k);
        Some(
            windows
                .into_iter()
                .map(|(w, a)| serde_json::json!({"start_ms": w.start_ms, "end_ms": w.end_ms, "value": a}))
                .collect(),
        )
    }
}

/// Logic that does nothing: stands in for a pipeline that failed validation.
pub struct Nothing;

impl TaskLogic for Nothing {
    fn process(&mut self, _ctx: &mut Ctx<'_>) {}
}
