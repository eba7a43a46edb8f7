//! Errors of the SDK.

use std::fmt;

/// What can go wrong in the SDK (not in a handler: see [`HandlerError`]).
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The embedded broker refused or failed a request.
    #[cfg(feature = "embedded")]
    #[error("embedded broker: {0}")]
    Broker(#[from] rivulet_broker::BrokerError),
    /// The Kafka client failed.
    #[cfg(feature = "kafka")]
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The event store refused or failed a request.
    #[error("event store: {0}")]
    EventStore(String),
    /// An event's data did not serialize.
    #[error("encoding event data: {0}")]
    Encode(#[source] serde_json::Error),
    /// A record is not a valid CloudEvent or its data does not match the expected type.
    #[error("decoding event: {0}")]
    Decode(String),
    /// A topic does not exist.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// Stored records did not decode.
    #[error("stored records do not decode: {0}")]
    Corrupt(String),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Config(String),
    /// A published record was not delivered.
    #[error("record not delivered: {0}")]
    Delivery(String),
    /// An operation did not finish in time.
    #[error("timed out {0}")]
    Timeout(String),
    /// The client or subscription is shutting down.
    #[error("shut down")]
    Closed,
}

/// Result with [`SdkError`].
pub type Result<T, E = SdkError> = std::result::Result<T, E>;

/// A handler's failure. Transient failures are retried with backoff; permanent ones go to
/// the dead-letter topic at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
    permanent: bool,
}

impl HandlerError {
    /// A failure worth retrying (a timeout, an unavailable dependency).
    pub fn transient(message: impl Into<String>) -> HandlerError {
        HandlerError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure that retrying cannot fix (an invalid event); goes straight to the
    /// dead-letter topic.
    pub fn permanent(message: impl Into<String>) -> HandlerError {
        HandlerError {
            message: message.into(),
            permanent: true,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when retries are skipped.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HandlerError {}

impl From<SdkError> for HandlerError {
    fn from(e: SdkError) -> Self {
        match e {
            SdkError::Decode(_) => HandlerError::permanent(e.to_string()),
            other => HandlerError::transient(other.to_string()),
        }
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        HandlerError::transient(message)
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        HandlerError::transient(message)
    }
}
