//! The embedded transport: a [`Broker`] in this process, no network.
//!
//! Publishing builds an uncompressed RecordBatch and appends it durably to the partition's
//! log. Group members read partitions with [`rivulet_log::Log::read`], wait for new data on
//! the log's high-watermark channel and commit through the broker's offset store. Members of
//! one group in this process split the partitions between them (partition `i` of the sorted
//! list goes to member `i % members`); a member joining or leaving rebalances the others,
//! each of which waits for its events in flight and commits before giving a partition up,
//! and a member starts reading a partition only once its previous holder let it go.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use rivulet_broker::{Broker, BrokerError, CommittedOffset, Topic};
use rivulet_log::record::Record;
use rivulet_log::LogError;
use tokio::sync::watch;

use crate::error::{Result, SdkError};
use crate::progress::Progress;
use crate::transport::{
    partition_for_key, Delivery, GroupMember, InRecord, MemberSettings, OutRecord, Polled, ReadBatch,
    TopicPartition, TopicSpec, Transport,
};

/// Records per RecordBatch when publishing.
const BATCH_RECORDS_MAX: usize = 500;
/// Bytes read from one partition per poll.
const READ_BYTES_MAX: usize = 256 * 1024;

/// A transport over a broker in this process.
#[derive(Debug, Clone)]
pub struct EmbeddedTransport {
    broker: Broker,
    groups: Arc<Groups>,
    round_robin: Arc<AtomicUsize>,
}

#[derive(Debug, Default)]
struct Groups {
    next_member: AtomicU64,
    map: Mutex<HashMap<String, GroupShared>>,
}

#[derive(Debug)]
struct GroupShared {
    members: BTreeSet<u64>,
    generation: watch::Sender<u64>,
    /// Which member holds each partition. A member gains a partition only once the previous
    /// holder committed and released it.
    owners: HashMap<TopicPartition, u64>,
}

impl Groups {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, GroupShared>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn join(&self, group: &str) -> (u64, watch::Receiver<u64>) {
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        let mut map = self.lock();
        let shared = map.entry(group.to_string()).or_insert_with(|| GroupShared {
            members: BTreeSet::new(),
            generation: watch::channel(0).0,
            owners: HashMap::new(),
        });
        shared.members.insert(id);
        shared.generation.send_modify(|g| *g += 1);
        (id, shared.generation.subscribe())
    }

    fn leave(&self, group: &str, member: u64) {
        let mut map = self.lock();
        if let Some(shared) = map.get_mut(group) {
            shared.members.remove(&member);
            shared.owners.retain(|_, m| *m != member);
            shared.generation.send_modify(|g| *g += 1);
            if shared.members.is_empty() {
                map.remove(group);
            }
        }
    }

    /// Takes a partition for `member` if no other member holds it.
    fn claim(&self, group: &str, member: u64, tp: &TopicPartition) -> bool {
        let mut map = self.lock();
        let Some(shared) = map.get_mut(group) else {
            return false;
        };
        let owner = shared.owners.entry(tp.clone()).or_insert(member);
        *owner == member
    }

    /// Gives a partition up.
    fn release(&self, group: &str, member: u64, tp: &TopicPartition) {
        let mut map = self.lock();
        if let Some(shared) = map.get_mut(group) {
            if shared.owners.get(tp) == Some(&member) {
                shared.owners.remove(tp);
            }
        }
    }

    /// The member's rank and the member count.
    fn rank(&self, group: &str, member: u64) -> Option<(usize, usize)> {
        let map = self.lock();
        let shared = map.get(group)?;
        let rank = shared.members.iter().position(|m| *m == member)?;
        Some((rank, shared.members.len()))
    }
}

impl EmbeddedTransport {
    /// A transport over an open broker.
    pub fn new(broker: Broker) -> EmbeddedTransport {
        EmbeddedTransport {
            broker,
            groups: Arc::new(Groups::default()),
            round_robin: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The broker.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Runs the broker's log maintenance (retention, compaction, segment rolls, interval
    /// fsyncs) every `interval` on a blocking thread, until the returned task is aborted.
    /// A `rivulet serve` process does this itself; an application embedding the broker
    /// should start it once.
    pub fn maintain_every(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let broker = self.broker.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let b = broker.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || b.maintain(rivulet_log::now_ms())).await {
                    tracing::error!(error = %e, "Log maintenance task failed");
                }
            }
        })
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.broker
            .topic(name)
            .ok_or_else(|| SdkError::UnknownTopic(name.to_string()))
    }

    async fn publish_inner(&self, topic: &str, records: Vec<OutRecord>) -> Result<Vec<Delivery>> {
        let t = self.broker.get_or_create_topic(topic, true)?;
        let partitions = t.partition_count() as i32;
        let mut by_partition: BTreeMap<i32, Vec<(usize, Record)>> = BTreeMap::new();
        for (index, r) in records.into_iter().enumerate() {
            let partition = match (r.partition, &r.key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, partitions),
                (None, None) => {
                    (self.round_robin.fetch_add(1, Ordering::Relaxed) % partitions as usize) as i32
                }
            };
            if partition < 0 || partition >= partitions {
                return Err(SdkError::Config(format!(
                    "partition {partition} of topic {topic:?} does not exist ({partitions} partitions)"
                )));
            }
            let mut rec = Record::new(r.key, r.value);
            rec.headers = r.headers.into_iter().map(|(k, v)| (k, Some(v))).collect();
            by_partition.entry(partition).or_default().push((index, rec));
        }
        let mut out = Vec::new();
        for (partition, recs) in by_partition {
            let log = t
                .partition(partition)
                .ok_or_else(|| SdkError::UnknownTopic(format!("{topic}[{partition}]")))?;
            for chunk in recs.chunks(BATCH_RECORDS_MAX) {
                let plain: Vec<Record> = chunk.iter().map(|(_, r)| r.clone()).collect();
                let batch = rivulet_log::batch::build(0, rivulet_log::now_ms(), None, &plain);
                let at = log.append_durable(&batch).await?;
                for (i, (index, _)) in chunk.iter().enumerate() {
                    out.push((
                        *index,
                        Delivery {
                            partition,
                            offset: at.base_offset + i as i64,
                        },
                    ));
                }
            }
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, d)| d).collect())
    }

    fn read_partition(
        &self,
        topic: &Topic,
        partition: i32,
        from: i64,
        end: i64,
        records_max: usize,
    ) -> Result<(Vec<InRecord>, i64)> {
        let log = topic
            .partition(partition)
            .ok_or_else(|| SdkError::UnknownTopic(format!("{}[{partition}]", topic.name())))?;
        let mut pos = from.max(log.log_start_offset());
        let mut out = Vec::new();
        // Each pass reads at least one batch and moves `pos` forward.
        while pos < end && out.len() < records_max {
            let read = match log.read(pos, READ_BYTES_MAX) {
                Ok(r) => r,
                Err(LogError::OffsetOutOfRange { log_start_offset, .. }) if pos < log_start_offset => {
                    pos = log_start_offset;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if read.records.is_empty() {
                break;
            }
            let before = pos;
            let mut rest = read.records;
            let mut full = false;
            // One stored batch at a time, so `pos` can move past a whole batch (control
            // records, compacted gaps) but never past a record that was not returned.
            while rest.len() >= rivulet_log::batch::HEADER_BYTES && !full {
                let header = rivulet_log::batch::BatchHeader::parse(&rest)
                    .map_err(|e| SdkError::Corrupt(format!("{}[{partition}]: {e}", topic.name())))?;
                let size = header.total_bytes().min(rest.len());
                let one = rest.split_to(size);
                for r in decode(topic.name(), partition, one)? {
                    if r.offset < pos {
                        continue;
                    }
                    if r.offset >= end || out.len() >= records_max {
                        full = true;
                        break;
                    }
                    pos = r.offset + 1;
                    out.push(r);
                }
                if !full {
                    pos = pos.max(header.next_offset().min(end));
                }
            }
            if pos == before {
                break;
            }
        }
        Ok((out, pos))
    }
}

/// Decodes stored batches, dropping control records.
pub(crate) fn decode(topic: &str, partition: i32, mut bytes: Bytes) -> Result<Vec<InRecord>> {
    let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
        .map_err(|e| SdkError::Corrupt(format!("{topic}[{partition}]: {e}")))?;
    let mut out = Vec::new();
    for set in sets {
        for r in set.records {
            if r.control {
                continue;
            }
            out.push(InRecord {
                topic: topic.to_string(),
                partition,
                offset: r.offset,
                timestamp_ms: r.timestamp,
                key: r.key.map(|b| b.to_vec()),
                value: r.value.map(|b| b.to_vec()),
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.map(|b| b.to_vec())))
                    .collect(),
            });
        }
    }
    Ok(out)
}

fn committed_offset(offset: i64) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp_ms: rivulet_log::now_ms(),
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

    fn read_to_end<'a>(
        &'a self,
        topic: &'a str,
        from: BTreeMap<i32, i64>,
        records_max: usize,
    ) -> BoxFuture<'a, Result<ReadBatch>> {
        async move {
            let t = self.topic(topic)?;
            let mut out = Vec::new();
            let mut next = BTreeMap::new();
            for p in 0..t.partition_count() as i32 {
                let Some(log) = t.partition(p) else { continue };
                let start = from.get(&p).copied().unwrap_or_else(|| log.log_start_offset());
                let end = log.high_watermark();
                let (recs, pos) =
                    self.read_partition(&t, p, start, end, records_max.saturating_sub(out.len()))?;
                out.extend(recs);
                next.insert(p, pos);
            }
            Ok((out, next))
        }
        .boxed()
    }

    fn committed<'a>(&'a self, group: &'a str, topic: &'a str) -> BoxFuture<'a, Result<BTreeMap<i32, i64>>> {
        async move {
            let t = self.topic(topic)?;
            let offsets = self.broker.groups().offsets();
            Ok((0..t.partition_count() as i32)
                .filter_map(|p| offsets.fetch(group, topic, p).map(|c| (p, c.offset)))
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
                .map(|(tp, o)| (tp.topic, tp.partition, committed_offset(o)))
                .collect();
            self.broker.groups().commit(group, entries).await?;
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
            let mut resolved = Vec::new();
            for name in &topics {
                resolved.push(self.broker.get_or_create_topic(name, true)?);
            }
            let (member, generation) = self.groups.join(group);
            let m: Box<dyn GroupMember> = Box::new(EmbeddedMember {
                transport: self.clone(),
                group: group.to_string(),
                member,
                topics: resolved,
                generation,
                seen_generation: 0,
                first: true,
                cursors: BTreeMap::new(),
                pending: BTreeSet::new(),
                progress,
                settings,
                closed: false,
            });
            Ok(m)
        }
        .boxed()
    }
}

#[derive(Debug)]
struct Cursor {
    topic: Arc<Topic>,
    position: i64,
    paused: bool,
    watermark: watch::Receiver<i64>,
}

struct EmbeddedMember {
    transport: EmbeddedTransport,
    group: String,
    member: u64,
    topics: Vec<Arc<Topic>>,
    generation: watch::Receiver<u64>,
    seen_generation: u64,
    first: bool,
    cursors: BTreeMap<TopicPartition, Cursor>,
    /// Partitions assigned by the latest rebalance that another member still holds.
    pending: BTreeSet<TopicPartition>,
    progress: Arc<Progress>,
    settings: MemberSettings,
    closed: bool,
}

impl EmbeddedMember {
    fn generation_changed(&self) -> bool {
        *self.generation.borrow() != self.seen_generation
    }

    async fn rebalance(&mut self) -> Result<Vec<Polled>> {
        self.seen_generation = *self.generation.borrow_and_update();
        let mut wanted = BTreeSet::new();
        if let Some((rank, members)) = self.transport.groups.rank(&self.group, self.member) {
            let mut all = Vec::new();
            for t in &self.topics {
                for p in 0..t.partition_count() as i32 {
                    all.push(TopicPartition::new(t.name(), p));
                }
            }
            all.sort();
            wanted = all
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % members == rank)
                .map(|(_, tp)| tp)
                .collect();
        }
        let lost: Vec<TopicPartition> = self
            .cursors
            .keys()
            .filter(|tp| !wanted.contains(*tp))
            .cloned()
            .collect();
        let gained: Vec<TopicPartition> = wanted
            .iter()
            .filter(|tp| !self.cursors.contains_key(*tp))
            .cloned()
            .collect();
        let mut out = Vec::new();
        if !lost.is_empty() {
            if !self
                .progress
                .wait_idle(Some(&lost), self.settings.revoke_wait)
                .await
            {
                tracing::warn!(group = %self.group, "Events still in flight when partitions were revoked; they will be redelivered");
            }
            let points: Vec<_> = lost
                .iter()
                .filter_map(|tp| self.progress.revoke(tp).map(|o| (tp.clone(), o)))
                .collect();
            self.commit_entries(points).await?;
            for tp in &lost {
                self.cursors.remove(tp);
                self.transport.groups.release(&self.group, self.member, tp);
            }
            out.push(Polled::Revoked(lost));
        }
        self.pending = gained.into_iter().collect();
        out.extend(self.claim_pending());
        Ok(out)
    }

    /// Starts consuming the pending partitions that their previous holders released.
    fn claim_pending(&mut self) -> Option<Polled> {
        let claimed: Vec<TopicPartition> = self
            .pending
            .iter()
            .filter(|tp| self.transport.groups.claim(&self.group, self.member, tp))
            .cloned()
            .collect();
        if claimed.is_empty() {
            return None;
        }
        let offsets = self.transport.broker.groups().offsets();
        for tp in &claimed {
            self.pending.remove(tp);
            let Some(topic) = self.topics.iter().find(|t| t.name() == tp.topic).cloned() else {
                continue;
            };
            let Some(log) = topic.partition(tp.partition) else {
                continue;
            };
            let committed = offsets
                .fetch(&self.group, &tp.topic, tp.partition)
                .map(|c| c.offset);
            let position = committed.unwrap_or_else(|| log.log_start_offset());
            let watermark = log.subscribe();
            self.progress.assign(tp, committed);
            self.cursors.insert(
                tp.clone(),
                Cursor {
                    topic,
                    position,
                    paused: false,
                    watermark,
                },
            );
        }
        Some(Polled::Assigned(claimed))
    }

    async fn commit_entries(&self, points: Vec<(TopicPartition, i64)>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let entries = points
            .into_iter()
            .map(|(tp, o)| (tp.topic, tp.partition, committed_offset(o)))
            .collect();
        self.transport
            .broker
            .groups()
            .commit(&self.group, entries)
            .await?;
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
            let Some(c) = self.cursors.get_mut(&tp) else {
                continue;
            };
            if c.paused {
                continue;
            }
            c.watermark.borrow_and_update();
            let Some(log) = c.topic.partition(tp.partition) else {
                continue;
            };
            let end = log.high_watermark();
            if c.position >= end {
                continue;
            }
            let topic = c.topic.clone();
            let (recs, next) =
                self.transport
                    .read_partition(&topic, tp.partition, c.position, end, budget - out.len())?;
            c.position = next;
            out.extend(recs.into_iter().map(Polled::Record));
        }
        Ok(out)
    }

    async fn poll_inner(&mut self, max_wait: Duration) -> Result<Vec<Polled>> {
        if self.closed {
            return Err(SdkError::Closed);
        }
        if self.first || self.generation_changed() {
            self.first = false;
            let events = self.rebalance().await?;
            if !events.is_empty() {
                return Ok(events);
            }
        }
        if !self.pending.is_empty() {
            if let Some(assigned) = self.claim_pending() {
                return Ok(vec![assigned]);
            }
        }
        let out = self.read_available()?;
        if !out.is_empty() {
            return Ok(out);
        }
        {
            // While partitions wait for their previous holder, look again soon.
            let wait = if self.pending.is_empty() {
                max_wait
            } else {
                max_wait.min(Duration::from_millis(10))
            };
            let mut waits: Vec<BoxFuture<'_, ()>> = Vec::new();
            waits.push(Box::pin(tokio::time::sleep(wait)));
            waits.push(Box::pin(async {
                let _ = self.generation.changed().await;
            }));
            for c in self.cursors.values_mut() {
                if !c.paused {
                    waits.push(Box::pin(async {
                        let _ = c.watermark.changed().await;
                    }));
                }
            }
            futures_util::future::select_all(waits).await;
        }
        if self.generation_changed() {
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
            let result = self.commit(offsets).await;
            if !self.closed {
                self.closed = true;
                self.transport.groups.leave(&self.group, self.member);
            }
            result
        }
        .boxed()
    }
}

impl Drop for EmbeddedMember {
    fn drop(&mut self) {
        if !self.closed {
            self.transport.groups.leave(&self.group, self.member);
        }
    }
}
