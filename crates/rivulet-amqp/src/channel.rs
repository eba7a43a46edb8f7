//! A channel as the connection task keeps it: content being received, confirm mode,
//! consumers; and the dispatch of its methods.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use amq_protocol::protocol::{basic, channel, confirm, AMQPClass};
use bytes::Bytes;
use rivulet_broker::queues::Queue;
use rivulet_broker::Broker;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::confirm::Confirms;
use crate::connection::Connection;
use crate::fault::{self, Fault};
use crate::frame::ContentHeader;
use crate::shared::{ChannelShared, ConsumerState};
use crate::tx::Tx;

/// A message whose content is arriving.
#[derive(Debug)]
pub struct Pending {
    /// The `basic.publish` it came with.
    pub publish: basic::Publish,
    /// The content header, once received.
    pub header: Option<ContentHeader>,
    /// Body bytes so far.
    pub body: Vec<u8>,
}

/// A running consumer.
#[derive(Debug)]
pub struct ConsumerHandle {
    /// Its shared state.
    pub state: Arc<ConsumerState>,
    /// Its queue.
    pub queue: Arc<Queue>,
    /// Its delivery task.
    pub task: JoinHandle<()>,
}

/// One open channel.
#[derive(Debug)]
pub struct Channel {
    /// State shared with the consumer tasks.
    pub shared: Arc<ChannelShared>,
    /// A channel error was sent; waiting for `close-ok`.
    pub closing: bool,
    /// Content of a publish being received.
    pub pending: Option<Pending>,
    /// Confirm mode.
    pub confirms: Option<Confirms>,
    /// Transactional mode (`tx.select`): what the open transaction holds.
    pub tx: Option<Tx>,
    /// Consumers by tag.
    pub consumers: HashMap<String, ConsumerHandle>,
    /// Prefetch of consumers created from now on (`basic.qos` without `global`).
    pub consumer_prefetch: u32,
    /// Queues this channel took deliveries from (released when it closes).
    pub queues: HashMap<String, Arc<Queue>>,
    /// Counter for server-generated consumer tags.
    pub next_consumer: u64,
    /// The last queue declared on the channel (an empty queue name refers to it).
    pub last_queue: Option<String>,
    /// Counts the channel in `rivulet_channels_open` while it lives.
    _counted: Counted,
}

/// Holds one count in the open-channels gauge, given back on drop.
#[derive(Debug)]
struct Counted(Arc<rivulet_metrics::Metrics>);

impl Counted {
    fn new(metrics: Arc<rivulet_metrics::Metrics>) -> Counted {
        metrics.channels_changed("amqp", 1);
        Counted(metrics)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.channels_changed("amqp", -1);
    }
}

impl Channel {
    /// A newly opened channel.
    pub fn new(
        id: u16,
        owner: Arc<str>,
        out: mpsc::Sender<Bytes>,
        frame_max: u32,
        broker: &Broker,
    ) -> Channel {
        Channel {
            shared: Arc::new(ChannelShared::new(id, owner, out, frame_max)),
            closing: false,
            pending: None,
            confirms: None,
            tx: None,
            consumers: HashMap::new(),
            consumer_prefetch: 0,
            queues: HashMap::new(),
            next_consumer: 0,
            last_queue: None,
            _counted: Counted::new(broker.metrics().clone()),
        }
    }

    /// Stops every consumer and gives back every unacknowledged delivery.
    pub fn release(&mut self, broker: &Broker) {
        for (_, c) in self.consumers.drain() {
            c.state.cancelled.store(true, Ordering::Release);
            c.task.abort();
            broker.queue_consumer_removed(&c.queue);
        }
        self.shared.take_all();
        for queue in self.queues.values() {
            queue.release_owner(&self.shared.owner);
            broker.store_queue_state(queue);
        }
        self.confirms = None;
    }

    /// Ends the channel (closed by the client, or its connection ended).
    pub fn shut(mut self, broker: &Broker) {
        self.release(broker);
    }
}

impl Connection {
    /// Applies a method on an open channel.
    pub async fn method(&mut self, ch: u16, class: AMQPClass) -> Result<(), Fault> {
        match class {
            AMQPClass::Channel(m) => self.channel_class(ch, m).await,
            AMQPClass::Exchange(m) => self.exchange_method(ch, m).await,
            AMQPClass::Queue(m) => self.queue_method(ch, m).await,
            AMQPClass::Basic(m) => self.basic_method(ch, m).await,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(s)) => self.confirm_select(ch, s.nowait).await,
            AMQPClass::Confirm(_) => Err(Fault::channel(
                fault::COMMAND_INVALID,
                "unexpected confirm method",
            )),
            AMQPClass::Tx(m) => self.tx_method(ch, m).await,
            AMQPClass::Access(_) => Err(Fault::channel(
                fault::NOT_IMPLEMENTED,
                "access.request is obsolete",
            )),
            AMQPClass::Connection(_) => Err(Fault::connection(
                fault::COMMAND_INVALID,
                format!("connection method on channel {ch}"),
            )),
        }
    }

    async fn channel_class(&mut self, ch: u16, m: channel::AMQPMethod) -> Result<(), Fault> {
        match m {
            channel::AMQPMethod::Close(_) => self.close_channel(ch).await,
            channel::AMQPMethod::CloseOk(_) => Ok(()),
            channel::AMQPMethod::Flow(f) if f.active => {
                let ok = channel::FlowOk { active: true };
                self.send(ch, AMQPClass::Channel(channel::AMQPMethod::FlowOk(ok)))
                    .await
            }
            channel::AMQPMethod::Flow(_) => Err(Fault::channel(
                fault::NOT_IMPLEMENTED,
                "channel.flow active=false is not supported",
            )),
            channel::AMQPMethod::FlowOk(_) => Ok(()),
            channel::AMQPMethod::Open(_) | channel::AMQPMethod::OpenOk(_) => Err(Fault::connection(
                fault::CHANNEL_ERROR,
                format!("unexpected channel method on channel {ch}"),
            )),
        }
    }

    async fn confirm_select(&mut self, ch: u16, nowait: bool) -> Result<(), Fault> {
        let channel = self.channel(ch)?;
        if channel.tx.is_some() {
            return Err(Fault::channel(
                fault::PRECONDITION_FAILED,
                "cannot switch from tx to confirm mode",
            ));
        }
        if channel.confirms.is_none() {
            channel.confirms = Some(Confirms::start(ch, channel.shared.out.clone()));
        }
        if nowait {
            return Ok(());
        }
        let ok = AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {}));
        self.send(ch, ok).await
    }

    /// An open channel.
    pub fn channel(&mut self, ch: u16) -> Result<&mut Channel, Fault> {
        self.channels
            .get_mut(&ch)
            .ok_or_else(|| Fault::connection(fault::CHANNEL_ERROR, format!("channel {ch} is not open")))
    }
}
