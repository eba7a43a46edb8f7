//! JSON errors: `{"error_code": N, "message": "..."}` with a matching HTTP status.
//!
//! `error_code` is stable: the HTTP status times 100 plus a detail number, as Confluent's
//! REST Proxy does (40401 unknown topic, ...). Codes are never reused.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rivulet_broker::{BatchError, BrokerError, GroupError, LogError, TxnError};
use serde_json::json;

/// An error answered to an HTTP client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({error_code})")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable numeric code.
    pub error_code: u32,
    /// What went wrong and, where possible, what to do.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, error_code: u32, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error_code,
            message: message.into(),
        }
    }

    /// 400: the request body or parameters are malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, 40001, message)
    }

    /// 404: no such topic.
    pub fn unknown_topic(topic: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            40401,
            format!("topic {topic:?} does not exist; create it with POST /v1/topics"),
        )
    }

    /// 404: no such partition.
    pub fn unknown_partition(topic: &str, partition: i32, count: usize) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            40402,
            format!("topic {topic:?} has partitions 0..{count}, not {partition}"),
        )
    }

    /// 404: no such group.
    pub fn unknown_group(group: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            40403,
            format!("group {group:?} does not exist"),
        )
    }

    /// 500: something failed inside the broker.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, message)
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> ApiError {
        if e.is_disk_full() {
            return ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                50701,
                format!("{e}; free disk space, then retry"),
            );
        }
        match &e {
            LogError::InvalidBatch(BatchError::TooLarge { .. }) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                41302,
                format!("{e}; send smaller records"),
            ),
            LogError::InvalidBatch(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, e.to_string())
            }
            LogError::OffsetOutOfRange { .. } => {
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, 41601, e.to_string())
            }
            LogError::OutOfOrderSequence { .. } | LogError::ProducerFenced { .. } => {
                ApiError::new(StatusCode::CONFLICT, 40903, e.to_string())
            }
            LogError::Closed { .. } => ApiError::new(
                StatusCode::NOT_FOUND,
                40405,
                format!("{e}; the topic was deleted"),
            ),
            LogError::Io { .. } | LogError::Corrupt { .. } | LogError::Config(_) => {
                tracing::error!(error = %e, "Storage error");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> ApiError {
        match e {
            BrokerError::Log(e) => e.into(),
            BrokerError::UnknownTopic(t) => ApiError::unknown_topic(&t),
            BrokerError::UnknownPartition {
                topic,
                partition,
                count,
            } => ApiError::unknown_partition(&topic, partition, count),
            BrokerError::TopicExists(_) => ApiError::new(StatusCode::CONFLICT, 40901, e.to_string()),
            BrokerError::InvalidTopicName { .. }
            | BrokerError::InvalidPartitions { .. }
            | BrokerError::PartitionsOnlyGrow { .. }
            | BrokerError::InvalidReplicationFactor(_)
            | BrokerError::InvalidConfig { .. }
            | BrokerError::InvalidRecord(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, 42202, e.to_string())
            }
            BrokerError::LimitReached(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, 42901, e.to_string())
            }
            BrokerError::Group { ref group, error } => group_error(group, error),
            BrokerError::Transaction { error, .. } => match error {
                TxnError::NotFound => ApiError::new(StatusCode::NOT_FOUND, 40406, e.to_string()),
                TxnError::ProducerFenced { .. }
                | TxnError::InvalidProducerIdMapping { .. }
                | TxnError::InvalidState { .. }
                | TxnError::Concurrent
                | TxnError::InvalidTimeout { .. } => {
                    ApiError::new(StatusCode::CONFLICT, 40906, e.to_string())
                }
            },
            BrokerError::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, 50302, e.to_string()),
            BrokerError::NotAuthorized(_) => ApiError::new(StatusCode::FORBIDDEN, 40302, e.to_string()),
            BrokerError::Io { .. }
            | BrokerError::CorruptMetadata { .. }
            | BrokerError::DataDirLocked { .. } => {
                tracing::error!(error = %e, "Broker error");
                ApiError::internal(e.to_string())
            }
        }
    }
}

/// A group's refusal as an HTTP error.
pub(crate) fn group_error(group: &str, error: GroupError) -> ApiError {
    match error {
        GroupError::InconsistentGroupProtocol => ApiError::new(
            StatusCode::CONFLICT,
            40904,
            format!("group {group:?} is in use by Kafka consumers; use another group name"),
        ),
        GroupError::NonEmptyGroup => ApiError::new(
            StatusCode::CONFLICT,
            40902,
            format!("group {group:?} has active members; stop them first"),
        ),
        GroupError::GroupIdNotFound => ApiError::unknown_group(group),
        GroupError::GroupMaxSizeReached => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            42902,
            format!("group {group:?}: too many members or groups"),
        ),
        GroupError::InvalidGroupId => ApiError::bad_request("the group name is empty"),
        GroupError::UnknownMemberId
        | GroupError::IllegalGeneration
        | GroupError::RebalanceInProgress
        | GroupError::MemberIdRequired
        | GroupError::InvalidSessionTimeout
        | GroupError::FencedInstanceId
        | GroupError::FencedMemberEpoch
        | GroupError::StaleMemberEpoch
        | GroupError::UnreleasedInstanceId
        | GroupError::InvalidRequest
        | GroupError::InvalidRegularExpression
        | GroupError::InvalidRecordState => {
            ApiError::new(StatusCode::CONFLICT, 40905, format!("group {group:?}: {error}"))
        }
        GroupError::StorageFailed => ApiError::internal(format!("group {group:?}: storing offsets failed")),
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::bad_request(format!("bad query parameters: {}", r.body_text()))
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> ApiError {
        ApiError::bad_request(format!("bad path: {}", r.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.error_code, message = %self.message, "HTTP request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), code = self.error_code, message = %self.message, "HTTP request refused");
        }
        let body = json!({"error_code": self.error_code, "message": self.message});
        (self.status, Json(body)).into_response()
    }
}
