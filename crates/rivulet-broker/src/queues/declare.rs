//! Declaring, deleting, purging and binding queues and exchanges.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use super::error::{QueueError, Result};
use super::{args, definitions, Declared, Queue, QueueSpec, Registry, StoredState, QUEUES_MAX};
use crate::error::BrokerError;
use crate::routing::{Binding, Exchange, ExchangeBinding, Headers};
use crate::Broker;

/// A server-generated queue name, `amq.gen-` and 22 characters as RabbitMQ's.
fn generated_name() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let state = RandomState::new();
    let mut out = String::from("amq.gen-");
    for i in 0u64..22 {
        let n = state.hash_one((i, std::time::Instant::now())) as usize;
        out.push(ALPHABET[n % ALPHABET.len()] as char);
    }
    out
}

fn inequivalent(what: &str, queue: &str) -> QueueError {
    QueueError::PreconditionFailed(format!(
        "inequivalent arg '{what}' for queue '{queue}' in vhost '/'"
    ))
}

fn check_equivalent(queue: &Queue, wanted: &QueueSpec) -> Result<()> {
    let have = queue.spec();
    if have.durable != wanted.durable {
        return Err(inequivalent("durable", queue.name()));
    }
    if have.auto_delete != wanted.auto_delete {
        return Err(inequivalent("auto_delete", queue.name()));
    }
    for key in have.arguments.keys().chain(wanted.arguments.keys()) {
        if have.arguments.get(key) != wanted.arguments.get(key) {
            return Err(inequivalent(key, queue.name()));
        }
    }
    Ok(())
}

/// Refuses a connection other than the owner of an exclusive queue.
fn check_access(queue: &Queue, connection: u64) -> Result<()> {
    match queue.owner() {
        Some(owner) if owner != connection && connection != super::OPERATOR => {
            Err(QueueError::ResourceLocked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '/'",
                queue.name()
            )))
        }
        _ => Ok(()),
    }
}

fn no_queue(name: &str) -> QueueError {
    QueueError::NotFound(format!("no queue '{name}' in vhost '/'"))
}

impl Broker {
    /// Declares a queue (or checks it when `passive`) for `connection`. An empty name asks
    /// for a server-named queue.
    pub fn queue_declare(
        &self,
        name: &str,
        spec: QueueSpec,
        passive: bool,
        connection: u64,
    ) -> Result<Declared> {
        let name = if name.is_empty() && !passive {
            generated_name()
        } else {
            name.to_string()
        };
        let queues = &self.inner.queues;
        let mut registry = queues.lock();
        if let Some(queue) = registry.queues.get(&name).cloned() {
            check_access(&queue, connection)?;
            if !passive {
                check_equivalent(&queue, &spec)?;
                queue.touch();
            }
            let counts = self.queue_counts(&queue, self.queue_end(&name));
            return Ok(Declared {
                name,
                messages: counts.ready,
                consumers: counts.consumers,
            });
        }
        if passive {
            return Err(no_queue(&name));
        }
        if name.starts_with("amq.") && !name.starts_with("amq.gen-") {
            return Err(QueueError::AccessRefused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        if registry.queues.len() >= QUEUES_MAX {
            return Err(QueueError::LimitReached(format!("{QUEUES_MAX} queues")));
        }
        args::validate(&spec.arguments, spec.durable, spec.exclusive)?;
        let (floor, existing) = self.queue_topic(&name, &spec)?;
        let owner = spec.exclusive.then_some(connection);
        let stored = StoredState {
            floor,
            delivered_end: floor,
            settled: Vec::new(),
        };
        let queue = Arc::new(Queue::new(&name, spec, owner, stored).over_existing_topic(existing));
        registry.queues.insert(name.clone(), queue);
        self.save_definitions(&registry)?;
        tracing::info!(queue = %name, "Declared queue");
        Ok(Declared {
            name,
            messages: 0,
            consumers: 0,
        })
    }

    /// Creates the queue's topic, or checks an existing one has a single partition; returns
    /// where the new queue starts (the topic's end) and whether the topic existed.
    fn queue_topic(&self, name: &str, spec: &QueueSpec) -> Result<(i64, bool)> {
        if let Some(topic) = self.topic(name) {
            if topic.partition_count() != 1 {
                return Err(QueueError::PreconditionFailed(format!(
                    "topic '{name}' has {} partitions; a queue is a single-partition topic",
                    topic.partition_count()
                )));
            }
            return Ok((topic.offsets(0).map_or(0, |o| o.1), true));
        }
        let mut overrides = BTreeMap::new();
        if !spec.durable {
            overrides.insert("fsync.policy".to_string(), "none".to_string());
        }
        if args::is_stream(&spec.arguments) {
            overrides.extend(args::stream_topic_configs(&spec.arguments)?);
        }
        match self.create_topic(name, 1, 1, overrides, false) {
            Ok(_) => Ok((0, false)),
            Err(BrokerError::InvalidTopicName { reason, .. }) => Err(QueueError::PreconditionFailed(
                format!("queue name '{name}' is not usable as a topic name: {reason}"),
            )),
            Err(BrokerError::InvalidConfig { key, reason }) => Err(QueueError::PreconditionFailed(format!(
                "invalid stream setting {key}: {reason}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The end of what consumers of a queue may be handed.
    pub fn queue_end(&self, name: &str) -> i64 {
        self.topic(name).and_then(|t| t.offsets(0)).map_or(0, |o| o.1)
    }

    /// The queue, if `connection` may use it.
    pub fn queue_for(&self, name: &str, connection: u64) -> Result<Arc<Queue>> {
        let queue = self.inner.queues.get(name).ok_or_else(|| no_queue(name))?;
        check_access(&queue, connection)?;
        Ok(queue)
    }

    /// Deletes a queue, its bindings and its topic; returns the messages it held. Deleting
    /// a queue that does not exist succeeds, as in RabbitMQ.
    pub fn queue_delete(&self, name: &str, if_unused: bool, if_empty: bool, connection: u64) -> Result<u64> {
        let mut registry = self.inner.queues.lock();
        let Some(queue) = registry.queues.get(name).cloned() else {
            return Ok(0);
        };
        check_access(&queue, connection)?;
        let counts = queue.counts(self.queue_end(name));
        if if_unused && counts.consumers > 0 {
            return Err(QueueError::PreconditionFailed(format!(
                "queue '{name}' in vhost '/' in use"
            )));
        }
        if if_empty && counts.ready + counts.unacked > 0 {
            return Err(QueueError::PreconditionFailed(format!(
                "queue '{name}' in vhost '/' is not empty"
            )));
        }
        self.remove_queue(&mut registry, &queue)?;
        Ok(counts.ready)
    }

    fn remove_queue(&self, registry: &mut Registry, queue: &Arc<Queue>) -> Result<()> {
        let name = queue.name();
        registry.queues.remove(name);
        registry.topology.forget_queue(name);
        queue.mark_deleted();
        self.save_definitions(registry)?;
        if queue.owns_topic() {
            match self.delete_topic(name) {
                Ok(()) | Err(BrokerError::UnknownTopic(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.forget_queue_state(name);
        tracing::info!(queue = %name, "Deleted queue");
        Ok(())
    }

    /// Drops every message of a queue not delivered to a consumer; returns how many.
    pub fn queue_purge(&self, name: &str, connection: u64) -> Result<u64> {
        let queue = self.queue_for(name, connection)?;
        if queue.is_stream() {
            return Err(QueueError::PreconditionFailed(format!(
                "queue '{name}' in vhost '/' is a stream; streams are not purged"
            )));
        }
        let dropped = queue.purge(self.queue_end(name));
        self.store_queue_state(&queue);
        Ok(dropped)
    }

    /// Binds a queue to an exchange.
    pub fn queue_bind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: Headers,
        connection: u64,
    ) -> Result<()> {
        self.change_binding(queue, exchange, key, arguments, connection, true)
    }

    /// Removes a binding; an absent binding is fine.
    pub fn queue_unbind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: Headers,
        connection: u64,
    ) -> Result<()> {
        self.change_binding(queue, exchange, key, arguments, connection, false)
    }

    fn change_binding(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: Headers,
        connection: u64,
        bind: bool,
    ) -> Result<()> {
        let mut registry = self.inner.queues.lock();
        let q = registry
            .queues
            .get(queue)
            .cloned()
            .ok_or_else(|| no_queue(queue))?;
        check_access(&q, connection)?;
        let binding = Binding {
            queue: queue.to_string(),
            key: key.to_string(),
            arguments,
        };
        if bind {
            registry.topology.bind(exchange, binding)?;
        } else {
            registry.topology.unbind(exchange, &binding)?;
        }
        self.save_definitions(&registry)
    }

    /// Binds exchange `destination` to exchange `source` (RabbitMQ's `exchange.bind`).
    pub fn exchange_bind(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: Headers,
    ) -> Result<()> {
        self.change_exchange_binding(destination, source, key, arguments, true)
    }

    /// Removes an exchange-to-exchange binding; an absent binding is fine.
    pub fn exchange_unbind(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: Headers,
    ) -> Result<()> {
        self.change_exchange_binding(destination, source, key, arguments, false)
    }

    fn change_exchange_binding(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: Headers,
        bind: bool,
    ) -> Result<()> {
        let mut registry = self.inner.queues.lock();
        let binding = ExchangeBinding {
            destination: destination.to_string(),
            key: key.to_string(),
            arguments,
        };
        if bind {
            registry.topology.bind_exchange(source, binding)?;
        } else {
            registry.topology.unbind_exchange(source, &binding)?;
        }
        self.save_definitions(&registry)
    }

    /// Declares an exchange, or checks it exists when `passive`.
    pub fn exchange_declare(&self, name: &str, exchange: Exchange, passive: bool) -> Result<()> {
        let mut registry = self.inner.queues.lock();
        if registry.topology.declare(name, exchange, passive)? {
            self.save_definitions(&registry)?;
        }
        Ok(())
    }

    /// Deletes an exchange and its bindings.
    pub fn exchange_delete(&self, name: &str, if_unused: bool) -> Result<()> {
        let mut registry = self.inner.queues.lock();
        registry.topology.delete(name, if_unused)?;
        self.save_definitions(&registry)
    }

    /// Counts a new consumer of a queue; `exclusive` asks to be its only consumer.
    pub fn queue_consumer_added(&self, queue: &Queue, exclusive: bool) -> Result<()> {
        if queue.add_consumer(exclusive) {
            return Ok(());
        }
        Err(QueueError::AccessRefused(format!(
            "queue '{}' in vhost '/' in exclusive use",
            queue.name()
        )))
    }

    /// Counts a consumer gone; an auto-delete queue goes with its last consumer.
    pub fn queue_consumer_removed(&self, queue: &Arc<Queue>) {
        if !queue.remove_consumer() {
            return;
        }
        let mut registry = self.inner.queues.lock();
        if registry
            .queues
            .get(queue.name())
            .is_some_and(|q| Arc::ptr_eq(q, queue))
        {
            if let Err(e) = self.remove_queue(&mut registry, queue) {
                tracing::error!(queue = %queue.name(), error = %e, "Deleting an auto-delete queue failed");
            }
        }
    }

    /// Drops the oldest ready messages of a drop-head queue beyond its `x-max-length` and
    /// `x-max-length-bytes`, counting messages appended but not yet durable; returns the
    /// dropped offsets (for dead-lettering).
    pub fn queue_trim_to_max_length(&self, queue: &Queue) -> Vec<i64> {
        let Some(limits) = queue.limits().filter(|l| l.overflow == args::Overflow::DropHead) else {
            return Vec::new();
        };
        let end = self.queue_end(queue.name());
        let (mut ready, mut bytes) = queue.ready_and_bytes(end);
        let owner: Arc<str> = Arc::from("x-max-length");
        let mut dropped = Vec::new();
        // Each pass drops at least one message or stops; ready messages bound the passes.
        while !limits.within(ready, bytes) {
            let over = limits.messages_max.map_or(0, |m| ready.saturating_sub(m)).max(1);
            let got = queue.acquire_to_drop(&owner, end, usize::try_from(over).unwrap_or(usize::MAX));
            if got.is_empty() {
                break;
            }
            for r in got {
                for offset in r.first..=r.last {
                    let size = queue.size_of(offset);
                    if queue
                        .settle(&owner, offset, crate::settle::Settle::Reject)
                        .is_ok()
                    {
                        dropped.push(offset);
                    }
                    ready = ready.saturating_sub(1);
                    bytes = bytes.saturating_sub(size);
                }
            }
        }
        if !dropped.is_empty() {
            self.store_queue_state(queue);
        }
        dropped
    }

    /// Deletes queues unused for their `x-expires` (log maintenance calls this).
    pub(crate) fn expire_unused_queues(&self) {
        let now = std::time::Instant::now();
        let mut registry = self.inner.queues.lock();
        let due: Vec<Arc<Queue>> = registry
            .queues
            .values()
            .filter(|q| q.unused_past_expiry(now))
            .cloned()
            .collect();
        for queue in due {
            tracing::info!(queue = %queue.name(), "Queue unused past its x-expires");
            if let Err(e) = self.remove_queue(&mut registry, &queue) {
                tracing::error!(queue = %queue.name(), error = %e, "Deleting an expired queue failed");
            }
        }
    }

    /// Deletes the exclusive queues of a closed connection.
    pub fn queues_connection_closed(&self, connection: u64) {
        let mut registry = self.inner.queues.lock();
        let owned: Vec<Arc<Queue>> = registry
            .queues
            .values()
            .filter(|q| q.owner() == Some(connection))
            .cloned()
            .collect();
        for queue in owned {
            if let Err(e) = self.remove_queue(&mut registry, &queue) {
                tracing::error!(queue = %queue.name(), error = %e, "Deleting an exclusive queue failed");
            }
        }
    }

    fn save_definitions(&self, registry: &Registry) -> Result<()> {
        let defs = definitions::snapshot(registry);
        let path = &self.inner.queues.definitions;
        Ok(definitions::save(
            self.inner.context.storage.as_ref(),
            path,
            &defs,
        )?)
    }
}
