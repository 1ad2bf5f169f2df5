//! Figures about the whole database, for `/readyz` and `/metrics`.

use sqlx::PgPool;

use crate::domain::JobStatus;

/// Whether the database answers at all.
pub async fn ping(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// How many jobs are in each status (statuses without jobs are left out).
pub async fn jobs_by_status(pool: &PgPool) -> sqlx::Result<Vec<(JobStatus, i64)>> {
    // The sums of what every statement changed (see the migration of
    // `job_status_deltas`): a few rows, however many jobs are kept.
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status::text, sum(delta)::bigint FROM job_status_deltas GROUP BY status ORDER BY status",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(status, count)| status.parse().ok().map(|status| (status, count)))
        .collect())
}

/// Folds `job_status_deltas` into one row per status, in one statement: the rows a
/// concurrent statement appends meanwhile are left for the next time. Retention's task
/// runs it, so `/metrics` sums a handful of rows.
pub async fn compact_job_counts(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query(
        "WITH gone AS (DELETE FROM job_status_deltas RETURNING status, delta) \
         INSERT INTO job_status_deltas (status, delta) \
         SELECT status, sum(delta) FROM gone GROUP BY status",
    )
    .execute(pool)
    .await?;
    Ok(())
}
