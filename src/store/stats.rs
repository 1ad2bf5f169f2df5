//! Figures about the whole database, for `/readyz` and `/metrics`.

use sqlx::PgPool;

use crate::domain::JobStatus;

/// Whether the database answers at all.
pub async fn ping(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// How many jobs are in each status (statuses without jobs are left out).
pub async fn jobs_by_status(pool: &PgPool) -> sqlx::Result<Vec<(JobStatus, i64)>> {
    sums_by_status(pool, "job_status_deltas").await
}

/// How many jobs have ended in each status, ever (retention's deletions do not lower it;
/// statuses no job ended in are left out): `/metrics`' `price_history_jobs_ended_total`.
pub async fn jobs_ended(pool: &PgPool) -> sqlx::Result<Vec<(JobStatus, i64)>> {
    sums_by_status(pool, "job_endings").await
}

/// The sums per status of `table`, where statements append what they changed (see the
/// migrations of `job_status_deltas` and `job_endings`): a few rows, however many jobs
/// are kept.
async fn sums_by_status(pool: &PgPool, table: &str) -> sqlx::Result<Vec<(JobStatus, i64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT status::text, sum(delta)::bigint FROM {table} GROUP BY status ORDER BY status"
    )))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(status, count)| status.parse().ok().map(|status| (status, count)))
        .collect())
}

/// Folds `job_status_deltas` and `job_endings` into one row per status each, a statement
/// each: the rows a concurrent statement appends meanwhile are left for the next time.
/// Retention's task runs it, so `/metrics` sums a handful of rows.
pub async fn compact_job_counts(pool: &PgPool) -> sqlx::Result<()> {
    for table in ["job_status_deltas", "job_endings"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH gone AS (DELETE FROM {table} RETURNING status, delta) \
             INSERT INTO {table} (status, delta) \
             SELECT status, sum(delta) FROM gone GROUP BY status"
        )))
        .execute(pool)
        .await?;
    }
    Ok(())
}
