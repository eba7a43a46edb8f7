//! Rivulet's AMQP 0-9-1 front end: RabbitMQ applications and clients (amqplib, pika,
//! lapin, ...) run unchanged against the broker core.
//!
//! The front end translates; the broker decides. Frames are split and decoded without I/O
//! ([`frame`], using `amq-protocol`, the codec under lapin); each connection applies its
//! client's frames strictly in order ([`connection`]), so a `basic.publish` sent right
//! behind a `queue.declare` finds the queue. Queues, exchanges, bindings and settlement
//! live protocol-neutral in `rivulet_broker::queues`: a queue is a single-partition topic,
//! so every AMQP message is a Kafka record too ([`message`]).
//!
//! Backpressure: each connection's outbound frames go through a bounded queue; a consumer
//! holds at most its prefetch in unacknowledged deliveries; a channel in confirm mode holds
//! at most [`confirm::UNCONFIRMED_MAX`] unconfirmed messages before it stops reading.

mod access;
pub mod basic;
pub mod channel;
pub mod confirm;
pub mod connection;
pub mod consumer;
pub mod deadletter;
pub mod declare;
pub mod fault;
pub mod frame;
pub mod io;
pub mod login;
pub mod message;
pub mod publish;
pub mod server;
pub mod shared;
pub mod stream;
pub mod tx;

pub use server::Server;

/// Settings of the AMQP listener.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// Largest frame, offered in `connection.tune` (clients may ask for less).
    pub frame_max: u32,
    /// Highest channel number.
    pub channel_max: u16,
    /// Heartbeat interval offered, in seconds (0: none).
    pub heartbeat_s: u16,
    /// Largest message body accepted.
    pub message_bytes_max: u64,
    /// Body bytes being received at once on one connection, all channels together.
    pub content_bytes_max: u64,
    /// Concurrent connections; further ones are closed at once.
    pub connections_max: usize,
    /// Outbound messages (frames of one method, or one delivery) queued per connection.
    pub outbound_frames_max: usize,
    /// Time allowed for the protocol header and the handshake.
    pub handshake_timeout_ms: u64,
    /// TLS on every listener (`amqps`); the TLS handshake shares `handshake_timeout_ms`.
    pub tls: Option<rivulet_tls::Acceptor>,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            frame_max: 131_072,
            channel_max: 2_047,
            heartbeat_s: 60,
            message_bytes_max: 16 << 20,
            content_bytes_max: 64 << 20,
            connections_max: 4_096,
            outbound_frames_max: 1_024,
            handshake_timeout_ms: 10_000,
            tls: None,
        }
    }
}
