//! Rivulet's benchmark, behind `rivulet bench`: one run loop ([`run::measure`]) that drives
//! every system through the same [`Driver`] trait, with the same record header, clock, HDR
//! histograms and report, so the figures compare.
//!
//! * [`kafka`]: any Kafka-compatible broker through librdkafka (always built).
//! * `nats`, `rabbitmq`: NATS JetStream (async-nats) and RabbitMQ streams and quorum queues
//!   (lapin), with the `peers` feature, which also builds `compare` (Rivulet and the peers
//!   side by side, with an SVG chart).
//!
//! The library measures and returns report values ([`Report`], and `compare::CompareReport`);
//! printing them is the caller's business. Progress lines and warnings go to stderr.

#![deny(missing_docs)]

mod baseline;
mod ctx;
mod driver;
mod error;
pub mod kafka;
mod report;
pub mod run;
mod workload;

#[cfg(feature = "peers")]
mod chart;
#[cfg(feature = "peers")]
pub mod compare;
#[cfg(feature = "peers")]
pub mod eventstore;
#[cfg(feature = "peers")]
pub mod nats;
#[cfg(feature = "peers")]
mod peer;
#[cfg(feature = "peers")]
pub mod rabbitmq;

pub use baseline::{run_baselines, Baseline};
pub use ctx::{ConsumerCtx, ProducerCtx};
pub use driver::{Driver, Prepared, Setup};
pub use error::{BenchError, Result};
#[cfg(feature = "peers")]
pub use peer::PeerArgs;
pub use report::{CatchUp, IntervalRow, Measured, Report, RunReport, Workload};
pub use workload::{AckSink, Durability, DurabilityChoice, Latency, WorkloadArgs, HEADER_BYTES};

/// How results are printed (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Borderless tables with uppercase headers.
    Text,
    /// JSON documents (one per line for streams).
    Json,
}
