//! AMQP 0-9-1 integration tests: each starts a real `rivulet serve` and drives its AMQP
//! front end with real clients (amqplib, pika, lapin) or raw sockets.

#[allow(dead_code)]
#[path = "../kafka/harness.rs"]
mod harness;

mod amqplib;
mod crash;
mod hostile;
mod lapin_client;
mod operator;
mod pika;
