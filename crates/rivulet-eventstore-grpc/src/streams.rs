//! The `Streams` service: each call checks access, translates the request and calls the
//! event store.

use rivulet_broker::acl::Operation;
use rivulet_eventstore::{AppendResult, EventStore, EventStoreError, ExpectedState, NewEvent};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::access::Access;
use crate::convert::{new_event, stream_name};
use crate::errors::{invalid, status_of};
use crate::pb::event_store::client::streams::append_resp::wrong_expected_version as wev;
use crate::pb::event_store::client::streams::append_resp::{self, success};
use crate::pb::event_store::client::streams::streams_server::Streams;
use crate::pb::event_store::client::streams::{
    append_req, delete_req, delete_resp, tombstone_req, tombstone_resp, AppendReq, AppendResp,
    BatchAppendReq, BatchAppendResp, DeleteReq, DeleteResp, ReadReq, TombstoneReq, TombstoneResp,
};
use crate::pb::event_store::client::Empty;
use crate::{read, APPEND_BYTES_MAX};

/// The service.
#[derive(Debug, Clone)]
pub(crate) struct StreamsService {
    pub(crate) store: EventStore,
    pub(crate) access: Access,
}

/// An expected state from the shared oneof shape of appends, deletes and tombstones.
macro_rules! expected_from {
    ($m:path, $v:expr) => {{
        use $m as e;
        match $v {
            Some(e::ExpectedStreamRevision::Revision(r)) => ExpectedState::Revision(r),
            Some(e::ExpectedStreamRevision::NoStream(_)) => ExpectedState::NoStream,
            Some(e::ExpectedStreamRevision::StreamExists(_)) => ExpectedState::StreamExists,
            Some(e::ExpectedStreamRevision::Any(_)) | None => ExpectedState::Any,
        }
    }};
}

fn success(r: &AppendResult) -> AppendResp {
    AppendResp {
        result: Some(append_resp::Result::Success(append_resp::Success {
            current_revision_option: Some(success::CurrentRevisionOption::CurrentRevision(
                r.next_expected_revision,
            )),
            position_option: Some(success::PositionOption::Position(append_resp::Position {
                commit_position: r.position,
                prepare_position: r.position,
            })),
        })),
    }
}

/// A failed concurrency check as the append response carries it: both the old and the
/// current groups of fields, as every client reads one or the other.
fn wrong_expected(expected: ExpectedState, actual: Option<u64>) -> AppendResp {
    let e = Empty {};
    let (current_old, current) = match actual {
        Some(r) => (
            wev::CurrentRevisionOption2060::CurrentRevision2060(r),
            wev::CurrentRevisionOption::CurrentRevision(r),
        ),
        None => (
            wev::CurrentRevisionOption2060::NoStream2060(e),
            wev::CurrentRevisionOption::CurrentNoStream(e),
        ),
    };
    let (expected_old, expected_new) = match expected {
        ExpectedState::Revision(r) => (
            wev::ExpectedRevisionOption2060::ExpectedRevision2060(r),
            wev::ExpectedRevisionOption::ExpectedRevision(r),
        ),
        ExpectedState::Any => (
            wev::ExpectedRevisionOption2060::Any2060(e),
            wev::ExpectedRevisionOption::ExpectedAny(e),
        ),
        ExpectedState::StreamExists => (
            wev::ExpectedRevisionOption2060::StreamExists2060(e),
            wev::ExpectedRevisionOption::ExpectedStreamExists(e),
        ),
        ExpectedState::NoStream => (
            wev::ExpectedRevisionOption2060::ExpectedRevision2060(u64::MAX),
            wev::ExpectedRevisionOption::ExpectedNoStream(e),
        ),
    };
    AppendResp {
        result: Some(append_resp::Result::WrongExpectedVersion(
            append_resp::WrongExpectedVersion {
                current_revision_option_20_6_0: Some(current_old),
                expected_revision_option_20_6_0: Some(expected_old),
                current_revision_option: Some(current),
                expected_revision_option: Some(expected_new),
            },
        )),
    }
}

/// The options, then every proposed event of an `Append` call, within the size limits.
async fn collect_append(
    mut calls: Streaming<AppendReq>,
) -> Result<(String, ExpectedState, Vec<NewEvent>), Status> {
    let first = calls.message().await?.and_then(|m| m.content);
    let Some(append_req::Content::Options(options)) = first else {
        return Err(invalid("an append starts with its options"));
    };
    let stream = stream_name(options.stream_identifier.as_ref())?;
    let expected = expected_from!(append_req::options, options.expected_stream_revision);
    let mut events = Vec::new();
    let mut bytes = 0usize;
    while let Some(message) = calls.message().await? {
        let Some(append_req::Content::ProposedMessage(m)) = message.content else {
            return Err(invalid("an append sends its options once, first"));
        };
        bytes += m.data.len() + m.custom_metadata.len();
        if bytes > APPEND_BYTES_MAX || events.len() >= rivulet_eventstore::APPEND_EVENTS_MAX {
            return Err(status_of(
                "Append",
                EventStoreError::Broker(rivulet_broker::BrokerError::InvalidRecord(format!(
                    "Maximum Append Size of {APPEND_BYTES_MAX} Exceeded."
                ))),
            ));
        }
        events.push(new_event(m.id.as_ref(), &m.metadata, m.custom_metadata, m.data)?);
    }
    Ok((stream, expected, events))
}

#[tonic::async_trait]
impl Streams for StreamsService {
    type ReadStream = read::Responses;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<Self::ReadStream>, Status> {
        self.access.check(&request, Operation::Read)?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("a read has options"))?;
        let plan = read::Plan::from_options(options)?;
        Ok(Response::new(read::respond(self.store.clone(), plan)))
    }

    async fn append(&self, request: Request<Streaming<AppendReq>>) -> Result<Response<AppendResp>, Status> {
        self.access.check(&request, Operation::Write)?;
        let (stream, expected, events) = collect_append(request.into_inner()).await?;
        if events.is_empty() {
            return Err(invalid("an append has at least one event"));
        }
        match self.store.append_to(&stream, expected, events).await {
            Ok(r) => Ok(Response::new(success(&r))),
            Err(EventStoreError::WrongExpectedState { expected, actual, .. }) => {
                Ok(Response::new(wrong_expected(expected, actual)))
            }
            Err(e) => Err(status_of("Append", e)),
        }
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        self.access.check(&request, Operation::Delete)?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("a delete has options"))?;
        let stream = stream_name(options.stream_identifier.as_ref())?;
        let expected = expected_from!(delete_req::options, options.expected_stream_revision);
        let position = match self.store.delete(&stream, expected).await {
            Ok(p) => p,
            Err(EventStoreError::StreamNotFound(_)) => {
                return Err(crate::errors::wrong_expected_version(
                    "Delete", &stream, expected, None,
                ))
            }
            Err(e) => return Err(status_of("Delete", e)),
        };
        Ok(Response::new(DeleteResp {
            position_option: Some(delete_resp::PositionOption::Position(delete_resp::Position {
                commit_position: position,
                prepare_position: position,
            })),
        }))
    }

    async fn tombstone(&self, request: Request<TombstoneReq>) -> Result<Response<TombstoneResp>, Status> {
        self.access.check(&request, Operation::Delete)?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("a tombstone has options"))?;
        let stream = stream_name(options.stream_identifier.as_ref())?;
        let expected = expected_from!(tombstone_req::options, options.expected_stream_revision);
        let position = self
            .store
            .tombstone(&stream, expected)
            .await
            .map_err(|e| status_of("Tombstone", e))?;
        Ok(Response::new(TombstoneResp {
            position_option: Some(tombstone_resp::PositionOption::Position(
                tombstone_resp::Position {
                    commit_position: position,
                    prepare_position: position,
                },
            )),
        }))
    }

    type BatchAppendStream = ReceiverStream<Result<BatchAppendResp, Status>>;

    async fn batch_append(
        &self,
        request: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<Self::BatchAppendStream>, Status> {
        self.access.check(&request, Operation::Write)?;
        let (tx, rx) = mpsc::channel(crate::batch::IN_FLIGHT_MAX);
        tokio::spawn(crate::batch::run(self.store.clone(), request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
