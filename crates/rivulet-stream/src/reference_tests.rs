//! The engine against a plain batch computation of the same query over the same records:
//! every window result and every late record must match exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use rivulet_sdk::{InRecord, TopicPartition};

use crate::clock::WATERMARK_MIN;
use crate::logic::WindowResult;
use crate::runtime::Task;
use crate::task::{HEADER_SOURCE, HEADER_WINDOW_END, HEADER_WINDOW_START};
use crate::{Emit, Pipeline, Stream, Window, Windows};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ev {
    key: u32,
    ts: i64,
    amount: i64,
}

/// (key, window) -> (count, sum)
type Results = BTreeMap<(u32, Window), (u64, i64)>;
/// (partition, offset, window start, window end)
type Lates = Vec<(i32, i64, i64, i64)>;

fn pipeline(windows: Windows, lateness_ms: i64, emit: Emit) -> Pipeline {
    keyed(windows, lateness_ms, emit, false)
}

fn keyed(windows: Windows, lateness_ms: i64, emit: Emit, repartition: bool) -> Pipeline {
    let s = Stream::<Ev>::json(&["in"]).event_time(|e| e.ts);
    let k = if repartition {
        s.key_by(|e| e.key)
    } else {
        s.key_by_partitioned(|e| e.key)
    };
    k.window(windows)
        .allowed_lateness(Duration::from_millis(lateness_ms as u64))
        .emit(emit)
        .aggregate_merging(
            || (0u64, 0i64),
            |a, e| {
                a.0 += 1;
                a.1 += e.amount;
            },
            |a, b| {
                a.0 += b.0;
                a.1 += b.1;
            },
        )
        .to("out")
}

fn record(partition: i32, offset: i64, e: &Ev) -> InRecord {
    InRecord {
        topic: "in".into(),
        partition,
        offset,
        timestamp_ms: 0,
        key: Some(e.key.to_string().into_bytes()),
        value: Some(serde_json::to_vec(e).unwrap_or_default()),
        headers: Vec::new(),
    }
}

fn header_i64(r: &rivulet_sdk::OutRecord, name: &str) -> i64 {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(i64::MIN)
}

/// (partition, offset, window start, window end) of a side-output record.
fn late_of(r: &rivulet_sdk::OutRecord) -> (i32, i64, i64, i64) {
    let source = r
        .headers
        .iter()
        .find(|(k, _)| k == HEADER_SOURCE)
        .map(|(_, v)| String::from_utf8_lossy(v).to_string())
        .unwrap_or_default();
    let mut it = source.rsplit('/');
    let offset: i64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(-1);
    let partition: i32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(-1);
    (
        partition,
        offset,
        header_i64(r, HEADER_WINDOW_START),
        header_i64(r, HEADER_WINDOW_END),
    )
}

/// Runs the engine over the partitions (interleaved round robin), then ends the input.
fn engine(parts: &[Vec<Ev>], bound_ms: i64, pipeline: &Pipeline, emit: Emit) -> (Results, Lates) {
    let mut tasks: Vec<Task> = (0..parts.len() as i32)
        .map(|p| {
            Task::new(
                p,
                bound_ms,
                vec![TopicPartition::new("in", p)],
                (pipeline.factory)(),
            )
        })
        .collect();
    let longest = parts.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for (p, events) in parts.iter().enumerate() {
            if let Some(e) = events.get(i) {
                tasks[p].process(&record(p as i32, i as i64, e), i64::MAX);
            }
        }
    }
    let mut results = Results::new();
    let mut lates = Lates::new();
    for task in &mut tasks {
        task.force(i64::MAX);
        for r in task.out.results.drain(..) {
            let v: WindowResult<u32, (u64, i64)> =
                serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("{e}"));
            let slot = (v.key, Window::new(v.start_ms, v.end_ms));
            if v.retracted {
                assert_eq!(emit, Emit::OnUpdate, "retraction on close");
                assert_eq!(
                    results.remove(&slot),
                    Some(v.value),
                    "retracted what was not emitted"
                );
                continue;
            }
            // On-update emissions: the last one is the final value; on-close: one each.
            let previous = results.insert(slot, v.value);
            if emit == Emit::OnClose {
                assert!(previous.is_none(), "window {slot:?} emitted twice");
            }
        }
        lates.extend(task.out.side.drain(..).map(|r| late_of(&r)));
    }
    lates.sort();
    (results, lates)
}

/// The same over a repartitioned pipeline: first-stage tasks per input partition, their
/// shuffled records and markers delivered in memory to second-stage tasks, as a bounded
/// run does.
fn engine_shuffled(parts: &[Vec<Ev>], bound_ms: i64, pipeline: &Pipeline) -> (Results, Lates) {
    use crate::pipeline::JobOptions;
    use crate::tasks::Tasks;
    let upstreams = parts.len() as i32;
    let mut tasks = Tasks::new(
        pipeline,
        &JobOptions::new("t").out_of_orderness(Duration::from_millis(bound_ms as u64)),
        upstreams,
    );
    let topic = tasks.repartition_topic().to_string();
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut deliver = |tasks: &mut Tasks| {
        for r in tasks.take_shuffled() {
            let partition = r.partition.unwrap_or(0);
            let offset = offsets.entry(partition).or_insert(0);
            let rec = InRecord {
                topic: topic.clone(),
                partition,
                offset: *offset,
                timestamp_ms: 0,
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            };
            *offset += 1;
            tasks.ensure(&TopicPartition::new(topic.clone(), partition));
            tasks.process(&rec, i64::MAX);
        }
    };
    for (p, events) in parts.iter().enumerate() {
        for (i, e) in events.iter().enumerate() {
            let r = record(p as i32, i as i64, e);
            tasks.ensure(&r.topic_partition());
            tasks.process(&r, i64::MAX);
            deliver(&mut tasks);
        }
    }
    for t in tasks
        .map
        .values_mut()
        .filter(|t| t.stage == crate::runtime::Stage::Shuffle)
    {
        t.force(i64::MAX);
    }
    deliver(&mut tasks);
    let mut results = Results::new();
    let mut lates = Lates::new();
    for task in tasks.map.values_mut() {
        task.force(i64::MAX);
        for r in task.out.results.drain(..) {
            let v: WindowResult<u32, (u64, i64)> =
                serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("{e}"));
            assert!(results
                .insert((v.key, Window::new(v.start_ms, v.end_ms)), v.value)
                .is_none());
        }
        lates.extend(task.out.side.drain(..).map(|r| late_of(&r)));
    }
    lates.sort();
    (results, lates)
}

/// The batch reference: per partition in order, the watermark is the greatest timestamp
/// so far minus the bound; a window the record would join has closed when its end plus the
/// lateness is at or below it; everything else is grouped by key and window.
fn reference(parts: &[Vec<Ev>], bound_ms: i64, windows: Windows, lateness_ms: i64) -> (Results, Lates) {
    let mut results = Results::new();
    let mut lates = Lates::new();
    let mut on_time: BTreeMap<u32, Vec<(i64, i64)>> = BTreeMap::new();
    for (p, events) in parts.iter().enumerate() {
        let mut max_ts: Option<i64> = None;
        for (offset, e) in events.iter().enumerate() {
            let wm = max_ts.map_or(WATERMARK_MIN, |m| m - bound_ms);
            match windows {
                Windows::Session { gap_ms } => {
                    if e.ts + lateness_ms < wm {
                        lates.push((p as i32, offset as i64, e.ts, e.ts + gap_ms));
                    } else {
                        on_time.entry(e.key).or_default().push((e.ts, e.amount));
                    }
                }
                _ => {
                    let mut ws = Vec::new();
                    windows.assign(e.ts, &mut ws);
                    for w in ws {
                        if w.end_ms.saturating_add(lateness_ms) <= wm {
                            lates.push((p as i32, offset as i64, w.start_ms, w.end_ms));
                        } else {
                            let slot = results.entry((e.key, w)).or_default();
                            slot.0 += 1;
                            slot.1 += e.amount;
                        }
                    }
                }
            }
            max_ts = Some(max_ts.map_or(e.ts, |m| m.max(e.ts)));
        }
    }
    if let Windows::Session { gap_ms } = windows {
        for (key, mut items) in on_time {
            items.sort();
            let mut current: Option<(i64, i64, u64, i64)> = None; // start, last, count, sum
            for (ts, amount) in items {
                current = match current {
                    Some((s, last, c, sum)) if ts < last + gap_ms => Some((s, ts, c + 1, sum + amount)),
                    Some((s, last, c, sum)) => {
                        results.insert((key, Window::new(s, last + gap_ms)), (c, sum));
                        Some((ts, ts, 1, amount))
                    }
                    None => Some((ts, ts, 1, amount)),
                };
            }
            if let Some((s, last, c, sum)) = current {
                results.insert((key, Window::new(s, last + gap_ms)), (c, sum));
            }
        }
    }
    lates.sort();
    (results, lates)
}

/// Partitions of out-of-order events: time moves forward by 0..step per record and each
/// record lags it by up to `disorder` ms, so some records fall behind the watermark.
fn partitions() -> impl Strategy<Value = Vec<Vec<Ev>>> {
    prop::collection::vec(
        prop::collection::vec((0u32..6, 0i64..40, 0i64..300, -50i64..50), 0..120),
        1..4,
    )
    .prop_map(|parts| {
        let n = parts.len() as u32;
        parts
            .into_iter()
            .enumerate()
            .map(|(p, items)| {
                let mut now = 1_000i64;
                items
                    .into_iter()
                    .map(|(k, step, lag, amount)| {
                        now += step;
                        // Keys partitioned like a keyed producer would: key % partitions.
                        let key = k * n + p as u32;
                        Ev {
                            key,
                            ts: now - lag,
                            amount,
                        }
                    })
                    .collect()
            })
            .collect()
    })
}

fn windows() -> impl Strategy<Value = Windows> {
    prop_oneof![
        (10i64..200).prop_map(|size_ms| Windows::Tumbling { size_ms }),
        (10i64..100, 1i64..4).prop_map(|(a, m)| Windows::Hopping {
            size_ms: a * m,
            advance_ms: a
        }),
        (5i64..150).prop_map(|gap_ms| Windows::Session { gap_ms }),
        Just(Windows::Global),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn engine_equals_the_batch_reference(
        parts in partitions(),
        windows in windows(),
        bound_ms in 0i64..100,
        lateness_ms in 0i64..100,
        on_update in any::<bool>(),
    ) {
        let emit = if on_update { Emit::OnUpdate } else { Emit::OnClose };
        let p = pipeline(windows, lateness_ms, emit);
        let (got, got_late) = engine(&parts, bound_ms, &p, emit);
        let (want, want_late) = reference(&parts, bound_ms, windows, lateness_ms);
        prop_assert_eq!(got, want);
        prop_assert_eq!(got_late, want_late);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Repartitioned by key: with one input partition the decisions are those of the
    /// reference exactly; with several, the second stage's watermark is the minimum over
    /// the upstream tasks, so with lateness beyond any disorder nothing is late and the
    /// results equal the reference.
    #[test]
    fn repartitioned_jobs_equal_the_batch_reference(
        parts in partitions(),
        windows in windows(),
        bound_ms in 0i64..100,
        lateness_ms in 0i64..100,
    ) {
        let lateness_ms = if parts.len() == 1 { lateness_ms } else { 1_000_000 };
        let p = keyed(windows, lateness_ms, Emit::OnClose, true);
        let (got, got_late) = engine_shuffled(&parts, bound_ms, &p);
        let (want, want_late) = reference(&parts, bound_ms, windows, lateness_ms);
        prop_assert_eq!(got, want);
        prop_assert_eq!(got_late, want_late);
    }
}

#[test]
fn the_generator_makes_late_records() {
    // The property above is only worth something if late records occur: check a fixed case.
    let parts = vec![vec![
        Ev {
            key: 1,
            ts: 1_000,
            amount: 1,
        },
        Ev {
            key: 1,
            ts: 1_500,
            amount: 1,
        },
        Ev {
            key: 1,
            ts: 1_010,
            amount: 1,
        },
    ]];
    let w = Windows::Tumbling { size_ms: 100 };
    let (results, lates) = reference(&parts, 0, w, 0);
    assert_eq!(lates, vec![(0, 2, 1_000, 1_100)]);
    assert_eq!(results.len(), 2);
    let (got, got_late) = engine(&parts, 0, &pipeline(w, 0, Emit::OnClose), Emit::OnClose);
    assert_eq!((got, got_late), (results, lates));
}

#[test]
fn windows_stay_open_for_the_allowed_lateness() {
    let parts = vec![vec![
        Ev {
            key: 1,
            ts: 1_000,
            amount: 1,
        },
        Ev {
            key: 1,
            ts: 1_150,
            amount: 1,
        },
        // Window [1000, 1100) closes at 1100 + 100: this record is inside the lateness.
        Ev {
            key: 1,
            ts: 1_050,
            amount: 5,
        },
    ]];
    let w = Windows::Tumbling { size_ms: 100 };
    let (got, lates) = engine(&parts, 0, &pipeline(w, 100, Emit::OnClose), Emit::OnClose);
    assert!(lates.is_empty());
    assert_eq!(got.get(&(1, Window::new(1_000, 1_100))), Some(&(2, 6)));
}

/// Collects a task's results and lates the way `engine` does, for one partition.
fn drain(task: &mut Task) -> (Vec<rivulet_sdk::OutRecord>, usize) {
    let results: Vec<_> = task.out.results.drain(..).collect();
    let lates = task.out.side.drain(..).count();
    (results, lates)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// A task rebuilt from its changelog at any point goes on exactly like the original.
    #[test]
    fn state_restored_from_the_changelog_goes_on_identically(
        parts in partitions(),
        windows in windows(),
        bound_ms in 0i64..100,
        lateness_ms in 0i64..100,
        cut in 0usize..120,
    ) {
        let events = &parts[0];
        let cut = cut.min(events.len());
        let p = pipeline(windows, lateness_ms, Emit::OnClose);
        let input = || vec![TopicPartition::new("in", 0)];
        let mut whole = Task::new(0, bound_ms, input(), (p.factory)());
        let mut first = Task::new(0, bound_ms, input(), (p.factory)());
        let mut changelog = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let r = record(0, i as i64, e);
            whole.process(&r, i64::MAX);
            if i < cut {
                first.process(&r, i64::MAX);
                // A checkpoint after every record, as often as it can happen.
                changelog.extend(first.changelog().unwrap_or_else(|e| panic!("{e}")));
            }
        }
        let mut resumed = Task::new(0, bound_ms, input(), (p.factory)());
        for (offset, c) in changelog.iter().enumerate() {
            let r = InRecord {
                topic: "in-changelog".into(),
                partition: 0,
                offset: offset as i64,
                timestamp_ms: 0,
                key: c.key.clone(),
                value: c.value.clone(),
                headers: Vec::new(),
            };
            resumed.restore(&r).unwrap_or_else(|e| panic!("{e}"));
        }
        prop_assert_eq!(resumed.clock.watermark_ms, first.clock.watermark_ms);
        for (i, e) in events.iter().enumerate().skip(cut) {
            resumed.process(&record(0, i as i64, e), i64::MAX);
        }
        whole.force(i64::MAX);
        resumed.force(i64::MAX);
        let (mut before, late_before) = drain(&mut first);
        let (rest, late_rest) = drain(&mut resumed);
        before.extend(rest);
        let (all, late_all) = drain(&mut whole);
        let values = |v: &[rivulet_sdk::OutRecord]| {
            let mut x: Vec<Vec<u8>> = v.iter().filter_map(|r| r.value.clone()).collect();
            x.sort();
            x
        };
        prop_assert_eq!(values(&before), values(&all));
        prop_assert_eq!(late_before + late_rest, late_all);
    }
}

mod joins {
    use super::*;
    use crate::pipeline::JobOptions;
    use crate::tasks::Tasks;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Side {
        key: u32,
        ts: i64,
        id: u32,
    }

    fn pipeline(within_ms: i64, lateness_ms: i64, shuffle: bool) -> Pipeline {
        let left = Stream::<Side>::json(&["left"]).event_time(|s| s.ts);
        let right = Stream::<Side>::json(&["right"]).event_time(|s| s.ts);
        let (l, r) = if shuffle {
            (left.key_by(|s| s.key), right.key_by(|s| s.key))
        } else {
            (
                left.key_by_partitioned(|s| s.key),
                right.key_by_partitioned(|s| s.key),
            )
        };
        l.join(r, Duration::from_millis(within_ms as u64), |k, a, b| {
            Some((*k, a.id, b.id))
        })
        .allowed_lateness(Duration::from_millis(lateness_ms as u64))
        .to("pairs", |_| None)
    }

    /// Runs the records (topic, partition, value) in order through the tasks, shuffling in
    /// memory; returns the pairs and how many values went to the side output.
    fn engine(
        p: &Pipeline,
        bound_ms: i64,
        records: &[(bool, i32, Side)],
        upstreams: i32,
    ) -> (Vec<(u32, u32, u32)>, usize) {
        let opts = JobOptions::new("j").out_of_orderness(Duration::from_millis(bound_ms as u64));
        let mut tasks = Tasks::new(p, &opts, upstreams);
        let topic = tasks.repartition_topic().to_string();
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut deliver = |tasks: &mut Tasks, r: InRecord| {
            tasks.ensure(&r.topic_partition());
            tasks.process(&r, i64::MAX);
            for s in tasks.take_shuffled() {
                let partition = s.partition.unwrap_or(0);
                let o = offsets.entry((topic.clone(), partition)).or_insert(0);
                let rec = InRecord {
                    topic: topic.clone(),
                    partition,
                    offset: *o,
                    timestamp_ms: 0,
                    key: s.key,
                    value: s.value,
                    headers: s.headers.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                };
                *o += 1;
                tasks.ensure(&rec.topic_partition());
                tasks.process(&rec, i64::MAX);
            }
        };
        let mut input_offsets: BTreeMap<(bool, i32), i64> = BTreeMap::new();
        for (left, partition, v) in records {
            let o = input_offsets.entry((*left, *partition)).or_insert(0);
            let r = InRecord {
                topic: if *left { "left" } else { "right" }.into(),
                partition: *partition,
                offset: *o,
                timestamp_ms: 0,
                key: None,
                value: Some(serde_json::to_vec(v).unwrap_or_default()),
                headers: Vec::new(),
            };
            *o += 1;
            deliver(&mut tasks, r);
        }
        let mut pairs = Vec::new();
        let mut side = 0;
        for t in tasks.map.values_mut() {
            for r in t.out.results.drain(..) {
                pairs.push(
                    serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                        .unwrap_or_else(|e| panic!("{e}")),
                );
            }
            side += t.out.side.drain(..).count();
        }
        pairs.sort();
        (pairs, side)
    }

    /// The batch reference for one partition: the task watermark is the lower of the two
    /// sides' greatest timestamps minus the bound (before either side has a record, none);
    /// a value is late when `ts + lateness < watermark`; the output is every pair of values
    /// that were not late, of one key, at most `within` apart.
    fn reference(
        records: &[(bool, i32, Side)],
        bound_ms: i64,
        within_ms: i64,
        lateness_ms: i64,
    ) -> (Vec<(u32, u32, u32)>, usize) {
        let (mut max_l, mut max_r): (Option<i64>, Option<i64>) = (None, None);
        let (mut ls, mut rs) = (Vec::new(), Vec::new());
        let mut late = 0;
        let mut wm = WATERMARK_MIN;
        for (left, _, v) in records {
            if v.ts + lateness_ms < wm {
                late += 1;
                continue;
            }
            if *left {
                ls.push(v.clone());
                max_l = Some(max_l.map_or(v.ts, |m| m.max(v.ts)));
            } else {
                rs.push(v.clone());
                max_r = Some(max_r.map_or(v.ts, |m| m.max(v.ts)));
            }
            if let (Some(a), Some(b)) = (max_l, max_r) {
                wm = wm.max(a.min(b) - bound_ms);
            }
        }
        let mut pairs = Vec::new();
        for l in &ls {
            for r in &rs {
                if l.key == r.key && (l.ts - r.ts).abs() <= within_ms {
                    pairs.push((l.key, l.id, r.id));
                }
            }
        }
        pairs.sort();
        (pairs, late)
    }

    fn records() -> impl Strategy<Value = Vec<(bool, i32, Side)>> {
        prop::collection::vec((any::<bool>(), 0u32..4, 0i64..30, 0i64..200), 0..150).prop_map(|items| {
            let mut now = 1_000i64;
            items
                .into_iter()
                .enumerate()
                .map(|(i, (left, key, step, lag))| {
                    now += step;
                    (
                        left,
                        0,
                        Side {
                            key,
                            ts: now - lag,
                            id: i as u32,
                        },
                    )
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn interval_joins_equal_the_batch_reference(
            records in records(),
            within_ms in 0i64..100,
            bound_ms in 0i64..100,
            lateness_ms in 0i64..100,
            shuffle in any::<bool>(),
        ) {
            let p = pipeline(within_ms, lateness_ms, shuffle);
            let got = engine(&p, bound_ms, &records, 1);
            let want = reference(&records, bound_ms, within_ms, lateness_ms);
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn a_join_needs_both_sides_keyed_the_same_way() {
        let left = Stream::<Side>::json(&["left"]).key_by(|s| s.key);
        let right = Stream::<Side>::json(&["right"]).key_by_partitioned(|s| s.key);
        let p = left
            .join(right, Duration::from_millis(10), |k, a, b| Some((*k, a.id, b.id)))
            .to("pairs", |_| None);
        assert!(p.validate().is_err());
    }
}
