//! One message, two protocols: an AMQP message as a Kafka record and back.
//!
//! A published message becomes a record whose value is the body; the exchange, the routing
//! key and the content header's raw property bytes travel as record headers, so an AMQP
//! consumer gets the properties back byte for byte. A record produced over Kafka has no
//! such headers: it is delivered with its Kafka headers as the AMQP `headers` table.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::Bytes;
use rivulet_broker::routing::{FieldValue, Headers};
use rivulet_broker::{NewRecord, StoredRecord};

use crate::frame::{properties_bytes, ContentHeader};

/// Record header holding the exchange a message was published to.
pub const HEADER_EXCHANGE: &str = "amqp.exchange";
/// Record header holding the routing key.
pub const HEADER_ROUTING_KEY: &str = "amqp.routing-key";
/// Record header holding the content header's raw property bytes.
pub const HEADER_PROPERTIES: &str = "amqp.properties";

/// A message ready to be delivered over AMQP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Exchange it was published to.
    pub exchange: String,
    /// Its routing key.
    pub routing_key: String,
    /// Property flags and list for the content header.
    pub raw_properties: Bytes,
    /// The body.
    pub body: Bytes,
}

/// Record header holding a message's own `expiration` (milliseconds, as published).
pub const HEADER_EXPIRATION: &str = "amqp.expiration";

/// The record a published message is stored as. Its timestamp is the broker's clock at
/// append (message TTLs count from it); the AMQP `timestamp` property stays in the raw
/// properties.
pub fn to_record(exchange: &str, routing_key: &str, header: &ContentHeader, body: Vec<u8>) -> NewRecord {
    let mut headers = vec![
        (HEADER_EXCHANGE.to_string(), Some(exchange.as_bytes().to_vec())),
        (
            HEADER_ROUTING_KEY.to_string(),
            Some(routing_key.as_bytes().to_vec()),
        ),
        (
            HEADER_PROPERTIES.to_string(),
            Some(header.raw_properties.to_vec()),
        ),
    ];
    if let Some(ms) = header.properties.expiration() {
        headers.push((
            HEADER_EXPIRATION.to_string(),
            Some(ms.as_str().as_bytes().to_vec()),
        ));
    }
    NewRecord {
        key: None,
        value: Some(body),
        headers,
        partition: Some(0),
        timestamp_ms: None,
    }
}

/// When a stored message expires (ms since the epoch): its own `expiration` or the queue's
/// `x-message-ttl`, whichever is shorter, counted from its append; `None`: never.
pub fn expires_at_ms(record: &StoredRecord, queue_ttl_ms: Option<u64>) -> Option<i64> {
    let own = record
        .headers
        .iter()
        .find(|(k, _)| k == HEADER_EXPIRATION)
        .and_then(|(_, v)| v.as_ref())
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
    let ttl = match (own, queue_ttl_ms) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(
        record
            .timestamp_ms
            .saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
    )
}

/// The message a stored record is delivered as, from queue `queue`.
pub fn from_record(record: &StoredRecord, queue: &str) -> Outgoing {
    let find = |name: &str| {
        record
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    };
    let body = record.value.clone().unwrap_or_default();
    if let Some(raw) = find(HEADER_PROPERTIES) {
        let text = |b: Option<Bytes>| {
            b.map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        return Outgoing {
            exchange: text(find(HEADER_EXCHANGE)),
            routing_key: text(find(HEADER_ROUTING_KEY)),
            raw_properties: raw,
            body,
        };
    }
    let mut table = FieldTable::default();
    for (k, v) in &record.headers {
        let value = match v {
            Some(v) => AMQPValue::LongString(LongString::from(v.to_vec())),
            None => AMQPValue::Void,
        };
        table.insert(ShortString::from(k.as_str()), value);
    }
    let mut properties = AMQPProperties::default();
    if !record.headers.is_empty() {
        properties = properties.with_headers(table);
    }
    if let Ok(seconds) = u64::try_from(record.timestamp_ms / 1000) {
        properties = properties.with_timestamp(seconds);
    }
    Outgoing {
        exchange: String::new(),
        routing_key: queue.to_string(),
        raw_properties: Bytes::from(properties_bytes(&properties)),
        body,
    }
}

/// A message's `headers` table as the router compares it (headers exchanges).
pub fn routing_headers(properties: &AMQPProperties) -> Headers {
    properties
        .headers()
        .as_ref()
        .map(table_to_headers)
        .unwrap_or_default()
}

/// An AMQP field table as protocol-neutral headers.
pub fn table_to_headers(table: &FieldTable) -> Headers {
    table
        .inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), field_value(v)))
        .collect()
}

/// One AMQP field value as the router sees it.
pub fn field_value(v: &AMQPValue) -> FieldValue {
    match v {
        AMQPValue::Boolean(b) => FieldValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::ShortInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::ShortUInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::LongInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::LongUInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::LongLongInt(i) => FieldValue::Int(*i),
        AMQPValue::Timestamp(t) => FieldValue::Int(i64::try_from(*t).unwrap_or(i64::MAX)),
        AMQPValue::Float(f) => FieldValue::Float(f64::from(*f)),
        AMQPValue::Double(f) => FieldValue::Float(*f),
        AMQPValue::ShortString(s) => FieldValue::Str(s.as_str().to_string()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(text) => FieldValue::Str(text.to_string()),
            Err(_) => FieldValue::Bytes(s.as_bytes().to_vec()),
        },
        AMQPValue::ByteArray(b) => FieldValue::Bytes(b.as_slice().to_vec()),
        AMQPValue::Void => FieldValue::Void,
        AMQPValue::DecimalValue(_) | AMQPValue::FieldArray(_) | AMQPValue::FieldTable(_) => {
            FieldValue::Bytes(format!("{v:?}").into_bytes())
        }
    }
}

/// A message about to be appended, as it would be delivered from `queue`.
pub fn from_new_record(record: &NewRecord, queue: &str) -> Outgoing {
    let stored = StoredRecord {
        offset: 0,
        timestamp_ms: record.timestamp_ms.unwrap_or(0),
        key: record.key.clone().map(Bytes::from),
        value: record.value.clone().map(Bytes::from),
        headers: record
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().map(Bytes::from)))
            .collect(),
    };
    from_record(&stored, queue)
}
