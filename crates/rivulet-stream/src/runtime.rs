//! A task as the runners hold it: logic, clock, pending outputs and input offsets.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rivulet_sdk::{InRecord, OutRecord, TopicPartition};

use crate::clock::{TaskClock, WATERMARK_MIN};
use crate::error::{Result, StreamError};
use crate::task::{Ctx, TaskLogic, TaskOut, HEADER_UPSTREAM, HEADER_UPSTREAM_WATERMARK};

/// The changelog key of a task's clock (a JSON string; state keys are JSON arrays).
pub(crate) const CLOCK_KEY: &[u8] = b"\"__clock\"";
/// The changelog key of a repartitioning first stage's clock.
pub(crate) const SHUFFLE_CLOCK_KEY: &[u8] = b"\"__shuffle_clock\"";
/// The topic name of the clock inputs that stand for upstream tasks behind a repartition.
pub(crate) const UPSTREAM: &str = "rivulet.upstream";

/// Which part of a job a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// A job without repartitioning: inputs to output.
    Only,
    /// The first stage of a repartitioned job: inputs to the repartition topic.
    Shuffle,
    /// The second stage: the repartition topic to the output; its clock follows the
    /// upstream tasks' watermarks.
    Final,
}

/// The clock inputs of a final-stage task: one per upstream task.
pub(crate) fn upstream_inputs(upstreams: i32) -> Vec<TopicPartition> {
    (0..upstreams).map(|i| TopicPartition::new(UPSTREAM, i)).collect()
}

/// One task at run time.
pub(crate) struct Task {
    /// The partition index of its inputs, and of its changelog partition.
    pub id: i32,
    pub stage: Stage,
    /// The watermark last sent downstream in markers (first stage).
    pub marker_ms: i64,
    pub clock: TaskClock,
    pub logic: Box<dyn TaskLogic>,
    pub out: TaskOut,
    /// Next offset per input, since the last checkpoint.
    pub offsets: BTreeMap<TopicPartition, i64>,
    /// When each input last had a record (or was assigned).
    pub last_record: HashMap<TopicPartition, Instant>,
    /// The clock changed since the last checkpoint.
    pub clock_dirty: bool,
    /// Records processed since the last checkpoint.
    pub processed: u64,
}

impl Task {
    #[cfg(test)]
    pub fn new(id: i32, bound_ms: i64, inputs: Vec<TopicPartition>, logic: Box<dyn TaskLogic>) -> Task {
        Task::staged(Stage::Only, id, bound_ms, inputs, logic)
    }

    pub fn staged(
        stage: Stage,
        id: i32,
        bound_ms: i64,
        inputs: Vec<TopicPartition>,
        logic: Box<dyn TaskLogic>,
    ) -> Task {
        let now = Instant::now();
        // Upstream watermarks already trail their records by the bound.
        let bound_ms = if stage == Stage::Final { 0 } else { bound_ms };
        Task {
            id,
            stage,
            marker_ms: WATERMARK_MIN,
            last_record: inputs.iter().map(|tp| (tp.clone(), now)).collect(),
            clock: TaskClock::new(bound_ms, inputs),
            logic,
            out: TaskOut::default(),
            offsets: BTreeMap::new(),
            clock_dirty: false,
            processed: 0,
        }
    }

    /// Adds an input partition (a further input topic's partition of the same index).
    pub fn add_input(&mut self, tp: &TopicPartition) {
        if !self.clock.inputs.iter().any(|c| &c.input == tp) {
            let mut grown = self
                .clock
                .inputs
                .iter()
                .map(|c| c.input.clone())
                .collect::<Vec<_>>();
            grown.push(tp.clone());
            let mut clock = TaskClock::new(self.clock.bound_ms, grown);
            clock.watermark_ms = self.clock.watermark_ms;
            for c in &mut clock.inputs {
                if let Some(old) = self.clock.inputs.iter().find(|o| o.input == c.input) {
                    c.max_ts_ms = old.max_ts_ms;
                }
            }
            self.clock = clock;
        }
        self.last_record.insert(tp.clone(), Instant::now());
    }

    pub fn process(&mut self, record: &InRecord, future_limit_ms: i64) {
        let input = record.topic_partition();
        self.offsets.insert(input.clone(), record.offset + 1);
        self.clock_dirty = true;
        self.processed += 1;
        if self.stage == Stage::Final && self.observe_upstream(record) {
            return;
        }
        let mut ctx = Ctx {
            record,
            input: &input,
            clock: &mut self.clock,
            future_limit_ms,
            out: &mut self.out,
        };
        self.logic.process(&mut ctx);
        if self.stage != Stage::Final {
            self.last_record.insert(input, Instant::now());
        }
    }

    /// Moves a final-stage clock by the upstream watermark a repartitioned record or
    /// marker carries; true for a marker (nothing more to do).
    fn observe_upstream(&mut self, record: &InRecord) -> bool {
        let num =
            |name: &str| -> Option<i64> { std::str::from_utf8(record.header(name)?).ok()?.parse().ok() };
        if let (Some(up), Some(wm)) = (num(HEADER_UPSTREAM), num(HEADER_UPSTREAM_WATERMARK)) {
            let tp = TopicPartition::new(UPSTREAM, up as i32);
            if wm != WATERMARK_MIN {
                self.clock.observe(&tp, wm);
            }
            self.last_record.insert(tp, Instant::now());
        }
        let marker = record.key.is_none() && record.value.is_none();
        if marker {
            self.logic.advance(self.clock.watermark_ms, &mut self.out);
        }
        marker
    }

    /// The changelog key of this task's clock.
    pub fn clock_key(&self) -> &'static [u8] {
        match self.stage {
            Stage::Only | Stage::Final => CLOCK_KEY,
            Stage::Shuffle => SHUFFLE_CLOCK_KEY,
        }
    }

    /// A marker carrying this first-stage task's watermark to every downstream partition,
    /// when it moved since the last one.
    pub fn marker(&mut self) -> Option<OutRecord> {
        let wm = self.clock.watermark_ms;
        if self.stage != Stage::Shuffle || wm == self.marker_ms {
            return None;
        }
        self.marker_ms = wm;
        Some(OutRecord {
            key: None,
            value: None,
            headers: vec![
                (HEADER_UPSTREAM.to_string(), self.id.to_string().into_bytes()),
                (HEADER_UPSTREAM_WATERMARK.to_string(), wm.to_string().into_bytes()),
            ],
            partition: None,
        })
    }

    /// Moves the watermark up to `watermark_ms` and closes what it passes.
    pub fn force(&mut self, watermark_ms: i64) {
        let before = self.clock.watermark_ms;
        let now = self.clock.force(watermark_ms);
        if now != before {
            self.logic.advance(now, &mut self.out);
            self.clock_dirty = true;
        }
    }

    /// The changelog records of state changed since the last call, and of the clock.
    pub fn changelog(&mut self) -> Result<Vec<OutRecord>> {
        let entries = self
            .logic
            .take_changelog()
            .map_err(|reason| StreamError::Changelog {
                partition: self.id,
                offset: -1,
                reason,
            })?;
        let mut records: Vec<OutRecord> = entries
            .into_iter()
            .map(|(key, value)| OutRecord {
                key: Some(key),
                value,
                headers: Vec::new(),
                partition: Some(self.id),
            })
            .collect();
        if self.clock_dirty {
            records.push(OutRecord {
                key: Some(self.clock_key().to_vec()),
                value: Some(serde_json::to_vec(&self.clock)?),
                headers: Vec::new(),
                partition: Some(self.id),
            });
            self.clock_dirty = false;
        }
        Ok(records)
    }

    /// Puts back one changelog record.
    pub fn restore(&mut self, record: &InRecord) -> Result<()> {
        let bad = |reason: String| StreamError::Changelog {
            partition: record.partition,
            offset: record.offset,
            reason,
        };
        let key = record.key.as_deref().ok_or_else(|| bad("no key".into()))?;
        if key == CLOCK_KEY || key == SHUFFLE_CLOCK_KEY {
            if key != self.clock_key() {
                return Ok(());
            }
            let Some(value) = record.value.as_deref() else {
                return Ok(());
            };
            let saved: TaskClock = serde_json::from_slice(value).map_err(|e| bad(e.to_string()))?;
            for c in &mut self.clock.inputs {
                if let Some(s) = saved.inputs.iter().find(|s| s.input == c.input) {
                    c.max_ts_ms = s.max_ts_ms;
                }
            }
            self.clock.watermark_ms = self.clock.watermark_ms.max(saved.watermark_ms);
            return Ok(());
        }
        self.logic.restore(key, record.value.as_deref()).map_err(bad)
    }

    /// The task's watermark, `None` before any.
    pub fn watermark(&self) -> Option<i64> {
        (self.clock.watermark_ms != WATERMARK_MIN).then_some(self.clock.watermark_ms)
    }
}
