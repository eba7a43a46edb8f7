//! Rivulet's Kafka wire-protocol front end.
//!
//! - [`codec`]: frame decoding and response encoding, pure functions over bytes (no I/O),
//!   built on the `kafka-protocol` crate.
//! - [`versions`]: the APIs and version ranges Rivulet advertises.
//! - [`handler`]: turns decoded requests into calls on the broker core.
//! - [`server`]: TCP listeners, per-connection request loop, limits and graceful shutdown.
//! - [`sasl`]: a connection's login (SaslHandshake, SaslAuthenticate) when the broker
//!   requires one.

pub mod codec;
pub mod error;
pub mod errors;
pub mod frame;
pub mod handler;
pub mod listener;
pub mod sasl;
pub mod server;
pub mod transport;
pub mod versions;

pub use error::ProtocolError;
pub use handler::{Handler, HandlerConfig};
pub use listener::SecurityProtocol;
pub use server::{Server, ServerConfig};
