//! One queue: a single-partition topic and the settlement state of its messages, shared by
//! the consumers that compete for them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::routing::Headers;
use crate::settle::{AcquiredRange, Settle, SettleError, SettleLimits, SharedPartition};

/// How long a delivered, unacknowledged message stays with its consumer: until the
/// consumer's channel closes, in practice.
const HOLD: Duration = Duration::from_secs(24 * 3600);
/// Offsets tracked one by one past the ack floor; a consumer holding the message at the
/// floor unacknowledged stops deliveries this far beyond it.
pub const WINDOW_MAX: usize = 100_000;
/// Settled ranges above the ack floor kept in the stored state; acknowledgements beyond
/// these come back after a restart (at-least-once).
pub const STORED_RANGES_MAX: usize = 256;

/// What a queue was declared with.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// Survives a restart; transient queues vanish with the broker.
    pub durable: bool,
    /// Used only by the declaring connection, and deleted when it closes.
    pub exclusive: bool,
    /// Deleted when its last consumer goes (once it had one).
    pub auto_delete: bool,
    /// `x-` arguments, as declared.
    pub arguments: Headers,
}

/// Counters of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    /// Messages a consumer could be handed now.
    pub ready: u64,
    /// Messages delivered and not yet acknowledged.
    pub unacked: u64,
    /// Consumers attached.
    pub consumers: u32,
}

/// Messages through a queue since the broker started, and their rates over the last
/// sampling interval (log maintenance samples every second).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QueueRates {
    /// Messages appended.
    pub published_total: u64,
    /// Deliveries (redeliveries included).
    pub delivered_total: u64,
    /// Messages acknowledged.
    pub acknowledged_total: u64,
    /// Appended per second.
    pub published_per_s: f64,
    /// Delivered per second.
    pub delivered_per_s: f64,
    /// Acknowledged per second.
    pub acknowledged_per_s: f64,
}

/// The settlement state stored for a durable queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredState {
    /// Every offset below is settled.
    pub floor: i64,
    /// Every offset below was handed out at least once.
    pub delivered_end: i64,
    /// Settled ranges above the floor, at most [`STORED_RANGES_MAX`].
    pub settled: Vec<(i64, i64)>,
}

impl StoredState {
    /// The text kept in the state log entry's metadata.
    pub fn encode(&self) -> String {
        let ranges: Vec<String> = self.settled.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        format!("{};{}", self.delivered_end, ranges.join(","))
    }

    /// Parses [`StoredState::encode`]'s text; `None` when it is not ours.
    pub fn decode(floor: i64, text: &str) -> Option<StoredState> {
        let (end, ranges) = text.split_once(';')?;
        let mut settled = Vec::new();
        for r in ranges
            .split(',')
            .filter(|r| !r.is_empty())
            .take(STORED_RANGES_MAX)
        {
            let (a, b) = r.split_once('-')?;
            settled.push((a.parse().ok()?, b.parse().ok()?));
        }
        Some(StoredState {
            floor,
            delivered_end: end.parse().ok()?,
            settled,
        })
    }
}

/// Which total [`Queue::count`] adds to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Total {
    Published = 0,
    Delivered = 1,
    Acknowledged = 2,
}

#[derive(Debug)]
struct State {
    settle: SharedPartition,
    consumers: u32,
    exclusive_consumer: bool,
    had_consumer: bool,
    stored: StoredState,
    /// Last declaration, consumer change or acquisition (for `x-expires`).
    used_at: Instant,
    /// Body bytes by offset, for messages not yet settled (kept only under
    /// `x-max-length-bytes`).
    sizes: BTreeMap<i64, u32>,
    /// Totals and when they were last sampled, for rates.
    sampled: (Instant, [u64; 3]),
    rates: [f64; 3],
}

/// One queue. Shared by the registry and every consumer of it.
#[derive(Debug)]
pub struct Queue {
    name: String,
    spec: QueueSpec,
    owner: Option<u64>,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    deleted: AtomicBool,
    owns_topic: bool,
    limits: Option<super::args::Limits>,
    /// Published, delivered, acknowledged.
    totals: [AtomicU64; 3],
    /// Held while a reject-publish queue admits and appends, so concurrent publishers
    /// cannot both take the last room.
    pub(crate) admit: Mutex<()>,
}

impl Queue {
    pub(crate) fn new(name: &str, spec: QueueSpec, owner: Option<u64>, stored: StoredState) -> Queue {
        let limit = super::args::delivery_limit(&spec.arguments).unwrap_or(u16::MAX);
        let limits = SettleLimits {
            lock: HOLD,
            delivery_limit: limit,
            window: WINDOW_MAX,
        };
        let mut settle = SharedPartition::new(stored.floor.max(0), limits);
        settle.restore(&stored.settled, stored.delivered_end);
        let length_limits = super::args::limits(&spec.arguments);
        Queue {
            name: name.to_string(),
            spec,
            owner,
            state: Mutex::new(State {
                settle,
                consumers: 0,
                exclusive_consumer: false,
                had_consumer: false,
                stored,
                used_at: Instant::now(),
                sizes: BTreeMap::new(),
                sampled: (Instant::now(), [0; 3]),
                rates: [0.0; 3],
            }),
            changed: watch::channel(0).0,
            deleted: AtomicBool::new(false),
            owns_topic: true,
            limits: length_limits,
            totals: Default::default(),
            admit: Mutex::new(()),
        }
    }

    /// The same queue over a topic it did not create (a Kafka topic declared as a queue):
    /// deleting the queue, or a restart removing a transient one, leaves the topic.
    pub(crate) fn over_existing_topic(mut self, existing: bool) -> Queue {
        self.owns_topic = !existing;
        self
    }

    /// True when the queue created its topic (and deletes it with itself).
    pub fn owns_topic(&self) -> bool {
        self.owns_topic
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The queue's name (also its topic's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it was declared with.
    pub fn spec(&self) -> &QueueSpec {
        &self.spec
    }

    /// A stream (`x-queue-type=stream`): read from offsets, never settled.
    pub fn is_stream(&self) -> bool {
        super::args::is_stream(&self.spec.arguments)
    }

    /// The connection an exclusive queue belongs to.
    pub fn owner(&self) -> Option<u64> {
        self.owner
    }

    /// True once deleted: consumers stop.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        self.wake();
    }

    /// Wakes consumers waiting for messages (a publish, a release, a deletion).
    pub fn wake(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever [`Queue::wake`] runs.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Hands up to `max` messages to `owner`: requeued ones first, in order, then new ones
    /// up to `available_end`.
    pub fn acquire(&self, owner: &Arc<str>, available_end: i64, max: usize) -> Vec<AcquiredRange> {
        if max == 0 {
            return Vec::new();
        }
        let got = self
            .lock()
            .settle
            .acquire(owner, available_end, max, Instant::now());
        let count: i64 = got.iter().map(|r| r.last - r.first + 1).sum();
        self.count(Total::Delivered, u64::try_from(count).unwrap_or(0));
        got
    }

    /// Takes up to `max` messages from the head to drop them (not counted as deliveries).
    pub(crate) fn acquire_to_drop(
        &self,
        owner: &Arc<str>,
        available_end: i64,
        max: usize,
    ) -> Vec<AcquiredRange> {
        self.lock()
            .settle
            .acquire(owner, available_end, max, Instant::now())
    }

    /// The body bytes of the message at `offset`, when sizes are kept.
    pub(crate) fn size_of(&self, offset: i64) -> u64 {
        u64::from(self.lock().sizes.get(&offset).copied().unwrap_or(0))
    }

    /// The length limits (`x-max-length`, `x-max-length-bytes`, `x-overflow`).
    pub fn limits(&self) -> Option<super::args::Limits> {
        self.limits
    }

    /// Adds to one of the queue's totals.
    pub(crate) fn count(&self, total: Total, n: u64) {
        self.totals[total as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Records the body sizes of messages appended from offset `first` on (only when the
    /// queue limits its bytes).
    pub(crate) fn note_sizes(&self, first: i64, sizes: &[u32]) {
        if self.limits.is_none_or(|l| l.bytes_max.is_none()) {
            return;
        }
        let mut state = self.lock();
        for (offset, size) in (first..).zip(sizes) {
            state.sizes.insert(offset, *size);
        }
    }

    /// Ready messages and their body bytes (bytes are counted only under
    /// `x-max-length-bytes`; 0 otherwise).
    pub fn ready_and_bytes(&self, available_end: i64) -> (u64, u64) {
        let mut state = self.lock();
        let start = state.settle.start();
        // Settled messages leave from the front: amortised, each size is removed once.
        while state.sizes.first_key_value().is_some_and(|(o, _)| *o < start) {
            state.sizes.pop_first();
        }
        let ready = state.settle.ready(available_end);
        let size = |o: &i64| u64::from(state.sizes.get(o).copied().unwrap_or(0));
        let requeued: u64 = state.settle.available_in_window().map(|o| size(&o)).sum();
        let end = state.settle.end();
        let fresh: u64 = if end < available_end {
            state
                .sizes
                .range(end..available_end)
                .map(|(_, s)| u64::from(*s))
                .sum()
        } else {
            0
        };
        (ready, requeued + fresh)
    }

    /// Totals and rates.
    pub fn rates(&self) -> QueueRates {
        let rates = self.lock().rates;
        let total = |t: Total| self.totals[t as usize].load(Ordering::Relaxed);
        QueueRates {
            published_total: total(Total::Published),
            delivered_total: total(Total::Delivered),
            acknowledged_total: total(Total::Acknowledged),
            published_per_s: rates[0],
            delivered_per_s: rates[1],
            acknowledged_per_s: rates[2],
        }
    }

    /// Updates the rates from the totals' change since the last sample.
    pub(crate) fn sample_rates(&self, now: Instant) {
        let totals = [0, 1, 2].map(|i| self.totals[i].load(Ordering::Relaxed));
        let mut state = self.lock();
        let (at, before) = state.sampled;
        let secs = now.saturating_duration_since(at).as_secs_f64();
        if secs < 0.5 {
            return;
        }
        state.rates = [0, 1, 2].map(|i| totals[i].saturating_sub(before[i]) as f64 / secs);
        state.sampled = (now, totals);
    }

    /// Gives back acquired messages that could not be delivered, uncounted.
    pub fn unacquire(&self, owner: &str, first: i64, last: i64) {
        self.lock().settle.unacquire(owner, first, last);
        self.wake();
    }

    /// Settles one delivered message. Returns true when a released message was archived
    /// instead (it reached the delivery limit).
    pub fn settle(&self, owner: &str, offset: i64, how: Settle) -> Result<bool, SettleError> {
        let archived = {
            let mut state = self.lock();
            state.settle.settle(owner, offset, offset, how)?;
            how == Settle::Release && state.settle.is_settled(offset)
        };
        if how == Settle::Accept {
            self.count(Total::Acknowledged, 1);
        }
        if how == Settle::Release {
            self.wake();
        }
        Ok(archived)
    }

    /// Gives back everything `owner` holds (its channel closed, or it asked to recover).
    pub fn release_owner(&self, owner: &str) {
        self.lock().settle.release_owner(owner);
        self.wake();
    }

    /// Skips messages the log no longer holds.
    pub fn skip_to(&self, log_start: i64) {
        self.lock().settle.skip_to(log_start);
    }

    /// Drops every message not delivered; returns how many.
    pub(crate) fn purge(&self, available_end: i64) -> u64 {
        self.lock().settle.purge(available_end)
    }

    /// Counts ready and unacknowledged messages.
    pub fn counts(&self, available_end: i64) -> QueueCounts {
        let state = self.lock();
        QueueCounts {
            ready: state.settle.ready(available_end),
            unacked: state.settle.acquired() as u64,
            consumers: state.consumers,
        }
    }

    /// The ack floor: every message below it is settled.
    pub fn floor(&self) -> i64 {
        self.lock().settle.start()
    }

    /// Adds a consumer; false when an exclusive consumer holds the queue, or `exclusive`
    /// is asked while others consume.
    pub(crate) fn add_consumer(&self, exclusive: bool) -> bool {
        let mut state = self.lock();
        if state.exclusive_consumer || (exclusive && state.consumers > 0) {
            return false;
        }
        state.consumers += 1;
        state.exclusive_consumer = exclusive;
        state.had_consumer = true;
        state.used_at = Instant::now();
        true
    }

    /// Marks the queue used (a redeclaration): `x-expires` counts from now.
    pub(crate) fn touch(&self) {
        self.lock().used_at = Instant::now();
    }

    /// True when the queue has `x-expires`, no consumer, and went unused that long.
    pub(crate) fn unused_past_expiry(&self, now: Instant) -> bool {
        let Some(ms) = super::args::expires_ms(&self.spec.arguments) else {
            return false;
        };
        let state = self.lock();
        state.consumers == 0 && now.saturating_duration_since(state.used_at) >= Duration::from_millis(ms)
    }

    /// Removes a consumer; true when an auto-delete queue just lost its last one.
    pub(crate) fn remove_consumer(&self) -> bool {
        let mut state = self.lock();
        state.consumers = state.consumers.saturating_sub(1);
        state.used_at = Instant::now();
        if state.consumers == 0 {
            state.exclusive_consumer = false;
        }
        self.spec.auto_delete && state.had_consumer && state.consumers == 0
    }

    /// The state to store when it changed since the last call.
    pub(crate) fn state_to_store(&self) -> Option<StoredState> {
        let mut state = self.lock();
        let now = StoredState {
            floor: state.settle.start(),
            delivered_end: state.settle.end(),
            settled: state.settle.settled_ranges(STORED_RANGES_MAX),
        };
        if now == state.stored {
            return None;
        }
        state.stored = now.clone();
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec() -> QueueSpec {
        QueueSpec {
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: Headers::new(),
        }
    }

    /// A new queue declared with one integer argument.
    fn with_argument(key: &str, value: i64) -> Queue {
        let mut arguments = Headers::new();
        arguments.insert(key.into(), crate::routing::FieldValue::Int(value));
        Queue::new(
            "q",
            QueueSpec { arguments, ..spec() },
            None,
            StoredState::default(),
        )
    }

    fn owner() -> Arc<str> {
        Arc::from("c1")
    }

    /// Acquires everything up to `end`, settling the offsets `acked` picks; returns what
    /// would be stored.
    fn run(end: i64, acked: &[bool]) -> (Queue, StoredState) {
        let q = Queue::new("q", spec(), None, StoredState::default());
        let got = q.acquire(&owner(), end, usize::MAX);
        assert_eq!(got.iter().map(|r| r.last - r.first + 1).sum::<i64>(), end);
        for (offset, ack) in acked.iter().enumerate() {
            if *ack {
                q.settle("c1", offset as i64, Settle::Accept).expect("held");
            }
        }
        let stored = q.state_to_store().expect("changed");
        (q, stored)
    }

    #[test]
    fn a_released_message_past_the_delivery_limit_is_archived() {
        let q = with_argument("x-delivery-limit", 2);
        for round in 1..=2 {
            let got = q.acquire(&owner(), 1, 1);
            assert_eq!(got[0].delivery_count, round);
            let archived = q.settle("c1", 0, Settle::Release).expect("held");
            assert_eq!(archived, round == 2, "archived on the second release");
        }
        assert!(q.acquire(&owner(), 1, 1).is_empty());
        assert_eq!(q.floor(), 1);
    }

    #[test]
    fn purge_drops_what_is_not_delivered_and_keeps_what_is() {
        let q = Queue::new("q", spec(), None, StoredState::default());
        q.acquire(&owner(), 10, 3);
        assert_eq!(q.counts(10).ready, 7);
        assert_eq!(q.purge(10), 7);
        assert_eq!(
            q.counts(10),
            QueueCounts {
                ready: 0,
                unacked: 3,
                consumers: 0
            }
        );
        for offset in 0..3 {
            q.settle("c1", offset, Settle::Accept).expect("held");
        }
        assert_eq!(q.floor(), 10);
    }

    #[test]
    fn ready_bytes_count_ready_messages_only() {
        let q = with_argument("x-max-length-bytes", 100);
        q.note_sizes(0, &[10, 20, 30, 40]);
        assert_eq!(q.ready_and_bytes(4), (4, 100));
        let got = q.acquire(&owner(), 4, 2);
        assert_eq!((got[0].first, got[0].last), (0, 1));
        assert_eq!(q.ready_and_bytes(4), (2, 70), "held messages do not count");
        q.settle("c1", 1, Settle::Release).expect("held");
        assert_eq!(q.ready_and_bytes(4), (3, 90), "a released one counts again");
        q.settle("c1", 0, Settle::Accept).expect("held");
        assert_eq!(q.ready_and_bytes(4), (3, 90));
        assert_eq!(q.ready_and_bytes(3), (2, 50), "only up to the available end");
        assert_eq!(q.rates().acknowledged_total, 1);
        assert_eq!(q.rates().delivered_total, 2);
    }

    proptest! {
        /// What is stored comes back after a restart: settled offsets stay settled, the
        /// others are delivered again as redeliveries, nothing else is lost or duplicated.
        #[test]
        fn stored_state_restores_what_was_settled(acked in prop::collection::vec(any::<bool>(), 1..200), extra in 0i64..20) {
            let end = acked.len() as i64;
            let (_, stored) = run(end, &acked);
            let text = stored.encode();
            let decoded = StoredState::decode(stored.floor, &text).expect("decodes");
            prop_assert_eq!(&decoded, &stored);
            let restored = Queue::new("q", spec(), None, decoded);
            let got = restored.acquire(&owner(), end + extra, usize::MAX);
            let mut offsets = Vec::new();
            for r in &got {
                for o in r.first..=r.last {
                    offsets.push((o, r.delivery_count));
                }
            }
            let ranges_kept = stored.settled.len() < STORED_RANGES_MAX;
            for (o, count) in &offsets {
                let was_acked = (*o as usize) < acked.len() && acked[*o as usize];
                if ranges_kept {
                    prop_assert!(!was_acked, "offset {} was acked and came back", o);
                }
                prop_assert_eq!(*count > 1, *o < end, "offset {} redelivered flag", o);
            }
            let expected: Vec<i64> = (0..end + extra).filter(|o| *o >= end || !acked[*o as usize]).collect();
            let back: Vec<i64> = offsets.iter().map(|(o, _)| *o).collect();
            prop_assert_eq!(back, expected);
        }
    }
}
