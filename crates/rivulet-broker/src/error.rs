//! Errors returned by the broker core.

use std::io;
use std::path::PathBuf;

use rivulet_log::LogError;

/// Errors from topic, producer and offset management.
///
/// Every variant has a stable numeric code ([`BrokerError::code`]); codes are never reused.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A partition log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the broker was doing.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A topic name breaks Kafka's naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The offered name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The topic already exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// The topic does not exist (and was not auto-created).
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// The partition count is out of range.
    #[error("invalid partition count {count}: must be within [1, {max}]")]
    InvalidPartitions {
        /// The requested count.
        count: i32,
        /// The largest count accepted.
        max: i32,
    },
    /// Only replication factor 1 exists on a single node.
    #[error("invalid replication factor {0}: a single Rivulet node supports only 1")]
    InvalidReplicationFactor(i16),
    /// A topic config key is unknown or its value is invalid.
    #[error("invalid topic config {key}: {reason}")]
    InvalidConfig {
        /// The config key.
        key: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Stored metadata could not be parsed.
    #[error("corrupt metadata in {path}: {reason}")]
    CorruptMetadata {
        /// The metadata file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A limit was reached (topics, groups, members).
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// The broker is shutting down.
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// The user may not do this (see [`crate::acl`]).
    #[error("not authorized to {0}")]
    NotAuthorized(String),
    /// Another process has the data directory open.
    #[error("data directory {path} is in use by another process (lock file held)")]
    DataDirLocked {
        /// The lock file.
        path: PathBuf,
    },
    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has partitions 0..{count}, not {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        count: usize,
    },
    /// A record offered for append is unacceptable (before any of the request is written).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A group refused a broker-assigned member.
    #[error("consumer group {group:?}: {error}")]
    Group {
        /// The group.
        group: String,
        /// Why.
        error: crate::groups::GroupError,
    },
    /// A topic's partition count can only grow.
    #[error(
        "topic has {current} partitions; a new count must be larger (and at most {max}), not {requested}"
    )]
    PartitionsOnlyGrow {
        /// Partitions now.
        current: usize,
        /// The count asked for.
        requested: i32,
        /// The largest count accepted.
        max: u32,
    },
    /// The transaction coordinator refused a request.
    #[error("transactional id {transactional_id:?}: {error}")]
    Transaction {
        /// The transactional id.
        transactional_id: String,
        /// Why.
        error: crate::txn::TxnError,
    },
}

impl BrokerError {
    /// A stable numeric code for this error.
    pub fn code(&self) -> u32 {
        match self {
            BrokerError::Log(e) => e.code(),
            BrokerError::Io { .. } => 3001,
            BrokerError::InvalidTopicName { .. } => 3002,
            BrokerError::TopicExists(_) => 3003,
            BrokerError::UnknownTopic(_) => 3004,
            BrokerError::InvalidPartitions { .. } => 3005,
            BrokerError::InvalidReplicationFactor(_) => 3006,
            BrokerError::InvalidConfig { .. } => 3007,
            BrokerError::CorruptMetadata { .. } => 3008,
            BrokerError::LimitReached(_) => 3009,
            BrokerError::ShuttingDown => 3010,
            BrokerError::DataDirLocked { .. } => 3011,
            BrokerError::UnknownPartition { .. } => 3012,
            BrokerError::InvalidRecord(_) => 3013,
            BrokerError::Group { .. } => 3014,
            BrokerError::Transaction { error, .. } => error.code(),
            BrokerError::PartitionsOnlyGrow { .. } => 3015,
            BrokerError::NotAuthorized(_) => 3016,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| BrokerError::Io { op, path, source }
    }
}

/// Result alias for broker operations.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
