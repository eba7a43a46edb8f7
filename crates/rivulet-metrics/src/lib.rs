//! Rivulet's process-wide metrics, in Prometheus naming conventions.
//!
//! One [`Metrics`] is created at startup and handed to every front end (the Kafka
//! listener, the HTTP gateway) and to the storage hooks. Values that are read from the
//! broker's state at scrape time (high watermarks, consumer lag, disk use) are added by the
//! HTTP gateway's `/metrics` handler through [`Metrics::render_with`].
//!
//! Label cardinality is bounded: topics are capped at [`TOPIC_LABELS_MAX`] distinct values
//! (later topics are counted under `topic="_other"`), APIs are a fixed set.
#![deny(missing_docs)]

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub use prometheus_client;
pub use totals::TotalsSnapshot;

mod totals;

/// Distinct topic label values; beyond this, traffic is counted under `_other`.
pub const TOPIC_LABELS_MAX: usize = 1_000;

/// Labels of per-topic counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// Topic name.
    pub topic: String,
}

/// Labels of per-API request metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// Protocol: `kafka` or `http`.
    pub protocol: String,
    /// API name (Kafka API key name, or the HTTP route).
    pub api: String,
}

/// Labels of connection metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    /// Protocol: `kafka` or `http`.
    pub protocol: String,
}

/// Labels of error counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Protocol: `kafka` or `http`.
    pub protocol: String,
    /// Error kind.
    pub error: String,
}

/// Labels of the transaction abort counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why: `producer`, `timeout`, `fenced` or `operator`.
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    records_produced: Family<TopicLabels, Counter>,
    bytes_produced: Family<TopicLabels, Counter>,
    records_fetched: Family<TopicLabels, Counter>,
    bytes_fetched: Family<TopicLabels, Counter>,
    request_duration: Family<ApiLabels, Histogram>,
    request_errors: Family<ErrorLabels, Counter>,
    connections_open: Family<ProtocolLabels, Gauge>,
    connections_total: Family<ProtocolLabels, Counter>,
    channels_open: Family<ProtocolLabels, Gauge>,
    disk_alarm: Gauge,
    fsync_duration: Histogram,
    fetch_sessions: Gauge,
    transaction_duration: Histogram,
    transactions_aborted: Family<ReasonLabels, Counter>,
    records_scavenged: Family<TopicLabels, Counter>,
    known_topics: Mutex<HashSet<String>>,
    totals: totals::Totals,
}

impl Metrics {
    /// Creates the metrics, registered under the `rivulet_` prefix.
    pub fn new(version: &str) -> Metrics {
        let mut root = Registry::with_prefix("rivulet");
        let records_produced = Family::<TopicLabels, Counter>::default();
        let bytes_produced = Family::<TopicLabels, Counter>::default();
        let records_fetched = Family::<TopicLabels, Counter>::default();
        let bytes_fetched = Family::<TopicLabels, Counter>::default();
        let request_duration = Family::<ApiLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_05, 2.0, 20))) as fn() -> Histogram,
        );
        let request_errors = Family::<ErrorLabels, Counter>::default();
        let connections_open = Family::<ProtocolLabels, Gauge>::default();
        let connections_total = Family::<ProtocolLabels, Counter>::default();
        let channels_open = Family::<ProtocolLabels, Gauge>::default();
        let disk_alarm = Gauge::default();
        root.register(
            "channels_open",
            "Channels open on connections that multiplex them (AMQP)",
            channels_open.clone(),
        );
        root.register(
            "disk_alarm",
            "1 while the data directory is low on space and publishers are held back",
            disk_alarm.clone(),
        );
        let fsync_duration = Histogram::new(exponential_buckets(0.000_025, 2.0, 18));
        let fetch_sessions = Gauge::default();
        let transaction_duration = Histogram::new(exponential_buckets(0.001, 2.0, 22));
        let transactions_aborted = Family::<ReasonLabels, Counter>::default();
        let records_scavenged = Family::<TopicLabels, Counter>::default();
        root.register(
            "records_produced",
            "Records appended to topics",
            records_produced.clone(),
        );
        root.register_with_unit(
            "produced",
            "Record batch bytes appended to topics",
            Unit::Bytes,
            bytes_produced.clone(),
        );
        root.register(
            "records_fetched",
            "Records served to consumers",
            records_fetched.clone(),
        );
        root.register_with_unit(
            "fetched",
            "Record batch bytes served to consumers",
            Unit::Bytes,
            bytes_fetched.clone(),
        );
        root.register_with_unit(
            "request_duration",
            "Time from a request's arrival to its response",
            Unit::Seconds,
            request_duration.clone(),
        );
        root.register(
            "request_errors",
            "Requests answered with an error",
            request_errors.clone(),
        );
        root.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        root.register(
            "connections",
            "Client connections accepted",
            connections_total.clone(),
        );
        root.register_with_unit(
            "fsync_duration",
            "Durable writes: fdatasync of partition segments and writes of the shared journal",
            Unit::Seconds,
            fsync_duration.clone(),
        );
        root.register(
            "fetch_sessions",
            "Incremental fetch sessions (KIP-227) cached now",
            fetch_sessions.clone(),
        );
        root.register_with_unit(
            "transaction_duration",
            "Time from a transaction's first partition to its completion (commit or abort)",
            Unit::Seconds,
            transaction_duration.clone(),
        );
        root.register(
            "transactions_aborted",
            "Transactions aborted, by reason",
            transactions_aborted.clone(),
        );
        root.register(
            "records_scavenged",
            "Records removed from topics by scavenging (the event store's deleted and truncated streams)",
            records_scavenged.clone(),
        );
        root.register(
            "build",
            "Rivulet build information",
            Info::new(BuildLabels {
                version: version.to_string(),
            }),
        );
        Metrics {
            registry: root,
            records_produced,
            bytes_produced,
            records_fetched,
            bytes_fetched,
            request_duration,
            request_errors,
            connections_open,
            connections_total,
            channels_open,
            disk_alarm,
            fsync_duration,
            fetch_sessions,
            transaction_duration,
            transactions_aborted,
            records_scavenged,
            known_topics: Mutex::new(HashSet::new()),
            totals: totals::Totals::default(),
        }
    }

    fn topic_label(&self, topic: &str) -> TopicLabels {
        let mut known = self.known_topics.lock().unwrap_or_else(|p| p.into_inner());
        if known.contains(topic) || known.len() < TOPIC_LABELS_MAX && known.insert(topic.to_string()) {
            TopicLabels {
                topic: topic.to_string(),
            }
        } else {
            TopicLabels {
                topic: "_other".to_string(),
            }
        }
    }

    /// Records a completed transaction: its duration, and the abort reason when it aborted.
    pub fn observe_transaction(&self, duration_ms: u64, aborted: Option<&str>) {
        self.transaction_duration.observe(duration_ms as f64 / 1_000.0);
        if let Some(reason) = aborted {
            let labels = ReasonLabels {
                reason: reason.to_string(),
            };
            self.transactions_aborted.get_or_create(&labels).inc();
        }
    }

    /// Counts records and batch bytes appended to a topic.
    pub fn record_produced(&self, topic: &str, records: u64, bytes: u64) {
        let labels = self.topic_label(topic);
        self.records_produced.get_or_create(&labels).inc_by(records);
        self.bytes_produced.get_or_create(&labels).inc_by(bytes);
        self.totals.produced(records, bytes);
    }

    /// Counts records scavenging removed from a topic.
    pub fn record_scavenged(&self, topic: &str, records: u64) {
        let labels = self.topic_label(topic);
        self.records_scavenged.get_or_create(&labels).inc_by(records);
    }

    /// Counts records and batch bytes served from a topic.
    pub fn record_fetched(&self, topic: &str, records: u64, bytes: u64) {
        let labels = self.topic_label(topic);
        self.records_fetched.get_or_create(&labels).inc_by(records);
        self.bytes_fetched.get_or_create(&labels).inc_by(bytes);
        self.totals.fetched(records, bytes);
    }

    /// Observes one request's duration.
    pub fn observe_request(&self, protocol: &str, api: &str, elapsed: Duration) {
        self.request_duration
            .get_or_create(&ApiLabels {
                protocol: protocol.to_string(),
                api: api.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a request answered with an error.
    pub fn request_error(&self, protocol: &str, error: &str) {
        self.request_errors
            .get_or_create(&ErrorLabels {
                protocol: protocol.to_string(),
                error: error.to_string(),
            })
            .inc();
    }

    /// A connection opened; call [`Metrics::connection_closed`] when it closes.
    pub fn connection_opened(&self, protocol: &str) {
        let labels = ProtocolLabels {
            protocol: protocol.to_string(),
        };
        self.connections_open.get_or_create(&labels).inc();
        self.connections_total.get_or_create(&labels).inc();
    }

    /// Connections of `protocol` open now.
    pub fn connections_open(&self, protocol: &str) -> i64 {
        self.connections_open
            .get_or_create(&ProtocolLabels {
                protocol: protocol.to_string(),
            })
            .get()
    }

    /// A connection closed.
    pub fn connection_closed(&self, protocol: &str) {
        self.connections_open
            .get_or_create(&ProtocolLabels {
                protocol: protocol.to_string(),
            })
            .dec();
    }

    /// A channel opened (`delta` 1) or closed (-1) on a `protocol` connection.
    pub fn channels_changed(&self, protocol: &str, delta: i64) {
        self.channels_open
            .get_or_create(&ProtocolLabels {
                protocol: protocol.to_string(),
            })
            .inc_by(delta);
    }

    /// Channels of `protocol` open now.
    pub fn channels_open(&self, protocol: &str) -> i64 {
        self.channels_open
            .get_or_create(&ProtocolLabels {
                protocol: protocol.to_string(),
            })
            .get()
    }

    /// Raises or clears the disk alarm gauge.
    pub fn set_disk_alarm(&self, raised: bool) {
        self.disk_alarm.set(i64::from(raised));
    }

    /// True while the disk alarm is raised.
    pub fn disk_alarm(&self) -> bool {
        self.disk_alarm.get() > 0
    }

    /// Sets the number of cached fetch sessions.
    pub fn set_fetch_sessions(&self, sessions: usize) {
        self.fetch_sessions
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
    }

    /// Observes one durable write (an fdatasync, or a journal commit).
    pub fn observe_fsync(&self, elapsed: Duration) {
        self.fsync_duration.observe(elapsed.as_secs_f64());
        self.totals
            .fsync(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// Reads the running totals (records and bytes in and out, durable writes) and restarts
    /// the longest-durable-write figure. One reader at a time should take them (the HTTP
    /// gateway's stats sampler does).
    pub fn take_totals(&self) -> TotalsSnapshot {
        self.totals.take()
    }

    /// Renders everything in the text exposition format, with `extra` (a registry of values
    /// read at scrape time) appended.
    pub fn render_with(&self, extra: Option<&Registry>) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        if let Some(extra) = extra {
            let _ = encode_registry(&mut out, extra);
        }
        let _ = encode_eof(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_build_info() {
        let m = Metrics::new("1.2.3");
        m.record_produced("orders", 3, 300);
        m.observe_request("kafka", "Produce", Duration::from_millis(2));
        m.connection_opened("kafka");
        m.observe_fsync(Duration::from_micros(300));
        let text = m.render_with(None);
        assert!(
            text.contains("rivulet_records_produced_total{topic=\"orders\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("rivulet_produced_bytes_total{topic=\"orders\"} 300"),
            "{text}"
        );
        assert!(
            text.contains("rivulet_request_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(text.contains("rivulet_fsync_duration_seconds_count 1"), "{text}");
        assert!(text.contains("rivulet_build_info{version=\"1.2.3\"} 1"), "{text}");
        assert!(
            text.contains("rivulet_connections_open{protocol=\"kafka\"} 1"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn topic_labels_are_bounded() {
        let m = Metrics::new("0");
        for i in 0..(TOPIC_LABELS_MAX + 10) {
            m.record_produced(&format!("t{i}"), 1, 1);
        }
        let text = m.render_with(None);
        assert!(
            text.contains("topic=\"_other\"} 10"),
            "overflow topics are pooled"
        );
    }
}
