//! The janitor against real backends: SQLite and PostgreSQL (a schema per test), the local
//! store and S3 on the emulator (a bucket per test), with an injected clock.

mod fixture;
mod lifecycle;
mod props;
mod scenarios;
mod service;
mod versioned;

on_all!(
    account_retention_counts_calendar_months,
    under_14_is_purged_at_once,
    orphan_photo_waits_for_its_grace,
    a_crash_mid_sweep_is_finished_by_the_next,
    one_bad_object_never_stops_the_sweep,
    one_janitor_leads,
);
