//! `/metrics`: the process counters plus values read from the broker at scrape time.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use rivulet_broker::Broker;
use rivulet_log::Log;
use rivulet_metrics::Metrics;

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

pub(crate) fn render(broker: &Broker, metrics: &Metrics) -> String {
    let mut reg = Registry::with_prefix("rivulet");
    let hwm = Family::<PartitionLabels, Gauge>::default();
    let start = Family::<PartitionLabels, Gauge>::default();
    let size = Family::<PartitionLabels, Gauge>::default();
    let lag = Family::<LagLabels, Gauge>::default();
    let lag_seconds = Family::<LagLabels, Gauge<f64, AtomicU64>>::default();
    let disk: Gauge = Gauge::default();
    let topics_count: Gauge = Gauge::default();
    let partitions_count: Gauge = Gauge::default();
    let groups_count: Gauge = Gauge::default();
    let dropped: Gauge = Gauge::default();
    let topics = broker.topics();
    let mut series = 0usize;
    let mut disk_bytes = 0u64;
    let mut partitions = 0i64;
    for t in &topics {
        for (i, log) in t.partitions().iter().enumerate() {
            partitions += 1;
            disk_bytes += log.size_bytes();
            if series >= SERIES_MAX {
                dropped.inc();
                continue;
            }
            series += 1;
            let labels = PartitionLabels {
                topic: t.name().to_string(),
                partition: i.to_string(),
            };
            hwm.get_or_create(&labels).set(log.high_watermark());
            start.get_or_create(&labels).set(log.log_start_offset());
            size.get_or_create(&labels).set(log.size_bytes() as i64);
        }
    }
    let groups = broker.groups();
    let group_list = groups.list();
    let mut lag_series = 0usize;
    for (group, _, _) in &group_list {
        for (topic, partition, committed) in groups.offsets().group_offsets(group) {
            let Some(log): Option<Log> = broker.topic(&topic).and_then(|t| t.partition(partition).cloned())
            else {
                continue;
            };
            if lag_series >= SERIES_MAX {
                dropped.inc();
                continue;
            }
            lag_series += 1;
            let (records, seconds) = crate::admin::lag_of(&log, committed.offset);
            let labels = LagLabels {
                group: group.clone(),
                topic,
                partition: partition.to_string(),
            };
            lag.get_or_create(&labels).set(records);
            lag_seconds.get_or_create(&labels).set(seconds);
        }
    }
    disk.set(disk_bytes as i64);
    topics_count.set(topics.len() as i64);
    partitions_count.set(partitions);
    groups_count.set(group_list.len() as i64);
    reg.register(
        "partition_high_watermark",
        "Offset after the last visible record",
        hwm,
    );
    reg.register("partition_log_start_offset", "First offset still stored", start);
    reg.register_with_unit(
        "partition_size",
        "Bytes of a partition's segments",
        Unit::Bytes,
        size,
    );
    reg.register_with_unit(
        "disk_used",
        "Bytes of all partitions' segments",
        Unit::Bytes,
        disk,
    );
    reg.register(
        "consumer_group_lag",
        "Records between a group's committed offset and the high watermark",
        lag,
    );
    reg.register_with_unit(
        "consumer_group_lag",
        "Age of the oldest record a group has not consumed",
        Unit::Seconds,
        lag_seconds,
    );
    reg.register("topics", "Topics", topics_count);
    reg.register("partitions", "Partitions of all topics", partitions_count);
    reg.register(
        "consumer_groups",
        "Consumer groups known to the broker",
        groups_count,
    );
    reg.register(
        "metrics_series_dropped",
        "Series left out of this scrape to bound cardinality",
        dropped,
    );
    metrics.render_with(Some(&reg))
}
