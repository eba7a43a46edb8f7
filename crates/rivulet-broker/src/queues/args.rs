//! Queue arguments (`x-...`): which ones Rivulet honours, and their checks. An argument it
//! does not honour is refused by name rather than accepted and ignored.

use super::error::{QueueError, Result};
use crate::routing::{FieldValue, Headers};

/// Arguments honoured, with what they do.
const KNOWN: &[&str] = &[
    // classic | quorum: both are a durable-capable single-partition log here; stream: the
    // log itself, read by each consumer from its own offset.
    "x-queue-type",
    // Deliveries after which a message is dead-lettered (or dropped).
    "x-delivery-limit",
    // Where rejected and over-delivered messages go.
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    // Milliseconds a message may wait in the queue before it expires (dead-lettered).
    "x-message-ttl",
    // Milliseconds without consumers, gets or redeclarations after which the queue goes.
    "x-expires",
    // Ready messages kept at most; the oldest are dropped (dead-lettered, `maxlen`) beyond.
    "x-max-length",
    // Only `drop-head`, the default, is supported.
    "x-overflow",
];

/// Checks a declaration's arguments.
pub fn validate(args: &Headers, durable: bool, exclusive: bool) -> Result<()> {
    for key in args.keys() {
        if !KNOWN.contains(&key.as_str()) {
            return Err(QueueError::PreconditionFailed(format!(
                "queue argument '{key}' is not supported by Rivulet"
            )));
        }
    }
    match args.get("x-queue-type") {
        None => {}
        Some(FieldValue::Str(t)) if t == "classic" => {}
        Some(FieldValue::Str(t)) if t == "quorum" && (!durable || exclusive) => {
            return Err(QueueError::PreconditionFailed(
                "a quorum queue must be durable and not exclusive".to_string(),
            ));
        }
        Some(FieldValue::Str(t)) if t == "quorum" => {}
        Some(FieldValue::Str(t)) if t == "stream" => {
            if !durable || exclusive {
                return Err(QueueError::PreconditionFailed(
                    "a stream must be durable and not exclusive".to_string(),
                ));
            }
            if let Some(other) = args.keys().find(|k| *k != "x-queue-type") {
                return Err(QueueError::PreconditionFailed(format!(
                    "queue argument '{other}' is not supported on a stream by Rivulet"
                )));
            }
        }
        Some(other) => {
            return Err(QueueError::PreconditionFailed(format!(
                "invalid arg 'x-queue-type': {other:?} (classic, quorum or stream)"
            )))
        }
    }
    if args.contains_key("x-delivery-limit") && delivery_limit(args).is_none() {
        return Err(QueueError::PreconditionFailed(
            "invalid arg 'x-delivery-limit': a positive integer below 65536".to_string(),
        ));
    }
    if args.contains_key("x-message-ttl") && message_ttl_ms(args).is_none() {
        return Err(QueueError::PreconditionFailed(
            "invalid arg 'x-message-ttl': a non-negative integer of milliseconds".to_string(),
        ));
    }
    if args.contains_key("x-max-length") && max_length(args).is_none() {
        return Err(QueueError::PreconditionFailed(
            "invalid arg 'x-max-length': a non-negative integer".to_string(),
        ));
    }
    match args.get("x-overflow") {
        None => {}
        Some(FieldValue::Str(o)) if o == "drop-head" => {}
        Some(other) => {
            return Err(QueueError::PreconditionFailed(format!(
                "invalid arg 'x-overflow': {other:?}; Rivulet supports drop-head only"
            )))
        }
    }
    if args.contains_key("x-expires") && expires_ms(args).is_none() {
        return Err(QueueError::PreconditionFailed(
            "invalid arg 'x-expires': a positive integer of milliseconds".to_string(),
        ));
    }
    for key in ["x-dead-letter-exchange", "x-dead-letter-routing-key"] {
        if args.get(key).is_some_and(|v| !matches!(v, FieldValue::Str(_))) {
            return Err(QueueError::PreconditionFailed(format!(
                "invalid arg '{key}': a string"
            )));
        }
    }
    Ok(())
}

/// `x-delivery-limit`: deliveries allowed before a message is dead-lettered.
pub fn delivery_limit(args: &Headers) -> Option<u16> {
    match args.get("x-delivery-limit")? {
        FieldValue::Int(n) => u16::try_from(*n).ok().filter(|n| *n > 0),
        _ => None,
    }
}

/// `x-dead-letter-exchange` and the routing key override, when set.
pub fn dead_letter(args: &Headers) -> Option<(String, Option<String>)> {
    let FieldValue::Str(exchange) = args.get("x-dead-letter-exchange")? else {
        return None;
    };
    let key = match args.get("x-dead-letter-routing-key") {
        Some(FieldValue::Str(k)) => Some(k.clone()),
        _ => None,
    };
    Some((exchange.clone(), key))
}

/// `x-message-ttl` in milliseconds.
pub fn message_ttl_ms(args: &Headers) -> Option<u64> {
    match args.get("x-message-ttl")? {
        FieldValue::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// `x-expires` in milliseconds.
pub fn expires_ms(args: &Headers) -> Option<u64> {
    match args.get("x-expires")? {
        FieldValue::Int(n) => u64::try_from(*n).ok().filter(|n| *n > 0),
        _ => None,
    }
}

/// `x-max-length`: ready messages kept at most.
pub fn max_length(args: &Headers) -> Option<u64> {
    match args.get("x-max-length")? {
        FieldValue::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// True for `x-queue-type=stream`: consumers read from their own offsets and acks do not
/// remove messages.
pub fn is_stream(args: &Headers) -> bool {
    matches!(args.get("x-queue-type"), Some(FieldValue::Str(t)) if t == "stream")
}
