//! A producer's and a consumer's view of a run: [`ProducerCtx`] hands out records on the
//! schedule and takes acknowledgements, [`ConsumerCtx`] takes received payloads and says when
//! the consumers own their partitions and when to stop.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::Notify;

use crate::run::FLUSH_SECS_MAX;
use crate::workload::{record_latency, write_header, AckSink, Clock, Counters, Window};

/// Records one producer may have published but not yet seen acknowledged: the async
/// drivers' analogue of librdkafka's 64 MiB producer queue, in records (at most 64 MiB of
/// them).
pub(crate) fn in_flight_records_max(record_size: usize) -> usize {
    const IN_FLIGHT_BYTES_MAX: usize = 64 << 20;
    const IN_FLIGHT_RECORDS_MAX: usize = 65_536;
    (IN_FLIGHT_BYTES_MAX / record_size.max(1)).clamp(1, IN_FLIGHT_RECORDS_MAX)
}

/// One producer's view of the run.
pub struct ProducerCtx {
    pub(crate) index: usize,
    pub(crate) destinations: Arc<Vec<String>>,
    pub(crate) clock: Clock,
    pub(crate) window: Window,
    /// Fixed rate: (offset of this producer's first slot, interval between its slots) in ns.
    pub(crate) schedule: Option<(f64, f64)>,
    pub(crate) run_id: u64,
    pub(crate) record_size: usize,
    pub(crate) sent: u64,
    pub(crate) acks: Arc<AckSink>,
}

impl ProducerCtx {
    /// The run id, unique to this run.
    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    /// Every destination of the run; producers spread records over all of them.
    pub fn destinations(&self) -> &[String] {
        &self.destinations
    }

    /// Where to report acknowledgements (shareable with an ack-collecting task or thread).
    pub fn acks(&self) -> Arc<AckSink> {
        Arc::clone(&self.acks)
    }

    /// Most records to keep published but unacknowledged.
    pub fn in_flight_max(&self) -> usize {
        in_flight_records_max(self.record_size)
    }

    /// The destination for the next record: round robin over all of them.
    pub fn next_destination(&self) -> usize {
        let n = self.destinations.len().max(1) as u64;
        usize::try_from((self.sent + self.index as u64) % n).unwrap_or(0)
    }

    /// The next record's intended send time, or `None` once the run's sending time is over.
    fn next_slot(&self) -> Option<u64> {
        let t = match self.schedule {
            None => self.clock.now_ns(),
            Some((offset_ns, interval_ns)) => {
                self.window.start_ns + (offset_ns + self.sent as f64 * interval_ns) as u64
            }
        };
        (t < self.window.end_ns).then_some(t)
    }

    /// Waits for the next record's slot (at a fixed rate) and returns its intended send time
    /// and payload, or `None` once the run's sending time is over.
    pub async fn next_record(&mut self) -> Option<(u64, Vec<u8>)> {
        let intended = self.next_slot()?;
        if self.schedule.is_some() {
            let now = self.clock.now_ns();
            if now < intended {
                tokio::time::sleep(Duration::from_nanos(intended - now)).await;
            }
        }
        let mut payload = self.record_buffer();
        write_header(&mut payload, intended, self.run_id);
        self.sent += 1;
        Some((intended, payload))
    }

    /// This producer's index, 0-based.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Bytes per record.
    pub fn record_size(&self) -> usize {
        self.record_size
    }

    /// The run clock now, in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// The next record's intended send time, or `None` once the run's sending time is over.
    pub fn next_slot_ns(&self) -> Option<u64> {
        self.next_slot()
    }

    /// For a producer that batches by time: takes the next record if its slot is due at
    /// `now_ns` (at max rate it always is), writes its header into `buf` and returns its
    /// intended send time.
    pub fn take_due(&mut self, buf: &mut [u8], now_ns: u64) -> Option<u64> {
        let intended = self.next_slot()?;
        if self.schedule.is_some() && intended > now_ns {
            return None;
        }
        write_header(buf, intended, self.run_id);
        self.sent += 1;
        Some(intended)
    }

    /// A payload of the run's record size, for [`ProducerCtx::next_record_blocking`].
    pub fn record_buffer(&self) -> Vec<u8> {
        vec![b'r'; self.record_size]
    }

    /// For a producer on its own thread: sleeps until the next record's slot (at a fixed rate),
    /// writes the record header into `buf` (from [`ProducerCtx::record_buffer`]) and returns
    /// its intended send time, or `None` once the run's sending time is over.
    pub fn next_record_blocking(&mut self, buf: &mut [u8]) -> Option<u64> {
        let intended = self.next_slot()?;
        // At max rate the slot is now: no second clock read.
        while self.schedule.is_some() {
            let now = self.clock.now_ns();
            if now >= intended {
                break;
            }
            // Sleep rather than spin: the broker may share these cores. Timer slack makes a
            // record late by tens of microseconds, which its latency includes.
            thread::sleep(Duration::from_nanos(intended - now));
        }
        write_header(buf, intended, self.run_id);
        self.sent += 1;
        Some(intended)
    }

    /// True once the run ended more than the flush allowance ago: a producer still unable to
    /// send should give up.
    pub fn past_flush_deadline(&self) -> bool {
        self.clock.now_ns() > self.window.end_ns + FLUSH_SECS_MAX * 1_000_000_000
    }
}

/// The stop signal shared by consumers.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Tells every consumer to stop.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

/// One consumer's view of the run.
pub struct ConsumerCtx {
    pub(crate) index: usize,
    pub(crate) destinations: Vec<String>,
    pub(crate) clock: Clock,
    pub(crate) run_id: u64,
    pub(crate) window: Arc<OnceLock<Window>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) hist: Arc<Mutex<Histogram<u64>>>,
    pub(crate) stop: Arc<Stop>,
    /// Partitions all consumers own together.
    pub(crate) owned_total: Arc<AtomicUsize>,
    /// Partitions this consumer owns.
    pub(crate) owned: usize,
}

impl ConsumerCtx {
    /// This consumer's index, 0-based.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The run id, unique to this run (e.g. for a consumer group name).
    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    /// The destinations this consumer reads, each from its beginning.
    pub fn destinations(&self) -> &[String] {
        &self.destinations
    }

    /// Says this consumer now owns `count` partitions (Kafka: its current assignment, which a
    /// rebalance may shrink). Producing starts once the consumers together own every
    /// partition of the run.
    pub fn owns(&mut self, count: usize) {
        if count > self.owned {
            self.owned_total.fetch_add(count - self.owned, Ordering::SeqCst);
        } else if count < self.owned {
            self.owned_total.fetch_sub(self.owned - count, Ordering::SeqCst);
        }
        self.owned = count;
    }

    /// Call once every destination is subscribed: this consumer owns one partition per
    /// destination.
    pub fn ready(&mut self) {
        self.owns(self.destinations.len());
    }

    /// True once producing started (the consumers' ownership no longer matters).
    pub fn producing(&self) -> bool {
        self.window.get().is_some()
    }

    /// True once the run is over and consumers should return.
    pub fn stopped(&self) -> bool {
        self.stop.stopped.load(Ordering::Relaxed)
    }

    /// Resolves when the run is over (for `tokio::select!`).
    pub async fn wait_stopped(&self) {
        loop {
            let notified = self.stop.notify.notified();
            if self.stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Accounts one received payload; ignores payloads of other runs.
    pub fn received(&self, payload: &[u8]) {
        let now = self.clock.now_ns();
        if let Some(intended) = self
            .counters
            .received(self.window.get(), self.run_id, payload, now)
        {
            if let Ok(mut hist) = self.hist.lock() {
                record_latency(&mut hist, intended, now);
            }
        }
    }

    /// A receive failed (counted, not fatal).
    pub fn error(&self) {
        self.counters.consume_errors.fetch_add(1, Ordering::Relaxed);
    }
}
