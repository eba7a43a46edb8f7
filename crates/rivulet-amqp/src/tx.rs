//! `tx.*`: transactional channels. After `tx.select` a channel's publishes and
//! acknowledgements are held until `tx.commit` applies them (the publishes routed then,
//! `commit-ok` sent once they are durable, the acknowledgements applied after that) or
//! `tx.rollback` drops them. As in RabbitMQ, a channel is transactional or in confirm
//! mode, never both, and a closing channel rolls back.

use std::collections::BTreeSet;

use amq_protocol::protocol::{basic, tx, AMQPClass};
use rivulet_broker::settle::Settle;
use rivulet_broker::Durable;

use crate::connection::Connection;
use crate::fault::{self, Fault};
use crate::frame::ContentHeader;

/// Messages one transaction holds at most.
pub const TX_MESSAGES_MAX: usize = 10_000;
/// Body bytes one transaction holds at most.
pub const TX_BYTES_MAX: usize = 64 << 20;
/// Delivery tags one transaction acknowledges at most.
pub const TX_SETTLES_MAX: usize = 100_000;

/// A published message held until the commit.
#[derive(Debug)]
pub struct Held {
    /// Its `basic.publish`.
    pub publish: basic::Publish,
    /// Its content header.
    pub header: ContentHeader,
    /// Its body.
    pub body: Vec<u8>,
}

/// What a transactional channel holds.
#[derive(Debug, Default)]
pub struct Tx {
    publishes: Vec<Held>,
    bytes: usize,
    /// Acknowledgements in order: the delivery tags each covers and how.
    settles: Vec<(Vec<u64>, Settle)>,
    /// Every tag in `settles`.
    settled: BTreeSet<u64>,
    /// What the committing appends wait for (filled as the publishes are flushed).
    pub durables: Vec<Durable>,
    /// An append of the commit failed.
    pub failed: bool,
}

impl Tx {
    /// Holds a published message until the commit.
    pub fn hold(&mut self, held: Held) -> Result<(), Fault> {
        if self.publishes.len() >= TX_MESSAGES_MAX || self.bytes + held.body.len() > TX_BYTES_MAX {
            return Err(Fault::channel(
                fault::PRECONDITION_FAILED,
                format!("a transaction holds at most {TX_MESSAGES_MAX} messages and {TX_BYTES_MAX} bytes"),
            ));
        }
        self.bytes += held.body.len();
        self.publishes.push(held);
        Ok(())
    }

    /// Holds an acknowledgement of `tags` (the deliveries an ack, nack or reject names,
    /// found unacknowledged); those already acknowledged in this transaction are unknown.
    pub fn hold_settle(
        &mut self,
        tag: u64,
        multiple: bool,
        tags: Vec<u64>,
        how: Settle,
    ) -> Result<(), Fault> {
        let tags: Vec<u64> = tags.into_iter().filter(|t| !self.settled.contains(t)).collect();
        let unknown = if multiple {
            tags.is_empty() && tag != 0
        } else {
            tags.is_empty()
        };
        if unknown {
            return Err(Fault::channel(
                fault::PRECONDITION_FAILED,
                format!("unknown delivery tag {tag}"),
            ));
        }
        if self.settled.len() + tags.len() > TX_SETTLES_MAX {
            return Err(Fault::channel(
                fault::PRECONDITION_FAILED,
                format!("a transaction acknowledges at most {TX_SETTLES_MAX} deliveries"),
            ));
        }
        self.settled.extend(tags.iter().copied());
        self.settles.push((tags, how));
        Ok(())
    }

    /// Drops what is held (rollback).
    fn clear(&mut self) {
        *self = Tx::default();
    }
}

fn not_transactional() -> Fault {
    Fault::channel(fault::PRECONDITION_FAILED, "channel is not transactional")
}

impl Connection {
    pub(crate) async fn tx_method(&mut self, ch: u16, m: tx::AMQPMethod) -> Result<(), Fault> {
        let reply = match m {
            tx::AMQPMethod::Select(_) => {
                let channel = self.channel(ch)?;
                if channel.confirms.is_some() {
                    return Err(Fault::channel(
                        fault::PRECONDITION_FAILED,
                        "cannot switch from confirm to tx mode",
                    ));
                }
                channel.tx.get_or_insert_with(Tx::default);
                tx::AMQPMethod::SelectOk(tx::SelectOk {})
            }
            tx::AMQPMethod::Commit(_) => {
                self.commit(ch).await?;
                tx::AMQPMethod::CommitOk(tx::CommitOk {})
            }
            tx::AMQPMethod::Rollback(_) => {
                self.channel(ch)?
                    .tx
                    .as_mut()
                    .ok_or_else(not_transactional)?
                    .clear();
                tx::AMQPMethod::RollbackOk(tx::RollbackOk {})
            }
            _ => return Err(Fault::channel(fault::COMMAND_INVALID, "unexpected tx method")),
        };
        self.send(ch, AMQPClass::Tx(reply)).await
    }

    /// Routes and appends the held publishes, waits until they are durable, then applies
    /// the held acknowledgements.
    async fn commit(&mut self, ch: u16) -> Result<(), Fault> {
        let tx = self.channel(ch)?.tx.as_mut().ok_or_else(not_transactional)?;
        let publishes = std::mem::take(&mut tx.publishes);
        let settles = std::mem::take(&mut tx.settles);
        tx.clear();
        for held in publishes {
            self.route_and_publish(ch, held).await?;
        }
        self.flush_or_fail().await?;
        let tx = self.channel(ch)?.tx.as_mut().ok_or_else(not_transactional)?;
        let (durables, failed) = (std::mem::take(&mut tx.durables), tx.failed);
        tx.failed = false;
        if failed {
            return Err(Fault::connection(
                fault::INTERNAL_ERROR,
                "appending a transaction's messages failed",
            ));
        }
        if let Err(e) = Durable::wait_all(durables).await {
            return Err(Fault::connection(
                fault::INTERNAL_ERROR,
                format!("a transaction's messages did not become durable: {e}"),
            ));
        }
        let shared = self.channel(ch)?.shared.clone();
        for (tags, how) in settles {
            let taken = tags
                .iter()
                .filter_map(|t| shared.take(*t, false))
                .flatten()
                .collect();
            self.settle_taken(ch, taken, how)?;
        }
        Ok(())
    }
}
