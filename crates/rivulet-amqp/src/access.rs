//! Permissions on the AMQP front end, mapped onto the broker's ACLs (the same bindings
//! Kafka and HTTP clients are checked against). Queues and exchanges are topic resources
//! by name, so one ACL covers a queue whichever protocol reads it:
//!
//! - declaring a queue or exchange needs create (a passive declare, describe);
//! - deleting or purging one needs delete;
//! - publishing needs write on the exchange, or on the queue the routing key names when
//!   publishing through the default exchange;
//! - consuming and `basic.get` need read on the queue;
//! - binding needs write on the queue and read on the exchange (as in RabbitMQ).
//!
//! A refusal closes the channel with 403 ACCESS_REFUSED and RabbitMQ's wording.

use rivulet_broker::acl::{Operation, ResourceType, Who};

use crate::connection::Connection;
use crate::fault::{self, Fault};

/// What a name is, for the refusal's text.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Queue,
    Exchange,
}

impl Connection {
    /// Fails with 403 unless the logged-in user may perform `op` on the queue or exchange.
    pub(crate) fn may(&self, op: Operation, kind: Kind, name: &str) -> Result<(), Fault> {
        let who = Who {
            protocol: "amqp",
            user: self.user.as_deref(),
            host: &self.host,
        };
        if self.broker.authorize(who, op, ResourceType::Topic, name) {
            return Ok(());
        }
        let what = match kind {
            Kind::Queue => "queue",
            Kind::Exchange => "exchange",
        };
        let user = self.user.as_deref().unwrap_or("");
        Err(Fault::channel(
            fault::ACCESS_REFUSED,
            format!("access to {what} '{name}' in vhost '/' refused for user '{user}' ({op})"),
        ))
    }

    /// Publishing: write on the exchange, or on the queue for the default exchange.
    pub(crate) fn may_publish(&self, exchange: &str, routing_key: &str) -> Result<(), Fault> {
        if exchange.is_empty() {
            self.may(Operation::Write, Kind::Queue, routing_key)
        } else {
            self.may(Operation::Write, Kind::Exchange, exchange)
        }
    }
}
