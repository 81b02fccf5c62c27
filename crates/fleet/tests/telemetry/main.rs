//! The fleet in one process as its operators see it through telemetry: the trace of one job
//! across the queue (`trace`), and no personal data in anything logged or traced (`privacy`).
//! One test binary: the process's one subscriber (`capture`) serves every test in it.

mod api;
mod capture;
mod privacy;
mod sessions;
mod trace;
