//! The wire protocol's integration tests in one binary: golden vectors and garbage input.

mod garbage;
mod vectors;
