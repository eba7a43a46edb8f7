//! ShareFetch and ShareAcknowledge (KIP-932): acknowledgements are settled in the broker
//! core first, then records are acquired for the member and sent as whole stored batches
//! with the offset ranges it holds. An acquired record that does not fit in the answer is
//! given back uncounted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::*;
use rivulet_broker::groups::LogBounds;
use rivulet_broker::settle::{AcquiredRange, Settle};
use rivulet_broker::Durable;
use uuid::Uuid;

use super::codes::group_error_code;
use super::share_sessions::{Step, Tp};
use super::{str_bytes, ClientInfo, Handler};
use crate::errors as ec;

/// Records acquired per ShareFetch when the client names no limit.
const RECORDS_DEFAULT: usize = 500;
/// Records acquired per ShareFetch at most.
const RECORDS_MAX: usize = 10_000;

/// The outcome for one partition: acknowledgement result, records and acquired ranges.
#[derive(Debug, Default)]
struct PartitionOut {
    error: i16,
    ack_error: Option<i16>,
    records: Bytes,
    acquired: Vec<AcquiredRange>,
}

/// An acknowledgement batch: `(first, last, types)`.
type AckBatch = (i64, i64, Vec<i8>);

/// What one acquisition pass found, per partition, and the start offsets it must store
/// before answering.
type Acquisition = (Vec<(Tp, PartitionOut)>, Vec<Durable>);

impl Handler {
    pub(super) async fn share_fetch(&self, r: ShareFetchRequest, client: &ClientInfo) -> ShareFetchResponse {
        let lock_ms = i32::try_from(self.broker.groups().share_record_lock_ms()).unwrap_or(i32::MAX);
        let (Some(group), Some(member)) = (r.group_id.as_ref(), r.member_id.as_ref()) else {
            return ShareFetchResponse::default().with_error_code(ec::INVALID_REQUEST);
        };
        let (group, member) = (group.0.to_string(), member.to_string());
        let requested = merge(r.topics.iter().flat_map(|t| {
            t.partitions.iter().map(|p| {
                let acks = p
                    .acknowledgement_batches
                    .iter()
                    .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()));
                (
                    (t.topic_id.as_u128(), p.partition_index),
                    acks.collect::<Vec<_>>(),
                )
            })
        }));
        let has_acks = requested.values().any(|a| !a.is_empty());
        if r.share_session_epoch == 0 && has_acks {
            return ShareFetchResponse::default().with_error_code(ec::INVALID_REQUEST);
        }
        let added: Vec<Tp> = requested.keys().copied().collect();
        let forgotten: Vec<Tp> = r
            .forgotten_topics_data
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id.as_u128(), *p)))
            .collect();
        let step = self.share_sessions.step(
            (&group, &member),
            r.share_session_epoch,
            true,
            &added,
            &forgotten,
            client.connection,
        );
        let (partitions, closing) = match step {
            Step::Refused(code, released) => {
                self.release_share(&group, &member, &released);
                return ShareFetchResponse::default().with_error_code(code);
            }
            Step::Continue { partitions, released } => {
                self.release_share(&group, &member, &released);
                (partitions, false)
            }
            Step::Closed(partitions) => (partitions, true),
        };
        let mut out: BTreeMap<Tp, PartitionOut> = BTreeMap::new();
        let mut waits = Vec::new();
        for (tp, acks) in requested.iter().filter(|(_, a)| !a.is_empty()) {
            let code = self.settle_share(&group, &member, *tp, acks);
            out.entry(*tp).or_default().ack_error = Some(code);
        }
        self.release_share(&group, &member, &forgotten);
        if closing {
            self.release_share(&group, &member, &partitions);
        } else {
            let max = match r.max_records {
                n if n > 0 => (n as usize).min(RECORDS_MAX),
                _ => RECORDS_DEFAULT,
            };
            let budget = usize::try_from(r.max_bytes)
                .unwrap_or(0)
                .max(1 << 20)
                .min(self.config.fetch_bytes_max);
            let wait = Duration::from_millis(
                u64::try_from(r.max_wait_ms)
                    .unwrap_or(0)
                    .min(self.config.fetch_wait_ms_max),
            );
            let rotation = usize::try_from(r.share_session_epoch).unwrap_or(0);
            match self
                .acquire_waiting(&group, &member, &partitions, rotation, (max, budget), wait)
                .await
            {
                Ok((acquired, durables)) => {
                    waits.extend(durables);
                    for (tp, p) in acquired {
                        let entry = out.entry(tp).or_default();
                        entry.error = p.error;
                        entry.records = p.records;
                        entry.acquired = p.acquired;
                    }
                }
                Err(code) => return ShareFetchResponse::default().with_error_code(code),
            }
        }
        for durable in waits {
            if let Err(e) = durable.wait().await {
                tracing::error!(group = %group, error = %e, "Storing a share group start offset failed");
            }
        }
        ShareFetchResponse::default()
            .with_acquisition_lock_timeout_ms(lock_ms)
            .with_responses(fetch_responses(out))
    }

    pub(super) async fn share_acknowledge(
        &self,
        r: ShareAcknowledgeRequest,
        client: &ClientInfo,
    ) -> ShareAcknowledgeResponse {
        use kafka_protocol::messages::share_acknowledge_response::{
            PartitionData as AckPartition, ShareAcknowledgeTopicResponse,
        };
        let (Some(group), Some(member)) = (r.group_id.as_ref(), r.member_id.as_ref()) else {
            return ShareAcknowledgeResponse::default().with_error_code(ec::INVALID_REQUEST);
        };
        let (group, member) = (group.0.to_string(), member.to_string());
        let requested = merge(r.topics.iter().flat_map(|t| {
            t.partitions.iter().map(|p| {
                let acks = p
                    .acknowledgement_batches
                    .iter()
                    .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()));
                (
                    (t.topic_id.as_u128(), p.partition_index),
                    acks.collect::<Vec<_>>(),
                )
            })
        }));
        let step = self.share_sessions.step(
            (&group, &member),
            r.share_session_epoch,
            false,
            &[],
            &[],
            client.connection,
        );
        let closing = match step {
            Step::Refused(code, released) => {
                self.release_share(&group, &member, &released);
                return ShareAcknowledgeResponse::default().with_error_code(code);
            }
            Step::Continue { released, .. } => {
                self.release_share(&group, &member, &released);
                None
            }
            Step::Closed(partitions) => Some(partitions),
        };
        let mut by_topic: BTreeMap<u128, Vec<AckPartition>> = BTreeMap::new();
        for (tp, acks) in &requested {
            let code = self.settle_share(&group, &member, *tp, acks);
            by_topic.entry(tp.0).or_default().push(
                AckPartition::default()
                    .with_partition_index(tp.1)
                    .with_error_code(code),
            );
        }
        if let Some(partitions) = closing {
            self.release_share(&group, &member, &partitions);
        }
        let responses = by_topic
            .into_iter()
            .map(|(id, partitions)| {
                ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(Uuid::from_u128(id))
                    .with_partitions(partitions)
            })
            .collect();
        ShareAcknowledgeResponse::default().with_responses(responses)
    }

    /// Releases what the member holds on partitions named by topic id.
    pub(super) fn release_share(&self, group: &str, member: &str, partitions: &[Tp]) {
        if partitions.is_empty() {
            return;
        }
        let named: Vec<(String, i32)> = partitions
            .iter()
            .filter_map(|(id, p)| self.broker.topic_by_id(*id).map(|t| (t.name().to_string(), *p)))
            .collect();
        self.broker.groups().share_release(group, member, &named);
    }

    /// Settles one partition's acknowledgement batches; the code for its answer.
    ///
    /// The answer does not wait for a moved start offset to be stored: records settled
    /// past the stored start are delivered again after a crash anyway (only the start is
    /// stored), so waiting would buy no guarantee and cost an fsync per acknowledgement.
    fn settle_share(&self, group: &str, member: &str, (id, partition): Tp, acks: &[AckBatch]) -> i16 {
        let Some(topic) = self.broker.topic_by_id(id) else {
            return ec::UNKNOWN_TOPIC_ID;
        };
        let Some(batches) = settlements(acks) else {
            return ec::INVALID_REQUEST;
        };
        match self
            .broker
            .groups()
            .share_settle(group, member, (topic.name(), partition), &batches)
        {
            Ok(_stored_soon) => ec::NONE,
            Err(e) => {
                tracing::debug!(group, member, topic = %topic.name(), partition, error = %e, "Share acknowledgement refused");
                group_error_code(e)
            }
        }
    }

    /// Acquires records for the member, waiting up to `wait` for some to arrive.
    async fn acquire_waiting(
        &self,
        group: &str,
        member: &str,
        partitions: &[Tp],
        rotation: usize,
        limits: (usize, usize),
        wait: Duration,
    ) -> Result<Acquisition, i16> {
        let deadline = Instant::now() + wait;
        let mut durables = Vec::new();
        // Each pass acquires or waits for data; bounded by the deadline.
        loop {
            let named: Vec<(String, i32)> = partitions
                .iter()
                .filter_map(|(id, p)| self.broker.topic_by_id(*id).map(|t| (t.name().to_string(), *p)))
                .collect();
            let mut watch = self.broker.watch(named.iter().map(|(t, p)| (t.as_str(), *p)));
            let (got, stored) = self.acquire_once(group, member, partitions, rotation, limits)?;
            durables.extend(stored);
            let any = got
                .iter()
                .any(|(_, p)| !p.acquired.is_empty() || p.error != ec::NONE);
            let now = Instant::now();
            if any || now >= deadline || *self.shutdown.borrow() {
                return Ok((got, durables));
            }
            watch.wait(tokio::time::Instant::from_std(deadline)).await;
        }
    }

    /// One pass over the session's partitions, starting at `rotation` so none starves.
    fn acquire_once(
        &self,
        group: &str,
        member: &str,
        partitions: &[Tp],
        rotation: usize,
        (max, mut budget): (usize, usize),
    ) -> Result<Acquisition, i16> {
        let mut out = Vec::new();
        let mut durables = Vec::new();
        let mut left = max;
        let n = partitions.len().max(1);
        for i in 0..partitions.len() {
            let (id, partition) = partitions[(i + rotation) % n];
            let Some(topic) = self.broker.topic_by_id(id) else {
                out.push(((id, partition), error_out(ec::UNKNOWN_TOPIC_ID)));
                continue;
            };
            let Some(info) = topic.partition_info(partition) else {
                out.push(((id, partition), error_out(ec::UNKNOWN_TOPIC_OR_PARTITION)));
                continue;
            };
            if left == 0 || budget == 0 {
                break;
            }
            let bounds = LogBounds {
                log_start: info.log_start_offset,
                available_end: info.high_watermark,
            };
            let key = (topic.name(), partition);
            let (ranges, stored) = self
                .broker
                .groups()
                .share_acquire(group, member, key, bounds, left)
                .map_err(group_error_code)?;
            durables.extend(stored);
            if ranges.is_empty() {
                continue;
            }
            let (records, sent) = self.broker.read_covering(key.0, key.1, &ranges, &mut budget);
            for r in &ranges {
                if r.last >= sent {
                    let from = r.first.max(sent);
                    self.broker
                        .groups()
                        .share_unacquire(group, member, key, from, r.last);
                }
            }
            let acquired: Vec<AcquiredRange> = ranges
                .into_iter()
                .filter(|r| r.first < sent)
                .map(|r| AcquiredRange {
                    last: r.last.min(sent - 1),
                    ..r
                })
                .collect();
            left = left.saturating_sub(acquired.iter().map(|r| (r.last - r.first + 1) as usize).sum());
            out.push((
                (id, partition),
                PartitionOut {
                    error: ec::NONE,
                    ack_error: None,
                    records,
                    acquired,
                },
            ));
        }
        Ok((out, durables))
    }
}

fn error_out(code: i16) -> PartitionOut {
    PartitionOut {
        error: code,
        ..PartitionOut::default()
    }
}

/// A request's partitions with their acknowledgement batches; a partition named twice
/// (clients may repeat a topic) gets both lists.
fn merge(items: impl Iterator<Item = (Tp, Vec<AckBatch>)>) -> BTreeMap<Tp, Vec<AckBatch>> {
    let mut out: BTreeMap<Tp, Vec<AckBatch>> = BTreeMap::new();
    for (tp, acks) in items {
        out.entry(tp).or_default().extend(acks);
    }
    out
}

/// Acknowledgement batches as settlements: one type for the whole range, or one per
/// offset. `None` for a malformed batch.
fn settlements(acks: &[AckBatch]) -> Option<Vec<(i64, i64, Settle)>> {
    let kind = |t: i8| match t {
        // A gap (no record at that offset) is settled as accepted.
        0 | 1 => Some(Settle::Accept),
        2 => Some(Settle::Release),
        3 => Some(Settle::Reject),
        _ => None,
    };
    let mut out = Vec::new();
    for (first, last, types) in acks {
        if last < first || types.is_empty() {
            return None;
        }
        if types.len() == 1 {
            out.push((*first, *last, kind(types[0])?));
            continue;
        }
        if (last - first + 1) as usize != types.len() {
            return None;
        }
        for (i, t) in types.iter().enumerate() {
            let offset = first + i as i64;
            out.push((offset, offset, kind(*t)?));
        }
    }
    Some(out)
}

fn fetch_responses(out: BTreeMap<Tp, PartitionOut>) -> Vec<ShareFetchableTopicResponse> {
    let mut by_topic: BTreeMap<u128, Vec<PartitionData>> = BTreeMap::new();
    for ((id, partition), p) in out {
        let acquired = p
            .acquired
            .iter()
            .map(|r| {
                AcquiredRecords::default()
                    .with_first_offset(r.first)
                    .with_last_offset(r.last)
                    .with_delivery_count(i16::try_from(r.delivery_count).unwrap_or(i16::MAX))
            })
            .collect();
        let mut data = PartitionData::default()
            .with_partition_index(partition)
            .with_error_code(p.error)
            // Never null: the client reads the length as a record-set size.
            .with_records(Some(p.records))
            .with_acquired_records(acquired);
        if let Some(code) = p.ack_error {
            data.acknowledge_error_code = code;
        }
        if p.error != ec::NONE {
            data.error_message = Some(str_bytes(format!("Kafka error {}", p.error)));
        }
        by_topic.entry(id).or_default().push(data);
    }
    by_topic
        .into_iter()
        .map(|(id, partitions)| {
            ShareFetchableTopicResponse::default()
                .with_topic_id(Uuid::from_u128(id))
                .with_partitions(partitions)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgement_batches_become_settlements() {
        assert_eq!(
            settlements(&[(5, 7, vec![1]), (8, 10, vec![2, 0, 3])]),
            Some(vec![
                (5, 7, Settle::Accept),
                (8, 8, Settle::Release),
                (9, 9, Settle::Accept),
                (10, 10, Settle::Reject),
            ])
        );
        assert_eq!(
            settlements(&[(5, 7, vec![1, 1])]),
            None,
            "two types for three offsets"
        );
        assert_eq!(settlements(&[(5, 4, vec![1])]), None);
        assert_eq!(settlements(&[(5, 5, vec![9])]), None);
        let merged =
            merge(vec![((1, 0), vec![(0, 1, vec![1])]), ((1, 0), vec![(2, 2, vec![2])])].into_iter());
        assert_eq!(
            merged[&(1, 0)].len(),
            2,
            "a repeated partition keeps both batches"
        );
    }
}
