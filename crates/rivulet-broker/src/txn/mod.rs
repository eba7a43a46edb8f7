//! The transaction coordinator: Kafka transactions (KIP-98) in the broker core, independent
//! of any wire protocol.
//!
//! Each transactional id has one [`TxnMeta`]: its producer id and epoch, its state, the
//! partitions and groups of the open transaction and the offsets it will commit. Every
//! change is written to the internal `__transaction_state` log (compacted, fsynced) before
//! it is acknowledged, and replayed at start.
//!
//! Ending a transaction: the state becomes `PrepareCommit` or `PrepareAbort` on disk, then a
//! marker is written to every partition of the transaction and, for a commit, its offsets to
//! the offsets log; then the state becomes `CompleteCommit` or `CompleteAbort`. A crash
//! between the steps leaves a `Prepare*` state that [`crate::Broker::open`] completes before
//! serving, so every transaction ends the same way in all its partitions.
//!
//! - `ops`: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit;
//! - `end`: EndTxn, markers, timeouts, recovery;
//! - `local`: transactions of producers in this process (the embedded SDK);
//! - `store`: the transaction log.

mod end;
mod local;
mod ops;
mod store;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};
pub use local::{LocalTxn, LocalTxnProducer};
pub(crate) use store::TxnStore;
pub use store::TRANSACTIONS_TOPIC;

/// Kafka's default upper bound on `transaction.timeout.ms` (15 minutes).
pub const TRANSACTION_TIMEOUT_MS_MAX: i32 = 900_000;
/// Partitions one transaction may span.
pub const TXN_PARTITIONS_MAX: usize = 10_000;
/// Offsets one transaction may commit.
pub const TXN_OFFSETS_MAX: usize = 10_000;
/// Transactional ids the coordinator keeps.
pub const TRANSACTIONAL_IDS_MAX: usize = 100_000;
/// A transactional id without a transaction for this long is forgotten (Kafka's
/// `transactional.id.expiration.ms`, 7 days).
pub const TRANSACTIONAL_ID_EXPIRATION_MS: i64 = 7 * 24 * 3600 * 1000;

/// Where a transactional id's current transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction since the producer started.
    Empty,
    /// A transaction is open.
    Ongoing,
    /// Decided to commit; markers being written.
    PrepareCommit,
    /// Decided to abort; markers being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// The state's name as Kafka tools print it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

impl std::fmt::Display for TxnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An offset a transaction commits for a group when it commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOffset {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch the client saw, or -1.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: Option<String>,
}

/// One transactional id's state, as stored in the transaction log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    /// The producer's `transactional.id`.
    pub transactional_id: String,
    /// The producer id bound to it.
    pub producer_id: i64,
    /// The current epoch; older epochs are fenced.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms`: an open transaction older than this is aborted.
    pub timeout_ms: i32,
    /// Where the current transaction stands.
    pub state: TxnState,
    /// Partitions the open transaction wrote to (or may write to).
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups whose offsets the open transaction commits.
    pub groups: BTreeSet<String>,
    /// Offsets committed with the transaction.
    pub offsets: Vec<PendingOffset>,
    /// When the open transaction started (ms since the epoch).
    pub started_ms: i64,
    /// When the state last changed.
    pub updated_ms: i64,
}

/// Why the transaction coordinator refused a request. Each maps to one Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// A newer producer with the same transactional id took over (a zombie).
    #[error("producer epoch {received} is fenced: a newer producer holds epoch {current}")]
    ProducerFenced {
        /// The epoch the coordinator holds.
        current: i16,
        /// The epoch the request carried.
        received: i16,
    },
    /// The producer id does not belong to the transactional id (or no such id exists).
    #[error("producer id {received} is not the one bound to this transactional id")]
    InvalidProducerIdMapping {
        /// The producer id the request carried.
        received: i64,
    },
    /// The request does not fit the transaction's state.
    #[error("the transaction is {state}: {what}")]
    InvalidState {
        /// The state found.
        state: TxnState,
        /// What was asked.
        what: &'static str,
    },
    /// The previous transaction is still being completed; retry.
    #[error("the previous transaction of this id is still completing")]
    Concurrent,
    /// `transaction.timeout.ms` outside what the broker allows.
    #[error("transaction timeout {timeout_ms} ms is outside 1..={max_ms} ms")]
    InvalidTimeout {
        /// The requested timeout.
        timeout_ms: i32,
        /// The broker's maximum.
        max_ms: i32,
    },
    /// No such transactional id.
    #[error("no transactional id of that name")]
    NotFound,
}

impl TxnError {
    /// A stable numeric code for this error.
    pub fn code(self) -> u32 {
        match self {
            TxnError::ProducerFenced { .. } => 5001,
            TxnError::InvalidProducerIdMapping { .. } => 5002,
            TxnError::InvalidState { .. } => 5003,
            TxnError::Concurrent => 5004,
            TxnError::InvalidTimeout { .. } => 5005,
            TxnError::NotFound => 5006,
        }
    }
}

/// In-memory state of every transactional id.
#[derive(Debug, Default)]
struct Txns {
    by_id: HashMap<String, Entry>,
    /// Producer id → transactional id, for checking transactional produce requests.
    by_producer: HashMap<i64, String>,
}

impl Txns {
    /// The entry of `transactional_id`, when `producer_id` at `epoch` is its current
    /// producer (else the mapping or fencing error).
    fn producer_entry(&mut self, transactional_id: &str, producer_id: i64, epoch: i16) -> Result<&mut Entry> {
        let fail = |e| txn_error(transactional_id, e);
        let entry = self.by_id.get_mut(transactional_id).ok_or_else(|| {
            fail(TxnError::InvalidProducerIdMapping {
                received: producer_id,
            })
        })?;
        check_epoch(&entry.meta, producer_id, epoch).map_err(fail)?;
        Ok(entry)
    }
}

#[derive(Debug)]
struct Entry {
    meta: TxnMeta,
    /// A completion (markers) is in flight; not stored.
    completing: bool,
}

/// The transaction coordinator's state and log.
#[derive(Debug)]
pub struct TxnCoordinator {
    store: TxnStore,
    txns: Mutex<Txns>,
    timeout_ms_max: i32,
}

/// One transaction as [`crate::Broker::transactions`] lists it.
pub type TransactionDescription = TxnMeta;

impl TxnCoordinator {
    pub(crate) fn new(
        store: TxnStore,
        state: HashMap<String, TxnMeta>,
        timeout_ms_max: i32,
    ) -> TxnCoordinator {
        let mut txns = Txns::default();
        for (id, meta) in state {
            txns.by_producer.insert(meta.producer_id, id.clone());
            txns.by_id.insert(
                id,
                Entry {
                    meta,
                    completing: false,
                },
            );
        }
        TxnCoordinator {
            store,
            txns: Mutex::new(txns),
            timeout_ms_max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Txns> {
        self.txns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every transactional id's state, sorted by id.
    pub fn list(&self) -> Vec<TxnMeta> {
        let mut out: Vec<TxnMeta> = self.lock().by_id.values().map(|e| e.meta.clone()).collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    /// One transactional id's state.
    pub fn describe(&self, transactional_id: &str) -> Option<TxnMeta> {
        self.lock().by_id.get(transactional_id).map(|e| e.meta.clone())
    }

    /// Open transactions (`Ongoing` or being completed).
    pub fn open_count(&self) -> usize {
        self.lock()
            .by_id
            .values()
            .filter(|e| e.meta.state == TxnState::Ongoing || e.meta.state.is_prepare())
            .count()
    }

    /// True when a transaction that is not complete yet will commit an offset of
    /// `group`/`topic`/`partition` (OffsetFetch with `require_stable`).
    pub fn has_pending_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.lock().by_id.values().any(|e| {
            (e.meta.state == TxnState::Ongoing || e.meta.state.is_prepare())
                && e.meta
                    .offsets
                    .iter()
                    .any(|o| o.group == group && o.topic == topic && o.partition == partition)
        })
    }

    /// Checks that a transactional batch of `producer_id` at `epoch` may go to
    /// `topic`/`partition`: the producer's transaction is open and holds the partition.
    pub fn check_produce(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        let txns = self.lock();
        let entry = txns
            .by_producer
            .get(&producer_id)
            .and_then(|id| txns.by_id.get(id))
            .ok_or(TxnError::InvalidProducerIdMapping {
                received: producer_id,
            })?;
        let meta = &entry.meta;
        check_epoch(meta, producer_id, epoch)?;
        let key = (topic.to_string(), partition);
        if meta.state != TxnState::Ongoing || !meta.partitions.contains(&key) {
            return Err(TxnError::InvalidState {
                state: meta.state,
                what: "produce to a partition not added to the transaction",
            });
        }
        Ok(())
    }

    /// Writes `meta` to the log; the handle resolves once it is on disk.
    fn persist(&self, meta: &TxnMeta) -> Result<rivulet_log::Durable> {
        self.store.write(meta)
    }

    /// Forgets transactional ids idle (no open transaction) for longer than
    /// [`TRANSACTIONAL_ID_EXPIRATION_MS`]; returns how many.
    pub(crate) fn expire_idle(&self, now_ms: i64) -> usize {
        let mut txns = self.lock();
        let idle: Vec<String> = txns
            .by_id
            .values()
            .filter(|e| {
                !e.completing
                    && !matches!(
                        e.meta.state,
                        TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
                    )
                    && now_ms - e.meta.updated_ms > TRANSACTIONAL_ID_EXPIRATION_MS
            })
            .map(|e| e.meta.transactional_id.clone())
            .collect();
        let mut forgotten = 0;
        for id in idle {
            if let Err(e) = self.store.forget(&id) {
                tracing::warn!(transactional_id = %id, error = %e, "Cannot forget an idle transactional id");
                break;
            }
            if let Some(entry) = txns.by_id.remove(&id) {
                txns.by_producer.remove(&entry.meta.producer_id);
            }
            forgotten += 1;
        }
        forgotten
    }

    pub(crate) fn maintain(&self, now_ms: i64) -> Result<()> {
        self.store.maintain(now_ms)
    }

    pub(crate) fn close(&self) -> Result<()> {
        self.store.close()
    }
}

/// The request's producer id and epoch against the id's current ones.
fn check_epoch(meta: &TxnMeta, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
    if producer_id != meta.producer_id {
        return Err(TxnError::InvalidProducerIdMapping {
            received: producer_id,
        });
    }
    if epoch != meta.producer_epoch {
        return Err(TxnError::ProducerFenced {
            current: meta.producer_epoch,
            received: epoch,
        });
    }
    Ok(())
}

/// A transaction error of `transactional_id` as a broker error.
pub(crate) fn txn_error(transactional_id: &str, error: TxnError) -> BrokerError {
    BrokerError::Transaction {
        transactional_id: transactional_id.to_string(),
        error,
    }
}
