//! Exchanges and bindings: where a message published to an exchange with a routing key
//! (and headers) goes. Protocol-neutral; the AMQP 0-9-1 front end is meant to call it, with
//! RabbitMQ's behaviour as the reference where the spec is loose.
//!
//! - The default exchange (`""`, direct) routes to the queue named by the routing key and
//!   cannot be declared, deleted or bound; `amq.direct`, `amq.fanout`, `amq.topic`,
//!   `amq.headers` and `amq.match` always exist, and other `amq.` names are reserved.
//! - Redeclaring an exchange with other properties is refused (`inequivalent arg`).
//! - Direct bindings match the key exactly, fanout ones always, topic ones by pattern
//!   ([`topic`]), headers ones by arguments ([`headers`]).
//!
//! - An exchange may be bound to another exchange ([`ExchangeBinding`]): what the source's
//!   binding matches, the destination routes again with the same key and headers. A message
//!   visits each exchange at most once and reaches each queue at most once, whatever the
//!   cycles in the graph.
//!
//! Queues are not kept here: a binding names its queue, and the caller checks that the queue
//! exists before binding and drops routes to queues that do not.

mod exchange_bindings;
pub mod headers;
pub mod topic;

use std::collections::{BTreeMap, BTreeSet};

pub use exchange_bindings::ExchangeBinding;
pub use headers::{FieldValue, Headers};

/// Exchanges kept at most.
pub const EXCHANGES_MAX: usize = 10_000;
/// Bindings kept at most, over all exchanges.
pub const BINDINGS_MAX: usize = 100_000;

/// How an exchange routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Exact routing key.
    Direct,
    /// Every bound queue.
    Fanout,
    /// Routing key against dot-separated patterns.
    Topic,
    /// Headers against binding arguments.
    Headers,
}

impl ExchangeKind {
    /// The kind named as AMQP names it (`direct`, `fanout`, `topic`, `headers`).
    pub fn parse(name: &str) -> Option<ExchangeKind> {
        match name {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    /// The AMQP name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// An exchange's declared properties.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// How it routes.
    pub kind: ExchangeKind,
    /// Survives a restart.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Only other exchanges may publish to it.
    pub internal: bool,
    /// Where messages no binding takes go (`alternate-exchange`).
    pub alternate: Option<String>,
}

/// One binding of a queue to an exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The bound queue.
    pub queue: String,
    /// Routing key (direct), pattern (topic); unused for fanout and headers.
    pub key: String,
    /// Arguments (headers exchanges match on them).
    pub arguments: Headers,
}

/// Why a topology change or a route was refused. Codes are stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// No exchange of that name.
    #[error("no exchange {0:?}")]
    NotFound(String),
    /// The name is reserved (the default exchange, `amq.` names).
    #[error("access refused: {0}")]
    AccessRefused(String),
    /// The exchange exists with other properties, or the kind is unknown.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// `if_unused` deletion of an exchange that has bindings.
    #[error("exchange {0:?} in use")]
    InUse(String),
    /// A limit on exchanges or bindings.
    #[error("limit reached: {0}")]
    LimitReached(String),
}

impl RoutingError {
    /// A stable numeric code.
    pub fn code(&self) -> u32 {
        match self {
            RoutingError::NotFound(_) => 6001,
            RoutingError::AccessRefused(_) => 6002,
            RoutingError::PreconditionFailed(_) => 6003,
            RoutingError::InUse(_) => 6004,
            RoutingError::LimitReached(_) => 6005,
        }
    }
}

/// The predeclared exchanges.
const PREDECLARED: &[(&str, ExchangeKind)] = &[
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

/// Every exchange and binding.
#[derive(Debug, Clone)]
pub struct Topology {
    exchanges: BTreeMap<String, Exchange>,
    bindings: BTreeMap<String, Vec<Binding>>,
    /// Exchange-to-exchange bindings, by source.
    exchange_bindings: BTreeMap<String, Vec<ExchangeBinding>>,
    /// Bindings of both kinds (bounded by [`BINDINGS_MAX`]).
    binding_count: usize,
}

impl Default for Topology {
    fn default() -> Self {
        let exchanges = PREDECLARED
            .iter()
            .map(|(name, kind)| {
                let exchange = Exchange {
                    kind: *kind,
                    durable: true,
                    auto_delete: false,
                    internal: false,
                    alternate: None,
                };
                (name.to_string(), exchange)
            })
            .collect();
        Topology {
            exchanges,
            bindings: BTreeMap::new(),
            exchange_bindings: BTreeMap::new(),
            binding_count: 0,
        }
    }
}

impl Topology {
    /// An exchange's properties (`None` for the default exchange and unknown names).
    pub fn exchange(&self, name: &str) -> Option<&Exchange> {
        self.exchanges.get(name)
    }

    /// Every declared exchange, by name (the default exchange is not listed).
    pub fn exchanges(&self) -> impl Iterator<Item = (&String, &Exchange)> {
        self.exchanges.iter()
    }

    /// Every binding, by exchange.
    pub fn bindings(&self) -> impl Iterator<Item = (&String, &Binding)> {
        self.bindings
            .iter()
            .flat_map(|(e, list)| list.iter().map(move |b| (e, b)))
    }

    /// Declares an exchange, or checks it when `passive` (it must exist). Returns true when
    /// it was created.
    pub fn declare(&mut self, name: &str, wanted: Exchange, passive: bool) -> Result<bool, RoutingError> {
        if name.is_empty() {
            return Err(RoutingError::AccessRefused(
                "the default exchange cannot be declared".into(),
            ));
        }
        match self.exchanges.get(name) {
            Some(_) if passive => Ok(false),
            None if passive => Err(RoutingError::NotFound(name.to_string())),
            Some(existing) => check_equivalent(name, existing, &wanted).map(|()| false),
            None if name.starts_with("amq.") => Err(RoutingError::AccessRefused(format!(
                "exchange name {name:?} is reserved"
            ))),
            None if self.exchanges.len() >= EXCHANGES_MAX => {
                Err(RoutingError::LimitReached(format!("{EXCHANGES_MAX} exchanges")))
            }
            None => {
                self.exchanges.insert(name.to_string(), wanted);
                Ok(true)
            }
        }
    }

    /// Deletes an exchange with the bindings it is the source or the destination of; with
    /// `if_unused`, only when it is the source of none. Auto-delete exchanges left without
    /// bindings go too.
    pub fn delete(&mut self, name: &str, if_unused: bool) -> Result<(), RoutingError> {
        if name.is_empty() || PREDECLARED.iter().any(|(n, _)| *n == name) {
            return Err(RoutingError::AccessRefused(format!(
                "exchange {name:?} cannot be deleted"
            )));
        }
        if !self.exchanges.contains_key(name) {
            return Err(RoutingError::NotFound(name.to_string()));
        }
        if if_unused && self.is_source(name) {
            return Err(RoutingError::InUse(name.to_string()));
        }
        self.exchanges.remove(name);
        let bound = self.bindings.remove(name).map_or(0, |l| l.len());
        let linked = self.exchange_bindings.remove(name).map_or(0, |l| l.len());
        self.binding_count -= bound + linked;
        self.forget_destination_exchange(name);
        Ok(())
    }

    /// True when `exchange` is the source of any binding.
    fn is_source(&self, exchange: &str) -> bool {
        self.bindings.get(exchange).is_some_and(|l| !l.is_empty())
            || self
                .exchange_bindings
                .get(exchange)
                .is_some_and(|l| !l.is_empty())
    }

    /// Binds `queue` to `exchange`; binding again with the same key and arguments changes
    /// nothing.
    pub fn bind(&mut self, exchange: &str, binding: Binding) -> Result<(), RoutingError> {
        if exchange.is_empty() {
            return Err(RoutingError::AccessRefused(
                "the default exchange cannot be bound".into(),
            ));
        }
        if !self.exchanges.contains_key(exchange) {
            return Err(RoutingError::NotFound(exchange.to_string()));
        }
        let list = self.bindings.entry(exchange.to_string()).or_default();
        add_binding(list, binding, &mut self.binding_count)
    }

    /// Removes a binding (absent ones are fine, as in RabbitMQ); an auto-delete exchange
    /// left without bindings goes too.
    pub fn unbind(&mut self, exchange: &str, binding: &Binding) -> Result<(), RoutingError> {
        if exchange.is_empty() {
            return Err(RoutingError::AccessRefused(
                "the default exchange cannot be unbound".into(),
            ));
        }
        if !self.exchanges.contains_key(exchange) {
            return Err(RoutingError::NotFound(exchange.to_string()));
        }
        if let Some(list) = self.bindings.get_mut(exchange) {
            remove_bindings(list, |b| b == binding, &mut self.binding_count);
        }
        self.drop_if_auto_deleted(exchange);
        Ok(())
    }

    /// Removes every binding of a deleted queue (auto-delete exchanges left empty go too).
    pub fn forget_queue(&mut self, queue: &str) {
        let mut emptied = Vec::new();
        for (exchange, list) in self.bindings.iter_mut() {
            if remove_bindings(list, |b| b.queue == queue, &mut self.binding_count) > 0 {
                emptied.push(exchange.clone());
            }
        }
        for exchange in emptied {
            self.drop_if_auto_deleted(&exchange);
        }
    }

    fn drop_if_auto_deleted(&mut self, exchange: &str) {
        if self.is_source(exchange) || !self.exchanges.get(exchange).is_some_and(|e| e.auto_delete) {
            return;
        }
        self.exchanges.remove(exchange);
        self.bindings.remove(exchange);
        self.exchange_bindings.remove(exchange);
        self.forget_destination_exchange(exchange);
    }

    /// The queues a message published to `exchange` with `key` and `headers` goes to.
    /// Publishing to an internal exchange is refused. The message follows exchange-to-exchange
    /// bindings; an exchange whose own bindings take nothing passes it to its alternate
    /// exchange. Each exchange is visited at most once, so cycles end.
    pub fn route(
        &self,
        exchange: &str,
        key: &str,
        headers: &Headers,
    ) -> Result<BTreeSet<String>, RoutingError> {
        if exchange.is_empty() {
            return Ok(BTreeSet::from([key.to_string()]));
        }
        let e = self
            .exchanges
            .get(exchange)
            .ok_or_else(|| RoutingError::NotFound(exchange.to_string()))?;
        if e.internal {
            return Err(RoutingError::AccessRefused(format!(
                "exchange {exchange:?} is internal"
            )));
        }
        let mut queues = BTreeSet::new();
        let mut seen = BTreeSet::from([exchange]);
        let mut work = vec![(exchange, e)];
        // Each exchange enters the work list at most once: bounded by the number of exchanges.
        while let Some((name, x)) = work.pop() {
            let own = self.bound(name, x, key, headers);
            let next = self.linked(name, x, key, headers);
            let took = !own.is_empty() || !next.is_empty();
            queues.extend(own);
            let alternate = x.alternate.as_deref().filter(|_| !took);
            for to in next.into_iter().chain(alternate) {
                if let Some((to, dest)) = self.exchanges.get_key_value(to) {
                    if seen.insert(to.as_str()) {
                        work.push((to.as_str(), dest));
                    }
                }
            }
        }
        Ok(queues)
    }

    /// The queues `exchange`'s own bindings give a message.
    fn bound(&self, name: &str, e: &Exchange, key: &str, headers: &Headers) -> Vec<String> {
        let bindings = self.bindings.get(name).map(Vec::as_slice).unwrap_or_default();
        bindings
            .iter()
            .filter(|b| takes(e.kind, &b.key, &b.arguments, key, headers))
            .map(|b| b.queue.clone())
            .collect()
    }
}

/// Adds `binding` to `list` unless it is there already (binding again changes nothing),
/// within [`BINDINGS_MAX`] bindings in all (`count`).
fn add_binding<B: PartialEq>(list: &mut Vec<B>, binding: B, count: &mut usize) -> Result<(), RoutingError> {
    if list.contains(&binding) {
        return Ok(());
    }
    if *count >= BINDINGS_MAX {
        return Err(RoutingError::LimitReached(format!("{BINDINGS_MAX} bindings")));
    }
    list.push(binding);
    *count += 1;
    Ok(())
}

/// Removes the bindings `doomed` picks from `list`, keeping `count` in step; returns how
/// many went.
fn remove_bindings<B>(list: &mut Vec<B>, doomed: impl Fn(&B) -> bool, count: &mut usize) -> usize {
    let before = list.len();
    list.retain(|b| !doomed(b));
    let removed = before - list.len();
    *count -= removed;
    removed
}

/// True when a binding of an exchange of `kind` with `binding_key` and `arguments` takes a
/// message with `key` and `headers`.
fn takes(kind: ExchangeKind, binding_key: &str, arguments: &Headers, key: &str, headers: &Headers) -> bool {
    match kind {
        ExchangeKind::Direct => binding_key == key,
        ExchangeKind::Fanout => true,
        ExchangeKind::Topic => topic::matches(binding_key, key),
        ExchangeKind::Headers => headers::matches(arguments, headers),
    }
}

fn check_equivalent(name: &str, existing: &Exchange, wanted: &Exchange) -> Result<(), RoutingError> {
    let differs = |what: &str| {
        Err(RoutingError::PreconditionFailed(format!(
            "inequivalent arg '{what}' for exchange '{name}'"
        )))
    };
    if existing.kind != wanted.kind {
        return differs("type");
    }
    if existing.durable != wanted.durable {
        return differs("durable");
    }
    if existing.auto_delete != wanted.auto_delete {
        return differs("auto_delete");
    }
    if existing.internal != wanted.internal {
        return differs("internal");
    }
    if existing.alternate != wanted.alternate {
        return differs("alternate-exchange");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain exchange of `kind` (shared with the exchange-binding tests).
    pub(super) fn exchange(kind: ExchangeKind) -> Exchange {
        Exchange {
            kind,
            durable: false,
            auto_delete: false,
            internal: false,
            alternate: None,
        }
    }

    fn binding(queue: &str, key: &str) -> Binding {
        Binding {
            queue: queue.to_string(),
            key: key.to_string(),
            arguments: Headers::new(),
        }
    }

    #[test]
    fn the_kinds_route_as_rabbitmq_does() {
        let mut t = Topology::default();
        let none = Headers::new();
        assert_eq!(
            t.route("", "orders", &none),
            Ok(BTreeSet::from(["orders".to_string()]))
        );
        t.declare("logs", exchange(ExchangeKind::Fanout), false)
            .expect("fanout");
        t.declare("direct_logs", exchange(ExchangeKind::Direct), false)
            .expect("direct");
        t.declare("topic_logs", exchange(ExchangeKind::Topic), false)
            .expect("topic");
        t.bind("logs", binding("q1", "")).expect("bind");
        t.bind("logs", binding("q2", "ignored")).expect("bind");
        t.bind("direct_logs", binding("errors", "error")).expect("bind");
        t.bind("direct_logs", binding("all", "error")).expect("bind");
        t.bind("direct_logs", binding("all", "info")).expect("bind");
        t.bind("topic_logs", binding("kern", "kern.*")).expect("bind");
        t.bind("topic_logs", binding("critical", "*.critical"))
            .expect("bind");
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(t.route("logs", "x", &none), Ok(set(&["q1", "q2"])));
        assert_eq!(
            t.route("direct_logs", "error", &none),
            Ok(set(&["all", "errors"]))
        );
        assert_eq!(t.route("direct_logs", "info", &none), Ok(set(&["all"])));
        assert_eq!(t.route("direct_logs", "debug", &none), Ok(set(&[])));
        assert_eq!(
            t.route("topic_logs", "kern.critical", &none),
            Ok(set(&["critical", "kern"]))
        );
        assert_eq!(t.route("topic_logs", "cron.info", &none), Ok(set(&[])));
        assert_eq!(
            t.route("nope", "x", &none),
            Err(RoutingError::NotFound("nope".into()))
        );
    }

    #[test]
    fn declarations_follow_rabbitmqs_rules() {
        let mut t = Topology::default();
        assert_eq!(t.declare("logs", exchange(ExchangeKind::Fanout), false), Ok(true));
        assert_eq!(
            t.declare("logs", exchange(ExchangeKind::Fanout), false),
            Ok(false)
        );
        assert!(matches!(
            t.declare("logs", exchange(ExchangeKind::Topic), false),
            Err(RoutingError::PreconditionFailed(m)) if m.contains("'type'")
        ));
        assert_eq!(
            t.declare("logs", exchange(ExchangeKind::Topic), true),
            Ok(false),
            "passive ignores properties"
        );
        assert_eq!(
            t.declare("absent", exchange(ExchangeKind::Topic), true),
            Err(RoutingError::NotFound("absent".into()))
        );
        assert!(matches!(
            t.declare("", exchange(ExchangeKind::Direct), false),
            Err(RoutingError::AccessRefused(_))
        ));
        assert!(matches!(
            t.declare("amq.mine", exchange(ExchangeKind::Direct), false),
            Err(RoutingError::AccessRefused(_))
        ));
        assert!(t
            .exchange("amq.topic")
            .is_some_and(|e| e.kind == ExchangeKind::Topic));
        assert!(matches!(
            t.delete("amq.topic", false),
            Err(RoutingError::AccessRefused(_))
        ));
        t.bind("logs", binding("q", "")).expect("bind");
        assert_eq!(t.delete("logs", true), Err(RoutingError::InUse("logs".into())));
        t.delete("logs", false).expect("delete");
        assert_eq!(
            t.route("logs", "", &Headers::new()),
            Err(RoutingError::NotFound("logs".into()))
        );
    }

    #[test]
    fn unroutable_messages_follow_alternate_exchanges_and_a_cycle_ends_the_chain() {
        let mut t = Topology::default();
        let with_alternate = |kind, alternate: &str| Exchange {
            alternate: Some(alternate.to_string()),
            ..exchange(kind)
        };
        t.declare("orders", with_alternate(ExchangeKind::Direct, "unrouted"), false)
            .expect("declare");
        t.declare("unrouted", with_alternate(ExchangeKind::Fanout, "orders"), false)
            .expect("declare");
        t.bind("orders", binding("paid", "paid")).expect("bind");
        let none = Headers::new();
        assert_eq!(
            t.route("orders", "paid", &none).expect("route"),
            BTreeSet::from(["paid".to_string()])
        );
        assert!(
            t.route("orders", "lost", &none).expect("route").is_empty(),
            "a cycle ends"
        );
        t.bind("unrouted", binding("leftovers", "")).expect("bind");
        assert_eq!(
            t.route("orders", "lost", &none).expect("route"),
            BTreeSet::from(["leftovers".to_string()])
        );
        let other = with_alternate(ExchangeKind::Direct, "elsewhere");
        assert!(matches!(
            t.declare("orders", other, false),
            Err(RoutingError::PreconditionFailed(_))
        ));
    }

    #[test]
    fn auto_delete_exchanges_go_with_their_last_binding_and_internal_ones_refuse_publishers() {
        let mut t = Topology::default();
        let auto = Exchange {
            auto_delete: true,
            ..exchange(ExchangeKind::Direct)
        };
        t.declare("temp", auto, false).expect("declare");
        t.bind("temp", binding("a", "k")).expect("bind");
        t.bind("temp", binding("b", "k")).expect("bind");
        t.forget_queue("a");
        assert!(t.exchange("temp").is_some(), "one binding left");
        t.unbind("temp", &binding("b", "k")).expect("unbind");
        assert!(t.exchange("temp").is_none(), "auto-deleted with its last binding");
        let internal = Exchange {
            internal: true,
            ..exchange(ExchangeKind::Fanout)
        };
        t.declare("inner", internal, false).expect("declare");
        assert!(matches!(
            t.route("inner", "", &Headers::new()),
            Err(RoutingError::AccessRefused(_))
        ));
    }
}
