//! The data plane: the only way a front end reads or writes a partition.
//!
//! - [`produce`](crate::Broker::produce): RecordBatch bytes as a Kafka producer sent them,
//!   validated and appended; the outcome carries a [`rivulet_log::Durable`] handle to await
//!   (`acks=all`) or drop (`acks=0/1`; the sync was requested anyway).
//! - [`append_records`](crate::Broker::append_records): records the broker puts into
//!   batches itself (HTTP gateway, embedded SDK), partitioned by Kafka's murmur2 on the key,
//!   an explicit partition, or round-robin.
//! - [`read`](crate::Broker::read): whole stored batches from an offset up to a byte budget
//!   (Kafka Fetch hands them to clients byte for byte), and
//!   [`read_records`](crate::Broker::read_records): the same decoded into records.
//! - [`read_covering`](crate::Broker::read_covering): the batches holding given offset
//!   ranges (share group fetches).
//! - [`watch`](crate::Broker::watch): wait until any of a set of partitions has data past
//!   what a reader has, until a deadline or shutdown; no polling.
//!
//! Policy lives here too, once for every front end: topic auto-creation, partition range
//! errors, and the produced/fetched metrics (records and stored batch bytes).

mod append;
mod covering;
mod produce;
mod read;
mod scavenge;
mod watch;

pub(crate) use append::{build_batches, TxnSequence};
pub use append::{Appended, NewRecord, RecordPosition, BATCH_RECORDS_MAX};
pub use read::{ReadLimit, RecordsRead};
pub use watch::{DataWatch, Woke, WATCH_PARTITIONS_MAX};

/// Whether a call may create the topic it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Create an unknown topic when the broker's `auto_create_topics` allows it.
    IfAllowed,
    /// Never create; an unknown topic is an error.
    Never,
}
