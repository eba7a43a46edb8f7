//! The event store inside this process as an aggregate backend.

use futures_util::future::BoxFuture;
use rivulet_eventstore::{ContentType, Direction, EventStore, EventStoreError, ExpectedState, NewEvent};

use super::store::{AppendOutcome, EventStoreBackend, Expected, NewStoredEvent, StoredEvent};
use crate::error::{Result, SdkError};

fn failed(e: EventStoreError) -> SdkError {
    SdkError::EventStore(e.to_string())
}

impl EventStoreBackend for EventStore {
    fn read<'a>(&'a self, stream: &'a str, from: u64, max: usize) -> BoxFuture<'a, Result<Vec<StoredEvent>>> {
        Box::pin(async move {
            match self.read_stream(stream, Some(from), Direction::Forwards, max) {
                Ok(slice) => Ok(slice
                    .events
                    .into_iter()
                    .map(|e| StoredEvent {
                        revision: e.revision,
                        id: uuid::Uuid::from_u128(e.id),
                        event_type: e.event_type,
                        data: e.data,
                    })
                    .collect()),
                Err(EventStoreError::StreamNotFound(_)) => Ok(Vec::new()),
                Err(e) => Err(failed(e)),
            }
        })
    }

    fn append<'a>(
        &'a self,
        stream: &'a str,
        expected: Expected,
        events: Vec<NewStoredEvent>,
    ) -> BoxFuture<'a, Result<AppendOutcome>> {
        Box::pin(async move {
            let expected = match expected {
                Expected::NoStream => ExpectedState::NoStream,
                Expected::Revision(r) => ExpectedState::Revision(r),
            };
            let events = events
                .into_iter()
                .map(|e| NewEvent {
                    id: e.id.as_u128(),
                    event_type: e.event_type,
                    content_type: ContentType::Json,
                    data: e.data,
                    metadata: Vec::new(),
                })
                .collect();
            match self.append_to(stream, expected, events).await {
                Ok(r) => Ok(AppendOutcome::Written {
                    last_revision: r.next_expected_revision,
                }),
                Err(EventStoreError::WrongExpectedState { actual, .. }) => {
                    Ok(AppendOutcome::Conflict { actual })
                }
                Err(e) => Err(failed(e)),
            }
        })
    }
}
