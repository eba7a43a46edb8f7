//! The event store's errors, each with a stable numeric code front ends pass on.

use rivulet_broker::BrokerError;

use crate::model::ExpectedState;

/// Result of an event store call.
pub type Result<T> = std::result::Result<T, EventStoreError>;

/// Why an event store call failed.
#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    /// The stream is not in the expected state; `actual` is its last revision, `None` when it
    /// has no events (never written or deleted).
    #[error("stream '{stream}': expected {expected}, but {}", describe_actual(*.actual))]
    WrongExpectedState {
        /// The stream.
        stream: String,
        /// What the append expected.
        expected: ExpectedState,
        /// The stream's current revision.
        actual: Option<u64>,
    },
    /// The stream was deleted for good (tombstoned).
    #[error("stream '{0}' is deleted for good (tombstoned); its name cannot be used again")]
    StreamDeleted(String),
    /// The stream has no events to read.
    #[error("stream '{0}' not found")]
    StreamNotFound(String),
    /// Some of the append's event ids are already in the stream, but not as exactly this
    /// append (same ids, same order): it is neither new nor a repeat.
    #[error("stream '{stream}': event id {id} was already appended, in another append")]
    EventIdsReused {
        /// The stream.
        stream: String,
        /// The first id found.
        id: uuid::Uuid,
    },
    /// A persistent subscription group of that name already exists on that source.
    #[error("persistent subscription group '{group}' on '{stream}' already exists")]
    GroupExists {
        /// The stream, or `$all`.
        stream: String,
        /// The group.
        group: String,
    },
    /// No persistent subscription group of that name on that source.
    #[error("persistent subscription group '{group}' on '{stream}' does not exist")]
    GroupNotFound {
        /// The stream, or `$all`.
        stream: String,
        /// The group.
        group: String,
    },
    /// The group has as many consumers as its settings allow.
    #[error("persistent subscription group '{group}' on '{stream}' has its maximum number of consumers")]
    GroupFull {
        /// The stream, or `$all`.
        stream: String,
        /// The group.
        group: String,
    },
    /// The request itself is wrong (an empty append, a bad name, too many events).
    #[error("{0}")]
    Invalid(String),
    /// The broker refused or failed the write or read.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The index failed (its file, a transaction).
    #[error("event store index: {0}")]
    Index(String),
    /// The log holds a record the store did not write (something else produced to its topic).
    #[error("event store log: record at position {position} is not an event store record: {reason}")]
    Foreign {
        /// Where.
        position: u64,
        /// What is wrong with it.
        reason: String,
    },
}

fn describe_actual(actual: Option<u64>) -> String {
    match actual {
        Some(r) => format!("its last revision is {r}"),
        None => "it has no events".to_string(),
    }
}

impl EventStoreError {
    /// A stable numeric code: the HTTP status times 100 plus a number within it, distinct
    /// from the HTTP gateway's other codes.
    pub fn code(&self) -> u32 {
        match self {
            EventStoreError::WrongExpectedState { .. } => 40_910,
            EventStoreError::EventIdsReused { .. } => 40_911,
            EventStoreError::StreamDeleted(_) => 41_001,
            EventStoreError::StreamNotFound(_) => 40_411,
            EventStoreError::GroupNotFound { .. } => 40_412,
            EventStoreError::GroupExists { .. } => 40_912,
            EventStoreError::GroupFull { .. } => 40_913,
            EventStoreError::Invalid(_) => 40_001,
            EventStoreError::Broker(_) => 50_001,
            EventStoreError::Index(_) => 50_010,
            EventStoreError::Foreign { .. } => 50_011,
        }
    }
}

macro_rules! index_error {
    ($($t:ty),*) => {$(
        impl From<$t> for EventStoreError {
            fn from(e: $t) -> Self {
                EventStoreError::Index(e.to_string())
            }
        }
    )*};
}

index_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
