//! Read-only views for operators: the producers a partition remembers and the data
//! directory's space (Kafka DescribeProducers and DescribeLogDirs, the CLI, the HTTP API).

use std::path::PathBuf;

use rivulet_log::ProducerSnapshot;

use crate::error::Result;
use crate::Broker;

/// The data directory and the file system it lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirUsage {
    /// The data directory.
    pub path: PathBuf,
    /// Size of its file system; `None` when the storage cannot tell.
    pub total_bytes: Option<u64>,
    /// Bytes still usable there; `None` when the storage cannot tell.
    pub usable_bytes: Option<u64>,
    /// Bytes held by every topic's segments.
    pub topics_bytes: u64,
}

impl Broker {
    /// The producers one partition remembers (idempotent and transactional), by id, with
    /// their epoch, last sequence and open transaction.
    pub fn describe_producers(&self, topic: &str, partition: i32) -> Result<Vec<ProducerSnapshot>> {
        Ok(self.partition_log(topic, partition)?.producers())
    }

    /// The data directory's space. Blocking (statvfs).
    pub fn log_dir_usage(&self) -> LogDirUsage {
        let path = self.config().data_dir.clone();
        let storage = &self.inner.context.storage;
        LogDirUsage {
            total_bytes: storage.total_bytes(&path).ok(),
            usable_bytes: storage.available_bytes(&path).ok(),
            topics_bytes: self.topics().iter().map(|t| t.size_bytes()).sum(),
            path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Create;
    use crate::BrokerConfig;

    fn broker(dir: &std::path::Path) -> Broker {
        Broker::open(BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        })
        .expect("open")
    }

    #[test]
    fn producers_of_a_partition_and_unknown_partitions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path());
        b.create_topic("t", 1, 1, Default::default(), false)
            .expect("create");
        let records = rivulet_log::batch::build(
            0,
            1_000,
            Some((42, 3, 0)),
            &[rivulet_log::record::Record::new(None, Some(b"v".to_vec()))],
        );
        b.produce("t", 0, &records, Create::Never).expect("produce");
        let producers = b.describe_producers("t", 0).expect("describe");
        assert_eq!(producers.len(), 1);
        assert_eq!(
            (
                producers[0].producer_id,
                producers[0].producer_epoch,
                producers[0].last_sequence
            ),
            (42, 3, 0)
        );
        assert!(b.describe_producers("t", 1).is_err());
        assert!(b.describe_producers("nope", 0).is_err());
        let usage = b.log_dir_usage();
        assert!(usage.total_bytes.is_some_and(|t| t > 0));
        assert!(usage.topics_bytes > 0);
    }
}
