//! `basic.*`: publishing, consuming, settling and polling.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use amq_protocol::protocol::{basic, AMQPClass};
use bytes::Bytes;
use rivulet_broker::acl::Operation;
use rivulet_broker::settle::Settle;

use crate::access::Kind;
use crate::channel::{ConsumerHandle, Pending};
use crate::connection::Connection;
use crate::consumer::{self, content_frames, Consumer};
use crate::deadletter;
use crate::fault::{self, Fault};
use crate::frame::ContentHeader;
use crate::message::{self, Outgoing};
use crate::shared::{ConsumerState, Unacked};
use crate::stream;
use crate::tx::Held;

/// Messages one `basic.get` may skip (expired, or offsets holding no message) before it
/// answers get-empty.
const GET_SKIPS_MAX: usize = 256;

impl Connection {
    pub(crate) async fn basic_method(&mut self, ch: u16, m: basic::AMQPMethod) -> Result<(), Fault> {
        match m {
            basic::AMQPMethod::Publish(p) => self.publish(ch, p),
            basic::AMQPMethod::Consume(c) => self.consume(ch, c).await,
            basic::AMQPMethod::Cancel(c) => self.cancel(ch, c).await,
            basic::AMQPMethod::Qos(q) => {
                let channel = self.channel(ch)?;
                if q.global {
                    channel.shared.set_prefetch(u32::from(q.prefetch_count));
                } else {
                    channel.consumer_prefetch = u32::from(q.prefetch_count);
                }
                self.send(ch, AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})))
                    .await
            }
            basic::AMQPMethod::Ack(a) => self.settle(ch, a.delivery_tag, a.multiple, Settle::Accept),
            basic::AMQPMethod::Nack(n) => self.settle(ch, n.delivery_tag, n.multiple, requeue(n.requeue)),
            basic::AMQPMethod::Reject(r) => self.settle(ch, r.delivery_tag, false, requeue(r.requeue)),
            basic::AMQPMethod::Get(g) => self.get(ch, g).await,
            basic::AMQPMethod::Recover(_) => {
                self.recover(ch)?;
                self.send(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                )
                .await
            }
            basic::AMQPMethod::RecoverAsync(_) => self.recover(ch),
            _ => Err(Fault::channel(fault::COMMAND_INVALID, "unexpected basic method")),
        }
    }

    fn publish(&mut self, ch: u16, publish: basic::Publish) -> Result<(), Fault> {
        if publish.immediate {
            return Err(Fault::connection(fault::NOT_IMPLEMENTED, "immediate=true"));
        }
        self.channel(ch)?.pending = Some(Pending {
            publish,
            header: None,
            body: Vec::new(),
        });
        Ok(())
    }

    /// A content header frame: the message's properties and size.
    pub(crate) async fn content_header(&mut self, ch: u16, header: ContentHeader) -> Result<(), Fault> {
        let body_max = self.config.message_bytes_max;
        let receiving: u64 = self
            .channels
            .values()
            .filter_map(|c| c.pending.as_ref()?.header.as_ref())
            .map(|h| h.body_size)
            .sum();
        if receiving.saturating_add(header.body_size.min(body_max)) > self.config.content_bytes_max {
            return Err(Fault::connection(
                fault::RESOURCE_ERROR,
                format!(
                    "more than {} bytes of message bodies in flight on one connection",
                    self.config.content_bytes_max
                ),
            ));
        }
        let channel = self.channel(ch)?;
        if channel.closing {
            return Ok(());
        }
        let Some(pending) = channel.pending.as_mut().filter(|p| p.header.is_none()) else {
            return Err(Fault::connection(
                fault::UNEXPECTED_FRAME,
                format!("content header on channel {ch} without basic.publish"),
            ));
        };
        if header.class_id != 60 {
            return Err(Fault::connection(
                fault::FRAME_ERROR,
                format!("content header of class {}", header.class_id),
            ));
        }
        if header.body_size > body_max {
            channel.pending = None;
            return Err(Fault::channel(
                fault::PRECONDITION_FAILED,
                format!(
                    "message size {} is larger than configured max size {body_max}",
                    header.body_size
                ),
            )
            .at(ch, 60, 40));
        }
        let size = header.body_size;
        pending.body.reserve_exact(usize::try_from(size).unwrap_or(0));
        pending.header = Some(header);
        if size == 0 {
            return self.publish_complete(ch).await;
        }
        Ok(())
    }

    /// A content body frame.
    pub(crate) async fn content_body(&mut self, ch: u16, body: Bytes) -> Result<(), Fault> {
        let channel = self.channel(ch)?;
        if channel.closing {
            return Ok(());
        }
        let Some((pending, size)) = channel
            .pending
            .as_mut()
            .and_then(|p| p.header.as_ref().map(|h| h.body_size).map(|s| (p, s)))
        else {
            return Err(Fault::connection(
                fault::UNEXPECTED_FRAME,
                format!("content body on channel {ch} without a header"),
            ));
        };
        if pending.body.len() as u64 + body.len() as u64 > size {
            return Err(Fault::connection(
                fault::FRAME_ERROR,
                "content body longer than its header said",
            ));
        }
        pending.body.extend_from_slice(&body);
        if pending.body.len() as u64 == size {
            return self.publish_complete(ch).await;
        }
        Ok(())
    }

    /// A fully received message: held by a transactional channel, else routed and
    /// appended now.
    async fn publish_complete(&mut self, ch: u16) -> Result<(), Fault> {
        let channel = self.channel(ch)?;
        let Some(Pending {
            publish,
            header: Some(header),
            body,
        }) = channel.pending.take()
        else {
            return Ok(());
        };
        let held = Held {
            publish,
            header,
            body,
        };
        if self.channel(ch)?.tx.is_none() {
            return self.route_and_publish(ch, held).await;
        }
        // Checked now, routed at the commit.
        let fail = |f: Fault| f.at(ch, 60, 40);
        let (exchange, key) = (held.publish.exchange.as_str(), held.publish.routing_key.as_str());
        self.may_publish(exchange, key).map_err(fail)?;
        let headers = message::routing_headers(&held.header.properties);
        self.broker
            .route(exchange, key, &headers)
            .map_err(|e| fail(e.into()))?;
        let tx = self.channel(ch)?.tx.as_mut();
        tx.map_or(Ok(()), |tx| tx.hold(held))
    }

    /// Routes and appends a message; returns it when mandatory and unroutable; queues its
    /// confirm.
    pub(crate) async fn route_and_publish(&mut self, ch: u16, held: Held) -> Result<(), Fault> {
        let Held {
            publish,
            header,
            body,
        } = held;
        let fail = |f: Fault| f.at(ch, 60, 40);
        let exchange = publish.exchange.as_str();
        let key = publish.routing_key.as_str();
        self.may_publish(exchange, key).map_err(fail)?;
        let headers = message::routing_headers(&header.properties);
        let targets = self
            .broker
            .route(exchange, key, &headers)
            .map_err(|e| fail(e.into()))?;
        if targets.is_empty() {
            // Nothing to append: what was batched before goes first, then the return and
            // the confirm, in publish order.
            self.flush_or_fail().await?;
            if publish.mandatory {
                self.return_message(ch, &publish, &header, body).await?;
            }
            if let Some(confirms) = self.channel(ch)?.confirms.as_mut() {
                confirms.push(1, Vec::new(), false).await;
            }
            return Ok(());
        }
        let record = message::to_record(exchange, key, &header, body);
        self.batch_publish(ch, targets, record).await
    }

    async fn return_message(
        &self,
        ch: u16,
        publish: &basic::Publish,
        header: &ContentHeader,
        body: Vec<u8>,
    ) -> Result<(), Fault> {
        let method = AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
            reply_code: fault::NO_ROUTE,
            reply_text: "NO_ROUTE".into(),
            exchange: publish.exchange.clone(),
            routing_key: publish.routing_key.clone(),
        }));
        let msg = Outgoing {
            exchange: publish.exchange.to_string(),
            routing_key: publish.routing_key.to_string(),
            raw_properties: header.raw_properties.clone(),
            body: Bytes::from(body),
        };
        let shared = self.channels.get(&ch).map(|c| c.shared.clone());
        let Some(shared) = shared else { return Ok(()) };
        self.send_bytes(content_frames(&shared, &method, &msg)).await
    }

    async fn consume(&mut self, ch: u16, c: basic::Consume) -> Result<(), Fault> {
        let name = self.default_queue(ch, c.queue.as_str())?;
        self.may(Operation::Read, Kind::Queue, &name)?;
        let queue = self.broker.queue_for(&name, self.id)?;
        let channel = self.channel(ch)?;
        let tag = if c.consumer_tag.as_str().is_empty() {
            channel.next_consumer += 1;
            format!("amq.ctag-{}-{}-{}", ch, channel.next_consumer, queue.name())
        } else {
            c.consumer_tag.to_string()
        };
        if channel.consumers.contains_key(&tag) {
            return Err(Fault::connection(
                fault::NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        let start = if queue.is_stream() {
            if c.no_ack || (channel.consumer_prefetch == 0 && channel.shared.prefetch() == 0) {
                return Err(Fault::channel(
                    fault::PRECONDITION_FAILED,
                    "a stream consumer needs manual acknowledgements and a prefetch count (basic.qos)",
                ));
            }
            Some(stream::start_offset(&self.broker, &name, &c.arguments)?)
        } else {
            None
        };
        self.broker.queue_consumer_added(&queue, c.exclusive)?;
        let channel = self.channel(ch)?;
        let state = Arc::new(ConsumerState {
            tag: tag.clone(),
            prefetch: channel.consumer_prefetch,
            unacked: AtomicU32::new(0),
            cancelled: AtomicBool::new(false),
            no_ack: c.no_ack,
        });
        channel.queues.insert(name, queue.clone());
        let shared = channel.shared.clone();
        if !c.nowait {
            let ok = basic::ConsumeOk {
                consumer_tag: tag.as_str().into(),
            };
            self.send(ch, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)))
                .await?;
        }
        let consumer = Consumer {
            broker: self.broker.clone(),
            queue: queue.clone(),
            channel: shared,
            state: state.clone(),
            cancel_notify: self.caps.consumer_cancel_notify,
        };
        let task = match start {
            Some(offset) => tokio::spawn(stream::run(consumer, offset)),
            None => tokio::spawn(consumer::run(consumer)),
        };
        let handle = ConsumerHandle { state, queue, task };
        self.channel(ch)?.consumers.insert(tag, handle);
        Ok(())
    }

    async fn cancel(&mut self, ch: u16, c: basic::Cancel) -> Result<(), Fault> {
        let channel = self.channel(ch)?;
        let shared = channel.shared.clone();
        if let Some(handle) = channel.consumers.remove(c.consumer_tag.as_str()) {
            handle.state.cancelled.store(true, Ordering::Release);
            handle.queue.wake();
            self.broker.queue_consumer_removed(&handle.queue);
        }
        if c.nowait {
            return Ok(());
        }
        // Under the send lock: no delivery of this consumer follows the cancel-ok.
        let _guard = shared.send_lock.lock().await;
        let ok = basic::CancelOk {
            consumer_tag: c.consumer_tag,
        };
        self.send(ch, AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)))
            .await
    }

    fn settle(&mut self, ch: u16, tag: u64, multiple: bool, how: Settle) -> Result<(), Fault> {
        let channel = self.channel(ch)?;
        if let Some(tx) = channel.tx.as_mut() {
            let tags = channel.shared.tags(tag, multiple);
            return tx.hold_settle(tag, multiple, tags, how);
        }
        let Some(taken) = channel.shared.take(tag, multiple) else {
            return Err(Fault::channel(
                fault::PRECONDITION_FAILED,
                format!("unknown delivery tag {tag}"),
            ));
        };
        self.settle_taken(ch, taken, how)
    }

    /// Settles deliveries taken off the channel: dead-letters rejected ones and those past
    /// the delivery limit, and stores the queues' state.
    pub(crate) fn settle_taken(&mut self, ch: u16, taken: Vec<Unacked>, how: Settle) -> Result<(), Fault> {
        let owner = self.channel(ch)?.shared.owner.clone();
        let mut touched: Vec<Arc<rivulet_broker::queues::Queue>> = Vec::new();
        for u in taken {
            if u.queue.is_stream() {
                // A stream keeps every message; the acknowledgement only returned credit.
                continue;
            }
            let archived = u.queue.settle(&owner, u.offset, how).unwrap_or_else(|e| {
                tracing::warn!(queue = %u.queue.name(), error = %e, "AMQP: settling a delivery failed");
                false
            });
            if how == Settle::Reject || archived {
                let reason = if archived { "delivery_limit" } else { "rejected" };
                deadletter::dead_letter(&self.broker, &u.queue, u.offset, reason);
            }
            if !touched.iter().any(|q| Arc::ptr_eq(q, &u.queue)) {
                touched.push(u.queue);
            }
        }
        for q in touched {
            self.broker.store_queue_state(&q);
        }
        Ok(())
    }

    fn recover(&mut self, ch: u16) -> Result<(), Fault> {
        let channel = self.channel(ch)?;
        for u in channel.shared.take_all() {
            let _ = u.queue.settle(&channel.shared.owner, u.offset, Settle::Release);
        }
        Ok(())
    }

    async fn get(&mut self, ch: u16, g: basic::Get) -> Result<(), Fault> {
        let name = self.default_queue(ch, g.queue.as_str())?;
        self.may(Operation::Read, Kind::Queue, &name)?;
        let queue = self.broker.queue_for(&name, self.id)?;
        if queue.is_stream() {
            return Err(Fault::channel(
                fault::PRECONDITION_FAILED,
                format!("queue '{name}' in vhost '/' is a stream; streams do not support basic.get"),
            ));
        }
        let channel = self.channel(ch)?;
        channel.queues.insert(name.clone(), queue.clone());
        let shared = channel.shared.clone();
        // Offsets that hold no message (control records) are settled and skipped, expired
        // messages dead-lettered.
        for _ in 0..GET_SKIPS_MAX {
            let end = self.broker.queue_end(&name);
            let Some(range) = queue.acquire(&shared.owner, end, 1).first().copied() else {
                break;
            };
            self.broker.store_queue_state(&queue);
            let read = self.broker.read_records(&name, 0, range.first, 1 << 20, 1);
            let record = read
                .ok()
                .and_then(|r| r.records.into_iter().find(|r| r.offset == range.first));
            let Some(record) = record else {
                let _ = queue.settle(&shared.owner, range.first, Settle::Accept);
                continue;
            };
            let ttl = rivulet_broker::queues::args::message_ttl_ms(&queue.spec().arguments);
            if consumer::expire_if_due(&self.broker, &queue, &shared.owner, &record, ttl) {
                continue;
            }
            let msg = message::from_record(&record, &name);
            let unacked = (!g.no_ack).then(|| Unacked {
                queue: queue.clone(),
                offset: record.offset,
                consumer: None,
            });
            let _guard = shared.send_lock.lock().await;
            let tag = shared.next_tag(unacked);
            let remaining = queue.counts(self.broker.queue_end(&name)).ready;
            let method = AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                delivery_tag: tag,
                redelivered: range.delivery_count > 1,
                exchange: msg.exchange.as_str().into(),
                routing_key: msg.routing_key.as_str().into(),
                message_count: u32::try_from(remaining).unwrap_or(u32::MAX),
            }));
            self.send_bytes(content_frames(&shared, &method, &msg)).await?;
            if g.no_ack {
                let _ = queue.settle(&shared.owner, record.offset, Settle::Accept);
                self.broker.store_queue_state(&queue);
            }
            return Ok(());
        }
        let empty = AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {}));
        self.send(ch, empty).await
    }
}

fn requeue(requeue: bool) -> Settle {
    if requeue {
        Settle::Release
    } else {
        Settle::Reject
    }
}
