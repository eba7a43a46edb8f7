//! Broker errors as Kafka error codes. Every match is exhaustive: a new error variant does
//! not compile until it has a code.

use rivulet_broker::{BatchError, BrokerError, GroupError, LogError, TxnError};

use crate::errors as ec;

/// Kafka error code for a broker error.
pub fn broker_error_code(e: &BrokerError) -> i16 {
    match e {
        BrokerError::Log(e) => log_error_code(e),
        BrokerError::InvalidTopicName { .. } => ec::INVALID_TOPIC_EXCEPTION,
        BrokerError::TopicExists(_) => ec::TOPIC_ALREADY_EXISTS,
        BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => ec::UNKNOWN_TOPIC_OR_PARTITION,
        BrokerError::InvalidPartitions { .. } | BrokerError::PartitionsOnlyGrow { .. } => {
            ec::INVALID_PARTITIONS
        }
        BrokerError::InvalidReplicationFactor(_) => ec::INVALID_REPLICATION_FACTOR,
        BrokerError::InvalidConfig { .. } => ec::INVALID_CONFIG,
        BrokerError::LimitReached(_) => ec::POLICY_VIOLATION,
        BrokerError::Io { .. } | BrokerError::CorruptMetadata { .. } | BrokerError::DataDirLocked { .. } => {
            ec::KAFKA_STORAGE_ERROR
        }
        BrokerError::ShuttingDown => ec::COORDINATOR_NOT_AVAILABLE,
        BrokerError::NotAuthorized(_) => ec::TOPIC_AUTHORIZATION_FAILED,
        BrokerError::InvalidRecord(_) => ec::INVALID_RECORD,
        BrokerError::Group { error, .. } => group_error_code(*error),
        BrokerError::Transaction { error, .. } => txn_error_code(*error, false),
    }
}

/// Kafka error code for a transaction coordinator error. `fenced_code`: the request
/// version knows PRODUCER_FENCED (KIP-588); older ones get INVALID_PRODUCER_EPOCH.
pub fn txn_error_code(e: TxnError, fenced_code: bool) -> i16 {
    match e {
        TxnError::ProducerFenced { .. } if fenced_code => ec::PRODUCER_FENCED,
        TxnError::ProducerFenced { .. } => ec::INVALID_PRODUCER_EPOCH,
        TxnError::InvalidProducerIdMapping { .. } => ec::INVALID_PRODUCER_ID_MAPPING,
        TxnError::InvalidState { .. } => ec::INVALID_TXN_STATE,
        TxnError::Concurrent => ec::CONCURRENT_TRANSACTIONS,
        TxnError::InvalidTimeout { .. } => ec::INVALID_TRANSACTION_TIMEOUT,
        TxnError::NotFound => ec::TRANSACTIONAL_ID_NOT_FOUND,
    }
}

/// [`broker_error_code`] for a transactional API whose version decides the fencing code.
pub fn txn_broker_error_code(e: &BrokerError, fenced_code: bool) -> i16 {
    match e {
        BrokerError::Transaction { error, .. } => txn_error_code(*error, fenced_code),
        other => broker_error_code(other),
    }
}

/// Kafka error code for a log error.
pub fn log_error_code(e: &LogError) -> i16 {
    match e {
        LogError::InvalidBatch(b) => batch_error_code(b),
        LogError::OutOfOrderSequence { .. } => ec::OUT_OF_ORDER_SEQUENCE_NUMBER,
        LogError::ProducerFenced { .. } => ec::INVALID_PRODUCER_EPOCH,
        LogError::OffsetOutOfRange { .. } => ec::OFFSET_OUT_OF_RANGE,
        LogError::Closed { .. } => ec::UNKNOWN_TOPIC_OR_PARTITION,
        LogError::Io { .. } | LogError::Corrupt { .. } => ec::KAFKA_STORAGE_ERROR,
        LogError::Config(_) => ec::INVALID_CONFIG,
    }
}

/// Kafka error code for a batch a producer sent.
pub fn batch_error_code(e: &BatchError) -> i16 {
    match e {
        BatchError::TooLarge { .. } => ec::MESSAGE_TOO_LARGE,
        BatchError::TooShort { .. }
        | BatchError::LengthMismatch { .. }
        | BatchError::BadMagic { .. }
        | BatchError::CrcMismatch { .. }
        | BatchError::BadRecordCount { .. }
        | BatchError::BadRecord { .. }
        | BatchError::BadCompression { .. }
        | BatchError::Decompress { .. } => ec::CORRUPT_MESSAGE,
        BatchError::ControlFromProducer => ec::INVALID_RECORD,
        BatchError::TimestampOutOfRange { .. } => ec::INVALID_TIMESTAMP,
    }
}

/// Kafka error code for a group error.
pub fn group_error_code(e: GroupError) -> i16 {
    match e {
        GroupError::UnknownMemberId => ec::UNKNOWN_MEMBER_ID,
        GroupError::IllegalGeneration => ec::ILLEGAL_GENERATION,
        GroupError::RebalanceInProgress => ec::REBALANCE_IN_PROGRESS,
        GroupError::InconsistentGroupProtocol => ec::INCONSISTENT_GROUP_PROTOCOL,
        GroupError::MemberIdRequired => ec::MEMBER_ID_REQUIRED,
        GroupError::InvalidSessionTimeout => ec::INVALID_SESSION_TIMEOUT,
        GroupError::GroupIdNotFound => ec::GROUP_ID_NOT_FOUND,
        GroupError::NonEmptyGroup => ec::NON_EMPTY_GROUP,
        GroupError::InvalidGroupId => ec::INVALID_GROUP_ID,
        GroupError::GroupMaxSizeReached => ec::GROUP_MAX_SIZE_REACHED,
        GroupError::StorageFailed => ec::COORDINATOR_NOT_AVAILABLE,
        GroupError::FencedInstanceId => ec::FENCED_INSTANCE_ID,
        GroupError::FencedMemberEpoch => ec::FENCED_MEMBER_EPOCH,
        GroupError::StaleMemberEpoch => ec::STALE_MEMBER_EPOCH,
        GroupError::UnreleasedInstanceId => ec::UNRELEASED_INSTANCE_ID,
        GroupError::InvalidRequest => ec::INVALID_REQUEST,
        GroupError::InvalidRegularExpression => ec::INVALID_REGULAR_EXPRESSION,
        GroupError::InvalidRecordState => ec::INVALID_RECORD_STATE,
    }
}

/// The code of an optional group error (`NONE` for success).
pub fn code_of(e: Option<GroupError>) -> i16 {
    e.map_or(ec::NONE, group_error_code)
}
