//! Process-wide totals read by live views (the console's overview): plain atomic counters
//! beside the labelled Prometheus families, so a reader needs no scrape or label walk.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals since start.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    records_produced: AtomicU64,
    bytes_produced: AtomicU64,
    records_fetched: AtomicU64,
    bytes_fetched: AtomicU64,
    fsyncs: AtomicU64,
    fsync_us_sum: AtomicU64,
    fsync_us_max: AtomicU64,
}

/// A reading of the totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TotalsSnapshot {
    /// Records appended to topics.
    pub records_produced: u64,
    /// Batch bytes appended to topics.
    pub bytes_produced: u64,
    /// Records served to consumers.
    pub records_fetched: u64,
    /// Batch bytes served to consumers.
    pub bytes_fetched: u64,
    /// Durable writes (fdatasync or journal commits).
    pub fsyncs: u64,
    /// Their summed duration in microseconds.
    pub fsync_us_sum: u64,
    /// The longest durable write since the previous [`crate::Metrics::take_totals`], in
    /// microseconds.
    pub fsync_us_max: u64,
}

impl Totals {
    pub(crate) fn produced(&self, records: u64, bytes: u64) {
        self.records_produced.fetch_add(records, Ordering::Relaxed);
        self.bytes_produced.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn fetched(&self, records: u64, bytes: u64) {
        self.records_fetched.fetch_add(records, Ordering::Relaxed);
        self.bytes_fetched.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn fsync(&self, us: u64) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_us_sum.fetch_add(us, Ordering::Relaxed);
        self.fsync_us_max.fetch_max(us, Ordering::Relaxed);
    }

    /// Reads the totals and restarts the maximum.
    pub(crate) fn take(&self) -> TotalsSnapshot {
        TotalsSnapshot {
            records_produced: self.records_produced.load(Ordering::Relaxed),
            bytes_produced: self.bytes_produced.load(Ordering::Relaxed),
            records_fetched: self.records_fetched.load(Ordering::Relaxed),
            bytes_fetched: self.bytes_fetched.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            fsync_us_sum: self.fsync_us_sum.load(Ordering::Relaxed),
            fsync_us_max: self.fsync_us_max.swap(0, Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_and_the_maximum_restarts_when_taken() {
        let t = Totals::default();
        t.produced(3, 300);
        t.produced(2, 50);
        t.fetched(4, 40);
        t.fsync(120);
        t.fsync(80);
        let first = t.take();
        assert_eq!((first.records_produced, first.bytes_produced), (5, 350));
        assert_eq!((first.records_fetched, first.bytes_fetched), (4, 40));
        assert_eq!(
            (first.fsyncs, first.fsync_us_sum, first.fsync_us_max),
            (2, 200, 120)
        );
        t.fsync(10);
        let second = t.take();
        assert_eq!(
            (second.fsyncs, second.fsync_us_sum, second.fsync_us_max),
            (3, 210, 10)
        );
    }
}
