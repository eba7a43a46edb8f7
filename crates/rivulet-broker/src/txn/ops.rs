//! InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn and TxnOffsetCommit.

use super::end::AbortReason;
use super::{txn_error, Entry, PendingOffset, TxnError, TxnMeta, TxnState};
use super::{TRANSACTIONAL_IDS_MAX, TXN_OFFSETS_MAX, TXN_PARTITIONS_MAX};
use crate::error::{BrokerError, Result};
use crate::Broker;
use rivulet_log::{now_ms, Durable, Marker};

/// What InitProducerId does next after looking at the id's state.
enum InitStep {
    /// The new producer id and epoch, once this state record is durable.
    Done(Durable, i64, i16),
    /// First finish the transaction left open or half completed.
    Complete(TxnMeta, Marker, Option<Durable>),
}

impl Broker {
    /// InitProducerId with a `transactional.id`: binds a producer id to it (a new one the
    /// first time) and bumps its epoch, fencing every older producer of the id. A
    /// transaction the previous producer left open is aborted, and one it was completing is
    /// completed, before the new epoch is returned.
    pub async fn init_transactional_producer(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
    ) -> Result<(i64, i16)> {
        let coordinator = self.txns();
        if timeout_ms <= 0 || timeout_ms > coordinator.timeout_ms_max {
            let error = TxnError::InvalidTimeout {
                timeout_ms,
                max_ms: coordinator.timeout_ms_max,
            };
            return Err(txn_error(transactional_id, error));
        }
        // At most: complete a half-done transaction, abort an open one, then bump.
        for _ in 0..3 {
            match self.init_step(transactional_id, timeout_ms)? {
                InitStep::Done(durable, producer_id, epoch) => {
                    durable.wait().await?;
                    return Ok((producer_id, epoch));
                }
                InitStep::Complete(meta, marker, prepared) => {
                    self.complete_txn(&meta, prepared, marker, AbortReason::Fenced)
                        .await?;
                }
            }
        }
        Err(txn_error(transactional_id, TxnError::Concurrent))
    }

    fn init_step(&self, transactional_id: &str, timeout_ms: i32) -> Result<InitStep> {
        let coordinator = self.txns();
        let mut txns = coordinator.lock();
        let now = now_ms();
        let Some(entry) = txns.by_id.get_mut(transactional_id) else {
            if txns.by_id.len() >= TRANSACTIONAL_IDS_MAX {
                return Err(BrokerError::LimitReached(format!(
                    "{TRANSACTIONAL_IDS_MAX} transactional ids"
                )));
            }
            let (producer_id, epoch) = self.init_producer_id(None)?;
            let meta = TxnMeta {
                transactional_id: transactional_id.to_string(),
                producer_id,
                producer_epoch: epoch,
                timeout_ms,
                state: TxnState::Empty,
                partitions: Default::default(),
                groups: Default::default(),
                offsets: Vec::new(),
                started_ms: now,
                updated_ms: now,
            };
            let durable = coordinator.persist(&meta)?;
            txns.by_producer.insert(producer_id, transactional_id.to_string());
            let entry = Entry {
                meta,
                completing: false,
            };
            txns.by_id.insert(transactional_id.to_string(), entry);
            return Ok(InitStep::Done(durable, producer_id, epoch));
        };
        if entry.completing {
            return Err(txn_error(transactional_id, TxnError::Concurrent));
        }
        let meta = &mut entry.meta;
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                let marker = marker_of(meta.state);
                entry.completing = true;
                return Ok(InitStep::Complete(entry.meta.clone(), marker, None));
            }
            TxnState::Ongoing => {
                // Abort at a bumped epoch: the old producer's later writes are refused.
                bump_epoch(self, meta)?;
                meta.state = TxnState::PrepareAbort;
                meta.updated_ms = now;
                let durable = coordinator.persist(meta)?;
                entry.completing = true;
                let snapshot = entry.meta.clone();
                txns.by_producer
                    .insert(snapshot.producer_id, transactional_id.to_string());
                return Ok(InitStep::Complete(snapshot, Marker::Abort, Some(durable)));
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {}
        }
        let old_producer = meta.producer_id;
        bump_epoch(self, meta)?;
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        meta.updated_ms = now;
        let durable = coordinator.persist(meta)?;
        let (producer_id, epoch) = (meta.producer_id, meta.producer_epoch);
        if producer_id != old_producer {
            txns.by_producer.remove(&old_producer);
            txns.by_producer.insert(producer_id, transactional_id.to_string());
        }
        Ok(InitStep::Done(durable, producer_id, epoch))
    }

    /// AddPartitionsToTxn: adds partitions to the producer's transaction, opening it if
    /// none is open. Every partition must exist.
    pub async fn add_partitions_to_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<()> {
        for (topic, partition) in partitions {
            let t = self.existing_topic(topic)?;
            if t.partition(*partition).is_none() {
                return Err(BrokerError::UnknownPartition {
                    topic: topic.clone(),
                    partition: *partition,
                    count: t.partition_count(),
                });
            }
        }
        let durable = self.change_open_txn(transactional_id, producer_id, epoch, |meta| {
            let before = meta.partitions.len();
            meta.partitions.extend(partitions.iter().cloned());
            if meta.partitions.len() > TXN_PARTITIONS_MAX {
                return Err(BrokerError::LimitReached(format!(
                    "{TXN_PARTITIONS_MAX} partitions in one transaction"
                )));
            }
            Ok(meta.partitions.len() != before)
        })?;
        if let Some(durable) = durable {
            durable.wait().await?;
        }
        Ok(())
    }

    /// AddOffsetsToTxn: the transaction will commit offsets of `group`.
    pub async fn add_offsets_to_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<()> {
        let durable = self.change_open_txn(transactional_id, producer_id, epoch, |meta| {
            Ok(meta.groups.insert(group.to_string()))
        })?;
        if let Some(durable) = durable {
            durable.wait().await?;
        }
        Ok(())
    }

    /// TxnOffsetCommit: offsets of `group` that become committed when the transaction
    /// commits, and are dropped when it aborts.
    pub async fn txn_offset_commit(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        offsets: Vec<PendingOffset>,
    ) -> Result<()> {
        let durable = self.change_txn(transactional_id, producer_id, epoch, false, |meta| {
            for offset in offsets {
                meta.groups.insert(offset.group.clone());
                meta.offsets.retain(|o| {
                    (&o.group, &o.topic, o.partition) != (&offset.group, &offset.topic, offset.partition)
                });
                meta.offsets.push(offset);
            }
            if meta.offsets.len() > TXN_OFFSETS_MAX {
                return Err(BrokerError::LimitReached(format!(
                    "{TXN_OFFSETS_MAX} offsets in one transaction"
                )));
            }
            Ok(true)
        })?;
        if let Some(durable) = durable {
            durable.wait().await?;
        }
        Ok(())
    }

    /// Applies `change` to the id's transaction, opening one if none is open.
    fn change_open_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        change: impl FnOnce(&mut TxnMeta) -> Result<bool>,
    ) -> Result<Option<Durable>> {
        self.change_txn(transactional_id, producer_id, epoch, true, change)
    }

    /// Applies `change` (which says whether it changed anything) to the id's transaction
    /// and persists the result. `open`: a new transaction starts if none is open;
    /// otherwise one must be open.
    fn change_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        open: bool,
        change: impl FnOnce(&mut TxnMeta) -> Result<bool>,
    ) -> Result<Option<Durable>> {
        let coordinator = self.txns();
        let mut txns = coordinator.lock();
        let fail = |e| txn_error(transactional_id, e);
        let entry = txns.producer_entry(transactional_id, producer_id, epoch)?;
        let mut draft = entry.meta.clone();
        match draft.state {
            TxnState::Ongoing => {}
            TxnState::PrepareCommit | TxnState::PrepareAbort => return Err(fail(TxnError::Concurrent)),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort if open => {
                draft.state = TxnState::Ongoing;
                draft.started_ms = now_ms();
                draft.partitions.clear();
                draft.groups.clear();
                draft.offsets.clear();
            }
            state => {
                let what = "offsets committed outside a transaction";
                return Err(fail(TxnError::InvalidState { state, what }));
            }
        }
        let opened = draft.state != entry.meta.state;
        let changed = change(&mut draft)?;
        if !changed && !opened {
            return Ok(None);
        }
        draft.updated_ms = now_ms();
        let durable = coordinator.persist(&draft)?;
        entry.meta = draft;
        Ok(Some(durable))
    }
}

/// The marker a `Prepare*` state writes.
pub(super) fn marker_of(state: TxnState) -> Marker {
    match state {
        TxnState::PrepareCommit | TxnState::CompleteCommit => Marker::Commit,
        TxnState::Empty | TxnState::Ongoing | TxnState::PrepareAbort | TxnState::CompleteAbort => {
            Marker::Abort
        }
    }
}

/// Moves the id to the next epoch, or to a fresh producer id when epochs run out.
fn bump_epoch(broker: &Broker, meta: &mut TxnMeta) -> Result<()> {
    if meta.producer_epoch < i16::MAX - 1 {
        meta.producer_epoch += 1;
        return Ok(());
    }
    let (producer_id, epoch) = broker.init_producer_id(None)?;
    meta.producer_id = producer_id;
    meta.producer_epoch = epoch;
    Ok(())
}
