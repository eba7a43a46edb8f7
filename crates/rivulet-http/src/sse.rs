//! `GET /v1/topics/{topic}/events`: a Server-Sent Events stream of a topic.
//!
//! Each record is one event of type `record` whose data is the record as JSON and whose id
//! is the stream's position after it: `partition:next_offset` pairs for every partition the
//! stream reads, e.g. `0:42,1:17`. A browser's `EventSource` sends that id back as
//! `Last-Event-ID` when it reconnects, and the stream resumes exactly there.
//!
//! With `group=G` the stream is a member of consumer group `G`, assigned partitions by the
//! broker: it starts from the group's committed offsets, commits its position as events
//! are delivered, and shares the topic's partitions with the group's other streams and
//! embedded-SDK members (a partition moves only after its previous holder committed and let
//! it go). Such groups are listed and described with the Kafka groups (`rivulet group
//! describe G` shows each stream as a member with its partitions); a Kafka consumer cannot
//! join a group that SSE streams use, nor the other way round.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use rivulet_broker::{BrokerError, LocalClient, LocalMember, LogError, Topic, Woke};
use serde::Deserialize;

use crate::error::ApiError;
use crate::records::JsonRecord;
use crate::AppState;

const READ_BYTES: usize = 256 * 1024;
const RECORDS_PER_READ: usize = 500;
const IDLE_WAIT: Duration = Duration::from_secs(30);
const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// How soon a stream looks again for a partition its previous holder has not released.
const CLAIM_RETRY: Duration = Duration::from_millis(20);

/// Query of an event stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// `start`, `end` or an offset: where to begin without a committed or resumed position.
    /// Default `end`.
    from: Option<String>,
    /// Stream only this partition.
    partition: Option<i32>,
    /// Consumer group to read and commit as.
    group: Option<String>,
    /// Resume position, for clients that cannot set the `Last-Event-ID` header.
    last_event_id: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum From {
    Start,
    End,
    Offset(i64),
}

fn parse_from(text: Option<&str>) -> Result<From, ApiError> {
    match text.unwrap_or("end") {
        "start" | "beginning" | "earliest" => Ok(From::Start),
        "end" | "latest" => Ok(From::End),
        n => n
            .parse::<i64>()
            .map(From::Offset)
            .map_err(|_| ApiError::bad_request(format!("from={n:?}: expected start, end or an offset"))),
    }
}

/// Parses `0:42,1:17`.
fn parse_position(text: &str) -> Result<HashMap<i32, i64>, ApiError> {
    let mut out = HashMap::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (p, o) = part.split_once(':').ok_or_else(|| {
            ApiError::bad_request(format!("Last-Event-ID {text:?}: expected partition:offset,..."))
        })?;
        let p = p
            .trim()
            .parse::<i32>()
            .map_err(|_| ApiError::bad_request("bad partition in Last-Event-ID"))?;
        let o = o
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("bad offset in Last-Event-ID"))?;
        out.insert(p, o);
    }
    Ok(out)
}

struct Session {
    state: AppState,
    topic: Arc<Topic>,
    from: From,
    only_partition: Option<i32>,
    positions: HashMap<i32, i64>,
    /// Partitions this stream reads now.
    assigned: Vec<i32>,
    /// Partitions assigned to this stream whose previous holder has not released them.
    waiting: Vec<i32>,
    member: Option<LocalMember>,
    pending: VecDeque<Event>,
    committed: HashMap<i32, i64>,
    last_commit: Instant,
    /// The broker is shutting down: end the stream once `pending` is sent.
    ended: bool,
}

impl Session {
    fn topic_name(&self) -> &str {
        self.topic.name()
    }

    fn initial_position(&self, partition: i32) -> i64 {
        let Some(info) = self.topic.partition_info(partition) else {
            return 0;
        };
        if let Some(m) = &self.member {
            if let Some(offset) = self
                .state
                .broker
                .committed_offset(m.group(), self.topic_name(), partition)
            {
                return offset;
            }
        }
        match self.from {
            From::Start => info.log_start_offset,
            From::End => info.high_watermark,
            From::Offset(o) => o.clamp(info.log_start_offset, info.high_watermark),
        }
    }

    /// Takes the partitions this stream should read: all (or one) without a group, its
    /// share of the group's partitions with one.
    fn refresh_assignment(&mut self) {
        let topic = self.topic_name().to_string();
        let share: Vec<i32> = match (self.member.as_mut(), self.only_partition) {
            (Some(member), _) => member
                .assignment()
                .into_iter()
                .filter(|(t, _)| *t == topic)
                .map(|(_, p)| p)
                .collect(),
            (None, Some(p)) => vec![p],
            (None, None) => (0..self.topic.partition_count() as i32).collect(),
        };
        let lost: Vec<i32> = self
            .assigned
            .iter()
            .copied()
            .filter(|p| !share.contains(p))
            .collect();
        for p in lost {
            if let Some(m) = &self.member {
                m.release(&topic, p);
            }
            self.positions.remove(&p);
            self.committed.remove(&p);
        }
        self.assigned.retain(|p| share.contains(p));
        self.waiting = share.into_iter().filter(|p| !self.assigned.contains(p)).collect();
        self.claim_waiting();
    }

    /// Starts reading the waiting partitions whose previous holder let go.
    fn claim_waiting(&mut self) {
        let waiting = std::mem::take(&mut self.waiting);
        for p in waiting {
            let claimed = self.member.as_ref().is_none_or(|m| m.claim(self.topic.name(), p));
            if claimed {
                let pos = self.initial_position(p);
                self.positions.entry(p).or_insert(pos);
                self.assigned.push(p);
            } else {
                self.waiting.push(p);
            }
        }
        self.assigned.sort_unstable();
    }

    fn event_id(&self) -> String {
        let mut parts: Vec<(i32, i64)> = self.positions.iter().map(|(p, o)| (*p, *o)).collect();
        parts.sort_unstable();
        parts
            .iter()
            .map(|(p, o)| format!("{p}:{o}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Positions delivered but not yet committed, as `(topic, partition, offset)`.
    fn uncommitted(&self) -> Vec<(String, i32, i64)> {
        self.positions
            .iter()
            .filter(|(p, o)| self.committed.get(p) != Some(o))
            .map(|(p, o)| (self.topic_name().to_string(), *p, *o))
            .collect()
    }

    async fn commit(&mut self, force: bool) {
        let Some(m) = &self.member else { return };
        if !force && self.last_commit.elapsed() < COMMIT_EVERY {
            return;
        }
        let changed = self.uncommitted();
        if changed.is_empty() {
            return;
        }
        match m.commit(changed.clone()).await {
            Ok(()) => {
                for (_, p, o) in changed {
                    self.committed.insert(p, o);
                }
                self.last_commit = Instant::now();
            }
            Err(e) => tracing::warn!(group = %m.group(), error = %e, "SSE offset commit failed"),
        }
    }

    /// Reads the next records of one partition into `pending`.
    fn read_partition(&mut self, p: i32) {
        let pos = self.positions.get(&p).copied().unwrap_or(0);
        let topic = self.topic.clone();
        let read = self
            .state
            .broker
            .read_records(topic.name(), p, pos, READ_BYTES, RECORDS_PER_READ);
        let read = match read {
            Ok(r) => r,
            Err(BrokerError::Log(LogError::OffsetOutOfRange { log_start_offset, .. })) => {
                self.positions.insert(p, log_start_offset);
                return;
            }
            Err(e) => {
                tracing::warn!(topic = %topic.name(), partition = p, error = %e, "SSE read failed");
                self.pending
                    .push_back(Event::default().event("error").data(e.to_string()));
                return;
            }
        };
        for bad in &read.skipped {
            self.pending
                .push_back(Event::default().event("error").data(bad.to_string()));
        }
        for r in &read.records {
            self.positions.insert(p, r.offset + 1);
            let record = JsonRecord::from_stored(topic.name(), p, r);
            match Event::default()
                .event("record")
                .id(self.event_id())
                .json_data(&record)
            {
                Ok(ev) => self.pending.push_back(ev),
                Err(e) => tracing::warn!(error = %e, "SSE event encoding failed"),
            }
        }
        // Past control batches and compacted gaps too.
        self.positions.insert(p, pos.max(read.next_offset));
    }

    /// Reads the next records into `pending`, waiting for new data when there is none.
    async fn fill(&mut self) {
        // Everything yielded so far has been handed to the connection: commit it.
        self.commit(false).await;
        let changed = self.member.as_ref().is_some_and(LocalMember::assignment_changed);
        if changed || (self.assigned.is_empty() && self.waiting.is_empty()) {
            self.commit(true).await;
            self.refresh_assignment();
        } else if !self.waiting.is_empty() {
            self.claim_waiting();
        }
        let topic = self.topic.clone();
        let mut watch = self
            .state
            .broker
            .watch(self.assigned.iter().map(|p| (topic.name(), *p)));
        for p in self.assigned.clone() {
            self.read_partition(p);
        }
        if !self.pending.is_empty() {
            return;
        }
        // Nothing to send: wait for any assigned partition to grow, a rebalance, or a while.
        let wait = if self.waiting.is_empty() {
            IDLE_WAIT
        } else {
            CLAIM_RETRY
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.member.as_ref().map(LocalMember::changes);
        let rebalanced = async {
            match changes.as_mut() {
                Some(rx) => {
                    let _ = rx.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            woke = watch.wait(deadline) => self.ended = woke == Woke::ShuttingDown,
            _ = rebalanced => {}
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.state.sse_streams.fetch_sub(1, Ordering::Relaxed);
        let Some(member) = self.member.take() else { return };
        let pending = self.uncommitted();
        if pending.is_empty() {
            return;
        }
        // Commit what was delivered, then leave (the member leaves the group when dropped).
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = member.commit(pending).await {
                    tracing::warn!(group = %member.group(), error = %e, "Final SSE offset commit failed");
                }
            });
        }
    }
}

/// Takes one of the `sse_streams_max` event-stream slots (the stream gives it back when
/// dropped), or answers 503 when all are taken.
pub(crate) fn reserve_stream(state: &AppState) -> Result<(), ApiError> {
    let max = state.config.sse_streams_max;
    if state.sse_streams.fetch_add(1, Ordering::Relaxed) >= max {
        state.sse_streams.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            50301,
            format!("{max} event streams are open; retry later"),
        ));
    }
    Ok(())
}

pub(crate) async fn events(
    State(state): State<AppState>,
    Path(topic_name): Path<String>,
    extensions: axum::http::Extensions,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let topic = state
        .broker
        .topic(&topic_name)
        .ok_or_else(|| ApiError::unknown_topic(&topic_name))?;
    if let Some(p) = q.partition {
        if topic.partition_info(p).is_none() {
            return Err(ApiError::unknown_partition(
                &topic_name,
                p,
                topic.partition_count(),
            ));
        }
    }
    let from = parse_from(q.from.as_deref())?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.last_event_id);
    let resume = match resume.as_deref() {
        Some(text) => parse_position(text)?,
        None => HashMap::new(),
    };
    reserve_stream(&state)?;
    let member = match q.group {
        Some(group) => {
            let client = LocalClient {
                client_id: "sse".to_string(),
                client_host: extensions
                    .get::<ConnectInfo<std::net::SocketAddr>>()
                    .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string()),
            };
            let joined = state
                .broker
                .join_local_group(&group, std::slice::from_ref(&topic_name), client);
            match joined {
                Ok(m) => Some(m),
                Err(e) => {
                    state.sse_streams.fetch_sub(1, Ordering::Relaxed);
                    return Err(e.into());
                }
            }
        }
        None => None,
    };
    let mut session = Session {
        state,
        topic,
        from,
        only_partition: q.partition,
        positions: HashMap::new(),
        assigned: Vec::new(),
        waiting: Vec::new(),
        member,
        pending: VecDeque::new(),
        committed: HashMap::new(),
        last_commit: Instant::now(),
        ended: false,
    };
    session.refresh_assignment();
    for (p, o) in resume {
        if session.positions.contains_key(&p) {
            session.positions.insert(p, o);
        }
    }
    let stream = event_stream(session);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

fn event_stream(session: Session) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(session, |mut s| async move {
        // Bounded: each pass either yields, ends, or waits (woken by data, a rebalance, the
        // idle timeout or shutdown).
        loop {
            if let Some(ev) = s.pending.pop_front() {
                return Some((Ok(ev), s));
            }
            if s.ended {
                return None;
            }
            s.fill().await;
        }
    })
}
