//! The broker's integration tests in one binary: the conformance suite on every backend
//! (in-memory, RabbitMQ, SQS on the emulator) and RabbitMQ's fault behaviour.

mod amqp_conformance;
mod amqp_faults;
mod memory_conformance;
mod sqs_conformance;
