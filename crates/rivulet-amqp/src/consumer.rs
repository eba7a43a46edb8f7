//! A consumer's delivery task: acquires messages from its queue within the prefetch credit,
//! reads them from the queue's topic and queues their frames to the connection's writer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use amq_protocol::protocol::{basic, AMQPClass};
use bytes::Bytes;
use rivulet_broker::queues::{args, Queue};
use rivulet_broker::settle::{AcquiredRange, Settle};
use rivulet_broker::{Broker, BrokerError, StoredRecord, Woke};

use crate::frame;
use crate::message::{self, Outgoing};
use crate::shared::{ChannelShared, ConsumerState, Unacked};

/// Bytes of stored batches one read covers.
const READ_BYTES_MAX: usize = 256 << 10;

/// What a consumer task needs.
#[derive(Debug, Clone)]
pub struct Consumer {
    /// The broker.
    pub broker: Broker,
    /// The queue consumed.
    pub queue: Arc<Queue>,
    /// The channel it belongs to.
    pub channel: Arc<ChannelShared>,
    /// This consumer.
    pub state: Arc<ConsumerState>,
    /// The client understands `basic.cancel` from the server.
    pub cancel_notify: bool,
}

/// The writer is gone: the connection closed.
#[derive(Debug)]
pub struct Closed;

/// Runs until cancelled, the queue is deleted or the connection closes.
pub async fn run(c: Consumer) {
    let mut changes = c.queue.changes();
    let mut credit = c.channel.credit_changes();
    // Messages become visible when their append is durable, after the publish woke us.
    let mut data = c.broker.watch([(c.queue.name(), 0)]);
    let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
    loop {
        changes.borrow_and_update();
        credit.borrow_and_update();
        if c.state.cancelled.load(Ordering::Acquire) {
            return;
        }
        if c.queue.is_deleted() {
            notify_cancel(&c).await;
            return;
        }
        let room = c.channel.room(&c.state);
        if room == 0 {
            if credit.changed().await.is_err() {
                return;
            }
            continue;
        }
        let end = c.broker.queue_end(c.queue.name());
        let ranges = c.queue.acquire(&c.channel.owner, end, room);
        if ranges.is_empty() {
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                r = credit.changed() => if r.is_err() { return },
                woke = data.wait(far()) => if woke == Woke::ShuttingDown { return },
            }
            continue;
        }
        // Stored before the deliveries leave: after a crash they come back as redelivered.
        c.broker.store_queue_state(&c.queue);
        for range in ranges {
            if deliver_range(&c, range).await.is_err() {
                return;
            }
        }
        if c.state.no_ack {
            c.broker.store_queue_state(&c.queue);
        }
    }
}

/// Tells the client its consumer ended because the queue was deleted.
pub(crate) async fn notify_cancel(c: &Consumer) {
    c.state.cancelled.store(true, Ordering::Release);
    if !c.cancel_notify {
        return;
    }
    let cancel = AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
        consumer_tag: c.state.tag.as_str().into(),
        nowait: true,
    }));
    let mut out = Vec::new();
    frame::put_method(&mut out, c.channel.id, &cancel);
    let _guard = c.channel.send_lock.lock().await;
    let _ = c.channel.out.send(Bytes::from(out)).await;
}

/// Reads one acquired range and delivers its records. Offsets the read skips (control
/// records, aborted transactions) are settled; a range the read cannot reach yet is given
/// back.
async fn deliver_range(c: &Consumer, range: AcquiredRange) -> Result<(), Closed> {
    let name = c.queue.name();
    let owner = &c.channel.owner;
    let count = usize::try_from(range.last - range.first + 1).unwrap_or(1);
    let read = match c.broker.read_records(name, 0, range.first, READ_BYTES_MAX, count) {
        Ok(read) => read,
        Err(BrokerError::Log(rivulet_broker::LogError::OffsetOutOfRange { log_start_offset, .. })) => {
            c.queue.skip_to(log_start_offset);
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(queue = %name, error = %e, "Reading a queue's messages failed");
            c.queue.unacquire(owner, range.first, range.last);
            return Ok(());
        }
    };
    let mut next = range.first;
    let ttl = args::message_ttl_ms(&c.queue.spec().arguments);
    for record in read.records.iter().filter(|r| r.offset <= range.last) {
        settle_gap(&c.queue, owner, next, record.offset - 1);
        next = record.offset + 1;
        if expire_if_due(&c.broker, &c.queue, owner, record, ttl) {
            continue;
        }
        if deliver_one(c, record, range.delivery_count > 1).await?.is_none() {
            c.queue.unacquire(owner, record.offset, range.last);
            return Ok(());
        }
    }
    if read.next_offset > range.last {
        settle_gap(&c.queue, owner, next, range.last);
    } else if next <= range.last {
        c.queue.unacquire(owner, next, range.last);
    }
    Ok(())
}

/// Settles an acquired message whose TTL passed instead of delivering it, and dead-letters
/// it (reason `expired`). True when it expired.
pub fn expire_if_due(
    broker: &Broker,
    queue: &Queue,
    owner: &str,
    record: &StoredRecord,
    ttl_ms: Option<u64>,
) -> bool {
    let Some(expires_at) = message::expires_at_ms(record, ttl_ms) else {
        return false;
    };
    if expires_at > now_ms() {
        return false;
    }
    if queue.settle(owner, record.offset, Settle::Reject).is_ok() {
        crate::deadletter::dead_letter(broker, queue, record.offset, "expired");
    }
    true
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Accepts offsets that hold nothing to deliver.
fn settle_gap(queue: &Queue, owner: &str, first: i64, last: i64) {
    for offset in first..=last {
        let _ = queue.settle(owner, offset, Settle::Accept);
    }
}

/// Sends one delivery; `Ok(None)` when the consumer was cancelled first.
async fn deliver_one(c: &Consumer, record: &StoredRecord, redelivered: bool) -> Result<Option<u64>, Closed> {
    let msg = message::from_record(record, c.queue.name());
    let guard = c.channel.send_lock.lock().await;
    if c.state.cancelled.load(Ordering::Acquire) {
        return Ok(None);
    }
    let unacked = (!c.state.no_ack).then(|| Unacked {
        queue: c.queue.clone(),
        offset: record.offset,
        consumer: Some(c.state.clone()),
    });
    let tag = c.channel.next_tag(unacked);
    let bytes = deliver_frames(&c.channel, &c.state.tag, tag, redelivered, &msg);
    c.channel.out.send(bytes).await.map_err(|_| Closed)?;
    drop(guard);
    if c.state.no_ack {
        let _ = c.queue.settle(&c.channel.owner, record.offset, Settle::Accept);
    }
    Ok(Some(tag))
}

/// `basic.deliver`, the content header and the body frames of one message.
pub fn deliver_frames(
    channel: &ChannelShared,
    consumer_tag: &str,
    tag: u64,
    redelivered: bool,
    msg: &Outgoing,
) -> Bytes {
    let method = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
        consumer_tag: consumer_tag.into(),
        delivery_tag: tag,
        redelivered,
        exchange: msg.exchange.as_str().into(),
        routing_key: msg.routing_key.as_str().into(),
    }));
    content_frames(channel, &method, msg)
}

/// A method carrying content, its header and its body frames.
pub fn content_frames(channel: &ChannelShared, method: &AMQPClass, msg: &Outgoing) -> Bytes {
    let mut out = Vec::with_capacity(msg.body.len() + msg.raw_properties.len() + 128);
    frame::put_method(&mut out, channel.id, method);
    frame::put_header(&mut out, channel.id, msg.body.len() as u64, &msg.raw_properties);
    frame::put_body(&mut out, channel.id, &msg.body, channel.frame_max);
    Bytes::from(out)
}
