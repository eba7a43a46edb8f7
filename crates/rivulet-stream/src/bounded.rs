//! Bounded runs: a job over its inputs up to their current end, then every window closed,
//! flushed and done (tests, backfills, reprocessing). No group, no offsets, no changelog:
//! state starts empty and ends with the run. A repartitioned job shuffles in memory, with
//! the same records and watermark markers its repartition topic would carry.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use rivulet_sdk::{InRecord, TopicPartition, Transport};

use crate::error::Result;
use crate::job::{ensure_topics, publish_all, Outputs};
use crate::pipeline::{JobOptions, Pipeline};
use crate::runtime::Stage;
use crate::stats::{JobStats, Stats};
use crate::tasks::Tasks;

/// Records read per call to the broker.
const READ_BATCH: usize = 50_000;
/// Most read calls per input topic (2^31 records at the batch size).
const READS_MAX: usize = 1 << 16;

/// Runs `pipeline` over its inputs to their end, closes every window and writes all
/// results before returning.
pub async fn run_bounded(
    transport: &dyn Transport,
    pipeline: &Pipeline,
    options: &JobOptions,
) -> Result<JobStats> {
    pipeline.validate()?;
    options.validate()?;
    ensure_topics(transport, pipeline, options, false).await?;
    let stats = Stats::default();
    let mut upstreams = 1;
    let mut counts = BTreeMap::new();
    for topic in &pipeline.inputs {
        let count = transport.partition_count(topic).await?;
        upstreams = upstreams.max(count);
        counts.insert(topic.clone(), count);
    }
    let mut run = Run {
        tasks: Tasks::new(pipeline, options, upstreams).with_counts(counts),
        offsets: BTreeMap::new(),
    };
    pipeline.refresh_tables(transport).await?;
    let future_limit = crate::now_ms().saturating_add(options.future_limit_ms);
    for topic in &pipeline.inputs {
        let mut from: BTreeMap<i32, i64> = BTreeMap::new();
        for _ in 0..READS_MAX {
            let (records, next) = transport.read_to_end(topic, from.clone(), READ_BATCH).await?;
            for r in &records {
                run.tasks.ensure(&r.topic_partition());
                run.tasks.process(r, future_limit);
            }
            Stats::add(&stats.records_in, records.len());
            run.shuffle(future_limit);
            flush(transport, pipeline, options, &mut run.tasks, &stats).await?;
            from = next;
            if records.len() < READ_BATCH {
                break;
            }
        }
    }
    for stage in [Stage::Only, Stage::Shuffle] {
        for task in run.tasks.map.values_mut().filter(|t| t.stage == stage) {
            task.force(i64::MAX);
        }
    }
    run.shuffle(future_limit);
    for task in run.tasks.map.values_mut() {
        task.force(i64::MAX);
    }
    flush(transport, pipeline, options, &mut run.tasks, &stats).await?;
    stats.tasks.store(run.tasks.map.len() as u64, Ordering::Relaxed);
    Ok(stats.snapshot())
}

struct Run {
    tasks: Tasks,
    /// Next offset of each in-memory repartition partition.
    offsets: BTreeMap<i32, i64>,
}

impl Run {
    /// Delivers what the first stage wrote to the second, in order.
    fn shuffle(&mut self, future_limit_ms: i64) {
        if !self.tasks.shuffles() {
            return;
        }
        let topic = self.tasks.repartition_topic().to_string();
        for r in self.tasks.take_shuffled() {
            let partition = r.partition.unwrap_or(0);
            let offset = self.offsets.entry(partition).or_insert(0);
            let record = InRecord {
                topic: topic.clone(),
                partition,
                offset: *offset,
                timestamp_ms: 0,
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            };
            *offset += 1;
            self.tasks.ensure(&TopicPartition::new(topic.clone(), partition));
            self.tasks.process(&record, future_limit_ms);
        }
    }
}

/// Publishes what the tasks hold.
async fn flush(
    transport: &dyn Transport,
    pipeline: &Pipeline,
    options: &JobOptions,
    tasks: &mut Tasks,
    stats: &Stats,
) -> Result<()> {
    let mut outputs = Outputs::default();
    for task in tasks.map.values_mut() {
        outputs.take(task, pipeline, options, stats);
    }
    publish_all(transport, outputs.into_topics()).await
}
