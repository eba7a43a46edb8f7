//! One group's deliveries, without I/O: which events wait, which consumer holds which,
//! retries, timeouts and parking, and the checkpoint (where a restart resumes: no event
//! before it is unfinished).
//!
//! Every event read from the source gets a ticket. A ticket is in exactly one place: waiting
//! for a retry, waiting fresh, held by a consumer, or waiting to be parked. It leaves when it
//! is finished (acknowledged, skipped, or written to the parked stream).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::model::{ConsumerStrategy, Delivery, NackAction};
use crate::model::RecordedEvent;

/// A consumer, numbered by the group.
pub(crate) type ConsumerId = u64;
type TicketId = u64;

/// Most waiting events a pinned dispatch looks past for one whose consumer has room.
const PINNED_SCAN_MAX: usize = 1024;

#[derive(Debug)]
struct Ticket {
    event: Arc<RecordedEvent>,
    /// Where the event is in the source; `None` for a replayed parked event.
    seq: Option<u64>,
    /// Its revision in the parked stream, for a replayed parked event.
    parked_revision: Option<u64>,
    retry_count: u32,
    pin: u64,
    /// The consumer holding it, and when it times out.
    holder: Option<(ConsumerId, Option<Instant>)>,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Slots {
    pub(crate) slots: u32,
    pub(crate) in_flight: u32,
    pub(crate) delivered_total: u64,
}

impl Slots {
    fn free(&self) -> bool {
        self.in_flight < self.slots
    }
}

/// How a group delivers: its settings that matter here.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) strategy: ConsumerStrategy,
    pub(crate) max_retry_count: u32,
    pub(crate) message_timeout: Option<Duration>,
}

/// The state.
#[derive(Debug)]
pub(crate) struct GroupState {
    rules: Rules,
    tickets: BTreeMap<TicketId, Ticket>,
    next_ticket: TicketId,
    retry: VecDeque<TicketId>,
    fresh: VecDeque<TicketId>,
    /// Tickets by event id, oldest first (an id may repeat across streams of `$all`).
    by_id: HashMap<u128, Vec<TicketId>>,
    held_count: usize,
    deadlines: BTreeSet<(Instant, TicketId)>,
    seqs: BTreeSet<u64>,
    parked_pending: BTreeSet<u64>,
    to_park: Vec<TicketId>,
    consumers: BTreeMap<ConsumerId, Slots>,
    cursor: ConsumerId,
    /// The next revision or position to read from the source.
    pub(crate) next_read: u64,
    pub(crate) delivered_total: u64,
    pub(crate) finished_total: u64,
}

fn pin_of(strategy: ConsumerStrategy, event: &RecordedEvent) -> u64 {
    let mut h = DefaultHasher::new();
    let correlation = (strategy == ConsumerStrategy::PinnedByCorrelation)
        .then(|| serde_json::from_slice::<serde_json::Value>(&event.metadata).ok())
        .flatten()
        .and_then(|m| {
            m.get("$correlationId")
                .and_then(|c| c.as_str())
                .map(str::to_string)
        });
    match correlation {
        Some(c) => c.hash(&mut h),
        None => event.stream.hash(&mut h),
    }
    h.finish()
}

impl GroupState {
    /// A group resuming at `next_read`.
    pub(crate) fn new(rules: Rules, next_read: u64) -> GroupState {
        GroupState {
            rules,
            tickets: BTreeMap::new(),
            next_ticket: 0,
            retry: VecDeque::new(),
            fresh: VecDeque::new(),
            by_id: HashMap::new(),
            held_count: 0,
            deadlines: BTreeSet::new(),
            seqs: BTreeSet::new(),
            parked_pending: BTreeSet::new(),
            to_park: Vec::new(),
            consumers: BTreeMap::new(),
            cursor: 0,
            next_read,
            delivered_total: 0,
            finished_total: 0,
        }
    }

    fn add(&mut self, event: Arc<RecordedEvent>, seq: Option<u64>, parked_revision: Option<u64>) -> TicketId {
        let id = self.next_ticket;
        self.next_ticket += 1;
        let pin = pin_of(self.rules.strategy, &event);
        self.by_id.entry(event.id).or_default().push(id);
        self.tickets.insert(
            id,
            Ticket {
                event,
                seq,
                parked_revision,
                retry_count: 0,
                pin,
                holder: None,
            },
        );
        id
    }

    /// An event read from the source at `seq` (a revision or a position).
    pub(crate) fn offer(&mut self, event: Arc<RecordedEvent>, seq: u64) {
        assert!(
            self.seqs.last().is_none_or(|l| *l < seq),
            "source events arrive in order"
        );
        self.seqs.insert(seq);
        let t = self.add(event, Some(seq), None);
        self.fresh.push_back(t);
    }

    /// A parked event given back for delivery; it waits with the retries.
    pub(crate) fn offer_replay(&mut self, event: Arc<RecordedEvent>, parked_revision: u64) {
        self.parked_pending.insert(parked_revision);
        let t = self.add(event, None, Some(parked_revision));
        self.retry.push_back(t);
    }

    /// Events read and not finished.
    pub(crate) fn outstanding(&self) -> usize {
        self.tickets.len()
    }

    /// Events held by consumers.
    pub(crate) fn in_flight(&self) -> usize {
        self.held_count
    }

    /// Events waiting for a retry.
    pub(crate) fn retry_waiting(&self) -> usize {
        self.retry.len()
    }

    /// Where a restart resumes: the first unfinished source event, else the next to read.
    pub(crate) fn checkpoint(&self) -> u64 {
        self.seqs.first().copied().unwrap_or(self.next_read)
    }

    /// The first parked revision given back and not finished.
    pub(crate) fn parked_floor(&self) -> Option<u64> {
        self.parked_pending.first().copied()
    }

    /// A consumer joins with room for `slots` events.
    pub(crate) fn join(&mut self, consumer: ConsumerId, slots: u32) {
        assert!(slots > 0, "a consumer has room for at least one event");
        self.consumers.insert(
            consumer,
            Slots {
                slots,
                ..Slots::default()
            },
        );
    }

    /// The consumers and their slots.
    pub(crate) fn consumers(&self) -> &BTreeMap<ConsumerId, Slots> {
        &self.consumers
    }

    /// A consumer leaves: what it held waits for the others, first, in order.
    pub(crate) fn leave(&mut self, consumer: ConsumerId) {
        if self.consumers.remove(&consumer).is_none() {
            return;
        }
        let held: Vec<TicketId> = self
            .tickets
            .iter()
            .filter(|(_, t)| t.holder.is_some_and(|(c, _)| c == consumer))
            .map(|(id, _)| *id)
            .collect();
        for id in held.into_iter().rev() {
            self.release(id);
            self.retry.push_front(id);
        }
    }

    fn choose(&mut self, pin: u64) -> Option<ConsumerId> {
        match self.rules.strategy {
            ConsumerStrategy::DispatchToSingle => {
                self.consumers.iter().find(|(_, s)| s.free()).map(|(c, _)| *c)
            }
            ConsumerStrategy::RoundRobin => {
                let after = self.consumers.range(self.cursor + 1..);
                let chosen = after
                    .chain(self.consumers.range(..=self.cursor))
                    .find(|(_, s)| s.free())
                    .map(|(c, _)| *c)?;
                self.cursor = chosen;
                Some(chosen)
            }
            ConsumerStrategy::Pinned | ConsumerStrategy::PinnedByCorrelation => {
                let n = self.consumers.len() as u64;
                let (c, s) = self.consumers.iter().nth(usize::try_from(pin % n.max(1)).ok()?)?;
                s.free().then_some(*c)
            }
        }
    }

    fn any_free(&self) -> bool {
        self.consumers.values().any(Slots::free)
    }

    /// Gives waiting events (retries first) to consumers with room.
    pub(crate) fn dispatch(&mut self, now: Instant) -> Vec<(ConsumerId, Delivery)> {
        let mut out = Vec::new();
        for retry in [true, false] {
            let mut queue = std::mem::take(if retry { &mut self.retry } else { &mut self.fresh });
            let mut skipped = VecDeque::new();
            while self.any_free() && skipped.len() < PINNED_SCAN_MAX {
                let Some(t) = queue.pop_front() else { break };
                let pin = self.tickets.get(&t).map_or(0, |t| t.pin);
                match self.choose(pin) {
                    Some(c) => out.push(self.give(t, c, now)),
                    None => skipped.push_back(t),
                }
            }
            while let Some(t) = skipped.pop_back() {
                queue.push_front(t);
            }
            *(if retry { &mut self.retry } else { &mut self.fresh }) = queue;
        }
        out
    }

    fn give(&mut self, id: TicketId, consumer: ConsumerId, now: Instant) -> (ConsumerId, Delivery) {
        let deadline = self.rules.message_timeout.map(|t| now + t);
        let ticket = self.tickets.get_mut(&id).expect("a waiting ticket exists");
        assert!(ticket.holder.is_none(), "a waiting ticket has no holder");
        ticket.holder = Some((consumer, deadline));
        let delivery = Delivery {
            event: ticket.event.clone(),
            retry_count: ticket.retry_count,
        };
        self.held_count += 1;
        if let Some(d) = deadline {
            self.deadlines.insert((d, id));
        }
        if let Some(s) = self.consumers.get_mut(&consumer) {
            s.in_flight += 1;
            s.delivered_total += 1;
        }
        self.delivered_total += 1;
        (consumer, delivery)
    }

    /// Takes a ticket out of its holder's hands.
    fn release(&mut self, id: TicketId) {
        let Some(ticket) = self.tickets.get_mut(&id) else {
            return;
        };
        let Some((consumer, deadline)) = ticket.holder.take() else {
            return;
        };
        if let Some(d) = deadline {
            self.deadlines.remove(&(d, id));
        }
        self.held_count -= 1;
        if let Some(s) = self.consumers.get_mut(&consumer) {
            s.in_flight -= 1;
        }
    }

    /// Takes a waiting ticket out of its queue.
    fn unqueue(&mut self, id: TicketId) {
        self.retry.retain(|t| *t != id);
        self.fresh.retain(|t| *t != id);
        self.to_park.retain(|t| *t != id);
    }

    fn is_held(&self, id: TicketId) -> bool {
        self.tickets.get(&id).is_some_and(|t| t.holder.is_some())
    }

    fn finish(&mut self, id: TicketId) {
        if self.is_held(id) {
            self.release(id);
        } else {
            self.unqueue(id);
        }
        if let Some(ticket) = self.tickets.remove(&id) {
            if let Some(list) = self.by_id.get_mut(&ticket.event.id) {
                list.retain(|t| *t != id);
                if list.is_empty() {
                    self.by_id.remove(&ticket.event.id);
                }
            }
            if let Some(seq) = ticket.seq {
                self.seqs.remove(&seq);
            }
            if let Some(r) = ticket.parked_revision {
                self.parked_pending.remove(&r);
            }
            self.finished_total += 1;
        }
    }

    /// The tickets these event ids name: the one this consumer holds, else the oldest. An
    /// acknowledgement that arrives after its consumer left (its events already waiting for
    /// others) still counts.
    fn tickets_for(&self, consumer: ConsumerId, ids: &[u128]) -> Vec<TicketId> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(list) = self.by_id.get(id) else { continue };
            let mine = list.iter().find(|t| {
                self.tickets
                    .get(t)
                    .and_then(|t| t.holder)
                    .is_some_and(|(c, _)| c == consumer)
            });
            if let Some(t) = mine.or(list.first()) {
                if !out.contains(t) {
                    out.push(*t);
                }
            }
        }
        out
    }

    /// Acknowledgements; unknown ids (finished already) are ignored. Returns how many
    /// events finished.
    pub(crate) fn ack(&mut self, consumer: ConsumerId, ids: &[u128]) -> usize {
        let tickets = self.tickets_for(consumer, ids);
        for t in &tickets {
            self.finish(*t);
        }
        tickets.len()
    }

    /// Negative acknowledgements (`Stop` retries the events; the caller removes the
    /// consumer). A retry of an event that already waits changes nothing.
    pub(crate) fn nack(&mut self, consumer: ConsumerId, ids: &[u128], action: NackAction) -> usize {
        let tickets = self.tickets_for(consumer, ids);
        for t in &tickets {
            let held = self.is_held(*t);
            match action {
                NackAction::Skip => self.finish(*t),
                NackAction::Park => {
                    if held {
                        self.release(*t);
                    } else {
                        self.unqueue(*t);
                    }
                    self.to_park.push(*t);
                }
                NackAction::Retry | NackAction::Stop => {
                    if held {
                        self.release(*t);
                        self.retry_or_park(*t);
                    }
                }
            }
        }
        tickets.len()
    }

    fn retry_or_park(&mut self, id: TicketId) {
        let Some(ticket) = self.tickets.get_mut(&id) else {
            return;
        };
        if ticket.retry_count >= self.rules.max_retry_count {
            self.to_park.push(id);
        } else {
            ticket.retry_count += 1;
            self.retry.push_back(id);
        }
    }

    /// When the next held event times out.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// Retries (or parks) what timed out by `now`; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.release(id);
            self.retry_or_park(id);
            n += 1;
        }
        n
    }

    /// Events to write to the parked stream; each comes back as `parked` or `park_failed`.
    pub(crate) fn take_to_park(&mut self) -> Vec<(u64, Arc<RecordedEvent>)> {
        let ids = std::mem::take(&mut self.to_park);
        ids.into_iter()
            .filter_map(|id| self.tickets.get(&id).map(|t| (id, t.event.clone())))
            .collect()
    }

    /// The event is in the parked stream: finished.
    pub(crate) fn parked(&mut self, ticket: u64) {
        self.finish(ticket);
    }

    /// The parked stream could not be written: the event waits for delivery again.
    pub(crate) fn park_failed(&mut self, ticket: u64) {
        if self.tickets.contains_key(&ticket) {
            self.retry.push_front(ticket);
        }
    }

    /// Checks that every ticket is in exactly one place (for tests and assertions).
    #[cfg(test)]
    fn check(&self) {
        let held: usize = self.tickets.values().filter(|t| t.holder.is_some()).count();
        assert_eq!(held, self.held_count);
        let slots: u32 = self.consumers.values().map(|s| s.in_flight).sum();
        assert!(slots as usize <= held, "consumers hold what was given to them");
        let waiting = self.retry.len() + self.fresh.len() + self.to_park.len();
        assert_eq!(held + waiting, self.tickets.len(), "every ticket in one place");
        for s in self.consumers.values() {
            assert!(s.in_flight <= s.slots);
        }
        let seqs: usize = self.tickets.values().filter(|t| t.seq.is_some()).count();
        assert_eq!(seqs, self.seqs.len());
    }
}

#[cfg(test)]
mod tests;
