//! Errors as the KurrentDB clients decode them: a status code, a message in the shape they
//! parse, and trailers (`exception` and its companions) naming what went wrong.

use rivulet_eventstore::{EventStoreError, ExpectedState};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::convert::expected_number;

/// A status with trailers.
pub(crate) fn with_trailers(code: Code, message: String, trailers: &[(&'static str, String)]) -> Status {
    let mut map = MetadataMap::new();
    for (key, value) in trailers {
        if let Ok(v) = value.parse() {
            map.insert(*key, v);
        }
    }
    Status::with_metadata(code, message, map)
}

/// A malformed request.
pub(crate) fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// The concurrency check failed (deletes, tombstones; appends answer in their message).
pub(crate) fn wrong_expected_version(
    op: &str,
    stream: &str,
    expected: ExpectedState,
    actual: Option<u64>,
) -> Status {
    let expected = expected_number(expected);
    let actual = actual.map_or(-1, |a| a as i64);
    with_trailers(
        Code::FailedPrecondition,
        format!("{op} failed due to WrongExpectedVersion. Stream: {stream}, Expected version: {expected}, Actual version: {actual}"),
        &[
            ("exception", "wrong-expected-version".into()),
            ("stream-name", stream.to_string()),
            ("expected-version", expected.to_string()),
            ("actual-version", actual.to_string()),
        ],
    )
}

/// The stream was tombstoned.
pub(crate) fn stream_deleted(stream: &str) -> Status {
    with_trailers(
        Code::FailedPrecondition,
        format!("Event stream '{stream}' is deleted."),
        &[
            ("exception", "stream-deleted".into()),
            ("stream-name", stream.to_string()),
        ],
    )
}

/// Refused by the ACLs.
pub(crate) fn access_denied() -> Status {
    with_trailers(
        Code::PermissionDenied,
        "Access Denied".into(),
        &[("exception", "access-denied".into())],
    )
}

/// An event store error as a status.
pub(crate) fn status_of(op: &str, e: EventStoreError) -> Status {
    match e {
        EventStoreError::WrongExpectedState {
            stream,
            expected,
            actual,
        } => wrong_expected_version(op, &stream, expected, actual),
        EventStoreError::StreamDeleted(stream) => stream_deleted(&stream),
        EventStoreError::StreamNotFound(stream) => with_trailers(
            Code::NotFound,
            format!("Event stream '{stream}' is not found."),
            &[("exception", "stream-not-found".into()), ("stream-name", stream)],
        ),
        e @ EventStoreError::EventIdsReused { .. } => Status::failed_precondition(e.to_string()),
        EventStoreError::GroupExists { stream, group } => with_trailers(
            Code::AlreadyExists,
            format!("Subscription group {group} on stream {stream} exists."),
            &[
                ("exception", "persistent-subscription-exists".into()),
                ("stream-name", stream),
                ("group-name", group),
            ],
        ),
        EventStoreError::GroupNotFound { stream, group } => with_trailers(
            Code::NotFound,
            format!("Subscription group {group} on stream {stream} does not exist."),
            &[
                ("exception", "persistent-subscription-does-not-exist".into()),
                ("stream-name", stream),
                ("group-name", group),
            ],
        ),
        EventStoreError::GroupFull { stream, group } => with_trailers(
            Code::FailedPrecondition,
            format!("Maximum subscriptions reached: group {group} on stream {stream}."),
            &[
                ("exception", "maximum-subscribers-reached".into()),
                ("stream-name", stream),
                ("group-name", group),
            ],
        ),
        EventStoreError::Invalid(m) => Status::invalid_argument(m),
        EventStoreError::Broker(rivulet_broker::BrokerError::InvalidRecord(m)) => with_trailers(
            Code::InvalidArgument,
            m,
            &[
                ("exception", "maximum-append-size-exceeded".into()),
                ("maximum-append-size", crate::APPEND_BYTES_MAX.to_string()),
            ],
        ),
        e @ EventStoreError::Broker(_) => Status::unavailable(e.to_string()),
        e @ (EventStoreError::Index(_) | EventStoreError::Foreign { .. }) => Status::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailer<'a>(s: &'a Status, key: &str) -> Option<&'a str> {
        s.metadata().get(key).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn wrong_expected_version_carries_what_the_clients_parse() {
        let s = status_of(
            "Delete",
            EventStoreError::WrongExpectedState {
                stream: "order-1".into(),
                expected: ExpectedState::Revision(3),
                actual: Some(5),
            },
        );
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(trailer(&s, "exception"), Some("wrong-expected-version"));
        assert_eq!(trailer(&s, "actual-version"), Some("5"));
        assert_eq!(
            s.message(),
            "Delete failed due to WrongExpectedVersion. Stream: order-1, Expected version: 3, Actual version: 5"
        );
        let none = wrong_expected_version("Delete", "x", ExpectedState::StreamExists, None);
        assert_eq!(trailer(&none, "expected-version"), Some("-4"));
        assert_eq!(trailer(&none, "actual-version"), Some("-1"));
        let deleted = status_of("Read", EventStoreError::StreamDeleted("gone".into()));
        assert_eq!(trailer(&deleted, "exception"), Some("stream-deleted"));
        assert_eq!(trailer(&deleted, "stream-name"), Some("gone"));
    }
}
