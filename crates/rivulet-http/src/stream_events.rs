//! `GET /v1/streams/{stream}/events`: a catch-up subscription to an event store stream (or
//! `$all`, or a projection) as Server-Sent Events: the history from a point, one
//! `caught-up` event, then new events as they are appended, with no gap and no duplicate at
//! the switch (both come from the same reads). Each event's SSE id is its revision (its
//! position for `$all`), so `EventSource` resumes after the last one it saw.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use rivulet_eventstore::{AllFilter, Direction, EventStore, EventStoreError};
use serde::Deserialize;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::streams::{event_json, from_point, store};
use crate::AppState;

/// Events one read of a subscription takes.
const EVENTS_PER_READ: usize = 500;
/// How long a subscription waits for new events before looking again.
const IDLE_WAIT: Duration = Duration::from_secs(30);

/// Query of a subscription.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscribeQuery {
    /// `start` (default), `end`, or a revision (a position for `$all`) to begin at.
    from: Option<String>,
    /// Resume after this id, for clients that cannot set `Last-Event-ID`.
    last_event_id: Option<String>,
    /// `$all` only: streams whose names start with this.
    stream_prefix: Option<String>,
    /// `$all` only: event types that start with this.
    type_prefix: Option<String>,
}

struct Subscription {
    state: AppState,
    store: EventStore,
    stream: String,
    filter: AllFilter,
    next: u64,
    indexed: watch::Receiver<u64>,
    queue: VecDeque<Event>,
    caught_up: bool,
    ended: bool,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.state.sse_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Subscription {
    fn is_all(&self) -> bool {
        self.stream == "$all"
    }

    /// Reads what follows `next`; false when there was nothing yet.
    fn fetch(&mut self) -> bool {
        let events = if self.is_all() {
            match self.store.read_all(
                Some(self.next),
                Direction::Forwards,
                EVENTS_PER_READ,
                &self.filter,
            ) {
                Ok(slice) => {
                    self.next = slice.next_position;
                    slice.events
                }
                Err(e) => return self.fail(e),
            }
        } else {
            match self.store.read_stream(
                &self.stream,
                Some(self.next),
                Direction::Forwards,
                EVENTS_PER_READ,
            ) {
                Ok(slice) => {
                    if let Some(last) = slice.events.last() {
                        self.next = slice.next.unwrap_or(last.revision + 1);
                    }
                    slice.events
                }
                Err(EventStoreError::StreamNotFound(_)) => Vec::new(),
                Err(e) => return self.fail(e),
            }
        };
        for e in &events {
            let id = if self.is_all() { e.position } else { e.revision };
            self.queue.push_back(
                Event::default()
                    .event("event")
                    .id(id.to_string())
                    .data(event_json(e).to_string()),
            );
        }
        !events.is_empty()
    }

    fn fail(&mut self, e: EventStoreError) -> bool {
        let api = ApiError::from(e);
        let body = serde_json::json!({"error_code": api.error_code, "message": api.message});
        self.queue
            .push_back(Event::default().event("error").data(body.to_string()));
        self.ended = true;
        true
    }
}

fn start_point(
    store: &EventStore,
    stream: &str,
    q: &SubscribeQuery,
    resume: Option<u64>,
) -> Result<u64, ApiError> {
    if let Some(after) = resume {
        return Ok(after + 1);
    }
    if q.from.as_deref() != Some("end") {
        return Ok(from_point(q.from.as_deref())?.unwrap_or(0));
    }
    if stream == "$all" {
        return Ok(store.indexed_position());
    }
    match store.read_stream(stream, None, Direction::Backwards, 1) {
        Ok(slice) => Ok(slice.last_revision + 1),
        Err(EventStoreError::StreamNotFound(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/streams/{stream}/events`.
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    query: Result<Query<SubscribeQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = store(&state)?.clone();
    let Query(q) = query?;
    if stream != "$all" && (q.stream_prefix.is_some() || q.type_prefix.is_some()) {
        return Err(ApiError::bad_request(
            "stream_prefix and type_prefix filter $all only",
        ));
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.last_event_id.clone())
        .map(|id| {
            id.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("Last-Event-ID {id:?} is not a number")))
        })
        .transpose()?;
    let next = start_point(&store, &stream, &q, resume)?;
    crate::sse::reserve_stream(&state)?;
    let sub = Subscription {
        indexed: store.watch_indexed(),
        state,
        store,
        stream,
        filter: AllFilter {
            stream_prefix: q.stream_prefix,
            event_type_prefix: q.type_prefix,
        },
        next,
        queue: VecDeque::new(),
        caught_up: false,
        ended: false,
    };
    Ok(Sse::new(events(sub))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn events(sub: Subscription) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(sub, |mut s| async move {
        // Each pass delivers a queued event, reads more, or waits: reads only follow a change.
        loop {
            if let Some(event) = s.queue.pop_front() {
                return Some((Ok(event), s));
            }
            if s.ended || s.state.broker.is_shutting_down() {
                return None;
            }
            s.indexed.borrow_and_update();
            if s.fetch() {
                continue;
            }
            if !s.caught_up {
                s.caught_up = true;
                let data = serde_json::json!({"next": s.next}).to_string();
                return Some((Ok(Event::default().event("caught-up").data(data)), s));
            }
            if let Ok(Err(_)) = tokio::time::timeout(IDLE_WAIT, s.indexed.changed()).await {
                return None;
            }
        }
    })
}
