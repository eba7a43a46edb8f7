//! `Streams.BatchAppend`: one long-lived call carrying many appends, each a run of chunks
//! with the same correlation id, answered once its last chunk arrives. Appends of one call
//! run concurrently (they share the log's group commit), at most [`IN_FLIGHT_MAX`] at once.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use rivulet_eventstore::{EventStore, EventStoreError, ExpectedState, NewEvent};
use tokio::sync::{mpsc, Semaphore};
use tonic::{Code, Status, Streaming};

use crate::convert::{new_event, stream_name, uuid_of};
use crate::pb::event_store::client::streams::batch_append_req::options::ExpectedStreamPosition as ReqExpected;
use crate::pb::event_store::client::streams::batch_append_req::Options;
use crate::pb::event_store::client::streams::batch_append_resp::{self, success, ExpectedStreamPosition};
use crate::pb::event_store::client::streams::{BatchAppendReq, BatchAppendResp};
use crate::pb::event_store::client::wrong_expected_version as wev;
use crate::pb::event_store::client::{
    AllStreamPosition, BadRequest, MaximumAppendSizeExceeded, StreamDeleted, Unknown, Uuid,
    WrongExpectedVersion,
};
use crate::pb::google::rpc;
use crate::APPEND_BYTES_MAX;

/// Appends of one call being written at once, and batches being assembled.
pub(crate) const IN_FLIGHT_MAX: usize = 64;

/// One append being assembled from its chunks.
struct Building {
    correlation: Option<Uuid>,
    options: Option<Options>,
    events: Vec<NewEvent>,
    bytes: usize,
    failure: Option<rpc::Status>,
}

fn detail<M: Message>(code: Code, message: String, name: &str, detail: &M) -> rpc::Status {
    rpc::Status {
        code: code as i32,
        message,
        details: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/event_store.client.{name}"),
            value: detail.encode_to_vec(),
        }),
    }
}

fn bad_request(message: String) -> rpc::Status {
    detail(
        Code::InvalidArgument,
        message.clone(),
        "BadRequest",
        &BadRequest { message },
    )
}

/// Reads chunks until the client half-closes; each final chunk starts its append.
pub(crate) async fn run(
    store: EventStore,
    mut calls: Streaming<BatchAppendReq>,
    tx: mpsc::Sender<Result<BatchAppendResp, Status>>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let mut building: HashMap<u128, Building> = HashMap::new();
    loop {
        let message = match calls.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "BatchAppend call ended");
                break;
            }
        };
        let key = match uuid_of(message.correlation_id.as_ref()) {
            Ok(k) => k,
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        };
        if !building.contains_key(&key) && building.len() >= IN_FLIGHT_MAX {
            let _ = tx
                .send(Err(Status::resource_exhausted(format!(
                    "more than {IN_FLIGHT_MAX} unfinished batches in one call"
                ))))
                .await;
            return;
        }
        let b = building.entry(key).or_insert_with(|| Building {
            correlation: message.correlation_id.clone(),
            options: None,
            events: Vec::new(),
            bytes: 0,
            failure: None,
        });
        if message.options.is_some() {
            b.options = message.options;
        }
        for m in message.proposed_messages {
            b.bytes += m.data.len() + m.custom_metadata.len();
            if b.bytes > APPEND_BYTES_MAX || b.events.len() >= rivulet_eventstore::APPEND_EVENTS_MAX {
                b.failure.get_or_insert_with(|| {
                    let max = MaximumAppendSizeExceeded {
                        max_append_size: APPEND_BYTES_MAX as u32,
                    };
                    detail(
                        Code::InvalidArgument,
                        format!("Maximum Append Size of {APPEND_BYTES_MAX} Exceeded."),
                        "MaximumAppendSizeExceeded",
                        &max,
                    )
                });
                b.events.clear();
                continue;
            }
            match new_event(m.id.as_ref(), &m.metadata, m.custom_metadata, m.data) {
                Ok(e) if b.failure.is_none() => b.events.push(e),
                Ok(_) => {}
                Err(status) => {
                    b.failure
                        .get_or_insert_with(|| bad_request(status.message().to_string()));
                }
            }
        }
        if !message.is_final {
            continue;
        }
        let Some(done) = building.remove(&key) else {
            continue;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (store, tx) = (store.clone(), tx.clone());
        tokio::spawn(async move {
            let response = append(&store, done).await;
            let _ = tx.send(Ok(response)).await;
            drop(permit);
        });
    }
}

fn expected_of(e: Option<&ReqExpected>) -> ExpectedState {
    match e {
        Some(ReqExpected::StreamPosition(r)) => ExpectedState::Revision(*r),
        Some(ReqExpected::NoStream(_)) => ExpectedState::NoStream,
        Some(ReqExpected::StreamExists(_)) => ExpectedState::StreamExists,
        Some(ReqExpected::Any(_)) | None => ExpectedState::Any,
    }
}

fn echo(e: Option<&ReqExpected>) -> Option<ExpectedStreamPosition> {
    e.map(|e| match e {
        ReqExpected::StreamPosition(r) => ExpectedStreamPosition::StreamPosition(*r),
        ReqExpected::NoStream(()) => ExpectedStreamPosition::NoStream(()),
        ReqExpected::Any(()) => ExpectedStreamPosition::Any(()),
        ReqExpected::StreamExists(()) => ExpectedStreamPosition::StreamExists(()),
    })
}

fn wrong_expected(stream: &str, expected: ExpectedState, actual: Option<u64>) -> rpc::Status {
    let detail_msg = WrongExpectedVersion {
        current_stream_revision_option: Some(match actual {
            Some(r) => wev::CurrentStreamRevisionOption::CurrentStreamRevision(r),
            None => wev::CurrentStreamRevisionOption::CurrentNoStream(()),
        }),
        expected_stream_position_option: Some(match expected {
            ExpectedState::Revision(r) => wev::ExpectedStreamPositionOption::ExpectedStreamPosition(r),
            ExpectedState::Any => wev::ExpectedStreamPositionOption::ExpectedAny(()),
            ExpectedState::StreamExists => wev::ExpectedStreamPositionOption::ExpectedStreamExists(()),
            ExpectedState::NoStream => wev::ExpectedStreamPositionOption::ExpectedNoStream(()),
        }),
    };
    let message = format!(
        "Append failed due to WrongExpectedVersion. Stream: {stream}, Expected version: {}, Actual version: {}",
        crate::convert::expected_number(expected),
        actual.map_or(-1, |a| a as i64)
    );
    detail(
        Code::FailedPrecondition,
        message,
        "WrongExpectedVersion",
        &detail_msg,
    )
}

async fn append(store: &EventStore, b: Building) -> BatchAppendResp {
    let expected_req = b.options.as_ref().and_then(|o| o.expected_stream_position);
    let stream_identifier = b.options.as_ref().and_then(|o| o.stream_identifier.clone());
    let mut response = BatchAppendResp {
        correlation_id: b.correlation,
        result: None,
        stream_identifier: stream_identifier.clone(),
        expected_stream_position: echo(expected_req.as_ref()),
    };
    let outcome = match (b.failure, stream_name(stream_identifier.as_ref())) {
        (Some(failure), _) => Err(failure),
        (None, Err(status)) => Err(bad_request(status.message().to_string())),
        (None, Ok(_)) if b.events.is_empty() => Err(bad_request("an append has at least one event".into())),
        (None, Ok(stream)) => {
            let expected = expected_of(expected_req.as_ref());
            store
                .append_to(&stream, expected, b.events)
                .await
                .map_err(|e| failure(&stream, e))
        }
    };
    response.result = Some(match outcome {
        Ok(r) => batch_append_resp::Result::Success(batch_append_resp::Success {
            current_revision_option: Some(success::CurrentRevisionOption::CurrentRevision(
                r.next_expected_revision,
            )),
            position_option: Some(success::PositionOption::Position(AllStreamPosition {
                commit_position: r.position,
                prepare_position: r.position,
            })),
        }),
        Err(status) => batch_append_resp::Result::Error(status),
    });
    response
}

fn failure(stream: &str, e: EventStoreError) -> rpc::Status {
    match e {
        EventStoreError::WrongExpectedState { expected, actual, .. } => {
            wrong_expected(stream, expected, actual)
        }
        EventStoreError::StreamDeleted(s) => detail(
            Code::FailedPrecondition,
            format!("Event stream '{s}' is deleted."),
            "StreamDeleted",
            &StreamDeleted {
                stream_identifier: Some(crate::convert::stream_id(&s)),
            },
        ),
        EventStoreError::Invalid(m) => bad_request(m),
        EventStoreError::Broker(rivulet_broker::BrokerError::InvalidRecord(m)) => detail(
            Code::InvalidArgument,
            m,
            "MaximumAppendSizeExceeded",
            &MaximumAppendSizeExceeded {
                max_append_size: APPEND_BYTES_MAX as u32,
            },
        ),
        e => detail(Code::Unknown, e.to_string(), "Unknown", &Unknown {}),
    }
}
