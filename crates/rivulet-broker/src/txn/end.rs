//! EndTxn, the markers and offsets that complete a transaction, timeouts and recovery.

use std::collections::BTreeMap;

use rivulet_log::{now_ms, Durable, Marker};

use super::ops::marker_of;
use super::{txn_error, Entry, TxnError, TxnMeta, TxnState};
use crate::error::Result;
use crate::offsets::CommittedOffset;
use crate::Broker;

/// Why a transaction was aborted, as the aborts metric labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// The producer asked.
    Producer,
    /// `transaction.timeout.ms` passed.
    Timeout,
    /// A new producer with the same transactional id started.
    Fenced,
    /// An operator aborted it.
    Operator,
}

impl AbortReason {
    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            AbortReason::Producer => "producer",
            AbortReason::Timeout => "timeout",
            AbortReason::Fenced => "fenced",
            AbortReason::Operator => "operator",
        }
    }
}

impl Broker {
    /// EndTxn: commits or aborts the producer's open transaction. Returns once every
    /// partition holds its marker and, for a commit, the offsets are committed. Ending a
    /// transaction that just ended the same way (a retry) succeeds.
    pub async fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<()> {
        let Some((meta, prepared)) = self.prepare_end(transactional_id, producer_id, epoch, commit)? else {
            return Ok(());
        };
        let marker = marker_of(meta.state);
        self.complete_txn(&meta, Some(prepared), marker, AbortReason::Producer)
            .await
    }

    fn prepare_end(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<Option<(TxnMeta, Durable)>> {
        let coordinator = self.txns();
        let mut txns = coordinator.lock();
        let fail = |e| txn_error(transactional_id, e);
        let entry = txns.producer_entry(transactional_id, producer_id, epoch)?;
        match entry.meta.state {
            TxnState::Ongoing if !entry.completing => {}
            TxnState::Empty => return Ok(None),
            TxnState::CompleteCommit if commit => return Ok(None),
            TxnState::CompleteAbort if !commit => return Ok(None),
            TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(fail(TxnError::Concurrent))
            }
            state => {
                let what = "end the transaction the other way it already ended";
                return Err(fail(TxnError::InvalidState { state, what }));
            }
        }
        let mut draft = entry.meta.clone();
        draft.state = match commit {
            true => TxnState::PrepareCommit,
            false => TxnState::PrepareAbort,
        };
        draft.updated_ms = now_ms();
        let durable = coordinator.persist(&draft)?;
        entry.meta = draft.clone();
        entry.completing = true;
        Ok(Some((draft, durable)))
    }

    /// Completes a prepared transaction: waits for its prepare state to be durable (when
    /// `prepared` is given), writes the markers and offsets, then the complete state. On an
    /// error the transaction stays prepared for the timeout thread to complete.
    pub(super) async fn complete_txn(
        &self,
        meta: &TxnMeta,
        prepared: Option<Durable>,
        marker: Marker,
        reason: AbortReason,
    ) -> Result<()> {
        let result = async {
            if let Some(prepared) = prepared {
                prepared.wait().await?;
            }
            Durable::wait_all(self.write_markers(meta, marker)?).await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            self.release_completion(&meta.transactional_id);
            return Err(e);
        }
        self.finish_txn(meta, marker, reason)
    }

    /// [`Broker::complete_txn`] on a thread that may block (start-up, the timeout thread).
    fn complete_txn_blocking(&self, meta: &TxnMeta, marker: Marker, reason: AbortReason) -> Result<()> {
        let waited = self.write_markers(meta, marker).and_then(|waits| {
            waits
                .into_iter()
                .try_for_each(|d| d.wait_blocking().map_err(Into::into))
        });
        if let Err(e) = waited {
            self.release_completion(&meta.transactional_id);
            return Err(e);
        }
        self.finish_txn(meta, marker, reason)
    }

    /// Writes `marker` to every partition of the transaction and, for a commit, its offsets
    /// to the offsets log. Partitions of deleted topics are skipped.
    fn write_markers(&self, meta: &TxnMeta, marker: Marker) -> Result<Vec<Durable>> {
        let mut waits = Vec::with_capacity(meta.partitions.len() + 1);
        for (topic, partition) in &meta.partitions {
            let Some(log) = self.topic(topic).and_then(|t| t.partition(*partition).cloned()) else {
                continue;
            };
            if let Some(outcome) = log.append_marker(meta.producer_id, meta.producer_epoch, marker, 0)? {
                waits.push(outcome.durable);
            }
        }
        if marker == Marker::Commit {
            let now = now_ms();
            let mut by_group: BTreeMap<&str, Vec<(String, i32, CommittedOffset)>> = BTreeMap::new();
            for o in &meta.offsets {
                let committed = CommittedOffset {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp_ms: now,
                };
                by_group
                    .entry(&o.group)
                    .or_default()
                    .push((o.topic.clone(), o.partition, committed));
            }
            for (group, entries) in by_group {
                if let Some(durable) = self.groups().offsets().commit_durable(group, entries)? {
                    waits.push(durable);
                }
            }
        }
        Ok(waits)
    }

    /// Records the complete state once markers and offsets are durable. The state record
    /// itself is not waited for: lost in a crash, the prepare state is completed again, and
    /// writing markers again changes nothing.
    fn finish_txn(&self, meta: &TxnMeta, marker: Marker, reason: AbortReason) -> Result<()> {
        let coordinator = self.txns();
        let mut txns = coordinator.lock();
        let Some(entry) = txns.by_id.get_mut(&meta.transactional_id) else {
            return Ok(());
        };
        entry.completing = false;
        let now = now_ms();
        entry.meta.state = match marker {
            Marker::Commit => TxnState::CompleteCommit,
            Marker::Abort => TxnState::CompleteAbort,
        };
        entry.meta.partitions.clear();
        entry.meta.groups.clear();
        entry.meta.offsets.clear();
        entry.meta.updated_ms = now;
        drop(coordinator.persist(&entry.meta)?);
        let duration_ms = (now - meta.started_ms).max(0) as u64;
        let aborted = (marker == Marker::Abort).then(|| reason.name());
        self.metrics().observe_transaction(duration_ms, aborted);
        Ok(())
    }

    fn release_completion(&self, transactional_id: &str) {
        if let Some(entry) = self.txns().lock().by_id.get_mut(transactional_id) {
            entry.completing = false;
        }
    }

    /// Completes every transaction a crash left between prepare and complete. Called by
    /// [`Broker::open`] before anything is served; blocking I/O.
    pub(crate) fn recover_transactions(&self) {
        let pending: Vec<TxnMeta> = {
            let mut txns = self.txns().lock();
            txns.by_id
                .values_mut()
                .filter(|e| e.meta.state.is_prepare())
                .map(|e| {
                    e.completing = true;
                    e.meta.clone()
                })
                .collect()
        };
        for meta in pending {
            let marker = marker_of(meta.state);
            match self.complete_txn_blocking(&meta, marker, AbortReason::Producer) {
                Ok(()) => {
                    tracing::info!(transactional_id = %meta.transactional_id, state = %meta.state, "Completed a transaction left half done")
                }
                Err(e) => {
                    tracing::error!(transactional_id = %meta.transactional_id, error = %e, "Cannot complete a transaction left half done")
                }
            }
        }
    }

    /// Aborts transactions open longer than their timeout, and retries completions that
    /// failed (a full disk). Runs on the transactions thread; blocking I/O.
    pub(crate) fn tick_transactions(&self) {
        let now = now_ms();
        let due: Vec<(TxnMeta, Option<Durable>)> = {
            let coordinator = self.txns();
            let mut txns = coordinator.lock();
            let mut due = Vec::new();
            for entry in txns.by_id.values_mut() {
                if entry.completing {
                    continue;
                }
                let meta = &entry.meta;
                let expired =
                    meta.state == TxnState::Ongoing && now - meta.started_ms > i64::from(meta.timeout_ms);
                if meta.state.is_prepare() {
                    entry.completing = true;
                    due.push((entry.meta.clone(), None));
                } else if expired {
                    match abort_expired(self, entry, now) {
                        Ok(durable) => due.push((entry.meta.clone(), Some(durable))),
                        Err(e) => tracing::error!(error = %e, "Cannot abort a timed-out transaction"),
                    }
                }
            }
            due
        };
        for (meta, prepared) in due {
            let reason = match prepared.is_some() {
                true => AbortReason::Timeout,
                false => AbortReason::Producer,
            };
            if let Some(Err(e)) = prepared.map(Durable::wait_blocking) {
                tracing::error!(error = %e, "Cannot abort a timed-out transaction");
                self.release_completion(&meta.transactional_id);
                continue;
            }
            tracing::info!(transactional_id = %meta.transactional_id, state = %meta.state, "Completing a transaction (timed out or retried)");
            if let Err(e) = self.complete_txn_blocking(&meta, marker_of(meta.state), reason) {
                tracing::error!(transactional_id = %meta.transactional_id, error = %e, "Cannot complete a transaction");
            }
        }
    }

    /// Aborts the open transaction of `transactional_id` (an operator's request), fencing
    /// its producer.
    pub async fn abort_transaction(&self, transactional_id: &str) -> Result<()> {
        let prepared = {
            let coordinator = self.txns();
            let mut txns = coordinator.lock();
            let fail = |e| txn_error(transactional_id, e);
            let entry = txns
                .by_id
                .get_mut(transactional_id)
                .ok_or_else(|| fail(TxnError::NotFound))?;
            if entry.completing || entry.meta.state != TxnState::Ongoing {
                let what = "abort: only an open transaction can be aborted";
                return Err(fail(TxnError::InvalidState {
                    state: entry.meta.state,
                    what,
                }));
            }
            let durable = abort_expired(self, entry, now_ms())?;
            (entry.meta.clone(), durable)
        };
        let (meta, durable) = prepared;
        self.complete_txn(&meta, Some(durable), Marker::Abort, AbortReason::Operator)
            .await
    }
}

/// Moves an open transaction to `PrepareAbort` at a bumped epoch (its producer is fenced)
/// and marks it completing. The entry keeps its producer id: an exhausted epoch is left
/// for the next InitProducerId to replace.
fn abort_expired(broker: &Broker, entry: &mut Entry, now: i64) -> Result<Durable> {
    let mut draft = entry.meta.clone();
    if draft.producer_epoch < i16::MAX - 1 {
        draft.producer_epoch += 1;
    }
    draft.state = TxnState::PrepareAbort;
    draft.updated_ms = now;
    let durable = broker.txns().persist(&draft)?;
    entry.meta = draft;
    entry.completing = true;
    Ok(durable)
}
