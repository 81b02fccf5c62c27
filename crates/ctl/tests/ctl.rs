//! clipctl's integration tests in one binary: the command line, and the commands against real
//! backends (`ops`).

mod cli;
#[cfg(feature = "amqp")]
mod ops;
