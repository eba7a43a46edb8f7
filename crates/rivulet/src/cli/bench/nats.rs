//! `rivulet bench nats`: NATS JetStream through async-nats.
