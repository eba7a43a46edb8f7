//! Rivulet services SDK: event-driven services that survive duplicates, failures and
//! restarts.
//!
//! * **Events** are [CloudEvents 1.0](https://cloudevents.io) carried in record headers
//!   (Kafka binding, binary content mode) with JSON data: [`Event`], [`Received`].
//! * **Publishing** resolves once the broker has the event durably (`acks=all`, idempotent
//!   producer); the key picks the partition: [`Client::publish`], [`Client::publish_batch`].
//! * **Consuming** ([`Client::subscribe`]) is at least once with offsets committed only after
//!   handling, retries with exponential backoff and jitter, a dead-letter topic
//!   `<topic>.dlq`, durable deduplication of event ids (`<group>.handled`), per-key order
//!   over N workers, bounded in-flight events per partition, and graceful shutdown.
//! * **Exactly once** ([`Client::transform`]): consume, transform and publish with the
//!   input offsets in one Kafka transaction per polled batch; outputs are seen by
//!   read_committed readers exactly once, across crashes.
//! * **Event-sourced aggregates** ([`aggregate`]): state rebuilt from a stream, commands
//!   appended at the revision they were decided at, retried on conflict, written once per
//!   command id; on the embedded event store or over the KurrentDB gRPC API (feature
//!   `eventstore-grpc`).
//! * **Transports**: `KafkaTransport` (any Kafka-protocol cluster, Rivulet included; cargo
//!   feature `kafka`) and `EmbeddedTransport` (the broker inside this process; feature
//!   `embedded`), behind one API. Both features are on by default; an application that only
//!   talks to a cluster turns `embedded` off and compiles no broker, one that only embeds
//!   turns `kafka` off and compiles no librdkafka.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rivulet_sdk::SdkError> {
//! use rivulet_sdk::{Client, Event, HandlerError, Received};
//! let client = Client::open_embedded("./data")?;
//! let placed = Event::new("/shop/orders", "shop.order.placed", serde_json::json!({"id": "o-1"}));
//! client.publish("orders", Some("o-1"), &placed).await?;
//! let sub = client
//!     .subscribe("mailer", &["orders"], |e: Received| async move {
//!         let order: serde_json::Value = e.data()?;
//!         println!("{} {order}", e.ty);
//!         Ok::<(), HandlerError>(())
//!     })
//!     .await?;
//! sub.shutdown().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod aggregate;
mod client;
pub mod dlq;
#[cfg(feature = "embedded")]
mod embedded;
pub mod error;
pub mod event;
pub mod handled;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "kafka")]
mod kafka_batch;
pub mod progress;
mod subscriber;
pub mod transform;
pub mod transport;

pub use client::{Client, DEFAULT_PARTITIONS};
#[cfg(feature = "embedded")]
pub use embedded::EmbeddedTransport;
pub use error::{HandlerError, Result, SdkError};
pub use event::{Event, Received};
#[cfg(feature = "kafka")]
pub use kafka::KafkaTransport;
pub use subscriber::{Handler, SubscribeOptions, Subscription, SubscriptionStats};
pub use transform::{Output, Transform, TransformStats, Transformer};
pub use transport::{Delivery, InRecord, OutRecord, TopicPartition, Transport, TxnProducer};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
