//! `GET /v1/topics/{topic}/events`: a Server-Sent Events stream of a topic.
//!
//! Each record is one event of type `record` whose data is the record as JSON and whose id
//! is the stream's position after it: `partition:next_offset` pairs for every partition the
//! stream reads, e.g. `0:42,1:17`. A browser's `EventSource` sends that id back as
//! `Last-Event-ID` when it reconnects, and the stream resumes exactly there.
//!
//! With `group=G` the stream is a member of consumer group `G`: it starts from the group's
//! committed offsets, commits its position as events are delivered, and streams of the same
//! group on this gateway split the topic's partitions between them (partition `p` goes to
//! member `p % members`; a member joining or leaving reassigns at once). These members do
//! not take part in the Kafka group protocol; Kafka consumers and SSE streams should not
//! share one group.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use rivulet_broker::{CommittedOffset, Topic};
use serde::Deserialize;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::records::decode;
use crate::AppState;

const READ_BYTES: usize = 256 * 1024;
const RECORDS_PER_READ: usize = 500;
const IDLE_WAIT: Duration = Duration::from_secs(30);
const COMMIT_EVERY: Duration = Duration::from_millis(500);

/// Members of SSE consumer groups on this gateway.
#[derive(Debug, Default)]
pub(crate) struct SseGroups {
    groups: Mutex<HashMap<String, GroupEntry>>,
    next_member: AtomicU64,
}

#[derive(Debug)]
struct GroupEntry {
    members: BTreeSet<u64>,
    generation: watch::Sender<u64>,
}

impl SseGroups {
    fn join(&self, group: &str) -> (u64, watch::Receiver<u64>) {
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let entry = groups.entry(group.to_string()).or_insert_with(|| GroupEntry {
            members: BTreeSet::new(),
            generation: watch::channel(0).0,
        });
        entry.members.insert(id);
        entry.generation.send_modify(|g| *g += 1);
        (id, entry.generation.subscribe())
    }

    fn leave(&self, group: &str, member: u64) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = groups.get_mut(group) {
            entry.members.remove(&member);
            entry.generation.send_modify(|g| *g += 1);
            if entry.members.is_empty() {
                groups.remove(group);
            }
        }
    }

    fn assignment(&self, group: &str, member: u64, partitions: usize) -> Vec<i32> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = groups.get(group) else {
            return Vec::new();
        };
        let n = entry.members.len().max(1);
        let Some(index) = entry.members.iter().position(|m| *m == member) else {
            return Vec::new();
        };
        (0..partitions)
            .filter(|p| p % n == index)
            .map(|p| p as i32)
            .collect()
    }
}

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

struct GroupMember {
    name: String,
    id: u64,
    generation: watch::Receiver<u64>,
}

struct Session {
    state: AppState,
    topic: Arc<Topic>,
    from: From,
    only_partition: Option<i32>,
    positions: HashMap<i32, i64>,
    assigned: Vec<i32>,
    group: Option<GroupMember>,
    pending: VecDeque<Event>,
    committed: HashMap<i32, i64>,
    last_commit: Instant,
}

impl Session {
    fn initial_position(&self, partition: i32) -> i64 {
        let Some(log) = self.topic.partition(partition) else {
            return 0;
        };
        if let Some(g) = &self.group {
            if let Some(c) = self
                .state
                .broker
                .groups()
                .offsets()
                .fetch(&g.name, self.topic.name(), partition)
            {
                return c.offset;
            }
        }
        match self.from {
            From::Start => log.log_start_offset(),
            From::End => log.high_watermark(),
            From::Offset(o) => o.clamp(log.log_start_offset(), log.high_watermark()),
        }
    }

    fn refresh_assignment(&mut self) {
        let count = self.topic.partition_count();
        let assigned = match (&self.group, self.only_partition) {
            (Some(g), _) => self.state.sse_groups.assignment(&g.name, g.id, count),
            (None, Some(p)) => vec![p],
            (None, None) => (0..count as i32).collect(),
        };
        for &p in &assigned {
            if !self.assigned.contains(&p) || !self.positions.contains_key(&p) {
                let pos = self.initial_position(p);
                self.positions.entry(p).or_insert(pos);
                if self.group.is_some() && !self.assigned.contains(&p) {
                    // Newly assigned: continue from what the group committed.
                    self.positions.insert(p, pos);
                }
            }
        }
        self.positions.retain(|p, _| assigned.contains(p));
        self.assigned = assigned;
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

    /// Positions delivered but not yet committed, as commit entries.
    fn uncommitted(&self) -> Vec<(String, i32, CommittedOffset)> {
        self.positions
            .iter()
            .filter(|(p, o)| self.committed.get(p) != Some(o))
            .map(|(p, o)| {
                (
                    self.topic.name().to_string(),
                    *p,
                    CommittedOffset {
                        offset: *o,
                        leader_epoch: -1,
                        metadata: None,
                        commit_timestamp_ms: rivulet_log::now_ms(),
                    },
                )
            })
            .collect()
    }

    async fn commit(&mut self, force: bool) {
        let Some(g) = &self.group else { return };
        if !force && self.last_commit.elapsed() < COMMIT_EVERY {
            return;
        }
        let changed = self.uncommitted();
        if changed.is_empty() {
            return;
        }
        match self.state.broker.groups().commit(&g.name, changed.clone()).await {
            Ok(()) => {
                for (_, p, c) in changed {
                    self.committed.insert(p, c.offset);
                }
                self.last_commit = Instant::now();
            }
            Err(e) => tracing::warn!(group = %g.name, error = %e, "SSE offset commit failed"),
        }
    }

    /// Reads the next records into `pending`, waiting for new data when there is none.
    async fn fill(&mut self) {
        // Everything yielded so far has been handed to the connection: commit it.
        self.commit(false).await;
        let generation_changed = self
            .group
            .as_mut()
            .is_some_and(|g| g.generation.has_changed().unwrap_or(false));
        if generation_changed || self.assigned.is_empty() {
            if let Some(g) = self.group.as_mut() {
                g.generation.borrow_and_update();
            }
            self.commit(true).await;
            self.refresh_assignment();
        }
        let mut receivers = Vec::new();
        for p in self.assigned.clone() {
            let Some(log) = self.topic.partition(p).cloned() else {
                continue;
            };
            let rx = log.subscribe();
            let pos = self.positions.get(&p).copied().unwrap_or(0);
            let read = match log.read(pos, READ_BYTES) {
                Ok(r) => r,
                Err(rivulet_log::LogError::OffsetOutOfRange { log_start_offset, .. }) => {
                    self.positions.insert(p, log_start_offset);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(topic = %self.topic.name(), partition = p, error = %e, "SSE read failed");
                    self.pending
                        .push_back(Event::default().event("error").data(e.to_string()));
                    continue;
                }
            };
            if read.records.is_empty() {
                receivers.push(rx);
                continue;
            }
            let bytes = read.records.len() as u64;
            let records = match decode(self.topic.name(), p, read.records, pos, RECORDS_PER_READ) {
                Ok(r) => r,
                Err(e) => {
                    self.pending
                        .push_back(Event::default().event("error").data(e.message));
                    continue;
                }
            };
            if let Some(m) = self.state.broker_metrics() {
                m.record_fetched(self.topic.name(), records.len() as u64, bytes);
            }
            for r in records {
                self.positions.insert(p, r.offset + 1);
                let id = self.event_id();
                match Event::default().event("record").id(id).json_data(&r) {
                    Ok(ev) => self.pending.push_back(ev),
                    Err(e) => tracing::warn!(error = %e, "SSE event encoding failed"),
                }
            }
        }
        if !self.pending.is_empty() {
            return;
        }
        // Nothing to send: wait for any assigned partition to grow, a rebalance, or a while.
        let mut waits: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> = Vec::new();
        for mut rx in receivers {
            waits.push(Box::pin(async move {
                let _ = rx.changed().await;
            }));
        }
        if let Some(g) = &self.group {
            let mut rx = g.generation.clone();
            waits.push(Box::pin(async move {
                let _ = rx.changed().await;
            }));
        }
        if waits.is_empty() {
            tokio::time::sleep(IDLE_WAIT).await;
            return;
        }
        let _ = tokio::time::timeout(IDLE_WAIT, futures_util::future::select_all(waits)).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.state.sse_streams.fetch_sub(1, Ordering::Relaxed);
        if let Some(g) = &self.group {
            self.state.sse_groups.leave(&g.name, g.id);
            let pending = self.uncommitted();
            if !pending.is_empty() {
                let broker = self.state.broker.clone();
                let group = g.name.clone();
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        if let Err(e) = broker.groups().commit(&group, pending).await {
                            tracing::warn!(group = %group, error = %e, "Final SSE offset commit failed");
                        }
                    });
                }
            }
        }
    }
}

pub(crate) async fn events(
    State(state): State<AppState>,
    Path(topic_name): Path<String>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let topic = state
        .broker
        .topic(&topic_name)
        .ok_or_else(|| ApiError::unknown_topic(&topic_name))?;
    if let Some(p) = q.partition {
        if topic.partition(p).is_none() {
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
    let max = state.config.sse_streams_max;
    if state.sse_streams.fetch_add(1, Ordering::Relaxed) >= max {
        state.sse_streams.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            50301,
            format!("{max} event streams are open; retry later"),
        ));
    }
    let group = q.group.map(|name| {
        let (id, generation) = state.sse_groups.join(&name);
        GroupMember { name, id, generation }
    });
    let mut session = Session {
        state,
        topic,
        from,
        only_partition: q.partition,
        positions: HashMap::new(),
        assigned: Vec::new(),
        group,
        pending: VecDeque::new(),
        committed: HashMap::new(),
        last_commit: Instant::now(),
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
        // Bounded: each pass either yields, or waits (woken by data or the idle timeout).
        loop {
            if let Some(ev) = s.pending.pop_front() {
                return Some((Ok(ev), s));
            }
            s.fill().await;
        }
    })
}
