//! One group at work: a task that reads the source ahead of its consumers, hands events
//! out, takes acknowledgements, retries, parks and writes checkpoints. Everything reaches
//! the group through its command channel, so its state has one owner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::model::{
    ConsumerInfo, Delivery, GroupDefinition, GroupInfo, GroupSource, JoinRequest, NackAction, StartFrom,
    CONSUMERS_MAX, OUTSTANDING_MAX,
};
use super::state::{ConsumerId, GroupState, Rules};
use super::storage;
use crate::error::{EventStoreError, Result};
use crate::filter::EventFilter;
use crate::model::{Direction, RecordedEvent};
use crate::EventStore;

/// How often a group looks for consumers that went away without a word.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Reads of the source one turn of the loop makes before it lets others run.
const READS_PER_TURN_MAX: usize = 16;

/// What a group is asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    Join {
        consumer: ConsumerId,
        request: JoinRequest,
        tx: mpsc::Sender<Delivery>,
        reply: oneshot::Sender<Result<()>>,
    },
    Leave(ConsumerId),
    Ack(ConsumerId, Vec<u128>),
    Nack(ConsumerId, Vec<u128>, NackAction, String),
    Replay {
        stop_at: Option<u64>,
        reply: oneshot::Sender<Result<()>>,
    },
    Info(oneshot::Sender<GroupInfo>),
    Stop(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Consumer {
    tx: mpsc::Sender<Delivery>,
    request: JoinRequest,
}

/// The task's state.
pub(crate) struct Runner {
    store: EventStore,
    definition: GroupDefinition,
    id: String,
    filter: Option<EventFilter>,
    state: GroupState,
    consumers: HashMap<ConsumerId, Consumer>,
    indexed: watch::Receiver<u64>,
    caught_up: bool,
    checkpoint: Option<u64>,
    checkpoint_at: Instant,
    finished_at_checkpoint: u64,
    park_reasons: HashMap<u128, String>,
    /// Parked revisions below this were handed out for replay.
    replay_end: u64,
    /// The parked stream's `$tb` as last written.
    parked_truncated: u64,
}

/// Whether an event of `$all` is one of the store's own subscription records, which groups
/// on `$all` never deliver (their checkpoints would feed themselves).
fn is_group_record(e: &RecordedEvent) -> bool {
    e.stream.starts_with("$persistentsubscription-") || e.stream == storage::CONFIG_STREAM
}

impl Runner {
    /// Loads a group's checkpoint and prepares its task.
    pub(crate) async fn open(store: EventStore, definition: GroupDefinition) -> Result<Runner> {
        let id = definition.id();
        let filter = match &definition.source {
            GroupSource::All { filter: Some(spec) } => Some(EventFilter::compile(spec)?),
            _ => None,
        };
        let checkpoint = storage::load_checkpoint(&store, &id)?;
        let start = match (checkpoint, definition.settings.start_from) {
            (Some(next), _) => next,
            (None, StartFrom::Start) => 0,
            (None, StartFrom::At(n)) => n,
            (None, StartFrom::End) => end_of(&store, &definition.source)?,
        };
        let s = &definition.settings;
        let rules = Rules {
            strategy: s.strategy,
            max_retry_count: s.max_retry_count,
            message_timeout: (s.message_timeout_ms > 0).then(|| Duration::from_millis(s.message_timeout_ms)),
        };
        let mut runner = Runner {
            indexed: store.watch_indexed(),
            state: GroupState::new(rules, start),
            store,
            definition,
            id,
            filter,
            consumers: HashMap::new(),
            caught_up: false,
            checkpoint,
            checkpoint_at: Instant::now(),
            finished_at_checkpoint: 0,
            park_reasons: HashMap::new(),
            replay_end: 0,
            parked_truncated: 0,
        };
        if runner.checkpoint.is_none() {
            // A group starting at the end must not move when it restarts before its first
            // acknowledgement: pin where "the end" was.
            runner.write_checkpoint().await?;
        }
        Ok(runner)
    }

    /// Runs until stopped or until every handle to the group is gone.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut stopped: Option<oneshot::Sender<()>> = None;
        loop {
            self.sweep_closed();
            let more = self.fill();
            self.deliver();
            self.park_due().await;
            self.checkpoint_due(false).await;
            let wake = self.next_wake();
            let waiting_for_events = self.caught_up && !self.consumers.is_empty();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Command::Stop(reply)) => {
                        stopped = Some(reply);
                        break;
                    }
                    Some(c) => self.handle(c),
                    None => break,
                },
                changed = self.indexed.changed(), if waiting_for_events => {
                    if changed.is_err() {
                        break;
                    }
                    self.caught_up = false;
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    self.state.expire(Instant::now());
                }
                () = tokio::task::yield_now(), if more => {}
            }
        }
        self.consumers.clear();
        self.park_due().await;
        self.checkpoint_due(true).await;
        if let Some(reply) = stopped {
            let _ = reply.send(());
        }
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + SWEEP_INTERVAL;
        if let Some(d) = self.state.next_deadline() {
            wake = wake.min(d);
        }
        if self.state.finished_total > self.finished_at_checkpoint {
            wake = wake.min(self.checkpoint_at + self.checkpoint_after());
        }
        wake.max(now)
    }

    fn checkpoint_after(&self) -> Duration {
        Duration::from_millis(self.definition.settings.checkpoint_after_ms)
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Join {
                consumer,
                request,
                tx,
                reply,
            } => {
                let _ = reply.send(self.join(consumer, request, tx));
            }
            Command::Leave(c) => self.leave(c),
            Command::Ack(c, ids) => {
                self.state.ack(c, &ids);
            }
            Command::Nack(c, ids, action, reason) => {
                if action == NackAction::Park && self.park_reasons.len() < OUTSTANDING_MAX {
                    for id in &ids {
                        self.park_reasons.insert(*id, reason.clone());
                    }
                }
                self.state.nack(c, &ids, action);
                if action == NackAction::Stop {
                    self.leave(c);
                }
            }
            Command::Replay { stop_at, reply } => {
                let _ = reply.send(self.replay(stop_at));
            }
            Command::Info(reply) => {
                let _ = reply.send(self.info());
            }
            Command::Stop(_) => unreachable!("handled by the loop"),
        }
    }

    fn join(&mut self, consumer: ConsumerId, request: JoinRequest, tx: mpsc::Sender<Delivery>) -> Result<()> {
        let limit = match self.definition.settings.subscriber_count_max {
            0 => CONSUMERS_MAX,
            n => (n as usize).min(CONSUMERS_MAX),
        };
        if self.consumers.len() >= limit {
            return Err(EventStoreError::GroupFull {
                stream: self.definition.source.name().to_string(),
                group: self.definition.group.clone(),
            });
        }
        self.state.join(consumer, request.buffer_size.max(1));
        self.consumers.insert(consumer, Consumer { tx, request });
        self.caught_up = false;
        Ok(())
    }

    fn leave(&mut self, consumer: ConsumerId) {
        self.consumers.remove(&consumer);
        self.state.leave(consumer);
    }

    fn sweep_closed(&mut self) {
        let gone: Vec<ConsumerId> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.tx.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for c in gone {
            self.leave(c);
        }
    }

    /// Reads the source ahead of the consumers; true when there is more to read now.
    fn fill(&mut self) -> bool {
        if self.consumers.is_empty() || self.caught_up {
            return false;
        }
        self.indexed.borrow_and_update();
        let ahead = self.definition.settings.read_ahead();
        for _ in 0..READS_PER_TURN_MAX {
            let room = ahead.saturating_sub(self.state.outstanding());
            if room == 0 {
                return false;
            }
            let batch = (self.definition.settings.read_batch_size as usize).clamp(1, room);
            let read = match &self.definition.source {
                GroupSource::Stream(stream) => self.read_stream(&stream.clone(), batch),
                GroupSource::All { .. } => self.read_all(batch),
            };
            match read {
                Ok(true) => {}
                Ok(false) => {
                    self.caught_up = true;
                    return false;
                }
                Err(e) => {
                    tracing::warn!(group = %self.id, error = %e, "Persistent subscription: reading the source failed; waiting for new events");
                    self.caught_up = true;
                    return false;
                }
            }
        }
        true
    }

    /// One read of a stream source; false at its end.
    fn read_stream(&mut self, stream: &str, batch: usize) -> Result<bool> {
        let from = self.state.next_read;
        let slice = match self
            .store
            .read_stream(stream, Some(from), Direction::Forwards, batch)
        {
            Ok(slice) => slice,
            Err(EventStoreError::StreamNotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        if slice.events.is_empty() {
            return Ok(false);
        }
        let projection = stream.starts_with("$ce-") || stream.starts_with("$et-");
        let mut last = from;
        for (i, e) in slice.events.into_iter().enumerate() {
            // Projection events keep their own revisions; their place in the projection
            // is at least `from + i`, so a checkpoint from it never skips one.
            let seq = if projection { from + i as u64 } else { e.revision };
            last = seq;
            self.state.offer(Arc::new(e), seq);
        }
        self.state.next_read = slice.next.unwrap_or(slice.last_revision + 1).max(last + 1);
        Ok(slice.next.is_some())
    }

    /// One read of `$all`; false at its end.
    fn read_all(&mut self, batch: usize) -> Result<bool> {
        let filter = self.filter.as_ref();
        let passes = |e: &RecordedEvent| !is_group_record(e) && filter.is_none_or(|f| f.matches(e));
        let slice =
            self.store
                .read_all_where(Some(self.state.next_read), Direction::Forwards, batch, &passes)?;
        for e in slice.events {
            let seq = e.position;
            self.state.offer(Arc::new(e), seq);
        }
        self.state.next_read = slice.next_position.max(self.state.next_read);
        Ok(!slice.end)
    }

    fn deliver(&mut self) {
        if self.consumers.is_empty() {
            return;
        }
        for (c, delivery) in self.state.dispatch(Instant::now()) {
            let sent = self
                .consumers
                .get(&c)
                .map(|consumer| consumer.tx.try_send(delivery));
            if !matches!(sent, Some(Ok(()))) {
                // Its channel holds no more than its slots, so only a consumer that went
                // away refuses: what it held goes to the others.
                self.leave(c);
            }
        }
    }

    async fn park_due(&mut self) {
        let due = self.state.take_to_park();
        if due.is_empty() {
            return;
        }
        let events: Vec<(Arc<RecordedEvent>, String)> = due
            .iter()
            .map(|(_, e)| {
                let reason = self
                    .park_reasons
                    .remove(&e.id)
                    .unwrap_or_else(|| "retried too often or timed out".to_string());
                (e.clone(), reason)
            })
            .collect();
        match storage::park(&self.store, &self.id, &events).await {
            Ok(()) => due.into_iter().for_each(|(t, _)| self.state.parked(t)),
            Err(e) => {
                tracing::error!(group = %self.id, error = %e, "Persistent subscription: parking failed; the events will be delivered again");
                due.into_iter().for_each(|(t, _)| self.state.park_failed(t));
            }
        }
    }

    async fn checkpoint_due(&mut self, force: bool) {
        let finished = self.state.finished_total - self.finished_at_checkpoint;
        let s = &self.definition.settings;
        let elapsed = self.checkpoint_at.elapsed() >= self.checkpoint_after();
        let due = finished >= u64::from(s.checkpoint_count_max.max(1))
            || (elapsed
                && finished > 0
                && (finished >= u64::from(s.checkpoint_count_min) || self.state.outstanding() == 0))
            || (force && finished > 0);
        if !due {
            return;
        }
        if let Err(e) = self.write_checkpoint().await {
            tracing::warn!(group = %self.id, error = %e, "Persistent subscription: checkpoint not written; retrying later");
            self.checkpoint_at = Instant::now();
        }
    }

    async fn write_checkpoint(&mut self) -> Result<()> {
        let next = self.state.checkpoint();
        if self.checkpoint != Some(next) {
            storage::save_checkpoint(&self.store, &self.id, next).await?;
            self.checkpoint = Some(next);
        }
        let replayed_below = self.state.parked_floor().unwrap_or(self.replay_end);
        if replayed_below > self.parked_truncated {
            storage::truncate_parked(&self.store, &self.id, replayed_below).await?;
            self.parked_truncated = replayed_below;
        }
        self.checkpoint_at = Instant::now();
        self.finished_at_checkpoint = self.state.finished_total;
        Ok(())
    }

    /// Gives parked events back for delivery (at most `stop_at`, within the group's read-ahead).
    fn replay(&mut self, stop_at: Option<u64>) -> Result<()> {
        let room = OUTSTANDING_MAX.saturating_sub(self.state.outstanding());
        let max = stop_at.map_or(room, |n| (n as usize).min(room));
        if max == 0 {
            return Ok(());
        }
        for (revision, event) in storage::read_parked(&self.store, &self.id, crate::READ_EVENTS_MAX.min(max))?
        {
            if revision < self.replay_end {
                continue;
            }
            if let Some(e) = event {
                self.state.offer_replay(Arc::new(e), revision);
            }
            self.replay_end = revision + 1;
        }
        Ok(())
    }

    fn info(&self) -> GroupInfo {
        let consumers = self
            .state
            .consumers()
            .iter()
            .filter_map(|(id, slots)| {
                let c = self.consumers.get(id)?;
                Some(ConsumerInfo {
                    from: c.request.from.clone(),
                    username: c.request.username.clone(),
                    connection_name: c.request.connection_name.clone(),
                    delivered_total: slots.delivered_total,
                    in_flight: slots.in_flight,
                    slots_free: slots.slots - slots.in_flight,
                })
            })
            .collect();
        GroupInfo {
            definition: self.definition.clone(),
            status: if self.consumers.is_empty() { "Idle" } else { "Live" },
            consumers,
            delivered_total: self.state.delivered_total,
            finished_total: self.state.finished_total,
            checkpoint: self.checkpoint,
            next_read: self.state.next_read,
            source_end: end_of(&self.store, &self.definition.source).unwrap_or(self.state.next_read),
            outstanding: self.state.outstanding(),
            in_flight: self.state.in_flight(),
            retry_waiting: self.state.retry_waiting(),
            parked: storage::parked_count(&self.store, &self.id).unwrap_or(0),
        }
    }
}

/// Where "the end" of a source is now.
fn end_of(store: &EventStore, source: &GroupSource) -> Result<u64> {
    match source {
        GroupSource::All { .. } => Ok(store.indexed_position()),
        GroupSource::Stream(stream) => match store.read_stream(stream, None, Direction::Backwards, 1) {
            Ok(slice) => Ok(slice.last_revision + 1),
            Err(EventStoreError::StreamNotFound(_)) => Ok(0),
            Err(e) => Err(e),
        },
    }
}
