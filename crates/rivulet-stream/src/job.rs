//! Running a job as a member of its consumer group: tasks follow the partitions the group
//! assigns, state is restored from the changelog, and every checkpoint commits outputs,
//! state changes and input offsets together (one Kafka transaction with exactly-once).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use rivulet_sdk::progress::Progress;
use rivulet_sdk::transport::{GroupMember, MemberSettings, Polled, TopicSpec, TxnProducer};
use rivulet_sdk::{OutRecord, SdkError, TopicPartition, Transport};

use crate::error::{Result, StreamError};
use crate::local::{Changes, Copier, LocalState, PartitionWrite};
use crate::pipeline::{Guarantee, JobOptions, Pipeline};
use crate::query::{self, Query, QUERIES_MAX};
use crate::runtime::{Stage, Task};
use crate::stats::{JobStats, Stats};
use crate::status::{JobStatus, JOBS_TOPIC, STATUS_INTERVAL_MS};
use crate::tasks::Tasks;

/// How long one poll waits before the loop checks timers and the stop.
const POLL_WAIT: Duration = Duration::from_millis(20);
/// How often idle inputs are looked for and idle watermarks advanced: an idle job
/// checkpoints at most this often.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How often tables read their topics' new records.
const TABLE_REFRESH: Duration = Duration::from_secs(1);
/// Records per publish call.
const PUBLISH_CHUNK: usize = 10_000;
/// Changelog records read per call when restoring.
const RESTORE_BATCH: usize = 100_000;
/// Longest pause between attempts after a failure.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Creates the output, side and dead-letter topics and, for a stateful job run as a
/// group (`durable`), its changelog and repartition topics; returns the inputs' partition
/// count (the number of tasks per stage).
pub(crate) async fn ensure_topics(
    transport: &dyn Transport,
    pipeline: &Pipeline,
    options: &JobOptions,
    durable: bool,
) -> Result<i32> {
    let plain = TopicSpec {
        partitions: options.output_partitions,
        configs: BTreeMap::new(),
    };
    for topic in [pipeline.output.clone(), options.late_topic(), options.dlq_topic()] {
        transport.ensure_topic(&topic, plain.clone()).await?;
    }
    if durable {
        let jobs = TopicSpec {
            partitions: 1,
            configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        };
        transport.ensure_topic(JOBS_TOPIC, jobs).await?;
    }
    let mut tasks = 1;
    for topic in &pipeline.inputs {
        tasks = tasks.max(transport.partition_count(topic).await?);
    }
    if durable && pipeline.shuffle.is_some() {
        let spec = TopicSpec {
            partitions: tasks,
            configs: BTreeMap::new(),
        };
        let topic = options.repartition_topic();
        transport.ensure_topic(&topic, spec).await?;
        if transport.partition_count(&topic).await? != tasks {
            return Err(StreamError::Config(format!(
                "repartition topic {topic} must have {tasks} partitions"
            )));
        }
    }
    if durable && pipeline.stateful {
        let spec = TopicSpec {
            partitions: tasks,
            configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        };
        let topic = options.changelog_topic();
        transport.ensure_topic(&topic, spec).await?;
        let have = transport.partition_count(&topic).await?;
        if have < tasks {
            return Err(StreamError::Config(format!(
                "changelog {topic} has {have} partitions; the inputs need {tasks}"
            )));
        }
    }
    Ok(tasks)
}

/// Records taken from tasks, per destination topic.
#[derive(Default)]
pub(crate) struct Outputs {
    topics: BTreeMap<String, Vec<OutRecord>>,
    pub offsets: Vec<(TopicPartition, i64)>,
}

impl Outputs {
    /// Takes a task's pending results, side and dead records (not its changelog).
    pub fn take(&mut self, task: &mut Task, pipeline: &Pipeline, options: &JobOptions, stats: &Stats) {
        let out = std::mem::take(&mut task.out);
        Stats::add(&stats.results_out, out.results.len());
        Stats::add(&stats.late, out.side.len());
        Stats::add(&stats.dead_lettered, out.dead.len());
        self.push(&pipeline.output, out.results);
        self.push(&options.late_topic(), out.side);
        self.push(&options.dlq_topic(), out.dead);
    }

    pub fn push(&mut self, topic: &str, records: Vec<OutRecord>) {
        if !records.is_empty() {
            self.topics.entry(topic.to_string()).or_default().extend(records);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty() && self.offsets.is_empty()
    }

    pub fn into_topics(self) -> Vec<(String, Vec<OutRecord>)> {
        self.topics.into_iter().collect()
    }
}

/// Publishes records per topic in bounded chunks and resolves when all are durable.
pub(crate) async fn publish_all(
    transport: &dyn Transport,
    topics: Vec<(String, Vec<OutRecord>)>,
) -> Result<()> {
    let mut chunks = Vec::new();
    for (topic, mut records) in topics {
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(PUBLISH_CHUNK));
            chunks.push((topic.clone(), records));
            records = rest;
        }
    }
    transport.publish_many(chunks).await?;
    Ok(())
}

/// A job running in the background; stop it with [`RunningJob::shutdown`].
#[derive(Debug)]
pub struct RunningJob {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<()>>>,
    stats: Arc<Stats>,
    query_address: Option<std::net::SocketAddr>,
}

impl RunningJob {
    /// Where this instance answers interactive queries (`GET /state/{key}`).
    pub fn query_address(&self) -> Option<std::net::SocketAddr> {
        self.query_address
    }

    /// What the job has done so far.
    pub fn stats(&self) -> JobStats {
        self.stats.snapshot()
    }

    /// Commits a last checkpoint, leaves the group and returns the stats.
    pub async fn shutdown(mut self) -> Result<JobStats> {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            task.await
                .map_err(|e| StreamError::Config(format!("job task failed: {e}")))??;
        }
        Ok(self.stats.snapshot())
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Shared {
    transport: Arc<dyn Transport>,
    pipeline: Pipeline,
    options: JobOptions,
    stats: Arc<Stats>,
    stateful: bool,
    /// Partition indexes of the inputs.
    upstreams: i32,
    /// Partition count of each input topic.
    counts: BTreeMap<String, i32>,
    /// Interactive queries waiting for the loop.
    queries: tokio::sync::Mutex<mpsc::Receiver<Query>>,
    /// Where this instance answers them.
    query_address: Option<std::net::SocketAddr>,
    /// The local copy of the state, when `state_dir` is set.
    local: Option<LocalState>,
}

/// Starts `pipeline` as a member of the consumer group `options.name`.
pub async fn start(
    transport: Arc<dyn Transport>,
    pipeline: Pipeline,
    options: JobOptions,
) -> Result<RunningJob> {
    pipeline.validate()?;
    options.validate()?;
    let stateful = pipeline.stateful;
    let upstreams = ensure_topics(transport.as_ref(), &pipeline, &options, true).await?;
    let mut counts = BTreeMap::new();
    for topic in &pipeline.inputs {
        counts.insert(topic.clone(), transport.partition_count(topic).await?);
    }
    let local = match (&options.state_dir, stateful) {
        (Some(dir), true) => LocalState::open_or_set_aside(dir, &options.name, &options.instance).await,
        _ => None,
    };
    let stats = Arc::new(Stats::default());
    let (stop, stop_rx) = watch::channel(false);
    let (queries_tx, queries) = mpsc::channel(QUERIES_MAX);
    let query_address = match options.query_listen {
        Some(addr) => {
            let (listener, local) = query::bind(addr)
                .await
                .map_err(|e| StreamError::Config(format!("binding the query address {addr}: {e}")))?;
            tokio::spawn(query::serve(
                listener,
                options.name.clone(),
                options.instance.clone(),
                queries_tx,
                stop_rx.clone(),
            ));
            Some(local)
        }
        None => None,
    };
    let shared = Shared {
        transport,
        pipeline,
        options,
        stats: stats.clone(),
        stateful,
        upstreams,
        counts,
        queries: tokio::sync::Mutex::new(queries),
        query_address,
        local,
    };
    let task = tokio::spawn(supervise(Arc::new(shared), stop_rx));
    Ok(RunningJob {
        stop,
        task: Some(task),
        stats,
        query_address,
    })
}

/// Writes this instance's status to `rivulet.jobs`; a failure is logged, not fatal.
async fn report(shared: &Shared, state: &str) {
    let mut status = JobStatus::new(&shared.pipeline, &shared.options, &shared.stats.snapshot(), state);
    status.query_address = shared.query_address.map(|a| a.to_string());
    let record = match serde_json::to_vec(&status) {
        Ok(value) => OutRecord {
            key: Some(status.key().into_bytes()),
            value: Some(value),
            headers: Vec::new(),
            partition: None,
        },
        Err(e) => {
            tracing::warn!(error = %e, "Job status not encodable");
            return;
        }
    };
    if let Err(e) = shared.transport.publish(JOBS_TOPIC, vec![record]).await {
        tracing::warn!(job = %shared.options.name, error = %e, "Job status not written");
    }
}

/// Reports the status every few seconds until the job ends.
async fn report_periodically(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_millis(STATUS_INTERVAL_MS as u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => report(&shared, "running").await,
            _ = stop.changed() => return,
        }
    }
}

/// Runs members one after another: a failed checkpoint drops the member and its tasks,
/// and a new member restarts from the last committed checkpoint.
async fn supervise(shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Result<()> {
    report(&shared, "running").await;
    let reporter = tokio::spawn(report_periodically(shared.clone(), stop.clone()));
    let outcome = run_until_stopped(&shared, &stop).await;
    reporter.abort();
    report(&shared, if outcome.is_ok() { "stopped" } else { "failed" }).await;
    outcome
}

async fn run_until_stopped(shared: &Shared, stop: &watch::Receiver<bool>) -> Result<()> {
    let mut failures = 0u32;
    loop {
        match run_member(shared, stop).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                failures = failures.saturating_add(1);
                shared.stats.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(job = %shared.options.name, error = %e, failures, "Job member failed; restarting from the last checkpoint");
                let backoff = Duration::from_millis(100u64 << failures.min(6)).min(BACKOFF_MAX);
                tokio::time::sleep(backoff).await;
                if *stop.borrow() {
                    return Err(e);
                }
            }
        }
    }
}

/// One group member's life: poll, process, checkpoint, until stopped or failed.
async fn run_member(shared: &Shared, stop: &watch::Receiver<bool>) -> Result<()> {
    let opts = &shared.options;
    let settings = MemberSettings {
        poll_records_max: 10_000,
        revoke_wait: Duration::from_secs(1),
        session_timeout: Duration::from_secs(10),
    };
    // Nothing is dispatched through this progress, so a rebalance commits nothing outside
    // a checkpoint.
    let mut topics = shared.pipeline.inputs.clone();
    if shared.pipeline.shuffle.is_some() {
        topics.push(opts.repartition_topic());
    }
    let mut member = shared
        .transport
        .join(&opts.name, topics, Arc::new(Progress::new()), settings)
        .await?;
    let mut producer = match opts.guarantee {
        Guarantee::ExactlyOnce => {
            let id = format!("{}-{}", opts.name, opts.instance);
            Some(shared.transport.transactional(&id).await?)
        }
        Guarantee::AtLeastOnce => None,
    };
    shared.pipeline.refresh_tables(shared.transport.as_ref()).await?;
    let mut tables_read = Instant::now();
    let mut queries = shared.queries.lock().await;
    let mut tasks = Tasks::new(&shared.pipeline, opts, shared.upstreams).with_counts(shared.counts.clone());
    let copy_interval = Duration::from_millis(opts.local_copy_interval_ms as u64);
    let mut copier = shared.local.clone().map(|l| Copier::new(l, copy_interval));
    let mut last_checkpoint = Instant::now();
    let mut idle_tick: Option<Instant> = None;
    let mut idle_checked = Instant::now();
    let interval = Duration::from_millis(opts.checkpoint_interval_ms as u64);
    loop {
        if *stop.borrow() {
            if let Some(copier) = copier.as_mut() {
                copier.finish().await;
                copier.flush_next();
            }
            checkpoint(
                shared,
                &mut tasks,
                member.as_mut(),
                producer.as_deref_mut(),
                copier.as_mut(),
            )
            .await?;
            if let Some(copier) = copier.as_mut() {
                copier.finish().await;
            }
            return member.close(Vec::new()).await.map_err(StreamError::from);
        }
        if !shared.pipeline.tables.is_empty() && tables_read.elapsed() >= TABLE_REFRESH {
            shared.pipeline.refresh_tables(shared.transport.as_ref()).await?;
            tables_read = Instant::now();
        }
        answer_queries(&mut queries, &tasks);
        let polled = member.poll(POLL_WAIT).await?;
        let future_limit = crate::now_ms().saturating_add(opts.future_limit_ms);
        for p in polled {
            match p {
                Polled::Assigned(tps) => assign(shared, &mut tasks, &tps, copier.as_mut()).await?,
                Polled::Revoked(tps) => {
                    // Uncommitted work of these partitions is dropped: their next owner
                    // starts from the last checkpoint.
                    for tp in &tps {
                        tasks.remove(tp);
                        if let Some(copier) = copier.as_mut() {
                            copier.forget(tp.partition);
                        }
                    }
                }
                Polled::Record(r) => {
                    if tasks.process(&r, future_limit) {
                        shared.stats.records_in.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if idle_checked.elapsed() >= IDLE_CHECK {
            advance_idle(&mut tasks.map, opts.idle_timeout_ms, &mut idle_tick);
            idle_checked = Instant::now();
        }
        let held: usize = tasks.map.values().map(|t| t.out.len()).sum();
        if last_checkpoint.elapsed() >= interval || held >= opts.pending_records_max {
            checkpoint(
                shared,
                &mut tasks,
                member.as_mut(),
                producer.as_deref_mut(),
                copier.as_mut(),
            )
            .await?;
            last_checkpoint = Instant::now();
        }
    }
}

/// Answers the interactive queries waiting, from every task of this instance.
fn answer_queries(queries: &mut mpsc::Receiver<Query>, tasks: &Tasks) {
    // Bounded by the queue's capacity.
    for _ in 0..QUERIES_MAX {
        let Ok(q) = queries.try_recv() else {
            return;
        };
        let windows: Vec<serde_json::Value> = tasks
            .map
            .values()
            .filter_map(|t| t.logic.query(&q.key))
            .flatten()
            .collect();
        // The asker may have given up; nothing to do then.
        let _ = q.reply.send(windows);
    }
}

/// Creates tasks for newly assigned partitions and restores their state.
async fn assign(
    shared: &Shared,
    tasks: &mut Tasks,
    tps: &[TopicPartition],
    mut copier: Option<&mut Copier>,
) -> Result<()> {
    let created: BTreeSet<(Stage, i32)> = tps.iter().filter_map(|tp| tasks.ensure(tp)).collect();
    if shared.stateful && !created.is_empty() {
        restore(shared, tasks, &created, copier.as_deref_mut()).await?;
        if let Some(copier) = copier {
            for (_, p) in &created {
                if tasks.holds_every_writer(*p) {
                    copier.complete(*p);
                }
            }
        }
    }
    shared
        .stats
        .tasks
        .store(tasks.map.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Restores the tasks just created: from the local copy of their changelog partitions
/// where one is usable, then the changelog from the copy's position (or from its start)
/// to its end; the local copy then takes what was read.
async fn restore(
    shared: &Shared,
    tasks: &mut Tasks,
    created: &BTreeSet<(Stage, i32)>,
    mut copier: Option<&mut Copier>,
) -> Result<()> {
    let ids: BTreeSet<i32> = created.iter().map(|k| k.1).collect();
    let topic = shared.options.changelog_topic();
    let started = Instant::now();
    let ranges = shared.transport.offset_ranges(&topic).await?;
    // Partitions not restored are skipped by starting them past their end.
    let mut from: BTreeMap<i32, i64> = ranges
        .keys()
        .filter(|p| !ids.contains(p))
        .map(|p| (*p, i64::MAX))
        .collect();
    let mut writes = BTreeMap::new();
    let mut copied = 0usize;
    if let Some(copier) = copier.as_deref_mut() {
        for p in &ids {
            let range = ranges.get(p).copied().unwrap_or((0, 0));
            let (write, entries) = load_copy(copier.local(), tasks, created, *p, range).await?;
            copied += entries;
            from.insert(*p, write.position);
            writes.insert(*p, write);
        }
    }
    let replayed = replay(shared, tasks, created, &topic, from, &mut writes).await?;
    if let Some(copier) = copier {
        copier.submit(writes.into_values().collect());
    }
    Stats::add(&shared.stats.restored_from_copy, copied);
    Stats::add(&shared.stats.restored_from_changelog, replayed);
    Stats::add(&shared.stats.restore_ms, started.elapsed().as_millis() as usize);
    tracing::info!(job = %shared.options.name, tasks = ?ids, copied, replayed, ms = started.elapsed().as_millis() as u64, "State restored");
    Ok(())
}

/// Puts partition `p`'s local copy into the tasks when it is usable; returns how the copy
/// is to be written after the replay, and the number of entries loaded.
async fn load_copy(
    local: &LocalState,
    tasks: &mut Tasks,
    created: &BTreeSet<(Stage, i32)>,
    p: i32,
    range: (i64, i64),
) -> Result<(PartitionWrite, usize)> {
    let mut write = PartitionWrite {
        partition: p,
        clear: true,
        changes: Changes::new(),
        position: range.0,
    };
    let copy = match local.load(p).await {
        Ok(Some(copy)) => copy,
        Ok(None) => return Ok((write, 0)),
        Err(e) => {
            tracing::warn!(partition = p, error = %e, "Local state copy not readable; reading the whole changelog");
            return Ok((write, 0));
        }
    };
    if !copy.usable(range, crate::now_ms()) {
        tracing::info!(
            partition = p,
            position = copy.position,
            ?range,
            "Local state copy not usable; reading the whole changelog"
        );
        return Ok((write, 0));
    }
    let entries = copy.entries.len();
    for (key, value) in copy.entries {
        let record = rivulet_sdk::InRecord {
            topic: String::new(),
            partition: p,
            offset: -1,
            timestamp_ms: 0,
            key: Some(key),
            value: Some(value),
            headers: Vec::new(),
        };
        tasks.restore(created, &record)?;
    }
    write.clear = false;
    write.position = copy.position;
    Ok((write, entries))
}

/// Reads the changelog partitions in `from` to their end into the created tasks, noting
/// each change in `writes`; returns the number of records read.
async fn replay(
    shared: &Shared,
    tasks: &mut Tasks,
    created: &BTreeSet<(Stage, i32)>,
    topic: &str,
    mut from: BTreeMap<i32, i64>,
    writes: &mut BTreeMap<i32, PartitionWrite>,
) -> Result<usize> {
    let mut replayed = 0usize;
    // Bounded: each call reads at least one record or ends the loop.
    loop {
        let (records, next) = shared
            .transport
            .read_to_end(topic, from.clone(), RESTORE_BATCH)
            .await?;
        for r in &records {
            tasks.restore(created, r)?;
            if let (Some(w), Some(key)) = (writes.get_mut(&r.partition), r.key.as_ref()) {
                w.changes.insert(key.clone(), r.value.clone());
            }
        }
        replayed += records.len();
        for (p, o) in next {
            if let Some(w) = writes.get_mut(&p) {
                w.position = o;
            }
            if from.get(&p) != Some(&i64::MAX) {
                from.insert(p, o);
            }
        }
        if records.len() < RESTORE_BATCH {
            return Ok(replayed);
        }
    }
}

/// Marks inputs idle after the timeout; a task with every input idle follows the lowest
/// watermark of the active tasks, or, when all are idle, the wall clock.
fn advance_idle(
    tasks: &mut BTreeMap<(Stage, i32), Task>,
    idle_timeout_ms: i64,
    idle_tick: &mut Option<Instant>,
) {
    let timeout = Duration::from_millis(idle_timeout_ms as u64);
    for task in tasks.values_mut() {
        let quiet: Vec<TopicPartition> = task
            .last_record
            .iter()
            .filter(|(_, at)| at.elapsed() >= timeout)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in quiet {
            if !task.clock.inputs.iter().any(|c| c.input == tp && c.idle) {
                task.clock.set_idle(&tp, true);
            }
        }
    }
    let active_min = tasks
        .values()
        .filter(|t| !t.clock.all_idle())
        .filter_map(Task::watermark)
        .min();
    let all_idle = !tasks.is_empty() && tasks.values().all(|t| t.clock.all_idle());
    let elapsed_ms = idle_tick.map_or(0, |t| t.elapsed().as_millis() as i64);
    *idle_tick = all_idle.then(Instant::now);
    for task in tasks.values_mut().filter(|t| t.clock.all_idle()) {
        match (active_min, task.watermark()) {
            (Some(min), _) => task.force(min),
            (None, Some(wm)) if elapsed_ms > 0 => task.force(wm.saturating_add(elapsed_ms)),
            _ => {}
        }
    }
}

/// Commits what every task holds: outputs, changelog and offsets.
async fn checkpoint(
    shared: &Shared,
    tasks: &mut Tasks,
    member: &mut dyn GroupMember,
    producer: Option<&mut (dyn TxnProducer + 'static)>,
    mut copier: Option<&mut Copier>,
) -> Result<()> {
    let started = Instant::now();
    let (opts, stats) = (&shared.options, &shared.stats);
    let mut outputs = Outputs::default();
    let mut changelog = Vec::new();
    let shuffled = tasks.take_shuffled();
    outputs.push(&opts.repartition_topic(), shuffled);
    for task in tasks.map.values_mut() {
        outputs.take(task, &shared.pipeline, opts, stats);
        if shared.stateful {
            changelog.extend(task.changelog()?);
        }
        outputs.offsets.extend(std::mem::take(&mut task.offsets));
    }
    if let Some(copier) = copier.as_deref_mut() {
        copier.record(&changelog);
    }
    outputs.push(&opts.changelog_topic(), changelog);
    update_gauges(stats, &tasks.map);
    // Positions taken before this checkpoint commits: every change since the last copy
    // sits below them or in this checkpoint (whose records a replay applies again).
    let positions = match &copier {
        Some(c) if c.due() => Some(shared.transport.offset_ranges(&opts.changelog_topic()).await?),
        _ => None,
    };
    if !outputs.is_empty() {
        commit(shared, outputs, member, producer).await?;
        stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        stats
            .checkpoint_last_ms
            .store(started.elapsed().as_millis() as i64, Ordering::Relaxed);
    }
    if let (Some(copier), Some(positions)) = (copier, positions) {
        copier.copy(&positions);
    }
    Ok(())
}

/// Publishes outputs and commits offsets: in one transaction, or one after the other.
async fn commit(
    shared: &Shared,
    mut outputs: Outputs,
    member: &mut dyn GroupMember,
    producer: Option<&mut (dyn TxnProducer + 'static)>,
) -> Result<()> {
    let offsets = std::mem::take(&mut outputs.offsets);
    match producer {
        Some(p) => p.commit(member, outputs.into_topics(), offsets).await?,
        None => {
            publish_all(shared.transport.as_ref(), outputs.into_topics()).await?;
            if !offsets.is_empty() {
                member.commit(offsets).await?;
            }
        }
    }
    Ok(())
}

fn update_gauges(stats: &Stats, tasks: &BTreeMap<(Stage, i32), Task>) {
    let entries: usize = tasks.values().map(|t| t.logic.state_len()).sum();
    stats.state_entries.store(entries as u64, Ordering::Relaxed);
    if let Some(wm) = tasks.values().filter_map(Task::watermark).min() {
        stats.watermark_ms.store(wm, Ordering::Relaxed);
    }
}

impl From<StreamError> for SdkError {
    fn from(e: StreamError) -> SdkError {
        match e {
            StreamError::Sdk(inner) => inner,
            other => SdkError::Config(other.to_string()),
        }
    }
}
