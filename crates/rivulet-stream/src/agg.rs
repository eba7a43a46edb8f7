//! Windowed aggregation per key: the state machine behind `aggregate`, `count` and
//! `reduce` on windowed streams.
//!
//! Rules (tested against a batch reference in `tests/reference.rs`):
//! * A window closes when the watermark reaches `end + lateness`. A record is added to each
//!   of its windows still open; for each closed one it is reported late (side output).
//! * Sessions: a record is late when `ts + lateness < watermark`; otherwise its window
//!   `[ts, ts + gap)` merges with the key's open sessions it overlaps. A late-enough record
//!   can then never overlap a closed session, so the sessions equal those a batch
//!   computation finds over the records that were not late.
//! * `Emit::OnClose` emits each window once, when it closes; `Emit::OnUpdate` emits the
//!   window's value after every record added to it (the last emission is the final value);
//!   a session merged into a larger one is retracted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use crate::window::{Window, Windows};

/// When a windowed aggregate emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Emit {
    /// Once per window, when the watermark passes its end plus the allowed lateness.
    #[default]
    OnClose,
    /// After every record that changes the window.
    OnUpdate,
}

/// What one step of the aggregation produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<K, A> {
    /// A window's value to emit.
    Result {
        /// Key.
        key: K,
        /// Window.
        window: Window,
        /// Aggregate.
        value: A,
    },
    /// With `Emit::OnUpdate`: a session emitted earlier merged into a larger one; its
    /// result no longer stands.
    Retract {
        /// Key.
        key: K,
        /// The merged-away window.
        window: Window,
        /// Its last emitted value.
        value: A,
    },
    /// The record missed this window (it had closed).
    Late {
        /// The window missed.
        window: Window,
    },
}

/// Adds a record to an accumulator.
pub type AddFn<T, A> = Arc<dyn Fn(&mut A, &T) + Send + Sync>;
/// Merges the second accumulator into the first (sessions).
pub type MergeFn<A> = Arc<dyn Fn(&mut A, A) + Send + Sync>;

/// The functions of an aggregation.
pub struct AggFns<T, A> {
    /// A fresh accumulator.
    pub init: Arc<dyn Fn() -> A + Send + Sync>,
    /// Adds one record.
    pub add: AddFn<T, A>,
    /// Merges accumulators of sessions that grew together.
    pub merge: Option<MergeFn<A>>,
}

impl<T, A> Clone for AggFns<T, A> {
    fn clone(&self) -> Self {
        AggFns {
            init: self.init.clone(),
            add: self.add.clone(),
            merge: self.merge.clone(),
        }
    }
}

/// Open windows per key, their close timers, and what changed since the last changelog.
pub struct WindowAgg<K, T, A> {
    windows: Windows,
    lateness_ms: i64,
    emit: Emit,
    fns: AggFns<T, A>,
    open: HashMap<K, Vec<(Window, A)>>,
    /// Close time (`end + lateness`) to the keys that may have a window closing then.
    timers: BTreeMap<i64, Vec<K>>,
    /// Entries changed (added, updated or removed) since the last [`WindowAgg::take_dirty`].
    dirty: HashSet<(K, Window)>,
    scratch: Vec<Window>,
}

impl<K, T, A> WindowAgg<K, T, A>
where
    K: Clone + Eq + Hash,
    A: Clone,
{
    /// An empty aggregation. Sessions need a merge function.
    pub fn new(windows: Windows, lateness_ms: i64, emit: Emit, fns: AggFns<T, A>) -> WindowAgg<K, T, A> {
        assert!(lateness_ms >= 0, "negative lateness");
        assert!(
            !windows.is_session() || fns.merge.is_some(),
            "sessions need a merge function"
        );
        WindowAgg {
            windows,
            lateness_ms,
            emit,
            fns,
            open: HashMap::new(),
            timers: BTreeMap::new(),
            dirty: HashSet::new(),
            scratch: Vec::new(),
        }
    }

    /// Open windows held.
    pub fn len(&self) -> usize {
        self.open.values().map(Vec::len).sum()
    }

    /// Whether no window is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    fn closed(&self, window: &Window, watermark_ms: i64) -> bool {
        window.end_ms.saturating_add(self.lateness_ms) <= watermark_ms
    }

    /// Adds a record at `ts_ms` seen while the watermark was `watermark_ms`.
    pub fn add(&mut self, watermark_ms: i64, ts_ms: i64, key: K, value: &T, out: &mut Vec<Step<K, A>>) {
        let mut assigned = std::mem::take(&mut self.scratch);
        self.windows.assign(ts_ms, &mut assigned);
        if self.windows.is_session() {
            if ts_ms.saturating_add(self.lateness_ms) < watermark_ms {
                out.push(Step::Late { window: assigned[0] });
            } else {
                self.add_session(assigned[0], key, value, out);
            }
        } else {
            for w in &assigned {
                if self.closed(w, watermark_ms) {
                    out.push(Step::Late { window: *w });
                } else {
                    self.add_fixed(*w, key.clone(), value, out);
                }
            }
        }
        self.scratch = assigned;
    }

    fn add_fixed(&mut self, window: Window, key: K, value: &T, out: &mut Vec<Step<K, A>>) {
        let slots = self.open.entry(key.clone()).or_default();
        let i = match slots.iter().position(|(w, _)| *w == window) {
            Some(i) => i,
            None => {
                slots.push((window, (self.fns.init)()));
                let at = window.end_ms.saturating_add(self.lateness_ms);
                self.timers.entry(at).or_default().push(key.clone());
                slots.len() - 1
            }
        };
        (self.fns.add)(&mut slots[i].1, value);
        if self.emit == Emit::OnUpdate {
            out.push(Step::Result {
                key: key.clone(),
                window,
                value: slots[i].1.clone(),
            });
        }
        self.dirty.insert((key, window));
    }

    fn add_session(&mut self, mut window: Window, key: K, value: &T, out: &mut Vec<Step<K, A>>) {
        let Some(merge) = self.fns.merge.clone() else {
            return;
        };
        let slots = self.open.entry(key.clone()).or_default();
        let mut acc = (self.fns.init)();
        (self.fns.add)(&mut acc, value);
        // Bounded by the key's open sessions; each merge removes one.
        while let Some(i) = slots.iter().position(|(w, _)| w.overlaps(&window)) {
            let (w, a) = slots.swap_remove(i);
            window = window.cover(&w);
            if self.emit == Emit::OnUpdate && w != window {
                out.push(Step::Retract {
                    key: key.clone(),
                    window: w,
                    value: a.clone(),
                });
            }
            let mut merged = a;
            merge(&mut merged, acc);
            acc = merged;
            self.dirty.insert((key.clone(), w));
        }
        slots.push((window, acc.clone()));
        let at = window.end_ms.saturating_add(self.lateness_ms);
        self.timers.entry(at).or_default().push(key.clone());
        if self.emit == Emit::OnUpdate {
            out.push(Step::Result {
                key: key.clone(),
                window,
                value: acc,
            });
        }
        self.dirty.insert((key, window));
    }

    /// Closes every window the watermark has passed (end plus lateness), oldest timer
    /// first; with `Emit::OnClose` their values are emitted.
    ///
    /// Results come out in window order (by end, then start) across keys, also when one
    /// jump of the watermark closes many windows, so a downstream job can treat them as
    /// ordered by event time.
    pub fn advance(&mut self, watermark_ms: i64, out: &mut Vec<Step<K, A>>) {
        let mut closing: Vec<(Window, K, A)> = Vec::new();
        // Bounded by the timers due; each is removed.
        while let Some(entry) = self.timers.first_entry() {
            if *entry.key() > watermark_ms {
                break;
            }
            for key in entry.remove() {
                self.close_key(&key, watermark_ms, &mut closing);
            }
        }
        // Stable: keys of one window stay in timer order.
        closing.sort_by_key(|(w, _, _)| (w.end_ms, w.start_ms));
        for (window, key, value) in closing {
            self.dirty.insert((key.clone(), window));
            if self.emit == Emit::OnClose {
                out.push(Step::Result { key, window, value });
            }
        }
    }

    fn close_key(&mut self, key: &K, watermark_ms: i64, closing: &mut Vec<(Window, K, A)>) {
        let Some(slots) = self.open.get_mut(key) else {
            return;
        };
        let lateness = self.lateness_ms;
        slots.retain(|(w, a)| {
            let done = w.end_ms.saturating_add(lateness) <= watermark_ms;
            if done {
                closing.push((*w, key.clone(), a.clone()));
            }
            !done
        });
        if slots.is_empty() {
            self.open.remove(key);
        }
    }

    /// The entries changed since the last call: their current value, or `None` once the
    /// window closed or merged away.
    pub fn take_dirty(&mut self) -> Vec<(K, Window, Option<A>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|(k, w)| {
                let v = self
                    .open
                    .get(&k)
                    .and_then(|slots| slots.iter().find(|(sw, _)| *sw == w))
                    .map(|(_, a)| a.clone());
                (k, w, v)
            })
            .collect()
    }

    /// The open windows of `key` and their values, oldest first.
    pub fn windows_of(&self, key: &K) -> Vec<(Window, A)> {
        let mut out = self.open.get(key).cloned().unwrap_or_default();
        out.sort_by_key(|(w, _)| *w);
        out
    }

    /// Puts back an entry read from the changelog (`None` removes it).
    pub fn restore(&mut self, key: K, window: Window, value: Option<A>) {
        let slots = self.open.entry(key.clone()).or_default();
        slots.retain(|(w, _)| *w != window);
        if let Some(v) = value {
            slots.push((window, v));
            let at = window.end_ms.saturating_add(self.lateness_ms);
            self.timers.entry(at).or_default().push(key.clone());
        }
        if slots.is_empty() {
            self.open.remove(&key);
        }
    }
}
