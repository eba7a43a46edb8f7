//! Integration tests: each starts a real `rivulet serve` on an ephemeral port with a temporary
//! data directory and drives it with real Kafka clients (librdkafka, kafka-python, kafkajs,
//! kcat) or raw sockets.

mod acls;
mod admin_api;
mod auth;
mod bench;
mod cli;
mod console;
mod consumer_protocol;
mod eventstore;
mod faults;
mod harness;
mod job_faults;
mod jobs;
mod operator;
mod other_clients;
mod rdkafka_clients;
mod robustness;
mod serve_settings;
mod tls;
mod topic_configs;
mod transactions;
