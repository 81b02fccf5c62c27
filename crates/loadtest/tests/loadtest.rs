//! clip-loadtest's integration tests in one binary: the command line, and load against the
//! embedded fleet.

mod cli;
mod load;
