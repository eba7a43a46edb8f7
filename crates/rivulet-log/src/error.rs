//! Errors returned by the log.

use std::io;
use std::path::PathBuf;

/// Why a record batch was rejected on append.
///
/// Every variant carries a stable numeric code (see [`BatchError::code`]) so that front ends
/// can map it to their own wire error codes without matching on text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The bytes are shorter than a RecordBatch v2 header (61 bytes).
    #[error("batch of {len_bytes} bytes is shorter than the 61-byte record batch header")]
    TooShort {
        /// Length of the bytes that were offered.
        len_bytes: usize,
    },
    /// The batchLength field does not match the bytes that were offered.
    #[error("batch length field says {declared_bytes} bytes but {actual_bytes} follow it")]
    LengthMismatch {
        /// What the header's batchLength field declared (bytes after the field).
        declared_bytes: i64,
        /// What actually follows the field.
        actual_bytes: usize,
    },
    /// The batch is larger than the log accepts.
    #[error("batch of {len_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    TooLarge {
        /// Size of the batch.
        len_bytes: usize,
        /// The configured maximum (`max.message.bytes`).
        limit_bytes: usize,
    },
    /// Magic byte other than 2 (only RecordBatch v2 is stored).
    #[error("unsupported record batch magic {magic} (only v2 is accepted)")]
    BadMagic {
        /// The magic byte found.
        magic: i8,
    },
    /// The CRC-32C over attributes..end does not match the header.
    #[error("CRC mismatch: header says {expected:#010x}, bytes hash to {actual:#010x}")]
    CrcMismatch {
        /// CRC stored in the header.
        expected: u32,
        /// CRC computed over the bytes.
        actual: u32,
    },
    /// The record count is zero, negative, or disagrees with lastOffsetDelta.
    #[error("record count {record_count} does not fit last offset delta {last_offset_delta}")]
    BadRecordCount {
        /// The header's record count.
        record_count: i32,
        /// The header's lastOffsetDelta.
        last_offset_delta: i32,
    },
    /// A record inside an uncompressed batch is malformed or its offset delta is out of order.
    #[error("record {index} is malformed: {reason}")]
    BadRecord {
        /// Position of the record within the batch.
        index: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The batch uses a compression codec id that does not exist.
    #[error("unknown compression codec {codec}")]
    BadCompression {
        /// The codec id from the attributes.
        codec: i16,
    },
    /// The records of a compressed batch do not decompress (or inflate beyond the bound).
    #[error("compressed records (codec {codec}) do not decompress: {reason}")]
    Decompress {
        /// The codec.
        codec: i16,
        /// What went wrong.
        reason: String,
    },
    /// A producer sent a control batch; only the transaction coordinator writes markers.
    #[error("control batches are written by the transaction coordinator, not by producers")]
    ControlFromProducer,
    /// A record's CreateTime lies outside the topic's `message.timestamp.before.max.ms` /
    /// `.after.max.ms` window around the broker's clock.
    #[error("timestamp {timestamp_ms} is out of range: the topic accepts [{low_ms}, {high_ms}]")]
    TimestampOutOfRange {
        /// The record's timestamp.
        timestamp_ms: i64,
        /// The oldest timestamp accepted now.
        low_ms: i64,
        /// The newest timestamp accepted now.
        high_ms: i64,
    },
}

impl BatchError {
    /// A stable numeric code for this error; codes are never reused.
    pub fn code(&self) -> u32 {
        match self {
            BatchError::TooShort { .. } => 1001,
            BatchError::LengthMismatch { .. } => 1002,
            BatchError::TooLarge { .. } => 1003,
            BatchError::BadMagic { .. } => 1004,
            BatchError::CrcMismatch { .. } => 1005,
            BatchError::BadRecordCount { .. } => 1006,
            BatchError::BadRecord { .. } => 1007,
            BatchError::BadCompression { .. } => 1008,
            BatchError::Decompress { .. } => 1009,
            BatchError::ControlFromProducer => 1010,
            BatchError::TimestampOutOfRange { .. } => 1011,
        }
    }
}

/// Errors from the partition log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O operation failed. `path` names the file or directory involved.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the log was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A batch offered for append was invalid; nothing was written.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// Stored bytes failed validation on read; nothing corrupt is returned.
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte position within the segment.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// The requested offset is outside `[log_start_offset, log_end_offset]`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// First offset still in the log.
        log_start_offset: i64,
        /// Next offset to be assigned.
        log_end_offset: i64,
    },
    /// An idempotent producer's batch skipped sequence numbers.
    #[error("producer {producer_id}: expected sequence {expected}, got {received}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The next sequence the log expected.
        expected: i32,
        /// The batch's base sequence.
        received: i32,
    },
    /// An idempotent producer used an epoch older than one already seen.
    #[error("producer {producer_id}: epoch {received} is older than {current}")]
    ProducerFenced {
        /// The producer id.
        producer_id: i64,
        /// The newest epoch seen for this producer.
        current: i16,
        /// The batch's epoch.
        received: i16,
    },
    /// The log was closed or deleted.
    #[error("the log at {path} is closed")]
    Closed {
        /// The partition directory.
        path: PathBuf,
    },
    /// A configuration value is out of range.
    #[error("invalid log config: {0}")]
    Config(String),
}

impl LogError {
    /// A stable numeric code for this error; codes are never reused.
    pub fn code(&self) -> u32 {
        match self {
            LogError::Io { .. } => 2001,
            LogError::InvalidBatch(e) => e.code(),
            LogError::Corrupt { .. } => 2002,
            LogError::OffsetOutOfRange { .. } => 2003,
            LogError::OutOfOrderSequence { .. } => 2004,
            LogError::ProducerFenced { .. } => 2005,
            LogError::Closed { .. } => 2006,
            LogError::Config(_) => 2007,
        }
    }

    /// True when the error came from the disk being full (ENOSPC or EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        match self {
            LogError::Io { source, .. } => matches!(source.raw_os_error(), Some(28) | Some(122)),
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| LogError::Io { op, path, source }
    }
}

/// Result alias for log operations.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
