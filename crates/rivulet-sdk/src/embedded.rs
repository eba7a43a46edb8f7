//! The embedded transport: a [`Broker`] in this process, no network.
//!
//! Everything goes through the broker's own calls, as the Kafka and HTTP front ends do:
//! publishing is [`Broker::append_records`] (the broker partitions, batches and syncs),
//! reading is [`Broker::read_records`] woken by [`Broker::watch`], and membership is a
//! broker-assigned group ([`Broker::join_local_group`]): members of one group in this
//! process split the partitions, a member starts reading a partition only once its previous
//! holder committed and released it, and `rivulet group describe` shows them. The broker
//! runs its own maintenance (retention, compaction) from the moment it is opened.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use rivulet_broker::txn::{LocalTxn, LocalTxnProducer};
use rivulet_broker::{
    Broker, BrokerError, Create, LocalClient, LocalMember, LogError, NewRecord, StoredRecord,
};

use crate::error::{Result, SdkError};
use crate::progress::Progress;
use crate::transport::{
    Delivery, GroupMember, InRecord, MemberSettings, OutRecord, Polled, ReadBatch, TopicPartition, TopicSpec,
    Transport, TxnProducer,
};

/// Bytes read from one partition per read.
const READ_BYTES_MAX: usize = 256 * 1024;
/// How soon a member looks again for a partition its previous holder still holds.
const CLAIM_RETRY: Duration = Duration::from_millis(10);

/// A transport over a broker in this process.
#[derive(Debug, Clone)]
pub struct EmbeddedTransport {
    broker: Broker,
}

impl EmbeddedTransport {
    /// A transport over an open broker.
    pub fn new(broker: Broker) -> EmbeddedTransport {
        EmbeddedTransport { broker }
    }

    /// The broker.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    async fn publish_inner(&self, topic: &str, records: Vec<OutRecord>) -> Result<Vec<Delivery>> {
        let records = records.into_iter().map(new_record).collect();
        let appended = self.broker.append_records(topic, records, Create::IfAllowed)?;
        let positions = appended.durable().await?;
        Ok(positions
            .into_iter()
            .map(|p| Delivery {
                partition: p.partition,
                offset: p.offset,
            })
            .collect())
    }

    /// Records of one partition in `[from, end)`, at most `records_max`, and the position
    /// after them.
    fn read_partition(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        end: i64,
        records_max: usize,
    ) -> Result<(Vec<InRecord>, i64)> {
        let mut pos = from;
        let mut out = Vec::new();
        // Each pass moves `pos` forward or stops.
        while pos < end && out.len() < records_max {
            let read =
                match self
                    .broker
                    .read_records(topic, partition, pos, READ_BYTES_MAX, records_max - out.len())
                {
                    Ok(r) => r,
                    Err(BrokerError::Log(LogError::OffsetOutOfRange { log_start_offset, .. }))
                        if pos < log_start_offset =>
                    {
                        pos = log_start_offset;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
            let before = pos;
            let mut reached_end = false;
            for r in &read.records {
                if r.offset >= end {
                    reached_end = true;
                    break;
                }
                out.push(in_record(topic, partition, r));
            }
            pos = if reached_end {
                end
            } else {
                read.next_offset.min(end)
            };
            if pos <= before {
                break;
            }
        }
        Ok((out, pos))
    }
}

fn in_record(topic: &str, partition: i32, r: &StoredRecord) -> InRecord {
    InRecord {
        topic: topic.to_string(),
        partition,
        offset: r.offset,
        timestamp_ms: r.timestamp_ms,
        key: r.key.as_ref().map(|b| b.to_vec()),
        value: r.value.as_ref().map(|b| b.to_vec()),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|b| b.to_vec())))
            .collect(),
    }
}

impl Transport for EmbeddedTransport {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        records: Vec<OutRecord>,
    ) -> BoxFuture<'a, Result<Vec<Delivery>>> {
        self.publish_inner(topic, records).boxed()
    }

    fn ensure_topic<'a>(&'a self, topic: &'a str, spec: TopicSpec) -> BoxFuture<'a, Result<()>> {
        async move {
            if self.broker.topic(topic).is_some() {
                return Ok(());
            }
            match self
                .broker
                .create_topic(topic, spec.partitions, -1, spec.configs, false)
            {
                Ok(_) | Err(BrokerError::TopicExists(_)) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        .boxed()
    }

    fn partition_count<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<i32>> {
        async move {
            let t = self
                .broker
                .topic(topic)
                .ok_or_else(|| SdkError::UnknownTopic(topic.to_string()))?;
            Ok(t.partition_count() as i32)
        }
        .boxed()
    }

    fn read_to_end<'a>(
        &'a self,
        topic: &'a str,
        from: BTreeMap<i32, i64>,
        records_max: usize,
    ) -> BoxFuture<'a, Result<ReadBatch>> {
        async move {
            let t = self
                .broker
                .topic(topic)
                .ok_or_else(|| SdkError::UnknownTopic(topic.to_string()))?;
            let mut out = Vec::new();
            let mut next = BTreeMap::new();
            for info in t.partition_infos() {
                let p = info.partition;
                let start = from.get(&p).copied().unwrap_or(info.log_start_offset);
                let budget = records_max.saturating_sub(out.len());
                let (recs, pos) = self.read_partition(topic, p, start, info.high_watermark, budget)?;
                out.extend(recs);
                next.insert(p, pos);
            }
            Ok((out, next))
        }
        .boxed()
    }

    fn offset_ranges<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<BTreeMap<i32, (i64, i64)>>> {
        async move {
            let t = self
                .broker
                .topic(topic)
                .ok_or_else(|| SdkError::UnknownTopic(topic.to_string()))?;
            Ok(t.partition_infos()
                .into_iter()
                .map(|i| (i.partition, (i.log_start_offset, i.high_watermark)))
                .collect())
        }
        .boxed()
    }

    fn committed<'a>(&'a self, group: &'a str, topic: &'a str) -> BoxFuture<'a, Result<BTreeMap<i32, i64>>> {
        async move {
            let t = self
                .broker
                .topic(topic)
                .ok_or_else(|| SdkError::UnknownTopic(topic.to_string()))?;
            Ok((0..t.partition_count() as i32)
                .filter_map(|p| self.broker.committed_offset(group, topic, p).map(|o| (p, o)))
                .collect())
        }
        .boxed()
    }

    fn commit_standalone<'a>(
        &'a self,
        group: &'a str,
        offsets: Vec<(TopicPartition, i64)>,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            let entries = offsets
                .into_iter()
                .map(|(tp, o)| (tp.topic, tp.partition, o))
                .collect();
            self.broker.commit_offsets(group, entries).await?;
            Ok(())
        }
        .boxed()
    }

    fn join<'a>(
        &'a self,
        group: &'a str,
        topics: Vec<String>,
        progress: Arc<Progress>,
        settings: MemberSettings,
    ) -> BoxFuture<'a, Result<Box<dyn GroupMember>>> {
        async move {
            for name in &topics {
                self.broker.topic_for(name, Create::IfAllowed)?;
            }
            let client = LocalClient {
                client_id: "embedded-sdk".to_string(),
                client_host: "embedded".to_string(),
            };
            let member = self.broker.join_local_group(group, &topics, client)?;
            let m: Box<dyn GroupMember> = Box::new(EmbeddedMember {
                group: group.to_string(),
                transport: self.clone(),
                member: Some(member),
                first: true,
                cursors: BTreeMap::new(),
                pending: BTreeSet::new(),
                progress,
                settings,
            });
            Ok(m)
        }
        .boxed()
    }

    fn transactional<'a>(&'a self, transactional_id: &'a str) -> BoxFuture<'a, Result<Box<dyn TxnProducer>>> {
        async move {
            let producer = self
                .broker
                .local_txn_producer(transactional_id, TXN_TIMEOUT_MS)
                .await?;
            let p: Box<dyn TxnProducer> = Box::new(EmbeddedTxnProducer {
                broker: self.broker.clone(),
                producer,
            });
            Ok(p)
        }
        .boxed()
    }
}

/// `transaction.timeout.ms` of the SDK's transactional producers.
const TXN_TIMEOUT_MS: i32 = 60_000;

/// A transactional producer of the broker in this process.
struct EmbeddedTxnProducer {
    broker: Broker,
    producer: LocalTxnProducer,
}

impl TxnProducer for EmbeddedTxnProducer {
    fn commit<'a>(
        &'a mut self,
        member: &'a mut dyn GroupMember,
        outputs: Vec<(String, Vec<OutRecord>)>,
        offsets: Vec<(TopicPartition, i64)>,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            let txn = LocalTxn {
                outputs: outputs
                    .into_iter()
                    .map(|(topic, records)| (topic, records.into_iter().map(new_record).collect()))
                    .collect(),
                group: Some(member.group().to_string()),
                offsets: offsets
                    .into_iter()
                    .map(|(tp, offset)| (tp.topic, tp.partition, offset))
                    .collect(),
            };
            self.broker.run_local_txn(&self.producer, txn).await?;
            Ok(())
        }
        .boxed()
    }
}

fn new_record(r: OutRecord) -> NewRecord {
    NewRecord {
        key: r.key,
        value: r.value,
        headers: r.headers.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        partition: r.partition,
        timestamp_ms: None,
    }
}

#[derive(Debug)]
struct Cursor {
    position: i64,
    paused: bool,
}

struct EmbeddedMember {
    group: String,
    transport: EmbeddedTransport,
    /// `None` once closed.
    member: Option<LocalMember>,
    first: bool,
    cursors: BTreeMap<TopicPartition, Cursor>,
    /// Partitions assigned by the latest rebalance that another member still holds.
    pending: BTreeSet<TopicPartition>,
    progress: Arc<Progress>,
    settings: MemberSettings,
}

impl EmbeddedMember {
    fn member(&self) -> Result<&LocalMember> {
        self.member.as_ref().ok_or(SdkError::Closed)
    }

    fn broker(&self) -> &Broker {
        &self.transport.broker
    }

    async fn rebalance(&mut self) -> Result<Vec<Polled>> {
        let member = self.member.as_mut().ok_or(SdkError::Closed)?;
        let wanted: BTreeSet<TopicPartition> = member
            .assignment()
            .into_iter()
            .map(|(t, p)| TopicPartition::new(t, p))
            .collect();
        let lost: Vec<TopicPartition> = self
            .cursors
            .keys()
            .filter(|tp| !wanted.contains(*tp))
            .cloned()
            .collect();
        let gained: BTreeSet<TopicPartition> = wanted
            .into_iter()
            .filter(|tp| !self.cursors.contains_key(tp))
            .collect();
        let mut out = Vec::new();
        if !lost.is_empty() {
            if !self
                .progress
                .wait_idle(Some(&lost), self.settings.revoke_wait)
                .await
            {
                tracing::warn!(group = %self.member()?.group(), "Events still in flight when partitions were revoked; they will be redelivered");
            }
            let points: Vec<_> = lost
                .iter()
                .filter_map(|tp| self.progress.revoke(tp).map(|o| (tp.clone(), o)))
                .collect();
            self.commit_entries(points).await?;
            let member = self.member()?;
            for tp in &lost {
                member.release(&tp.topic, tp.partition);
            }
            for tp in &lost {
                self.cursors.remove(tp);
            }
            out.push(Polled::Revoked(lost));
        }
        self.pending = gained;
        out.extend(self.claim_pending()?);
        Ok(out)
    }

    /// Starts consuming the pending partitions that their previous holders released.
    fn claim_pending(&mut self) -> Result<Option<Polled>> {
        let member = self.member()?;
        let claimed: Vec<TopicPartition> = self
            .pending
            .iter()
            .filter(|tp| member.claim(&tp.topic, tp.partition))
            .cloned()
            .collect();
        if claimed.is_empty() {
            return Ok(None);
        }
        let group = member.group().to_string();
        for tp in &claimed {
            self.pending.remove(tp);
            let committed = self.broker().committed_offset(&group, &tp.topic, tp.partition);
            let log_start = self
                .broker()
                .topic(&tp.topic)
                .and_then(|t| t.partition_info(tp.partition))
                .map_or(0, |i| i.log_start_offset);
            self.progress.assign(tp, committed);
            let cursor = Cursor {
                position: committed.unwrap_or(log_start),
                paused: false,
            };
            self.cursors.insert(tp.clone(), cursor);
        }
        Ok(Some(Polled::Assigned(claimed)))
    }

    async fn commit_entries(&self, points: Vec<(TopicPartition, i64)>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let entries = points
            .into_iter()
            .map(|(tp, o)| (tp.topic, tp.partition, o))
            .collect();
        self.member()?.commit(entries).await?;
        Ok(())
    }

    fn read_available(&mut self) -> Result<Vec<Polled>> {
        let mut out = Vec::new();
        let budget = self.settings.poll_records_max.max(1);
        let keys: Vec<TopicPartition> = self.cursors.keys().cloned().collect();
        for tp in keys {
            if out.len() >= budget {
                break;
            }
            let Some(c) = self.cursors.get(&tp) else { continue };
            if c.paused {
                continue;
            }
            let position = c.position;
            let end = self
                .broker()
                .topic(&tp.topic)
                .and_then(|t| t.partition_info(tp.partition))
                .map_or(position, |i| i.high_watermark);
            if position >= end {
                continue;
            }
            let (recs, next) =
                self.transport
                    .read_partition(&tp.topic, tp.partition, position, end, budget - out.len())?;
            if let Some(c) = self.cursors.get_mut(&tp) {
                c.position = next;
            }
            out.extend(recs.into_iter().map(Polled::Record));
        }
        Ok(out)
    }

    async fn poll_inner(&mut self, max_wait: Duration) -> Result<Vec<Polled>> {
        let changed = self.member()?.assignment_changed();
        if self.first || changed {
            self.first = false;
            let events = self.rebalance().await?;
            if !events.is_empty() {
                return Ok(events);
            }
        }
        if !self.pending.is_empty() {
            if let Some(assigned) = self.claim_pending()? {
                return Ok(vec![assigned]);
            }
        }
        // Watching starts before the read, so an append in between is not missed.
        let watched: Vec<TopicPartition> = self
            .cursors
            .iter()
            .filter(|(_, c)| !c.paused)
            .map(|(tp, _)| tp.clone())
            .collect();
        let mut watch = self
            .broker()
            .watch(watched.iter().map(|tp| (tp.topic.as_str(), tp.partition)));
        let out = self.read_available()?;
        if !out.is_empty() {
            return Ok(out);
        }
        // While partitions wait for their previous holder, look again soon.
        let wait = if self.pending.is_empty() {
            max_wait
        } else {
            max_wait.min(CLAIM_RETRY)
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.member()?.changes();
        tokio::select! {
            _ = watch.wait(deadline) => {}
            _ = changes.changed() => {}
        }
        if self.member()?.assignment_changed() {
            return self.rebalance().await;
        }
        self.read_available()
    }
}

impl GroupMember for EmbeddedMember {
    fn poll(&mut self, max_wait: Duration) -> BoxFuture<'_, Result<Vec<Polled>>> {
        self.poll_inner(max_wait).boxed()
    }

    fn commit(&mut self, offsets: Vec<(TopicPartition, i64)>) -> BoxFuture<'_, Result<()>> {
        async move {
            let owned: Vec<_> = offsets
                .into_iter()
                .filter(|(tp, _)| self.cursors.contains_key(tp))
                .collect();
            self.commit_entries(owned).await
        }
        .boxed()
    }

    fn pause(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        if let Some(c) = self.cursors.get_mut(tp) {
            c.paused = true;
            c.position = offset;
        }
        Ok(())
    }

    fn resume(&mut self, tp: &TopicPartition) -> Result<()> {
        if let Some(c) = self.cursors.get_mut(tp) {
            c.paused = false;
        }
        Ok(())
    }

    fn close(&mut self, offsets: Vec<(TopicPartition, i64)>) -> BoxFuture<'_, Result<()>> {
        async move {
            let result = match self.member {
                Some(_) => self.commit(offsets).await,
                None => Ok(()),
            };
            // Leaves the group; the other members take over.
            self.member = None;
            result
        }
        .boxed()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn group(&self) -> &str {
        &self.group
    }
}
