//! A job's hours (`ingestion_jobs.hours_fetched`, `hours_missing`, `hours_without_trades`):
//! NULL for a job of a daily-only coin, counted from 0 for a job of an hourly coin. The
//! job's other columns stay in [`super::ingestion_jobs`].

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// What a job of an hourly coin did with its hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct JobHours {
    /// Hours the job stored.
    pub hours_fetched: i32,
    /// Hours of its range still missing when it ended (0 while it runs).
    pub hours_missing: i32,
    /// Hours of its range recorded as without trades when it ended (0 while it runs).
    pub hours_without_trades: i32,
}

/// Marks the job as one that fills hours: its counts read 0 from now on instead of NULL.
/// Idempotent (a resumed attempt keeps what the first one counted).
pub async fn begin(executor: impl PgExecutor<'_>, job_id: Uuid) -> sqlx::Result<()> {
    add_fetched(executor, job_id, 0).await
}

/// Counts `hours` more hours the job stored, in the caller's transaction (the one that
/// stored them, beside the checkpoint).
pub async fn add_fetched(
    executor: impl PgExecutor<'_>,
    job_id: Uuid,
    hours: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE ingestion_jobs SET hours_fetched = coalesce(hours_fetched, 0) + $2, \
             hours_missing = coalesce(hours_missing, 0), \
             hours_without_trades = coalesce(hours_without_trades, 0), updated_at = now() \
         WHERE id = $1",
    )
    .bind(job_id)
    .bind(hours)
    .execute(executor)
    .await?;
    Ok(())
}

/// Records what the job's range holds at its end: the hours still missing and those
/// without trades (see `hourly_coverage::missing_hours`, `hours_without_trades::count`).
pub async fn finish(
    executor: impl PgExecutor<'_>,
    job_id: Uuid,
    missing: i64,
    without_trades: i64,
) -> sqlx::Result<()> {
    let clamp = |n: i64| i32::try_from(n.max(0)).unwrap_or(i32::MAX);
    sqlx::query(
        "UPDATE ingestion_jobs SET hours_fetched = coalesce(hours_fetched, 0), \
             hours_missing = $2, hours_without_trades = $3, updated_at = now() \
         WHERE id = $1",
    )
    .bind(job_id)
    .bind(clamp(missing))
    .bind(clamp(without_trades))
    .execute(executor)
    .await?;
    Ok(())
}

/// The job's hours; `None` for a job of a daily-only coin, or an unknown job.
pub async fn of(pool: &PgPool, job_id: Uuid) -> sqlx::Result<Option<JobHours>> {
    sqlx::query_as(
        "SELECT hours_fetched, hours_missing, hours_without_trades FROM ingestion_jobs \
         WHERE id = $1 AND hours_fetched IS NOT NULL",
    )
    .bind(job_id)
    .fetch_optional(pool)
    .await
}
