//! Dead letters: records a consumer kept failing on, parked in `<topic>.dlq` with headers
//! naming where they came from and why (the convention the services SDK writes), and their
//! redrive back to the original topic and partition. The HTTP gateway and the console call
//! this; the CLI and the SDK do the same over the Kafka protocol.

use std::collections::BTreeMap;

use rivulet_log::StoredRecord;

use crate::data::{Create, NewRecord};
use crate::error::{BrokerError, Result};
use crate::Broker;

/// Suffix of dead-letter topics.
pub const DLQ_SUFFIX: &str = ".dlq";
/// Header: the topic the record was read from.
pub const ORIGINAL_TOPIC: &str = "dlq.original.topic";
/// Header: its partition (decimal).
pub const ORIGINAL_PARTITION: &str = "dlq.original.partition";
/// Prefix of every dead-letter header; these are removed when a record is redriven.
pub const HEADER_PREFIX: &str = "dlq.";
/// Suffix of the consumer group that remembers how far a dead-letter topic was redriven.
pub const REDRIVE_GROUP_SUFFIX: &str = ".redrive";
/// Most records redriven by one call; call again for the rest.
pub const REDRIVE_RECORDS_MAX: usize = 10_000;
/// Bytes read from the dead-letter topic per read.
const READ_BYTES: usize = 1 << 20;

/// Which dead letters to redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    /// Those after the redrive group's committed offsets (each is redriven once), and the
    /// group's offsets advanced past them.
    Pending,
    /// These `(partition, offset)` records, whatever was redriven before. Where they are the
    /// oldest pending letters of a partition, the redrive group's offset moves past them.
    Records(Vec<(i32, i64)>),
}

/// A dead-letter topic's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterTopic {
    /// The dead-letter topic.
    pub topic: String,
    /// Records stored.
    pub records: i64,
    /// Records not redriven yet (after the redrive group's offsets).
    pub pending: i64,
    /// Per partition, the offset before which every letter was redriven.
    pub redriven_before: Vec<(i32, i64)>,
}

/// The redrive group of a dead-letter topic.
pub fn redrive_group(dlq: &str) -> String {
    format!("{dlq}{REDRIVE_GROUP_SUFFIX}")
}

fn header<'a>(r: &'a StoredRecord, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_ref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

impl Broker {
    /// Every dead-letter topic with its stored and not-yet-redriven records.
    pub fn dead_letter_topics(&self) -> Vec<DeadLetterTopic> {
        self.topics()
            .iter()
            .filter(|t| t.name().ends_with(DLQ_SUFFIX))
            .map(|t| {
                let group = redrive_group(t.name());
                let (mut records, mut pending) = (0, 0);
                let mut redriven_before = Vec::new();
                for p in t.partition_infos() {
                    records += p.high_watermark - p.log_start_offset;
                    let done = self
                        .committed_offset(&group, t.name(), p.partition)
                        .unwrap_or(p.log_start_offset)
                        .max(p.log_start_offset);
                    pending += (p.high_watermark - done).max(0);
                    redriven_before.push((p.partition, done));
                }
                DeadLetterTopic {
                    topic: t.name().to_string(),
                    records,
                    pending,
                    redriven_before,
                }
            })
            .collect()
    }

    /// Publishes dead letters of `dlq` back to their original topics and partitions (keys,
    /// values and other headers kept; `dlq.*` headers removed; a letter without an original
    /// topic goes to `dlq` without its suffix). `may_write` is asked for every target topic
    /// first; nothing is published unless all are allowed. Returns how many were redriven.
    pub async fn redrive_dead_letters(
        &self,
        dlq: &str,
        which: Redrive,
        may_write: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<usize> {
        let topic = self.existing_topic(dlq)?;
        let mut letters: Vec<StoredRecord> = Vec::new();
        let mut progress: Vec<(String, i32, i64)> = Vec::new();
        match &which {
            Redrive::Pending => {
                let group = redrive_group(dlq);
                for p in topic.partition_infos() {
                    let from = self
                        .committed_offset(&group, dlq, p.partition)
                        .unwrap_or(p.log_start_offset);
                    let next = self.read_span(dlq, p.partition, from, p.high_watermark, &mut letters)?;
                    progress.push((dlq.to_string(), p.partition, next));
                }
            }
            Redrive::Records(wanted) => {
                if wanted.len() > REDRIVE_RECORDS_MAX {
                    return Err(BrokerError::LimitReached(format!(
                        "{} records in one redrive; at most {REDRIVE_RECORDS_MAX}",
                        wanted.len()
                    )));
                }
                for &(partition, offset) in wanted {
                    letters.push(self.read_one(dlq, partition, offset)?);
                }
            }
        }
        let by_topic = self.targets(dlq, &letters);
        if let Some(refused) = by_topic.keys().find(|t| !may_write(t)) {
            return Err(BrokerError::NotAuthorized(format!("write to topic {refused:?}")));
        }
        for (target, records) in by_topic {
            self.append_records(&target, records, Create::Never)?
                .durable()
                .await?;
        }
        if let Redrive::Records(wanted) = &which {
            progress = self.redriven_prefixes(dlq, wanted)?;
        }
        if !progress.is_empty() {
            self.commit_offsets(&redrive_group(dlq), progress).await?;
        }
        Ok(letters.len())
    }

    /// For each partition of `wanted`, the redrive group's new offset when the records just
    /// redriven start at its current one: past the run of consecutive redriven letters.
    fn redriven_prefixes(&self, dlq: &str, wanted: &[(i32, i64)]) -> Result<Vec<(String, i32, i64)>> {
        let group = redrive_group(dlq);
        let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for &(p, o) in wanted {
            by_partition.entry(p).or_default().push(o);
        }
        let mut moves = Vec::new();
        for (partition, mut offsets) in by_partition {
            offsets.sort_unstable();
            offsets.dedup();
            let start = self
                .existing_topic(dlq)?
                .partition_info(partition)
                .map_or(0, |p| p.log_start_offset);
            let from = self
                .committed_offset(&group, dlq, partition)
                .unwrap_or(start)
                .max(start);
            let read = self.read_records(dlq, partition, from, READ_BYTES, offsets.len())?;
            let mut next = from;
            for r in &read.records {
                if offsets.binary_search(&r.offset).is_err() {
                    break;
                }
                next = r.offset + 1;
            }
            if next > from {
                moves.push((dlq.to_string(), partition, next));
            }
        }
        Ok(moves)
    }

    /// Reads `[from, end)` of a partition into `out` while it holds fewer than
    /// [`REDRIVE_RECORDS_MAX`] records; returns where the next read would continue.
    fn read_span(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        end: i64,
        out: &mut Vec<StoredRecord>,
    ) -> Result<i64> {
        let mut next = from;
        // Bounded: each pass takes records or moves `next` forward, and `out` is capped.
        while next < end && out.len() < REDRIVE_RECORDS_MAX {
            let left = REDRIVE_RECORDS_MAX - out.len();
            let read = self.read_records(topic, partition, next, READ_BYTES, left)?;
            let advanced = read.next_offset.max(read.log_start_offset);
            if advanced <= next {
                break;
            }
            out.extend(read.records.into_iter().filter(|r| r.offset < end));
            next = advanced;
        }
        Ok(next.min(end))
    }

    fn read_one(&self, topic: &str, partition: i32, offset: i64) -> Result<StoredRecord> {
        let read = self.read_records(topic, partition, offset, READ_BYTES, 1)?;
        read.records
            .into_iter()
            .find(|r| r.offset == offset)
            .ok_or_else(|| {
                BrokerError::InvalidRecord(format!("{topic}/{partition} has no record at offset {offset}"))
            })
    }

    /// The records to publish, by target topic.
    fn targets(&self, dlq: &str, letters: &[StoredRecord]) -> BTreeMap<String, Vec<NewRecord>> {
        let fallback = dlq.strip_suffix(DLQ_SUFFIX).unwrap_or(dlq);
        let mut by_topic: BTreeMap<String, Vec<NewRecord>> = BTreeMap::new();
        for r in letters {
            let original = header(r, ORIGINAL_TOPIC);
            let target = original.unwrap_or(fallback).to_string();
            let count = self.topic(&target).map_or(0, |t| t.partition_count());
            // Back to the partition it came from, so it lines up with its key's other
            // records whatever partitioner their producer used.
            let partition = original
                .and(header(r, ORIGINAL_PARTITION))
                .and_then(|p| p.parse::<i32>().ok())
                .filter(|p| usize::try_from(*p).is_ok_and(|p| p < count));
            let record = NewRecord {
                key: r.key.as_ref().map(|k| k.to_vec()),
                value: r.value.as_ref().map(|v| v.to_vec()),
                headers: r
                    .headers
                    .iter()
                    .filter(|(k, _)| !k.starts_with(HEADER_PREFIX))
                    .map(|(k, v)| (k.clone(), v.as_ref().map(|v| v.to_vec())))
                    .collect(),
                partition,
                timestamp_ms: None,
            };
            by_topic.entry(target).or_default().push(record);
        }
        by_topic
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BrokerConfig;

    fn broker(dir: &std::path::Path) -> Broker {
        Broker::open(BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        })
        .expect("open")
    }

    fn letter(key: &str, partition: &str) -> NewRecord {
        NewRecord {
            key: Some(key.as_bytes().to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![
                (ORIGINAL_TOPIC.into(), Some(b"orders".to_vec())),
                (ORIGINAL_PARTITION.into(), Some(partition.as_bytes().to_vec())),
                ("dlq.error".into(), Some(b"boom".to_vec())),
                ("trace".into(), Some(b"t1".to_vec())),
            ],
            partition: Some(0),
            timestamp_ms: None,
        }
    }

    fn keys_of(b: &Broker, topic: &str, partition: i32) -> Vec<String> {
        let read = b.read_records(topic, partition, 0, 1 << 20, 100).expect("read");
        read.records
            .iter()
            .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn letters_go_back_to_their_partition_once_and_selections_advance_the_oldest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path());
        b.create_topic("orders", 2, 1, Default::default(), false)
            .expect("create");
        b.create_topic("orders.dlq", 1, 1, Default::default(), false)
            .expect("create");
        let letters = vec![
            letter("a", "1"),
            letter("b", "1"),
            letter("c", "0"),
            letter("d", "9"),
        ];
        b.append_records("orders.dlq", letters, Create::Never)
            .expect("append")
            .durable()
            .await
            .expect("durable");
        let all = |_: &str| true;
        assert_eq!(b.dead_letter_topics()[0].pending, 4);
        // The oldest letter alone: published, and no longer pending.
        let n = b
            .redrive_dead_letters("orders.dlq", Redrive::Records(vec![(0, 0)]), &all)
            .await
            .expect("redrive");
        assert_eq!(n, 1);
        assert_eq!(keys_of(&b, "orders", 1), vec!["a"]);
        assert_eq!(b.dead_letter_topics()[0].pending, 3);
        assert_eq!(b.dead_letter_topics()[0].redriven_before, vec![(0, 1)]);
        // A later one alone: published, but the oldest pending stays pending.
        b.redrive_dead_letters("orders.dlq", Redrive::Records(vec![(0, 2)]), &all)
            .await
            .expect("redrive");
        assert_eq!(keys_of(&b, "orders", 0), vec!["c"]);
        assert_eq!(b.dead_letter_topics()[0].pending, 3);
        // Every pending one: b, c again, and d (whose partition 9 does not exist: by key).
        let n = b
            .redrive_dead_letters("orders.dlq", Redrive::Pending, &all)
            .await
            .expect("redrive");
        assert_eq!(n, 3);
        assert_eq!(b.dead_letter_topics()[0].pending, 0);
        let mut everything = keys_of(&b, "orders", 0);
        everything.extend(keys_of(&b, "orders", 1));
        everything.sort();
        assert_eq!(everything, vec!["a", "b", "c", "c", "d"]);
        // Dead-letter headers are removed, others kept.
        let read = b.read_records("orders", 1, 0, 1 << 20, 1).expect("read");
        let names: Vec<&str> = read.records[0].headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["trace"]);
        // Nothing left: a second pending redrive publishes nothing.
        let again = b
            .redrive_dead_letters("orders.dlq", Redrive::Pending, &all)
            .await
            .expect("redrive");
        assert_eq!(again, 0);
    }

    #[tokio::test]
    async fn a_refused_target_publishes_nothing_and_unknown_records_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path());
        b.create_topic("orders", 1, 1, Default::default(), false)
            .expect("create");
        b.create_topic("orders.dlq", 1, 1, Default::default(), false)
            .expect("create");
        b.append_records("orders.dlq", vec![letter("a", "0")], Create::Never)
            .expect("append")
            .durable()
            .await
            .expect("durable");
        let none = |_: &str| false;
        let refused = b
            .redrive_dead_letters("orders.dlq", Redrive::Pending, &none)
            .await;
        assert!(matches!(refused, Err(BrokerError::NotAuthorized(_))));
        assert!(keys_of(&b, "orders", 0).is_empty());
        assert_eq!(b.dead_letter_topics()[0].pending, 1);
        let all = |_: &str| true;
        let missing = b
            .redrive_dead_letters("orders.dlq", Redrive::Records(vec![(0, 7)]), &all)
            .await;
        assert!(missing.is_err());
        assert!(b
            .redrive_dead_letters("nope.dlq", Redrive::Pending, &all)
            .await
            .is_err());
    }
}
