//! `Streams.Read`: finite reads of a stream or `$all`, and catch-up subscriptions
//! (confirmation, history, caught-up, then live events), sent through a bounded channel
//! so a slow client holds the reader back instead of filling memory.

use std::pin::Pin;
use std::time::Duration;

use rivulet_eventstore::{Direction, EventFilter, EventStore, EventStoreError, RecordedEvent};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::convert::{event_resp, now_timestamp, stream_id};
use crate::errors::{invalid, status_of};
use crate::pb::event_store::client::streams::read_req::options::{
    all_options, filter_options, stream_options, uuid_option, CountOption, FilterOption, ReadDirection,
    StreamOption,
};
use crate::pb::event_store::client::streams::read_req::Options;
use crate::pb::event_store::client::streams::read_resp::{self, Content};
use crate::pb::event_store::client::streams::ReadResp;

/// Events one pass of a read takes.
const EVENTS_PER_PASS: usize = 500;
/// Events a finite read of a stream answers without a task.
const IMMEDIATE_EVENTS_MAX: u64 = 1000;
/// Responses a read may have queued for a slow client.
const READ_QUEUE_MAX: usize = 64;
/// How often an idle subscription checks that its client is still there.
const IDLE_CHECK: Duration = Duration::from_secs(30);

pub(crate) type Sender = mpsc::Sender<Result<ReadResp, Status>>;

/// Where a read starts.
#[derive(Debug, Clone, Copy)]
enum Point {
    Start,
    End,
    At(u64),
}

/// A read, decoded from its options.
pub(crate) struct Plan {
    stream: Option<String>,
    from: Point,
    backwards: bool,
    /// `None` for a subscription.
    count: Option<u64>,
    filter: Option<EventFilter>,
    string_ids: bool,
}

/// A filter of `$all` from the `filter` oneof of a request (reads and persistent
/// subscription groups carry the same shape in different messages).
macro_rules! filter_spec_of {
    ($oneof:path, $v:expr) => {{
        use $oneof as f;
        let spec = |on, e: Expression| rivulet_eventstore::FilterSpec {
            on,
            regex: Some(e.regex).filter(|r| !r.is_empty()),
            prefixes: e.prefix,
        };
        match $v {
            Some(f::StreamIdentifier(e)) => Some(spec(rivulet_eventstore::FilterOn::Stream, e)),
            Some(f::EventType(e)) => Some(spec(rivulet_eventstore::FilterOn::EventType, e)),
            None => None,
        }
    }};
}
pub(crate) use filter_spec_of;

impl Plan {
    pub(crate) fn from_options(o: Options) -> Result<Plan, Status> {
        let (stream, from) = match o.stream_option {
            Some(StreamOption::Stream(s)) => {
                let name = crate::convert::stream_name(s.stream_identifier.as_ref())?;
                let from = match s.revision_option {
                    Some(stream_options::RevisionOption::Revision(r)) => Point::At(r),
                    Some(stream_options::RevisionOption::End(_)) => Point::End,
                    Some(stream_options::RevisionOption::Start(_)) | None => Point::Start,
                };
                (Some(name), from)
            }
            Some(StreamOption::All(a)) => {
                let from = match a.all_option {
                    Some(all_options::AllOption::Position(p)) => Point::At(p.commit_position),
                    Some(all_options::AllOption::End(_)) => Point::End,
                    Some(all_options::AllOption::Start(_)) | None => Point::Start,
                };
                (None, from)
            }
            None => return Err(invalid("a read names a stream or $all")),
        };
        let spec = match o.filter_option {
            Some(FilterOption::Filter(f)) => {
                use filter_options::Expression;
                filter_spec_of!(filter_options::Filter, f.filter)
            }
            Some(FilterOption::NoFilter(_)) | None => None,
        };
        let filter = spec
            .map(|s| EventFilter::compile(&s))
            .transpose()
            .map_err(|e| invalid(e.to_string()))?;
        if stream.is_some() && filter.is_some() {
            return Err(invalid("filters apply to $all reads only"));
        }
        let string_ids = matches!(
            o.uuid_option.and_then(|u| u.content),
            Some(uuid_option::Content::String(_))
        );
        Ok(Plan {
            stream,
            from,
            backwards: o.read_direction == ReadDirection::Backwards as i32,
            count: match o.count_option {
                Some(CountOption::Count(n)) => Some(n),
                Some(CountOption::Subscription(_)) => None,
                None => Some(u64::MAX),
            },
            filter,
            string_ids,
        })
    }
}

fn content(c: Content) -> Result<ReadResp, Status> {
    Ok(ReadResp { content: Some(c) })
}

/// What a read answers.
pub(crate) type Responses = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send>>;

/// Where a finite read of a stream starts: `None` when it reads nothing, else the revision
/// (`None` inside: the stream's start, or its end backwards).
fn stream_start(plan: &Plan) -> Option<Option<u64>> {
    match (plan.from, plan.backwards) {
        (Point::At(r), _) => Some(Some(r)),
        (Point::Start, false) | (Point::End, true) => Some(None),
        (Point::Start, true) => Some(Some(0)),
        (Point::End, false) => None,
    }
}

/// Answers a read. A finite read of a stream answers its first events (up to
/// [`IMMEDIATE_EVENTS_MAX`]) at once, without a task between the store and the connection;
/// what remains, and every other read, runs in a task feeding a bounded channel.
pub(crate) fn respond(store: EventStore, mut plan: Plan) -> Responses {
    let (Some(count), Some(stream)) = (plan.count, plan.stream.clone()) else {
        return spawn(store, plan);
    };
    let Some(start) = stream_start(&plan) else {
        return Box::pin(tokio_stream::empty());
    };
    let max = count.min(IMMEDIATE_EVENTS_MAX) as usize;
    let slice = match store.read_stream(&stream, start, plan.direction(), max) {
        Ok(slice) => slice,
        Err(EventStoreError::StreamNotFound(_)) => {
            let missing = read_resp::StreamNotFound {
                stream_identifier: Some(stream_id(&stream)),
            };
            return Box::pin(tokio_stream::iter([content(Content::StreamNotFound(missing))]));
        }
        Err(e) => return Box::pin(tokio_stream::iter([Err(status_of("Read", e))])),
    };
    let sent = slice.events.len() as u64;
    let first: Vec<Result<ReadResp, Status>> = slice
        .events
        .into_iter()
        .map(|e| Ok(event_resp(e, plan.string_ids)))
        .collect();
    match slice.next {
        Some(next) if sent > 0 && sent < count => {
            plan.from = Point::At(next);
            plan.count = Some(count - sent);
            Box::pin(tokio_stream::iter(first).chain(spawn(store, plan)))
        }
        _ => Box::pin(tokio_stream::iter(first)),
    }
}

fn spawn(store: EventStore, plan: Plan) -> Responses {
    let (tx, rx) = mpsc::channel(READ_QUEUE_MAX);
    tokio::spawn(run(store, plan, tx));
    Box::pin(ReceiverStream::new(rx))
}

impl Plan {
    fn direction(&self) -> Direction {
        if self.backwards {
            Direction::Backwards
        } else {
            Direction::Forwards
        }
    }
}

/// Runs a read to its end (or, for a subscription, until the client leaves).
async fn run(store: EventStore, plan: Plan, tx: Sender) {
    let outcome = match (plan.count, plan.stream.clone()) {
        (Some(count), Some(stream)) => read_stream(&store, &plan, &stream, count, &tx).await,
        (Some(count), None) => read_all(&store, &plan, count, &tx).await,
        (None, Some(stream)) => subscribe_stream(&store, &plan, &stream, &tx).await,
        (None, None) => subscribe_all(&store, &plan, &tx).await,
    };
    if let Err(status) = outcome {
        let _ = tx.send(Err(status)).await;
    }
}

/// Sends events; false when the client has gone.
async fn send_events(tx: &Sender, events: Vec<RecordedEvent>, string_ids: bool) -> bool {
    for e in events {
        if tx.send(Ok(event_resp(e, string_ids))).await.is_err() {
            return false;
        }
    }
    true
}

async fn read_stream(
    store: &EventStore,
    plan: &Plan,
    stream: &str,
    count: u64,
    tx: &Sender,
) -> Result<(), Status> {
    let direction = plan.direction();
    let Some(mut next) = stream_start(plan) else {
        return Ok(());
    };
    let mut left = count;
    // Each pass sends at least one event or ends the read.
    while left > 0 {
        let max = left.min(EVENTS_PER_PASS as u64) as usize;
        let slice = match store.read_stream(stream, next, direction, max) {
            Ok(s) => s,
            Err(EventStoreError::StreamNotFound(_)) => {
                let missing = read_resp::StreamNotFound {
                    stream_identifier: Some(stream_id(stream)),
                };
                let _ = tx.send(content(Content::StreamNotFound(missing))).await;
                return Ok(());
            }
            Err(e) => return Err(status_of("Read", e)),
        };
        let sent = slice.events.len() as u64;
        left -= sent;
        if !send_events(tx, slice.events, plan.string_ids).await || slice.next.is_none() || sent == 0 {
            return Ok(());
        }
        next = slice.next;
    }
    Ok(())
}

async fn read_all(store: &EventStore, plan: &Plan, count: u64, tx: &Sender) -> Result<(), Status> {
    let direction = if plan.backwards {
        Direction::Backwards
    } else {
        Direction::Forwards
    };
    let mut next = match (plan.from, plan.backwards) {
        (Point::At(p), false) => Some(p),
        // Backwards from a position includes the event at it.
        (Point::At(p), true) => Some(p.saturating_add(1)),
        (Point::Start, false) | (Point::End, true) => None,
        (Point::Start, true) | (Point::End, false) => return Ok(()),
    };
    let mut left = count;
    let matches = |e: &RecordedEvent| plan.filter.as_ref().is_none_or(|f| f.matches(e));
    while left > 0 {
        let max = left.min(EVENTS_PER_PASS as u64) as usize;
        let slice = store
            .read_all_where(next, direction, max, &matches)
            .map_err(|e| status_of("Read", e))?;
        left -= slice.events.len() as u64;
        if !send_events(tx, slice.events, plan.string_ids).await || slice.end {
            return Ok(());
        }
        next = Some(slice.next_position);
    }
    Ok(())
}

fn confirmation() -> Result<ReadResp, Status> {
    content(Content::Confirmation(read_resp::SubscriptionConfirmation {
        subscription_id: uuid::Uuid::from_u128(crate::convert::random_id()).to_string(),
    }))
}

/// Waits until more events may be readable; false when the client has gone or the store closed.
async fn wait_for_more(indexed: &mut tokio::sync::watch::Receiver<u64>, tx: &Sender) -> bool {
    tokio::select! {
        changed = indexed.changed() => changed.is_ok(),
        () = tx.closed() => false,
        () = tokio::time::sleep(IDLE_CHECK) => !tx.is_closed(),
    }
}

async fn subscribe_stream(store: &EventStore, plan: &Plan, stream: &str, tx: &Sender) -> Result<(), Status> {
    if tx.send(confirmation()).await.is_err() {
        return Ok(());
    }
    let mut next = match plan.from {
        Point::Start => 0,
        Point::At(r) => r.saturating_add(1),
        Point::End => match store.read_stream(stream, None, Direction::Backwards, 1) {
            Ok(s) => s.last_revision + 1,
            Err(EventStoreError::StreamNotFound(_)) => 0,
            Err(e) => return Err(status_of("Read", e)),
        },
    };
    let mut indexed = store.watch_indexed();
    let mut caught_up = false;
    loop {
        indexed.borrow_and_update();
        let events = match store.read_stream(stream, Some(next), Direction::Forwards, EVENTS_PER_PASS) {
            Ok(s) => s.events,
            Err(EventStoreError::StreamNotFound(_)) => Vec::new(),
            Err(e) => return Err(status_of("Read", e)),
        };
        if let Some(last) = events.last() {
            next = last.revision + 1;
        }
        let any = !events.is_empty();
        if !send_events(tx, events, plan.string_ids).await {
            return Ok(());
        }
        if any {
            continue;
        }
        if !caught_up {
            caught_up = true;
            let up = read_resp::CaughtUp {
                timestamp: Some(now_timestamp()),
                stream_revision: next.checked_sub(1).map(|r| r as i64),
                position: None,
            };
            if tx.send(content(Content::CaughtUp(up))).await.is_err() {
                return Ok(());
            }
        }
        if !wait_for_more(&mut indexed, tx).await {
            return Ok(());
        }
    }
}

async fn subscribe_all(store: &EventStore, plan: &Plan, tx: &Sender) -> Result<(), Status> {
    if tx.send(confirmation()).await.is_err() {
        return Ok(());
    }
    let mut next = match plan.from {
        Point::Start => 0,
        Point::At(p) => p.saturating_add(1),
        Point::End => store.indexed_position(),
    };
    let mut indexed = store.watch_indexed();
    let mut caught_up = false;
    let filtered = plan.filter.is_some();
    let matches = |e: &RecordedEvent| plan.filter.as_ref().is_none_or(|f| f.matches(e));
    loop {
        indexed.borrow_and_update();
        let slice = store
            .read_all_where(Some(next), Direction::Forwards, EVENTS_PER_PASS, &matches)
            .map_err(|e| status_of("Read", e))?;
        let moved = slice.next_position > next;
        next = slice.next_position;
        let none = slice.events.is_empty();
        if !send_events(tx, slice.events, plan.string_ids).await {
            return Ok(());
        }
        if filtered && moved && none {
            let checkpoint = read_resp::Checkpoint {
                commit_position: next,
                prepare_position: next,
                timestamp: Some(now_timestamp()),
            };
            if tx.send(content(Content::Checkpoint(checkpoint))).await.is_err() {
                return Ok(());
            }
        }
        if !slice.end {
            continue;
        }
        if !caught_up {
            caught_up = true;
            let position = next.checked_sub(1).map(|p| read_resp::Position {
                commit_position: p,
                prepare_position: p,
            });
            let up = read_resp::CaughtUp {
                timestamp: Some(now_timestamp()),
                stream_revision: None,
                position,
            };
            if tx.send(content(Content::CaughtUp(up))).await.is_err() {
                return Ok(());
            }
        }
        if !wait_for_more(&mut indexed, tx).await {
            return Ok(());
        }
    }
}
