//! Errors of the stream processing engine.

/// What can go wrong building or running a job.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A job or option is not valid.
    #[error("invalid job configuration: {0}")]
    Config(String),
    /// The broker connection failed.
    #[error(transparent)]
    Sdk(#[from] rivulet_sdk::SdkError),
    /// A changelog record could not be read back.
    #[error("changelog record of partition {partition} at offset {offset} is not valid: {reason}")]
    Changelog {
        /// Changelog partition.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// Why it is not valid.
        reason: String,
    },
    /// The local state store failed.
    #[error("local state: {0}")]
    State(String),
    /// State or a result could not be encoded.
    #[error("encoding failed: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Results of the engine.
pub type Result<T, E = StreamError> = std::result::Result<T, E>;
