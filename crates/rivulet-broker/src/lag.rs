//! Consumer lag: how far a group's committed offsets are behind, in records and in time.

use crate::Broker;

/// Bytes read to find the timestamp of the oldest unconsumed record.
const PEEK_BYTES: usize = 1;

/// One committed position of a group and how far behind it is.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset (the next record the group will consume).
    pub committed: i64,
    /// Client metadata committed with it.
    pub metadata: Option<String>,
    /// The partition's high watermark; `None` when the topic or partition is gone.
    pub high_watermark: Option<i64>,
    /// Records between the committed offset and the high watermark.
    pub lag: Option<i64>,
    /// Age of the oldest unconsumed record in seconds (0 when caught up).
    pub lag_seconds: Option<f64>,
}

impl Broker {
    /// The lag of every partition `group` committed an offset for, sorted by topic and
    /// partition.
    pub fn group_lag(&self, group: &str) -> Vec<PartitionLag> {
        self.groups()
            .offsets()
            .group_offsets(group)
            .into_iter()
            .map(|(topic, partition, committed)| {
                let info = self.topic(&topic).and_then(|t| t.partition_info(partition));
                let (lag, seconds) = match info {
                    Some(info) => {
                        let (lag, seconds) = self.lag_of(
                            &topic,
                            partition,
                            committed.offset,
                            info.high_watermark,
                            info.log_start_offset,
                        );
                        (Some(lag), Some(seconds))
                    }
                    None => (None, None),
                };
                PartitionLag {
                    topic,
                    partition,
                    committed: committed.offset,
                    metadata: committed.metadata,
                    high_watermark: info.map(|i| i.high_watermark),
                    lag,
                    lag_seconds: seconds,
                }
            })
            .collect()
    }

    fn lag_of(&self, topic: &str, partition: i32, committed: i64, hwm: i64, log_start: i64) -> (i64, f64) {
        let at = committed.max(log_start);
        let lag = (hwm - at).max(0);
        if lag == 0 {
            return (0, 0.0);
        }
        let timestamp = self
            .read_unmetered(topic, partition, at, PEEK_BYTES)
            .ok()
            .and_then(|read| rivulet_log::Records::new(read.records, at).next())
            .and_then(Result::ok)
            .map(|r| r.timestamp_ms);
        let seconds = timestamp.map_or(0.0, |ts| ((rivulet_log::now_ms() - ts).max(0) as f64) / 1000.0);
        (lag, seconds)
    }
}
