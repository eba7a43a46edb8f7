//! Exchange-to-exchange bindings (RabbitMQ's `exchange.bind`): a binding from a source
//! exchange to a destination exchange, matched as a queue binding of the source would be.

use super::{add_binding, remove_bindings, takes, Exchange, Headers, RoutingError, Topology};

/// One binding of a destination exchange to a source exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeBinding {
    /// The exchange that routes again what this binding takes.
    pub destination: String,
    /// Routing key (direct), pattern (topic); unused for fanout and headers.
    pub key: String,
    /// Arguments (headers exchanges match on them).
    pub arguments: Headers,
}

impl Topology {
    /// Every exchange-to-exchange binding, by source.
    pub fn exchange_bindings(&self) -> impl Iterator<Item = (&String, &ExchangeBinding)> {
        self.exchange_bindings
            .iter()
            .flat_map(|(e, list)| list.iter().map(move |b| (e, b)))
    }

    /// Binds `binding.destination` to `source`; binding again with the same key and
    /// arguments changes nothing. Both exchanges must exist; the default exchange takes no
    /// part in bindings.
    pub fn bind_exchange(&mut self, source: &str, binding: ExchangeBinding) -> Result<(), RoutingError> {
        self.check_pair(source, &binding.destination, "bound")?;
        let list = self.exchange_bindings.entry(source.to_string()).or_default();
        add_binding(list, binding, &mut self.binding_count)
    }

    /// Removes an exchange-to-exchange binding (an absent one is fine); an auto-delete
    /// source left without bindings goes too.
    pub fn unbind_exchange(&mut self, source: &str, binding: &ExchangeBinding) -> Result<(), RoutingError> {
        self.check_pair(source, &binding.destination, "unbound")?;
        if let Some(list) = self.exchange_bindings.get_mut(source) {
            remove_bindings(list, |b| b == binding, &mut self.binding_count);
        }
        self.drop_if_auto_deleted(source);
        Ok(())
    }

    fn check_pair(&self, source: &str, destination: &str, what: &str) -> Result<(), RoutingError> {
        if source.is_empty() || destination.is_empty() {
            return Err(RoutingError::AccessRefused(format!(
                "the default exchange cannot be {what}"
            )));
        }
        for name in [destination, source] {
            if !self.exchanges.contains_key(name) {
                return Err(RoutingError::NotFound(name.to_string()));
            }
        }
        Ok(())
    }

    /// The destination exchanges `name`'s exchange bindings give a message.
    pub(super) fn linked<'a>(
        &'a self,
        name: &str,
        e: &Exchange,
        key: &str,
        headers: &Headers,
    ) -> Vec<&'a str> {
        let bindings = self
            .exchange_bindings
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        bindings
            .iter()
            .filter(|b| takes(e.kind, &b.key, &b.arguments, key, headers))
            .map(|b| b.destination.as_str())
            .collect()
    }

    /// Removes every binding to a deleted destination exchange; auto-delete sources left
    /// without bindings go too (and so on down the chain).
    pub(super) fn forget_destination_exchange(&mut self, destination: &str) {
        let mut emptied = Vec::new();
        for (source, list) in self.exchange_bindings.iter_mut() {
            if remove_bindings(list, |b| b.destination == destination, &mut self.binding_count) > 0 {
                emptied.push(source.clone());
            }
        }
        self.exchange_bindings.retain(|_, list| !list.is_empty());
        for source in emptied {
            self.drop_if_auto_deleted(&source);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::tests::exchange;
    use super::super::{Binding, ExchangeKind};
    use super::*;

    fn queue(queue: &str, key: &str) -> Binding {
        Binding {
            queue: queue.to_string(),
            key: key.to_string(),
            arguments: Headers::new(),
        }
    }

    fn link(destination: &str, key: &str) -> ExchangeBinding {
        ExchangeBinding {
            destination: destination.to_string(),
            key: key.to_string(),
            arguments: Headers::new(),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn topology(exchanges: &[(&str, Exchange)]) -> Topology {
        let mut t = Topology::default();
        for (name, e) in exchanges {
            t.declare(name, e.clone(), false).expect("declare");
        }
        t
    }

    #[test]
    fn messages_follow_exchange_bindings_once_through_cycles() {
        let internal = Exchange {
            internal: true,
            ..exchange(ExchangeKind::Fanout)
        };
        let mut t = topology(&[
            ("events", exchange(ExchangeKind::Topic)),
            ("audit", internal),
            ("billing", exchange(ExchangeKind::Direct)),
        ]);
        t.bind_exchange("events", link("audit", "#")).expect("bind");
        t.bind_exchange("events", link("billing", "order.*"))
            .expect("bind");
        t.bind_exchange("audit", link("events", ""))
            .expect("a cycle back");
        t.bind("audit", queue("audit-log", "")).expect("bind");
        t.bind("billing", queue("invoices", "order.paid")).expect("bind");
        t.bind("events", queue("audit-log", "order.paid"))
            .expect("second path to one queue");
        let none = Headers::new();
        assert_eq!(
            t.route("events", "order.paid", &none),
            Ok(set(&["audit-log", "invoices"]))
        );
        assert_eq!(t.route("events", "order.created", &none), Ok(set(&["audit-log"])));
        assert!(matches!(
            t.route("audit", "x", &none),
            Err(RoutingError::AccessRefused(_))
        ));
        t.unbind_exchange("events", &link("audit", "#")).expect("unbind");
        assert_eq!(t.route("events", "order.created", &none), Ok(set(&[])));
        assert_eq!(
            t.route("events", "order.paid", &none),
            Ok(set(&["audit-log", "invoices"]))
        );
        assert_eq!(t.exchange_bindings().count(), 2);
    }

    #[test]
    fn an_exchange_that_passes_a_message_on_does_not_use_its_alternate() {
        let with_alternate = Exchange {
            alternate: Some("leftovers".to_string()),
            ..exchange(ExchangeKind::Direct)
        };
        let mut t = topology(&[
            ("orders", with_alternate),
            ("leftovers", exchange(ExchangeKind::Fanout)),
            ("paid", exchange(ExchangeKind::Fanout)),
        ]);
        t.bind("leftovers", queue("unrouted", "")).expect("bind");
        t.bind_exchange("orders", link("paid", "paid")).expect("bind");
        let none = Headers::new();
        assert_eq!(
            t.route("orders", "paid", &none),
            Ok(set(&[])),
            "passed to an exchange without queues: not unroutable at the source"
        );
        t.bind("paid", queue("payments", "")).expect("bind");
        assert_eq!(t.route("orders", "paid", &none), Ok(set(&["payments"])));
        assert_eq!(t.route("orders", "lost", &none), Ok(set(&["unrouted"])));
    }

    #[test]
    fn deleting_an_exchange_removes_its_bindings_both_ways() {
        let auto = Exchange {
            auto_delete: true,
            ..exchange(ExchangeKind::Fanout)
        };
        let mut t = topology(&[
            ("front", auto),
            ("middle", exchange(ExchangeKind::Fanout)),
            ("back", exchange(ExchangeKind::Fanout)),
        ]);
        t.bind_exchange("front", link("middle", "")).expect("bind");
        t.bind_exchange("middle", link("back", "")).expect("bind");
        assert_eq!(
            t.delete("middle", true),
            Err(RoutingError::InUse("middle".into()))
        );
        assert_eq!(t.delete("back", true), Ok(()), "a destination only is unused");
        assert_eq!(t.exchange_bindings().count(), 1);
        t.delete("middle", false).expect("delete");
        assert!(
            t.exchange("front").is_none(),
            "the auto-delete source lost its last binding"
        );
        assert_eq!(t.exchange_bindings().count(), 0);
        assert_eq!(t.binding_count, 0);
    }

    #[test]
    fn bindings_need_both_exchanges_and_never_the_default_one() {
        let mut t = topology(&[("a", exchange(ExchangeKind::Fanout))]);
        assert_eq!(
            t.bind_exchange("a", link("absent", "")),
            Err(RoutingError::NotFound("absent".into()))
        );
        assert_eq!(
            t.bind_exchange("absent", link("a", "")),
            Err(RoutingError::NotFound("absent".into()))
        );
        assert!(matches!(
            t.bind_exchange("", link("a", "")),
            Err(RoutingError::AccessRefused(_))
        ));
        assert!(matches!(
            t.bind_exchange("a", link("", "")),
            Err(RoutingError::AccessRefused(_))
        ));
        t.bind_exchange("a", link("a", ""))
            .expect("an exchange may bind to itself");
        t.bind_exchange("a", link("a", "")).expect("again: no change");
        assert_eq!(t.exchange_bindings().count(), 1);
        assert_eq!(t.route("a", "", &Headers::new()), Ok(set(&[])));
    }
}
