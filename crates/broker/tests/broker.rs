//! The broker's integration tests in one binary: the conformance suite on every backend
//! (in-memory, RabbitMQ, SQS on the emulator), RabbitMQ's fault behaviour and its coalesced
//! settles.

mod amqp_conformance;
mod amqp_faults;
mod amqp_settle;
mod memory_conformance;
mod sqs_conformance;
