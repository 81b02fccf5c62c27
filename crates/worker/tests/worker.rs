//! The worker's integration tests in one binary: embedded defaults, the README's main job through
//! `clip-worker embedded`, and `clip-worker serve` as a process on the real services.

mod embedded;
mod main_job;
#[cfg(all(feature = "amqp", feature = "s3"))]
mod real_services;
