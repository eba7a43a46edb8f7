//! `rivulet bench rabbitmq-stream` and `rabbitmq-quorum`.
