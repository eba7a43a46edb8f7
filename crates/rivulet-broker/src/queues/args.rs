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
    // Ready messages kept at most, and their body bytes at most (on a stream: the bytes
    // its log keeps, as retention.bytes).
    "x-max-length",
    "x-max-length-bytes",
    // Beyond those: drop-head (the default; the oldest are dead-lettered, `maxlen`),
    // reject-publish (new messages are refused, nacked) or reject-publish-dlx (refused and
    // dead-lettered).
    "x-overflow",
];

/// Arguments honoured on a stream, mapped to its topic's retention settings.
const STREAM_KNOWN: &[&str] = &[
    "x-queue-type",
    // Age after which whole segments are removed (`7D`, `12h`, `30m`, `10s`; Y, M, D, h,
    // m, s units as RabbitMQ's).
    "x-max-age",
    // Bytes kept at most (retention.bytes).
    "x-max-length-bytes",
    // Segment size (segment.bytes).
    "x-stream-max-segment-size-bytes",
];

/// What a queue does with a message beyond its length limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drops (dead-letters) the oldest ready messages.
    DropHead,
    /// Refuses the new message; publishers in confirm mode get a nack.
    RejectPublish,
    /// Refuses and dead-letters the new message.
    RejectPublishDlx,
}

/// A queue's length limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Ready messages at most.
    pub messages_max: Option<u64>,
    /// Body bytes of ready messages at most.
    pub bytes_max: Option<u64>,
    /// What happens beyond them.
    pub overflow: Overflow,
}

impl Limits {
    /// True when a queue holding `ready` messages of `bytes` stays within the limits.
    pub fn within(&self, ready: u64, bytes: u64) -> bool {
        self.messages_max.is_none_or(|m| ready <= m) && self.bytes_max.is_none_or(|m| bytes <= m)
    }
}

/// The length limits declared, if any (never for a stream).
pub fn limits(args: &Headers) -> Option<Limits> {
    if is_stream(args) {
        // A stream's x-max-length-bytes is its retention, applied by the log.
        return None;
    }
    let messages_max = max_length(args);
    let bytes_max = int_arg(args, "x-max-length-bytes");
    if messages_max.is_none() && bytes_max.is_none() {
        return None;
    }
    Some(Limits {
        messages_max,
        bytes_max,
        overflow: overflow(args).unwrap_or(Overflow::DropHead),
    })
}

fn overflow(args: &Headers) -> Option<Overflow> {
    match args.get("x-overflow")? {
        FieldValue::Str(o) if o == "drop-head" => Some(Overflow::DropHead),
        FieldValue::Str(o) if o == "reject-publish" => Some(Overflow::RejectPublish),
        FieldValue::Str(o) if o == "reject-publish-dlx" => Some(Overflow::RejectPublishDlx),
        _ => None,
    }
}

fn int_arg(args: &Headers, key: &str) -> Option<u64> {
    match args.get(key)? {
        FieldValue::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// A stream's topic settings from its arguments (`retention.ms`, `retention.bytes`,
/// `segment.bytes`).
pub fn stream_topic_configs(args: &Headers) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    if let Some(v) = args.get("x-max-age") {
        let ms = match v {
            FieldValue::Str(text) => max_age_ms(text),
            _ => None,
        };
        let ms = ms.ok_or_else(|| {
            QueueError::PreconditionFailed(format!(
                "invalid arg 'x-max-age': {v:?} (a number and a unit: Y, M, D, h, m or s)"
            ))
        })?;
        out.push(("retention.ms".to_string(), ms.to_string()));
    }
    for (key, config) in [
        ("x-max-length-bytes", "retention.bytes"),
        ("x-stream-max-segment-size-bytes", "segment.bytes"),
    ] {
        if args.contains_key(key) {
            let n = int_arg(args, key).filter(|n| *n > 0).ok_or_else(|| {
                QueueError::PreconditionFailed(format!("invalid arg '{key}': a positive integer"))
            })?;
            out.push((config.to_string(), n.to_string()));
        }
    }
    Ok(out)
}

/// `x-max-age` text (`7D`, `12h`) in milliseconds.
fn max_age_ms(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let unit_s: u64 = match unit {
        "Y" => 365 * 24 * 3600,
        "M" => 30 * 24 * 3600,
        "D" => 24 * 3600,
        "h" => 3600,
        "m" => 60,
        "s" => 1,
        _ => return None,
    };
    n.checked_mul(unit_s)?.checked_mul(1000).filter(|ms| *ms > 0)
}

/// Checks a declaration's arguments.
pub fn validate(args: &Headers, durable: bool, exclusive: bool) -> Result<()> {
    for key in args.keys() {
        let honoured =
            KNOWN.contains(&key.as_str()) || (is_stream(args) && STREAM_KNOWN.contains(&key.as_str()));
        if !honoured {
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
            if let Some(other) = args.keys().find(|k| !STREAM_KNOWN.contains(&k.as_str())) {
                return Err(QueueError::PreconditionFailed(format!(
                    "queue argument '{other}' is not supported on a stream by Rivulet"
                )));
            }
            stream_topic_configs(args)?;
            return Ok(());
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
    if args.contains_key("x-max-length-bytes") && int_arg(args, "x-max-length-bytes").is_none() {
        return Err(QueueError::PreconditionFailed(
            "invalid arg 'x-max-length-bytes': a non-negative integer".to_string(),
        ));
    }
    if let Some(v) = args.get("x-overflow").filter(|_| overflow(args).is_none()) {
        return Err(QueueError::PreconditionFailed(format!(
            "invalid arg 'x-overflow': {v:?} (drop-head, reject-publish or reject-publish-dlx)"
        )));
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
