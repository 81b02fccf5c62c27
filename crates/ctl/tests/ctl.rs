//! clipctl's integration tests in one binary: the command line, the commands against real
//! backends (`ops`), and the web console in a real browser (`console`).

mod cli;
mod console;
#[cfg(feature = "amqp")]
mod ops;
