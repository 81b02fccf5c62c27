//! clipctl's commands against real backends: the in-memory ones in-process, RabbitMQ for the
//! move that must survive a kill, and the embedded fleet for steering and the main job.

mod common;
mod dlq;
mod fleet;
mod queue_move;
