//! Event time of one task: per-input maximum timestamps, idleness and the task watermark.
//!
//! The watermark follows the records (the greatest timestamp seen on an input minus the
//! out-of-orderness bound), so a replay of the same input decides late records the same way
//! whatever the processing speed. An input marked idle stops holding the minimum back; a
//! task whose inputs are all idle can be advanced from outside ([`TaskClock::force`]).

use serde::{Deserialize, Serialize};

use rivulet_sdk::TopicPartition;

/// The watermark before any record: nothing is late, nothing closes.
pub const WATERMARK_MIN: i64 = i64::MIN;

/// Event-time progress of one input partition of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputClock {
    /// The input partition.
    pub input: TopicPartition,
    /// Greatest timestamp accepted so far.
    pub max_ts_ms: Option<i64>,
    /// Excluded from the task watermark until its next record.
    #[serde(skip)]
    pub idle: bool,
}

/// The event-time clock of one task (the partition index shared by its input topics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskClock {
    /// Out-of-orderness bound: the watermark trails the greatest timestamp by this much.
    pub bound_ms: i64,
    /// One clock per input partition of the task.
    pub inputs: Vec<InputClock>,
    /// The watermark so far; it never goes back.
    pub watermark_ms: i64,
}

impl TaskClock {
    /// A clock for the given inputs, none seen yet.
    pub fn new(bound_ms: i64, inputs: Vec<TopicPartition>) -> TaskClock {
        assert!(bound_ms >= 0, "negative out-of-orderness bound");
        TaskClock {
            bound_ms,
            inputs: inputs
                .into_iter()
                .map(|input| InputClock {
                    input,
                    max_ts_ms: None,
                    idle: false,
                })
                .collect(),
            watermark_ms: WATERMARK_MIN,
        }
    }

    /// Accounts a record of `input` at `ts_ms` and returns the new watermark.
    pub fn observe(&mut self, input: &TopicPartition, ts_ms: i64) -> i64 {
        if let Some(c) = self.inputs.iter_mut().find(|c| &c.input == input) {
            c.max_ts_ms = Some(c.max_ts_ms.map_or(ts_ms, |m| m.max(ts_ms)));
            c.idle = false;
        }
        self.recompute()
    }

    /// Marks an input idle (or active again) and returns the new watermark.
    pub fn set_idle(&mut self, input: &TopicPartition, idle: bool) -> i64 {
        if let Some(c) = self.inputs.iter_mut().find(|c| &c.input == input) {
            c.idle = idle;
        }
        self.recompute()
    }

    /// Whether every input is idle.
    pub fn all_idle(&self) -> bool {
        self.inputs.iter().all(|c| c.idle)
    }

    /// Moves the watermark up to `watermark_ms` (idle tasks, end of a bounded run).
    pub fn force(&mut self, watermark_ms: i64) -> i64 {
        self.watermark_ms = self.watermark_ms.max(watermark_ms);
        self.watermark_ms
    }

    /// The minimum over active inputs of their greatest timestamp minus the bound; an
    /// active input without records holds the watermark at its minimum.
    fn recompute(&mut self) -> i64 {
        let mut min: Option<i64> = None;
        for c in self.inputs.iter().filter(|c| !c.idle) {
            let wm = c
                .max_ts_ms
                .map_or(WATERMARK_MIN, |m| m.saturating_sub(self.bound_ms));
            min = Some(min.map_or(wm, |x: i64| x.min(wm)));
        }
        if let Some(m) = min {
            self.watermark_ms = self.watermark_ms.max(m);
        }
        self.watermark_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("in", p)
    }

    #[test]
    fn the_slowest_active_input_holds_the_watermark() {
        let mut c = TaskClock::new(10, vec![tp(0), tp(1)]);
        assert_eq!(c.observe(&tp(0), 100), WATERMARK_MIN);
        assert_eq!(c.observe(&tp(1), 50), 40);
        assert_eq!(c.observe(&tp(1), 200), 90);
        // Out-of-order records never move it back.
        assert_eq!(c.observe(&tp(0), 20), 90);
    }

    #[test]
    fn an_idle_input_stops_holding_the_watermark_back() {
        let mut c = TaskClock::new(0, vec![tp(0), tp(1)]);
        c.observe(&tp(0), 100);
        assert_eq!(c.watermark_ms, WATERMARK_MIN);
        assert_eq!(c.set_idle(&tp(1), true), 100);
        assert!(!c.all_idle());
        c.set_idle(&tp(0), true);
        assert!(c.all_idle());
        assert_eq!(c.force(500), 500);
        // Its next record makes it count again, without moving the watermark back.
        assert_eq!(c.observe(&tp(1), 10), 500);
        assert!(!c.all_idle());
    }
}
