//! The store's integration tests in one binary: URL resolution and the conformance suite on
//! every backend. `streaming_memory` stays a binary of its own: it measures the process's peak
//! memory.

#[cfg(feature = "s3")]
mod conformance;
mod resolve;
