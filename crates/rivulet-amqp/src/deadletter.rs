//! Dead-lettering: a rejected message, or one that reached its queue's delivery limit, is
//! republished to the queue's `x-dead-letter-exchange` with an `x-death` header, as
//! RabbitMQ does. Without a dead-letter exchange it is dropped.

use std::collections::BTreeMap;

use amq_protocol::protocol::basic::{parse_properties, AMQPProperties};
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use rivulet_broker::queues::{args, Queue};
use rivulet_broker::{Broker, NewRecord};

use crate::frame::properties_bytes;
use crate::message::{self, Outgoing, HEADER_EXCHANGE, HEADER_PROPERTIES, HEADER_ROUTING_KEY};

/// Republishes the message at `offset` of `queue` to its dead-letter exchange.
pub fn dead_letter(broker: &Broker, queue: &Queue, offset: i64, reason: &str) {
    if args::dead_letter(&queue.spec().arguments).is_none() {
        return;
    }
    let read = match broker.read_records(queue.name(), 0, offset, 1 << 20, 1) {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(queue = %queue.name(), offset, error = %e, "Dead-lettering: reading the message failed");
            return;
        }
    };
    let Some(record) = read.records.into_iter().find(|r| r.offset == offset) else {
        return;
    };
    dead_letter_message(broker, queue, message::from_record(&record, queue.name()), reason);
}

/// Republishes `original`, a message of `queue`, to the queue's dead-letter exchange.
pub fn dead_letter_message(broker: &Broker, queue: &Queue, original: Outgoing, reason: &str) {
    let Some((exchange, key)) = args::dead_letter(&queue.spec().arguments) else {
        return;
    };
    let mut properties = match parse_properties(original.raw_properties.as_ref()) {
        Ok((_, p)) => p,
        Err(_) => AMQPProperties::default(),
    };
    let headers = with_death(
        &properties,
        queue.name(),
        reason,
        &original.exchange,
        &original.routing_key,
    );
    properties = properties.with_headers(headers);
    let key = key.unwrap_or_else(|| original.routing_key.clone());
    let routing = message::routing_headers(&properties);
    let targets = match broker.route(&exchange, &key, &routing) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(queue = %queue.name(), exchange = %exchange, error = %e, "Dead-lettering: no route");
            return;
        }
    };
    let record = NewRecord {
        key: None,
        value: Some(original.body.to_vec()),
        headers: vec![
            (HEADER_EXCHANGE.to_string(), Some(exchange.as_bytes().to_vec())),
            (HEADER_ROUTING_KEY.to_string(), Some(key.as_bytes().to_vec())),
            (HEADER_PROPERTIES.to_string(), Some(properties_bytes(&properties))),
        ],
        partition: Some(0),
        timestamp_ms: None,
    };
    match broker.publish(&targets, &record) {
        // Dead-lettering is at-most-once, as in RabbitMQ's classic queues.
        Ok(appends) => drop(appends),
        Err(e) => tracing::warn!(queue = %queue.name(), error = %e, "Dead-lettering: publishing failed"),
    }
}

/// The message's headers with an `x-death` entry for this queue and reason (its count
/// raised when one exists) and the `x-first-death-*` headers.
fn with_death(
    properties: &AMQPProperties,
    queue: &str,
    reason: &str,
    exchange: &str,
    key: &str,
) -> FieldTable {
    let mut headers: BTreeMap<ShortString, AMQPValue> = properties
        .headers()
        .as_ref()
        .map(|t| t.inner().clone())
        .unwrap_or_default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    let mut deaths: Vec<AMQPValue> = match headers.get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |t: &FieldTable| {
        t.inner().get("queue") == Some(&text(queue)) && t.inner().get("reason") == Some(&text(reason))
    };
    let mut count = 1i64;
    if let Some(pos) = deaths
        .iter()
        .position(|d| matches!(d, AMQPValue::FieldTable(t) if same(t)))
    {
        if let AMQPValue::FieldTable(t) = deaths.remove(pos) {
            if let Some(AMQPValue::LongLongInt(n)) = t.inner().get("count") {
                count = n + 1;
            }
        }
    }
    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(count));
    death.insert("reason".into(), text(reason));
    death.insert("queue".into(), text(queue));
    death.insert("exchange".into(), text(exchange));
    death.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![text(key)])),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    death.insert("time".into(), AMQPValue::Timestamp(now));
    deaths.insert(0, AMQPValue::FieldTable(death));
    headers.insert("x-death".into(), AMQPValue::FieldArray(FieldArray::from(deaths)));
    headers
        .entry("x-first-death-queue".into())
        .or_insert_with(|| text(queue));
    headers
        .entry("x-first-death-reason".into())
        .or_insert_with(|| text(reason));
    headers
        .entry("x-first-death-exchange".into())
        .or_insert_with(|| text(exchange));
    FieldTable::from(headers)
}
