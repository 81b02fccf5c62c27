//! The ingest API over real HTTP, on embedded defaults (SQLite in memory, the in-process broker,
//! a sealed in-memory store) and on the real services (PostgreSQL, RabbitMQ, the S3 emulator).

mod accounts;
mod bad_input;
mod fleet;
mod jobs;
mod multipart_mutations;
#[cfg(all(feature = "amqp", feature = "s3", feature = "postgres"))]
mod real_services;
mod sessions;
mod submit;
