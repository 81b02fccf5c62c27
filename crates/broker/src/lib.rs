//! The broker layer: one small [`Broker`] trait with confirmed publish, leased receive, ack,
//! nack (now or after a delay), dead letters and queue depth, over three real backends chosen by
//! URL: `memory://` (in-process, what the embedded fleet runs on), `amqp://`/`amqps://`
//! (RabbitMQ through lapin, the topology of DESIGN.md §4) and `sqs://` (Amazon SQS or an
//! emulator). A backend compiled out refuses its URL clearly.
//!
//! Modules:
//! - `api`: the [`Broker`] trait and the optional [`ControlBus`] and [`BrokerAdmin`] abilities.
//! - `model`: topics, queues, messages, deliveries, leases, depth.
//! - `priority`: [`PrioritySelector`], paid before free without starvation.
//! - `resolve`: [`connect`], the URL resolver, and [`BrokerOptions`].
//! - `memory`: [`InMemoryBroker`].
//! - `amqp` (feature `amqp`): RabbitMQ.
//! - `sqs` (feature `sqs`): SQS.
//! - `jobs`: typed receive that dead-letters undecodable bodies, lease heartbeats.
//! - `testsuite` (feature `testsuite`): the conformance suite every backend runs.

mod api;
mod error;
mod jobs;
mod memory;
mod model;
mod priority;
mod resolve;

#[cfg(feature = "amqp")]
mod amqp;
#[cfg(feature = "sqs")]
mod sqs;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use api::{Broker, BrokerAdmin, ControlBus};
pub use error::{BrokerError, BrokerErrorKind, BrokerResult};
pub use jobs::{LeaseHeartbeat, receive_decoded};
pub use memory::InMemoryBroker;
pub use model::{
    DEAD_REASON_HEADER, Delivery, Headers, Lease, MAX_HEADERS, Nack, Outgoing, PoolSpec,
    QueueDepth, QueueRef, RETRIES_HEADER, Receive, Topic,
};
pub use priority::{PAID_STREAK, PrioritySelector};
pub use resolve::{BrokerOptions, connect};

#[cfg(feature = "amqp")]
pub use amqp::{AmqpBroker, SettleStats};
#[cfg(feature = "sqs")]
pub use sqs::SqsBroker;
