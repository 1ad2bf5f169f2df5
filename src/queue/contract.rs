//! What the service relies on of apalis beyond its Rust API: the one place that names
//! apalis-postgres's schema, its notify channel and its status strings.
//!
//! apalis, apalis-core, apalis-codec and apalis-postgres are pinned to `=1.0.0` in
//! `Cargo.toml`, since a release within 1.x may change any of these without a compile
//! error. `tests/it/queue_contract.rs` checks each against a freshly migrated database and
//! names what changed; an update of the pins starts by running it.
//!
//! - The schema, created by [`setup`]: the tables and columns in [`READS`], read by
//!   `queue::lease` (who holds a job, and whether that worker is alive).
//! - The status strings of `apalis.jobs.status`: apalis-core's `Status`, written by
//!   apalis-postgres's SQL; a job a worker holds reads [`holding_statuses`].
//! - The channel [`NEW_JOBS_CHANNEL`], on which apalis-postgres's trigger function
//!   `apalis.notify_new_jobs()` announces each job inserted, with its `job_type`.
//! - Its fetch takes the entry due first (`ORDER BY run_at`): a job someone waits on is
//!   put ahead of the others by dating its entry back (`queue::Turn::Waited`).
//! - Our trigger on `apalis.jobs`: migration `20261128000003_wake_workers_on_requeue.sql`
//!   (landed, so never edited) calls that same function when a row's status turns to
//!   `'Pending'` (`Status::Pending`), so that a job handed back or re-enqueued wakes an
//!   idle worker at once. `queue::wake_ups` depends on it, and `startup::migrate` applies
//!   [`setup`] before our migrations because of it.

use apalis_core::task::status::Status;
use sqlx::PgPool;

/// The channel apalis-postgres notifies when a job is inserted (and our trigger when a
/// job is re-queued); the payload is JSON, with the job's `job_type` and `id`.
pub const NEW_JOBS_CHANNEL: &str = "apalis::job::insert";

/// The columns of apalis's tables (in the `apalis` schema) that our SQL reads or writes:
/// the queue's lease check and orphan sweep, the trigger of migration 20261128000003,
/// retention (which deletes a finished job's row by `id` and `job_type`), and migration
/// 20261221000000 (which lifts the `max_attempts` of the entries queued before it).
pub const READS: &[(&str, &[&str])] = &[
    (
        "jobs",
        &[
            "id",
            "job_type",
            "status",
            "lock_by",
            "run_at",
            "max_attempts",
        ],
    ),
    ("workers", &["id", "last_seen"]),
];

/// The statuses of a job some worker holds: fetched (`Queued`) or started (`Running`).
pub fn holding_statuses() -> [String; 2] {
    [Status::Queued.to_string(), Status::Running.to_string()]
}

/// Creates or upgrades the queue's schema (apalis-postgres's own migrations, recorded in
/// `apalis._sqlx_migrations`).
pub async fn setup(pool: &PgPool) -> Result<(), apalis_postgres::Error> {
    apalis_postgres::PostgresStorage::setup(pool).await
}
