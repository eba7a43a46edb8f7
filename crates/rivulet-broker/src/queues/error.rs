//! Why a queue operation was refused. Codes are stable; front ends map each variant to
//! their protocol's reply (AMQP: 404, 403, 405, 406, 506).

use crate::error::BrokerError;
use crate::routing::RoutingError;

/// Errors of queue declarations, bindings, publishing and settlement.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No queue or exchange of that name.
    #[error("{0}")]
    NotFound(String),
    /// The name is reserved, or the queue belongs to another connection's exclusive use.
    #[error("{0}")]
    AccessRefused(String),
    /// An exclusive queue is in use by another connection.
    #[error("{0}")]
    ResourceLocked(String),
    /// The queue or exchange exists with other properties, an argument is invalid, or a
    /// conditional delete found it in use.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A limit on queues, exchanges or bindings.
    #[error("{0}")]
    LimitReached(String),
    /// The broker's storage failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl QueueError {
    /// A stable numeric code.
    pub fn code(&self) -> u32 {
        match self {
            QueueError::NotFound(_) => 7001,
            QueueError::AccessRefused(_) => 7002,
            QueueError::ResourceLocked(_) => 7003,
            QueueError::PreconditionFailed(_) => 7004,
            QueueError::LimitReached(_) => 7005,
            QueueError::Broker(e) => e.code(),
        }
    }
}

impl From<RoutingError> for QueueError {
    fn from(e: RoutingError) -> QueueError {
        match e {
            RoutingError::NotFound(name) => {
                QueueError::NotFound(format!("no exchange '{name}' in vhost '/'"))
            }
            RoutingError::AccessRefused(m) => QueueError::AccessRefused(m),
            RoutingError::PreconditionFailed(m) => QueueError::PreconditionFailed(m),
            RoutingError::InUse(name) => QueueError::PreconditionFailed(format!("exchange '{name}' in use")),
            RoutingError::LimitReached(m) => QueueError::LimitReached(m),
        }
    }
}

/// Results of queue operations.
pub type Result<T> = std::result::Result<T, QueueError>;
