//! The [`Driver`] trait: what a system has to provide to be measured by the run loop in
//! [`crate::run`], and what it hands back from [`Driver::prepare`].

use std::future::Future;
use std::sync::Arc;

use crate::ctx::{ConsumerCtx, ProducerCtx};
use crate::error::Result;
use crate::report::CatchUp;
use crate::workload::Durability;

/// What a driver set up for one durability level.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Topic, stream or queue names (peers: one per partition).
    pub destinations: Vec<String>,
    /// Partitions the consumers must own together before producing starts (Kafka: topics
    /// times partitions; peers: one per destination).
    pub partitions: usize,
    /// How the system is configured for this level, for the report.
    pub settings: Vec<String>,
}

/// The outcome of [`Driver::prepare`].
#[derive(Debug, Clone)]
pub enum Setup {
    /// Ready to run.
    Ready(Prepared),
    /// The system cannot be configured for this level; why, for the report (may be empty).
    Unavailable(Vec<String>),
}

/// A system the benchmark can drive. Every method but [`Driver::produce`] and
/// [`Driver::consume`] runs on the run loop's task; those two run on their own tasks, one per
/// producer and consumer, and may move blocking clients onto blocking threads
/// (`tokio::task::spawn_blocking`).
pub trait Driver: Send + Sync + 'static {
    /// The system's name in reports, e.g. `nats-jetstream`.
    fn name(&self) -> &'static str;

    /// The server's process id when the driver can find it, for its CPU time.
    fn server_pid(&self) -> Option<u32> {
        None
    }

    /// Creates the destinations of `partitions` partitions named after `name` at durability
    /// `level`, or says why the system cannot provide that level.
    fn prepare(
        &self,
        level: Durability,
        name: &str,
        partitions: usize,
    ) -> impl Future<Output = Result<Setup>> + Send;

    /// The destinations consumer `index` of `consumers` reads; by default every
    /// `consumers`-th one starting at `index`.
    fn consumer_destinations(&self, prepared: &Prepared, index: usize, consumers: usize) -> Vec<String> {
        prepared
            .destinations
            .iter()
            .skip(index)
            .step_by(consumers.max(1))
            .cloned()
            .collect()
    }

    /// Publishes records from `ctx` until it returns none, then waits for outstanding acks.
    fn produce(self: Arc<Self>, ctx: ProducerCtx) -> impl Future<Output = Result<()>> + Send;

    /// Receives records from `ctx.destinations()` (from their beginning) until `ctx` stops,
    /// reporting through [`ConsumerCtx::ready`] or [`ConsumerCtx::owns`] what it owns.
    fn consume(self: Arc<Self>, ctx: ConsumerCtx) -> impl Future<Output = Result<()>> + Send;

    /// Reads everything the run produced with one consumer, from the start and as fast as
    /// the system serves it; `None` where the driver does not measure that.
    fn catch_up(&self, prepared: &Prepared) -> impl Future<Output = Result<Option<CatchUp>>> + Send {
        let _ = prepared;
        async { Ok(None) }
    }

    /// Deletes what [`Driver::prepare`] created.
    fn cleanup(&self, prepared: &Prepared) -> impl Future<Output = Result<()>> + Send;
}
