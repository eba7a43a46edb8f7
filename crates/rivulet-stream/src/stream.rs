//! The job-building API: sources, stateless operators, keying and windows.
//!
//! A chain of operators runs per input record and calls its sink with zero or more
//! `(event time, value)` items; keyed chains add the key. Nothing is boxed per record
//! except the record's own values.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use rivulet_sdk::{InRecord, Received};

use crate::agg::{AggFns, Emit};
use crate::join::{JoinFn, JoinLogic, JoinShuffle, Sides};
use crate::logic::{unshuffle, KeyFn, ShuffleCodec, ShuffleLogic, StatelessLogic, WindowLogic};
use crate::pipeline::Pipeline;
use crate::table::{Table, TableSource};
use crate::window::{duration_ms, Windows};

/// A chain of operators from an input record to `(event time, value)` items; an error
/// means the record could not be decoded.
pub type Chain<T> = Arc<dyn Fn(&InRecord, &mut dyn FnMut(i64, T)) -> Result<(), String> + Send + Sync>;

/// A keyed chain: items carry their key.
pub type KeyedChain<K, T> =
    Arc<dyn Fn(&InRecord, &mut dyn FnMut(i64, K, T)) -> Result<(), String> + Send + Sync>;

/// A stream of values of type `T` with event times.
pub struct Stream<T> {
    pub(crate) inputs: Vec<String>,
    pub(crate) chain: Chain<T>,
    /// Tables the operators read.
    pub(crate) tables: Vec<Arc<dyn TableSource>>,
}

impl Stream<InRecord> {
    /// The records of `topics` as they are; event time is the record timestamp.
    pub fn records(topics: &[&str]) -> Stream<InRecord> {
        Stream {
            inputs: topics.iter().map(|t| t.to_string()).collect(),
            chain: Arc::new(|r: &InRecord, emit: &mut dyn FnMut(i64, InRecord)| {
                emit(r.timestamp_ms, r.clone());
                Ok(())
            }),
            tables: Vec::new(),
        }
    }
}

impl<T: Send + 'static> Stream<T> {
    /// Record values of `topics` decoded as JSON; event time is the record timestamp
    /// (see [`Stream::event_time`]). Values that do not decode go to `<job>.dlq`.
    pub fn json(topics: &[&str]) -> Stream<T>
    where
        T: DeserializeOwned,
    {
        Stream {
            inputs: topics.iter().map(|t| t.to_string()).collect(),
            chain: Arc::new(|r: &InRecord, emit: &mut dyn FnMut(i64, T)| {
                let bytes = r.value.as_deref().ok_or("tombstone (no value)")?;
                let v: T = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                emit(r.timestamp_ms, v);
                Ok(())
            }),
            tables: Vec::new(),
        }
    }

    /// The data of CloudEvents (the SDK's envelope: binary mode, JSON data) in `topics`.
    pub fn cloudevents(topics: &[&str]) -> Stream<T>
    where
        T: DeserializeOwned,
    {
        Stream {
            inputs: topics.iter().map(|t| t.to_string()).collect(),
            chain: Arc::new(|r: &InRecord, emit: &mut dyn FnMut(i64, T)| {
                let event = Received::from_record(r.clone());
                let v: T = event.data().map_err(|e| e.to_string())?;
                emit(r.timestamp_ms, v);
                Ok(())
            }),
            tables: Vec::new(),
        }
    }

    fn then<U: Send + 'static>(
        self,
        step: impl Fn(i64, T, &mut dyn FnMut(i64, U)) + Send + Sync + 'static,
    ) -> Stream<U> {
        let prev = self.chain;
        Stream {
            inputs: self.inputs,
            chain: Arc::new(move |r: &InRecord, emit: &mut dyn FnMut(i64, U)| {
                prev(r, &mut |ts, v| step(ts, v, emit))
            }),
            tables: self.tables,
        }
    }

    /// Transforms every value.
    pub fn map<U: Send + 'static>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Stream<U> {
        self.then(move |ts, v, emit| emit(ts, f(v)))
    }

    /// Keeps the values `f` accepts.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<T> {
        self.then(move |ts, v, emit| {
            if f(&v) {
                emit(ts, v)
            }
        })
    }

    /// Replaces every value by zero or more values (same event time).
    pub fn flat_map<U: Send + 'static, I: IntoIterator<Item = U>>(
        self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Stream<U> {
        self.then(move |ts, v, emit| {
            for u in f(v) {
                emit(ts, u)
            }
        })
    }

    /// Joins each value with the current row of `table` under `key(value)`; `joiner`
    /// gets the value and the row (`None` when the table has no such key) and returns the
    /// output, or `None` to drop the value (an inner join drops on a missing row).
    pub fn join_table<V, U>(
        self,
        table: &Table<V>,
        key: impl Fn(&T) -> String + Send + Sync + 'static,
        joiner: impl Fn(T, Option<&V>) -> Option<U> + Send + Sync + 'static,
    ) -> Stream<U>
    where
        V: DeserializeOwned + Send + Sync + 'static,
        U: Send + 'static,
    {
        let lookup = table.clone();
        let mut joined = self.then(move |ts, v, emit| {
            let k = key(&v);
            if let Some(u) = lookup.with(&k, |row| joiner(v, row)) {
                emit(ts, u)
            }
        });
        joined.tables.push(Arc::new(table.clone()));
        joined
    }

    /// Takes event time (ms since the epoch) from the value instead of the record.
    pub fn event_time(self, f: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Stream<T> {
        self.then(move |_, v, emit| emit(f(&v), v))
    }

    /// Keys the stream and repartitions it by the key through the topic
    /// `<job>-repartition` (values as JSON), so every record of a key meets in one task
    /// whatever the input's partitioning.
    pub fn key_by<K: Send + 'static>(self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<K, T>
    where
        T: Serialize + DeserializeOwned,
    {
        let codec = ShuffleCodec {
            encode: Arc::new(|v: &T| serde_json::to_vec(v).map_err(|e| e.to_string())),
            decode: Arc::new(|b: &[u8]| serde_json::from_slice(b).map_err(|e| e.to_string())),
        };
        let mut keyed = self.key_by_partitioned(f);
        keyed.shuffle = Some(codec);
        keyed
    }

    /// Keys the stream without repartitioning: the input topics must already be partitioned
    /// by this key (records of one key in one partition index, as a keyed producer writes
    /// them), like Kafka Streams' `groupByKey`. Cheaper than [`Stream::key_by`].
    pub fn key_by_partitioned<K: Send + 'static>(
        self,
        f: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> KeyedStream<K, T> {
        let prev = self.chain;
        KeyedStream {
            inputs: self.inputs,
            chain: Arc::new(move |r: &InRecord, emit: &mut dyn FnMut(i64, K, T)| {
                prev(r, &mut |ts, v| emit(ts, f(&v), v))
            }),
            tables: self.tables,
            shuffle: None,
        }
    }

    /// Writes every value as JSON to `topic`, keyed by `key` (no key: spread).
    pub fn to(self, topic: &str, key: impl Fn(&T) -> Option<String> + Send + Sync + 'static) -> Pipeline
    where
        T: Serialize,
    {
        let chain = self.chain;
        let key = Arc::new(key);
        let mut p = Pipeline::new(
            self.inputs,
            topic,
            Arc::new(move || Box::new(StatelessLogic::new(chain.clone(), key.clone()))),
        );
        p.tables = self.tables;
        p
    }
}

/// A stream whose values carry a key.
pub struct KeyedStream<K, T> {
    pub(crate) inputs: Vec<String>,
    pub(crate) tables: Vec<Arc<dyn TableSource>>,
    pub(crate) chain: KeyedChain<K, T>,
    /// Set when the stream is repartitioned by its key.
    pub(crate) shuffle: Option<ShuffleCodec<T>>,
}

impl<K: Send + 'static, T: Send + 'static> KeyedStream<K, T> {
    /// Groups each key's values into windows of event time.
    pub fn window(self, windows: Windows) -> WindowedStream<K, T> {
        WindowedStream {
            stream: self,
            windows,
            lateness_ms: 0,
            // A global window never closes while the job runs: its results are updates.
            emit: if windows == Windows::Global {
                Emit::OnUpdate
            } else {
                Emit::OnClose
            },
        }
    }

    /// Joins with another keyed stream: every pair of values of one key whose event times
    /// are at most `within` apart goes through `joiner` (an interval join; see
    /// [`crate::join`]). Both sides repartition by key (`key_by`) or both are already
    /// partitioned by it (`key_by_partitioned`).
    pub fn join<R: Send + 'static, U: Send + 'static>(
        self,
        right: KeyedStream<K, R>,
        within: Duration,
        joiner: impl Fn(&K, &T, &R) -> Option<U> + Send + Sync + 'static,
    ) -> Joined<K, T, R, U> {
        Joined {
            left: self,
            right,
            within_ms: duration_ms(within),
            lateness_ms: 0,
            joiner: Arc::new(joiner),
        }
    }

    /// A running aggregate per key (one window over all time, emitted on every update).
    pub fn global(self) -> WindowedStream<K, T> {
        self.window(Windows::Global)
    }
}

/// A keyed stream grouped into windows, waiting for its aggregation.
pub struct WindowedStream<K, T> {
    stream: KeyedStream<K, T>,
    windows: Windows,
    lateness_ms: i64,
    emit: Emit,
}

/// What keys and accumulators must be to live in windows and changelogs.
pub trait StateKey: Clone + Eq + std::hash::Hash + Serialize + DeserializeOwned + Send + 'static {}
impl<K: Clone + Eq + std::hash::Hash + Serialize + DeserializeOwned + Send + 'static> StateKey for K {}

/// An accumulator that lives in windows and changelogs.
pub trait StateValue: Clone + Serialize + DeserializeOwned + Send + 'static {}
impl<A: Clone + Serialize + DeserializeOwned + Send + 'static> StateValue for A {}

impl<K: StateKey, T: Send + 'static> WindowedStream<K, T> {
    /// Keeps windows open this long after their end for late records (default 0). Records
    /// later than that go to the side output.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness_ms = duration_ms(lateness);
        self
    }

    /// When results are emitted (default: once, when the window closes).
    pub fn emit(mut self, emit: Emit) -> Self {
        self.emit = emit;
        self
    }

    /// Folds each window's values into an accumulator. Session windows need
    /// [`WindowedStream::aggregate_merging`].
    pub fn aggregate<A: StateValue>(
        self,
        init: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&mut A, &T) + Send + Sync + 'static,
    ) -> Aggregated<K, T, A> {
        self.aggregate_fns(AggFns {
            init: Arc::new(init),
            add: Arc::new(add),
            merge: None,
        })
    }

    /// Folds each window's values; `merge` joins accumulators of sessions that a record
    /// bridges.
    pub fn aggregate_merging<A: StateValue>(
        self,
        init: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&mut A, &T) + Send + Sync + 'static,
        merge: impl Fn(&mut A, A) + Send + Sync + 'static,
    ) -> Aggregated<K, T, A> {
        self.aggregate_fns(AggFns {
            init: Arc::new(init),
            add: Arc::new(add),
            merge: Some(Arc::new(merge)),
        })
    }

    /// Counts each window's values.
    pub fn count(self) -> Aggregated<K, T, u64> {
        self.aggregate_merging(|| 0u64, |c, _| *c += 1, |c, o| *c += o)
    }

    fn aggregate_fns<A: StateValue>(self, fns: AggFns<T, A>) -> Aggregated<K, T, A> {
        Aggregated {
            stream: self.stream,
            windows: self.windows,
            lateness_ms: self.lateness_ms,
            emit: self.emit,
            fns,
        }
    }
}

/// A windowed aggregation, ready to be written out.
pub struct Aggregated<K, T, A> {
    stream: KeyedStream<K, T>,
    windows: Windows,
    lateness_ms: i64,
    emit: Emit,
    fns: AggFns<T, A>,
}

/// Decides which window results are written.
pub type ResultFilter<K, A> = Arc<dyn Fn(&K, &A) -> bool + Send + Sync>;

impl<K: StateKey, T: Send + 'static, A: StateValue> Aggregated<K, T, A> {
    /// Writes only the results `keep` accepts (alerts from a running aggregate, say); the
    /// state still holds every window.
    pub fn filter_results(
        self,
        keep: impl Fn(&K, &A) -> bool + Send + Sync + 'static,
    ) -> FilteredAggregated<K, T, A> {
        FilteredAggregated {
            inner: self,
            keep: Arc::new(keep),
        }
    }

    /// Writes each window's result to `topic` as JSON
    /// `{"key", "start_ms", "end_ms", "value"}`, keyed by the key.
    pub fn to(self, topic: &str) -> Pipeline {
        self.build(topic, None)
    }

    fn build(self, topic: &str, keep: Option<ResultFilter<K, A>>) -> Pipeline {
        let Aggregated {
            stream,
            windows,
            lateness_ms,
            emit,
            fns,
        } = self;
        let tables = stream.tables;
        let mut pipeline = match stream.shuffle {
            None => {
                let chain = stream.chain;
                Pipeline::new(
                    stream.inputs,
                    topic,
                    Arc::new(move || {
                        Box::new(WindowLogic::new(
                            chain.clone(),
                            windows,
                            lateness_ms,
                            emit,
                            fns.clone(),
                        ))
                    }),
                )
            }
            Some(codec) => {
                let after = unshuffle::<K, T>(codec.clone());
                let mut p = Pipeline::new(
                    stream.inputs,
                    topic,
                    Arc::new(move || {
                        let logic = WindowLogic::new(after.clone(), windows, lateness_ms, emit, fns.clone());
                        Box::new(logic.behind_shuffle().keeping(keep.clone()))
                    }),
                );
                let chain = stream.chain;
                p.shuffle = Some(Arc::new(move || {
                    Box::new(ShuffleLogic::new(chain.clone(), codec.clone()))
                }));
                p
            }
        };
        pipeline.windows = Some((windows, lateness_ms));
        pipeline.stateful = true;
        pipeline.tables = tables;
        pipeline
    }
}

/// An aggregation whose results are filtered before they are written.
pub struct FilteredAggregated<K, T, A> {
    inner: Aggregated<K, T, A>,
    keep: ResultFilter<K, A>,
}

impl<K: StateKey, T: Send + 'static, A: StateValue> FilteredAggregated<K, T, A> {
    /// Writes the accepted results to `topic` (see [`Aggregated::to`]).
    pub fn to(self, topic: &str) -> Pipeline {
        self.inner.build(topic, Some(self.keep))
    }
}

/// An interval join of two keyed streams, ready to be written out.
pub struct Joined<K, L, R, U> {
    left: KeyedStream<K, L>,
    right: KeyedStream<K, R>,
    within_ms: i64,
    lateness_ms: i64,
    joiner: JoinFn<K, L, R, U>,
}

impl<K, L, R, U> Joined<K, L, R, U>
where
    K: StateKey,
    L: Clone + Serialize + DeserializeOwned + Send + 'static,
    R: Clone + Serialize + DeserializeOwned + Send + 'static,
    U: Serialize + Send + 'static,
{
    /// Holds values this much longer for late partners (default 0); values later than that
    /// go to the side output.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness_ms = duration_ms(lateness);
        self
    }

    /// Writes each pair's output as JSON to `topic`, keyed by `key`.
    pub fn to(self, topic: &str, key: impl Fn(&U) -> Option<String> + Send + Sync + 'static) -> Pipeline {
        let Joined {
            left,
            right,
            within_ms,
            lateness_ms,
            joiner,
        } = self;
        let out_key: KeyFn<U> = Arc::new(key);
        let left_topics: Arc<HashSet<String>> = Arc::new(left.inputs.iter().cloned().collect());
        let mut inputs = left.inputs.clone();
        inputs.extend(right.inputs.iter().cloned());
        let overlap = right.inputs.iter().any(|t| left_topics.contains(t));
        let mut tables = left.tables;
        tables.extend(right.tables);
        let mut pipeline = match (left.shuffle, right.shuffle) {
            (None, None) => {
                let (lc, rc, sides) = (left.chain, right.chain, Sides::LeftTopics(left_topics));
                Pipeline::new(
                    inputs,
                    topic,
                    Arc::new(move || {
                        Box::new(JoinLogic::new(
                            lc.clone(),
                            rc.clone(),
                            sides.clone(),
                            joiner.clone(),
                            out_key.clone(),
                            within_ms,
                            lateness_ms,
                            true,
                        ))
                    }),
                )
            }
            (Some(lcodec), Some(rcodec)) => {
                let (la, ra) = (
                    unshuffle::<K, L>(lcodec.clone()),
                    unshuffle::<K, R>(rcodec.clone()),
                );
                let mut p = Pipeline::new(
                    inputs,
                    topic,
                    Arc::new(move || {
                        Box::new(JoinLogic::new(
                            la.clone(),
                            ra.clone(),
                            Sides::Header,
                            joiner.clone(),
                            out_key.clone(),
                            within_ms,
                            lateness_ms,
                            false,
                        ))
                    }),
                );
                let (lc, rc) = (left.chain, right.chain);
                p.shuffle = Some(Arc::new(move || {
                    Box::new(JoinShuffle {
                        left_topics: left_topics.clone(),
                        left: Box::new(ShuffleLogic::new(lc.clone(), lcodec.clone()).side("l")),
                        right: Box::new(ShuffleLogic::new(rc.clone(), rcodec.clone()).side("r")),
                    })
                }));
                p
            }
            _ => {
                let mut p = Pipeline::new(inputs, topic, Arc::new(|| Box::new(crate::logic::Nothing)));
                p.invalid =
                    Some("a join needs both sides keyed with key_by, or both with key_by_partitioned".into());
                p
            }
        };
        if overlap {
            pipeline.invalid = Some("a topic cannot feed both sides of a join".into());
        }
        pipeline.stateful = true;
        pipeline.tables = tables;
        pipeline
    }
}
