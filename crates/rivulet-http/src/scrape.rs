//! `/metrics`: the process counters plus values read from the broker at scrape time.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use rivulet_broker::Broker;
use rivulet_eventstore::persistent::model::GroupInfo;
use rivulet_metrics::Metrics;
use rivulet_stream::status::JobStatus;

/// Series per scrape-time family; partitions or group positions beyond this are left out
/// (and counted in `rivulet_metrics_series_dropped`).
pub(crate) const SERIES_MAX: usize = 10_000;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    group: String,
    topic: String,
    partition: String,
}

/// Families read from the broker's partitions.
#[derive(Default)]
struct PartitionFamilies {
    hwm: Family<PartitionLabels, Gauge>,
    start: Family<PartitionLabels, Gauge>,
    size: Family<PartitionLabels, Gauge>,
    lso_lag: Family<PartitionLabels, Gauge>,
    disk: Gauge,
    topics: Gauge,
    partitions: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

/// Families read from the broker's queues.
#[derive(Default)]
struct QueueFamilies {
    ready: Family<QueueLabels, Gauge>,
    unacked: Family<QueueLabels, Gauge>,
    consumers: Family<QueueLabels, Gauge>,
    published: Family<QueueLabels, Counter>,
    delivered: Family<QueueLabels, Counter>,
    acknowledged: Family<QueueLabels, Counter>,
    queues: Gauge,
}

/// Families read from the groups' committed offsets.
#[derive(Default)]
struct LagFamilies {
    lag: Family<LagLabels, Gauge>,
    lag_seconds: Family<LagLabels, Gauge<f64, AtomicU64>>,
    groups: Gauge,
}

pub(crate) fn render(broker: &Broker, metrics: &Metrics, groups: &[GroupInfo], jobs: &[JobStatus]) -> String {
    let mut reg = Registry::with_prefix("rivulet");
    let dropped: Gauge = Gauge::default();
    let partitions = partition_families(broker, &dropped);
    let lags = lag_families(broker, &dropped);
    reg.register(
        "partition_high_watermark",
        "Offset after the last visible record",
        partitions.hwm,
    );
    reg.register(
        "partition_log_start_offset",
        "First offset still stored",
        partitions.start,
    );
    reg.register_with_unit(
        "partition_size",
        "Bytes of a partition's segments",
        Unit::Bytes,
        partitions.size,
    );
    reg.register(
        "partition_last_stable_offset_lag",
        "Records between the last stable offset and the high watermark (open transactions)",
        partitions.lso_lag,
    );
    let open: Gauge = Gauge::default();
    open.set(broker.txns().open_count() as i64);
    reg.register("transactions_open", "Transactions open or completing", open);
    reg.register_with_unit(
        "disk_used",
        "Bytes of all partitions' segments",
        Unit::Bytes,
        partitions.disk,
    );
    reg.register(
        "consumer_group_lag",
        "Records between a group's committed offset and the high watermark",
        lags.lag,
    );
    reg.register_with_unit(
        "consumer_group_lag",
        "Age of the oldest record a group has not consumed",
        Unit::Seconds,
        lags.lag_seconds,
    );
    reg.register("topics", "Topics", partitions.topics);
    reg.register("partitions", "Partitions of all topics", partitions.partitions);
    reg.register(
        "consumer_groups",
        "Consumer groups known to the broker",
        lags.groups,
    );
    register_journal(&mut reg, broker);
    register_subscriptions(&mut reg, groups, &dropped);
    register_jobs(&mut reg, jobs, &dropped);
    let queues = queue_families(broker, &dropped);
    reg.register(
        "queue_messages_ready",
        "Messages a queue's consumers could be handed now",
        queues.ready,
    );
    reg.register(
        "queue_messages_unacknowledged",
        "Messages delivered from a queue and not yet acknowledged",
        queues.unacked,
    );
    reg.register(
        "queue_consumers",
        "Consumers attached to a queue",
        queues.consumers,
    );
    reg.register(
        "queue_messages_published",
        "Messages appended to a queue since the broker started",
        queues.published,
    );
    reg.register(
        "queue_messages_delivered",
        "Deliveries from a queue (redeliveries included) since the broker started",
        queues.delivered,
    );
    reg.register(
        "queue_messages_acknowledged",
        "Messages acknowledged from a queue since the broker started",
        queues.acknowledged,
    );
    reg.register(
        "queues",
        "Queues (AMQP and other queue front ends)",
        queues.queues,
    );
    reg.register(
        "metrics_series_dropped",
        "Series left out of this scrape to bound cardinality",
        dropped,
    );
    metrics.render_with(Some(&reg))
}

fn partition_families(broker: &Broker, dropped: &Gauge) -> PartitionFamilies {
    let out = PartitionFamilies::default();
    let topics = broker.topics();
    let mut series = 0usize;
    let mut disk_bytes = 0u64;
    let mut partitions = 0i64;
    for t in &topics {
        for info in t.partition_infos() {
            partitions += 1;
            disk_bytes += info.size_bytes;
            if series >= SERIES_MAX {
                dropped.inc();
                continue;
            }
            series += 1;
            let labels = PartitionLabels {
                topic: t.name().to_string(),
                partition: info.partition.to_string(),
            };
            out.hwm.get_or_create(&labels).set(info.high_watermark);
            out.start.get_or_create(&labels).set(info.log_start_offset);
            out.size.get_or_create(&labels).set(info.size_bytes as i64);
            out.lso_lag
                .get_or_create(&labels)
                .set((info.high_watermark - info.last_stable_offset).max(0));
        }
    }
    out.disk.set(disk_bytes as i64);
    out.topics.set(topics.len() as i64);
    out.partitions.set(partitions);
    out
}

fn queue_families(broker: &Broker, dropped: &Gauge) -> QueueFamilies {
    let out = QueueFamilies::default();
    let infos = broker.queue_infos();
    for (n, q) in infos.iter().enumerate() {
        if n >= SERIES_MAX {
            dropped.inc();
            continue;
        }
        let labels = QueueLabels {
            queue: q.name.clone(),
        };
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        out.ready.get_or_create(&labels).set(gauge(q.counts.ready));
        out.unacked.get_or_create(&labels).set(gauge(q.counts.unacked));
        out.consumers
            .get_or_create(&labels)
            .set(i64::from(q.counts.consumers));
        out.published
            .get_or_create(&labels)
            .inc_by(q.rates.published_total);
        out.delivered
            .get_or_create(&labels)
            .inc_by(q.rates.delivered_total);
        out.acknowledged
            .get_or_create(&labels)
            .inc_by(q.rates.acknowledged_total);
    }
    out.queues.set(infos.len() as i64);
    out
}

fn lag_families(broker: &Broker, dropped: &Gauge) -> LagFamilies {
    let out = LagFamilies::default();
    let group_list = broker.groups().list();
    let mut lag_series = 0usize;
    for (group, _, _) in &group_list {
        for l in broker.group_lag(group) {
            let (Some(records), Some(seconds)) = (l.lag, l.lag_seconds) else {
                continue;
            };
            if lag_series >= SERIES_MAX {
                dropped.inc();
                continue;
            }
            lag_series += 1;
            let labels = LagLabels {
                group: group.clone(),
                topic: l.topic,
                partition: l.partition.to_string(),
            };
            out.lag.get_or_create(&labels).set(records);
            out.lag_seconds.get_or_create(&labels).set(seconds);
        }
    }
    out.groups.set(group_list.len() as i64);
    out
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    source: String,
    group: String,
}

/// The event store's persistent subscription groups: lag, events in flight, parked events
/// and consumers per group.
fn register_subscriptions(reg: &mut Registry, groups: &[GroupInfo], dropped: &Gauge) {
    let (lag, in_flight, parked, consumers) = (
        Family::<GroupLabels, Gauge>::default(),
        Family::<GroupLabels, Gauge>::default(),
        Family::<GroupLabels, Gauge>::default(),
        Family::<GroupLabels, Gauge>::default(),
    );
    for (n, g) in groups.iter().enumerate() {
        if n >= SERIES_MAX {
            dropped.inc_by((groups.len() - n) as i64);
            break;
        }
        let labels = GroupLabels {
            source: g.definition.source.name().to_string(),
            group: g.definition.group.clone(),
        };
        let set = |f: &Family<GroupLabels, Gauge>, v: u64| {
            f.get_or_create(&labels).set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&lag, g.lag());
        set(&in_flight, g.in_flight as u64);
        set(&parked, g.parked);
        set(&consumers, g.consumers.len() as u64);
    }
    reg.register(
        "eventstore_subscription_lag",
        "Revisions (stream groups) or positions ($all groups) between a persistent subscription group's checkpoint and its source's end",
        lag,
    );
    reg.register(
        "eventstore_subscription_in_flight",
        "Events delivered to a group's consumers and not yet acknowledged",
        in_flight,
    );
    reg.register(
        "eventstore_subscription_parked",
        "Events in a group's parked stream, not yet replayed",
        parked,
    );
    reg.register(
        "eventstore_subscription_consumers",
        "Consumers connected to a group",
        consumers,
    );
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
    instance: String,
}

/// A job metric: name, help and how to read it from a status.
type JobField<T> = (&'static str, &'static str, fn(&JobStatus) -> T);

/// Stream processing jobs as their instances last reported (`rivulet.jobs`).
fn register_jobs(reg: &mut Registry, jobs: &[JobStatus], dropped: &Gauge) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let counters: [JobField<u64>; 8] = [
        ("job_records_in", "Input records a job instance processed", |j| {
            j.stats.records_in
        }),
        ("job_results_out", "Results a job instance wrote", |j| {
            j.stats.results_out
        }),
        (
            "job_late_records",
            "Records a job instance sent to its late side output, one per missed window",
            |j| j.stats.late,
        ),
        (
            "job_dead_lettered",
            "Records a job instance could not decode",
            |j| j.stats.dead_lettered,
        ),
        ("job_checkpoints", "Checkpoints a job instance committed", |j| {
            j.stats.checkpoints
        }),
        (
            "job_restored_from_copy",
            "State entries a job instance restored from its local copy",
            |j| j.stats.restored_from_copy,
        ),
        (
            "job_restored_from_changelog",
            "Changelog records a job instance read to restore state",
            |j| j.stats.restored_from_changelog,
        ),
        (
            "job_restore_ms",
            "Time a job instance spent restoring state (ms)",
            |j| j.stats.restore_ms,
        ),
    ];
    let gauges: [JobField<i64>; 4] = [
        ("job_state_entries", "Open windows a job instance holds", |j| {
            j.stats.state_entries as i64
        }),
        (
            "job_watermark_ms",
            "A job instance's lowest task watermark (ms since the epoch)",
            |j| j.stats.watermark_ms.unwrap_or(0),
        ),
        (
            "job_checkpoint_last_ms",
            "Duration of a job instance's last checkpoint (ms)",
            |j| j.stats.checkpoint_last_ms,
        ),
        (
            "job_tasks",
            "Tasks (partition indexes) a job instance holds",
            |j| j.stats.tasks as i64,
        ),
    ];
    let shown = &jobs[..jobs.len().min(SERIES_MAX)];
    dropped.inc_by((jobs.len() - shown.len()) as i64);
    let labels = |j: &JobStatus| JobLabels {
        job: j.job.clone(),
        instance: j.instance.clone(),
    };
    for (name, help, get) in counters {
        let family = Family::<JobLabels, Counter>::default();
        for j in shown {
            family.get_or_create(&labels(j)).inc_by(get(j));
        }
        reg.register(name, help, family);
    }
    for (name, help, get) in gauges {
        let family = Family::<JobLabels, Gauge>::default();
        for j in shown {
            family.get_or_create(&labels(j)).set(get(j));
        }
        reg.register(name, help, family);
    }
    let up = Family::<JobLabels, Gauge>::default();
    for j in shown {
        up.get_or_create(&labels(j))
            .set(i64::from(j.effective_state(now_ms) == "running"));
    }
    reg.register("job_up", "1 while a job instance runs and reports, else 0", up);
}

/// The shared journal's counters, when the broker has one.
fn register_journal(reg: &mut Registry, broker: &Broker) {
    let Some(stats) = broker.journal_stats() else {
        return;
    };
    let counter = |v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        c
    };
    reg.register(
        "journal_commits",
        "Durable writes of the shared journal",
        counter(stats.commits),
    );
    reg.register(
        "journal_entries",
        "Appends made durable through the shared journal",
        counter(stats.entries),
    );
    reg.register_with_unit(
        "journal_written",
        "Bytes written to the shared journal",
        Unit::Bytes,
        counter(stats.bytes),
    );
    reg.register(
        "journal_checkpoints",
        "Journal checkpoints completed",
        counter(stats.checkpoints),
    );
    reg.register(
        "journal_overflows",
        "Appends that synced their own segment because the journal was full or failed",
        counter(stats.overflows),
    );
}
