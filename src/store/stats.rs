//! Figures about the whole database, for `/readyz` and `/metrics`.

use sqlx::PgPool;

use crate::domain::JobStatus;

/// Whether the database answers at all.
pub async fn ping(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// How many jobs are in each status (statuses without jobs are left out).
pub async fn jobs_by_status(pool: &PgPool) -> sqlx::Result<Vec<(JobStatus, i64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status::text, count(*) FROM ingestion_jobs GROUP BY status ORDER BY status",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(status, count)| status.parse().ok().map(|status| (status, count)))
        .collect())
}
