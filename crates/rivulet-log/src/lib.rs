//! Rivulet's durable partition log.
//!
//! Each topic partition is a directory of segment files holding Kafka RecordBatch v2 bytes
//! exactly as producers sent them, with only the base offset rewritten. Appends are
//! validated (length, magic, CRC-32C, record count, offset deltas), deduplicated for
//! idempotent producers, and made durable according to the partition's [`FsyncPolicy`]; with
//! the default `Always`, concurrent appends share one fdatasync (group commit).
//!
//! Recovery after a crash scans what the index files do not vouch for, truncates a torn
//! tail and rebuilds the indexes; nothing that fails validation is ever served.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rivulet_log::LogError> {
//! use rivulet_log::{batch, record::Record, Log, LogConfig};
//! let log = Log::open("/tmp/rivulet-demo/orders-0", LogConfig::default())?;
//! let bytes = batch::build(0, 1_700_000_000_000, None, &[Record::new(None, Some(b"hi".to_vec()))]);
//! let at = log.append(&bytes)?;
//! at.durable.clone().wait().await?;
//! let read = log.read(at.base_offset, 1 << 20)?;
//! assert!(!read.records.is_empty());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod batch;
mod compact;
pub mod config;
mod durable;
pub mod error;
mod flusher;
mod index;
pub mod journal;
mod log;
mod producer;
mod reaper;
mod recent;
pub mod record;
pub mod records;
mod rewrite;
mod segment;
pub mod storage;
pub mod txn;

pub use config::{CleanupPolicy, FsyncPolicy, LogConfig, TimestampBounds};
pub use durable::Durable;
pub use error::{BatchError, LogError, Result};
pub use flusher::{default_flush_threads, FlushPool, FsyncObserver, FLUSH_THREADS_MAX};
pub use journal::{Journal, JournalConfig, JournalStats};
pub use log::{
    now_ms, Activity, AppendOutcome, FileSlice, Log, LogContext, ReadResult, SliceRead, TimestampOffset,
    WRITEBACK_BYTES,
};
pub use producer::ProducerSnapshot;
pub use reaper::retire_dir;
pub use records::{Records, StoredRecord, UndecodableBatch};
pub use txn::{AbortedTxn, Isolation, Marker};
