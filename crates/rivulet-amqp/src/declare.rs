//! `exchange.*` and `queue.*`: declarations, bindings, purge and delete.

use amq_protocol::protocol::{exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use rivulet_broker::queues::QueueSpec;
use rivulet_broker::routing::{Exchange, ExchangeKind};

use rivulet_broker::acl::Operation;

use crate::access::Kind;
use crate::connection::Connection;
use crate::fault::{self, Fault};
use crate::message::table_to_headers;

impl Connection {
    pub(crate) async fn exchange_method(&mut self, ch: u16, m: exchange::AMQPMethod) -> Result<(), Fault> {
        match m {
            exchange::AMQPMethod::Declare(d) => {
                let kind = ExchangeKind::parse(d.kind.as_str());
                let kind = match (kind, d.passive) {
                    (Some(k), _) => k,
                    // A passive declare only checks existence; the type is not compared.
                    (None, true) => ExchangeKind::Direct,
                    (None, false) => {
                        return Err(Fault::connection(
                            fault::COMMAND_INVALID,
                            format!("unknown exchange type '{}'", d.kind),
                        ))
                    }
                };
                let op = if d.passive {
                    Operation::Describe
                } else {
                    Operation::Create
                };
                self.may(op, Kind::Exchange, d.exchange.as_str())?;
                let alternate = alternate_exchange(&d.arguments, d.passive)?;
                let wanted = Exchange {
                    kind,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    alternate,
                };
                self.broker
                    .exchange_declare(d.exchange.as_str(), wanted, d.passive)?;
                self.reply(
                    ch,
                    d.nowait,
                    exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {}),
                )
                .await
            }
            exchange::AMQPMethod::Delete(d) => {
                self.may(Operation::Delete, Kind::Exchange, d.exchange.as_str())?;
                match self.broker.exchange_delete(d.exchange.as_str(), d.if_unused) {
                    // Deleting an exchange that does not exist succeeds, as in RabbitMQ.
                    Ok(()) | Err(rivulet_broker::queues::QueueError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                self.reply(
                    ch,
                    d.nowait,
                    exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}),
                )
                .await
            }
            exchange::AMQPMethod::Bind(b) => {
                // As in RabbitMQ: write on the destination, read on the source.
                self.may(Operation::Write, Kind::Exchange, b.destination.as_str())?;
                self.may(Operation::Read, Kind::Exchange, b.source.as_str())?;
                self.broker.exchange_bind(
                    b.destination.as_str(),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                    table_to_headers(&b.arguments),
                )?;
                self.reply(ch, b.nowait, exchange::AMQPMethod::BindOk(exchange::BindOk {}))
                    .await
            }
            exchange::AMQPMethod::Unbind(u) => {
                self.may(Operation::Write, Kind::Exchange, u.destination.as_str())?;
                self.may(Operation::Read, Kind::Exchange, u.source.as_str())?;
                self.broker.exchange_unbind(
                    u.destination.as_str(),
                    u.source.as_str(),
                    u.routing_key.as_str(),
                    table_to_headers(&u.arguments),
                )?;
                self.reply(
                    ch,
                    u.nowait,
                    exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}),
                )
                .await
            }
            _ => Err(Fault::channel(
                fault::COMMAND_INVALID,
                "unexpected exchange method",
            )),
        }
    }

    async fn reply(&mut self, ch: u16, nowait: bool, m: exchange::AMQPMethod) -> Result<(), Fault> {
        if nowait {
            return Ok(());
        }
        self.send(ch, AMQPClass::Exchange(m)).await
    }

    pub(crate) async fn queue_method(&mut self, ch: u16, m: queue::AMQPMethod) -> Result<(), Fault> {
        let connection = self.id;
        let (nowait, reply) = match m {
            queue::AMQPMethod::Declare(d) => {
                // A server-named queue (empty name) is the connection's own: no check.
                if !d.queue.as_str().is_empty() {
                    let op = if d.passive {
                        Operation::Describe
                    } else {
                        Operation::Create
                    };
                    self.may(op, Kind::Queue, d.queue.as_str())?;
                }
                let spec = QueueSpec {
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: table_to_headers(&d.arguments),
                };
                let declared = self
                    .broker
                    .queue_declare(d.queue.as_str(), spec, d.passive, connection)?;
                let ok = queue::DeclareOk {
                    queue: declared.name.into(),
                    message_count: u32::try_from(declared.messages).unwrap_or(u32::MAX),
                    consumer_count: declared.consumers,
                };
                (d.nowait, queue::AMQPMethod::DeclareOk(ok))
            }
            queue::AMQPMethod::Bind(b) => {
                let args = table_to_headers(&b.arguments);
                let queue = self.default_queue(ch, b.queue.as_str())?;
                self.may(Operation::Write, Kind::Queue, &queue)?;
                self.may(Operation::Read, Kind::Exchange, b.exchange.as_str())?;
                self.broker.queue_bind(
                    &queue,
                    b.exchange.as_str(),
                    b.routing_key.as_str(),
                    args,
                    connection,
                )?;
                (b.nowait, queue::AMQPMethod::BindOk(queue::BindOk {}))
            }
            queue::AMQPMethod::Unbind(u) => {
                let args = table_to_headers(&u.arguments);
                let queue = self.default_queue(ch, u.queue.as_str())?;
                self.may(Operation::Write, Kind::Queue, &queue)?;
                self.may(Operation::Read, Kind::Exchange, u.exchange.as_str())?;
                self.broker.queue_unbind(
                    &queue,
                    u.exchange.as_str(),
                    u.routing_key.as_str(),
                    args,
                    connection,
                )?;
                (false, queue::AMQPMethod::UnbindOk(queue::UnbindOk {}))
            }
            queue::AMQPMethod::Purge(p) => {
                let queue = self.default_queue(ch, p.queue.as_str())?;
                self.may(Operation::Delete, Kind::Queue, &queue)?;
                let n = self.broker.queue_purge(&queue, connection)?;
                let ok = queue::PurgeOk {
                    message_count: u32::try_from(n).unwrap_or(u32::MAX),
                };
                (p.nowait, queue::AMQPMethod::PurgeOk(ok))
            }
            queue::AMQPMethod::Delete(d) => {
                let queue = self.default_queue(ch, d.queue.as_str())?;
                self.may(Operation::Delete, Kind::Queue, &queue)?;
                let n = self
                    .broker
                    .queue_delete(&queue, d.if_unused, d.if_empty, connection)?;
                let ok = queue::DeleteOk {
                    message_count: u32::try_from(n).unwrap_or(u32::MAX),
                };
                (d.nowait, queue::AMQPMethod::DeleteOk(ok))
            }
            _ => return Err(Fault::channel(fault::COMMAND_INVALID, "unexpected queue method")),
        };
        if let queue::AMQPMethod::DeclareOk(ok) = &reply {
            self.channel(ch)?.last_queue = Some(ok.queue.as_str().to_string());
        }
        if nowait {
            return Ok(());
        }
        self.send(ch, AMQPClass::Queue(reply)).await
    }

    /// The queue a method names; an empty name means the channel's last declared queue.
    pub(crate) fn default_queue(&mut self, ch: u16, name: &str) -> Result<String, Fault> {
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        self.channel(ch)?
            .last_queue
            .clone()
            .ok_or_else(|| Fault::channel(fault::NOT_FOUND, "no previously declared queue"))
    }
}

/// An exchange declaration's `alternate-exchange` argument; any other argument is refused
/// by name (a passive declaration's arguments are not looked at).
fn alternate_exchange(arguments: &FieldTable, passive: bool) -> Result<Option<String>, Fault> {
    if passive {
        return Ok(None);
    }
    let mut alternate = None;
    for (key, value) in arguments.inner() {
        match (key.as_str(), value) {
            ("alternate-exchange", AMQPValue::LongString(name)) => {
                alternate = Some(String::from_utf8_lossy(name.as_bytes()).into_owned());
            }
            ("alternate-exchange", AMQPValue::ShortString(name)) => alternate = Some(name.to_string()),
            (other, _) => {
                return Err(Fault::channel(
                    fault::PRECONDITION_FAILED,
                    format!("exchange argument '{other}' is not supported by Rivulet"),
                ))
            }
        }
    }
    Ok(alternate)
}
