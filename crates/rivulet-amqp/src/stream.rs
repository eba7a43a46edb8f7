//! Consuming a stream (`x-queue-type=stream`): each consumer reads the queue's topic from
//! its own offset (`x-stream-offset`); acknowledgements only return prefetch credit, and
//! messages stay for every other reader. Each delivery carries its offset in the
//! `x-stream-offset` header, so a consumer can resume where it left off.

use std::sync::atomic::Ordering;
use std::time::Duration;

use amq_protocol::protocol::basic::{parse_properties, AMQPProperties};
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;
use rivulet_broker::{Broker, StoredRecord, Woke};

use crate::consumer::{deliver_frames, Closed, Consumer};
use crate::fault::{self, Fault};
use crate::frame::properties_bytes;
use crate::message;
use crate::shared::Unacked;

/// Bytes of stored batches one read covers.
const READ_BYTES_MAX: usize = 256 << 10;

/// Where a stream consumer starts, from its `x-stream-offset` argument: `first`, `last`,
/// `next` (the default), an offset, a timestamp (seconds) or an age such as `30m`, `1h`,
/// `2D` (`s`, `m`, `h`, `D`, `M` for 30 days, `Y`).
pub fn start_offset(broker: &Broker, queue: &str, arguments: &FieldTable) -> Result<i64, Fault> {
    let (start, end) = broker.topic(queue).and_then(|t| t.offsets(0)).unwrap_or((0, 0));
    let at_time = |ms: i64| -> Result<i64, Fault> {
        match broker.offset_for_timestamp(queue, 0, ms) {
            Ok(Some(t)) => Ok(t.offset),
            Ok(None) => Ok(end),
            Err(e) => Err(Fault::connection(fault::INTERNAL_ERROR, e.to_string())),
        }
    };
    let bad = |what: &str| {
        Fault::channel(
            fault::PRECONDITION_FAILED,
            format!("invalid x-stream-offset: {what}"),
        )
    };
    let offset = match arguments.inner().get("x-stream-offset") {
        None => end,
        Some(AMQPValue::LongString(s)) => {
            spec_offset(&String::from_utf8_lossy(s.as_bytes()), start, end, at_time, bad)?
        }
        Some(AMQPValue::ShortString(s)) => spec_offset(s.as_str(), start, end, at_time, bad)?,
        Some(AMQPValue::Timestamp(seconds)) => {
            at_time(i64::try_from(*seconds).unwrap_or(i64::MAX).saturating_mul(1000))?
        }
        Some(v) => match message::field_value(v) {
            rivulet_broker::routing::FieldValue::Int(n) => n,
            _ => return Err(bad(&format!("{v:?}"))),
        },
    };
    Ok(offset.clamp(start, end))
}

fn spec_offset(
    text: &str,
    start: i64,
    end: i64,
    at_time: impl Fn(i64) -> Result<i64, Fault>,
    bad: impl Fn(&str) -> Fault,
) -> Result<i64, Fault> {
    match text {
        "first" => return Ok(start),
        "last" => return Ok((end - 1).max(start)),
        "next" => return Ok(end),
        _ => {}
    }
    let unit_at = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(unit_at);
    let seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "D" => 86_400,
        "M" => 30 * 86_400,
        "Y" => 365 * 86_400,
        _ => return Err(bad(text)),
    };
    let n: u64 = number.parse().map_err(|_| bad(text))?;
    let age_ms = i64::try_from(n.saturating_mul(seconds).saturating_mul(1000)).unwrap_or(i64::MAX);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    at_time(now_ms.saturating_sub(age_ms))
}

/// Runs a stream consumer from `position` until cancelled, the stream is deleted or the
/// connection closes.
pub async fn run(c: Consumer, mut position: i64) {
    let mut credit = c.channel.credit_changes();
    let mut changes = c.queue.changes();
    let mut data = c.broker.watch([(c.queue.name(), 0)]);
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        credit.borrow_and_update();
        changes.borrow_and_update();
        if c.state.cancelled.load(Ordering::Acquire) {
            return;
        }
        if c.queue.is_deleted() {
            crate::consumer::notify_cancel(&c).await;
            return;
        }
        let room = c.channel.room(&c.state);
        if room == 0 {
            if credit.changed().await.is_err() {
                return;
            }
            continue;
        }
        let read = match c
            .broker
            .read_records(c.queue.name(), 0, position, READ_BYTES_MAX, room)
        {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(queue = %c.queue.name(), position, error = %e, "Reading a stream failed");
                return;
            }
        };
        position = position.max(read.log_start_offset);
        if read.records.is_empty() {
            position = position.max(read.next_offset);
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                woke = data.wait(far()) => if woke == Woke::ShuttingDown { return },
            }
            continue;
        }
        for record in &read.records {
            if deliver(&c, record).await.is_err() {
                return;
            }
            position = record.offset + 1;
        }
        position = position.max(read.next_offset);
    }
}

/// Sends one stream message with its `x-stream-offset` header.
async fn deliver(c: &Consumer, record: &StoredRecord) -> Result<(), Closed> {
    let mut msg = message::from_record(record, c.queue.name());
    let mut properties =
        parse_properties(msg.raw_properties.as_ref()).map_or_else(|_| AMQPProperties::default(), |(_, p)| p);
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert("x-stream-offset".into(), AMQPValue::LongLongInt(record.offset));
    properties = properties.with_headers(headers);
    msg.raw_properties = Bytes::from(properties_bytes(&properties));
    let _guard = c.channel.send_lock.lock().await;
    if c.state.cancelled.load(Ordering::Acquire) {
        return Err(Closed);
    }
    let tag = c.channel.next_tag(Some(Unacked {
        queue: c.queue.clone(),
        offset: record.offset,
        consumer: Some(c.state.clone()),
    }));
    let bytes = deliver_frames(&c.channel, &c.state.tag, tag, false, &msg);
    c.channel.out.send(bytes).await.map_err(|_| Closed)
}
