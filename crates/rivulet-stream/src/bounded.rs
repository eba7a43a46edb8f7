//! Bounded runs: a job over its inputs up to their current end, then every window closed,
//! flushed and done (tests, backfills, reprocessing). No group, no offsets, no changelog:
//! state starts empty and ends with the run.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use rivulet_sdk::{TopicPartition, Transport};

use crate::error::Result;
use crate::job::{ensure_topics, publish_all};
use crate::pipeline::{JobOptions, Pipeline};
use crate::runtime::Task;
use crate::stats::{JobStats, Stats};

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
    let mut tasks: BTreeMap<i32, Task> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for topic in &pipeline.inputs {
        counts.insert(topic.clone(), transport.partition_count(topic).await?);
    }
    let future_limit = crate::now_ms().saturating_add(options.future_limit_ms);
    for topic in &pipeline.inputs {
        let mut from: BTreeMap<i32, i64> = BTreeMap::new();
        for _ in 0..READS_MAX {
            let (records, next) = transport.read_to_end(topic, from.clone(), READ_BATCH).await?;
            for r in &records {
                let task = tasks.entry(r.partition).or_insert_with(|| {
                    let inputs = pipeline
                        .inputs
                        .iter()
                        .filter(|t| counts.get(*t).is_some_and(|n| *n > r.partition))
                        .map(|t| TopicPartition::new(t.clone(), r.partition))
                        .collect();
                    Task::new(
                        r.partition,
                        options.out_of_orderness_ms,
                        inputs,
                        (pipeline.factory)(),
                    )
                });
                task.process(r, future_limit);
            }
            Stats::add(&stats.records_in, records.len());
            flush(transport, pipeline, options, &mut tasks, &stats).await?;
            from = next;
            if records.len() < READ_BATCH {
                break;
            }
        }
    }
    for task in tasks.values_mut() {
        task.force(i64::MAX);
    }
    flush(transport, pipeline, options, &mut tasks, &stats).await?;
    stats.tasks.store(tasks.len() as u64, Ordering::Relaxed);
    Ok(stats.snapshot())
}

/// Publishes what the tasks hold.
async fn flush(
    transport: &dyn Transport,
    pipeline: &Pipeline,
    options: &JobOptions,
    tasks: &mut BTreeMap<i32, Task>,
    stats: &Stats,
) -> Result<()> {
    let mut outputs = crate::job::Outputs::default();
    for task in tasks.values_mut() {
        outputs.take(task, pipeline, options, stats);
    }
    publish_all(transport, outputs.into_topics()).await
}
