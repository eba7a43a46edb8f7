//! The tasks of one job instance, by stage and partition index, and the routing between
//! a repartitioning first stage and the second.

use std::collections::{BTreeMap, BTreeSet};

use rivulet_sdk::{InRecord, OutRecord, TopicPartition};

use crate::error::Result;
use crate::pipeline::{JobOptions, Pipeline};
use crate::runtime::{upstream_inputs, Stage, Task};

/// The partition of a repartitioned key: FNV-1a over its encoded bytes.
pub(crate) fn partition_of(key: &[u8], partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % partitions.max(1) as u32) as i32
}

/// Every task this instance holds.
pub(crate) struct Tasks {
    pub map: BTreeMap<(Stage, i32), Task>,
    pipeline: Pipeline,
    options: JobOptions,
    /// Partition indexes of the inputs (and of the repartition and changelog topics).
    upstreams: i32,
    repartition: String,
    /// Partition count of each input topic, when known: a task's clock waits only for
    /// the inputs that have its partition index.
    counts: BTreeMap<String, i32>,
}

impl Tasks {
    pub fn new(pipeline: &Pipeline, options: &JobOptions, upstreams: i32) -> Tasks {
        Tasks {
            map: BTreeMap::new(),
            pipeline: pipeline.clone(),
            options: options.clone(),
            upstreams,
            repartition: options.repartition_topic(),
            counts: BTreeMap::new(),
        }
    }

    /// Sets the input topics' partition counts.
    pub fn with_counts(mut self, counts: BTreeMap<String, i32>) -> Tasks {
        self.counts = counts;
        self
    }

    /// Every input partition of partition index `p`: a task's clock waits for all of them.
    fn inputs_of(&self, p: i32) -> Vec<TopicPartition> {
        self.pipeline
            .inputs
            .iter()
            .filter(|t| self.counts.get(*t).is_none_or(|n| *n > p))
            .map(|t| TopicPartition::new(t.clone(), p))
            .collect()
    }

    fn stage_of(&self, topic: &str) -> Stage {
        match (&self.pipeline.shuffle, topic == self.repartition) {
            (None, _) => Stage::Only,
            (Some(_), false) => Stage::Shuffle,
            (Some(_), true) => Stage::Final,
        }
    }

    /// Makes sure the task reading `tp` exists; returns its key when it was created.
    pub fn ensure(&mut self, tp: &TopicPartition) -> Option<(Stage, i32)> {
        let key = (self.stage_of(&tp.topic), tp.partition);
        if let Some(task) = self.map.get_mut(&key) {
            if key.0 != Stage::Final {
                task.add_input(tp);
            }
            return None;
        }
        let bound = self.options.out_of_orderness_ms;
        let mut inputs = self.inputs_of(tp.partition);
        if !inputs.contains(tp) {
            inputs.push(tp.clone());
        }
        let task = match key.0 {
            Stage::Only => Task::staged(
                Stage::Only,
                tp.partition,
                bound,
                inputs,
                (self.pipeline.factory)(),
            ),
            Stage::Shuffle => {
                let factory = self.pipeline.shuffle.as_ref().unwrap_or(&self.pipeline.factory);
                Task::staged(Stage::Shuffle, tp.partition, bound, inputs, factory())
            }
            Stage::Final => Task::staged(
                Stage::Final,
                tp.partition,
                bound,
                upstream_inputs(self.upstreams),
                (self.pipeline.factory)(),
            ),
        };
        self.map.insert(key, task);
        Some(key)
    }

    /// Whether this instance holds every task that writes to changelog partition `p`:
    /// the only stage's, or both stages' (the first where an input has partition `p`).
    pub fn holds_every_writer(&self, p: i32) -> bool {
        match self.pipeline.shuffle {
            None => self.map.contains_key(&(Stage::Only, p)),
            Some(_) => {
                let first_needed = self
                    .pipeline
                    .inputs
                    .iter()
                    .any(|t| self.counts.get(t).is_none_or(|n| *n > p));
                self.map.contains_key(&(Stage::Final, p))
                    && (!first_needed || self.map.contains_key(&(Stage::Shuffle, p)))
            }
        }
    }

    /// Drops the task reading `tp` with its uncommitted work.
    pub fn remove(&mut self, tp: &TopicPartition) {
        let key = (self.stage_of(&tp.topic), tp.partition);
        self.map.remove(&key);
    }

    /// Processes a record of an input or of the repartition topic; true for an input
    /// record of a task this instance holds.
    pub fn process(&mut self, record: &InRecord, future_limit_ms: i64) -> bool {
        let key = (self.stage_of(&record.topic), record.partition);
        match self.map.get_mut(&key) {
            Some(task) => {
                task.process(record, future_limit_ms);
                key.0 != Stage::Final
            }
            None => false,
        }
    }

    /// Puts back changelog records into the tasks just created.
    pub fn restore(&mut self, created: &BTreeSet<(Stage, i32)>, record: &InRecord) -> Result<()> {
        for key in created.iter().filter(|k| k.1 == record.partition) {
            if let Some(task) = self.map.get_mut(key) {
                task.restore(record)?;
            }
        }
        Ok(())
    }

    /// The records first-stage tasks wrote for the repartition topic, each with its
    /// partition, followed by watermark markers to every partition where a watermark moved.
    pub fn take_shuffled(&mut self) -> Vec<OutRecord> {
        let mut out = Vec::new();
        for task in self.map.values_mut().filter(|t| t.stage == Stage::Shuffle) {
            for mut r in task.out.shuffled.drain(..) {
                r.partition = Some(partition_of(r.key.as_deref().unwrap_or_default(), self.upstreams));
                out.push(r);
            }
            if let Some(marker) = task.marker() {
                for p in 0..self.upstreams {
                    let mut m = marker.clone();
                    m.partition = Some(p);
                    out.push(m);
                }
            }
        }
        out
    }

    /// Whether the job has a second stage.
    pub fn shuffles(&self) -> bool {
        self.pipeline.shuffle.is_some()
    }

    /// The repartition topic.
    pub fn repartition_topic(&self) -> &str {
        &self.repartition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_and_stay_in_range() {
        let mut seen = [0u32; 4];
        for k in 0..400u32 {
            let p = partition_of(k.to_string().as_bytes(), 4);
            assert!((0..4).contains(&p));
            seen[p as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
        assert_eq!(partition_of(b"x", 4), partition_of(b"x", 4));
    }
}
