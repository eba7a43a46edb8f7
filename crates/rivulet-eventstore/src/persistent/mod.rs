//! Persistent subscriptions: server-side consumer groups on a stream or on `$all`. The
//! group, not the consumer, remembers how far it got; consumers compete for its events,
//! acknowledge them, or ask for a retry, a skip or parking. An event retried too often is
//! parked in the group's parked stream, from which it can be replayed. Definitions,
//! checkpoints and parked events live in the store's own streams, so they survive restarts
//! and crashes like events do; delivery is at least once from the last checkpoint.
//!
//! Each group is one task ([`runner`]) owning its state ([`state`]); front ends reach it
//! through [`PersistentSubscriptions`] and [`Subscription`].

pub mod model;
mod runner;
mod state;
mod storage;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use self::model::{
    group_id, Delivery, GroupDefinition, GroupInfo, GroupSource, JoinRequest, NackAction, CONSUMER_SLOTS_MAX,
    GROUP_NAME_BYTES_MAX,
};
use self::runner::{Command, Runner};
use crate::error::{EventStoreError, Result};
use crate::filter::EventFilter;
use crate::{EventStore, STREAM_NAME_BYTES_MAX};

pub use storage::parked_stream;

/// Commands one group may have queued (acknowledgements of all its consumers).
const COMMANDS_MAX: usize = 1024;

#[derive(Debug)]
struct Handle {
    definition: GroupDefinition,
    commands: mpsc::Sender<Command>,
}

/// Every group of a store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PersistentSubscriptions {
    inner: Arc<Registry>,
}

#[derive(Debug)]
struct Registry {
    store: EventStore,
    groups: Mutex<BTreeMap<String, Handle>>,
    next_consumer: AtomicU64,
}

fn not_found(source: &str, group: &str) -> EventStoreError {
    EventStoreError::GroupNotFound {
        stream: source.to_string(),
        group: group.to_string(),
    }
}

fn validate(definition: &GroupDefinition) -> Result<()> {
    let invalid = |m: String| Err(EventStoreError::Invalid(m));
    if definition.group.is_empty() || definition.group.len() > GROUP_NAME_BYTES_MAX {
        return invalid(format!("a group name has 1 to {GROUP_NAME_BYTES_MAX} bytes"));
    }
    let id = definition.id();
    if id.len() + storage::SUFFIX_BYTES_MAX > STREAM_NAME_BYTES_MAX {
        return invalid(format!(
            "stream and group names together have at most {} bytes",
            STREAM_NAME_BYTES_MAX - storage::SUFFIX_BYTES_MAX - 2
        ));
    }
    match &definition.source {
        GroupSource::Stream(s) if s.is_empty() || s == "$all" => {
            invalid("a group reads a named stream or $all".into())
        }
        GroupSource::All { filter: Some(spec) } => EventFilter::compile(spec).map(|_| ()),
        _ => Ok(()),
    }
}

impl PersistentSubscriptions {
    /// Loads every group and starts its task (within a Tokio runtime).
    pub async fn start(store: EventStore) -> Result<PersistentSubscriptions> {
        let subscriptions = PersistentSubscriptions {
            inner: Arc::new(Registry {
                store,
                groups: Mutex::new(BTreeMap::new()),
                next_consumer: AtomicU64::new(1),
            }),
        };
        subscriptions.load().await?;
        Ok(subscriptions)
    }

    async fn load(&self) -> Result<()> {
        let definitions = storage::load_config(&self.inner.store)?;
        let mut groups = self.inner.groups.lock().await;
        for definition in definitions {
            let id = definition.id();
            match self.spawn(definition.clone()).await {
                Ok(commands) => {
                    groups.insert(id, Handle { definition, commands });
                }
                Err(e) => {
                    tracing::error!(group = %id, error = %e, "Persistent subscription group not started")
                }
            }
        }
        tracing::info!(groups = groups.len(), "Persistent subscriptions loaded");
        Ok(())
    }

    async fn spawn(&self, definition: GroupDefinition) -> Result<mpsc::Sender<Command>> {
        let runner = Runner::open(self.inner.store.clone(), definition).await?;
        let (tx, rx) = mpsc::channel(COMMANDS_MAX);
        tokio::spawn(runner.run(rx));
        Ok(tx)
    }

    async fn save(&self, groups: &BTreeMap<String, Handle>) -> Result<()> {
        let all = groups.values().map(|h| h.definition.clone()).collect();
        storage::save_config(&self.inner.store, all).await
    }

    /// Defines a new group and starts it.
    pub async fn create(&self, definition: GroupDefinition) -> Result<()> {
        validate(&definition)?;
        let id = definition.id();
        let mut groups = self.inner.groups.lock().await;
        if groups.contains_key(&id) {
            return Err(EventStoreError::GroupExists {
                stream: definition.source.name().to_string(),
                group: definition.group,
            });
        }
        // A group created again under an old name starts afresh.
        storage::forget(&self.inner.store, &id).await?;
        let commands = self.spawn(definition.clone()).await?;
        groups.insert(id.clone(), Handle { definition, commands });
        if let Err(e) = self.save(&groups).await {
            if let Some(h) = groups.remove(&id) {
                stop(h).await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Changes a group's settings (its source and filter stay); its consumers are dropped
    /// and join again, and it continues from its checkpoint.
    pub async fn update(&self, mut definition: GroupDefinition) -> Result<()> {
        let id = definition.id();
        let mut groups = self.inner.groups.lock().await;
        let Some(old) = groups.remove(&id) else {
            return Err(not_found(definition.source.name(), &definition.group));
        };
        if let (GroupSource::All { filter }, GroupSource::All { filter: kept }) =
            (&mut definition.source, &old.definition.source)
        {
            filter.clone_from(kept);
        }
        if let Err(e) = validate(&definition) {
            groups.insert(id, old);
            return Err(e);
        }
        stop(old).await;
        let commands = self.spawn(definition.clone()).await?;
        groups.insert(id, Handle { definition, commands });
        self.save(&groups).await
    }

    /// Removes a group, its checkpoint and its parked events; its consumers are dropped.
    pub async fn delete(&self, source: &str, group: &str) -> Result<()> {
        let id = group_id(source, group);
        let mut groups = self.inner.groups.lock().await;
        let Some(handle) = groups.remove(&id) else {
            return Err(not_found(source, group));
        };
        stop(handle).await;
        self.save(&groups).await?;
        storage::forget(&self.inner.store, &id).await
    }

    async fn commands(&self, source: &str, group: &str) -> Result<mpsc::Sender<Command>> {
        let groups = self.inner.groups.lock().await;
        groups
            .get(&group_id(source, group))
            .map(|h| h.commands.clone())
            .ok_or_else(|| not_found(source, group))
    }

    /// Joins a group as a consumer.
    pub async fn join(&self, source: &str, group: &str, mut request: JoinRequest) -> Result<Subscription> {
        request.buffer_size = request.buffer_size.clamp(1, CONSUMER_SLOTS_MAX);
        let commands = self.commands(source, group).await?;
        let consumer = self.inner.next_consumer.fetch_add(1, Ordering::Relaxed);
        let (tx, events) = mpsc::channel(request.buffer_size as usize);
        let (reply, joined) = oneshot::channel();
        let gone = || not_found(source, group);
        commands
            .send(Command::Join {
                consumer,
                request,
                tx,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        joined.await.map_err(|_| gone())??;
        Ok(Subscription {
            id: group_id(source, group),
            consumer,
            events,
            commands,
        })
    }

    /// A group's settings and statistics.
    pub async fn info(&self, source: &str, group: &str) -> Result<GroupInfo> {
        let commands = self.commands(source, group).await?;
        ask_info(&commands).await.ok_or_else(|| not_found(source, group))
    }

    /// Every group, or those on one source.
    pub async fn list(&self, source: Option<&str>) -> Result<Vec<GroupInfo>> {
        let handles: Vec<mpsc::Sender<Command>> = {
            let groups = self.inner.groups.lock().await;
            groups
                .values()
                .filter(|h| source.is_none_or(|s| h.definition.source.name() == s))
                .map(|h| h.commands.clone())
                .collect()
        };
        let mut out = Vec::with_capacity(handles.len());
        for commands in handles {
            if let Some(info) = ask_info(&commands).await {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Gives a group's parked events back for delivery (at most `stop_at` of them).
    pub async fn replay_parked(&self, source: &str, group: &str, stop_at: Option<u64>) -> Result<()> {
        let commands = self.commands(source, group).await?;
        let (reply, done) = oneshot::channel();
        commands
            .send(Command::Replay { stop_at, reply })
            .await
            .map_err(|_| not_found(source, group))?;
        done.await.map_err(|_| not_found(source, group))?
    }

    /// Stops every group and starts them again from their stored definitions and
    /// checkpoints; consumers are dropped and join again.
    pub async fn restart(&self) -> Result<()> {
        let old = std::mem::take(&mut *self.inner.groups.lock().await);
        for handle in old.into_values() {
            stop(handle).await;
        }
        self.load().await
    }
}

async fn stop(handle: Handle) {
    let (reply, stopped) = oneshot::channel();
    if handle.commands.send(Command::Stop(reply)).await.is_ok() {
        let _ = stopped.await;
    }
}

async fn ask_info(commands: &mpsc::Sender<Command>) -> Option<GroupInfo> {
    let (reply, info) = oneshot::channel();
    commands.send(Command::Info(reply)).await.ok()?;
    info.await.ok()
}

/// One consumer of a group. Dropping it leaves the group; what it held goes to the others.
#[derive(Debug)]
pub struct Subscription {
    id: String,
    consumer: u64,
    events: mpsc::Receiver<Delivery>,
    commands: mpsc::Sender<Command>,
}

impl Subscription {
    /// `<source>::<group>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next event; `None` when the group stopped (deleted, updated, shut down) or the
    /// consumer was stopped.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.events.recv().await
    }

    /// Acknowledges events by id.
    pub async fn ack(&self, ids: Vec<u128>) -> Result<()> {
        self.send(Command::Ack(self.consumer, ids)).await
    }

    /// Refuses events by id: retry, park, skip, or stop this consumer.
    pub async fn nack(&self, ids: Vec<u128>, action: NackAction, reason: String) -> Result<()> {
        self.send(Command::Nack(self.consumer, ids, action, reason)).await
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).await.map_err(|_| {
            let (source, group) = self.id.split_once("::").unwrap_or((&self.id, ""));
            not_found(source, group)
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // A full queue is no loss: the group also notices closed consumers within a second.
        let _ = self.commands.try_send(Command::Leave(self.consumer));
    }
}
