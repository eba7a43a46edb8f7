//! Rivulet's stream processing engine: jobs in Rust over Kafka topics, against Rivulet,
//! any Kafka-protocol cluster, or a broker embedded in the process.
//!
//! * A job is a consumer group over its input topics: more instances take more partitions.
//!   Each partition index is a *task* with its own state and event-time clock.
//! * Operators: `map`, `filter`, `flat_map`, `event_time`, `key_by`, then windows
//!   (tumbling, hopping, session) with `aggregate`, `aggregate_merging` or `count`, and
//!   output to a topic.
//! * Event time: per-input watermarks (greatest timestamp minus the out-of-orderness
//!   bound) derived from the records, so replays decide the same; a task's watermark is the
//!   minimum over its active inputs; idle inputs stop holding it back. Windows close when
//!   the watermark passes their end plus the allowed lateness; later records go to the side
//!   output `<job>.late` with the reason and the window they missed, never dropped.
//! * State lives per task and is mirrored to the compacted changelog `<job>-changelog`; a
//!   task restores it wherever it is assigned next. Each checkpoint commits results, state
//!   changes and input offsets in one Kafka transaction (exactly-once), or publishes then
//!   commits (at-least-once).
//! * Bounded runs ([`run_bounded`]) process the inputs to their current end, close every
//!   window and return.
//!
//! ```no_run
//! # async fn demo(transport: std::sync::Arc<dyn rivulet_sdk::Transport>) -> Result<(), rivulet_stream::StreamError> {
//! use std::time::Duration;
//! use rivulet_stream::{JobOptions, Stream, Windows};
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Order { region: String, at_ms: i64 }
//! let pipeline = Stream::<Order>::json(&["orders"])
//!     .event_time(|o| o.at_ms)
//!     .key_by(|o| o.region.clone())
//!     .window(Windows::tumbling(Duration::from_secs(60)))
//!     .count()
//!     .to("orders-per-minute");
//! let job = rivulet_stream::start(transport, pipeline, JobOptions::new("orders-per-minute")).await?;
//! job.shutdown().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod agg;
mod bounded;
pub mod clock;
pub mod error;
mod job;
pub mod join;
mod local;
pub mod logic;
mod pipeline;
mod query;
mod runtime;
mod stats;
pub mod status;
pub mod stream;
pub mod table;
pub mod task;
mod tasks;
pub mod window;

#[cfg(test)]
mod reference_tests;

pub use agg::Emit;
pub use bounded::run_bounded;
pub use error::{Result, StreamError};
pub use job::{start, RunningJob};
pub use logic::WindowResult;
pub use pipeline::{Guarantee, JobOptions, Pipeline};
pub use stats::JobStats;
pub use stream::{Aggregated, KeyedStream, Stream, WindowedStream};
pub use window::{Window, Windows};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
